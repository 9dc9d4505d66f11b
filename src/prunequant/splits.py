"""The prepared data: ``<split>.parquet`` files (``idx, text, label``; ``text_pair`` too for sentence pairs) and
``info.json``, as every stage reads them; and a split's model inputs, one sentence or one pair per row."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from prunequant.errors import PrunequantError
from prunequant.io import atomic_dir

SPLITS = ("train", "validation", "test")
SCORED_SPLITS = ("validation", "test")  # every model is scored on these
PAIR_COLUMN = "text_pair"  # the second sentence of a sentence-pair data set


def save_splits(splits: dict[str, pd.DataFrame], label_names: tuple[str, ...], out_dir: Path) -> dict:
    """Write ``<split>.parquet`` files and ``info.json``; return the summary (also a metric)."""
    def fractions(frame: pd.DataFrame) -> dict[str, float]:
        counts = frame["label"].value_counts(normalize=True)
        return {name: round(float(counts.get(i, 0.0)), 4) for i, name in enumerate(label_names)}

    summary = {
        "label_names": list(label_names),
        "sentence_pairs": PAIR_COLUMN in splits["train"].columns,
        "splits": {name: {"n": len(frame), "label_fractions": fractions(frame)} for name, frame in splits.items()},
    }
    with atomic_dir(out_dir) as tmp:
        for name, frame in splits.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "info.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_split(data_dir: str | os.PathLike, split: str) -> pd.DataFrame:
    """Read one prepared split (``idx, text, label``)."""
    path = Path(data_dir) / f"{split}.parquet"
    if not path.is_file():
        raise PrunequantError(f"{path}: prepared data not found; run `dvc repro prepare` first")
    return pd.read_parquet(path)


def load_label_names(data_dir: str | os.PathLike) -> tuple[str, ...]:
    info = json.loads((Path(data_dir) / "info.json").read_text())
    return tuple(info["label_names"])


def model_inputs(frame: pd.DataFrame) -> list:
    """What a tokenizer takes for each row: the sentence, or the ``(text, text_pair)`` tuple of a pair (a batch of
    such tuples is tokenized as ``[CLS] text [SEP] text_pair [SEP]``)."""
    if PAIR_COLUMN in frame.columns:
        return list(zip(frame["text"].astype(str), frame[PAIR_COLUMN].astype(str), strict=True))
    return frame["text"].astype(str).tolist()


def inputs_frame(inputs, labels) -> pd.DataFrame:
    """The inverse of :func:`model_inputs`: a ``text`` (, ``text_pair``), ``label`` frame to train on."""
    inputs = list(inputs)
    if inputs and isinstance(inputs[0], tuple | list):
        first, second = zip(*inputs, strict=True)
        return pd.DataFrame({"text": list(first), PAIR_COLUMN: list(second), "label": list(labels)})
    return pd.DataFrame({"text": inputs, "label": list(labels)})


def forward_inputs(model, batch) -> dict:
    """The tokenizer outputs ``model``'s forward names as arguments: a tokenizer may add ``token_type_ids``
    that DistilBERT, for one, does not take (and a forward with ``**kwargs`` would pass on unchecked)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return {key: value for key, value in batch.items() if key in accepted}


def length_batches(tokenizer, texts: list, batch_size: int, max_seq_length: int):
    """Tokenized batches of sentences of similar length (little padding), for sums that do not depend on the
    order: each is ``(indices into texts, padded PyTorch batch)``."""
    import numpy as np

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_seq_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(texts), batch_size):
        picked = order[start : start + batch_size]
        yield picked, tokenizer([texts[i] for i in picked], truncation=True, max_length=max_seq_length,
                                padding=True, return_tensors="pt")

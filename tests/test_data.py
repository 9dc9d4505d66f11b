import pandas as pd
import pytest

from prunequant.data import DATASETS, PrepareConfig, load_raw_splits, make_splits
from prunequant.errors import PrunequantError
from prunequant.splits import load_label_names, load_split, save_splits

from .conftest import tiny_frame


def split(raw, cfg=PrepareConfig(), seed=0, source=None):
    return make_splits(raw, source, cfg, seed)


def test_carves_stratified_disjoint_splits_from_train():
    splits = split({"train": tiny_frame(100)})  # 200 rows
    assert {name: len(f) for name, f in splits.items()} == {"train": 140, "validation": 30, "test": 30}
    for frame in splits.values():
        assert frame["label"].mean() == 0.5  # stratified
        assert list(frame.columns) == ["idx", "text", "label"]
    ids = [set(f["idx"]) for f in splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == 200


def test_split_is_seeded_and_shuffled():
    raw = {"train": tiny_frame(100)}
    first, again, other = split(raw, seed=1), split(raw, seed=1), split(raw, seed=2)
    assert first["test"].equals(again["test"])
    assert not first["test"]["idx"].equals(other["test"]["idx"])
    assert first["train"]["label"].head(20).nunique() == 2  # the source is sorted by label


def test_official_labelled_splits_are_kept_and_unlabelled_test_is_ignored():
    train = tiny_frame(50)
    validation = tiny_frame(10)
    test = tiny_frame(10).assign(label=-1)  # GLUE: hidden test labels
    splits = split({"train": train, "validation": validation, "test": test})
    # SST-2 style: the official validation split becomes the test set, validation is carved from train.
    assert len(splits["test"]) == 20 and splits["test"]["idx"].str.startswith("validation:").all()
    assert splits["validation"]["idx"].str.startswith("train:").all()


def test_max_samples_cap_each_split():
    cfg = PrepareConfig(max_train_samples=20, max_eval_samples=10)
    splits = split({"train": tiny_frame(100)}, cfg)
    assert len(splits["train"]) == 20 and len(splits["validation"]) == 10 and len(splits["test"]) == 10
    assert splits["train"]["label"].mean() == 0.5


def test_custom_columns():
    raw = {"train": tiny_frame(50).rename(columns={"text": "sentence", "label": "y"})}
    splits = split(raw, PrepareConfig(text_column="sentence", label_column="y"))
    assert len(splits["train"]) == 70


@pytest.mark.parametrize(
    ("raw", "cfg", "expected"),
    [
        ({"train": tiny_frame().rename(columns={"text": "review"})}, PrepareConfig(), "column 'text' not in the train split"),
        ({"train": tiny_frame().assign(label=lambda f: f.label * 2)}, PrepareConfig(), "must be 0/1, found 0, 2"),
        ({"validation": tiny_frame()}, PrepareConfig(), "has no 'train' split"),
        ({"train": tiny_frame(2)}, PrepareConfig(), "split is empty"),
        ({"train": tiny_frame().assign(label=1)}, PrepareConfig(), "has only one label"),
    ],
)
def test_bad_data_gives_one_line_errors(raw, cfg, expected):
    with pytest.raises(PrunequantError) as info:
        split(raw, cfg)
    assert expected in info.value.format_message()
    assert "\n" not in info.value.format_message()


def test_packaged_rotten_tomatoes_loads_offline():
    raw, source = load_raw_splits("rotten_tomatoes")
    assert source is DATASETS["rotten_tomatoes"]
    assert len(raw["train"]) == 8530
    assert raw["train"]["label"].value_counts().to_dict() == {0: 4265, 1: 4265}


def test_hub_data_set_offline_fails_with_one_line(monkeypatch):
    with pytest.raises(PrunequantError) as info:
        load_raw_splits("glue/sst2")
    message = info.value.format_message()
    assert message.startswith("base.data: could not load 'glue/sst2'") and "rotten_tomatoes" in message
    assert "\n" not in message


def test_typo_in_data_name_suggests_the_closest():
    with pytest.raises(PrunequantError, match="did you mean 'rotten_tomatoes'"):
        load_raw_splits("rotten_tomatos")


def test_local_csv_and_missing_file(tmp_path):
    path = tmp_path / "mine.csv"
    tiny_frame().to_csv(path, index=False)
    raw, source = load_raw_splits(str(path))
    assert source is None and len(raw["train"]) == 80
    with pytest.raises(PrunequantError, match="not found"):
        load_raw_splits(str(tmp_path / "missing.csv"))


def test_save_and_load_round_trip(tmp_path):
    splits = split({"train": tiny_frame(50)})
    summary = save_splits(splits, ("negative", "positive"), tmp_path / "prepared")
    assert summary["splits"]["train"]["n"] == 70
    pd.testing.assert_frame_equal(load_split(tmp_path / "prepared", "test"), splits["test"])
    assert load_label_names(tmp_path / "prepared") == ("negative", "positive")
    with pytest.raises(PrunequantError, match="run `dvc repro prepare`"):
        load_split(tmp_path / "nowhere", "train")

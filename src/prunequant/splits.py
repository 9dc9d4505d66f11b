"""The prepared data: ``<split>.parquet`` files (``idx, text, label``) and ``info.json``, as every stage reads them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from prunequant.errors import PrunequantError
from prunequant.io import atomic_dir

SPLITS = ("train", "validation", "test")
SCORED_SPLITS = ("validation", "test")  # every model is scored on these


def save_splits(splits: dict[str, pd.DataFrame], label_names: tuple[str, str], out_dir: Path) -> dict:
    """Write ``<split>.parquet`` files and ``info.json``; return the summary (also a metric)."""
    summary = {
        "label_names": list(label_names),
        "splits": {
            name: {"n": len(frame), "positive_fraction": round(float(frame["label"].mean()), 4)}
            for name, frame in splits.items()
        },
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


def load_label_names(data_dir: str | os.PathLike) -> tuple[str, str]:
    info = json.loads((Path(data_dir) / "info.json").read_text())
    return tuple(info["label_names"])

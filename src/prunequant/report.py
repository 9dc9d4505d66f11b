"""Collecting the evaluation metrics of every variant into ``results.csv`` and a Markdown table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from prunequant.data import SPLITS
from prunequant.errors import PrunequantError

RESULT_COLUMNS = [
    "variant",
    "model",
    "layers",
    "precision",
    "device",
    "split",
    "n",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "size_mb",
    "status",
    "reference",
    "accuracy_delta",
    "mcnemar_p",
    "verdict",
]
_DESCRIPTION_KEYS = ["variant", "model", "layers", "precision", "device", "size_mb", "status"]


def evaluation_rows(evaluation: dict) -> list[dict]:
    """One results row per split of one evaluation JSON."""
    missing = [key for key in _DESCRIPTION_KEYS if key not in evaluation]
    if missing:
        raise PrunequantError(f"evaluation metrics lack {', '.join(missing)}; rerun `dvc repro evaluate`")
    description = {key: evaluation[key] for key in _DESCRIPTION_KEYS}
    description["reference"] = evaluation.get("reference")
    return [{**description, "split": split, **evaluation[split]} for split in SPLITS if split in evaluation]


def collect_results(evaluation_dir: str | os.PathLike) -> pd.DataFrame:
    """Read every ``*.json`` written by the evaluate stage into one sorted table."""
    paths = sorted(Path(evaluation_dir).glob("*.json"))
    if not paths:
        raise PrunequantError(f"{evaluation_dir}: no evaluation metrics found; run `dvc repro evaluate`")
    rows = [row for path in paths for row in evaluation_rows(json.loads(path.read_text()))]
    table = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    split_order = {split: i for i, split in enumerate(SPLITS)}
    return table.sort_values(
        ["variant", "precision", "device", "split"], key=lambda col: col.map(split_order) if col.name == "split" else col
    ).reset_index(drop=True)


def markdown_table(results: pd.DataFrame, confidence_level: float = 0.95) -> str:
    """Accuracy (with CI), layers and size per variant, as a Markdown table readers can paste."""
    shown = results.assign(
        accuracy=lambda t: [
            f"{100 * a:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"
            for a, lo, hi in zip(t.accuracy, t.accuracy_ci_low, t.accuracy_ci_high, strict=True)
        ],
        size_mb=lambda t: t.size_mb.map(lambda v: f"{v:.1f}"),
    )
    shown["paired test (McNemar)"] = [
        "" if pd.isna(v) else f"vs {r}: {100 * d:+.2f} pts, p={p:.2g}, {v}"
        for r, d, p, v in zip(results.reference, results.accuracy_delta, results.mcnemar_p, results.verdict, strict=True)
    ]
    shown = shown[["variant", "model", "layers", "precision", "device", "split", "n", "accuracy", "size_mb",
                   "paired test (McNemar)", "status"]]
    shown = shown.rename(columns={"accuracy": f"accuracy % [{100 * confidence_level:g}% CI]", "size_mb": "size (MB)"})
    return shown.to_markdown(index=False)

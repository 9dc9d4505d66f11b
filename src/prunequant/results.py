"""Collecting the evaluation metrics of every variant into ``results.csv`` and Markdown tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from prunequant.errors import PrunequantError
from prunequant.params.quantize import SCHEME_FAMILY
from prunequant.record import Evaluation
from prunequant.splits import SCORED_SPLITS, SPLITS

RESULT_COLUMNS = [
    "variant",
    "model",
    "layers",
    "precision",
    "device",  # where the variant is meant to run (and is timed and recommended)
    "measured_on",  # where its accuracy was measured: a CUDA scheme with CPU kernels is scored on a CPU-only machine
    "kernels",  # the library and device of the kernels that computed it, e.g. bitsandbytes-cpu
    "eval_batch",  # sentences per forward pass when scoring (1: one at a time, unpadded)
    "split",
    "n",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "macro_f1",
    "size_mb",
    "artifact_md5",  # the DVC hash of the artifact folder scored (a timing belongs to the row of the same hash)
    "status",
    "reference",
    "accuracy_delta",
    "mcnemar_p",
    "verdict",
    "baseline_delta",
    "baseline_p",
    "baseline_verdict",
]
BASELINE = "baseline-fp32"  # the reference every variant is finally judged against
_DESCRIBED = ["variant", "model", "layers", "precision", "device", "size_mb", "status", "reference", "measured_on",
              "kernels", "eval_batch", "artifact_md5"]  # the record's fields every row of it repeats


def evaluation_rows(data: dict) -> list[dict]:
    """One results row per split of one evaluation JSON (:class:`prunequant.record.Evaluation`)."""
    evaluation = Evaluation.from_json(data)
    description = {key: getattr(evaluation, key) for key in _DESCRIBED}
    if evaluation.status != "ok":  # e.g. "n/a: needs CUDA": a row per split, with no figures
        return [{**description, "split": split} for split in SCORED_SPLITS]
    rows = []
    for split, split_scores in evaluation.scores.items():
        scores = dict(split_scores)
        against = scores.pop("vs_baseline", None)  # quantized pruned models: a second paired test
        if evaluation.reference == BASELINE:
            against = {k: scores.get(k) for k in ("accuracy_delta", "mcnemar_p", "verdict")}
        if against:
            scores |= {"baseline_delta": against["accuracy_delta"], "baseline_p": against["mcnemar_p"],
                       "baseline_verdict": against["verdict"]}
        rows.append({**description, "split": split, **scores})
    return rows


def collect_results(*sources: str | os.PathLike, names: list[str] | None = None) -> pd.DataFrame:
    """Read the JSONs written by the evaluate and quantize stages into one sorted table.

    With ``names`` (what the stages the params define write, as the results stage passes), exactly
    ``<name>.json`` for each, from the first source folder holding it (or a source file of that name): a
    file left by a stage no longer defined is never read, and a missing one is an error. Without, every
    ``*.json`` of the source folders, and the source files.
    """
    sources = [Path(source) for source in sources]
    if names is not None:
        paths = [_find_evaluation(name, sources) for name in names]
    else:
        paths = []
        for source in sources:
            found = sorted(source.glob("*.json")) if source.is_dir() else [source] if source.is_file() else []
            if not found:
                raise PrunequantError(f"{source}: no evaluation metrics found; run `dvc repro evaluate`")
            paths += found
    rows = [row for path in paths for row in evaluation_rows(json.loads(path.read_text()))]
    table = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    order = {"split": {split: i for i, split in enumerate(SPLITS)},
             "precision": {name: i for i, name in enumerate(SCHEME_FAMILY)}}
    return table.sort_values(
        ["variant", "precision", "device", "split"],
        key=lambda col: col.map(lambda v: order[col.name].get(v, len(order[col.name]))) if col.name in order else col,
    ).reset_index(drop=True)


def _find_evaluation(name: str, sources: list[Path]) -> Path:
    for source in sources:
        path = source / f"{name}.json" if source.is_dir() else source
        if path.name == f"{name}.json" and path.is_file():
            return path
    where = " or ".join(str(source) for source in sources)
    raise PrunequantError(f"{name}.json: not found in {where}, though params.yaml defines it; run `dvc repro`")


def _has_macro_f1(results: pd.DataFrame) -> bool:
    """Whether the evaluations scored macro-F1 (they do for more than two classes)."""
    return "macro_f1" in results and bool(results["macro_f1"].notna().any())


def markdown_table(results: pd.DataFrame, confidence_level: float = 0.95) -> str:
    """Accuracy (with CI), layers and size per variant, as a Markdown table readers can paste."""
    shown = results.assign(
        accuracy=lambda t: [
            "n/a" if pd.isna(a) else f"{100 * a:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]"
            for a, lo, hi in zip(t.accuracy, t.accuracy_ci_low, t.accuracy_ci_high, strict=True)
        ],
        size_mb=lambda t: t.size_mb.map(lambda v: "" if pd.isna(v) else f"{v:.1f}"),
        n=lambda t: t.n.map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
    )
    shown["paired test (McNemar)"] = [
        "" if pd.isna(v) else f"vs {r}: {100 * d:+.2f} pts, p={p:.2g}, {v}"
        for r, d, p, v in zip(results.reference, results.accuracy_delta, results.mcnemar_p, results.verdict,
                              strict=True)
    ]
    multi_class = _has_macro_f1(results)
    if multi_class:
        shown["macro_f1"] = results["macro_f1"].map(lambda v: "" if pd.isna(v) else f"{100 * v:.2f}")
    shown["scored with"] = [
        "" if pd.isna(k) else f"{k}, batch {int(b)}" if b != 1 else f"{k}, one at a time"
        for k, b in zip(results.kernels, results.eval_batch, strict=True)
    ]
    shown = shown[["variant", "model", "layers", "precision", "device", "scored with", "split", "n", "accuracy",
                   *(["macro_f1"] if multi_class else []), "size_mb", "paired test (McNemar)", "status"]]
    shown = shown.rename(columns={"accuracy": f"accuracy % [{100 * confidence_level:g}% CI]", "size_mb": "size (MB)",
                                  "macro_f1": "macro-F1 %"})
    return shown.to_markdown(index=False)


def summary_table(results: pd.DataFrame, confidence_level: float = 0.95) -> str:
    """One row per artifact on the test split: accuracy, the paired test against its reference, size.

    ``× FP32`` is the size relative to the unpruned FP32 baseline, the starting point of every variant.
    """
    test = results[results.split == "test"]
    base = results[(results.variant == "baseline") & (results.precision == "fp32")]["size_mb"]
    base_size = base.iloc[0] if len(base) else float("nan")
    multi_class = _has_macro_f1(test)
    rows = []
    for row in test.itertuples(index=False):
        ok = not pd.isna(row.accuracy)
        rows.append({
            "variant": row.variant,
            "layers": row.layers,
            "precision": row.precision,
            "device": row.device,
            # a GPU scheme scored on a machine without CUDA says so: GPU kernels may differ in the last digits
            "measured with": "" if pd.isna(row.kernels) else row.kernels,
            f"test accuracy % [{100 * confidence_level:g}% CI]": (
                f"{100 * row.accuracy:.2f} [{100 * row.accuracy_ci_low:.2f}, {100 * row.accuracy_ci_high:.2f}]"
                if ok else row.status),
            **({"macro-F1 %": "" if pd.isna(row.macro_f1) else f"{100 * row.macro_f1:.2f}"} if multi_class else {}),
            "Δ pts vs reference (McNemar p)": (
                f"{100 * row.accuracy_delta:+.2f} vs {row.reference} (p={row.mcnemar_p:.2g})"
                if ok and not pd.isna(row.accuracy_delta) else ""),
            "size (MB)": "" if pd.isna(row.size_mb) else f"{row.size_mb:.1f}",
            "× FP32 size": "" if pd.isna(row.size_mb) else f"{row.size_mb / base_size:.3f}",
        })
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True,
                                          colalign=("left",) * (8 if multi_class else 7) + ("right", "right"))

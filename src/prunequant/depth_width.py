"""`make compare-widths`: depth against width at equal latency. Reads what widths/dvc.yaml measured (each cut's
INT8 artifact timed against the baseline in one run, and its evaluations) and writes one row per cut: its family
(depth: layers only; width: heads and FFN neurons only; depth+width: both), its latency as the median of its
per-round ratios to the FP32 eager baseline at one short and one long sentence, its accuracies, and a paired test
(exact McNemar, test split) against the depth-only cut of nearest latency. The Pareto front is drawn on validation
accuracy, so the pick of a cut per latency never reads the test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.benchmarking.table import paired_ratios, rounds_of
from prunequant.errors import PrunequantError
from prunequant.io import save_figure
from prunequant.params.prune import Cut

FAMILIES = ("depth", "width", "depth+width")
COLORS = {"depth": "#1f77b4", "width": "#d62728", "depth+width": "#2ca02c"}


def family_of(cut: Cut, total_layers: int) -> str:
    if not cut.width:
        return "depth"
    return "width" if cut.layers == total_layers else "depth+width"


def _latency(bench: pd.DataFrame, variant: str, point: tuple[int, int]) -> tuple[float, float, float, str]:
    """(median, min, max) of the per-round ratios of ``variant``'s fastest runtime to the FP32 eager baseline at
    ``point``, and that runtime; NaN where it was not timed."""
    at = bench[(bench.batch_size == point[0]) & (bench.seq_len == point[1]) & bench.latency_ms_p50.notna()]
    reference = at[(at.variant == "baseline") & (at.runtime == "eager")]
    mine = at[at.variant == variant]
    if reference.empty or mine.empty:
        return np.nan, np.nan, np.nan, ""
    ref = rounds_of(reference.round_p50s_ms.iloc[0], reference.round_ids.iloc[0])
    best = None
    for row in mine.itertuples(index=False):
        ratios = paired_ratios(rounds_of(row.round_p50s_ms, row.round_ids), ref)
        if ratios and (best is None or np.median(ratios) < np.median(best[0])):
            best = ratios, row.runtime
    if best is None:
        return np.nan, np.nan, np.nan, ""
    return float(np.median(best[0])), float(min(best[0])), float(max(best[0])), best[1]


def comparison(bench: pd.DataFrame, evaluations: Path, baseline: dict, baseline_artifact: Path, predictions: Path,
               cuts: tuple[Cut, ...], scheme: str, points: tuple[tuple[int, int], tuple[int, int]]) -> pd.DataFrame:
    """One row per cut (its evaluation in ``evaluations``, its predictions in ``predictions``/widths), and one for
    the unpruned baseline in ``scheme`` (``baseline_artifact``: its evaluation; the depth line's start).
    ``baseline``: the FP32 baseline's evaluation."""
    from prunequant.evaluation import load_predictions, paired_test

    total = int(baseline["layers"])
    rows = []
    entries = [("baseline", Cut(total), predictions / f"baseline-{scheme}", baseline_artifact)]
    entries += [(f"pruned-{cut.name}", cut, predictions / "widths" / f"pruned-{cut.name}-{scheme}",
                 evaluations / f"pruned-{cut.name}-{scheme}.json") for cut in cuts]
    for source, cut, folder, path in entries:
        if not path.is_file():
            raise PrunequantError(f"{path}: not found; run `make compare-widths` (and `dvc repro` for the baseline)")
        record = json.loads(path.read_text())
        if record["status"] != "ok":
            raise PrunequantError(f"{path}: {source} in {scheme} is {record['status']}; choose another compare.scheme")
        row = {"cut": cut.name if source != "baseline" else f"{total} (unpruned)", "family": family_of(cut, total),
               "layers": cut.layers, "heads_pct": cut.heads, "ffn_pct": cut.ffn, "variant": f"{source}-{scheme}",
               "size_mb": record["size_mb"], "predictions": str(folder)}
        for split in ("validation", "test"):
            scores = record[split]
            # the baseline's own artifact: its paired test against its FP32 source is the one against the baseline
            versus = scores["vs_baseline"] if source != "baseline" else scores
            row |= {f"{split}_accuracy": scores["accuracy"], f"{split}_vs_baseline": versus["accuracy_delta"],
                    f"{split}_p": versus["mcnemar_p"]}
        row |= {"test_ci_low": record["test"]["accuracy_ci_low"], "test_ci_high": record["test"]["accuracy_ci_high"]}
        for batch, length in points:
            median, low, high, runtime = _latency(bench, f"{source}-{scheme}", (batch, length))
            key = f"{batch}x{length}"
            row |= {f"ratio_{key}": median, f"ratio_{key}_low": low, f"ratio_{key}_high": high,
                    f"runtime_{key}": runtime}
        rows.append(row)
    table = pd.DataFrame(rows)
    short = f"{points[0][0]}x{points[0][1]}"
    depth = table[table.family == "depth"]
    nearest, deltas, pvalues = [], [], []
    for row in table.itertuples(index=False):
        ratio = getattr(row, f"ratio_{short}")
        if row.family == "depth" or depth.empty or np.isnan(ratio):
            nearest.append("")
            deltas.append(np.nan)
            pvalues.append(np.nan)
            continue
        match = depth.iloc[int(np.argmin(np.abs(depth[f"ratio_{short}"].to_numpy() - ratio)))]
        mine, theirs = (load_predictions(p, "test") for p in (row.predictions, match.predictions))
        test = paired_test(theirs, mine)
        nearest.append(match.cut)
        deltas.append(test["accuracy_delta"])
        pvalues.append(test["mcnemar_p"])
    table["nearest_depth"], table["vs_nearest_depth"], table["vs_nearest_depth_p"] = nearest, deltas, pvalues
    table["validation_front"] = _front(table[f"ratio_{short}"].to_numpy(float), table.validation_accuracy.to_numpy())
    return table.drop(columns="predictions").sort_values(f"ratio_{short}").reset_index(drop=True)


def _front(cost: np.ndarray, accuracy: np.ndarray) -> list[bool]:
    """Whether each point is on the Pareto front: no other is at least as fast and more accurate, or faster and at
    least as accurate."""
    return [bool(np.isfinite(c) and not any((cost <= c) & (accuracy >= a) & ((cost < c) | (accuracy > a))))
            for c, a in zip(cost, accuracy, strict=True)]


def plot(table: pd.DataFrame, baseline_test: float, points, path, *, title: str) -> None:
    """Test accuracy against INT8 latency (ratio to the FP32 eager baseline), one panel per point, one line per
    family of cuts; horizontal bars: the per-round range of the ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4.6), squeeze=False)
    for ax, (batch, length) in zip(axes[0], points, strict=True):
        key = f"ratio_{batch}x{length}"
        for family in FAMILIES:
            rows = table[(table.family == family) & table[key].notna()].sort_values(key)
            if family != "depth":  # width lines start from the unpruned model too
                rows = pd.concat([table[table.cut.str.endswith("(unpruned)")], rows]).sort_values(key)
            if rows.empty:
                continue
            x, y = rows[key].to_numpy(), 100 * rows.test_accuracy.to_numpy()
            ax.errorbar(x, y, xerr=[x - rows[f"{key}_low"], rows[f"{key}_high"] - x], fmt="-o", capsize=3,
                        color=COLORS[family], label=family, markersize=5, linewidth=1.4, elinewidth=0.8)
            for cut, xi, yi in zip(rows.cut, x, y, strict=True):
                ax.annotate(cut.replace(" (unpruned)", ""), (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=COLORS[family])
        ax.axhline(100 * baseline_test, color="black", linestyle="--", linewidth=0.8, label="FP32 baseline")
        ax.set_xlabel(f"INT8 latency / FP32 eager baseline's, batch {batch} x {length} tokens (median of rounds)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def markdown(table: pd.DataFrame, points, *, scheme: str, machine: str, source: str) -> str:
    """reports/widths.md: the table, the validation Pareto front and how it was measured."""
    keys = [f"{b}x{n}" for b, n in points]
    header = ["cut", "family", "layers", "heads", "FFN", *(f"latency {k} (x FP32, rounds' range)" for k in keys),
              "validation", "test [95% CI]", "test vs baseline", "vs the depth-only cut of nearest latency (test)",
              "validation front"]
    rows = []
    for r in table.itertuples(index=False):
        versus = "" if not r.nearest_depth else (f"{100 * r.vs_nearest_depth:+.2f} pts vs {r.nearest_depth}, "
                                                 f"p={r.vs_nearest_depth_p:.2g}")
        rows.append([r.cut, r.family, str(r.layers), f"{r.heads_pct}%", f"{r.ffn_pct}%",
                     *(f"{getattr(r, f'ratio_{k}'):.3f} ({getattr(r, f'ratio_{k}_low'):.3f}-"
                       f"{getattr(r, f'ratio_{k}_high'):.3f}, {getattr(r, f'runtime_{k}')})" for k in keys),
                     f"{100 * r.validation_accuracy:.2f}",
                     f"{100 * r.test_accuracy:.2f} [{100 * r.test_ci_low:.2f}, {100 * r.test_ci_high:.2f}]",
                     f"{100 * r.test_vs_baseline:+.2f} pts" + (f", p={r.test_p:.2g}" if np.isfinite(r.test_p) else ""),
                     versus, "yes" if r.validation_front else ""])
    front = table[table.validation_front].sort_values(f"ratio_{keys[0]}")
    picks = "; ".join(f"up to {getattr(r, f'ratio_{keys[0]}'):.3f}x: **{r.cut}** ({r.family}, validation "
                      f"{100 * r.validation_accuracy:.2f}%, test {100 * r.test_accuracy:.2f}%)"
                      for r in front.itertuples(index=False))
    return "\n".join([
        "# Depth against width at equal latency",
        "",
        f"Generated by `make compare-widths` from `{source}` (timed on {machine}) and `metrics/widths/evaluate/`; "
        "do not edit by hand. Every cut was made from the fine-tuned baseline (`prune.strategy`, "
        "`prune.width_score`), re-finetuned with the `refinetune` recipe and quantized with "
        f"`{scheme}` (`compare.scheme`). Latency: the median over the benchmark's interleaved rounds of the cut's "
        "p50 over the FP32 eager baseline's p50 in the same round, in its fastest runtime, with the range of those "
        "per-round ratios. Accuracy in percent; paired tests are exact McNemar tests on the same test sentences. The "
        "front is drawn on validation accuracy against the first latency: the cut to take at each latency.",
        "",
        pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True),
        "",
        f"**Validation front** (the most accurate cut on validation at each latency, {keys[0]}): {picks}.",
        "",
        "![accuracy against latency](widths.png)",
        "",
    ])


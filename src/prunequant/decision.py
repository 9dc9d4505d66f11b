"""The recommendation per deployment target, as a typed decision (:func:`recommend`); rendering it is the
report's job. Every choice reads the validation split: the accuracy budget, the rule that a variant significantly
worse than its own FP32 source is never recommended, and the tie-breaks. Test figures are carried along to be
reported, never used to choose. Speed is decided from paired rounds: every target is timed once per round, so
each round gives a paired ratio between two targets (through the FP32 reference timed in the same round)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prunequant.benchmarking.table import paired_ratios
from prunequant.params.quantize import SCHEME_FAMILY


@dataclass(frozen=True)
class DeploymentTarget:
    name: str
    column: str  # the cost column of the variant table
    lower_is_better: bool
    unit: str


TARGETS = (
    DeploymentTarget("CPU latency", "cpu_ms", True, "ms"),
    DeploymentTarget("GPU latency", "gpu_ms", True, "ms"),
    DeploymentTarget("GPU throughput", "gpu_throughput", False, "sentences/s"),
    DeploymentTarget("Smallest on disk", "size_mb", True, "MB"),
)
ALPHA = 0.05  # significance level of the McNemar tests the decision reads (evaluation.paired_test's verdicts)
DEVICE_NAME = {"cuda": "GPU"}
NOISE = 0.05  # without enough paired rounds (or for throughput), costs closer than this (relative) are tied
MIN_PAIRED_ROUNDS = 3  # the tie rule reads the interquartile range of the per-round ratios from this many rounds


@dataclass(frozen=True)
class Ratio:
    """A paired ratio of two targets' latencies: the median over the rounds, its interquartile range and range."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, ratios: list[float]) -> Ratio | None:
        if not ratios:
            return None
        q1, median, q3 = (float(v) for v in np.percentile(ratios, [25, 50, 75]))
        return cls(median, q1, q3, float(min(ratios)), float(max(ratios)), len(ratios))

    def tied(self) -> bool:
        """Whether the two cannot be told apart: the interquartile range of the per-round ratios (numpy's linear
        percentiles; with 5 rounds, the 2nd and 4th smallest) contains 1. One outlier round moves neither end, so
        it can neither make nor break a tie. With fewer than 3 rounds: the median within NOISE of 1."""
        if self.rounds >= MIN_PAIRED_ROUNDS:
            return self.q1 <= 1 <= self.q3
        return abs(self.median - 1) <= NOISE


def paired(a: dict[int, float], b: dict[int, float]) -> Ratio | None:
    """The per-round ratio a / b of two targets' ``{round number: p50 over the FP32 reference's in that round}``:
    over the rounds both were timed in (the reference cancels: the plain ratio of their p50s), else, for targets
    timed in different groups of rounds, round by round in order (each normalised by the reference of its round)."""
    common = paired_ratios(a, b)
    if common:
        return Ratio.of(common)
    pairs = zip((a[n] for n in sorted(a)), (b[n] for n in sorted(b)), strict=False)
    return Ratio.of([x / y for x, y in pairs])


@dataclass(frozen=True)
class Choice:
    """The decision for one deployment target: the variant (None: nothing qualifies, ``reasons`` say why), its
    cost, the runner-up, the variants it is tied with, and the sentences that justify it."""

    target: DeploymentTarget
    variant: str | None
    value: float | None = None
    runtime: str | None = None
    runner_up: str | None = None
    tied_with: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    figures: dict = field(default_factory=dict)  # accuracies and ratios, for metrics/report.json


def eligibility(table: pd.DataFrame, max_drop_points: float, alpha: float) -> pd.Series:
    """Per row, '' when the variant may be recommended, else why not, all read on the validation split: more
    than ``max_drop_points`` below the baseline, or significantly below its own FP32 source (McNemar p < alpha)."""
    reasons = []
    for row in table.itertuples(index=False):
        if pd.isna(row.val_accuracy):
            reasons.append("no validation accuracy")
        elif row.val_baseline_delta < -max_drop_points / 100 - 1e-12:
            reasons.append(f"{100 * row.val_baseline_delta:+.2f} pts vs the baseline on validation, beyond the "
                           f"{max_drop_points:g}-point budget")
        elif pd.notna(row.val_source_p) and row.val_source_p < alpha and row.val_source_delta < 0:
            reasons.append(f"significantly below its FP32 source {row.val_reference} on validation "
                           f"({100 * row.val_source_delta:+.2f} pts, McNemar p = {row.val_source_p:.2g})")
        else:
            reasons.append("")
    return pd.Series(reasons, index=table.index)


def _rank(rows: pd.DataFrame, target: DeploymentTarget) -> pd.DataFrame:
    """Fastest first: latencies by the median of their per-round ratios to the FP32 reference (the plain p50
    where there are none), other costs by value; equal costs: the more accurate on validation, then smaller."""
    key = rows[target.column]
    if f"{target.column[:3]}_rank" in rows and target.column in ("cpu_ms", "gpu_ms"):
        key = rows[f"{target.column[:3]}_rank"].fillna(key)
    ranked = rows.assign(_key=key if target.lower_is_better else -key)
    return ranked.sort_values(["_key", "val_accuracy", "size_mb"], ascending=[True, False, True], kind="stable")


def recommend(table: pd.DataFrame, max_drop_points: float, alpha: float = ALPHA) -> list[Choice]:
    """Per deployment target: the best variant that is eligible on validation (:func:`eligibility`). Latencies
    are decided from paired rounds: the fastest by median per-round ratio wins unless others are tied with it
    (:meth:`Ratio.tied`); among tied variants the most accurate on validation, then the smallest, is chosen."""
    why_not = eligibility(table, max_drop_points, alpha)
    choices = []
    for target in TARGETS:
        ranked, pool = _ranked(table, target, why_not)
        if pool.empty:
            reason = ("no variant was measured there" if table[target.column].isna().all()
                      else f"no measured variant stays within {max_drop_points:g} points of the baseline on "
                           "validation without a significant loss against its FP32 source")
            choices.append(Choice(target, None, reasons=(f"N/A: {reason}.",)))
            continue
        choices.append(_decide(target, table, ranked, pool, why_not))
    return choices


def _ranked(table: pd.DataFrame, target: DeploymentTarget, why_not: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every variant measured for the target, best first; those of them that are eligible)."""
    rows = table[table.accuracy.notna() & table[target.column].notna()]
    if target.column == "cpu_ms":  # a GPU scheme timed on a CPU (its slow fallback kernels) is no CPU deployment
        rows = rows[rows.device != "cuda"]
    ranked = _rank(rows, target)
    return ranked, ranked[why_not.loc[ranked.index] == ""]


def contenders(table: pd.DataFrame, column: str, max_drop_points: float, count: int,
               alpha: float = ALPHA) -> list[str]:
    """The variants a latency decision hinges on, for the benchmark's final rounds (``bench.final_rounds``): the
    ``count`` fastest eligible on validation (by median per-round ratio so far) and, on CPU, the two fastest
    off-the-shelf INT8 variants of the unpruned baseline, the peers the pick is compared with (two: the final
    rounds may reorder them, and the one that ends up fastest must have been timed in them). Labels, fastest
    first."""
    target = next(t for t in TARGETS if t.column == column)
    _, pool = _ranked(table, target, eligibility(table, max_drop_points, alpha))
    labels = list(pool.label.head(count))
    if column == "cpu_ms":
        peers = off_the_shelf_int8(table, column)
        labels += list(peers.label.head(2))
    return list(dict.fromkeys(labels))


def _rounds(row, column: str) -> dict[int, float]:
    value = row.get(f"{column[:3]}_paired")
    return value if isinstance(value, dict) else {}


def _decide(target: DeploymentTarget, table: pd.DataFrame, ranked: pd.DataFrame, pool: pd.DataFrame,
            why_not: pd.Series) -> Choice:
    column, latency = target.column, target.column in ("cpu_ms", "gpu_ms")
    fastest, reasons, tied = pool.iloc[0], [], []
    if latency:
        tied = [r for _, r in pool.iloc[1:].iterrows()
                if (ratio := paired(_rounds(r, column), _rounds(fastest, column))) is not None and ratio.tied()]
    elif len(pool) > 1 and target.column == "gpu_throughput":
        tied = [r for _, r in pool.iloc[1:].iterrows() if abs(r[column] - fastest[column]) / fastest[column] < NOISE]
    best, to_best = fastest, {}  # to_best: each variant tied with the pick, and its per-round ratio to the pick
    if tied:
        group = pd.DataFrame([fastest, *tied])
        best = group.sort_values(["val_accuracy", "size_mb"], ascending=[False, True], kind="stable").iloc[0]
        to_best = {r.label: paired(_rounds(r, column), _rounds(best, column))
                   for r in [fastest, *tied] if r.label != best.label}
        reasons.append(f"Tied on speed with {', '.join(to_best)}: "
                       + "; ".join(_tie_sentence(label, ratio) for label, ratio in to_best.items())
                       + ". The most accurate on validation, then the smallest, is chosen.")
    rest = pool[pool.label != best.label]
    runner_up = rest.iloc[0] if len(rest) else None
    faster_skipped = ranked.loc[: best.name].iloc[:-1] if best.name in ranked.index else ranked.iloc[:0]
    faster_skipped = faster_skipped[why_not.loc[faster_skipped.index] != ""]
    for _, row in faster_skipped.head(3).iterrows():
        reasons.append(f"Skipped although {'faster' if latency else 'better on this target'}: {row.label} "
                       f"({fmt_cost(row[column], target.unit)}), {why_not.loc[row.name]}.")
    if column == "size_mb":  # a user deploying on the other device wants its smallest variant too
        for device, rows in pool[pool.device != best.device].groupby("device", sort=True):
            other = rows.iloc[0]
            reasons.append(f"Smallest {DEVICE_NAME.get(device, device.upper())} variant: {other.label} "
                           f"({fmt_cost(other.size_mb, 'MB')}, validation accuracy {100 * other.val_accuracy:.2f}%, "
                           f"test {100 * other.accuracy:.2f}%).")
    figures = {column: float(best[column]), "accuracy": float(best.accuracy),
               "accuracy_delta_vs_baseline": float(best.baseline_delta),
               "validation_accuracy": float(best.val_accuracy),
               "validation_delta_vs_baseline": float(best.val_baseline_delta)}
    if latency and tied:  # each variant it is tied with: that one's per-round ratio to the pick
        figures["tied_with"] = {label: _ratio_figures(ratio) for label, ratio in to_best.items() if ratio is not None}
    base = table[(table.source == "baseline") & (table.precision == "fp32")]
    if latency and len(base) and best.label != "baseline":
        ratio = paired(_rounds(best, column), _rounds(base.iloc[0], column))
        if ratio is not None:
            figures["ratio_vs_fp32_baseline"] = _ratio_figures(ratio)
    if column == "cpu_ms":
        peers = off_the_shelf_int8(table, column)
        if len(peers) and best.label != peers.iloc[0].label:
            ratio = paired(_rounds(best, column), _rounds(peers.iloc[0], column))
            if ratio is not None:
                figures["ratio_vs_unpruned_int8"] = _ratio_figures(ratio) | {"peer": peers.iloc[0].label}
        if pd.notna(best.get("cpu_e2e_ms")):
            figures["end_to_end_ms"] = float(best.cpu_e2e_ms)
    runtime = best.get(f"{column[:3]}_runtime") if latency else best.get("gpu_throughput_runtime") \
        if column == "gpu_throughput" else None
    return Choice(target, best.label, float(best[column]), runtime if isinstance(runtime, str) else None,
                  None if runner_up is None else runner_up.label,
                  tuple(to_best), tuple(reasons),
                  figures)


def _ratio_figures(ratio: Ratio) -> dict:
    return {"median": round(ratio.median, 4), "q1": round(ratio.q1, 4), "q3": round(ratio.q3, 4),
            "low": round(ratio.low, 4), "high": round(ratio.high, 4), "rounds": ratio.rounds}


def _tie_sentence(label: str, ratio: Ratio | None) -> str:
    if ratio is None:
        return f"{label} (no paired rounds)"
    return (f"{label} takes {ratio.median:.3f}x its time per round (interquartile range {ratio.q1:.3f} to "
            f"{ratio.q3:.3f} over {ratio.rounds} rounds, containing 1)")


def off_the_shelf_int8(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """The unpruned baseline's post-training INT8 CPU variants that were timed (what a user gets off the shelf from
    ONNX Runtime, OpenVINO or torch; not the QAT family, which trains), fastest first by median paired ratio."""
    off_the_shelf = table.precision.map(lambda p: SCHEME_FAMILY.get(p) != "qat").astype(bool)
    rows = table[(table.source == "baseline") & table.precision.str.contains("int8") & (table.device == "cpu")
                 & table[column].notna() & off_the_shelf]
    key = rows[f"{column[:3]}_rank"].fillna(rows[column]) if f"{column[:3]}_rank" in rows else rows[column]
    return rows.assign(_key=key).sort_values("_key")


def fmt_cost(value: float, unit: str) -> str:
    """A cost as the report prints it: 0.851 ms, 12.4 MB, 1,149 sentences/s."""
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:,.0f} {unit}"

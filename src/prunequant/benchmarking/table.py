"""The benchmark's rows (``metrics/bench/<device>.csv``) and its summary table, with ratios measured in the
same run. Read by the report as well as written by the benchmark, so it imports nothing that times."""

from __future__ import annotations

import re
from pathlib import Path

COLUMNS = [
    "variant", "precision", "runtime", "layers", "device", "device_name", "batch_size", "seq_len",
    "latency_ms_p50", "latency_ms_best", "latency_ms_worst", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean",
    "throughput_per_s", "peak_mem_mb", "runs", "rounds", "round_p50s_ms", "round_ids", "e2e_ms_p50", "e2e_ms_best",
    "weights", "family", "artifact_md5", "note",
]
# latency_ms_p50: the median of the rounds' p50s; _best/_worst: the fastest and slowest round's p50 (the
# spread); round_p50s_ms: each round's p50 in round order, round_ids the numbers of those rounds in the run
# (targets timed in the same round share its number: their p50s pair); p90/p99: empty where too few calls
# lie beyond them (timing.tail_percentile); e2e_ms_*: one request end to end (text -> tokenizer -> runtime ->
# label) at the first batch-1 point; artifact_md5: the DVC hash of the artifact folder timed.

REFERENCES = (("fp32", "fp32", "eager"), ("ort_int8", "onnx-int8-dynamic", "onnxruntime"))
# a variant cut in width (pruned-6-w50, bert-base-uncased:12-w50): never a reference, even at full depth
_WIDTH_CUT = re.compile(r"(^pruned-|:)\d+-[whf]\d")


def source_of(variant: str, precision: str) -> str:
    """The model a row timed, without its scheme: 'bert-base-uncased:8-w50-onnx-int8-dynamic' ->
    'bert-base-uncased:8-w50'."""
    return variant if precision == "fp32" else variant.removesuffix(f"-{precision}")


def is_width_cut(variant: str) -> bool:
    return bool(_WIDTH_CUT.search(variant))


def rows_frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS)


def _numbers(value, kind=float) -> list:
    """'1.5;2.0' -> [1.5, 2.0]; a single value that the CSV reader took for a number, too; [] when empty."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return []
    return [kind(v) for v in str(value).split(";")]


def rounds_of(p50s, ids) -> dict[int, float]:
    """{round number: p50} of one row; rows of a CSV without round numbers count their rounds 0, 1, ..."""
    p50s = _numbers(p50s)
    ids = _numbers(ids, lambda v: int(float(v))) or list(range(len(p50s)))
    return dict(zip(ids, p50s, strict=True)) if len(ids) == len(p50s) else {}


def paired_ratios(mine: dict[int, float], other: dict[int, float]) -> list[float]:
    """My p50 over the other's in each round both were timed in (in round order); empty when they share none."""
    return [mine[n] / other[n] for n in sorted(mine.keys() & other.keys())]


def with_round_spread(frame):
    """A copy of ``frame`` whose timed rows all have latency_ms_best and _worst (the fastest and slowest round's
    p50): a row without rounds (of an older CSV, or built by hand) takes its p50 for both, a spread of zero."""
    frame = frame.copy()
    for column in ("latency_ms_best", "latency_ms_worst"):
        frame[column] = frame[column].fillna(frame.latency_ms_p50) if column in frame else frame.latency_ms_p50
    return frame


def spread_text(low: float, high: float) -> str:
    """A figure's range over the rounds (a latency's best to worst round, a ratio's per-round range) as the tables
    print it: '0.498-0.530'."""
    return f"{low:.3f}-{high:.3f}"


def _ratio_range(row, best: float, worst: float, ref_best: float, ref_worst: float) -> tuple[float, float]:
    """The smallest and largest per-round ratio (over the rounds both were timed in: each round's p50s divide
    pairwise); without per-round figures, the widest ratio the two spreads allow."""
    ratios = paired_ratios(rounds_of(row.round_p50s_ms, row.round_ids), rounds_of(row.ref_rounds_, row.ref_ids_))
    if ratios:
        return min(ratios), max(ratios)
    return best / ref_worst, worst / ref_best


def with_ratios(frame):
    """Add ratio_<ref> = best-round p50 over the reference's best-round p50 at the same point (the steadiest
    estimate), with ratio_<ref>_low/_high: the range of the per-round ratios (its run-to-run spread). The
    references, measured in the same run: the family's full-depth FP32 eager model (fp32) and its full-depth
    ONNX Runtime dynamic INT8 (ort_int8). Rows without rounds use their p50 as best and worst
    (:func:`with_round_spread`)."""
    import numpy as np

    frame = with_round_spread(frame)
    for column in ("round_p50s_ms", "round_ids"):
        if column not in frame:
            frame[column] = ""
    for name, precision, runtime in REFERENCES:
        column = f"ratio_{name}"
        ref = frame[(frame.precision == precision) & (frame.runtime == runtime) & frame.latency_ms_best.notna()]
        if ref.empty:
            for suffix in ("", "_low", "_high"):
                frame[column + suffix] = float("nan")
            continue
        ref = ref[~ref.variant.map(is_width_cut)]
        ref = ref[ref.layers == ref.groupby("family").layers.transform("max")]
        ref = ref[["family", "device", "batch_size", "seq_len", "latency_ms_best", "latency_ms_worst",
                   "round_p50s_ms", "round_ids"]].rename(columns={
                       "latency_ms_best": "ref_best_", "latency_ms_worst": "ref_worst_", "round_p50s_ms": "ref_rounds_",
                       "round_ids": "ref_ids_"})
        frame = frame.merge(ref, on=["family", "device", "batch_size", "seq_len"], how="left")
        frame[column] = (frame.latency_ms_best / frame.ref_best_).round(4)
        ranges = [(np.nan, np.nan) if np.isnan(r.ref_best_) or np.isnan(r.latency_ms_best)
                  else _ratio_range(r, r.latency_ms_best, r.latency_ms_worst, r.ref_best_, r.ref_worst_)
                  for r in frame.itertuples(index=False)]
        frame[column + "_low"] = [round(low, 4) for low, _ in ranges]
        frame[column + "_high"] = [round(high, 4) for _, high in ranges]
        frame = frame.drop(columns=["ref_best_", "ref_worst_", "ref_rounds_", "ref_ids_"])
    return frame


def spread_pct(best: float, worst: float) -> float:
    """The rounds' spread of one point as a percentage of its best round: (worst - best) / best."""
    return 100 * (worst - best) / best


def bench_summary_table(frame, short: tuple[int, int], long: tuple[int, int], wide: tuple[int, int]) -> str:
    """One Markdown row per (variant, runtime): the best round's p50 at one short sentence with the rounds'
    spread, p99, p50 at a long sentence, throughput and peak memory at the largest batch, and the ratios at the
    short point from the best rounds with their per-round range (FP32 last)."""
    import pandas as pd

    frame = with_ratios(frame)
    keys = ["variant", "precision", "runtime"]
    lines = [
        f"| variant | runtime | layers | best p50 ms, batch {short[0]} x {short[1]} tok (rounds' spread) | p99 ms | "
        f"best p50 ms, batch {long[0]} x {long[1]} tok | sentences/s, batch {wide[0]} x {wide[1]} tok | "
        f"peak MB there | x ORT int8 baseline (per-round range) | x FP32 baseline (per-round range) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def at(group, point, column):
        row = group[(group.batch_size == point[0]) & (group.seq_len == point[1])]
        value = row[column].iloc[0] if len(row) else None
        return None if value is None or pd.isna(value) else value

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    def ratio(group, name):
        value = at(group, short, f"ratio_{name}")
        if value is None:
            return "n/a"
        low, high = at(group, short, f"ratio_{name}_low"), at(group, short, f"ratio_{name}_high")
        return f"{value:.3f} ({spread_text(low, high)})" if low is not None and high is not None else f"{value:.3f}"

    def latency(group):
        best, worst = at(group, short, "latency_ms_best"), at(group, short, "latency_ms_worst")
        return "n/a" if best is None else f"{best:.3f} (+{spread_pct(best, worst):.0f}%)"

    for (variant, _, runtime), group in frame.groupby(keys, sort=False):
        notes = [n for n in group.note.fillna("") if n]
        if group.latency_ms_p50.isna().all():
            lines.append(f"| {variant} | {runtime} | {group.layers.iloc[0]} | {notes[0] if notes else 'n/a'} "
                         f"| | | | | | |")
            continue
        lines.append(
            f"| {variant} | {runtime} | {group.layers.iloc[0]} | {latency(group)} "
            f"| {fmt(at(group, short, 'latency_ms_p99'), '.3f')} | {fmt(at(group, long, 'latency_ms_best'), '.2f')} "
            f"| {fmt(at(group, wide, 'throughput_per_s'), '.1f')} | {fmt(at(group, wide, 'peak_mem_mb'), '.0f')} "
            f"| {ratio(group, 'ort_int8')} | {ratio(group, 'fp32')} |"
        )
    return "\n".join(lines)


def depth_comparison(frame, point: tuple[int, int]) -> list[dict]:
    """Per architecture family at one (batch, tokens) point: its full-depth FP32 eager model against its shallower
    cuts in their fastest INT8 scheme and runtime (by best round), with the per-round range of the ratio."""
    frame = with_ratios(frame)
    at = frame[(frame.batch_size == point[0]) & (frame.seq_len == point[1]) & frame.latency_ms_best.notna()]
    out = []
    for family, rows in at.groupby("family", sort=False):
        rows = rows.assign(source=[source_of(v, p) for v, p in zip(rows.variant, rows.precision, strict=True)],
                           width=rows.variant.map(is_width_cut))
        full = rows[(rows.precision == "fp32") & (rows.runtime == "eager") & ~rows.width]
        full = full[full.layers == full.layers.max()]
        if full.empty:
            continue
        reference = full.iloc[0]
        cuts = rows[((rows.layers < reference.layers) | rows.width) & rows.precision.str.contains("int8")]
        for source, group in sorted(cuts.groupby("source"), key=lambda item: (-item[1].layers.iloc[0], item[0])):
            fastest = group.sort_values("latency_ms_best").iloc[0]
            cut = source.rpartition(":")[2] if ":" in source else str(int(fastest.layers))
            out.append({"family": family, "full_layers": int(reference.layers), "fp32_ms": reference.latency_ms_best,
                        "layers": int(fastest.layers), "cut": cut, "precision": fastest.precision,
                        "runtime": fastest.runtime,
                        "ms": fastest.latency_ms_best, "ratio": fastest.ratio_fp32, "ratio_low": fastest.ratio_fp32_low,
                        "ratio_high": fastest.ratio_fp32_high})
    return out


def depth_section(frame, source: Path, study: Path | None, point: tuple[int, int] = (1, 128)) -> list[str]:
    """Markdown lines comparing each architecture's full-depth FP32 model with its cut in the fastest INT8 runtime
    (``make bench-cpu-shapes``), next to the original study's ratio where it has one; nothing without rows."""
    rows = depth_comparison(frame, point) if len(frame) else []
    if not rows:
        return []
    from prunequant.errors import PrunequantError
    from prunequant.params.prune import parse_cut

    if study is not None and not study.is_file():
        raise PrunequantError(f"{study}: not found (--study: the original study's figures); restore it from git")
    import pandas as pd

    known = pd.read_csv(study) if study else pd.DataFrame(columns=["family", "full_layers", "layers"])
    lines = [f"## Depth and INT8 on the bert-base and bert-large shapes (CPU, random weights, batch {point[0]} x "
             f"{point[1]} tokens)", "",
             f"From `{source}` (`make bench-cpu-shapes`): best-round p50s, the ratio's range over the interleaved "
             f"rounds in brackets" + (f"; the study's figures from `{study}`." if study else "."), "",
             "| architecture | FP32 eager, full depth (ms) | cut | fastest INT8 of the cut (ms) | ratio | the study |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        match = known[(known.family == r["family"]) & (known.full_layers == r["full_layers"])
                      & (known.layers.astype(str) == r["cut"])]
        theirs = "" if match.empty else (f"{match.fp32_ms.iloc[0]:.2f} -> {match.pruned_int8_ms.iloc[0]:.2f} ms = "
                                         f"{match.pruned_int8_ms.iloc[0] / match.fp32_ms.iloc[0]:.2f}x")
        cut = parse_cut(r["cut"])
        width = f" at {cut.width_text} ({cut.name})" if cut.width else ""
        lines.append(f"| {r['family']} ({r['full_layers']} layers) | {r['fp32_ms']:.2f} | {r['layers']} layers{width}, "
                     f"{r['precision']} ({r['runtime']}) | {r['ms']:.2f} "
                     f"| {r['ratio']:.3f} ({spread_text(r['ratio_low'], r['ratio_high'])}) | {theirs} |")
    return lines + [""]


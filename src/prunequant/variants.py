"""The variant table: one row per (source model, scheme) with the accuracies results.csv scored (test to report,
validation to choose) and the costs the benchmarks measured for the same artifacts. The report renders it; the
decision (:mod:`prunequant.decision`) and the benchmark's final rounds read it. Imports nothing that plots or times."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.benchmarking.table import COLUMNS, rounds_of, source_of, with_round_spread


def bench_source(frame: pd.DataFrame) -> pd.Series:
    """The source model of each benchmark row: 'pruned-3-onnx-int8-dynamic' -> 'pruned-3'."""
    return pd.Series([source_of(v, p) for v, p in zip(frame.variant, frame.precision, strict=True)],
                     index=frame.index)


def read_bench(path: str | os.PathLike) -> pd.DataFrame:
    """A benchmark CSV with its source column; empty (with the columns) when absent or without rows."""
    path = Path(path)
    frame = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame(columns=COLUMNS)
    return with_source(frame.reindex(columns=COLUMNS))


def with_source(frame: pd.DataFrame) -> pd.DataFrame:
    """Benchmark rows with their source model (:func:`bench_source`)."""
    return frame.assign(source=bench_source(frame) if len(frame) else pd.Series(dtype=str))


def split_stale(bench: pd.DataFrame, results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows timing the artifact results.csv scored, the other rows): a timing belongs to the artifact folder of
    the same DVC hash; a row of another build of it (or of a CSV that recorded no hash) is stale."""
    if bench.empty:
        return bench, bench
    current = results.dropna(subset=["artifact_md5"]).drop_duplicates(["variant", "precision"])
    current = dict(zip(zip(current.variant, current.precision, strict=True), current.artifact_md5, strict=True))
    fresh = pd.Series([isinstance(md5, str) and current.get((source, precision)) == md5 for source, precision, md5
                       in zip(bench.source, bench.precision, bench.artifact_md5, strict=True)], index=bench.index)
    timed = bench.latency_ms_p50.notna()
    return bench[fresh], bench[~fresh & timed]


def fastest_runtimes(bench: pd.DataFrame, point: tuple[int, int]) -> pd.DataFrame:
    """Per (source, precision): the row of its fastest runtime at one (batch, length) point, with ``paired``:
    {round number: its p50 over the FP32 baseline's in that round} (plain p50s where the baseline's FP32 eager
    model was not timed) and ``rank``: the median of those ratios, which decides the fastest."""
    at = bench[(bench.batch_size == point[0]) & (bench.seq_len == point[1]) & bench.latency_ms_p50.notna()].copy()
    reference = at[(at.source == "baseline") & (at.precision == "fp32") & (at.runtime == "eager")]
    ref = rounds_of(reference.round_p50s_ms.iloc[0], reference.round_ids.iloc[0]) if len(reference) else {}
    maps = []
    for row in at.itertuples(index=False):
        mine = rounds_of(row.round_p50s_ms, row.round_ids)
        maps.append({n: v / ref[n] for n, v in mine.items() if n in ref} if ref else mine)
    at["paired"] = maps
    at["rank"] = [float(np.median(list(m.values()))) if m and ref else np.nan for m in maps]
    at["order"] = at["rank"].fillna(at.latency_ms_p50)
    return at.sort_values("order").drop_duplicates(["source", "precision"])


def variant_table(results: pd.DataFrame, cpu: pd.DataFrame, gpu: pd.DataFrame, short: tuple[int, int],
                  wide: tuple[int, int], gpu_short: tuple[int, int] | None = None) -> pd.DataFrame:
    """One row per (source model, scheme): test accuracy (with its device, CI and the paired test against the
    baseline) to report, the validation figures the decision reads (``val_``: accuracy, against the baseline and
    against its own FP32 source), size, and the latency (median of the rounds' p50s), paired rounds, end-to-end
    latency and peak memory of its fastest runtime at ``short`` on CPU and GPU, plus GPU throughput at ``wide``.
    Only timings of the artifacts results.csv scored are used (:func:`split_stale`). Costs are NaN where a
    variant was not benchmarked."""
    test = results[results.split == "test"].rename(columns={"variant": "source"})
    test = test.assign(measured_on=test.get("measured_on", test.device), kernels=test.get("kernels"))
    table = test[["source", "model", "layers", "precision", "device", "measured_on", "kernels", "size_mb", "status",
                  "accuracy",
                  "accuracy_ci_low", "accuracy_ci_high", "baseline_delta", "baseline_p", "baseline_verdict"]].copy()
    validation = results[results.split == "validation"].rename(columns={"variant": "source"})
    validation = validation[["source", "precision", "accuracy", "baseline_delta", "baseline_p", "reference",
                             "accuracy_delta", "mcnemar_p", "verdict"]].rename(columns={
        "accuracy": "val_accuracy", "baseline_delta": "val_baseline_delta", "baseline_p": "val_baseline_p",
        "reference": "val_reference", "accuracy_delta": "val_source_delta", "mcnemar_p": "val_source_p",
        "verdict": "val_source_verdict"})
    table = table.merge(validation, on=["source", "precision"], how="left")
    is_baseline = (table.source == "baseline") & (table.precision == "fp32")
    table.loc[is_baseline, "baseline_delta"] = 0.0
    table.loc[is_baseline, "val_baseline_delta"] = 0.0
    table["label"] = [s if p == "fp32" else f"{s}-{p}" for s, p in zip(table.source, table.precision, strict=True)]
    for device, frame, point in (("cpu", cpu, short), ("gpu", gpu, gpu_short or short)):
        fast = fastest_runtimes(with_round_spread(frame), point)[[
            "source", "precision", "runtime", "latency_ms_p50", "latency_ms_best", "latency_ms_worst", "rounds",
            "paired", "rank", "e2e_ms_p50", "peak_mem_mb"]]
        fast = fast.rename(columns={"runtime": f"{device}_runtime", "latency_ms_p50": f"{device}_ms",
                                    "latency_ms_best": f"{device}_ms_best", "latency_ms_worst": f"{device}_ms_worst",
                                    "rounds": f"{device}_rounds", "paired": f"{device}_paired",
                                    "rank": f"{device}_rank", "e2e_ms_p50": f"{device}_e2e_ms",
                                    "peak_mem_mb": f"{device}_mem_mb"})
        table = table.merge(fast, on=["source", "precision"], how="left")
    wide_rows = gpu[(gpu.batch_size == wide[0]) & (gpu.seq_len == wide[1]) & gpu.throughput_per_s.notna()]
    best = wide_rows.sort_values("throughput_per_s", ascending=False).drop_duplicates(["source", "precision"])
    best = best[["source", "precision", "throughput_per_s", "runtime"]].rename(
        columns={"throughput_per_s": "gpu_throughput", "runtime": "gpu_throughput_runtime"})
    table = table.merge(best, on=["source", "precision"], how="left")
    return table.reset_index(drop=True)


def bench_points(frame: pd.DataFrame) -> tuple[tuple[int, int], tuple[int, int]]:
    """(one short sentence, the widest batch) as measured: batch 1 at the shortest length, and the largest
    batch at its longest length."""
    if frame.empty:
        return (1, 16), (64, 64)
    single = frame[frame.batch_size == 1]
    short = (1, int(single.seq_len.min())) if len(single) else (1, 16)
    widest = frame[frame.batch_size == frame.batch_size.max()]
    return short, (int(widest.batch_size.iloc[0]), int(widest.seq_len.max()))

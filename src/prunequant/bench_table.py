"""The benchmark's rows (``metrics/bench/<device>.csv``) and its summary table, with ratios measured in the
same run. Read by the report as well as written by the benchmark, so it imports nothing that times."""

from __future__ import annotations

COLUMNS = [
    "variant", "precision", "runtime", "layers", "device", "device_name", "batch_size", "seq_len",
    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "throughput_per_s", "peak_mem_mb",
    "runs", "weights", "family", "note",
]


def rows_frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS)


def with_ratios(frame):
    """Add ratio_fp32 (p50 over the family's full-depth FP32 eager p50 at the same point) and ratio_ort_int8
    (over the family's full-depth onnx-int8-dynamic), both measured in this run."""

    frame = frame.copy()
    for column, precision, runtime in (("ratio_fp32", "fp32", "eager"),
                                       ("ratio_ort_int8", "onnx-int8-dynamic", "onnxruntime")):
        ref = frame[(frame.precision == precision) & (frame.runtime == runtime) & frame.latency_ms_p50.notna()]
        if ref.empty:
            frame[column] = float("nan")
            continue
        ref = ref[ref.layers == ref.groupby("family").layers.transform("max")]
        ref = ref[["family", "device", "batch_size", "seq_len", "latency_ms_p50"]].rename(
            columns={"latency_ms_p50": "_ref"})
        frame = frame.merge(ref, on=["family", "device", "batch_size", "seq_len"], how="left")
        frame[column] = (frame.latency_ms_p50 / frame._ref).round(4)
        frame = frame.drop(columns="_ref")
    return frame


def summary_table(frame, short: tuple[int, int], long: tuple[int, int], wide: tuple[int, int]) -> str:
    """One Markdown row per (variant, runtime): latency at one short sentence and one long one, throughput
    at the largest batch, peak memory there, and the ratios at the short point (FP32 last)."""
    import pandas as pd

    frame = with_ratios(frame)
    keys = ["variant", "precision", "runtime"]
    lines = [
        f"| variant | runtime | layers | p50 ms, batch {short[0]} x {short[1]} tok | p99 ms | "
        f"p50 ms, batch {long[0]} x {long[1]} tok | sentences/s, batch {wide[0]} x {wide[1]} tok | "
        f"peak MB there | x ORT int8 baseline | x FP32 baseline |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def at(group, point, column):
        row = group[(group.batch_size == point[0]) & (group.seq_len == point[1])]
        value = row[column].iloc[0] if len(row) else None
        return None if value is None or pd.isna(value) else value

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    for (variant, _, runtime), group in frame.groupby(keys, sort=False):
        notes = [n for n in group.note.fillna("") if n]
        if group.latency_ms_p50.isna().all():
            lines.append(f"| {variant} | {runtime} | {group.layers.iloc[0]} | {notes[0] if notes else 'n/a'} "
                         f"| | | | | | |")
            continue
        lines.append(
            f"| {variant} | {runtime} | {group.layers.iloc[0]} | {fmt(at(group, short, 'latency_ms_p50'), '.3f')} "
            f"| {fmt(at(group, short, 'latency_ms_p99'), '.3f')} | {fmt(at(group, long, 'latency_ms_p50'), '.2f')} "
            f"| {fmt(at(group, wide, 'throughput_per_s'), '.1f')} | {fmt(at(group, wide, 'peak_mem_mb'), '.0f')} "
            f"| {fmt(at(group, short, 'ratio_ort_int8'), '.3f')} | {fmt(at(group, short, 'ratio_fp32'), '.3f')} |"
        )
    return "\n".join(lines)

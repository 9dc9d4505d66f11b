"""Paired-round latency ratios of chosen variants, read from a benchmark CSV: for each runtime of each variant and
each batch x length point, the median, interquartile range and range of its p50 over a reference's p50 in every
round both were timed in (the two references of `make bench-cpu`: the unpruned FP32 eager model and the unpruned
ONNX Runtime dynamic INT8, which every round times). `reports/bench-cpu.md` shows the best rounds' ratio instead.

    python bench/paired.py pruned-3-w50-onnx-int8-dynamic pruned-3-w50-openvino-int8-static \\
        --out metrics/bench/cpu-paired.csv
"""

from pathlib import Path

import click
import pandas as pd

from prunequant.benchmarking.table import paired_ratios, rounds_of
from prunequant.decision import Ratio

REFERENCES = {"fp32": ("baseline", "eager"), "ort_int8": ("baseline-onnx-int8-dynamic", "onnxruntime")}


def ratios(bench: pd.DataFrame, variants: list[str], points: list[tuple[int, int]]) -> pd.DataFrame:
    rows = []
    rounds = {(r.variant, r.runtime, r.batch_size, r.seq_len): rounds_of(r.round_p50s_ms, r.round_ids)
              for r in bench.itertuples()}
    for variant in variants:
        runtimes = bench.loc[bench.variant == variant, "runtime"].unique()
        if not len(runtimes):
            raise click.UsageError(f"{variant}: not in the benchmark CSV (run `make bench-cpu` with it first)")
        for runtime in runtimes:
            for batch, length in points:
                mine = rounds.get((variant, runtime, batch, length))
                if not mine:
                    continue
                row = {"variant": variant, "runtime": runtime, "batch_size": batch, "seq_len": length}
                for name, (ref_variant, ref_runtime) in REFERENCES.items():
                    ratio = Ratio.of(paired_ratios(mine, rounds.get((ref_variant, ref_runtime, batch, length), {})))
                    row |= {f"{name}_rounds": ratio.rounds if ratio else 0} | ({
                        f"{name}_median": ratio.median, f"{name}_q25": ratio.q1, f"{name}_q75": ratio.q3,
                        f"{name}_min": ratio.low, f"{name}_max": ratio.high} if ratio else {})
                rows.append(row)
    return pd.DataFrame(rows)


@click.command()
@click.argument("variants", nargs=-1, required=True)
@click.option("--bench", "bench_path", default="metrics/bench/cpu.csv", show_default=True, type=click.Path(
    exists=True, dir_okay=False, path_type=Path))
@click.option("--points", default="1x16,1x128", show_default=True, help="batch x tokens, comma-separated")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="also write the table here (CSV)")
def main(variants, bench_path, points, out):
    points = [tuple(int(v) for v in p.split("x")) for p in points.split(",")]
    table = ratios(pd.read_csv(bench_path), list(variants), points)
    if out:
        table.round(4).to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        click.echo(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()

"""bench: time every model and artifact that runs on one device -> <out>/<device>.csv and a summary."""

from pathlib import Path

import click

from prunequant.benchmarking.table import COLUMNS, bench_summary_table, depth_section, rows_frame
from prunequant.benchmarking.targets import (
    compare_targets,
    make_jobs,
    parse_points,
    random_targets,
    trained_targets,
)
from prunequant.benchmarking.workers import run_jobs
from prunequant.decision import contenders
from prunequant.errors import StageCommand
from prunequant.host import cpu_times, machine_info, machine_summary, steal_percent, usable_cores
from prunequant.io import write_json, write_text
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.bench import BENCH_WEIGHTS, BenchConfig
from prunequant.params.prune import CompareConfig, PruneConfig
from prunequant.params.quantize import QuantizeConfig, check_scheme_name
from prunequant.params.report import ReportConfig
from prunequant.splits import load_split, model_inputs
from prunequant.variants import bench_points, split_stale, variant_table, with_source


@click.command(cls=StageCommand)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), required=True, help="Where to run the variants.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default="data/prepared", show_default=True,
              help="Prepared data folder: its test sentences are the inputs.")
@click.option("--models", "models_dir", type=click.Path(path_type=Path), default="models", show_default=True,
              help="Folder of models/ (baseline, pruned-<n>, quantized/).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default="metrics/bench", show_default=True,
              help="Folder for <name>.csv and <name>-machine.json.")
@click.option("--name", default=None, help="File name stem (default: cpu or gpu).")
@click.option("--summary", type=click.Path(path_type=Path), default=None, help="Markdown file for the summary.")
@click.option("--weights", type=click.Choice(BENCH_WEIGHTS), default=None,
              help="Override bench.weights (random: time bench.shapes with random weights).")
@click.option("--schemes", default=None, help="With --weights random: time only these schemes (comma-separated) "
              "besides FP32, e.g. onnx-int8-dynamic,openvino-int8-static.")
@click.option("--points", default=None, help="Time only these points instead of bench's grid, e.g. 1x16,1x128 "
              "(batch x tokens).")
@click.option("--widths", is_flag=True, help="`make compare-widths`: time the baseline and each of compare.cuts "
              "(models/widths/) in compare.scheme instead of the pipeline's variants.")
@click.option("--results", "results_path", type=click.Path(path_type=Path), default="metrics/results.csv",
              show_default=True, help="The pipeline's accuracies: which variants the final rounds decide between.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(device: str, data_dir: Path, models_dir: Path, out_dir: Path, name: str | None, summary: Path | None,
         weights: str | None, schemes: str | None, points: str | None, widths: bool, results_path: Path,
         params_path: str) -> None:
    """Write one row per (variant, runtime, batch size, sequence length) and print the summary table."""
    import torch

    params = load(params_path, base=BaseConfig, prune=PruneConfig, quantize=QuantizeConfig, bench=BenchConfig,
                  report=ReportConfig, compare=CompareConfig)
    only = tuple(check_scheme_name(s.strip(), "--schemes") for s in schemes.split(",")) if schemes else ()
    if points:
        params.bench = params.bench.with_points(parse_points(points))
    name = name or ("gpu" if device == "cuda" else "cpu")
    csv = out_dir / f"{name}.csv"
    if device == "cuda" and not torch.cuda.is_available():
        click.echo(f"bench: no CUDA device on this machine (torch.cuda.is_available() is False): nothing timed; "
                   f"{csv} is left as it was. Run `make bench-gpu` on a GPU machine.")
        if not csv.exists():
            write_text(csv, ",".join(COLUMNS) + "\n")
        return
    weights = weights or params.bench.weights
    threads = params.bench.threads or usable_cores()
    texts = model_inputs(load_split(data_dir, "test"))  # sentences, or pairs
    if widths:
        check_scheme_name(params.compare.scheme, "compare.scheme")
        targets = compare_targets(models_dir, params, device)
    elif weights == "random":
        targets = random_targets(params, device, only)
    else:
        targets = trained_targets(models_dir, params, device)
    jobs = make_jobs(targets, params, texts, threads)
    bench = params.bench
    click.echo(f"bench: {len(jobs)} targets on {device}, {threads} threads, {len(bench.points())} points each, "
               f"{bench.rounds} interleaved rounds")
    start = cpu_times()
    final = None
    if weights == "trained" and bench.final_rounds and not widths:
        final = final_contenders(jobs, results_path, params, device)
    frame = rows_frame(run_jobs(jobs, click.echo, rounds=bench.rounds, seed=params.base.seed,
                                max_memory_mb=bench.max_memory_mb, final=final, final_rounds=bench.final_rounds))
    write_text(csv, frame.to_csv(index=False))
    info = machine_info(device, threads, steal=steal_percent(start, cpu_times()))
    write_json(out_dir / f"{name}-machine.json", info)
    batch_sizes = [b for b, _ in bench.points()]
    seqs = sorted({s for b, s in bench.points() if b == 1})
    table = bench_summary_table(frame, short=(1, seqs[0]), long=(1, seqs[-1]),
                                wide=(max(batch_sizes), bench.batch_seq_length))
    if weights == "random":  # each architecture against its cuts in their fastest INT8 runtime
        table += "\n\n" + "\n".join(depth_section(frame, csv, None, point=(1, seqs[-1])))
    command = "make compare-widths" if widths else \
        f"make bench-{'gpu' if device == 'cuda' else 'cpu'}{'-shapes' if weights == 'random' else ''}"
    final_text = (f" Then the variants the latency recommendation hinges on (the {bench.final_contenders} fastest "
                  f"eligible on validation by results.csv, and on CPU the two fastest off-the-shelf INT8 of the "
                  f"unpruned model) were loaded again with the references and timed side by side "
                  f"{bench.final_rounds} more "
                  f"rounds at batch 1 x {seqs[0]} tokens: their rows there have those rounds too."
                  if final is not None else "")
    text = (f"# Benchmark: {device}\n\nTimed on: {machine_summary(info)}.\n\nGenerated by `{command}` into `{csv}`; "
            f"do not edit by hand. Targets were loaded a group at a time (estimated under {bench.max_memory_mb} MB "
            f"and half the free memory); the reference targets (the unpruned FP32 eager PyTorch model and the "
            f"unpruned model under ONNX Runtime dynamic INT8) stayed loaded and were timed in every round. Every "
            f"loaded target was timed once per round, {bench.rounds} rounds per group, in a new order each round, "
            f"after a {bench.settle_seconds:g} s settle and with the garbage collector paused.{final_text} "
            "Latency of one call: "
            f"the best round's p50 with the spread up to the slowest round's p50; p99 over every timed call where "
            f"at least 5 calls lie beyond it (else n/a); ratios of best-round p50s to the two references, with the "
            f"range of the per-round ratios (rounds paired by number). weights={weights}.\n\n{table}\n")
    if summary:
        write_text(summary, text)
    click.echo(f"\n{table}\n\nbench: {len(frame)} rows -> {csv}")


def final_contenders(jobs, results_path: Path, params, device: str):
    """The benchmark's final rounds: given the rows of its groups, the jobs of the variants the latency pick hinges
    on (decision.contenders, read from results.csv's validation accuracies) and the point the report decides at."""
    import pandas as pd

    def choose(rows: list[dict]) -> tuple[list[int], tuple[int, int]]:
        if not results_path.is_file():
            click.echo(f"bench: no final rounds: {results_path} not found (run `dvc repro` first)")
            return [], (1, 1)
        results = pd.read_csv(results_path)
        frame, _ = split_stale(with_source(rows_frame(rows)), results)  # what results.csv scored, as the report
        short, wide = bench_points(frame.dropna(subset=["latency_ms_p50"]))
        empty = frame.iloc[:0]
        cpu, gpu = (frame, empty) if device == "cpu" else (empty, frame)
        table = variant_table(results, cpu, gpu, short, wide, short)
        labels = contenders(table, "cpu_ms" if device == "cpu" else "gpu_ms", params.report.max_accuracy_drop,
                            params.bench.final_contenders)
        return [i for i, job in enumerate(jobs) if job.target.variant in labels], short

    return choose


if __name__ == "__main__":
    main()

"""The deployment report: one row per variant with its accuracy and its measured costs, figures, and a
recommendation per deployment target (``reports/report.md``, from ``results.csv`` and the benchmark CSVs)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant import plots
from prunequant.bench_table import COLUMNS, depth_section, summary_table
from prunequant.io import write_text
from prunequant.params import require
from prunequant.quantization import SCHEME_FAMILY


@dataclass(frozen=True)
class ReportConfig:
    """What the report recommends, and how its radar chart scales accuracy."""

    max_accuracy_drop: float = 1.0  # accuracy points a recommended variant may lose against the baseline
    # The radar maps accuracy in this range onto its axis (SST-2 with BERT: [0.90, 0.94]; Rotten Tomatoes
    # with MiniLM: [0.76, 0.84]); values outside it are clipped.
    accuracy_range: tuple[float, ...] = (0.76, 0.84)
    radar_floor: float = 0.1  # the worst variant on each radar axis sits at this radius (the best at 1)

    def __post_init__(self) -> None:
        require(self.max_accuracy_drop >= 0, "report.max_accuracy_drop",
                f"must be >= 0 (accuracy points), got {self.max_accuracy_drop}")
        require(len(self.accuracy_range) == 2 and 0 <= self.accuracy_range[0] < self.accuracy_range[1] <= 1,
                "report.accuracy_range", f"must be [low, high] with 0 <= low < high <= 1, got {list(self.accuracy_range)}")
        require(0 <= self.radar_floor < 1, "report.radar_floor", f"must be in [0, 1), got {self.radar_floor}")


# ---- the report: one row per variant with its accuracy and its measured costs -------------------------

def bench_source(frame: pd.DataFrame) -> pd.Series:
    """The source model of each benchmark row: 'pruned-3-onnx-int8-dynamic' -> 'pruned-3'."""
    return pd.Series([v if p == "fp32" else v[: -len(p) - 1] if v.endswith("-" + p) else v
                      for v, p in zip(frame.variant, frame.precision, strict=True)], index=frame.index)


def read_bench(path: str | os.PathLike) -> pd.DataFrame:
    """A benchmark CSV with its source column; empty (with the columns) when absent or without rows."""
    path = Path(path)
    frame = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame(columns=COLUMNS)
    frame = frame.reindex(columns=COLUMNS)
    frame["source"] = bench_source(frame) if len(frame) else pd.Series(dtype=str)
    return frame


def _fastest(bench: pd.DataFrame, point: tuple[int, int]) -> pd.DataFrame:
    """Per (source, precision): the row of the fastest runtime (by its best round) at one (batch, length) point;
    rows of a CSV without rounds count their p50 as best and worst."""
    at = bench[(bench.batch_size == point[0]) & (bench.seq_len == point[1]) & bench.latency_ms_p50.notna()].copy()
    for column in ("latency_ms_best", "latency_ms_worst"):
        at[column] = at[column].fillna(at.latency_ms_p50)
    return at.sort_values("latency_ms_best").drop_duplicates(["source", "precision"])


def variant_table(results: pd.DataFrame, cpu: pd.DataFrame, gpu: pd.DataFrame, short: tuple[int, int],
                  wide: tuple[int, int], gpu_short: tuple[int, int] | None = None) -> pd.DataFrame:
    """One row per (source model, scheme) on the test split: accuracy (with its device, CI and the paired test
    against the baseline), size, and the latency and peak memory of its fastest runtime at ``short`` on CPU and
    GPU, plus GPU throughput at ``wide``. Costs are NaN where a variant was not benchmarked."""
    test = results[results.split == "test"].rename(columns={"variant": "source"})
    test = test.assign(measured_on=test.get("measured_on", test.device), kernels=test.get("kernels"))
    table = test[["source", "model", "layers", "precision", "device", "measured_on", "kernels", "size_mb", "status",
                  "accuracy",
                  "accuracy_ci_low", "accuracy_ci_high", "baseline_delta", "baseline_p", "baseline_verdict"]].copy()
    table.loc[(table.source == "baseline") & (table.precision == "fp32"), "baseline_delta"] = 0.0
    table["label"] = [s if p == "fp32" else f"{s}-{p}" for s, p in zip(table.source, table.precision, strict=True)]
    for device, frame, point in (("cpu", cpu, short), ("gpu", gpu, gpu_short or short)):
        fast = _fastest(frame, point)[["source", "precision", "runtime", "latency_ms_best", "latency_ms_worst",
                                       "latency_ms_p50", "rounds", "peak_mem_mb"]]
        fast = fast.rename(columns={"runtime": f"{device}_runtime", "latency_ms_best": f"{device}_ms",
                                    "latency_ms_worst": f"{device}_ms_worst", "latency_ms_p50": f"{device}_ms_median",
                                    "rounds": f"{device}_rounds", "peak_mem_mb": f"{device}_mem_mb"})
        table = table.merge(fast, on=["source", "precision"], how="left")
    wide_rows = gpu[(gpu.batch_size == wide[0]) & (gpu.seq_len == wide[1]) & gpu.throughput_per_s.notna()]
    best = wide_rows.sort_values("throughput_per_s", ascending=False).drop_duplicates(["source", "precision"])
    best = best[["source", "precision", "throughput_per_s", "runtime"]].rename(
        columns={"throughput_per_s": "gpu_throughput", "runtime": "gpu_throughput_runtime"})
    table = table.merge(best, on=["source", "precision"], how="left")
    return table.reset_index(drop=True)


TARGETS = (  # (name, column, lower is better, unit)
    ("CPU latency", "cpu_ms", True, "ms"),
    ("GPU latency", "gpu_ms", True, "ms"),
    ("GPU throughput", "gpu_throughput", False, "sentences/s"),
    ("Smallest on disk", "size_mb", True, "MB"),
)
DEVICE_NAME = {"cuda": "GPU"}
NOISE = 0.05  # latencies or throughputs closer than this (relative) count as a tie
RUNTIME_OF = {"cpu_ms": "cpu_runtime", "gpu_ms": "gpu_runtime", "gpu_throughput": "gpu_throughput_runtime"}


def recommend(table: pd.DataFrame, max_drop_points: float, alpha: float = 0.05) -> list[dict]:
    """Per deployment target: the best variant whose test accuracy is at most ``max_drop_points`` below the
    baseline's, the runner-up, and sentences that justify the choice (or say why there is none)."""
    eligible = table[table.accuracy.notna() & (table.baseline_delta >= -max_drop_points / 100 - 1e-12)]
    choices = []
    for name, column, lower, unit in TARGETS:
        # equal costs (two 4-bit formats of one model have one size): the more accurate first
        candidates = eligible[eligible[column].notna()].sort_values([column, "accuracy"], ascending=[lower, False],
                                                                     kind="stable")
        if column == "cpu_ms":  # a GPU scheme timed on a CPU (its slow fallback kernels) is no CPU deployment
            candidates = candidates[candidates.device != "cuda"]
        if candidates.empty:
            reason = ("no variant was benchmarked there" if table[column].isna().all()
                      else f"no benchmarked variant stays within {max_drop_points:g} points of the baseline")
            choices.append({"target": name, "variant": None, "text": f"N/A: {reason}."})
            continue
        best, tie = candidates.iloc[0], ""
        if column in ("cpu_ms", "gpu_ms"):
            tied = candidates[candidates[column] <= _slowest_round(best, column)]
            if len(tied) > 1:  # their rounds overlap: the timing cannot separate them, accuracy and size can
                best = tied.sort_values(["accuracy", "size_mb"], ascending=[False, True], kind="stable").iloc[0]
                others = ", ".join(f"{r.label} ({_fmt(r[column], unit)})" for _, r in tied.iterrows()
                                   if r.label != best.label)
                tie = (f"Tied within run-to-run spread with {others}: the rounds of the fastest reach "
                       f"{_fmt(_slowest_round(candidates.iloc[0], column), unit)}, so the most accurate of them, "
                       "then the smallest, is chosen.")
                candidates = pd.concat([tied[tied.label == best.label], candidates[candidates.label != best.label]])
        value = best[column]
        runtime = best.get(RUNTIME_OF.get(column, ""))
        text = [f"**{best.label}** ({runtime + ', ' if isinstance(runtime, str) else ''}{_fmt(value, unit)}"
                f"{_spread(best, column)}"]
        base = table[(table.source == "baseline") & (table.precision == "fp32")]
        if len(base) and pd.notna(base[column].iloc[0]) and column != "gpu_throughput":
            text[0] += f", {value / base[column].iloc[0]:.3f}x the FP32 baseline"
        elif len(base) and pd.notna(base[column].iloc[0]):
            text[0] += f", {value / base[column].iloc[0]:.1f}x the FP32 baseline"
        if column == "cpu_ms":  # against what a user gets off the shelf: the fastest INT8 of the unpruned model
            peers = candidates_peer(table, column)
            if len(peers) and best.label != peers.iloc[0].label:
                peer = peers.iloc[0]
                text[0] += f", {value / peer[column]:.3f}x the fastest INT8 of the unpruned baseline, {peer.label} " \
                           f"({peer.cpu_runtime})"
        text[0] += f"; test accuracy {100 * best.accuracy:.2f}%"
        text[0] += f", {100 * best.baseline_delta:+.2f} pts vs the baseline)."
        if pd.notna(best.baseline_p):
            significant = best.baseline_p < alpha
            text.append(f"Its accuracy difference to the baseline is {'' if significant else 'not '}significant "
                        f"(McNemar p = {best.baseline_p:.2g}).")
        if tie:
            text.append(tie)
        elif len(candidates) > 1:
            second = candidates.iloc[1]
            gap = abs(second[column] - value) / value
            if column == "gpu_throughput" and gap < NOISE:
                text.append(f"{second.label} ({_fmt(second[column], unit)}) is within {100 * NOISE:.0f}% of it "
                            f"({100 * gap:.0f}% apart), a gap run-to-run noise can make: either will do.")
            else:
                text.append(f"Runner-up: {second.label} ({_fmt(second[column], unit)}).")
        if column == "size_mb":  # a user deploying on the other device wants its smallest variant too
            for device, rows in candidates[candidates.device != best.device].groupby("device", sort=True):
                other = rows.iloc[0]
                where = DEVICE_NAME.get(device, device.upper())
                text.append(f"Smallest {where} variant: {other.label} ({_fmt(other[column], unit)}, "
                            f"test accuracy {100 * other.accuracy:.2f}%, {100 * other.baseline_delta:+.2f} pts).")
        choices.append({"target": name, "variant": best.label, "text": " ".join(text), column: float(value),
                        "accuracy": float(best.accuracy), "accuracy_delta_vs_baseline": float(best.baseline_delta)})
    return choices


def candidates_peer(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """The unpruned baseline's post-training INT8 CPU variants that were timed (what a user gets off the shelf from
    ONNX Runtime, OpenVINO or torch; not the QAT family, which trains), fastest first."""
    off_the_shelf = table.precision.map(lambda p: SCHEME_FAMILY.get(p) != "qat").astype(bool)
    rows = table[(table.source == "baseline") & table.precision.str.contains("int8") & (table.device == "cpu")
                 & table[column].notna() & off_the_shelf]
    return rows.sort_values(column)


def _slowest_round(row, column: str) -> float:
    """The slowest round's p50 of a timed variant (the top of its run-to-run spread); a variant timed in one round
    has no spread measured, and gets NOISE around its p50 instead."""
    worst, rounds = row.get(f"{column}_worst"), row.get(f"{column[:3]}_rounds")
    if pd.notna(worst) and pd.notna(rounds) and rounds > 1:
        return float(worst)
    return float(row[column]) * (1 + NOISE)


def _spread(row, column: str) -> str:
    """', best of N rounds, slowest +x%' for a timed variant, '' otherwise."""
    rounds, worst = row.get(f"{column[:3]}_rounds"), row.get(f"{column}_worst")
    if column not in ("cpu_ms", "gpu_ms") or pd.isna(rounds) or rounds < 2 or pd.isna(worst):
        return ""
    return f", best of {int(rounds)} rounds, slowest +{100 * (worst - row[column]) / row[column]:.0f}%"


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:,.0f} {unit}"


def results_markdown(table: pd.DataFrame, confidence_level: float) -> str:
    """The per-family results table: size, accuracy and costs on GPU and on CPU, and the test vs baseline."""

    def num(value, spec):
        return "N/A" if pd.isna(value) else format(value, spec)

    def accuracy(row, device):
        where = row.device if pd.isna(row.measured_on) else row.measured_on
        if where != device or pd.isna(row.accuracy):
            return "N/A"
        mark = " ‡" if where != row.device else ""  # a GPU scheme scored with its CPU kernels
        return f"{100 * row.accuracy:.2f} [{100 * row.accuracy_ci_low:.2f}, {100 * row.accuracy_ci_high:.2f}]{mark}"

    def verdict(row):
        if row.source == "baseline" and row.precision == "fp32":
            return "(the baseline)"
        if pd.isna(row.baseline_delta):
            return "N/A" if pd.isna(row.accuracy) else ""
        p = "" if pd.isna(row.baseline_p) else f", p={row.baseline_p:.2g}, {row.baseline_verdict}"
        return f"{100 * row.baseline_delta:+.2f}{p}"

    def latency(row):
        if pd.isna(row.cpu_ms):
            return "N/A"
        worst = getattr(row, "cpu_ms_worst", float("nan"))
        spread = "" if pd.isna(worst) or worst == row.cpu_ms else f"+{100 * (worst - row.cpu_ms) / row.cpu_ms:.0f}%, "
        return f"{row.cpu_ms:.3f} ({spread}{row.cpu_runtime})"

    level = f"{100 * confidence_level:g}% CI"
    lines = [f"| variant | layers | size (MB) | accuracy on GPU % [{level}] | latency on GPU (ms) | peak GPU memory (MB) "
             f"| accuracy on CPU % [{level}] | latency on CPU (ms, slowest round) | peak CPU memory (MB) "
             f"| Δ pts vs baseline (McNemar) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    measured = table.accuracy.notna() | table.cpu_ms.notna() | table.gpu_ms.notna()
    for row in table[measured].itertuples(index=False):
        gpu_ms = "N/A" if pd.isna(row.gpu_ms) else f"{row.gpu_ms:.3f} ({row.gpu_runtime})"
        lines.append(
            f"| {row.label} | {row.layers} | {num(row.size_mb, '.1f')} | {accuracy(row, 'cuda')} | {gpu_ms} "
            f"| {num(row.gpu_mem_mb, '.0f')} | {accuracy(row, 'cpu')} | {latency(row)} "
            f"| {num(row.cpu_mem_mb, '.0f')} | {verdict(row)} |"
        )
    elsewhere = table[measured & table.accuracy.notna() & (table.measured_on != table.device)]
    if len(elsewhere):
        kernels = ", ".join(sorted(set(elsewhere.kernels.dropna())))
        lines.append(f"\n‡ A GPU scheme scored on this machine's CPU ({kernels}), as no CUDA device was here: its "
                     "accuracy is that of the same artifact computed by the library's CPU kernels; GPU kernels may "
                     "differ in the last digits. It is deployed, timed and recommended on a GPU only.")
    skipped = table[~measured]
    for status, rows in skipped.groupby(skipped.status.fillna("not measured"), sort=False):
        lines.append(f"\nNot measured here ({status}): {', '.join(rows.label)}.")
    return "\n".join(lines)


def bench_points(frame: pd.DataFrame) -> tuple[tuple[int, int], tuple[int, int]]:
    """(one short sentence, the widest batch) as measured: batch 1 at the shortest length, and the largest
    batch at its longest length."""
    if frame.empty:
        return (1, 16), (64, 64)
    single = frame[frame.batch_size == 1]
    short = (1, int(single.seq_len.min())) if len(single) else (1, 16)
    widest = frame[frame.batch_size == frame.batch_size.max()]
    return short, (int(widest.batch_size.iloc[0]), int(widest.seq_len.max()))


def _machine_line(folder: Path, name: str) -> str:
    path = folder / f"{name}-machine.json"
    if not path.is_file():
        return f"{name.upper()}: not benchmarked (run `make bench-{name}`)"
    info = json.loads(path.read_text())
    where = info.get("gpu") if name == "gpu" else f"{info.get('cpu')}, {info.get('threads')} threads"
    when = f", measured {info['measured_at']}" if info.get("measured_at") else ""
    return f"{name.upper()}: {where} (torch {info.get('torch')}{when}; `{path}`)"


def estimators_markdown(frame: pd.DataFrame, prune) -> list[str]:
    """The report's table of :func:`prunequant.sensitivity.estimator_comparison`: each way of ranking layers, what
    it cost, how well it agrees with skip-and-re-score, and what it would drop."""
    layers = frame.attrs["layers"]
    keeps = [c for c in frame.columns if isinstance(c, int | np.integer)]  # one column per prune.keep_layers entry
    rows = []
    for row in frame.to_dict("records"):
        pooling = {"cls": "[CLS] token", "mean": "mean over tokens", "": ""}[row["pooling"]]
        agreement = "1 (itself)" if row["labels"] == "yes" else f"{row['spearman']:+.2f} (p={row['p_value']:.2f})"
        strategy = f"`{row['strategy']}`" + (f", `pooling: {row['pooling']}`" if row["pooling"] else "")
        rows.append([row["estimator"], strategy, pooling, row["labels"], f"{row['seconds']:.1f}", agreement,
                     *(str(row[k]) for k in keeps)])
    header = ["estimator", "prune.strategy", "tokens", "needs labels", "seconds", "Spearman ρ with skip-and-re-score",
              *(f"drops for {layers} → {k}" for k in keeps)]
    in_use = f"`prune.strategy: {prune.strategy}`" + (
        f" with `prune.pooling: {prune.pooling}`" if prune.strategy in ("block-influence", "angular") else "")
    return [
        "### Which layers to drop: label-free estimators against skip-and-re-score",
        "",
        f"Each row ranks the baseline's {layers} layers (`metrics/sensitivity.csv`; blocks of layers: "
        "`metrics/sensitivity-blocks.csv`). Skip-and-re-score skips each layer and re-scores the validation split "
        "(the ground truth, one evaluation per layer); block influence (1 - cosine between a layer's input and "
        "output hidden states) and angular distance (the angle between the hidden states before and after a block "
        "of layers: the closest block of the needed length is dropped) need no labels and one forward pass over the "
        f"same sentences. ρ compares each ranking with skip-and-re-score's over {layers} layers: a coarse check "
        f"(hence the p-values). In use: {in_use}; `make compare-strategies` measures each strategy's accuracy after "
        "re-finetuning (`metrics/strategies.csv`).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def write_report(results: pd.DataFrame, bench_dir: Path, out: Path, params, study: Path | None = None,
                 estimators: pd.DataFrame | None = None) -> list[dict]:
    """reports/report.md, its figures and the DVC plot tables; returns the recommendations. ``estimators``:
    :func:`prunequant.sensitivity.estimator_comparison` of the baseline, shown under the sensitivity chart."""
    cpu, gpu = read_bench(bench_dir / "cpu.csv"), read_bench(bench_dir / "gpu.csv")
    # Timings of this model only: CSVs measured on another base.model (say, before a profile) are left out.
    models = set(results.model.dropna())
    stale = sorted({f for f in pd.concat([cpu, gpu]).query("weights == 'trained'").family.dropna() if f not in models})
    cpu_t, gpu_t = (f[(f.weights == "trained") & f.family.isin(models)] for f in (cpu, gpu))
    short, wide = bench_points(cpu_t if len(cpu_t) else gpu_t)
    gpu_short, gpu_wide = bench_points(gpu_t) if len(gpu_t) else (short, wide)
    table = variant_table(results, cpu_t, gpu_t, short, gpu_wide, gpu_short)
    choices = recommend(table, params.report.max_accuracy_drop)
    figures, plot_tables = out / "figures", out / "plots"
    figures.mkdir(parents=True, exist_ok=True)
    plot_tables.mkdir(parents=True, exist_ok=True)
    images = []

    for device, frame in (("cpu", cpu_t), ("gpu", gpu_t)):
        timed = frame.dropna(subset=["latency_ms_p50"])
        if timed.empty:
            continue
        sweep_length = int(timed.groupby("seq_len").batch_size.nunique().idxmax())  # the batch sweep's length
        batch_sweep = timed[timed.seq_len == sweep_length]
        seq_sweep = timed[timed.batch_size == 1]
        for x, rows, what in (("batch_size", batch_sweep, f"batch size, {sweep_length} tokens"),
                              ("seq_len", seq_sweep, "sequence length, batch 1")):
            stem = f"latency_vs_{'batch' if x == 'batch_size' else 'seq'}_{device}"
            plots.latency_plot(rows, x, f"{device.upper()} latency vs {what}", figures / f"{stem}.png")
            write_text(plot_tables / f"{stem}.csv", rows[["variant", "runtime", x, "latency_ms_p50"]].assign(
                variant=lambda t: t.variant + " (" + t.runtime + ")").drop(columns="runtime").to_csv(index=False))
            images.append((f"{device.upper()} latency vs {what}", f"figures/{stem}.png"))
    for column, label, stem in (("cpu_ms", f"CPU latency p50, batch 1 x {short[1]} tokens (ms)", "pareto_cpu_latency"),
                                ("gpu_ms", f"GPU latency p50, batch 1 x {gpu_short[1]} tokens (ms)", "pareto_gpu_latency"),
                                ("size_mb", "size on disk (MB)", "pareto_size")):
        data = table.dropna(subset=[column, "accuracy"])
        if data.empty:
            continue
        plots.pareto_plot(data, column, label, f"Test accuracy vs {label.split(' (')[0]}", figures / f"{stem}.png")
        front = plots.pareto_mask(data[column].to_numpy(float), data.accuracy.to_numpy(float))
        write_text(plot_tables / f"{stem}.csv",
                   data.assign(front=front)[["label", column, "accuracy", "front"]].to_csv(index=False))
        images.append((f"Pareto front: accuracy vs {label}", f"figures/{stem}.png"))

    chosen = [c["variant"] for c in choices if c["variant"]]
    pick = table[((table.precision == "fp32") | table.label.isin(chosen)) & table.accuracy.notna()]
    axes = {"size_mb": "size", "cpu_ms": "CPU latency", "gpu_ms": "GPU latency", "cpu_mem_mb": "CPU peak memory",
            "gpu_mem_mb": "GPU peak memory", "accuracy": "accuracy"}
    axes = {k: v for k, v in axes.items() if pick[k].notna().all() and len(pick)}
    if len(axes) >= 3:
        plots.radar_plot(pick.set_index("label", drop=False), axes, params.report.accuracy_range,
                         params.report.radar_floor, "Variants compared (outer is better)", figures / "radar.png")
        images.insert(0, ("Radar", "figures/radar.png"))

    lo, hi = params.report.accuracy_range
    level = params.evaluate.confidence_level
    text = [
        "# prunequant report",
        "",
        "Generated by `dvc repro` from `metrics/results.csv` and `metrics/bench/*.csv`; do not edit by hand. "
        f"Accuracy is on the test split, in percent with its {100 * level:g}% Wilson interval, measured on the "
        "device each scheme targets (‡ marks a GPU scheme scored with its library's CPU kernels on a machine "
        "without CUDA: `measured_on` and `kernels` in results.csv); the paired test is an exact McNemar test "
        "against the FP32 baseline on the same sentences. "
        f"Latency is the p50 of single calls at batch 1 x {short[1]} tokens (one short sentence) "
        "in the fastest runtime measured, from the best of the benchmark's interleaved rounds (other work on the "
        "machine only ever adds time), with the slowest round's excess as its run-to-run spread; two variants "
        "whose rounds overlap are tied, and the tie goes to accuracy, then size; peak memory is the process's resident-set growth on CPU and the CUDA "
        "allocator's peak on GPU, at that point, in MB (10^6 bytes). N/A: not measured on that device."
        + (f" Benchmark rows of {', '.join(stale)} are left out: they were measured on another model; rerun "
           "`make bench-cpu` / `make bench-gpu`." if stale else ""),
        "",
        "## Recommendation per deployment target",
        "",
        f"The best variant whose test accuracy is at most {params.report.max_accuracy_drop:g} "
        f"point{'' if params.report.max_accuracy_drop == 1 else 's'} below the "
        "baseline's (`report.max_accuracy_drop`).",
        "",
        *[f"- **{c['target']}**: {c['text']}" for c in choices],
        "",
        f"## Results: {', '.join(table.model.dropna().unique())}",
        "",
        results_markdown(table, level),
        "",
        _machine_line(bench_dir, "cpu") + "  ",
        _machine_line(bench_dir, "gpu"),
        "",
        "## Layer sensitivity",
        "",
        "![Layer sensitivity](sensitivity.png)",
        "",
        *(estimators_markdown(estimators, params.prune) if estimators is not None else []),
        "## Figures",
        "",
        f"The radar puts each cost on [{params.report.radar_floor:g}, 1] across the variants shown (best 1) and "
        f"accuracy on [{lo:g}, {hi:g}] (`report.accuracy_range`).",
        "",
        *[f"### {title}\n\n![{title}]({path})\n" for title, path in images],
    ]
    cpu_shapes = read_bench(bench_dir / "cpu-shapes.csv")
    text += depth_section(cpu_shapes[cpu_shapes.weights == "random"], bench_dir / "cpu-shapes.csv", study)
    shapes = pd.concat([cpu, gpu, cpu_shapes, read_bench(bench_dir / "gpu-shapes.csv")])
    shapes = shapes[shapes.weights == "random"].dropna(subset=["latency_ms_p50"])
    if len(shapes):
        text += ["## Architecture shapes with random weights (latency only)", "",
                 summary_table(shapes, short=short, long=(1, int(shapes.seq_len.max())), wide=wide), ""]
    write_text(out / "report.md", "\n".join(text) + "\n")
    return choices


def recommendation_metrics(choices: list[dict]) -> dict:
    """metrics/report.json: per target the chosen variant and its figures (for `dvc metrics diff`)."""
    return {c["target"].lower().replace(" ", "_"): {k: v for k, v in c.items() if k not in ("target", "text")}
            for c in choices}

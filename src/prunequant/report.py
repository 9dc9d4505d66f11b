"""The deployment report: one row per variant with its accuracy and its measured costs, figures, and a
recommendation per deployment target (``reports/report.md``, from ``results.csv`` and the benchmark CSVs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant import plots
from prunequant.benchmarking.table import bench_summary_table, depth_section, spread_text
from prunequant.decision import ALPHA, Choice, fmt_cost, recommend
from prunequant.host import machine_summary
from prunequant.io import write_text
from prunequant.variants import bench_points, read_bench, split_stale, variant_table


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _accuracy_clause(row, alpha: float) -> str:
    """Validation (which chose) then test (reported) accuracy of a variant, each against the baseline."""
    def against(delta, p):
        return f"{100 * delta:+.2f} pts vs the baseline" + ("" if pd.isna(p) else f", McNemar p = {p:.2g}")

    text = f"validation accuracy {_pct(row.val_accuracy)} ({against(row.val_baseline_delta, row.val_baseline_p)}"
    if pd.notna(row.val_source_p) and row.val_reference != "baseline-fp32":
        text += (f"; {100 * row.val_source_delta:+.2f} pts vs its FP32 source {row.val_reference}, "
                 f"p = {row.val_source_p:.2g}, {'significant' if row.val_source_p < alpha else 'not significant'}")
    return text + f"); test accuracy {_pct(row.accuracy)} ({against(row.baseline_delta, row.baseline_p)})"


def _ratio_text(figures: dict, name: str) -> str:
    return (f"{figures['median']:.3f}x {name} (median of {figures['rounds']} paired rounds, interquartile "
            f"{figures['q1']:.3f} to {figures['q3']:.3f}, range {figures['low']:.3f} to {figures['high']:.3f})")


def recommendations_markdown(choices: list, table: pd.DataFrame, alpha: float = ALPHA,
                             stale: tuple[str, ...] = ()) -> list[str]:
    """One bullet per deployment target: the pick with its cost, paired ratios and accuracies, then the reasons.
    ``stale``: the devices whose timings were all or partly left out as stale (said where nothing was chosen)."""
    lines = []
    rows = table.set_index("label", drop=False)
    for choice in choices:
        target = choice.target
        if choice.variant is None:
            device = {"cpu_ms": "cpu", "gpu_ms": "gpu", "gpu_throughput": "gpu"}.get(target.column)
            note = " Timings of rebuilt artifacts were left out as stale (below)." if device in stale else ""
            lines.append(f"- **{target.name}**: {' '.join(choice.reasons)}{note}")
            continue
        row, figures = rows.loc[choice.variant], choice.figures
        cost = fmt_cost(choice.value, target.unit)
        if target.column in ("cpu_ms", "gpu_ms"):
            cost = (f"p50 {cost}, the median of {int(row[f'{target.column[:3]}_rounds'])} rounds "
                    f"({fmt_cost(row[f'{target.column}_best'], 'ms')} to "
                    f"{fmt_cost(row[f'{target.column}_worst'], 'ms')})")
        head = f"**{choice.variant}** ({choice.runtime + ', ' if choice.runtime else ''}{cost}"
        if "ratio_vs_fp32_baseline" in figures:
            head += "; " + _ratio_text(figures["ratio_vs_fp32_baseline"], "the FP32 baseline's time")
        if "ratio_vs_unpruned_int8" in figures:
            peer = figures["ratio_vs_unpruned_int8"]
            head += "; " + _ratio_text(peer, f"the fastest INT8 of the unpruned baseline, {peer['peer']}")
        text = [head + "; " + _accuracy_clause(row, alpha) + ")."]
        if "end_to_end_ms" in figures:
            base = rows.loc["baseline"] if "baseline" in rows.index else None
            text.append(f"One request end to end (text, tokenizer, runtime, label; batch 1 at the same length): "
                        f"{fmt_cost(figures['end_to_end_ms'], 'ms')}"
                        + ("" if base is None or pd.isna(base.cpu_e2e_ms) else
                           f", against {fmt_cost(base.cpu_e2e_ms, 'ms')} for the FP32 baseline") + ".")
        text += list(choice.reasons)
        if choice.runner_up and not choice.tied_with:
            second = rows.loc[choice.runner_up, target.column]
            text.append(f"Runner-up: {choice.runner_up} ({fmt_cost(second, target.unit)}).")
        lines.append(f"- **{target.name}**: {' '.join(text)}")
    return lines


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
        best, worst = row.cpu_ms_best, row.cpu_ms_worst  # both the p50 where no rounds were recorded
        spread = "" if worst == best else f"{spread_text(best, worst)}, "
        return f"{row.cpu_ms:.3f} ({spread}{row.cpu_runtime})"

    def validation(row):
        if pd.isna(row.val_accuracy):
            return "N/A"
        text = f"{100 * row.val_accuracy:.2f}"
        if pd.notna(row.val_source_p):
            text += f"; {100 * row.val_source_delta:+.2f} vs {row.val_reference}, p={row.val_source_p:.2g}, " \
                    f"{row.val_source_verdict}"
        return text

    level = f"{100 * confidence_level:g}% CI"
    header = ["variant", "layers", "size (MB)", f"accuracy on GPU % [{level}]", "latency on GPU (ms)",
              "peak GPU memory (MB)", f"accuracy on CPU % [{level}]",
              "latency on CPU (ms, median of rounds; best-worst round)", "peak CPU memory (MB)",
              "Δ pts vs baseline (McNemar)",
              "validation % (Δ pts vs its FP32 source, McNemar: what the recommendation reads)"]
    measured = table.accuracy.notna() | table.cpu_ms.notna() | table.gpu_ms.notna()
    rows = []
    for row in table[measured].itertuples(index=False):
        gpu_ms = "N/A" if pd.isna(row.gpu_ms) else f"{row.gpu_ms:.3f} ({row.gpu_runtime})"
        rows.append([row.label, str(row.layers), num(row.size_mb, ".1f"), accuracy(row, "cuda"), gpu_ms,
                     num(row.gpu_mem_mb, ".0f"), accuracy(row, "cpu"), latency(row), num(row.cpu_mem_mb, ".0f"),
                     verdict(row), validation(row)])
    lines = [pd.DataFrame(rows, columns=header).to_markdown(
        index=False, disable_numparse=True, colalign=("left",) + ("right",) * 8 + ("left",) * 2)]
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


def _machine_line(folder: Path, name: str) -> str:
    path = folder / f"{name}-machine.json"
    if not path.is_file():
        return f"{name.upper()}: not benchmarked (run `make bench-{name}`)"
    return f"{name.upper()}: timed on {machine_summary(json.loads(path.read_text()))} (`{path}`)"


def stale_lines(stale: dict[str, pd.DataFrame]) -> list[str]:
    """Say which timings were left out because their artifact was rebuilt since, and how to refresh them."""
    lines = []
    for device, rows in stale.items():
        if rows.empty:
            continue
        labels = sorted({s if p == "fp32" else f"{s}-{p}" for s, p in zip(rows.source, rows.precision, strict=True)})
        lines.append(f"**Stale {device.upper()} timings, not shown**: {', '.join(labels)}: the artifact was rebuilt "
                     f"after it was timed (its DVC hash in `metrics/bench/{device}.csv` is not the one results.csv "
                     f"scored). Refresh them with `make bench-{device}`, then `dvc repro report`.")
    return lines + ([""] if lines else [])


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
        pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True),
        "",
    ]


def width_markdown(ffn: pd.DataFrame, seconds: dict, prune) -> list[str]:
    """The report's section on attention heads and FFN neurons: the heat map the sensitivity stage drew, how
    concentrated each layer's FFN scores are, what each score cost, and which one the width cuts use."""
    cuts = [cut.name for cut in prune.cuts if cut.width]
    rows = [[str(int(r.layer)), str(int(r.neurons)), *(f"{100 * r[f'{score}_top{share}']:.0f}%"
                                                        for score in ("gradient", "activation") for share in (25, 50)),
             f"{r.spearman:+.2f}"] for _, r in ffn.iterrows()]
    header = ["layer", "neurons", "gradient: top 25% hold", "top 50%", "activation: top 25% hold", "top 50%",
              "Spearman ρ of the two"]
    cost = ", ".join(f"{name} {seconds[f'{name}_seconds']:.1f} s" for name in ("gradient", "activation")
                     if f"{name}_seconds" in seconds)
    return [
        "### Attention heads and FFN neurons",
        "",
        "Each head and FFN neuron of the baseline scored on the validation split (`metrics/sensitivity-heads.csv`, "
        "one row per layer x head; `metrics/sensitivity-ffn.csv`, per layer): gradient is |dL/dmask| of a mask on "
        "its output (Michel et al. 2019 for heads, the first-order Taylor score for neurons; needs labels), "
        "activation the mean norm of what it adds to the residual stream (label-free). A width cut keeps each "
        f"layer's top-scoring heads and neurons by `prune.width_score: {prune.width_score}`"
        + (f" (in use: {', '.join(f'`pruned-{c}`' for c in cuts)})" if cuts
           else " (no width cut in `prune.keep_layers`)")
        + (f". Cost on this machine: {cost}." if cost else "."),
        "",
        "![Attention-head importance](heads.png)",
        "",
        *([pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True), "",
           "An even spread would put 25% and 50% of a layer's score in its top 25% and 50% of neurons: the more "
           "the top neurons hold, the less a cut of the rest loses.", ""] if len(ffn) else []),
    ]


def write_report(results: pd.DataFrame, bench_dir: Path, out: Path, params, study: Path | None = None,
                 estimators: pd.DataFrame | None = None, width: list[str] | None = None) -> list[Choice]:
    """reports/report.md, its figures and the DVC plot tables; returns the recommendations. ``estimators``:
    :func:`prunequant.sensitivity.estimator_comparison` of the baseline, shown under the sensitivity chart;
    ``width``: :func:`width_markdown`'s lines, after it."""
    cpu, gpu = read_bench(bench_dir / "cpu.csv"), read_bench(bench_dir / "gpu.csv")
    # Timings of this model only: CSVs measured on another base.model (say, before a profile) are left out.
    models = set(results.model.dropna())
    stale = sorted({f for f in pd.concat([cpu, gpu]).query("weights == 'trained'").family.dropna() if f not in models})
    cpu_t, gpu_t = (f[(f.weights == "trained") & f.family.isin(models)] for f in (cpu, gpu))
    (cpu_t, cpu_stale), (gpu_t, gpu_stale) = split_stale(cpu_t, results), split_stale(gpu_t, results)
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
                                ("gpu_ms", f"GPU latency p50, batch 1 x {gpu_short[1]} tokens (ms)",
                                 "pareto_gpu_latency"),
                                ("size_mb", "size on disk (MB)", "pareto_size")):
        data = table.dropna(subset=[column, "accuracy"])
        if data.empty:
            continue
        plots.pareto_plot(data, column, label, f"Test accuracy vs {label.split(' (')[0]}", figures / f"{stem}.png")
        front = plots.pareto_mask(data[column].to_numpy(float), data.accuracy.to_numpy(float))
        write_text(plot_tables / f"{stem}.csv",
                   data.assign(front=front)[["label", column, "accuracy", "front"]].to_csv(index=False))
        images.append((f"Pareto front: accuracy vs {label}", f"figures/{stem}.png"))

    chosen = [c.variant for c in choices if c.variant]
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
        "in the fastest runtime measured: the median of the benchmark's interleaved rounds' p50s, with the best "
        "and the slowest round as its run-to-run spread, and only for the artifact results.csv scored (the same "
        "DVC hash); peak memory is the process's resident-set growth on CPU and the CUDA "
        "allocator's peak on GPU, at that point, in MB (10^6 bytes). N/A: not measured on that device."
        + (f" Benchmark rows of {', '.join(stale)} are left out: they were measured on another model; rerun "
           "`make bench-cpu` / `make bench-gpu`." if stale else ""),
        "",
        "## Recommendation per deployment target",
        "",
        "Chosen on the validation split, reported on the test split. Eligible: a variant whose validation "
        f"accuracy is at most {params.report.max_accuracy_drop:g} "
        f"point{'' if params.report.max_accuracy_drop == 1 else 's'} below the baseline's "
        "(`report.max_accuracy_drop`) and not significantly below its own FP32 source's (exact McNemar, "
        f"p < {ALPHA:g}). Latency: the fastest by the median of its per-round ratio to the FP32 baseline timed in "
        "the same round; another variant is tied with it when the interquartile range of their per-round paired "
        "ratio contains 1 (one outlier round moves neither quartile), and among tied variants the most accurate "
        "on validation, then the smallest, is chosen. The contenders (the fastest eligible variants and the "
        "unpruned model's two fastest INT8) were timed side by side in the benchmark's final rounds "
        "(`bench.final_rounds`), so their ratios rest on more rounds than the others'.",
        "",
        _machine_line(bench_dir, "cpu") + "  ",
        _machine_line(bench_dir, "gpu"),
        "",
        *recommendations_markdown(choices, table, ALPHA, tuple(
            device for device, rows in (("cpu", cpu_stale), ("gpu", gpu_stale)) if len(rows))),
        "",
        *stale_lines({"cpu": cpu_stale, "gpu": gpu_stale}),
        f"## Results: {', '.join(table.model.dropna().unique())}",
        "",
        results_markdown(table, level),
        "",
        "## Layer sensitivity",
        "",
        "![Layer sensitivity](sensitivity.png)",
        "",
        *(estimators_markdown(estimators, params.prune) if estimators is not None else []),
        *(width or []),
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
                 bench_summary_table(shapes, short=short, long=(1, int(shapes.seq_len.max())), wide=wide), ""]
    write_text(out / "report.md", "\n".join(text) + "\n")
    return choices


def recommendation_metrics(choices: list[Choice]) -> dict:
    """metrics/report.json: per target the chosen variant, its runner-up and its figures (for `dvc metrics
    diff`)."""
    return {c.target.name.lower().replace(" ", "_"): {"variant": c.variant} | (
        {"runner_up": c.runner_up, **c.figures} if c.variant else {}) for c in choices}

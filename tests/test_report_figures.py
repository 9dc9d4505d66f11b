"""The report: variant table, recommendation logic on crafted rows, Pareto and radar maths, and that every
figure is written from a small fixed results table and benchmark CSV."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunequant import plots
from prunequant.benchmarking.table import COLUMNS
from prunequant.decision import Ratio, contenders, paired, recommend
from prunequant.report import recommendations_markdown, results_markdown, write_report
from prunequant.results import RESULT_COLUMNS
from prunequant.variants import read_bench, variant_table

from .conftest import all_params

REPO = Path(__file__).resolve().parents[1]


def squeezed(markdown: str) -> str:
    """Markdown with its tables' padding taken out (each run of spaces as one), to assert on whole rows."""
    return re.sub(" +", " ", markdown)


def verdict(p, delta):
    return None if p is None else ("worse" if delta < 0 else "better") if p < 0.05 else "no significant difference"


def result(source, precision, accuracy, size, delta=None, p=None, device="cpu", layers=6, status="ok",
           validation=None):
    """The test and validation rows of one variant: the same figures on both splits unless ``validation`` gives
    that split's (accuracy, delta vs the baseline, p, and optionally delta and p vs its own FP32 source)."""
    reference = None if source == "baseline" and precision == "fp32" else (
        "baseline-fp32" if source == "baseline" or precision == "fp32" else f"{source}-fp32")
    rows = []
    for split in ("validation", "test"):
        acc, d, pv, source_d, source_p = accuracy, delta, p, delta, p
        if split == "validation" and validation:
            acc, d, pv = validation[:3]
            source_d, source_p = validation[3:] if len(validation) > 3 else (d, pv)
        rows.append({
            "variant": source, "model": "minilm-l6", "layers": layers, "precision": precision, "device": device,
            "split": split, "n": 1280, "accuracy": acc, "accuracy_ci_low": None if acc is None else acc - 0.02,
            "accuracy_ci_high": None if acc is None else acc + 0.02, "size_mb": size, "status": status,
            "artifact_md5": None if acc is None else f"{source}-{precision}.dir", "reference": reference,
            "accuracy_delta": source_d, "mcnemar_p": source_p, "verdict": verdict(source_p, source_d or 0),
            "baseline_delta": d, "baseline_p": pv, "baseline_verdict": verdict(pv, d or 0)})
    return rows


def results_frame(*variants):
    return pd.DataFrame([row for rows in variants for row in rows]).reindex(columns=RESULT_COLUMNS)


RESULTS = results_frame(
    result("baseline", "fp32", 0.817, 91.8),
    result("baseline", "onnx-int8-dynamic", 0.819, 24.1, 0.002, 0.71),
    result("baseline", "onnx-int4-weight", 0.811, 15.9, -0.006, 0.28),
    result("pruned-3", "fp32", 0.807, 70.5, -0.010, 0.29, layers=3),
    result("pruned-3", "onnx-int8-dynamic", 0.806, 18.6, -0.011, 0.25, layers=3),
    result("pruned-3", "onnx-int4-weight", 0.795, 12.4, -0.022, 0.01, layers=3),
    result("pruned-3", "fp16", None, None, device="cuda", layers=3, status="n/a: needs CUDA"),
)


def bench_row(variant, precision, runtime, layers, batch, seq, p50, device="cpu", rounds=(1.0, 1.0, 1.0, 1.0, 1.0)):
    """One timed point; ``rounds``: each round's p50 as a multiple of ``p50``, rounds numbered 0, 1, ..."""
    p50s = [p50 * r for r in rounds]
    source = variant.removesuffix("-" + precision) if precision != "fp32" else variant
    return {"variant": variant, "precision": precision, "runtime": runtime, "layers": layers, "device": device,
            "device_name": "test CPU", "batch_size": batch, "seq_len": seq, "latency_ms_p50": float(np.median(p50s)),
            "latency_ms_best": min(p50s), "latency_ms_worst": max(p50s), "round_p50s_ms": ";".join(map(str, p50s)),
            "round_ids": ";".join(str(i) for i in range(len(p50s))), "rounds": len(p50s),
            "latency_ms_p90": p50 * 1.1, "latency_ms_p99": p50 * 1.3, "latency_ms_mean": p50 * 1.05,
            "throughput_per_s": 1000 * batch / min(p50s), "peak_mem_mb": 50.0 + layers, "runs": 100,
            "e2e_ms_p50": p50 + 0.2 if (batch, seq) == (1, 16) else None,
            "weights": "trained", "family": "minilm-l6", "artifact_md5": f"{source}-{precision}.dir", "note": ""}


def bench_frame():
    rows = []
    for variant, precision, runtime, layers, ms in [
        ("baseline", "fp32", "eager", 6, 5.0),
        ("baseline-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 6, 0.7),
        ("baseline-onnx-int4-weight", "onnx-int4-weight", "onnxruntime", 6, 1.6), ("pruned-3", "fp32", "eager", 3, 2.6),
        ("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 3, 0.36),
        ("pruned-3-onnx-int4-weight", "onnx-int4-weight", "onnxruntime", 3, 0.30),
    ]:
        for batch, seq, scale in ((1, 16, 1), (1, 64, 2), (4, 64, 5), (16, 64, 15)):
            rows.append(bench_row(variant, precision, runtime, layers, batch, seq, ms * scale))
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def bench_dir(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    bench_frame().to_csv(folder / "cpu.csv", index=False)
    (folder / "gpu.csv").write_text(",".join(COLUMNS) + "\n")  # bench-gpu on a machine without CUDA
    return folder


def table_from(bench_dir):
    cpu, gpu = read_bench(bench_dir / "cpu.csv"), read_bench(bench_dir / "gpu.csv")
    return variant_table(RESULTS, cpu, gpu, (1, 16), (16, 64))


def test_variant_table_joins_accuracy_and_costs(bench_dir):
    table = table_from(bench_dir).set_index("label")
    assert table.loc["pruned-3-onnx-int8-dynamic", "cpu_ms"] == 0.36
    assert table.loc["pruned-3-onnx-int8-dynamic", "cpu_runtime"] == "onnxruntime"
    assert table.loc["pruned-3-onnx-int8-dynamic", "cpu_mem_mb"] == 53.0
    assert table.loc["baseline", "baseline_delta"] == 0.0
    assert table[["gpu_ms", "gpu_throughput"]].isna().all().all()  # no GPU rows
    assert np.isnan(table.loc["pruned-3-fp16", "cpu_ms"])


def picks(table, drop, **kwargs):
    return {c.target.name: c for c in recommend(table, max_drop_points=drop, **kwargs)}


def lines(table, drop):
    """The rendered recommendation, one line per target, by target name."""
    return {line.split("**")[1]: line for line in recommendations_markdown(recommend(table, drop), table)}


def test_recommendation_respects_the_accuracy_budget_on_validation(bench_dir):
    table = table_from(bench_dir)
    choices, text = picks(table, 1.0), lines(table, 1.0)
    # pruned-3-onnx-int4-weight is fastest and smallest but loses 2.2 points: not eligible.
    assert choices["CPU latency"].variant == "baseline-onnx-int8-dynamic"
    assert "p50 0.700 ms" in text["CPU latency"]
    assert "0.140x the FP32 baseline's time (median of 5 paired rounds" in text["CPU latency"]
    assert ("validation accuracy 81.90% (+0.20 pts vs the baseline, McNemar p = 0.71); test accuracy 81.90% "
            in text["CPU latency"])
    assert "Skipped although faster: pruned-3-onnx-int4-weight (0.300 ms), -2.20 pts vs the baseline on " \
           "validation, beyond the 1-point budget." in text["CPU latency"]
    assert choices["Smallest on disk"].variant == "baseline-onnx-int4-weight"
    assert choices["GPU latency"].variant is None
    assert text["GPU latency"].endswith("N/A: no variant was measured there.")
    looser = picks(table, 1.2)
    assert looser["CPU latency"].variant == "pruned-3-onnx-int8-dynamic"
    assert looser["CPU latency"].runner_up != "pruned-3"
    # within a 3-point budget the 4-bit variant is still skipped: it is significantly below its own FP32 source
    widest, text = picks(table, 3.0), lines(table, 3.0)
    assert widest["CPU latency"].variant == "pruned-3-onnx-int8-dynamic"
    assert ("pruned-3-onnx-int4-weight (0.300 ms), significantly below its FP32 source pruned-3-fp32 on validation "
            "(-2.20 pts, McNemar p = 0.01)") in text["CPU latency"]


def test_the_choice_reads_validation_never_test():
    """Two variants, the faster one better on test; on validation it is significantly below its FP32 source (as
    pruned-3-onnx-int8-static was, -2.34 points, p = 7.3e-5): it is skipped, and the report says why."""
    results = results_frame(
        result("baseline", "fp32", 0.818, 91.8),
        result("pruned-3", "fp32", 0.816, 70.5, -0.002, 0.86, layers=3),
        result("pruned-3", "onnx-int8-static", 0.819, 18.6, 0.001, 1.0, layers=3,
               validation=(0.826, -0.008, 0.3, -0.0234, 7.3e-5)),
        result("pruned-3", "onnx-int8-dynamic", 0.814, 18.6, -0.004, 0.6, layers=3))
    cpu = pd.DataFrame([bench_row("baseline", "fp32", "eager", 6, 1, 16, 5.0),
                        bench_row("pruned-3-onnx-int8-static", "onnx-int8-static", "onnxruntime", 3, 1, 16, 0.30),
                        bench_row("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 3, 1, 16, 0.36)],
                       columns=COLUMNS).assign(source=lambda f: ["baseline", "pruned-3", "pruned-3"])
    table = variant_table(results, cpu, read_bench(Path("/nonexistent")), (1, 16), (16, 64))
    (choice,) = [c for c in recommend(table, 1.0) if c.target.name == "CPU latency"]
    assert choice.variant == "pruned-3-onnx-int8-dynamic"
    assert choice.figures["validation_accuracy"] == 0.814 and choice.figures["accuracy"] == 0.814
    assert any("pruned-3-onnx-int8-static (0.300 ms), significantly below its FP32 source pruned-3-fp32 on "
               "validation (-2.34 pts, McNemar p = 7.3e-05)" in reason for reason in choice.reasons)
    # the same rows with the validation loss not significant: the faster one wins
    results.loc[(results.precision == "onnx-int8-static") & (results.split == "validation"), "mcnemar_p"] = 0.2
    table = variant_table(results, cpu, read_bench(Path("/nonexistent")), (1, 16), (16, 64))
    assert next(c for c in recommend(table, 1.0) if c.target.name == "CPU latency").variant == \
        "pruned-3-onnx-int8-static"


def test_gpu_schemes_are_never_the_cpu_pick_and_the_smallest_gpu_variant_is_named(bench_dir):
    """A GPU scheme scored (and even timed) on a CPU is not a CPU deployment; a GPU user still learns which
    variant is smallest for a GPU."""
    fp4 = result("pruned-3", "bnb-fp4", 0.810, 27.9, -0.007, 0.5, device="cuda", layers=3)  # as small, less accurate
    nf4 = result("pruned-3", "bnb-nf4", 0.812, 27.9, -0.005, 0.6, device="cuda", layers=3)
    results = pd.concat([RESULTS, results_frame(fp4, nf4)])
    cpu = pd.concat([bench_frame(), pd.DataFrame([bench_row("pruned-3-bnb-nf4", "bnb-nf4", "eager", 3, 1, 16, 0.1)])])
    cpu["source"] = [v.removesuffix("-" + p) for v, p in zip(cpu.variant, cpu.precision, strict=True)]
    table = variant_table(results, cpu, read_bench(bench_dir / "gpu.csv"), (1, 16), (16, 64))
    choices, text = picks(table, 1.0), lines(table, 1.0)
    assert table.set_index("label").loc["pruned-3-bnb-nf4", "cpu_ms"] == 0.1  # the fastest CPU timing of all
    assert choices["CPU latency"].variant == "baseline-onnx-int8-dynamic"
    assert choices["Smallest on disk"].variant == "baseline-onnx-int4-weight"
    assert ("Smallest GPU variant: pruned-3-bnb-nf4 (27.9 MB, validation accuracy 81.20%, test 81.20%)"
            in text["Smallest on disk"])


def paired_rows(ratios_a, ratios_b, accuracy=(0.80, 0.81)):
    """Two CPU variants with their per-round ratios to the FP32 reference (rounds 0, 1, ...)."""
    maps = [dict(enumerate(ratios_a)), dict(enumerate(ratios_b))]
    return pd.DataFrame({
        "label": ["a", "b"], "source": ["x", "y"], "precision": ["fp32", "fp32"], "device": ["cpu"] * 2,
        "accuracy": list(accuracy), "val_accuracy": list(accuracy), "baseline_delta": [0.0, 0.0],
        "val_baseline_delta": [0.0, 0.0], "val_source_p": [None, None], "val_source_delta": [None, None],
        "val_reference": [None, None], "cpu_paired": maps,
        "cpu_rank": [float(np.median(r)) for r in (ratios_a, ratios_b)],
        "cpu_ms": [10 * float(np.median(ratios_a)), 10 * float(np.median(ratios_b))], "cpu_runtime": ["eager"] * 2,
        "gpu_ms": [None, None], "gpu_throughput": [None, None], "size_mb": [10.0, 20.0]})


@pytest.mark.parametrize("ratios, tied", [
    ([0.93, 0.94, 0.92, 0.93, 1.30], False),  # faster in 4 of 5 rounds: one slow round does not make a tie
    ([1.01, 0.99, 1.00, 1.02, 0.50], True),  # level in 4 of 5: one fast round does not break the tie
    ([0.97, 1.01, 0.98, 1.02, 0.99], True),
    ([1.05, 1.06, 1.04, 1.07, 1.05], False),
    ([1.04], True), ([1.06], False),  # one round: within 5% is a tie
])
def test_the_tie_rule_reads_the_interquartile_range_of_the_paired_ratios(ratios, tied):
    assert Ratio.of(ratios).tied() is tied


def test_a_latency_win_needs_paired_rounds_that_do_not_straddle_parity_else_accuracy_then_size_decide():
    a = [0.100, 0.100, 0.100, 0.100, 0.100]
    faster = [0.093, 0.094, 0.092, 0.093, 0.130]  # the case: one slow round of the faster one
    (choice, *_) = recommend(paired_rows(a, faster, accuracy=(0.82, 0.80)), 1.0)
    assert choice.variant == "b" and choice.runner_up == "a" and not choice.tied_with
    level = [0.101, 0.099, 0.101, 0.102, 0.050]  # level with a but for one fast outlier round of b
    (choice, *_) = recommend(paired_rows(a, level, accuracy=(0.80, 0.82)), 1.0)
    assert choice.variant == "b" and choice.tied_with == ("a",)  # tied: the more accurate on validation
    assert "Tied on speed with a: a takes 0.990x its time per round (interquartile range 0.990 to 1.010" \
        in choice.reasons[0]
    assert choice.figures["tied_with"]["a"] | {"rounds": 5} == {"median": 0.9901, "q1": 0.9901, "q3": 1.0101,
                                                               "low": 0.9804, "high": 2.0, "rounds": 5}
    (choice, *_) = recommend(paired_rows(a, level, accuracy=(0.80, 0.80)), 1.0)
    assert choice.variant == "a"  # equal accuracy: the smaller (10 MB against 20 MB)
    assert recommend(paired_rows(a, [r * 1.2 for r in a]), 1.0)[0].variant == "a"  # slower in every round
    assert paired({0: 1.0, 1: 2.0, 5: 4.0}, {1: 1.0, 5: 2.0, 7: 9.0}).median == 2.0  # the rounds both have


def test_pareto_mask():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 0.5])
    accuracy = np.array([0.80, 0.85, 0.84, 0.85, 0.70])
    assert plots.pareto_mask(cost, accuracy).tolist() == [True, True, False, True, True]


def test_radar_normalisation():
    frame = pd.DataFrame({"size_mb": [100.0, 50.0, 10.0], "accuracy": [0.84, 0.80, 0.70]})
    scores = plots.radar_scores(frame, {"size_mb": "size", "accuracy": "accuracy"}, (0.76, 0.84), 0.1)
    assert scores.size_mb.tolist() == pytest.approx([0.1, 0.6, 1.0])  # cost inverted: smallest is best
    assert scores.accuracy.tolist() == pytest.approx([1.0, 0.55, 0.1])  # clipped below the range


def test_results_markdown_says_na_and_lists_variants_measured_nowhere(bench_dir):
    text = results_markdown(table_from(bench_dir), 0.95)
    row = next(line for line in squeezed(text).splitlines() if line.startswith("| pruned-3-onnx-int8-dynamic |"))
    assert ("| N/A | N/A | N/A | 80.60 [78.60, 82.60] | 0.360 (onnxruntime) | 53 "
            "| -1.10, p=0.25, no significant difference |") in row
    assert "Not measured here (n/a: needs CUDA): pruned-3-fp16." in text


def test_write_report_writes_every_section_and_figure(bench_dir, tmp_path):
    params = all_params()
    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, params)
    report = (out / "report.md").read_text()
    for heading in ("## Recommendation per deployment target", "## Results: minilm-l6", "## Layer sensitivity",
                    "### Radar", "### CPU latency vs batch size", "### Pareto front: accuracy vs size on disk"):
        assert heading in report
    assert "GPU: not benchmarked (run `make bench-gpu`)" in report and "CPU: not benchmarked" in report
    for name in ("radar", "latency_vs_batch_cpu", "latency_vs_seq_cpu", "pareto_cpu_latency", "pareto_size"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (out / "figures" / "pareto_gpu_latency.png").exists()  # no GPU timings, no GPU figure
    sweep = pd.read_csv(out / "plots" / "latency_vs_batch_cpu.csv")
    assert list(sweep.columns) == ["variant", "batch_size", "latency_ms_p50"]
    assert sweep.variant.nunique() == 6
    pareto = pd.read_csv(out / "plots" / "pareto_size.csv")
    assert pareto.set_index("label").front.to_dict()["pruned-3-onnx-int4-weight"]  # smallest: on the front


def test_recommendation_metrics_for_dvc_metrics_diff(bench_dir):
    from prunequant.report import recommendation_metrics

    metrics = recommendation_metrics(recommend(table_from(bench_dir), max_drop_points=1.0))
    cpu = metrics["cpu_latency"]
    assert (cpu["variant"], cpu["cpu_ms"], cpu["accuracy"], cpu["validation_accuracy"]) == (
        "baseline-onnx-int8-dynamic", 0.7, 0.819, 0.819)
    assert cpu["ratio_vs_fp32_baseline"]["median"] == 0.14 and cpu["end_to_end_ms"] == pytest.approx(0.9)
    assert metrics["gpu_latency"] == {"variant": None}
    assert "tied_with" not in cpu  # 0.7 ms against 0.36 ms and slower: no tie
    assert metrics["smallest_on_disk"]["size_mb"] == 15.9


def test_gpu_rows_fill_the_gpu_columns_figures_and_targets(bench_dir, tmp_path):
    rows = []
    for variant, precision, layers, eager, graph in [("baseline", "fp32", 6, 6.0, 1.2),
                                                     ("pruned-3", "fp32", 3, 3.2, 0.6)]:
        for runtime, ms in (("eager", eager), ("cudagraph", graph)):
            for batch, seq, scale in ((1, 16, 1), (1, 128, 1.5), (8, 128, 3), (64, 128, 12)):
                rows.append({**bench_row(variant, precision, runtime, layers, batch, seq, ms * scale, device="cuda"),
                             "device_name": "Test GPU"})
    pd.DataFrame(rows, columns=COLUMNS).to_csv(bench_dir / "gpu.csv", index=False)
    out = tmp_path / "reports"
    choices = {c.target.name: c for c in write_report(RESULTS, bench_dir, out, all_params())}
    assert choices["GPU latency"].variant == "pruned-3"  # 1.0 points down: just within the budget
    assert choices["GPU latency"].value == 0.6 and choices["GPU latency"].runtime == "cudagraph"
    assert choices["GPU throughput"].value == pytest.approx(64 * 1000 / (0.6 * 12), rel=1e-3)
    report = (out / "report.md").read_text()
    assert "| baseline | 6 | 91.8 | N/A | 1.200 (cudagraph) |" in squeezed(report)
    for name in ("latency_vs_batch_gpu", "latency_vs_seq_gpu", "pareto_gpu_latency"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    sweep = pd.read_csv(out / "plots" / "latency_vs_batch_gpu.csv")
    assert sorted(sweep.batch_size.unique()) == [1, 8, 64]  # the GPU's own batch sweep, at 128 tokens


def test_timings_of_another_model_are_left_out_and_said(bench_dir, tmp_path):
    frame = pd.read_csv(bench_dir / "cpu.csv").assign(family="bert-base-uncased")
    frame.to_csv(bench_dir / "cpu.csv", index=False)
    out = tmp_path / "reports"
    choices = {c.target.name: c for c in write_report(RESULTS, bench_dir, out, all_params())}
    assert choices["CPU latency"].variant is None
    assert "Benchmark rows of bert-base-uncased are left out" in (out / "report.md").read_text()


def write_shape_rows(bench_dir, family: str, rows, slowest: float = 1.2) -> None:
    """metrics/bench/cpu-shapes.csv with random-weight rows at 1 x 128: (variant, precision, runtime, layers, ms of
    the best of two rounds; the other is ``slowest`` times it)."""
    rows = [{**bench_row(variant, precision, runtime, layers, 1, 128, ms), "family": family, "weights": "random",
             "latency_ms_best": ms, "latency_ms_worst": ms * slowest, "round_p50s_ms": f"{ms};{ms * slowest}",
             "round_ids": "0;1"} for variant, precision, runtime, layers, ms in rows]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(bench_dir / "cpu-shapes.csv", index=False)


def test_the_report_sets_the_shapes_depth_comparison_next_to_the_study(bench_dir, tmp_path):
    write_shape_rows(bench_dir, "bert-large-uncased", [
        ("bert-large-uncased", "fp32", "eager", 24, 400.0),
        ("bert-large-uncased:16", "fp32", "eager", 16, 270.0),
        ("bert-large-uncased:16-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 16, 40.0)])
    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, all_params(), REPO / "docs" / "study-cpu.csv")
    report = (out / "report.md").read_text()
    assert ("## Depth and INT8 on the bert-base and bert-large shapes "
            "(CPU, random weights, batch 1 x 128 tokens)") in report
    # the ratio of best rounds, and per round 40/400 and 48/480: both 0.1
    assert ("| bert-large-uncased (24 layers) | 400.00 | 16 layers, onnx-int8-dynamic (onnxruntime) | 40.00 "
            "| 0.100 (0.100-0.100) | 420.02 -> 144.11 ms = 0.34x |") in report


def test_a_width_cut_shape_gets_its_own_row_and_never_stands_in_for_the_depth_cut(bench_dir, tmp_path):
    write_shape_rows(bench_dir, "bert-base-uncased", [
        ("bert-base-uncased", "fp32", "eager", 12, 100.0),
        ("bert-base-uncased:8-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 8, 11.0),
        ("bert-base-uncased:8-w50-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 8, 6.0)], slowest=1.0)
    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, all_params())
    report = (out / "report.md").read_text()
    assert ("| bert-base-uncased (12 layers) | 100.00 | 8 layers, onnx-int8-dynamic (onnxruntime) | 11.00 "
            "| 0.110") in report
    assert ("| bert-base-uncased (12 layers) | 100.00 | 8 layers at 50% of the attention heads and FFN neurons "
            "(8-w50), onnx-int8-dynamic (onnxruntime) | 6.00 | 0.060") in report


def test_the_report_shows_the_head_heat_map_and_the_ffn_summary(bench_dir, tmp_path):
    from prunequant.report import width_markdown

    ffn = pd.DataFrame({"layer": [0, 1], "neurons": [1536, 1536], "gradient_top25": [0.45, 0.5],
                        "gradient_top50": [0.7, 0.74], "activation_top25": [0.4, 0.39],
                        "activation_top50": [0.64, 0.63], "spearman": [0.32, 0.58]})
    params = all_params(prune={"keep_layers": [4, "4-w50"], "width_score": "activation"})
    lines = width_markdown(ffn, {"gradient_seconds": 11.3, "activation_seconds": 5.8}, params.prune)
    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, params, width=lines)
    report = (out / "report.md").read_text()
    assert "![Attention-head importance](heads.png)" in report
    assert "by `prune.width_score: activation` (in use: `pruned-4-w50`). Cost on this machine: gradient 11.3 s, " \
           "activation 5.8 s." in report
    assert "| 1 | 1536 | 50% | 74% | 39% | 63% | +0.58 |" in squeezed(report)


def test_the_cpu_pick_is_set_against_the_fastest_off_the_shelf_int8_of_the_unpruned_model(bench_dir):
    table = table_from(bench_dir)
    assert picks(table, 1.5)["CPU latency"].variant == "pruned-3-onnx-int8-dynamic"  # the 4-bit one loses 2.2 pts
    assert ("0.514x the fastest INT8 of the unpruned baseline, baseline-onnx-int8-dynamic (median of 5 paired "
            "rounds") in lines(table, 1.5)["CPU latency"]  # 0.36 / 0.7
    assert picks(table, 1.0)["CPU latency"].variant == "baseline-onnx-int8-dynamic"
    assert "the fastest INT8 of the unpruned" not in lines(table, 1.0)["CPU latency"]
    # one request end to end next to the FP32 baseline's
    assert "One request end to end (text, tokenizer, runtime, label; batch 1 at the same length): 0.560 ms, " \
        "against 5.200 ms for the FP32 baseline." in lines(table, 1.5)["CPU latency"]


def test_the_final_rounds_contenders_are_the_fastest_eligible_on_validation_and_the_unpruned_int8_peer(bench_dir):
    """decision.contenders: what the benchmark times again side by side. The 4-bit pruned model is the fastest but
    not eligible; the two fastest INT8 of the unpruned model are timed too, since the pick is compared with the
    faster of them (a 4-bit one is no INT8 peer)."""
    table = table_from(bench_dir)
    table = pd.concat([table, table[table.label == "baseline-onnx-int8-dynamic"].assign(
        precision="onnx-int8-static", label="baseline-onnx-int8-static", cpu_ms=0.9, cpu_rank=0.18)],
        ignore_index=True)
    peers = ["baseline-onnx-int8-dynamic", "baseline-onnx-int8-static"]
    assert contenders(table, "cpu_ms", 1.5, 1) == ["pruned-3-onnx-int8-dynamic", *peers]
    assert contenders(table, "cpu_ms", 1.5, 2) == ["pruned-3-onnx-int8-dynamic", *peers]
    assert contenders(table, "cpu_ms", 1.5, 4) == ["pruned-3-onnx-int8-dynamic", *peers, "baseline-onnx-int4-weight"]
    assert contenders(table, "cpu_ms", 1.0, 1) == peers  # the pick is a peer itself
    assert contenders(table, "gpu_ms", 1.0, 4) == []  # nothing timed on a GPU


def test_the_report_compares_the_label_free_estimators_with_skip_and_re_score(bench_dir, tmp_path):
    """Crafted scores: block influence ([CLS]) ranks the layers as ablation does; over every token it ranks them
    backwards; the angular distance of the block 1..2 is the smallest of length 2."""
    from prunequant.layer_choice import estimator_comparison

    table = pd.DataFrame({"layer": range(4), "removal_order": [3, 0, 1, 2],
                          "block_influence_cls": [0.9, 0.1, 0.2, 0.3], "block_influence_mean": [0.1, 0.9, 0.8, 0.7],
                          "angular_cls": [0.5, 0.2, 0.3, 0.4], "angular_mean": [0.5, 0.2, 0.3, 0.4]})
    blocks = pd.DataFrame([{"start": s, "length": n, "angular_cls": 0.1 if (s, n) == (1, 2) else 0.5 + s,
                            "angular_mean": 0.5} for n in (1, 2, 3) for s in range(5 - n)])
    seconds = {"ablation_seconds": 12.0, "hidden_states_seconds": 1.5}
    frame = estimator_comparison(table, blocks, seconds, [3, 2, 9])  # 9: more than the model has, left out
    assert frame.set_index(["strategy", "pooling"])["spearman"].to_dict() == pytest.approx({
        ("sensitivity", ""): 1.0, ("block-influence", "mean"): -1.0, ("block-influence", "cls"): 1.0,
        ("angular", "mean"): 1.0, ("angular", "cls"): 1.0})
    by = frame.set_index(["strategy", "pooling"])
    assert by.loc[("sensitivity", ""), 3] == [1] and by.loc[("sensitivity", ""), 2] == [1, 2]
    assert by.loc[("block-influence", "mean"), 3] == [0] and by.loc[("block-influence", "mean"), 2] == [0, 3]
    assert by.loc[("angular", "cls"), 2] == [1, 2] and by.loc[("angular", "mean"), 2] == [0, 1]  # tie: earliest
    assert 9 not in frame.columns

    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, all_params(prune={"strategy": "angular"}), estimators=frame)
    report = (out / "report.md").read_text()
    assert ("| block influence | `block-influence`, `pooling: mean` | mean over tokens | no | 1.5 | -1.00 (p=0.00) "
            "| [0] | [0, 3] |") in squeezed(report)
    assert "| skip and re-score | `sensitivity` | | yes | 12.0 | 1 (itself) | [1] | [1, 2] |" in squeezed(report)
    assert "In use: `prune.strategy: angular` with `prune.pooling: cls`" in report
    assert "drops for 4 → 3 | drops for 4 → 2 |" in squeezed(report) and "ranks the baseline's 4 layers" in report


def test_a_rebuilt_artifact_s_timing_is_reported_stale_never_as_current(bench_dir, tmp_path):
    """The timing belongs to the folder of the DVC hash it recorded: once `dvc repro` rebuilds that folder (and
    results.csv scores the new build), the old timing is left out and named stale, with the refreshing command."""
    from prunequant.fingerprint import folder_md5

    folder = tmp_path / "models" / "quantized" / "pruned-3-onnx-int8-dynamic"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"the first build")
    is_it = (RESULTS.variant == "pruned-3") & (RESULTS.precision == "onnx-int8-dynamic")
    results = RESULTS.copy()
    results.loc[is_it, "artifact_md5"] = folder_md5(folder)
    cpu = bench_frame()
    cpu.loc[cpu.variant == "pruned-3-onnx-int8-dynamic", "artifact_md5"] = folder_md5(folder)
    cpu.to_csv(bench_dir / "cpu.csv", index=False)
    params, out = all_params(report={"max_accuracy_drop": 1.2}), tmp_path / "reports"
    (cpu_pick, *_) = write_report(results, bench_dir, out, params)
    assert cpu_pick.variant == "pruned-3-onnx-int8-dynamic" and "Stale" not in (out / "report.md").read_text()

    (folder / "model.onnx").write_bytes(b"the second build")  # rebuilt: scored again, not timed again
    results.loc[is_it, "artifact_md5"] = folder_md5(folder)
    (cpu_pick, *_) = write_report(results, bench_dir, out, params)
    report = (out / "report.md").read_text()
    assert cpu_pick.variant == "baseline-onnx-int8-dynamic"
    cpu.assign(artifact_md5="an earlier build").to_csv(bench_dir / "cpu.csv", index=False)  # every artifact rebuilt
    (cpu_pick, *_) = write_report(results, bench_dir, out, params)
    assert cpu_pick.variant is None and ("N/A: no variant was measured there. Timings of rebuilt artifacts were left "
                                         "out as stale (below).") in (out / "report.md").read_text()
    cpu.to_csv(bench_dir / "cpu.csv", index=False)
    (cpu_pick, *_) = write_report(results, bench_dir, out, params)
    report = (out / "report.md").read_text()
    assert ("**Stale CPU timings, not shown**: pruned-3-onnx-int8-dynamic: the artifact was rebuilt after it was "
            "timed") in report and "Refresh them with `make bench-cpu`" in report
    row = next(line for line in squeezed(report).splitlines() if line.startswith("| pruned-3-onnx-int8-dynamic |"))
    assert "0.360" not in row and "| N/A |" in row
    assert "pruned-3-onnx-int8-dynamic" not in pd.read_csv(out / "plots" / "pareto_cpu_latency.csv").label.tolist()


def test_the_report_says_which_machine_timed_it(bench_dir, tmp_path):
    from prunequant.host import machine_info

    flags = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "hypervisor"}  # an AMD EPYC: no AMX
    info = machine_info("cpu", 2, steal=0.4, flags=flags) | {"cpu": "AMD EPYC", "cores": 2}
    (bench_dir / "cpu-machine.json").write_text(__import__("json").dumps(info))
    write_report(RESULTS, bench_dir, tmp_path / "reports", all_params())
    report = (tmp_path / "reports" / "report.md").read_text()
    assert ("CPU: timed on AMD EPYC, 2 cores (2 threads), AVX2, AVX-512 F/VNNI/BF16, no AMX, virtual machine "
            "(steal 0.4% during the run); torch ") in report
    assert report.index("timed on AMD EPYC") < report.index("- **CPU latency**")  # beside the recommendation

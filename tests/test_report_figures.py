"""The report: variant table, recommendation logic on crafted rows, Pareto and radar maths, and that every
figure is written from a small fixed results table and benchmark CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunequant import plots
from prunequant.bench_table import COLUMNS
from prunequant.check import Params
from prunequant.results import RESULT_COLUMNS
from prunequant.report import ReportConfig, read_bench, recommend, results_markdown, variant_table, write_report

REPO = Path(__file__).resolve().parents[1]


def result(source, precision, accuracy, size, delta=None, p=None, device="cpu", layers=6, status="ok"):
    return {"variant": source, "model": "minilm-l6", "layers": layers, "precision": precision, "device": device,
            "split": "test", "n": 1280, "accuracy": accuracy,
            "accuracy_ci_low": None if accuracy is None else accuracy - 0.02,
            "accuracy_ci_high": None if accuracy is None else accuracy + 0.02, "size_mb": size, "status": status,
            "reference": None if source == "baseline" and precision == "fp32" else "baseline-fp32",
            "baseline_delta": delta, "baseline_p": p,
            "baseline_verdict": None if p is None else ("worse" if p < 0.05 else "no significant difference")}


RESULTS = pd.DataFrame([
    result("baseline", "fp32", 0.817, 91.8),
    result("baseline", "onnx-int8-dynamic", 0.819, 24.1, 0.002, 0.71),
    result("baseline", "onnx-int4-weight", 0.811, 15.9, -0.006, 0.28),
    result("pruned-3", "fp32", 0.807, 70.5, -0.010, 0.29, layers=3),
    result("pruned-3", "onnx-int8-dynamic", 0.806, 18.6, -0.011, 0.25, layers=3),
    result("pruned-3", "onnx-int4-weight", 0.795, 12.4, -0.022, 0.01, layers=3),
    result("pruned-3", "fp16", None, None, device="cuda", layers=3, status="n/a: needs CUDA"),
]).reindex(columns=RESULT_COLUMNS)


def bench_row(variant, precision, runtime, layers, batch, seq, p50, device="cpu"):
    return {"variant": variant, "precision": precision, "runtime": runtime, "layers": layers, "device": device,
            "device_name": "test CPU", "batch_size": batch, "seq_len": seq, "latency_ms_p50": p50,
            "latency_ms_p90": p50 * 1.1, "latency_ms_p99": p50 * 1.3, "latency_ms_mean": p50 * 1.05,
            "throughput_per_s": 1000 * batch / p50, "peak_mem_mb": 50.0 + layers, "runs": 100,
            "weights": "trained", "family": "minilm-l6", "note": ""}


def bench_frame():
    rows = []
    for variant, precision, runtime, layers, ms in [
        ("baseline", "fp32", "eager", 6, 5.0), ("baseline-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 6, 0.7),
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


def test_recommendation_respects_the_accuracy_budget(bench_dir):
    table = table_from(bench_dir)
    choices = {c["target"]: c for c in recommend(table, max_drop_points=1.0)}
    # pruned-3-onnx-int4-weight is fastest and smallest but loses 2.2 points: not eligible.
    assert choices["CPU latency"]["variant"] == "baseline-onnx-int8-dynamic"
    assert "0.700 ms" in choices["CPU latency"]["text"] and "0.140x the FP32 baseline" in choices["CPU latency"]["text"]
    assert "not significant (McNemar p = 0.71)" in choices["CPU latency"]["text"]
    assert choices["Smallest on disk"]["variant"] == "baseline-onnx-int4-weight"
    assert choices["GPU latency"]["variant"] is None and choices["GPU latency"]["text"].startswith("N/A")
    looser = {c["target"]: c for c in recommend(table, max_drop_points=1.2)}
    assert looser["CPU latency"]["variant"] == "pruned-3-onnx-int8-dynamic"
    assert "Runner-up: pruned-3-fp32" not in looser["CPU latency"]["text"]
    widest = {c["target"]: c for c in recommend(table, max_drop_points=3.0)}
    assert widest["CPU latency"]["variant"] == "pruned-3-onnx-int4-weight"
    assert "significant (McNemar p = 0.01)" in widest["CPU latency"]["text"]


def test_gpu_schemes_are_never_the_cpu_pick_and_the_smallest_gpu_variant_is_named(bench_dir):
    """A GPU scheme scored (and even timed) on a CPU is not a CPU deployment; a GPU user still learns which
    variant is smallest for a GPU."""
    fp4 = result("pruned-3", "bnb-fp4", 0.810, 27.9, -0.007, 0.5, device="cuda", layers=3)  # as small, less accurate
    nf4 = result("pruned-3", "bnb-nf4", 0.812, 27.9, -0.005, 0.6, device="cuda", layers=3)
    results = pd.concat([RESULTS, pd.DataFrame([fp4, nf4]).reindex(columns=RESULT_COLUMNS)])
    cpu = pd.concat([bench_frame(), pd.DataFrame([bench_row("pruned-3-bnb-nf4", "bnb-nf4", "eager", 3, 1, 16, 0.1)])])
    cpu["source"] = [v.removesuffix("-" + p) for v, p in zip(cpu.variant, cpu.precision, strict=True)]
    table = variant_table(results, cpu, read_bench(bench_dir / "gpu.csv"), (1, 16), (16, 64))
    choices = {c["target"]: c for c in recommend(table, max_drop_points=1.0)}
    assert table.set_index("label").loc["pruned-3-bnb-nf4", "cpu_ms"] == 0.1  # the fastest CPU timing of all
    assert choices["CPU latency"]["variant"] == "baseline-onnx-int8-dynamic"
    assert choices["Smallest on disk"]["variant"] == "baseline-onnx-int4-weight"
    assert "Smallest GPU variant: pruned-3-bnb-nf4 (27.9 MB, test accuracy 81.20%, -0.50 pts)" in (
        choices["Smallest on disk"]["text"])


def timed_pair(b_best, *, rounds=5, accuracy=(0.80, 0.81)):
    """Two CPU variants: a is fastest at its best round (1.00 ms, slowest round 1.10 ms); b as given."""
    return pd.DataFrame({"label": ["a", "b"], "source": ["x", "y"], "precision": ["fp32", "fp32"],
                         "device": ["cpu"] * 2, "accuracy": list(accuracy), "baseline_delta": [0.0, 0.0],
                         "baseline_p": [None, None], "cpu_ms": [1.00, b_best], "cpu_ms_worst": [1.10, b_best * 1.1],
                         "cpu_rounds": [rounds, rounds], "cpu_runtime": ["eager", "eager"], "gpu_ms": [None, None],
                         "gpu_throughput": [None, None], "size_mb": [10.0, 20.0]})


def test_a_latency_win_needs_rounds_that_do_not_overlap_else_accuracy_then_size_decide():
    tied = recommend(timed_pair(1.05), 1.0)[0]  # b's best round (1.05) is inside a's spread (1.00 to 1.10)
    assert tied["variant"] == "b"  # the more accurate of the two
    assert "Tied within run-to-run spread with a (1.000 ms): the rounds of the fastest reach 1.100 ms" in tied["text"]
    assert "**b** (eager, 1.050 ms, best of 5 rounds, slowest +10%" in tied["text"]
    clear = recommend(timed_pair(1.20), 1.0)[0]  # no overlap: the faster wins, whatever its accuracy
    assert clear["variant"] == "a" and "Runner-up: b (1.200 ms)" in clear["text"] and "Tied" not in clear["text"]
    same = recommend(timed_pair(1.05, accuracy=(0.80, 0.80)), 1.0)[0]
    assert same["variant"] == "a"  # equal accuracy: the smaller (10 MB against 20 MB)
    # a CSV timed in one round has no measured spread: 5% around the fastest counts as a tie
    assert recommend(timed_pair(1.03, rounds=1), 1.0)[0]["variant"] == "b"
    assert recommend(timed_pair(1.06, rounds=1), 1.0)[0]["variant"] == "a"


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
    row = next(line for line in text.splitlines() if line.startswith("| pruned-3-onnx-int8-dynamic |"))
    assert "| N/A | N/A | N/A | 80.60 [78.60, 82.60] | 0.360 (onnxruntime) | 53 | -1.10, p=0.25, no significant difference |" in row
    assert "Not measured here (n/a: needs CUDA): pruned-3-fp16." in text


def test_write_report_writes_every_section_and_figure(bench_dir, tmp_path):
    params = Params(report=ReportConfig())
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
    assert metrics["cpu_latency"] == {"variant": "baseline-onnx-int8-dynamic", "cpu_ms": 0.7, "accuracy": 0.819,
                                      "accuracy_delta_vs_baseline": 0.002}
    assert metrics["gpu_latency"] == {"variant": None}
    assert metrics["smallest_on_disk"]["size_mb"] == 15.9


def test_gpu_rows_fill_the_gpu_columns_figures_and_targets(bench_dir, tmp_path):
    rows = []
    for variant, precision, layers, eager, graph in [("baseline", "fp32", 6, 6.0, 1.2), ("pruned-3", "fp32", 3, 3.2, 0.6)]:
        for runtime, ms in (("eager", eager), ("cudagraph", graph)):
            for batch, seq, scale in ((1, 16, 1), (1, 128, 1.5), (8, 128, 3), (64, 128, 12)):
                rows.append({**bench_row(variant, precision, runtime, layers, batch, seq, ms * scale, device="cuda"),
                             "device_name": "Test GPU"})
    pd.DataFrame(rows, columns=COLUMNS).to_csv(bench_dir / "gpu.csv", index=False)
    out = tmp_path / "reports"
    choices = {c["target"]: c for c in write_report(RESULTS, bench_dir, out, Params(report=ReportConfig()))}
    assert choices["GPU latency"]["variant"] == "pruned-3"  # 1.0 points down: just within the budget
    assert choices["GPU latency"]["gpu_ms"] == 0.6 and "cudagraph" in choices["GPU latency"]["text"]
    assert choices["GPU throughput"]["gpu_throughput"] == pytest.approx(64 * 1000 / (0.6 * 12), rel=1e-3)
    report = (out / "report.md").read_text()
    assert "| baseline | 6 | 91.8 | N/A | 1.200 (cudagraph) |" in report
    for name in ("latency_vs_batch_gpu", "latency_vs_seq_gpu", "pareto_gpu_latency"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    sweep = pd.read_csv(out / "plots" / "latency_vs_batch_gpu.csv")
    assert sorted(sweep.batch_size.unique()) == [1, 8, 64]  # the GPU's own batch sweep, at 128 tokens


def test_timings_of_another_model_are_left_out_and_said(bench_dir, tmp_path):
    frame = pd.read_csv(bench_dir / "cpu.csv").assign(family="bert-base-uncased")
    frame.to_csv(bench_dir / "cpu.csv", index=False)
    out = tmp_path / "reports"
    choices = {c["target"]: c for c in write_report(RESULTS, bench_dir, out, Params(report=ReportConfig()))}
    assert choices["CPU latency"]["variant"] is None
    assert "Benchmark rows of bert-base-uncased are left out" in (out / "report.md").read_text()


def test_the_report_sets_the_shapes_depth_comparison_next_to_the_study(bench_dir, tmp_path):
    rows = [{**bench_row(variant, precision, runtime, layers, 1, 128, ms), "family": "bert-large-uncased",
             "weights": "random", "latency_ms_best": ms, "latency_ms_worst": ms * 1.2,
             "round_p50s_ms": f"{ms};{ms * 1.2}"}
            for variant, precision, runtime, layers, ms in [
                ("bert-large-uncased", "fp32", "eager", 24, 400.0),
                ("bert-large-uncased:16", "fp32", "eager", 16, 270.0),
                ("bert-large-uncased:16-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 16, 40.0)]]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(bench_dir / "cpu-shapes.csv", index=False)
    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, Params(report=ReportConfig()), REPO / "docs" / "study-cpu.csv")
    report = (out / "report.md").read_text()
    assert "## Depth and INT8 on the bert-base and bert-large shapes (CPU, random weights, batch 1 x 128 tokens)" in report
    # the ratio of best rounds, and per round 40/400 and 48/480: both 0.1
    assert ("| bert-large-uncased (24 layers) | 400.00 | 16 layers, onnx-int8-dynamic (onnxruntime) | 40.00 "
            "| 0.100 (0.100-0.100) | 420.02 -> 144.11 ms = 0.34x |") in report


def test_the_cpu_pick_is_set_against_the_fastest_off_the_shelf_int8_of_the_unpruned_model(bench_dir):
    (cpu,) = [c for c in recommend(table_from(bench_dir), max_drop_points=1.5) if c["target"] == "CPU latency"]
    assert cpu["variant"] == "pruned-3-onnx-int8-dynamic"  # 0.36 ms; the 4-bit one (0.30) loses 2.2 points
    assert ("0.514x the fastest INT8 of the unpruned baseline, baseline-onnx-int8-dynamic (onnxruntime)"
            in cpu["text"])  # 0.36 / 0.7
    (own,) = [c for c in recommend(table_from(bench_dir), max_drop_points=1.0) if c["target"] == "CPU latency"]
    assert own["variant"] == "baseline-onnx-int8-dynamic" and "the fastest INT8 of the unpruned" not in own["text"]


def test_the_report_compares_the_label_free_estimators_with_skip_and_re_score(bench_dir, tmp_path):
    """Crafted scores: block influence ([CLS]) ranks the layers as ablation does; over every token it ranks them
    backwards; the angular distance of the block 1..2 is the smallest of length 2."""
    from prunequant.pruning import PruneConfig
    from prunequant.sensitivity import estimator_comparison

    table = pd.DataFrame({"layer": range(4), "removal_order": [3, 0, 1, 2],
                          "block_influence_cls": [0.9, 0.1, 0.2, 0.3], "block_influence_mean": [0.1, 0.9, 0.8, 0.7],
                          "angular_cls": [0.5, 0.2, 0.3, 0.4], "angular_mean": [0.5, 0.2, 0.3, 0.4]})
    blocks = pd.DataFrame([{"start": s, "length": n, "angular_cls": 0.1 if (s, n) == (1, 2) else 0.5 + s,
                            "angular_mean": 0.5} for n in (1, 2, 3) for s in range(5 - n)])
    frame = estimator_comparison(table, blocks, {"ablation_seconds": 12.0, "hidden_states_seconds": 1.5}, [3, 2, 9])  # 9: more than the model has, left out
    assert frame.set_index(["strategy", "pooling"])["spearman"].to_dict() == pytest.approx({
        ("sensitivity", ""): 1.0, ("block-influence", "mean"): -1.0, ("block-influence", "cls"): 1.0,
        ("angular", "mean"): 1.0, ("angular", "cls"): 1.0})
    by = frame.set_index(["strategy", "pooling"])
    assert by.loc[("sensitivity", ""), 3] == [1] and by.loc[("sensitivity", ""), 2] == [1, 2]
    assert by.loc[("block-influence", "mean"), 3] == [0] and by.loc[("block-influence", "mean"), 2] == [0, 3]
    assert by.loc[("angular", "cls"), 2] == [1, 2] and by.loc[("angular", "mean"), 2] == [0, 1]  # tie: earliest
    assert 9 not in frame.columns

    out = tmp_path / "reports"
    write_report(RESULTS, bench_dir, out, Params(prune=PruneConfig(strategy="angular")), estimators=frame)
    report = (out / "report.md").read_text()
    assert "| block influence | `block-influence`, `pooling: mean` | mean over tokens | no | 1.5 | -1.00 (p=0.00) | [0] | [0, 3] |" in report
    assert "| skip and re-score | `sensitivity` |  | yes | 12.0 | 1 (itself) | [1] | [1, 2] |" in report
    assert "In use: `prune.strategy: angular` with `prune.pooling: cls`" in report
    assert "drops for 4 → 3 | drops for 4 → 2 |" in report and "ranks the baseline's 4 layers" in report

"""The benchmark: grid, timing loop, ratios, targets per device, and real timed runs of tiny models on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from prunequant.benchmarking import runner, timing, workers
from prunequant.benchmarking import table as bench_table
from prunequant.benchmarking import targets as bench
from prunequant.check import params_from_dict
from prunequant.errors import PrunequantError
from prunequant.params.bench import parse_shape
from prunequant.params.prune import Cut
from prunequant.quantization import write_manifest
from prunequant.quantization.every import every_scheme

from .conftest import by_family, config, params_dict, script_module, write_params

REPO = Path(__file__).resolve().parents[1]


def bench_stage():
    """stages/bench.py as a module (the stages folder is not a package)."""
    return script_module("stages/bench.py")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """run_job sets torch's thread count (in its own worker process, normally); restore it here."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_params(**bench_overrides):
    raw = params_dict()
    raw["prune"]["keep_layers"] = [1]
    raw["quantize"]["schemes"] = by_family("int8-dynamic", "onnx-int8-dynamic", "fp16", "bnb-nf4", "int8-qat")
    raw["bench"].update({"warmup": 1, "runs": 4, "min_runs": 2, "max_seconds": 0.05, "batch_sizes": [1, 2],
                         "seq_lengths": [8, 16], "batch_seq_length": 16, "shapes": ["bert-tiny", "bert-tiny:1"]})
    raw["bench"].update(bench_overrides)
    return params_from_dict(raw)


def test_points_star_and_full_grid():
    cfg = config("bench", batch_sizes=(1, 4, 64), seq_lengths=(16, 128), batch_seq_length=64)
    assert cfg.points() == [(1, 16), (1, 64), (1, 128), (4, 64), (64, 64)]  # fewest tokens first
    full = config("bench", batch_sizes=(1, 4), seq_lengths=(16, 128), full_grid=True)
    assert full.points() == [(1, 16), (4, 16), (1, 128), (4, 128)]


@pytest.mark.parametrize("shape, expected", [
    ("bert-base-uncased", ("bert-base-uncased", Cut(12))),
    ("bert-large-uncased:16", ("bert-large-uncased", Cut(16))),
    ("bert-base-uncased:8-w50", ("bert-base-uncased", Cut(8, 50, 50))),
])
def test_parse_shape(shape, expected):
    assert parse_shape(shape) == expected


def test_a_width_cut_random_shape_has_its_heads_and_ffn_cut(tmp_path):
    from transformers import AutoConfig

    from prunequant.benchmarking.runner import save_random_model

    save_random_model("bert-tiny:1-h50-f25", tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert (config.num_hidden_layers, config.pruned_heads, config.intermediate_size) == (1, {0: [1]}, 128)


@pytest.mark.parametrize("bench_section, message", [
    ({"shapes": ["bert-base-uncase"]}, "bench.shapes[0] names unknown architecture 'bert-base-uncase' (did you mean "
                                       "'bert-base-uncased'?)"),
    ({"shapes": ["bert-base-uncased:13"]}, "the layer count after ':' must be 1 to 12"),
    ({"shapes": ["bert-base-uncased:8-w100"]}, "bench.shapes[0] has '8-w100': keep at least 1 layer, and 1 to 99"),
    ({"gpu_runtimes": ["cudagraphs"]}, "bench.gpu_runtimes[0] is 'cudagraphs' (did you mean 'cudagraph'?)"),
    ({"weights": "randm"}, "bench.weights is 'randm' (did you mean 'random'?)"),
    ({"batch_sizes": [0, 2]}, "bench.batch_sizes must be >= 1, got [0]"),
    ({"seq_lengths": []}, "bench.seq_lengths must list sizes >= 1"),
    ({"min_runs": 200}, "bench.min_runs must be <= bench.runs (100)"),
    ({"max_seconds": 0}, "bench.max_seconds must be > 0"),
    ({"thread": 2}, "unknown key 'bench.thread' (did you mean 'threads'?)"),
])
def test_bad_bench_params_are_one_line_errors(bench_section, message):
    with pytest.raises(PrunequantError) as info:
        params_from_dict(params_dict(bench=bench_section))
    assert message in info.value.format_message() and "\n" not in info.value.format_message()


def test_time_calls_stops_at_the_time_budget_but_not_below_min_runs():
    calls = []

    def fixed(call):  # every call "takes" 40 ms
        call()
        return 40.0

    times = timing.time_calls(lambda: calls.append(1), fixed, warmup=3, runs=100, min_runs=5, max_seconds=0.1)
    assert times == [40.0] * 5  # the 0.1 s budget is spent after 3 runs, min_runs wins
    times = timing.time_calls(lambda: None, lambda call: 1.0, warmup=0, runs=7, min_runs=2, max_seconds=10)
    assert len(times) == 7  # runs caps the count when the budget is not reached
    assert len(calls) == 3 + 5  # the warm-up calls ran untimed


def test_summarise_rounds():
    row = timing.summarise_rounds([[2.0, 4.0, 6.0, 8.0], [1.0, 3.0], [12.0, 10.0, 11.0]], batch_size=8)
    # the rounds' p50s are 5, 2 and 11: their median is what a user typically sees, the best the steadiest
    assert (row["latency_ms_p50"], row["latency_ms_best"], row["latency_ms_worst"]) == (5.0, 2.0, 11.0)
    assert row["round_p50s_ms"] == "5.0000;2.0000;11.0000" and row["rounds"] == 3 and row["runs"] == 9
    assert row["throughput_per_s"] == 4000.0  # 8 sentences in the best round's 2 ms
    assert row["latency_ms_mean"] == round(57 / 9, 4)
    # 9 calls: not one lies beyond a p90, so neither tail is claimed
    assert pd.isna(row["latency_ms_p90"]) and pd.isna(row["latency_ms_p99"])


def test_tail_percentiles_need_five_calls_beyond_them():
    calls = [float(v) for v in range(1, 51)]  # 50 calls: 5 beyond the p90, half a call beyond the p99
    assert timing.tail_percentile(calls, 90) == 45.1  # numpy's linear interpolation
    assert pd.isna(timing.tail_percentile(calls, 99)) and pd.isna(timing.tail_percentile(calls[:49], 90))
    assert timing.tail_percentile([1.0] * 500, 99) == 1.0


def test_timed_calls_run_with_the_garbage_collector_paused():
    import gc

    seen = []
    with timing.gc_paused():
        seen.append(gc.isenabled())
    assert seen == [False] and gc.isenabled()


def test_each_round_times_the_targets_in_a_new_order():
    orders = [workers.round_order([0, 1, 2, 3, 4, 5], r, seed=42) for r in range(5)]
    assert all(sorted(order) == [0, 1, 2, 3, 4, 5] for order in orders)
    assert len({tuple(order) for order in orders}) == 5 and len({order[0] for order in orders}) > 1
    assert orders == [workers.round_order([5, 4, 3, 2, 1, 0], r, seed=42) for r in range(5)]  # reproducible


def test_ratios_use_the_best_rounds_and_carry_the_per_round_range():
    """Both targets were timed in each round: each round's ratio pairs their p50s of that round."""
    frame = crafted_rows()
    rounds = {"baseline": "5.0;6.0;10.0", "pruned-3": "3.0;2.5;4.0"}
    for variant, p50s in rounds.items():
        values = [float(v) for v in p50s.split(";")]
        at = (frame.variant == variant) & (frame.batch_size == 1)
        frame.loc[at, ["latency_ms_best", "latency_ms_worst", "round_p50s_ms"]] = [min(values), max(values), p50s]
    row = bench_table.with_ratios(frame).set_index(["variant", "batch_size"]).loc[("pruned-3", 1)]
    assert row.ratio_fp32 == 0.5  # best over best: 2.5 / 5.0
    assert (row.ratio_fp32_low, row.ratio_fp32_high) == (0.4, 0.6)  # per round: 0.6, 0.4167, 0.4
    # the reference timed in six rounds (two groups), pruned-3 in rounds 3 to 5: those pair up, and only those
    at = (frame.variant == "baseline") & (frame.batch_size == 1)
    frame.loc[at, ["round_p50s_ms", "round_ids"]] = ["1.0;1.0;1.0;5.0;6.0;10.0", "0;1;2;3;4;5"]
    frame.loc[(frame.variant == "pruned-3") & (frame.batch_size == 1), "round_ids"] = "3;4;5"
    row = bench_table.with_ratios(frame).set_index(["variant", "batch_size"]).loc[("pruned-3", 1)]
    assert (row.ratio_fp32_low, row.ratio_fp32_high) == (0.4, 0.6)
    frame.loc[at, ["round_p50s_ms", "round_ids"]] = ["5.0;10.0", "7;8"]  # rounds that do not pair up
    row = bench_table.with_ratios(frame).set_index(["variant", "batch_size"]).loc[("pruned-3", 1)]
    assert (row.ratio_fp32_low, row.ratio_fp32_high) == (0.25, 0.8)  # best / worst, worst / best


def crafted_rows():
    def row(variant, precision, runtime, layers, p50, batch=1, seq=16, family="minilm-l6"):
        return {"variant": variant, "precision": precision, "runtime": runtime, "layers": layers, "device": "cpu",
                "batch_size": batch, "seq_len": seq, "latency_ms_p50": p50, "latency_ms_p99": p50 * 1.5,
                "throughput_per_s": 1000 * batch / p50, "peak_mem_mb": 100.0, "family": family, "note": "",
                "round_p50s_ms": "", "round_ids": ""}
    return pd.DataFrame([
        row("baseline", "fp32", "eager", 6, 5.0), row("baseline", "fp32", "eager", 6, 50.0, batch=4, seq=64),
        row("pruned-3", "fp32", "eager", 3, 2.5),
        row("baseline-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 6, 0.8),
        row("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 3, 0.4),
        row("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 3, 10.0, batch=4, seq=64),
        row("bert-base-uncased", "fp32", "eager", 12, 20.0, family="bert-base-uncased"),
        row("bert-base-uncased:8", "fp32", "eager", 8, 14.0, family="bert-base-uncased"),
    ] + [{**row("baseline-fp16", "fp16", "eager", 6, 1.0), "latency_ms_p50": None, "note": "n/a: needs CUDA"}])


def test_ratios_compare_with_the_full_depth_references_of_the_same_family_and_point():
    frame = bench_table.with_ratios(crafted_rows()).set_index(["variant", "batch_size"])
    assert frame.loc[("baseline", 1), "ratio_fp32"] == 1.0
    assert frame.loc[("pruned-3", 1), "ratio_fp32"] == 0.5
    assert frame.loc[("pruned-3-onnx-int8-dynamic", 1), "ratio_fp32"] == 0.08
    assert frame.loc[("pruned-3-onnx-int8-dynamic", 1), "ratio_ort_int8"] == 0.5
    assert frame.loc[("pruned-3-onnx-int8-dynamic", 4), "ratio_fp32"] == 0.2  # 10 ms vs 50 ms at 4 x 64
    assert frame.loc[("bert-base-uncased:8", 1), "ratio_fp32"] == 0.7  # against bert-base, not MiniLM
    assert pd.isna(frame.loc[("bert-base-uncased:8", 1), "ratio_ort_int8"])  # no ORT row in that family
    assert pd.isna(frame.loc[("baseline-fp16", 1), "ratio_fp32"])


def test_bench_summary_table_lists_every_variant_with_the_fp32_ratio_last():
    table = bench_table.bench_summary_table(crafted_rows(), short=(1, 16), long=(1, 16), wide=(4, 64))
    lines = table.splitlines()
    assert lines[0].rstrip(" |").endswith("x FP32 baseline (per-round range)")
    row = next(line for line in lines if line.startswith("| pruned-3-onnx-int8-dynamic |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "0.400 (+0%)" and cells[6] == "400.0"
    assert cells[-2] == "0.500 (0.500-0.500)" and cells[-1] == "0.080 (0.080-0.080)"
    assert "| baseline-fp16 | eager | 6 | n/a: needs CUDA |" in table


def test_cpu_targets_are_every_cpu_artifact_with_a_note_for_missing_ones(tmp_path, tiny_model_dir):
    params = tiny_params()
    models = tmp_path / "models"
    models.mkdir()
    (models / "baseline").symlink_to(tiny_model_dir)
    targets = bench.trained_targets(models, params, "cpu")
    assert [(t.variant, t.runtime) for t in targets] == [
        ("baseline", "eager"), ("baseline-int8-dynamic", "eager"), ("baseline-int8-qat", "eager"),
        ("baseline-onnx-int8-dynamic", "onnxruntime"), ("baseline-onnx-int8-dynamic", "onnxruntime-fixed"),
        ("pruned-1", "eager"), ("pruned-1-int8-dynamic", "eager"), ("pruned-1-int8-qat", "eager"),
        ("pruned-1-onnx-int8-dynamic", "onnxruntime"), ("pruned-1-onnx-int8-dynamic", "onnxruntime-fixed")]
    without = bench.trained_targets(models, tiny_params(fixed_shapes=False), "cpu")
    assert {t.runtime for t in without} == {"eager", "onnxruntime"}
    assert targets[0].note == ""
    assert targets[1].note.startswith("n/a:") and "not built" in targets[1].note


def test_compare_widths_times_the_baseline_references_and_every_cut_in_the_compare_scheme(tmp_path, tiny_model_dir):
    raw = params_dict()
    raw["compare"].update({"cuts": [1, "2-w50"], "scheme": "onnx-int8-dynamic"})
    raw["bench"]["fixed_shapes"] = False
    models = tmp_path / "models"
    models.mkdir()
    (models / "baseline").symlink_to(tiny_model_dir)
    targets = bench.compare_targets(models, params_from_dict(raw), "cpu")
    assert [(t.variant, t.runtime, Path(t.folder).relative_to(models).as_posix()) for t in targets] == [
        ("baseline", "eager", "baseline"),
        ("baseline-onnx-int8-dynamic", "onnxruntime", "quantized/baseline-onnx-int8-dynamic"),
        ("pruned-1-onnx-int8-dynamic", "onnxruntime", "widths/quantized/pruned-1-onnx-int8-dynamic"),
        ("pruned-2-w50-onnx-int8-dynamic", "onnxruntime", "widths/quantized/pruned-2-w50-onnx-int8-dynamic")]
    assert targets[0].note == "" and "not built" in targets[3].note
    assert targets[0].is_reference() and not targets[3].is_reference()


def test_a_width_cut_at_full_depth_is_never_the_reference():
    rows = pd.DataFrame([{**dict.fromkeys(bench_table.COLUMNS), "variant": v, "precision": "fp32", "runtime": "eager",
                          "layers": 6, "device": "cpu", "family": "m", "batch_size": 1, "seq_len": 16,
                          "latency_ms_p50": ms, "round_p50s_ms": str(ms), "round_ids": "0"}
                         for v, ms in (("pruned-6-w50", 1.0), ("baseline", 4.0))])
    ratios = bench_table.with_ratios(rows).set_index("variant").ratio_fp32
    assert ratios.to_dict() == {"pruned-6-w50": 0.25, "baseline": 1.0}


def test_gpu_targets_run_each_torch_variant_in_every_runtime_and_skip_cpu_only_ones(tmp_path, tiny_model_dir):
    params = tiny_params()
    models = tmp_path / "models"
    (models / "quantized" / "baseline-fp16").mkdir(parents=True)
    (models / "baseline").symlink_to(tiny_model_dir)
    folder = models / "quantized" / "baseline-fp16"
    (folder / "config.json").write_text("{}")
    write_manifest(folder, every_scheme()["fp16"], every_scheme()["fp16"].settings(), "models/baseline",
                   "n/a: needs CUDA")
    targets = bench.trained_targets(models, params, "cuda")
    assert {(t.variant, t.runtime) for t in targets if t.variant.startswith("baseline")} == {
        (v, r) for v in ("baseline", "baseline-fp16", "baseline-bnb-nf4") for r in ("eager", "cudagraph", "compile")}
    fp16 = next(t for t in targets if t.variant == "baseline-fp16")
    assert "n/a: needs CUDA" in fp16.note and "dvc repro" in fp16.note  # built on a CPU machine
    shapes = bench.random_targets(params, "cuda")
    assert [t.variant for t in shapes if t.runtime == "cudagraph"] == [
        "bert-tiny", "bert-tiny-fp16", "bert-tiny-bnb-nf4", "bert-tiny:1", "bert-tiny:1-fp16", "bert-tiny:1-bnb-nf4"]
    assert all(t.weights == "random" for t in shapes)
    assert "int8-qat" not in {t.precision for t in shapes}  # needs training data, not a shape


SETTINGS = params_dict()["quantize"]["settings"]  # each scheme's, as params.yaml sets them


def job_for(target, texts=("a fine , moving film .", "dull and tedious .")):
    return bench.Job(target=target, points=((1, 8), (2, 16)), texts=texts, warmup=1, runs=5, min_runs=3,
                     max_seconds=0.05, threads=1, settings=SETTINGS.get(target.precision), seed=0, settle_seconds=0.01)


@pytest.mark.parametrize("precision, runtime", [
    ("fp32", "eager"), ("onnx-int8-dynamic", "onnxruntime"), ("onnx-int8-dynamic", "onnxruntime-fixed"),
    ("openvino-int8-static", "openvino"), ("openvino-int8-static", "openvino-fixed")])
def test_run_job_times_a_random_tiny_bert_on_cpu(precision, runtime):
    variant = "bert-tiny" if precision == "fp32" else f"bert-tiny-{precision}"
    target = bench.Target(variant, precision, runtime, "cpu", "bert-tiny", "bert-tiny", "random")
    rows = runner.run_job(job_for(target), rounds=2)
    assert [(r["batch_size"], r["seq_len"]) for r in rows] == [(1, 8), (2, 16)]
    for row in rows:
        assert row["note"] == "" and row["layers"] == 2 and row["weights"] == "random"
        assert 0 < row["latency_ms_best"] <= row["latency_ms_p50"] <= row["latency_ms_worst"]
        assert row["rounds"] == 2 and row["round_ids"] == "0;1"
        assert 2 * 3 <= row["runs"] <= 2 * 5 and row["peak_mem_mb"] >= 0
        assert row["throughput_per_s"] == pytest.approx(1000 * row["batch_size"] / row["latency_ms_best"], rel=1e-3)
    assert set(rows[0]) <= set(bench_table.COLUMNS) | {"note"}
    # one request end to end (tokenizer, runtime, label) at the first batch-1 point only: more than the call alone
    assert rows[0]["e2e_ms_p50"] > 0 and "e2e_ms_p50" not in rows[1]
    assert rows[0]["e2e_ms_best"] > rows[0]["latency_ms_best"] * 0.5


def test_the_memory_plan_keeps_the_references_loaded_and_packs_the_rest_under_the_budget():
    def target(variant, precision, runtime, size):
        return bench.Target(variant, precision, runtime, "cpu", "minilm-l6", "", "trained", size_mb=size)

    jobs = [job_for(t) for t in [
        target("baseline", "fp32", "eager", 90), target("pruned-3", "fp32", "eager", 70),
        target("baseline-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 23),
        target("baseline-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime-fixed", 23),
        target("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 18),
        bench.Target("pruned-4-int8-dynamic", "int8-dynamic", "eager", "cpu", "minilm-l6", note="n/a: not built")]]
    # estimates: 3 x size + 250 MB: references 520 + 319; the others 460, 319, 304
    references, groups = workers.plan_groups(jobs, budget_mb=839 + 630)
    assert references == [0, 2] and groups == [[1], [3, 4]]  # 460 + 319 > 630; 319 + 304 fits
    assert workers.plan_groups(jobs, float("inf")) == ([0, 2], [[1, 3, 4]])
    assert workers.plan_groups(jobs, 100) == ([0, 2], [[1], [3], [4]])  # too small: one at a time
    assert jobs[0].target.is_reference() and not jobs[3].target.is_reference()
    shape = bench.Target("bert-base-uncased:8", "fp32", "eager", "cpu", "bert-base-uncased", "bert-base-uncased:8",
                         "random")
    assert not shape.is_reference() and shape.memory_mb() > 3 * 4 * 8 * 12 * 768 ** 2 / 1e6


def test_groups_of_rounds_pair_every_target_with_the_references_and_final_rounds_add_to_the_contenders():
    """Two groups under a tiny memory budget: the reference is timed in every round of both, each other target in
    its group's rounds only, and the round numbers say which. Then the final rounds: the contender the callback
    picks from the groups' rows is reloaded and timed again with the reference, at the chosen point only."""
    targets = [bench.Target("bert-tiny", "fp32", "eager", "cpu", "bert-tiny", "bert-tiny", "random"),
               bench.Target("bert-tiny:1", "fp32", "eager", "cpu", "bert-tiny", "bert-tiny:1", "random"),
               bench.Target("bert-tiny-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime-fixed", "cpu",
                            "bert-tiny", "bert-tiny", "random")]
    jobs = [bench.Job(target=t, points=((1, 8), (1, 16)), texts=("a fine film .",), warmup=1, runs=3, min_runs=2,
                      max_seconds=0.02, threads=1, settings=SETTINGS.get(t.precision), seed=0) for t in targets]
    seen = []

    def final(rows):
        seen.extend((r["variant"], r["seq_len"], r["round_ids"]) for r in rows)
        return [0, 1], (1, 8)  # the reference is timed in the final rounds anyway, never twice

    lines = []
    rows = workers.run_jobs(jobs, lines.append, rounds=2, max_memory_mb=1, final=final, final_rounds=3)
    ids = {(r["variant"], r["seq_len"]): r["round_ids"] for r in rows}
    assert ids == {("bert-tiny", 8): "0;1;2;3;4;5;6", ("bert-tiny", 16): "0;1;2;3",
                   ("bert-tiny:1", 8): "0;1;4;5;6", ("bert-tiny:1", 16): "0;1",
                   ("bert-tiny-onnx-int8-dynamic", 8): "2;3", ("bert-tiny-onnx-int8-dynamic", 16): "2;3"}
    assert ("bert-tiny:1", 8, "0;1") in seen  # the callback read the groups' rows, before the final rounds
    by_key = {(r["variant"], r["seq_len"]): r for r in rows}
    assert by_key[("bert-tiny:1", 8)]["rounds"] == 5
    assert len(by_key[("bert-tiny:1", 8)]["round_p50s_ms"].split(";")) == 5
    assert any("2 group(s)" in line for line in lines)
    assert any(line.startswith("  final rounds at batch 1 x 8 tokens: bert-tiny:1 (eager)") for line in lines)


def test_peak_memory_is_never_negative_when_the_process_freed_memory_meanwhile(monkeypatch):
    """The CPU figure is the resident set's growth since before loading: a worker that freed more than the artifact
    took (seen once in a test worker: -9.6 MB) reports no growth, not less than none."""
    monkeypatch.setattr(runner, "peak_rss_mb", lambda: 1.0)  # far below any resident set before loading
    target = bench.Target("bert-tiny", "fp32", "eager", "cpu", "bert-tiny", "bert-tiny", "random")
    rows = runner.run_job(job_for(target))
    assert [row["peak_mem_mb"] for row in rows] == [0.0, 0.0]


def test_run_job_gives_rows_with_a_reason_instead_of_crashing(tmp_path):
    target = bench.Target("baseline", "fp32", "eager", "cpu", "minilm-l6", str(tmp_path / "missing"))
    rows = runner.run_job(job_for(target))
    assert len(rows) == 2 and all(r["note"].startswith("n/a: ") for r in rows)
    assert all("latency_ms_p50" not in r for r in rows)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_replay_matches_eager(tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).cuda().eval()
    inputs = {"input_ids": torch.randint(5, 20, (2, 12), device="cuda"),
              "attention_mask": torch.ones(2, 12, dtype=torch.long, device="cuda")}
    with torch.inference_mode():
        expected = model(**inputs).logits
        graphed = runner.cuda_graph_call(model, inputs)()
    torch.testing.assert_close(graphed, expected)


def test_stage_times_random_shapes_and_writes_csv_machine_and_summary(tmp_path, frame):
    from prunequant.splits import save_splits

    data = tmp_path / "prepared"
    save_splits({"train": frame, "validation": frame, "test": frame}, ("negative", "positive"), data)
    params = params_dict()
    params["quantize"]["schemes"] = by_family("onnx-int8-dynamic", "fp16")
    params["bench"].update({"warmup": 1, "runs": 3, "min_runs": 2, "max_seconds": 0.05, "batch_sizes": [1, 2],
                            "seq_lengths": [8], "batch_seq_length": 8, "shapes": ["bert-tiny", "bert-tiny:1"],
                            "rounds": 2})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "bench"
    result = CliRunner().invoke(bench_stage().main, [
        "--device", "cpu", "--data", str(data), "--out", str(out), "--weights", "random",
        "--summary", str(tmp_path / "bench-cpu.md"), "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out / "cpu.csv")
    assert list(csv.columns) == bench_table.COLUMNS
    assert csv.groupby(["variant", "runtime"]).size().to_dict() == {
        ("bert-tiny", "eager"): 2, ("bert-tiny-onnx-int8-dynamic", "onnxruntime"): 2,
        ("bert-tiny-onnx-int8-dynamic", "onnxruntime-fixed"): 1, ("bert-tiny:1", "eager"): 2,
        ("bert-tiny:1-onnx-int8-dynamic", "onnxruntime"): 2, ("bert-tiny:1-onnx-int8-dynamic", "onnxruntime-fixed"): 1}
    assert csv.latency_ms_p50.gt(0).all() and (csv.weights == "random").all()
    # two interleaved rounds, each target once per round: two p50s per point, the best and worst among them
    assert (csv.rounds == 2).all() and csv.round_p50s_ms.str.count(";").eq(1).all()
    assert (csv.latency_ms_best <= csv.latency_ms_p50).all() and (csv.latency_ms_p50 <= csv.latency_ms_worst).all()
    assert "round 2: 6 targets" in result.output
    machine = json.loads((out / "cpu-machine.json").read_text())
    assert machine["threads"] >= 1 and machine["torch"] and machine["cpu"] and machine["onnxruntime"]
    assert set(machine["isa"]) >= {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"}
    assert isinstance(machine["hypervisor"], bool) and machine["steal_percent"] is not None
    summary = (tmp_path / "bench-cpu.md").read_text()
    assert "| bert-tiny:1-onnx-int8-dynamic | onnxruntime | 1 |" in summary
    assert "x FP32 baseline" in result.output


def test_bench_gpu_without_cuda_exits_0_and_keeps_the_previous_csv(tmp_path, monkeypatch):
    import torch

    stage = bench_stage()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "bench"
    args = ["--device", "cuda", "--out", str(out), "--params", str(write_params(tmp_path / "params.yaml"))]
    result = CliRunner().invoke(stage.main, args)
    assert result.exit_code == 0 and "no CUDA device" in result.output
    assert (out / "gpu.csv").read_text() == ",".join(bench_table.COLUMNS) + "\n"  # a header, no rows
    (out / "gpu.csv").write_text("earlier rows from a GPU machine\n")
    assert CliRunner().invoke(stage.main, args).exit_code == 0
    assert (out / "gpu.csv").read_text() == "earlier rows from a GPU machine\n"


def test_a_runtime_that_fails_at_one_point_gives_rows_with_the_reason():
    """CUDA graph capture on a CPU-only machine fails inside the worker: rows say why, nothing crashes."""
    target = bench.Target("bert-tiny", "fp32", "cudagraph", "cpu", "bert-tiny", "bert-tiny", "random")
    rows = runner.run_job(job_for(target))
    assert len(rows) == 2 and all(r["note"].startswith("n/a: ") and r["layers"] == 2 for r in rows)


def test_compiled_runtimes_always_get_their_warm_up_calls():
    calls = []
    timing.time_calls(lambda: calls.append(1), lambda call: (call(), 1.0)[1], warmup=0, runs=2, min_runs=2,
                     max_seconds=1e-9, min_warmup=3)
    assert len(calls) == 3 + 2


def test_a_bert_base_shape_is_timed_with_random_weights():
    """What the bert-base profile's shape-only benchmark runs (one layer of it, to stay quick on CPU)."""
    target = bench.Target("bert-base-uncased:1", "fp32", "eager", "cpu", "bert-base-uncased", "bert-base-uncased:1",
                          "random")
    job = bench.Job(target=target, points=((1, 16),), texts=("a fine film .",), warmup=1, runs=3, min_runs=2,
                    max_seconds=0.05, threads=1, settings={}, seed=0)
    (row,) = runner.run_job(job)
    assert row["layers"] == 1 and row["weights"] == "random" and row["latency_ms_p50"] > 0


def test_bench_summary_table_without_an_onnx_reference_says_na():
    frame = crafted_rows()
    frame = frame[frame.precision != "onnx-int8-dynamic"]  # a GPU run has no ONNX rows
    row = next(line for line in bench_table.bench_summary_table(frame, (1, 16), (1, 16), (4, 64)).splitlines()
               if line.startswith("| pruned-3 |"))
    assert row.rstrip().endswith("| n/a | 0.500 (0.500-0.500) |")


def test_depth_comparison_pits_each_cut_in_its_fastest_int8_runtime_against_full_depth_fp32():
    rows = []
    for variant, precision, runtime, layers, ms in [
        ("bert-base-uncased", "fp32", "eager", 12, 100.0), ("bert-base-uncased:8", "fp32", "eager", 8, 66.0),
        ("bert-base-uncased-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 12, 20.0),
        ("bert-base-uncased:8-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", 8, 14.0),
        ("bert-base-uncased:8-openvino-int8-static", "openvino-int8-static", "openvino-fixed", 8, 12.0),
    ]:
        rows.append({"variant": variant, "precision": precision, "runtime": runtime, "layers": layers,
                     "device": "cpu", "batch_size": 1, "seq_len": 128, "latency_ms_p50": ms * 1.05,
                     "latency_ms_best": ms, "latency_ms_worst": ms * 1.1, "family": "bert-base-uncased",
                     "weights": "random", "note": "", "round_p50s_ms": ""})
    frame = pd.DataFrame(rows, columns=bench_table.COLUMNS)
    (row,) = bench_table.depth_comparison(frame, (1, 128))
    assert (row["layers"], row["precision"], row["runtime"], row["ms"], row["ratio"]) == (
        8, "openvino-int8-static", "openvino-fixed", 12.0, 0.12)
    assert (row["ratio_low"], row["ratio_high"]) == (round(12 / 110, 4), 0.132)  # the two spreads at their widest
    lines = bench_table.depth_section(frame, Path("cpu-shapes.csv"), REPO / "docs" / "study-cpu.csv")
    assert any(line.startswith("| bert-base-uncased (12 layers) | 100.00 | 8 layers, openvino-int8-static "
                               "(openvino-fixed) | 12.00 | 0.120 (0.109-0.132) | 167.87 -> 67.02 ms = 0.40x |")
               for line in lines), lines
    assert bench_table.depth_comparison(frame, (1, 16)) == []  # nothing timed at that point
    with pytest.raises(PrunequantError, match="nope.csv: not found"):
        bench_table.depth_section(frame, Path("cpu-shapes.csv"), Path("nope.csv"))


@pytest.mark.parametrize("text, expected", [("1x16,1x128", [(1, 16), (1, 128)]), ("8x64", [(8, 64)])])
def test_points_option(text, expected):
    assert bench.parse_points(text) == expected
    cfg = config("bench").with_points(expected)
    assert sorted(cfg.points()) == sorted(expected)


@pytest.mark.parametrize("text", ["1x", "16", "0x16", "1x16,a"])
def test_bad_points_are_one_line_errors(text):
    with pytest.raises(PrunequantError, match=r"--points: .* is not <batch>x<tokens>"):
        bench.parse_points(text)


def test_fixed_shape_runtimes_are_timed_at_the_batch_1_points():
    cfg = config("bench", batch_sizes=(1, 8), seq_lengths=(16, 128), batch_seq_length=64)
    fixed = bench.Target("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime-fixed", "cpu", "minilm-l6")
    dynamic = bench.Target("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime", "cpu", "minilm-l6")
    assert bench.points_for(fixed, cfg) == ((1, 16), (1, 64), (1, 128))
    assert bench.points_for(dynamic, cfg) == tuple(cfg.points())


def test_steal_time_over_the_run(tmp_path):
    from prunequant import host

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n")
    start = host.cpu_times(stat)
    stat.write_text("cpu  200 0 100 1600 20 0 0 80 0 0\n")
    assert start == (40, 1000) and host.steal_percent(start, host.cpu_times(stat)) == 4.0  # 40 of 1000 jiffies
    assert host.cpu_times(tmp_path / "missing") is None and host.steal_percent(None, (1, 2)) is None


def test_the_artifact_hash_is_the_one_dvc_records(tmp_path):
    """folder_md5 is DVC's own directory hash (dvc.lock's `md5: <...>.dir`), computed here by DVC's library."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    from prunequant.fingerprint import folder_md5

    folder = tmp_path / "artifact"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"\x00weights" * 1000)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "vocab.txt").write_text("[PAD]\nhello\n")
    fs = LocalFileSystem()
    _, _, tree = build(HashFileDB(fs, str(tmp_path / "odb")), str(folder), fs, "md5")
    assert folder_md5(folder) == tree.hash_info.value and folder_md5(folder).endswith(".dir")


def test_paired_script_gives_each_runtimes_per_round_ratios_against_both_references(tmp_path):
    """bench/paired.py: the median and spread of a variant's p50 over each reference's in the rounds both ran,
    per runtime and point; rounds one of them missed are left out."""
    rows = [("baseline", "eager", "10;20;40", "1;2;3"),
            ("baseline-onnx-int8-dynamic", "onnxruntime", "2;4;8", "1;2;3"),
            ("cut-onnx-int8-dynamic", "onnxruntime", "1;3;2", "1;2;4"),  # round 4 has no reference
            ("cut-onnx-int8-dynamic", "onnxruntime-fixed", "0.5", "3")]
    csv = tmp_path / "cpu.csv"
    pd.DataFrame([{"variant": v, "runtime": r, "batch_size": 1, "seq_len": 16, "round_p50s_ms": p, "round_ids": i}
                  for v, r, p, i in rows]).to_csv(csv, index=False)
    out = tmp_path / "paired.csv"
    result = CliRunner().invoke(script_module("bench/paired.py").main, [
        "cut-onnx-int8-dynamic", "--bench", str(csv), "--points", "1x16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("runtime")
    assert table.loc["onnxruntime", ["fp32_rounds", "fp32_median", "fp32_min", "fp32_max"]].tolist() == [
        2, 0.125, 0.1, 0.15]  # rounds 1 and 2: 1/10 and 3/20
    assert table.loc["onnxruntime", "ort_int8_median"] == 0.625  # 1/2 and 3/4
    assert table.loc["onnxruntime-fixed", ["fp32_median", "ort_int8_median"]].tolist() == [0.0125, 0.0625]
    missing = CliRunner().invoke(script_module("bench/paired.py").main, ["nope", "--bench", str(csv)])
    assert missing.exit_code == 2 and "nope: not in the benchmark CSV" in missing.output

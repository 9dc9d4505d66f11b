"""End to end: the real DVC pipeline on the packaged model and data, with tiny params."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prunequant.benchmarking.table import COLUMNS as BENCH_COLUMNS
from prunequant.evaluation import accuracy_ci, paired_test
from prunequant.transfer import normalise

from .conftest import by_family, declare_shared_build, private_copy, shared_build, write_params

REPO = Path(__file__).resolve().parents[1]
MACHINE = "machine/dvc.yaml:machine"  # the accelerator check, always run by `dvc repro`
IGNORE = shutil.ignore_patterns(".git", ".venv", "data", "models", "predictions", "cache", "tmp", "__pycache__",
                                "config.local",  # a developer's own DVC settings (e.g. a shared cache)
                                "quick",  # `make quick`'s own clone
                                "*.egg-info", ".pytest_cache", "dvc_plots")

pytestmark = pytest.mark.e2e


def sh(*args, cwd, check=True):
    """Run a command as a user would: with warm stage starts (prunequant.warm; the rest of the suite runs each stage
    cold), one server per test worker, which exits 30 s after its last stage."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PRUNEQUANT_WARM": "1", "PRUNEQUANT_WARM_IDLE_S": "30"}
    env.pop("PYTEST_CURRENT_TEST", None)  # set per test: it would start a server per test
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def set_params(repo, **sections):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def ran_stages(output):
    return sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))


def _reproduce_tiny(root: Path) -> None:
    repo = root / "prunequant"
    shutil.copytree(REPO, repo, ignore=IGNORE)
    for path in ("metrics", "reports"):  # outputs of this checkout must not leak into the copy
        shutil.rmtree(repo / path, ignore_errors=True)
    (repo / "metrics" / "bench").mkdir(parents=True)  # as on a machine where no benchmark has run yet
    for device in ("cpu", "gpu"):
        (repo / "metrics" / "bench" / f"{device}.csv").write_text(",".join(BENCH_COLUMNS) + "\n")
    write_params(  # the tests' own params, whatever this checkout's params.yaml holds
        repo / "params.yaml",
        base={"max_seq_length": 48},
        prepare={"max_train_samples": 64, "max_eval_samples": 40},
        finetune={"epochs": 1, "batch_size": 16, "logging_steps": 2},
        prune={"keep_layers": [4]},
        refinetune={"epochs": 1, "batch_size": 16, "logging_steps": 2, "transfer": "imdb", "transfer_samples": 32},
        # one CPU scheme, and a CUDA scheme with CPU kernels (scored on the CPU here, deployed on a GPU)
        quantize={"schemes": by_family("onnx-int8-dynamic", "bnb-nf4")},
    )
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=repo)
    result = sh("dvc", "repro", cwd=repo)
    assert ran_stages(result.stdout) == sorted([
        "evaluate", "evaluate-pruned@4", "finetune", MACHINE, "prepare", "prune@4", "quantize-gpu-pruned@4-bnb-nf4",
        "quantize-onnx-pruned@4-onnx-int8-dynamic", "quantize-gpu@baseline-bnb-nf4",
        "quantize-onnx@baseline-onnx-int8-dynamic", "refinetune@4", "report", "results", "sensitivity", "transfer"])


declare_shared_build("repo", "e2e", _reproduce_tiny)


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """A copy of this repository, reproduced once per session on tiny params; read-only for the tests."""
    return shared_build(tmp_path_factory, "e2e", _reproduce_tiny) / "prunequant"


@pytest.fixture
def workspace(repo, tmp_path):
    """A private copy of the reproduced repository, for a test that changes params, code or git state."""
    return private_copy(repo, tmp_path / "prunequant")


def test_every_output_is_written(repo):
    assert {p.name for p in (repo / "data" / "prepared").iterdir()} == {
        "train.parquet", "validation.parquet", "test.parquet", "info.json"}
    model_files = {p.name for p in (repo / "models" / "baseline").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= model_files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in model_files)

    evaluation = json.loads((repo / "metrics" / "evaluate" / "baseline-fp32.json").read_text())
    assert evaluation["layers"] == 6 and evaluation["test"]["n"] == 40
    predictions = pd.read_parquet(repo / "predictions" / "baseline-fp32" / "test.parquet")
    test = pd.read_parquet(repo / "data" / "prepared" / "test.parquet")
    assert predictions["idx"].tolist() == test["idx"].tolist()
    # the figures are those of the saved predictions: accuracy and its 95% interval
    assert {k: evaluation["test"][k] for k in ("n", "accuracy", "accuracy_ci_low", "accuracy_ci_high")} == (
        accuracy_ci((predictions["prediction"] == predictions["label"]).to_numpy(), 0.95))

    results = pd.read_csv(repo / "metrics" / "results.csv")
    results = results[results.precision == "fp32"].reset_index(drop=True)  # quantized rows: test below
    assert results[["variant", "layers", "precision", "device", "split"]].values.tolist() == [
        ["baseline", 6, "fp32", "cpu", "validation"], ["baseline", 6, "fp32", "cpu", "test"],
        ["pruned-4", 4, "fp32", "cpu", "validation"], ["pruned-4", 4, "fp32", "cpu", "test"]]
    assert results["size_mb"].iloc[0] == pytest.approx(91.8, abs=1.5)  # MiniLM-L6 FP32 + tokenizer
    assert results["size_mb"].iloc[2] < results["size_mb"].iloc[0] - 10  # two layers of ~7 MB each gone
    pruned_vs_baseline = paired_test(*(pd.read_parquet(repo / "predictions" / f"{m}-fp32" / "validation.parquet")
                                       for m in ("baseline", "pruned-4")))
    assert results.loc[2, ["verdict", "mcnemar_p"]].tolist() == [pruned_vs_baseline["verdict"],
                                                                 pytest.approx(pruned_vs_baseline["mcnemar_p"])]
    assert results["reference"].iloc[2] == "baseline-fp32"

    sensitivity = pd.read_csv(repo / "metrics" / "sensitivity.csv")
    assert sensitivity["layer"].tolist() == list(range(6))
    label_free = ["block_influence_cls", "block_influence_mean", "angular_cls", "angular_mean"]
    assert sensitivity[label_free].notna().all().all()
    assert json.loads((repo / "metrics" / "sensitivity.json").read_text())["hidden_states_seconds"] > 0
    assert len(pd.read_csv(repo / "metrics" / "sensitivity-blocks.csv")) == 6 + 5 + 4 + 3 + 2  # blocks of 1 to 5 layers
    assert (repo / "reports" / "sensitivity.png").stat().st_size > 5000
    assert "| block influence | `block-influence`, `pooling: cls` | [CLS] token | no |" in re.sub(
        " +", " ", (repo / "reports" / "report.md").read_text())  # without the table's padding
    transfer = pd.read_parquet(repo / "data" / "transfer.parquet")  # IMDb sentences the teacher labels
    assert len(transfer) == 32 and json.loads((repo / "metrics" / "transfer.json").read_text())["sentences"] == 32
    prepared = pd.concat(pd.read_parquet(repo / "data" / "prepared" / f"{s}.parquet") for s in ("validation", "test"))
    assert not set(transfer["text"].map(normalise)) & set(prepared["text"].map(normalise))
    pruned = json.loads((repo / "models" / "pruned-4" / "config.json").read_text())
    assert pruned["num_hidden_layers"] == 4 and len(pruned["pruned_from_layers"]) == 4
    assert "| baseline" in (repo / "reports" / "results.md").read_text()
    assert (repo / "metrics" / "finetune" / "plots" / "metrics" / "loss.tsv").is_file()
    assert "test.accuracy" in sh("dvc", "metrics", "show", cwd=repo).stdout


def test_every_model_is_quantized_and_scored(repo):
    results = pd.read_csv(repo / "metrics" / "results.csv")
    quantized = results[results.precision != "fp32"]
    columns = ["variant", "precision", "device", "measured_on", "kernels", "eval_batch", "split", "status"]
    onnx = ["onnx-int8-dynamic", "cpu", "cpu", "onnxruntime-cpu", 1]
    bnb = ["bnb-nf4", "cuda", "cpu", "bitsandbytes-cpu", 64]
    assert quantized[columns].values.tolist() == [
        [model, *scheme, split, "ok"] for model in ("baseline", "pruned-4") for scheme in (onnx, bnb)
        for split in ("validation", "test")]
    assert quantized["accuracy"].notna().all() and (quantized["n"] == 40).all()
    assert quantized["reference"].tolist() == ["baseline-fp32"] * 4 + ["pruned-4-fp32"] * 4
    fp32_size = results.loc[(results.variant == "baseline") & (results.precision == "fp32"), "size_mb"].iloc[0]
    sizes = quantized.set_index(["variant", "precision"])["size_mb"]
    assert sizes["baseline", "onnx-int8-dynamic"].iloc[0] < 0.3 * fp32_size  # embeddings are quantized too
    assert sizes["baseline", "bnb-nf4"].iloc[0] < 0.7 * fp32_size  # 4-bit Linear weights, 16-bit embeddings

    folder = repo / "models" / "quantized" / "baseline-onnx-int8-dynamic"
    assert ({"model.onnx", "config.json", "tokenizer.json", "prunequant.json", "README.md"}
            <= {p.name for p in folder.iterdir()})
    card = (folder / "README.md").read_text()
    assert "## What stays in higher precision" in card and "ORTModelForSequenceClassification" in card
    test = quantized[(quantized.precision == "onnx-int8-dynamic") & (quantized.split == "test")]
    assert f"{100 * test['accuracy'].iloc[0]:.2f} [" in card  # the measured test accuracy
    assert "one sentence at a time without padding" in card
    assert "GPU kernels may differ" in (repo / "models" / "quantized" / "baseline-bnb-nf4" / "README.md").read_text()
    assert ("‡ A GPU scheme scored on this machine's CPU (bitsandbytes-cpu)"
            in (repo / "reports" / "report.md").read_text())
    assert json.loads((repo / "metrics" / "machine.json").read_text())["cuda"] is False


def test_training_runs_in_what_auto_resolves_to_on_this_machine_and_says_so(repo):
    machine = json.loads((repo / "metrics" / "machine.json").read_text())
    precision = "bf16" if machine["bf16"] else "fp32"
    assert json.loads((repo / "metrics" / "finetune" / "metrics.json").read_text())["precision"] == precision
    for model in ("baseline", "pruned-4"):
        assert json.loads((repo / "models" / model / "config.json").read_text())["training_precision"] == precision
    from safetensors import safe_open

    with safe_open(repo / "models" / "baseline" / "model.safetensors", "pt") as weights:  # master weights: FP32
        assert {str(weights.get_slice(name).get_dtype()) for name in weights.keys()} == {"F32"}
    card = (repo / "models" / "quantized" / "baseline-onnx-int8-dynamic" / "README.md").read_text()
    assert ("in bf16 mixed precision, FP32 weights" if machine["bf16"] else "in FP32") in card


def test_second_repro_reruns_nothing(workspace):
    result = sh("dvc", "repro", cwd=workspace)
    assert ran_stages(result.stdout) == [MACHINE]  # always checked; its unchanged output reruns nothing
    assert sh("dvc", "status", "dvc.yaml", cwd=workspace).stdout.split() == [
        "Data", "and", "pipelines", "are", "up", "to", "date."]


def test_bench_cpu_times_every_cpu_variant_and_plain_repro_never_benchmarks(workspace):
    set_params(workspace, bench={"warmup": 1, "runs": 3, "min_runs": 2, "max_seconds": 0.05, "batch_sizes": [1, 2],
                            "seq_lengths": [8, 16], "batch_seq_length": 16, "rounds": 2, "final_rounds": 2})
    result = sh("dvc", "repro", "bench/dvc.yaml:bench-cpu", cwd=workspace)  # what `make bench-cpu` runs
    assert ran_stages(result.stdout) == ["bench/dvc.yaml:bench-cpu", MACHINE]  # the models are reused
    csv = pd.read_csv(workspace / "metrics" / "bench" / "cpu.csv")
    assert csv.groupby(["variant", "runtime"]).size().to_dict() == {  # bnb-nf4 is a GPU variant: not timed here
        ("baseline", "eager"): 3, ("baseline-onnx-int8-dynamic", "onnxruntime"): 3,
        ("pruned-4", "eager"): 3, ("pruned-4-onnx-int8-dynamic", "onnxruntime"): 3,
        # a model compiled for each shape: at the batch-1 points
        ("baseline-onnx-int8-dynamic", "onnxruntime-fixed"): 2, ("pruned-4-onnx-int8-dynamic", "onnxruntime-fixed"): 2}
    assert csv[["batch_size", "seq_len"]].drop_duplicates().values.tolist() == [[1, 8], [1, 16], [2, 16]]
    assert csv.latency_ms_p50.gt(0).all() and csv.runs.ge(4).all() and (csv.weights == "trained").all()
    assert set(csv.layers) == {6, 4}
    # the final rounds: the contenders the groups' rows and results.csv name, and the references, timed twice more
    # at one short sentence (batch 1 x 8 tokens); every other point keeps its 2 rounds
    final = re.search(r"final rounds at batch 1 x 8 tokens: (.*)", result.stdout).group(1)
    again = {("baseline", "eager"), ("baseline-onnx-int8-dynamic", "onnxruntime")} | set(
        re.findall(r"([\w-]+) \(([\w-]+)\)", final))
    short = (csv.batch_size == 1) & (csv.seq_len == 8)
    assert csv[short].set_index(["variant", "runtime"]).rounds.to_dict() == {
        (v, r): 4 if (v, r) in again else 2 for v, r in csv[short][["variant", "runtime"]].itertuples(index=False)}
    assert (csv[~short].rounds == 2).all() and len(again) > 2
    assert "| pruned-4-onnx-int8-dynamic | onnxruntime | 4 |" in (workspace / "reports" / "bench-cpu.md").read_text()
    # Timings are never restored from a cache (the stage always reruns when asked), and a plain `dvc repro` never
    # re-times anything.
    assert "always changed" in sh("dvc", "status", "bench/dvc.yaml:bench-cpu", cwd=workspace).stdout
    assert "bench/dvc.yaml:bench-cpu" not in ran_stages(sh("dvc", "repro", cwd=workspace).stdout)
    # ... but the report picks the new timings up: a recommendation and the latency figures.
    report = (workspace / "reports" / "report.md").read_text()
    assert "- **CPU latency**: **" in report and "- **GPU latency**: N/A" in report
    for figure in ("latency_vs_batch_cpu", "latency_vs_seq_cpu", "pareto_cpu_latency", "pareto_size", "radar"):
        assert (workspace / "reports" / "figures" / f"{figure}.png").stat().st_size > 10_000
    plots = json.loads(sh("dvc", "plots", "show", "--json", cwd=workspace).stdout)
    assert {"Latency vs batch size (CPU)", "Accuracy vs size (Pareto)"} <= set(plots["data"])
    assert not plots.get("errors")
    result = sh("dvc", "repro", "bench/dvc.yaml:bench-gpu", cwd=workspace)
    assert "no CUDA device" in result.stdout
    assert (workspace / "metrics" / "bench" / "gpu.csv").read_text().count("\n") == 1  # a header, no rows


def test_compare_strategies_runs_a_strategy_with_and_without_distillation(workspace):
    set_params(workspace, compare={"keep_layers": 3, "strategies": ["alternate"]})
    # as in the Docker image: the dependencies are those of this test run (sh puts them on PATH), no venv is built
    result = sh("make", "compare-strategies", "PRUNEQUANT_SETUP=skip", cwd=workspace)
    assert "every section valid" in result.stdout  # `make check` ran first
    # Only the comparison's stages run: the baseline, its evaluation and the sensitivity are reused.
    assert ran_stages(result.stdout) == sorted([MACHINE, *(  # the machine check: the refinetunes depend on it
        f"strategies/dvc.yaml:{stage}" for stage in (
            "evaluate@alternate-distill", "evaluate@alternate-no-distill", "prune@alternate",
            "refinetune@alternate-distill", "refinetune@alternate-no-distill", "results"))])
    strategies = pd.read_csv(workspace / "metrics" / "strategies.csv")
    results = pd.read_csv(workspace / "metrics" / "results.csv")
    assert list(strategies.columns) == list(results.columns)
    assert strategies["variant"].unique().tolist() == [
        "baseline", "pruned-3-alternate-distill", "pruned-3-alternate-no-distill"]
    assert set(strategies.loc[strategies.variant != "baseline", "layers"]) == {3}
    assert set(strategies.loc[strategies.variant != "baseline", "reference"]) == {"baseline-fp32"}
    config = json.loads((workspace / "models" / "strategies" / "pruned-3-alternate-raw" / "config.json").read_text())
    assert config["pruned_from_layers"] == [0, 2, 5]
    assert "| pruned-3-alternate-no-distill" in (workspace / "reports" / "strategies.md").read_text()
    assert ran_stages(sh("dvc", "repro", "strategies/dvc.yaml", cwd=workspace).stdout) == [MACHINE]


def _stale(repo, dvcfile: str = "dvc.yaml") -> list[str]:
    """The stages `dvc status` lists as changed (the always-run machine check aside)."""
    status = json.loads(sh("dvc", "status", "--json", dvcfile, cwd=repo).stdout or "{}")
    return sorted(name.removeprefix("strategies/dvc.yaml:") for name in status if not name.endswith("machine"))


def test_an_evaluate_change_touches_no_training(workspace):
    set_params(workspace, evaluate={"confidence_level": 0.9})
    assert _stale(workspace) == sorted([
        "evaluate", "evaluate-pruned@4", "quantize-gpu-pruned@4-bnb-nf4", "quantize-onnx-pruned@4-onnx-int8-dynamic",
        "quantize-gpu@baseline-bnb-nf4", "quantize-onnx@baseline-onnx-int8-dynamic", "report", "results",
        "sensitivity"])


def _stale_after_touching(repo, module: str, dvcfile: str = "dvc.yaml") -> list[str]:
    """The stages `dvc status` lists after a comment is added to one library module (then restored)."""
    path = repo / "src" / "prunequant" / module
    original = path.read_text()
    path.write_text(original + "\n# touched\n")
    try:
        return _stale(repo, dvcfile)
    finally:
        path.write_text(original)


def test_a_code_change_reruns_exactly_the_stages_that_run_it(workspace):
    """The dependency rule at work on an up-to-date pipeline: `dvc status` after touching one module."""
    repo = workspace
    assert _stale_after_touching(repo, "quantization/onnx_schemes.py") == [
        "quantize-onnx-pruned@4-onnx-int8-dynamic", "quantize-onnx@baseline-onnx-int8-dynamic"]
    assert _stale_after_touching(repo, "training/trainer.py") == ["finetune", "refinetune@4"]  # int8-qat: not listed
    assert _stale_after_touching(repo, "report.py") == ["report"]
    assert _stale_after_touching(repo, "transfer.py") == ["transfer"]
    assert _stale_after_touching(repo, "benchmarking/targets.py") == []  # `make bench-cpu` runs it, `dvc repro` never
    assert _stale_after_touching(repo, "plots.py") == ["report"]
    assert _stale_after_touching(repo, "quantization/gpu_schemes.py") == [
        "quantize-gpu-pruned@4-bnb-nf4", "quantize-gpu@baseline-bnb-nf4"]


def test_a_new_width_variant_from_dvc_exp_run_runs_only_its_stages_and_rows_of_the_earlier_run_never_show(workspace):
    """Switching pruned models and schemes with `dvc exp run -S`, to a width cut: only the new model's stages run,
    its heads and FFN neurons are cut out of the weights, and no row of the first run survives in results.csv or the
    reports (their files stay on disk)."""
    set_params(workspace, quantize={"schemes": by_family("onnx-int8-dynamic")})
    result = sh("dvc", "exp", "run", "-S", "prune.keep_layers=[5-w50]", cwd=workspace)
    assert ran_stages(result.stdout) == sorted([
        "evaluate-pruned@5-w50", MACHINE, "prune@5-w50", "quantize-onnx-pruned@5-w50-onnx-int8-dynamic",
        "refinetune@5-w50", "report", "results"])
    config = json.loads((workspace / "models" / "pruned-5-w50" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["intermediate_size"]) == (5, 768)  # MiniLM's 1,536, halved
    assert {layer: len(heads) for layer, heads in config["pruned_heads"].items()} == {str(i): 6 for i in range(5)}
    results = pd.read_csv(workspace / "metrics" / "results.csv")
    assert sorted(set(zip(results.variant, results.precision, strict=True))) == [
        ("baseline", "fp32"), ("baseline", "onnx-int8-dynamic"),
        ("pruned-5-w50", "fp32"), ("pruned-5-w50", "onnx-int8-dynamic")]
    assert (workspace / "metrics" / "evaluate" / "pruned-4-fp32.json").is_file()  # the first run's, still on disk
    for report in ("results.md", "report.md"):
        text = (workspace / "reports" / report).read_text()
        assert "pruned-4" not in text and "bnb-nf4" not in text, report


def test_one_schemes_settings_rerun_only_that_scheme_and_metrics_diff_compares_two_branches(workspace):
    """The README's way to compare configurations: a branch per configuration, `dvc metrics diff`."""
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    sh(*git, "add", "-A", cwd=workspace)
    sh(*git, "commit", "-qm", "main configuration", cwd=workspace)
    sh("git", "branch", "-M", "main", cwd=workspace)
    sh("git", "checkout", "-qb", "per-tensor", cwd=workspace)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["quantize"]["settings"]["onnx-int8-dynamic"]["per_channel"] = False
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(sh("dvc", "repro", cwd=workspace).stdout) == sorted([
        MACHINE, "quantize-onnx-pruned@4-onnx-int8-dynamic", "quantize-onnx@baseline-onnx-int8-dynamic", "report",
        "results"])
    sh(*git, "commit", "-qam", "per-tensor INT8", cwd=workspace)
    diff = sh("dvc", "metrics", "diff", "main", "--md", cwd=workspace).stdout
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in diff.splitlines()[2:]
            if line.startswith("|")]
    changed = {(path, key): (old, new) for path, key, old, new, *_ in rows}
    old, new = changed[("metrics/evaluate/baseline-onnx-int8-dynamic.json", "size_mb")]  # one scale per tensor
    assert float(new) < float(old), diff
    assert not any(path == "metrics/evaluate/baseline-fp32.json" for path, _ in changed)  # the baseline did not
    sh("git", "checkout", "-q", "main", cwd=workspace)
    sh("dvc", "checkout", "dvc.yaml", cwd=workspace)  # the root pipeline's outputs as on main
    assert _stale(workspace) == []


def test_a_team_shares_outputs_through_a_dvc_remote(workspace, tmp_path):
    """`make push` in one clone, `make pull` in another: the second clone reruns nothing."""
    repo = workspace
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    sh("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=repo)
    sh(*git, "add", "-A", cwd=repo)  # the lock and the metrics the repro wrote, and the remote
    sh(*git, "commit", "-qm", "reproduced, with a shared DVC remote", cwd=repo)
    sh("dvc", "push", "dvc.yaml", cwd=repo)  # `make push` pushes every pipeline's outputs
    other = tmp_path / "teammate"
    sh("git", "clone", "-q", str(repo), str(other), cwd=tmp_path)
    sh("dvc", "pull", "dvc.yaml", cwd=other)
    assert (other / "models" / "baseline" / "model.safetensors").read_bytes() == (
        repo / "models" / "baseline" / "model.safetensors").read_bytes()
    assert ran_stages(sh("dvc", "repro", cwd=other).stdout) == [MACHINE]  # always checked, nothing else


def test_unreachable_hub_model_fails_in_one_line_and_keeps_prepared_data(workspace):
    repo = workspace
    before = {p.name: p.read_bytes() for p in (repo / "data" / "prepared").iterdir()}
    set_params(repo, base={"model": "bert-base-uncased"})
    result = sh("dvc", "repro", cwd=repo, check=False)
    assert result.returncode != 0
    assert ("error: base.model: could not load 'bert-base-uncased'" in result.stderr)
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in (repo / "data" / "prepared").iterdir()} == before

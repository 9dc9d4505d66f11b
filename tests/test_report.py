import json

import pytest

from prunequant.errors import PrunequantError
from prunequant.results import RESULT_COLUMNS, collect_results, markdown_table, summary_table

from .conftest import by_family


def evaluation(variant, accuracy):
    split = {"n": 100, "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.05, "accuracy_ci_high": accuracy + 0.05}
    return {
        "variant": variant, "model": "minilm-l6", "layers": 6, "precision": "fp32", "device": "cpu",
        "size_mb": 90.9, "status": "ok", "test": split, "validation": split,
    }


def test_collects_one_row_per_split_in_order(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(evaluation("pruned-4", 0.8)))
    (tmp_path / "a.json").write_text(json.dumps(evaluation("baseline", 0.82)))
    table = collect_results(tmp_path)
    assert list(table.columns) == RESULT_COLUMNS
    assert table[["variant", "split"]].values.tolist() == [
        ["baseline", "validation"], ["baseline", "test"], ["pruned-4", "validation"], ["pruned-4", "test"],
    ]
    text = markdown_table(table)
    assert "| baseline" in text and "82.00 [77.00, 87.00]" in text and "95% CI" in text


def test_no_or_incomplete_evaluations(tmp_path):
    with pytest.raises(PrunequantError, match="no evaluation metrics"):
        collect_results(tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"variant": "x"}))
    with pytest.raises(PrunequantError, match="lack model, layers"):
        collect_results(tmp_path)


def test_combines_files_and_folders(tmp_path):
    (tmp_path / "baseline.json").write_text(json.dumps(evaluation("baseline", 0.82)))
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "top.json").write_text(json.dumps(evaluation("pruned-3-top", 0.8)))
    table = collect_results(tmp_path / "baseline.json", tmp_path / "strategies")
    assert table["variant"].unique().tolist() == ["baseline", "pruned-3-top"]
    with pytest.raises(PrunequantError, match="missing.json: no evaluation metrics"):
        collect_results(tmp_path / "missing.json")


def test_unavailable_variants_get_rows_without_figures(tmp_path):
    (tmp_path / "baseline-fp32.json").write_text(json.dumps(evaluation("baseline", 0.82)))
    quantized = {**evaluation("baseline", 0.81), "precision": "onnx-int8-dynamic", "reference": "baseline-fp32"}
    (tmp_path / "baseline-onnx-int8-dynamic.json").write_text(json.dumps(quantized))
    (tmp_path / "baseline-fp16.json").write_text(json.dumps({
        "variant": "baseline", "model": "minilm-l6", "layers": 6, "precision": "fp16", "device": "cuda",
        "size_mb": None, "status": "n/a: needs CUDA", "reference": "baseline-fp32"}))
    table = collect_results(tmp_path)
    # fp32 first, then the registry's order (CPU schemes before GPU ones)
    assert table[["precision", "split"]].values.tolist() == [
        ["fp32", "validation"], ["fp32", "test"], ["onnx-int8-dynamic", "validation"], ["onnx-int8-dynamic", "test"],
        ["fp16", "validation"], ["fp16", "test"]]
    gpu = table[table.precision == "fp16"]
    assert (gpu["status"] == "n/a: needs CUDA").all() and gpu["accuracy"].isna().all() and gpu["size_mb"].isna().all()
    row = [line for line in markdown_table(table).splitlines() if "| fp16" in line][0]
    assert "n/a: needs CUDA" in row and "| n/a " in row


def test_test_summary_has_one_row_per_artifact_with_size_ratio(tmp_path):
    (tmp_path / "baseline-fp32.json").write_text(json.dumps(evaluation("baseline", 0.82)))
    quantized = {**evaluation("baseline", 0.81), "precision": "onnx-int8-dynamic", "size_mb": 22.7,
                 "reference": "baseline-fp32"}
    quantized["test"] = {**quantized["test"], "accuracy_delta": -0.01, "mcnemar_p": 0.5,
                         "verdict": "no significant difference"}
    (tmp_path / "q.json").write_text(json.dumps(quantized))
    lines = summary_table(collect_results(tmp_path)).splitlines()
    assert len(lines) == 4  # header, rule, two artifacts
    assert "| 81.00 [76.00, 86.00]" in lines[3] and "-1.00 vs baseline-fp32 (p=0.5)" in lines[3]
    assert [cell.strip() for cell in lines[3].split("|")][-3:-1] == ["22.7", "0.250"]


def test_only_the_named_evaluations_are_read(tmp_path):
    (tmp_path / "baseline-fp32.json").write_text(json.dumps(evaluation("baseline", 0.82)))
    (tmp_path / "pruned-4-fp32.json").write_text(json.dumps(evaluation("pruned-4", 0.8)))  # an earlier run's
    table = collect_results(tmp_path, names=["baseline-fp32"])
    assert table["variant"].unique().tolist() == ["baseline"]
    with pytest.raises(PrunequantError, match=r"^pruned-5-fp32.json: not found in .*, though params.yaml defines "
                                              r"it; run `dvc repro`$"):
        collect_results(tmp_path, names=["baseline-fp32", "pruned-5-fp32"])


def _results_stage_module():
    from .conftest import script_module

    return script_module("stages/results.py")


@pytest.mark.parametrize("params", [
    {},  # the tests' complete params: every scheme, two pruned models, the code's strategies
    {"prune": {"keep_layers": [5, 2]}, "quantize": {"schemes": by_family("onnx-int8-dynamic", "fp16")},
     "compare": {"keep_layers": 2, "strategies": ["top"]}},
])
def test_the_results_stages_read_exactly_what_the_pipelines_define(tmp_path, params):
    """The names the results stage derives from params are the evaluation outputs of the stages dvc.yaml defines."""
    import shutil
    import subprocess
    import sys

    from dvc.repo import Repo

    from prunequant.params import load
    from prunequant.params.prune import CompareConfig, PruneConfig
    from prunequant.params.quantize import QuantizeConfig

    from .conftest import DVC_FILES, REPO, write_params

    for name in DVC_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    write_params(tmp_path / "params.yaml", **params)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    repo = Repo(str(tmp_path))
    try:
        written = {out.fs_path for stage in repo.index.stages for out in stage.outs
                   if out.fs_path.endswith(".json") and "/evaluate/" in out.fs_path}
    finally:
        repo.close()
    stage = _results_stage_module()
    config = load(tmp_path / "params.yaml", prune=PruneConfig, quantize=QuantizeConfig, compare=CompareConfig)
    root = {str(tmp_path / "metrics" / "evaluate" / f"{name}.json")
            for name in stage.root_evaluations(config.prune, config.quantize)}
    strategies = stage.strategy_evaluations(config.compare)
    assert strategies[0] == "baseline-fp32"
    strategies = {str(tmp_path / "metrics" / "strategies" / "evaluate" / f"{name}.json") for name in strategies[1:]}
    # widths/dvc.yaml: each cut scored in FP32 and in compare.scheme (what compare_widths reads)
    widths = {str(tmp_path / "metrics" / "widths" / "evaluate" / f"pruned-{cut.name}-{precision}.json")
              for cut in config.compare.cut_list for precision in ("fp32", config.compare.scheme)}
    assert root | strategies | widths == written and not root & strategies

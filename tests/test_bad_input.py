"""The bad-input catalogue: each case runs a stage on a small workspace whose earlier stages already ran, and
checks that it stops with one line on stderr naming the param or file and the fix, without a traceback, and that
every earlier output is byte-identical afterwards. Most cases run the stage's command in this process (click's
runner: the same command, options and error handling); the ``process=True`` cases run the script as DVC does, for
the exit status and stderr of a real process (and what only a process can have: a file-size limit, a training
run's progress bars)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import resource
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import by_family, invoke_stage, make_workspace, params_dict, run_stage_in, tiny_frame

# One worker runs the whole module: its module fixture is built once.
pytestmark = [pytest.mark.bad_input, pytest.mark.xdist_group("bad_input")]

GOOD = params_dict(
    base={"seed": 0, "model": "tiny", "data": "data.csv", "max_seq_length": 16},
    prepare={"validation_size": 0.25, "test_size": 0.25},
    finetune={"epochs": 2, "learning_rate": 1e-3, "batch_size": 8, "warmup_ratio": 0.0, "logging_steps": 1,
              "checkpoint_steps": 0},
    refinetune={"epochs": 1, "batch_size": 8, "transfer": None},
    prune={"keep_layers": [1]},
    quantize={"schemes": by_family("int8-dynamic", "fp8")},
)
PROGRESS = re.compile(r"^\s*(Map:\s*)?\d+%\|.*\|")  # a tqdm bar


def stage(workspace: Path, name: str, *args: str, preexec: Callable | None = None):
    return run_stage_in(workspace, name, *args, preexec_fn=preexec)


def snapshot(workspace: Path) -> dict[str, str]:
    """sha256 of every file the good run wrote (the case folder aside)."""
    return {str(p.relative_to(workspace)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workspace.rglob("*")) if p.is_file() and "cases" not in p.parts}


@pytest.fixture(scope="module")
def workspace(tiny_model_dir, tmp_path_factory):
    """prepare, finetune, evaluate and sensitivity already run on a 2-layer model and 80 sentences."""
    root = make_workspace(tmp_path_factory.mktemp("workspace"), tiny_model_dir, GOOD)
    for args in (
        ("prepare", "--out", "data/prepared", "--metrics", "metrics/prepare.json"),
        ("finetune", "--data", "data/prepared", "--out", "models/baseline", "--live", "metrics/finetune"),
        ("evaluate", "--data", "data/prepared", "--model", "models/baseline", "--variant", "baseline",
         "--metrics", "metrics/evaluate/baseline-fp32.json", "--predictions", "predictions/baseline-fp32"),
        ("sensitivity", "--data", "data/prepared", "--model", "models/baseline", "--csv", "metrics/sensitivity.csv",
         "--blocks", "metrics/sensitivity-blocks.csv", "--metrics", "metrics/sensitivity.json",
         "--png", "reports/sensitivity.png", "--heads", "metrics/sensitivity-heads.csv", "--ffn",
         "metrics/sensitivity-ffn.csv", "--scores", "data/importance.safetensors", "--heads-png", "reports/heads.png"),
    ):
        result = invoke_stage(root, *args)
        assert result.exit_code == 0, result.output
    (root / "cases").mkdir()
    return root


def _merge(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in change.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _csv(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda case: frame.to_csv(case / "data.csv", index=False)


def _copy_baseline(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        shutil.copytree(case.parents[1] / "models" / "baseline", case / "model")
        edit(case / "model")
    return setup


def _truncate(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _corrupt(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(b"\x00" * 8 + weights.read_bytes()[8:])  # the header length is garbage


def _drop_tokenizer(model: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)


def _pickle_only(model: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()


def _nan_weights(model: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    tensors["classifier.weight"][0, 0] = float("nan")
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})


def _nan_model(case: Path) -> None:
    """The baseline with one NaN weight, as ./nan (./model is the failing run's output)."""
    _copy_baseline(_nan_weights)(case)
    (case / "model").rename(case / "nan")


def _empty_transfer(case: Path) -> None:
    from prunequant.transfer import save_transfer

    save_transfer(pd.DataFrame({"text": pd.Series(dtype=str)}), case / "transfer.parquet")


def _read_only(case: Path) -> None:
    (case / "out").mkdir()
    (case / "out").chmod(0o555)


def _file_size_limit() -> None:
    """Files above 1 kB cannot be written: what a full disk looks like to the writer."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


QUANTIZE = ("--data", "data/prepared", "--model", "models/baseline", "--variant", "baseline",
            "--reference", "predictions/baseline-fp32", "--out", "{case}/artifact", "--metrics", "{case}/m.json",
            "--predictions", "{case}/predictions")
FINETUNE = ("--data", "data/prepared", "--out", "{case}/model", "--live", "{case}/live")
PREPARE = ("--out", "{case}/prepared", "--metrics", "{case}/prepare.json")
EVALUATE_COPY = ("--data", "data/prepared", "--model", "{case}/model", "--variant", "x",
                 "--metrics", "{case}/m.json", "--predictions", "{case}/predictions")


@dataclass
class Case:
    stage: str
    args: tuple[str, ...]
    expected: str  # part of the one-line error
    params: dict | str = field(default_factory=dict)  # merged into GOOD; a string is the whole params file
    setup: Callable[[Path], None] | None = None
    preexec: Callable | None = None
    outputs: tuple[str, ...] = ()  # must not exist afterwards
    process: bool = False  # run as a real process (as DVC does), not in this one


CASES = {
    "misspelled-section": Case("prepare", PREPARE, "unknown key 'fintune' (did you mean 'finetune'?)",
                               {"fintune": {"epochs": 1}}, outputs=("prepared",), process=True),
    "misspelled-key": Case("finetune", FINETUNE, "unknown key 'finetune.learning_rte' (did you mean 'learning_rate'?)",
                           {"finetune": {"learning_rte": 1e-4}}, outputs=("model", "live")),
    "misspelled-scheme-setting": Case(
        "quantize", (*QUANTIZE, "--scheme", "onnx-int8-static"),
        "unknown key 'quantize.settings.onnx-int8-static.calibration_sampels' (did you mean 'calibration_samples'?)",
        {"quantize": {"schemes": by_family("onnx-int8-static"),
                      "settings": {"onnx-int8-static": {"calibration_sampels": 64}}}},
        outputs=("artifact", "m.json")),
    "not-yaml": Case("prepare", PREPARE, "params.yaml: not valid YAML at line 3; fix the syntax", "base:\n  seed: [1\n",
                     outputs=("prepared",)),
    "wrong-type": Case("finetune", FINETUNE, "finetune.batch_size must be of type int, got 'eight'",
                       {"finetune": {"batch_size": "eight"}}, outputs=("model",)),
    "negative-lr": Case("finetune", FINETUNE, "finetune.learning_rate must be in (0, 1), got -1e-05",
                        {"finetune": {"learning_rate": -1e-5}}, outputs=("model",)),
    "batch-size-0": Case("finetune", FINETUNE, "finetune.batch_size must be >= 1, got 0",
                         {"finetune": {"batch_size": 0}}, outputs=("model",)),
    "infinite-epochs": Case("finetune", FINETUNE, "finetune.epochs must be a finite number",
                            {"finetune": {"epochs": float("inf")}}, outputs=("model",)),
    "batch-over-processes": Case("finetune", FINETUNE, "finetune.batch_size (8) must divide evenly over "
                                 "finetune.processes (3)", {"finetune": {"processes": 3}}, outputs=("model",)),
    "seq-len-above-model": Case("finetune", FINETUNE, "base.max_seq_length is 512 but the model takes at most 64",
                                {"base": {"max_seq_length": 512}}, outputs=("model", "live"), process=True),
    "keep-layers-out-of-range": Case(
        "prune", ("--model", "models/baseline", "--sensitivity", "metrics/sensitivity.csv",
                  "--blocks", "metrics/sensitivity-blocks.csv", "--scores", "data/importance.safetensors",
                  "--keep-layers", "2", "--out", "{case}/pruned"), "keep_layers is 2 but must be between 1 and 1",
        outputs=("pruned",)),
    "width-cut-without-scores": Case(
        "prune", ("--model", "models/baseline", "--sensitivity", "metrics/sensitivity.csv",
                  "--blocks", "metrics/sensitivity-blocks.csv", "--scores", "{case}/none.safetensors",
                  "--keep-layers", "1-w50", "--out", "{case}/pruned"),
        "none.safetensors: not found; run `dvc repro sensitivity` first", outputs=("pruned",)),
    "width-cut-misspelled": Case(
        "prune", ("--model", "models/baseline", "--sensitivity", "metrics/sensitivity.csv",
                  "--blocks", "metrics/sensitivity-blocks.csv", "--scores", "data/importance.safetensors",
                  "--keep-layers", "1-w50%", "--out", "{case}/pruned"),
        "--keep-layers has '1-w50%'; write <layers>, <layers>-w<pct>", outputs=("pruned",)),
    "unknown-strategy": Case(
        "prune", ("--model", "models/baseline", "--sensitivity", "metrics/sensitivity.csv",
                  "--blocks", "metrics/sensitivity-blocks.csv", "--scores", "data/importance.safetensors",
                  "--keep-layers", "1", "--out", "{case}/pruned"),
        "prune.strategy is 'sensitivty' (did you mean 'sensitivity'?)",
        {"prune": {"strategy": "sensitivty"}}, outputs=("pruned",)),
    "unknown-scheme": Case("quantize", (*QUANTIZE, "--scheme", "int8-dynamic"),
                           "quantize.schemes.torch[0]",
                           {"quantize": {"schemes": {**by_family(), "torch": ["int8-dinamic"]}}},
                           outputs=("artifact",)),
    "unknown-data-set": Case("prepare", PREPARE, "unknown data set 'rotten_tomatos' (did you mean 'rotten_tomatoes'?)",
                             {"base": {"data": "rotten_tomatos"}}, outputs=("prepared",)),
    "unknown-model": Case("finetune", FINETUNE, "unknown model 'minilm-l7' (did you mean 'minilm-l6'?)",
                          {"base": {"model": "minilm-l7"}}, outputs=("model",)),
    "hub-model-offline": Case("finetune", FINETUNE, "base.model: could not load 'bert-base-uncased'",
                              {"base": {"model": "bert-base-uncased"}}, outputs=("model",)),
    "hub-data-offline": Case("prepare", PREPARE, "base.data: could not load 'glue/sst2'",
                             {"base": {"data": "glue/sst2"}}, outputs=("prepared",)),
    "path-outside-repo": Case("prepare", PREPARE, "base.data is '../../data.csv', which points outside the repository",
                              {"base": {"data": "../../data.csv"}}, outputs=("prepared",)),
    "missing-text-column": Case(
        "prepare", PREPARE, "prepare.text_column: column 'text' not in the train split (did you mean 'texts'?)",
        {"base": {"data": "{case}/data.csv"}}, _csv(tiny_frame(10).rename(columns={"text": "texts"})),
        outputs=("prepared",)),
    "missing-labels": Case(
        "prepare", PREPARE,
        "prepare.label_column: 2 rows of the train split have no label in column 'label' (first: row 3)",
        {"base": {"data": "{case}/data.csv"}},
        _csv(tiny_frame(10).assign(label=lambda f: f.label.astype(object).where(~f.index.isin([3, 7]), ""))),
        outputs=("prepared",)),
    "empty-data-set": Case("prepare", PREPARE, "split is empty", {"base": {"data": "{case}/data.csv"}},
                           _csv(tiny_frame(10).iloc[:0]), outputs=("prepared",)),
    "duplicated-ids": Case(
        "prepare", PREPARE, "the train split repeats ids in its 'idx' column (e.g. 3",
        {"base": {"data": "{case}/data.csv"}},
        _csv(tiny_frame(10).assign(idx=lambda f: [min(i, 3) for i in range(len(f))])),
        outputs=("prepared",)),
    "missing-data-file": Case("prepare", PREPARE, "base.data: file 'nowhere.csv' not found",
                              {"base": {"data": "nowhere.csv"}}, outputs=("prepared",)),
    "unknown-transfer-set": Case("transfer", ("--data", "data/prepared", "--out", "{case}/transfer.parquet",
                                             "--metrics", "{case}/m.json"),
                                 "refinetune.transfer: unknown data set 'imbd' (did you mean 'imdb'?)",
                                 {"refinetune": {"transfer": "imbd"}}, outputs=("transfer.parquet", "m.json")),
    "transfer-not-built": Case("refinetune", ("--data", "data/prepared", "--model", "models/baseline", "--teacher",
                                              "models/baseline", "--transfer", "{case}/none.parquet", *FINETUNE[2:]),
                               "transfer set not found; run `dvc repro transfer` first", outputs=("model", "live")),
    "hidden-layers-not-one-per-layer": Case(
        "refinetune", ("--data", "data/prepared", "--model", "models/baseline", "--teacher", "models/baseline",
                       "--transfer", "{case}/transfer.parquet", *FINETUNE[2:]),
        "refinetune.hidden_layers lists 3 teacher layers for a student of 2; give one per student layer",
        {"refinetune": {"hidden_weight": 0.1, "hidden_layers": [0, 1, 1]}}, _empty_transfer, outputs=("model", "live")),
    "data-not-prepared": Case("finetune", ("--data", "{case}/none", "--out", "{case}/model", "--live", "{case}/live"),
                              "prepared data not found; run `dvc repro prepare` first", outputs=("model",)),
    "truncated-safetensors": Case("evaluate", EVALUATE_COPY, "not a complete model folder",
                                  setup=_copy_baseline(_truncate), outputs=("m.json", "predictions")),
    "corrupt-safetensors": Case("evaluate", EVALUATE_COPY, "not a complete model folder",
                                setup=_copy_baseline(_corrupt), outputs=("m.json", "predictions"), process=True),
    "pickle-weights-refused": Case("evaluate", EVALUATE_COPY, "not a complete model folder",
                                   setup=_copy_baseline(_pickle_only), outputs=("m.json", "predictions")),
    "missing-tokenizer": Case("evaluate", EVALUATE_COPY, "no tokenizer files in the model folder",
                              setup=_copy_baseline(_drop_tokenizer), outputs=("m.json", "predictions")),
    "nan-loss": Case("finetune", ("--data", "data/prepared", "--out", "{case}/model", "--live", "{case}/live"),
                     "the training loss became nan at step 1; lower finetune.learning_rate",
                     {"base": {"model": "{case}/nan"}, "finetune": {"checkpoint_steps": 1}},
                     _nan_model,
                     outputs=("model",), process=True),
    "read-only-output": Case("prepare", ("--out", "{read-only}/prepared", "--metrics", "{read-only}/m.json"),
                             "make it writable", setup=_read_only, outputs=("out/prepared",)),
    "disk-full": Case("prepare", PREPARE, "refuses files this large", preexec=_file_size_limit,
                      outputs=("prepared",), process=True),
}


def _fill(value, case_dir: str):
    if isinstance(value, dict):
        return {k: _fill(v, case_dir) for k, v in value.items()}
    return value.replace("{case}", case_dir) if isinstance(value, str) else value


@pytest.mark.parametrize("name", CASES)
def test_bad_input_stops_in_one_line_and_loses_nothing(workspace, name):
    case = CASES[name]
    case_dir = workspace / "cases" / name
    case_dir.mkdir()
    rel = str(case_dir.relative_to(workspace))
    # root writes into a chmod 555 folder; sysfs refuses everyone
    read_only = "/sys/prunequant" if os.geteuid() == 0 else f"{rel}/out"
    if case.setup:
        case.setup(case_dir)
    params = case.params if isinstance(case.params, str) else yaml.safe_dump(_merge(GOOD, _fill(case.params, rel)))
    (case_dir / "params.yaml").write_text(params)
    before = snapshot(workspace)

    args = (*(a.replace("{read-only}", read_only).replace("{case}", rel) for a in case.args),
            "--params", f"{rel}/params.yaml")
    if case.process:
        result = stage(workspace, case.stage, *args, preexec=case.preexec)
        status = result.returncode
    else:
        result = invoke_stage(workspace, case.stage, *args)
        status = result.exit_code

    assert status == 1, result.stderr
    # One line: the error. A stage that failed while training may have drawn progress bars before it.
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert all(PROGRESS.search(line) for line in lines[:-1]), result.stderr
    assert case.expected in lines[-1]
    assert snapshot(workspace) == before
    for output in case.outputs:
        assert not (case_dir / output).exists(), output
    if name == "nan-loss":  # no checkpoint of the broken run is left to resume from
        assert not list(case_dir.glob(".model.checkpoints/checkpoint-*"))


def test_gpu_only_scheme_on_cpu_is_an_na_row(workspace):
    """Not an error: the artifact records why it was not built, and the results show n/a."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    before = snapshot(workspace)
    rel = "cases/gpu-only"
    result = invoke_stage(workspace, "quantize", *(a.replace("{case}", rel) for a in QUANTIZE), "--scheme", "fp8")
    assert result.exit_code == 0, result.output
    metrics = json.loads((workspace / rel / "m.json").read_text())
    assert metrics["status"].startswith("n/a: needs CUDA") and metrics["size_mb"] is None
    assert snapshot(workspace) == before

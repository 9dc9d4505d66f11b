import json

import pytest

import torch
from transformers import set_seed

from prunequant.errors import PrunequantError
from prunequant.modeling import load_classifier, load_tokenizer
from prunequant.pruning import drop_layers
from prunequant.training import FinetuneConfig, RefinetuneConfig, finetune

from .conftest import tiny_frame


def run(tiny_model_dir, live_dir=None, seed=0, precision="fp32"):
    set_seed(seed)
    model = load_classifier(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = FinetuneConfig(epochs=10, learning_rate=1e-2, batch_size=16, warmup_ratio=0.0, logging_steps=5,
                         precision=precision)
    frame = tiny_frame(40)
    metrics = finetune(model, tokenizer, frame, frame, cfg, seed=seed, max_seq_length=16, live_dir=live_dir)
    return model, metrics


def test_finetune_learns_and_logs_curves(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVCLive inspects the git repo around the working directory
    model, metrics = run(tiny_model_dir, live_dir=tmp_path / "live")
    assert metrics["accuracy"] > 0.9  # the sentiment word decides the label
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["eval"]["accuracy"] == metrics["accuracy"]
    loss_rows = (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert loss_rows[0].split("\t") == ["step", "loss"] and len(loss_rows) > 2
    steps = [int(row.split("\t")[0]) for row in loss_rows[1:]]
    assert steps == sorted(steps) and steps[0] == 5  # optimizer steps, not log counts


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_finetune_is_deterministic(tiny_model_dir, precision):
    first, _ = run(tiny_model_dir, seed=3, precision=precision)
    second, _ = run(tiny_model_dir, seed=3, precision=precision)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # bit for bit: the same params on the same machine give the same model


def test_bf16_training_autocasts_but_keeps_fp32_weights_and_says_so(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fp32, _ = run(tiny_model_dir, seed=3)
    bf16, metrics = run(tiny_model_dir, seed=3, precision="bf16", live_dir=tmp_path / "live")
    assert metrics["accuracy"] > 0.9
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # master weights: the saved model is FP32
    assert any(not torch.equal(a, b) for a, b in zip(fp32.parameters(), bf16.parameters()))  # bf16 compute ran
    again, _ = run(tiny_model_dir, seed=3)  # an FP32 run after a bf16 one in the same process is FP32 again
    assert all(torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), again.state_dict().values()))
    assert bf16.config.training_precision == "bf16" and fp32.config.training_precision == "fp32"
    assert json.loads((tmp_path / "live" / "metrics.json").read_text())["precision"] == "bf16"


def test_auto_falls_back_to_fp32_without_native_bf16(tiny_model_dir, monkeypatch, capsys):
    from prunequant import accelerator

    monkeypatch.setattr(accelerator, "probe", lambda: {"cuda": False, "gpu": None, "bf16": False})
    model, _ = run(tiny_model_dir, seed=3, precision="auto")
    assert "finetune: precision auto -> fp32 (this CPU has no native bfloat16: falling back to FP32)" in (
        capsys.readouterr().out)
    assert model.config.training_precision == "fp32"
    fp32, _ = run(tiny_model_dir, seed=3, precision="fp32")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fp32.state_dict().values()))


def test_auto_picks_bf16_where_native(tiny_model_dir, monkeypatch, capsys):
    from prunequant import accelerator

    monkeypatch.setattr(accelerator, "probe", lambda: {"cuda": False, "gpu": None, "bf16": True})
    model, _ = run(tiny_model_dir, seed=3, precision="auto")
    assert "finetune: precision auto -> bf16 (this CPU has native bfloat16)" in capsys.readouterr().out
    assert model.config.training_precision == "bf16"


def test_distillation_trains_a_pruned_student(tiny_model_dir):
    set_seed(0)
    teacher, _ = run(tiny_model_dir)
    student = drop_layers(teacher, [1])
    for param in student.parameters():  # start the student from scratch-ish so it must learn
        param.data.normal_(0, 0.02)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    # Pure distillation (alpha 1) on training labels that are all wrong: only the teacher can teach the student
    # the true labels, which the validation frame has. A trainer that ignored the teacher would learn the flipped
    # labels and score near 0.
    cfg = RefinetuneConfig(epochs=10, learning_rate=1e-2, batch_size=16, warmup_ratio=0.0, logging_steps=5,
                           distill=True, temperature=2.0, alpha=1.0, hidden_weight=0.1)
    frame = tiny_frame(40)
    flipped = frame.assign(label=1 - frame["label"])
    metrics = finetune(student, tokenizer, flipped, frame, cfg, seed=0, max_seq_length=16,
                       teacher=teacher, kept_layers=student.config.pruned_from_layers)
    assert metrics["accuracy"] > 0.9
    assert student.config.num_hidden_layers == 1


def test_hidden_state_matching_needs_a_pruned_model(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir))
    cfg = RefinetuneConfig(epochs=1, hidden_weight=0.1)
    with pytest.raises(PrunequantError, match="refinetune.hidden_weight > 0 needs a model pruned by prunequant"):
        finetune(model, load_tokenizer(str(tiny_model_dir)), tiny_frame(4), tiny_frame(4), cfg,
                 seed=0, max_seq_length=16, teacher=model)


def test_relaunch_needs_a_gpu_per_process_on_cuda(monkeypatch):
    from prunequant import launch

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(launch.torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PrunequantError, match=r"finetune.processes is 4 but this machine has 2 GPU\(s\)"):
        launch.relaunch(4, "finetune")
    launch.relaunch(1, "finetune")  # one process: runs here, no launcher
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(launch, "_die_with_launcher", lambda: None)
    launch.relaunch(4, "finetune")  # already launched: runs here


def test_relaunch_command(monkeypatch):
    """Two processes on CPU: the stage becomes `accelerate launch --multi_gpu` (exec) with gloo, the same argv."""
    from prunequant import launch

    calls = []
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(launch.sys, "argv", ["stages/finetune.py", "--out", "m"])
    monkeypatch.setattr(launch.os, "execve", lambda path, command, env: calls.append((command, env)))
    launch.relaunch(2, "finetune")
    command, env = calls[0]
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[-3:] == ["stages/finetune.py", "--out", "m"]
    assert env["ACCELERATE_USE_CPU"] == "true"

import json
import re

import pytest
import torch
from transformers import set_seed

from prunequant.errors import PrunequantError
from prunequant.modeling import load_classifier, load_tokenizer
from prunequant.pruning import drop_layers
from prunequant.training.trainer import TEACHER_LOGITS, DistillationTrainer, finetune, tokenize

from .conftest import config, tiny_frame


def run(tiny_model_dir, live_dir=None, seed=0, precision="fp32"):
    set_seed(seed)
    model = load_classifier(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = config("finetune", epochs=10, learning_rate=1e-2, batch_size=16, warmup_ratio=0.0, logging_steps=5,
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
    # bf16 compute ran
    assert any(not torch.equal(a, b) for a, b in zip(fp32.parameters(), bf16.parameters(), strict=True))
    again, _ = run(tiny_model_dir, seed=3)  # an FP32 run after a bf16 one in the same process is FP32 again
    assert all(torch.equal(a, b) for a, b in zip(fp32.state_dict().values(), again.state_dict().values(), strict=True))
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
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fp32.state_dict().values(), strict=True))


def test_auto_picks_bf16_where_native(tiny_model_dir, monkeypatch, capsys):
    from prunequant import accelerator

    monkeypatch.setattr(accelerator, "probe", lambda: {"cuda": False, "gpu": None, "bf16": True})
    model, _ = run(tiny_model_dir, seed=3, precision="auto")
    assert "finetune: precision auto -> bf16 (this CPU has native bfloat16)" in capsys.readouterr().out
    assert model.config.training_precision == "bf16"


# hidden_weight 0: the teacher's logits computed once; 0.1: every step, hidden states matched too (a width cut keeps
# the hidden size, so its hidden states match the teacher's as a depth cut's do)
@pytest.mark.parametrize(("hidden_weight", "width"), [(0.0, False), (0.1, False), (0.1, True)])
def test_distillation_trains_a_pruned_student(tiny_model_dir, hidden_weight, width):
    from prunequant.width import keep_ffn_neurons, prune_heads

    set_seed(0)
    teacher, _ = run(tiny_model_dir)
    student = drop_layers(teacher, [1])
    if width:  # one of 2 heads and 18 of 37 FFN neurons left
        student = keep_ffn_neurons(prune_heads(student, {0: [1]}), {0: range(0, 36, 2)})
    for param in student.parameters():  # start the student from scratch-ish so it must learn
        param.data.normal_(0, 0.02)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    # Pure distillation (alpha 1) on training labels that are all wrong: only the teacher can teach the student
    # the true labels, which the validation frame has. A trainer that ignored the teacher would learn the flipped
    # labels and score near 0.
    cfg = config("refinetune", epochs=10, learning_rate=1e-2, batch_size=16, warmup_ratio=0.0, logging_steps=5,
                           distill=True, temperature=2.0, alpha=1.0, hidden_weight=hidden_weight,
                           group_by_length=False)  # batches at random: conftest.tiny_frame
    frame = tiny_frame(40)
    flipped = frame.assign(label=1 - frame["label"])
    metrics = finetune(student, tokenizer, flipped, frame, cfg, seed=0, max_seq_length=16,
                       teacher=teacher, kept_layers=student.config.pruned_from_layers)
    assert metrics["accuracy"] > 0.9
    assert student.config.num_hidden_layers == 1


def test_hidden_state_matching_needs_a_pruned_model(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir))
    cfg = config("refinetune", epochs=1, hidden_weight=0.1)
    with pytest.raises(PrunequantError, match="refinetune.hidden_weight > 0 needs a model pruned by prunequant"):
        finetune(model, load_tokenizer(str(tiny_model_dir)), tiny_frame(4), tiny_frame(4), cfg,
                 seed=0, max_seq_length=16, teacher=model)


def test_relaunch_needs_a_gpu_per_process_on_cuda(monkeypatch):
    from prunequant.training import launch

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
    from prunequant.training import launch

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


def _distillation_trainer(student, teacher, cfg, tmp_path):
    from transformers import TrainingArguments

    from prunequant.training.trainer import DistillationTrainer, hidden_layer_map

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    layer_map = hidden_layer_map(cfg, student.config.pruned_from_layers, student.config.num_hidden_layers,
                                 teacher.config.num_hidden_layers) if cfg.hidden_weight > 0 else None
    return DistillationTrainer(model=student, args=args, teacher=teacher, distill=cfg, layer_map=layer_map)


def _soft_loss(student_logits, teacher_logits, t):
    return torch.nn.functional.kl_div(torch.log_softmax(student_logits / t, -1), torch.softmax(teacher_logits / t, -1),
                                      reduction="batchmean") * t * t


@pytest.mark.parametrize("labelled", [[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]])
def test_unlabelled_rows_learn_from_the_teacher_alone(tiny_model_dir, tmp_path, labelled):
    """Transfer sentences (label -100) count in the soft term only; a batch of them alone has no label term."""
    from prunequant.training.trainer import UNLABELLED

    teacher = load_classifier(str(tiny_model_dir)).eval()
    set_seed(1)
    student = drop_layers(load_classifier(str(tiny_model_dir)), [1]).eval()
    for param in student.parameters():
        param.data.normal_(0, 0.5)
    cfg = config("refinetune", alpha=0.3, temperature=2.0)
    trainer = _distillation_trainer(student, teacher, cfg, tmp_path)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    inputs = dict(tokenizer(tiny_frame(2)["text"].tolist(), padding=True, return_tensors="pt"))
    labels = torch.tensor([1, 0, 1, 0])
    inputs["labels"] = torch.where(torch.tensor(labelled, dtype=torch.bool), labels, UNLABELLED)
    with torch.no_grad():
        loss = trainer.compute_loss(student, inputs)
        plain = {k: v for k, v in inputs.items() if k != "labels"}
        logits, teacher_logits = student(**plain).logits, teacher(**plain).logits
    expected = 0.3 * _soft_loss(logits, teacher_logits, 2.0)
    mask = inputs["labels"] != UNLABELLED
    if mask.any():  # the labels' term averages over the labelled rows only
        expected = expected + 0.7 * torch.nn.functional.cross_entropy(logits[mask], labels[mask])
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hidden_states_match_the_teacher_layers_the_map_names(tiny_model_dir, tmp_path):
    teacher = load_classifier(str(tiny_model_dir)).eval()
    student = drop_layers(load_classifier(str(tiny_model_dir)), [1])  # keeps teacher layer 0
    for module in student.modules():  # hidden states are matched in training mode only: no dropout here
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    tokenizer = load_tokenizer(str(tiny_model_dir))
    inputs = dict(tokenizer(tiny_frame(2)["text"].tolist(), padding=True, return_tensors="pt"))
    inputs["labels"] = torch.tensor([1, 0, 1, 0])
    with torch.no_grad():
        hidden = student(**{k: v for k, v in inputs.items() if k != "labels"}, output_hidden_states=True).hidden_states
        targets = teacher(**{k: v for k, v in inputs.items() if k != "labels"}, output_hidden_states=True).hidden_states
    losses = {}
    for layers in ((), (0,), (1,)):
        cfg = config("refinetune", hidden_weight=2.0, hidden_layers=layers)
        trainer = _distillation_trainer(student, teacher, cfg, tmp_path)
        student.train()
        with torch.no_grad():
            losses[layers] = trainer.compute_loss(student, inputs).item()
    student.eval()
    without = _distillation_trainer(student, teacher, config("refinetune"), tmp_path)
    with torch.no_grad():
        base = without.compute_loss(student, inputs).item()
    mse = {t: torch.nn.functional.mse_loss(hidden[1], targets[t + 1]).item() for t in (0, 1)}
    assert losses[()] == pytest.approx(base + 2.0 * mse[0], rel=1e-4)  # default: the layer it was copied from
    assert losses[(0,)] == pytest.approx(losses[()], rel=1e-6)
    assert losses[(1,)] == pytest.approx(base + 2.0 * mse[1], rel=1e-4) and mse[1] != pytest.approx(mse[0], rel=0.1)


@pytest.mark.parametrize(("layers", "message"), [
    ((0, 1), "refinetune.hidden_layers lists 2 teacher layers for a student of 1; give one per student layer"),
    ((2,), "refinetune.hidden_layers names layer 2, but the teacher has 2 (0 to 1)"),
])
def test_a_layer_map_that_does_not_fit_is_one_line(layers, message):
    from prunequant.training.trainer import hidden_layer_map

    with pytest.raises(PrunequantError, match=re.escape(message)):
        hidden_layer_map(config("refinetune", hidden_weight=1.0, hidden_layers=layers), [0], 1, 2)
    assert hidden_layer_map(config("refinetune", hidden_weight=1.0, hidden_layers=(1, 3)), [0, 2], 2, 4) == [1, 3]
    assert hidden_layer_map(config("refinetune", hidden_weight=1.0), [0, 2], 2, 4) == [0, 2]


def test_transfer_sentences_teach_what_the_labelled_rows_lack(tiny_model_dir):
    """The labelled rows hold two of the twelve sentiment words, the unlabelled transfer sentences all of them:
    with the transfer set the student learns every word from the teacher; without it, it cannot."""
    set_seed(0)
    teacher, _ = run(tiny_model_dir)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    # alpha 1: the teacher's logits are the only target, for the labelled rows too (batches of transfer
    # sentences alone still run through the labels' term, multiplied by 0: a NaN there would show).
    cfg = config("refinetune", epochs=10, learning_rate=1e-2, batch_size=16, warmup_ratio=0.0, logging_steps=5,
                           alpha=1.0, temperature=2.0, precision="fp32")
    frame = tiny_frame(40)
    few = frame[frame["text"].str.contains("great|awful")]
    accuracy = {}
    for transfer in (frame[["text"]], None):
        set_seed(0)
        student = drop_layers(teacher, [1])
        for param in student.parameters():  # from scratch-ish: what it knows, it learns here
            param.data.normal_(0, 0.02)
        accuracy[transfer is not None] = finetune(student, tokenizer, few, frame, cfg, seed=0, max_seq_length=16,
                                                  teacher=teacher, transfer=transfer)["accuracy"]
    assert accuracy[True] > 0.9 and accuracy[False] < 0.75


def test_transfer_sentences_need_distillation(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir))
    with pytest.raises(PrunequantError, match="set refinetune.distill: true, or refinetune.transfer: null"):
        finetune(model, load_tokenizer(str(tiny_model_dir)), tiny_frame(4), tiny_frame(4),
                 config("refinetune", epochs=1, distill=False), seed=0, max_seq_length=16, teacher=model,
                 transfer=tiny_frame(4)[["text"]])


def test_the_teacher_logits_computed_once_are_the_ones_the_loss_would_compute_each_step(tiny_model_dir, tmp_path):
    from transformers import DataCollatorWithPadding, TrainingArguments

    teacher, tokenizer = load_classifier(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    student = drop_layers(load_classifier(str(tiny_model_dir)), [1])
    frame = tiny_frame(10)
    frame.loc[::3, "text"] += " and then some more words"  # rows of several lengths: batches pad differently
    cfg = config("refinetune", distill=True, alpha=0.7)
    trainer = DistillationTrainer(
        model=student, args=TrainingArguments(str(tmp_path), per_device_train_batch_size=6, use_cpu=True,
                                              per_device_eval_batch_size=5, report_to="none"),
        train_dataset=tokenize(frame, tokenizer, 32), eval_dataset=tokenize(frame[:5], tokenizer, 32),
        data_collator=DataCollatorWithPadding(tokenizer), teacher=teacher, distill=cfg)
    batch = next(iter(trainer.get_train_dataloader()))  # what a training step gets: the cached logits too
    assert batch[TEACHER_LOGITS].shape == (6, 2)
    assert next(iter(trainer.get_eval_dataloader()))[TEACHER_LOGITS].shape == (5, 2)  # evaluation's too
    with torch.no_grad():
        live = teacher(**{k: v for k, v in batch.items() if k not in ("labels", TEACHER_LOGITS)}).logits
        torch.testing.assert_close(batch[TEACHER_LOGITS], live, atol=1e-5, rtol=1e-5)
        cached_loss = trainer.compute_loss(student, dict(batch))
        live_loss = trainer.compute_loss(student, {k: v for k, v in batch.items() if k != TEACHER_LOGITS})
    torch.testing.assert_close(cached_loss, live_loss, atol=1e-5, rtol=1e-5)

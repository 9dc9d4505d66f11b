"""Fine-tuning with transformers' Trainer (optionally distilled from a teacher); DVCLive records curves.

The same code runs in one process or in several started by ``accelerate launch`` (see
:func:`prunequant.training.launch.relaunch`): the Trainer splits each global batch of ``batch_size`` rows over the
processes.
The training stages checkpoint every ``checkpoint_steps`` optimizer steps and resume from the last
complete checkpoint when run again with the same inputs (:mod:`prunequant.training.checkpoints`).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import (
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from prunequant.accelerator import cuda_available, training_precision
from prunequant.errors import PrunequantError
from prunequant.params.training import FinetuneConfig, RefinetuneConfig
from prunequant.splits import PAIR_COLUMN, forward_inputs


def tokenize(frame: pd.DataFrame, tokenizer, max_seq_length: int):
    """A ``datasets.Dataset`` of token ids and labels (unpadded: the collator pads per batch); a ``text_pair``
    column makes each row a sentence pair."""
    from datasets import Dataset

    texts = [c for c in ("text", PAIR_COLUMN) if c in frame.columns]
    dataset = Dataset.from_pandas(frame[[*texts, "label"]].rename(columns={"label": "labels"}), preserve_index=False)
    return dataset.map(
        lambda batch: tokenizer(*(batch[c] for c in texts), truncation=True, max_length=max_seq_length),
        batched=True,
        remove_columns=texts,
    )


def by_length(dataset):
    """``dataset`` sorted by token count, so that each evaluation batch pads little (accuracy ignores order)."""
    return dataset.select(np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable"))


def _accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def world_size() -> int:
    """Processes of this training run (``WORLD_SIZE``, set by ``accelerate launch``); 1 when run alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _live_callback(live_dir: str | os.PathLike, precision: str):
    """DVCLive's Trainer callback, stepping by optimizer step so curves share one x axis; metrics.json also
    says which precision training ran in."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    class StepAlignedDVCLiveCallback(DVCLiveCallback):
        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            if self.live is not None:
                self.live.step = state.global_step
            super().on_log(args, state, control, model=model, logs=logs, **kwargs)

        def setup(self, args, state, model):
            # DVCLive would otherwise record every TrainingArguments field as a param.
            self._initialized = True

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            super().on_train_begin(args, state, control, model=model, **kwargs)
            self.live.summary["precision"] = precision
            # Resumed from a checkpoint: DVC removed the curves with the stage's outputs, and the
            # checkpoint's log history holds them; write them again so the curves are whole.
            for logs in state.log_history:
                self.live.step = logs["step"]
                DVCLiveCallback.on_log(self, args, state, control, logs={k: v for k, v in logs.items() if k != "step"})

    return StepAlignedDVCLiveCallback(live=Live(str(live_dir), dvcyaml=False, save_dvc_exp=False))


class StopOnNonFiniteLoss(TrainerCallback):
    """Stop at the first NaN/inf loss instead of saving a broken model as if it were good."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise PrunequantError(
                f"finetune: the training loss became {loss} at step {state.global_step}; "
                "lower finetune.learning_rate"
            )


UNLABELLED = -100  # the label of a transfer sentence: the teacher's soft logits are its only target


def hidden_layer_map(cfg: RefinetuneConfig, kept_layers: list[int] | None, student_layers: int,
                     teacher_layers: int) -> list[int]:
    """The teacher layer whose output each student layer's output is matched to (``refinetune.hidden_layers``,
    or by default the layer each student layer was copied from)."""
    if cfg.hidden_layers:
        layers = list(cfg.hidden_layers)
        if len(layers) != student_layers:
            raise PrunequantError(
                f"params.yaml: refinetune.hidden_layers lists {len(layers)} teacher layers for a student of "
                f"{student_layers}; give one per student layer, or [] for the layers each was copied from"
            )
        if max(layers) >= teacher_layers:
            raise PrunequantError(
                f"params.yaml: refinetune.hidden_layers names layer {max(layers)}, but the teacher has "
                f"{teacher_layers} (0 to {teacher_layers - 1})"
            )
        return layers
    if not kept_layers:
        raise PrunequantError(
            "refinetune.hidden_weight > 0 needs a model pruned by prunequant (config.pruned_from_layers "
            "maps its layers to the teacher's) or an explicit refinetune.hidden_layers; or set "
            "refinetune.hidden_weight: 0"
        )
    return list(kept_layers)


TEACHER_LOGITS = "teacher_logits"  # the training rows' column of the teacher's logits, computed once


@torch.inference_mode()
def teacher_logits(teacher, dataset, collator, batch_size: int) -> np.ndarray:
    """The teacher's logits for every row of a tokenized ``dataset``, in its order, as the loss would compute them
    (the teacher's own precision, eval mode); batches of similar length, so little goes to padding."""
    columns = [c for c in dataset.column_names if c != "labels"]
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    logits = np.empty((len(dataset), teacher.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = collator(dataset.select(rows).select_columns(columns).to_list()).to(teacher.device)
        logits[rows] = teacher(**forward_inputs(teacher, batch)).logits.float().cpu().numpy()
    return logits


class DistillationTrainer(Trainer):
    """Trainer whose loss mixes the hard labels with a teacher's soft logits (and hidden states).

    loss = alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)
           + hidden_weight * mean MSE(student layer j, teacher layer layer_map[j])

    Rows labelled :data:`UNLABELLED` (the transfer set) count in the soft and hidden terms only; the labels'
    term averages over the labelled rows of the batch (none: it is left out).
    """

    def __init__(self, *args, teacher, distill: RefinetuneConfig, layer_map: list[int] | None = None, **kwargs):
        """``layer_map``: :func:`hidden_layer_map`'s, needed when ``distill.hidden_weight > 0``."""
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        self.distill = distill
        self.layer_map = layer_map if distill.hidden_weight > 0 else None
        if self.layer_map is None:  # logits alone: the frozen teacher's are the same every epoch
            self.train_dataset, self.eval_dataset = (
                None if rows is None else rows.add_column(TEACHER_LOGITS, list(teacher_logits(
                    self.teacher, rows, self.data_collator, self.args.per_device_eval_batch_size)))
                for rows in (self.train_dataset, self.eval_dataset))

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()  # the model's arguments: the Trainer drops other columns
        if TEACHER_LOGITS not in self._signature_columns:
            self._signature_columns.append(TEACHER_LOGITS)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        match_hidden = self.layer_map is not None and model.training
        cached = inputs.pop(TEACHER_LOGITS, None)
        outputs = model(**inputs, output_hidden_states=match_hidden)
        if cached is None:  # hidden states to match
            with torch.no_grad():
                teacher_inputs = {k: v for k, v in inputs.items() if k != "labels"}
                teacher_out = self.teacher(**teacher_inputs, output_hidden_states=match_hidden)
        t = self.distill.temperature
        soft = F.kl_div(
            F.log_softmax(outputs.logits / t, dim=-1),
            F.softmax((teacher_out.logits if cached is None else cached) / t, dim=-1),
            reduction="batchmean",
        ) * (t * t)
        loss = self.distill.alpha * soft
        # The model's own cross-entropy skips UNLABELLED rows (its ignore_index); a batch of transfer
        # sentences alone has no labelled row, and its cross-entropy (0/0) is left out.
        if (inputs["labels"] != UNLABELLED).any():
            loss = loss + (1 - self.distill.alpha) * outputs.loss
        if match_hidden:
            # hidden_states[0] is the embedding output; [j + 1] the output of layer j.
            mse = torch.stack([
                F.mse_loss(outputs.hidden_states[j + 1], teacher_out.hidden_states[teacher_layer + 1])
                for j, teacher_layer in enumerate(self.layer_map)
            ]).mean()
            loss = loss + self.distill.hidden_weight * mse
        return (loss, outputs) if return_outputs else loss


def with_transfer(train: pd.DataFrame, transfer: pd.DataFrame | None) -> pd.DataFrame:
    """The training rows followed by the transfer sentences, labelled :data:`UNLABELLED`."""
    if transfer is None or transfer.empty:
        return train
    return pd.concat([train, transfer[["text"]].assign(label=UNLABELLED)], ignore_index=True)


def finetune(
    model,
    tokenizer,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    cfg: FinetuneConfig,
    *,
    seed: int,
    max_seq_length: int,
    live_dir: str | os.PathLike | None = None,
    teacher=None,
    kept_layers: list[int] | None = None,
    transfer: pd.DataFrame | None = None,
    checkpoints=None,
) -> dict[str, float]:
    """Fine-tune ``model`` in place on ``train``; return the final validation metrics (none without ``validation``:
    no evaluation after each epoch).

    With a ``teacher`` and a :class:`RefinetuneConfig` whose ``distill`` is on, the loss is distilled
    from the teacher; ``kept_layers`` maps the student's layers to the teacher's for hidden states, and the
    sentences of ``transfer`` (a ``text`` column) join the training rows with the teacher's logits as their only
    target (:func:`with_transfer`).
    With ``checkpoints`` (a :class:`prunequant.training.checkpoints.Checkpoints`, which the training stages pass), the
    run saves a checkpoint every ``cfg.checkpoint_steps`` optimizer steps and resumes from the last complete
    one left by an interrupted run with the same inputs; without, it keeps nothing (int8-qat's short run).
    """
    distill = isinstance(cfg, RefinetuneConfig) and cfg.distill and teacher is not None
    if transfer is not None and not transfer.empty:
        if not distill:
            raise PrunequantError(
                f"{cfg.section}: the transfer set's sentences have no labels and are learnt from the teacher "
                "alone; set refinetune.distill: true, or refinetune.transfer: null"
            )
        train = with_transfer(train, transfer)
    layer_map = None
    if distill and cfg.hidden_weight > 0:  # checked before anything is written
        layer_map = hidden_layer_map(cfg, kept_layers, model.config.num_hidden_layers, teacher.config.num_hidden_layers)
    if cfg.batch_size % world_size():
        raise PrunequantError(
            f"params.yaml: {cfg.section}.batch_size ({cfg.batch_size}) must divide evenly over "
            f"{world_size()} processes; set {cfg.section}.batch_size to a multiple of {world_size()}"
        )
    precision, note = training_precision(cfg.precision, f"{cfg.section}.precision")
    if is_main_process():
        print(f"{cfg.section}: {note}", flush=True)
    model.config.training_precision = precision  # saved in config.json: what the weights were trained in
    scratch = None
    if checkpoints is None or not cfg.checkpoint_steps:
        checkpoints = None
        scratch = tempfile.TemporaryDirectory(prefix="prunequant-trainer-")
        output_dir = scratch.name
    else:
        output_dir = checkpoints.folder
    # TrainingArguments turns bf16/fp16 into this variable and never clears it, so without this line a run
    # after a bf16 one in the same process would autocast too (accelerate reads it when fp16/bf16 are off).
    os.environ["ACCELERATE_MIXED_PRECISION"] = {"fp32": "no"}.get(precision, precision)
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size // world_size(),  # the global batch is cfg.batch_size
        per_device_eval_batch_size=max(cfg.batch_size, 64),
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        logging_steps=cfg.logging_steps,
        group_by_length=cfg.group_by_length,  # the Trainer's LengthGroupedSampler: shuffled, then sorted in chunks
        logging_nan_inf_filter=False,  # a NaN loss must reach StopOnNonFiniteLoss, not be smoothed over
        eval_strategy="epoch" if validation is not None else "no",
        save_strategy="steps" if scratch is None else "no",
        save_steps=cfg.checkpoint_steps or 1,
        save_total_limit=2,  # the newest and the one before, in case the newest is cut short
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=not cuda_available(),
        bf16=precision == "bf16",  # mixed precision: FP32 weights, autocast compute (fp16 with loss scaling)
        fp16=precision == "fp16",
        dataloader_num_workers=0,
        disable_tqdm=not is_main_process(),
    )
    resume = None
    if checkpoints is not None:  # after TrainingArguments: every process resumes from the same checkpoint
        resume = checkpoints.resume_point(cfg, seed, max_seq_length, (train, validation),
                                          (model, teacher) if distill else (model,), precision=precision)
    callbacks = [StopOnNonFiniteLoss(), *([checkpoints.callback()] if checkpoints is not None else [])]
    if live_dir is not None and is_main_process():
        Path(live_dir).mkdir(parents=True, exist_ok=True)
        callbacks.append(_live_callback(live_dir, precision))
    trainer_class, extra = Trainer, {}
    if distill:
        trainer_class = DistillationTrainer
        extra = {"teacher": teacher, "distill": cfg, "layer_map": layer_map}
    trainer = trainer_class(
        **extra,
        model=model,
        args=args,
        train_dataset=tokenize(train, tokenizer, max_seq_length),
        eval_dataset=None if validation is None else by_length(tokenize(validation, tokenizer, max_seq_length)),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_accuracy,
        callbacks=callbacks,
    )
    try:
        with warnings.catch_warnings():
            # The Trainer warns at each checkpoint rotation on file systems with coarse mtimes; harmless.
            warnings.filterwarnings("ignore", message="mtime may not be reliable")
            trainer.train(resume_from_checkpoint=resume)
    except PrunequantError:
        # Close the progress bars first: the one-line error then stands alone on the last line.
        for callback in trainer.callback_handler.callbacks:
            for bar in ("prediction_bar", "training_bar"):
                if getattr(callback, bar, None) is not None:
                    getattr(callback, bar).close()
                    setattr(callback, bar, None)
        raise
    finally:
        if scratch is not None:
            scratch.cleanup()
    if validation is None:
        return {}
    # The evaluation after the last epoch; evaluating again would log past DVCLive's end().
    last_eval = [log for log in trainer.state.log_history if "eval_accuracy" in log][-1]
    return {key.removeprefix("eval_"): float(value) for key, value in last_eval.items()}

"""Fine-tuning with transformers' Trainer (optionally distilled from a teacher); DVCLive records curves."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from prunequant.config import FinetuneConfig, RefinetuneConfig
from prunequant.errors import PrunequantError


def tokenize(frame: pd.DataFrame, tokenizer, max_seq_length: int):
    """A ``datasets.Dataset`` of token ids and labels (unpadded: the collator pads per batch)."""
    from datasets import Dataset

    dataset = Dataset.from_pandas(frame[["text", "label"]].rename(columns={"label": "labels"}), preserve_index=False)
    return dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_seq_length),
        batched=True,
        remove_columns=["text"],
    )


def _accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def _live_callback(live_dir: str | os.PathLike):
    """DVCLive's Trainer callback, stepping by optimizer step so curves share one x axis."""
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


class DistillationTrainer(Trainer):
    """Trainer whose loss mixes the hard labels with a teacher's soft logits (and hidden states).

    loss = alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)
           + hidden_weight * mean MSE(student layer j, teacher layer kept_layers[j])
    """

    def __init__(self, *args, teacher, distill: RefinetuneConfig, kept_layers: list[int] | None = None, **kwargs):
        if distill.hidden_weight > 0 and not kept_layers:
            raise PrunequantError(
                "refinetune.hidden_weight > 0 needs a model pruned by prunequant (config.pruned_from_layers "
                "maps its layers to the teacher's); set refinetune.hidden_weight: 0"
            )
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        self.distill = distill
        self.kept_layers = kept_layers

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        match_hidden = self.distill.hidden_weight > 0 and model.training
        outputs = model(**inputs, output_hidden_states=match_hidden)
        with torch.no_grad():
            teacher_inputs = {k: v for k, v in inputs.items() if k != "labels"}
            teacher_out = self.teacher(**teacher_inputs, output_hidden_states=match_hidden)
        t = self.distill.temperature
        soft = F.kl_div(
            F.log_softmax(outputs.logits / t, dim=-1),
            F.softmax(teacher_out.logits / t, dim=-1),
            reduction="batchmean",
        ) * (t * t)
        loss = self.distill.alpha * soft + (1 - self.distill.alpha) * outputs.loss
        if match_hidden:
            # hidden_states[0] is the embedding output; [j + 1] the output of layer j.
            pairs = [(j + 1, teacher_layer + 1) for j, teacher_layer in enumerate(self.kept_layers)]
            mse = torch.stack([
                F.mse_loss(outputs.hidden_states[s], teacher_out.hidden_states[t_]) for s, t_ in pairs
            ]).mean()
            loss = loss + self.distill.hidden_weight * mse
        return (loss, outputs) if return_outputs else loss


def finetune(
    model,
    tokenizer,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    cfg: FinetuneConfig,
    *,
    seed: int,
    max_seq_length: int,
    live_dir: str | os.PathLike | None = None,
    teacher=None,
    kept_layers: list[int] | None = None,
) -> dict[str, float]:
    """Fine-tune ``model`` in place on ``train``; return the final validation metrics.

    With a ``teacher`` and a :class:`RefinetuneConfig` whose ``distill`` is on, the loss is distilled
    from the teacher; ``kept_layers`` maps the student's layers to the teacher's for hidden states.
    """
    with tempfile.TemporaryDirectory(prefix="prunequant-trainer-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=cfg.epochs,
            learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=max(cfg.batch_size, 64),
            weight_decay=cfg.weight_decay,
            warmup_ratio=cfg.warmup_ratio,
            logging_steps=cfg.logging_steps,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            seed=seed,
            data_seed=seed,
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        callbacks = [StopOnNonFiniteLoss()]
        if live_dir is not None:
            Path(live_dir).mkdir(parents=True, exist_ok=True)
            callbacks.append(_live_callback(live_dir))
        trainer_class, extra = Trainer, {}
        if isinstance(cfg, RefinetuneConfig) and cfg.distill and teacher is not None:
            trainer_class = DistillationTrainer
            extra = {"teacher": teacher, "distill": cfg, "kept_layers": kept_layers}
        trainer = trainer_class(
            **extra,
            model=model,
            args=args,
            train_dataset=tokenize(train, tokenizer, max_seq_length),
            eval_dataset=tokenize(validation, tokenizer, max_seq_length),
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=_accuracy,
            callbacks=callbacks,
        )
        trainer.train()
    # The evaluation after the last epoch; evaluating again would log past DVCLive's end().
    last_eval = [log for log in trainer.state.log_history if "eval_accuracy" in log][-1]
    return {key.removeprefix("eval_"): float(value) for key, value in last_eval.items()}

"""Checkpoints of a training stage's run: saved every ``checkpoint_steps`` optimizer steps beside the stage's
output, marked complete once whole, resumed only by the very same run (same params, data and starting
weights), and removed once the model is saved. Only the finetune and refinetune stages use them: the
training recipe (``training.py``) takes a :class:`Checkpoints` and never imports this module."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback

from prunequant.accelerator import cuda_available
from prunequant.params.training import FinetuneConfig
from prunequant.splits import PAIR_COLUMN
from prunequant.training.trainer import is_main_process, world_size

COMPLETE = "prunequant-complete"  # written into a checkpoint folder once the Trainer has saved all of it


class MarkCompleteCheckpoints(TrainerCallback):
    """Mark each checkpoint once it is whole, so a run killed while saving never resumes from half of one."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            (Path(args.output_dir) / f"checkpoint-{state.global_step}" / COMPLETE).touch()


def _fingerprint(cfg: FinetuneConfig, seed: int, max_seq_length: int, frames, models, precision: str) -> str:
    """A digest of everything a training run depends on: a checkpoint is resumed only by the same run
    (``precision``: what ``cfg.precision`` resolved to on this machine)."""
    digest = hashlib.sha256(json.dumps(
        {"config": type(cfg).__name__, **dataclasses.asdict(cfg), "seed": seed, "max_seq_length": max_seq_length,
         "world_size": world_size(), "resolved_precision": precision}, sort_keys=True, default=str).encode())
    for frame in frames:
        columns = [c for c in ("text", PAIR_COLUMN, "label") if c in frame.columns]
        digest.update(pd.util.hash_pandas_object(frame[columns], index=False).to_numpy().tobytes())
    for model in models:
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def _checkpoint_step(path: Path) -> int:
    return int(re.fullmatch(r"checkpoint-(\d+)", path.name).group(1))


def _clear_other_runs(checkpoint_dir: Path, fingerprint: str) -> None:
    """Keep only this very run's complete checkpoints (run by the main process alone)."""
    stamp = checkpoint_dir / "fingerprint"
    if checkpoint_dir.exists() and not (stamp.is_file() and stamp.read_text() == fingerprint):
        shutil.rmtree(checkpoint_dir)  # another run's (other params, data or weights): start over
    for partial in checkpoint_dir.glob("checkpoint-*"):
        if not (partial / COMPLETE).is_file():
            shutil.rmtree(partial)  # killed while saving
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)


def resume_point(checkpoint_dir: Path, fingerprint: str) -> str | None:
    """The newest complete checkpoint of this very run, or None; stale checkpoints are removed first.

    Call it after the process group exists (TrainingArguments creates it): every process waits until
    the main one has cleared the folder, so all of them resume from the same checkpoint.
    """
    from accelerate import PartialState

    if is_main_process():
        _clear_other_runs(checkpoint_dir, fingerprint)
    PartialState().wait_for_everyone()
    complete = [p for p in checkpoint_dir.glob("checkpoint-*") if (p / COMPLETE).is_file()]
    return str(max(complete, key=_checkpoint_step)) if complete else None


def _load_cpu_n_as_cpu() -> None:
    """Let torch.load map 'cpu:<rank>' to the CPU: the Trainer resumes a multi-process CPU (gloo) run with
    map_location=args.device, which is 'cpu:<rank>' there, and torch knows no such location."""
    if getattr(_load_cpu_n_as_cpu, "done", False):
        return
    torch.serialization.register_package(
        11, lambda obj: None, lambda obj, location: obj if str(location).startswith("cpu:") else None)
    _load_cpu_n_as_cpu.done = True


def checkpoint_dir_for(out_dir: str | os.PathLike) -> Path:
    """Where the run writing ``out_dir`` keeps its checkpoints: a hidden folder beside it (git-ignored)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.checkpoints"


def discard_checkpoints(checkpoint_dir: str | os.PathLike | None) -> None:
    """Remove a finished run's checkpoints (call once its model is saved)."""
    if checkpoint_dir is not None and is_main_process():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


class Checkpoints:
    """The checkpoints of the run that writes ``out_dir``: pass it to :func:`prunequant.training.trainer.finetune`."""

    def __init__(self, out_dir: str | os.PathLike):
        self.folder = checkpoint_dir_for(out_dir)

    def callback(self) -> TrainerCallback:
        return MarkCompleteCheckpoints()

    def resume_point(self, cfg: FinetuneConfig, seed: int, max_seq_length: int, frames, models, *,
                     precision: str) -> str | None:
        """The checkpoint this run resumes from (None: from the start); another run's checkpoints are removed."""
        if world_size() > 1 and not cuda_available():
            _load_cpu_n_as_cpu()
        resume = resume_point(self.folder, _fingerprint(cfg, seed, max_seq_length, frames, models, precision))
        if resume and is_main_process():
            print(f"{cfg.section}: resuming from {resume}", flush=True)
        return resume

    def discard(self) -> None:
        """Remove them (call once the model is saved)."""
        discard_checkpoints(self.folder)

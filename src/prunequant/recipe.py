"""The training recipes (``finetune`` and ``refinetune`` sections of params.yaml), apart from the training code
so that a stage that only reads them (the transfer set's) does not import the Trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunequant.accelerator import PRECISIONS
from prunequant.params import require, require_choice, require_inside_repo


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (passed to transformers.TrainingArguments)."""

    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    logging_steps: int = 20
    checkpoint_steps: int = 200  # optimizer steps between checkpoints a killed run resumes from; 0: none
    processes: int = 1  # > 1: `accelerate launch` runs that many (one per GPU; gloo on CPU without CUDA)
    precision: str = "auto"  # auto, fp32, bf16 or fp16 (CUDA only): see prunequant.accelerator.training_precision
    group_by_length: bool = True  # batches of sentences of similar length (less padding); False: at random

    section: ClassVar[str] = "finetune"  # the params.yaml section, for error messages

    def __post_init__(self) -> None:
        require(self.epochs > 0, f"{self.section}.epochs", f"must be > 0, got {self.epochs}")
        require(
            0 < self.learning_rate < 1,
            f"{self.section}.learning_rate",
            f"must be in (0, 1), got {self.learning_rate}",
        )
        require(self.batch_size >= 1, f"{self.section}.batch_size", f"must be >= 1, got {self.batch_size}")
        require(
            self.weight_decay >= 0, f"{self.section}.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        require(
            0 <= self.warmup_ratio < 1,
            f"{self.section}.warmup_ratio",
            f"must be in [0, 1), got {self.warmup_ratio}",
        )
        require(
            self.logging_steps >= 1, f"{self.section}.logging_steps", f"must be >= 1, got {self.logging_steps}"
        )
        require(self.checkpoint_steps >= 0, f"{self.section}.checkpoint_steps",
                f"must be >= 0 (0: no checkpoints), got {self.checkpoint_steps}")
        require(self.processes >= 1, f"{self.section}.processes", f"must be >= 1, got {self.processes}")
        require_choice(self.precision, PRECISIONS, f"{self.section}.precision")
        require(self.batch_size % self.processes == 0, f"{self.section}.batch_size",
                f"({self.batch_size}) must divide evenly over {self.section}.processes ({self.processes}); "
                f"set it to a multiple of {self.processes}")


@dataclass(frozen=True)
class RefinetuneConfig(FinetuneConfig):
    """Fine-tuning the pruned model again, optionally distilled from the fine-tuned baseline."""

    learning_rate: float = 1e-4  # twice finetune's: chosen on validation accuracy for 6 -> 3 (README)
    distill: bool = True
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft-label loss; 1 - alpha goes to the hard labels
    hidden_weight: float = 0.0  # weight of matching the student's hidden states to the teacher's (MSE); 0 = off
    # With hidden_weight > 0: the teacher layer each student layer's output is matched to, e.g. (1, 3, 5) for 3 of
    # 6 layers; (): the layer each was copied from (config.pruned_from_layers).
    hidden_layers: tuple[int, ...] = ()
    # Unlabelled sentences the teacher labels during distillation: None (none), or a data set (a name from
    # data.DATASETS, a Hub name, a .csv/.parquet file) whose texts the transfer stage splits into sentences.
    transfer: str | None = None
    transfer_samples: int = 2000  # how many of its sentences (drawn with base.seed)

    section: ClassVar[str] = "refinetune"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.temperature > 0, "refinetune.temperature", f"must be > 0, got {self.temperature}")
        require(0 <= self.alpha <= 1, "refinetune.alpha", f"must be in [0, 1], got {self.alpha}")
        require(self.hidden_weight >= 0, "refinetune.hidden_weight", f"must be >= 0, got {self.hidden_weight}")
        require(all(layer >= 0 for layer in self.hidden_layers), "refinetune.hidden_layers",
                f"must list teacher layer indices (0 is the first layer), got {list(self.hidden_layers)}")
        if self.transfer is not None:
            require(bool(self.transfer.strip()), "refinetune.transfer", "must be null (none) or name a data set, e.g. imdb")
            require_inside_repo(self.transfer, "refinetune.transfer")
        require(self.transfer_samples >= 1, "refinetune.transfer_samples",
                f"must be >= 1, got {self.transfer_samples} (refinetune.transfer: null turns the transfer set off)")

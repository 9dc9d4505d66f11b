"""``finetune`` and ``refinetune``: the training recipes, apart from the training code so that a stage that only
reads them (the transfer set's) does not import the Trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunequant.accelerator import PRECISIONS
from prunequant.params import Section, knob, require, require_inside_repo


@dataclass(frozen=True)
class FinetuneConfig(Section):
    """Fine-tuning hyper-parameters (passed to transformers.TrainingArguments)."""

    epochs: float = knob(gt=0)
    learning_rate: float = knob(gt=0, lt=1)
    batch_size: int = knob(ge=1)
    weight_decay: float = knob(ge=0)
    warmup_ratio: float = knob(ge=0, lt=1)
    logging_steps: int = knob(ge=1)
    checkpoint_steps: int = knob(ge=0, note="0: no checkpoints")  # optimizer steps between resumable checkpoints
    processes: int = knob(ge=1)  # > 1: `accelerate launch` runs that many (one per GPU; gloo without CUDA)
    precision: str = knob(choices=PRECISIONS)  # see prunequant.accelerator.training_precision
    group_by_length: bool = knob()  # batches of sentences of similar length (less padding); False: at random

    section: ClassVar[str] = "finetune"  # for messages of the training code

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.batch_size % self.processes == 0, "batch_size",
                f"({self.batch_size}) must divide evenly over {self.section}.processes ({self.processes}); "
                f"set it to a multiple of {self.processes}")


@dataclass(frozen=True)
class RefinetuneConfig(FinetuneConfig):
    """Fine-tuning the pruned model again, optionally distilled from the fine-tuned baseline."""

    distill: bool = knob()
    temperature: float = knob(gt=0)
    alpha: float = knob(ge=0, le=1)  # weight of the soft-label loss; 1 - alpha goes to the hard labels
    hidden_weight: float = knob(ge=0)  # weight of matching the student's hidden states to the teacher's (MSE)
    # With hidden_weight > 0: the teacher layer each student layer's output is matched to, e.g. (1, 3, 5) for 3 of
    # 6 layers; (): the layer each was copied from (config.pruned_from_layers).
    hidden_layers: tuple[int, ...] = knob(ge=0, note="teacher layer indices, 0 is the first")
    # Unlabelled sentences the teacher labels during distillation: None (none), or a data set (a name from
    # data.DATASETS, a Hub name, a .csv/.parquet file) whose texts the transfer stage splits into sentences.
    transfer: str | None = knob()
    transfer_samples: int = knob(ge=1, note="refinetune.transfer: null turns the transfer set off")

    section: ClassVar[str] = "refinetune"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transfer is not None:
            require(bool(self.transfer.strip()), "transfer", "must be null (none) or name a data set, e.g. imdb")
            require_inside_repo(self.transfer, "transfer")

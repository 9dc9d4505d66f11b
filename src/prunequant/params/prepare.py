"""``prepare``: how the data set is split into train/validation/test once for every later stage."""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.params import Section, knob


@dataclass(frozen=True)
class PrepareConfig(Section):
    text_column: str | None = knob()  # None: the column the data-set table names
    text_pair_column: str | None = knob()  # the second sentence of a pair (NLI, paraphrase); None: single sentences
    label_column: str | None = knob()
    validation_size: float = knob(gt=0, lt=0.5, note="a fraction of train")
    test_size: float = knob(gt=0, lt=0.5, note="a fraction of train")
    max_train_samples: int | None = knob(ge=2, note="null: all")
    max_eval_samples: int | None = knob(ge=2, note="null: all")

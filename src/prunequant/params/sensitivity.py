"""``sensitivity``: how layer importance is measured on the validation split."""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.params import Section, knob

SENSITIVITY_METHODS = ("ablation", "iterative")  # skip each layer alone; greedy, re-measured


@dataclass(frozen=True)
class SensitivityConfig(Section):
    method: str = knob(choices=SENSITIVITY_METHODS)

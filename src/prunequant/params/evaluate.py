"""``evaluate``: how models are scored."""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.params import Section, knob


@dataclass(frozen=True)
class EvaluateConfig(Section):
    batch_size: int = knob(ge=1)
    confidence_level: float = knob(ge=0.5, lt=1)

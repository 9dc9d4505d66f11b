"""``report``: what the report recommends, and how its radar chart scales accuracy."""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.params import Section, knob, require


@dataclass(frozen=True)
class ReportConfig(Section):
    max_accuracy_drop: float = knob(ge=0, note="accuracy points")
    # The radar maps accuracy in this range onto its axis; values outside it are clipped.
    accuracy_range: tuple[float, ...] = knob(ge=0, le=1)
    radar_floor: float = knob(ge=0, lt=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.accuracy_range) == 2 and self.accuracy_range[0] < self.accuracy_range[1],
                "accuracy_range", f"must be [low, high] with 0 <= low < high <= 1, got {list(self.accuracy_range)}")

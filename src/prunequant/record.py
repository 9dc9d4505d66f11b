"""The evaluation record: what the evaluate and quantize stages write to ``metrics/evaluate/<name>.json`` for each
scored model or artifact, and what the results stage reads back. Its fields are written here once; no torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from prunequant.errors import PrunequantError
from prunequant.splits import SPLITS


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """One scored model or artifact. Optional fields left None are not written (an n/a artifact has no kernels)."""

    variant: str  # the source model's name in results: baseline, pruned-4
    model: str  # base.model
    layers: int
    precision: str  # fp32, or the scheme
    trained_in: str | None = None  # an FP32 model: the precision it was trained in
    source_trained_in: str | None = None  # an artifact: its FP32 source's
    device: str  # where it is meant to run (and is timed and recommended)
    size_mb: float | None  # on disk; None where it was not built
    artifact_md5: str | None = None  # the DVC hash of the folder scored (a timing belongs to the row of the same hash)
    status: str  # "ok", or the n/a reason
    measured_on: str | None = None  # where its accuracy was measured (a CUDA scheme with CPU kernels: the CPU)
    kernels: str | None = None  # the library and device of the kernels that computed it, e.g. bitsandbytes-cpu
    eval_batch: int | None = None  # sentences per forward pass when scoring (1: one at a time, unpadded)
    reference: str | None = None  # the predictions it was compared with (paired McNemar test)
    scores: dict[str, dict] = field(default_factory=dict)  # split -> accuracy, CI, paired tests

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the fields in order (None ones left out), then one key per scored split."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "scores"}
        return {key: value for key, value in record.items() if value is not None or key == "size_mb"} | self.scores

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "evaluation metrics") -> Evaluation:
        fields = [f for f in dataclasses.fields(cls) if f.name != "scores"]
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        missing = [key for key in required if key not in data]
        if missing:
            raise PrunequantError(f"{where} lack {', '.join(missing)}; rerun `dvc repro`")
        return cls(**{f.name: data.get(f.name) for f in fields},
                   scores={split: data[split] for split in SPLITS if split in data})

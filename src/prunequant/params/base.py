"""``base``: the settings every stage shares."""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.params import Section, knob, require, require_inside_repo


@dataclass(frozen=True)
class BaseConfig(Section):
    seed: int = knob(ge=0)
    # An alias from modeling.MODELS (offline, packaged), a Hugging Face Hub name or a local folder.
    model: str = knob()
    # A name from data.DATASETS, a Hub data set ("name" or "name:config") or a local CSV/Parquet file.
    data: str = knob()
    max_seq_length: int = knob(ge=8, le=8192, note="tokens")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.model.strip()), "model", "must name a model, e.g. minilm-l6")
        require(bool(self.data.strip()), "data", "must name a data set, e.g. rotten_tomatoes")
        for key in ("model", "data"):
            require_inside_repo(getattr(self, key), key)

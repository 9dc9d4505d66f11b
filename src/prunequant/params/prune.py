"""``prune`` (which layers the default pipeline removes) and ``compare`` (`make compare-strategies`)."""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.params import Section, knob, require

PRUNE_STRATEGIES = ("sensitivity", "block-influence", "angular", "top", "bottom", "alternate", "explicit")
POOLINGS = ("mean", "cls")  # tokens the label-free scores average over: every non-padding one, or the first


@dataclass(frozen=True)
class PruneConfig(Section):
    """Each entry of keep_layers is one pruned variant (`pruned-<n>`)."""

    keep_layers: tuple[int, ...] = knob(ge=1)
    strategy: str = knob(choices=PRUNE_STRATEGIES)
    drop_layers: tuple[int, ...] = knob()  # for strategy: explicit (checked against the model: pruning.check_drop)
    pooling: str = knob(choices=POOLINGS)  # for block-influence and angular

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.keep_layers), "keep_layers", "must list at least one layer count, e.g. [4]")
        require(len(set(self.keep_layers)) == len(self.keep_layers), "keep_layers",
                f"lists a count twice: {list(self.keep_layers)}")
        require(self.strategy == "explicit" or not self.drop_layers, "drop_layers",
                "is only used with prune.strategy: explicit; empty it or set the strategy")
        require(self.strategy != "explicit" or bool(self.drop_layers), "drop_layers",
                "must list the layers to remove when prune.strategy is explicit, e.g. [1, 4]")


@dataclass(frozen=True)
class CompareConfig(Section):
    """Each strategy cuts to keep_layers, then re-finetunes with and without distillation."""

    keep_layers: int = knob(ge=1)
    strategies: tuple[str, ...] = knob(choices=tuple(s for s in PRUNE_STRATEGIES if s != "explicit"))

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.strategies), "strategies", "must list at least one strategy, e.g. [sensitivity]")
        require(len(set(self.strategies)) == len(self.strategies), "strategies",
                f"lists a strategy twice: {list(self.strategies)}")

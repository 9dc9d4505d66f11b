"""``prune`` (which layers, heads and FFN neurons the default pipeline removes) and ``compare``
(`make compare-strategies`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prunequant.params import Section, SettingError, knob, require
from prunequant.params.quantize import SCHEME_FAMILY

PRUNE_STRATEGIES = ("sensitivity", "block-influence", "angular", "top", "bottom", "alternate", "explicit")
POOLINGS = ("mean", "cls")  # tokens the label-free scores average over: every non-padding one, or the first
# how heads and FFN neurons are ranked (prunequant.importance): the head-mask / first-order Taylor gradient on labelled
# validation sentences, or the norm of what each adds to the residual stream (label-free)
WIDTH_SCORES = ("gradient", "activation")
COMPARE_SCHEMES = tuple(name for name, family in SCHEME_FAMILY.items() if family == "onnx")  # make compare-widths

_CUT = re.compile(r"(?P<layers>\d+)(?:-w(?P<width>\d+)|(?:-h(?P<heads>\d+))?(?:-f(?P<ffn>\d+))?)")
CUT_SYNTAX = ("<layers>, <layers>-w<pct> (that percentage of every kept layer's attention heads and FFN neurons "
              "kept), or <layers>-h<pct>, <layers>-f<pct>, <layers>-h<pct>-f<pct> (heads and FFN apart)")


@dataclass(frozen=True)
class Cut:
    """One pruned variant: how many layers it keeps, and the percentage of each kept layer's attention heads and FFN
    neurons (100: all). Written ``3``, ``3-w50`` (both halved), ``3-h50``, ``3-f25`` or ``3-h50-f25``."""

    layers: int
    heads: int = 100
    ffn: int = 100

    @property
    def name(self) -> str:
        """The variant's key (models/pruned-<name>): the one way to write this cut."""
        if self.heads == self.ffn < 100:
            return f"{self.layers}-w{self.heads}"
        heads, ffn = (f"-h{self.heads}" if self.heads < 100 else ""), (f"-f{self.ffn}" if self.ffn < 100 else "")
        return f"{self.layers}{heads}{ffn}"

    @property
    def width(self) -> bool:
        """Whether the cut removes heads or FFN neurons too (not only layers)."""
        return self.heads < 100 or self.ffn < 100

    @property
    def width_text(self) -> str:
        """'50% of the attention heads and FFN neurons' (3-w50), '50% of the attention heads, 25% of the FFN
        neurons' (3-h50-f25); '' for a depth-only cut."""
        if self.heads == self.ffn < 100:
            return f"{self.heads}% of the attention heads and FFN neurons"
        return ", ".join(f"{pct}% of the {what}" for pct, what in ((self.heads, "attention heads"),
                                                                    (self.ffn, "FFN neurons")) if pct < 100)

    @staticmethod
    def kept(total: int, pct: int, multiple: int = 1) -> int:
        """How many of ``total`` heads (or neurons) a layer keeps at ``pct`` percent: rounded to a multiple of
        ``multiple`` (where ``total`` is one), at least one multiple."""
        step = multiple if total % multiple == 0 else 1
        return min(total, max(step, step * round(total * pct / 100 / step)))


def parse_cut(entry: object, key: str = "prune.keep_layers") -> Cut:
    """``3`` -> Cut(3); ``'3-w50'`` -> Cut(3, 50, 50); anything else a one-line error naming ``key``."""
    match = _CUT.fullmatch(str(entry)) if isinstance(entry, int | str) and not isinstance(entry, bool) else None
    if match is None:
        raise SettingError(f"{key} has {entry!r}; write {CUT_SYNTAX}, e.g. 3 or 3-w50")
    width = match["width"]
    cut = Cut(int(match["layers"]), *(int(match[k] or width or 100) for k in ("heads", "ffn")))
    given = [int(match[k]) for k in ("width", "heads", "ffn") if match[k]]
    if cut.layers < 1 or not all(1 <= p <= 99 for p in given):
        raise SettingError(f"{key} has {entry!r}: keep at least 1 layer, and 1 to 99 percent of the heads or FFN "
                           "(100: leave the suffix out)")
    if str(entry) != cut.name:
        raise SettingError(f"{key} has {entry!r}; write it {cut.name!r} (each variant has one name)")
    return cut


@dataclass(frozen=True)
class PruneConfig(Section):
    """Each entry of keep_layers is one pruned variant (`pruned-<entry>`): a layer count, or a :class:`Cut` that
    removes heads and FFN neurons too (``3-w50``)."""

    keep_layers: tuple[int | str, ...] = knob()  # layer counts and cut names (parse_cut checks them)
    strategy: str = knob(choices=PRUNE_STRATEGIES)
    drop_layers: tuple[int, ...] = knob()  # for strategy: explicit (checked against the model: pruning.check_drop)
    pooling: str = knob(choices=POOLINGS)  # for block-influence and angular
    width_score: str = knob(choices=WIDTH_SCORES)  # which importance picks the heads and FFN neurons a cut keeps

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.keep_layers), "keep_layers", "must list at least one layer count, e.g. [4]")
        names = [parse_cut(entry, "keep_layers").name for entry in self.keep_layers]
        require(len(set(names)) == len(names), "keep_layers", f"lists a variant twice: {names}")
        require(self.strategy == "explicit" or not self.drop_layers, "drop_layers",
                "is only used with prune.strategy: explicit; empty it or set the strategy")
        require(self.strategy != "explicit" or bool(self.drop_layers), "drop_layers",
                "must list the layers to remove when prune.strategy is explicit, e.g. [1, 4]")

    @property
    def cuts(self) -> tuple[Cut, ...]:
        """One :class:`Cut` per variant, in params order."""
        return tuple(parse_cut(entry) for entry in self.keep_layers)


@dataclass(frozen=True)
class CompareConfig(Section):
    """`make compare-strategies`: each strategy cuts to keep_layers, then re-finetunes with and without distillation.
    `make compare-widths`: each of ``cuts`` (depth, width or both) re-finetunes with distillation, is quantized with
    ``scheme`` and timed against the baseline."""

    keep_layers: int = knob(ge=1)
    strategies: tuple[str, ...] = knob(choices=tuple(s for s in PRUNE_STRATEGIES if s != "explicit"))
    cuts: tuple[int | str, ...] = knob()  # prune.keep_layers' syntax
    scheme: str = knob(choices=COMPARE_SCHEMES)  # the comparison's stages run the ONNX family's module alone

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [parse_cut(entry, "cuts").name for entry in self.cuts]
        require(bool(names), "cuts", "must list at least one cut, e.g. [3, 4-w50]")
        require(len(set(names)) == len(names), "cuts", f"lists a cut twice: {names}")
        require(bool(self.strategies), "strategies", "must list at least one strategy, e.g. [sensitivity]")
        require(len(set(self.strategies)) == len(self.strategies), "strategies",
                f"lists a strategy twice: {list(self.strategies)}")

    @property
    def cut_list(self) -> tuple[Cut, ...]:
        """One :class:`Cut` per entry of ``cuts``."""
        return tuple(parse_cut(entry, "compare.cuts") for entry in self.cuts)

"""Structured layer pruning: physically remove Transformer layers from a Hugging Face encoder.

Encoders keep their layers in an ``nn.ModuleList``; ``LAYER_LISTS`` says where, per model type, and
which config key counts them. Replacing that list is all it takes: the saved folder has renumbered
weights and the layer count updated, and loads with plain ``from_pretrained``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from torch import nn

from prunequant.errors import PrunequantError
from prunequant.params import require, require_choice

PRUNE_STRATEGIES = ("sensitivity", "block-influence", "angular", "top", "bottom", "alternate", "explicit")
POOLINGS = ("mean", "cls")  # tokens the label-free scores average over: every non-padding one, or the first


@dataclass(frozen=True)
class PruneConfig:
    """Which layers to remove. Each entry of keep_layers is one pruned variant (`pruned-<n>`)."""

    keep_layers: tuple[int, ...] = (4, 3)
    strategy: str = "sensitivity"
    drop_layers: tuple[int, ...] = ()  # for strategy: explicit
    pooling: str = "cls"  # for block-influence and angular: the tokens their hidden-state distances average over

    def __post_init__(self) -> None:
        require_choice(self.strategy, PRUNE_STRATEGIES, "prune.strategy")
        require_choice(self.pooling, POOLINGS, "prune.pooling")
        require(bool(self.keep_layers), "prune.keep_layers", "must list at least one layer count, e.g. [4]")
        require(
            len(set(self.keep_layers)) == len(self.keep_layers),
            "prune.keep_layers",
            f"lists a count twice: {list(self.keep_layers)}",
        )
        bad = [n for n in self.keep_layers if n < 1]
        require(not bad, "prune.keep_layers", f"must be >= 1, got {bad}")
        require(
            self.strategy == "explicit" or not self.drop_layers,
            "prune.drop_layers",
            "is only used with prune.strategy: explicit; empty it or set the strategy",
        )
        require(
            self.strategy != "explicit" or bool(self.drop_layers),
            "prune.drop_layers",
            "must list the layers to remove when prune.strategy is explicit, e.g. [1, 4]",
        )


@dataclass(frozen=True)
class CompareConfig:
    """`make compare-strategies`: each strategy cuts to keep_layers, re-finetuned with and without distillation."""

    keep_layers: int = 3
    strategies: tuple[str, ...] = ("sensitivity", "top", "bottom", "alternate")

    def __post_init__(self) -> None:
        require(self.keep_layers >= 1, "compare.keep_layers", f"must be >= 1, got {self.keep_layers}")
        require(bool(self.strategies), "compare.strategies", "must list at least one strategy, e.g. [sensitivity]")
        compared = tuple(s for s in PRUNE_STRATEGIES if s != "explicit")
        for i, strategy in enumerate(self.strategies):
            require_choice(strategy, compared, f"compare.strategies[{i}]")
        require(
            len(set(self.strategies)) == len(self.strategies),
            "compare.strategies",
            f"lists a strategy twice: {list(self.strategies)}",
        )

# model_type -> (attribute path of the layer list, config key holding the layer count)
LAYER_LISTS: dict[str, tuple[str, str]] = {
    "bert": ("bert.encoder.layer", "num_hidden_layers"),
    "roberta": ("roberta.encoder.layer", "num_hidden_layers"),
    "xlm-roberta": ("roberta.encoder.layer", "num_hidden_layers"),
    "electra": ("electra.encoder.layer", "num_hidden_layers"),
    "distilbert": ("distilbert.transformer.layer", "n_layers"),
    "deberta-v2": ("deberta.encoder.layer", "num_hidden_layers"),  # DeBERTa-v2 and v3
    # ModernBERT builds layer i's attention from i (global every global_attn_every_n_layers-th, sliding-window
    # otherwise; no attention norm in layer 0): a pruned model reloads with the pattern of its new depth, which
    # re-finetuning adapts to.
    "modernbert": ("model.layers", "num_hidden_layers"),
}


def _slot(model: nn.Module) -> tuple[nn.Module, str, str]:
    """(parent module, attribute name of the layer list, config key of the layer count)."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in LAYER_LISTS:
        raise PrunequantError(
            f"base.model: model type {model_type!r} has no known list of layers to prune; "
            f"supported: {', '.join(LAYER_LISTS)} (add one line to pruning.LAYER_LISTS)"
        )
    path, count_key = LAYER_LISTS[model_type]
    parent_path, _, attr = path.rpartition(".")
    parent = model
    for name in parent_path.split("."):
        parent = getattr(parent, name, None)
        if parent is None:
            raise PrunequantError(f"base.model: this {model_type} model has no {path}; use a sequence classifier")
    layers = getattr(parent, attr, None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise PrunequantError(f"base.model: {path} holds no layers to prune")
    return parent, attr, count_key


def layer_count(model: nn.Module) -> int:
    parent, attr, _ = _slot(model)
    return len(getattr(parent, attr))


def _set_layers(model: nn.Module, layers: Sequence[nn.Module]) -> None:
    parent, attr, count_key = _slot(model)
    setattr(parent, attr, nn.ModuleList(layers))
    setattr(model.config, count_key, len(layers))


def check_drop(drop: Sequence[int], total: int, param: str = "prune.drop_layers") -> list[int]:
    """Validate layer indices to drop: distinct, in range, and at least one layer left."""
    drop = list(drop)
    if len(set(drop)) != len(drop):
        raise PrunequantError(f"params.yaml: {param} {drop} lists a layer twice; list each once")
    bad = [i for i in drop if not 0 <= i < total]
    if bad:
        raise PrunequantError(f"params.yaml: {param} has {bad}, outside 0..{total - 1} for this {total}-layer model")
    if len(drop) >= total:
        raise PrunequantError(f"params.yaml: {param} drops all {total} layers; keep at least one")
    return sorted(drop)


@contextmanager
def layers_skipped(model: nn.Module, drop: Sequence[int]) -> Iterator[nn.Module]:
    """Run ``model`` with the layers in ``drop`` skipped (their output = their input), then restore."""
    parent, attr, count_key = _slot(model)
    original, original_count = getattr(parent, attr), getattr(model.config, count_key)
    drop = set(check_drop(drop, len(original), "layers to skip"))
    _set_layers(model, [layer for i, layer in enumerate(original) if i not in drop])
    try:
        yield model
    finally:
        setattr(parent, attr, original)
        setattr(model.config, count_key, original_count)


def drop_layers(model: nn.Module, drop: Sequence[int]) -> nn.Module:
    """A copy of ``model`` without the layers in ``drop``; the rest keep their order."""
    drop = set(check_drop(drop, layer_count(model)))
    pruned = copy.deepcopy(model)
    parent, attr, _ = _slot(pruned)
    kept = [layer for i, layer in enumerate(getattr(parent, attr)) if i not in drop]
    for new_index, layer in enumerate(kept):
        for module in layer.modules():  # attention modules remember their depth for KV caches
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    _set_layers(pruned, kept)
    # Remember which of the original model's layers survive (saved in config.json): distillation
    # matches hidden states by it, and a second cut composes with the first.
    original = getattr(model.config, "pruned_from_layers", None) or list(range(layer_count(model)))
    pruned.config.pruned_from_layers = [original[i] for i in range(len(original)) if i not in drop]
    return pruned


def layers_to_drop(
    strategy: str,
    total: int,
    keep: int | None,
    *,
    importance_order: Sequence[int] | None = None,
    blocks=None,
    explicit: Sequence[int] = (),
) -> list[int]:
    """Which layer indices a strategy removes to keep ``keep`` of ``total`` layers.

    ``importance_order`` lists layers from least to most important (for ``sensitivity``: ablation's ranking; for
    ``block-influence``: the smallest block influence first). ``blocks`` (for ``angular``) is a table with
    ``start``, ``length`` and ``distance`` per block of consecutive layers: the closest block of the needed
    length goes (the earliest, on a tie).
    """
    if strategy == "explicit":
        return check_drop(explicit, total)
    if keep is None or not 0 < keep < total:
        raise PrunequantError(
            f"params.yaml: prune keep_layers is {keep} but must be between 1 and {total - 1} for this "
            f"{total}-layer model"
        )
    n_drop = total - keep
    if strategy == "top":
        return list(range(keep, total))
    if strategy == "bottom":
        return list(range(n_drop))
    if strategy == "alternate":
        kept = set(np.linspace(0, total - 1, keep).round().astype(int).tolist())
        return [i for i in range(total) if i not in kept]
    if strategy in ("sensitivity", "block-influence"):
        if importance_order is None:
            raise PrunequantError(f"prune: strategy {strategy!r} needs metrics/sensitivity.csv; run `dvc repro sensitivity`")
        return sorted(importance_order[:n_drop])
    if strategy == "angular":
        if blocks is None:
            raise PrunequantError("prune: strategy 'angular' needs metrics/sensitivity-blocks.csv; run `dvc repro sensitivity`")
        candidates = blocks[blocks["length"] == n_drop].sort_values(["distance", "start"], kind="stable")
        if candidates.empty:
            raise PrunequantError(f"prune: metrics/sensitivity-blocks.csv has no block of {n_drop} layers; "
                                  "it was measured on another model: run `dvc repro sensitivity`")
        start = int(candidates["start"].iloc[0])
        return list(range(start, start + n_drop))
    raise AssertionError(f"unvalidated strategy {strategy!r}")


def importance_order(table, strategy: str = "sensitivity", pooling: str = "cls") -> list[int]:
    """Layers from least to most important, as the sensitivity stage's table ranks them: ``removal_order`` for
    ``sensitivity``; for ``block-influence``, the smallest ``block_influence_<pooling>`` first (later layers first
    on a tie, as ablation's ranking breaks them)."""
    if strategy == "sensitivity":
        return table.sort_values("removal_order")["layer"].astype(int).tolist()
    column = f"block_influence_{pooling}"
    if column not in table:
        raise PrunequantError(f"prune: the sensitivity table has no {column} column; run `dvc repro sensitivity`")
    ranked = table.assign(later=-table["layer"]).sort_values([column, "later"], kind="stable")
    return ranked["layer"].astype(int).tolist()


def angular_blocks(blocks, pooling: str = "cls"):
    """The sensitivity stage's block table with the distance of ``pooling`` as ``distance``."""
    column = f"angular_{pooling}"
    if column not in blocks:
        raise PrunequantError(f"prune: the block table has no {column} column; run `dvc repro sensitivity`")
    return blocks.rename(columns={column: "distance"})[["start", "length", "distance"]]

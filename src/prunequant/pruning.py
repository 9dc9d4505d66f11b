"""Structured layer pruning: physically remove Transformer layers from a Hugging Face encoder.

Encoders keep their layers in an ``nn.ModuleList``; ``LAYER_LISTS`` says where, per model type, and
which config key counts them. Replacing that list is all it takes: the saved folder has renumbered
weights and the layer count updated, and loads with plain ``from_pretrained``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from prunequant.errors import PrunequantError
from prunequant.layer_choice import check_drop

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

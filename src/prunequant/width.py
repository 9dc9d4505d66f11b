"""Width pruning: physically remove attention heads and FFN neurons from an encoder's layers, so the saved model is
smaller and every runtime computes less (not masked).

Heads go through the model's own ``prune_heads``: transformers cuts each head's query, key and value rows and the
output projection's columns, and records ``config.pruned_heads``, so the saved folder reloads with plain
``from_pretrained``. FFN neurons: every layer keeps the same number of them (the rows of its up projection and the
columns of its down projection), and ``config`` records that number as the intermediate size, so the folder reloads
too. ``FFN_LAYERS`` says where each family keeps its two projections; a family without an entry (ModernBERT's fused
gated MLP) is refused in one line, as is head pruning outside ``HEAD_FAMILIES``.

Which heads and neurons go: :func:`cut_width` keeps each layer's highest-scoring ones (``prunequant.importance``
scores them on the unpruned model; a layer-pruned model maps its layers back with ``config.pruned_from_layers``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from prunequant.errors import PrunequantError
from prunequant.params.prune import Cut
from prunequant.pruning import LAYER_LISTS

# families whose models implement transformers' prune_heads (DeBERTa-v2 raises NotImplementedError, ModernBERT has
# none) -> the attention output projection inside one layer (its input: every head's output side by side)
HEAD_FAMILIES: dict[str, str] = {
    "bert": "attention.output.dense",
    "roberta": "attention.output.dense",
    "xlm-roberta": "attention.output.dense",
    "electra": "attention.output.dense",
    "distilbert": "attention.out_lin",
}
# A width cut keeps a multiple of this many FFN neurons (where the width is one): bitsandbytes' 4-bit CPU kernel needs
# the down projection's input in whole 64-weight blocks, and GEMM tiles like it too.
FFN_MULTIPLE = 64
# model_type -> (up projection, down projection) inside one layer, and the config key of the FFN width
FFN_LAYERS: dict[str, tuple[str, str, str]] = {
    "bert": ("intermediate.dense", "output.dense", "intermediate_size"),
    "roberta": ("intermediate.dense", "output.dense", "intermediate_size"),
    "xlm-roberta": ("intermediate.dense", "output.dense", "intermediate_size"),
    "electra": ("intermediate.dense", "output.dense", "intermediate_size"),
    "deberta-v2": ("intermediate.dense", "output.dense", "intermediate_size"),
    "distilbert": ("ffn.lin1", "ffn.lin2", "hidden_dim"),
}


def _family(model: nn.Module, table) -> str:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in table:
        raise PrunequantError(f"base.model: n/a: width pruning has no layout for model type {model_type!r}; "
                              f"supported: {', '.join(sorted(table))}")
    return model_type


def prune_heads(model: nn.Module, heads: Mapping[int, Sequence[int]]) -> nn.Module:
    """A copy of ``model`` without the attention heads ``heads`` ({layer: [head, ...]}); at least one head stays."""
    _, count_key = LAYER_LISTS[_family(model, HEAD_FAMILIES)]
    total = model.config.num_attention_heads
    for layer, drop in heads.items():
        if not 0 <= layer < getattr(model.config, count_key):
            raise PrunequantError(f"prune.heads: layer {layer} is not a layer of this model")
        if len(set(drop)) != len(drop) or not all(0 <= h < total for h in drop) or len(set(drop)) >= total:
            raise PrunequantError(f"prune.heads: layer {layer} drops {sorted(drop)}; give distinct heads "
                                  f"0..{total - 1} and keep at least one")
    pruned = copy.deepcopy(model)
    pruned.prune_heads({layer: list(drop) for layer, drop in heads.items() if drop})
    return pruned


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent), name, module)


def keep_ffn_neurons(model: nn.Module, keep: Mapping[int, Sequence[int]]) -> nn.Module:
    """A copy of ``model`` whose layer ``i`` keeps only the FFN neurons ``keep[i]`` (every layer, the same count)."""
    family = _family(model, FFN_LAYERS)
    up_path, down_path, width_key = FFN_LAYERS[family]
    layers = model.get_submodule(LAYER_LISTS[family][0])
    width = getattr(model.config, width_key)
    if sorted(keep) != list(range(len(layers))):
        raise PrunequantError(f"prune.ffn: give the neurons to keep for each of the {len(layers)} layers")
    counts = {len(set(neurons)) for neurons in keep.values()}
    if len(counts) != 1 or not 0 < next(iter(counts)) <= width:
        raise PrunequantError(f"prune.ffn: every layer must keep the same number of neurons, 1 to {width}; "
                              f"got {sorted(len(set(n)) for n in keep.values())}")
    if not all(0 <= n < width for neurons in keep.values() for n in neurons):
        raise PrunequantError(f"prune.ffn: neuron indices must be 0..{width - 1}")
    pruned = copy.deepcopy(model)
    for i, layer in enumerate(pruned.get_submodule(LAYER_LISTS[family][0])):
        index = torch.tensor(sorted(set(keep[i])), dtype=torch.long)
        _set(layer, up_path, prune_linear_layer(layer.get_submodule(up_path), index, dim=0))
        _set(layer, down_path, prune_linear_layer(layer.get_submodule(down_path), index, dim=1))
    setattr(pruned.config, width_key, next(iter(counts)))
    return pruned


def cut_width(model: nn.Module, scores: Mapping[str, torch.Tensor], cut: Cut, score: str) -> nn.Module:
    """A copy of ``model`` keeping ``cut.heads`` percent of every layer's heads and ``cut.ffn`` percent of its FFN
    neurons: the highest-scoring by ``scores[f"heads.{score}"]`` / ``scores[f"ffn.{score}"]`` ((layers, heads) and
    (layers, neurons), one row per layer of the unpruned model; ties keep the lower index)."""
    if getattr(model.config, "pruned_heads", None):
        raise PrunequantError("base.model: has pruned heads already; width-cut a model whose heads are all there")
    rows = getattr(model.config, "pruned_from_layers", None) or list(range(getattr(
        model.config, LAYER_LISTS[model.config.model_type][1])))
    if cut.heads < 100:
        table = scores[f"heads.{score}"][rows]
        total = table.shape[1]
        keep = cut.kept(total, cut.heads)
        ranked = [torch.argsort(-row, stable=True).tolist() for row in table]  # most important first
        model = prune_heads(model, {layer: sorted(order[keep:]) for layer, order in enumerate(ranked)})
    if cut.ffn < 100:
        table = scores[f"ffn.{score}"][rows]
        keep = cut.kept(table.shape[1], cut.ffn, FFN_MULTIPLE)
        model = keep_ffn_neurons(model, {layer: sorted(torch.argsort(-row, stable=True)[:keep].tolist())
                                         for layer, row in enumerate(table)})
    return model


def ffn_size(model: nn.Module) -> int | None:
    """The model's FFN width per layer (its config's), or None for a family without an FFN layout."""
    layout = FFN_LAYERS.get(getattr(model.config, "model_type", None))
    return getattr(model.config, layout[2]) if layout else None

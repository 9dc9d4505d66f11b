"""How much each attention head and each FFN neuron of an encoder matters, two ways, next to the layer scores of
:mod:`prunequant.sensitivity` (the sensitivity stage measures both on the validation split):

- ``gradient`` (needs labels): a mask ``m = 1`` multiplies each head's output (before the attention output
  projection) and each FFN neuron's activation; the score is ``|dL/dm|`` per sentence, averaged over sentences.
  For a head this is Michel et al. 2019's importance (arXiv 1905.10650); for a neuron it is the first-order Taylor
  estimate of the loss change when it is removed (Molchanov et al. 2019), as CoFi and block movement pruning use.
- ``activation`` (label-free): the mean norm of what each head or neuron adds to the residual stream, over every
  token that is not padding: ``|W_O,h ctx_h|`` for head ``h``, ``|a_i| |W_out[:, i]|`` for neuron ``i``.

Both come from forward hooks on the layers' own projections (:data:`prunequant.width.HEAD_FAMILIES`,
:data:`prunequant.width.FFN_LAYERS`), so they work for every attention implementation (eager, SDPA) of those
families. A family without a layout gets no score for that part (an empty table), never an error: only cutting it
is refused (:func:`prunequant.width.cut_width`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from prunequant.errors import PrunequantError
from prunequant.io import save_figure
from prunequant.params.prune import WIDTH_SCORES
from prunequant.pruning import LAYER_LISTS
from prunequant.splits import forward_inputs, length_batches
from prunequant.width import FFN_LAYERS, HEAD_FAMILIES

HEAD_COLUMNS = ["layer", "head", *WIDTH_SCORES, *(f"{score}_rank" for score in WIDTH_SCORES)]
FFN_SHARES = (25, 50)  # the FFN summary: the share of a layer's total score its top 25% and 50% of neurons hold

# (layer index, the projection's input reshaped: heads (B, T, H, d) or neurons (B, T, I), the projection) -> the
# input to use instead, or None to leave it
Probe = Callable[[int, torch.Tensor, torch.nn.Linear], torch.Tensor | None]


def parts(model) -> dict[str, str]:
    """The parts this model's family lets us score: {"heads": output projection, "ffn": down projection}."""
    family = model.config.model_type
    found = {"heads": HEAD_FAMILIES.get(family), "ffn": FFN_LAYERS[family][1] if family in FFN_LAYERS else None}
    return {part: path for part, path in found.items() if path}


@contextlib.contextmanager
def _probed(model, probes: dict[str, Probe]) -> Iterator[None]:
    """Run ``probes[part]`` on the input of each layer's projection of that part while the context is open."""
    layers = model.get_submodule(LAYER_LISTS[model.config.model_type][0])
    heads = model.config.num_attention_heads
    handles = []

    def hook(part: str, index: int):
        def pre(module, args):
            x = args[0]
            shaped = x.unflatten(-1, (heads, -1)) if part == "heads" else x
            out = probes[part](index, shaped, module)
            return None if out is None else (out.flatten(-2) if part == "heads" else out, *args[1:])
        return pre

    try:
        for index, layer in enumerate(layers):
            for part, path in parts(model).items():
                if part in probes:
                    handles.append(layer.get_submodule(path).register_forward_pre_hook(hook(part, index)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _sizes(model) -> dict[str, tuple[int, int]]:
    """(layers, units) of each scorable part: units = heads per layer, or FFN neurons per layer."""
    if getattr(model.config, "pruned_heads", None):
        raise PrunequantError("base.model: has pruned heads already; score a model whose heads are all there")
    layers = model.get_submodule(LAYER_LISTS[model.config.model_type][0])
    found = parts(model)
    sizes = {}
    if "heads" in found:
        sizes["heads"] = (len(layers), model.config.num_attention_heads)
    if "ffn" in found:
        sizes["ffn"] = (len(layers), layers[0].get_submodule(found["ffn"]).in_features)
    return sizes


def gradient_scores(model, tokenizer, texts: list, labels: np.ndarray, *, batch_size: int,
                    max_seq_length: int) -> dict[str, torch.Tensor]:
    """{"heads": (layers, heads), "ffn": (layers, neurons)}: the mean over sentences of ``|dL/dm|`` (module doc)."""
    model.eval()
    sizes = _sizes(model)
    sums = {part: torch.zeros(size, dtype=torch.float64) for part, size in sizes.items()}
    masks: dict[str, list[torch.Tensor]] = {}

    def head_probe(index, x, _):
        return x * masks["heads"][index][:, None, :, None].to(x.dtype)

    def ffn_probe(index, x, _):
        return x * masks["ffn"][index][:, None, :].to(x.dtype)

    frozen = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for parameter, _ in frozen:  # gradients reach the masks only: no weight gradient is computed
            parameter.requires_grad_(False)
        with _probed(model, {"heads": head_probe, "ffn": ffn_probe}), torch.enable_grad():
            for order, batch in tqdm(length_batches(tokenizer, texts, batch_size, max_seq_length),
                                     total=-(-len(texts) // batch_size), desc="head and FFN gradients", unit="batch",
                                     leave=False):
                count = len(order)
                masks = {part: [torch.ones(count, units, requires_grad=True) for _ in range(layers)]
                         for part, (layers, units) in sizes.items()}
                logits = model(**forward_inputs(model, batch)).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels[order]),
                                                         reduction="sum")
                flat = [m for part in sizes for m in masks[part]]
                grads = iter(torch.autograd.grad(loss, flat))
                for part, (layers, _) in sizes.items():
                    sums[part] += torch.stack([next(grads).abs().sum(0) for _ in range(layers)]).double()
    finally:
        for parameter, flag in frozen:
            parameter.requires_grad_(flag)
    return {part: (total / len(texts)).float() for part, total in sums.items()}


@torch.inference_mode()
def activation_scores(model, tokenizer, texts: list, *, batch_size: int,
                      max_seq_length: int) -> dict[str, torch.Tensor]:
    """{"heads": (layers, heads), "ffn": (layers, neurons)}: each one's mean output norm over non-padding tokens."""
    model.eval()
    sizes = _sizes(model)
    sums = {part: torch.zeros(size, dtype=torch.float64) for part, size in sizes.items()}
    state = {"tokens": None, "count": 0}

    def head_probe(index, x, projection):
        weight = projection.weight.float().unflatten(1, (x.shape[-2], -1))  # (hidden, H, d)
        gram = torch.einsum("ohd,ohe->hde", weight, weight)
        picked = x[state["tokens"]].float()  # (N, H, d)
        squared = torch.einsum("nhd,hde,nhe->nh", picked, gram, picked)
        sums["heads"][index] += squared.clamp_min(0).sqrt().sum(0).double()

    def ffn_probe(index, x, projection):
        column_norms = projection.weight.float().norm(dim=0)  # (I,)
        sums["ffn"][index] += (x[state["tokens"]].float().abs().sum(0) * column_norms).double()

    with _probed(model, {"heads": head_probe, "ffn": ffn_probe}):
        for _, batch in tqdm(length_batches(tokenizer, texts, batch_size, max_seq_length),
                             total=-(-len(texts) // batch_size), desc="head and FFN activations", unit="batch",
                             leave=False):
            state["tokens"] = batch["attention_mask"].bool()
            state["count"] += int(state["tokens"].sum())
            model(**forward_inputs(model, batch))
    return {part: (total / max(state["count"], 1)).float() for part, total in sums.items()}


def measure(model, tokenizer, texts: list, labels: np.ndarray, *, batch_size: int,
            max_seq_length: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Both scores as ``{"<part>.<score>": tensor}`` (the file the prune stage reads) and the seconds each took."""
    scores, seconds = {}, {}
    for name in WIDTH_SCORES:
        began = time.perf_counter()
        if name == "gradient":
            found = gradient_scores(model, tokenizer, texts, labels, batch_size=batch_size,
                                    max_seq_length=max_seq_length)
        else:
            found = activation_scores(model, tokenizer, texts, batch_size=batch_size, max_seq_length=max_seq_length)
        seconds[f"{name}_seconds"] = time.perf_counter() - began
        scores.update({f"{part}.{name}": tensor.contiguous() for part, tensor in found.items()})
    return scores, seconds


def _ranks(table: torch.Tensor) -> torch.Tensor:
    """Each unit's rank within its layer: 0 the most important (ties: the lower index first)."""
    order = torch.argsort(-table, dim=1, stable=True)
    return torch.argsort(order, dim=1)


def head_table(scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    """One row per (layer, head): both scores and their rank within the layer (0: most important)."""
    if "heads.gradient" not in scores:
        return pd.DataFrame(columns=HEAD_COLUMNS)
    layers, heads = scores["heads.gradient"].shape
    frame = pd.DataFrame({"layer": np.repeat(range(layers), heads), "head": np.tile(range(heads), layers)})
    for name in WIDTH_SCORES:
        frame[name] = scores[f"heads.{name}"].flatten().numpy().astype(float)
        frame[f"{name}_rank"] = _ranks(scores[f"heads.{name}"]).flatten().numpy()
    return frame[HEAD_COLUMNS]


def ffn_table(scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    """One row per layer: its neuron count, and for each score the share of the layer's total that its top 25%
    and 50% of neurons hold (0.25 and 0.5 when every neuron matters alike), and the two scores' rank correlation."""
    if "ffn.gradient" not in scores:
        return pd.DataFrame(columns=["layer", "neurons"])
    rows = []
    for layer in range(scores["ffn.gradient"].shape[0]):
        row = {"layer": layer, "neurons": int(scores["ffn.gradient"].shape[1])}
        for name in WIDTH_SCORES:
            ordered = torch.sort(scores[f"ffn.{name}"][layer].double(), descending=True).values
            for share in FFN_SHARES:
                top = max(1, round(len(ordered) * share / 100))
                row[f"{name}_top{share}"] = float(ordered[:top].sum() / ordered.sum())
        ranks = [_ranks(scores[f"ffn.{name}"][layer][None])[0].double() for name in WIDTH_SCORES]
        row["spearman"] = float(torch.corrcoef(torch.stack(ranks))[0, 1])
        rows.append(row)
    return pd.DataFrame(rows)


def plot_heads(table: pd.DataFrame, path, *, title: str) -> None:
    """The layer x head heat map of both scores, each divided by its layer's mean (1: an average head of its
    layer), with each head's rank within its layer written in its cell when the grid is small enough to read; a
    model without head scores gets a figure that says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:  # a family whose heads cannot be cut (DeBERTa-v2, ModernBERT): the figure says so
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}\nn/a: this model family's heads cannot be cut", ha="center", va="center")
        save_figure(fig, path, dpi=120)
        plt.close(fig)
        return
    layers, heads = int(table.layer.max()) + 1, int(table["head"].max()) + 1
    fig, axes = plt.subplots(1, len(WIDTH_SCORES), figsize=(2 * (1.2 + 0.42 * heads), 1.6 + 0.36 * layers),
                             squeeze=False)
    for ax, name in zip(axes[0], WIDTH_SCORES, strict=True):
        grid = table.pivot(index="layer", columns="head", values=name).to_numpy()
        relative = grid / grid.mean(axis=1, keepdims=True)
        image = ax.imshow(relative, cmap="viridis", aspect="auto", vmin=0)
        if layers * heads <= 400:
            ranks = table.pivot(index="layer", columns="head", values=f"{name}_rank").to_numpy()
            for (i, j), rank in np.ndenumerate(ranks):
                ax.text(j, i, str(int(rank) + 1), ha="center", va="center", fontsize=6,
                        color="white" if relative[i, j] < 0.6 * np.nanmax(relative) else "black")
        ax.set_xticks(range(heads))
        ax.set_yticks(range(layers))
        ax.set_xlabel("head")
        ax.set_ylabel("layer (0 = next to the embeddings)")
        ax.set_title({"gradient": "gradient |dL/dmask| (labels)",
                      "activation": "output norm (label-free)"}[name], fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="score / layer mean")
    fig.suptitle(f"{title}\ncell: the head's rank in its layer (1 = most important; a width cut keeps the top ones)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)

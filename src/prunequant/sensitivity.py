"""Layer sensitivity: how much validation accuracy drops when a Transformer layer is skipped (the ground truth,
L or about L²/2 evaluations), next to two label-free estimators read off one forward pass over the same sentences:

- block influence (ShortGPT, arXiv 2403.03853): ``1 - cos(x_i, x_{i+1})`` between layer i's input and output;
- angular distance (Gromov et al., arXiv 2403.17887): ``arccos(cos(x_l, x_{l+n})) / pi``, which scores a block of
  n consecutive layers at once (drop the block whose input and output are closest).

Each is averaged two ways: over every token that is not padding (``mean``) and over the first token alone
(``cls``, the one the classifier head reads).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from prunequant.evaluation import accuracy_ci
from prunequant.io import save_figure
from prunequant.params.prune import POOLINGS
from prunequant.pruning import layer_count, layers_skipped
from prunequant.splits import forward_inputs, length_batches

SENSITIVITY_COLUMNS = ["layer", "accuracy", "accuracy_drop", "ci_low", "ci_high", "removal_order"]
ESTIMATOR_COLUMNS = [f"{name}_{pooling}" for name in ("block_influence", "angular") for pooling in POOLINGS]
BLOCK_COLUMNS = ["start", "length", *(f"angular_{pooling}" for pooling in POOLINGS)]

# correctness(model) -> 0/1 vector over the validation examples
Scorer = Callable[[object], np.ndarray]


def _row(layer: int, correct: np.ndarray, reference: float, confidence_level: float) -> dict:
    stats = accuracy_ci(correct, confidence_level)
    return {
        "layer": layer,
        "accuracy": stats["accuracy"],
        "accuracy_drop": reference - stats["accuracy"],
        "ci_low": stats["accuracy_ci_low"],
        "ci_high": stats["accuracy_ci_high"],
    }


def ablation(model, score: Scorer, confidence_level: float = 0.95) -> tuple[float, pd.DataFrame]:
    """Skip each layer alone (L evaluations); ``removal_order`` ranks layers least important first."""
    reference = float(score(model).mean())
    rows = []
    for layer in tqdm(range(layer_count(model)), desc="sensitivity", unit="layer"):
        with layers_skipped(model, [layer]):
            rows.append(_row(layer, score(model), reference, confidence_level))
    table = pd.DataFrame(rows)
    # Least important first: smallest drop; ties broken towards later layers, as is conventional.
    order = sorted(range(len(table)), key=lambda i: (table.accuracy_drop[i], -i))
    table["removal_order"] = [order.index(i) for i in range(len(table))]
    return reference, table[SENSITIVITY_COLUMNS]


def iterative(model, score: Scorer, confidence_level: float = 0.95) -> tuple[float, pd.DataFrame]:
    """Greedy: remove the layer whose loss hurts least, re-measure the rest, repeat down to one layer.

    Each row's accuracy is measured with that layer *and all removed before it* skipped; about L²/2
    evaluations.
    """
    reference = float(score(model).mean())
    total = layer_count(model)
    removed: list[int] = []
    rows = []
    with tqdm(total=total * (total + 1) // 2 - 1, desc="sensitivity (iterative)", unit="eval") as bar:
        while len(removed) < total - 1:
            candidates = []
            for layer in (i for i in range(total) if i not in removed):
                with layers_skipped(model, [*removed, layer]):
                    candidates.append(_row(layer, score(model), reference, confidence_level))
                bar.update()
            best = max(candidates, key=lambda r: (r["accuracy"], r["layer"]))
            rows.append({**best, "removal_order": len(removed)})
            removed.append(best["layer"])
    last = next(i for i in range(total) if i not in removed)
    rows.append({"layer": last, "accuracy": np.nan, "accuracy_drop": np.nan, "ci_low": np.nan,
                 "ci_high": np.nan, "removal_order": total - 1})
    return reference, pd.DataFrame(rows).sort_values("layer").reset_index(drop=True)[SENSITIVITY_COLUMNS]


METHODS = {"ablation": ablation, "iterative": iterative}


@torch.inference_mode()
def hidden_state_distances(model, tokenizer, texts: list, *, batch_size: int, max_seq_length: int) -> dict:
    """Mean cosine similarity and mean angular distance between every pair of hidden states.

    Hidden state 0 is the embeddings' output, state l the output of layer l-1 (so state l is layer l's input).
    Returns ``{f"{kind}_{pooling}": (L+1, L+1) array}`` for kind in cos, angle and pooling in :data:`POOLINGS`:
    ``mean`` averages over every non-padding token of every sentence, ``cls`` over each sentence's first token.
    """
    model.eval()
    states_count = layer_count(model) + 1
    sums = {f"{kind}_{pooling}": np.zeros((states_count, states_count)) for kind in ("cos", "angle")
            for pooling in POOLINGS}
    counts = dict.fromkeys(POOLINGS, 0)
    for _, batch in tqdm(length_batches(tokenizer, texts, batch_size, max_seq_length), desc="hidden states",
                         unit="batch", leave=False):
        out = model(**forward_inputs(model, batch), output_hidden_states=True)
        states = torch.nn.functional.normalize(torch.stack(out.hidden_states).float(), dim=-1)  # (L+1, B, T, H)
        tokens = {"mean": batch["attention_mask"].bool(),
                  "cls": torch.zeros_like(batch["attention_mask"], dtype=torch.bool)}
        tokens["cls"][:, 0] = True
        for pooling, mask in tokens.items():
            picked = states[:, mask]  # (L+1, N, H)
            cos = torch.einsum("lnh,mnh->lmn", picked, picked).clamp(-1, 1)
            sums[f"cos_{pooling}"] += cos.sum(-1).double().numpy()
            sums[f"angle_{pooling}"] += (torch.arccos(cos) / math.pi).sum(-1).double().numpy()
            counts[pooling] += picked.shape[1]
    return {key: value / counts[key.split("_")[1]] for key, value in sums.items()}


def label_free_scores(distances: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-layer scores (``block_influence_*`` = 1 - cos(x_i, x_{i+1}), ``angular_*`` = its angle / pi: the larger,
    the more the layer changes its input) and the angular distance of every block of consecutive layers
    (``start``, ``length``: dropping layers start .. start+length-1 joins state start to state start+length)."""
    states_count = next(iter(distances.values())).shape[0]
    layers = pd.DataFrame({"layer": range(states_count - 1)})
    blocks = pd.DataFrame([{"start": start, "length": length} for length in range(1, states_count - 1)
                           for start in range(states_count - length)])
    for pooling in POOLINGS:
        cos, angle = distances[f"cos_{pooling}"], distances[f"angle_{pooling}"]
        layers[f"block_influence_{pooling}"] = [1 - cos[i, i + 1] for i in layers["layer"]]
        layers[f"angular_{pooling}"] = [angle[i, i + 1] for i in layers["layer"]]
        blocks[f"angular_{pooling}"] = [angle[s, s + n] for s, n in zip(blocks["start"], blocks["length"], strict=True)]
    return layers, blocks[BLOCK_COLUMNS]


def measure(model, tokenizer, texts: list, score: Scorer, *, method: str, batch_size: int, max_seq_length: int,
            confidence_level: float = 0.95) -> tuple[float, pd.DataFrame, pd.DataFrame, dict]:
    """The sensitivity table (``method``'s accuracy drops next to the label-free scores), the angular distance of
    every block of layers, and the seconds each measurement took (``ablation_seconds``, ``hidden_states_seconds``:
    kept out of the tables, which the prune stages read, so that a rerun leaves them byte-identical)."""
    began = time.perf_counter()
    reference, table = METHODS[method](model, score, confidence_level)
    ablation_seconds = time.perf_counter() - began
    began = time.perf_counter()
    distances = hidden_state_distances(model, tokenizer, texts, batch_size=batch_size, max_seq_length=max_seq_length)
    seconds = {"ablation_seconds": ablation_seconds, "hidden_states_seconds": time.perf_counter() - began}
    layers, blocks = label_free_scores(distances)
    return reference, table.merge(layers, on="layer")[SENSITIVITY_COLUMNS + ESTIMATOR_COLUMNS], blocks, seconds


def plot_sensitivity(table: pd.DataFrame, reference: float, path, *, title: str) -> None:
    """Bar chart of the validation accuracy drop per skipped layer, with each measurement's CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.dropna(subset=["accuracy"])
    drop_pts = 100 * table["accuracy_drop"].to_numpy()
    # drop = reference - accuracy, so the accuracy's upper bound is the drop's lower one.
    err = 100 * np.vstack([table["ci_high"] - table["accuracy"], table["accuracy"] - table["ci_low"]])
    fig, ax = plt.subplots(figsize=(max(5.5, 0.6 * len(table) + 2.5), 4.2))
    labels = [f"{int(layer)}\n#{int(order) + 1}"
              for layer, order in zip(table["layer"], table["removal_order"], strict=True)]
    ax.bar(labels, drop_pts, yerr=err, capsize=4, color="#1f77b4")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("layer skipped (0 = next to the embeddings); #k: k-th to be pruned")
    ax.set_ylabel("validation accuracy drop (points)")
    ax.set_title(f"{title}\nfull model {100 * reference:.2f}% validation accuracy; error bars: 95% CI of each accuracy",
                 fontsize=10)
    ax.margins(y=0.15)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)

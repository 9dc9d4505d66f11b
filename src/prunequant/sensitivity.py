"""Layer sensitivity: how much validation accuracy drops when a Transformer layer is skipped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from prunequant.evaluation import accuracy_ci
from prunequant.io import save_figure
from prunequant.params import require_choice
from prunequant.pruning import layer_count, layers_skipped

SENSITIVITY_METHODS = ("ablation", "iterative")


@dataclass(frozen=True)
class SensitivityConfig:
    """How layer importance is measured on the validation split."""

    method: str = "ablation"  # ablation: skip each layer alone; iterative: greedy, re-measured

    def __post_init__(self) -> None:
        require_choice(self.method, SENSITIVITY_METHODS, "sensitivity.method")

SENSITIVITY_COLUMNS = ["layer", "accuracy", "accuracy_drop", "ci_low", "ci_high", "removal_order"]

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
    labels = [f"{int(layer)}\n#{int(order) + 1}" for layer, order in zip(table["layer"], table["removal_order"], strict=True)]
    ax.bar(labels, drop_pts, yerr=err, capsize=4, color="#1f77b4")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("layer skipped (0 = next to the embeddings); #k: k-th to be pruned")
    ax.set_ylabel("validation accuracy drop (points)")
    ax.set_title(f"{title}\nfull model {100 * reference:.2f}% validation accuracy; error bars: 95% CI of each accuracy", fontsize=10)
    ax.margins(y=0.15)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)

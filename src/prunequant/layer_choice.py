"""Which layers a pruning strategy removes, read from the sensitivity stage's tables (no model, no torch): the
prune stage's choice, and the report's comparison of the label-free estimators with skip-and-rescore."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from prunequant.errors import PrunequantError
from prunequant.params.prune import POOLINGS


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
            raise PrunequantError(f"prune: strategy {strategy!r} needs metrics/sensitivity.csv; "
                                  "run `dvc repro sensitivity`")
        return sorted(importance_order[:n_drop])
    if strategy == "angular":
        if blocks is None:
            raise PrunequantError("prune: strategy 'angular' needs metrics/sensitivity-blocks.csv; "
                                  "run `dvc repro sensitivity`")
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


def estimator_comparison(table: pd.DataFrame, blocks: pd.DataFrame, seconds: dict, keep_layers) -> pd.DataFrame:
    """One row per way of ranking layers: the sensitivity stage's skip-and-rescore ranking, then each label-free
    estimator under each pooling, with the seconds it took (``seconds``: :func:`prunequant.sensitivity.measure`'s),
    its Spearman rank correlation with the skip-and-rescore
    ranking (``removal_order``, the order the sensitivity strategy prunes in) and the layers it drops for each
    entry of ``keep_layers``."""
    from scipy.stats import spearmanr

    total = len(table)
    keep_layers = [k for k in keep_layers if 0 < k < total]
    truth = table["removal_order"].to_numpy(float)
    rows = [{"estimator": "skip and re-score", "strategy": "sensitivity", "pooling": "", "labels": "yes",
             "seconds": float(seconds["ablation_seconds"]), "spearman": 1.0, "p_value": 0.0,
             **{keep: layers_to_drop("sensitivity", total, keep, importance_order=importance_order(table))
                for keep in keep_layers}}]
    for name, strategy in (("block influence", "block-influence"), ("angular distance", "angular")):
        for pooling in POOLINGS:
            column = f"{strategy.replace('-', '_')}_{pooling}"
            rho, p_value = spearmanr(table[column], truth)
            ranked = importance_order(table, strategy, pooling) if strategy == "block-influence" else None
            closest = angular_blocks(blocks, pooling) if strategy == "angular" else None
            drops = {keep: layers_to_drop(strategy, total, keep, importance_order=ranked, blocks=closest)
                     for keep in keep_layers}
            rows.append({"estimator": name, "strategy": strategy, "pooling": pooling, "labels": "no",
                         "seconds": float(seconds["hidden_states_seconds"]), "spearman": float(rho),
                         "p_value": float(p_value), **drops})
    frame = pd.DataFrame(rows)
    frame.attrs["layers"] = total
    return frame

import numpy as np
import pytest
import pandas as pd
import torch

from prunequant.evaluation import accuracy_ci
from prunequant.pruning import layer_count
from prunequant.pruning import importance_order
from prunequant.sensitivity import SENSITIVITY_COLUMNS, ablation, iterative, plot_sensitivity

from .test_pruning import IDS, tiny_bert


class LayerTally:
    """A fake scorer: each skipped layer costs a known number of examples, so rankings are known."""

    cost = {0: 5, 1: 1, 2: 3, 3: 0}

    def __call__(self, model):
        kept = {id(layer) for layer in model.bert.encoder.layer}
        missing = [i for i, layer in enumerate(self.full) if id(layer) not in kept]
        wrong = sum(self.cost[i] for i in missing)
        return np.array([0] * wrong + [1] * (20 - wrong))


def scorer(model):
    tally = LayerTally()
    tally.full = list(model.bert.encoder.layer)
    return tally


def test_ablation_ranks_layers_by_drop():
    model = tiny_bert(4)
    reference, table = ablation(model, scorer(model))
    assert list(table.columns) == SENSITIVITY_COLUMNS
    assert reference == 1.0
    np.testing.assert_allclose(table["accuracy_drop"], [0.25, 0.05, 0.15, 0.0])
    assert importance_order(table) == [3, 1, 2, 0]
    # each skipped layer's accuracy carries the Wilson interval of its own 20 scored examples
    expected = [accuracy_ci(np.array([0] * wrong + [1] * (20 - wrong))) for wrong in (5, 1, 3, 0)]
    np.testing.assert_allclose(table["ci_low"], [e["accuracy_ci_low"] for e in expected])
    np.testing.assert_allclose(table["ci_high"], [e["accuracy_ci_high"] for e in expected])
    assert layer_count(model) == 4  # every layer back in place


def test_iterative_removes_greedily():
    model = tiny_bert(4)
    _, table = iterative(model, scorer(model))
    assert importance_order(table) == [3, 1, 2, 0]
    # Cumulative: after removing 3 then 1, accuracy is 1 - (0 + 1) / 20.
    assert table.set_index("layer").loc[1, "accuracy"] == pytest.approx(0.95)
    assert np.isnan(table.set_index("layer").loc[0, "accuracy"])  # the last layer is never removed


def test_ablation_on_a_real_forward_pass_restores_outputs():
    model = tiny_bert(3)
    with torch.no_grad():
        before = model(input_ids=IDS).logits.clone()

    def score(m):
        with torch.no_grad():
            return (m(input_ids=IDS).logits.argmax(-1) == 0).numpy()

    ablation(model, score)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=IDS).logits, before)


def test_plot_is_written(tmp_path):
    table = pd.DataFrame({"layer": [0, 1], "accuracy": [0.8, 0.7], "accuracy_drop": [0.01, 0.11],
                          "ci_low": [0.78, 0.68], "ci_high": [0.82, 0.72], "removal_order": [0, 1]})
    plot_sensitivity(table, 0.81, tmp_path / "s.png", title="test")
    assert (tmp_path / "s.png").stat().st_size > 5000

import numpy as np
import pandas as pd
import pytest
import torch

from prunequant.evaluation import accuracy_ci
from prunequant.layer_choice import importance_order
from prunequant.pruning import layer_count
from prunequant.sensitivity import (
    BLOCK_COLUMNS,
    ESTIMATOR_COLUMNS,
    SENSITIVITY_COLUMNS,
    ablation,
    hidden_state_distances,
    iterative,
    label_free_scores,
    measure,
    plot_sensitivity,
)

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


def test_plot_has_a_bar_per_scored_layer_with_its_drop_and_interval(tmp_path, monkeypatch):
    """One bar per layer whose skip was scored (iterative's last layer never is), as tall as its accuracy drop in
    points, its error bar the accuracy's interval turned into the drop's (upper accuracy bound = lower drop bound),
    labelled with the layer and its removal rank; the PNG written is that figure."""
    import matplotlib.colors
    import matplotlib.image
    from matplotlib.container import BarContainer

    from prunequant import sensitivity

    table = pd.DataFrame({"layer": [0, 1, 2], "accuracy": [0.8, 0.7, np.nan], "accuracy_drop": [0.01, 0.11, np.nan],
                          "ci_low": [0.77, 0.66, np.nan], "ci_high": [0.81, 0.72, np.nan], "removal_order": [1, 0, 2]})
    saved, save_figure = [], sensitivity.save_figure

    def keep(fig, path, **kwargs):
        saved.append((fig, kwargs.get("dpi", fig.dpi)))
        save_figure(fig, path, **kwargs)

    monkeypatch.setattr(sensitivity, "save_figure", keep)
    plot_sensitivity(table, 0.81, tmp_path / "s.png", title="test")
    ((fig, dpi),) = saved
    (ax,) = fig.axes
    (bars,) = [container for container in ax.containers if isinstance(container, BarContainer)]
    np.testing.assert_allclose([bar.get_height() for bar in bars], [1, 11])
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0\n#2", "1\n#1"]
    (_, _, (ranges,)) = bars.errorbar.lines
    np.testing.assert_allclose([(low[1], high[1]) for low, high in ranges.get_segments()], [(0, 4), (9, 15)],
                               atol=1e-9)
    assert "81.00%" in ax.get_title()
    png = matplotlib.image.imread(tmp_path / "s.png")
    assert png.shape[:2] == tuple(round(v) for v in fig.get_size_inches()[::-1] * dpi)
    bar_colour = np.isclose(png[..., :3], matplotlib.colors.to_rgb(bars[0].get_facecolor()), atol=2 / 255).all(-1)
    assert bar_colour.mean() > 0.01  # the bars are drawn in the file, not only in the figure


SENTENCES = ["the film was great", "dull", "a really quite boring movie is bad", "fun"]


def bert_and_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer, BertForSequenceClassification

    return (BertForSequenceClassification.from_pretrained(tiny_model_dir).eval(),
            AutoTokenizer.from_pretrained(tiny_model_dir))


def test_distances_average_every_real_token_or_the_first_and_ignore_padding(tiny_model_dir):
    """Batched with padding, the distances equal those computed one unpadded sentence at a time."""
    model, tokenizer = bert_and_tokenizer(tiny_model_dir)
    got = hidden_state_distances(model, tokenizer, SENTENCES, batch_size=4, max_seq_length=32)
    cos = {"mean": [], "cls": []}
    with torch.no_grad():
        for sentence in SENTENCES:
            states = model(**tokenizer(sentence, return_tensors="pt"), output_hidden_states=True).hidden_states
            states = torch.nn.functional.normalize(torch.stack(states)[:, 0], dim=-1)  # (L+1, T, H)
            pairwise = torch.einsum("lth,mth->lmt", states, states)
            cos["mean"].append(pairwise)
            cos["cls"].append(pairwise[..., :1])
    for pooling, parts in cos.items():
        every = torch.cat(parts, dim=-1).clamp(-1, 1)
        np.testing.assert_allclose(got[f"cos_{pooling}"], every.mean(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(got[f"angle_{pooling}"], (torch.arccos(every) / np.pi).mean(-1).numpy(), atol=1e-5)
    assert got["cos_mean"].shape == (3, 3)
    np.testing.assert_allclose(np.diag(got["cos_mean"]), 1, atol=1e-5)


def test_label_free_scores_read_neighbouring_states_and_every_block():
    cos = np.array([[1.0, 0.9, 0.5, 0.2], [0.9, 1.0, 0.8, 0.4], [0.5, 0.8, 1.0, 0.7], [0.2, 0.4, 0.7, 1.0]])
    angle = np.arccos(cos) / np.pi
    layers, blocks = label_free_scores({"cos_mean": cos, "angle_mean": angle, "cos_cls": cos, "angle_cls": angle})
    np.testing.assert_allclose(layers["block_influence_mean"], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(layers["angular_cls"], [angle[0, 1], angle[1, 2], angle[2, 3]])
    assert list(blocks.columns) == BLOCK_COLUMNS
    assert list(zip(blocks["start"], blocks["length"], strict=True)) == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]
    np.testing.assert_allclose(blocks["angular_mean"],
                               [angle[0, 1], angle[1, 2], angle[2, 3], angle[0, 2], angle[1, 3]])


def test_a_layer_that_changes_nothing_scores_lowest_and_its_block_is_closest():
    """A layer whose attention and feed-forward add nothing only re-normalizes its (normalized) input: both
    label-free estimators must single it out, under either pooling."""
    from prunequant.layer_choice import angular_blocks, layers_to_drop

    model = tiny_bert(4)
    with torch.no_grad():
        for dense in (model.bert.encoder.layer[2].attention.output.dense, model.bert.encoder.layer[2].output.dense):
            dense.weight.zero_()
            dense.bias.zero_()

    class Tokenizer:  # IDS as a tokenizer would give them
        def __call__(self, texts, **kwargs):
            return {"input_ids": IDS[: len(texts)], "attention_mask": torch.ones_like(IDS[: len(texts)])}

    layers, blocks = label_free_scores(
        hidden_state_distances(model, Tokenizer(), [0, 1], batch_size=2, max_seq_length=8))
    for pooling in ("mean", "cls"):
        assert importance_order(layers.assign(removal_order=0), "block-influence", pooling)[0] == 2
        assert layers[f"block_influence_{pooling}"][2] < 1e-4
        assert layers_to_drop("angular", 4, 3, blocks=angular_blocks(blocks, pooling)) == [2]


def test_measure_gives_ablation_the_label_free_scores_and_their_seconds_apart():
    model = tiny_bert(4)

    class Tokenizer:
        def __call__(self, texts, **kwargs):
            return {"input_ids": IDS[: len(texts)], "attention_mask": torch.ones_like(IDS[: len(texts)])}

    reference, table, blocks, seconds = measure(model, Tokenizer(), [0, 1], scorer(model), method="ablation",
                                                batch_size=2, max_seq_length=8)
    assert list(table.columns) == SENSITIVITY_COLUMNS + ESTIMATOR_COLUMNS  # no timings: prune reads this table
    assert importance_order(table) == [3, 1, 2, 0]  # ablation's ranking, untouched by the merge
    assert set(seconds) == {"ablation_seconds", "hidden_states_seconds"} and min(seconds.values()) > 0
    assert len(blocks) == 4 + 3 + 2  # blocks of 1, 2 and 3 of the 4 layers

"""Head and FFN neuron scores: each equals what it is defined as, computed another way, and a width cut keeps the
highest-scoring heads and neurons of the layers a depth cut kept."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from prunequant import importance
from prunequant.params.prune import parse_cut
from prunequant.pruning import drop_layers
from prunequant.width import cut_width

from .conftest import FILLER, NEGATIVE, POSITIVE, tiny_frame

TEXTS = tiny_frame(3)["text"].tolist()
LABELS = tiny_frame(3)["label"].to_numpy()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE,
                                                 *FILLER]) + "\n")
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))


def bert(layers: int = 3):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=30, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=24,
        max_position_embeddings=32, attn_implementation="eager")).eval()


def test_head_gradient_is_the_head_mask_gradient_per_sentence(tokenizer):
    """Michel et al.'s importance through transformers' own head_mask, one sentence at a time."""
    model = bert()
    expected = torch.zeros(3, 4)
    for text, label in zip(TEXTS, LABELS, strict=True):
        mask = torch.ones(3, 4, requires_grad=True)
        batch = tokenizer([text], return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(**batch, head_mask=mask).logits, torch.tensor([label]))
        expected += torch.autograd.grad(loss, mask)[0].abs()
    found = importance.gradient_scores(model, tokenizer, TEXTS, LABELS, batch_size=4, max_seq_length=16)
    torch.testing.assert_close(found["heads"], expected / len(TEXTS), rtol=1e-4, atol=1e-7)
    assert all(p.requires_grad for p in model.parameters())  # the weights are as they were


def test_ffn_gradient_is_activation_times_its_gradient_summed_per_sentence(tokenizer):
    """The first-order Taylor score: sum over tokens of a * dL/da, its absolute value per sentence."""
    model = bert()
    expected, kept = torch.zeros(3, 24), []
    for text, label in zip(TEXTS, LABELS, strict=True):
        kept.clear()
        hooks = [layer.intermediate.register_forward_hook(lambda m, i, out: kept.append(out) or out.retain_grad())
                 for layer in model.bert.encoder.layer]
        loss = torch.nn.functional.cross_entropy(model(**tokenizer([text], return_tensors="pt")).logits,
                                                 torch.tensor([label]))
        loss.backward()
        for hook in hooks:
            hook.remove()
        expected += torch.stack([(a * a.grad).sum(dim=(0, 1)).abs() for a in kept])
    found = importance.gradient_scores(model, tokenizer, TEXTS, LABELS, batch_size=5, max_seq_length=16)
    torch.testing.assert_close(found["ffn"], expected / len(TEXTS), rtol=1e-4, atol=1e-7)


def test_activation_scores_are_the_norm_each_head_and_neuron_adds(tokenizer):
    model = bert()
    heads, ffn, tokens, kept = torch.zeros(3, 4), torch.zeros(3, 24), 0, {}
    for text in TEXTS:
        hooks = [layer.attention.output.dense.register_forward_pre_hook(
            lambda m, args, i=i: kept.__setitem__(("heads", i), args[0])) for i, layer in
            enumerate(model.bert.encoder.layer)]
        hooks += [layer.output.dense.register_forward_pre_hook(
            lambda m, args, i=i: kept.__setitem__(("ffn", i), args[0])) for i, layer in
            enumerate(model.bert.encoder.layer)]
        with torch.no_grad():
            model(**tokenizer([text], return_tensors="pt"))
        for hook in hooks:
            hook.remove()
        for i, layer in enumerate(model.bert.encoder.layer):
            weight = layer.attention.output.dense.weight  # (32, 4 heads x 8)
            for h in range(4):
                part = kept[("heads", i)][0][:, 8 * h : 8 * h + 8] @ weight[:, 8 * h : 8 * h + 8].T
                heads[i, h] += part.norm(dim=-1).sum()
            down = layer.output.dense.weight  # (32, 24)
            ffn[i] += (kept[("ffn", i)][0].abs() * down.norm(dim=0)).sum(0)
        tokens += kept[("ffn", 0)].shape[1]
    found = importance.activation_scores(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
    torch.testing.assert_close(found["heads"], heads / tokens, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(found["ffn"], ffn / tokens, rtol=1e-4, atol=1e-6)


def test_a_width_cut_keeps_the_top_scoring_heads_and_neurons_of_the_kept_layers():
    model = drop_layers(bert(), [1])  # keeps layers 0 and 2 of 3
    heads = torch.tensor([[4.0, 3, 2, 1], [0, 0, 0, 0], [1, 2, 3, 4]])
    ffn = torch.arange(72, dtype=torch.float32).reshape(3, 24)
    ffn[2] = -ffn[2]  # layer 2 keeps its lowest-index neurons
    scores = {"heads.activation": heads, "ffn.activation": ffn, "heads.gradient": -heads, "ffn.gradient": -ffn}
    cut = cut_width(model, scores, parse_cut("2-h50-f25"), "activation")
    assert cut.config.pruned_heads == {0: [2, 3], 1: [0, 1]}
    assert cut.config.intermediate_size == 6
    layers = cut.bert.encoder.layer
    torch.testing.assert_close(layers[0].intermediate.dense.weight, model.bert.encoder.layer[0].intermediate.dense
                               .weight[18:])
    torch.testing.assert_close(layers[1].intermediate.dense.weight, model.bert.encoder.layer[1].intermediate.dense
                               .weight[:6])
    assert cut_width(model, scores, parse_cut("2-h50"), "gradient").config.pruned_heads == {0: [0, 1], 1: [2, 3]}


@pytest.mark.parametrize(("total", "pct", "multiple", "kept"), [
    (12, 50, 1, 6), (12, 1, 1, 1), (16, 33, 1, 5), (1536, 50, 64, 768), (1536, 30, 64, 448), (3072, 1, 64, 64),
    (100, 50, 64, 50),  # not a multiple of 64 itself: to the neuron
])
def test_a_cut_keeps_a_rounded_count(total, pct, multiple, kept):
    assert parse_cut("3-w50").kept(total, pct, multiple) == kept


def test_tables_summarise_the_scores(tokenizer, tmp_path):
    scores, seconds = importance.measure(bert(), tokenizer, TEXTS, LABELS, batch_size=4, max_seq_length=16)
    assert set(scores) == {"heads.gradient", "heads.activation", "ffn.gradient", "ffn.activation"}
    assert set(seconds) == {"gradient_seconds", "activation_seconds"}
    heads = importance.head_table(scores)
    assert len(heads) == 12 and (heads.groupby("layer").gradient_rank.apply(sorted) == [[0, 1, 2, 3]] * 3).all()
    ffn = importance.ffn_table(scores)
    assert list(ffn.layer) == [0, 1, 2] and (ffn.neurons == 24).all()
    assert ((ffn.gradient_top25 >= 0.25) & (ffn.gradient_top50 >= ffn.gradient_top25)
            & (ffn.gradient_top50 <= 1)).all()
    assert np.isfinite(ffn.spearman).all()


@pytest.mark.parametrize(("entry", "layers", "heads_left", "ffn"), [("2-w50", 2, 1, 18), ("1-f25", 1, 2, 9)])
def test_the_prune_stage_cuts_width_at_full_depth_and_below(tmp_path, tiny_model_dir, entry, layers, heads_left,
                                                            ffn):
    """The tiny model has 2 layers of 2 heads and 37 FFN neurons; 2-w50 keeps every layer (none dropped)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from .conftest import invoke_stage, write_params

    write_params(tmp_path / "params.yaml")
    save_file({"heads.gradient": torch.rand(2, 2), "ffn.gradient": torch.rand(2, 37)}, tmp_path / "scores.safetensors")
    args = ["--model", str(tiny_model_dir), "--sensitivity", "none.csv", "--blocks", "none.csv",
               "--scores", "scores.safetensors", "--keep-layers", entry, "--out", "pruned"]
    result = invoke_stage(tmp_path, "prune", *args)
    assert result.exit_code == 0, result.output
    config = AutoConfig.from_pretrained(tmp_path / "pruned")
    assert config.num_hidden_layers == layers and config.intermediate_size == ffn
    assert all(2 - len(config.pruned_heads.get(i, [])) == heads_left for i in range(layers))

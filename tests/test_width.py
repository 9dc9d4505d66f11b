"""Width pruning: heads and FFN neurons physically removed, the model computing what the masked one did, and the
saved folder reloading with plain from_pretrained."""

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from prunequant.errors import PrunequantError
from prunequant.width import keep_ffn_neurons, prune_heads

SMALL = dict(vocab_size=50, hidden_size=32, num_attention_heads=4, intermediate_size=37, max_position_embeddings=32)
INPUTS = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(0))


def bert(attention: str = "sdpa"):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_hidden_layers=2, **SMALL, attn_implementation=attention)).eval()


def test_pruned_heads_compute_what_masked_heads_did_and_the_folder_reloads(tmp_path):
    model = bert("eager")  # the head mask needs eager attention
    mask = torch.ones(2, 4)
    mask[0, [1, 2]] = 0
    mask[1, 0] = 0
    with torch.no_grad():
        masked = model(INPUTS, head_mask=mask).logits
        pruned = prune_heads(model, {0: [1, 2], 1: [0]})
        torch.testing.assert_close(pruned(INPUTS).logits, masked, rtol=1e-5, atol=1e-6)
    assert pruned.bert.encoder.layer[0].attention.self.query.weight.shape == (16, 32)  # 2 of 4 heads of 8
    assert model.bert.encoder.layer[0].attention.self.query.weight.shape == (32, 32)  # the source is untouched
    pruned.save_pretrained(tmp_path)
    with torch.no_grad():
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(reloaded(INPUTS).logits, masked, rtol=1e-5, atol=1e-6)


UP = {"bert": "bert.encoder.layer.{}.intermediate.dense", "distilbert": "distilbert.transformer.layer.{}.ffn.lin1"}


def up(model, family: str, layer: int):
    return model.get_submodule(UP[family].format(layer))


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_removed_ffn_neurons_compute_what_zeroed_ones_did_and_the_folder_reloads(tmp_path, family):
    torch.manual_seed(0)
    model = bert() if family == "bert" else DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=50, dim=32, n_heads=4, hidden_dim=37, n_layers=2, max_position_embeddings=32)).eval()
    width = 37
    keep = {0: list(range(0, 36, 2)), 1: list(range(1, 37, 2))}  # 18 of 37 in each layer, a different 18
    zeroed = AutoModelForSequenceClassification.from_config(model.config).eval()
    zeroed.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, kept in keep.items():  # a neuron whose input weights and bias are 0 outputs GELU(0) = 0
            gone = [n for n in range(width) if n not in kept]
            up(zeroed, family, layer).weight[gone] = 0
            up(zeroed, family, layer).bias[gone] = 0
        pruned = keep_ffn_neurons(model, keep)
        torch.testing.assert_close(pruned(INPUTS).logits, zeroed(INPUTS).logits, rtol=1e-5, atol=1e-6)
    assert up(pruned, family, 1).weight.shape == (18, 32) and up(model, family, 1).weight.shape == (37, 32)
    pruned.save_pretrained(tmp_path)
    with torch.no_grad():
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(reloaded(INPUTS).logits, pruned(INPUTS).logits)
    assert sum(p.numel() for p in reloaded.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: prune_heads(m, {0: [0, 1, 2, 3]}), "keep at least one"),
    (lambda m: prune_heads(m, {5: [0]}), "layer 5 is not a layer of this model"),
    (lambda m: keep_ffn_neurons(m, {0: [0, 1], 1: [0]}), "every layer must keep the same number of neurons"),
    (lambda m: keep_ffn_neurons(m, {0: [0]}), "for each of the 2 layers"),
    (lambda m: keep_ffn_neurons(m, {0: [0], 1: [40]}), "neuron indices must be 0..36"),
])
def test_bad_width_cuts_are_one_line_errors(call, message):
    with pytest.raises(PrunequantError, match=message) as info:
        call(bert())
    assert "\n" not in info.value.format_message()


def test_a_family_without_head_pruning_is_refused_in_one_line():
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    model = DebertaV2ForSequenceClassification(DebertaV2Config(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37))
    with pytest.raises(PrunequantError, match="n/a: width pruning has no layout for model type 'deberta-v2'"):
        prune_heads(model, {0: [1]})

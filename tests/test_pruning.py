import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from prunequant.errors import PrunequantError
from prunequant.layer_choice import layers_to_drop
from prunequant.pruning import drop_layers, layer_count, layers_skipped

SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=37, max_position_embeddings=64, vocab_size=50)


def tiny_bert(layers=4):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(num_hidden_layers=layers, **SMALL)).eval()


def encoder_params(model):
    return sum(p.numel() for p in model.bert.encoder.parameters())


IDS = torch.tensor([[2, 7, 9, 11, 3], [2, 5, 6, 8, 3]])


def test_drop_layers_removes_them_physically():
    model = tiny_bert(6)
    pruned = drop_layers(model, [1, 4])
    assert layer_count(pruned) == 4 and pruned.config.num_hidden_layers == 4
    assert pruned.config.pruned_from_layers == [0, 2, 3, 5]
    assert encoder_params(pruned) == pytest.approx(encoder_params(model) * 4 / 6)
    assert layer_count(model) == 6  # the original is untouched


def test_pruned_output_equals_running_the_kept_layers_by_hand():
    model = tiny_bert(4)
    pruned = drop_layers(model, [0, 2])
    with torch.no_grad():
        hidden = model.bert.embeddings(input_ids=IDS)
        for i in (1, 3):
            hidden = model.bert.encoder.layer[i](hidden)[0]
        by_hand = model.classifier(model.bert.pooler(hidden))
        torch.testing.assert_close(pruned(input_ids=IDS).logits, by_hand)
        with layers_skipped(model, [0, 2]):
            torch.testing.assert_close(model(input_ids=IDS).logits, by_hand)
    assert layer_count(model) == 4 and model.config.num_hidden_layers == 4  # restored


def test_pruned_model_round_trips_with_plain_from_pretrained(tmp_path):
    pruned = drop_layers(tiny_bert(4), [3])
    pruned.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert layer_count(again) == 3 and again.config.pruned_from_layers == [0, 1, 2]
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=IDS).logits, pruned(input_ids=IDS).logits)
    # A second cut composes with the first.
    assert drop_layers(again, [0]).config.pruned_from_layers == [1, 2]


@pytest.mark.parametrize(
    "model",
    [
        RobertaForSequenceClassification(RobertaConfig(num_hidden_layers=3, pad_token_id=1, **SMALL)),
        DistilBertForSequenceClassification(
            DistilBertConfig(n_layers=3, dim=32, n_heads=2, hidden_dim=37, vocab_size=50, max_position_embeddings=64)
        ),
    ],
    ids=["roberta", "distilbert"],
)
def test_other_encoders_through_the_adapter_table(model):
    pruned = drop_layers(model.eval(), [1])
    assert layer_count(pruned) == 2
    with torch.no_grad():
        assert pruned(input_ids=IDS).logits.shape == (2, 2)


def test_model_without_a_known_layer_list():
    gpt2 = GPT2ForSequenceClassification(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(PrunequantError, match="model type 'gpt2' has no known list of layers"):
        drop_layers(gpt2, [0])


@pytest.mark.parametrize(
    ("strategy", "keep", "expected"),
    [
        ("top", 4, [4, 5]),
        ("bottom", 4, [0, 1]),
        ("alternate", 4, [1, 4]),
        ("alternate", 3, [1, 3, 4]),
        ("sensitivity", 4, [2, 5]),
        ("top", 8, None),
    ],
)
def test_strategies_pick_layers(strategy, keep, expected):
    total = 12 if keep == 8 else 6
    got = layers_to_drop(strategy, total, keep, importance_order=[5, 2, 0, 1, 3, 4])
    assert got == (expected if expected is not None else [8, 9, 10, 11])


def test_angular_drops_the_closest_block_of_the_needed_length():
    import pandas as pd

    blocks = pd.DataFrame({"start": [0, 1, 2, 0, 1], "length": [1, 1, 1, 2, 2],
                           "distance": [0.30, 0.10, 0.20, 0.25, 0.35]})
    assert layers_to_drop("angular", 3, 2, blocks=blocks) == [1]
    assert layers_to_drop("angular", 3, 1, blocks=blocks) == [0, 1]  # not the pair with the smallest singles
    tied = blocks.assign(distance=[0.1, 0.1, 0.1, 0.2, 0.2])
    assert layers_to_drop("angular", 3, 2, blocks=tied) == [0]  # the earliest on a tie
    with pytest.raises(PrunequantError, match="no block of 2 layers"):
        layers_to_drop("angular", 4, 2, blocks=blocks[blocks["length"] == 1])


def test_block_influence_order_puts_the_smallest_change_first_and_later_layers_on_a_tie():
    import pandas as pd

    from prunequant.layer_choice import importance_order

    table = pd.DataFrame({"layer": [0, 1, 2, 3], "removal_order": [3, 0, 1, 2],
                          "block_influence_cls": [0.5, 0.1, 0.3, 0.1], "block_influence_mean": [0.1, 0.2, 0.3, 0.4]})
    assert importance_order(table, "block-influence", "cls") == [3, 1, 2, 0]
    assert importance_order(table, "block-influence", "mean") == [0, 1, 2, 3]
    assert importance_order(table) == [1, 2, 3, 0]  # sensitivity: ablation's ranking
    with pytest.raises(PrunequantError, match="no block_influence_cls column"):
        importance_order(table[["layer", "removal_order"]], "block-influence", "cls")


def test_alternate_spreads_a_12_to_8_cut():
    assert layers_to_drop("alternate", 12, 8) == [1, 4, 7, 10]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(strategy="top", keep=0), "keep_layers is 0 but must be between 1 and 5"),
        (dict(strategy="top", keep=6), "keep_layers is 6 but must be between 1 and 5"),
        (dict(strategy="explicit", keep=None, explicit=[1, 1]), "lists a layer twice"),
        (dict(strategy="explicit", keep=None, explicit=[7]), "has [7], outside 0..5"),
        (dict(strategy="explicit", keep=None, explicit=list(range(6))), "drops all 6 layers"),
        (dict(strategy="sensitivity", keep=4), "run `dvc repro sensitivity`"),
        (dict(strategy="block-influence", keep=4), "run `dvc repro sensitivity`"),
        (dict(strategy="angular", keep=4), "needs metrics/sensitivity-blocks.csv"),
    ],
)
def test_bad_prune_requests(kwargs, expected):
    strategy, keep = kwargs.pop("strategy"), kwargs.pop("keep")
    with pytest.raises(PrunequantError) as info:
        layers_to_drop(strategy, 6, keep, **kwargs)
    assert expected in info.value.format_message()

import pytest
from transformers import AutoModelForSequenceClassification

from prunequant.errors import PrunequantError
from prunequant.modeling import (
    check_max_seq_length,
    load_classifier,
    load_tokenizer,
    num_layers,
    resolve_model,
    save_classifier,
)


def test_alias_loads_the_packaged_model_offline():
    """'minilm-l6' (the offline default) is all-MiniLM-L6-v2 from its package: a 6-layer BERT, hidden size 384,
    22.7 M encoder parameters, with its own tokenizer; Hub names and local folders pass through unchanged."""
    model = load_classifier("minilm-l6", label_names=("negative", "positive"))
    assert (model.config.model_type, num_layers(model), model.config.hidden_size) == ("bert", 6, 384)
    assert sum(p.numel() for p in model.base_model.parameters()) == pytest.approx(22.7e6, rel=0.01)
    folder = resolve_model("minilm-l6")
    assert resolve_model(folder) == folder and resolve_model("bert-base-uncased") == "bert-base-uncased"
    tokenizer = load_tokenizer("minilm-l6")
    assert tokenizer("a fine film")["input_ids"][0] == tokenizer.cls_token_id


def test_local_folder_loads_with_named_labels(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir), label_names=("negative", "positive"))
    assert num_layers(model) == 2
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_a_task_with_more_classes_gets_its_own_head_which_later_loads_keep(tiny_model_dir, tmp_path):
    """A saved 2-class classifier fine-tuned for three classes: a new 3-way head; the saved 3-class model then
    loads with that head (every stage after finetune loads without label names)."""
    import torch

    model = load_classifier(str(tiny_model_dir), label_names=("neg", "neutral", "pos"))
    assert model.classifier.out_features == 3 and model.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    save_classifier(model, load_tokenizer(str(tiny_model_dir)), tmp_path / "three")
    again = load_classifier(str(tmp_path / "three"))
    assert again.config.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    assert torch.equal(again.classifier.weight, model.classifier.weight)


def test_save_round_trip_is_plain_from_pretrained(tiny_model_dir, tmp_path):
    model = load_classifier(str(tiny_model_dir))
    save_classifier(model, load_tokenizer(str(tiny_model_dir)), tmp_path / "out")
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert num_layers(again) == 2


def test_hub_model_offline_is_one_line_error():
    with pytest.raises(PrunequantError) as info:
        load_tokenizer("bert-base-uncased")
    message = info.value.format_message()
    assert message.startswith("base.model: could not load 'bert-base-uncased'") and "minilm-l6" in message
    assert "\n" not in message


def test_typo_in_alias_suggests_it():
    with pytest.raises(PrunequantError, match="did you mean 'minilm-l6'"):
        resolve_model("minilm-l7")


def test_folder_without_tokenizer_names_the_folder(tiny_model_dir, tmp_path):
    model = load_classifier(str(tiny_model_dir))
    model.save_pretrained(tmp_path / "weights-only")
    with pytest.raises(PrunequantError, match="weights-only: no tokenizer files"):
        load_tokenizer(str(tmp_path / "weights-only"))


def test_max_seq_length_beyond_position_embeddings(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir))
    check_max_seq_length(model, 64)
    with pytest.raises(PrunequantError, match="base.max_seq_length <= 64"):
        check_max_seq_length(model, 65)

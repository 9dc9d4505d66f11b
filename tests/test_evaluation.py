import numpy as np
import pandas as pd
import pytest

from prunequant.errors import PrunequantError
from prunequant.evaluation import (
    accuracy_ci,
    macro_f1,
    paired_test,
    predict_logits,
    predictions_frame,
)
from prunequant.modeling import load_classifier, load_tokenizer
from prunequant.splits import forward_inputs

from .conftest import tiny_frame


def test_wilson_interval_matches_the_textbook_value():
    # 81 of 100: Wilson 95% interval is [0.7222, 0.8749] (Newcombe 1998 formula).
    result = accuracy_ci(np.array([1] * 81 + [0] * 19))
    assert result["n"] == 100 and result["accuracy"] == 0.81
    assert result["accuracy_ci_low"] == pytest.approx(0.7222, abs=1e-4)
    assert result["accuracy_ci_high"] == pytest.approx(0.8749, abs=1e-4)


def test_interval_narrows_with_n_and_level():
    small = accuracy_ci(np.array([1, 0] * 50))
    large = accuracy_ci(np.array([1, 0] * 500))
    loose = accuracy_ci(np.array([1, 0] * 50), confidence_level=0.8)

    def width(r):
        return r["accuracy_ci_high"] - r["accuracy_ci_low"]

    assert width(large) < width(small) and width(loose) < width(small)


def test_predictions_are_in_order_and_batch_independent(tiny_model_dir):
    model = load_classifier(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    frame = tiny_frame(5).reset_index(names="idx")
    texts = frame["text"].tolist()
    by_one = predict_logits(model, tokenizer, texts, batch_size=1, max_seq_length=16)
    by_four = predict_logits(model, tokenizer, texts, batch_size=4, max_seq_length=16)
    np.testing.assert_allclose(by_one, by_four, atol=1e-5)  # padding must not change results
    table = predictions_frame("test", frame, by_four)
    assert list(table.columns) == ["split", "idx", "label", "prediction", "score"]
    assert (table["prediction"] == by_four.argmax(axis=1)).all()
    probabilities = np.exp(by_four) / np.exp(by_four).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(table["score"], probabilities.max(axis=1), rtol=1e-5)  # of the predicted class
    named = predictions_frame("test", frame, by_four, ("bad", "good"))
    assert named["label_name"].tolist() == [("bad", "good")[i] for i in frame["label"]]
    assert named["prediction_name"].tolist() == [("bad", "good")[i] for i in table["prediction"]]


def test_batches_group_sentences_of_similar_length_and_logits_come_back_in_order(tiny_model_dir):
    """Little compute goes to padding: sentences are batched by length, and each logit row is still its own."""
    import torch

    tokenizer = load_tokenizer(str(tiny_model_dir))
    texts = ["good " * n for n in (9, 1, 7, 2, 8, 1, 6, 3)]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    shapes = []

    class LengthModel(torch.nn.Module):  # logits: (the sentence's own length, 0)
        def forward(self, input_ids, attention_mask):
            shapes.append(tuple(input_ids.shape))
            return type("Out", (), {"logits": torch.stack([attention_mask.sum(1).float(),
                                                           torch.zeros(len(input_ids))], 1)})

    logits = predict_logits(LengthModel(), tokenizer, texts, batch_size=4, max_seq_length=32)
    assert logits[:, 0].tolist() == lengths
    assert shapes == [(4, sorted(lengths)[3]), (4, max(lengths))]  # the four shortest, then the four longest


def test_macro_f1_weighs_each_class_alike():
    labels, predicted = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    # per class F1 = 2 TP / (predicted + actual): 2/4, 4/5, 2/3
    assert macro_f1(labels, predicted, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert macro_f1(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), 2) == pytest.approx((6 / 7 + 0) / 2)


def test_models_get_only_the_inputs_their_forward_takes(tiny_model_dir):
    """A BERT tokenizer makes token_type_ids; DistilBERT's forward does not take them (a TypeError before)."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = load_tokenizer(str(tiny_model_dir))
    batch = tokenizer(["the film was great"], return_tensors="pt")
    model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=40, dim=16, n_layers=1, n_heads=2,
                                                                 hidden_dim=20, max_position_embeddings=32))
    assert "token_type_ids" in batch and set(forward_inputs(model, batch)) == {"input_ids", "attention_mask"}
    bert = load_classifier(str(tiny_model_dir))
    assert set(forward_inputs(bert, batch)) == {"input_ids", "attention_mask", "token_type_ids"}
    logits = predict_logits(model, tokenizer, ["the film was great", "dull"], batch_size=2, max_seq_length=8)
    assert logits.shape == (2, 2)


def predictions(correct):
    return pd.DataFrame({"idx": range(len(correct)), "label": 1, "prediction": correct})


def test_paired_test_counts_discordant_pairs_only():
    reference = predictions([1] * 90 + [0] * 10)
    same_errors_elsewhere = predictions([0] * 5 + [1] * 85 + [0] * 5 + [1] * 5)  # 5 vs 5 discordant
    result = paired_test(reference, same_errors_elsewhere)
    assert result["accuracy_delta"] == 0 and result["mcnemar_p"] == 1.0
    assert result["verdict"] == "no significant difference"
    worse = predictions([0] * 15 + [1] * 75 + [0] * 10)  # 15 lost, none won: exact p = 2 * 0.5**15
    result = paired_test(reference, worse)
    assert result["mcnemar_p"] == pytest.approx(2 * 0.5**15) and result["verdict"] == "worse"
    assert result["only_reference_correct"] == 15 and result["only_variant_correct"] == 0


def test_paired_test_refuses_misaligned_predictions():
    with pytest.raises(PrunequantError, match="other examples"):
        paired_test(predictions([1, 0]), predictions([1, 0]).assign(idx=[5, 6]))


def test_paired_command_compares_two_runs_predictions(tmp_path):
    """`python -m prunequant.paired A B`: how the README compares bf16- with FP32-trained models."""
    import json
    import subprocess
    import sys

    reference, variant = tmp_path / "fp32", tmp_path / "bf16"
    for folder, correct in ((reference, [1] * 90 + [0] * 10), (variant, [0] * 15 + [1] * 75 + [0] * 10)):
        folder.mkdir()
        for split in ("validation", "test"):
            predictions(correct).to_parquet(folder / f"{split}.parquet")
    result = subprocess.run([sys.executable, "-m", "prunequant.paired", str(reference), str(variant),
                             "--out", str(tmp_path / "out.json")], capture_output=True, text=True, check=True)
    assert "test: 90.00 -> 75.00 (-15.00 pts, McNemar p=6.1e-05: worse; n=100)" in result.stdout
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["test"]["variant"]["accuracy"] == 0.75 and saved["test"]["only_reference_correct"] == 15

"""Shared fixtures: a tiny random BERT classifier with its tokenizer, and a tiny polarity data set."""

from __future__ import annotations

import os

import pandas as pd
import pytest

# Never wait for a hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["great", "good", "moving", "superb", "fun", "charming"]
NEGATIVE = ["awful", "bad", "dull", "boring", "weak", "tedious"]
FILLER = ["the", "movie", "film", "was", "plot", "acting", "is", "a", "really", "quite"]


def tiny_frame(rows_per_label: int = 40) -> pd.DataFrame:
    """A balanced, learnable data set: the sentiment word decides the label."""
    rows = []
    for i in range(rows_per_label):
        for label, words in ((1, POSITIVE), (0, NEGATIVE)):
            word = words[i % len(words)]
            rows.append({"text": f"the {FILLER[i % len(FILLER)]} was {word}", "label": label})
    return pd.DataFrame(rows)


@pytest.fixture
def frame() -> pd.DataFrame:
    return tiny_frame()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved 2-layer random BertForSequenceClassification (safetensors + tokenizer)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, set_seed

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    set_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A 2-layer random BERT classifier large enough for quantization to show (hidden 64, vocab 512)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, set_seed

    folder = tmp_path_factory.mktemp("small-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    vocab += [f"word{i}" for i in range(512 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    set_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

"""Shared fixtures: a tiny random BERT classifier with its tokenizer, and a tiny polarity data set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


REPO = Path(__file__).resolve().parents[1]
DVC_FILES = ("dvc.yaml", "strategies/dvc.yaml", "bench/dvc.yaml", "machine/dvc.yaml")  # every pipeline file
STAGE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PRUNEQUANT_DEBUG": "0"}


def run_stage_in(workspace: Path, name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run stages/<name>.py as DVC would, from ``workspace`` (its params.yaml unless --params is given)."""
    return subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd=workspace,
                          capture_output=True, text=True, env=STAGE_ENV, timeout=600, **kwargs)


def make_workspace(root: Path, model_dir: Path, params: dict) -> Path:
    """A folder to run stages in: the model as ./tiny, 80 sentences as ./data.csv, the given params.yaml."""
    import shutil

    import yaml

    shutil.copytree(model_dir, root / "tiny")
    tiny_frame(40).to_csv(root / "data.csv", index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


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


def by_family(*names: str) -> dict[str, list[str]]:
    """``quantize.schemes`` listing just ``names``, each under its family (every family present)."""
    from prunequant.quantization import FAMILIES, SCHEME_FAMILY

    return {family: [n for n in names if SCHEME_FAMILY[n] == family] for family in FAMILIES}

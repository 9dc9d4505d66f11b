"""End to end, as a user with their own model and data: a local DistilBERT encoder folder (whose tokenizer makes
token_type_ids that DistilBERT does not take) and a CSV of sentence pairs in three classes with text labels, through
`dvc repro`."""

import json
import shutil

import pandas as pd
import pytest

from .conftest import by_family, declare_shared_build, shared_build
from .test_families import _tiny_model
from .test_pipeline import IGNORE, MACHINE, REPO, ran_stages, set_params, sh

pytestmark = pytest.mark.e2e

WORDS = {"pos": ["great", "good", "superb"], "neg": ["awful", "bad", "dull"], "neutral": ["the", "a", "was"]}
FILLER = ["movie", "film", "plot"]


def three_class_pairs_csv(path, rows_per_class=30):
    """Only the second sentence tells the class (the first is filler): a pipeline that lost the pair anywhere
    would score at chance."""
    rows = [{"review": f"the {FILLER[i % 3]} was", "verdict": f"{WORDS[label][i % 3]} {WORDS[label][(i + 1) % 3]}",
             "sentiment": label} for i in range(rows_per_class) for label in WORDS]
    pd.DataFrame(rows).to_csv(path, index=False)


def _reproduce_own(root):
    repo = root / "prunequant"
    shutil.copytree(REPO, repo, ignore=IGNORE)
    for path in ("metrics", "reports"):
        shutil.rmtree(repo / path, ignore_errors=True)
    (repo / "metrics" / "bench").mkdir(parents=True)
    _tiny_model("distilbert", repo / "tiny-distilbert", head=False)  # a new 3-class head is added
    three_class_pairs_csv(repo / "reviews.csv")
    sh("git", "init", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=repo)  # DVCLive needs one
    set_params(
        repo,
        base={"model": "tiny-distilbert", "data": "reviews.csv", "max_seq_length": 16},
        prepare={"text_column": "review", "text_pair_column": "verdict", "label_column": "sentiment"},
        finetune={"epochs": 10, "learning_rate": 3.0e-3, "batch_size": 16, "logging_steps": 2, "warmup_ratio": 0.0},
        prune={"keep_layers": [1]},
        refinetune={"epochs": 4, "learning_rate": 3.0e-3, "batch_size": 16, "logging_steps": 2, "warmup_ratio": 0.0,
                    "hidden_weight": 1.0, "transfer": None},  # a transfer set is single sentences; these are pairs
        quantize={"schemes": by_family("int8-dynamic", "onnx-int8-static")},
    )
    result = sh("dvc", "repro", cwd=repo)
    assert ran_stages(result.stdout) == sorted([
        "evaluate", "evaluate-pruned@1", "finetune", MACHINE, "prepare", "prune@1",
        "quantize-onnx-pruned@1-onnx-int8-static",
        "quantize-onnx@baseline-onnx-int8-static", "quantize-torch-pruned@1-int8-dynamic",
        "quantize-torch@baseline-int8-dynamic", "refinetune@1", "report", "results", "sensitivity", "transfer"])


declare_shared_build("own", "own", _reproduce_own)


@pytest.fixture(scope="session")
def own(tmp_path_factory):
    """The repository reproduced once on the DistilBERT and the pair CSV (read-only for the tests)."""
    return shared_build(tmp_path_factory, "own", _reproduce_own) / "prunequant"


def test_labels_keep_their_names_everywhere(own):
    info = json.loads((own / "data" / "prepared" / "info.json").read_text())
    assert info["label_names"] == ["neg", "neutral", "pos"] and info["sentence_pairs"] is True
    for model in ("baseline", "pruned-1"):
        config = json.loads((own / "models" / model / "config.json").read_text())
        assert config["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"} and config["model_type"] == "distilbert"
    predictions = pd.read_parquet(own / "predictions" / "pruned-1-onnx-int8-static" / "test.parquet")
    names = ("neg", "neutral", "pos")
    assert [names[i] for i in predictions["label"]] == predictions["label_name"].tolist()
    assert [names[i] for i in predictions["prediction"]] == predictions["prediction_name"].tolist()
    assert predictions["score"].between(1 / 3, 1).all()  # the probability of the predicted class of three
    card = (own / "models" / "quantized" / "pruned-1-int8-dynamic" / "README.md").read_text()
    assert "Classes by output index: 0 `neg`, 1 `neutral`, 2 `pos`." in card


def test_every_row_is_scored_with_macro_f1(own):
    results = pd.read_csv(own / "metrics" / "results.csv")
    assert sorted(set(zip(results.variant, results.precision, strict=True))) == [
        ("baseline", "fp32"), ("baseline", "int8-dynamic"), ("baseline", "onnx-int8-static"),
        ("pruned-1", "fp32"), ("pruned-1", "int8-dynamic"), ("pruned-1", "onnx-int8-static")]
    assert (results["status"] == "ok").all() and results["macro_f1"].between(0, 1).all()
    test = results[results.split == "test"].set_index(["variant", "precision"])["accuracy"]
    # three classes: chance is 1/3, and only the second sentence of each pair tells the class, so every stage that
    # tokenizes (training, scoring, ONNX calibration) saw the pairs
    assert test["baseline", "fp32"] > 0.6 and test["pruned-1", "fp32"] > 0.6
    assert test["pruned-1", "onnx-int8-static"] > 0.6
    assert "| pruned-1" in (own / "reports" / "report.md").read_text()

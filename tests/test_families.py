"""The architecture matrix: each encoder family of the pruning adapter table, as a tiny random classifier, through
the pipeline's steps in-process: fine-tune -> sensitivity (every method) -> prune -> re-finetune distilled with
hidden-state matching -> the CPU schemes that cover every CPU runtime (PyTorch eager with torch.ao INT8, ONNX
Runtime with a calibrated export) -> scoring with the paired test -> a short CPU timing of each artifact.

Every family gets the same local WordPiece tokenizer, which makes ``token_type_ids``: DistilBERT and ModernBERT
do not take them, so this also checks that no step passes them where they are not accepted. The DVC end to end
run of a non-BERT family is in test_pipeline.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from transformers import set_seed

from prunequant.benchmarking.runner import run_job
from prunequant.benchmarking.targets import Job, Target
from prunequant.data import make_splits
from prunequant.evaluation import predict_logits, score_splits
from prunequant.layer_choice import importance_order, layers_to_drop
from prunequant.modeling import load_classifier, load_tokenizer, num_layers, save_classifier
from prunequant.pruning import LAYER_LISTS, drop_layers, layer_count
from prunequant.quantization import BuildContext, build_artifact, get_scheme, load_artifact, write_manifest
from prunequant.sensitivity import METHODS, hidden_state_distances
from prunequant.splits import load_split, save_splits
from prunequant.training.trainer import finetune

from .conftest import FILLER, NEGATIVE, POSITIVE, config, settings_of, tiny_frame

# One worker runs the whole module: its module fixture is built once.
pytestmark = pytest.mark.xdist_group("families")

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}


def _configs(vocab_size: int) -> dict:
    """model_type -> (model class, config): 2 layers, hidden 32, the special token ids of the shared vocabulary."""
    import transformers as t

    ids = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    return {
        "bert": (t.BertForSequenceClassification, t.BertConfig(vocab_size=vocab_size, max_position_embeddings=64,
                                                                **SMALL)),
        "roberta": (t.RobertaForSequenceClassification, t.RobertaConfig(
            vocab_size=vocab_size, max_position_embeddings=66, **SMALL, **ids)),
        "xlm-roberta": (t.XLMRobertaForSequenceClassification, t.XLMRobertaConfig(
            vocab_size=vocab_size, max_position_embeddings=66, **SMALL, **ids)),
        "electra": (t.ElectraForSequenceClassification, t.ElectraConfig(
            vocab_size=vocab_size, embedding_size=16, max_position_embeddings=64, **SMALL)),
        "distilbert": (t.DistilBertForSequenceClassification, t.DistilBertConfig(
            vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64)),
        # DeBERTa-v3's attention: relative positions, both disentangled terms, no absolute position input
        "deberta-v2": (t.DebertaV2ForSequenceClassification, t.DebertaV2Config(
            vocab_size=vocab_size, max_position_embeddings=64, relative_attention=True, pos_att_type=["p2c", "c2p"],
            position_buckets=16, norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False,
            **SMALL)),
        "modernbert": (t.ModernBertForSequenceClassification, t.ModernBertConfig(
            vocab_size=vocab_size, max_position_embeddings=64, global_attn_every_n_layers=2, local_attention=16,
            cls_token_id=2, sep_token_id=3, **SMALL, **ids)),
    }


def test_the_matrix_covers_the_adapter_table():
    assert set(_configs(50)) == set(LAYER_LISTS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("families-data")
    splits, names = make_splits({"train": tiny_frame(40)}, None, config("prepare"), 0)
    save_splits(splits, names, root / "prepared")
    return root / "prepared"


def _tiny_model(model_type: str, folder, head: bool = True):
    """A random classifier of ``model_type`` (``head=False``: the bare encoder, as a pretrained checkpoint is)."""
    from transformers import AutoModel, BertTokenizerFast, set_seed

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    set_seed(0)
    model_class, config = _configs(len(vocab))[model_type]
    (model_class(config) if head else AutoModel.from_config(config)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# Batches at random: the tiny data set's lengths give its labels away (conftest.tiny_frame).
TRAIN = config("finetune", epochs=10, learning_rate=3e-3, batch_size=16, warmup_ratio=0.0, logging_steps=4,
               checkpoint_steps=0, precision="fp32", group_by_length=False)
RETRAIN = config("refinetune", **{**dataclasses.asdict(TRAIN), "epochs": 10}, hidden_weight=1.0)
SCHEMES = ("int8-dynamic", "onnx-int8-static")  # the two CPU runtimes: PyTorch eager (torch.ao), ONNX Runtime
# What a library cannot build for a family: the results row says n/a with this in its reason, never a crash.
NOT_SUPPORTED = {("deberta-v2", "onnx-int8-static"): "models with subgraphs"}  # optimum's static INT8


@pytest.mark.parametrize("model_type", list(LAYER_LISTS))
def test_family_goes_through_the_pipeline(model_type, prepared, tmp_path):
    train, validation = load_split(prepared, "train"), load_split(prepared, "validation")
    source = _tiny_model(model_type, tmp_path / "random")

    # fine-tune the baseline (seeded before loading, as the finetune stage does: a new head draws from torch's RNG)
    set_seed(0)
    model = load_classifier(str(source), label_names=("negative", "positive"))
    tokenizer = load_tokenizer(str(source))
    finetune(model, tokenizer, train, validation, TRAIN, seed=0, max_seq_length=32)
    save_classifier(model, tokenizer, tmp_path / "baseline")

    # sensitivity, every method
    labels = validation["label"].to_numpy()

    def correct(candidate):
        logits = predict_logits(candidate, tokenizer, validation["text"].tolist(), batch_size=8, max_seq_length=32)
        return logits.argmax(axis=-1) == labels

    tables = {method: METHODS[method](model, correct)[1] for method in METHODS}
    for table in tables.values():
        assert sorted(table["layer"]) == [0, 1] and sorted(table["removal_order"]) == [0, 1]
    # the label-free scores read every family's hidden states: finite, and each state equals itself
    distances = hidden_state_distances(model, tokenizer, validation["text"].tolist(), batch_size=8, max_seq_length=32)
    for key, value in distances.items():
        assert value.shape == (3, 3) and np.isfinite(value).all(), key
        np.testing.assert_allclose(np.diag(value), 1 if key.startswith("cos") else 0, atol=1e-3)

    # prune to one layer by sensitivity, then re-finetune distilled with hidden-state matching
    drop = layers_to_drop("sensitivity", layer_count(model), 1, importance_order=importance_order(tables["ablation"]))
    save_classifier(drop_layers(model, drop), tokenizer, tmp_path / "pruned-raw")
    student = load_classifier(str(tmp_path / "pruned-raw"))
    assert num_layers(student) == 1 and student.config.pruned_from_layers == [1 - drop[0]]
    finetune(student, tokenizer, train, validation, RETRAIN, seed=0, max_seq_length=32, teacher=model,
             kept_layers=student.config.pruned_from_layers)
    save_classifier(student, tokenizer, tmp_path / "pruned")

    # score both, then quantize the pruned model with each CPU runtime's scheme and score it against its source
    scores, frames = {}, {}
    for name in ("baseline", "pruned"):
        scores[name], frames[name] = score_splits(
            load_classifier(str(tmp_path / name)), tokenizer, prepared, batch_size=8, max_seq_length=32,
            confidence_level=0.95)
        assert 0 <= scores[name]["test"]["accuracy"] <= 1
    # the sentiment word is easy to learn, for the baseline and for its one-layer cut
    assert scores["baseline"]["validation"]["accuracy"] > 0.75 and scores["pruned"]["validation"]["accuracy"] > 0.75
    reference = tmp_path / "predictions-pruned"
    from prunequant.evaluation import save_predictions

    save_predictions(frames["pruned"], reference)
    context = BuildContext(train_texts=tuple(train["text"]), train_labels=tuple(train["label"]), max_seq_length=32)
    targets = [Target("pruned", "fp32", "eager", "cpu", model_type, str(tmp_path / "pruned"))]
    for name in SCHEMES:
        scheme, folder = get_scheme(name), tmp_path / f"pruned-{name}"
        folder.mkdir()
        reason = build_artifact(scheme, tmp_path / "pruned", folder, settings_of(scheme.name), context)
        if (model_type, name) in NOT_SUPPORTED:
            assert reason.startswith(f"n/a: not supported for {model_type} (") and "\n" not in reason
            assert NOT_SUPPORTED[model_type, name] in reason and not any(folder.iterdir())
            continue
        assert reason is None
        write_manifest(folder, scheme, settings_of(scheme.name), str(tmp_path / "pruned"), "ok")
        artifact, artifact_tokenizer, _ = load_artifact(folder)
        quantized, predicted = score_splits(artifact, artifact_tokenizer, prepared, batch_size=8, max_seq_length=32,
                                            confidence_level=0.95, reference=reference)
        agree = (predicted["test"]["prediction"] == frames["pruned"]["test"]["prediction"]).mean()
        assert agree >= 0.75, (f"{name}: {agree:.0%} of test predictions as the FP32 source's; source "
                               f"{scores['pruned']['test']['accuracy']:.2f}, "
                               f"quantized {quantized['test']['accuracy']:.2f}, "
                               f"source scores {frames['pruned']['test']['score'].round(3).tolist()}")
        assert quantized["test"]["mcnemar_p"] <= 1 and "accuracy_delta" in quantized["test"]
        targets.append(Target(f"pruned-{name}", name, "onnxruntime" if name.startswith("onnx") else "eager", "cpu",
                              model_type, str(folder)))

    # a short CPU timing of each: every row timed, none an n/a
    for target in targets:
        rows = run_job(Job(target=target, points=((1, 8), (2, 16)), texts=tuple(validation["text"][:4]), warmup=1,
                           runs=3, min_runs=2, max_seconds=0.05, threads=1, settings={}))
        assert [row["note"] for row in rows] == ["", ""], rows
        assert all(np.isfinite(row["latency_ms_p50"]) and row["layers"] == 1 for row in rows)

"""Scoring a classifier: per-example predictions and accuracy with a confidence interval (macro-F1 as well
when there are more than two classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest
from tqdm.auto import tqdm

from prunequant.errors import PrunequantError
from prunequant.splits import SCORED_SPLITS, forward_inputs


def accuracy_ci(correct: np.ndarray, confidence_level: float = 0.95) -> dict[str, float]:
    """Accuracy of a 0/1 vector with its Wilson score interval."""
    n = int(len(correct))
    k = int(np.sum(correct))
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence_level, method="wilson")
    return {
        "n": n,
        "accuracy": k / n,
        "accuracy_ci_low": float(interval.low),
        "accuracy_ci_high": float(interval.high),
    }


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """The unweighted mean over classes of F1 (a class never predicted nor present scores 0)."""
    scores = []
    for c in range(num_classes):
        true_pos = np.sum((predictions == c) & (labels == c))
        predicted, actual = np.sum(predictions == c), np.sum(labels == c)
        scores.append(2 * true_pos / (predicted + actual) if predicted + actual else 0.0)
    return float(np.mean(scores))


@torch.inference_mode()
def predict_logits(model, tokenizer, texts: list, *, batch_size: int, max_seq_length: int) -> np.ndarray:
    """Logits for ``texts`` (sentences, or ``(text, text_pair)`` tuples: :func:`prunequant.splits.model_inputs`),
    in order. Batches group sentences of similar length (each padded to its longest), so that little compute
    goes to padding: on the default's test split that halves the tokens computed at batch 64."""
    if hasattr(model, "eval"):  # ONNX Runtime models have no training mode
        model.eval()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_seq_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="predict", unit="batch", leave=False):
        batch = tokenizer(
            [texts[i] for i in order[start : start + batch_size]],
            truncation=True,
            max_length=max_seq_length,
            padding=True,
            return_tensors="pt",
        )
        device = getattr(model, "device", None)  # GPU schemes: inputs go where the weights are
        if device is not None and str(device) != "cpu":
            batch = batch.to(device)
        chunks.append(model(**forward_inputs(model, batch)).logits.float().cpu().numpy())
    return np.concatenate(chunks)[np.argsort(order)]  # back to the order of ``texts``


def predictions_frame(split: str, frame: pd.DataFrame, logits: np.ndarray,
                      label_names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per-example predictions for paired comparisons: ``split, idx, label, prediction`` (class ids), ``score``
    (the probability of the predicted class) and, given the class names, ``label_name, prediction_name``."""
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    prediction = logits.argmax(axis=-1)
    table = pd.DataFrame(
        {
            "split": split,
            "idx": frame["idx"].to_numpy(),
            "label": frame["label"].to_numpy(),
            "prediction": prediction,
            "score": probs[np.arange(len(prediction)), prediction],
        }
    )
    if label_names is not None:
        names = np.asarray(label_names, dtype=object)
        table["label_name"], table["prediction_name"] = names[table["label"]], names[prediction]
    return table


def paired_test(reference: pd.DataFrame, variant: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Exact McNemar test of a variant against a reference on the same examples.

    Only the examples the two classify differently carry information; under "no difference" each
    such example is equally likely to favour either side.
    """
    if not np.array_equal(reference["idx"].to_numpy(), variant["idx"].to_numpy()):
        raise PrunequantError(
            "paired test: the reference predictions cover other examples; rerun `dvc repro` so both "
            "models are scored on the same prepared data"
        )
    ref_ok = (reference["prediction"] == reference["label"]).to_numpy()
    var_ok = (variant["prediction"] == variant["label"]).to_numpy()
    only_ref, only_var = int(np.sum(ref_ok & ~var_ok)), int(np.sum(~ref_ok & var_ok))
    p_value = binomtest(only_var, only_ref + only_var).pvalue if only_ref + only_var else 1.0
    delta = float(var_ok.mean() - ref_ok.mean())
    if p_value >= alpha:
        verdict = "no significant difference"
    else:
        verdict = "better" if delta > 0 else "worse"
    return {
        "accuracy_delta": delta,
        "only_reference_correct": only_ref,
        "only_variant_correct": only_var,
        "mcnemar_p": float(p_value),
        "verdict": verdict,
    }


def score_splits(
    model, tokenizer, data_dir, *, batch_size: int, max_seq_length: int, confidence_level: float, reference=None
) -> tuple[dict, dict]:
    """Accuracy with its CI per scored split (and a paired test against ``reference``'s predictions).

    Returns ``(metrics by split, per-example predictions by split)``.
    """
    from prunequant.splits import load_label_names, load_split, model_inputs

    label_names = load_label_names(data_dir)
    # Read the references first: a missing one fails before minutes of predicting.
    references = {split: load_predictions(reference, split) for split in SCORED_SPLITS} if reference else {}
    metrics, frames = {}, {}
    for split in SCORED_SPLITS:
        frame = load_split(data_dir, split)
        logits = predict_logits(
            model, tokenizer, model_inputs(frame), batch_size=batch_size, max_seq_length=max_seq_length
        )
        frames[split] = predictions_frame(split, frame, logits, label_names)
        correct = (frames[split]["prediction"] == frames[split]["label"]).to_numpy()
        metrics[split] = accuracy_ci(correct, confidence_level)
        if len(label_names) > 2:  # accuracy hides a neglected class; macro-F1 weighs each class alike
            metrics[split]["macro_f1"] = macro_f1(frames[split]["label"].to_numpy(),
                                                  frames[split]["prediction"].to_numpy(), len(label_names))
        if reference is not None:
            metrics[split] |= paired_test(references[split], frames[split])
    return metrics, frames


def save_predictions(frames: dict, folder) -> None:
    """Write ``<folder>/<split>.parquet`` for each split, replacing the folder whole."""
    from prunequant.io import atomic_dir

    with atomic_dir(folder) as tmp:
        for split, frame in frames.items():
            frame.to_parquet(tmp / f"{split}.parquet", index=False)


def load_predictions(folder, split: str) -> pd.DataFrame:
    """Per-example predictions written by the evaluate stage."""
    path = Path(folder) / f"{split}.parquet"
    if not path.is_file():
        raise PrunequantError(f"{path}: reference predictions not found; run `dvc repro evaluate` first")
    return pd.read_parquet(path)

"""Scoring a classifier: per-example predictions and accuracy with a confidence interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest
from tqdm.auto import tqdm


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


@torch.inference_mode()
def predict_logits(model, tokenizer, texts: list[str], *, batch_size: int, max_seq_length: int) -> np.ndarray:
    """Logits for ``texts``, in order, batched with per-batch padding."""
    model.eval()
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="predict", unit="batch", leave=False):
        batch = tokenizer(
            texts[start : start + batch_size],
            truncation=True,
            max_length=max_seq_length,
            padding=True,
            return_tensors="pt",
        )
        chunks.append(model(**batch).logits.float().cpu().numpy())
    return np.concatenate(chunks)


def predictions_frame(split: str, frame: pd.DataFrame, logits: np.ndarray) -> pd.DataFrame:
    """Per-example predictions (``split, idx, label, prediction, score``) for paired comparisons."""
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    return pd.DataFrame(
        {
            "split": split,
            "idx": frame["idx"].to_numpy(),
            "label": frame["label"].to_numpy(),
            "prediction": logits.argmax(axis=-1),
            "score": probs[:, 1],
        }
    )

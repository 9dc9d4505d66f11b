"""The transfer set: unlabelled in-domain sentences that the re-finetuned students learn from the teacher's soft
logits alone (``refinetune.transfer``), as TinyBERT's augmented data and DistilBERT's general distillation do.

The transfer stage builds it once: it splits the named data set's texts into sentences, keeps those about as
long as the labelled training sentences, leaves out every sentence that occurs in the prepared data (the
validation and test sentences above all, and every sentence of theirs when the transfer data set is the task's
own) and draws ``refinetune.transfer_samples`` of the rest with ``base.seed``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from prunequant.data import DATASETS, load_raw_splits
from prunequant.errors import PrunequantError
from prunequant.io import atomic_file
from prunequant.splits import PAIR_COLUMN

LENGTH_QUANTILES = (0.05, 0.95)  # a transfer sentence is as long (in words) as 90% of the training sentences

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def split_sentences(text: str) -> list[str]:
    """A text's sentences: HTML line breaks become spaces, and a sentence ends at ``.``, ``!`` or ``?`` followed
    by white space."""
    text = " ".join(_BREAK.sub(" ", text).split())
    return [sentence for sentence in _SENTENCE_END.split(text) if sentence]


def normalise(text: str) -> str:
    """Lower case, words only: how two sentences are compared ("It's good." and "it 's good" are one)."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def _texts(name: str) -> pd.Series:
    """Every text of every split of the data set ``name`` (as ``base.data`` names data sets)."""
    if name in DATASETS and DATASETS[name].text_pair_column:
        raise PrunequantError(f"refinetune.transfer: {name!r} is a sentence-pair data set; name one of single "
                              "texts (e.g. imdb), or set refinetune.transfer: null")
    raw, source = load_raw_splits(name, key="refinetune.transfer")
    column = source.text_column if source else "text"
    missing = [split for split, frame in raw.items() if column not in frame.columns]
    if missing:
        raise PrunequantError(f"refinetune.transfer: the {missing[0]} split of {name!r} has no {column!r} column; "
                              f"give a file with a {column!r} column")
    return pd.concat([frame[column].astype(str) for frame in raw.values()], ignore_index=True)


def build_transfer(name: str | None, prepared: dict[str, pd.DataFrame], samples: int,
                   seed: int) -> tuple[pd.DataFrame, dict]:
    """Up to ``samples`` sentences of the data set ``name`` (a ``text`` frame) that occur nowhere in ``prepared``
    (the prepared splits), and a summary of how many were found and left out."""
    if name is None:
        return pd.DataFrame({"text": pd.Series(dtype=str)}), {"transfer": None, "sentences": 0}
    if any(PAIR_COLUMN in frame.columns for frame in prepared.values()):
        raise PrunequantError("refinetune.transfer: the task's data are sentence pairs, and a transfer set is "
                              "single sentences; set refinetune.transfer: null")
    prepared_texts = pd.concat([frame["text"].astype(str) for frame in prepared.values()], ignore_index=True)
    taken = {normalise(text) for text in prepared_texts}
    taken |= {normalise(sentence) for text in prepared_texts for sentence in split_sentences(text)}
    words = prepared["train"]["text"].str.split().str.len()
    shortest, longest = (int(words.quantile(q)) for q in LENGTH_QUANTILES)

    sentences = pd.Series([s for text in _texts(name) for s in split_sentences(text)], dtype=str)
    keys = sentences.map(normalise)
    length = keys.str.split().str.len()
    fits = (length >= shortest) & (length <= longest)
    overlaps = keys.isin(taken)
    pool = sentences[fits & ~overlaps & ~keys.duplicated()]
    if pool.empty:
        raise PrunequantError(f"refinetune.transfer: {name!r} has no sentence of {shortest} to {longest} words "
                              "that the prepared data lack; name another data set, or set refinetune.transfer: null")
    rng = np.random.default_rng(seed)
    chosen = pool.iloc[np.sort(rng.choice(len(pool), size=min(samples, len(pool)), replace=False))]
    summary = {
        "transfer": name,
        "sentences_found": len(sentences),
        "words": [shortest, longest],
        "left_out_length": int((~fits).sum()),
        "left_out_in_prepared_data": int((fits & overlaps).sum()),
        "candidates": len(pool),
        "sentences": len(chosen),
    }
    return pd.DataFrame({"text": chosen.to_numpy()}), summary


def save_transfer(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the sentences to ``path`` (Parquet, a ``text`` column), atomically; the refinetune stage reads it."""
    with atomic_file(Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)

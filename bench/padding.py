"""How many tokens one training epoch pushes through the model, padding included: the train split (with the
transfer set, for refinetune) in batches of `finetune.batch_size`, each padded to its longest sentence as the
collator does, drawn at random (the Trainer's default) or grouped by length (`group_by_length`, the Trainer's
LengthGroupedSampler: random mega-batches of 50 batches, sorted by length within). Writes
metrics/padding.json and prints the ratio:

    python bench/padding.py      # after `dvc repro prepare transfer`; a few seconds
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from prunequant.modeling import load_tokenizer
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.training import FinetuneConfig, RefinetuneConfig
from prunequant.splits import load_split


def tokens_per_epoch(lengths: list[int], batch_size: int, grouped: bool, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator))
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    lengths = np.asarray(lengths)[order]
    batches = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    padded = int(sum(len(b) * b.max() for b in batches))
    return {"batches": len(batches), "tokens": int(lengths.sum()), "padded_tokens": padded,
            "padding_share": round(1 - lengths.sum() / padded, 4)}


def main() -> None:
    params = load("params.yaml", base=BaseConfig, finetune=FinetuneConfig, refinetune=RefinetuneConfig)
    tokenizer = load_tokenizer(params.base.model)
    train = load_split(Path("data/prepared"), "train")
    transfer = Path("data/transfer.parquet")
    sets = {"finetune": (train, params.finetune.batch_size)}
    if params.refinetune.transfer and transfer.is_file():
        sets["refinetune"] = (pd.concat([train, pd.read_parquet(transfer)]), params.refinetune.batch_size)
    out = {}
    for name, (frame, batch_size) in sets.items():
        lengths = [len(ids) for ids in tokenizer(list(frame.text), truncation=True,
                                                 max_length=params.base.max_seq_length)["input_ids"]]
        out[name] = {"sentences": len(lengths), "batch_size": batch_size,
                     "random": tokens_per_epoch(lengths, batch_size, False, params.base.seed),
                     "grouped": tokens_per_epoch(lengths, batch_size, True, params.base.seed)}
        ratio = out[name]["grouped"]["padded_tokens"] / out[name]["random"]["padded_tokens"]
        out[name]["grouped_over_random"] = round(ratio, 4)
        print(f"{name}: {len(lengths)} sentences, batch {batch_size}: {out[name]['random']['padded_tokens']:,} "
              f"tokens per epoch at random, {out[name]['grouped']['padded_tokens']:,} grouped by length "
              f"({ratio:.2f}x; {out[name]['random']['tokens']:,} without padding)")
    Path("metrics/padding.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

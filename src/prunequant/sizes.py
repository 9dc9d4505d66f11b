"""The one size definition of every results row, FP32 or quantized: what a model folder needs to run."""

from __future__ import annotations

import os
from pathlib import Path

from prunequant.errors import PrunequantError

# What holds the weights: safetensors, an ONNX graph, or OpenVINO's IR weights (raw tensors that the .xml indexes).
WEIGHT_SUFFIXES = (".safetensors", ".onnx")
WEIGHT_NAMES = ("openvino_model.bin",)


def model_size_mb(folder: str | os.PathLike) -> float:
    """Megabytes (10^6 bytes) of every file a model folder needs to run: weights, config, tokenizer (whatever
    files the tokenizer has: vocab.txt, or vocab.json and merges.txt) and a manifest; not the model card
    (README.md) nor hidden files."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.name != "README.md" and not p.name.startswith(".")]
    if not any(p.suffix in WEIGHT_SUFFIXES or p.name in WEIGHT_NAMES for p in files):
        raise PrunequantError(f"{folder}: no model weights (.safetensors, .onnx or OpenVINO IR); run `dvc repro` to "
                              "rebuild it")
    return sum(p.stat().st_size for p in files) / 1e6

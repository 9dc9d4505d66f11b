"""The model card (README.md) of a quantized artifact: what it is, how well it does, how to load it."""

from __future__ import annotations

import json
from dataclasses import asdict

from prunequant.params import SettingError
from prunequant.params.prune import parse_cut
from prunequant.quantization import PRUNEQUANT_LOAD
from prunequant.splits import SCORED_SPLITS


def _accuracy_lines(evaluation: dict) -> list[str]:
    lines = ["| split | n | accuracy % [95% CI] | vs the FP32 source (exact McNemar test) |", "|---|---:|---|---|"]
    for split in SCORED_SPLITS:
        if split not in evaluation:
            continue
        row = evaluation[split]
        paired = ""
        if "accuracy_delta" in row:
            paired = f"{100 * row['accuracy_delta']:+.2f} pts, p = {row['mcnemar_p']:.2g}, {row['verdict']}"
        lines.append(
            f"| {split} | {row['n']} | {100 * row['accuracy']:.2f} [{100 * row['accuracy_ci_low']:.2f}, "
            f"{100 * row['accuracy_ci_high']:.2f}] | {paired} |"
        )
    return lines


def _trained_in(evaluation: dict) -> str:
    precision = evaluation.get("source_trained_in")
    if precision in (None, "fp32"):
        return " in FP32" if precision else ""
    return f" in {precision} mixed precision, FP32 weights"


def _scored_how(scheme, evaluation: dict) -> str:
    device = evaluation.get("measured_on", evaluation["device"])
    kernels = evaluation.get("kernels")
    batch = evaluation.get("eval_batch")
    how = f"on {device.upper()}" + (f" with {kernels} kernels" if kernels else "")
    if batch == 1:
        how += (", one sentence at a time without padding (its activations are quantized at run time, so a batch's "
                "other sentences would change a prediction)")
    elif batch:
        how += f", in batches of {batch} padded to their longest sentence"
    if device != scheme.device:
        how += (f". This scheme is meant for {scheme.device.upper()}: the pipeline ran where there was none, and "
                "GPU kernels may differ from these in the last digits")
    return how


def _width(variant: str) -> str:
    """' with 50% of the attention heads and FFN neurons' for a width-cut variant (pruned-4-w50), else ''."""
    try:
        cut = parse_cut(variant.removeprefix("pruned-"))
    except SettingError:
        return ""
    return f" with {cut.width_text}" if cut.width else ""


def model_card(scheme, settings, evaluation: dict, *, source: str, source_size_mb: float | None, data: str,
               folder: str, label_names: tuple[str, ...] = ()) -> str:
    """Markdown for ``<artifact>/README.md``; ``evaluation`` is the evaluate JSON of this artifact."""
    # Hub metadata: which library loads the folder (none for the layouts only prunequant's loader reads).
    library = None if scheme.how_to_load == PRUNEQUANT_LOAD else \
        {"onnx": "onnxruntime", "openvino": "openvino"}.get(scheme.weights_format, "transformers")
    status = evaluation["status"]
    lines = [
        "---",
        *([f"library_name: {library}"] if library else []),
        "pipeline_tag: text-classification",
        f"tags: [prunequant, {scheme.name}]",
        "---",
        "",
        f"# {evaluation['variant']} · {scheme.name}",
        "",
        f"{scheme.name}: {scheme.summary}. Made by prunequant from `{source}` "
        f"({evaluation['layers']} layers of `{evaluation['model']}`{_width(evaluation['variant'])}, fine-tuned on "
        f"`{data}`{_trained_in(evaluation)}); "
        "meant to run on "
        f"{'a CUDA GPU' if scheme.device == 'cuda' else 'a CPU'}.",
        "",
        *([f"Classes by output index: {', '.join(f'{i} `{name}`' for i, name in enumerate(label_names))}.", ""]
          if label_names else []),
    ]
    if status.startswith("n/a: needs"):
        lines += [f"**Not built on the machine that ran the pipeline: {status}.** Run `dvc repro` on a machine with "
                  "CUDA to build and score it.", ""]
        return "\n".join(lines)
    if status != "ok":  # what a library cannot build for this model family
        lines += [f"**Not built: {status}.**", ""]
        return "\n".join(lines)
    ratio = (f" ({evaluation['size_mb'] / source_size_mb:.2f}× the FP32 source's {source_size_mb:.1f} MB)"
             if source_size_mb else "")
    lines += [
        "## Measured",
        "",
        f"Size on disk: **{evaluation['size_mb']:.1f} MB**{ratio}: weights, config and tokenizer, in 10^6 bytes.",
        f"Accuracy, scored by the pipeline's evaluation {_scored_how(scheme, evaluation)}:",
        "",
        *_accuracy_lines(evaluation),
        "",
        "## What stays in higher precision",
        "",
        f"{scheme.full_precision[0].upper()}{scheme.full_precision[1:]}.",
        "",
        "## How to load",
        "",
        "```python",
        scheme.how_to_load.format(folder=folder),
        "```",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(asdict(settings), indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)

"""int8-qat: a short quantization-aware fine-tuning, then the same INT8 artifact as int8-dynamic.

torchao's QAT fake-quantizes the Linear weights as the deployed model stores them (INT8, symmetric, one
scale per output channel), so training adapts the weights to that rounding. Activations are not
simulated: torch.ao's dynamic INT8 quantizes them per tensor at run time with a range no fake quantizer
reproduces exactly. The run is the pipeline's own Trainer, distilled from the FP32 source so that the
student learns to keep the source's decisions. The trained weights are then quantized for real by
torch.ao (dynamic INT8) and saved like ``int8-dynamic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunequant.accelerator import PRECISIONS, training_precision
from prunequant.params import Section, knob
from prunequant.quantization import (
    PRUNEQUANT_LOAD,
    BuildContext,
    Scheme,
    register,
)
from prunequant.quantization.torch_schemes import (
    Int8DynamicSettings,
    _load_int8_dynamic,
    save_int8_dynamic,
)


@dataclass(frozen=True)
class QatSettings(Section):
    """Knobs of int8-qat."""

    epochs: float = knob(gt=0)
    learning_rate: float = knob(gt=0, lt=1)  # small: the model is already trained; QAT only adapts it to rounding
    batch_size: int = knob(ge=1)
    train_samples: int = knob(ge=0, note="0: all")  # the first N training sentences
    distill_alpha: float = knob(ge=0, le=1)  # weight of the FP32 source's soft logits; 1 - alpha goes to the labels
    quantize_embeddings: bool = knob()  # 8-bit embedding tables in the saved artifact, as int8-dynamic
    precision: str = knob(choices=PRECISIONS)  # of the training compute, as finetune.precision


# The rest of the QAT run's recipe, fixed: the usual fine-tuning schedule, logits-only distillation, no checkpoints
# (a short run), one process, no transfer set.
QAT_RECIPE = {"weight_decay": 0.01, "warmup_ratio": 0.1, "logging_steps": 50, "checkpoint_steps": 0, "processes": 1,
              "group_by_length": True, "temperature": 2.0, "hidden_weight": 0.0, "hidden_layers": (), "transfer": None,
              "transfer_samples": 1}


def _linear_filter(module, fqn: str) -> bool:
    from torch import nn

    return isinstance(module, nn.Linear) and not fqn.startswith("classifier")


def prepare_qat(model) -> None:
    """Fake-quantize the Linear weights (INT8, symmetric, per output channel) for training."""
    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    weights = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    quantize_(model, QATConfig(weight_config=weights, step="prepare"), filter_fn=_linear_filter)


def convert_qat(model) -> None:
    """Turn the fake-quantized Linear layers back into plain ones, keeping the trained weights."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model, QATConfig(step="convert"))


def _build(source: Path, out: Path, settings: QatSettings, context: BuildContext) -> None:
    from transformers import set_seed

    from prunequant.errors import PrunequantError
    from prunequant.modeling import load_classifier, load_tokenizer
    from prunequant.params.training import RefinetuneConfig
    from prunequant.splits import inputs_frame
    from prunequant.training.trainer import finetune

    count = settings.train_samples or len(context.train_texts)
    train = inputs_frame(context.train_texts[:count], context.train_labels[:count])
    if train.empty:
        raise PrunequantError("int8-qat: needs training sentences; check data/prepared")
    set_seed(context.seed)
    model, tokenizer, teacher = load_classifier(str(source)), load_tokenizer(str(source)), load_classifier(str(source))
    prepare_qat(model)
    precision, _ = training_precision(settings.precision, "quantize.settings.int8-qat.precision")  # errors name it
    recipe = RefinetuneConfig(
        epochs=settings.epochs, learning_rate=settings.learning_rate, batch_size=settings.batch_size,
        distill=settings.distill_alpha > 0, alpha=settings.distill_alpha, precision=precision, **QAT_RECIPE,
    )
    # No evaluation after the epoch: the stage scores the converted model on validation and test afterwards.
    finetune(model, tokenizer, train, None, recipe, seed=context.seed, max_seq_length=context.max_seq_length,
             teacher=teacher)
    convert_qat(model)
    save_int8_dynamic(model, tokenizer, out, Int8DynamicSettings(settings.quantize_embeddings))


def _load(folder: Path, settings: QatSettings):
    return _load_int8_dynamic(folder, Int8DynamicSettings(settings.quantize_embeddings))


register(Scheme(
    name="int8-qat",
    summary="quantization-aware fine-tuning (torchao INT8 weight fake quantization, distilled from FP32), saved "
            "as PyTorch dynamic INT8",
    device="cpu",
    settings=QatSettings,
    build=_build,
    load=_load,
    full_precision=(
        "LayerNorm weights, biases and the classifier head stay FP32, as in int8-dynamic; the embedding tables "
        "are 8-bit per row but were not fake-quantized in training (8-bit rows lose almost nothing), and "
        "activations are quantized only at run time"
    ),
    how_to_load=PRUNEQUANT_LOAD,
    needs_training=True,
    dynamic_activations=True,
))

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
from prunequant.quantization import (
    PRUNEQUANT_LOAD,
    BuildContext,
    Scheme,
    register,
    require,
)
from prunequant.quantization.torch_schemes import (
    Int8DynamicSettings,
    _load_int8_dynamic,
    save_int8_dynamic,
)


@dataclass(frozen=True)
class QatSettings:
    """Knobs of int8-qat."""

    epochs: float = 1.0
    learning_rate: float = 1e-5  # small: the model is already trained; QAT only adapts it to rounding
    batch_size: int = 32
    train_samples: int = 1024  # the first N training sentences (0: all of them)
    distill_alpha: float = 0.5  # weight of the FP32 source's soft logits; 1 - alpha goes to the labels
    quantize_embeddings: bool = True  # 8-bit embedding tables in the saved artifact, as int8-dynamic
    precision: str = "auto"  # of the training compute, as finetune.precision (auto: bf16 where native)

    def __post_init__(self) -> None:
        require(self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        require(0 < self.learning_rate < 1, "learning_rate", f"must be in (0, 1), got {self.learning_rate}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.train_samples >= 0, "train_samples", f"must be >= 0 (0: all), got {self.train_samples}")
        require(0 <= self.distill_alpha <= 1, "distill_alpha", f"must be in [0, 1], got {self.distill_alpha}")
        require(self.precision in PRECISIONS, "precision",
                f"is {self.precision!r}; choose one of {', '.join(PRECISIONS)}")


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
    from prunequant.splits import inputs_frame
    from prunequant.recipe import RefinetuneConfig
    from prunequant.training import finetune

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
        logging_steps=50, distill=settings.distill_alpha > 0, alpha=settings.distill_alpha, precision=precision,
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

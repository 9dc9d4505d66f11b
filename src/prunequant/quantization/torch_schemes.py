"""PyTorch CPU schemes: the FP32 model itself, bfloat16, and dynamic INT8 (torch.ao).

fp16 (CUDA) is registered with the GPU schemes but built by the same cast helpers.

Dynamic INT8 modules hold packed weights that ``save_pretrained`` cannot write, so the artifact stores
each quantized tensor as plain safetensors entries (int8 values, per-row scales and zero points) and the
loader rebuilds the quantized modules around them: no pickle anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunequant.params import Section, knob
from prunequant.quantization import (
    PRUNEQUANT_LOAD,
    BuildContext,
    NoSettings,
    Scheme,
    cuda_available,
    register,
)

HF_LOAD = """import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("{folder}"{extra})
tokenizer = AutoTokenizer.from_pretrained("{folder}")"""


def _load_source(source: Path):
    from prunequant.modeling import load_classifier, load_tokenizer

    return load_classifier(str(source)), load_tokenizer(str(source))


def _save(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def cast_builder(dtype_name: str):
    def build(source: Path, out: Path, settings, context: BuildContext) -> None:
        import torch

        model, tokenizer = _load_source(source)
        _save(model.to(getattr(torch, dtype_name)), tokenizer, out)

    return build


def cast_loader(dtype_name: str, device: str | None):
    """Load a cast model onto ``device`` (None: CUDA where there is one, else the CPU)."""
    def load(folder: Path, settings):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(
            folder, dtype=getattr(torch, dtype_name), use_safetensors=True
        )
        where = device or ("cuda" if cuda_available() else "cpu")
        return model.to(where).eval(), AutoTokenizer.from_pretrained(folder)

    return load


register(Scheme(
    name="fp32",
    summary="the fine-tuned model as trained, 32-bit floats",
    device="cpu",
    settings=NoSettings,
    build=cast_builder("float32"),
    load=cast_loader("float32", "cpu"),
    full_precision="everything: this is the reference the other schemes are compared with",
    how_to_load=HF_LOAD.replace("{extra}", ""),
    bench_devices=("cpu", "cuda"),
))

register(Scheme(
    name="bf16",
    summary="bfloat16 weights and activations (CPUs with AVX512-BF16 or AMX, and GPUs)",
    device="cpu",
    settings=NoSettings,
    build=cast_builder("bfloat16"),
    load=cast_loader("bfloat16", "cpu"),
    full_precision="nothing is kept in FP32; bfloat16 keeps FP32's range, so no scaling is needed",
    how_to_load=HF_LOAD.replace("{extra}", ", dtype=torch.bfloat16"),
    bench_devices=("cpu", "cuda"),
))

# ---- dynamic INT8 (torch.ao) -------------------------------------------------------------------------

# Not model.safetensors: transformers' from_pretrained must fail on this folder rather than load it with
# random Linear weights (it would ignore the INT8 tensors it does not know).
INT8_WEIGHTS = "model.int8.safetensors"
_PACKED = "._packed_params._packed_params"  # a quantized Linear: (weight, bias)
_WEIGHT_SUFFIXES = (".int8", ".scales", ".zero_points")


@dataclass(frozen=True)
class Int8DynamicSettings(Section):
    """Knobs of int8-dynamic."""

    quantize_embeddings: bool = knob()  # 8-bit embedding tables (per row); they are half of MiniLM's weights


# Embeddings a model reads as a whole table (``module.weight``) instead of looking rows up: a quantized embedding
# has no such tensor, so they stay FP32 (DeBERTa's relative-position table).
READ_AS_TABLES = ("rel_embeddings",)


def _quantize_dynamic(model, settings: Int8DynamicSettings):
    """Linear layers (not the classifier head) to per-channel INT8; optionally the embedding tables."""
    import warnings

    from torch import nn
    from torch.ao.quantization import (
        float_qparams_weight_only_qconfig,
        per_channel_dynamic_qconfig,
        quantize_dynamic,
    )

    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.startswith("classifier")
    }
    if settings.quantize_embeddings:
        spec |= {name: float_qparams_weight_only_qconfig for name, module in model.named_modules()
                 if isinstance(module, nn.Embedding) and not name.endswith(READ_AS_TABLES)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice: this is still its CPU INT8 path
        return quantize_dynamic(model.eval(), spec, inplace=False)


def _flatten_quantized(state_dict: dict) -> dict:
    """Plain tensors for safetensors: each quantized tensor becomes int values, scales, zero points."""
    import torch

    def quantized(key: str, tensor) -> dict:
        return {
            f"{key}.int8": tensor.int_repr().contiguous(),
            f"{key}.scales": tensor.q_per_channel_scales().contiguous(),
            f"{key}.zero_points": tensor.q_per_channel_zero_points().contiguous(),
        }

    flat = {}
    for key, value in state_dict.items():
        if key.endswith(_PACKED):
            weight, bias = value
            base = key.removesuffix(_PACKED)
            flat |= quantized(f"{base}.weight", weight)
            if bias is not None:
                flat[f"{base}.bias"] = bias.contiguous()
        elif isinstance(value, torch.Tensor) and value.is_quantized:
            flat |= quantized(key, value)
        elif isinstance(value, torch.Tensor):
            flat[key] = value.contiguous()
    return flat


def _unflatten_quantized(template: dict, flat: dict) -> dict:
    """The inverse of :func:`_flatten_quantized`, shaped like ``template`` (a quantized model's state)."""
    import torch

    def quantized(key: str, like):
        values, scales, zero_points = (flat[key + suffix] for suffix in _WEIGHT_SUFFIXES)
        # The embeddings' float qparams have no tensor constructor; quantizing the exact dequantized
        # values again gives back the same integers.
        if like.qscheme() == torch.per_channel_affine_float_qparams:
            real = (values.float() - zero_points[:, None]) * scales[:, None]
            return torch.quantize_per_channel(real, scales, zero_points, 0, like.dtype)
        return torch._make_per_channel_quantized_tensor(values, scales, zero_points, like.q_per_channel_axis())

    state = type(template)()
    state._metadata = getattr(template, "_metadata", {})  # module versions: the packed-params layout
    for key, value in template.items():
        if key.endswith(_PACKED):
            base = key.removesuffix(_PACKED)
            state[key] = (quantized(f"{base}.weight", value[0]), flat.get(f"{base}.bias"))
        elif isinstance(value, torch.Tensor) and value.is_quantized:
            state[key] = quantized(key, value)
        elif isinstance(value, torch.Tensor):
            state[key] = flat[key]
        else:
            state[key] = value  # dtype entries of packed params
    return state


def save_int8_dynamic(model, tokenizer, out: Path, settings: Int8DynamicSettings) -> None:
    """Quantize ``model`` (FP32) to dynamic INT8 and write it, its config and tokenizer to ``out``."""
    from safetensors.torch import save_file

    quantized = _quantize_dynamic(model, settings)
    save_file(_flatten_quantized(quantized.state_dict()), out / INT8_WEIGHTS, metadata={"format": "pt"})
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_int8_dynamic(source: Path, out: Path, settings: Int8DynamicSettings, context: BuildContext) -> None:
    save_int8_dynamic(*_load_source(source), out, settings)


def _load_int8_dynamic(folder: Path, settings: Int8DynamicSettings):
    from safetensors.torch import load_file
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    # A randomly initialised skeleton gives the quantized modules their shapes; every value is replaced.
    skeleton = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
    model = _quantize_dynamic(skeleton, settings)
    model.load_state_dict(_unflatten_quantized(model.state_dict(), load_file(folder / INT8_WEIGHTS)))
    return model.eval(), AutoTokenizer.from_pretrained(folder)


register(Scheme(
    name="int8-dynamic",
    summary="PyTorch dynamic INT8 (torch.ao): per-channel INT8 Linear weights, activations quantized per batch",
    device="cpu",
    settings=Int8DynamicSettings,
    build=_build_int8_dynamic,
    load=_load_int8_dynamic,
    full_precision=(
        "LayerNorm weights, biases and the classifier head stay FP32: they are a tiny share of the weights, "
        "and the head's two outputs are where rounding would hurt most; with quantize_embeddings: false the "
        "embedding tables stay FP32 too"
    ),
    how_to_load=PRUNEQUANT_LOAD,
    dynamic_activations=True,
))

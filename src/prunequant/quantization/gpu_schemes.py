"""GPU schemes: float16, bitsandbytes (transformers' BitsAndBytesConfig) and torchao ``quantize_`` configs.

They are meant for CUDA: deployed, timed and recommended there. The build and load code takes whichever device
is present, so on a machine without CUDA the schemes whose kernels also exist on the CPU (float16, bitsandbytes
8/4-bit, torchao INT8 weight-only) are built and scored there, and their rows say so (``measured_on``, ``kernels``);
the others (torchao INT4, FP8) say "n/a: needs CUDA" and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prunequant.params import Section, knob, require
from prunequant.quantization import (
    PRUNEQUANT_LOAD,
    BuildContext,
    NoSettings,
    Scheme,
    cuda_available,
    register,
)
from prunequant.quantization.torch_schemes import HF_LOAD, cast_builder, cast_loader

# Kept in full precision: the classifier head (two outputs, where rounding hurts most) and the pooler
# (one small matrix on the [CLS] vector).
SKIP_MODULES = ["classifier", "pooler"]

_HEAD_NOTE = (
    "the classifier head and the pooler stay in 16-bit: two small matrices where rounding hurts most; "
    "LayerNorm and the embedding tables stay 16-bit too ({why})"
)


def _device() -> str:
    return "cuda" if cuda_available() else "cpu"


def _save_tokenizer(source: Path, out: Path) -> None:
    from prunequant.modeling import load_tokenizer

    load_tokenizer(str(source)).save_pretrained(out)


register(Scheme(
    name="fp16",
    summary="float16 weights and activations on a CUDA GPU",
    device="cuda",
    settings=NoSettings,
    build=cast_builder("float16"),
    load=cast_loader("float16", None),
    full_precision="nothing is kept in FP32 (LayerNorm runs in float16 on the GPU, as is usual for BERT)",
    cpu_kernels=True,
    how_to_load=HF_LOAD.replace("{extra}", ", dtype=torch.float16").replace(
        "tokenizer =", "model = model.cuda()\ntokenizer ="
    ),
))


# ---- bitsandbytes -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bnb4bitSettings(Section):
    """Knobs of bnb-nf4 / bnb-fp4."""

    double_quant: bool = knob()  # quantize the block scales too (about 0.4 bits per weight saved)
    compute_dtype: str = knob(choices=("float16", "bfloat16"))  # dtype of the matmuls after dequantization


BNB_4BIT_BLOCK = 64  # weights per 4-bit block along a Linear layer's input


def _partial_blocks(source: Path) -> list[str]:
    """The 2-D weights (Linear layers; an embedding listed too is harmless) whose input is not whole 4-bit blocks
    (a width-pruned attention output projection with 3 heads of 32, say): bitsandbytes' 4-bit CPU kernel cannot run
    them, so they stay 16-bit. Read off the safetensors headers."""
    from safetensors import safe_open

    names = []
    for path in sorted(Path(source).glob("*.safetensors")):
        with safe_open(path, "pt") as weights:
            names += [key.removesuffix(".weight") for key in weights.keys() if key.endswith(".weight")
                      and len(shape := weights.get_slice(key).get_shape()) == 2 and shape[1] % BNB_4BIT_BLOCK]
    return names


def _bnb_config(kind: str, settings, skip: list[str]):
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=kind,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, settings.compute_dtype),
        llm_int8_skip_modules=skip,
    )


def _bnb_builder(kind: str):
    def build(source: Path, out: Path, settings, context: BuildContext) -> None:
        from transformers import AutoModelForSequenceClassification

        skip = [*SKIP_MODULES, *(_partial_blocks(source) if kind != "int8" else ())]
        model = AutoModelForSequenceClassification.from_pretrained(
            source, quantization_config=_bnb_config(kind, settings, skip), device_map={"": _device()},
            use_safetensors=True
        )
        model.save_pretrained(out, safe_serialization=True)
        _save_tokenizer(source, out)

    return build


def _bnb_load(folder: Path, settings):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # config.json carries the quantization_config: transformers rebuilds the 8/4-bit layers.
    model = AutoModelForSequenceClassification.from_pretrained(folder, device_map={"": _device()}, use_safetensors=True)
    return model.eval(), AutoTokenizer.from_pretrained(folder)


_BNB_LOAD = """from transformers import AutoModelForSequenceClassification, AutoTokenizer   # needs bitsandbytes
model = AutoModelForSequenceClassification.from_pretrained("{folder}", device_map={{"": "cuda"}})
tokenizer = AutoTokenizer.from_pretrained("{folder}")"""

for _kind, _name, _settings, _summary in (
    ("int8", "bnb-int8", NoSettings, "bitsandbytes LLM.int8(): INT8 Linear weights, outliers kept in 16-bit"),
    ("nf4", "bnb-nf4", Bnb4bitSettings, "bitsandbytes 4-bit NormalFloat (NF4) Linear weights, 16-bit compute"),
    ("fp4", "bnb-fp4", Bnb4bitSettings, "bitsandbytes 4-bit float (FP4) Linear weights, 16-bit compute"),
):
    register(Scheme(
        name=_name,
        summary=_summary,
        device="cuda",
        settings=_settings,
        build=_bnb_builder(_kind),
        load=_bnb_load,
        full_precision=_HEAD_NOTE.format(why="transformers' bitsandbytes integration quantizes Linear layers only"),
        how_to_load=_BNB_LOAD,
        kernels="bitsandbytes",
        cpu_kernels=True,
    ))


# torchao's safetensors layout (tensor subclasses flattened, with JSON metadata): only load_artifact reads it.
TORCHAO_WEIGHTS = "model.torchao.safetensors"
# torchao's per-tensor metadata is saved as one sorted JSON string under this key: safetensors writes a
# metadata dict in hash order, which differs from process to process, so many keys would make the file
# (and the stage's output hash) change on every rerun.
TORCHAO_METADATA_KEY = "torchao"


# ---- torchao ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchaoInt4Settings(Section):
    """Knobs of torchao-int4-weight."""

    group_size: int = knob()  # weights sharing one scale (32, 64, 128 or 256)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.group_size in (32, 64, 128, 256), "group_size",
                f"must be 32, 64, 128 or 256, got {self.group_size}")


def _torchao_config(name: str, settings):
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerRow,
    )

    if name == "torchao-int8-weight":
        return Int8WeightOnlyConfig(version=2)
    if name == "torchao-int4-weight":
        return Int4WeightOnlyConfig(group_size=settings.group_size, int4_packing_format="tile_packed_to_4d")
    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())


def _quantize_linears(model, name: str, settings) -> None:
    from torch import nn
    from torchao.quantization import quantize_
    from torchao.utils import TorchAOBaseTensor

    def targeted(module, fqn: str) -> bool:
        return isinstance(module, nn.Linear) and not set(fqn.split(".")) & set(SKIP_MODULES)

    quantize_(model, _torchao_config(name, settings), filter_fn=targeted)
    # torchao leaves a layer whose shape does not fit the config as it was, logging at info level only.
    skipped = [fqn for fqn, module in model.named_modules()
               if targeted(module, fqn) and not isinstance(module.weight, TorchAOBaseTensor)]
    if skipped:
        from prunequant.errors import PrunequantError

        hint = f"; try quantize.settings.{name}.group_size 32 or 64" if name == "torchao-int4-weight" else ""
        raise PrunequantError(f"{name}: torchao left {len(skipped)} Linear layers unquantized "
                              f"(e.g. {skipped[0]}: their shape does not fit){hint}")


def _torchao_builder(name: str):
    def build(source: Path, out: Path, settings, context: BuildContext) -> None:
        import torch
        from safetensors.torch import save_file
        from torchao.prototype.safetensors.safetensors_support import (
            flatten_tensor_state_dict,
        )
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.bfloat16, use_safetensors=True)
        model = model.to(_device()).eval()
        _quantize_linears(model, name, settings)
        # torchao's own safetensors layout: plain tensors plus JSON metadata naming each tensor subclass.
        tensors, metadata = flatten_tensor_state_dict(model.state_dict())
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            out / TORCHAO_WEIGHTS,
            metadata={TORCHAO_METADATA_KEY: json.dumps(metadata, sort_keys=True)},
        )
        model.config.save_pretrained(out)
        _save_tokenizer(source, out)

    return build


def _torchao_loader(name: str):
    def load(folder: Path, settings):
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file
        from torchao.prototype.safetensors.safetensors_support import (
            unflatten_tensor_state_dict,
        )
        from transformers import (
            AutoConfig,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        skeleton = AutoModelForSequenceClassification.from_config(
            AutoConfig.from_pretrained(folder), dtype=torch.bfloat16
        ).to(_device()).eval()
        _quantize_linears(skeleton, name, settings)  # the quantized tensor types, to be overwritten
        with safe_open(folder / TORCHAO_WEIGHTS, framework="pt") as handle:
            metadata = json.loads(handle.metadata()[TORCHAO_METADATA_KEY])
        state, leftover = unflatten_tensor_state_dict(load_file(folder / TORCHAO_WEIGHTS, device=_device()), metadata)
        assert not leftover, f"unexpected tensors in {folder}: {sorted(leftover)[:3]}"
        skeleton.load_state_dict(state, assign=True)
        return skeleton, AutoTokenizer.from_pretrained(folder)

    return load


for _name, _settings, _summary in (
    ("torchao-int8-weight", NoSettings, "torchao INT8 weight-only (per-row scales), bfloat16 activations"),
    ("torchao-int4-weight", TorchaoInt4Settings,
     "torchao INT4 weight-only (grouped scales, tinygemm), bfloat16 activations"),
    ("fp8", NoSettings, "torchao FP8 (e4m3) weights and dynamic per-row FP8 activations (Ada, Hopper or newer)"),
):
    register(Scheme(
        name=_name,
        summary=_summary,
        device="cuda",
        settings=_settings,
        build=_torchao_builder(_name),
        load=_torchao_loader(_name),
        full_precision=_HEAD_NOTE.format(why="torchao quantize_ is applied to the encoder's Linear layers"),
        how_to_load=PRUNEQUANT_LOAD,
        min_cuda_capability={"fp8": (8, 9), "torchao-int4-weight": (8, 0)}.get(_name),
        kernels="torchao",
        cpu_kernels=_name == "torchao-int8-weight",
        no_cpu_reason={
            # torchao 0.18's INT4 packings: tile_packed_to_4d (tinygemm), plain and preshuffled (fbgemm) run on CUDA,
            # plain_int32 on XPU/NPU; the CPU packing ("opaque") of earlier releases is gone.
            "torchao-int4-weight": "torchao 0.18 has no CPU kernel for INT4 weights",
            "fp8": "FP8 matmuls need an Ada or Hopper GPU",
        }.get(_name, ""),
    ))

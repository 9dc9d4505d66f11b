"""ONNX Runtime schemes, built with optimum: export, graph optimization, INT8 and 4-bit weights.

Each artifact is an optimum folder (``model.onnx``, ``config.json``, tokenizer) that loads with
``ORTModelForSequenceClassification.from_pretrained(folder)``. Quantization starts from the plain export:
ORT's quantizer cannot infer types through the fused contrib ops of an optimized graph, and ONNX Runtime
fuses the quantized graph itself when it loads it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prunequant.params import Section, knob, require
from prunequant.quantization import BuildContext, Scheme, register

ONNX_FILE = "model.onnx"
CPU_TARGETS = ("avx512_vnni", "avx512", "avx2", "arm64")  # optimum AutoQuantizationConfig presets
CALIBRATION_METHODS = ("minmax", "percentiles")
CALIBRATION_BATCH = 16  # sentences per calibration run

_ORT_LOAD = """from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer
model = ORTModelForSequenceClassification.from_pretrained("{folder}")
tokenizer = AutoTokenizer.from_pretrained("{folder}")"""

_EMBEDDINGS_NOTE = (
    "the embedding lookups (Gather) are quantized too; LayerNorm, Softmax, GELU, biases and the classifier "
    "head (Gemm) stay FP32: they are a small share of the weights and sensitive to rounding"
)


def _export(source: Path, folder: Path):
    """Export the FP32 PyTorch model to ONNX with optimum; return the ORT model (folder holds model.onnx)."""
    from optimum.onnxruntime import ORTModelForSequenceClassification

    from prunequant.modeling import load_tokenizer

    model = ORTModelForSequenceClassification.from_pretrained(source, export=True)
    model.save_pretrained(folder)
    load_tokenizer(str(source)).save_pretrained(folder)
    return model


def _finish(work: Path, onnx_file: Path, out: Path) -> None:
    """Copy config, tokenizer and the final graph (as model.onnx) into the artifact folder."""
    for path in work.iterdir():
        if path.is_file() and not path.name.endswith(".onnx") and path.name != "ort_config.json":
            shutil.copy2(path, out / path.name)
    shutil.copy2(onnx_file, out / ONNX_FILE)


def _load(folder: Path, settings):
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    model = ORTModelForSequenceClassification.from_pretrained(
        folder, file_name=ONNX_FILE, provider="CPUExecutionProvider"
    )
    return model, AutoTokenizer.from_pretrained(folder)


# ---- onnx-fp32 ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnnxFp32Settings(Section):
    """Knobs of onnx-fp32."""

    optimization_level: int = knob()  # optimum/ORT: 1 basic, 2 extended (fused attention, GELU, LayerNorm), 99 all

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.optimization_level in (1, 2, 99), "optimization_level", f"must be 1, 2 or 99, got "
                f"{self.optimization_level}")


def _build_fp32(source: Path, out: Path, settings: OnnxFp32Settings, context: BuildContext) -> None:
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    with tempfile.TemporaryDirectory() as tmp:
        work, optimized = Path(tmp) / "export", Path(tmp) / "optimized"
        model = _export(source, work)
        ORTOptimizer.from_pretrained(model).optimize(
            OptimizationConfig(optimization_level=settings.optimization_level), save_dir=optimized
        )
        _finish(work, optimized / "model_optimized.onnx", out)


register(Scheme(
    name="onnx-fp32",
    summary="ONNX Runtime, FP32, graph optimized by optimum (fused attention, GELU and LayerNorm)",
    device="cpu",
    settings=OnnxFp32Settings,
    build=_build_fp32,
    load=_load,
    full_precision="everything (FP32): only the graph is optimized",
    weights_format="onnx",
    how_to_load=_ORT_LOAD,
    kernels="onnxruntime",
))


# ---- onnx-int8-dynamic / onnx-int8-static ------------------------------------------------------------

@dataclass(frozen=True)
class OnnxInt8DynamicSettings(Section):
    """Knobs of onnx-int8-dynamic."""

    target: str = knob(choices=CPU_TARGETS)  # optimum's preset for the deployment CPU
    per_channel: bool = knob()  # one scale per output row of each weight


@dataclass(frozen=True)
class OnnxInt8StaticSettings(OnnxInt8DynamicSettings):
    """Knobs of onnx-int8-static: activation ranges calibrated once on training sentences."""

    calibration_samples: int = knob(ge=1)  # training sentences run through the model to fix activation ranges
    calibration_method: str = knob(choices=CALIBRATION_METHODS)  # percentiles ignores the rarest outliers


# Static INT8 quantizes the weight-bearing ops only: calibrating every Add would include the attention
# mask's additions, whose -3.4e38 fill values defeat both min-max ranges and histograms.
STATIC_OPERATORS = ["MatMul", "Gather"]


def _quantization_config(settings: OnnxInt8DynamicSettings, is_static: bool):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    preset = getattr(AutoQuantizationConfig, settings.target)
    if is_static:
        return preset(is_static=True, per_channel=settings.per_channel, operators_to_quantize=STATIC_OPERATORS)
    return preset(is_static=False, per_channel=settings.per_channel)


def _calibration_dataset(work: Path, settings: OnnxInt8StaticSettings, context: BuildContext):
    """The first calibration_samples training sentences, tokenized and padded to one length, with the inputs the
    exported graph takes (a DistilBERT graph has no token_type_ids, though a BERT tokenizer makes them)."""
    import onnx
    from datasets import Dataset
    from transformers import AutoTokenizer

    from prunequant.errors import PrunequantError

    texts = list(context.train_texts[: settings.calibration_samples])
    if not texts:
        raise PrunequantError("onnx-int8-static: no training sentences to calibrate on; check data/prepared")
    # ORT's histogram stacks the outputs of every batch: a shorter last batch cannot stack, so use whole ones.
    texts = texts[: max(len(texts) - len(texts) % CALIBRATION_BATCH, min(len(texts), CALIBRATION_BATCH))]
    tokenizer = AutoTokenizer.from_pretrained(work)
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=context.max_seq_length)
    graph_inputs = {i.name for i in onnx.load(work / ONNX_FILE, load_external_data=False).graph.input}
    return Dataset.from_dict({k: v for k, v in encoded.items() if k in graph_inputs})


def _build_int8(is_static: bool):
    def build(source: Path, out: Path, settings, context: BuildContext) -> None:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoCalibrationConfig

        with tempfile.TemporaryDirectory() as tmp:
            work, quantized = Path(tmp) / "export", Path(tmp) / "quantized"
            _export(source, work)
            quantizer = ORTQuantizer.from_pretrained(work, file_name=ONNX_FILE)
            qconfig = _quantization_config(settings, is_static)
            ranges = None
            if is_static:
                dataset = _calibration_dataset(work, settings, context)
                calibration = getattr(AutoCalibrationConfig, settings.calibration_method)(dataset)
                ranges = quantizer.fit(
                    dataset=dataset,
                    calibration_config=calibration,
                    onnx_augmented_model_name=str(Path(tmp) / "augmented.onnx"),
                    operators_to_quantize=qconfig.operators_to_quantize,
                    batch_size=min(CALIBRATION_BATCH, len(dataset)),
                )
            quantizer.quantize(quantization_config=qconfig, save_dir=quantized, calibration_tensors_range=ranges)
            _finish(work, quantized / "model_quantized.onnx", out)

    return build


register(Scheme(
    name="onnx-int8-dynamic",
    summary="ONNX Runtime dynamic INT8 (optimum ORTQuantizer): INT8 weights, activations quantized per batch",
    device="cpu",
    settings=OnnxInt8DynamicSettings,
    build=_build_int8(is_static=False),
    load=_load,
    full_precision=_EMBEDDINGS_NOTE,
    weights_format="onnx",
    how_to_load=_ORT_LOAD,
    kernels="onnxruntime",
    dynamic_activations=True,
))

register(Scheme(
    name="onnx-int8-static",
    summary="ONNX Runtime static INT8 (optimum ORTQuantizer, QDQ): activation ranges calibrated on training sentences",
    device="cpu",
    settings=OnnxInt8StaticSettings,
    build=_build_int8(is_static=True),
    load=_load,
    full_precision=_EMBEDDINGS_NOTE,
    weights_format="onnx",
    how_to_load=_ORT_LOAD,
    kernels="onnxruntime",
))


# ---- onnx-int4-weight --------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnnxInt4Settings(Section):
    """Knobs of onnx-int4-weight (ONNX Runtime's MatMulNBits and GatherBlockQuantized)."""

    block_size: int = knob()  # weights sharing one scale; smaller is more accurate and a little larger
    quantize_embeddings: bool = knob()  # 4-bit embedding tables (GatherBlockQuantized)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.block_size >= 16 and self.block_size & (self.block_size - 1) == 0,
            "block_size",
            f"must be a power of two >= 16, got {self.block_size}",
        )


def _build_int4(source: Path, out: Path, settings: OnnxInt4Settings, context: BuildContext) -> None:
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "export"
        _export(source, work)
        quantizer = MatMulNBitsQuantizer(
            onnx.load(work / ONNX_FILE),
            bits=4,
            block_size=settings.block_size,
            is_symmetric=True,
            op_types_to_quantize=("MatMul", "Gather") if settings.quantize_embeddings else ("MatMul",),
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(Path(tmp) / "int4.onnx"))
        _finish(work, Path(tmp) / "int4.onnx", out)


register(Scheme(
    name="onnx-int4-weight",
    summary="ONNX Runtime 4-bit weights (MatMulNBits, block-wise scales), FP32 activations",
    device="cpu",
    settings=OnnxInt4Settings,
    build=_build_int4,
    load=_load,
    full_precision=(
        "activations, LayerNorm, biases, the pooler and the classifier head (Gemm) stay FP32; the Linear "
        "weights and the embedding tables are 4-bit with one FP32 scale per block of weights"
    ),
    weights_format="onnx",
    how_to_load=_ORT_LOAD,
    kernels="onnxruntime",
))

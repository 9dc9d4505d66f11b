"""OpenVINO schemes, built with optimum-intel: FP32 IR, and static INT8 quantized by NNCF.

Each artifact is an optimum-intel folder (``openvino_model.xml`` / ``.bin``, ``config.json``, tokenizer) that
loads with ``OVModelForSequenceClassification.from_pretrained(folder)``. Static INT8 is NNCF's post-training
quantization with the transformer preset (SmoothQuant and bias correction), calibrated on training sentences.
OpenVINO runs FP32 models in bf16 by default on CPUs with AMX or AVX-512 BF16; ``inference_precision`` pins it
(f32 by default, so an accuracy measured on one machine holds on another).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunequant.params import Section, knob
from prunequant.quantization import BuildContext, Scheme, read_manifest, register

OV_FILE = "openvino_model.xml"
PRECISIONS = ("f32", "bf16")

_OV_LOAD = """from optimum.intel import OVModelForSequenceClassification
from transformers import AutoTokenizer
model = OVModelForSequenceClassification.from_pretrained("{folder}", ov_config={{"INFERENCE_PRECISION_HINT": "f32"}})
tokenizer = AutoTokenizer.from_pretrained("{folder}")"""


@dataclass(frozen=True)
class OpenVinoFp32Settings(Section):
    """Knobs of openvino-fp32."""

    inference_precision: str = knob(choices=PRECISIONS)  # bf16: OpenVINO's default on CPUs with AMX / AVX-512 BF16


@dataclass(frozen=True)
class OpenVinoInt8StaticSettings(OpenVinoFp32Settings):
    """Knobs of openvino-int8-static."""

    calibration_samples: int = knob(ge=1)  # training sentences NNCF runs to collect activation statistics


def ov_config(folder: Path, threads: int | None = None) -> dict:
    """The compile settings of an artifact: its inference precision (manifest), the latency hint, threads."""
    settings = (read_manifest(folder) or {}).get("settings", {})
    config = {"INFERENCE_PRECISION_HINT": settings.get("inference_precision", "f32"), "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def compile_openvino(folder: Path, threads: int, shape: tuple[int, int] | None = None):
    """The artifact's model compiled for the CPU; ``shape``: every input reshaped to (batch, length) first (a
    fixed-shape model, which OpenVINO plans for that shape alone)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(Path(folder) / OV_FILE)
    if shape:
        model.reshape({port.any_name: list(shape) for port in model.inputs})
    return core.compile_model(model, "CPU", ov_config(Path(folder), threads))


def _export(source: Path):
    from optimum.intel import OVModelForSequenceClassification

    return OVModelForSequenceClassification.from_pretrained(source, export=True, compile=False)


def _save(model, source: Path, out: Path) -> None:
    from prunequant.modeling import load_tokenizer

    model.save_pretrained(out)
    load_tokenizer(str(source)).save_pretrained(out)


def _build_fp32(source: Path, out: Path, settings: OpenVinoFp32Settings, context: BuildContext) -> None:
    _save(_export(source), source, out)


def _build_int8_static(source: Path, out: Path, settings: OpenVinoInt8StaticSettings, context: BuildContext) -> None:
    import nncf
    import numpy as np
    from transformers import AutoTokenizer

    from prunequant.errors import PrunequantError

    texts = list(context.train_texts[: settings.calibration_samples])
    if not texts:
        raise PrunequantError("openvino-int8-static: no training sentences to calibrate on; check data/prepared")
    model = _export(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    names = {port.any_name for port in model.model.inputs}  # a DistilBERT graph has no token_type_ids

    def transform(text):  # a sentence, or a (text, text_pair) tuple: a batch of one either way
        encoded = tokenizer([text], truncation=True, max_length=context.max_seq_length, return_tensors="np")
        return {k: v.astype(np.int64) for k, v in encoded.items() if k in names}

    model.model = nncf.quantize(model.model, nncf.Dataset(texts, transform), model_type=nncf.ModelType.TRANSFORMER,
                                subset_size=len(texts))
    _save(model, source, out)


def _load(folder: Path, settings):
    from optimum.intel import OVModelForSequenceClassification
    from transformers import AutoTokenizer

    model = OVModelForSequenceClassification.from_pretrained(
        folder, ov_config={"INFERENCE_PRECISION_HINT": settings.inference_precision})
    return model, AutoTokenizer.from_pretrained(folder)


register(Scheme(
    name="openvino-fp32",
    summary="OpenVINO, FP32 (optimum-intel export)",
    device="cpu",
    settings=OpenVinoFp32Settings,
    build=_build_fp32,
    load=_load,
    full_precision="everything (FP32; inference_precision f32 keeps OpenVINO from running it in bf16)",
    weights_format="openvino",
    how_to_load=_OV_LOAD,
    kernels="openvino",
))

register(Scheme(
    name="openvino-int8-static",
    summary="OpenVINO static INT8 (NNCF post-training quantization, transformer preset with SmoothQuant): "
            "activation ranges calibrated on training sentences",
    device="cpu",
    settings=OpenVinoInt8StaticSettings,
    build=_build_int8_static,
    load=_load,
    full_precision=("the Linear layers' MatMuls (pooler and classifier included) run in INT8 with calibrated "
                    "activation ranges, and the embedding tables are stored in INT8 and dequantized on lookup; "
                    "LayerNorm, Softmax and GELU stay FP32"),
    weights_format="openvino",
    how_to_load=_OV_LOAD,
    kernels="openvino",
))

"""Quantization schemes: one registry maps a name to how to build, save and load an artifact.

A scheme is a :class:`Scheme` entry plus a settings dataclass (its knobs in
``params.yaml: quantize.settings.<name>``, validated in ``__post_init__``). Each family of schemes lives
in its own module (a *family*: ``FAMILIES``) and registers its entries on import. ``SCHEME_FAMILY`` names the
family of every scheme without importing any: a stage that builds one scheme imports only that scheme's
family module (:func:`get_scheme`), so its DVC stage depends on that module alone, and editing the ONNX
family reruns only the ONNX stages. ``prunequant.quantization.every`` imports all of them (benchmarks,
the whole-file params check). Adding a scheme: one ``register`` call and one settings dataclass in its
family module, and its name in ``SCHEME_FAMILY``.

Every artifact is a folder that loads from itself alone: the weights (safetensors or ONNX), the model
config and tokenizer, a manifest (``prunequant.json``: scheme, settings, source) and a model card
(``README.md``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunequant import accelerator
from prunequant.clock import phase
from prunequant.errors import PrunequantError
from prunequant.params import build_section
from prunequant.params.quantize import FAMILIES, SCHEME_FAMILY, QuantizeConfig, check_scheme_name

MANIFEST = "prunequant.json"
DEVICES = ("cpu", "cuda")

@dataclass(frozen=True)
class NoSettings:
    """A scheme without knobs: its entry in quantize.settings is ``{}``."""


@dataclass(frozen=True)
class BuildContext:
    """What a build may need beyond the source model: calibration and training data (sentences, or
    ``(text, text_pair)`` tuples), seed, lengths."""

    train_texts: tuple = ()
    train_labels: tuple[int, ...] = ()
    seed: int = 42
    max_seq_length: int = 128


@dataclass(frozen=True)
class Scheme:
    """One way to make a deployable artifact from a fine-tuned FP32 classifier."""

    name: str
    summary: str  # one line for tables and the model card
    device: str  # where the artifact is meant to run and is evaluated: "cpu" or "cuda"
    settings: type  # the dataclass of its knobs
    # (source folder, artifact folder, settings, BuildContext) -> None: writes weights, config, tokenizer
    build: Callable[[Path, Path, Any, BuildContext], None]
    # (artifact folder, settings) -> (model, tokenizer); the model's forward returns ``.logits``
    load: Callable[[Path, Any], tuple[Any, Any]]
    full_precision: str  # which parts stay in higher precision and why (the model card says it)
    weights_format: str = "safetensors"  # or "onnx", "openvino"
    how_to_load: str = ""  # a Python snippet for the model card; {folder} is filled in
    min_cuda_capability: tuple[int, int] | None = None  # e.g. (8, 9): FP8 matmuls need Ada or Hopper
    # The library whose kernels run it ("torch", "onnxruntime", "bitsandbytes", "torchao"): results name the kernels
    # an accuracy was measured with as "<kernels>-<device>".
    kernels: str = "torch"
    # A CUDA scheme whose build and kernels also run on the CPU (slowly): without CUDA it is built and scored there,
    # so its accuracy is known on any machine; it is still deployed, timed and recommended on the GPU only.
    cpu_kernels: bool = False
    no_cpu_reason: str = ""  # a CUDA scheme without CPU kernels: why (the results row says it)
    # Activations quantized at run time from the whole input tensor (dynamic INT8): a sentence's prediction would
    # depend on the other sentences and the padding of its batch, so it is scored one sentence at a time, unpadded.
    dynamic_activations: bool = False
    # where benchmarks time it (default: its own device); fp32 and bf16 run on both
    bench_devices: tuple[str, ...] = ()
    needs_training: bool = False  # its weights come from training on the data: random weights cannot build it

    def __post_init__(self) -> None:
        assert self.device in DEVICES, self.device
        assert self.name in SCHEME_FAMILY, f"add {self.name!r} to SCHEME_FAMILY"

    def timed_on(self, device: str) -> bool:
        """Whether benchmarks time this scheme's artifacts on ``device`` (ONNX: the CPU execution provider)."""
        return device in (self.bench_devices or (self.device,))


SCHEMES: dict[str, Scheme] = {}

# The model card's loading snippet for artifacts that only prunequant's loader rebuilds.
PRUNEQUANT_LOAD = (
    "from prunequant.quantization import load_artifact   # pip install prunequant (this repository)\n"
    'model, tokenizer, _ = load_artifact("{folder}")'
)


def register(scheme: Scheme) -> Scheme:
    """Add a scheme to the registry (each family module calls this on import)."""
    assert scheme.name not in SCHEMES, f"scheme {scheme.name} registered twice"
    SCHEMES[scheme.name] = scheme
    return scheme


def get_scheme(name: str, key: str = "quantize.schemes") -> Scheme:
    """The registered scheme ``name``, importing its family's module (and no other) on first use."""
    family = SCHEME_FAMILY[check_scheme_name(name, key)]
    importlib.import_module(f"{__name__}.{FAMILIES[family]}")
    return SCHEMES[name]


def parse_settings(scheme: Scheme, raw: Any, key: str) -> Any:
    """Validate ``quantize.settings.<scheme>`` into the scheme's settings dataclass."""
    return build_section(scheme.settings, raw, key)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device here (:func:`prunequant.accelerator.cuda_available`; tests replace this one)."""
    return accelerator.cuda_available()


def not_available_reason(scheme: Scheme) -> str | None:
    """Why ``scheme`` cannot be built and scored on this machine (the results row's status), or None when it can
    (a CUDA scheme with CPU kernels can, on the CPU: :func:`measured_on`)."""
    if scheme.device == "cuda" and not cuda_available():
        if scheme.cpu_kernels:
            return None
        return "n/a: needs CUDA" + (f" ({scheme.no_cpu_reason})" if scheme.no_cpu_reason else "")
    if scheme.min_cuda_capability:
        import torch

        if torch.cuda.get_device_capability() < scheme.min_cuda_capability:
            major, minor = scheme.min_cuda_capability
            return f"n/a: needs a GPU of compute capability {major}.{minor} or newer"
    return None


def measured_on(scheme: Scheme) -> str:
    """Where this machine builds and scores ``scheme``: its own device, or the CPU for a CUDA scheme with CPU
    kernels on a machine without CUDA."""
    return "cuda" if scheme.device == "cuda" and cuda_available() else "cpu"


def scoring_batch_size(scheme: Scheme, batch_size: int) -> int:
    """Sentences per forward pass when scoring ``scheme``: 1 (unpadded) where activations are quantized at run
    time, so that accuracy does not depend on which sentences share a batch; else the evaluate setting."""
    return 1 if scheme.dynamic_activations else batch_size


def build_artifact(scheme: Scheme, source: Path, out: Path, settings: Any, context: BuildContext) -> str | None:
    """Build ``scheme``'s artifact of ``source`` into the empty folder ``out``; return None, or the one-line
    ``n/a:`` reason when a library says it cannot do this for the model (e.g. optimum's static INT8 of an ONNX
    graph with subgraphs, as DeBERTa's): ``out`` is then left empty, and the results row says why."""
    import shutil

    try:
        scheme.build(source, out, settings, context)
        return None
    except NotImplementedError as exc:
        for path in out.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(source).model_type
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"n/a: not supported for {model_type} ({reason})"


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of an artifact folder, or None for a plain save_pretrained (FP32) folder."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise PrunequantError(f"{path}: not valid JSON; rebuild the artifact with `dvc repro`") from None


def write_manifest(folder: Path, scheme: Scheme, settings: Any, source: str, status: str) -> None:
    manifest = {
        "scheme": scheme.name,
        "device": scheme.device,
        "weights_format": scheme.weights_format,
        "settings": dataclasses.asdict(settings),
        "source": source,
        "status": status,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


@phase("loading")
def load_artifact(folder: str | os.PathLike):
    """(model, tokenizer, scheme) of an artifact folder, or of a plain FP32 save_pretrained folder."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PrunequantError(f"{folder}: not a model folder (no config.json); run `dvc repro` to build it")
    manifest = read_manifest(folder)
    name = manifest["scheme"] if manifest else "fp32"
    if name not in SCHEME_FAMILY:
        raise PrunequantError(
            f"{folder}/{MANIFEST}: unknown scheme {name!r}; this prunequant knows {', '.join(SCHEME_FAMILY)}")
    scheme = get_scheme(name)
    if manifest and manifest.get("status", "ok") != "ok":
        raise PrunequantError(f"{folder}: not built here ({manifest['status']}); rebuild it with `dvc repro`")
    unavailable = not_available_reason(scheme)
    if unavailable:
        raise PrunequantError(f"{folder}: a {scheme.name} artifact cannot run on this machine ({unavailable})")
    settings = parse_settings(scheme, (manifest or {}).get("settings"), f"{folder}/{MANIFEST}: settings")
    model, tokenizer = scheme.load(folder, settings)
    return model, tokenizer, scheme


def scheme_settings(config: QuantizeConfig, name: str):
    """The validated settings dataclass of scheme ``name`` from ``quantize.settings`` (imports its family)."""
    return parse_settings(get_scheme(name), config.settings.get(name), f"quantize.settings.{name}")

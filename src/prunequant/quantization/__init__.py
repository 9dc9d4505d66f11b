"""Quantization schemes: one registry maps a name to how to build, save and load an artifact.

A scheme is a :class:`Scheme` entry plus a settings dataclass (its knobs in
``params.yaml: quantize.settings.<name>``, validated in ``__post_init__``). Each family of schemes lives
in its own module and registers its entries on import; adding a scheme is one ``register`` call and one
settings dataclass. Heavy libraries (torch, optimum, bitsandbytes, torchao) are imported inside the
functions, so reading the registry (as ``params.yaml`` validation does) stays cheap.

Every artifact is a folder that loads from itself alone: the weights (safetensors or ONNX), the model
config and tokenizer, a manifest (``prunequant.json``: scheme, settings, source) and a model card
(``README.md``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunequant.errors import PrunequantError, did_you_mean

MANIFEST = "prunequant.json"
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class NoSettings:
    """A scheme without knobs: its entry in quantize.settings is ``{}``."""


@dataclass(frozen=True)
class BuildContext:
    """What a build may need beyond the source model: calibration and training data, seed, lengths."""

    train_texts: tuple[str, ...] = ()
    train_labels: tuple[int, ...] = ()
    validation_texts: tuple[str, ...] = ()
    validation_labels: tuple[int, ...] = ()
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
    weights_format: str = "safetensors"  # or "onnx"
    how_to_load: str = ""  # a Python snippet for the model card; {folder} is filled in
    min_cuda_capability: tuple[int, int] | None = None  # e.g. (8, 9): FP8 matmuls need Ada or Hopper
    cpu_kernels: bool = False  # a CUDA scheme whose build and load also run on CPU (slowly): tests use it

    def __post_init__(self) -> None:
        assert self.device in DEVICES, self.device


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
    """The registered scheme ``name``; an unknown name is a one-line error naming the params key."""
    if name not in SCHEMES:
        raise PrunequantError(
            f"params.yaml: {key} has unknown scheme {name!r}{did_you_mean(name, SCHEMES)}; "
            f"known schemes: {', '.join(SCHEMES)}"
        )
    return SCHEMES[name]


class SettingError(PrunequantError):
    """Raised by a settings dataclass; parse_settings prefixes the params key."""


def require(ok: bool, field: str, message: str) -> None:
    """For settings dataclasses' ``__post_init__``: a one-line error about one field."""
    if not ok:
        raise SettingError(f"{field} {message}")


def parse_settings(scheme: Scheme, raw: Any, key: str) -> Any:
    """Validate ``quantize.settings.<scheme>`` into the scheme's settings dataclass."""
    from prunequant.config import build_section

    try:
        return build_section(scheme.settings, raw, key)
    except SettingError as exc:
        raise PrunequantError(f"params.yaml: {key}.{exc.format_message()}") from None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def not_available_reason(scheme: Scheme) -> str | None:
    """Why ``scheme`` cannot run on this machine (the results row's status), or None when it can."""
    if scheme.device == "cuda" and not cuda_available():
        return "n/a: needs CUDA"
    if scheme.min_cuda_capability:
        import torch

        if torch.cuda.get_device_capability() < scheme.min_cuda_capability:
            major, minor = scheme.min_cuda_capability
            return f"n/a: needs a GPU of compute capability {major}.{minor} or newer"
    return None


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of an artifact folder, or None for a plain save_pretrained (FP32) folder."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise PrunequantError(f"{path}: not valid JSON; rebuild the artifact with `dvc repro`") from None


def artifact_size_mb(folder: str | os.PathLike) -> float:
    """Megabytes (10^6 bytes) of every file an artifact needs to run: all but its model card."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file() and p.name != "README.md") / 1e6


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


def load_artifact(folder: str | os.PathLike):
    """(model, tokenizer, scheme) of an artifact folder, or of a plain FP32 save_pretrained folder."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise PrunequantError(f"{folder}: not a model folder (no config.json); run `dvc repro` to build it")
    manifest = read_manifest(folder)
    name = manifest["scheme"] if manifest else "fp32"
    if name not in SCHEMES:
        raise PrunequantError(f"{folder}/{MANIFEST}: unknown scheme {name!r}; this prunequant knows {', '.join(SCHEMES)}")
    scheme = SCHEMES[name]
    if manifest and manifest.get("status", "ok") != "ok":
        raise PrunequantError(f"{folder}: not built here ({manifest['status']}); rebuild it with `dvc repro`")
    unavailable = not_available_reason(scheme)
    if unavailable and not scheme.cpu_kernels:
        raise PrunequantError(f"{folder}: a {scheme.name} artifact cannot run on this machine ({unavailable})")
    settings = parse_settings(scheme, (manifest or {}).get("settings"), f"{folder}/{MANIFEST}: settings")
    model, tokenizer = scheme.load(folder, settings)
    return model, tokenizer, scheme


# The families register their schemes on import; the order here is the order of tables.
from prunequant.quantization import torch_schemes, qat, onnx_schemes, gpu_schemes  # noqa: E402, F401, I001

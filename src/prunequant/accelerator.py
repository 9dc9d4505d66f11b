"""Which accelerator this machine offers PyTorch, found without importing torch (which takes seconds).

The always-changed ``machine`` stage runs on every ``dvc repro``: asking the CUDA driver directly keeps a
no-op ``dvc repro`` fast. CUDA counts as available when the installed torch is a CUDA build and the driver
reports at least one device (``CUDA_VISIBLE_DEVICES`` applies): what ``torch.cuda.is_available()`` says.
``bf16`` says whether the device training runs on (the GPU when there is one, else the CPU) computes
bfloat16 natively; the training stages' ``precision: auto`` resolves from it (:func:`training_precision`),
so the recorded machine and the precision training runs in always agree.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
from pathlib import Path

from prunequant.errors import PrunequantError


def torch_cuda_version(version_file: Path | None = None) -> str | None:
    """The CUDA version the installed torch was built for (``torch.version.cuda``), read from its file."""
    if version_file is None:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            return None
        version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = version_file.read_text()
    except OSError:
        return None
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, flags=re.MULTILINE)
    return match.group(1) if match else None


# CPU flags of native bfloat16 arithmetic (x86: AVX-512 BF16, AMX; Arm: the BF16 extension).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_COMPUTE_CAPABILITY_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR


def _cuda_driver(library: str):
    """The initialised CUDA driver library, or None without a driver."""
    try:
        cuda = ctypes.CDLL(library)
    except OSError:
        return None
    return cuda if cuda.cuInit(0) == 0 else None


def cuda_devices(library: str = "libcuda.so.1") -> list[dict]:
    """``{"name", "major"}`` (compute capability) of each CUDA device the driver reports (empty without one)."""
    cuda, count = _cuda_driver(library), ctypes.c_int(0)
    if cuda is None or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    devices = []
    for ordinal in range(count.value):
        device, name, major = ctypes.c_int(0), ctypes.create_string_buffer(256), ctypes.c_int(0)
        if (cuda.cuDeviceGet(ctypes.byref(device), ordinal) == 0 and cuda.cuDeviceGetName(name, 256, device) == 0
                and cuda.cuDeviceGetAttribute(ctypes.byref(major), _COMPUTE_CAPABILITY_MAJOR, device) == 0):
            devices.append({"name": name.value.decode(errors="replace"), "major": major.value})
    return devices


def cuda_device_names(library: str = "libcuda.so.1") -> list[str]:
    """Names of the CUDA devices the driver reports (empty without a driver or a device)."""
    return [device["name"] for device in cuda_devices(library)]


def cuda_available() -> bool:
    """Whether PyTorch can run on a CUDA device here: what ``torch.cuda.is_available()`` says.

    A process that has imported torch gets torch's own answer: its tensors go where torch says, and torch also
    says no where, say, the driver is too old for its CUDA build. One that has not (the ``machine`` stage) gets
    the driver's, a CUDA build of torch with at least one device, without paying seconds to import torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.is_available()
    return bool(torch_cuda_version()) and bool(cuda_devices())


def cpuinfo_field(names: tuple[str, ...], cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The value of the first ``/proc/cpuinfo`` line named one of ``names`` (``model name``, ``flags``), or None
    where the file or the field is missing (another OS; Arm's lines differ from x86's)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    match = re.search(rf"^(?:{'|'.join(map(re.escape, names))})\s*:(.*)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux ``flags``, or ``Features`` on Arm); empty where the file is missing."""
    return set((cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def native_bf16(cuda: bool, devices: list[dict] | None = None, flags: set[str] | None = None) -> bool:
    """Whether the training device computes bfloat16 natively: a GPU of compute capability >= 8.0 (Ampere
    on), or a CPU with AVX-512 BF16, AMX or Arm's BF16. Elsewhere bfloat16 is emulated and slower than FP32."""
    if cuda:
        devices = cuda_devices() if devices is None else devices
        return bool(devices) and devices[0]["major"] >= 8
    return bool(BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags))


def probe() -> dict:
    """``{"cuda": bool, "gpu": name of device 0 or None, "bf16": native bfloat16 on the training device}``."""
    devices = cuda_devices() if cuda_available() else []
    cuda = bool(devices)
    return {"cuda": cuda, "gpu": devices[0]["name"] if cuda else None, "bf16": native_bf16(cuda, devices)}


# The training stages' precision: mixed precision only (FP32 weights, so the saved model is FP32; the Trainer
# autocasts the compute). auto: bf16 where the training device computes it natively, FP32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def training_precision(requested: str, key: str, machine: dict | None = None) -> tuple[str, str]:
    """``(what requested runs as here: fp32, bf16 or fp16, a line for the log saying why)``.

    ``key`` names the param in errors (``finetune.precision``); ``machine`` is :func:`probe`'s answer (by
    default this machine's, as the ``machine`` stage records it in metrics/machine.json).
    """
    machine = probe() if machine is None else machine
    cuda, native = machine["cuda"], machine["bf16"]
    device = "this GPU" if cuda else "this CPU"
    if requested == "fp16" and not cuda:
        raise PrunequantError(f"{key}: fp16 needs CUDA and this machine has none; set {key}: auto, bf16 or fp32")
    if requested == "bf16" and cuda and not native:
        raise PrunequantError(f"{key}: bf16 needs a GPU of compute capability 8.0 or newer; set {key}: fp16 or fp32")
    if requested == "auto":
        resolved = "bf16" if native else "fp32"
        why = "native bfloat16" if native else "no native bfloat16: falling back to FP32"
        return resolved, f"precision auto -> {resolved} ({device} has {why})"
    if requested == "bf16" and not native:
        return requested, f"precision bf16, emulated: {device} has no native bfloat16, so this is slower than fp32"
    return requested, f"precision {requested}"

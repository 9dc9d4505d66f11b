"""Which accelerator this machine offers PyTorch, found without importing torch (which takes seconds).

The always-changed ``machine`` stage runs on every ``dvc repro``: asking the CUDA driver directly keeps a
no-op ``dvc repro`` fast. CUDA counts as available when the installed torch is a CUDA build and the driver
reports at least one device (``CUDA_VISIBLE_DEVICES`` applies): what ``torch.cuda.is_available()`` says.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
from pathlib import Path


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


def cuda_device_names(library: str = "libcuda.so.1") -> list[str]:
    """Names of the CUDA devices the driver reports (empty without a driver or a device)."""
    try:
        cuda = ctypes.CDLL(library)
    except OSError:
        return []
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    names = []
    for ordinal in range(count.value):
        device, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
        if cuda.cuDeviceGet(ctypes.byref(device), ordinal) == 0 and cuda.cuDeviceGetName(name, 256, device) == 0:
            names.append(name.value.decode(errors="replace"))
    return names


def probe() -> dict:
    """``{"cuda": bool, "gpu": name of device 0 or None}``, as torch would see it."""
    names = cuda_device_names() if torch_cuda_version() else []
    return {"cuda": bool(names), "gpu": names[0] if names else None}

"""What a benchmark ran on: the CPU and its instruction sets, cores and threads, the hypervisor, the time stolen by
it during the run, and the runtimes' versions (``metrics/bench/<device>-machine.json``), and the one-line summary
the report prints beside its recommendation. Imports nothing heavy: the report reads it too."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path

from prunequant.accelerator import cpu_flags, cpuinfo_field, cuda_available

# The instruction sets INT8 and bf16 kernels differ by (Linux flag names): what a recommendation transfers with.
ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512 F", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
             "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX", "amx_int8": "AMX INT8", "amx_bf16": "AMX BF16"}
RUNTIMES = ("torch", "onnxruntime", "openvino", "transformers")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    name = cpuinfo_field(("model name",), cpuinfo)
    return (platform.processor() or platform.machine()) if name is None else name


def available_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> float:
    """MemAvailable in MB (10^6 bytes): what can be loaded without swapping; unbounded where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError):
        pass
    return float("inf")


def cpu_times(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot (Linux), or None where /proc/stat is missing."""
    try:
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return fields[7] if len(fields) == 8 else 0, sum(fields)


def steal_percent(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """The share of CPU time the hypervisor gave to other guests between two :func:`cpu_times` readings."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return round(100 * (end[0] - start[0]) / (end[1] - start[1]), 2)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(device: str, threads: int, steal: float | None = None, flags: set[str] | None = None) -> dict:
    """What the figures were measured on: CPU, its instruction sets, cores, threads, hypervisor, the steal time
    over the run, GPU and driver, and the runtimes' versions."""
    flags = cpu_flags() if flags is None else flags
    info = {"device": device, "cpu": cpu_name(), "cores": usable_cores(), "logical_cpus": os.cpu_count(),
            "threads": threads, "isa": {name: name in flags for name in ISA_FLAGS},
            "hypervisor": "hypervisor" in flags, "steal_percent": steal,
            "python": platform.python_version(), **{name: _version(name) for name in RUNTIMES},
            "gpu": None, "cuda": None, "driver": None,
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device == "cuda":
        import torch

        info["cuda"] = torch.version.cuda
        if cuda_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            info["driver"] = _nvidia_driver()
    return info


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def machine_summary(info: dict) -> str:
    """One line: 'AMD EPYC, 2 cores (2 threads), AVX2, AVX-512 F/VNNI/BF16, no AMX, virtual machine (steal 0.3%);
    torch 2.13.0+cpu, onnxruntime 1.32.0, openvino 2025.3.0'. Older files without the ISA fields say so."""
    where = info.get("gpu") if info.get("device") == "cuda" and info.get("gpu") else info.get("cpu")
    parts = [f"{where}, {info.get('cores')} cores ({info.get('threads')} threads)"]
    isa = info.get("isa")
    if isa is None:
        parts.append("instruction sets not recorded (timed before they were)")
    else:
        have = [label for name, label in ISA_FLAGS.items() if isa.get(name) and name not in ("amx_int8", "amx_bf16")]
        avx512 = [label.removeprefix("AVX-512 ") for label in have if label.startswith("AVX-512")]
        shown = [label for label in have if not label.startswith("AVX-512")]
        if avx512:
            shown.insert(1 if "AVX2" in shown else 0, "AVX-512 " + "/".join(avx512))
        parts.append(", ".join(shown) or "no AVX2")
        if not isa.get("amx_tile"):
            parts.append("no AMX")
    if info.get("hypervisor") is not None:
        steal = info.get("steal_percent")
        vm = "virtual machine" if info["hypervisor"] else "bare metal"
        parts.append(vm + ("" if steal is None else f" (steal {steal:g}% during the run)"))
    versions = ", ".join(f"{name} {info[name]}" for name in RUNTIMES[:3] if info.get(name))
    when = f", {info['measured_at']}" if info.get("measured_at") else ""
    return ", ".join(parts) + (f"; {versions}" if versions else "") + when

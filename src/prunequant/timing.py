"""Timing and memory primitives of the benchmarks: warm-up then single timed calls, CPU and CUDA timers,
latency percentiles, and the process's resident-set figures."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def time_calls(call: Callable[[], Any], timer: Callable[[Callable[[], Any]], float], *, warmup: int, runs: int,
               min_runs: int, max_seconds: float, min_warmup: int = 1) -> list[float]:
    """Milliseconds of each timed call: ``warmup`` untimed calls (stopped after max_seconds / 4, but never
    below ``min_warmup``: compiled runtimes record their graphs in the first calls), then up to ``runs``
    timed calls, stopping once max_seconds of timed calls have passed and at least min_runs were made."""
    start = time.perf_counter()
    for i in range(max(warmup, min_warmup)):
        call()
        if i + 1 >= min_warmup and time.perf_counter() - start > max_seconds / 4:
            break
    times: list[float] = []
    while len(times) < runs:
        times.append(timer(call))
        if len(times) >= min_runs and sum(times) > 1000 * max_seconds:
            break
    return times


def cpu_timer(call: Callable[[], Any]) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def cuda_timer(call: Callable[[], Any]) -> float:
    """One call between two CUDA events, synchronised: the latency a caller waiting for the result sees."""
    import torch

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    call()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end)


def summarise(times: list[float], batch_size: int) -> dict:
    """Latency percentiles (numpy's linear interpolation), mean and throughput at the median of one point's runs."""
    import numpy as np

    p50, p90, p99 = (float(v) for v in np.percentile(times, [50, 90, 99]))
    return {
        "latency_ms_p50": round(p50, 4),
        "latency_ms_p90": round(p90, 4),
        "latency_ms_p99": round(p99, 4),
        "latency_ms_mean": round(statistics.fmean(times), 4),
        "throughput_per_s": round(1000 * batch_size / p50, 2),
        "runs": len(times),
    }


def _status_mb(field: str) -> float:
    """A memory figure of /proc/self/status (VmRSS, VmHWM) in MB (10^6 bytes); elsewhere the peak RSS."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False

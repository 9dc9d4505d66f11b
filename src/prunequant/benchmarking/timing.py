"""Timing and memory primitives of the benchmarks: warm-up then single timed calls, CPU and CUDA timers,
latency percentiles, and the process's resident-set figures."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
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


# A tail percentile is reported only when at least this many calls lie beyond it (p90: 50 calls, p99: 500);
# from fewer, the "p99" is just the slowest call or two, so it is left empty (NaN) rather than shown.
MIN_CALLS_BEYOND = 5


def tail_percentile(times: list[float], q: float) -> float:
    """The q-th percentile of the call times (numpy's linear interpolation), or NaN when fewer than
    MIN_CALLS_BEYOND calls lie beyond it."""
    import numpy as np

    if len(times) * (100 - q) / 100 < MIN_CALLS_BEYOND - 1e-9:
        return float("nan")
    return round(float(np.percentile(times, q)), 4)


@contextmanager
def gc_paused():
    """The garbage collector off for a timed block (after a collection): a collection cycle landing in one call
    would show as a slow call of the model."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


def summarise_rounds(rounds: list[list[float]], batch_size: int) -> dict:
    """One point's figures from the call times (ms) of each round it was timed in: the median of the rounds'
    p50s (what a user typically sees), the best and the worst round's p50 (interference from other work only
    ever adds time, so the best round is the steadiest estimate of what the variant costs, and best..worst is
    the run-to-run spread), each round's p50, and p90/p99 (see :func:`tail_percentile`) and the mean over all
    timed calls. Throughput is at the best round's p50."""
    import numpy as np

    p50s = [float(np.percentile(times, 50)) for times in rounds]
    every = [t for times in rounds for t in times]
    best = min(p50s)
    return {
        "latency_ms_p50": round(float(np.median(p50s)), 4),
        "latency_ms_best": round(best, 4),
        "latency_ms_worst": round(max(p50s), 4),
        "latency_ms_p90": tail_percentile(every, 90),
        "latency_ms_p99": tail_percentile(every, 99),
        "latency_ms_mean": round(statistics.fmean(every), 4),
        "throughput_per_s": round(1000 * batch_size / best, 2),
        "runs": len(every),
        "rounds": len(p50s),
        "round_p50s_ms": ";".join(f"{v:.4f}" for v in p50s),
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

"""Where a stage's wall time goes: the process's start-up and imports (before the command runs), model loading
(:func:`phase` "loading" around every model and tokenizer load) and the rest, the work itself. Every stage prints
one ``stage-time:`` line when it ends (:class:`prunequant.errors.StageCommand`); ``bench/stage_times.py`` collects
them from a whole ``dvc repro`` into a per-stage table."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

SPENT: dict[str, float] = defaultdict(float)
_open: list[str] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the time inside under ``name`` (a load inside a load counts once)."""
    start = time.perf_counter()
    _open.append(name)
    try:
        yield
    finally:
        _open.pop()
        if name not in _open:
            SPENT[name] += time.perf_counter() - start


def process_age() -> float | None:
    """Seconds since this process started (from /proc: interpreter start-up and imports included); None off
    Linux."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return float(uptime.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


def stage_time_line(script: str, startup: float | None, run: float) -> str:
    """``stage-time: <script> start-up 8.1 s, loading 1.3 s, work 20.2 s`` (start-up: n/a off Linux)."""
    loading = SPENT.get("loading", 0.0)
    first = "n/a" if startup is None else f"{startup:.1f} s"
    return f"stage-time: {script} start-up {first}, loading {loading:.1f} s, work {max(run - loading, 0.0):.1f} s"

"""Running benchmark jobs in worker processes: each target in a fresh process forked from a server that has
already imported torch and ONNX Runtime (a clean heap, its own thread pools, no import time), its rounds interleaved
with every other target's (:func:`run_jobs`), in groups that fit the memory budget."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunequant.benchmarking.runner import Runner, _why, rows_of
from prunequant.benchmarking.targets import Job
from prunequant.host import available_memory_mb


def _serve(job: Job, conn, work: str) -> None:
    """A worker process: load the target (random weights: built under ``work``, shared by the targets of one
    shape), say so, then time one round per request until told to stop."""
    try:
        runner = Runner(job, Path(work))
    except Exception as exc:
        conn.send(("failed", _why(exc)))
        return
    conn.send(("ready", runner.layers))
    while request := conn.recv():  # True: every point; a tuple: only those points
        conn.send(("round", runner.time_round(None if request is True else request)))


WORKER_PRELOAD = ["torch", "transformers", "transformers.models.auto.modeling_auto",
                  "transformers.models.bert.modeling_bert", "onnxruntime", "torchao", "prunequant.quantization.every"]
DIED = "n/a: the worker process died (crash or out of memory)"


def round_order(ids: list[int], round_index: int, seed: int) -> list[int]:
    """The order targets are timed in one round: a shuffle of ``ids`` drawn anew for each round (reproducible from
    the seed), so that no target always follows the same one or always runs first."""
    import random

    order = sorted(ids)
    random.Random(seed * 1000 + round_index).shuffle(order)
    return order


def plan_groups(jobs: list[Job], budget_mb: float) -> tuple[list[int], list[list[int]]]:
    """(the reference targets, groups of the others): the references (table.REFERENCES) stay loaded
    throughout; the others are packed, in order, into groups whose estimated memory (Target.memory_mb) fits
    the budget next to the references. A target larger than what is left is a group of its own."""
    runnable = [i for i, job in enumerate(jobs) if not job.target.note]
    references = [i for i in runnable if jobs[i].target.is_reference()]
    left = budget_mb - sum(jobs[i].target.memory_mb() for i in references)
    groups: list[list[int]] = []
    used = 0.0
    for i in (i for i in runnable if i not in references):
        need = jobs[i].target.memory_mb()
        if not groups or (groups[-1] and used + need > left):
            groups.append([])
            used = 0.0
        groups[-1].append(i)
        used += need
    return references, groups or [[]]


class _Workers:
    """The worker processes of the targets loaded now, one each, forked from a server that preloaded torch."""

    def __init__(self, jobs: list[Job], progress: Callable[[str], None], work: str):
        import multiprocessing

        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(WORKER_PRELOAD)
        self.jobs, self.progress, self.work = jobs, progress, work
        self.loaded: dict[int, tuple[Any, Any]] = {}
        self.layers: dict[int, Any] = {}
        self.notes: dict[int, str] = {i: job.target.note for i, job in enumerate(jobs) if job.target.note}

    def load(self, ids: list[int]) -> None:
        for i in ids:
            job, start = self.jobs[i], time.perf_counter()
            parent, child = self.context.Pipe()
            process = self.context.Process(target=_serve, args=(job, child, self.work), daemon=True)
            process.start()
            child.close()
            try:
                status, value = parent.recv()
            except EOFError:
                status, value = "failed", DIED
            if status == "failed":
                self.notes[i] = value
                process.join()
                self.progress(f"  {job.target.variant:42s} {job.target.runtime:16s} {value}")
                continue
            self.loaded[i], self.layers[i] = (process, parent), value
            self.progress(f"  {job.target.variant:42s} {job.target.runtime:16s} loaded in "
                          f"{time.perf_counter() - start:.1f} s")

    def time_round(self, i: int, points: tuple[tuple[int, int], ...] | None = None) -> list[dict] | None:
        """One round of target i (every point, or only ``points``), or None (and a note) when its worker has
        died."""
        try:
            self.loaded[i][1].send(points or True)
            return self.loaded[i][1].recv()[1]
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.notes[i] = DIED
            self.stop([i])
            return None

    def stop(self, ids: list[int]) -> None:
        for i in ids:
            if i not in self.loaded:
                continue
            process, conn = self.loaded.pop(i)
            try:
                conn.send(False)
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


Final = Callable[[list[dict]], tuple[list[int], tuple[int, int]]]


def run_jobs(jobs: list[Job], progress: Callable[[str], None], rounds: int = 1, seed: int = 0,
             max_memory_mb: float = float("inf"), final: Final | None = None, final_rounds: int = 0) -> list[dict]:
    """Time every job in ``rounds`` interleaved rounds per group (:func:`plan_groups`, under ``max_memory_mb``
    and half the memory available now). Each target is loaded once, in its own worker process (a clean heap,
    its own thread pools, no import time); a round times every loaded target once, in an order shuffled anew
    each round, so that the machine's slow phases spread over all of them. The reference targets stay loaded
    and are timed in every round of every group: each row records the numbers of the rounds it was timed in,
    which pair it with the references (and with every target of its group). A worker that dies (a segfault,
    the OOM killer) gives rows saying so.

    ``final``: given the rows so far, the jobs a decision hinges on and the point it reads; they are loaded
    together with the references and timed side by side at that point only, ``final_rounds`` more rounds, which
    their rows at that point add to their own."""
    budget = min(max_memory_mb, available_memory_mb() / 2)
    references, groups = plan_groups(jobs, budget)
    progress(f"  memory plan: {len(references)} reference targets kept loaded, the other targets in "
             f"{len(groups)} group(s) under {budget:.0f} MB (estimated)")
    timed: dict[int, list[list[dict]]] = {i: [] for i in range(len(jobs))}
    ids: dict[int, list[int]] = {i: [] for i in range(len(jobs))}
    work = tempfile.TemporaryDirectory(prefix="prunequant-bench-")
    workers = _Workers(jobs, progress, work.name)
    number = 0

    def time_rounds(members: list[int], count: int, label: str, points=None) -> None:
        nonlocal number
        order = sorted(i for i in members if i in workers.loaded)
        for _ in range(count):
            start = time.perf_counter()
            order = round_order(order, number, seed)
            for i in list(order):
                result = workers.time_round(i, points)
                if result is None:
                    order.remove(i)
                    continue
                timed[i].append(result)
                ids[i].append(number)
            progress(f"  {label}, round {number + 1}: {len(order)} targets in {time.perf_counter() - start:.1f} s")
            number += 1

    def rows() -> list[dict]:
        return [row for i, job in enumerate(jobs)
                for row in rows_of(job, workers.layers.get(i, ""), timed[i], workers.notes.get(i, ""), ids[i])]

    try:
        workers.load(references)
        for g, group in enumerate(groups):
            workers.load(group)
            time_rounds(references + group, rounds, f"group {g + 1}/{len(groups)}")
            workers.stop(group)
        if final is not None and final_rounds:
            chosen, point = final(rows())
            chosen = [i for i in chosen if i not in references and i not in workers.notes]
            if chosen:
                progress(f"  final rounds at batch {point[0]} x {point[1]} tokens: "
                         + ", ".join(f"{jobs[i].target.variant} ({jobs[i].target.runtime})" for i in chosen))
                workers.load(chosen)
                time_rounds(references + chosen, final_rounds, "final", (point,))
    finally:
        workers.stop(list(workers.loaded))
        work.cleanup()
    return rows()

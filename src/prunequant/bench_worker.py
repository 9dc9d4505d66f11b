"""Running benchmark jobs: each target in a fresh worker process forked from a server that has already
imported torch and ONNX Runtime (a clean heap, its own thread pools, no import time), timed at each
(batch size, sequence length) point with the primitives of :mod:`prunequant.timing`."""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunequant.bench import SHAPES, Job, parse_shape
from prunequant.evaluation import forward_inputs
from prunequant.modeling import load_tokenizer, num_layers
from prunequant.quantization import (
    BuildContext,
    load_artifact,
    parse_settings,
    write_manifest,
)
from prunequant.quantization.every import every_scheme
from prunequant.timing import (
    cpu_timer,
    cuda_timer,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    summarise_rounds,
    time_calls,
)


def save_random_model(shape: str, folder: Path, seed: int = 0) -> None:
    """A BERT classifier of the given architecture with random weights, saved as a model folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    name, layers = parse_shape(shape)
    torch.manual_seed(seed)
    config = BertConfig(**{**SHAPES[name], "num_hidden_layers": layers}, vocab_size=30522, num_labels=2)
    BertForSequenceClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    load_tokenizer("minilm-l6").save_pretrained(folder)  # the uncased WordPiece vocabulary of bert-base


def _build_random(job: Job, work: Path) -> Path:
    """Build the target's scheme from a random-weight model of its shape under ``work`` and return the artifact
    folder; what an earlier target of the same shape (and scheme) built there is reused, not built again."""
    shape = work / job.target.folder.replace(":", "-")
    source = shape / "source"
    if not (source / "config.json").is_file():
        save_random_model(job.target.folder, source, seed=job.seed)
    scheme = every_scheme()[job.target.precision]
    if scheme.name == "fp32":
        return source
    out = shape / scheme.name
    if not (out / "prunequant.json").is_file():
        settings = parse_settings(scheme, job.settings, f"quantize.settings.{scheme.name}")
        out.mkdir()
        scheme.build(source, out, settings, BuildContext(train_texts=job.texts, seed=job.seed))
        write_manifest(out, scheme, settings, job.target.folder, "ok")
    return out


FIXED = "-fixed"  # a runtime name's suffix: one model compiled for each point's exact input shape
ONNX_RUNTIMES = ("onnxruntime", "onnxruntime" + FIXED)
OPENVINO_RUNTIMES = ("openvino", "openvino" + FIXED)


def _ort_calls(folder: Path, threads: int, fixed: bool) -> Callable[[dict], Callable[[], Any]]:
    """inputs -> a call of an ONNX Runtime session; ``fixed``: a session per input shape with the graph's
    free dimensions (batch_size, sequence_length) fixed, so ORT plans memory and kernels for that shape."""
    import onnxruntime as ort

    def session(shape=None):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if shape:
            options.add_free_dimension_override_by_name("batch_size", shape[0])
            options.add_free_dimension_override_by_name("sequence_length", shape[1])
        return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    shared = None if fixed else session()

    def prepare(inputs):
        s = session(inputs["input_ids"].shape) if fixed else shared
        feed = {i.name: inputs[i.name] for i in s.get_inputs()}
        return lambda: s.run(None, feed)

    return prepare


def _openvino_calls(folder: Path, threads: int, fixed: bool) -> Callable[[dict], Callable[[], Any]]:
    """inputs -> a call of an OpenVINO infer request (LATENCY hint, ``threads`` inference threads); ``fixed``: the
    model reshaped to each point's input shape and compiled for it, else one compiled model with dynamic shapes."""
    from prunequant.quantization.openvino_schemes import compile_openvino

    shared = None if fixed else compile_openvino(folder, threads)

    def prepare(inputs):
        compiled = compile_openvino(folder, threads, inputs["input_ids"].shape) if fixed else shared
        request = compiled.create_infer_request()
        feed = {port.any_name: inputs[port.any_name] for port in compiled.inputs}
        return lambda: request.infer(feed)

    return prepare


def _model_device(model) -> str:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device.type
    return "cpu"


def cuda_graph_call(model, inputs: dict) -> Callable[[], Any]:
    """Capture one forward pass at these input shapes as a CUDA graph; each call copies the inputs into
    the graph's static buffers and replays it (no kernel launches from Python)."""
    import torch

    def graphable(key, value):
        # BERT's SDPA path checks a 2-D mask for "all ones" on the host, which capture forbids; a 3-D
        # [batch, query, key] mask takes the additive-mask path instead (same attention, no sync).
        if key == "attention_mask" and value.dim() == 2:
            return value[:, None, :].expand(-1, value.shape[1], -1)
        return value

    inputs = {k: graphable(k, v) for k, v in inputs.items()}
    static = {k: v.clone() for k, v in inputs.items()}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up on a side stream, as torch.cuda.graphs asks
        for _ in range(3):
            model(**static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(**static)

    def call():
        for key, value in inputs.items():
            static[key].copy_(value, non_blocking=True)
        graph.replay()
        return out.logits

    return call


def _torch_calls(model, runtime: str):
    """A function (inputs -> callable) that prepares one point for the runtime."""
    import torch

    if runtime == "eager":
        return lambda inputs: (lambda: model(**inputs).logits)
    if runtime == "cudagraph":
        return lambda inputs: cuda_graph_call(model, inputs)
    if runtime == "compile":
        torch._dynamo.config.cache_size_limit = 64  # one graph per (batch, length) point
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
        return lambda inputs: (lambda: compiled(**inputs).logits)
    raise ValueError(runtime)


class Runner:
    """One target, loaded once: :meth:`time_round` times every point (warm-up, then timed calls within the
    point's budget) and returns each point's call times. Rounds of all targets are interleaved by
    :func:`run_jobs`, so a slow phase of the machine spreads over every variant instead of landing on one."""

    def __init__(self, job: Job, work: Path):
        import torch

        self.job, target = job, job.target
        torch.set_num_threads(job.threads)
        self.cuda = target.device == "cuda"
        self.layers: Any = ""
        self.calls: dict[tuple[int, int], Callable[[], Any]] = {}
        self.failed: dict[tuple[int, int], str] = {}
        folder = _build_random(job, work) if target.weights == "random" else Path(target.folder)
        self.rss_before = rss_mb()  # after any build: what loading and running the artifact adds
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if target.runtime in ONNX_RUNTIMES + OPENVINO_RUNTIMES:
            calls = _ort_calls if target.runtime in ONNX_RUNTIMES else _openvino_calls
            self.layers = AutoConfig.from_pretrained(folder).num_hidden_layers
            self.prepare = calls(folder, job.threads, fixed=target.runtime.endswith(FIXED))
            self.tensors = "np"
        else:
            model, _, _ = load_artifact(folder)
            if _model_device(model) != target.device:
                model = model.to(target.device)
            self.model = model.eval()
            self.layers = num_layers(model)
            self.prepare = _torch_calls(self.model, target.runtime)
            self.tensors = "pt"

    def _inputs(self, batch_size: int, seq_len: int) -> dict:
        job = self.job
        texts = [job.texts[i % len(job.texts)] for i in range(batch_size)]  # sentences, or (text, text_pair) tuples
        encoded = self.tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len,
                                 return_tensors=self.tensors)
        inputs = dict(encoded)
        if self.tensors == "pt":  # only what the forward takes (DistilBERT: no token_type_ids)
            return {k: v.to(self.job.target.device) for k, v in forward_inputs(self.model, inputs).items()}
        return {k: v.astype("int64") for k, v in inputs.items()}

    def time_round(self) -> list[dict]:
        """{"point", "times" (ms of each timed call) or "note", "peak_mem_mb"} for every point, in order."""
        import torch

        job, out = self.job, []
        compiled = self.job.target.runtime in ("cudagraph", "compile")
        for point in job.points:
            if point in self.failed:
                out.append({"point": point, "note": self.failed[point]})
                continue
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            reset_peak_rss()
            try:
                with torch.inference_mode():
                    if point not in self.calls:  # a captured graph, a compiled or fixed-shape model: once
                        self.calls[point] = self.prepare(self._inputs(*point))
                    times = time_calls(self.calls[point], cuda_timer if self.cuda else cpu_timer,
                                       warmup=job.warmup, runs=job.runs, min_runs=job.min_runs,
                                       max_seconds=job.max_seconds, min_warmup=3 if compiled else 1)
            except Exception as exc:
                self.failed[point] = _why(exc)
                self.calls.pop(point, None)
                out.append({"point": point, "note": self.failed[point]})
                continue
            # On CPU, what the resident set grew by since before loading; memory the process freed meanwhile (the
            # random-weight build, garbage) can leave it below that mark, which counts as no growth, never as less.
            peak = torch.cuda.max_memory_allocated() / 1e6 if self.cuda else max(0.0, peak_rss_mb() - self.rss_before)
            out.append({"point": point, "times": times, "peak_mem_mb": peak})
        return out


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"n/a: {type(exc).__name__}: {text}"


def _base_row(target) -> dict:
    import torch

    cuda = target.device == "cuda" and torch.cuda.is_available()
    return {"variant": target.variant, "precision": target.precision, "runtime": target.runtime,
            "device": target.device, "device_name": torch.cuda.get_device_name(0) if cuda else cpu_name(),
            "weights": target.weights, "family": target.family}


def rows_of(job: Job, layers: Any, rounds: list[list[dict]], note: str = "") -> list[dict]:
    """The CSV rows of one target from the points of each round it was timed in (``rounds``, in round order);
    every point's row says why it has no figures when it has none."""
    base = _base_row(job.target)
    rows = []
    for i, point in enumerate(job.points):
        per_round = [r[i] for r in rounds]
        timed = [r for r in per_round if "times" in r]
        row = base | {"layers": layers, "batch_size": point[0], "seq_len": point[1]}
        if note or not timed:
            notes = [r.get("note") for r in per_round if r.get("note")]
            rows.append(row | {"note": note or (notes[0] if notes else "n/a: not timed")})
            continue
        rows.append(row | summarise_rounds([r["times"] for r in timed], point[0])
                    | {"peak_mem_mb": round(max(r["peak_mem_mb"] for r in timed), 1), "note": ""})
    return rows


def run_job(job: Job, rounds: int = 1) -> list[dict]:
    """Time one target in this process, ``rounds`` rounds in a row; rows follow COLUMNS (for tests and one-off
    use: :func:`run_jobs` interleaves the rounds of many targets, each in its own process)."""
    if job.target.note:
        return rows_of(job, "", [], job.target.note)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            runner = Runner(job, Path(tmp))
        except Exception as exc:  # a row saying why, never a crash of the whole benchmark
            return rows_of(job, "", [], _why(exc))
        return rows_of(job, runner.layers, [runner.time_round() for _ in range(rounds)])


def _serve(job: Job, conn, work: str) -> None:
    """A worker process: load the target (random weights: built under ``work``, shared by the targets of one
    shape), say so, then time one round per request until told to stop."""
    try:
        runner = Runner(job, Path(work))
    except Exception as exc:
        conn.send(("failed", _why(exc)))
        return
    conn.send(("ready", runner.layers))
    while conn.recv():
        conn.send(("round", runner.time_round()))


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


def run_jobs(jobs: list[Job], progress: Callable[[str], None], rounds: int = 1, seed: int = 0) -> list[dict]:
    """Time every job in ``rounds`` interleaved rounds. Each target is loaded once, in its own worker process
    forked from a server that preloaded torch (a clean heap, its own thread pools, no import time); a round
    times every target once, in an order shuffled anew each round, so that the machine's slow phases spread
    over all variants. A worker that dies (a segfault, the OOM killer) gives rows saying so."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    workers: dict[int, tuple[Any, Any]] = {}
    layers: dict[int, Any] = {}
    notes: dict[int, str] = {i: job.target.note for i, job in enumerate(jobs) if job.target.note}
    timed: dict[int, list[list[dict]]] = {i: [] for i in range(len(jobs))}
    work = tempfile.TemporaryDirectory(prefix="prunequant-bench-")
    try:
        for i, job in enumerate(jobs):
            if i in notes:
                continue
            start = time.perf_counter()
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(job, child, work.name), daemon=True)
            process.start()
            child.close()
            try:
                status, value = parent.recv()
            except EOFError:
                status, value = "failed", DIED
            if status == "failed":
                notes[i] = value
                process.join()
                progress(f"  {job.target.variant:42s} {job.target.runtime:16s} {value}")
                continue
            workers[i], layers[i] = (process, parent), value
            progress(f"  {job.target.variant:42s} {job.target.runtime:16s} loaded in "
                     f"{time.perf_counter() - start:.1f} s")
        order = sorted(workers)
        for r in range(rounds):
            start = time.perf_counter()
            order = round_order(order, r, seed)
            for i in list(order):
                process, conn = workers[i]
                try:
                    conn.send(True)
                    timed[i].append(conn.recv()[1])
                except (EOFError, BrokenPipeError, ConnectionResetError):
                    notes[i] = DIED
                    order.remove(i)
            progress(f"  round {r + 1}/{rounds}: {len(order)} targets in {time.perf_counter() - start:.1f} s")
    finally:
        for process, conn in workers.values():
            try:
                conn.send(False)
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        work.cleanup()
    rows: list[dict] = []
    for i, job in enumerate(jobs):
        rows.extend(rows_of(job, layers.get(i, ""), timed[i], notes.get(i, "")))
    return rows


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str, threads: int) -> dict:
    """What the figures were measured on: CPU, threads, GPU, driver and library versions."""
    import onnxruntime
    import torch
    import transformers

    info = {"device": device, "cpu": cpu_name(), "cores": usable_cores(), "threads": threads,
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__,
            "gpu": None, "cuda": torch.version.cuda, "driver": None,
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        try:
            import subprocess

            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    return info

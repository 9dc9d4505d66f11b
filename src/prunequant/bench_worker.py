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
    summarise,
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
    """Build the target's scheme from a random-weight model of its shape; return the artifact folder."""
    source = work / "source"
    save_random_model(job.target.folder, source, seed=job.seed)
    scheme = every_scheme()[job.target.precision]
    if scheme.name == "fp32":
        return source
    settings = parse_settings(scheme, job.settings, f"quantize.settings.{scheme.name}")
    out = work / "artifact"
    out.mkdir()
    scheme.build(source, out, settings, BuildContext(train_texts=job.texts, seed=job.seed))
    write_manifest(out, scheme, settings, job.target.folder, "ok")
    return out


def _ort_session(folder: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


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


def run_job(job: Job) -> list[dict]:
    """Time one target at every point; rows follow COLUMNS. Runs inside a fresh worker process."""
    import torch
    from transformers import AutoTokenizer

    target = job.target
    torch.set_num_threads(job.threads)
    cuda = target.device == "cuda"
    device_name = torch.cuda.get_device_name(0) if cuda else cpu_name()
    base = {"variant": target.variant, "precision": target.precision, "runtime": target.runtime,
            "device": target.device, "device_name": device_name, "weights": target.weights,
            "family": target.family}

    def empty_rows(note: str, layers: Any = "") -> list[dict]:
        return [base | {"layers": layers, "batch_size": b, "seq_len": s, "note": note} for b, s in job.points]

    if target.note:
        return empty_rows(target.note)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = _build_random(job, Path(tmp)) if target.weights == "random" else Path(target.folder)
            rss_before = rss_mb()  # after any build: what loading and running the artifact adds
            tokenizer = AutoTokenizer.from_pretrained(folder)
            if target.runtime == "onnxruntime":
                from transformers import AutoConfig

                session = _ort_session(folder, job.threads)
                layers = AutoConfig.from_pretrained(folder).num_hidden_layers
                names = [i.name for i in session.get_inputs()]
                prepare = lambda inputs: (lambda: session.run(None, {k: inputs[k] for k in names}))  # noqa: E731
            else:
                model, _, _ = load_artifact(folder)
                if _model_device(model) != target.device:
                    model = model.to(target.device)
                layers = num_layers(model)
                prepare = _torch_calls(model.eval(), target.runtime)
        except Exception as exc:  # a row saying why, never a crash of the whole benchmark
            return empty_rows(f"n/a: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
        rows = []
        for batch_size, seq_len in job.points:
            texts = [job.texts[i % len(job.texts)] for i in range(batch_size)]
            tensors = "np" if target.runtime == "onnxruntime" else "pt"
            inputs = dict(tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len,
                                    return_tensors=tensors))
            if tensors == "pt":  # only what the forward takes (DistilBERT: no token_type_ids)
                inputs = {k: v.to(target.device) for k, v in forward_inputs(model, inputs).items()}
            else:
                inputs = {k: v.astype("int64") for k, v in inputs.items()}
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            reset_peak_rss()
            try:
                with torch.inference_mode():
                    call = prepare(inputs)
                    times = time_calls(call, cuda_timer if cuda else cpu_timer, warmup=job.warmup, runs=job.runs,
                                       min_runs=job.min_runs, max_seconds=job.max_seconds,
                                       min_warmup=3 if target.runtime in ("cudagraph", "compile") else 1)
            except Exception as exc:
                rows.append(base | {"layers": layers, "batch_size": batch_size, "seq_len": seq_len,
                                    "note": f"n/a: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"})
                continue
            peak = torch.cuda.max_memory_allocated() / 1e6 if cuda else peak_rss_mb() - rss_before
            rows.append(base | {"layers": layers, "batch_size": batch_size, "seq_len": seq_len,
                                "peak_mem_mb": round(peak, 1), "note": ""} | summarise(times, batch_size))
            del call
        return rows


WORKER_PRELOAD = ["torch", "transformers", "transformers.models.auto.modeling_auto",
                  "transformers.models.bert.modeling_bert", "onnxruntime", "torchao", "prunequant.quantization.every"]


def run_jobs(jobs: list[Job], progress: Callable[[Job, list[dict], float], None]) -> list[dict]:
    """Run each job in its own worker process (forked from a server that preloaded torch); in order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    from concurrent.futures.process import BrokenProcessPool

    rows: list[dict] = []
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1)
    try:
        for job in jobs:
            start = time.perf_counter()
            try:
                result = pool.submit(run_job, job).result()
            except BrokenProcessPool:  # the worker died (a segfault, the OOM killer): say so, go on
                pool.shutdown(wait=False)
                pool = ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1)
                failed = dataclasses.replace(job.target, note="n/a: the worker process died (crash or out of memory)")
                result = run_job(dataclasses.replace(job, target=failed))
            progress(job, result, time.perf_counter() - start)
            rows.extend(result)
    finally:
        pool.shutdown()
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

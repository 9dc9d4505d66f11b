"""Latency, throughput and memory of every artifact, measured the way inference benchmarks do.

Each target (one artifact, or one random-weight architecture, in one runtime) runs in a fresh worker
process forked from a server that has already imported torch and ONNX Runtime: every target starts with
a clean heap, its own thread pools and no other model's pages, and pays no import time. At each
(batch size, sequence length) point the worker warms up, then times single calls (CUDA events around
each call on GPU), and records the peak memory of that point: the CUDA allocator's peak on GPU, the growth
of the process's resident set since before the model was loaded on CPU (the kernel's high-water mark,
reset at each point).

Inputs are real tokenized sentences of the test split, padded (or truncated) to the point's length.
This module imports nothing heavy at import time: ``params.yaml`` validation reads ``SHAPES`` from it.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunequant.errors import PrunequantError, did_you_mean

# Architectures for `bench.weights: random` (BertConfig fields; the vocabulary is bert-base-uncased's).
SHAPES: dict[str, dict[str, int]] = {
    "bert-base-uncased": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072},
    "bert-large-uncased": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                           "intermediate_size": 4096},
    "minilm-l6": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}

COLUMNS = [
    "variant", "precision", "runtime", "layers", "device", "device_name", "batch_size", "seq_len",
    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_mean", "throughput_per_s", "peak_mem_mb",
    "runs", "weights", "family", "note",
]
# Schemes that cannot be built from random weights: their weights come from training on the data.
NEEDS_TRAINING = ("int8-qat",)


def parse_shape(text: str, key: str = "bench.shapes") -> tuple[str, int]:
    """'bert-base-uncased:8' -> ('bert-base-uncased', 8); the layer count defaults to the full depth."""
    name, _, layers = str(text).partition(":")
    if name not in SHAPES:
        raise PrunequantError(
            f"params.yaml: {key} names unknown architecture {name!r}{did_you_mean(name, SHAPES)}; "
            f"known: {', '.join(SHAPES)} (write <name> or <name>:<layers>)"
        )
    full = SHAPES[name]["num_hidden_layers"]
    if not layers:
        return name, full
    if not layers.isdigit() or not 1 <= int(layers) <= full:
        raise PrunequantError(f"params.yaml: {key} is {text!r}; the layer count after ':' must be 1 to {full}")
    return name, int(layers)


@dataclass(frozen=True)
class Target:
    """One thing to time: a model folder (or a random-weight shape) with one scheme, in one runtime."""

    variant: str  # row name: baseline, pruned-3-onnx-int8-dynamic, bert-base-uncased:8-fp16, ...
    precision: str  # the scheme name (fp32 for plain models)
    runtime: str  # eager, cudagraph, compile or onnxruntime
    device: str  # cpu or cuda
    family: str  # the model the variant derives from; ratios compare within a family
    folder: str = ""  # trained: the artifact folder; random: the shape ("bert-base-uncased:8") to build
    weights: str = "trained"  # trained or random
    note: str = ""  # set when the target cannot run: its rows carry no figures


def runs_on(scheme, device: str) -> bool:
    """Whether artifacts of ``scheme`` are benchmarked on ``device`` (ONNX: the CPU execution provider)."""
    if device == "cpu":
        return scheme.device == "cpu"
    return scheme.device == "cuda" or scheme.name in ("fp32", "bf16")


def runtimes_for(scheme, device: str, gpu_runtimes: tuple[str, ...]) -> tuple[str, ...]:
    if scheme.weights_format == "onnx":
        return ("onnxruntime",)
    return gpu_runtimes if device == "cuda" else ("eager",)


def trained_targets(models: Path, params, device: str) -> list[Target]:
    """Every model and artifact the pipeline built that runs on ``device``; skipped ones are named."""
    from prunequant.quantization import SCHEMES, read_manifest

    family = params.base.model
    sources = ["baseline"] + [f"pruned-{n}" for n in params.prune.keep_layers]
    targets: list[Target] = []
    for source in sources:
        for name in ("fp32", *params.quantize.schemes):
            scheme = SCHEMES[name]
            if not runs_on(scheme, device):
                continue
            folder = models / source if name == "fp32" else models / "quantized" / f"{source}-{name}"
            variant = source if name == "fp32" else f"{source}-{name}"
            manifest = read_manifest(folder) if folder.is_dir() else None
            note = ""
            if not (folder / "config.json").is_file():
                note = f"n/a: {folder} not built; run `dvc repro`"
            elif manifest and manifest.get("status", "ok") != "ok":
                note = f"{manifest['status']} (built on another machine; `dvc repro` rebuilds it here)"
            for runtime in runtimes_for(scheme, device, params.bench.gpu_runtimes):
                targets.append(Target(variant, name, runtime, device, family, str(folder), "trained", note))
    return targets


def random_targets(params, device: str) -> list[Target]:
    """Each architecture of bench.shapes, in FP32 and every scheme of quantize.schemes that runs here."""
    from prunequant.quantization import SCHEMES

    targets = []
    for shape in params.bench.shapes:
        family, _ = parse_shape(shape)
        for name in ("fp32", *params.quantize.schemes):
            scheme = SCHEMES[name]
            if not runs_on(scheme, device) or name in NEEDS_TRAINING:
                continue
            variant = shape if name == "fp32" else f"{shape}-{name}"
            for runtime in runtimes_for(scheme, device, params.bench.gpu_runtimes):
                targets.append(Target(variant, name, runtime, device, family, shape, "random"))
    return targets


def save_random_model(shape: str, folder: Path, seed: int = 0) -> None:
    """A BERT classifier of the given architecture with random weights, saved as a model folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from prunequant.modeling import load_tokenizer

    name, layers = parse_shape(shape)
    torch.manual_seed(seed)
    config = BertConfig(**{**SHAPES[name], "num_hidden_layers": layers}, vocab_size=30522, num_labels=2)
    BertForSequenceClassification(config).eval().save_pretrained(folder, safe_serialization=True)
    load_tokenizer("minilm-l6").save_pretrained(folder)  # the uncased WordPiece vocabulary of bert-base


# ---- timing --------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of a non-empty list."""
    import numpy as np

    return float(np.percentile(values, q))


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
    mean = statistics.fmean(times)
    return {
        "latency_ms_p50": round(percentile(times, 50), 4),
        "latency_ms_p90": round(percentile(times, 90), 4),
        "latency_ms_p99": round(percentile(times, 99), 4),
        "latency_ms_mean": round(mean, 4),
        "throughput_per_s": round(1000 * batch_size / percentile(times, 50), 2),
        "runs": len(times),
    }


# ---- memory --------------------------------------------------------------------------------------------

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


# ---- running one target --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """What a worker needs: the target, the points, the sentences and the knobs (all picklable)."""

    target: Target
    points: tuple[tuple[int, int], ...]
    texts: tuple[str, ...]
    warmup: int
    runs: int
    min_runs: int
    max_seconds: float
    threads: int
    settings: dict  # the scheme's settings as in params.yaml (random weights build with them)
    seed: int = 0


def _build_random(job: Job, work: Path) -> Path:
    """Build the target's scheme from a random-weight model of its shape; return the artifact folder."""
    from prunequant.quantization import SCHEMES, BuildContext, parse_settings, write_manifest

    source = work / "source"
    save_random_model(job.target.folder, source, seed=job.seed)
    scheme = SCHEMES[job.target.precision]
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
                from prunequant.modeling import num_layers
                from prunequant.quantization import load_artifact

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
            if tensors == "pt":
                inputs = {k: v.to(target.device) for k, v in inputs.items()}
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


# ---- the whole benchmark -------------------------------------------------------------------------------

# Imported once by the fork server, so that no worker pays for them (a missing one is skipped).
WORKER_PRELOAD = ["torch", "transformers", "transformers.models.auto.modeling_auto",
                  "transformers.models.bert.modeling_bert", "onnxruntime", "torchao", "prunequant.quantization"]


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


def make_jobs(targets: list[Target], params, texts: list[str], threads: int) -> list[Job]:
    bench = params.bench
    return [
        Job(target=t, points=tuple(bench.points()), texts=tuple(texts), warmup=bench.warmup, runs=bench.runs,
            min_runs=bench.min_runs, max_seconds=bench.max_seconds, threads=threads,
            settings=dict(params.quantize.settings.get(t.precision) or {}), seed=params.base.seed)
        for t in targets
    ]


# ---- summary -------------------------------------------------------------------------------------------

def with_ratios(frame):
    """Add ratio_fp32 (p50 over the family's full-depth FP32 eager p50 at the same point) and ratio_ort_int8
    (over the family's full-depth onnx-int8-dynamic), both measured in this run."""

    frame = frame.copy()
    for column, precision, runtime in (("ratio_fp32", "fp32", "eager"),
                                       ("ratio_ort_int8", "onnx-int8-dynamic", "onnxruntime")):
        ref = frame[(frame.precision == precision) & (frame.runtime == runtime) & frame.latency_ms_p50.notna()]
        if ref.empty:
            frame[column] = float("nan")
            continue
        ref = ref[ref.layers == ref.groupby("family").layers.transform("max")]
        ref = ref[["family", "device", "batch_size", "seq_len", "latency_ms_p50"]].rename(
            columns={"latency_ms_p50": "_ref"})
        frame = frame.merge(ref, on=["family", "device", "batch_size", "seq_len"], how="left")
        frame[column] = (frame.latency_ms_p50 / frame._ref).round(4)
        frame = frame.drop(columns="_ref")
    return frame


def summary_table(frame, short: tuple[int, int], long: tuple[int, int], wide: tuple[int, int]) -> str:
    """One Markdown row per (variant, runtime): latency at one short sentence and one long one, throughput
    at the largest batch, peak memory there, and the ratios at the short point (FP32 last)."""
    import pandas as pd

    frame = with_ratios(frame)
    keys = ["variant", "precision", "runtime"]
    lines = [
        f"| variant | runtime | layers | p50 ms, batch {short[0]} x {short[1]} tok | p99 ms | "
        f"p50 ms, batch {long[0]} x {long[1]} tok | sentences/s, batch {wide[0]} x {wide[1]} tok | "
        f"peak MB there | x ORT int8 baseline | x FP32 baseline |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def at(group, point, column):
        row = group[(group.batch_size == point[0]) & (group.seq_len == point[1])]
        value = row[column].iloc[0] if len(row) else None
        return None if value is None or pd.isna(value) else value

    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    for (variant, _, runtime), group in frame.groupby(keys, sort=False):
        notes = [n for n in group.note.fillna("") if n]
        if group.latency_ms_p50.isna().all():
            lines.append(f"| {variant} | {runtime} | {group.layers.iloc[0]} | {notes[0] if notes else 'n/a'} "
                         f"| | | | | | |")
            continue
        lines.append(
            f"| {variant} | {runtime} | {group.layers.iloc[0]} | {fmt(at(group, short, 'latency_ms_p50'), '.3f')} "
            f"| {fmt(at(group, short, 'latency_ms_p99'), '.3f')} | {fmt(at(group, long, 'latency_ms_p50'), '.2f')} "
            f"| {fmt(at(group, wide, 'throughput_per_s'), '.1f')} | {fmt(at(group, wide, 'peak_mem_mb'), '.0f')} "
            f"| {fmt(at(group, short, 'ratio_ort_int8'), '.3f')} | {fmt(at(group, short, 'ratio_fp32'), '.3f')} |"
        )
    return "\n".join(lines)


def rows_frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS)

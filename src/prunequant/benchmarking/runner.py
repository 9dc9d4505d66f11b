"""Loading one benchmark target in its runtime and timing it at each (batch size, sequence length) point with the
primitives of :mod:`prunequant.benchmarking.timing`: random-weight models of a shape, the runtimes' call adapters,
and the CSV rows of a target (:mod:`prunequant.benchmarking.workers` runs many, each in its own process)."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunequant.accelerator import cuda_available
from prunequant.benchmarking.targets import Job
from prunequant.benchmarking.timing import (
    cpu_timer,
    cuda_timer,
    gc_paused,
    peak_rss_mb,
    reset_peak_rss,
    rss_mb,
    summarise_rounds,
    time_calls,
)
from prunequant.host import cpu_name
from prunequant.modeling import load_tokenizer, num_layers
from prunequant.params.bench import SHAPES, parse_shape
from prunequant.quantization import (
    BuildContext,
    load_artifact,
    parse_settings,
    write_manifest,
)
from prunequant.quantization.every import every_scheme
from prunequant.splits import forward_inputs


def save_random_model(shape: str, folder: Path, seed: int = 0) -> None:
    """A BERT classifier of the given architecture with random weights, saved as a model folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from prunequant.width import cut_width

    name, cut = parse_shape(shape)
    torch.manual_seed(seed)
    config = BertConfig(**{**SHAPES[name], "num_hidden_layers": cut.layers}, vocab_size=30522, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    if cut.width:  # random weights: which heads and neurons go makes no difference to the time; the first ones stay
        scores = {f"{part}.gradient": -torch.arange(size, dtype=torch.float32).expand(cut.layers, size)
                  for part, size in (("heads", config.num_attention_heads), ("ffn", config.intermediate_size))}
        model = cut_width(model, scores, cut, "gradient")
    model.save_pretrained(folder, safe_serialization=True)
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
        self.inputs: dict[tuple[int, int], dict] = {}
        self.failed: dict[tuple[int, int], str] = {}
        # one request end to end (text -> tokenizer -> runtime -> label), at the first batch-1 point, on a CPU
        single = [p for p in job.points if p[0] == 1]
        self.e2e_point = single[0] if single and target.device == "cpu" else None
        self.sentences = itertools.cycle(job.texts)
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
        return self._encode(texts, seq_len)

    def _encode(self, texts: list, seq_len: int) -> dict:
        if texts and isinstance(texts[0], tuple | list):  # sentence pairs
            first, second = zip(*texts, strict=True)
            encoded = self.tokenizer(list(first), list(second), padding="max_length", truncation=True,
                                     max_length=seq_len, return_tensors=self.tensors)
        else:
            encoded = self.tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len,
                                     return_tensors=self.tensors)
        inputs = dict(encoded)
        if self.tensors == "pt":  # only what the forward takes (DistilBERT: no token_type_ids)
            return {k: v.to(self.job.target.device) for k, v in forward_inputs(self.model, inputs).items()}
        return {k: v.astype("int64") for k, v in inputs.items()}

    def _end_to_end(self, point: tuple[int, int]) -> Callable[[], int]:
        """One request as a service runs it: the next test sentence tokenized (padded to the point's length, so
        the prepared call's buffers take it), the runtime's call, and the label from the logits."""
        inputs, call = self.inputs[point], self.calls[point]

        def request() -> int:
            fresh = self._encode([next(self.sentences)], point[1])
            for name, value in inputs.items():  # into the buffers the prepared call reads
                value[...] = fresh[name]
            out = call()
            return int((out if hasattr(out, "argmax") else out[0]).argmax())

        return request

    def time_round(self, points: tuple[tuple[int, int], ...] | None = None) -> list[dict]:
        """{"point", "times" (ms of each timed call) or "note", "peak_mem_mb", and at the end-to-end point
        "e2e_times"} for every point (or only ``points``), in order: after a settle, with the garbage collector
        paused."""
        time.sleep(self.job.settle_seconds)
        with gc_paused():
            return self._time_points(points or self.job.points)

    def _time_points(self, points: tuple[tuple[int, int], ...]) -> list[dict]:
        import torch

        job, out = self.job, []
        compiled = self.job.target.runtime in ("cudagraph", "compile")
        for point in points:
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
                        self.inputs[point] = self._inputs(*point)
                        self.calls[point] = self.prepare(self.inputs[point])
                    timer = cuda_timer if self.cuda else cpu_timer
                    times = time_calls(self.calls[point], timer, warmup=job.warmup, runs=job.runs,
                                       min_runs=job.min_runs, max_seconds=job.max_seconds,
                                       min_warmup=3 if compiled else 1)
                    e2e = time_calls(self._end_to_end(point), timer, warmup=job.warmup, runs=job.runs,
                                     min_runs=job.min_runs, max_seconds=job.max_seconds) \
                        if point == self.e2e_point else None
            except Exception as exc:
                self.failed[point] = _why(exc)
                self.calls.pop(point, None)
                out.append({"point": point, "note": self.failed[point]})
                continue
            # On CPU, what the resident set grew by since before loading; memory the process freed meanwhile (the
            # random-weight build, garbage) can leave it below that mark, which counts as no growth, never as less.
            peak = torch.cuda.max_memory_allocated() / 1e6 if self.cuda else max(0.0, peak_rss_mb() - self.rss_before)
            out.append({"point": point, "times": times, "peak_mem_mb": peak} | ({"e2e_times": e2e} if e2e else {}))
        return out


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"n/a: {type(exc).__name__}: {text}"


def _base_row(target) -> dict:
    import torch

    cuda = target.device == "cuda" and cuda_available()
    return {"variant": target.variant, "precision": target.precision, "runtime": target.runtime,
            "device": target.device, "device_name": torch.cuda.get_device_name(0) if cuda else cpu_name(),
            "weights": target.weights, "family": target.family, "artifact_md5": target.artifact_md5}


def rows_of(job: Job, layers: Any, rounds: list[list[dict]], note: str = "",
            round_ids: list[int] | None = None) -> list[dict]:
    """The CSV rows of one target from the points of each round it was timed in (``rounds``, in round order, each
    the points timed in that round: all of them, or the decision point in a final round; ``round_ids`` their
    numbers in the whole run: targets timed in the same round share its number); every point's row says why it
    has no figures when it has none."""
    base = _base_row(job.target)
    round_ids = list(range(len(rounds))) if round_ids is None else round_ids
    by_point = [{r["point"]: r for r in points} for points in rounds]
    rows = []
    for point in job.points:
        per_round = [(n, r[point]) for n, r in zip(round_ids, by_point, strict=True) if point in r]
        timed = [(n, r) for n, r in per_round if "times" in r]
        row = base | {"layers": layers, "batch_size": point[0], "seq_len": point[1]}
        if note or not timed:
            notes = [r.get("note") for _, r in per_round if r.get("note")]
            rows.append(row | {"note": note or (notes[0] if notes else "n/a: not timed")})
            continue
        row |= summarise_rounds([r["times"] for _, r in timed], point[0])
        row |= {"round_ids": ";".join(str(n) for n, _ in timed),
                "peak_mem_mb": round(max(r["peak_mem_mb"] for _, r in timed), 1), "note": ""}
        e2e = [r["e2e_times"] for _, r in timed if "e2e_times" in r]
        if e2e:
            e2e_p50s = summarise_rounds(e2e, point[0])
            row |= {"e2e_ms_p50": e2e_p50s["latency_ms_p50"], "e2e_ms_best": e2e_p50s["latency_ms_best"]}
        rows.append(row)
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

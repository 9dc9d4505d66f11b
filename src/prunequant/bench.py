"""What the benchmarks time: the targets (every artifact of the pipeline, or random-weight architectures, in
each runtime that runs on a device), the jobs handed to the workers, and ``bench``'s settings.

Running them is :mod:`prunequant.bench_worker`; their rows and summary table are :mod:`prunequant.bench_table`.
Inputs are real tokenized sentences of the test split, padded (or truncated) to each point's length.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from prunequant.bench_table import REFERENCES
from prunequant.errors import PrunequantError, did_you_mean
from prunequant.fingerprint import folder_md5
from prunequant.params import require, require_choice
from prunequant.quantization import read_manifest
from prunequant.quantization.every import every_scheme
from prunequant.sizes import model_size_mb

BENCH_WEIGHTS = ("trained", "random")


GPU_RUNTIMES = ("eager", "cudagraph", "compile")


@dataclass(frozen=True)
class BenchConfig:
    """`make bench-cpu` / `make bench-gpu`: how each artifact is timed (metrics/bench/<device>.csv)."""

    # trained: the pipeline's models and artifacts; random: the architectures in `shapes` with random weights
    weights: str = "trained"
    # every target is timed once per round, in a new order each round: slow phases of the machine spread over
    # all variants, and the rounds' spread is measured (the CSV keeps each round's p50)
    rounds: int = 5
    warmup: int = 5  # untimed runs before each point in each round (stopped early after max_seconds / 4)
    runs: int = 100  # timed runs per point and round, stopped early after max_seconds (never below min_runs)
    min_runs: int = 3
    max_seconds: float = 0.1  # time budget of one point's timed runs in one round
    settle_seconds: float = 0.2  # a pause before each target's round: the previous target's threads stop spinning
    # targets are loaded a group at a time, the groups packed under this many MB (estimated from each artifact's
    # size; never more than half the memory available at the start); the two reference targets stay loaded and
    # are timed in every round of every group, so every ratio to them stays paired
    max_memory_mb: int = 4000
    # then the variants the latency recommendation hinges on (the bench.final_contenders fastest that are eligible on
    # validation, and on CPU the two fastest off-the-shelf INT8 of the unpruned baseline), in all their runtimes, are
    # timed side by side with the references for this many more rounds at one short sentence (0: none)
    final_rounds: int = 20
    final_contenders: int = 4
    # also time ONNX Runtime and OpenVINO with a model compiled for each batch-1 point's exact input shape (runtimes
    # onnxruntime-fixed, openvino-fixed: what serving padded length buckets costs); the report keeps the faster
    fixed_shapes: bool = True
    threads: int = 0  # CPU threads for PyTorch and ONNX Runtime; 0: every core this process may use
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # swept at batch_seq_length tokens
    batch_seq_length: int = 64
    seq_lengths: tuple[int, ...] = (16, 64, 128)  # swept at batch size 1 (16: one short sentence)
    full_grid: bool = False  # true: every batch size at every sequence length (slow on CPU)
    gpu_runtimes: tuple[str, ...] = GPU_RUNTIMES  # how PyTorch variants run on CUDA
    # weights: random only: "<architecture>[:<layers>]", the first layers of each architecture kept
    shapes: tuple[str, ...] = ("bert-base-uncased", "bert-base-uncased:8", "bert-large-uncased", "bert-large-uncased:16")

    def __post_init__(self) -> None:
        require_choice(self.weights, BENCH_WEIGHTS, "bench.weights")
        for key in ("rounds", "warmup", "runs", "min_runs", "threads", "final_rounds", "final_contenders"):
            low = 1 if key in ("rounds", "runs", "min_runs", "final_contenders") else 0
            require(getattr(self, key) >= low, f"bench.{key}", f"must be >= {low}, got {getattr(self, key)}")
        require(self.min_runs <= self.runs, "bench.min_runs", f"must be <= bench.runs ({self.runs}), got {self.min_runs}")
        require(self.max_seconds > 0, "bench.max_seconds", f"must be > 0, got {self.max_seconds}")
        require(self.settle_seconds >= 0, "bench.settle_seconds", f"must be >= 0, got {self.settle_seconds}")
        require(self.max_memory_mb >= 100, "bench.max_memory_mb", f"must be >= 100 (MB), got {self.max_memory_mb}")
        for key in ("batch_sizes", "seq_lengths"):
            values = getattr(self, key)
            require(bool(values) and all(v >= 1 for v in values), f"bench.{key}",
                    f"must list sizes >= 1, e.g. [1, 8, 64], got {list(values)}")
        require(self.batch_seq_length >= 1, "bench.batch_seq_length", f"must be >= 1, got {self.batch_seq_length}")
        require(bool(self.gpu_runtimes), "bench.gpu_runtimes", "must list at least one runtime, e.g. [eager]")
        for i, runtime in enumerate(self.gpu_runtimes):
            require_choice(runtime, GPU_RUNTIMES, f"bench.gpu_runtimes[{i}]")
        for i, shape in enumerate(self.shapes):
            parse_shape(shape, f"bench.shapes[{i}]")

    def points(self) -> list[tuple[int, int]]:
        """(batch size, sequence length) pairs, fewest tokens first."""
        if self.full_grid:
            pairs = {(b, s) for b in self.batch_sizes for s in self.seq_lengths}
        else:
            pairs = {(1, s) for s in self.seq_lengths} | {(b, self.batch_seq_length) for b in self.batch_sizes}
        return sorted(pairs, key=lambda p: (p[0] * p[1], p))


    def with_points(self, points: list[tuple[int, int]]) -> BenchConfig:
        """This config timing the grid of the given points' batch sizes and lengths instead."""
        return dataclasses.replace(self, batch_sizes=tuple(sorted({b for b, _ in points})),
                                   seq_lengths=tuple(sorted({s for _, s in points})), full_grid=True)


def parse_points(text: str) -> list[tuple[int, int]]:
    """'1x16,1x128' -> [(1, 16), (1, 128)]; a one-line error naming --points otherwise."""
    points = []
    for item in text.split(","):
        batch, _, length = item.strip().partition("x")
        if not (batch.isdigit() and length.isdigit() and int(batch) >= 1 and int(length) >= 1):
            raise PrunequantError(f"--points: {item.strip()!r} is not <batch>x<tokens>, e.g. 1x16,1x128")
        points.append((int(batch), int(length)))
    return points


SHAPES: dict[str, dict[str, int]] = {
    "bert-base-uncased": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072},
    "bert-large-uncased": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                           "intermediate_size": 4096},
    "minilm-l6": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}


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
    artifact_md5: str = ""  # trained: the DVC hash of the folder timed (results.csv has the one it scored)
    size_mb: float = 0.0  # trained: the folder's size on disk, which the memory plan estimates from

    def is_reference(self) -> bool:
        """Whether ratios are taken against this target: its family's full-depth FP32 model in eager PyTorch or
        under ONNX Runtime's dynamic INT8 (bench_table.REFERENCES)."""
        if (self.precision, self.runtime) not in {(p, r) for _, p, r in REFERENCES}:
            return False
        if self.weights == "random":
            name, layers = parse_shape(self.folder)
            return layers == SHAPES[name]["num_hidden_layers"]
        return self.variant.startswith("baseline")

    def memory_mb(self) -> float:
        """An estimate of what loading and timing it adds to the machine's memory in use: the weights three times
        over (the loaded model, runtime copies and fixed-shape sessions) plus a worker process's own 250 MB
        (measured per target on the default's 48: 80 to 590 MB beside the weights, 15.4 GB in all against this
        estimate's 17.7; docs/benchmarks.md)."""
        size = self.size_mb
        if self.weights == "random":
            name, layers = parse_shape(self.folder)
            shape = SHAPES[name]
            size = 4 * (layers * 12 * shape["hidden_size"] ** 2 + 30522 * shape["hidden_size"]) / 1e6
        return 3 * size + 250


def runtimes_for(scheme, device: str, bench: BenchConfig) -> tuple[str, ...]:
    """How benchmarks run a scheme's artifact on ``device``."""
    if scheme.weights_format in ("onnx", "openvino"):
        runtime = "onnxruntime" if scheme.weights_format == "onnx" else "openvino"
        return (runtime, f"{runtime}-fixed") if bench.fixed_shapes else (runtime,)
    return bench.gpu_runtimes if device == "cuda" else ("eager",)


def trained_targets(models: Path, params, device: str) -> list[Target]:
    """Every model and artifact the pipeline built that runs on ``device``; skipped ones are named."""
    schemes = every_scheme()
    family = params.base.model
    sources = ["baseline"] + [f"pruned-{n}" for n in params.prune.keep_layers]
    targets: list[Target] = []
    identity: dict[Path, tuple[str, float]] = {}  # each folder hashed once, whatever its runtimes
    for source in sources:
        for name in ("fp32", *params.quantize.names):
            scheme = schemes[name]
            if not scheme.timed_on(device):
                continue
            folder = models / source if name == "fp32" else models / "quantized" / f"{source}-{name}"
            variant = source if name == "fp32" else f"{source}-{name}"
            manifest = read_manifest(folder) if folder.is_dir() else None
            note = ""
            if not (folder / "config.json").is_file():
                note = f"n/a: {folder} not built; run `dvc repro`"
            elif manifest and manifest.get("status", "ok").startswith("n/a: needs"):
                note = f"{manifest['status']} (built on another machine; `dvc repro` rebuilds it here)"
            elif manifest and manifest.get("status", "ok") != "ok":
                note = manifest["status"]  # what a library cannot do for this model family
            if not note and folder not in identity:
                identity[folder] = folder_md5(folder), model_size_mb(folder)
            md5, size = identity.get(folder, ("", 0.0))
            for runtime in runtimes_for(scheme, device, params.bench):
                targets.append(Target(variant, name, runtime, device, family, str(folder), "trained", note, md5, size))
    return targets


def random_targets(params, device: str, only: tuple[str, ...] = ()) -> list[Target]:
    """Each architecture of bench.shapes, in FP32 and every scheme of quantize.schemes that runs here (``only``:
    just these schemes)."""
    schemes = every_scheme()
    targets = []
    for shape in params.bench.shapes:
        family, _ = parse_shape(shape)
        for name in ("fp32", *(only or params.quantize.names)):
            scheme = schemes[name]
            if not scheme.timed_on(device) or scheme.needs_training:
                continue
            variant = shape if name == "fp32" else f"{shape}-{name}"
            for runtime in runtimes_for(scheme, device, params.bench):
                targets.append(Target(variant, name, runtime, device, family, shape, "random"))
    return targets


@dataclass(frozen=True)
class Job:
    """What a worker needs: the target, the points, the sentences and the knobs (all picklable)."""

    target: Target
    points: tuple[tuple[int, int], ...]
    texts: tuple  # sentences, or (text, text_pair) tuples
    warmup: int
    runs: int
    min_runs: int
    max_seconds: float
    threads: int
    settings: dict  # the scheme's settings as in params.yaml (random weights build with them)
    seed: int = 0
    settle_seconds: float = 0.0


def points_for(target: Target, bench: BenchConfig) -> tuple[tuple[int, int], ...]:
    """The points a target is timed at: all of them, but a fixed-shape runtime (a model compiled per shape, which
    is how a latency service serves length buckets) only at batch 1, where fixed shapes can pay."""
    points = bench.points()
    if target.runtime.endswith("-fixed"):
        points = [p for p in points if p[0] == 1] or points
    return tuple(points)


def make_jobs(targets: list[Target], params, texts: list, threads: int) -> list[Job]:
    bench = params.bench
    return [
        Job(target=t, points=points_for(t, bench), texts=tuple(texts), warmup=bench.warmup, runs=bench.runs,
            min_runs=bench.min_runs, max_seconds=bench.max_seconds, threads=threads,
            settings=dict(params.quantize.settings.get(t.precision) or {}), seed=params.base.seed,
            settle_seconds=bench.settle_seconds)
        for t in targets
    ]

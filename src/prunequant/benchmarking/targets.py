"""What the benchmarks time: the targets (every artifact of the pipeline, or random-weight architectures, in
each runtime that runs on a device), the jobs handed to the workers, and ``bench``'s settings.

Running them is :mod:`prunequant.benchmarking.workers`; their rows and summary table are
:mod:`prunequant.benchmarking.table`.
Inputs are real tokenized sentences of the test split, padded (or truncated) to each point's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunequant.benchmarking.table import REFERENCES
from prunequant.errors import PrunequantError
from prunequant.fingerprint import folder_md5
from prunequant.params.bench import SHAPES, BenchConfig, parse_shape
from prunequant.quantization import read_manifest
from prunequant.quantization.every import every_scheme
from prunequant.sizes import model_size_mb


def parse_points(text: str) -> list[tuple[int, int]]:
    """'1x16,1x128' -> [(1, 16), (1, 128)]; a one-line error naming --points otherwise."""
    points = []
    for item in text.split(","):
        batch, _, length = item.strip().partition("x")
        if not (batch.isdigit() and length.isdigit() and int(batch) >= 1 and int(length) >= 1):
            raise PrunequantError(f"--points: {item.strip()!r} is not <batch>x<tokens>, e.g. 1x16,1x128")
        points.append((int(batch), int(length)))
    return points


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
        under ONNX Runtime's dynamic INT8 (table.REFERENCES)."""
        if (self.precision, self.runtime) not in {(p, r) for _, p, r in REFERENCES}:
            return False
        if self.weights == "random":
            name, cut = parse_shape(self.folder)
            return cut.layers == SHAPES[name]["num_hidden_layers"] and not cut.width
        return self.variant.startswith("baseline")

    def memory_mb(self) -> float:
        """An estimate of what loading and timing it adds to the machine's memory in use: the weights three times
        over (the loaded model, runtime copies and fixed-shape sessions) plus a worker process's own 250 MB
        (measured per target on the default's 48: 80 to 590 MB beside the weights, 15.4 GB in all against this
        estimate's 17.7; docs/benchmarks.md)."""
        size = self.size_mb
        if self.weights == "random":
            name, cut = parse_shape(self.folder)
            shape = SHAPES[name]
            size = 4 * (cut.layers * 12 * shape["hidden_size"] ** 2 + 30522 * shape["hidden_size"]) / 1e6
        return 3 * size + 250


def runtimes_for(scheme, device: str, bench: BenchConfig) -> tuple[str, ...]:
    """How benchmarks run a scheme's artifact on ``device``."""
    if scheme.weights_format in ("onnx", "openvino"):
        runtime = "onnxruntime" if scheme.weights_format == "onnx" else "openvino"
        return (runtime, f"{runtime}-fixed") if bench.fixed_shapes else (runtime,)
    return bench.gpu_runtimes if device == "cuda" else ("eager",)


def trained_targets(models: Path, params, device: str) -> list[Target]:
    """Every model and artifact the pipeline built that runs on ``device``; skipped ones are named."""
    sources = ["baseline"] + [f"pruned-{n}" for n in params.prune.keep_layers]
    return folder_targets([(source, name, models / source if name == "fp32" else
                            models / "quantized" / f"{source}-{name}")
                           for source in sources for name in ("fp32", *params.quantize.names)], params, device)


def compare_targets(models: Path, params, device: str) -> list[Target]:
    """`make compare-widths`: the unpruned baseline in FP32 and in compare.scheme (the references, the root
    pipeline's), and every cut of compare.cuts in compare.scheme (``models/widths/``)."""
    scheme = params.compare.scheme
    cuts = [f"pruned-{cut.name}" for cut in params.compare.cut_list]
    return folder_targets([("baseline", "fp32", models / "baseline"),
                           ("baseline", scheme, models / "quantized" / f"baseline-{scheme}"),
                           *((cut, scheme, models / "widths" / "quantized" / f"{cut}-{scheme}") for cut in cuts)],
                          params, device)


def folder_targets(folders: list[tuple[str, str, Path]], params, device: str) -> list[Target]:
    """(source model, scheme, folder) -> its targets in each runtime that runs on ``device``; a folder that is not
    built, or was built as n/a, gives rows that say why."""
    schemes = every_scheme()
    family = params.base.model
    targets: list[Target] = []
    identity: dict[Path, tuple[str, float]] = {}  # each folder hashed once, whatever its runtimes
    for source, name, folder in folders:
        scheme = schemes[name]
        if not scheme.timed_on(device):
            continue
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

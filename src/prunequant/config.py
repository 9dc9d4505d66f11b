"""Typed, frozen views of ``params.yaml``.

Stages load the file once with :func:`load_params`; the library only ever sees these objects.
Every section validates itself, and an unknown key anywhere fails with the closest valid one.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from prunequant.errors import PrunequantError, did_you_mean


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise PrunequantError(f"params.yaml: {key} {message}")


def _require_inside_repo(value: str, key: str) -> None:
    """A relative path in params may not climb out of the repository (stages run from its root).

    Absolute paths are taken as meant; Hub names never contain a '..' part.
    """
    path = Path(value)
    if not path.is_absolute() and ".." in path.parts:
        root = Path.cwd().resolve()
        _require((root / path).resolve().is_relative_to(root), key,
                 f"is {value!r}, which points outside the repository; move it inside, or give an absolute "
                 "path if you mean a file outside")


@dataclass(frozen=True)
class BaseConfig:
    """Settings every stage shares."""

    seed: int = 42
    # An alias from modeling.MODELS (offline, packaged), a Hugging Face Hub name or a local folder.
    model: str = "minilm-l6"
    # A name from data.DATASETS, a Hub data set ("name" or "name:config") or a local CSV/Parquet file.
    data: str = "rotten_tomatoes"
    max_seq_length: int = 128

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "base.seed", f"must be >= 0, got {self.seed}")
        _require(bool(self.model.strip()), "base.model", "must name a model, e.g. minilm-l6")
        _require(bool(self.data.strip()), "base.data", "must name a data set, e.g. rotten_tomatoes")
        for key in ("model", "data"):
            _require_inside_repo(getattr(self, key), f"base.{key}")
        _require(
            8 <= self.max_seq_length <= 8192,
            "base.max_seq_length",
            f"must be between 8 and 8192 tokens, got {self.max_seq_length}",
        )


@dataclass(frozen=True)
class PrepareConfig:
    """How the data set is split into train/validation/test once for every later stage."""

    text_column: str | None = None  # None: the column the data-set table names
    label_column: str | None = None
    validation_size: float = 0.15
    test_size: float = 0.15
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    def __post_init__(self) -> None:
        for key in ("validation_size", "test_size"):
            value = getattr(self, key)
            _require(0 < value < 0.5, f"prepare.{key}", f"must be a fraction in (0, 0.5), got {value}")
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            _require(
                value is None or value >= 2,
                f"prepare.{key}",
                f"must be null (all) or at least 2, got {value}",
            )


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (passed to transformers.TrainingArguments)."""

    epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    logging_steps: int = 20
    checkpoint_steps: int = 200  # optimizer steps between checkpoints a killed run resumes from; 0: none
    processes: int = 1  # > 1: `accelerate launch` runs that many (one per GPU; gloo on CPU without CUDA)

    section: ClassVar[str] = "finetune"  # the params.yaml section, for error messages

    def __post_init__(self) -> None:
        _require(self.epochs > 0, f"{self.section}.epochs", f"must be > 0, got {self.epochs}")
        _require(
            0 < self.learning_rate < 1,
            f"{self.section}.learning_rate",
            f"must be in (0, 1), got {self.learning_rate}",
        )
        _require(self.batch_size >= 1, f"{self.section}.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(
            self.weight_decay >= 0, f"{self.section}.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        _require(
            0 <= self.warmup_ratio < 1,
            f"{self.section}.warmup_ratio",
            f"must be in [0, 1), got {self.warmup_ratio}",
        )
        _require(
            self.logging_steps >= 1, f"{self.section}.logging_steps", f"must be >= 1, got {self.logging_steps}"
        )
        _require(self.checkpoint_steps >= 0, f"{self.section}.checkpoint_steps",
                 f"must be >= 0 (0: no checkpoints), got {self.checkpoint_steps}")
        _require(self.processes >= 1, f"{self.section}.processes", f"must be >= 1, got {self.processes}")
        _require(self.batch_size % self.processes == 0, f"{self.section}.batch_size",
                 f"({self.batch_size}) must divide evenly over {self.section}.processes ({self.processes}); "
                 f"set it to a multiple of {self.processes}")


@dataclass(frozen=True)
class EvaluateConfig:
    """How models are scored."""

    batch_size: int = 64
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "evaluate.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(
            0.5 <= self.confidence_level < 1,
            "evaluate.confidence_level",
            f"must be in [0.5, 1), got {self.confidence_level}",
        )


SENSITIVITY_METHODS = ("ablation", "iterative")
PRUNE_STRATEGIES = ("sensitivity", "top", "bottom", "alternate", "explicit")


def _require_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    _require(
        value in choices,
        key,
        f"is {value!r}{did_you_mean(value, choices)}; choose one of {', '.join(choices)}",
    )


@dataclass(frozen=True)
class SensitivityConfig:
    """How layer importance is measured on the validation split."""

    method: str = "ablation"  # ablation: skip each layer alone; iterative: greedy, re-measured

    def __post_init__(self) -> None:
        _require_choice(self.method, SENSITIVITY_METHODS, "sensitivity.method")


@dataclass(frozen=True)
class PruneConfig:
    """Which layers to remove. Each entry of keep_layers is one pruned variant (`pruned-<n>`)."""

    keep_layers: tuple[int, ...] = (4, 3)
    strategy: str = "sensitivity"
    drop_layers: tuple[int, ...] = ()  # for strategy: explicit

    def __post_init__(self) -> None:
        _require_choice(self.strategy, PRUNE_STRATEGIES, "prune.strategy")
        _require(bool(self.keep_layers), "prune.keep_layers", "must list at least one layer count, e.g. [4]")
        _require(
            len(set(self.keep_layers)) == len(self.keep_layers),
            "prune.keep_layers",
            f"lists a count twice: {list(self.keep_layers)}",
        )
        bad = [n for n in self.keep_layers if n < 1]
        _require(not bad, "prune.keep_layers", f"must be >= 1, got {bad}")
        _require(
            self.strategy == "explicit" or not self.drop_layers,
            "prune.drop_layers",
            "is only used with prune.strategy: explicit; empty it or set the strategy",
        )
        _require(
            self.strategy != "explicit" or bool(self.drop_layers),
            "prune.drop_layers",
            "must list the layers to remove when prune.strategy is explicit, e.g. [1, 4]",
        )


@dataclass(frozen=True)
class RefinetuneConfig(FinetuneConfig):
    """Fine-tuning the pruned model again, optionally distilled from the fine-tuned baseline."""

    learning_rate: float = 1e-4  # twice finetune's: chosen on validation accuracy for 6 -> 3 (README)
    distill: bool = True
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft-label loss; 1 - alpha goes to the hard labels
    hidden_weight: float = 0.0  # weight of matching kept layers' hidden states (MSE); 0 = off

    section: ClassVar[str] = "refinetune"

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.temperature > 0, "refinetune.temperature", f"must be > 0, got {self.temperature}")
        _require(0 <= self.alpha <= 1, "refinetune.alpha", f"must be in [0, 1], got {self.alpha}")
        _require(self.hidden_weight >= 0, "refinetune.hidden_weight", f"must be >= 0, got {self.hidden_weight}")


@dataclass(frozen=True)
class CompareConfig:
    """`make compare-strategies`: each strategy cuts to keep_layers, re-finetuned with and without distillation."""

    keep_layers: int = 3
    strategies: tuple[str, ...] = ("sensitivity", "top", "bottom", "alternate")

    def __post_init__(self) -> None:
        _require(self.keep_layers >= 1, "compare.keep_layers", f"must be >= 1, got {self.keep_layers}")
        _require(bool(self.strategies), "compare.strategies", "must list at least one strategy, e.g. [sensitivity]")
        compared = tuple(s for s in PRUNE_STRATEGIES if s != "explicit")
        for i, strategy in enumerate(self.strategies):
            _require_choice(strategy, compared, f"compare.strategies[{i}]")
        _require(
            len(set(self.strategies)) == len(self.strategies),
            "compare.strategies",
            f"lists a strategy twice: {list(self.strategies)}",
        )


def _registry_defaults() -> tuple[tuple[str, ...], dict]:
    """Every scheme but fp32 (the models themselves), in registry order, with its default settings."""
    from prunequant.quantization import SCHEMES

    names = tuple(name for name in SCHEMES if name != "fp32")
    return names, {name: dataclasses.asdict(SCHEMES[name].settings()) for name in names}


@dataclass(frozen=True)
class QuantizeConfig:
    """Which schemes quantize the baseline and every pruned model, and each scheme's knobs (by name).

    Schemes live in ``prunequant.quantization.SCHEMES``; each reads its own ``settings.<scheme>``
    entry, so a change there reruns only that scheme's stages.
    """

    schemes: tuple[str, ...] = field(default_factory=lambda: _registry_defaults()[0])
    settings: dict = field(default_factory=lambda: _registry_defaults()[1])

    def __post_init__(self) -> None:
        from prunequant.quantization import get_scheme, parse_settings

        _require(len(set(self.schemes)) == len(self.schemes), "quantize.schemes",
                 f"lists a scheme twice: {list(self.schemes)}")
        for i, name in enumerate(self.schemes):
            get_scheme(name, key=f"quantize.schemes[{i}]")
            _require(name != "fp32", f"quantize.schemes[{i}]",
                     "is fp32: the models themselves, scored by the evaluate stages; remove it")
            # dvc.yaml makes each stage depend on quantize.settings.<scheme>: the key must exist.
            _require(name in self.settings, "quantize.settings",
                     f"has no entry for {name!r}; add `{name}: {{}}` (or its settings) under quantize.settings")
        for name, raw in self.settings.items():  # settings of schemes not listed must be valid too
            parse_settings(get_scheme(name, key="quantize.settings"), raw, f"quantize.settings.{name}")

    def scheme_settings(self, name: str):
        """The validated settings dataclass of scheme ``name``."""
        from prunequant.quantization import get_scheme, parse_settings

        return parse_settings(get_scheme(name), self.settings.get(name), f"quantize.settings.{name}")


BENCH_WEIGHTS = ("trained", "random")
GPU_RUNTIMES = ("eager", "cudagraph", "compile")


@dataclass(frozen=True)
class BenchConfig:
    """`make bench-cpu` / `make bench-gpu`: how each artifact is timed (metrics/bench/<device>.csv)."""

    # trained: the pipeline's models and artifacts; random: the architectures in `shapes` with random weights
    weights: str = "trained"
    warmup: int = 20  # untimed runs before each point (stopped early after max_seconds / 4)
    runs: int = 100  # timed runs per point, stopped early after max_seconds (never below min_runs)
    min_runs: int = 5
    max_seconds: float = 1.0  # time budget of one point's timed runs
    threads: int = 0  # CPU threads for PyTorch and ONNX Runtime; 0: every core this process may use
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # swept at batch_seq_length tokens
    batch_seq_length: int = 64
    seq_lengths: tuple[int, ...] = (16, 64, 128)  # swept at batch size 1 (16: one short sentence)
    full_grid: bool = False  # true: every batch size at every sequence length (slow on CPU)
    gpu_runtimes: tuple[str, ...] = GPU_RUNTIMES  # how PyTorch variants run on CUDA
    # weights: random only: "<architecture>[:<layers>]", the first layers of each architecture kept
    shapes: tuple[str, ...] = ("bert-base-uncased", "bert-base-uncased:8", "bert-large-uncased", "bert-large-uncased:16")

    def __post_init__(self) -> None:
        from prunequant.bench import parse_shape

        _require_choice(self.weights, BENCH_WEIGHTS, "bench.weights")
        for key in ("warmup", "runs", "min_runs", "threads"):
            low = 1 if key in ("runs", "min_runs") else 0
            _require(getattr(self, key) >= low, f"bench.{key}", f"must be >= {low}, got {getattr(self, key)}")
        _require(self.min_runs <= self.runs, "bench.min_runs", f"must be <= bench.runs ({self.runs}), got {self.min_runs}")
        _require(self.max_seconds > 0, "bench.max_seconds", f"must be > 0, got {self.max_seconds}")
        for key in ("batch_sizes", "seq_lengths"):
            values = getattr(self, key)
            _require(bool(values) and all(v >= 1 for v in values), f"bench.{key}",
                     f"must list sizes >= 1, e.g. [1, 8, 64], got {list(values)}")
        _require(self.batch_seq_length >= 1, "bench.batch_seq_length", f"must be >= 1, got {self.batch_seq_length}")
        _require(bool(self.gpu_runtimes), "bench.gpu_runtimes", "must list at least one runtime, e.g. [eager]")
        for i, runtime in enumerate(self.gpu_runtimes):
            _require_choice(runtime, GPU_RUNTIMES, f"bench.gpu_runtimes[{i}]")
        for i, shape in enumerate(self.shapes):
            parse_shape(shape, f"bench.shapes[{i}]")

    def points(self) -> list[tuple[int, int]]:
        """(batch size, sequence length) pairs, fewest tokens first."""
        if self.full_grid:
            pairs = {(b, s) for b in self.batch_sizes for s in self.seq_lengths}
        else:
            pairs = {(1, s) for s in self.seq_lengths} | {(b, self.batch_seq_length) for b in self.batch_sizes}
        return sorted(pairs, key=lambda p: (p[0] * p[1], p))


@dataclass(frozen=True)
class ReportConfig:
    """What the report recommends, and how its radar chart scales accuracy."""

    max_accuracy_drop: float = 1.0  # accuracy points a recommended variant may lose against the baseline
    # The radar maps accuracy in this range onto its axis (SST-2 with BERT: [0.90, 0.94]; Rotten Tomatoes
    # with MiniLM: [0.76, 0.84]); values outside it are clipped.
    accuracy_range: tuple[float, ...] = (0.76, 0.84)
    radar_floor: float = 0.1  # the worst variant on each radar axis sits at this radius (the best at 1)

    def __post_init__(self) -> None:
        _require(self.max_accuracy_drop >= 0, "report.max_accuracy_drop",
                 f"must be >= 0 (accuracy points), got {self.max_accuracy_drop}")
        _require(len(self.accuracy_range) == 2 and 0 <= self.accuracy_range[0] < self.accuracy_range[1] <= 1,
                 "report.accuracy_range", f"must be [low, high] with 0 <= low < high <= 1, got {list(self.accuracy_range)}")
        _require(0 <= self.radar_floor < 1, "report.radar_floor", f"must be in [0, 1), got {self.radar_floor}")


@dataclass(frozen=True)
class Params:
    """All of params.yaml."""

    base: BaseConfig = field(default_factory=BaseConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    refinetune: RefinetuneConfig = field(default_factory=RefinetuneConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a field's type; YAML's '5e-5' (a string) is accepted as a float."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (annotation,) = [a for a in options if a is not type(None)]
    if annotation is dict or typing.get_origin(annotation) is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise PrunequantError(f"params.yaml: {key} must be a mapping, got {value!r}")
        return value
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, list | tuple):
            raise PrunequantError(f"params.yaml: {key} must be a list, got {value!r}")
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value))
    if annotation is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise PrunequantError(f"params.yaml: {key} must be a finite number, got {value!r}")
    if isinstance(value, annotation) and not (isinstance(value, bool) and annotation is not bool):
        return value
    raise PrunequantError(
        f"params.yaml: {key} must be of type {annotation.__name__}, got {value!r}"
    )


def build_section(cls: type, mapping: Any, where: str) -> Any:
    """Validate one mapping of params.yaml into the dataclass ``cls``; ``where`` is its key, for errors."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise PrunequantError(f"params.yaml: {where} must be a mapping of keys, got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in mapping.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise PrunequantError(
                f"params.yaml: unknown key {full!r}{did_you_mean(key, fields)}; "
                f"valid keys{' in ' + where if where else ''}: {', '.join(fields)}"
            )
        if dataclasses.is_dataclass(hints[key]):
            values[key] = build_section(hints[key], value, full)
        else:
            values[key] = _coerce(value, hints[key], full)
    return cls(**values)


def params_from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping and return the typed, frozen :class:`Params`."""
    return build_section(Params, raw, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; any problem is a one-line :class:`PrunequantError`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PrunequantError(f"{path}: file not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PrunequantError(f"{path}: not valid YAML{where}; fix the syntax") from None
    return params_from_dict(raw)

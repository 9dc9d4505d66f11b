"""``bench``: how `make bench-cpu` / `make bench-gpu` time each artifact (metrics/bench/<device>.csv), and the
architectures ``weights: random`` builds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from prunequant.errors import PrunequantError, did_you_mean
from prunequant.params import Section, SettingError, knob, require
from prunequant.params.prune import Cut, parse_cut

BENCH_WEIGHTS = ("trained", "random")
GPU_RUNTIMES = ("eager", "cudagraph", "compile")


@dataclass(frozen=True)
class BenchConfig(Section):
    # trained: the pipeline's models and artifacts; random: the architectures in `shapes` with random weights
    weights: str = knob(choices=BENCH_WEIGHTS)
    # every target is timed once per round, in a new order each round: slow phases of the machine spread over
    # all variants, and the rounds' spread is measured (the CSV keeps each round's p50)
    rounds: int = knob(ge=1)
    warmup: int = knob(ge=0)  # untimed runs before each point in each round (stopped early after max_seconds / 4)
    runs: int = knob(ge=1)  # timed runs per point and round, stopped early after max_seconds (never below min_runs)
    min_runs: int = knob(ge=1)
    max_seconds: float = knob(gt=0)  # time budget of one point's timed runs in one round
    settle_seconds: float = knob(ge=0)  # a pause before each target's round: the previous target's threads stop
    # targets are loaded a group at a time, the groups packed under this many MB (estimated from each artifact's
    # size; never more than half the memory available at the start); the two reference targets stay loaded and
    # are timed in every round of every group, so every ratio to them stays paired
    max_memory_mb: int = knob(ge=100, note="MB")
    # then the variants the latency recommendation hinges on (the bench.final_contenders fastest that are eligible on
    # validation, and on CPU the two fastest off-the-shelf INT8 of the unpruned baseline), in all their runtimes, are
    # timed side by side with the references for this many more rounds at one short sentence (0: none)
    final_rounds: int = knob(ge=0)
    final_contenders: int = knob(ge=1)
    # also time ONNX Runtime and OpenVINO with a model compiled for each batch-1 point's exact input shape (runtimes
    # onnxruntime-fixed, openvino-fixed: what serving padded length buckets costs); the report keeps the faster
    fixed_shapes: bool = knob()
    threads: int = knob(ge=0, note="0: every core")  # CPU threads for PyTorch and ONNX Runtime
    batch_sizes: tuple[int, ...] = knob(ge=1)  # swept at batch_seq_length tokens
    batch_seq_length: int = knob(ge=1)
    seq_lengths: tuple[int, ...] = knob(ge=1)  # swept at batch size 1 (16: one short sentence)
    full_grid: bool = knob()  # true: every batch size at every sequence length (slow on CPU)
    gpu_runtimes: tuple[str, ...] = knob(choices=GPU_RUNTIMES)  # how PyTorch variants run on CUDA
    # weights: random only: "<architecture>[:<layers>]", the first layers of each architecture kept, or
    # "<architecture>:<layers>-w<pct>" (prune.keep_layers' syntax) with that share of their heads and FFN neurons
    shapes: tuple[str, ...] = knob()

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.min_runs <= self.runs, "min_runs", f"must be <= bench.runs ({self.runs}), got {self.min_runs}")
        for key in ("batch_sizes", "seq_lengths"):
            require(bool(getattr(self, key)), key, "must list sizes >= 1, e.g. [1, 8, 64]")
        require(bool(self.gpu_runtimes), "gpu_runtimes", "must list at least one runtime, e.g. [eager]")
        for i, shape in enumerate(self.shapes):
            try:
                parse_shape(shape, f"shapes[{i}]")
            except PrunequantError as exc:
                raise SettingError(exc.format_message().removeprefix("params.yaml: ")) from None

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


SHAPES: dict[str, dict[str, int]] = {
    "bert-base-uncased": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072},
    "bert-large-uncased": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                           "intermediate_size": 4096},
    "minilm-l6": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}


def parse_shape(text: str, key: str = "bench.shapes") -> tuple[str, Cut]:
    """'bert-base-uncased:8' -> ('bert-base-uncased', Cut(8)); 'bert-base-uncased:8-w50' also halves every kept
    layer's heads and FFN (prune.keep_layers' syntax); no ':' keeps the full depth."""
    name, _, cut = str(text).partition(":")
    if name not in SHAPES:
        raise PrunequantError(
            f"params.yaml: {key} names unknown architecture {name!r}{did_you_mean(name, SHAPES)}; "
            f"known: {', '.join(SHAPES)} (write <name> or <name>:<layers>)"
        )
    full = SHAPES[name]["num_hidden_layers"]
    if not cut:
        return name, Cut(full)
    try:
        parsed = parse_cut(cut, key)
    except SettingError as exc:
        raise PrunequantError(f"params.yaml: {exc.format_message()}") from None
    if not 1 <= parsed.layers <= full:
        raise PrunequantError(f"params.yaml: {key} is {text!r}; the layer count after ':' must be 1 to {full}")
    return name, parsed

"""How steady are the per-round p50s on this machine? Times four trained targets of the default pipeline (the two
references and the two fastest pruned-3 INT8 runtimes) at batch 1 x 16 tokens in 12 interleaved rounds, with a
given settle, and prints each target's fastest, median and max/min round p50: the noise the recommendation's tie
rule has to live with. Needs `make repro` first.

    python bench/pair_noise.py 0.2    # bench.settle_seconds: 0.2 (the default)
    python bench/pair_noise.py 0      # no settle
"""

import statistics
import sys
from pathlib import Path

from prunequant.benchmarking import targets
from prunequant.benchmarking.workers import run_jobs
from prunequant.splits import load_split, model_inputs

TARGETS = [("baseline", "fp32", "eager", "models/baseline"),
           ("baseline-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime",
            "models/quantized/baseline-onnx-int8-dynamic"),
           ("pruned-3-onnx-int8-dynamic", "onnx-int8-dynamic", "onnxruntime",
            "models/quantized/pruned-3-onnx-int8-dynamic"),
           ("pruned-3-openvino-int8-static", "openvino-int8-static", "openvino-fixed",
            "models/quantized/pruned-3-openvino-int8-static")]


def main(settle: float, rounds: int = 12) -> None:
    texts = tuple(model_inputs(load_split(Path("data/prepared"), "test")))
    jobs = [targets.Job(target=targets.Target(variant, precision, runtime, "cpu", "minilm-l6", folder, "trained"),
                      points=((1, 16),), texts=texts, warmup=5, runs=100, min_runs=3, max_seconds=0.1, threads=2,
                      settings={}, seed=42, settle_seconds=settle) for variant, precision, runtime, folder in TARGETS]
    for row in run_jobs(jobs, lambda line: None, rounds=rounds, seed=42):
        p50s = [float(v) for v in row["round_p50s_ms"].split(";")]
        print(f"settle {settle:g} s  {row['variant']:30s} {row['runtime']:15s} fastest {min(p50s):.3f} ms, "
              f"median {statistics.median(p50s):.3f} ms, max/min {max(p50s) / min(p50s):.2f} ({rounds} rounds)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.2)

"""How much each bench target adds to the machine's memory in use, against the plan's estimate
(Target.memory_mb): load the default pipeline's CPU targets one after another in bench workers (each timed once),
and write metrics/bench/cpu-target-memory.csv. Run after `dvc repro`, on an otherwise idle machine:

    python bench/target_memory.py            # ~4 min on 2 cores; all 48 targets stay loaded (~16 GB)
"""

import tempfile
import time
from pathlib import Path

import pandas as pd

from prunequant.benchmarking.targets import make_jobs, trained_targets
from prunequant.benchmarking.workers import _Workers
from prunequant.host import available_memory_mb
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.bench import BenchConfig
from prunequant.params.prune import PruneConfig
from prunequant.params.quantize import QuantizeConfig
from prunequant.splits import load_split, model_inputs


def main(out: Path = Path("metrics/bench/cpu-target-memory.csv")) -> None:
    params = load("params.yaml", base=BaseConfig, prune=PruneConfig, quantize=QuantizeConfig, bench=BenchConfig)
    texts = model_inputs(load_split(Path("data/prepared"), "test"))
    jobs = [j for j in make_jobs(trained_targets(Path("models"), params, "cpu"), params, texts, 2) if not j.target.note]
    workers = _Workers(jobs, lambda line: None, tempfile.mkdtemp(prefix="prunequant-memory-"))
    rows = []
    try:
        for i, job in enumerate(jobs):
            before = available_memory_mb()
            workers.load([i])
            workers.time_round(i)
            time.sleep(0.5)
            rows.append({"variant": job.target.variant, "runtime": job.target.runtime, "size_mb": job.target.size_mb,
                         "estimate_mb": job.target.memory_mb(), "in_use_mb": round(before - available_memory_mb(), 1)})
            print(rows[-1], flush=True)
    finally:
        workers.stop(list(workers.loaded))
    frame = pd.DataFrame(rows)
    out.write_text(frame.to_csv(index=False))
    print(f"{len(frame)} targets: {frame.in_use_mb.sum():.0f} MB in use (the first includes the worker server), "
          f"estimated {frame.estimate_mb.sum():.0f} MB -> {out}")


if __name__ == "__main__":
    main()

"""Warm stage starts against cold ones, side by side: one quantize stage (pruned-3, onnx-int8-dynamic by default) run
as its own cold process and in a warm server's child (prunequant.warm), alternately, several times each, with its
outputs in a scratch folder. Prints and writes every wall time, the medians and their ratio. Needs `make repro`
first (the model and its predictions).

    python bench/warm_start.py --out metrics/faster-run/warm-start.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from prunequant.host import cpu_name


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


@click.command()
@click.option("--model", default="pruned-3", show_default=True)
@click.option("--scheme", default="onnx-int8-dynamic", show_default=True)
@click.option("--runs", default=3, show_default=True, help="Cold and warm runs each, alternating.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(model: str, scheme: str, runs: int, out: Path) -> None:
    runtime = tempfile.mkdtemp(prefix="pq-", dir="/tmp")  # its own server; a socket path is at most 107 characters
    scratch = Path(tempfile.mkdtemp(prefix="pq-warm-bench-"))
    command = [sys.executable, "stages/quantize.py", "--data", "data/prepared", "--model", f"models/{model}",
               "--variant", model, "--scheme", scheme, "--reference", f"predictions/{model}-fp32",
               "--out", str(scratch / "model"), "--metrics", str(scratch / "metrics.json"),
               "--predictions", str(scratch / "predictions")]
    warm_env = {**os.environ, "PRUNEQUANT_WARM": "1", "XDG_RUNTIME_DIR": runtime}
    cold_env = {**warm_env, "PRUNEQUANT_WARM": "0"}
    timed(command, warm_env)  # starts the server (this run itself is cold)
    deadline = time.monotonic() + 120
    while not list(Path(runtime).glob("*/*.sock")):
        if time.monotonic() > deadline:
            raise click.ClickException("the warm server did not come up")
        time.sleep(0.2)
    cold, warm = [], []
    for _ in range(runs):
        cold.append(round(timed(command, cold_env), 2))
        warm.append(round(timed(command, warm_env), 2))
    for sock in Path(runtime).glob("*/*.sock"):
        sock.unlink()  # stops the server
    result = {"stage": f"quantize {model} {scheme}", "cpu": cpu_name(), "cores": os.cpu_count(),
              "cold_s": cold, "warm_s": warm, "cold_median_s": statistics.median(cold),
              "warm_median_s": statistics.median(warm),
              "warm_over_cold": round(statistics.median(warm) / statistics.median(cold), 3)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

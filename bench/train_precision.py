"""Training speed of FP32 against bf16, side by side: `python bench/train_precision.py [--pairs 3 --steps 30]`.

Fine-tunes the default model on the prepared default data (`dvc repro prepare` first) for ``--steps`` optimizer
steps of batch 32 with the pipeline's own recipe, in a fresh process per run, FP32 and bf16 in turn (A B A B, so
a drift of the machine's speed hits both), and writes each run's training time and the median ratio to --out.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click


def one_run(precision: str, steps: int, data: Path) -> float:
    """Seconds of ``finetune`` alone (no loading), for ``steps`` optimizer steps."""
    import transformers

    from prunequant.modeling import load_classifier, load_tokenizer
    from prunequant.params.training import FinetuneConfig
    from prunequant.splits import load_split
    from prunequant.training.trainer import finetune

    transformers.logging.set_verbosity_error()
    train = load_split(data, "train").head(32 * steps)
    validation = load_split(data, "validation").head(64)
    transformers.set_seed(42)
    model, tokenizer = load_classifier("minilm-l6"), load_tokenizer("minilm-l6")
    cfg = FinetuneConfig(epochs=1, batch_size=32, precision=precision, logging_steps=10 * steps, checkpoint_steps=0)
    start = time.perf_counter()
    finetune(model, tokenizer, train, validation, cfg, seed=42, max_seq_length=128)
    return time.perf_counter() - start


@click.command()
@click.option("--pairs", default=3, show_default=True, help="FP32/bf16 pairs of runs.")
@click.option("--steps", default=30, show_default=True, help="Optimizer steps per run.")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/prepared"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("metrics/precision/train-speed.json"),
              show_default=True)
@click.option("--one", type=click.Choice(["fp32", "bf16"]), default=None, hidden=True)
def main(pairs: int, steps: int, data: Path, out: Path, one: str | None) -> None:
    if one:
        print(json.dumps({"seconds": one_run(one, steps, data)}))
        return
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for pair in range(pairs):
        for precision in ("fp32", "bf16"):
            result = subprocess.run([sys.executable, __file__, "--one", precision, "--steps", str(steps),
                                     "--data", str(data)], capture_output=True, text=True, check=True)
            seconds[precision].append(json.loads(result.stdout.strip().splitlines()[-1])["seconds"])
            click.echo(f"pair {pair + 1}: {precision} {seconds[precision][-1]:.1f} s")
    ratios = [b / f for f, b in zip(seconds["fp32"], seconds["bf16"], strict=True)]
    summary = {"steps": steps, "batch_size": 32, "seconds": seconds,
               "bf16_over_fp32": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"bf16 / fp32 training time: median {summary['bf16_over_fp32']['median']:.3f} "
               f"(min {min(ratios):.3f}, max {max(ratios):.3f}) over {pairs} pairs -> {out}")


if __name__ == "__main__":
    main()

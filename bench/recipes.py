"""The re-finetuning recipe, one ingredient at a time, as DVC experiments on the default pipeline.

    python bench/recipes.py run      # queue one `dvc exp run evaluate-pruned@<n> -S ...` per recipe, run the queue
    python bench/recipes.py table    # metrics/recipes.csv and a markdown table, from `dvc exp show --json`

Each experiment reruns only what its settings touch (the transfer set, one refinetune, one evaluation); the
baseline and the cut come from DVC's run cache. Validation accuracy chooses the recipe; test is reported. The
seconds are the refinetune stage's `train.runtime` (the Trainer's own clock), measured with nothing else running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import yaml

TRANSFER = ("refinetune.transfer=imdb",)
NO_TRANSFER = ("refinetune.transfer=null",)
RECIPES: list[tuple[str, int, tuple[str, ...]]] = [  # experiment name, layers kept, params set
    ("logits-3", 3, NO_TRANSFER),  # the labels and the teacher's logits
    ("transfer-2k-3", 3, (*TRANSFER, "refinetune.transfer_samples=2000")),
    ("transfer-4k-3", 3, (*TRANSFER, "refinetune.transfer_samples=4000")),
    ("transfer-4k-hidden-3", 3, (*TRANSFER, "refinetune.transfer_samples=4000", "refinetune.hidden_weight=1")),
    ("transfer-4k-hidden-uniform-3", 3, (*TRANSFER, "refinetune.transfer_samples=4000", "refinetune.hidden_weight=1",
                                         "refinetune.hidden_layers=[1,3,5]")),
    ("logits-2", 2, ("prune.keep_layers=[4,3,2]", *NO_TRANSFER)),
    ("transfer-2k-2", 2, ("prune.keep_layers=[4,3,2]", *TRANSFER, "refinetune.transfer_samples=2000")),
]
OUT = Path("metrics/recipes.csv")


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], check=check, capture_output=True, text=True)


@click.group()
def main() -> None:
    """Re-finetuning recipes as DVC experiments."""


@main.command()
def run() -> None:
    """Queue every recipe (replacing an experiment of the same name) and run the queue, one at a time."""
    for name, keep, settings in RECIPES:
        dvc("exp", "remove", name, check=False)
        dvc("exp", "run", "--queue", "-n", name, f"evaluate-pruned@{keep}", *(a for s in settings for a in ("-S", s)))
        click.echo(f"queued {name}: evaluate-pruned@{keep} {' '.join(settings)}")
    subprocess.run(["dvc", "queue", "start", "-j", "1"], check=True)
    click.echo("running: `dvc queue status` until every task is done, then `python bench/recipes.py table`")


def _experiments(shown: list) -> dict[str, dict]:
    """``dvc exp show --json``: each named experiment's params and metrics files, by name."""
    found = {}
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                if rev.get("name"):
                    found[rev["name"]] = rev.get("data") or {}
    return found


def _file(data: dict, kind: str, path: str) -> dict:
    return ((data.get(kind) or {}).get(path) or {}).get("data") or {}


def _check_settings(name: str, data: dict, settings: tuple[str, ...]) -> None:
    """Each ``key=value`` of the recipe is what the experiment ran with (so the table never mislabels a run)."""
    params = _file(data, "params", "params.yaml")
    for setting in settings:
        key, value = setting.split("=", 1)
        found = params
        for part in key.split("."):
            found = (found or {}).get(part)
        if found != yaml.safe_load(value):
            sys.exit(f"error: experiment {name!r} ran with {key}={found!r}, not {value}; "
                     "rerun `python bench/recipes.py run`")


@main.command()
def table() -> None:
    """Write metrics/recipes.csv (one row per recipe and split) and print the markdown table."""
    # The experiments hang off the commit they ran on: look ten commits back, so later commits still find them.
    experiments = _experiments(json.loads(dvc("exp", "show", "--json", "-n", "10").stdout))
    rows = []
    for name, keep, settings in RECIPES:
        if name not in experiments:
            sys.exit(f"error: no experiment {name!r}; run `python bench/recipes.py run` and wait for the queue")
        data = experiments[name]
        _check_settings(name, data, settings)
        evaluation = _file(data, "metrics", f"metrics/evaluate/pruned-{keep}-fp32.json")
        training = _file(data, "metrics", f"metrics/refinetune/pruned-{keep}/metrics.json")
        for split in ("validation", "test"):
            scores = evaluation[split]
            rows.append({
                "recipe": name, "layers": keep, "settings": " ".join(settings), "split": split,
                "accuracy": scores["accuracy"], "accuracy_ci_low": scores["accuracy_ci_low"],
                "accuracy_ci_high": scores["accuracy_ci_high"], "accuracy_delta": scores["accuracy_delta"],
                "mcnemar_p": scores["mcnemar_p"], "train_seconds": training["train"]["runtime"],
            })
    frame = pd.DataFrame(rows)
    frame.to_csv(OUT, index=False)
    click.echo(f"-> {OUT}\n")
    click.echo("| recipe | layers | validation % (Δ) | test % [95% CI] | Δ (p) | train s |")
    click.echo("|---|---:|---|---|---|---:|")
    for (name, keep), group in frame.groupby(["recipe", "layers"], sort=False):
        val, test = (group[group.split == s].iloc[0] for s in ("validation", "test"))
        click.echo(f"| `{name}` | {keep} | {100 * val.accuracy:.2f} ({100 * val.accuracy_delta:+.2f}) | "
                   f"{100 * test.accuracy:.2f} [{100 * test.accuracy_ci_low:.2f}, {100 * test.accuracy_ci_high:.2f}] | "
                   f"{100 * test.accuracy_delta:+.2f} ({test.mcnemar_p:.2g}) | {test.train_seconds:.0f} |")


if __name__ == "__main__":
    main()

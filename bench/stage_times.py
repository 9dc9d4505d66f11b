"""Where a whole pipeline run's time goes, stage by stage: run a command (`dvc repro`, `make repro`), stamp every
line it prints with the time, and split each stage's wall time into the process's start-up and imports, model
loading, the work itself (the `stage-time:` line every stage prints, prunequant.clock) and what DVC spends around
the process (checking, hashing and caching outputs). Writes the CSV and prints a Markdown table:

    python bench/stage_times.py --out metrics/stage-times.csv -- dvc repro
    python bench/stage_times.py --compare metrics/stage-times-before.csv metrics/stage-times-after.csv
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pandas as pd

STAGE = re.compile(r"^Running stage '([^']+)'")
TIMES = re.compile(r"stage-time: \S+ start-up (n/a|[\d.]+) s, loading ([\d.]+) s, work ([\d.]+) s")


def parse(lines: list[tuple[float, str]], end: float) -> pd.DataFrame:
    """Per stage of a timestamped DVC log: its wall time (from its "Running stage" line to the next one, or to
    ``end``) and the phases its own `stage-time:` line reports."""
    rows: list[dict] = []
    for stamp, line in lines:
        if match := STAGE.match(line):
            rows.append({"stage": match.group(1), "start": stamp})
        elif (match := TIMES.search(line)) and rows:
            startup = match.group(1)
            rows[-1] |= {"startup_s": None if startup == "n/a" else float(startup), "loading_s": float(match.group(2)),
                         "work_s": float(match.group(3))}
    frame = pd.DataFrame(rows, columns=["stage", "start", "startup_s", "loading_s", "work_s"])
    frame["wall_s"] = (frame.start.shift(-1).fillna(end) - frame.start).round(1)
    frame["dvc_s"] = (frame.wall_s - frame[["startup_s", "loading_s", "work_s"]].sum(axis=1, min_count=1)).round(1)
    frame["start"] = frame.start - (frame.start.iloc[0] if len(frame) else 0)
    return frame[["stage", "start", "wall_s", "startup_s", "loading_s", "work_s", "dvc_s"]].round(1)


def by_kind(frame: pd.DataFrame) -> pd.DataFrame:
    """Seconds summed over the stages of each kind (a stage's name before '@'), with the count, and a total row."""
    kinds = frame.assign(kind=frame.stage.str.split("@").str[0]).groupby("kind", sort=False)
    table = kinds[["wall_s", "startup_s", "loading_s", "work_s", "dvc_s"]].sum().assign(stages=kinds.size())
    table.loc["total"] = table.sum()
    return table


def markdown(frame: pd.DataFrame) -> str:
    """One row per kind of stage (its name before '@'), the count, and the seconds summed over its stages."""
    table = by_kind(frame)
    lines = ["| stage | stages | wall s | start-up and imports s | loading s | work s | DVC around it s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind, r in table.iterrows():
        lines.append(f"| {kind} | {int(r.stages)} | {r.wall_s:.0f} | {r.startup_s:.0f} | {r.loading_s:.0f} "
                     f"| {r.work_s:.0f} | {r.dvc_s:.0f} |")
    return "\n".join(lines)


def compare(before: pd.DataFrame, after: pd.DataFrame) -> str:
    """Wall seconds per kind of stage in two runs, side by side, the ratio, and where the second run's went."""
    old, new = by_kind(before), by_kind(after)
    lines = ["| stage | stages | wall s, before | wall s, after | after / before | after: start-up and imports s "
             "| loading s | work s | DVC around it s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in old.index:
        if kind in new.index:
            r = new.loc[kind]
            lines.append(f"| {kind} | {int(r.stages)} | {old.wall_s[kind]:.0f} | {r.wall_s:.0f} "
                         f"| {r.wall_s / old.wall_s[kind]:.2f} | {r.startup_s:.0f} | {r.loading_s:.0f} "
                         f"| {r.work_s:.0f} | {r.dvc_s:.0f} |")
    return "\n".join(lines)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--out", type=click.Path(path_type=Path), default="metrics/stage-times.csv", show_default=True)
@click.option("--compare", "compare_csvs", is_flag=True,
              help="Run nothing: COMMAND is two CSVs this wrote (before, after); print their times side by side.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def main(out: Path, compare_csvs: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND, echo its output, and write the per-stage times to OUT (the timestamped log next to it)."""
    if compare_csvs:
        before, after = (pd.read_csv(path) for path in command)
        click.echo(compare(before, after))
        return
    lines, start = [], time.time()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            sys.stdout.write(line)
    end = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".log").write_text("".join(f"{s - start:9.1f} {line}\n" for s, line in lines))
    frame = parse(lines, end)
    out.write_text(frame.to_csv(index=False))
    click.echo(f"\n{markdown(frame)}\n\n{len(frame)} stages in {end - start:.0f} s -> {out}; exit {proc.returncode}")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()

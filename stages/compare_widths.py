"""compare-widths: depth against width at equal latency, from what widths/dvc.yaml measured -> a table, a plot and
the validation front (the cut to take at each latency)."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

import json
from pathlib import Path

import click
import pandas as pd

from prunequant.depth_width import comparison, markdown, plot
from prunequant.errors import PrunequantError, StageCommand
from prunequant.host import machine_summary
from prunequant.io import write_text
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.prune import CompareConfig

POINTS = ((1, 16), (1, 128))  # one short sentence, one long one: what widths/dvc.yaml's bench stage times


@click.command(cls=StageCommand)
@click.option("--bench", "bench_csv", type=click.Path(path_type=Path), required=True,
              help="The comparison's timings (its bench stage's CSV).")
@click.option("--machine", "machine_json", type=click.Path(path_type=Path), required=True,
              help="The machine they were timed on (its bench stage's JSON).")
@click.option("--evaluations", type=click.Path(path_type=Path), required=True,
              help="Folder of the cuts' evaluation JSONs (metrics/widths/evaluate).")
@click.option("--baseline", "baseline_json", type=click.Path(path_type=Path), required=True,
              help="The FP32 baseline's evaluation JSON.")
@click.option("--baseline-artifact", "artifact_json", type=click.Path(path_type=Path), required=True,
              help="The baseline's compare.scheme artifact's evaluation JSON.")
@click.option("--predictions", type=click.Path(path_type=Path), required=True,
              help="The predictions folder (predictions/, with widths/ inside).")
@click.option("--table", "table_csv", type=click.Path(path_type=Path), required=True, help="CSV file for the table.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), required=True,
              help="Markdown file for the report.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), required=True, help="PNG file for the plot.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(bench_csv: Path, machine_json: Path, evaluations: Path, baseline_json: Path, artifact_json: Path,
         predictions: Path, table_csv: Path, markdown_path: Path, png_path: Path, params_path: str) -> None:
    """Write <table> (one row per cut), <markdown> and <png>."""
    params = load(params_path, base=BaseConfig, compare=CompareConfig)
    for path in (bench_csv, machine_json, baseline_json):
        if not path.is_file():
            raise PrunequantError(f"{path}: not found; run `make compare-widths`")
    baseline = json.loads(baseline_json.read_text())
    table = comparison(pd.read_csv(bench_csv), evaluations, baseline, artifact_json, predictions,
                       params.compare.cut_list, params.compare.scheme, POINTS)
    write_text(table_csv, table.to_csv(index=False))
    machine = machine_summary(json.loads(machine_json.read_text()))
    write_text(markdown_path, markdown(table, POINTS, scheme=params.compare.scheme, machine=machine,
                                       source=str(bench_csv)))
    plot(table, baseline["test"]["accuracy"], POINTS, png_path,
         title=f"Depth against width: {params.base.model}, {params.compare.scheme}, each cut re-finetuned")
    front = table[table.validation_front].cut.tolist()
    click.echo(f"compare-widths: {len(table)} rows -> {table_csv}; validation front: {', '.join(front)}")


if __name__ == "__main__":
    main()

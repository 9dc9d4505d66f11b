"""report: the deployment report from the results table and the benchmark CSVs: tables with measured costs,
figures, and a recommendation per deployment target."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

import json
from pathlib import Path

import click
import pandas as pd

from prunequant.errors import PrunequantError, StageCommand
from prunequant.io import write_json
from prunequant.layer_choice import estimator_comparison
from prunequant.params import load
from prunequant.params.evaluate import EvaluateConfig
from prunequant.params.prune import PruneConfig
from prunequant.params.report import ReportConfig
from prunequant.report import recommendation_metrics, width_markdown, write_report


@click.command(cls=StageCommand)
@click.option("--results", type=click.Path(path_type=Path), required=True, help="Results CSV (the results stage's).")
@click.option("--bench", "bench_dir", type=click.Path(path_type=Path), required=True,
              help="Folder of the benchmark CSVs (metrics/bench).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for report.md, figures/ and plots/.")
@click.option("--recommendations", type=click.Path(path_type=Path), required=True,
              help="JSON file for the recommendation per target.")
@click.option("--sensitivity", "sensitivity_csv", type=click.Path(path_type=Path), required=True,
              help="Layer sensitivity CSV (the sensitivity stage's).")
@click.option("--blocks", "blocks_csv", type=click.Path(path_type=Path), required=True,
              help="Angular distances of blocks of layers (the sensitivity stage's).")
@click.option("--sensitivity-metrics", "sensitivity_json", type=click.Path(path_type=Path), required=True,
              help="The sensitivity stage's JSON (the seconds each estimator took).")
@click.option("--ffn", "ffn_csv", type=click.Path(path_type=Path), required=True,
              help="FFN neuron scores per layer (the sensitivity stage's).")
@click.option("--study", type=click.Path(path_type=Path), default=None,
              help="CSV of the original study's CPU figures, shown next to `make bench-cpu-shapes`'s.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(results: Path, bench_dir: Path, out_dir: Path, recommendations: Path, sensitivity_csv: Path, blocks_csv: Path,
         sensitivity_json: Path, ffn_csv: Path, study: Path | None, params_path: str) -> None:
    """Write <out>/report.md with its figures and <recommendations>."""
    params = load(params_path, evaluate=EvaluateConfig, report=ReportConfig, prune=PruneConfig)
    for path, stage in ((results, "results"), (sensitivity_csv, "sensitivity"), (blocks_csv, "sensitivity"),
                        (sensitivity_json, "sensitivity"), (ffn_csv, "sensitivity")):
        if not path.is_file():
            raise PrunequantError(f"{path}: not found; run `dvc repro {stage}` first")
    seconds = json.loads(sensitivity_json.read_text())
    estimators = estimator_comparison(pd.read_csv(sensitivity_csv), pd.read_csv(blocks_csv), seconds,
                                      sorted({cut.layers for cut in params.prune.cuts}))
    width = width_markdown(pd.read_csv(ffn_csv), seconds, params.prune)
    choices = write_report(pd.read_csv(results), bench_dir, out_dir, params, study, estimators, width)
    for choice in choices:
        click.echo(f"  {choice.target.name}: {choice.variant or ' '.join(choice.reasons)}")
    write_json(recommendations, recommendation_metrics(choices))
    click.echo(f"report: {out_dir / 'report.md'}")


if __name__ == "__main__":
    main()

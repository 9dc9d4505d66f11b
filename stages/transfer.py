"""transfer: the unlabelled sentences the pruned students learn from the teacher alone (refinetune.transfer)."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

from pathlib import Path

import click

from prunequant.errors import StageCommand
from prunequant.io import write_json
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.training import RefinetuneConfig
from prunequant.splits import SPLITS, load_split
from prunequant.transfer import build_transfer, save_transfer


@click.command(cls=StageCommand)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Prepared data folder.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="Parquet file for the sentences.")
@click.option("--metrics", type=click.Path(path_type=Path), required=True, help="JSON file for the counts.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(data_dir: Path, out_path: Path, metrics: Path, params_path: str) -> None:
    """Write <out> (a text column; no rows with refinetune.transfer: null)."""
    params = load(params_path, base=BaseConfig, refinetune=RefinetuneConfig)
    cfg = params.refinetune
    prepared = {split: load_split(data_dir, split) for split in SPLITS}
    frame, summary = build_transfer(cfg.transfer, prepared, cfg.transfer_samples, params.base.seed)
    save_transfer(frame, out_path)
    write_json(metrics, summary)
    source = cfg.transfer or "nothing (refinetune.transfer: null)"
    click.echo(f"transfer: {summary['sentences']} sentences from {source} -> {out_path}")


if __name__ == "__main__":
    main()

"""prepare: load the data set named in params.yaml and split it once into train/validation/test."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

from pathlib import Path

import click

from prunequant.data import load_raw_splits, make_splits
from prunequant.errors import StageCommand
from prunequant.io import write_json
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.prepare import PrepareConfig
from prunequant.splits import save_splits


@click.command(cls=StageCommand)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the splits.")
@click.option("--metrics", type=click.Path(path_type=Path), required=True, help="JSON file for split sizes.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(out_dir: Path, metrics: Path, params_path: str) -> None:
    """Write <out>/{train,validation,test}.parquet (idx, text, label) and <out>/info.json."""
    params = load(params_path, base=BaseConfig, prepare=PrepareConfig)
    raw, source = load_raw_splits(params.base.data)
    splits, label_names = make_splits(raw, source, params.prepare, params.base.seed)
    summary = save_splits(splits, label_names, out_dir)
    write_json(metrics, summary["splits"])
    sizes = ", ".join(f"{name} {info['n']}" for name, info in summary["splits"].items())
    click.echo(f"prepare: {params.base.data}: {sizes} -> {out_dir}")


if __name__ == "__main__":
    main()

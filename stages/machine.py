"""machine: record which accelerator this machine offers, so GPU stages rerun when it changes."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

from pathlib import Path

import click

from prunequant.accelerator import probe
from prunequant.errors import StageCommand
from prunequant.io import write_json


@click.command(cls=StageCommand)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON file to write.")
def main(out: Path) -> None:
    """Write {"cuda": bool, "gpu": name or null} to <out> (rewritten only when it changes)."""
    machine = probe()
    write_json(out, machine)
    click.echo(f"machine: {'CUDA, ' + machine['gpu'] if machine['cuda'] else 'no CUDA device: GPU schemes report n/a'}")


if __name__ == "__main__":
    main()

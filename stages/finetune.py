"""finetune: fine-tune the model named in params.yaml on the prepared training split."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

from pathlib import Path

import click

from prunequant.errors import StageCommand
from prunequant.modeling import (
    check_max_seq_length,
    load_classifier,
    load_tokenizer,
    save_classifier,
)
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.training import FinetuneConfig
from prunequant.splits import load_label_names, load_split
from prunequant.training.checkpoints import Checkpoints
from prunequant.training.launch import relaunch
from prunequant.training.trainer import finetune, is_main_process


@click.command(cls=StageCommand)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Prepared data folder.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the model.")
@click.option("--live", "live_dir", type=click.Path(path_type=Path), required=True, help="DVCLive folder.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(data_dir: Path, out_dir: Path, live_dir: Path, params_path: str) -> None:
    """Write a save_pretrained folder (safetensors + tokenizer) to <out>."""
    params = load(params_path, base=BaseConfig, finetune=FinetuneConfig)
    train, validation = load_split(data_dir, "train"), load_split(data_dir, "validation")

    from transformers import set_seed

    relaunch(params.finetune.processes, "finetune")  # finetune.processes > 1: `accelerate launch` runs this again

    set_seed(params.base.seed)  # before the new classifier head is initialised
    tokenizer = load_tokenizer(params.base.model)
    model = load_classifier(params.base.model, label_names=load_label_names(data_dir))
    check_max_seq_length(model, params.base.max_seq_length)
    checkpoints = Checkpoints(out_dir)  # resumed after a kill, removed once the model is saved
    metrics = finetune(
        model,
        tokenizer,
        train,
        validation,
        params.finetune,
        seed=params.base.seed,
        max_seq_length=params.base.max_seq_length,
        live_dir=live_dir,
        checkpoints=checkpoints,
    )
    if is_main_process():
        save_classifier(model, tokenizer, out_dir)
        checkpoints.discard()
        click.echo(f"finetune: validation accuracy {metrics['accuracy']:.4f} -> {out_dir}")


if __name__ == "__main__":
    main()

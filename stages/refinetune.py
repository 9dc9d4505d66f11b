"""refinetune: fine-tune a pruned model again, optionally distilled from the fine-tuned baseline."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

import dataclasses
from pathlib import Path

import click
import pandas as pd

from prunequant.errors import PrunequantError, StageCommand
from prunequant.modeling import load_classifier, load_tokenizer, save_classifier
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.training import RefinetuneConfig
from prunequant.splits import load_split
from prunequant.training.checkpoints import Checkpoints
from prunequant.training.launch import relaunch
from prunequant.training.trainer import finetune, is_main_process


@click.command(cls=StageCommand)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Prepared data folder.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Pruned model folder.")
@click.option("--teacher", "teacher_dir", type=click.Path(path_type=Path), required=True,
              help="Fine-tuned baseline folder (the teacher when refinetune.distill is on).")
@click.option("--transfer", "transfer_path", type=click.Path(path_type=Path), required=True,
              help="The transfer stage's Parquet file of unlabelled sentences "
                   "(no rows with refinetune.transfer: null).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the model.")
@click.option("--live", "live_dir", type=click.Path(path_type=Path), required=True, help="DVCLive folder.")
@click.option("--distill/--no-distill", default=None,
              help="Override refinetune.distill (make compare-strategies runs both).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(data_dir: Path, model_dir: Path, teacher_dir: Path, transfer_path: Path, out_dir: Path, live_dir: Path,
         distill: bool | None, params_path: str) -> None:
    """Write the re-finetuned save_pretrained folder to <out>."""
    params = load(params_path, base=BaseConfig, refinetune=RefinetuneConfig)
    cfg = params.refinetune
    if distill is not None:
        cfg = dataclasses.replace(cfg, distill=distill)
    train, validation = load_split(data_dir, "train"), load_split(data_dir, "validation")
    # Transfer sentences have no labels: they are learnt from the teacher's logits, so only with distillation.
    if not transfer_path.is_file():
        raise PrunequantError(f"{transfer_path}: transfer set not found; run `dvc repro transfer` first")
    transfer = pd.read_parquet(transfer_path) if cfg.distill else None

    from transformers import set_seed

    relaunch(cfg.processes, "refinetune")  # refinetune.processes > 1: `accelerate launch` runs this again

    set_seed(params.base.seed)
    model, tokenizer = load_classifier(str(model_dir)), load_tokenizer(str(model_dir))
    teacher = load_classifier(str(teacher_dir)) if cfg.distill else None
    checkpoints = Checkpoints(out_dir)  # resumed after a kill, removed once the model is saved
    metrics = finetune(
        model, tokenizer, train, validation, cfg,
        seed=params.base.seed, max_seq_length=params.base.max_seq_length, live_dir=live_dir,
        teacher=teacher, kept_layers=getattr(model.config, "pruned_from_layers", None), transfer=transfer,
        checkpoints=checkpoints,
    )
    if is_main_process():
        save_classifier(model, tokenizer, out_dir)
        checkpoints.discard()
        how = "plain" if not cfg.distill else f"distilled, {len(transfer)} transfer sentences"
        click.echo(f"refinetune: validation accuracy {metrics['accuracy']:.4f} ({how}) -> {out_dir}")


if __name__ == "__main__":
    main()

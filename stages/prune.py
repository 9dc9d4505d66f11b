"""prune: physically remove the least important layers of the fine-tuned baseline, and with a width cut
(``3-w50``) the least important attention heads and FFN neurons of the layers it keeps."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

import dataclasses
from pathlib import Path

import click
import pandas as pd
from safetensors.torch import load_file

from prunequant.errors import PrunequantError, StageCommand
from prunequant.layer_choice import angular_blocks, importance_order, layers_to_drop
from prunequant.modeling import load_classifier, load_tokenizer, save_classifier
from prunequant.params import SettingError, load
from prunequant.params.prune import PRUNE_STRATEGIES, PruneConfig, parse_cut
from prunequant.pruning import drop_layers, layer_count
from prunequant.width import cut_width, ffn_size


@click.command(cls=StageCommand)
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Fine-tuned model folder.")
@click.option("--sensitivity", "sensitivity_csv", type=click.Path(path_type=Path), required=True,
              help="Layer sensitivity CSV (used by the strategies sensitivity and block-influence).")
@click.option("--blocks", "blocks_csv", type=click.Path(path_type=Path), required=True,
              help="Angular distances of blocks of layers (used by the strategy angular).")
@click.option("--scores", "scores_path", type=click.Path(path_type=Path), required=True,
              help="Head and FFN neuron scores (safetensors; used by width cuts).")
@click.option("--keep-layers", "entry", required=True,
              help="The variant: how many layers to keep (4), and what share of heads and FFN neurons (3-w50).")
@click.option("--strategy", type=click.Choice(PRUNE_STRATEGIES), default=None,
              help="Override prune.strategy (make compare-strategies runs each one).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the pruned model.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(model_dir: Path, sensitivity_csv: Path, blocks_csv: Path, scores_path: Path, entry: str,
         strategy: str | None, out_dir: Path, params_path: str) -> None:
    """Write a save_pretrained folder with <keep-layers> layers (config.pruned_from_layers says which), their heads
    and FFN neurons cut as the entry says (config.pruned_heads and the FFN size say what is left)."""
    cfg = load(params_path, prune=PruneConfig).prune
    try:
        cut = parse_cut(int(entry) if entry.isdigit() else entry, "--keep-layers")
    except SettingError as exc:
        raise PrunequantError(exc.format_message()) from None
    if strategy is not None and strategy != cfg.strategy:
        cfg = dataclasses.replace(cfg, strategy=strategy, drop_layers=cfg.drop_layers if strategy == "explicit" else ())
    model, tokenizer = load_classifier(str(model_dir)), load_tokenizer(str(model_dir))
    total = layer_count(model)
    order = blocks = None
    if cfg.strategy in ("sensitivity", "block-influence", "angular"):
        table_csv = blocks_csv if cfg.strategy == "angular" else sensitivity_csv
        if not table_csv.is_file():
            raise PrunequantError(f"{table_csv}: not found; run `dvc repro sensitivity` first")
        if cfg.strategy == "angular":
            blocks = angular_blocks(pd.read_csv(table_csv), cfg.pooling)
        else:
            order = importance_order(pd.read_csv(table_csv), cfg.strategy, cfg.pooling)
    if cut.width and cut.layers == total:  # a width cut of every layer (6-w50 of 6): no layer goes
        drop = []
    else:
        drop = layers_to_drop(cfg.strategy, total, cut.layers, importance_order=order, blocks=blocks,
                              explicit=cfg.drop_layers)
    pruned = drop_layers(model, drop)
    width = ""
    if cut.width:
        if not scores_path.is_file():
            raise PrunequantError(f"{scores_path}: not found; run `dvc repro sensitivity` first")
        pruned = cut_width(pruned, load_file(scores_path), cut, cfg.width_score)
        width = (f"; by {cfg.width_score}, kept {cut.heads}% of heads and {cut.ffn}% of FFN neurons "
                 f"(FFN size {ffn_size(pruned)})")
    save_classifier(pruned, tokenizer, out_dir)
    click.echo(f"prune: {cfg.strategy}: dropped layers {drop} of {total}, kept "
               f"{pruned.config.pruned_from_layers}{width} -> {out_dir}")


if __name__ == "__main__":
    main()

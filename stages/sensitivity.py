"""sensitivity: skip each layer of the fine-tuned baseline and measure the validation accuracy drop; score each
layer and each block of layers by how little it changes its input, too (label-free, one forward pass); and score
every attention head and FFN neuron (gradient and activation), for the width cuts."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

from pathlib import Path

import click
from safetensors.torch import save_file

from prunequant import importance
from prunequant.errors import StageCommand
from prunequant.evaluation import predict_logits
from prunequant.io import write_json, write_text
from prunequant.modeling import load_classifier, load_tokenizer
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.evaluate import EvaluateConfig
from prunequant.params.sensitivity import SensitivityConfig
from prunequant.sensitivity import measure, plot_sensitivity
from prunequant.splits import load_split, model_inputs


@click.command(cls=StageCommand)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Prepared data folder.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Fine-tuned model folder.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), required=True, help="CSV file for the table.")
@click.option("--blocks", "blocks_path", type=click.Path(path_type=Path), required=True,
              help="CSV file for the angular distance of every block of consecutive layers.")
@click.option("--metrics", "metrics_path", type=click.Path(path_type=Path), required=True,
              help="JSON file for the full model's accuracy and the seconds each measurement took.")
@click.option("--png", "png_path", type=click.Path(path_type=Path), required=True, help="PNG file for the chart.")
@click.option("--heads", "heads_path", type=click.Path(path_type=Path), required=True,
              help="CSV file for the score of every (layer, head).")
@click.option("--ffn", "ffn_path", type=click.Path(path_type=Path), required=True,
              help="CSV file for the FFN neuron scores, summarised per layer.")
@click.option("--scores", "scores_path", type=click.Path(path_type=Path), required=True,
              help="safetensors file of every head and FFN neuron score (what the prune stage reads).")
@click.option("--heads-png", "heads_png", type=click.Path(path_type=Path), required=True,
              help="PNG file for the layer x head heat map.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(data_dir: Path, model_dir: Path, csv_path: Path, blocks_path: Path, metrics_path: Path, png_path: Path,
         heads_path: Path, ffn_path: Path, scores_path: Path, heads_png: Path, params_path: str) -> None:
    """Write <csv> (layer, accuracy, accuracy_drop, ci_low, ci_high, removal_order and the label-free scores),
    <blocks> (start, length, angular distances), <metrics> (the seconds each measurement took), a bar chart, and the
    head and FFN neuron scores (<heads>, <ffn>, <scores>, <heads-png>)."""
    params = load(params_path, base=BaseConfig, evaluate=EvaluateConfig, sensitivity=SensitivityConfig)
    validation = load_split(data_dir, "validation")
    model, tokenizer = load_classifier(str(model_dir)), load_tokenizer(str(model_dir))
    texts, labels = model_inputs(validation), validation["label"].to_numpy()

    def correct(candidate):
        logits = predict_logits(candidate, tokenizer, texts, batch_size=params.evaluate.batch_size,
                                max_seq_length=params.base.max_seq_length)
        return logits.argmax(axis=-1) == labels

    reference, table, blocks, seconds = measure(model, tokenizer, texts, correct, method=params.sensitivity.method,
                                                batch_size=params.evaluate.batch_size,
                                                max_seq_length=params.base.max_seq_length,
                                                confidence_level=params.evaluate.confidence_level)
    scores, unit_seconds = importance.measure(model, tokenizer, texts, labels, batch_size=params.evaluate.batch_size,
                                              max_seq_length=params.base.max_seq_length)
    write_text(csv_path, table.to_csv(index=False))
    write_text(blocks_path, blocks.to_csv(index=False))
    heads = importance.head_table(scores)
    write_text(heads_path, heads.to_csv(index=False))
    write_text(ffn_path, importance.ffn_table(scores).to_csv(index=False))
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(scores, scores_path)
    write_json(metrics_path, {"validation_accuracy": reference, "method": params.sensitivity.method,
                              "sentences": len(texts),
                              **{k: round(v, 2) for k, v in {**seconds, **unit_seconds}.items()}})
    png_path.parent.mkdir(parents=True, exist_ok=True)
    plot_sensitivity(table, reference, png_path,
                     title=f"Layer sensitivity of {params.base.model} ({params.sensitivity.method})")
    importance.plot_heads(heads, heads_png, title=f"Attention-head importance of {params.base.model}")
    order = table.sort_values("removal_order")["layer"].tolist()
    click.echo(f"sensitivity: full model {reference:.4f}; least to most important layers: {order}")


if __name__ == "__main__":
    main()

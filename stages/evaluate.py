"""evaluate: score a saved model on the validation and test splits, keeping per-example predictions."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

from pathlib import Path

import click

from prunequant.errors import StageCommand
from prunequant.evaluation import save_predictions, score_splits
from prunequant.fingerprint import folder_md5
from prunequant.io import write_json
from prunequant.modeling import load_classifier, load_tokenizer, num_layers, training_precision_of
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.evaluate import EvaluateConfig
from prunequant.record import Evaluation
from prunequant.sizes import model_size_mb


@click.command(cls=StageCommand)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Prepared data folder.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Model folder.")
@click.option("--variant", required=True, help="Name of the model in results (e.g. baseline).")
@click.option("--metrics", type=click.Path(path_type=Path), required=True, help="JSON file for accuracy.")
@click.option("--predictions", type=click.Path(path_type=Path), required=True, help="Folder for predictions.")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Predictions folder of a model to compare with (paired McNemar test).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(
    data_dir: Path, model_dir: Path, variant: str, metrics: Path, predictions: Path, reference: Path | None,
    params_path: str,
) -> None:
    """Write accuracy with confidence intervals to <metrics> and predictions to <predictions>/<split>.parquet."""
    params = load(params_path, base=BaseConfig, evaluate=EvaluateConfig)
    model = load_classifier(str(model_dir))
    tokenizer = load_tokenizer(str(model_dir))
    scores, frames = score_splits(
        model, tokenizer, data_dir, batch_size=params.evaluate.batch_size,
        max_seq_length=params.base.max_seq_length, confidence_level=params.evaluate.confidence_level,
        reference=reference,
    )
    save_predictions(frames, predictions)
    record = Evaluation(
        variant=variant, model=params.base.model, layers=num_layers(model), precision="fp32",
        trained_in=training_precision_of(model_dir), device="cpu", size_mb=round(model_size_mb(model_dir), 3),
        artifact_md5=folder_md5(model_dir),  # the DVC hash of what was scored (dvc.lock has it too)
        status="ok", measured_on="cpu", kernels="torch-cpu", eval_batch=params.evaluate.batch_size,
        reference=reference.name if reference is not None else None, scores=scores)
    write_json(metrics, record.to_json())
    test = scores["test"]
    click.echo(
        f"evaluate: {variant} test accuracy {test['accuracy']:.4f} "
        f"[{test['accuracy_ci_low']:.4f}, {test['accuracy_ci_high']:.4f}] (n={test['n']})"
    )


if __name__ == "__main__":
    main()

"""quantize: build one artifact of a model with one scheme, score it, and write its model card."""

from prunequant.warm import hand_off

hand_off()  # with a warm server up, the stage runs in its child and this process exits here

import dataclasses
from pathlib import Path

import click

from prunequant.errors import PrunequantError, StageCommand
from prunequant.evaluation import (
    load_predictions,
    paired_test,
    save_predictions,
    score_splits,
)
from prunequant.fingerprint import folder_md5
from prunequant.io import atomic_dir, write_json, write_text
from prunequant.modelcard import model_card
from prunequant.modeling import num_layers, training_precision_of
from prunequant.params import load
from prunequant.params.base import BaseConfig
from prunequant.params.evaluate import EvaluateConfig
from prunequant.params.quantize import SCHEME_FAMILY, QuantizeConfig
from prunequant.quantization import (
    BuildContext,
    build_artifact,
    get_scheme,
    load_artifact,
    measured_on,
    not_available_reason,
    scheme_settings,
    scoring_batch_size,
    write_manifest,
)
from prunequant.record import Evaluation
from prunequant.sizes import model_size_mb
from prunequant.splits import SCORED_SPLITS, load_label_names, load_split, model_inputs


@click.command(cls=StageCommand)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Prepared data folder.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="FP32 model folder.")
@click.option("--variant", required=True, help="Name of the source model in results (e.g. pruned-4).")
@click.option("--scheme", "scheme_name", type=click.Choice(list(SCHEME_FAMILY)), required=True,
              help="A scheme of the registry (e.g. onnx-int8-dynamic).")
@click.option("--reference", type=click.Path(path_type=Path), required=True,
              help="Predictions folder of the FP32 source (paired McNemar test).")
@click.option("--baseline", type=click.Path(path_type=Path), default=None,
              help="Predictions folder of the FP32 baseline, when it is not the reference: a second paired test.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Artifact folder.")
@click.option("--metrics", type=click.Path(path_type=Path), required=True, help="JSON file for accuracy.")
@click.option("--predictions", type=click.Path(path_type=Path), required=True, help="Folder for predictions.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="Parameters file.")
def main(data_dir: Path, model_dir: Path, variant: str, scheme_name: str, reference: Path, baseline: Path | None,
         out_dir: Path, metrics: Path, predictions: Path, params_path: str) -> None:
    """Write the artifact to <out>, its accuracy to <metrics> and its predictions to <predictions>."""
    params = load(params_path, base=BaseConfig, evaluate=EvaluateConfig, quantize=QuantizeConfig)
    scheme = get_scheme(scheme_name)  # imports this scheme's family, and no other
    settings = scheme_settings(params.quantize, scheme_name)
    # Inputs are checked before any build: a missing one fails in one line, and fast.
    if not (model_dir / "config.json").is_file():
        raise PrunequantError(f"{model_dir}: no model folder here; run `dvc repro` to build it")
    against = {split: load_predictions(baseline, split) for split in SCORED_SPLITS} if baseline else {}
    for split in SCORED_SPLITS:
        load_predictions(reference, split)
    train = load_split(data_dir, "train")
    described = dict(variant=variant, model=params.base.model, precision=scheme.name, device=scheme.device,
                     reference=reference.name, source_trained_in=training_precision_of(model_dir))
    unavailable = not_available_reason(scheme)
    with atomic_dir(out_dir) as tmp:
        if not unavailable:
            context = BuildContext(
                train_texts=tuple(model_inputs(train)), train_labels=tuple(int(v) for v in train["label"]),
                seed=params.base.seed, max_seq_length=params.base.max_seq_length,
            )
            unavailable = build_artifact(scheme, model_dir, tmp, settings, context)  # n/a: what a family cannot do
        if unavailable:
            from transformers import AutoConfig

            record = Evaluation(**described, layers=num_layers(AutoConfig.from_pretrained(model_dir)), size_mb=None,
                                status=unavailable)
            write_manifest(tmp, scheme, settings, str(model_dir), unavailable)
            frames = {}
        else:
            write_manifest(tmp, scheme, settings, str(model_dir), "ok")
            model, tokenizer, _ = load_artifact(tmp)  # scored as a user loads it: from the folder alone
            device, batch_size = measured_on(scheme), scoring_batch_size(scheme, params.evaluate.batch_size)
            scores, frames = score_splits(
                model, tokenizer, data_dir, batch_size=batch_size,
                max_seq_length=params.base.max_seq_length, confidence_level=params.evaluate.confidence_level,
                reference=reference,
            )
            for split, frame in against.items():  # judged against the baseline too, on the same sentences
                scores[split]["vs_baseline"] = paired_test(frame, frames[split])
            record = Evaluation(**described, layers=num_layers(model), size_mb=round(model_size_mb(tmp), 3),
                                status="ok", measured_on=device, kernels=f"{scheme.kernels}-{device}",
                                eval_batch=batch_size, scores=scores)
        write_text(tmp / "README.md", model_card(
            scheme, settings, record.to_json(), source=str(model_dir), source_size_mb=model_size_mb(model_dir),
            data=params.base.data, folder=str(out_dir), label_names=load_label_names(data_dir),
        ))
    if not unavailable:  # the DVC hash of what was scored, so timings of another build of it show as stale
        record = dataclasses.replace(record, artifact_md5=folder_md5(out_dir))
    save_predictions(frames, predictions)
    write_json(metrics, record.to_json())
    if unavailable:
        click.echo(f"quantize: {variant} {scheme.name}: {unavailable}")
    else:
        test = record.scores["test"]
        where = f", measured with {record.kernels}" if record.measured_on != scheme.device else ""
        click.echo(f"quantize: {variant} {scheme.name} {record.size_mb:.1f} MB, test accuracy "
                   f"{test['accuracy']:.4f} ({100 * test['accuracy_delta']:+.2f} pts vs FP32{where}) -> {out_dir}")


if __name__ == "__main__":
    main()

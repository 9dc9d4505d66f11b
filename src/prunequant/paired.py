"""Compare two runs' predictions of the same examples: ``python -m prunequant.paired REFERENCE VARIANT``.

REFERENCE and VARIANT are predictions folders written by the evaluate or quantize stages (``predictions/<name>``),
for instance of two clones of the pipeline run with different params. For each scored split it prints both
accuracies, the difference and the exact McNemar test the pipeline uses between variants, and with ``--out``
writes them to a JSON file.
"""

from __future__ import annotations

from pathlib import Path

import click

from prunequant.errors import StageCommand
from prunequant.evaluation import accuracy_ci, load_predictions, paired_test
from prunequant.io import write_json
from prunequant.splits import SCORED_SPLITS


def compare(reference: Path, variant: Path, confidence_level: float = 0.95) -> dict:
    """``{split: {"reference": accuracy with CI, "variant": accuracy with CI, ...paired test}}``."""
    result = {}
    for split in SCORED_SPLITS:
        ref, var = load_predictions(reference, split), load_predictions(variant, split)
        result[split] = {
            "reference": accuracy_ci((ref["prediction"] == ref["label"]).to_numpy(), confidence_level),
            "variant": accuracy_ci((var["prediction"] == var["label"]).to_numpy(), confidence_level),
            **paired_test(ref, var),
        }
    return result


@click.command(cls=StageCommand)
@click.argument("reference", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("variant", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON file for the comparison.")
def main(reference: Path, variant: Path, out: Path | None) -> None:
    """Paired comparison of VARIANT's predictions against REFERENCE's, split by split."""
    result = compare(reference, variant)
    for split, row in result.items():
        click.echo(f"{split}: {100 * row['reference']['accuracy']:.2f} -> {100 * row['variant']['accuracy']:.2f} "
                   f"({100 * row['accuracy_delta']:+.2f} pts, McNemar p={row['mcnemar_p']:.3g}: {row['verdict']}; "
                   f"n={row['reference']['n']})")
    if out is not None:
        write_json(out, {"reference": str(reference), "variant": str(variant), **result})


if __name__ == "__main__":
    main()

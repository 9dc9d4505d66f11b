"""Whole-file validation of ``params.yaml``: ``python -m prunequant.check [params.yaml]`` (``make check``).

Every section is validated by its own dataclass, and every scheme's settings by the quantization
registry. ``make repro`` runs it before DVC and the test suite runs it too; it is not a DVC dependency:
stages validate only the sections they read (:func:`prunequant.params.load`), so this module may import
every part of the library without making any stage depend on all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from prunequant.params import build_section, check_sections, read_params
from prunequant.params.base import BaseConfig
from prunequant.params.bench import BenchConfig
from prunequant.params.evaluate import EvaluateConfig
from prunequant.params.prepare import PrepareConfig
from prunequant.params.prune import CompareConfig, PruneConfig
from prunequant.params.quantize import QuantizeConfig
from prunequant.params.report import ReportConfig
from prunequant.params.sensitivity import SensitivityConfig
from prunequant.params.training import FinetuneConfig, RefinetuneConfig
from prunequant.quantization import scheme_settings
from prunequant.quantization.every import every_scheme


@dataclass(frozen=True)
class Params:
    """All of params.yaml, every section required."""

    base: BaseConfig
    prepare: PrepareConfig
    finetune: FinetuneConfig
    evaluate: EvaluateConfig
    sensitivity: SensitivityConfig
    prune: PruneConfig
    refinetune: RefinetuneConfig
    compare: CompareConfig
    quantize: QuantizeConfig
    bench: BenchConfig
    report: ReportConfig


def params_from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping whole: every section and every scheme's settings."""
    params = build_section(Params, check_sections(raw), "")
    every_scheme()  # the whole registry, so that every scheme's settings are checked
    for name in params.quantize.settings:  # settings of schemes not listed must be valid too
        scheme_settings(params.quantize, name)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole of ``params.yaml``; any problem is a one-line :class:`PrunequantError`."""
    return params_from_dict(read_params(path))


@click.command()
@click.argument("path", default="params.yaml", type=click.Path(path_type=Path))
def main(path: Path) -> None:
    """Validate every section of PATH (default params.yaml); one line per problem, exit 1."""
    load_params(path)
    click.echo(f"{path}: every section valid")


if __name__ == "__main__":
    main()  # click prints a PrunequantError (a ClickException) as one line and exits 1

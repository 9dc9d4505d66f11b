"""Whole-file validation of ``params.yaml``: ``python -m prunequant.check [params.yaml]`` (``make check``).

Every section is validated by its own dataclass, and every scheme's settings by the quantization
registry. ``make repro`` runs it before DVC and the test suite runs it too; it is not a DVC dependency:
stages validate only the sections they read (:func:`prunequant.params.load`), so this module may import
every part of the library without making any stage depend on all of it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from prunequant.bench import BenchConfig
from prunequant.data import PrepareConfig
from prunequant.errors import PrunequantError
from prunequant.evaluation import EvaluateConfig
from prunequant.params import BaseConfig, build_section, check_sections, read_params
from prunequant.pruning import CompareConfig, PruneConfig
from prunequant.quantization import QuantizeConfig
from prunequant.quantization.every import every_scheme
from prunequant.decision import ReportConfig
from prunequant.sensitivity import SensitivityConfig
from prunequant.recipe import FinetuneConfig, RefinetuneConfig


@dataclass(frozen=True)
class Params:
    """All of params.yaml (a section left out takes its dataclass's defaults)."""

    base: BaseConfig = field(default_factory=BaseConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    refinetune: RefinetuneConfig = field(default_factory=RefinetuneConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def params_from_dict(raw: Any) -> Params:
    """Validate a parsed params mapping whole: every section and every scheme's settings."""
    params = build_section(Params, check_sections(raw), "")
    every_scheme()  # the whole registry, so that every scheme's settings are checked
    for name in params.quantize.settings:  # settings of schemes not listed must be valid too
        params.quantize.scheme_settings(name)
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
    try:
        main(standalone_mode=False)
    except PrunequantError as exc:
        exc.show()
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)

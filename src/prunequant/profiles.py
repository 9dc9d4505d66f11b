"""Params presets (profiles/<name>.yaml) turned into `dvc exp run -S key=value` arguments.

A profile holds only the keys it changes; `python -m prunequant.profiles bert-base-sst2` prints the
arguments, which `make exp PROFILE=bert-base-sst2` passes to `dvc exp run`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
import yaml

from prunequant.errors import PrunequantError, did_you_mean

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def available(folder: Path = PROFILES) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_profile(name: str, folder: Path = PROFILES) -> dict:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise PrunequantError(f"PROFILE={name!r} is not a profile{did_you_mean(name, available(folder))}; "
                              f"choose one of {', '.join(available(folder))} (files in {folder})")
    return yaml.safe_load(path.read_text()) or {}


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """{'prune': {'keep_layers': [8]}} -> {'prune.keep_layers': [8]}."""
    flat = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{full}.")
        else:
            flat[full] = value
    return flat


def merged(params: dict, profile: dict) -> dict:
    """params.yaml with the profile's keys set (what the experiment will run with)."""
    result = {k: dict(v) if isinstance(v, dict) else v for k, v in params.items()}
    for key, value in flatten(profile).items():
        *sections, leaf = key.split(".")
        node = result
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return result


def set_args(profile: dict) -> list[str]:
    """`-S key=value` pairs for `dvc exp run`, values in YAML flow style (lists as [a, b])."""
    args = []
    for key, value in flatten(profile).items():
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        args += ["-S", f"{key}={text}"]
    return args


@click.command(epilog=f"Profiles: {', '.join(available())} (profiles/*.yaml).")
@click.argument("name")
def main(name: str) -> None:
    """Print the `dvc exp run` arguments (-S key=value) that apply profiles/NAME.yaml."""
    click.echo(shlex.join(set_args(load_profile(name))))


if __name__ == "__main__":
    main()

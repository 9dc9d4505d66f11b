"""The params core: one ``params.yaml`` section -> a frozen, validated dataclass.

A stage loads only the sections it reads (:func:`load`); each section's dataclass lives beside the code
it configures. This module is the bottom layer: it imports nothing of prunequant but ``errors``, so a
change to one stage's settings never touches another stage's dependencies. Whole-file validation (every
section, and the full quantization registry) is ``python -m prunequant.check``.

Why hand-written rather than pydantic: the coercion below is about 60 lines, gives exactly the one-line
messages users see today (``params.yaml: finetune.batch_size must be of type int, got '32'``, the closest
valid key for a typo), and keeps pydantic's import out of every stage.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prunequant.errors import PrunequantError, did_you_mean

# Every top-level section of params.yaml. A stage reads a few of them, but any key not listed here is a
# typo (`fintune:`) that every stage reports, so a misspelled section never silently takes defaults.
SECTIONS = ("base", "prepare", "finetune", "evaluate", "sensitivity", "prune", "refinetune", "compare",
            "quantize", "bench", "report")


def require(ok: bool, key: str, message: str) -> None:
    """A one-line ``params.yaml: <key> <message>`` error unless ``ok``."""
    if not ok:
        raise PrunequantError(f"params.yaml: {key} {message}")


def require_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    require(value in choices, key, f"is {value!r}{did_you_mean(value, choices)}; choose one of {', '.join(choices)}")


def require_inside_repo(value: str, key: str) -> None:
    """A relative path in params may not climb out of the repository (stages run from its root).

    Absolute paths are taken as meant; Hub names never contain a '..' part.
    """
    path = Path(value)
    if not path.is_absolute() and ".." in path.parts:
        root = Path.cwd().resolve()
        require((root / path).resolve().is_relative_to(root), key,
                f"is {value!r}, which points outside the repository; move it inside, or give an absolute "
                "path if you mean a file outside")


@dataclass(frozen=True)
class BaseConfig:
    """Settings every stage shares."""

    seed: int = 42
    # An alias from modeling.MODELS (offline, packaged), a Hugging Face Hub name or a local folder.
    model: str = "minilm-l6"
    # A name from data.DATASETS, a Hub data set ("name" or "name:config") or a local CSV/Parquet file.
    data: str = "rotten_tomatoes"
    max_seq_length: int = 128

    def __post_init__(self) -> None:
        require(self.seed >= 0, "base.seed", f"must be >= 0, got {self.seed}")
        require(bool(self.model.strip()), "base.model", "must name a model, e.g. minilm-l6")
        require(bool(self.data.strip()), "base.data", "must name a data set, e.g. rotten_tomatoes")
        for key in ("model", "data"):
            require_inside_repo(getattr(self, key), f"base.{key}")
        require(8 <= self.max_seq_length <= 8192, "base.max_seq_length",
                f"must be between 8 and 8192 tokens, got {self.max_seq_length}")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a field's type; YAML's '5e-5' (a string) is accepted as a float."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (annotation,) = [a for a in options if a is not type(None)]
    if annotation is dict or typing.get_origin(annotation) is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise PrunequantError(f"params.yaml: {key} must be a mapping, got {value!r}")
        return value
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, list | tuple):
            raise PrunequantError(f"params.yaml: {key} must be a list, got {value!r}")
        (item_type, _) = typing.get_args(annotation)
        return tuple(_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value))
    if annotation is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise PrunequantError(f"params.yaml: {key} must be a finite number, got {value!r}")
    if isinstance(value, annotation) and not (isinstance(value, bool) and annotation is not bool):
        return value
    raise PrunequantError(f"params.yaml: {key} must be of type {annotation.__name__}, got {value!r}")


def build_section(cls: type, mapping: Any, where: str) -> Any:
    """Validate one mapping of params.yaml into the dataclass ``cls``; ``where`` is its key, for errors."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise PrunequantError(f"params.yaml: {where} must be a mapping of keys, got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in mapping.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise PrunequantError(
                f"params.yaml: unknown key {full!r}{did_you_mean(key, fields)}; "
                f"valid keys{' in ' + where if where else ''}: {', '.join(fields)}"
            )
        if dataclasses.is_dataclass(hints[key]):
            values[key] = build_section(hints[key], value, full)
        else:
            values[key] = _coerce(value, hints[key], full)
    return cls(**values)


def read_params(path: str | Path = "params.yaml") -> dict:
    """The parsed ``params.yaml`` mapping; a missing file, bad YAML or an unknown section is one line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PrunequantError(f"{path}: file not found; run from the repository root") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PrunequantError(f"{path}: not valid YAML{where}; fix the syntax") from None
    return check_sections(raw)


def check_sections(raw: Any) -> dict:
    """``raw`` as a mapping of known sections (an unknown one names the closest known one)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PrunequantError(f"params.yaml: must be a mapping of sections, got {raw!r}")
    for key in raw:
        if key not in SECTIONS:
            raise PrunequantError(f"params.yaml: unknown key {key!r}{did_you_mean(key, SECTIONS)}; "
                                  f"valid keys: {', '.join(SECTIONS)}")
    return raw


def sections(raw: dict, **classes: type) -> types.SimpleNamespace:
    """Validate the named sections of a parsed params mapping: ``sections(raw, base=BaseConfig)``."""
    raw = check_sections(raw)
    return types.SimpleNamespace(**{name: build_section(cls, raw.get(name), name) for name, cls in classes.items()})


def load(path: str | Path, **classes: type) -> types.SimpleNamespace:
    """Read ``params.yaml`` and validate only the sections a stage reads: ``load(path, base=BaseConfig)``."""
    return sections(read_params(path), **classes)

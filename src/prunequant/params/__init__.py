"""The params core: one ``params.yaml`` section -> a frozen, validated dataclass.

``params.yaml`` is the one home of every value; each section's dataclass, one module of this package per section
(``prunequant.params.<section>``), states only the types and bounds, never a default. A field's bounds are written
once, next to it (:func:`knob`); checks between fields stay in the class's ``__post_init__``. A stage loads only the
sections it reads (:func:`load`), so a change to one section's class reruns only the stages that read it. This
package imports no torch and nothing of prunequant but ``errors``; whole-file validation (every section, and every
quantization scheme's settings) is ``python -m prunequant.check``.

Why not pydantic: its lax mode takes ``"32"`` for an int and its strict mode refuses YAML's ``5e-5`` (a string) for
a float; the coercion below is about 40 lines and gives the one-line messages users see
(``params.yaml: finetune.batch_size must be of type int, got '32'``, the closest valid key for a typo).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from prunequant.errors import PrunequantError, did_you_mean

# Every top-level section of params.yaml. A stage reads a few of them, but any key not listed here is a
# typo (`fintune:`) that every stage reports, so a misspelled section is never silently ignored.
SECTIONS = ("base", "prepare", "finetune", "evaluate", "sensitivity", "prune", "refinetune", "compare",
            "quantize", "bench", "report")


class SettingError(PrunequantError):
    """A section's check failed on one of its fields; :func:`build_section` prefixes ``params.yaml: <section>.``."""


def require(ok: bool, field: str, message: str) -> None:
    """For a section's checks: a one-line ``<field> <message>`` error unless ``ok``."""
    if not ok:
        raise SettingError(f"{field} {message}")


def require_choice(value: str, choices: tuple[str, ...], field: str) -> None:
    require(value in choices, field, f"is {value!r}{did_you_mean(value, choices)}; choose one of {', '.join(choices)}")


def require_inside_repo(value: str, field: str) -> None:
    """A relative path in params may not climb out of the repository (stages run from its root).

    Absolute paths are taken as meant; Hub names never contain a '..' part.
    """
    path = Path(value)
    if not path.is_absolute() and ".." in path.parts:
        root = Path.cwd().resolve()
        require((root / path).resolve().is_relative_to(root), field,
                f"is {value!r}, which points outside the repository; move it inside, or give an absolute "
                "path if you mean a file outside")


def _bounds_text(ge, gt, le, lt) -> str:
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    high = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>=' if ge is not None else '>'} {low[1:]}"
    return f"{'<=' if le is not None else '<'} {high[:-1]}"


def knob(*, ge=None, gt=None, le=None, lt=None, choices: tuple[str, ...] | None = None, note: str = "") -> Any:
    """A section's field with its bounds, checked on construction; a list field's bounds apply to each item.

    ``note`` follows the bound in the message (``must be >= 0 (0: none), got -1``). No default: params.yaml holds
    every value."""
    def check(value: Any, field: str) -> None:
        if value is None:
            return
        items = value if isinstance(value, tuple) else (value,)
        if choices is not None:
            for i, item in enumerate(items):
                require_choice(item, choices, f"{field}[{i}]" if isinstance(value, tuple) else field)
        if (ge, gt, le, lt) == (None,) * 4:
            return
        bad = [v for v in items if not ((ge is None or v >= ge) and (gt is None or v > gt)
                                        and (le is None or v <= le) and (lt is None or v < lt))]
        got = list(bad) if isinstance(value, tuple) else value
        require(not bad, field, f"must be {_bounds_text(ge, gt, le, lt)}{f' ({note})' if note else ''}, got {got}")

    return dataclasses.field(metadata={"check": check})


class Section:
    """Base of a params section's frozen dataclass: checks every :func:`knob` field's bounds on construction."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            if check is not None:
                check(getattr(self, field.name), field.name)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check one YAML value against a field's type; YAML's '5e-5' (a string) is accepted as a float."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        options = [a for a in options if a is not type(None)]
        if len(options) > 1:  # int | str: a value of one of them as it is
            if any(isinstance(value, a) for a in options) and not isinstance(value, bool):
                return value
            raise PrunequantError(f"params.yaml: {key} must be of type {' or '.join(a.__name__ for a in options)}, "
                                  f"got {value!r}")
        (annotation,) = options
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
    missing = [name for name, field in fields.items() if name not in values and field.init
               and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:
        full = f"{where}.{missing[0]}" if where else missing[0]
        raise PrunequantError(f"params.yaml: {full} is missing; add it (the repository's params.yaml lists every key)")
    try:
        return cls(**values)
    except SettingError as exc:
        raise PrunequantError(f"params.yaml: {where}.{exc.format_message()}") from None


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

"""Atomic writes: a stage killed midway never leaves a half-written output that looks finished."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _replace(new: Path, path: Path) -> None:
    """Put ``new`` in ``path``'s place; ``new`` then holds the old output, which the caller deletes.

    The old output moves aside first and only goes once the new one is in, so a stage killed midway leaves the
    earlier output whole (or, between the two renames, beside it as ``new``). That matters when a stage runs
    outside DVC (``python stages/<stage>.py``, the bad-input tests); under ``dvc repro`` DVC has already removed
    a non-persist output before the stage starts."""
    if not path.exists():
        os.replace(new, path)
        return
    aside = new.with_name(new.name + "-old")
    os.replace(path, aside)
    os.replace(new, path)
    os.replace(aside, new)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` whole.

    The earlier output is deleted only once the new one is in place (:func:`_replace`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the output gets a normal folder's mode
    try:
        yield tmp
        _replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig`` through a temporary file and a rename (the format from ``path``'s suffix)."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), **kwargs)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")

"""The identity of an artifact folder: its content hash, computed as DVC computes a directory output's hash
(``<md5>.dir`` in ``dvc.lock``), so a timing or an accuracy can say which artifact it belongs to."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_md5(folder: str | os.PathLike) -> str:
    """``<md5>.dir``: the md5 of DVC's listing of the folder (every file, by posix path relative to the folder,
    sorted, with its md5), which is what ``dvc.lock`` records for a folder output."""
    folder = Path(folder)
    entries = sorted(({"md5": file_md5(path), "relpath": path.relative_to(folder).as_posix()}
                      for path in folder.rglob("*") if path.is_file()), key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"

"""The import graph of ``src/prunequant`` read with ``ast`` (function-local imports included): the ground truth
for which library files a stage script runs (the code deps :mod:`prunequant.dvcfiles` writes, and
tests/test_dependencies.py checks). ``python -m prunequant.codegraph stages/prepare.py`` prints a closure."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = SRC / "prunequant"


def module_path(name: str) -> Path | None:
    """The file of module ``name`` inside src/prunequant, or None for anything else."""
    if name != "prunequant" and not name.startswith("prunequant."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' __init__ first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def direct_imports(path: Path) -> frozenset[str]:
    """Modules of prunequant that ``path`` imports anywhere in its code (module level or in functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module_name(path).split(".") if path.is_relative_to(SRC) else []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = here if is_package else here[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(name for name in found if module_path(name) is not None)


def closure(*paths: Path) -> set[Path]:
    """Every file of src/prunequant that running ``paths`` imports, transitively (their packages' __init__ too)."""
    seen: set[Path] = set()
    todo = list(paths)
    while todo:
        path = todo.pop()
        for name in direct_imports(path):
            for module in _with_parents(name):
                target = module_path(module)
                if target is not None and target not in seen:
                    seen.add(target)
                    todo.append(target)
    return seen - {p for p in paths if not p.is_relative_to(PACKAGE)}


def graph() -> dict[str, set[str]]:
    """module -> modules it imports explicitly (parent packages are not edges: they hold no cycle of their own)."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        edges[name] = {module_name(module_path(n)) for n in direct_imports(path)} - {name}
    return edges


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg)
        for path in sorted(closure((REPO / arg).resolve())):
            print("  ", path.relative_to(REPO))

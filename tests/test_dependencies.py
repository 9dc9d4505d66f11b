"""The dependency rule: every DVC stage declares exactly the code it runs, and the library has no import cycle.

A stage's code is its script plus the transitive imports of that script inside src/prunequant (function-local
imports count, read with ``ast``); a quantize stage also runs its scheme's family module, which the registry
imports by name (``get_scheme``). A folder dep covers every file under it.
"""

from pathlib import Path

import pytest

from prunequant.codegraph import PACKAGE, REPO, closure, graph, module_path
from prunequant.params.quantize import FAMILIES, SCHEME_FAMILY
from tests.conftest import DVC_FILES


def _stages():
    from dvc.repo import Repo

    repo = Repo(str(REPO))
    try:
        return [stage for stage in repo.index.stages if stage.cmd]
    finally:
        repo.close()


STAGES = _stages()


def code_run_by(stage) -> set[Path]:
    """The library files a stage's command runs: its script's closure, and its scheme's family."""
    words = stage.cmd.split()
    script = REPO / next(w for w in words if w.startswith("stages/") and w.endswith(".py"))
    files = closure(script)
    if "--scheme" in words:
        scheme = words[words.index("--scheme") + 1]
        family = module_path(f"prunequant.quantization.{FAMILIES[SCHEME_FAMILY[scheme]]}")
        files |= {family} | closure(family)
    return files | {script}


def declared_code(stage) -> set[Path]:
    """The stage's deps that are code (stages/ or src/prunequant), folders expanded to their Python files."""
    files = set()
    for dep in stage.deps:
        path = Path(dep.fs_path).resolve()
        if not (path.is_relative_to(PACKAGE) or path.is_relative_to(REPO / "stages")):
            continue
        files |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return files


def test_every_dvc_file_is_read():
    files = {Path(stage.dvcfile.path).resolve().relative_to(REPO).as_posix() for stage in STAGES}
    assert files == set(DVC_FILES)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: f"{Path(s.dvcfile.path).parent.name or 'root'}:{s.addressing}")
def test_stage_declares_exactly_the_code_it_runs(stage):
    runs, declared = code_run_by(stage), declared_code(stage)
    missing = sorted(p.relative_to(REPO).as_posix() for p in runs - declared)
    extra = sorted(p.relative_to(REPO).as_posix() for p in declared - runs)
    assert not missing and not extra, f"{stage.addressing}: missing deps {missing}, extra deps {extra}"


# Options whose value a stage writes; every other path in a command (data/prepared, models/x, predictions/x, ...)
# is read, so it must be a dep: DVC orders stages and reruns them by their deps alone.
OUTPUT_OPTIONS = {"--out", "--metrics", "--predictions", "--live", "--csv", "--png", "--summary", "--markdown",
                  "--recommendations", "--table"}


def paths_read_by(stage) -> set[str]:
    words = stage.cmd.split()
    script = next(w for w in words if w.startswith("stages/"))
    outputs = OUTPUT_OPTIONS | ({"--results"} if script == "stages/results.py" else set()) | (
        {"--blocks", "--heads", "--ffn", "--scores", "--heads-png"} if script == "stages/sensitivity.py"
        else set())  # the prune and report stages read them
    return {value for option, value in zip(words, words[1:], strict=False)
            if option.startswith("--") and option not in outputs and "/" in value}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: f"{Path(s.dvcfile.path).parent.name or 'root'}:{s.addressing}")
def test_stage_declares_every_path_it_reads(stage):
    wdir = Path(stage.wdir)
    deps = [Path(dep.fs_path) for dep in stage.deps]
    undeclared = sorted(p for p in paths_read_by(stage)
                        if not any((wdir / p).is_relative_to(dep) for dep in deps))
    assert not undeclared, f"{stage.addressing}: reads {undeclared} without declaring them as deps"


def test_lock_files_hold_only_stages_that_exist():
    """DVC keeps a renamed or removed stage's entry in dvc.lock; every no-op `dvc repro` then parses it twice.
    Compared by stage definition (the name before `@`), so a params change that fans a stage out differently
    (prune.keep_layers, quantize.schemes: entries DVC keeps until the next repro) is not an error here."""
    import yaml

    for dvcfile in DVC_FILES:
        lock = REPO / dvcfile.replace("dvc.yaml", "dvc.lock")
        if not lock.exists():
            continue
        defined = set(yaml.safe_load((REPO / dvcfile).read_text())["stages"])
        stale = sorted(name for name in yaml.safe_load(lock.read_text())["stages"]
                       if name.split("@")[0] not in defined)
        assert not stale, f"{lock.relative_to(REPO)} holds entries of stages {dvcfile} no longer defines: {stale}"


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize(("module", "allowed"), [
    ("prunequant.clock", set()),
    ("prunequant.warm", set()),  # a stage's first import, before anything heavy; its server imports no prunequant
    ("prunequant.errors", {"prunequant.clock"}),
    ("prunequant.io", set()),
    ("prunequant.sizes", {"prunequant.errors", "prunequant.clock"}),
    ("prunequant.params", {"prunequant.errors", "prunequant.clock"}),
])
def test_the_bottom_layer_imports_nothing_above_it(module, allowed):
    imported = {p for p in closure(module_path(module))} - {module_path("prunequant"), module_path(module)}
    assert imported == {module_path(m) for m in allowed}


def test_registry_core_imports_no_family_and_no_whole_file_check():
    core = closure(module_path("prunequant.quantization"))
    for family in FAMILIES.values():
        assert module_path(f"prunequant.quantization.{family}") not in core
    assert module_path("prunequant.check") not in core
    assert module_path("prunequant.quantization") not in closure(module_path("prunequant.params"))


def _registered_after_importing(module: str) -> set[str]:
    import json
    import subprocess
    import sys

    code = f"import json, {module}; from prunequant.quantization import SCHEMES; print(json.dumps(list(SCHEMES)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_every_family_registers_exactly_its_schemes():
    """SCHEME_FAMILY (what dvc.yaml and the dependency rule rely on) says which module registers each scheme."""
    from prunequant.quantization.every import every_scheme

    assert list(every_scheme()) == list(SCHEME_FAMILY)
    modules = {family: f"prunequant.quantization.{name}" for family, name in FAMILIES.items()}
    registered = {family: _registered_after_importing(module) for family, module in modules.items()}
    for family, module in modules.items():
        imported = closure(module_path(module))
        others = {f for f, m in modules.items() if f != family and module_path(m) in imported}
        own = registered[family] - set().union(*(registered[f] for f in others))
        assert own == {name for name, f in SCHEME_FAMILY.items() if f == family}, family


def test_closure_follows_function_local_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from prunequant.quantization import qat\n")
    files = {p.relative_to(REPO).as_posix() for p in closure(script)}
    assert {"src/prunequant/quantization/qat.py", "src/prunequant/training/trainer.py",
            "src/prunequant/quantization/__init__.py", "src/prunequant/__init__.py"} <= files


@pytest.mark.parametrize("script", ["stages/results.py", "stages/report.py"])
def test_the_stages_that_only_read_settings_and_files_import_no_torch(script):
    """results and report read params and metrics files: their code (and so their deps) holds no torch."""
    import os
    import subprocess
    import sys

    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('stage', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / script)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PRUNEQUANT_WARM": "0"}).stdout
    assert out.strip() == "[]", out

"""The stage scripts as a user meets them: --help, and one-line errors on bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DVC_FILES, invoke_stage

REPO = Path(__file__).resolve().parents[1]
STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py"))


def run_stage(name, *args, cwd=REPO):
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd=cwd, capture_output=True, text=True
    )


def test_dvc_stages_call_exactly_the_stage_scripts():
    import re

    import yaml

    stages = [stage for dvc_yaml in DVC_FILES
              for stage in yaml.safe_load((REPO / dvc_yaml).read_text())["stages"].values()]
    called = {re.search(r"stages/(\w+)\.py", (s.get("do") or s)["cmd"]).group(1) for s in stages}
    assert called == set(STAGES)


@pytest.mark.parametrize("name", STAGES)
def test_help(name, tmp_path):
    result = invoke_stage(tmp_path, name, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: {name} [OPTIONS]" in result.stdout
    assert ("--params" in result.stdout) == (name != "machine")  # machine reads no params


def test_help_of_the_script_itself():
    result = run_stage("prepare", "--help")
    assert result.returncode == 0 and "Usage: prepare.py [OPTIONS]" in result.stdout, result.stderr


def test_bad_params_exit_with_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("base:\n  seeed: 1\n")
    result = run_stage("prepare", "--out", "data", "--metrics", "m.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: params.yaml: unknown key 'base.seeed' (did you mean 'seed'?); "
        "valid keys in base: seed, model, data, max_seq_length"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_debug_env_shows_the_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("base:\n  seeed: 1\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "prepare.py"), "--out", "d", "--metrics", "m.json"],
        cwd=tmp_path, capture_output=True, text=True, env={**__import__("os").environ, "PRUNEQUANT_DEBUG": "1"},
    )
    assert result.returncode == 1 and "Traceback" in result.stderr

"""The code is lint-clean (ruff, configured in pyproject.toml), and the pipeline files are what their description
writes (src/prunequant/dvcfiles.py): no stage's deps are kept by hand."""

import subprocess
import sys

from prunequant.codegraph import REPO


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "src", "stages", "bench", "tests"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dvc_files_are_written_by_their_description():
    result = subprocess.run([sys.executable, "-m", "prunequant.dvcfiles", "--check"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr

"""The README quotes committed files only: its results table is the test-split table `dvc repro` wrote to
reports/results.md, line for line. Both are read as committed (HEAD), so a user's own run or experiment in the
work tree never fails this; a commit whose rerun changed a figure does, until the README quotes the new table."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def committed(path: str) -> str:
    result = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"not a git checkout with {path} committed")
    return result.stdout


def markdown_tables(text: str) -> list[list[str]]:
    """Every Markdown table in ``text``, as its lines."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            tables.append(current)
            current = []
    return tables


def test_the_readme_results_table_is_the_committed_one():
    readme = committed("README.md")
    section = readme.split("## Results on the offline default", 1)[1].split("\n## ", 1)[0]
    quoted = markdown_tables(section)[0]
    test_split = committed("reports/results.md").split("## Test split", 1)[1].split("\n## ", 1)[0]
    assert quoted == markdown_tables(test_split)[0], (
        "README.md's results table differs from reports/results.md's test split: copy the table from there")

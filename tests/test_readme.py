"""The README and docs/ quote committed files only: docs/results.md's results table is the test-split table
`dvc repro` wrote to reports/results.md, line for line. Both are read as committed (HEAD), so a user's own run or
experiment in the work tree never fails this; a commit whose rerun changed a figure does, until docs/results.md
quotes the new table. The README stays a short guide whose links all lead somewhere."""

import re
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


def test_the_results_table_in_docs_is_the_committed_one():
    page = committed("docs/results.md")
    section = page.split("# Results on the offline default", 1)[1].split("\n# ", 1)[0]
    quoted = markdown_tables(section)[0]
    test_split = committed("reports/results.md").split("## Test split", 1)[1].split("\n## ", 1)[0]
    assert quoted == markdown_tables(test_split)[0], (
        "docs/results.md's results table differs from reports/results.md's test split: copy the table from there")


def test_the_readme_is_a_short_guide_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250 and "## Contents" in readme
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^## (.+)$", readme, flags=re.M)}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            if path:
                assert (page.parent / path).exists(), f"{page.name} links to {target}, which is not there"
            elif page.name == "README.md":
                assert anchor in headings, f"README.md links to #{anchor}, which is no heading"


NUMBER = re.compile(r"[-−+]?\d+(?:\.\d+)?")


def _numbers(cells: list[str]) -> list[float]:
    return [float(n.replace("−", "-")) for cell in cells for n in NUMBER.findall(cell.replace(",", ""))]


def test_the_recipe_tables_are_metrics_recipes_csv():
    """docs/pruning.md's ablation table and the README's excerpt quote `python bench/recipes.py table`'s file."""
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(committed("metrics/recipes.csv")))
    scores = {(row.recipe, row.split): row for row in frame.itertuples()}

    def expected(name: str) -> tuple:
        val, test = scores[(name, "validation")], scores[(name, "test")]
        return (round(100 * val.accuracy, 2), round(100 * val.accuracy_delta, 2), round(100 * test.accuracy, 2),
                round(100 * test.accuracy_ci_low, 2), round(100 * test.accuracy_ci_high, 2),
                round(100 * test.accuracy_delta, 2), float(f"{test.mcnemar_p:.2g}"), round(test.train_seconds))

    docs = [line for line in committed("docs/pruning.md").splitlines() if re.match(r"\| `(logits|transfer)-", line)]
    assert {re.match(r"\| `([^`]+)`", line).group(1) for line in docs} == set(frame["recipe"])
    for line in docs:
        name = re.match(r"\| `([^`]+)`", line).group(1)
        assert tuple(_numbers(line.split("|")[3:])) == pytest.approx(expected(name), abs=1e-9), line
    readme = [line for line in committed("README.md").splitlines() if re.match(r"\| [23] \| ", line)]
    assert len(readme) == 4
    for line in readme:
        cells = line.split("|")
        name = f"{'transfer-2k' if 'transfer' in cells[2] else 'logits'}-{cells[1].strip()}"
        val, val_delta, test, low, high, delta, p, _ = expected(name)
        assert tuple(_numbers(cells[3:])) == pytest.approx((test, low, high, delta, p, val), abs=1e-9), line


def test_the_layout_names_every_module_and_folder_of_the_library():
    """The README's Layout and the tree of src/prunequant tell the same story: each module and folder is named."""
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    words = set(re.findall(r"[\w]+/?", layout))
    package = ROOT / "src" / "prunequant"
    parts = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    parts |= {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert not sorted(parts - words), f"README Layout does not name {sorted(parts - words)}"

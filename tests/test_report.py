import json

import pytest

from prunequant.errors import PrunequantError
from prunequant.report import RESULT_COLUMNS, collect_results, markdown_table


def evaluation(variant, accuracy):
    split = {"n": 100, "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.05, "accuracy_ci_high": accuracy + 0.05}
    return {
        "variant": variant, "model": "minilm-l6", "layers": 6, "precision": "fp32", "device": "cpu",
        "size_mb": 90.9, "status": "ok", "test": split, "validation": split,
    }


def test_collects_one_row_per_split_in_order(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(evaluation("pruned-4", 0.8)))
    (tmp_path / "a.json").write_text(json.dumps(evaluation("baseline", 0.82)))
    table = collect_results(tmp_path)
    assert list(table.columns) == RESULT_COLUMNS
    assert table[["variant", "split"]].values.tolist() == [
        ["baseline", "validation"], ["baseline", "test"], ["pruned-4", "validation"], ["pruned-4", "test"],
    ]
    text = markdown_table(table)
    assert "| baseline" in text and "82.00 [77.00, 87.00]" in text and "95% CI" in text


def test_no_or_incomplete_evaluations(tmp_path):
    with pytest.raises(PrunequantError, match="no evaluation metrics"):
        collect_results(tmp_path)
    (tmp_path / "x.json").write_text(json.dumps({"variant": "x"}))
    with pytest.raises(PrunequantError, match="lack model, layers"):
        collect_results(tmp_path)

"""`make compare-widths`' table: each cut's latency is the median of its per-round ratios to the FP32 baseline,
each width cut is tested against the depth-only cut of nearest latency on the same sentences, and the front is
drawn on validation accuracy."""

import json

import numpy as np
import pandas as pd
import pytest

from prunequant.benchmarking.table import COLUMNS
from prunequant.depth_width import comparison, family_of, markdown, plot
from prunequant.params.prune import Cut, parse_cut

SCHEME = "onnx-int8-dynamic"
POINTS = ((1, 16), (1, 128))
# variant -> (per-round p50s at 1x16, ms; test and validation accuracy)
TIMED = {
    "baseline": ([10.0, 12.0, 11.0], None),
    f"baseline-{SCHEME}": ([2.0, 2.4, 2.2], (0.82, 0.84)),
    f"pruned-4-{SCHEME}": ([1.4, 1.8, 1.5], (0.81, 0.83)),
    f"pruned-6-w50-{SCHEME}": ([1.5, 1.8, 1.6], (0.79, 0.80)),
    f"pruned-4-w50-{SCHEME}": ([1.0, 1.2, 1.1], (0.80, 0.83)),
}


def bench_rows():
    rows = []
    for variant, (p50s, _) in TIMED.items():
        for length, scale in ((16, 1), (128, 3)):
            rows.append({**dict.fromkeys(COLUMNS), "variant": variant, "batch_size": 1, "seq_len": length,
                         "precision": "fp32" if variant == "baseline" else SCHEME,
                         "runtime": "eager" if variant == "baseline" else "onnxruntime",
                         "latency_ms_p50": float(np.median(p50s)) * scale,
                         "round_p50s_ms": ";".join(str(v * scale) for v in p50s), "round_ids": "0;1;2"})
    return pd.DataFrame(rows)


def write_run(tmp_path, n=100):
    """Evaluation JSONs and predictions as the widths pipeline writes them (validation and test, n sentences)."""
    evaluations, predictions = tmp_path / "evaluate", tmp_path / "predictions"
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    for variant, (_, accuracies) in TIMED.items():
        if accuracies is None:
            continue
        test, validation = accuracies
        record = {"variant": variant.removesuffix(f"-{SCHEME}"), "layers": 4, "precision": SCHEME, "status": "ok",
                  "size_mb": 10.0}
        folder = predictions / ("" if variant.startswith("baseline") else "widths") / variant
        folder.mkdir(parents=True)
        for split, accuracy in (("test", test), ("validation", validation)):
            right = int(accuracy * n)
            prediction = np.where(np.arange(n) < right, labels, 1 - labels)
            pd.DataFrame({"idx": range(n), "label": labels, "prediction": prediction}).to_parquet(
                folder / f"{split}.parquet")
            versus = {"accuracy_delta": accuracy - 0.83, "mcnemar_p": 0.5}
            record[split] = {"accuracy": accuracy, "accuracy_ci_low": accuracy - 0.05,
                             "accuracy_ci_high": accuracy + 0.05,
                             **(versus if variant.startswith("baseline") else {"vs_baseline": versus})}
        path = (tmp_path if variant.startswith("baseline") else evaluations) / f"{variant}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    baseline = {"layers": 6, "test": {"accuracy": 0.83}, "validation": {"accuracy": 0.85}}
    return evaluations, predictions, baseline


@pytest.fixture
def table(tmp_path):
    evaluations, predictions, baseline = write_run(tmp_path)
    cuts = tuple(parse_cut(c) for c in ("4", "6-w50", "4-w50"))
    return comparison(bench_rows(), evaluations, baseline, tmp_path / f"baseline-{SCHEME}.json", predictions, cuts,
                      SCHEME, POINTS)


def test_families():
    assert [family_of(parse_cut(c), 6) for c in ("4", "6-w50", "4-h50")] == ["depth", "width", "depth+width"]
    assert family_of(Cut(6), 6) == "depth"


def test_latency_is_the_median_of_paired_round_ratios(table):
    row = table.set_index("cut").loc["4-w50"]
    assert row.ratio_1x16 == pytest.approx(0.1)  # 1.0/10, 1.2/12, 1.1/11
    assert (row.ratio_1x16_low, row.ratio_1x16_high) == (pytest.approx(0.1), pytest.approx(0.1))
    four = table.set_index("cut").loc["4"]
    assert four.ratio_1x16 == pytest.approx(np.median([1.4 / 10, 1.8 / 12, 1.5 / 11]))
    assert four.ratio_1x16_low == pytest.approx(1.5 / 11) and four.runtime_1x16 == "onnxruntime"
    assert list(table.cut) == ["4-w50", "4", "6-w50", "6 (unpruned)"]  # fastest first


def test_a_width_cut_is_tested_against_the_depth_cut_of_nearest_latency(table):
    rows = table.set_index("cut")
    assert rows.loc["6-w50", "nearest_depth"] == "4"  # 0.150 vs 4's 0.136 and the unpruned INT8's 0.2
    assert rows.loc["6-w50", "vs_nearest_depth"] == pytest.approx(0.79 - 0.81)
    assert 0 < rows.loc["6-w50", "vs_nearest_depth_p"] <= 1
    assert rows.loc["4", "nearest_depth"] == "" and np.isnan(rows.loc["4", "vs_nearest_depth"])


def test_the_unpruned_artifact_is_tested_against_its_fp32_source_which_is_the_baseline(table):
    row = table.set_index("cut").loc["6 (unpruned)"]
    assert (row.test_vs_baseline, row.test_p) == (pytest.approx(0.82 - 0.83), 0.5)


def test_the_front_reads_validation_only(table):
    rows = table.set_index("cut")
    # 4-w50 is the fastest; 4 is slower at equal validation accuracy (0.83): off the front; 6-w50 is dominated
    assert rows.validation_front.to_dict() == {"4-w50": True, "4": False, "6-w50": False, "6 (unpruned)": True}


def test_markdown_and_plot(table, tmp_path, monkeypatch):
    text = markdown(table, POINTS, scheme=SCHEME, machine="a test machine", source="bench.csv")
    assert "up to 0.100x: **4-w50** (depth+width, validation 83.00%, test 80.00%)" in text
    assert "-2.00 pts vs 4, p=" in text
    drawn = {}
    monkeypatch.setattr("prunequant.depth_width.save_figure", lambda fig, path, dpi: drawn.setdefault("fig", fig))
    plot(table, 0.83, POINTS, tmp_path / "widths.png", title="test")
    short = drawn["fig"].axes[0]
    lines = {bars.get_label(): bars.lines[0] for bars in short.containers}
    assert set(lines) == {"depth", "width", "depth+width"}
    assert [line.get_label() for line in short.get_lines()][-1] == "FP32 baseline"
    # each width line starts from the unpruned INT8 model; points sorted by latency
    np.testing.assert_allclose(lines["width"].get_xdata(), [0.15, 0.2], rtol=0.05)
    np.testing.assert_allclose(lines["depth+width"].get_ydata(), [80.0, 82.0])
    np.testing.assert_allclose(lines["depth"].get_ydata(), [81.0, 82.0])

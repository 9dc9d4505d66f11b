"""Where a stage's time goes: the phases a stage reports and the per-stage table of a whole run."""

from __future__ import annotations

import time

import click
from click.testing import CliRunner

from prunequant import clock
from prunequant.errors import StageCommand

from .conftest import script_module


def stage_times():
    return script_module("bench/stage_times.py")


def test_a_stage_reports_start_up_loading_and_work_and_a_nested_load_counts_once(monkeypatch):
    monkeypatch.setattr(clock, "SPENT", clock.defaultdict(float))

    @click.command(cls=StageCommand)
    def stage():
        with clock.phase("loading"):
            time.sleep(0.05)
            with clock.phase("loading"):  # load_artifact calling load_tokenizer
                time.sleep(0.05)
        time.sleep(0.1)

    result = CliRunner().invoke(stage, [])
    assert result.exit_code == 0, result.output
    match = stage_times().TIMES.search(result.output)
    startup, loading, work = match.groups()
    assert float(startup) > 0  # this test process's age: Linux /proc
    assert 0.1 <= float(loading) < 0.2 and 0.1 <= float(work) < 0.2


def test_the_run_s_log_gives_each_stage_its_wall_time_phases_and_dvc_s_share():
    lines = [(100.0, "Running stage 'prepare':"), (100.1, "> python stages/prepare.py"),
             (104.0, "stage-time: prepare.py start-up 2.0 s, loading 0.0 s, work 1.5 s"),
             (105.0, "Running stage 'quantize-onnx@onnx-int8-dynamic':"),
             (120.0, "stage-time: quantize.py start-up 9.0 s, loading 1.0 s, work 4.0 s"),
             (121.0, "Running stage 'quantize-onnx@onnx-int8-static':"),
             (140.0, "stage-time: quantize.py start-up 9.0 s, loading 1.0 s, work 8.0 s")]
    module = stage_times()
    frame = module.parse(lines, end=141.0)
    assert frame.stage.tolist() == ["prepare", "quantize-onnx@onnx-int8-dynamic", "quantize-onnx@onnx-int8-static"]
    assert frame.wall_s.tolist() == [5.0, 16.0, 20.0] and frame.start.tolist() == [0.0, 5.0, 21.0]
    assert frame.dvc_s.tolist() == [1.5, 2.0, 2.0]  # what the process did not account for
    table = module.markdown(frame)
    assert "| quantize-onnx | 2 | 36 | 18 | 2 | 12 | 4 |" in table and "| total | 3 | 41 |" in table
    # Two runs side by side: wall time per kind, the ratio, and where the second run's time went.
    faster = frame.assign(wall_s=frame.wall_s / 2, startup_s=0.0)
    side_by_side = module.compare(frame, faster)
    assert "| quantize-onnx | 2 | 36 | 18 | 0.50 | 0 | 2 | 12 | 4 |" in side_by_side
    assert "| total | 3 | 41 | 20 | 0.50 |" in side_by_side

"""Training under faults and at scale, through the finetune stage script as DVC runs it:
a killed run resumes from its last checkpoint, the same params give the same numbers, and two processes
(gloo on CPU, as `accelerate launch` starts them) match one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, make_workspace, run_stage_in
from .conftest import STAGE_ENV as ENV

# 40 training sentences in batches of 4: 120 optimizer steps, a checkpoint every 20.
PARAMS = {
    "base": {"seed": 0, "model": "tiny", "data": "data.csv", "max_seq_length": 16},
    "prepare": {"validation_size": 0.25, "test_size": 0.25},
    "finetune": {"epochs": 12, "learning_rate": 1e-3, "batch_size": 4, "warmup_ratio": 0.0, "logging_steps": 10,
                 "checkpoint_steps": 20},
}


# One worker runs the whole module: its module fixture is built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]


@pytest.fixture(scope="module")
def workspace(tiny_model_dir, tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("faults"), tiny_model_dir, PARAMS)
    prepared = run_stage_in(root, "prepare", "--out", "data", "--metrics", "prepare.json")
    assert prepared.returncode == 0, prepared.stderr
    return root


def finetune_command(out: str, params: str = "params.yaml") -> list[str]:
    return [sys.executable, str(REPO / "stages" / "finetune.py"), "--data", "data", "--out", out,
            "--live", f"{out}-live", "--params", params]


def finetune(workspace: Path, out: str, params: str = "params.yaml") -> dict:
    result = subprocess.run(finetune_command(out, params), cwd=workspace, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads((workspace / f"{out}-live" / "metrics.json").read_text())


def kill_after_checkpoint(workspace: Path, out: str, step: int, sig: signal.Signals,
                          params: str = "params.yaml") -> list:
    """Start the stage, wait until checkpoint `step` is complete, then send `sig`; return its child processes."""
    import psutil

    process = subprocess.Popen(finetune_command(out, params), cwd=workspace, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = workspace / f".{out}.checkpoints" / f"checkpoint-{step}" / "prunequant-complete"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, "the run ended before its checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(sig)
    assert process.wait() == -sig, "the run finished before it was killed"
    assert not (workspace / out).exists()  # nothing that looks like a finished model
    return children


def test_a_killed_finetune_resumes_from_its_last_checkpoint(workspace):
    reference = finetune(workspace, "uninterrupted")
    kill_after_checkpoint(workspace, "killed", 40, signal.SIGTERM)
    kill_after_checkpoint(workspace, "killed", 80, signal.SIGKILL)  # resumed at 40, killed again
    result = subprocess.run(finetune_command("killed"), cwd=workspace, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "finetune: resuming from .killed.checkpoints/checkpoint-80" in result.stdout
    resumed = json.loads((workspace / "killed-live" / "metrics.json").read_text())
    assert resumed["step"] == reference["step"] == 120
    assert resumed["eval"]["accuracy"] == reference["eval"]["accuracy"]
    assert resumed["eval"]["loss"] == pytest.approx(reference["eval"]["loss"], abs=0.01)
    # The curve is whole: the steps before the kills were written again from the checkpoint's history.
    steps = [int(row.split("\t")[0]) for row in
             (workspace / "killed-live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]]
    assert steps == list(range(10, 130, 10))
    assert not (workspace / ".killed.checkpoints").exists()


def test_other_params_never_resume_a_stale_checkpoint(workspace):
    kill_after_checkpoint(workspace, "stale", 20, signal.SIGKILL)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["finetune"]["learning_rate"] = 2e-3
    (workspace / "other.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(finetune_command("stale", "other.yaml"), cwd=workspace, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stdout


def test_two_processes_match_one(workspace):
    """`finetune.processes: 2` relaunches the stage under `accelerate launch`: DDP over gloo on CPU,
    each process taking half of every global batch."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["finetune"].update(epochs=10, batch_size=8, checkpoint_steps=0)
    for n in (1, 2):
        params["finetune"]["processes"] = n
        (workspace / f"p{n}.yaml").write_text(yaml.safe_dump(params))
    one, two = finetune(workspace, "one", "p1.yaml"), finetune(workspace, "two", "p2.yaml")
    assert one["step"] == two["step"] == 50  # the same global batches: 40 rows / 8 per step x 10 epochs
    assert two["eval"]["accuracy"] == one["eval"]["accuracy"]
    assert two["eval"]["loss"] == pytest.approx(one["eval"]["loss"], abs=0.02)
    assert two["train"]["loss"] == pytest.approx(one["train"]["loss"], abs=0.02)
    assert (sorted(p.name for p in (workspace / "two").iterdir())
            == sorted(p.name for p in (workspace / "one").iterdir()))


def test_a_killed_two_process_run_leaves_no_worker_behind_and_resumes(workspace):
    """SIGKILL reaches only the launcher; its workers must not train on as orphans."""
    import psutil

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["finetune"]["processes"] = 2
    (workspace / "ddp.yaml").write_text(yaml.safe_dump(params))
    workers = kill_after_checkpoint(workspace, "ddp", 40, signal.SIGKILL, "ddp.yaml")
    assert len(workers) >= 2
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    result = subprocess.run(finetune_command("ddp", "ddp.yaml"), cwd=workspace, env=ENV, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "finetune: resuming from .ddp.checkpoints/checkpoint-40" in result.stdout
    assert json.loads((workspace / "ddp-live" / "metrics.json").read_text())["step"] == 120

"""Warm stage starts (prunequant.warm): a stage run while a server is up runs in the server's child, with the
stage's arguments, folder, environment and streams, the code as it is now, and its exit status."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="warm starts need Linux pidfds"),
              pytest.mark.xdist_group("warm")]  # one server for the module

SCRIPT = '''"""A stage-like script."""
from prunequant.warm import hand_off

hand_off()

import os
import sys
import time

import helper

print(f"warm={os.environ.get('PRUNEQUANT_WARM_CHILD') == str(os.getpid())} torch={'torch' in sys.modules} "
      f"value={helper.VALUE} cwd={os.getcwd()} arg={sys.argv[1]} env={os.environ.get('DVC_STAGE')} "
      f"prunequant_code={sys.modules['prunequant.warm'].__file__}")
print("to stderr", file=sys.stderr)
if sys.argv[1] == "sleep":
    time.sleep(60)
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else 0)
'''


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A folder with a stage-like script, the environment of its warm starts, and the first run's output: that run
    finds no server, runs cold and starts one, which the fixture waits for. One server for the module's tests."""
    folder = tmp_path_factory.mktemp("warm")
    runtime = Path(tempfile.mkdtemp(prefix="pq-", dir="/tmp"))  # a socket's path has at most 107 characters
    (folder / "stages").mkdir()
    (folder / "stages" / "stage.py").write_text(SCRIPT)
    (folder / "stages" / "helper.py").write_text("VALUE = 1\n")
    env = {**os.environ, "PRUNEQUANT_WARM": "1", "XDG_RUNTIME_DIR": str(runtime), "PRUNEQUANT_WARM_IDLE_S": "20"}
    first = run(folder, env, "0", DVC_STAGE="a")
    wait_for_server(runtime)
    yield folder, env, first
    for sock in runtime.glob("*/*.sock"):  # stops the server
        sock.unlink()
    shutil.rmtree(runtime, ignore_errors=True)


def run(folder, env, arg, **extra):
    # DVC sets DVC_STAGE for each stage: the one variable that differs between the stages of a run.
    return subprocess.run([sys.executable, "stages/stage.py", arg], cwd=folder, env={**env, **extra},
                          capture_output=True, text=True, timeout=120)


def wait_for_server(runtime: Path, timeout: float = 90.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sockets = list(runtime.glob("*/*.sock"))
        if sockets:
            return sockets[0]
        time.sleep(0.2)
    raise AssertionError("no warm server came up")


def test_a_stage_runs_cold_first_then_in_the_server_child_with_its_own_args_folder_env_streams_and_status(warm):
    folder, env, first = warm
    assert first.returncode == 0 and "warm=False" in first.stdout, first.stderr
    # The code changes between two stages: the child imports it afresh, as a cold process would.
    (folder / "stages" / "helper.py").write_text("VALUE = 2\n")
    second = run(folder, env, "3", DVC_STAGE="b")
    assert second.returncode == 3, second.stderr
    assert "warm=True torch=True value=2" in second.stdout
    assert f"cwd={folder} arg=3 env=b" in second.stdout
    assert f"prunequant_code={Path(__file__).parents[1] / 'src' / 'prunequant' / 'warm.py'}" in second.stdout
    assert "to stderr" in second.stderr


def test_a_signal_to_the_stage_process_reaches_its_child(warm):
    folder, env, _ = warm
    stage = subprocess.Popen([sys.executable, "stages/stage.py", "sleep"], cwd=folder, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = stage.stdout.readline()
    assert "warm=True" in line
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(timeout=30) == 128 + signal.SIGTERM


def test_warm_starts_off_or_a_changed_environment_never_use_the_server(warm):
    folder, env, _ = warm
    assert "warm=False" in run(folder, env, "0", PRUNEQUANT_WARM="0").stdout
    # Another environment is another server (libraries read some variables when imported): this one runs cold.
    assert "warm=False" in run(folder, env, "0", HF_HUB_OFFLINE="0", PRUNEQUANT_WARM_IDLE_S="1").stdout

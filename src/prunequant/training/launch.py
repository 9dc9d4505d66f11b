"""Process supervision of a training stage: several processes under ``accelerate launch``, and workers that
die with their launcher. Only the finetune and refinetune stages import it; the training recipe itself
(``training.py``, which int8-qat also runs) only asks which process it is."""

from __future__ import annotations

import os
import sys

import torch

from prunequant.accelerator import cuda_available
from prunequant.errors import PrunequantError


def relaunch(processes: int, section: str) -> None:
    """Run this script again under ``accelerate launch`` with ``processes`` processes, then exit.

    Does nothing when one process is asked for or when already launched. Each process runs the same
    script; on CUDA each takes one GPU (NCCL), without CUDA they train on CPU over gloo.
    """
    if processes <= 1:
        return
    if "LOCAL_RANK" in os.environ:
        _die_with_launcher()
        return
    if cuda_available() and torch.cuda.device_count() < processes:
        raise PrunequantError(
            f"params.yaml: {section}.processes is {processes} but this machine has "
            f"{torch.cuda.device_count()} GPU(s); set {section}.processes <= {torch.cuda.device_count()}"
        )
    threads = max(1, (os.cpu_count() or 1) // processes)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--num_cpu_threads_per_process", str(threads), "--quiet", *sys.argv,
    ]
    env = os.environ | ({} if cuda_available() else {"ACCELERATE_USE_CPU": "true"})
    sys.stdout.flush()
    # The launcher takes this process's place: the process DVC waits on and a user signals is the one that
    # supervises the workers (torchrun stops them on SIGTERM; they die with it on SIGKILL).
    os.execve(sys.executable, command, env)


def _die_with_launcher() -> None:
    """A worker gets SIGKILL when its launcher dies (Linux), so a killed stage leaves no orphan training."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os._exit(1)

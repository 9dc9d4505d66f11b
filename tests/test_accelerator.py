"""The machine check: what torch would say about CUDA, found without importing torch."""

import subprocess
import sys

import pytest

from prunequant.accelerator import cuda_device_names, probe, torch_cuda_version


@pytest.mark.parametrize(("text", "expected"), [
    ("cuda: Optional[str] = None\n", None),
    ("__version__ = '2.13.0+cu128'\ncuda: Optional[str] = '12.8'\nhip = None\n", "12.8"),
    ("cuda = '13.0'\n", "13.0"),
])
def test_reads_the_cuda_version_torch_was_built_for(tmp_path, text, expected):
    (tmp_path / "version.py").write_text(text)
    assert torch_cuda_version(tmp_path / "version.py") == expected


def test_agrees_with_torch_on_this_machine():
    import torch

    assert torch_cuda_version() == torch.version.cuda
    assert probe() == {"cuda": torch.cuda.is_available(),
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def test_no_driver_means_no_device():
    assert cuda_device_names("libcuda-that-does-not-exist.so") == []


def test_the_machine_check_never_imports_torch():
    code = "import sys, prunequant.accelerator as a; a.probe(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

"""The machine check: what torch would say about CUDA, found without importing torch."""

import subprocess
import sys

import pytest

from prunequant.accelerator import (
    cpu_flags,
    cuda_device_names,
    native_bf16,
    probe,
    torch_cuda_version,
    training_precision,
)
from prunequant.errors import PrunequantError


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
    cuda = torch.cuda.is_available()
    machine = probe()
    assert {key: machine[key] for key in ("cuda", "gpu")} == {
        "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None}
    if cuda:
        assert machine["bf16"] == torch.cuda.is_bf16_supported(including_emulation=False)


def test_no_driver_means_no_device():
    assert cuda_device_names("libcuda-that-does-not-exist.so") == []


def test_the_machine_check_never_imports_torch():
    code = "import sys, prunequant.accelerator as a; a.probe(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(("text", "flags"), [
    ("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\nbugs\t: none\n",
     {"fpu", "sse", "avx512f", "avx512_bf16"}),
    ("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n", {"fp", "asimd", "bf16", "i8mm"}),  # Arm
    ("model name\t: something\n", set()),
])
def test_reads_the_cpu_flags(tmp_path, text, flags):
    (tmp_path / "cpuinfo").write_text(text)
    assert cpu_flags(tmp_path / "cpuinfo") == flags


def test_no_cpuinfo_means_no_flags(tmp_path):
    assert cpu_flags(tmp_path / "missing") == set()


def test_native_bf16():
    assert native_bf16(False, flags={"avx512f", "avx512_bf16"}) and native_bf16(False, flags={"amx_bf16"})
    assert not native_bf16(False, flags={"avx512f", "avx2"})  # bf16 would be emulated: slower than FP32
    assert native_bf16(True, devices=[{"name": "A100", "major": 8}])
    assert not native_bf16(True, devices=[{"name": "V100", "major": 7}])


CPU, CPU_BF16 = {"cuda": False, "bf16": False}, {"cuda": False, "bf16": True}
OLD_GPU, NEW_GPU = {"cuda": True, "bf16": False}, {"cuda": True, "bf16": True}


@pytest.mark.parametrize(("requested", "machine", "resolved"), [
    ("auto", CPU_BF16, "bf16"), ("auto", CPU, "fp32"), ("auto", NEW_GPU, "bf16"), ("auto", OLD_GPU, "fp32"),
    ("fp32", CPU_BF16, "fp32"), ("bf16", CPU, "bf16"), ("fp16", OLD_GPU, "fp16"), ("fp16", NEW_GPU, "fp16"),
])
def test_training_precision(requested, machine, resolved):
    assert training_precision(requested, "finetune.precision", machine)[0] == resolved


def test_training_precision_says_why():
    assert training_precision("auto", "finetune.precision", CPU)[1] == (
        "precision auto -> fp32 (this CPU has no native bfloat16: falling back to FP32)")
    assert "emulated" in training_precision("bf16", "finetune.precision", CPU)[1]


@pytest.mark.parametrize(("requested", "machine", "message"), [
    ("fp16", CPU, "refinetune.precision: fp16 needs CUDA and this machine has none; "
                  "set refinetune.precision: auto, bf16 or fp32"),
    ("bf16", OLD_GPU, "refinetune.precision: bf16 needs a GPU of compute capability 8.0 or newer; "
                      "set refinetune.precision: fp16 or fp32"),
])
def test_training_precision_errors_name_the_param(requested, machine, message):
    with pytest.raises(PrunequantError) as error:
        training_precision(requested, "refinetune.precision", machine)
    assert str(error.value) == message

"""Weights load only from safetensors, nothing is unpickled, no remote code runs (read from the code itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "src").rglob("*.py"), *(REPO / "stages").glob("*.py")])


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_pickle_no_remote_code_safetensors_only(path):
    text = path.read_text()
    assert "trust_remote_code" not in text
    assert "import pickle" not in text and "joblib" not in text and "dill" not in text.split()
    for call in _calls(path):
        where = f"{path.relative_to(REPO)}:{call.lineno}"
        if call.func.attr == "load" and isinstance(call.func.value, ast.Name) and call.func.value.id == "torch":
            flag = _keyword(call, "weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, (
                f"{where}: torch.load without weights_only=True")
        owner = call.func.value
        if call.func.attr == "from_pretrained" and isinstance(owner, ast.Name) and owner.id.startswith("AutoModel"):
            flag = _keyword(call, "use_safetensors")
            assert isinstance(flag, ast.Constant) and flag.value is True, f"{where}: weights not forced to safetensors"


def test_a_pickle_only_model_folder_is_refused(tiny_model_dir, tmp_path):
    """A folder holding only pytorch_model.bin (a pickle) is never unpickled."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from prunequant.errors import PrunequantError
    from prunequant.modeling import load_classifier

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(PrunequantError, match="not a complete model folder"):
        load_classifier(str(folder))

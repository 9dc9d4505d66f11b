"""Atomic outputs and the one size definition."""

import shutil

import pytest

from prunequant import io
from prunequant.errors import PrunequantError
from prunequant.io import atomic_dir
from prunequant.sizes import model_size_mb


def _output(path, text):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_text(text)


def test_atomic_dir_deletes_the_old_output_only_once_the_new_one_is_in(tmp_path, monkeypatch):
    out = tmp_path / "models" / "baseline"
    _output(out, "old")
    seen = []
    real_rmtree, real_replace = shutil.rmtree, io.os.replace

    def watching_rmtree(path, *args, **kwargs):  # the old output is deleted only once the new one is in place
        seen.append(("rmtree", (out / "model.safetensors").read_text()))
        return real_rmtree(path, *args, **kwargs)

    def watching_replace(src, dst):
        seen.append(("replace", (out / "model.safetensors").read_text() if out.exists() else None))
        return real_replace(src, dst)

    monkeypatch.setattr(io.shutil, "rmtree", watching_rmtree)
    monkeypatch.setattr(io.os, "replace", watching_replace)
    with atomic_dir(out) as tmp:
        (tmp / "model.safetensors").write_text("new")
        assert (out / "model.safetensors").read_text() == "old"  # untouched while the stage works
    assert (out / "model.safetensors").read_text() == "new"
    assert [name for name in out.parent.iterdir()] == [out]  # no temporary folder left behind
    assert ("rmtree", "new") in seen and ("rmtree", "old") not in seen
    # the old output is moved aside, never deleted, before the new one is renamed in
    assert seen[0][0] == "replace" and seen[-1][0] == "rmtree"


def test_a_failed_stage_keeps_the_earlier_output(tmp_path):
    out = tmp_path / "out"
    _output(out, "old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("killed")
    assert (out / "model.safetensors").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_model_size_counts_every_runtime_file_whatever_the_tokenizer(tmp_path):
    folder = tmp_path / "roberta"
    folder.mkdir()
    sizes = {"model.safetensors": 1_000_000, "config.json": 1_000, "vocab.json": 20_000, "merges.txt": 30_000,
             "tokenizer_config.json": 500}
    for name, size in sizes.items():
        (folder / name).write_bytes(b"x" * size)
    (folder / "README.md").write_bytes(b"x" * 99_999)  # the model card is not part of the model
    (folder / ".hidden").write_bytes(b"x" * 99_999)
    assert model_size_mb(folder) == pytest.approx(sum(sizes.values()) / 1e6)


def test_model_size_needs_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(PrunequantError, match="no model weights"):
        model_size_mb(tmp_path)

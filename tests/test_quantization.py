"""Every scheme of the registry on a small random BERT: build, save, reload (also in a fresh process),
predict close to FP32, and shrink where it should. CUDA-only schemes report n/a without CUDA."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prunequant.evaluation import predict_logits
from prunequant.modeling import load_classifier, load_tokenizer
from prunequant.quantization import (
    SCHEMES,
    BuildContext,
    cuda_available,
    load_artifact,
    not_available_reason,
    read_manifest,
    write_manifest,
)

from .conftest import tiny_frame

TEXTS = tiny_frame(6)["text"].tolist()
CONTEXT = BuildContext(
    train_texts=tuple(TEXTS), train_labels=tuple(int(v) for v in tiny_frame(6)["label"]),
    validation_texts=tuple(TEXTS[:4]), validation_labels=tuple(int(v) for v in tiny_frame(6)["label"][:4]),
    max_seq_length=16,
)

# Largest weight-file size of each scheme as a share of the FP32 weights (None: no shrink expected), and
# how far its logits may stray from FP32's, as a share of the largest FP32 logit. On this small model the
# per-channel scales weigh more than on a real one: the pipeline reports the real ratios.
EXPECTED = {
    "fp32": (None, 0.0),
    "bf16": (0.55, 0.05),
    "fp16": (0.55, 0.02),
    "int8-dynamic": (0.40, 0.1),
    "int8-qat": (0.40, 0.5),  # trained: it moves away from FP32 by design
    "onnx-fp32": (None, 1e-4),
    "onnx-int8-dynamic": (0.50, 0.1),
    "onnx-int8-static": (0.55, 0.15),
    "onnx-int4-weight": (0.30, 0.25),
    "bnb-int8": (0.45, 0.05),
    "bnb-nf4": (0.40, 0.15),
    "bnb-fp4": (0.40, 0.2),
    "torchao-int8-weight": (0.45, 0.05),
    "torchao-int4-weight": (0.45, 0.2),
    "fp8": (0.45, 0.15),
}
# Meant for CUDA, yet their kernels also exist on CPU: the build and load code is exercised here.
RUNS_ON_CPU_TOO = {"bnb-int8", "bnb-nf4", "bnb-fp4", "torchao-int8-weight"}


def weight_bytes(folder):
    return sum((folder / name).stat().st_size for name in ("model.safetensors", "model.onnx") if (folder / name).exists())


def test_every_scheme_has_expectations():
    assert set(EXPECTED) == set(SCHEMES)


@pytest.fixture(scope="module")
def reference(small_model_dir):
    model, tokenizer = load_classifier(str(small_model_dir)), load_tokenizer(str(small_model_dir))
    return predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)


@pytest.fixture(scope="module")
def built(small_model_dir, tmp_path_factory):
    """name -> artifact folder, for every scheme whose build runs on this machine."""
    root, folders = tmp_path_factory.mktemp("artifacts"), {}
    for name, scheme in SCHEMES.items():
        if not_available_reason(scheme) and name not in RUNS_ON_CPU_TOO:
            continue
        folder = root / name
        folder.mkdir()
        settings = scheme.settings()
        scheme.build(small_model_dir, folder, settings, CONTEXT)
        write_manifest(folder, scheme, settings, str(small_model_dir), "ok")
        folders[name] = folder
    return folders


@pytest.mark.parametrize("name", list(SCHEMES))
def test_build_save_reload_predict(name, built, reference, small_model_dir):
    scheme = SCHEMES[name]
    if name not in built:
        assert scheme.device == "cuda" and not cuda_available()
        assert not_available_reason(scheme) == "n/a: needs CUDA"
        pytest.skip(f"{name} needs CUDA")
    folder = built[name]
    files = {p.name for p in folder.iterdir()}
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files), files  # no pickles
    assert {"config.json", "prunequant.json"} <= files and files & {"model.safetensors", "model.onnx"}
    assert read_manifest(folder)["scheme"] == name

    model, tokenizer, loaded_scheme = load_artifact(folder)
    assert loaded_scheme is scheme
    logits = predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
    max_share, tolerance = EXPECTED[name]
    assert np.abs(logits - reference).max() <= tolerance * np.abs(reference).max()
    if max_share is not None:
        assert weight_bytes(folder) <= max_share * weight_bytes(small_model_dir)


def test_artifacts_reload_in_a_fresh_process(built):
    """What a user does: a new Python, the folder alone, the same predictions."""
    script = (
        "import json, sys\n"
        "from prunequant.quantization import load_artifact\n"
        "from prunequant.evaluation import predict_logits\n"
        "texts, out = json.loads(sys.argv[1]), {}\n"
        "for folder in sys.argv[2:]:\n"
        "    model, tokenizer, _ = load_artifact(folder)\n"
        "    out[folder] = predict_logits(model, tokenizer, texts, batch_size=4, max_seq_length=16).tolist()\n"
        "print(json.dumps(out))\n"
    )
    folders = [str(f) for f in built.values()]
    result = subprocess.run([sys.executable, "-c", script, json.dumps(TEXTS), *folders], capture_output=True,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    for name, folder in built.items():
        model, tokenizer, _ = load_artifact(folder)
        here = predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
        np.testing.assert_allclose(np.array(fresh[str(folder)]), here, atol=1e-5, err_msg=name)


def test_int8_dynamic_round_trip_is_exact(built, small_model_dir):
    """The safetensors layout rebuilds exactly the integers and scales that were quantized."""
    from prunequant.quantization.torch_schemes import Int8DynamicSettings, _quantize_dynamic

    quantized = _quantize_dynamic(load_classifier(str(small_model_dir)), Int8DynamicSettings())
    reloaded, _, _ = load_artifact(built["int8-dynamic"])
    query = "bert.encoder.layer.0.attention.self.query"
    before, after = quantized.get_submodule(query).weight(), reloaded.get_submodule(query).weight()
    assert after.dtype == before.dtype and after.qscheme() == before.qscheme()
    assert np.array_equal(after.int_repr().numpy(), before.int_repr().numpy())
    words = "bert.embeddings.word_embeddings"
    assert np.array_equal(reloaded.get_submodule(words).weight().int_repr().numpy(),
                          quantized.get_submodule(words).weight().int_repr().numpy())


def test_not_built_artifact_refuses_to_load(tmp_path):
    scheme = SCHEMES["fp16"]
    write_manifest(tmp_path, scheme, scheme.settings(), "models/baseline", "n/a: needs CUDA")
    with pytest.raises(Exception, match="not built here \\(n/a: needs CUDA\\)"):
        load_artifact(tmp_path)


def test_qat_model_trains_with_fake_quantization_and_converts(small_model_dir, tmp_path):
    """The fake-quantized model learns (its loss falls) and converts to a real INT8 artifact."""
    import torch
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    from prunequant.quantization.qat import prepare_qat

    model, tokenizer = load_classifier(str(small_model_dir)), load_tokenizer(str(small_model_dir))
    prepare_qat(model)
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, FakeQuantizedLinear)
    assert not isinstance(model.classifier, FakeQuantizedLinear)  # the head stays FP32
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor(tiny_frame(6)["label"].to_numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    # the built artifact (int8-qat, built above) holds real INT8 modules
    scheme = SCHEMES["int8-qat"]
    folder = tmp_path / "qat"
    folder.mkdir()
    scheme.build(small_model_dir, folder, scheme.settings(epochs=1, train_samples=0), CONTEXT)
    write_manifest(folder, scheme, scheme.settings(epochs=1, train_samples=0), "small", "ok")
    loaded, _, _ = load_artifact(folder)
    assert loaded.bert.encoder.layer[0].attention.self.query.weight().dtype == torch.qint8


def test_fp8_on_an_older_gpu_is_not_available(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (8, 0))  # an A100
    assert not_available_reason(SCHEMES["fp8"]) == "n/a: needs a GPU of compute capability 8.9 or newer"
    assert not_available_reason(SCHEMES["bnb-nf4"]) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (9, 0))  # an H100
    assert not_available_reason(SCHEMES["fp8"]) is None

"""Every scheme of the registry on a small random BERT: build, save, reload (also in a fresh process),
predict close to FP32, and shrink where it should. Without CUDA, the GPU schemes with CPU kernels are built and
scored on the CPU; the others report n/a and why. Dynamic schemes score the same whatever the sentence order."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from prunequant.errors import PrunequantError
from prunequant.evaluation import predict_logits
from prunequant.modeling import load_classifier, load_tokenizer
from prunequant.quantization import (
    BuildContext,
    cuda_available,
    load_artifact,
    measured_on,
    not_available_reason,
    read_manifest,
    write_manifest,
)
from prunequant.quantization.every import every_scheme

from .conftest import by_family, config, invoke_stage, params_dict, settings_of, tiny_frame

# One worker runs the whole module: its module fixture is built once.
pytestmark = pytest.mark.xdist_group("quantization")

SCHEMES = every_scheme()

TEXTS = tiny_frame(6)["text"].tolist()
CONTEXT = BuildContext(
    train_texts=tuple(TEXTS), train_labels=tuple(int(v) for v in tiny_frame(6)["label"]),
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
    "openvino-fp32": (None, 1e-4),
    "openvino-int8-static": (0.55, 0.15),
    "bnb-int8": (0.45, 0.05),
    "bnb-nf4": (0.40, 0.15),
    "bnb-fp4": (0.40, 0.2),
    "torchao-int8-weight": (0.45, 0.05),
    "torchao-int4-weight": (0.45, 0.2),
    "fp8": (0.45, 0.15),
}


def weight_bytes(folder):
    return sum(p.stat().st_size for p in folder.iterdir()
               if p.suffix in (".safetensors", ".onnx") or p.name == "openvino_model.bin")


def test_every_scheme_has_expectations():
    assert set(EXPECTED) == set(SCHEMES)


@pytest.fixture(scope="module")
def reference(small_model_dir):
    model, tokenizer = load_classifier(str(small_model_dir)), load_tokenizer(str(small_model_dir))
    return predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)


def runs_here(scheme) -> bool:
    """Whether this machine can build and load ``scheme`` (CUDA schemes with CPU kernels run here too)."""
    return not_available_reason(scheme) is None


class Artifacts(dict):
    """Scheme name -> artifact folder, built on first use (a failing build fails only its own tests)."""

    def __init__(self, source, root):
        super().__init__()
        self.source, self.root = source, root

    def __missing__(self, name):
        scheme = SCHEMES[name]
        reason = not_available_reason(scheme)
        if not runs_here(scheme):
            pytest.skip(f"{name}: {reason}")
        folder = self.root / name
        folder.mkdir()
        scheme.build(self.source, folder, settings_of(scheme.name), CONTEXT)
        write_manifest(folder, scheme, settings_of(scheme.name), str(self.source), "ok")
        self[name] = folder
        return folder


@pytest.fixture(scope="module")
def built(small_model_dir, tmp_path_factory):
    return Artifacts(small_model_dir, tmp_path_factory.mktemp("artifacts"))


@pytest.mark.parametrize("name", list(SCHEMES))
def test_build_save_reload_predict(name, built, reference, small_model_dir):
    scheme = SCHEMES[name]
    if scheme.device == "cuda" and not cuda_available() and not scheme.cpu_kernels:
        assert not_available_reason(scheme) == f"n/a: needs CUDA ({scheme.no_cpu_reason})"
    folder = built[name]
    files = {p.name for p in folder.iterdir()}
    # no pickles (OpenVINO's openvino_model.bin is raw tensor data that its .xml graph indexes)
    assert not any(f.endswith((".bin", ".pt", ".pkl")) and f != "openvino_model.bin" for f in files), files
    assert {"config.json", "prunequant.json"} <= files and weight_bytes(folder) > 0
    assert read_manifest(folder)["scheme"] == name

    model, tokenizer, loaded_scheme = load_artifact(folder)
    assert loaded_scheme is scheme
    logits = predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
    max_share, tolerance = EXPECTED[name]
    assert np.abs(logits - reference).max() <= tolerance * np.abs(reference).max()
    if max_share is not None:
        assert weight_bytes(folder) <= max_share * weight_bytes(small_model_dir)


@pytest.fixture(scope="module")
def width_pruned_dir(small_model_dir, tmp_path_factory):
    """A width-pruned model: 4 heads of 16, each layer keeping a different 2, and 64 of 128 FFN neurons (each layer
    a different 64), saved as the prune stage saves it."""
    from transformers import BertConfig, BertForSequenceClassification, set_seed

    from prunequant.modeling import save_classifier
    from prunequant.width import keep_ffn_neurons, prune_heads

    set_seed(1)
    source = load_classifier(str(small_model_dir))
    model = BertForSequenceClassification(BertConfig(**{**source.config.to_dict(), "num_attention_heads": 4}))
    model = prune_heads(model.eval(), {0: [1, 3], 1: [0, 2]})
    model = keep_ffn_neurons(model, {0: range(0, 128, 2), 1: range(64, 128)})
    folder = tmp_path_factory.mktemp("width-pruned")
    save_classifier(model, load_tokenizer(str(small_model_dir)), folder)
    return folder


@pytest.mark.parametrize("name", [n for n in SCHEMES if n != "fp32"])
def test_a_width_pruned_models_artifacts_predict_as_it_does(name, width_pruned_dir, tmp_path):
    """Every layer has fewer heads than config.num_attention_heads says (config.pruned_heads lists the rest): a
    fused attention kernel, a calibration or an exporter that assumes the global head count fails here."""
    scheme = SCHEMES[name]
    if not runs_here(scheme):
        pytest.skip(f"{name}: {not_available_reason(scheme)}")
    model, tokenizer = load_classifier(str(width_pruned_dir)), load_tokenizer(str(width_pruned_dir))
    assert model.bert.encoder.layer[1].attention.self.query.weight.shape == (32, 64)  # 2 heads of 16 left
    reference = predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
    scheme.build(width_pruned_dir, tmp_path, settings_of(name), CONTEXT)
    write_manifest(tmp_path, scheme, settings_of(name), str(width_pruned_dir), "ok")
    loaded, tokenizer, _ = load_artifact(tmp_path)
    logits = predict_logits(loaded, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
    assert np.abs(logits - reference).max() <= EXPECTED[name][1] * np.abs(reference).max()
    assert (logits.argmax(-1) == reference.argmax(-1)).mean() >= 0.75


@pytest.mark.parametrize("name", ["int8-dynamic", "torchao-int8-weight"])
def test_rebuilding_gives_byte_identical_files(name, built, tmp_path):
    """A rerun must not change a stage's output hash: safetensors writes a metadata dict in a per-process
    hash order, so torchao's per-tensor metadata is saved as one sorted JSON string."""
    scheme = SCHEMES[name]
    scheme.build(built.source, tmp_path, settings_of(scheme.name), CONTEXT)
    first = built[name]
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (first / path.name).read_bytes(), path.name


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
    runnable = [name for name, scheme in SCHEMES.items() if runs_here(scheme)]
    folders = [str(built[name]) for name in runnable]
    result = subprocess.run([sys.executable, "-c", script, json.dumps(TEXTS), *folders], capture_output=True,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    for name in runnable:
        folder = built[name]
        model, tokenizer, _ = load_artifact(folder)
        here = predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
        np.testing.assert_allclose(np.array(fresh[str(folder)]), here, atol=1e-5, err_msg=name)


def test_int8_dynamic_round_trip_is_exact(built, small_model_dir):
    """The safetensors layout rebuilds exactly the integers and scales that were quantized."""
    from prunequant.quantization.torch_schemes import Int8DynamicSettings, _quantize_dynamic

    quantized = _quantize_dynamic(load_classifier(str(small_model_dir)), Int8DynamicSettings(quantize_embeddings=True))
    reloaded, _, _ = load_artifact(built["int8-dynamic"])
    query = "bert.encoder.layer.0.attention.self.query"
    before, after = quantized.get_submodule(query).weight(), reloaded.get_submodule(query).weight()
    assert after.dtype == before.dtype and after.qscheme() == before.qscheme()
    assert np.array_equal(after.int_repr().numpy(), before.int_repr().numpy())
    words = "bert.embeddings.word_embeddings"
    assert np.array_equal(reloaded.get_submodule(words).weight().int_repr().numpy(),
                          quantized.get_submodule(words).weight().int_repr().numpy())


def one_line_error(call) -> str:
    with pytest.raises(PrunequantError) as info:
        call()
    message = info.value.format_message()
    assert "\n" not in message
    return message


def test_artifacts_that_cannot_load_here_say_why_in_one_line(tmp_path, built, small_model_dir):
    assert "no config.json" in one_line_error(lambda: load_artifact(tmp_path / "missing"))
    scheme = SCHEMES["fp16"]
    (tmp_path / "config.json").write_text("{}")
    write_manifest(tmp_path, scheme, settings_of(scheme.name), "models/baseline", "n/a: needs CUDA")
    assert "not built here (n/a: needs CUDA)" in one_line_error(lambda: load_artifact(tmp_path))
    if not cuda_available():  # an fp8 folder built on a GPU machine, opened on this one
        folder = tmp_path / "fp8"
        shutil.copytree(small_model_dir, folder)
        write_manifest(folder, SCHEMES["fp8"], settings_of("fp8"), "models/baseline", "ok")
        assert ("a fp8 artifact cannot run on this machine (n/a: needs CUDA (FP8 matmuls need an Ada or Hopper GPU))"
                in one_line_error(lambda: load_artifact(folder)))
    (tmp_path / "prunequant.json").write_text("{broken")
    assert "not valid JSON" in one_line_error(lambda: load_artifact(tmp_path))


@pytest.mark.parametrize("name", ["int8-dynamic", "torchao-int8-weight"])
def test_prunequant_only_layouts_are_never_loaded_as_plain_transformers_weights(name, built):
    """transformers must refuse these folders, not fill the Linear layers with random weights."""
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(OSError):
        AutoModelForSequenceClassification.from_pretrained(built[name])


def test_qat_model_trains_with_fake_quantization_and_converts(small_model_dir, built, reference):
    """Fake quantization is active (outputs move), gradients flow through it, and the artifact is INT8."""
    import torch
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    from prunequant.quantization.qat import convert_qat, prepare_qat

    model, tokenizer = load_classifier(str(small_model_dir)), load_tokenizer(str(small_model_dir))
    prepare_qat(model)
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, FakeQuantizedLinear)
    assert not isinstance(model.classifier, FakeQuantizedLinear)  # the head stays FP32
    fake = predict_logits(model, tokenizer, TEXTS, batch_size=4, max_seq_length=16)
    assert not np.allclose(fake, reference, atol=1e-6)  # the weights are seen rounded
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor(tiny_frame(6)["label"].to_numpy())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    convert_qat(model)
    assert type(model.bert.encoder.layer[0].attention.self.query) is torch.nn.Linear
    loaded, _, _ = load_artifact(built["int8-qat"])
    assert loaded.bert.encoder.layer[0].attention.self.query.weight().dtype == torch.qint8


def test_fp8_on_an_older_gpu_is_not_available(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (8, 0))  # an A100
    assert not_available_reason(SCHEMES["fp8"]) == "n/a: needs a GPU of compute capability 8.9 or newer"
    assert not_available_reason(SCHEMES["bnb-nf4"]) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (9, 0))  # an H100
    assert not_available_reason(SCHEMES["fp8"]) is None


def test_gpu_schemes_with_cpu_kernels_are_built_and_scored_without_cuda(monkeypatch):
    """On a machine without CUDA: float16, bitsandbytes and torchao INT8 are scored on the CPU and say so; the
    schemes without CPU kernels give their reason."""
    import prunequant.quantization as registry

    monkeypatch.setattr(registry, "cuda_available", lambda: False)
    for name in ("fp16", "bnb-int8", "bnb-nf4", "bnb-fp4", "torchao-int8-weight"):
        assert not_available_reason(SCHEMES[name]) is None and measured_on(SCHEMES[name]) == "cpu", name
    assert not_available_reason(SCHEMES["torchao-int4-weight"]) == (
        "n/a: needs CUDA (torchao 0.18 has no CPU kernel for INT4 weights)")
    monkeypatch.setattr(registry, "cuda_available", lambda: True)
    assert measured_on(SCHEMES["bnb-nf4"]) == "cuda" and measured_on(SCHEMES["int8-dynamic"]) == "cpu"


DYNAMIC = [name for name, scheme in SCHEMES.items() if scheme.dynamic_activations]


def test_the_dynamic_schemes_are_those_that_quantize_activations_at_run_time():
    assert DYNAMIC == ["int8-dynamic", "int8-qat", "onnx-int8-dynamic"]


@pytest.fixture(scope="module")
def scored_workspace(small_model_dir, tmp_path_factory):
    """Prepared data of 80 sentences and the small model with its FP32 predictions, as the quantize stage reads them."""
    import yaml

    from prunequant.data import make_splits
    from prunequant.splits import save_splits

    root = tmp_path_factory.mktemp("scored")
    splits, names = make_splits({"train": tiny_frame(40)}, None,
                                config("prepare", validation_size=0.25, test_size=0.25), 0)
    save_splits(splits, names, root / "data")
    (root / "params.yaml").write_text(yaml.safe_dump(params_dict(
        base={"seed": 0, "model": "model", "max_seq_length": 16}, evaluate={"batch_size": 8},
        quantize={"schemes": by_family(*DYNAMIC, "bnb-nf4")})))
    shutil.copytree(small_model_dir, root / "model")
    shutil.copytree(root / "data", root / "shuffled")  # the same sentences in another order
    for split in ("validation", "test"):
        frame = pd.read_parquet(root / "data" / f"{split}.parquet")
        frame.sample(frac=1, random_state=1).to_parquet(root / "shuffled" / f"{split}.parquet", index=False)
    for data in ("data", "shuffled"):
        result = invoke_stage(root, "evaluate", "--data", data, "--model", "model", "--variant", "baseline",
                              "--metrics", f"fp32-{data}.json", "--predictions", f"fp32-{data}")
        assert result.exit_code == 0, result.output
    return root


def _quantize(root, name, data="data"):
    """Run the quantize stage (in this process) on ``name``; return its metrics and its predictions folder."""
    out = f"{name}-{data}"
    result = invoke_stage(root, "quantize", "--data", data, "--model", "model", "--variant", "baseline",
                          "--scheme", name, "--reference", f"fp32-{data}", "--out", out, "--metrics", f"{out}.json",
                          "--predictions", f"{out}-predictions")
    assert result.exit_code == 0, result.output
    return json.loads((root / f"{out}.json").read_text()), root / f"{out}-predictions"


@pytest.mark.parametrize("name", DYNAMIC)
def test_a_dynamic_schemes_predictions_do_not_depend_on_the_order_of_the_sentences(scored_workspace, name):
    """Scored one sentence at a time: shuffling the evaluation sentences (so that others would share a batch)
    changes no prediction."""
    root = scored_workspace
    shuffled = root / "shuffled"
    metrics, predictions = _quantize(root, name)
    assert metrics["eval_batch"] == 1 and metrics["kernels"] == f"{SCHEMES[name].kernels}-cpu"
    again, shuffled_predictions = _quantize(root, name, "shuffled")
    for split in ("validation", "test"):
        first = pd.read_parquet(predictions / f"{split}.parquet").set_index("idx")
        second = pd.read_parquet(shuffled_predictions / f"{split}.parquet").set_index("idx").loc[first.index]
        assert not first.index.equals(pd.read_parquet(shuffled / f"{split}.parquet").set_index("idx").index)
        assert (first["prediction"] == second["prediction"]).all()
        np.testing.assert_allclose(first["score"], second["score"], rtol=1e-5)
        assert again[split]["accuracy"] == metrics[split]["accuracy"]


def test_a_gpu_scheme_with_cpu_kernels_is_scored_in_the_pipeline_and_says_where(scored_workspace):
    if cuda_available():
        pytest.skip("this machine has CUDA: bnb-nf4 is scored on the GPU")
    metrics, _ = _quantize(scored_workspace, "bnb-nf4")
    assert metrics["status"] == "ok" and metrics["device"] == "cuda"
    assert (metrics["measured_on"], metrics["kernels"], metrics["eval_batch"]) == ("cpu", "bitsandbytes-cpu", 8)
    assert metrics["size_mb"] > 0 and 0 <= metrics["test"]["accuracy"] <= 1 and "verdict" in metrics["test"]
    card = (scored_workspace / "bnb-nf4-data" / "README.md").read_text()
    assert "on CPU with bitsandbytes-cpu kernels" in card and "GPU kernels may differ" in card
    # the Hub reads its metadata (written by hand: ModelCardData would reflow `tags` and change every artifact)
    from huggingface_hub import ModelCard

    assert ModelCard(card).data.to_dict() == {"library_name": "transformers", "pipeline_tag": "text-classification",
                                              "tags": ["prunequant", "bnb-nf4"]}

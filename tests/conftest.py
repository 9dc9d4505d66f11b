"""Shared fixtures: a tiny random BERT classifier with its tokenizer, and a tiny polarity data set."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

# Never wait for a hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["PRUNEQUANT_WARM"] = "0"  # stages called in-process or cold; tests/test_warm.py tests warm starts, and the
# end-to-end tests (tests/test_pipeline.py sh) run dvc with them on, as a user does
# Two workers on two cores: one thread per process, as the tiny test models gain nothing from more and threads contend.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

POSITIVE = ["great", "good", "moving", "superb", "fun", "charming"]
NEGATIVE = ["awful", "bad", "dull", "boring", "weak", "tedious"]
FILLER = ["the", "movie", "film", "was", "plot", "acting", "is", "a", "really", "quite"]


def tiny_frame(rows_per_label: int = 40) -> pd.DataFrame:
    """A balanced, learnable data set: the sentiment word decides the label. The words' token counts differ, so a
    sentence's length gives its label away too: batches grouped by length (``group_by_length``) hold one label
    each, and a test that needs a student to learn from mixed batches trains with ``group_by_length=False``."""
    rows = []
    for i in range(rows_per_label):
        for label, words in ((1, POSITIVE), (0, NEGATIVE)):
            word = words[i % len(words)]
            rows.append({"text": f"the {FILLER[i % len(FILLER)]} was {word}", "label": label})
    return pd.DataFrame(rows)


REPO = Path(__file__).resolve().parents[1]
DVC_FILES = ("dvc.yaml", "strategies/dvc.yaml", "widths/dvc.yaml", "bench/dvc.yaml",
             "machine/dvc.yaml")  # every pipeline file
STAGE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PRUNEQUANT_DEBUG": "0"}


def run_stage_in(workspace: Path, name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run stages/<name>.py as DVC would, from ``workspace`` (its params.yaml unless --params is given)."""
    return subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), *args], cwd=workspace,
                          capture_output=True, text=True, env=STAGE_ENV, timeout=600, **kwargs)


@functools.cache
def script_module(path: str):
    """A script of this repository (``stages/<name>.py``, ``bench/<name>.py``: folders that are not packages) as a
    module, imported once per test session."""
    spec = importlib.util.spec_from_file_location(f"prunequant_script_{path.replace('/', '_')[:-3]}", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_command(name: str):
    """The click command of stages/<name>.py."""
    return script_module(f"stages/{name}.py").main


def invoke_stage(workspace: Path, name: str, *args: str):
    """Run a stage's command in this process, from ``workspace``, as click would from the command line: a
    ``click.testing.Result`` with ``exit_code``, ``stdout`` and ``stderr`` (no interpreter start, no imports: the
    fast way for cases that check params, data or files; :func:`run_stage_in` keeps the real process)."""
    from click.testing import CliRunner

    with contextlib.chdir(workspace):
        return CliRunner(env={"PRUNEQUANT_DEBUG": "0"}).invoke(stage_command(name), list(args), prog_name=name)


def make_workspace(root: Path, model_dir: Path, params: dict) -> Path:
    """A folder to run stages in: the model as ./tiny, 80 sentences as ./data.csv, params.yaml with ``params``'
    sections merged in."""
    import yaml

    shutil.copytree(model_dir, root / "tiny")
    tiny_frame(40).to_csv(root / "data.csv", index=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params_dict(**params)))
    return root


@pytest.fixture
def frame() -> pd.DataFrame:
    return tiny_frame()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved 2-layer random BertForSequenceClassification (safetensors + tokenizer)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, set_seed

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    set_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=2,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A 2-layer random BERT classifier large enough for quantization to show (hidden 64, vocab 512)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, set_seed

    folder = tmp_path_factory.mktemp("small-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    vocab += [f"word{i}" for i in range(512 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    set_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# Shared builds a test module declares (fixture name -> (build name, build)); those a selected test uses go into
# SHARED_BUILDS (build name -> build) once collection is done: see shared_build.
DECLARED_BUILDS: dict = {}
SHARED_BUILDS: dict = {}


def declare_shared_build(fixture: str, name: str, build) -> None:
    DECLARED_BUILDS[fixture] = (name, build)


def _build_once(shared: Path, name: str, build, *, wait: bool) -> bool:
    """Build ``shared/name`` unless done; False (at once) when another worker holds its lock and ``wait`` is off."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(shared / f"{name}.lock"))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        return False
    try:
        if not (shared / f"{name}.done").exists():
            folder = shared / name
            shutil.rmtree(folder, ignore_errors=True)  # a worker's earlier, failed attempt
            folder.mkdir()
            build(folder)
            (shared / f"{name}.done").touch()
    finally:
        lock.release()
    return True


def shared_build(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` once per test session, even when pytest-xdist runs tests in several worker processes:
    the first worker to ask builds it under a file lock, the others reuse it. A worker that finds it being built
    by another builds the other shared builds of ``SHARED_BUILDS`` meanwhile (two cores, two builds at once)
    instead of waiting idle. What it builds is read-only for the tests; a test that changes anything works on
    :func:`private_copy` of it."""
    SHARED_BUILDS.setdefault(name, build)
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: an ordinary session fixture
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this session
    if not _build_once(shared, name, build, wait=False):
        for other, other_build in SHARED_BUILDS.items():
            if other != name:
                try:
                    _build_once(shared, other, other_build, wait=False)
                except Exception:  # noqa: BLE001 - not this test's build: the tests that use it rebuild and report it
                    pass
        _build_once(shared, name, build, wait=True)
    return shared / name


def _link_or_copy(src: str, dst: str) -> None:
    # Model weights and DVC cache files (MBs each) are only ever replaced, never written in place: a hard link
    # makes the copy cheap. Everything else (params, locks, metrics) is copied.
    if os.path.getsize(src) >= 1_000_000:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def private_copy(repo: Path, dest: Path) -> Path:
    """A copy of a reproduced DVC repository that a test may change freely (git history and DVC cache included)."""
    shutil.copytree(repo, dest, copy_function=_link_or_copy, symlinks=True,
                    ignore=shutil.ignore_patterns("tmp"))  # .dvc/tmp: locks and DVC's state database
    return dest


@functools.cache
def _repo_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())


def params_dict(**sections) -> dict:
    """params.yaml, the one home of every value, with each of ``sections`` merged into its section."""
    import copy

    raw = copy.deepcopy(_repo_params())
    for section, values in sections.items():
        raw[section].update(values)
    return raw


def config(section: str, **overrides):
    """The validated config of one params.yaml section, ``overrides`` replacing some of its values."""
    import typing

    from prunequant.check import Params
    from prunequant.params import build_section

    cls = typing.get_type_hints(Params)[section]
    return build_section(cls, {**_repo_params()[section], **overrides}, section)


def settings_of(scheme: str):
    """Scheme ``scheme``'s settings as params.yaml sets them."""
    from prunequant.quantization import get_scheme, parse_settings

    return parse_settings(get_scheme(scheme), _repo_params()["quantize"]["settings"].get(scheme),
                          f"quantize.settings.{scheme}")


def all_params(**sections):
    """:func:`params_dict` validated whole (a :class:`prunequant.check.Params`)."""
    from prunequant.check import params_from_dict

    return params_from_dict(params_dict(**sections))


def write_params(path: Path, **sections) -> Path:
    """:func:`params_dict` as a params.yaml file at ``path``."""
    import yaml

    path.write_text(yaml.safe_dump(params_dict(**sections), sort_keys=False))
    return path


def by_family(*names: str) -> dict[str, list[str]]:
    """``quantize.schemes`` listing just ``names``, each under its family (every family present)."""
    from prunequant.params.quantize import FAMILIES, SCHEME_FAMILY

    return {family: [n for n in names if SCHEME_FAMILY[n] == family] for family in FAMILIES}


def pytest_configure(config):
    # xdist's scope scheduler would sort the work by scope size (the groups first); keep the order set below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def _heavy_first(items, used_builds: dict) -> None:
    """Longest work first, so that no long test starts last while the other worker idles: the tests on a shared DVC
    build (one of each build at the front, so the two workers start on different builds), then the slow tests, then
    the other groups, then the rest. Stable: within each class pytest-randomly's seed still decides the order."""
    def build_of(item):
        return next((used_builds[f] for f in getattr(item, "fixturenames", ()) if f in used_builds), None)

    def heaviness(item):
        if build_of(item) is not None:
            return 0
        if item.get_closest_marker("slow"):
            return 1
        return 2 if item.get_closest_marker("xdist_group") else 3

    items.sort(key=heaviness)
    firsts, seen = [], set()
    for item in items:
        build = build_of(item)
        if build is not None and build not in seen:
            seen.add(build)
            firsts.append(item)
    rest = [item for item in items if item not in firsts]
    items[:] = firsts + rest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Note which shared builds the selected tests use. With ``--dist loadgroup`` (make test), order the work
    heaviest first (:func:`_heavy_first`) and send the tests of one ``xdist_group`` to one worker, so a module's
    costly fixture is built once and no worker waits on another's shared build. The group goes into ``item._id``
    because pytest 9 reads node ids there, not from the ``item._nodeid`` that pytest-xdist 3.8 renames."""
    used = {fixture for item in items for fixture in getattr(item, "fixturenames", ())}
    SHARED_BUILDS.update(DECLARED_BUILDS[f] for f in used & DECLARED_BUILDS.keys())
    if not getattr(config.option, "loadgroup", False):
        return
    _heavy_first(items, {fixture: DECLARED_BUILDS[fixture][0] for fixture in used & DECLARED_BUILDS.keys()})
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                 for m in item.iter_markers("xdist_group")}
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)

"""Params presets: every profile is valid params once merged, turns into `dvc exp run -S` arguments, and
fails offline in one line at the first hub access."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunequant.check import params_from_dict
from prunequant.errors import PrunequantError
from prunequant.profiles import available, load_profile, merged, set_args

from .conftest import params_dict

REPO = Path(__file__).resolve().parents[1]
HUB = [name for name in available() if name.startswith("bert-")]  # real models and data: need the Hub


@pytest.mark.parametrize("name", HUB)
def test_every_hub_profile_is_valid_params(name):
    params = params_from_dict(merged(params_dict(), load_profile(name)))
    assert params.base.data == "glue/sst2"
    assert params.base.model in ("bert-base-uncased", "bert-large-uncased")
    full = {"bert-base-uncased": 12, "bert-large-uncased": 24}[params.base.model]
    assert params.prune.keep_layers == (full * 2 // 3,)  # 12 -> 8, 24 -> 16


def test_the_quick_profile_is_valid_params_on_a_subset_of_the_offline_default():
    params = params_from_dict(merged(params_dict(), load_profile("quick")))
    assert (params.base.model, params.base.data) == ("minilm-l6", "rotten_tomatoes")  # runs offline
    assert params.prepare.max_train_samples <= 2048 and params.prepare.max_eval_samples <= 256
    assert params.quantize.names and "int8-qat" not in params.quantize.names  # a few schemes, no extra training


def test_set_args():
    args = set_args({"base": {"model": "bert-base-uncased"}, "prune": {"keep_layers": [8]},
                     "report": {"accuracy_range": [0.9, 0.94]}})
    assert args == ["-S", "base.model=bert-base-uncased", "-S", "prune.keep_layers=[8]",
                    "-S", "report.accuracy_range=[0.9, 0.94]"]


@pytest.mark.parametrize("name", available())
def test_the_printed_arguments_run_the_profile_as_valid_params(name, tmp_path):
    """`make exp` and `make quick` run `eval dvc exp run $(python -m prunequant.profiles NAME)`: split by the shell
    and applied by DVC, the printed arguments turn params.yaml into valid params, those merged with the profile (DVC
    writes 2.0e-5 as 2e-05, which PyYAML reads as a string: compared as the stages read them)."""
    from click.testing import CliRunner
    from dvc.utils.hydra import apply_overrides

    from prunequant.profiles import main

    result = CliRunner().invoke(main, [name])
    assert result.exit_code == 0, result.output
    words = shlex.split(result.stdout)
    assert words[::2] == ["-S"] * (len(words) // 2)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict(), sort_keys=False))
    apply_overrides(str(path), words[1::2])
    applied = params_from_dict(yaml.safe_load(path.read_text()))
    assert applied == params_from_dict(merged(params_dict(), load_profile(name)))


def test_unknown_profile_is_a_one_line_error():
    with pytest.raises(PrunequantError, match="PROFILE='bert-bas' is not a profile .did you mean 'bert-base-sst2'"):
        load_profile("bert-bas")
    result = subprocess.run([sys.executable, "-m", "prunequant.profiles", "bert-bas"], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("error: PROFILE='bert-bas' is not a profile") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("name", HUB)
def test_profile_stops_offline_at_the_first_hub_access_in_one_line(name, tmp_path):
    params = merged(params_dict(), load_profile(name))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "prepare.py"), "--out", "data/prepared", "--metrics", "m.json"],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "glue/sst2" in line
    assert not (tmp_path / "data").exists()

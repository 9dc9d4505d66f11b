import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunequant.check import Params, load_params, params_from_dict
from prunequant.errors import PrunequantError
from prunequant.quantization import scheme_settings

from .conftest import by_family, config, params_dict

REPO = Path(__file__).resolve().parents[1]


def _check(path, cwd):
    return subprocess.run([sys.executable, "-m", "prunequant.check", str(path)], cwd=cwd, capture_output=True,
                          text=True)


def test_the_repositorys_params_are_valid_as_a_whole():
    """What `make check` (run by `make repro`) checks: the repository's params.yaml is valid as a whole."""
    from click.testing import CliRunner

    from prunequant.check import main

    result = CliRunner().invoke(main, [str(REPO / "params.yaml")])
    assert result.exit_code == 0 and "every section valid" in result.stdout, result.output


def _leaves(section: dict, prefix: str = ""):
    for key, value in section.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        elif not isinstance(value, dict):
            yield f"{prefix}{key}", value


def _comments(text: str) -> list[str]:
    return sorted(line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line)


def test_dvc_exp_run_set_param_never_corrupts_params_yaml(tmp_path):
    """`dvc exp run -S key=value` (and make exp, make quick, make repro NPROC=n) rewrites params.yaml through
    ruamel.yaml. A comment on a list key's line makes a later `-S 'key=[]'` write invalid YAML ("mapping values are
    not allowed here"): from the file as DVC first rewrites it, every single override must give valid YAML with
    that one value changed and every comment kept."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(path), ["base.seed=" + str(yaml.safe_load(path.read_text())["base"]["seed"])])
    rewritten = path.read_text()
    base = yaml.safe_load(rewritten)
    broken = []
    for key, value in _leaves(base):
        for new in (["[]", f"[{value[0] if value else 1}]"] if isinstance(value, list) else
                    ["5"] if value is None else ["null"]):
            path.write_text(rewritten)
            apply_overrides(str(path), [f"{key}={new}"])
            try:
                got = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                broken.append(f"-S '{key}={new}': invalid YAML ({str(error).splitlines()[0]})")
                continue
            expected = yaml.safe_load(rewritten)
            *parents, leaf = key.split(".")
            node = expected
            for part in parents:
                node = node[part]
            node[leaf] = yaml.safe_load(new)
            if got != expected or _comments(path.read_text()) != _comments(rewritten):
                broken.append(f"-S '{key}={new}': changed other values or dropped a comment")
    assert not broken, ("params.yaml: move a list's comment above its key (not on its line, not after the list): "
                        + "; ".join(broken))


def test_check_command_reports_a_bad_section_in_one_line_and_exit_1(tmp_path):
    (tmp_path / "params.yaml").write_text("fintune: {}\n")
    result = _check("params.yaml", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: params.yaml: unknown key 'fintune' (did you mean 'finetune'?); "
                                     "valid keys: " + ", ".join(Params.__dataclass_fields__))


@pytest.mark.parametrize(("text", "expected"), [
    ("quantize:\n  settings:\n    onnx-int4-weight: {block_size: 24}\n",
     "params.yaml: quantize.settings.onnx-int4-weight.block_size must be a power of two >= 16, got 24"),
    ("bench:\n  shapes: [bert-huge]\n", "params.yaml: bench.shapes[0] names unknown architecture 'bert-huge'"),
    ("report:\n  radar_flor: 0.2\n", "params.yaml: unknown key 'report.radar_flor' (did you mean 'radar_floor'?)"),
])
def test_the_whole_file_check_reports_any_section_in_one_line(tmp_path, text, expected):
    """What `make check` runs (in this process: load_params is the command's whole work), on params.yaml with
    ``text``'s values set."""
    from prunequant.profiles import merged

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged(params_dict(), yaml.safe_load(text))))
    with pytest.raises(PrunequantError) as info:
        load_params(tmp_path / "params.yaml")
    assert info.value.format_message().startswith(expected) and "\n" not in info.value.format_message()


def test_a_stage_reads_only_its_sections(tmp_path):
    """A stage validates what it reads: a bad bench section does not stop `prepare` (make check catches it)."""
    from prunequant.params import load
    from prunequant.params.base import BaseConfig
    from prunequant.params.prepare import PrepareConfig

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict(base={"seed": 3}, bench={"runs": -1})))
    params = load(path, base=BaseConfig, prepare=PrepareConfig)
    assert params.base.seed == 3 and params.prepare == config("prepare")
    with pytest.raises(PrunequantError, match="bench.runs must be >= 1"):
        load_params(path)


def test_a_config_built_in_code_is_checked_like_params_yaml():
    """The checks run when a config is constructed, not only when params.yaml is read: a copy changed in code
    (``dataclasses.replace``, as ``BenchConfig.with_points`` does) is refused by the same bound and cross-field
    checks, so a config object never holds a value params.yaml could not."""
    import dataclasses

    finetune = params_from_dict(params_dict()).finetune
    with pytest.raises(PrunequantError, match="batch_size must be >= 1, got 0"):
        dataclasses.replace(finetune, batch_size=0)
    with pytest.raises(PrunequantError, match="batch_size .*must divide evenly over"):
        dataclasses.replace(finetune, batch_size=3, processes=2)


def test_yaml_scientific_notation_string_is_a_float():
    # PyYAML reads "5e-5" (no dot) as a string; users write it that way.
    params = params_from_dict(params_dict(finetune={"learning_rate": "5e-5"}))
    assert params.finetune.learning_rate == pytest.approx(5e-5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"fintune": {}}, "unknown key 'fintune' (did you mean 'finetune'?)"),
        ({"finetune": {"learning_rte": 1e-4}}, "unknown key 'finetune.learning_rte' (did you mean 'learning_rate'?)"),
        ({"base": {"sed": 1}}, "(did you mean 'seed'?)"),
        ({"finetune": {"batch_size": "32"}}, "finetune.batch_size must be of type int"),
        ({"finetune": {"batch_size": 0}}, "finetune.batch_size must be >= 1"),
        ({"finetune": {"learning_rate": -1}}, "finetune.learning_rate must be in (0, 1)"),
        ({"finetune": {"epochs": True}}, "finetune.epochs must be of type float"),
        ({"prepare": {"test_size": 0.7}}, "prepare.test_size must be in (0, 0.5) (a fraction of train), got 0.7"),
        ({"prepare": {"max_train_samples": 1}}, "prepare.max_train_samples must be >= 2 (null: all), got 1"),
        ({"base": {"max_seq_length": 0}}, "base.max_seq_length must be in [8, 8192] (tokens), got 0"),
        ({"base": {"seed": None}}, "base.seed must be of type int, got None"),
        ({"base": None}, "params.yaml: base.seed is missing; add it"),
        ({"finetune": {"epochs": "drop"}}, "params.yaml: finetune.epochs is missing; add it"),
        ({"evaluate": {"confidence_level": 95}}, "evaluate.confidence_level must be in"),
        ({"base": [1, 2]}, "base must be a mapping"),
        ({"prune": {"strategy": "sensitivty"}}, "prune.strategy is 'sensitivty' (did you mean 'sensitivity'?)"),
        ({"sensitivity": {"method": "ablate"}}, "(did you mean 'ablation'?)"),
        ({"prune": {"keep_layers": 4}}, "prune.keep_layers must be a list, got 4"),
        ({"prune": {"keep_layers": [4, "4"]}}, "lists a variant twice: ['4', '4']"),
        ({"prune": {"keep_layers": [0]}}, "prune.keep_layers has 0: keep at least 1 layer"),
        ({"prune": {"keep_layers": [3.5]}}, "prune.keep_layers[0] must be of type int or str, got 3.5"),
        ({"prune": {"keep_layers": ["3-half"]}}, "prune.keep_layers has '3-half'; write <layers>, <layers>-w<pct>"),
        ({"prune": {"keep_layers": [True]}}, "prune.keep_layers[0] must be of type int or str, got True"),
        ({"prune": {"keep_layers": ["3-h50-f50"]}}, "has '3-h50-f50'; write it '3-w50' (each variant has one name)"),
        ({"prune": {"keep_layers": ["3-w100"]}}, "1 to 99 percent of the heads or FFN (100: leave the suffix out)"),
        ({"prune": {"keep_layers": ["3-f0"]}}, "1 to 99 percent"),
        ({"prune": {"width_score": "taylor"}}, "prune.width_score is 'taylor'; choose one of gradient, activation"),
        ({"prune": {"strategy": "explicit"}}, "must list the layers to remove"),
        ({"prune": {"drop_layers": [1]}}, "only used with prune.strategy: explicit"),
        ({"refinetune": {"alpha": 1.5}}, "refinetune.alpha must be in [0, 1]"),
        ({"refinetune": {"batch_size": 0}}, "refinetune.batch_size must be >= 1"),
        ({"compare": {"strategies": ["bottm"]}}, "compare.strategies[0] is 'bottm' (did you mean 'bottom'?)"),
        ({"compare": {"strategies": ["explicit"]}},
         "choose one of sensitivity, block-influence, angular, top, bottom, alternate"),
        ({"compare": {"strategies": ["top", "top"]}}, "lists a strategy twice"),
        ({"compare": {"strategies": []}}, "compare.strategies must list at least one strategy"),
        ({"compare": {"keep_layers": [3]}}, "compare.keep_layers must be of type int"),
        ({"compare": {"keep_layers": 0}}, "compare.keep_layers must be >= 1"),
    ],
)
def test_bad_params_give_one_line_errors(raw, expected):
    """Each case changes params.yaml's values: a section's keys are set ("drop" removes one), other values replace
    it."""
    params = params_dict()
    for section, value in raw.items():
        if isinstance(value, dict) and isinstance(params.get(section), dict):
            params[section].update(value)
            params[section] = {k: v for k, v in params[section].items() if v != "drop"}
        else:
            params[section] = value
    with pytest.raises(PrunequantError) as info:
        params_from_dict(params)
    message = info.value.format_message()
    assert expected in message
    assert "\n" not in message


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(PrunequantError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("base: [unclosed\n")
    with pytest.raises(PrunequantError, match="not valid YAML at line"):
        load_params(broken)


@pytest.mark.parametrize(
    ("quantize", "expected"),
    [
        ({"schemes": {"torch": ["int8-dynamc"]}}, "quantize.schemes.torch[0] has unknown scheme 'int8-dynamc' "
                                                  "(did you mean 'int8-dynamic'?)"),
        ({"schemes": {"torch": ["bf16", "bf16"]}}, "quantize.schemes.torch lists 'bf16' twice"),
        ({"schemes": {"torch": ["fp32"]}, "settings": {"fp32": {}}}, "quantize.schemes.torch[0] is fp32: the models"),
        ({"schemes": {"onnx": ["bf16"]}}, "quantize.schemes.onnx[0] is 'bf16', a scheme of the 'torch' family; "
                                          "move it to quantize.schemes.torch"),
        ({"schemes": {"cpu": []}}, "quantize.schemes has unknown family 'cpu' (did you mean 'gpu'?); the families"),
        ({"schemes": {"gpu": None}}, "quantize.schemes.gpu must be a list of scheme names"),
        ("no-gpu", "quantize.schemes has no 'gpu' list; add `gpu: []`"),
        ({"schemes": {"gpu": ["fp8"]}, "settings": {"fp8": "drop"}},
         "quantize.settings has no entry for 'fp8'; add `fp8: {}`"),
        ({"settings": {"onnx-int4-weight": {"block_sise": 32}}},
         "unknown key 'quantize.settings.onnx-int4-weight.block_sise' (did you mean 'block_size'?)"),
        ({"settings": {"onnx-int4-weight": {"block_size": 24}}},
         "quantize.settings.onnx-int4-weight.block_size must be a power of two >= 16, got 24"),
        ({"settings": {"onnx-int8-static": {"calibration_method": "entropy"}}},
         "quantize.settings.onnx-int8-static.calibration_method is 'entropy'; choose one of minmax, percentiles"),
        ({"settings": {"onnx-int8-dynamic": {"target": "avx3"}}},
         "target is 'avx3' (did you mean 'avx2'?); choose one of"),
        ({"settings": {"int8-dynamic": {"quantize_embeddings": "yes"}}},
         "quantize.settings.int8-dynamic.quantize_embeddings must be of type bool"),
        ({"settings": {"bf16": [1]}}, "quantize.settings.bf16 must be a mapping"),
        ({"settings": {"bf16": {"x": 1}}}, "unknown key 'quantize.settings.bf16.x'"),
        ({"settings": {"bf17": {}}}, "quantize.settings has unknown scheme 'bf17' (did you mean 'bf16'?)"),
    ],
)
def test_bad_quantize_params_give_one_line_errors(quantize, expected):
    """Each case lists its schemes (no others) and changes params.yaml's settings ("drop" removes a scheme's entry)."""
    empty = {"torch": [], "qat": [], "onnx": [], "openvino": [], "gpu": []}
    settings = params_dict()["quantize"]["settings"]
    if quantize == "no-gpu":
        quantize = {"schemes": {"torch": [], "qat": [], "onnx": [], "openvino": []}, "settings": settings}
    else:
        for name, value in quantize.get("settings", {}).items():
            if value == "drop":
                del settings[name]
            elif isinstance(value, dict) and name in settings:
                settings[name] = {**settings[name], **value}
            else:
                settings[name] = value
        quantize = {"schemes": {**empty, **quantize.get("schemes", {})}, "settings": settings}
    with pytest.raises(PrunequantError) as info:
        params_from_dict(params_dict(quantize=quantize))
    message = info.value.format_message()
    assert expected in message, message
    assert "\n" not in message


def test_quantize_settings_are_typed_per_scheme():
    raw = params_dict(quantize={"schemes": by_family("onnx-int8-static")})
    raw["quantize"]["settings"]["onnx-int8-static"]["calibration_samples"] = 64
    params = params_from_dict(raw)
    settings = scheme_settings(params.quantize, "onnx-int8-static")
    assert settings.calibration_samples == 64
    assert settings.calibration_method == raw["quantize"]["settings"]["onnx-int8-static"]["calibration_method"]
    assert params.quantize.names == ("onnx-int8-static",)


def test_params_yaml_is_the_one_home_of_every_value():
    """Every field of every section's class, and of every scheme's settings class, is a key of params.yaml, and none
    carries a default of its own: a second home for a value would drift from the first (as three once did)."""
    import dataclasses
    import typing

    from prunequant.quantization.every import every_scheme

    raw = params_dict()
    classes = {section: (cls, raw[section]) for section, cls in typing.get_type_hints(Params).items()}
    classes |= {f"quantize.settings.{name}": (scheme.settings, raw["quantize"]["settings"][name])
                for name, scheme in every_scheme().items() if name != "fp32"}
    for where, (cls, values) in classes.items():
        for field in dataclasses.fields(cls):
            assert field.name in values, f"{where}.{field.name} is not in params.yaml"
            assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, (
                f"{where}.{field.name} has a default in {cls.__qualname__}; params.yaml holds its value")

"""The pipeline files (``dvc.yaml``, ``strategies/``, ``widths/``, ``bench/`` and ``machine/dvc.yaml``), written
from one description per stage, or per family of stages, in :data:`FILES`.

What a description leaves out is computed: a stage's code deps are its script's import closure inside
``src/prunequant`` (:mod:`prunequant.codegraph`), plus its scheme family's module for a quantize stage. So no
deps list is kept by hand, and a code change reruns exactly the stages that run that code. The quantize stages
are one description instantiated per family of ``quantize.schemes`` (:data:`FAMILIES`), for the baseline and for
the pruned models.

``python -m prunequant.dvcfiles`` (``make dvc-files``) writes the five files; ``--check`` exits 1 if a committed
one differs from what it would write (the test suite runs it). Edit the description here, never the output.
"""

from __future__ import annotations

import re

import click

from prunequant.codegraph import REPO, closure, module_path
from prunequant.params.quantize import FAMILIES

WIDTH = 120
MACHINE_JSON = "metrics/machine.json"  # which accelerator: the training stages' precision, the GPU schemes' builds
HEADER = ("Written by `python -m prunequant.dvcfiles` (`make dvc-files`) from its description: edit that, not this "
          "file. Every stage's code deps are its script's imports inside src/prunequant, computed, so a code change "
          "reruns exactly the stages that run it.")


def code_deps(cmd: str, family: str | None = None) -> list[str]:
    """The script a command runs, then every library file it imports (and a scheme family's module's)."""
    script = re.search(r"stages/\w+\.py", cmd).group(0)
    files = closure(REPO / script)
    if family:
        module = module_path(f"prunequant.quantization.{FAMILIES[family]}")
        files |= {module} | closure(module)
    return [script, *sorted(p.relative_to(REPO).as_posix() for p in files)]


def stage(cmd: str, deps=(), *, comment: str = "", family: str | None = None, **fields) -> dict:
    """One stage: its command, the data it reads (code deps are added), and DVC's other fields as given."""
    cmd = " ".join(cmd.split())
    return {"comment": comment, "cmd": cmd, "deps": [*code_deps(cmd, family), *deps], **fields}


def nocache(*paths: str) -> list[dict]:
    return [{path: {"cache": False}} for path in paths]


QUANTIZE = """python stages/quantize.py --data data/prepared --model models/{model} --variant {model}
    --scheme ${{item.scheme}}
    --reference predictions/{model}-fp32 {baseline}--out models/quantized/{key} --metrics metrics/evaluate/{key}.json
    --predictions predictions/{key}"""


def quantize_stages() -> dict[str, dict]:
    """Two stages per family of schemes: the baseline's artifacts and the pruned models' (which are also compared
    with the baseline). Each reads only its own scheme's settings, and runs only its family's module."""
    stages = {}
    for family in FAMILIES:
        for suffix, model, models, baseline in (
                ("", "${item.model}", ["baseline"], ""),
                ("-pruned", "pruned-${item.model}", "${prune.keep_layers}", "--baseline predictions/baseline-fp32 ")):
            key = f"{'pruned-' if suffix else ''}${{key}}"
            cmd = QUANTIZE.format(model=model, key=key, baseline=baseline)
            stages[f"quantize-{family}{suffix}"] = stage(
                cmd, family=family,
                deps=["data/prepared", MACHINE_JSON, f"models/{model}", f"predictions/{model}-fp32",
                      *(["predictions/baseline-fp32"] if baseline else [])],
                matrix={"model": models, "scheme": f"${{quantize.schemes.{family}}}"},
                params=["base", "evaluate", "quantize.settings.${item.scheme}"],
                outs=[f"models/quantized/{key}", f"predictions/{key}"],
                metrics=nocache(f"metrics/evaluate/{key}.json"))
    first = next(iter(stages.values()))
    first["comment"] = (
        "Two quantize stages per family of schemes (quantize.schemes.<family>): each builds one artifact of the "
        "baseline or a pruned model, reloads it from its folder, scores it with a paired test against its FP32 "
        "source and writes its model card. A family's stages run its module alone, so editing the ONNX family "
        "reruns only the ONNX stages.")
    return stages


def foreach(over: str, body: dict, comment: str = "") -> dict:
    return {"comment": comment, "foreach": over, "do": {k: v for k, v in body.items() if k != "comment"}}


EVALUATE = """python stages/evaluate.py --data data/prepared --model models/{model} --variant {model} {reference}
    --metrics metrics/evaluate/{model}-fp32.json --predictions predictions/{model}-fp32"""


def root() -> dict:
    """dvc.yaml: the default pipeline."""
    stages = {
        "prepare": stage(
            "python stages/prepare.py --out data/prepared --metrics metrics/prepare.json",
            params=["base.seed", "base.data", "prepare"], outs=["data/prepared"],
            metrics=nocache("metrics/prepare.json")),
        "transfer": stage(
            """python stages/transfer.py --data data/prepared --out data/transfer.parquet
            --metrics metrics/transfer.json""",
            ["data/prepared"], params=["base.seed", "refinetune.transfer", "refinetune.transfer_samples"],
            outs=["data/transfer.parquet"], metrics=nocache("metrics/transfer.json")),
        "finetune": stage(
            "python stages/finetune.py --data data/prepared --out models/baseline --live metrics/finetune",
            ["data/prepared", MACHINE_JSON], params=["base", "finetune"], outs=["models/baseline"],
            comment="metrics/machine.json: the training device and its bf16 (precision: auto), as for refinetune",
            metrics=nocache("metrics/finetune/metrics.json"),
            plots=[{"metrics/finetune/plots/metrics": {"cache": False, "x": "step"}}]),
        "evaluate": stage(
            EVALUATE.format(model="baseline", reference=""), ["data/prepared", "models/baseline"],
            params=["base.model", "base.max_seq_length", "evaluate"], outs=["predictions/baseline-fp32"],
            metrics=nocache("metrics/evaluate/baseline-fp32.json")),
        "sensitivity": stage(
            """python stages/sensitivity.py --data data/prepared --model models/baseline --csv metrics/sensitivity.csv
            --blocks metrics/sensitivity-blocks.csv --metrics metrics/sensitivity.json --png reports/sensitivity.png
            --heads metrics/sensitivity-heads.csv --ffn metrics/sensitivity-ffn.csv --scores data/importance.safetensors
            --heads-png reports/heads.png""",
            ["data/prepared", "models/baseline"],
            comment="Layers, blocks of layers, attention heads and FFN neurons of the baseline, scored on validation; "
                    "data/importance.safetensors holds every head and neuron score (the prune stage's width cuts).",
            params=["base.model", "base.max_seq_length", "evaluate", "sensitivity"],
            plots=[{"metrics/sensitivity.csv": {"cache": False, "template": "bar_horizontal_sorted",
                                                "x": "accuracy_drop", "y": "layer"}}],
            outs=["data/importance.safetensors", *nocache(
                "reports/sensitivity.png", "reports/heads.png", "metrics/sensitivity-blocks.csv",
                "metrics/sensitivity-heads.csv", "metrics/sensitivity-ffn.csv")],
            metrics=nocache("metrics/sensitivity.json")),
        "prune": foreach("${prune.keep_layers}", stage(
            """python stages/prune.py --model models/baseline --sensitivity metrics/sensitivity.csv
            --blocks metrics/sensitivity-blocks.csv --scores data/importance.safetensors --keep-layers ${item}
            --out models/pruned-${item}-raw""",
            ["models/baseline", "metrics/sensitivity.csv", "metrics/sensitivity-blocks.csv",
             "data/importance.safetensors"],
            params=["prune.strategy", "prune.drop_layers", "prune.pooling", "prune.width_score"],
            outs=["models/pruned-${item}-raw"])),
        "refinetune": foreach("${prune.keep_layers}", stage(
            """python stages/refinetune.py --data data/prepared --model models/pruned-${item}-raw
            --teacher models/baseline --transfer data/transfer.parquet --out models/pruned-${item}
            --live metrics/refinetune/pruned-${item}""",
            ["data/prepared", "data/transfer.parquet", MACHINE_JSON, "models/pruned-${item}-raw", "models/baseline"],
            params=["base", "refinetune"], outs=["models/pruned-${item}"],
            metrics=nocache("metrics/refinetune/pruned-${item}/metrics.json"),
            plots=[{"metrics/refinetune/pruned-${item}/plots/metrics": {"cache": False, "x": "step"}}])),
        "evaluate-pruned": foreach("${prune.keep_layers}", stage(
            EVALUATE.format(model="pruned-${item}", reference="--reference predictions/baseline-fp32"),
            ["data/prepared", "models/pruned-${item}", "predictions/baseline-fp32"],
            params=["base.model", "base.max_seq_length", "evaluate"], outs=["predictions/pruned-${item}-fp32"],
            metrics=nocache("metrics/evaluate/pruned-${item}-fp32.json"))),
        **quantize_stages(),
        "results": stage(
            """python stages/results.py --evaluations metrics/evaluate --results metrics/results.csv
            --markdown reports/results.md""", ["metrics/evaluate"],
            comment="results.csv: one row per (variant, precision, device, split) of every evaluation; which "
                    "evaluations it reads is derived from prune.keep_layers and quantize.schemes.",
            params=["evaluate.confidence_level", "prune.keep_layers", "quantize.schemes"],
            outs=nocache("metrics/results.csv", "reports/results.md")),
        "report": stage(
            """python stages/report.py --results metrics/results.csv --bench metrics/bench --out reports
            --recommendations metrics/report.json --sensitivity metrics/sensitivity.csv
            --blocks metrics/sensitivity-blocks.csv --sensitivity-metrics metrics/sensitivity.json
            --ffn metrics/sensitivity-ffn.csv --study docs/study-cpu.csv""",
            ["metrics/results.csv", "metrics/bench", "metrics/sensitivity.csv", "metrics/sensitivity-blocks.csv",
             "metrics/sensitivity.json", "metrics/sensitivity-ffn.csv", "docs/study-cpu.csv"],
            comment="The report: tables with the measured costs (metrics/bench/*.csv, written by `make bench-cpu` / "
                    "`make bench-gpu`, plain git files), figures and a recommendation per deployment target.",
            params=["evaluate.confidence_level", "prune", "report"],
            outs=nocache("reports/report.md", "reports/figures", "reports/plots"),
            metrics=nocache("metrics/report.json")),
    }
    latency = {"template": "latency", "x": "batch_size"}
    plots = [
        {"Latency vs batch size (CPU)": {**latency, "y": {"reports/plots/latency_vs_batch_cpu.csv": "latency_ms_p50"}}},
        {"Latency vs sequence length (CPU)": {"template": "latency", "x": "seq_len",
                                              "y": {"reports/plots/latency_vs_seq_cpu.csv": "latency_ms_p50"}}},
        {"Accuracy vs CPU latency (Pareto)": {"template": "pareto", "x": "cpu_ms",
                                              "y": {"reports/plots/pareto_cpu_latency.csv": "accuracy"}}},
        {"Accuracy vs size (Pareto)": {"template": "pareto", "x": "size_mb",
                                       "y": {"reports/plots/pareto_size.csv": "accuracy"}}},
        {"Fine-tuning loss": {"template": "linear", "x": "step",
                              "y": {"metrics/finetune/plots/metrics/loss.tsv": "loss",
                                    "metrics/finetune/plots/metrics/eval/loss.tsv": "loss"}}},
        {"Validation accuracy": {"template": "linear", "x": "step",
                                 "y": {"metrics/finetune/plots/metrics/eval/accuracy.tsv": "accuracy"}}},
    ]
    artifacts = {"baseline": {"path": "models/baseline", "type": "model",
                              "desc": "The fine-tuned baseline classifier (save_pretrained folder, safetensors)."}}
    return {"stages": stages, "plots": plots, "artifacts": artifacts}


STRATEGY = "pruned-${compare.keep_layers}"


def strategies() -> dict:
    """strategies/dvc.yaml: `make compare-strategies`."""
    each = {"strategy": "${compare.strategies}", "training": ["distill", "no-distill"]}
    stages = {
        "prune": foreach("${compare.strategies}", stage(
            f"""python stages/prune.py --model models/baseline --sensitivity metrics/sensitivity.csv
            --blocks metrics/sensitivity-blocks.csv --scores data/importance.safetensors
            --keep-layers ${{compare.keep_layers}} --strategy ${{item}}
            --out models/strategies/{STRATEGY}-${{item}}-raw""",
            ["models/baseline", "metrics/sensitivity.csv", "metrics/sensitivity-blocks.csv",
             "data/importance.safetensors"],
            wdir="..", params=["compare.keep_layers", "prune.pooling", "prune.width_score"],
            outs=[f"models/strategies/{STRATEGY}-${{item}}-raw"])),
        "refinetune": stage(
            f"""python stages/refinetune.py --data data/prepared
            --model models/strategies/{STRATEGY}-${{item.strategy}}-raw
            --teacher models/baseline --transfer data/transfer.parquet --${{item.training}}
            --out models/strategies/{STRATEGY}-${{key}} --live metrics/strategies/refinetune/{STRATEGY}-${{key}}""",
            ["data/prepared", "data/transfer.parquet", MACHINE_JSON,
             f"models/strategies/{STRATEGY}-${{item.strategy}}-raw", "models/baseline"],
            matrix=each, wdir="..", params=["base", "refinetune"], outs=[f"models/strategies/{STRATEGY}-${{key}}"],
            metrics=nocache(f"metrics/strategies/refinetune/{STRATEGY}-${{key}}/metrics.json")),
        "evaluate": stage(
            f"""python stages/evaluate.py --data data/prepared --model models/strategies/{STRATEGY}-${{key}}
            --variant {STRATEGY}-${{key}} --reference predictions/baseline-fp32
            --metrics metrics/strategies/evaluate/{STRATEGY}-${{key}}-fp32.json
            --predictions predictions/strategies/{STRATEGY}-${{key}}-fp32""",
            ["data/prepared", f"models/strategies/{STRATEGY}-${{key}}", "predictions/baseline-fp32"],
            matrix=each, wdir="..", params=["base.model", "base.max_seq_length", "evaluate"],
            outs=[f"predictions/strategies/{STRATEGY}-${{key}}-fp32"],
            metrics=nocache(f"metrics/strategies/evaluate/{STRATEGY}-${{key}}-fp32.json")),
        "results": stage(
            """python stages/results.py --pipeline strategies --evaluations metrics/evaluate/baseline-fp32.json
            --evaluations metrics/strategies/evaluate --results metrics/strategies.csv
            --markdown reports/strategies.md --title "Pruning strategies\"""",
            ["metrics/evaluate/baseline-fp32.json", "metrics/strategies/evaluate"],
            comment="which evaluations it reads is derived from compare.keep_layers and compare.strategies",
            wdir="..", params=["evaluate.confidence_level", "compare.keep_layers", "compare.strategies"],
            outs=nocache("metrics/strategies.csv", "reports/strategies.md")),
    }
    return {"vars": ["../params.yaml"], "stages": stages}


WIDTHS = "models/widths/pruned-${item}"
WIDTH_ART = "pruned-${item}-${compare.scheme}"


def widths() -> dict:
    """widths/dvc.yaml: `make compare-widths`."""
    cuts = "${compare.cuts}"
    stages = {
        "prune": foreach(cuts, stage(
            f"""python stages/prune.py --model models/baseline --sensitivity metrics/sensitivity.csv
            --blocks metrics/sensitivity-blocks.csv --scores data/importance.safetensors --keep-layers ${{item}}
            --out {WIDTHS}-raw""",
            ["models/baseline", "metrics/sensitivity.csv", "metrics/sensitivity-blocks.csv",
             "data/importance.safetensors"],
            wdir="..", params=["prune.strategy", "prune.drop_layers", "prune.pooling", "prune.width_score"],
            outs=[f"{WIDTHS}-raw"])),
        "refinetune": foreach(cuts, stage(
            f"""python stages/refinetune.py --data data/prepared --model {WIDTHS}-raw --teacher models/baseline
            --transfer data/transfer.parquet --out {WIDTHS} --live metrics/widths/refinetune/pruned-${{item}}""",
            ["data/prepared", "data/transfer.parquet", MACHINE_JSON, f"{WIDTHS}-raw", "models/baseline"],
            wdir="..", params=["base", "refinetune"], outs=[WIDTHS],
            metrics=nocache("metrics/widths/refinetune/pruned-${item}/metrics.json"))),
        "evaluate": foreach(cuts, stage(
            f"""python stages/evaluate.py --data data/prepared --model {WIDTHS} --variant pruned-${{item}}
            --reference predictions/baseline-fp32 --metrics metrics/widths/evaluate/pruned-${{item}}-fp32.json
            --predictions predictions/widths/pruned-${{item}}-fp32""",
            ["data/prepared", WIDTHS, "predictions/baseline-fp32"],
            wdir="..", params=["base.model", "base.max_seq_length", "evaluate"],
            outs=["predictions/widths/pruned-${item}-fp32"],
            metrics=nocache("metrics/widths/evaluate/pruned-${item}-fp32.json"))),
        "quantize": foreach(cuts, stage(
            f"""python stages/quantize.py --data data/prepared --model {WIDTHS} --variant pruned-${{item}}
            --scheme ${{compare.scheme}} --reference predictions/widths/pruned-${{item}}-fp32
            --baseline predictions/baseline-fp32 --out models/widths/quantized/{WIDTH_ART}
            --metrics metrics/widths/evaluate/{WIDTH_ART}.json --predictions predictions/widths/{WIDTH_ART}""",
            ["data/prepared", MACHINE_JSON, WIDTHS, "predictions/widths/pruned-${item}-fp32",
             "predictions/baseline-fp32"],
            family="onnx", wdir="..",
            params=["base", "evaluate", "compare.scheme", "quantize.settings.${compare.scheme}"],
            outs=[f"models/widths/quantized/{WIDTH_ART}", f"predictions/widths/{WIDTH_ART}"],
            metrics=nocache(f"metrics/widths/evaluate/{WIDTH_ART}.json"))),
        "bench": stage(
            """python stages/bench.py --device cpu --widths --points 1x16,1x128 --out metrics/widths
            --name bench --summary reports/widths-bench.md""",
            ["data/prepared", "models/baseline", "models/quantized", "models/widths/quantized"],
            comment="Timed on every run (always_changed): the baseline in FP32 and in compare.scheme, and every cut "
                    "in compare.scheme, in interleaved rounds (bench's knobs), at one short and one long sentence.",
            wdir="..", always_changed=True, params=["base.model", "compare", "quantize", "bench"],
            outs=nocache("metrics/widths/bench.csv", "metrics/widths/bench-machine.json", "reports/widths-bench.md")),
        "compare": stage(
            """python stages/compare_widths.py --bench metrics/widths/bench.csv
            --machine metrics/widths/bench-machine.json --evaluations metrics/widths/evaluate
            --baseline metrics/evaluate/baseline-fp32.json
            --baseline-artifact metrics/evaluate/baseline-${compare.scheme}.json
            --predictions predictions --table metrics/widths.csv --markdown reports/widths.md
            --png reports/widths.png""",
            ["metrics/widths/bench.csv", "metrics/widths/bench-machine.json", "metrics/widths/evaluate",
             "metrics/evaluate/baseline-fp32.json", "metrics/evaluate/baseline-${compare.scheme}.json",
             "predictions/widths", "predictions/baseline-${compare.scheme}"],
            wdir="..", params=["evaluate.confidence_level", "base.model", "compare"],
            outs=nocache("metrics/widths.csv", "reports/widths.md", "reports/widths.png")),
    }
    return {"vars": ["../params.yaml"], "stages": stages}


def bench() -> dict:
    """bench/dvc.yaml: `make bench-cpu` / `make bench-gpu`."""
    body = dict(wdir="..", always_changed=True, params=[
        "base.model", "prune.keep_layers", "quantize", "bench", "report.max_accuracy_drop"])
    data = ["data/prepared", "models/baseline", "models/quantized", "metrics/results.csv"]
    return {"stages": {
        f"bench-{name}": stage(f"python stages/bench.py --device {device} --summary reports/bench-{name}.md", data,
                               **body)
        for name, device in (("cpu", "cpu"), ("gpu", "cuda"))}}


def machine() -> dict:
    """machine/dvc.yaml: which accelerator this machine has."""
    return {"stages": {"machine": stage("python stages/machine.py --out metrics/machine.json", wdir="..",
                                        always_changed=True, outs=nocache("metrics/machine.json"))}}


# file -> (what it is, its description); a file's comment says what only it needs saying
FILES = {
    "dvc.yaml": ("", root),
    "strategies/dvc.yaml": (
        "`make compare-strategies` (= `dvc repro strategies/dvc.yaml`): every pruning strategy in compare.strategies "
        "cuts the baseline to compare.keep_layers layers, each cut is re-finetuned with and without distillation, and "
        "metrics/strategies.csv gets one row per (strategy, training) and split. Apart from the root dvc.yaml so that "
        "the default `dvc repro` runs only params.yaml's variants; it reuses the root pipeline's baseline, sensitivity "
        "and data. Paths are relative to the repository root (wdir: ..).", strategies),
    "widths/dvc.yaml": (
        "`make compare-widths` (= `dvc repro widths/dvc.yaml`): depth against width at equal latency. Every cut in "
        "compare.cuts (layers only, heads and FFN neurons only, or both; prune.keep_layers' syntax) is cut from the "
        "baseline, re-finetuned as refinetune says (with distillation), scored, quantized with compare.scheme, and "
        "timed against the baseline on this machine's CPU; metrics/widths.csv and reports/widths.md compare each cut "
        "with the depth-only cut of nearest latency (paired tests on the same sentences), reports/widths.png plots "
        "accuracy against latency, one line per family of cuts. Apart from the root dvc.yaml so that the default "
        "`dvc repro` stays lean; it reuses the root pipeline's baseline, sensitivity scores and data. Paths are "
        "relative to the repository root (wdir: ..).", widths),
    "bench/dvc.yaml": (
        "`make bench-cpu` / `make bench-gpu` (= `dvc repro bench/dvc.yaml:bench-<device>`): time every model and "
        "artifact of the root pipeline that runs on that device -> metrics/bench/<cpu|gpu>.csv, the machine in "
        "metrics/bench/<cpu|gpu>-machine.json and a summary in reports/bench-<cpu|gpu>.md. Timings are never restored "
        "from a cache: the stages are always_changed and declare no outputs (the CSVs are plain git files that the "
        "report stage reads), and they live apart from the root dvc.yaml so that a plain `dvc repro` never re-times. "
        "The pruned FP32 folders (models/pruned-<n>) are timed too: DVC cannot template a deps list from "
        "prune.keep_layers, so they are declared through metrics/results.csv, which carries every scored folder's DVC "
        "hash; each CSV row records the hash of what it timed. results.csv's validation accuracies also pick the final "
        "rounds' contenders. Paths are relative to the repository root (wdir: ..).", bench),
    "machine/dvc.yaml": (
        "Which accelerator this machine has (`dvc repro` runs it first: the training and quantize stages depend on its "
        "output). Moving the pipeline to a machine with CUDA changes metrics/machine.json, so the GPU schemes rebuild "
        "there. always_changed: it runs on every `dvc repro` (it asks the CUDA driver, without importing torch), "
        "but its "
        "output, and so the stages after it, only change with the machine. Apart from the root dvc.yaml so that this "
        "every-time run rewrites its own few-line lock file, not the root one. Paths are relative to the repository "
        "root (wdir: ..).", machine),
}
ORDER = ("comment", "foreach", "matrix", "do", "wdir", "cmd", "always_changed", "deps", "params", "outs", "metrics",
         "plots")


def _scalar(value, flow: bool = False) -> str:
    """``value`` as YAML: plain where it reads back the same, else double-quoted."""
    import json

    import yaml

    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    probe = f"[{text}]" if flow else f"k: {text}"
    try:
        parsed = yaml.safe_load(probe)
        same = (parsed[0] if flow else parsed["k"]) == value
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        same = False
    return text if same and text == text.strip() else json.dumps(text)


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k, flow=True)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value, flow=True)


def _flow_list(items: list, indent: int, key: str) -> list[str]:
    """``key: [a, b, ...]`` wrapped at WIDTH, continuation lines under the first item."""
    head = " " * indent + f"{key}: ["
    lines, line = [], head
    for i, item in enumerate(items):
        word = _flow(item) + ("," if i < len(items) - 1 else "]")
        if len(line) + len(word) + 1 > WIDTH and line != head:
            lines.append(line.rstrip())
            line = " " * len(head)
        line += word + " "
    return [*lines, line.rstrip()] if items else [head + "]"]


def _small(value) -> bool:
    """A one-key mapping of a path to a few plain settings (``{path: {cache: false}}``): short enough for flow."""
    return (isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), dict)
            and len(_flow(value)) <= 80)


def _block(value, indent: int) -> list[str]:
    """A mapping or list in block style (lists of plain strings and of short path settings in flow style)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, list) and all(isinstance(x, str) or _small(x) for x in item):
                lines += _flow_list(item, indent, key)
            elif isinstance(item, dict | list):
                lines += [f"{pad}{key}:", *_block(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            inner = _block(item, indent + 2) if isinstance(item, dict | list) else [f"{pad}  {_scalar(item)}"]
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
    return lines


def _comment(text: str, indent: int) -> list[str]:
    import textwrap

    return [" " * indent + f"# {line}" for line in textwrap.wrap(text, WIDTH - indent - 2)]


def _cmd(cmd: str, indent: int) -> list[str]:
    """One line, or a folded block wrapped before an option (an option stays on the line of its value)."""
    pad = " " * indent
    if len(pad) + len("cmd: ") + len(cmd) <= WIDTH and _scalar(cmd) == cmd:
        return [f"{pad}cmd: {cmd}"]
    chunks = re.split(r" (?=--)", cmd)
    lines, line = [], ""
    for chunk in chunks:
        if line and len(pad) + 2 + len(line) + 1 + len(chunk) > WIDTH:
            lines.append(line)
            line = chunk
        else:
            line = f"{line} {chunk}" if line else chunk
    return [f"{pad}cmd: >-", *(f"{pad}  {text}" for text in [*lines, line])]


def _stage(name: str, fields: dict, indent: int) -> list[str]:
    pad = " " * indent
    lines = [*_comment(fields.get("comment", ""), indent), f"{pad}{name}:"] if name else []
    inner = indent + 2 if name else indent
    for key in sorted((k for k in fields if k != "comment"), key=ORDER.index):
        value = fields[key]
        if key == "do":
            lines += [f"{' ' * inner}do:", *_stage("", value, inner + 2)]
        elif key == "cmd":
            lines += _cmd(value, inner)
        else:
            lines += _block({key: value}, inner)
    return lines


def render(path: str) -> str:
    """The text of one pipeline file."""
    comment, describe = FILES[path]
    doc = describe()
    out = [*_comment(HEADER, 0), *(["#", *_comment(comment, 0)] if comment else [])]
    for key, value in doc.items():
        if key == "stages":
            out.append("stages:")
            for i, (name, fields) in enumerate(value.items()):
                out += ([""] if i else []) + _stage(name, fields, 2)
        else:
            out += ["", *_block({key: value}, 0)]
    return "\n".join(out) + "\n"


@click.command()
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a committed file differs from its description.")
def main(check: bool) -> None:
    """Write dvc.yaml, strategies/dvc.yaml, widths/dvc.yaml, bench/dvc.yaml and machine/dvc.yaml from their
    descriptions."""
    stale = []
    for path in FILES:
        text, target = render(path), REPO / path
        if target.is_file() and target.read_text() == text:
            continue
        stale.append(path)
        if not check:
            target.write_text(text)
    if check and stale:
        raise click.ClickException(f"{', '.join(stale)}: not what prunequant.dvcfiles writes; run `make dvc-files` "
                                   "(and edit its description, not the file)")
    click.echo(f"{'stale' if check else 'wrote'}: {', '.join(stale)}" if stale else "every pipeline file is up to date")


if __name__ == "__main__":
    main()

"""``quantize``: which schemes quantize the baseline and every pruned model, and each scheme's knobs.

The names of every scheme and its family live here, so that reading params (the results and report stages)
imports no quantization library; each scheme's settings class lives with its family
(``prunequant.quantization.<family>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from prunequant.errors import PrunequantError, did_you_mean
from prunequant.params import Section, knob, require

# family -> its module in this package; each family is one pair of quantize stages in dvc.yaml
FAMILIES = {"torch": "torch_schemes", "qat": "qat", "onnx": "onnx_schemes", "openvino": "openvino_schemes",
            "gpu": "gpu_schemes"}
# Every scheme, in the order of tables, and its family (tests check each family registers exactly these).
SCHEME_FAMILY = {
    "fp32": "torch", "bf16": "torch", "int8-dynamic": "torch",
    "int8-qat": "qat",
    "onnx-fp32": "onnx", "onnx-int8-dynamic": "onnx", "onnx-int8-static": "onnx", "onnx-int4-weight": "onnx",
    "openvino-fp32": "openvino", "openvino-int8-static": "openvino",
    "fp16": "gpu", "bnb-int8": "gpu", "bnb-nf4": "gpu", "bnb-fp4": "gpu", "torchao-int8-weight": "gpu",
    "torchao-int4-weight": "gpu", "fp8": "gpu",
}


def check_scheme_name(name: str, key: str = "quantize.schemes") -> str:
    """``name`` if it is a known scheme; else a one-line error naming the params key."""
    if name not in SCHEME_FAMILY:
        raise PrunequantError(
            f"params.yaml: {key} has unknown scheme {name!r}{did_you_mean(name, SCHEME_FAMILY)}; "
            f"known schemes: {', '.join(SCHEME_FAMILY)}"
        )
    return name


@dataclass(frozen=True)
class QuantizeConfig(Section):
    """Which schemes quantize the baseline and every pruned model (listed by family), and each scheme's knobs.

    ``schemes`` maps each family of ``FAMILIES`` to the names it builds (``dvc.yaml`` fans out one pair of
    stages per family over that list); each stage reads its own ``settings.<scheme>`` entry, so a change
    there reruns only that scheme's stages. Settings are parsed by the scheme's own dataclass when used
    (:func:`prunequant.quantization.scheme_settings`); ``python -m prunequant.check`` parses all of them.
    """

    schemes: dict = knob()
    settings: dict = knob()

    def __post_init__(self) -> None:
        super().__post_init__()
        seen: set[str] = set()
        for family in self.schemes:
            require(family in FAMILIES, "schemes", f"has unknown family {family!r}"
                    f"{did_you_mean(family, FAMILIES)}; the families are {', '.join(FAMILIES)}")
        for family in FAMILIES:
            require(family in self.schemes, "schemes",
                    f"has no {family!r} list; add `{family}: []` (or its schemes)")
            names = self.schemes[family]
            key = f"schemes.{family}"
            require(isinstance(names, list | tuple), key, f"must be a list of scheme names, got {names!r}")
            for i, name in enumerate(names):
                require(isinstance(name, str), f"{key}[{i}]", f"must be a scheme name, got {name!r}")
                check_scheme_name(name, f"quantize.{key}[{i}]")
                require(name != "fp32", f"{key}[{i}]",
                        "is fp32: the models themselves, scored by the evaluate stages; remove it")
                require(SCHEME_FAMILY[name] == family, f"{key}[{i}]",
                        f"is {name!r}, a scheme of the {SCHEME_FAMILY[name]!r} family; "
                        f"move it to quantize.schemes.{SCHEME_FAMILY[name]}")
                require(name not in seen, key, f"lists {name!r} twice")
                seen.add(name)
        for name in self.names:  # dvc.yaml makes each stage depend on quantize.settings.<scheme>: it must exist
            require(name in self.settings, "settings",
                    f"has no entry for {name!r}; add `{name}: {{}}` (or its settings) under quantize.settings")
        for name in self.settings:
            check_scheme_name(name, "quantize.settings")

    @property
    def names(self) -> tuple[str, ...]:
        """Every listed scheme, in table order."""
        listed = {name for names in self.schemes.values() for name in names}
        return tuple(name for name in SCHEME_FAMILY if name in listed)

"""Every family of schemes, imported: ``SCHEMES`` is then the whole registry, in table order.

For code that handles all schemes at once (benchmarks, the whole-file params check); a quantize stage
imports only its own scheme's family through ``get_scheme``.
"""

from prunequant.params.quantize import SCHEME_FAMILY
from prunequant.quantization import (  # noqa: F401
    SCHEMES,
    Scheme,
    gpu_schemes,
    onnx_schemes,
    openvino_schemes,
    qat,
    torch_schemes,
)


def every_scheme() -> dict[str, Scheme]:
    """name -> Scheme for every registered scheme, in the order of tables."""
    return {name: SCHEMES[name] for name in SCHEME_FAMILY}

"""prunequant: prune and quantize BERT-family text classifiers into a measured menu of variants."""

import logging as _logging
import os as _os

__version__ = "0.1.0"

# transformers imports torchao whenever it is installed; on a CPU-only torch, torchao logs that its CUDA
# kernels do not load, and torch warns about its enum registrations. Neither matters to a stage, and
# they would bury a stage's one-line error; PRUNEQUANT_DEBUG=1 shows them again.
if _os.environ.get("PRUNEQUANT_DEBUG") != "1":
    for _name in ("torchao", "torch.utils._pytree"):
        _logging.getLogger(_name).setLevel(_logging.ERROR)

"""Transitional: the fixed-point encoding lives in mpcrt.protocols.fixedpoint (SharedTensor, in the
protocol layer, needs it). Kept only for importers outside this change (mpcrt.runtime, mpcrt.infer,
mpcrt.nn.model); remove once they import mpcrt.protocols.fixedpoint."""
from mpcrt.protocols.fixedpoint import (  # noqa: F401
    DEFAULT_PRECISION,
    MAX_MAGNITUDE_BITS,
    check_precision,
    decode,
    encode,
    max_value,
    to_numpy,
)

"""Fixed-point encoding of reals into the ring Z_2^64.

A real v encodes as round(v * 2^f) in two's complement, f fractional bits
(16 by default). Encoding refuses NaN, inf and any |v| >= 2^(62 - f) (the bound
under which truncation is exact); it never wraps silently. Decoding reads the
ring element as signed and divides by 2^f.

Rounds: 0 (local).
Bytes per element per peer: 0.
Dealer words per element: 0.
Error: |decode(encode(v)) - v| <= 2^-(f+1).
Reference: docs/design.md, 'Protocols' (fixed point).
"""
from __future__ import annotations

import numpy as np

from mpcrt.errors import EncodingError

DEFAULT_PRECISION = 16
MAX_MAGNITUDE_BITS = 62  # encoded |x| < 2^62: truncation is exact below this


def max_value(precision: int) -> float:
    """Largest magnitude (exclusive) a plaintext may have at this precision."""
    return float(2 ** (MAX_MAGNITUDE_BITS - precision))


def check_precision(precision: int) -> int:
    if not isinstance(precision, (int, np.integer)) or not 0 <= precision <= 40:
        raise EncodingError(f"precision must be an integer number of fractional bits in [0, 40], got {precision!r}")
    return int(precision)


def to_numpy(value) -> np.ndarray:
    """Plaintext input (numpy array, torch tensor, Python scalar or list) as a numpy array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def encode(value, precision: int) -> np.ndarray:
    """Encode a plaintext array as int64 ring elements with `precision` fractional bits."""
    a = to_numpy(value)
    if a.dtype == np.bool_:
        a = a.astype(np.int64)
    if np.issubdtype(a.dtype, np.integer):
        limit = 1 << (MAX_MAGNITUDE_BITS - precision)
        if a.size and (int(a.max()) >= limit or int(a.min()) <= -limit):
            raise EncodingError(
                f"integer input outside the fixed-point range |x| < 2^{MAX_MAGNITUDE_BITS - precision} "
                f"at {precision} fractional bits; scale it down or lower the precision"
            )
        return a.astype(np.int64) << np.int64(precision)
    if not np.issubdtype(a.dtype, np.floating):
        raise EncodingError(f"cannot encode dtype {a.dtype}: pass a float or integer array")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise EncodingError("input contains NaN or infinity; fixed point cannot represent them")
    limit = max_value(precision)
    if a.size and float(np.max(np.abs(a))) >= limit:
        raise EncodingError(
            f"input magnitude {float(np.max(np.abs(a))):.6g} is outside the fixed-point range "
            f"|x| < {limit:.6g} (2^{MAX_MAGNITUDE_BITS - precision}) at {precision} fractional bits; "
            "scale the input down or use a runtime with fewer fractional bits"
        )
    return np.rint(a * float(1 << precision)).astype(np.int64)


def decode(ring: np.ndarray, precision: int, dtype=np.float64) -> np.ndarray:
    """Decode int64 ring elements (read as signed) to floats."""
    return (np.asarray(ring, dtype=np.int64).astype(np.float64) / float(1 << precision)).astype(dtype, copy=False)

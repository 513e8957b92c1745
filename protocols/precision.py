"""Precision handling the approximations and activations share: a tensor at the runtime
precision (integer tensors scaled up, untruncated products truncated: 1 round, 8 bytes
per element per peer, 2-3 dealer words per element, +1 ulp at most, protocols.truncation),
and `capped`, which runs a layer at a capped number of fractional bits.

Rounds: 0 or 1 (a truncation when the input carries more bits than the precision; capped:
  one more at the end).
Bytes per element per peer: 8 per truncation, for every N (to each of the N - 1 peers).
Dealer words per element: 2 per truncation ([r >> f], [msb r]; 1.5 when f <= 32).
Error: +1 ulp per truncation.
Reference: docs/design.md, 'Protocols' (truncation).
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from mpcrt.protocols.shared import SharedTensor


def at_f(x: SharedTensor) -> SharedTensor:
    """x at the runtime precision (integer tensors scaled up, 2f products truncated)."""
    f = x.rt.precision
    x = x.to_precision()
    return x if x.fbits == f else SharedTensor(x.rt, x.share << np.int64(f - x.fbits), f)


def at_f_share(x: SharedTensor) -> np.ndarray:
    """x's share at the runtime precision (integer tensors are scaled up)."""
    return at_f(x).share


def capped(bits: int) -> Callable:
    """Decorator: run the layer at min(precision, bits) fractional bits (x truncated to
    them, 1 round) and return its result at the runtime's precision."""
    def deco(fn: Callable[..., SharedTensor]) -> Callable[..., SharedTensor]:
        @functools.wraps(fn)
        def wrapper(x: SharedTensor, *args, **kwargs) -> SharedTensor:
            rt, f = x.rt, x.rt.precision
            with np.errstate(over="ignore"):  # ring arithmetic wraps by design (numpy warns on 0-d)
                if f <= bits:
                    return fn(x, *args, **kwargs)
                rt.precision = bits  # every party does the same: dealer requests and rounds agree
                try:
                    y = fn(x.to_precision(), *args, **kwargs)
                finally:
                    rt.precision = f
                if y.fbits > f:  # e.g. an untruncated shared bias at 2f bits was added
                    return y.to_precision()
                return SharedTensor(rt, y.share << np.int64(f - y.fbits), f)

        return wrapper

    return deco

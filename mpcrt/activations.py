"""Activations and normalization of neural-network layers, built from the exact
comparisons (mpcrt.comparisons) and the approximations (mpcrt.approximations).

Methods, rounds and measured max error at 16 fractional bits (tests assert these):
- gelu: t sigmoid(z(t)) + relu(x - 6), t = clamp(x, -6, 6) (both from one comparison
  run, so no product ever involves a huge x), z(t) = a t + b t^3 + c t^5. With the
  fitted (a, b, c) of GELU_ERF, sigmoid(z) matches the normal CDF of torch's exact
  (erf) GELU to 2.5e-5 in x Phi(x) on [-6, 6]; `approximate="tanh"` uses torch's own
  tanh form (c = 0, a = 2 sqrt(2/pi), b = 0.044715 a). Beyond the clamp z(t) > 16,
  where the sigmoid saturates to exactly 0 or 1: the result is x or 0 (true GELU there
  differs by < 6e-9). 30 rounds (clamp 7, t^2 and t^4 2 each, z = t p 2 with p's
  coefficients at 24 bits and no truncation of its own, sigmoid 15, product 2); the
  tanh form skips t^4 (28). Error: abs 1.4e-4 on [-8, 8] and
  every input the format holds (measured; torch's erf GELU as reference).
- silu: t sigmoid(t) + relu(x - 16), t = clamp(x, -16, 16) (Swish). 24 rounds; abs
  2e-4 (measured), x or ~0 beyond +-16.
- hardtanh / relu6: clamp to public bounds (exact, 7 rounds).
- hardswish: t (t + 3) / 6 + relu(x - 3), t = clamp(x, -3, 3) from one comparison run
  (x never multiplies itself beyond the clamp), the 1/6 folded into the product's
  truncation: 9 rounds, error a few ulps.
  hardsigmoid: clamp(x, -3, 3) / 6 + 1/2 (8 rounds).
- layer_norm: (x - mean) rsqrt(var + eps) over the last dims, then the affine weight
  and bias. rsqrt is rel 1e-3 on [2^-10, 2^14) (clamped beyond); the variance itself
  is held at f bits, so a small one loses precision: measured abs err 1.5e-4 for input
  std 2, 2.7e-4 at std 0.3, 5.5e-3 at std 0.1 (outputs of unit scale). 2 + 16 + 2 (+2
  with a shared weight) rounds.

Above 24 fractional bits (20 for gelu and hardswish) these compute at 24 (20) bits, where their
products stay below 2^62 (and gelu's coefficients keep 16 bits), and return at the
runtime's precision: one truncation round more, the error of that computation.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np

from mpcrt.comparisons import clamp_excess
from mpcrt.protocols import beaver
from mpcrt.tensor import SharedTensor

GELU_CLAMP = 6.0  # |x| beyond: sigmoid(z) saturates exactly (z(6) = 20.1 > 16)
SILU_CLAMP = 16.0  # the sigmoid saturates beyond +-16
GELU_ERF = (1.59501577, 0.0740112920, -7.03033577e-4)  # fit of sigmoid(z) to Phi (erf GELU)
G = 24  # fractional bits of the coefficients of z (fewer at precisions above 16)
_A = 2.0 * math.sqrt(2.0 / math.pi)
GELU_TANH = (_A, 0.044715 * _A, 0.0)  # torch's approximate="tanh": 0.5(1 + tanh(u)) = sigmoid(2u)


def _capped(bits: int) -> Callable:
    """Decorator: run the layer at min(precision, bits) fractional bits (x truncated to
    them, 1 round) and return its result at the runtime's precision."""
    def deco(fn: Callable[..., SharedTensor]) -> Callable[..., SharedTensor]:
        @functools.wraps(fn)
        def wrapper(x: SharedTensor, *args, **kwargs) -> SharedTensor:
            rt, f = x.rt, x.rt.precision
            if f <= bits:
                return fn(x, *args, **kwargs)
            rt.precision = bits  # every party does the same: dealer requests and rounds agree
            try:
                y = fn(x.to_precision(), *args, **kwargs)
            finally:
                rt.precision = f
            return SharedTensor(rt, y.share << np.int64(f - y.fbits), f)

        return wrapper

    return deco


@_capped(20)  # z's coefficients get g = 56 - 2f bits: 16 at f = 20 (at 24 only 8, and c ~ -7e-4 would vanish)
def gelu(x: SharedTensor, approximate: str = "none") -> SharedTensor:
    """torch.nn.functional.gelu: x Phi(x) (approximate="none") or its tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    a, b, c = GELU_ERF if approximate == "none" else GELU_TANH
    rt, f = x.rt, x.rt.precision
    x = _at_f(x)
    g = max(8, min(G, 56 - 2 * f))  # coefficient bits: |z| < 2^(2f + g + 5) stays below 2^62
    t, above = clamp_excess(x, GELU_CLAMP)
    t2 = t * t
    # p = a + b t^2 + c t^4 at f + G bits with the coefficients at G bits: no truncation
    p = t2.share * np.int64(round(b * 2**g))
    if c:
        p += (t2 * t2).share * np.int64(round(c * 2**g))
    if rt.rank == 0:
        p += np.int64(round(a * 2 ** (f + g)))
    with rt.scope("mul"):  # z = t p at 2f + G bits (|z| < 2^61), truncated back to f
        z = SharedTensor(rt, beaver.mul(rt, t.share, p, f + g), f)
    return t * z.sigmoid() + above  # x beyond the clamp: 6 * 1 + (x - 6), or -6 * 0


def _at_f(x: SharedTensor) -> SharedTensor:
    """x at the runtime precision (integer tensors scaled up, 2f products truncated)."""
    f = x.rt.precision
    x = x.to_precision()
    return x if x.fbits == f else SharedTensor(x.rt, x.share << np.int64(f - x.fbits), f)


@_capped(24)
def silu(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.silu: x sigmoid(x)."""
    x = _at_f(x)
    t, above = clamp_excess(x, SILU_CLAMP)
    return t * t.sigmoid() + above


@_capped(20)  # 1/6 gets g = 60 - 2f >= 20 bits
def hardswish(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.hardswish: x relu6(x + 3) / 6."""
    rt, f = x.rt, x.rt.precision
    x = _at_f(x)
    t, above = clamp_excess(x, 3.0)
    g = min(28, 60 - 2 * f)  # |t (t + 3) 2^(2f + g) / 6| <= 3 2^(2f + g) < 2^62
    p = t.share * np.int64(round(2**g / 6))  # (t + 3) / 6 at f + g bits
    if rt.rank == 0:
        p += np.int64(round(3 * 2 ** (f + g) / 6))
    with rt.scope("mul"):
        return SharedTensor(rt, beaver.mul(rt, t.share, p, f + g), f) + above


def hardsigmoid(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.hardsigmoid: relu6(x + 3) / 6."""
    return _at_f(x).clamp(-3.0, 3.0) * (1.0 / 6.0) + 0.5


def hardtanh(x: SharedTensor, min_val: float = -1.0, max_val: float = 1.0) -> SharedTensor:
    """torch.nn.functional.hardtanh (relu6 is hardtanh(x, 0, 6)): exact."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} exceeds max_val {max_val}")
    return x.clamp(min_val, max_val)


@_capped(24)  # (x - mean)^2 of unit-scale rows at 2f bits stays below 2^62
def layer_norm(x: SharedTensor, normalized_shape: Sequence[int] | int, weight=None, bias=None,
               eps: float = 1e-5) -> SharedTensor:
    """torch.nn.functional.layer_norm over the last len(normalized_shape) dims; weight and
    bias shared or public (or None)."""
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != shape:
        from mpcrt.errors import ShapeError

        raise ShapeError(f"layer_norm over {list(shape)} needs an input ending in those dims, got shape {x.shape}")
    dims = tuple(range(x.ndim - k, x.ndim))
    x = _at_f(x)
    d = x - x.mean(dim=dims, keepdim=True)
    var = (d * d).mean(dim=dims, keepdim=True)
    y = d * (var + eps).rsqrt()
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y

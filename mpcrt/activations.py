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
- elu(alpha): relu(x) + alpha [x < 0] (e^min(x, 0) - 1), the bit and min(x, 0) from one
  comparison, e^ by exp's precise chain, the bit's product (1 round) keeping x > 0
  exact: 15 rounds (+1 for a non-integer alpha), abs err 5.5e-4 alpha (measured
  on [-20, 20] and far out). selu and celu are elu with torch's constants / a scaled input
  (those scalings are products with public reals: |x| < 2^(62-2f), 2^30 at 16 bits).
- softplus(beta): (relu(b) + log1p(e^-|b|)) / beta, b = beta x, with |b| and relu(b) from
  one comparison and log1p(z) on [0, 1] by a quartic through 0 (8e-5; softplus(-inf) is
  exactly 0) whose one truncation takes
  all its terms: 19 rounds (+1 for beta != 1); abs err 3e-4 / beta (measured, rel 6e-4
  for every input the format holds); torch's linear regime beyond `threshold` differs
  from log(1 + e^(beta x)) / beta by < e^-threshold.
- mish: x n / (n + 2), n = e^x (e^x + 2) (= x tanh(softplus(x))), as n r for x < 0 and
  1 - 2 r for x >= 0, r = 1 / (n + 2): 46 rounds; abs err 6e-4 on [-20, 20] (measured), rel
  3e-5 beyond 20, exactly 0 below -15.
- prelu: relu(x) + w min(x, 0) with a shared or public per-channel w (9 rounds).
- group_norm / instance_norm: layer_norm over each group of channels, then the
  per-channel affine (errors as layer_norm's).
- hardtanh / relu6: clamp to public bounds (exact, 7 rounds).
- hardswish: t (t + 3) / 6 + relu(x - 3), t = clamp(x, -3, 3) from one comparison run
  (x never multiplies itself beyond the clamp), the 1/6 folded into the product's
  truncation: 9 rounds, error a few ulps.
  hardsigmoid: clamp(x, -3, 3) / 6 + 1/2 (8 rounds).
- layer_norm: (x - mean) sqrt(n) rsqrt(S + n eps), S = sum (x - mean)^2 held at
  2f - log2 n - 4 bits (not the variance at f bits, which lost a small variance's precision: std 0.05
  had 164 ulps), sqrt(n) in rsqrt's public weights, rsqrt kept at up to 20 more
  fractional bits; then the affine weight and bias. rsqrt covers every S the format forms
  (plain rsqrt stops at 2^14); the squared deviations need
  |x - mean| < 2^(31-f) (std up to ~5000 at 16 bits). Measured abs err at 16 bits, rows of
  16 / 768 / 4096: <= 3.7e-4 / 1.3e-3 / 3.5e-4 for std 0.05 to 3000, 3e-4 / 3.2e-3 / 5.2e-4
  at std 0.02 (outputs of unit scale). 21 rounds (+2 with a shared weight).

Above 24 fractional bits (20 for gelu, hardswish and softplus) these compute at 24 (20) bits, where their
products stay below 2^62 (and gelu's coefficients keep 16 bits), and return at the
runtime's precision: one truncation round more, the error of that computation.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np

from mpcrt.approximations import _exp_precise, _rsqrt
from mpcrt.comparisons import clamp_excess
from mpcrt.protocols import beaver
from mpcrt.protocols.comparison import ltz_steps
from mpcrt.protocols.rounds import run
from mpcrt.tensor import SharedTensor, stack

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


@_capped(24)
def hardsigmoid(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.hardsigmoid: relu6(x + 3) / 6."""
    return _at_f(x).clamp(-3.0, 3.0) * (1.0 / 6.0) + 0.5


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # torch.nn.SELU's constants
def _fit_through_zero(fn, deg: int) -> np.ndarray:
    """Coefficients (c0 = 0, c1..c_deg) of a least-squares fit of fn on (0, 1] at Chebyshev
    points with no constant term, so that fn(0) = 0 is exact (softplus(-inf) = 0)."""
    z = np.cos(np.linspace(0, np.pi, 4001)) * 0.5 + 0.5
    z = z[z > 0]
    c, *_ = np.linalg.lstsq(np.stack([z**j for j in range(1, deg + 1)], 1), fn(z), rcond=None)
    return np.concatenate([[0.0], c])


LOG1P_POLY = _fit_through_zero(np.log1p, 4)  # max error 8.2e-5 on [0, 1], exact at 0
SOFTPLUS_EXACT_THRESHOLD = 10.0  # below this, torch's linear regime (x itself) is applied exactly
P_BITS = 24  # fractional bits of softplus's polynomial coefficients


@_capped(24)
def elu(x: SharedTensor, alpha: float = 1.0) -> SharedTensor:
    """torch.nn.functional.elu: x for x > 0, alpha (e^x - 1) otherwise."""
    rt, f = x.rt, x.rt.precision
    X = _at_f(x).share
    with rt.scope("relu"):  # b = [x < 0] and b x = min(x, 0) from one comparison
        ((b, (nb,)),) = run(rt, ltz_steps(rt, X, 1, lambda: [X]))
    e = _exp_precise(SharedTensor(rt, nb, f))  # e^min(x, 0), in (0, 1]: ~0 below -15
    with rt.scope("mul"):  # b (e - 1): exactly 0 for x >= 0 (exp's own error at 0 stays out), 1 round
        neg = SharedTensor(rt, beaver.mul(rt, b, (e - 1.0).share, 0), f)
    return SharedTensor(rt, X - nb, f) + neg * (int(alpha) if float(alpha).is_integer() else float(alpha))


@_capped(24)
def selu(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.selu: scale * elu(x, alpha) with torch's constants."""
    return elu(x, SELU_ALPHA) * SELU_SCALE


@_capped(24)
def celu(x: SharedTensor, alpha: float = 1.0) -> SharedTensor:
    """torch.nn.functional.celu: max(0, x) + min(0, alpha (e^(x / alpha) - 1)), alpha > 0."""
    if not alpha > 0:
        raise ValueError(f"celu: alpha must be positive here, got {alpha} (a negative alpha is not supported)")
    return elu(x * (1.0 / alpha), 1.0) * alpha if alpha != 1 else elu(x, 1.0)


@_capped(20)  # the polynomial's terms at f + P_BITS bits stay below 2^62
def softplus(x: SharedTensor, beta: float = 1.0, threshold: float = 20.0) -> SharedTensor:
    """torch.nn.functional.softplus: log(1 + e^(beta x)) / beta, and x where beta x >
    threshold (for thresholds of at least 10 the two differ by < e^-threshold / beta, under
    3 ulps at 16 bits, and the extra comparison is skipped)."""
    if beta <= 0:
        raise ValueError(f"softplus: beta must be positive, got {beta}")
    rt, f = x.rt, x.rt.precision
    b = _at_f(x)
    if beta != 1:
        b = _at_f(b * float(beta))
    B = b.share
    with rt.scope("abs"):  # [b < 0] b from one comparison: |b| = b - 2 [b < 0] b, relu(b) = b - [b < 0] b
        ((_, (nb,)),) = run(rt, ltz_steps(rt, B, 1, lambda: [B]))
    z = _exp_precise(SharedTensor(rt, 2 * nb - B, f))  # e^-|b| in (0, 1]
    z2 = z * z
    p34 = stack([z, z2]) * z2  # z^3 and z^4 in one product
    g = P_BITS  # log1p(z) = sum c_j z^j at f + g bits (z <= 1), then one truncation
    acc = z.share * np.int64(round(float(LOG1P_POLY[1]) * 2**g))
    for c, t in zip(LOG1P_POLY[2:], (z2, p34[0], p34[1])):
        acc = acc + t.share * np.int64(round(float(c) * 2**g))
    if rt.rank == 0:
        acc = acc + np.int64(round(float(LOG1P_POLY[0]) * 2 ** (f + g)))
    out = SharedTensor(rt, acc, f + g).to_precision() + SharedTensor(rt, B - nb, f)
    out = out if beta == 1 else out * (1.0 / float(beta))
    if threshold < SOFTPLUS_EXACT_THRESHOLD:
        from mpcrt.tensor import where

        out = where(b > float(threshold), _at_f(x), out)
    return out


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
    n = math.prod(shape)
    d = x - x.mean(dim=dims, keepdim=True)
    # S = sum (x - mean)^2 at fa = 2f - t - 4 bits (t = log2 n: the sum cannot wrap) instead of
    # the variance at f bits: a small variance keeps its relative precision (std 0.05 had
    # 164 ulps at 16 bits), and y = d sqrt(n) rsqrt(S + n eps) with sqrt(n) in rsqrt's
    # public weights. rsqrt covers S in [2^-fa, 2^(59 - fa)), every sum the format forms
    # (|x - mean| < 2^(31 - f); plain rsqrt stops at 2^14).
    y = _times_rsqrt_sumsq(d, dims, math.sqrt(n), n * eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _times_rsqrt_sumsq(d: SharedTensor, dims: tuple, scale: float, add: float) -> SharedTensor:
    """d * scale / sqrt(sum over dims of d^2 + add), with the sum held at 2f - log2 n - 4
    bits (n the number of summed elements: the sum cannot wrap) rather than a mean at f
    bits, and rsqrt over every such sum the format forms, its result kept at up
    to 20 more fractional bits with `scale` in its public weights (layer_norm: sqrt(n),
    n eps; normalize: 1, eps^2). Needs |result| <= sqrt(n)."""
    rt, f = d.rt, d.rt.precision
    n = math.prod(d.shape[i] for i in dims) if dims else 1
    d = _at_f(d)
    # each d^2 < 2^(62 - 2f), so S < 2^(t + 62 - 2f): at fa = 2f - t - 4 bits rsqrt's range
    # (S < 2^(59 - fa), even) covers all of it
    t = max(0, math.ceil(math.log2(max(n, 1))))
    fa = 2 * f - t - 4
    with rt.scope("mul"):
        sq = beaver.mul(rt, d.share, d.share, t + 4)  # d^2 at fa bits
    S = sq.sum(axis=dims, keepdims=True)
    if rt.rank == 0:
        S = S + np.int64(round(add * 2.0**fa))
    lo, hi = -(fa + fa % 2), (59 - fa) - (59 - fa) % 2
    half_n = math.log2(math.sqrt(n) + 1)
    extra = max(0, min(20, (hi + 2) // 2, 60 - 2 * f - math.ceil(half_n)))  # |y| <= sqrt(n) at 2f + extra bits
    sb = max(0, 14 - math.floor(math.log2(max(scale, 1.0))))  # scale 2^sb in the weights: >= 14 significant bits
    r = _rsqrt(SharedTensor(rt, S, fa), lo, hi, extra, scale=scale, scale_bits=sb, wide=True)[0]
    with rt.scope("mul"):  # at the share level: SharedTensor's * would first cut r back to f bits
        return SharedTensor(rt, beaver.mul(rt, d.share, np.broadcast_to(r.share, d.shape), f + extra), f)


@_capped(24)
def normalize(x: SharedTensor, dim: int = 1, eps: float = 1e-12) -> SharedTensor:
    """torch.nn.functional.normalize with p = 2: x / max(||x||, eps) along dim (for norms
    above 2^-f; the sum of squares at 2f - log2 n - 4 bits as in layer_norm)."""
    x = _at_f(x)
    d = dim % x.ndim if x.ndim else 0
    return _times_rsqrt_sumsq(x, (d,), 1.0, eps * eps)


def _per_channel(v, ndim: int):
    """A (C,) weight as (1, C, 1, ...) for an input of `ndim` dims (shared or public)."""
    shape = (1, -1) + (1,) * (ndim - 2)
    return v.reshape(*shape) if isinstance(v, SharedTensor) else np.asarray(v, np.float64).reshape(shape)


@_capped(24)
def group_norm(x: SharedTensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> SharedTensor:
    """torch.nn.functional.group_norm on (N, C, *): layer_norm over each group's C/G
    channels and positions, then the per-channel weight and bias (instance norm: G = C)."""
    from mpcrt.errors import ShapeError

    if x.ndim < 2 or int(num_groups) <= 0 or x.shape[1] % int(num_groups):
        raise ShapeError(f"group_norm: {num_groups} groups need an (N, C, ...) input with C divisible by them, got {x.shape}")
    shape, g = tuple(x.shape), int(num_groups)
    per = math.prod(shape[1:]) // g
    y = layer_norm(x.reshape(shape[0], g, per), per, eps=eps).reshape(*shape)
    if weight is not None:
        y = y * _per_channel(weight, len(shape))
    if bias is not None:
        y = y + _per_channel(bias, len(shape))
    return y


@_capped(24)
def prelu(x: SharedTensor, weight) -> SharedTensor:
    """torch.nn.functional.prelu: relu(x) + weight min(x, 0), weight (shared or public) of
    one value or one per channel (dim 1). 7 rounds + one product (2)."""
    from mpcrt.errors import ShapeError

    x = _at_f(x)
    w = weight
    size = w.numel() if isinstance(w, SharedTensor) else np.size(w)
    if size != 1 and (x.ndim < 2 or x.shape[1] != size):
        raise ShapeError(f"prelu: {size} weights need an input with {size} channels in dim 1, got shape {x.shape}")
    r = x.relu()
    if size != 1:
        w = _per_channel(w, x.ndim)
    elif isinstance(w, SharedTensor):
        w = w.reshape(())
    else:
        w = float(np.asarray(w).reshape(()))
    return r + (x - r) * w


@_capped(24)
def mish(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.mish: x tanh(softplus(x)) = x n / (n + 2), n = e^x (e^x + 2).
    With r = 1 / (n + 2): n r for x < 0 (relative accuracy as n -> 0, so mish -> 0 far
    left instead of x times tanh's absolute error at 0) and 1 - 2 r for x >= 0 (no
    reciprocal range limit as n grows). 46 rounds; abs err 6e-4 on [-20, 20]."""
    x = _at_f(x)
    neg = x < 0
    u = _exp_precise(x)  # e^x: 0 below -15, e^11.5 above 11.5 (tanh(softplus) = 1 - 2e-10 there)
    n = u * (u + 2.0)
    r = (n + 2.0).reciprocal()
    small, large = n * r, 1.0 - r * 2
    return x * (large + neg * (small - large))

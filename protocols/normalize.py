"""Normalization layers: layer_norm, group_norm (instance norm: one group per channel)
and normalize (x / ||x||_2 along a dim).

layer_norm: (x - mean) sqrt(n) rsqrt(S + n eps), S = sum (x - mean)^2 held at
2f - log2 n - 4 bits (not the variance at f bits, which lost a small variance's
precision: std 0.05 had 164 ulps), sqrt(n) in rsqrt's public weights, rsqrt
(protocols.reciprocal) kept at up to 20 more fractional bits; then the affine weight
and bias. rsqrt covers every S the format forms (plain rsqrt stops at 2^14); the squared
deviations need |x - mean| < 2^(31-f) (std up to ~5000 at 16 bits). group_norm is
layer_norm over each group of channels, then the per-channel affine.

Rounds: layer_norm 21 (+2 with a shared weight); group_norm the same; normalize 20.
Bytes per element per peer: layer_norm over rows of 64: 58.9 (the square and the final
  product per element, rsqrt's per row); each of a party's N - 1 peers gets this.
Dealer words per element: (sent to the corrected party) layer_norm over rows of 64: 7.0; independent of N.
  Measured (10240 elements) at N = 2. From N = 3 every opening of 512 KiB or more goes in two
  steps (mpcrt.allreduce: fewer bytes per peer, two rounds): at 10240 elements log takes 13 and
  sqrt 19 rounds; at 128000 exp 13, sigmoid 28, reciprocal 45 (up to twice the rounds above).
Error: measured at 16 fractional bits, rows of mean 0 and of 16 / 4096 elements: <= 4.3e-4 / 5.3e-4
  for std 0.05 to 3000 (4.1e-4 at std 100), 1.3e-3 / 1.1e-3 at std 0.02; rows of 768 of mean 3:
  4.1e-3 at std 0.05 and 1e-2 at std 0.02 (outputs of unit scale). The error grows as 1 / std:
  (x - mean) carries its 1-ulp truncation, 2^-16 / std in the output (7.6e-4 at std 0.02).
  Above 24 fractional bits these compute at 24 and return at the runtime's precision.
Reference: docs/design.md, 'Protocols' (normalization).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.protocols import beaver
from mpcrt.protocols.precision import at_f, capped
from mpcrt.protocols.reciprocal import rsqrt_scaled
from mpcrt.protocols.shared import SharedTensor, dim_index


@capped(24)  # (x - mean)^2 of unit-scale rows at 2f bits stays below 2^62
def layer_norm(x: SharedTensor, normalized_shape: Sequence[int] | int, weight=None, bias=None,
               eps: float = 1e-5) -> SharedTensor:
    """torch.nn.functional.layer_norm over the last len(normalized_shape) dims; weight and
    bias shared or public (or None)."""
    dims = _norm_dims(x, normalized_shape, "layer_norm")
    x = at_f(x)
    n = math.prod(x.shape[i] for i in dims)
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


@capped(24)  # x^2 of unit-scale rows at 2f bits stays below 2^62
def rms_norm(x: SharedTensor, normalized_shape: Sequence[int] | int, weight=None, eps: float | None = None
             ) -> SharedTensor:
    """torch.nn.functional.rms_norm over the last len(normalized_shape) dims: x / sqrt(mean(x^2) + eps)
    times weight (shared, public or None); eps None is float32's machine epsilon, as torch's for a
    float32 model. The sum of squares and rsqrt as in layer_norm (|x| < 2^(31 - f))."""
    dims = _norm_dims(x, normalized_shape, "rms_norm")
    n = math.prod(x.shape[i] for i in dims)
    eps = float(np.finfo(np.float32).eps) if eps is None else float(eps)
    y = _times_rsqrt_sumsq(at_f(x), dims, math.sqrt(n), n * eps)
    return y if weight is None else y * weight


def _norm_dims(x: SharedTensor, normalized_shape, what: str) -> tuple:
    """The trailing dims a layer_norm or rms_norm over `normalized_shape` reduces (ShapeError if x does
    not end in them)."""
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != shape:
        raise ShapeError(f"{what} over {list(shape)} needs an input ending in those dims, got shape {x.shape}")
    return tuple(range(x.ndim - k, x.ndim))


def _times_rsqrt_sumsq(d: SharedTensor, dims: tuple, scale: float, add: float) -> SharedTensor:
    """d * scale / sqrt(sum over dims of d^2 + add), with the sum held at 2f - log2 n - 4
    bits (n the number of summed elements: the sum cannot wrap) rather than a mean at f
    bits, and rsqrt over every such sum the format forms, its result kept at up
    to 20 more fractional bits with `scale` in its public weights (layer_norm: sqrt(n),
    n eps; normalize: 1, eps^2). Needs |result| <= sqrt(n)."""
    rt, f = d.rt, d.rt.precision
    n = math.prod(d.shape[i] for i in dims) if dims else 1
    d = at_f(d)
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
    r = rsqrt_scaled(SharedTensor(rt, S, fa), lo, hi, extra, scale=scale, scale_bits=sb, wide=True)[0]
    with rt.scope("mul"):  # at the share level: SharedTensor's * would first cut r back to f bits
        return SharedTensor(rt, beaver.mul(rt, d.share, np.broadcast_to(r.share, d.shape), f + extra), f)


@capped(24)
def normalize(x: SharedTensor, dim: int = 1, eps: float = 1e-12) -> SharedTensor:
    """torch.nn.functional.normalize with p = 2: x / max(||x||, eps) along dim (for norms
    above 2^-f; the sum of squares at 2f - log2 n - 4 bits as in layer_norm)."""
    x = at_f(x)
    d = dim_index(dim, x.ndim)
    return _times_rsqrt_sumsq(x, (d,), 1.0, eps * eps)


@capped(24)
def group_norm(x: SharedTensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> SharedTensor:
    """torch.nn.functional.group_norm on (N, C, *): layer_norm over each group's C/G
    channels and positions, then the per-channel weight and bias (instance norm: G = C)."""
    if x.ndim < 2 or int(num_groups) <= 0 or x.shape[1] % int(num_groups):
        raise ShapeError(f"group_norm: {num_groups} groups need an (N, C, ...) input with C divisible by them, "
                         f"got {x.shape}")
    shape, g = tuple(x.shape), int(num_groups)
    per = math.prod(shape[1:]) // g
    y = layer_norm(x.reshape(shape[0], g, per), per, eps=eps).reshape(*shape)
    if weight is not None:
        y = y * per_channel(weight, len(shape))
    if bias is not None:
        y = y + per_channel(bias, len(shape))
    return y


def per_channel(v, ndim: int):
    """A (C,) weight as (1, C, 1, ...) for an input of `ndim` dims (shared or public)."""
    shape = (1, -1) + (1,) * (ndim - 2)
    return v.reshape(*shape) if isinstance(v, SharedTensor) else np.asarray(v, np.float64).reshape(shape)

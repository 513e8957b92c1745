"""Comparisons and everything built from the exact less-than-zero (protocols.comparison).

All results are exact (no probabilistic failure). Comparison results are shared 0/1
tensors with 0 fractional bits, so multiplying by them needs no truncation.
Rounds: ltz, <, >, <=, >=, relu, abs, sign, clamp, == take 7 (one batched ltz);
where takes 1 (a Beaver product); max/min/argmax over k elements take 7 ceil(log2 k);
maxpool2d with a k x k window takes 7 ceil(log2 k^2).
"""
from __future__ import annotations

import numpy as np

from mpcrt import fixedpoint
from mpcrt.errors import ShapeError
from mpcrt.protocols import comparison, powers
from mpcrt.protocols.rounds import run
from mpcrt.tensor import SharedTensor, cat


def _ltz_many(parts: list[SharedTensor], muls: list[SharedTensor | None] | None = None):
    """ltz of several same-fbits tensors in one batched run (7 rounds for all)."""
    rt = parts[0].rt
    flat = np.concatenate([p.share.ravel() for p in parts])
    m = []
    if muls is not None:
        m = [np.concatenate([(q if q is not None else p).share.ravel() for p, q in zip(parts, muls)])]
    with rt.scope("ltz"):
        bit, prods = comparison.ltz(rt, flat, m)
    out, prod_out, off = [], [], 0
    for p in parts:
        k = p.share.size
        out.append(SharedTensor(rt, bit[off : off + k].reshape(p.shape), 0))
        if prods:
            prod_out.append(SharedTensor(rt, prods[0][off : off + k].reshape(p.shape), p.fbits))
        off += k
    return out, prod_out


def _ltz_at(x: SharedTensor, ts: list[int], muls: list[SharedTensor] | None = None, same: SharedTensor | None = None):
    """[x < t] for public ring values t (in x's units), rows of one comparison run that
    share x's masked opening (protocols.comparison thresholds): 8 bytes per element per
    peer less for each row after the first. muls: one tensor per row (x's shape) to
    multiply by that row's bit, fused; or `same`: one tensor every row's bit multiplies
    (one masked opening of it for all rows)."""
    rt = x.rt
    if same is not None:
        muls, ys = [same] * len(ts), lambda: [same.share]
    else:
        ys = (lambda: [np.stack([q.share for q in muls])]) if muls else None
    with rt.scope("ltz"):
        bits, prods = run(rt, comparison.ltz_steps(rt, x.share, 1 if muls else 0, ys, thresholds=ts,
                                                   shared_y=same is not None))[0]
    out = [SharedTensor(rt, bits[i, ...], 0) for i in range(len(ts))]  # [i, ...]: 0-d arrays stay arrays
    return out, [SharedTensor(rt, prods[0][i, ...], q.fbits) for i, q in enumerate(muls)] if muls else []


def _diff(x: SharedTensor, y) -> SharedTensor:
    return x - y


def ltz(x: SharedTensor) -> SharedTensor:
    """[x < 0] as a shared 0/1 tensor."""
    return _ltz_many([x])[0][0]


def lt(x: SharedTensor, y) -> SharedTensor:
    return ltz(_diff(x, y))


def gt(x: SharedTensor, y) -> SharedTensor:
    return ltz(-_diff(x, y))


def le(x: SharedTensor, y) -> SharedTensor:
    return 1 - gt(x, y)


def ge(x: SharedTensor, y) -> SharedTensor:
    return 1 - lt(x, y)


def eq(x: SharedTensor, y) -> SharedTensor:
    """[x == y] = [d < 1 ulp] - [d < 0] for d = x - y: one run, one shared opening."""
    (below, upto), _ = _ltz_at(_diff(x, y), [0, 1])
    return upto - below


def ne(x: SharedTensor, y) -> SharedTensor:
    return 1 - eq(x, y)


def relu(x: SharedTensor) -> SharedTensor:
    """max(x, 0) = x - [x < 0] x, the product fused into the comparison (7 rounds).

    An x with more fractional bits than the runtime's (an untruncated product) is
    truncated inside the same 7 rounds: the sign of x is that of its truncation, so the
    comparison runs on x while the truncation's opening shares round 1, and the fused
    product takes the truncated value."""
    rt, f = x.rt, x.rt.precision
    if x.fbits <= f:
        _, (bx,) = _ltz_many([x], [x])
        return x - bx
    hold = {}

    def trunc():
        (t,) = yield from powers.trunc_pow_steps(rt, x.share, x.fbits - f, 1)
        hold["t"] = t
        return t

    with rt.scope("relu"):
        _, (_, (bt,)) = run(rt, trunc(), comparison.ltz_steps(rt, x.share, 1, lambda: [hold["t"]]))
    return SharedTensor(rt, hold["t"] - bt, f)


def abs_(x: SharedTensor) -> SharedTensor:
    _, (bx,) = _ltz_many([x], [x])
    return x - 2 * bx


def sign(x: SharedTensor) -> SharedTensor:
    """-1, 0 or 1 like torch.sign: [x > 0] - [x < 0] = 1 - [x < 1 ulp] - [x < 0] (one run)."""
    (neg, upto), _ = _ltz_at(x, [0, 1])
    return 1 - upto - neg


def where(cond, a, b) -> SharedTensor:
    """cond ? a : b elementwise; cond a shared 0/1 tensor or a public boolean array."""
    if not isinstance(cond, SharedTensor):
        c = np.asarray(fixedpoint.to_numpy(cond), bool)
        if isinstance(a, SharedTensor):
            return a * c.astype(np.int64) + (b * (~c).astype(np.int64) if isinstance(b, SharedTensor) else _public_mask(a, b, ~c))
        if isinstance(b, SharedTensor):
            return b * (~c).astype(np.int64) + _public_mask(b, a, c)
        raise TypeError("where(): at least one of cond, a, b must be a SharedTensor")
    diff = (a - b) if isinstance(a, SharedTensor) else (-(b - a))
    return b + cond * diff if isinstance(b, SharedTensor) else cond * diff + b


def _public_mask(like: SharedTensor, value, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, fixedpoint.to_numpy(value), 0.0)


def clamp(x: SharedTensor, min=None, max=None) -> SharedTensor:
    """torch.clamp with public bounds: lo + relu(x - lo) - relu(x - hi), one batched run."""
    if min is None and max is None:
        return x
    if min is not None and max is not None:
        if np.any(np.asarray(min) > np.asarray(max)):  # torch: min(max(x, min), max) = max there
            m = np.minimum(np.asarray(min, np.float64), np.asarray(max, np.float64))
            min = float(m) if m.ndim == 0 else m
        lo, hi = x - min, x - max
        t = [int(fixedpoint.encode(v, x.fbits)) for v in (min, max)] if np.ndim(min) == 0 and np.ndim(max) == 0 else None
        if t is not None and all(ti == v * 2.0**x.fbits for ti, v in zip(t, (min, max))) and lo.fbits == x.fbits:
            # public scalars on x's grid: one shared opening of x
            (bl, bh), (pl, ph) = _ltz_at(x, t, same=x)  # b x for both bits, x opened masked once
            # b (x - t) = b x - b t, with t at x's precision: exact ring arithmetic
            blo = SharedTensor(x.rt, pl.share - bl.share * np.int64(t[0]), x.fbits)
            bhi = SharedTensor(x.rt, ph.share - bh.share * np.int64(t[1]), x.fbits)
        else:
            _, (blo, bhi) = _ltz_many([lo, hi], [lo, hi])
        return (lo - blo) - (hi - bhi) + min
    if min is not None:
        return relu(x - min) + min
    return -relu(max - x) + max


def clamp_excess(x: SharedTensor, bound: float) -> tuple[SharedTensor, SharedTensor]:
    """(clamp(x, -bound, bound), relu(x - bound)) from one comparison run (7 rounds):
    for functions that are x plus a bounded term beyond the bound (GELU, SiLU), so the
    bounded part never multiplies a huge x. `bound` must lie on x's fixed-point grid."""
    t = [int(fixedpoint.encode(v, x.fbits)) for v in (-bound, bound)]
    if any(ti != v * 2.0**x.fbits for ti, v in zip(t, (-bound, bound))):
        raise ValueError(f"clamp_excess: bound {bound} is not on the {x.fbits}-bit grid")
    (bl, bh), (pl, ph) = _ltz_at(x, t, same=x)
    relu_lo = (x + bound) - SharedTensor(x.rt, pl.share - bl.share * np.int64(t[0]), x.fbits)  # relu(x + bound)
    relu_hi = (x - bound) - SharedTensor(x.rt, ph.share - bh.share * np.int64(t[1]), x.fbits)  # relu(x - bound)
    return relu_lo - relu_hi - bound, relu_hi


def _pairwise_max(a: SharedTensor, b: SharedTensor) -> SharedTensor:
    """max(a, b) = b + relu(a - b), 7 rounds."""
    d = a - b
    _, (bd,) = _ltz_many([d], [d])
    return b + d - bd


def max_(x: SharedTensor, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
    """Largest element along `dim` (all elements if None) by a log-depth tree."""
    if dim is None:
        x, dim = x.reshape(-1), 0
    dim = dim % x.ndim
    if x.shape[dim] == 0:
        raise ShapeError("max() of an empty dimension")
    cur = x
    while cur.shape[dim] > 1:
        k = cur.shape[dim]
        h = k // 2
        a = cur[(slice(None),) * dim + (slice(0, h),)]
        b = cur[(slice(None),) * dim + (slice(h, 2 * h),)]
        m = _pairwise_max(a, b)
        if k % 2:
            m = cat([m, cur[(slice(None),) * dim + (slice(2 * h, k),)]], dim=dim)
        cur = m
    return cur if keepdim else cur.squeeze(dim)


def min_(x: SharedTensor, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
    return -max_(-x, dim, keepdim)


def _relu_diff(a: SharedTensor, b) -> SharedTensor:
    """relu(a - b) for a shared or public b, broadcasting (one ltz with the product fused)."""
    d = a - b
    _, (bd,) = _ltz_many([d], [d])
    return d - bd


def maximum(a: SharedTensor, b) -> SharedTensor:
    """Elementwise max(a, b) (torch.maximum) for a shared or public b, broadcasting: 7 rounds."""
    return _relu_diff(a, b) + b


def minimum(a: SharedTensor, b) -> SharedTensor:
    """Elementwise min(a, b) (torch.minimum): a - relu(a - b), 7 rounds."""
    return a - _relu_diff(a, b)


def max_with_indices(x: SharedTensor, dim: int, keepdim: bool = False) -> tuple[SharedTensor, SharedTensor]:
    """(values, indices) of the largest elements along `dim`, as torch.max(x, dim): one
    comparison tree serves both (the indices cost argmax's two extra runs)."""
    dim = dim % x.ndim if x.ndim else 0
    if x.ndim == 0:
        return x, SharedTensor(x.rt, np.zeros((), np.int64), 0)
    m = max_(x, dim, keepdim=True)
    idx = _first_index(x, m, dim, keepdim, one_hot=False)
    return (m if keepdim else m.squeeze(dim)), idx


def argmax(x: SharedTensor, dim: int | None = None, keepdim: bool = False, one_hot: bool = False) -> SharedTensor:
    """Index of the first largest element along `dim` (a shared integer), or its one-hot mask.

    Two comparison runs after the max: [x_i >= max] marks the maxima, and a prefix
    count keeps the first one, as torch.argmax does.
    """
    if dim is None:
        x, dim = x.reshape(-1), 0
    dim = dim % x.ndim
    m = max_(x, dim, keepdim=True)
    return _first_index(x, m, dim, keepdim, one_hot)


def _first_index(x: SharedTensor, m: SharedTensor, dim: int, keepdim: bool, one_hot: bool) -> SharedTensor:
    is_max = 1 - lt(x, m)  # fbits 0
    before = SharedTensor(x.rt, np.cumsum(is_max.share, axis=dim) - is_max.share, 0)
    # first maximum: is_max and no maximum before it (count < 1)
    (none_before,), (first,) = _ltz_many([before - 1], [is_max])
    if one_hot:
        return first
    idx = np.arange(x.shape[dim]).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    return SharedTensor(x.rt, (first.share * idx).sum(axis=dim, keepdims=keepdim), 0)


def _pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """torch's pooled length, and the extra padding at the end its last window needs
    (ceil_mode: a last, partial window, which must start inside the input or the left padding)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out, max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))


def maxpool2d(x: SharedTensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> SharedTensor:
    """torch.nn.functional.max_pool2d on NCHW (padding, and ceil_mode's partial last
    windows, count as -infinity)."""
    if x.ndim not in (3, 4):
        raise ShapeError(f"maxpool2d needs (N)CHW input, got {x.shape}")
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(0)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    st = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
    ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding)
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    oh, eh = _pool_size(x.shape[-2], kh, st[0], ph, dh, ceil_mode)
    ow, ew = _pool_size(x.shape[-1], kw, st[1], pw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ShapeError(f"maxpool2d: window {kh}x{kw} does not fit input {x.shape}")
    if ph or pw or eh or ew:
        neg = -fixedpoint.max_value(x.fbits) / 4 if x.fbits else -(2.0**40)
        x = x.pad((pw, pw + ew, ph, ph + eh), value=neg)
    windows = []
    for i in range(kh):
        for j in range(kw):
            windows.append(x[:, :, i * dh : i * dh + st[0] * (oh - 1) + 1 : st[0], j * dw : j * dw + st[1] * (ow - 1) + 1 : st[1]])
    from mpcrt.tensor import stack

    out = max_(stack(windows, dim=-1), dim=-1)
    return out.squeeze(0) if squeeze else out

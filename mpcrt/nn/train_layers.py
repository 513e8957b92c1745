"""Layers with a backward pass, on mpcrt.autograd Variables: what a trainable model runs.

Every function takes SharedTensors (Variables where a gradient is wanted), computes the
forward pass with the inference protocols, and records its backward on the tape.

* linear: y = x W^T + b; dx = g W, dW = g^T x, db = sum g (Beaver matmuls, 2 rounds each).
* conv2d (stride, padding, dilation, groups): dx is the transposed convolution, computed
  as a Beaver conv2d of g (dilated by the stride, zero-padded) with the spatially flipped,
  channel-swapped weight; dW is a Beaver conv2d of x (channels as batch) with g (batch as
  channels) at dilation = stride, so each opens only x and g, never an im2col matrix.
  groups > 1: dW takes every (in, out) channel pair from one conv and keeps the group's.
* max_pool2d: the window maximum by a comparison tree over adjacent pairs (ties keep the
  left one, so the winner is the first maximum, where torch routes the gradient); the
  winner's one-hot is the product of the tree's side bits (ceil(log2 levels) rounds of
  0-bit products, no further comparison); backward scatters one_hot * g into the windows
  (one Beaver product with the 0-bit mask, 1 round).
* avg_pool2d, adaptive_avg_pool2d: public linear maps; backward their adjoints (local,
  one public-product truncation).
* batch_norm (training mode): batch mean and variance over (N, H, W), rsqrt under MPC
  (protocols.reciprocal, relative error ~1e-4); backward by the closed form
  dx = r/M (M g' - sum g' - xhat sum(g' xhat)), g' = g w. Running statistics updated with
  the momentum, used in eval mode.
* dropout: the mask is [u < (1 - p) 2^m] for u = (sum of per-party uniform m-bit words)
  mod 2^m (no party knows it; random_bits: one comparison run, 7 rounds), scaled by
  1/(1 - p); backward g * mask.

Rounds: linear/conv forward 2, backward 4 (two Beaver products with truncation);
  max_pool2d k x k forward 7 ceil(log2 k^2) + ceil(log2 ceil(log2 k^2)), backward 1; batch_norm about 45
  forward (rsqrt) + 8 backward; dropout 7 + 1.
Bytes per element per peer: a Beaver product opens its two operands (8 bytes per element
  of each) and truncates its output (8 per element); comparisons 23.4 per element.
Dealer words per element: those of the Beaver products, truncations and comparisons run.
Error: each backward product truncates once (+-1 ulp); rsqrt relative ~1e-4.
Reference: docs/design.md, 'Training'.
"""
from __future__ import annotations

import numpy as np

from mpcrt.autograd import Variable, is_grad_enabled, record, relu
from mpcrt.errors import ShapeError
from mpcrt.kernels.prg import PRG, new_seed
from mpcrt.nn.layers import SharedOps
from mpcrt.protocols import compare, fixedpoint, ordering, reciprocal
from mpcrt.tensor import SharedTensor

__all__ = ["linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "dropout",
           "random_bits", "relu"]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return int(v), int(v)


def _plain(t):
    return SharedTensor(t.rt, t.share, t.fbits) if isinstance(t, SharedTensor) else t


def _needs(v) -> bool:
    """Whether v wants a gradient (backward functions run with grad recording off: they ask _wants)."""
    return _wants(v) and is_grad_enabled()


def _wants(v) -> bool:
    return isinstance(v, Variable) and v.requires_grad


# ------------------------------------------------------------------ linear
def linear(x: SharedTensor, weight: SharedTensor, bias: SharedTensor | None = None) -> SharedTensor:
    """x W^T + b (torch.nn.functional.linear)."""
    y = x @ weight.T
    return y + bias if bias is not None else y


# ------------------------------------------------------------------ conv2d
def conv2d(x: SharedTensor, weight: SharedTensor, bias: SharedTensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> SharedTensor:
    """torch.nn.functional.conv2d with shared x and weight, gradients for both."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    xp, wp = _plain(x).to_precision(), _plain(weight).to_precision()
    y = xp.conv2d(wp, s, p, d, groups)

    def back(g):
        g = _plain(g).to_precision()
        gx = _conv_input_grad(g, wp, xp.shape, s, p, d, groups) if _wants(x) else None
        gw = _conv_weight_grad(g, xp, wp.shape, s, p, d, groups) if _wants(weight) else None
        return gx, gw

    y = record(y, (x, weight), back, "conv2d")
    return y + bias.reshape(1, -1, 1, 1) if bias is not None else y


def _conv_input_grad(g: SharedTensor, w: SharedTensor, xshape: tuple, s, p, d, groups: int) -> SharedTensor:
    """conv_transpose2d(g, w): g dilated by the stride and padded, convolved with the flipped weight."""
    n, o, oh, ow = g.shape
    _, c, h, wd = xshape
    cg = c // groups
    kh, kw = w.shape[-2:]
    z = np.zeros((n, o, (oh - 1) * s[0] + 1, (ow - 1) * s[1] + 1), np.int64)
    z[:, :, :: s[0], :: s[1]] = g.share
    pads = []
    for size, k, st, pd, dl, out in ((h, kh, s[0], p[0], d[0], oh), (wd, kw, s[1], p[1], d[1], ow)):
        lo = dl * (k - 1) - pd
        extra = size - ((out - 1) * st - 2 * pd + dl * (k - 1) + 1)
        pads.append((lo, lo + extra))
    z = _pad_or_crop(z, pads)
    wt = w.share.reshape(groups, o // groups, cg, kh, kw).swapaxes(1, 2).reshape(c, o // groups, kh, kw)
    wt = np.ascontiguousarray(wt[:, :, ::-1, ::-1])
    out = SharedTensor(g.rt, z, g.fbits).conv2d(SharedTensor(g.rt, wt, w.fbits), 1, 0, d, groups)
    if out.shape != tuple(xshape):
        raise ShapeError(f"conv2d backward: input gradient {out.shape}, expected {tuple(xshape)}")
    return out


def _pad_or_crop(z: np.ndarray, pads) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) the last two dims by (before, after) pairs."""
    widths = [(0, 0), (0, 0)] + [(max(0, a), max(0, b)) for a, b in pads]
    z = np.pad(z, widths)
    sl = [slice(None), slice(None)]
    for a, b in pads:
        sl.append(slice(max(0, -a), z.shape[len(sl)] - max(0, -b)))
    return z[tuple(sl)]


def _conv_weight_grad(g: SharedTensor, x: SharedTensor, wshape: tuple, s, p, d, groups: int) -> SharedTensor:
    """dW[o, c, i, j] = sum_{n,p,q} g[n, o, p, q] x_pad[n, c, p s + i d, q s + j d]: one
    conv of x^T (C, N, H, W) with g^T (O, N, OH, OW) at stride d and dilation s."""
    o, cg, kh, kw = wshape
    xt = x.pad((p[1], p[1], p[0], p[0])).permute(1, 0, 2, 3) if any(p) else x.permute(1, 0, 2, 3)
    gt = g.permute(1, 0, 2, 3)
    full = xt.contiguous().conv2d(gt.contiguous(), d, 0, s, 1)  # (C, O, >= kh, >= kw)
    full = full[:, :, :kh, :kw].permute(1, 0, 2, 3)  # (O, C, kh, kw)
    if groups == 1:
        return full.contiguous()
    og = o // groups
    cols = (np.arange(o) // og)[:, None] * cg + np.arange(cg)[None, :]  # each output channel's inputs
    return SharedTensor(g.rt, np.ascontiguousarray(full.share[np.arange(o)[:, None], cols]), full.fbits)


# ------------------------------------------------------------------ pooling
def _windows(share: np.ndarray, k, s, d, oh: int, ow: int) -> np.ndarray:
    """(N, C, OH, OW, kh*kw) view-copies of the k x k windows (local)."""
    out = []
    for i in range(k[0]):
        for j in range(k[1]):
            out.append(share[:, :, i * d[0]: i * d[0] + s[0] * (oh - 1) + 1: s[0],
                             j * d[1]: j * d[1] + s[1] * (ow - 1) + 1: s[1]])
    return np.stack(out, axis=-1)


def _scatter(win: np.ndarray, shape: tuple, k, s, d, oh: int, ow: int) -> np.ndarray:
    """Adjoint of _windows: add each window element back to its input position (exact ring adds)."""
    z = np.zeros(shape, np.int64)
    t = 0
    for i in range(k[0]):
        for j in range(k[1]):
            z[:, :, i * d[0]: i * d[0] + s[0] * (oh - 1) + 1: s[0],
              j * d[1]: j * d[1] + s[1] * (ow - 1) + 1: s[1]] += win[..., t]
            t += 1
    return z


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode):
    if x.ndim != 4:
        raise ShapeError(f"pooling needs an NCHW input, got shape {x.shape}")
    k = _pair(kernel_size)
    s = k if stride is None or stride == () else _pair(stride)
    p, d = _pair(padding), _pair(dilation)
    oh, eh = ordering._pool_size(x.shape[2], k[0], s[0], p[0], d[0], ceil_mode)
    ow, ew = ordering._pool_size(x.shape[3], k[1], s[1], p[1], d[1], ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ShapeError(f"pool window {k} does not fit input {x.shape}")
    return k, s, p, d, oh, ow, (p[1], p[1] + ew, p[0], p[0] + eh)


def max_pool2d(x: SharedTensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
    """torch.nn.functional.max_pool2d; the gradient goes to each window's first maximum."""
    k, s, p, d, oh, ow, pad = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    xs = _plain(x).to_precision()
    if any(pad):
        xs = xs.pad(pad, value=-fixedpoint.max_value(xs.fbits) / 4)
    win = SharedTensor(x.rt, _windows(xs.share, k, s, d, oh, ow), xs.fbits)
    if not _needs(x):
        return ordering.max_(win, dim=-1)
    m, first = max_with_first_one_hot(win)
    xshape, pshape = x.shape, xs.shape

    def back(g):
        gw = first * _plain(g).to_precision().unsqueeze(-1)  # 0-bit mask: no truncation
        z = _scatter(gw.share, pshape, k, s, d, oh, ow)
        crop = (slice(None), slice(None), slice(pad[2], pad[2] + xshape[2]), slice(pad[0], pad[0] + xshape[3]))
        return (SharedTensor(g.rt, np.ascontiguousarray(z[crop]), gw.fbits),)

    return record(m, (x,), back, "max_pool2d")


def max_with_first_one_hot(win: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
    """(max over the last dim, one-hot of its first maximum) by a tree over adjacent pairs.

    Level l compares neighbours (left - right < 0: the right one wins; a tie keeps the left,
    so a group's winner is its first maximum), one comparison with the product fused
    (7 rounds) on half the remaining values. Each element's one-hot entry is the product,
    over the levels, of its group's side bit there (1 - b or b; 1 for an odd group
    passed through): ceil(log2 levels) rounds of Beaver products of 0-bit tensors at the
    end, instead of argmax's two more comparisons over every element."""
    rt = win.rt
    k = win.shape[-1]
    cur, pos = win, np.arange(k)  # pos[t]: element t's group at the current level
    sides = []  # per level: (K,) factor of each element: a shared bit column or public 1
    while cur.shape[-1] > 1:
        n = cur.shape[-1]
        h = n // 2
        left, right = cur[..., 0:2 * h:2], cur[..., 1:2 * h:2]
        d = left - right
        (b,), (bd,) = compare.ltz_many([d], [d])  # b = [left < right]
        top = left - bd  # max(left, right)
        group = pos // 2
        cols = [None if g >= h else (1 - b[..., g:g + 1]) if p % 2 == 0 else b[..., g:g + 1]
                for p, g in zip(pos, group)]
        sides.append(cols)
        cur = top if n % 2 == 0 else _cat_last([top, cur[..., n - 1:n]])
        pos = group
    factors = [_cat_last([c if c is not None else _ones(rt, win.shape[:-1] + (1,)) for c in cols])
               for cols in sides]
    while len(factors) > 1:  # a product tree over the levels
        factors = [factors[i] * factors[i + 1] if i + 1 < len(factors) else factors[i]
                   for i in range(0, len(factors), 2)]
    one_hot = factors[0] if factors else _ones(rt, win.shape)
    return cur.squeeze(-1), one_hot


def _cat_last(parts: list) -> SharedTensor:
    from mpcrt.tensor import cat

    return cat(parts, dim=-1)


def _ones(rt, shape: tuple) -> SharedTensor:
    return SharedTensor(rt, np.full(shape, 1 if rt.rank == 0 else 0, np.int64), 0)


def avg_pool2d(x: SharedTensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    """torch.nn.functional.avg_pool2d: exact window sums times a public 1/count."""
    k, s, p, d, oh, ow, pad = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode)
    factor = _avg_factor(x.shape, k, s, p, ceil_mode, count_include_pad, divisor_override)
    xs = _plain(x)
    xp = xs.pad(pad) if any(pad) else xs
    y = SharedTensor(x.rt, _windows(xp.share, k, s, d, oh, ow).sum(-1), xs.fbits) * factor
    xshape, pshape = x.shape, xp.shape

    def back(g):
        gf = _plain(g).to_precision() * factor
        win = np.broadcast_to(gf.share[..., None], gf.shape + (k[0] * k[1],))
        z = _scatter(win, pshape, k, s, d, oh, ow)
        crop = (slice(None), slice(None), slice(pad[2], pad[2] + xshape[2]), slice(pad[0], pad[0] + xshape[3]))
        return (SharedTensor(g.rt, np.ascontiguousarray(z[crop]), gf.fbits),)

    return record(y, (x,), back, "avg_pool2d")


def _avg_factor(shape, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """Public per-position 1/divisor (torch's, from torch on a tensor of ones), a scalar where uniform."""
    import torch
    import torch.nn.functional as F

    ones = torch.ones(1, 1, shape[2], shape[3], dtype=torch.float64)
    avg1 = F.avg_pool2d(ones, k, s, p, ceil_mode, count_include_pad, divisor_override)
    cnt = F.avg_pool2d(ones, k, s, p, ceil_mode, True, 1)
    f = (avg1 / cnt)[0, 0].numpy()
    return float(f.flat[0]) if np.all(f == f.flat[0]) else f


class _Pools:
    """What the inference layer's adaptive pooling calls back into: this module's avg_pool2d."""

    avg_pool2d = staticmethod(lambda x, k: avg_pool2d(x, k))


def adaptive_avg_pool2d(x: SharedTensor, output_size):
    """torch.nn.functional.adaptive_avg_pool2d: the inference layer's code (a mean, an
    avg_pool2d or two public 0/1 matmuls), whose every op records on a Variable."""
    return SharedOps.adaptive_avg_pool2d(_Pools(), x, output_size)


# ------------------------------------------------------------------ batch norm
def batch_norm(x: SharedTensor, weight, bias, running: dict | None = None, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5):
    """torch.nn.functional.batch_norm over dim 1 of an (N, C, ...) input. `running`: a dict
    with shared "mean" and "var" (updated in place in training mode, used otherwise)."""
    shp = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    dims = (0,) + tuple(range(2, x.ndim))
    xs = _plain(x).to_precision()
    if not training:
        if running is None:
            raise ShapeError("batch_norm in eval mode needs running statistics")
        r = reciprocal.rsqrt(running["var"] + eps)
        scale = r * weight if weight is not None else r
        out = (x - running["mean"].reshape(shp)) * scale.reshape(shp)
        return out + bias.reshape(shp) if bias is not None else out
    m = x.numel() // x.shape[1]
    mean = xs.mean(dim=dims, keepdim=True)
    d = xs - mean
    var = (d * d).mean(dim=dims, keepdim=True)
    r = reciprocal.rsqrt(var + eps)
    xhat = d * r
    if running is not None:
        running["mean"] = running["mean"] * (1 - momentum) + mean.reshape(-1) * momentum
        running["var"] = running["var"] * (1 - momentum) + var.reshape(-1) * (momentum * m / max(m - 1, 1))

    def back(g):  # g: the gradient of xhat
        g = _plain(g).to_precision()
        s1 = g.sum(dim=dims, keepdim=True)
        s2 = (g * xhat).sum(dim=dims, keepdim=True)
        return ((g * m - s1 - xhat * s2) * (r * (1.0 / m)),)

    y = record(xhat, (x,), back, "batch_norm")
    if weight is not None:
        y = y * weight.reshape(shp)
    return y + bias.reshape(shp) if bias is not None else y


# ------------------------------------------------------------------ dropout
def random_bits(rt, shape: tuple, p: float = 0.5) -> SharedTensor:
    """A shared 0/1 tensor, each entry 1 with probability p (to 2^-m), that no party knows.

    Party i draws s_i uniform in [0, 2^m) (AES-CTR from a fresh seed; m = 61 - ceil(log2 N),
    so S = sum s_i < 2^62 never wraps); u = S mod 2^m is uniform as soon as one party's s_i
    is. [u < p 2^m] = sum_j ([S < (j + p) 2^m] - [S < j 2^m]) over j = 0..N-1 (S lies in
    [j 2^m, (j + 1) 2^m) for exactly one j): 2N - 1 threshold rows of one comparison run
    on one masked opening of S (7 rounds)."""
    n = int(np.prod(shape))
    m = 61 - max(1, int(np.ceil(np.log2(rt.world_size))))
    words = PRG(new_seed()).words(0, n).copy().reshape(shape) & np.int64((1 << m) - 1)
    s = SharedTensor(rt, words, 0)
    q = int(round(p * (1 << m)))
    ts = [j * (1 << m) + q for j in range(rt.world_size)] + [j * (1 << m) for j in range(1, rt.world_size)]
    bits, _ = compare.ltz_at(s, ts)
    out = bits[0]
    for b in bits[1:rt.world_size]:
        out = out + b
    for b in bits[rt.world_size:]:
        out = out - b
    return out


def dropout(x: SharedTensor, p: float = 0.5, training: bool = True) -> SharedTensor:
    """torch.nn.functional.dropout: x * mask / (1 - p), the mask from random_bits."""
    if not training or p == 0:
        return x
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = random_bits(x.rt, x.shape, 1 - p)
    return x * keep * (1.0 / (1 - p))


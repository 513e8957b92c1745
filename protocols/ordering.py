"""Orderings of SharedTensors: max, min, argmax, argmin, maximum, minimum, maxpool2d.

max/min along a dim by a log-depth tree of pairwise maxima, max(a, b) = b + relu(a - b)
(each level one comparison with its product fused); argmax marks the maxima with one
more comparison and keeps the first by a prefix count (a third); maxpool2d takes the
max over the k*k shifted windows.

Rounds: max/min over k elements 7 ceil(log2 k); with the indices (max(dim), argmax) 14
  more (max over 64 with indices: 56, measured); maxpool2d with a k x k window
  7 ceil(log2 k^2); maximum/minimum 7. By FSS (two parties, protocols.compare): 1 per
  tree level (max over k: ceil(log2 k); maxpool2d k x k: ceil(log2 k^2)), 3 more for
  the indices; maximum/minimum 1.
Bytes per element per peer: 31.4 per pairwise max (a comparison with its product fused,
  protocols.compare), on half the remaining elements per level: about 31.4 per input
  element for the values; 86.4 measured for max over rows of 64 with the indices; each
  of a party's N - 1 peers gets this. By FSS: 8 per pairwise max.
Dealer words per element: 8.9 per pairwise max (a comparison with one fused product);
  independent of N. By FSS: 2064 bytes to each party per pairwise max (protocols.fss).
Error: none (exact).
Reference: docs/design.md, 'Protocols' (comparison).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from mpcrt.errors import DimError, ShapeError
from mpcrt.protocols import fixedpoint
from mpcrt.protocols.compare import ltz_many, lt
from mpcrt.protocols.shared import SharedTensor, cat, dim_index, stack


class MinMax(NamedTuple):
    """What `x.max(dim)` / `x.min(dim)` return, as torch.return_types.max: values and
    the (shared, integer) indices of the first extreme element along dim."""

    values: SharedTensor
    indices: SharedTensor


def max_like_torch(x: SharedTensor, dim=None, keepdim: bool = False):
    """As torch.max: `x.max()` the largest element; `x.max(dim)` a named pair
    (values, indices) along dim, the first index on ties; `x.max(other)` the
    elementwise maximum with a shared or public tensor (as torch.maximum)."""
    if dim is None:
        return max_(x, None, keepdim)
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        return MinMax(*max_with_indices(x, int(dim), keepdim))
    _tensor_operand(dim, "max")
    return maximum(x, dim)


def min_like_torch(x: SharedTensor, dim=None, keepdim: bool = False):
    """As torch.min: the smallest element, (values, indices) along dim, or the
    elementwise minimum with another tensor."""
    if dim is None:
        return min_(x, None, keepdim)
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        v, i = max_with_indices(-x, int(dim), keepdim)
        return MinMax(-v, i)
    _tensor_operand(dim, "min")
    return minimum(x, dim)


def _tensor_operand(other, name: str) -> None:
    """x.max(other) is torch.maximum only for a tensor `other`: a bool or a real there is a bad dim."""
    if isinstance(other, (bool, numbers.Number)):
        raise DimError(f"{name}(dim={other!r}): dim must be an integer (an elementwise {name} with a number: "
                       f"x.{name}imum(value) or x.clamp)")


def argmin(x: SharedTensor, dim: int | None = None, keepdim: bool = False, one_hot: bool = False) -> SharedTensor:
    """Index of the first smallest element along `dim` (a shared integer), or its one-hot mask."""
    return argmax(-x, dim, keepdim, one_hot)


def _pairwise_max(a: SharedTensor, b: SharedTensor) -> SharedTensor:
    """max(a, b) = b + relu(a - b), 7 rounds."""
    d = a - b
    _, (bd,) = ltz_many([d], [d])
    return b + d - bd


def max_(x: SharedTensor, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
    """Largest element along `dim` (all elements if None) by a log-depth tree."""
    if dim is None:
        x, dim = x.reshape(-1), 0
    dim = dim_index(dim, x.ndim)
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
    _, (bd,) = ltz_many([d], [d])
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
    dim = dim_index(dim, x.ndim)
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
    if dim is None:  # over all elements; torch's keepdim then keeps every dim, as size 1
        i = argmax(x.reshape(-1), 0, keepdim and one_hot, one_hot)
        return i.reshape(*(1,) * x.ndim) if keepdim and not one_hot else i
    dim = dim_index(dim, x.ndim)
    m = max_(x, dim, keepdim=True)
    return _first_index(x, m, dim, keepdim, one_hot)


def _first_index(x: SharedTensor, m: SharedTensor, dim: int, keepdim: bool, one_hot: bool) -> SharedTensor:
    is_max = 1 - lt(x, m)  # fbits 0
    before = SharedTensor(x.rt, np.cumsum(is_max.share, axis=dim) - is_max.share, 0)
    # first maximum: is_max and no maximum before it (count < 1)
    (none_before,), (first,) = ltz_many([before - 1], [is_max])
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


def maxpool2d(x: SharedTensor, kernel_size, stride=None, padding=0, dilation=1,
              ceil_mode: bool = False) -> SharedTensor:
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
            rows = slice(i * dh, i * dh + st[0] * (oh - 1) + 1, st[0])
            windows.append(x[:, :, rows, j * dw : j * dw + st[1] * (ow - 1) + 1 : st[1]])
    out = max_(stack(windows, dim=-1), dim=-1)
    return out.squeeze(0) if squeeze else out

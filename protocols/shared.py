"""SharedTensor: one party's additive share of a fixed-point tensor, with a PyTorch-like API.

A SharedTensor holds this party's int64 share and `fbits`, the number of fractional
bits of its encoding: the runtime precision f for reals, 0 for tensors known to hold
integers (comparison results, counts). Products of an f-bit and a 0-bit tensor need
no truncation. Shape operations (reshape, transpose, indexing, cat, ...) are local
and free; arithmetic follows torch broadcasting.

This module holds the tensor's local and linear algebra: +, -, Beaver-based * and @
(protocols.beaver), conv2d, truncation to the runtime precision (protocols.truncation),
reveal, shape operations and indexing, and cat, stack and where. The methods backed
by the other protocols (comparisons, relu, exp, softmax, norms, activations, ...) are
attached to the class in one place, mpcrt.tensor's METHODS table.

Rounds: 0 for +, -, public integer products and shape operations; 1 for a shared
  product (2 with the truncation of a real product: one fused tuple, protocols.beaver),
  1 for a public real product's truncation, 1 for reveal.
Bytes per element per peer: a shared product 8 (|x| + |y|) (+ 8 |z| truncating); a
  truncation 8 |z|; reveal 8; for every N (each of the N - 1 peers).
Dealer words per element: protocols.beaver's, protocols.truncation's and protocols.division's;
  independent of N.
Error: +1 ulp at most per truncation. A public real scalar c multiplies as (x a) / b, a / b the closest
  fraction with b <= 2^40 (protocols.division): floor + {0, 1} ulp + |x| |c - a / b| (1/3 is exact), so
  mean() and x / d divide exactly; public real arrays keep 13 significant bits (PUBLIC_BITS).
Reference: docs/design.md, 'Protocols' (Beaver products, truncation).
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Sequence

import numpy as np

from mpcrt.errors import DimError, SecretValueError, ShapeError
from mpcrt.kernels import ring
from mpcrt.protocols import beaver, division, fixedpoint, truncation


def dim_index(dim: int, ndim: int) -> int:
    """`dim` as an index in [0, ndim) (negative counts from the end), as torch checks it: a 0-d
    tensor takes -1 and 0; anything else outside [-ndim, ndim) raises DimError."""
    n = max(ndim, 1)
    if not -n <= _checked_int(dim) < n:
        raise DimError(f"dim {dim} is out of range for a {ndim}-d tensor: use a dim in [{-n}, {n - 1}]")
    return int(dim) % n


class SharedTensor:
    __array_priority__ = 1000  # numpy defers `ndarray * SharedTensor` to us
    __slots__ = ("rt", "share", "fbits")

    def __init__(self, rt, share: np.ndarray, fbits: int):
        self.rt = rt
        # a numpy scalar (what 0-d arithmetic returns) becomes a 0-d array: ring arithmetic
        # on arrays wraps silently, on scalars numpy warns of overflow
        self.share = share if isinstance(share, np.ndarray) else np.asarray(share, np.int64)
        self.fbits = int(fbits)

    # ------------------------------------------------------------ metadata
    @property
    def shape(self) -> tuple:
        return tuple(self.share.shape)

    @property
    def ndim(self) -> int:
        return self.share.ndim

    def dim(self) -> int:
        return self.share.ndim

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.share.size)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d SharedTensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        raise SecretValueError("the truth value of a SharedTensor is secret, so Python cannot branch on it: select "
                               "with mpcrt.where(cond, a, b) (or a multiply by the 0/1 tensor), or reveal() it first")

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d SharedTensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:  # never prints the share
        return f"SharedTensor(shape={self.shape}, fbits={self.fbits}, party {self.rt.rank} of {self.rt.world_size})"

    def _new(self, share: np.ndarray, fbits: int | None = None) -> "SharedTensor":
        return SharedTensor(self.rt, share, self.fbits if fbits is None else fbits)

    def to_precision(self) -> "SharedTensor":
        """This tensor with at most the runtime's fractional bits (truncates, 1 round, if it
        carries more: results of `matmul(..., truncate=False)` keep 2f bits until needed)."""
        f = self.rt.precision
        if self.fbits <= f:
            return self
        with self.rt.scope("trunc"):
            return self._new(truncation.truncate(self.rt, self.share, self.fbits - f), f)

    # --------------------------------------------------------------- reveal
    def reveal(self, to: int | None = None, dtype=np.float64) -> np.ndarray | None:
        """The plaintext: on every party (to=None) or only on party `to` (None elsewhere)."""
        with self.rt.scope("reveal"):
            if to is None:
                (v,) = self.rt.open([self.share], "reveal")
            else:
                if isinstance(to, bool) or not isinstance(to, (int, np.integer)) or not 0 <= to < self.rt.world_size:
                    raise ValueError(f"reveal(to=...) must be a party rank in 0..{self.rt.world_size - 1}, got {to!r}")
                v = self.rt.open_to(self.share, int(to))
                if v is None:
                    return None
        return fixedpoint.decode(v, self.fbits, dtype)

    # -------------------------------------------------------- public values
    def _encode_public(self, v, fbits: int) -> np.ndarray:
        return fixedpoint.encode(v, fbits)

    @staticmethod
    def _integer_public(v) -> np.ndarray | None:
        """v as an int64 array if it holds only (small) integers, else None."""
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return np.int64(v) if abs(int(v)) < 2**40 else None
        a = fixedpoint.to_numpy(v)
        if a.dtype == np.bool_:
            return a.astype(np.int64)
        if np.issubdtype(a.dtype, np.integer):
            return a.astype(np.int64)
        if np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)) \
                and np.all(np.abs(a) < 2**40):
            return a.astype(np.int64)
        return None

    def _at_f_for(self, value) -> "SharedTensor":
        """self, moved to the runtime's f fractional bits where it holds integers (a 0/1 mask, a count,
        an index: fewer bits) and the public `value` it meets is not an integer; else self."""
        f = self.rt.precision
        if self.fbits < f and self._integer_public(value) is None:
            return self._new(self.share << np.int64(f - self.fbits), f)
        return self

    def _align(self, other: "SharedTensor") -> tuple[np.ndarray, np.ndarray, int]:
        fa, fb = self.fbits, other.fbits
        if fa == fb:
            return self.share, other.share, fa
        if fa < fb:
            return self.share << np.int64(fb - fa), other.share, fb
        return self.share, other.share << np.int64(fa - fb), fa

    # ------------------------------------------------------------- add, sub
    def _bshape(self, other_shape) -> tuple:
        try:
            return tuple(np.broadcast_shapes(self.shape, tuple(other_shape)))
        except ValueError:
            raise ShapeError(f"shapes {self.shape} and {tuple(other_shape)} do not broadcast together") from None

    def _linear(self, other, sign: int) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            self._bshape(other.shape)
            a, b, f = self._align(other)
            return self._new(a + b if sign > 0 else a - b, f)
        wide = self._at_f_for(other)  # a 0/1 mask or count minus 0.5: at f bits
        if wide is not self:
            return wide._linear(other, sign)
        p = self._encode_public(other, self.fbits)
        shape = self._bshape(np.shape(p))
        if self.rt.rank == 0:
            return self._new(self.share + p if sign > 0 else self.share - p)
        return self._new(np.broadcast_to(self.share, shape).copy())

    def __add__(self, other) -> "SharedTensor":
        return self._linear(other, 1)

    __radd__ = __add__

    def __neg__(self) -> "SharedTensor":
        return self._new(-self.share)

    def __sub__(self, other) -> "SharedTensor":
        return self._linear(other, -1)

    def __rsub__(self, other) -> "SharedTensor":
        return (-self) + other

    # ------------------------------------------------------------- multiply
    def _shift_for(self, fa: int, fb: int) -> tuple[int, int]:
        f = self.rt.precision
        total = fa + fb
        return (total - f, f) if total > f else (0, total)

    def __mul__(self, other) -> "SharedTensor":
        rt = self.rt
        self = self.to_precision()
        if isinstance(other, SharedTensor):
            other = other.to_precision()
            self._bshape(other.shape)
            shift, f = self._shift_for(self.fbits, other.fbits)
            with rt.scope("mul"):
                return self._new(beaver.mul(rt, self.share, other.share, shift), f)
        k = self._integer_public(other)
        if k is not None:
            self._bshape(np.shape(k))
            return self._new(self.share * k)
        ab = _rational(other, rt.precision)
        if ab is not None:  # a public real scalar c as a / b: (x a) / b, +1 ulp at most + |x (c - a / b)|
            x = self._at_f_for(other)
            with rt.scope("mul_public"):
                return x._new(_divide(rt, x.share * np.int64(ab[0]), ab[1]))
        k = _extra_bits(other, rt.precision)
        p = fixedpoint.encode(other, rt.precision + k)
        self._bshape(p.shape)
        shift, f = self._shift_for(self.fbits, rt.precision + k)
        z = self.share * p
        with rt.scope("mul_public"):
            return self._new(truncation.truncate(rt, z, shift) if shift else z, f)

    __rmul__ = __mul__

    def square(self) -> "SharedTensor":
        return self * self

    def __pow__(self, k: int) -> "SharedTensor":
        if not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError("SharedTensor ** k needs a non-negative integer k")
        result, base = None, self
        while k:
            if k & 1:
                result = base if result is None else result * base
            k >>= 1
            if k:
                base = base * base
        return result if result is not None else self * 0 + 1

    # --------------------------------------------------------------- matmul
    def __matmul__(self, other) -> "SharedTensor":
        return self.matmul(other)

    def matmul(self, other, truncate: bool = True) -> "SharedTensor":
        """self @ other (torch.matmul semantics). With truncate=False a shared product keeps
        both operands' fractional bits (one round instead of two); the truncation then
        happens when needed, and relu() does it inside its own rounds."""
        rt = self.rt
        self = self.to_precision()
        if isinstance(other, SharedTensor):
            other = other.to_precision()
            _check_matmul(self.shape, other.shape)
            shift, f = self._shift_for(self.fbits, other.fbits)
            if not truncate:
                shift, f = 0, self.fbits + other.fbits
            with rt.scope("matmul"):
                return self._new(beaver.matmul(rt, self.share, other.share, shift), f)
        p = fixedpoint.to_numpy(other)
        _check_matmul(self.shape, p.shape)
        return self._public_bilinear(lambda s, q: self.rt.backend.matmul(s, q), p)

    def __rmatmul__(self, other) -> "SharedTensor":
        self = self.to_precision()
        p = fixedpoint.to_numpy(other)
        _check_matmul(p.shape, self.shape)
        return self._public_bilinear(lambda s, q: self.rt.backend.matmul(q, s), p)

    def _public_bilinear(self, op, p) -> "SharedTensor":
        rt = self.rt
        k = self._integer_public(p)
        if k is not None:
            return self._new(op(self.share, np.asarray(k)))
        e = _extra_bits(p, rt.precision) if self.fbits <= rt.precision else 0  # small weights keep 13 bits, as in *
        shift, f = self._shift_for(self.fbits, rt.precision + e)
        z = op(self.share, fixedpoint.encode(p, rt.precision + e))
        with rt.scope("matmul_public"):
            return self._new(truncation.truncate(rt, z, shift) if shift else z, f)

    def conv2d(self, weight, stride=1, padding=0, dilation=1, groups: int = 1, truncate: bool = True) -> "SharedTensor":
        """torch.nn.functional.conv2d(self, weight) with a shared or public weight (no bias).
        truncate=False: see matmul()."""
        rt = self.rt
        self = self.to_precision()
        if self.ndim != 4:
            raise ShapeError(f"conv2d needs an NCHW input, got shape {self.shape}")
        wshape = weight.shape if isinstance(weight, SharedTensor) else np.shape(fixedpoint.to_numpy(weight))
        if len(wshape) != 4 or wshape[1] * groups != self.shape[1] or wshape[0] % groups:
            raise ShapeError(f"conv2d weight {tuple(wshape)} does not fit input {self.shape} with groups={groups}")
        if isinstance(weight, SharedTensor):
            weight = weight.to_precision()
            shift, f = self._shift_for(self.fbits, weight.fbits)
            if not truncate:
                shift, f = 0, self.fbits + weight.fbits
            with rt.scope("conv2d"):
                z = beaver.conv2d(rt, self.share, weight.share, stride, padding, dilation, groups, shift)
            return self._new(z, f)
        w = fixedpoint.to_numpy(weight)
        return self._public_bilinear(lambda s, q: self.rt.backend.conv2d(s, q, stride, padding, dilation, groups), w)

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim: bool = False) -> "SharedTensor":
        return self._new(np.asarray(self.share.sum(axis=_axis(dim), keepdims=keepdim), np.int64))

    def mean(self, dim=None, keepdim: bool = False) -> "SharedTensor":
        s = self.to_precision().sum(dim, keepdim)
        ax = _axis(dim)
        axes = range(self.ndim) if ax is None else (ax if isinstance(ax, tuple) else (ax,))
        n = math.prod(self.shape[a] for a in axes)
        if n == 0 and s.numel():
            raise ShapeError(f"mean() over an empty dimension of {self.shape} (torch's nan has no fixed-point value)")
        return s * (1.0 / n) if n > 1 else s  # 1 / n as the fraction 1 / n (_rational): an exact division

    # ----------------------------------------------------------- reshaping
    def reshape(self, *shape) -> "SharedTensor":
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            return self._new(self.share.reshape(shape))
        except ValueError:
            raise ShapeError(f"cannot reshape {self.shape} into {tuple(shape)}") from None

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "SharedTensor":
        s = self.shape
        if not s:
            return self.reshape(1)
        a, b = dim_index(start_dim, len(s)), dim_index(end_dim, len(s))
        if a > b:
            raise ShapeError(f"flatten(): start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(s[:a] + (int(np.prod(s[a : b + 1])),) + s[b + 1 :])

    def transpose(self, d0: int, d1: int) -> "SharedTensor":
        return self._new(np.swapaxes(self.share, d0, d1))

    def permute(self, *dims) -> "SharedTensor":
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        return self._new(np.transpose(self.share, dims))

    @property
    def T(self) -> "SharedTensor":
        return self._new(self.share.T)

    @property
    def mT(self) -> "SharedTensor":
        return self.transpose(-2, -1)

    def t(self) -> "SharedTensor":
        if self.ndim > 2:
            raise ShapeError("t() expects a tensor with <= 2 dimensions; use transpose()")
        return self.T

    def unsqueeze(self, dim: int) -> "SharedTensor":
        return self._new(np.expand_dims(self.share, dim_index(dim, self.ndim + 1)))

    def squeeze(self, dim=None) -> "SharedTensor":
        if dim is not None and self.shape[dim] != 1:
            return self
        return self._new(np.squeeze(self.share, axis=dim))

    def expand(self, *shape) -> "SharedTensor":
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        new = len(shape) - self.ndim
        if new < 0 or any(s == -1 for s in shape[:new]):
            raise ShapeError(f"expand{tuple(shape)}: a {self.ndim}-d tensor {self.shape} needs at least {self.ndim} "
                             "sizes, and -1 (keep) only for its existing dimensions")
        shape = tuple(s if s != -1 else self.shape[i - new] for i, s in enumerate(shape))
        try:
            return self._new(np.broadcast_to(self.share, shape).copy())
        except ValueError:
            raise ShapeError(f"cannot expand {self.shape} to {shape}") from None

    def repeat(self, *reps) -> "SharedTensor":
        reps = reps[0] if len(reps) == 1 and isinstance(reps[0], (tuple, list)) else reps
        if len(reps) < self.ndim:
            raise ShapeError(f"repeat{tuple(reps)}: a {self.ndim}-d tensor needs at least {self.ndim} repeat counts")
        return self._new(np.tile(self.share, reps))

    def contiguous(self) -> "SharedTensor":
        return self._new(np.ascontiguousarray(self.share))

    def __getitem__(self, idx) -> "SharedTensor":
        if isinstance(idx, SharedTensor):
            raise TypeError("indexing by a SharedTensor would reveal it; use where() or a mask multiply")
        share = self.share
        if isinstance(idx, tuple) and _ints_beside_arrays(idx):  # torch: the integers index first (basic),
            share = share[tuple(i if _is_int(i) else slice(None) for i in idx)]  # so the arrays' dims stay put
            idx = tuple(i for i in idx if not _is_int(i))
        return self._new(np.asarray(share[idx], np.int64))

    def __setitem__(self, idx, value) -> None:
        if isinstance(value, SharedTensor):
            a, b, f = self._align(value)
            if f != self.fbits:
                self.share = a
                self.fbits = f
            self.share = np.array(self.share, copy=True) if not self.share.flags.writeable else self.share
            self.share[idx] = b
        else:
            wide = self._at_f_for(value)  # a real into an integer tensor
            self.share, self.fbits = wide.share, wide.fbits
            p = fixedpoint.encode(value, self.fbits)
            if not self.share.flags.writeable:
                self.share = self.share.copy()
            self.share[idx] = p if self.rt.rank == 0 else 0

    def where(self, cond, other) -> "SharedTensor":
        """torch.where(cond, self, other)."""
        return where(cond, self, other)

    __hash__ = object.__hash__  # the comparison dunders (mpcrt.tensor) compare elementwise, like torch

    def pad(self, pad: Sequence[int], value: float = 0.0) -> "SharedTensor":
        """torch.nn.functional.pad with a constant (pairs from the last dim backwards)."""
        if len(pad) % 2 or len(pad) > 2 * self.ndim:
            raise ShapeError(f"pad {tuple(pad)}: pairs (before, after) for at most {self.ndim} dimensions")
        wide = self._at_f_for(value)
        if wide is not self:
            return wide.pad(pad, value)
        widths = [(0, 0)] * self.ndim
        for i in range(len(pad) // 2):
            widths[self.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        c = int(fixedpoint.encode(value, self.fbits)) if self.rt.rank == 0 else 0
        return self._new(np.pad(self.share, widths, constant_values=c))


def _axis(dim):
    """A reduction's dim as numpy's axis: None, or an empty tuple (torch: all dims), is every axis."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return None
    if isinstance(dim, (list, tuple)):
        return tuple(_checked_int(d) for d in dim)
    return _checked_int(dim)


def _checked_int(d) -> int:
    if not _is_int(d):
        raise DimError(f"dim must be an integer (or a tuple of them), got {d!r}")
    return int(d)


def _is_int(i) -> bool:
    return isinstance(i, numbers.Integral) and not isinstance(i, bool)


def _ints_beside_arrays(idx: tuple) -> bool:
    """An index mixing integers with arrays and no None / Ellipsis: numpy moves the broadcast
    dims to the front there, torch keeps them in place (integers index first)."""
    has_array = any(isinstance(i, (list, np.ndarray)) or hasattr(i, "__array__") for i in idx if not _is_int(i))
    return has_array and any(_is_int(i) for i in idx) and not any(i is None or i is Ellipsis for i in idx)


def _check_matmul(a: tuple, b: tuple) -> None:
    try:
        if not a or not b:
            raise ValueError
        ring.matmul_shape(a, b)
    except ValueError:
        raise ShapeError(f"matmul: shapes {tuple(a)} and {tuple(b)} do not fit (inner dimensions must agree)") from None


def _aligned(tensors: Sequence[SharedTensor]) -> tuple[list[np.ndarray], int]:
    if not tensors:
        raise ValueError("expected a non-empty sequence of SharedTensors")
    if not all(isinstance(t, SharedTensor) for t in tensors):
        raise TypeError("cat/stack take SharedTensors only; share public parts first")
    f = max(t.fbits for t in tensors)
    return [t.share << np.int64(f - t.fbits) if t.fbits != f else t.share for t in tensors], f


PUBLIC_BITS = 13  # significant bits a public real multiplier keeps (relative error <= 2^-14)


def _extra_bits(v, f: int) -> int:
    """Fractional bits beyond f for encoding a public real multiplier whose largest
    magnitude is small (1/n of a mean over n = 50176 has 0.3 significant bits at f = 16):
    enough for PUBLIC_BITS significant bits. The product at 2f + k bits then holds
    |x| < 2^(62 - 2f - k) / |c| >= 2^(62 - f - PUBLIC_BITS), so a small c never narrows x's
    range below that of c ~ 2^(PUBLIC_BITS - f)."""
    a = np.abs(np.asarray(v, np.float64))
    m = float(a.max()) if a.size else 0.0
    if not m > 0 or not np.isfinite(m):
        return 0
    top = math.floor(math.log2(m)) + 1 + f  # significant bits of m at f bits
    return int(min(max(0, PUBLIC_BITS - top), 62 - 2 * f - 4)) if 62 - 2 * f - 4 > 0 else 0


def _divide(rt, share: np.ndarray, d: int) -> np.ndarray:
    """[share / d] for a public integer d in [2, 2^40]: a truncation for a power of two, else a division."""
    if d & (d - 1) == 0:
        return truncation.truncate(rt, share, d.bit_length() - 1)
    return division.divide(rt, share, d)


def _rational(v, f: int) -> tuple[int, int] | None:
    """A public real scalar c as a / b (b <= 2^40), |a| <= max(2^PUBLIC_BITS, |c| 2^f) + 1 so that x a
    holds every x that x * c at f bits holds, where that is closer to c than _extra_bits' encoding:
    1/3 is 1/3, not 21845 / 2^16. None: not a finite real scalar, or the encoding is as close."""
    if np.ndim(v) != 0 or isinstance(v, (bool, np.bool_)):
        return None
    try:
        c = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(c) or c == 0:
        return None
    top = max(2.0**PUBLIC_BITS, abs(c) * 2.0**f)
    fr = Fraction(c).limit_denominator(int(min(2**40, max(1.0, top / abs(c)))))
    if fr.numerator == 0 or fr.denominator == 1:
        return None
    k = _extra_bits(c, f)
    enc = round(c * 2.0 ** (f + k)) / 2.0 ** (f + k)
    if abs(fr - Fraction(c)) >= abs(Fraction(enc) - Fraction(c)):
        return None
    return fr.numerator, fr.denominator


def where(cond, a, b) -> SharedTensor:
    """torch.where(cond, a, b) elementwise: cond a shared 0/1 tensor (one Beaver product,
    1 round) or a public boolean array (local)."""
    if not isinstance(cond, SharedTensor):
        c = np.asarray(fixedpoint.to_numpy(cond), bool)
        if isinstance(a, SharedTensor):
            rest = b * (~c).astype(np.int64) if isinstance(b, SharedTensor) else _public_mask(b, ~c)
            return a * c.astype(np.int64) + rest
        if isinstance(b, SharedTensor):
            return b * (~c).astype(np.int64) + _public_mask(a, c)
        raise TypeError("where(): at least one of cond, a, b must be a SharedTensor")
    diff = (a - b) if isinstance(a, SharedTensor) else (-(b - a))
    return b + cond * diff if isinstance(b, SharedTensor) else cond * diff + b


def _public_mask(value, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, fixedpoint.to_numpy(value), 0.0)


def _joined(join, name: str, tensors: Sequence[SharedTensor], dim: int) -> SharedTensor:
    """join (np.concatenate, np.stack) of the tensors' shares at their common fractional bits."""
    shares, f = _aligned(tensors)
    try:
        return SharedTensor(tensors[0].rt, join(shares, axis=dim), f)
    except ValueError as e:
        raise ShapeError(f"{name}: {e}") from None


def cat(tensors: Sequence[SharedTensor], dim: int = 0) -> SharedTensor:
    """torch.cat for SharedTensors."""
    return _joined(np.concatenate, "cat", tensors, dim)


def stack(tensors: Sequence[SharedTensor], dim: int = 0) -> SharedTensor:
    """torch.stack for SharedTensors."""
    return _joined(np.stack, "stack", tensors, dim)

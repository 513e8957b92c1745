"""Ring Z_2^64 on numpy int64 arrays.

int64 array arithmetic wraps modulo 2^64 (two's complement), so add, sub, mul and
neg are the ring operations for free. Shifts and bit tests go through a uint64
view so that they are logical, not arithmetic. Matmul is kernels.gemm: an AVX-512
int64 GEMM where it can, else torch's (numpy's integer matmul does not use BLAS and
is ~20x slower); both wrap modulo 2^64.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels import gemm

_t = gemm.torch

DTYPE = np.int64
BITS = 64


def as_ring(a) -> np.ndarray:
    """Return `a` as a C-contiguous int64 array (ring elements)."""
    return np.ascontiguousarray(a, dtype=np.int64)


def zeros(shape) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


def u64(a: np.ndarray) -> np.ndarray:
    """View ring elements as unsigned words (no copy)."""
    return a.view(np.uint64)


def lshr(a: np.ndarray, k: int) -> np.ndarray:
    """Logical right shift by k of ring elements (as unsigned), result int64."""
    return (a.view(np.uint64) >> np.uint64(k)).view(np.int64)


def msb(a: np.ndarray) -> np.ndarray:
    """Most significant bit (0/1, int64) of each ring element."""
    return lshr(a, 63)


def const(v: int) -> np.int64:
    """A Python int as an int64 ring constant, reduced modulo 2^64."""
    v %= 1 << 64
    if v >= 1 << 63:
        v -= 1 << 64
    return np.int64(v)


def matmul_shape(a: tuple, b: tuple) -> tuple:
    """Shape of torch.matmul(a, b) for operand shapes a and b (raises ValueError if they do not fit)."""
    a, b = tuple(a), tuple(b)
    if not a or not b:
        raise ValueError("matmul of a 0-d operand")
    va, vb = len(a) == 1, len(b) == 1
    a2 = (1,) + a if va else a
    b2 = b + (1,) if vb else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions differ: {a} @ {b}")
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    out = tuple(batch) + (a2[-2], b2[-1])
    if va:
        out = out[:-2] + out[-1:]
    if vb:
        out = out[:-1]
    return out


def conv2d_shape(x: tuple, w: tuple, stride, padding, dilation) -> tuple:
    """Output shape of a conv2d of NCHW input x with OIHW weight w."""
    n, _, h, wd = x
    o, _, kh, kw = w
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    return (n, o, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False) -> np.ndarray:
    """Ring matmul with torch.matmul semantics (2-D, batched, broadcast) on the CPU; see kernels.gemm."""
    return gemm.matmul(a, b, out, accumulate)


def matmul2(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """a1 @ b1 + a2 @ b2 (one result shape) on the CPU; see kernels.gemm.matmul2."""
    return gemm.matmul2(a1, b1, a2, b2)


def conv2d(x: np.ndarray, w: np.ndarray, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Ring 2-D convolution (NCHW input, OIHW weight) on the CPU, via im2col and torch's int64 GEMM."""
    torch = _t()
    tx = torch.from_numpy(np.ascontiguousarray(x))
    tw = torch.from_numpy(np.ascontiguousarray(w))
    n, c, h, wd = tx.shape
    o, cg, kh, kw = tw.shape
    cols = _unfold_int(tx, kh, kw, stride, padding, dilation)  # exact, int64
    oh = (h + 2 * _pair(padding)[0] - _pair(dilation)[0] * (kh - 1) - 1) // _pair(stride)[0] + 1
    ow = (wd + 2 * _pair(padding)[1] - _pair(dilation)[1] * (kw - 1) - 1) // _pair(stride)[1] + 1
    cols = cols.view(n, groups, cg * kh * kw, oh * ow)
    wg = tw.view(groups, o // groups, cg * kh * kw)
    out = torch.matmul(wg.unsqueeze(0), cols)  # n, g, o/g, L
    return out.reshape(n, o, oh, ow).numpy()


def conv2d2(x1, w1, x2, w2, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """conv2d(x1, w1) + conv2d(x2, w2) (one result shape: a Beaver convolution's two local
    products) on the CPU."""
    z = conv2d(x1, w1, stride, padding, dilation, groups)
    z += conv2d(x2, w2, stride, padding, dilation, groups)
    return z


def _pair(v):
    """An int or a pair as a pair (conv2d's stride, padding, dilation)."""
    return (v, v) if isinstance(v, int) else tuple(v)


def _unfold_int(tx, kh: int, kw: int, stride, padding, dilation):
    torch = _t()
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = tx.shape
    if ph or pw:
        tx = torch.nn.functional.pad(tx, (pw, pw, ph, ph))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    patches = []
    for i in range(kh):
        for j in range(kw):
            hs, ws = i * dh, j * dw
            patches.append(tx[:, :, hs : hs + sh * (oh - 1) + 1 : sh, ws : ws + sw * (ow - 1) + 1 : sw])
    cols = torch.stack(patches, dim=2)  # n, c, kh*kw, oh, ow
    return cols.reshape(n, c * kh * kw, oh * ow)

"""Exact ring GEMM over Z_2^64 through float64 BLAS: the portable path (x86 without AVX-512, ARM).

Limbs. Each int64 operand is split into three balanced (signed) limbs of 22, 21 and 21 bits:

    x = x0 + 2^22 x1 + 2^43 x2  (mod 2^64),   |x0| <= 2^21,  |x1| <= 2^20,  |x2| <= 2^20

(x2 is the top 21 bits as a signed residue: mod 2^64 only x2 mod 2^21 matters). Every limb is an
integer far below 2^53, exact in float64. With limb shifts s = (0, 22, 43), the products Ai Bj whose
shift s_i + s_j is below 64 are (0,0), (0,1), (1,0) at 22, (0,2), (2,0) at 43
and (1,1) at 44; every other pair shifts by >= 65 and vanishes modulo 2^64:

    A @ B = P00 + 2^22 (A0 B1 + A1 B0) + 2^43 (A0 B2 + A2 B0 + 2 A1 B1)   (mod 2^64)

formed with four float64 GEMMs, five K-deep units of work instead of the schoolbook six (Karatsuba
on the middle term):

    P00 = A0 @ B0,  P11 = A1 @ B1,  Pm = (A0 + A1) @ (B0 + B1),  Q = [A0 A2] @ [B2; B0] (joined along K),
    A0 B1 + A1 B0 = Pm - (P00 + P11),   A0 B2 + A2 B0 + 2 A1 B1 = Q + 2 P11.

Exactness bound. A float64 holds every integer of magnitude <= 2^53 exactly, and an IEEE addition,
multiplication or fused multiply-add whose exact result is such an integer returns it exactly. A BLAS
GEMM forms each output as the sum of its K products a_it b_tj by multiply-adds in some order and
blocking (OpenBLAS, BLIS, MKL, Accelerate: classical GEMM, never Strassen-Winograd); every partial sum
is then a sub-sum of the terms, at most the sum of their magnitudes, so it is exact when that is.
Per term: P00 <= 2^21 2^21 = 2^42, P11 <= 2^40, Pm <= (2^21 + 2^20)^2 = 9 2^40, Q <= 2^41 over 2K
terms. For a depth K <= KMAX = 910: Pm's partial sums are <= 910 * 9 2^40 < 2^53, P00's <= K 2^42,
Q's <= K 2^42, P11's smaller: all four GEMMs return exact integers. The two combinations in float64
are exact too: P00 + P11 <= K (2^42 + 2^40) < 2^53, and its difference from Pm is the integer
A0 B1 + A1 B0 <= K 2^42; Q + 2 P11 <= K (2^42 + 2^41) < 2^53. Each of the three results converts
exactly to int64, and the shifts and sums run in int64, which wraps modulo 2^64. Deeper products are
cut along K into near-equal chunks of at most KMAX, whose int64 results are added modulo 2^64. So
the result is the ring product bit for bit for every input; tests/test_limbgemm.py checks it
against the int64 reference on edge values (0, -1, INT64_MIN, INT64_MAX) and random words.

`matmul2` (a Beaver matmul's two local products) joins a1 | a2 and b1 ; b2 along K, so the sum is
one limb GEMM of depth 2K: one split, one combination, one set of BLAS calls.

numpy's float64 matmul is BLAS (OpenBLAS in numpy's wheels); `threads` sets the BLAS library's
thread count through threadpoolctl where that is installed (process-wide, as torch's is), else
the BLAS keeps its own (launch/local.py caps it with OPENBLAS_NUM_THREADS).
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels.jit import njit

KMAX = 910  # deepest K chunk whose every float64 partial sum stays <= 2^53 (docstring)
_controller = None
_blas_threads: int | None = None


def blas_threads(threads: int | None) -> None:
    """Set the BLAS library's thread count to `threads` (None: leave it), through threadpoolctl
    where installed; without it the BLAS keeps its own count (the launcher's OPENBLAS_NUM_THREADS)."""
    global _controller, _blas_threads
    if not threads or threads == _blas_threads:
        return
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas_threads = threads
            return
        _controller = ThreadpoolController()
    _controller.limit(limits=int(threads), user_api="blas")
    _blas_threads = threads


@njit
def _split(x, l0, l1, l2, l01):  # pragma: no cover - compiled
    """The limbs of 3-D int64 x into float64 arrays of its shape (views allowed): x0, x1, x2 and x0 + x1.
    Sign extension and carries without an add that could overflow (numba's adds are no-signed-wrap)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for t in range(x.shape[2]):
                v = x[i, j, t]
                a = ((v & 0x3FFFFF) ^ 0x200000) - 0x200000  # low 22 bits, signed
                r = (v >> 22) + ((v >> 21) & 1)  # (v - a) / 2^22
                b = ((r & 0x1FFFFF) ^ 0x100000) - 0x100000
                r = (r >> 21) + ((r >> 20) & 1)
                c = ((r & 0x1FFFFF) ^ 0x100000) - 0x100000
                l0[i, j, t] = a
                l1[i, j, t] = b
                l2[i, j, t] = c
                l01[i, j, t] = a + b


@njit
def _combine(p00, p11, pm, q, out, add):  # pragma: no cover - compiled
    """out (+)= P00 + 2^22 (Pm - (P00 + P11)) + 2^43 (Q + 2 P11), flat arrays (float64 sums exact)."""
    for i in range(out.size):
        s = p11[i]
        mid = np.int64(pm[i] - (p00[i] + s))
        top = np.int64(q[i] + (s + s))
        v = np.int64(p00[i]) + mid * 0x400000 + top * 0x80000000000
        out[i] = out[i] + v if add else v


def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three balanced limbs of ring elements x, as float64: x = x0 + 2^22 x1 + 2^43 x2 (mod 2^64)."""
    x = np.asarray(x, dtype=np.int64)
    x3 = x.reshape((1, 1, -1))
    ls = [np.empty(x.shape, np.float64) for _ in range(4)]
    _split(x3, *(v.reshape(x3.shape) for v in ls))
    return ls[0], ls[1], ls[2]


def promote(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """a and b as (..., n, k) and (..., k, m): 1-D operands get the axis torch.matmul adds."""
    va, vb = a.ndim == 1, b.ndim == 1
    if not a.ndim or not b.ndim:
        raise ValueError("matmul of a 0-d operand")
    return (a[None, :] if va else a), (b[:, None] if vb else b), va, vb


def demote(c: np.ndarray, va: bool, vb: bool) -> np.ndarray:
    """The product of promoted operands without the axes `promote` added."""
    if vb:
        c = c[..., 0]
    if va:
        c = c[..., 0, :] if not vb else c[..., 0]
    return c


def _operand(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """x's limbs laid out for the four GEMMs: (cat, x1, x0 + x1, k) with cat = x0 | x2 joined along
    `axis` (-1 for the left operand, -2 for the right; for the right operand x2 ; x0, matching)."""
    k = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = 2 * k
    cat = np.empty(shape, np.float64)
    x1 = np.empty(x.shape, np.float64)
    x01 = np.empty(x.shape, np.float64)
    x3 = x.reshape((-1,) + x.shape[-2:])
    c3 = cat.reshape((-1,) + cat.shape[-2:])
    lo, hi = (c3[:, :, :k], c3[:, :, k:]) if axis == -1 else (c3[:, k:, :], c3[:, :k, :])
    _split(x3, lo, x1.reshape(x3.shape), hi, x01.reshape(x3.shape))
    return cat, x1, x01, k


def _chunk(a: np.ndarray, b: np.ndarray, out: np.ndarray, add: bool) -> None:
    """out (+)= a @ b mod 2^64 for promoted operands of depth k <= KMAX; out C-contiguous int64."""
    acat, a1, a01, k = _operand(a, -1)
    bcat, b1, b01, _ = _operand(b, -2)
    p00 = np.matmul(acat[..., :k], bcat[..., k:, :])
    p11 = np.matmul(a1, b1)
    pm = np.matmul(a01, b01)
    q = np.matmul(acat, bcat)  # A0 B2 + A2 B0
    _combine(p00.reshape(-1), p11.reshape(-1), pm.reshape(-1), q.reshape(-1), out.reshape(-1), add)


def matmul(a: np.ndarray, b: np.ndarray, threads: int | None = None) -> np.ndarray:
    """a @ b modulo 2^64 (torch.matmul semantics: 1-D, 2-D, batched, broadcast) through float64 BLAS."""
    blas_threads(threads)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    a, b, va, vb = promote(a, b)
    k = a.shape[-1]
    if k != b.shape[-2]:
        raise ValueError(f"inner dimensions differ: {a.shape} @ {b.shape}")
    c = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), np.int64)
    if k == 0:
        c[...] = 0
    step = -(-k // -(-k // KMAX)) if k else 1  # near-equal chunks of at most KMAX
    for lo in range(0, k, step):
        _chunk(a[..., lo:lo + step], b[..., lo:lo + step, :], c, lo > 0)
    return demote(c, va, vb)


def matmul2(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray,
            threads: int | None = None) -> np.ndarray:
    """a1 @ b1 + a2 @ b2 modulo 2^64 (one result shape) as one limb GEMM of depth 2K: [a1 a2] @ [b1; b2]."""
    if (np.ndim(a1) == 1, np.ndim(b1) == 1) != (np.ndim(a2) == 1, np.ndim(b2) == 1):
        return matmul(a1, b1, threads) + matmul(a2, b2, threads)  # mixed ranks: no common K axis
    a1, b1, va, vb = promote(np.asarray(a1, dtype=np.int64), np.asarray(b1, dtype=np.int64))
    a2, b2, _, _ = promote(np.asarray(a2, dtype=np.int64), np.asarray(b2, dtype=np.int64))
    ba = np.broadcast_shapes(a1.shape[:-2], a2.shape[:-2])
    bb = np.broadcast_shapes(b1.shape[:-2], b2.shape[:-2])
    a = np.concatenate((np.broadcast_to(a1, ba + a1.shape[-2:]), np.broadcast_to(a2, ba + a2.shape[-2:])), axis=-1)
    b = np.concatenate((np.broadcast_to(b1, bb + b1.shape[-2:]), np.broadcast_to(b2, bb + b2.shape[-2:])), axis=-2)
    return demote(matmul(a, b, threads), va, vb)

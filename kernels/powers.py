"""Fused loops of truncation with powers (protocols.powers), party and dealer side.

Party: from the opened c and the dealer shares [S0^j], [m S0^l], the shares of
u^j, j = 1..J, u = x >> k, in one pass (numpy needed ~4 J^2 passes).
Dealer: from r the corrected values S0^j = (-(r >> k))^j and m S0^l (m = msb(r)),
minus another party's shares, written straight into the outgoing buffer.
The algebra is in protocols.powers; these loops only fuse it.
A party that gets no corrections for a tuple may hand combine/poly its shares as
kernels.prg.LazyRows: they are then expanded CHUNK columns at a time, in cache, instead
of written out in full and read back (exp at N = 2: party 1 writes 168 MB less per call).
"""
from __future__ import annotations

from math import comb

import numpy as np

from mpcrt.kernels import ring
from mpcrt.kernels.jit import njit, njit_inline
from mpcrt.kernels.prg import LazyRows

CHUNK = 1 << 15  # columns of a LazyRows tuple expanded at a time (its rows stay in cache)


class Rows:
    """(rows, n) shares held as separate row arrays (a dealer reply split over frames),
    gathered CHUNK columns at a time, in cache, instead of copied into one block."""

    def __init__(self, rows: list[np.ndarray]):
        self.parts = [r.reshape(-1) for r in rows]
        self.rows, self.n = len(rows), min(r.size for r in self.parts)
        self.dtype = self.parts[0].dtype

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.n)

    def head(self, n: int) -> "Rows":
        return Rows([r[:n] for r in self.parts])

    def chunk(self, lo: int, hi: int, scratch: np.ndarray | None = None) -> np.ndarray:
        m = hi - lo
        buf = scratch if scratch is not None else np.empty(self.rows * m + 2, np.int64)
        out = buf.view(self.dtype)[: self.rows * m].reshape(self.rows, m)
        for i, r in enumerate(self.parts):
            out[i] = r[lo:hi]
        return out


def _chunked(S, M, n: int):
    """(lo, hi, S columns, M columns) over n columns: one piece for arrays, CHUNK-column
    pieces (expanded or gathered into reused scratch buffers) where S or M is a LazyRows
    or Rows."""
    lazy = (LazyRows, Rows)
    if not isinstance(S, lazy) and not isinstance(M, lazy):
        yield 0, n, S, M
        return
    # a plain array beside a lazy one is gathered too: contiguous columns, the kernels' fast layout
    S, M = (A if isinstance(A, lazy) else Rows(list(A)) for A in (S, M))
    bufs = [np.empty(A.rows * (CHUNK + 2), np.int64) for A in (S, M)]
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        yield lo, hi, S.chunk(lo, hi, bufs[0]), M.chunk(lo, hi, bufs[1])


def _trunc_consts(k: int) -> tuple:
    """k, 2^(62-k) and the mask of 64 - k low bits: the kernels' form of a truncation by k."""
    return np.int64(k), np.int64(1 << (62 - k)), ring.const((1 << (64 - k)) - 1)


def coefficients(k: int, J: int) -> tuple[np.ndarray, np.ndarray]:
    """binom[j, i] and binom[j, i] * T^i mod 2^64 (T = 2^(64-k)) as int64 (J+1, J+1) tables."""
    B = np.zeros((J + 1, J + 1), np.int64)
    BT = np.zeros((J + 1, J + 1), np.int64)
    for j in range(J + 1):
        for i in range(j + 1):
            B[j, i] = ring.const(comb(j, i))
            BT[j, i] = ring.const(comb(j, i) * (1 << (i * (64 - k))))
    return B, BT


@njit_inline
def _s3(e, c, S, M, k, off, low, BT):  # pragma: no cover - compiled
    """Element e's public C, w and the shares of S, S^2, S^3 (protocols.powers)."""
    ce = c[e]
    C = ((ce >> k) & low) - off
    w = np.int64(ce >= 0)
    s1 = S[0, e] + w * BT[1, 1] * M[0, e]
    s2 = S[1, e] + w * (BT[2, 1] * M[1, e] + BT[2, 2] * M[0, e])
    s3 = S[2, e] + w * (BT[3, 1] * M[2, e] + BT[3, 2] * M[1, e] + BT[3, 3] * M[0, e])
    return C, w, s1, s2, s3


@njit_inline
def _u3(e, c, S, M, k, off, low, r0, BT):  # pragma: no cover - compiled
    """Element e's shares of u, u^2, u^3 (see combine), inlined into the loops that use them."""
    C, _, s1, s2, s3 = _s3(e, c, S, M, k, off, low, BT)
    C2 = C * C
    return r0 * C + s1, r0 * C2 + 2 * C * s1 + s2, r0 * C2 * C + 3 * C2 * s1 + 3 * C * s2 + s3


@njit_inline
def _u4(e, c, S, M, k, off, low, r0, BT):  # pragma: no cover - compiled
    """Element e's shares of u, ..., u^4 (see combine), inlined into the loops that use them."""
    C, w, s1, s2, s3 = _s3(e, c, S, M, k, off, low, BT)
    s4 = S[3, e] + w * (BT[4, 1] * M[3, e] + BT[4, 2] * M[2, e] + BT[4, 3] * M[1, e] + BT[4, 4] * M[0, e])
    C2 = C * C
    C3 = C2 * C
    return (r0 * C + s1, r0 * C2 + 2 * C * s1 + s2, r0 * C3 + 3 * C2 * s1 + 3 * C * s2 + s3,
            r0 * C3 * C + 4 * C3 * s1 + 6 * C2 * s2 + 4 * C * s3 + s4)


# J = 1..4 (every J the protocols use) are written out (3 and 4 through _u3 and _u4,
# which _poly shares): the general loop at the end,
# with its per-element scratch arrays, measured 5-8x slower here (J = 3, 1M elements:
# 16.7 ms against 2.1 ms), and these loops are the party's main local work.
@njit
def _combine(c, S, M, k, off, low, rank0, B, BT, out):  # pragma: no cover - compiled
    J, n = out.shape
    r0 = np.int64(1) if rank0 else np.int64(0)
    if J == 1:
        for e in range(n):
            ce = c[e]
            C = ((ce >> k) & low) - off
            w = np.int64(ce >= 0)
            out[0, e] = r0 * C + S[0, e] + w * BT[1, 1] * M[0, e]
        return
    if J == 2:
        for e in range(n):
            ce = c[e]
            C = ((ce >> k) & low) - off
            w = np.int64(ce >= 0)
            s1 = S[0, e] + w * BT[1, 1] * M[0, e]
            s2 = S[1, e] + w * (BT[2, 1] * M[1, e] + BT[2, 2] * M[0, e])
            out[0, e] = r0 * C + s1
            out[1, e] = r0 * C * C + 2 * C * s1 + s2
        return
    if J == 3:
        for e in range(n):
            out[0, e], out[1, e], out[2, e] = _u3(e, c, S, M, k, off, low, r0, BT)
        return
    if J == 4:
        for e in range(n):
            out[0, e], out[1, e], out[2, e], out[3, e] = _u4(e, c, S, M, k, off, low, r0, BT)
        return
    s = np.empty(J + 1, np.int64)
    cp = np.empty(J + 1, np.int64)
    for e in range(n):
        ce = c[e]
        C = ((ce >> k) & low) - off
        w = np.int64(ce >= 0)
        cp[0] = 1
        for j in range(1, J + 1):
            cp[j] = cp[j - 1] * C
            v = np.int64(0)
            for i in range(1, j + 1):
                v += BT[j, i] * M[j - i, e]
            s[j] = S[j - 1, e] + w * v
        for j in range(1, J + 1):
            acc = r0 * cp[j]
            for i in range(1, j + 1):
                acc += B[j, i] * cp[j - i] * s[i]
            out[j - 1, e] = acc


def combine(c: np.ndarray, S, M, k: int, rank0: bool) -> np.ndarray:
    """Shares of u^1..u^J as a (J, n) array; S, M: (J, n) dealer shares (arrays, or LazyRows
    expanded CHUNK columns at a time), c: (n,) opened."""
    J, n = S.shape
    B, BT = coefficients(k, J)
    out = np.empty((J, n), np.int64)
    for lo, hi, Sc, Mc in _chunked(S, M, n):
        _combine(c[lo:hi], Sc, Mc, *_trunc_consts(k), bool(rank0), B, BT, out[:, lo:hi] if hi - lo < n else out)
    return out


@njit
def _poly(c, S, M, k, off, low, rank0, B, BT, coef, X, xcoef, out):  # pragma: no cover - compiled
    """out = coef[0] (party 0) + xcoef X + sum_j coef[j] u^j, the u^j as in _combine but never
    stored: a truncation's powers go straight into the polynomial that uses them. X is
    always an array of n (poly passes c with xcoef 0 for none: a branch in the loop
    would stop its vectorization, 1.9x slower)."""
    J, n = S.shape
    r0 = np.int64(1) if rank0 else np.int64(0)
    if J == 3:
        for e in range(n):
            u1, u2, u3 = _u3(e, c, S, M, k, off, low, r0, BT)
            out[e] = r0 * coef[0] + coef[1] * u1 + coef[2] * u2 + coef[3] * u3 + xcoef * X[e]
        return
    if J == 4:
        for e in range(n):
            u1, u2, u3, u4 = _u4(e, c, S, M, k, off, low, r0, BT)
            out[e] = r0 * coef[0] + coef[1] * u1 + coef[2] * u2 + coef[3] * u3 + coef[4] * u4 + xcoef * X[e]
        return
    U = np.empty((J, 1), np.int64)
    for e in range(n):  # any other J: the general loop, one element at a time
        _combine(c[e:e + 1], S[:, e:e + 1], M[:, e:e + 1], k, off, low, rank0, B, BT, U)
        acc = r0 * coef[0]
        for j in range(J):
            acc += coef[j + 1] * U[j, 0]
        out[e] = acc + xcoef * X[e]


def poly(c: np.ndarray, S, M, k: int, rank0: bool, coef, X: np.ndarray | None = None,
         xcoef: int = 0) -> np.ndarray:
    """Shares of coef[0] + xcoef X + sum_j coef[j] u^j (u = x >> k; c, S, M as for combine;
    coef: J + 1 public ring values, X: a shared array of n elements or None), in one pass."""
    J, n = S.shape
    B, BT = coefficients(k, J)
    cf = np.array([ring.const(int(v)) for v in coef], np.int64)
    if cf.size != J + 1:
        raise ValueError(f"poly needs J + 1 = {J + 1} coefficients, got {cf.size}")
    Xa, xc = (c, 0) if X is None else (X.reshape(-1), xcoef)
    out = np.empty(n, np.int64)
    for lo, hi, Sc, Mc in _chunked(S, M, n):
        _poly(c[lo:hi], Sc, Mc, *_trunc_consts(k), bool(rank0), B, BT, cf, Xa[lo:hi], ring.const(int(xc)), out[lo:hi])
    return out


@njit
def _deal(r, k, low, subS, subM, outS, outM):  # pragma: no cover - compiled
    J, n = outS.shape
    has_sub = subS.shape[0] > 0
    for j in range(J):  # one pass per row pair: each loop vectorizes
        for e in range(n):
            re = r[e]
            s0 = -((re >> k) & low)
            pw = np.int64(1)  # s0^j
            for _ in range(j):
                pw = pw * s0
            mv = np.int64(re < 0) * pw
            sv = pw * s0
            if has_sub:
                mv -= subM[j, e]
                sv -= subS[j, e]
            outM[j, e] = mv  # wraps to outM's width (uint32 for 'a32' sharing)
            outS[j, e] = sv


def deal(r: np.ndarray, k: int, J: int, subS, subM, outS: np.ndarray, outM: np.ndarray) -> None:
    """Write S0^1..S0^J - subS into outS and m S0^0..m S0^(J-1) - subM into outM (both (J, n);
    outM/subM int64, or uint32 when only their value mod 2^32 is needed; subs may be None)."""
    if subS is None:
        subS, subM = np.zeros((0, 0), np.int64), np.zeros((0, 0), outM.dtype)
    _deal(r, np.int64(k), ring.const((1 << (64 - k)) - 1), subS, subM, outS, outM)

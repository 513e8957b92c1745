"""Fused loops of the exact less-than-zero (protocols.comparison), party side.

Each function is one pass over the packed words of a BitLT level; numpy needed
10-20 passes per level. Words are int64; logical shifts are arithmetic shifts
followed by a mask that only keeps bits coming from at most bit 63 (see the
comments), so no uint64 arithmetic is mixed in. The protocol, its layout of bit
pairs and packing are documented in protocols.comparison.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels.jit import njit

EVEN = np.int64(0x5555555555555555)
LOW63 = np.int64((1 << 63) - 1)


def period_mask(period: int) -> np.int64:
    """Ones at bit positions that are multiples of `period`."""
    m = 0
    for i in range(0, 64, period):
        m |= 1 << i
    return np.int64(m - (1 << 64) if m >= 1 << 63 else m)


@njit
def level1(c, rb, P, first, out):  # pragma: no cover - compiled
    """Width-1 level from the opened c and <r>, <P>: pairs (lt at 2i, eq at 2i + 1)."""
    for e in range(c.size):
        A = ~c[e] | np.int64(-0x8000000000000000)  # bit 63 reads as 0 in c (set in ~c)
        R = rb[e] & np.int64(0x7FFFFFFFFFFFFFFF)
        R1 = R >> 1  # R >= 0: arithmetic = logical
        A1 = (A >> 1) & np.int64(0x7FFFFFFFFFFFFFFF)
        p = P[e]
        LT = (((A & R) ^ R1) & A1) ^ (A & p)
        EQ = (A1 & R) ^ (A & R1) ^ p
        if first:
            EQ ^= A1 & A
        out[e] = (LT & np.int64(0x5555555555555555)) | ((EQ & np.int64(0x5555555555555555)) << 1)


@njit
def pack_level(W, w, lo, pair, a, b, X, Y):  # pragma: no cover - compiled
    """For level w: X = (eq_hi beside lt_lo and eq_lo) xor a, Y = (lt_lo, eq_lo) xor b,
    w element chunks packed into one word (unit 2; chunk k at shift 2k, bits disjoint,
    so xor packs). Every kept bit comes from at most bit 63: arithmetic shifts are safe."""
    m = X.size
    for i in range(m):
        X[i] = a[i]
        Y[i] = b[i]
    for k in range(w):
        for i in range(m):
            v = W[k * m + i]
            x = (v >> (w + 1)) & lo
            X[i] ^= (x | (x << 1)) << (2 * k)
            Y[i] ^= (v & pair) << (2 * k)


@njit
def _and_share(D, F, a, b, c, first, z):  # pragma: no cover - compiled
    for i in range(z.size):
        v = c[i] ^ (D[i] & b[i]) ^ (F[i] & a[i])
        if first:
            v ^= D[i] & F[i]
        z[i] = v


@njit
def finish_level(W, w, lo, pair, D, F, a, b, c, first):  # pragma: no cover - compiled
    """The AND's output share, unpacked, folded into W in place: W = lt_hi ^ (eq_hi lt_lo, eq_hi eq_lo)."""
    m = D.size
    z = np.empty(m, np.int64)
    _and_share(D, F, a, b, c, first, z)
    for k in range(w):
        for i in range(m):
            j = k * m + i
            W[j] = ((W[j] >> w) & lo) ^ ((z[i] >> (2 * k)) & pair)


@njit
def pack_last(W, a, b, X, Y):  # pragma: no cover - compiled
    """Last level (width 32): eq_hi (bit 33) and lt_lo (bit 0), 64 elements per word."""
    m = X.size
    for i in range(m):
        X[i] = a[i]
        Y[i] = b[i]
    for k in range(64):
        for i in range(m):
            v = W[k * m + i]
            X[i] ^= ((v >> 33) & 1) << k
            Y[i] ^= (v & 1) << k


@njit
def finish_last(W, D, F, a, b, c, first, rb, cpub, sb, out):  # pragma: no cover - compiled
    """msb(x) share = lt_hi ^ eq_hi lt_lo ^ msb(r) [^ msb(c)], xor'ed with the daBit's
    packed boolean share sb (element j at bit j % 64 of word j // 64): the byte to open
    for the B2A."""
    m = D.size
    z = np.empty(m, np.int64)
    _and_share(D, F, a, b, c, first, z)
    for k in range(64):
        for i in range(m):
            j = k * m + i
            bit = ((W[j] >> 32) ^ (z[i] >> k) ^ (rb[j] >> 63) ^ (sb[j >> 6] >> (j & 63))) & 1
            if first:
                bit ^= (cpub[j] >> 63) & 1
            out[j] = bit


@njit
def b2a(v, s, first, out):  # pragma: no cover - compiled
    """[b] = v + (1 - 2v)[s] from the opened v = b xor s."""
    for e in range(out.size):
        ve = np.int64(v[e])
        out[e] = (1 - 2 * ve) * s[e] + (ve if first else 0)


@njit
def b2a_product(v, y, d, s, ms, out):  # pragma: no cover - compiled
    """[b y] = v y + (1 - 2v)(d [s] + [m s]), d = y - m opened."""
    for e in range(out.size):
        ve = np.int64(v[e])
        out[e] = ve * y[e] + (1 - 2 * ve) * (d[e] * s[e] + ms[e])


# ------------------------------------------------------------------ dealer side
@njit
def deal_pairs(r, sub_rb, sub_P, out_rb, out_P):  # pragma: no cover - compiled
    """Corrections of <r> and <P>, P = products of r's adjacent low-63 bit pairs (at even positions)."""
    for e in range(r.size):
        v = r[e]
        rl = v & np.int64(0x7FFFFFFFFFFFFFFF)
        out_rb[e] = v ^ sub_rb[e]
        out_P[e] = ((rl >> 1) & rl & np.int64(0x5555555555555555)) ^ sub_P[e]


@njit
def deal_dabits(sb, mask, sub_s, out_s):  # pragma: no cover - compiled
    """Correction of [s] (or of [m s] when mask is given) for the daBits packed in sb."""
    has_mask = mask.size > 0
    for e in range(out_s.size):
        s = (sb[e >> 6] >> (e & 63)) & 1
        out_s[e] = (mask[e] * s if has_mask else s) - sub_s[e]

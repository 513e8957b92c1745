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


def dead_bits(coarse: int) -> dict[int, tuple[int, int]]:
    """With the low `coarse` bits of both BitLT operands zeroed (a coarse comparison,
    protocols.comparison), the bits of each AND round (w = 2, 4, 8, 16: (X, Y); 64: the
    last) that carry only public constants: the low DX bits of X and DY bits of Y.
    At round w a packed word holds, for combination g, the hi group's eq (X) and the lo
    group's (lt, eq) (Y) at bits [2 w g, 2 w (g + 1)); a group is dead when all its
    input bits lie below `coarse`: its (lt, eq) is (0, 1), so X reads all ones and Y 0xAA..
    there (with the AND masks zero at those bits, as party and dealer both make them)."""
    out = {}
    for w in (2, 4, 8, 16):
        dx = 2 * w * (coarse // (2 * w))
        dy = 2 * w * ((coarse - w) // (2 * w) + 1) if coarse >= w else 0
        out[w] = (min(dx, 64), min(dy, 64))
    out[64] = (0, 0)
    return out


def live_mask(dead: int) -> np.int64:
    """Ones above the low `dead` bits."""
    return np.int64(-1 << dead) if dead < 64 else np.int64(0)


@njit
def pack_live(X, dead, out):  # pragma: no cover - compiled
    """The high 64 - dead bits (dead = 8, 16 or 32) of each word of X, back to back in the
    words of `out` (8, 4 or 2 words of X in 7, 3 or 1 words of out; X.size a multiple of 8, 4 or 2)."""
    if dead == 16:
        for i in range(X.size // 4):
            a = np.uint64(X[4 * i]) >> np.uint64(16)
            b = np.uint64(X[4 * i + 1]) >> np.uint64(16)
            c = np.uint64(X[4 * i + 2]) >> np.uint64(16)
            d = np.uint64(X[4 * i + 3]) >> np.uint64(16)
            out[3 * i] = np.int64(a | (b << np.uint64(48)))
            out[3 * i + 1] = np.int64((b >> np.uint64(16)) | (c << np.uint64(32)))
            out[3 * i + 2] = np.int64((c >> np.uint64(32)) | (d << np.uint64(16)))
    elif dead == 32:
        for i in range(X.size // 2):
            out[i] = np.int64((np.uint64(X[2 * i]) >> np.uint64(32))
                              | (np.uint64(X[2 * i + 1]) & np.uint64(0xFFFFFFFF00000000)))
    else:  # 8: seven bytes of each of 8 words
        for i in range(X.size // 8):
            acc = np.uint64(0)
            for j in range(8):
                v = np.uint64(X[8 * i + j]) >> np.uint64(8)
                sh = 56 * j
                lo = sh & 63
                acc |= v << np.uint64(lo)
                if lo + 56 >= 64:
                    out[7 * i + (sh >> 6)] = np.int64(acc)
                    acc = v >> np.uint64(64 - lo) if lo > 0 else np.uint64(0)


@njit
def unpack_live(P, dead, fill, out):  # pragma: no cover - compiled
    """Inverse of pack_live: words whose high 64 - dead bits come from P, low bits from `fill`."""
    low = np.uint64(fill) & ((np.uint64(1) << np.uint64(dead)) - np.uint64(1))
    if dead == 16:
        m48 = np.uint64(0xFFFFFFFFFFFF)
        for i in range(out.size // 4):
            p0, p1, p2 = np.uint64(P[3 * i]), np.uint64(P[3 * i + 1]), np.uint64(P[3 * i + 2])
            out[4 * i] = np.int64(((p0 & m48) << np.uint64(16)) | low)
            out[4 * i + 1] = np.int64((((p0 >> np.uint64(48)) | (p1 << np.uint64(16))) & m48) << np.uint64(16) | low)
            out[4 * i + 2] = np.int64((((p1 >> np.uint64(32)) | (p2 << np.uint64(32))) & m48) << np.uint64(16) | low)
            out[4 * i + 3] = np.int64(((p2 >> np.uint64(16)) << np.uint64(16)) | low)
    elif dead == 32:
        for i in range(P.size):
            p = np.uint64(P[i])
            out[2 * i] = np.int64((p << np.uint64(32)) | low)
            out[2 * i + 1] = np.int64((p & np.uint64(0xFFFFFFFF00000000)) | low)
    else:  # 8
        m56 = np.uint64(0xFFFFFFFFFFFFFF)
        for i in range(out.size // 8):
            for j in range(8):
                sh = 56 * j
                w, b = sh >> 6, sh & 63
                v = np.uint64(P[7 * i + w]) >> np.uint64(b)
                if b + 56 > 64:
                    v |= np.uint64(P[7 * i + w + 1]) << np.uint64(64 - b)
                out[8 * i + j] = np.int64(((v & m56) << np.uint64(8)) | low)


@njit
def level1(c, hi, rb, P, first, out):  # pragma: no cover - compiled
    """Width-1 level from the opened c and <r>, <P>: pairs (lt at 2i, eq at 2i + 1).
    c holds R rows (a comparison against R thresholds, c - t_i each) of rb.size entries,
    all against the one edaBit r; `hi` masks every operand (a coarse comparison's live
    bits; -1: all). No subtraction here: numba marks int64 arithmetic no-signed-wrap,
    and LLVM may then turn a sign test of a difference into a comparison that does
    not wrap."""
    n = rb.size
    for k in range(c.size // n):
        for i in range(n):
            e = k * n + i
            A = ~(c[e] & hi) | np.int64(-0x8000000000000000)  # bit 63 reads as 0 in c (set in ~c)
            R = rb[i] & hi & np.int64(0x7FFFFFFFFFFFFFFF)
            R1 = R >> 1  # R >= 0: arithmetic = logical
            A1 = (A >> 1) & np.int64(0x7FFFFFFFFFFFFFFF)
            p = P[i] & hi
            LT = (((A & R) ^ R1) & A1) ^ (A & p)
            EQ = (A1 & R) ^ (A & R1) ^ p
            if first:
                EQ ^= A1 & A
            out[e] = (LT & np.int64(0x5555555555555555)) | ((EQ & np.int64(0x5555555555555555)) << 1)


@njit
def pack_level(W, w, lo, pair, a, b, am, bm, X, Y):  # pragma: no cover - compiled
    """For level w: X = (eq_hi beside lt_lo and eq_lo) xor (a & am), Y = (lt_lo, eq_lo) xor
    (b & bm), w element chunks packed into one word (unit 2; chunk k at shift 2k, bits
    disjoint, so xor packs); am, bm: the AND masks' live bits (-1: all). Every kept bit
    comes from at most bit 63: arithmetic shifts are safe."""
    m = X.size
    for i in range(m):
        X[i] = a[i] & am
        Y[i] = b[i] & bm
    for k in range(w):
        for i in range(m):
            v = W[k * m + i]
            x = (v >> (w + 1)) & lo
            X[i] ^= (x | (x << 1)) << (2 * k)
            Y[i] ^= (v & pair) << (2 * k)


@njit
def _and_share(D, F, a, b, am, bm, c, first, z):  # pragma: no cover - compiled
    for i in range(z.size):
        v = c[i] ^ (D[i] & b[i] & bm) ^ (F[i] & a[i] & am)
        if first:
            v ^= D[i] & F[i]
        z[i] = v


@njit
def finish_level(W, w, lo, pair, D, F, a, b, am, bm, c, first):  # pragma: no cover - compiled
    """The AND's output share (masks a & am, b & bm), unpacked, folded into W in place:
    W = lt_hi ^ (eq_hi lt_lo, eq_hi eq_lo)."""
    m = D.size
    z = np.empty(m, np.int64)
    _and_share(D, F, a, b, am, bm, c, first, z)
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
    for the B2A. cpub holds R rows of rb.size entries, all against the one edaBit r."""
    m = D.size
    n = rb.size
    z = np.empty(m, np.int64)
    _and_share(D, F, a, b, np.int64(-1), np.int64(-1), c, first, z)
    i = 0  # j % n, advanced with j (j runs 0, 1, ... in this loop order)
    for k in range(64):
        for q in range(m):
            j = k * m + q
            bit = ((W[j] >> 32) ^ (z[q] >> k) ^ (rb[i] >> 63) ^ (sb[j >> 6] >> (j & 63))) & 1
            if first:
                bit ^= (cpub[j] >> 63) & 1
            out[j] = bit
            i += 1
            if i == n:
                i = 0


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


@njit
def b2a_product_trunc(v, y, cy, k, low, off, T, s, sS, sM, out):  # pragma: no cover - compiled
    """[b y] for y = x >> k from its truncation opening cy (protocols.powers: y = C + S,
    C = (cy >> k) - 2^(62-k) public, S = S0 + w m T): v y + (1 - 2v)(C [s] + [s S0] + w T [s m])."""
    for e in range(out.size):
        ve = np.int64(v[e])
        ce = cy[e]
        C = ((ce >> k) & low) - off
        w = np.int64(ce >= 0)
        out[e] = ve * y[e] + (1 - 2 * ve) * (C * s[e] + sS[e] + w * T * np.int64(sM[e]))


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
def deal_and2(a0, a1, b0, b1, mask, sub, out):  # pragma: no cover - compiled
    """Two parties: correction of <c> = ((a0 ^ a1) & (b0 ^ b1) & mask) xor party 1's share."""
    for i in range(out.size):
        out[i] = ((a0[i] ^ a1[i]) & (b0[i] ^ b1[i]) & mask) ^ sub[i]


@njit
def deal_ytrunc(tr0, tr1, k, low, sbits, rows, sub_yS, sub_yM, sub_sS, sub_sM,  # pragma: no cover - compiled
                yS, yM, sS, sM):
    """Two parties: corrections of a truncated y's tuple (S0 = -(r >> k), m = msb r, r = tr0 + tr1)
    and of its products with the daBits of `rows` rows ([s S0], [s m]); the m arrays may be
    uint32 (shares mod 2^32: the stores wrap)."""
    n1 = tr0.size
    for e in range(n1):
        r = tr0[e] + tr1[e]
        s0 = -((r >> k) & low)
        m = np.int64(r < 0)
        yS[e] = s0 - sub_yS[e]
        yM[e] = m - sub_yM[e]
        for j in range(rows):
            i = j * n1 + e
            s = (sbits[i >> 6] >> (i & 63)) & 1
            sS[i] = s * s0 - sub_sS[i]
            sM[i] = s * m - sub_sM[i]


@njit
def deal_dabits(sb, mask, sub_s, out_s):  # pragma: no cover - compiled
    """Correction of [s] (or of [m s] when mask is given) for the daBits packed in sb."""
    has_mask = mask.size > 0
    for e in range(out_s.size):
        s = (sb[e >> 6] >> (e & 63)) & 1
        out_s[e] = (mask[e] * s if has_mask else s) - sub_s[e]

"""Exact less-than-zero: [x] -> [msb(x)] for every ring element, in 6 rounds.

Also fuses products: ltz(x, muls=[y]) returns [b] and [b * y] at no extra round
(ReLU = x - b x costs the same 6 rounds as the comparison).

Method (DESIGN.md section 6, with two round savings):
 1. Dealer edaBit r: [r] and <r>. Open c = x + r (round 1; also d_j = y_j - m_j for
    fused products). msb(x) = msb(c) xor msb(r) xor borrow, with
    borrow = [c mod 2^63 < r mod 2^63].
 2. BitLT on whole words, per bit i: lt_i = ~c_i r_i, eq_i = ~c_i xor r_i, combined
    by lt = lt_hi xor eq_hi lt_lo, eq = eq_hi eq_lo over widths 1, 2, 4, 8, 16, 32.
    Width 1 is local: with a_i = ~c_i public, lt' = a1 r1 + a1 a0 r0 + a0 (r1 r0) and
    eq' = a1 a0 + a1 r0 + a0 r1 + (r1 r0) (GF(2)), the dealer supplying <r1 r0>.
    Widths 2..16 take one round each (rounds 2-5): both ANDs of a level ride in one
    word, and the active bits of w chunks of elements are packed into full words, so
    level w opens 2 n / w words.
 3. The last level (width 32) and the B2A share round 6: with u = r63 xor lt_hi,
    p = eq_hi, q = lt_lo, msb(x) = msb(c) xor u xor p q. Open the 3 bits masked by
    dealer bits s1, s2, s3; then u, p, q are affine in [s_i] and msb(x) is a public
    combination of the dealer's arithmetic [s_S] for all 7 products S. A fused
    product [b y] uses [y s_S] = d [s_S] + [m s_S].
Rounds: 6. Bytes sent per element per peer: 8 (c) + 8 + 4 + 2 + 1 (levels) + 1 (bits)
= 24, plus 8 per fused product. Error: none (exact for all 2^64 ring values).
References: Damgard et al., "Unconditionally secure constant-rounds MPC for equality,
comparison, bits and exponentiation" (TCC 2006) for bitwise LT; Escudero et al.,
"Improved primitives for MPC over mixed arithmetic-binary circuits" (CRYPTO 2020)
for edaBits; Rotaru and Wood, "MArBled circuits" (INDOCRYPT 2019) for daBits.
"""
from __future__ import annotations

import numpy as np

LEVELS = (2, 4, 8, 16)
U = np.uint64


def _mask(period: int) -> np.uint64:
    """Word with ones at bit positions that are multiples of `period`."""
    m = 0
    for i in range(0, 64, period):
        m |= 1 << i
    return U(m)


E = {w: _mask(w) for w in (1, 2, 4, 8, 16, 32, 64)}
TOP = U(1 << 63)
LOW63 = U((1 << 63) - 1)
PAD = 16


def _pack(x: np.ndarray, w: int) -> np.ndarray:
    """w chunks of words whose live bits sit at positions = 0 mod w -> one word per w."""
    ch = x.reshape(w, -1)
    out = ch[0].copy()
    for k in range(1, w):
        out |= ch[k] << U(k)
    return out


def _unpack(z: np.ndarray, w: int) -> np.ndarray:
    out = np.empty((w, z.size), U)
    m = E[w]
    for k in range(w):
        np.bitwise_and(z >> U(k), m, out=out[k])
    return out.reshape(-1)


def ltz(rt, x: np.ndarray, muls: list[np.ndarray] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """[x < 0] (int64 shares of 0/1) and [[x < 0] * y] for each y in `muls` (same shape as x)."""
    shape, n = x.shape, x.size
    npad = -(-max(n, 1) // PAD) * PAD

    def flat(a):
        f = np.zeros(npad, np.int64)
        f[:n] = a.ravel()
        return f

    mat = rt.dealer.request("ltz", n=npad, k=len(muls))
    own = mat.own()
    opened = rt.open([flat(x) + own["r"]] + [flat(y) - own[f"m{j}"] for j, y in enumerate(muls)], "ltz.c")
    c, ds = opened[0].view(U), opened[1:]
    m = mat.get()
    first = rt.rank == 0

    # level 1 (width 1), local: bit 63 of both operands reads as 0 (compare low 63 bits)
    rb = m["rb"].view(U)
    A = ~c | TOP
    R = rb & LOW63
    P = m["P"].view(U)
    A1 = A >> U(1)
    LT = ((A1 & (R >> U(1))) ^ (A1 & A & R) ^ (A & P)) & E[2]
    EQ = (A1 & R) ^ (A & (R >> U(1))) ^ P
    if first:
        EQ ^= A1 & A
    EQ &= E[2]

    for w in LEVELS:  # rounds 2-5
        M = E[2 * w]
        EQh = (EQ >> U(w)) & M
        LTh = (LT >> U(w)) & M
        X = _pack(EQh | (EQh << U(w)), w)
        Y = _pack((LT & M) | ((EQ & M) << U(w)), w)
        a, b, cc = m[f"a{w}"].view(U), m[f"b{w}"].view(U), m[f"c{w}"].view(U)
        D, F = rt.open_xor([X ^ a, Y ^ b], "ltz.and")
        Z = cc ^ (D & b) ^ (F & a)
        if first:
            Z ^= D & F
        Z = _unpack(Z, w)
        LT = LTh ^ (Z & M)
        EQ = (Z >> U(w)) & M

    # round 6: last level + B2A through three daBits
    u = ((LT >> U(32)) ^ (rb >> U(63))) & U(1)
    p = (EQ >> U(32)) & U(1)
    q = LT & U(1)
    t = ((u | (p << U(1)) | (q << U(2))) ^ (m["s"].view(U) & U(7))).astype(np.uint8)
    (V,) = rt.open_xor([t], "ltz.b2a")
    V = V.astype(np.int64)
    v1, v2, v3 = V & 1, (V >> 1) & 1, (V >> 2) & 1
    b1, b2, b3 = 1 - 2 * v1, 1 - 2 * v2, 1 - 2 * v3
    g1 = 1 - 2 * v1
    mc = (c >> U(63)).astype(np.int64)
    gc = 1 - 2 * mc
    # msb(x) = mc + gc * (u + pq - 2 u pq), expanded over the products s_S
    k0 = mc + gc * (v1 + v2 * v3 - 2 * v1 * v2 * v3)
    K = np.stack([
        b1 * (1 - 2 * v2 * v3),  # s1
        v3 * b2 * g1,  # s2
        v2 * b3 * g1,  # s3
        -2 * b1 * v3 * b2,  # s1 s2
        -2 * b1 * v2 * b3,  # s1 s3
        b2 * b3 * g1,  # s2 s3
        -2 * b1 * b2 * b3,  # s1 s2 s3
    ]) * gc[None, :]
    Bs = (K * m["sS"]).sum(axis=0)
    bit = Bs + k0 if first else Bs
    prods = []
    for j, y in enumerate(muls):
        xy = k0 * flat(y) + ds[j] * Bs + (K * m[f"ms{j}"]).sum(axis=0)
        prods.append(xy[:n].reshape(shape))
    return bit[:n].reshape(shape), prods

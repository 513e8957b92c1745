"""Exact less-than-zero: [x] -> [msb(x)] for every ring element, in 7 rounds.

Also fuses products: the caller may ask for [b * y_j] for values y_j it supplies as
late as the last round (ReLU = x - b x costs the same 7 rounds as the comparison, and
a polynomial can be evaluated inside the comparison's rounds, see protocols.rounds).

Method (DESIGN.md section 6, one round saved):
 1. Dealer edaBit r: [r] and <r>. Open c = x + r (round 1).
    msb(x) = msb(c) xor msb(r) xor borrow, borrow = [c mod 2^63 < r mod 2^63].
 2. BitLT on whole words, per bit i: lt_i = ~c_i r_i, eq_i = ~c_i xor r_i, combined
    by lt = lt_hi xor eq_hi lt_lo, eq = eq_hi eq_lo over widths 1, 2, 4, 8, 16, 32.
    Width 1 is local: with a_i = ~c_i public, lt' = a1 r1 + a1 a0 r0 + a0 (r1 r0) and
    eq' = a1 a0 + a1 r0 + a0 r1 + (r1 r0) over GF(2), the dealer supplying <r1 r0>.
    Widths 2..32 take one round each (rounds 2-6): both ANDs of a level ride in one
    word, and the live bits of w chunks of elements are packed into full words.
 3. B2A with a daBit ([s], <s>) (round 7): open v = b xor s, [b] = v + (1 - 2v)[s].
    A fused product uses a dealer mask m: open d = y - m in the same round,
    [b y] = v y + (1 - 2v)(d [s] + [m s]).
Rounds: 7. Bytes sent per element per peer: 8 (c) + 8 + 4 + 2 + 1 + 0.125 (levels)
+ 1 (the B2A bit) = 24.1, plus 8 per fused product. Error: none (exact for all 2^64
ring values).
References: Damgard et al., "Unconditionally secure constant-rounds MPC for equality,
comparison, bits and exponentiation" (TCC 2006) for bitwise LT; Escudero et al.,
"Improved primitives for MPC over mixed arithmetic-binary circuits" (CRYPTO 2020)
for edaBits; Rotaru and Wood, "MArBled circuits" (INDOCRYPT 2019) for daBits.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mpcrt.protocols.rounds import Open, run1

U = np.uint64
PAD = 64


def _mask(period: int) -> np.uint64:
    """Word with ones at bit positions that are multiples of `period`."""
    m = 0
    for i in range(0, 64, period):
        m |= 1 << i
    return U(m)


E = {w: _mask(w) for w in (1, 2, 4, 8, 16, 32, 64)}
TOP = U(1 << 63)
LOW63 = U((1 << 63) - 1)


def _pack(x: np.ndarray, w: int, unit: int = 1) -> np.ndarray:
    """w chunks of words whose live bits repeat with period w * unit -> one word per w."""
    ch = x.reshape(w, -1)
    out = ch[0].copy()
    for k in range(1, w):
        out |= ch[k] << U(k * unit)
    return out


def _unpack(z: np.ndarray, w: int, live: np.uint64, unit: int = 1) -> np.ndarray:
    out = np.empty((w, z.size), U)
    for k in range(w):
        np.bitwise_and(z >> U(k * unit), live, out=out[k])
    return out.reshape(-1)


def _and(rt, m, w, X, Y):
    """Generator step: XOR-shared word AND with the level-w triple (one round)."""
    a, b, cc = m[f"a{w}"].view(U), m[f"b{w}"].view(U), m[f"c{w}"].view(U)
    _, (D, F) = yield Open(xor=[X ^ a, Y ^ b])
    Z = cc ^ (D & b) ^ (F & a)
    if rt.rank == 0:
        Z ^= D & F
    return Z


def ltz_steps(rt, x: np.ndarray, n_muls: int = 0, muls: Callable[[], list[np.ndarray]] | None = None):
    """Generator: [x < 0] (int64 shares of 0/1) and [[x < 0] * y_j] for the n_muls
    arrays `muls()` returns (called in the last round; each of x's shape)."""
    shape, n = x.shape, x.size
    npad = -(-max(n, 1) // PAD) * PAD

    def flat(a):
        f = np.zeros(npad, np.int64)
        f[:n] = a.ravel()
        return f

    mat = rt.dealer.request("ltz", n=npad, k=n_muls)
    own = mat.own()
    (c,), _ = yield Open(add=[flat(x) + own["r"]])  # round 1
    c = c.view(U)
    m = mat.get()
    first = rt.rank == 0

    # level 1 (width 1), local. Bit 63 of both operands reads as 0 (compare low 63 bits).
    rb = m["rb"].view(U)
    A = ~c
    A |= TOP
    R = rb & LOW63
    R1 = R >> U(1)
    P = m["P"].view(U)
    A1 = A >> U(1)
    LT = A & R
    LT ^= R1
    LT &= A1
    LT ^= A & P
    EQ = A1 & R
    EQ ^= A & R1
    EQ ^= P
    if first:
        EQ ^= A1 & A
    # from here on one word holds both: the pair for a group of bits at position p is
    # (lt at p, eq at p + 1); groups of width w sit at p = 0 mod w
    W = LT & E[2]
    EQ &= E[2]
    W |= EQ << U(1)
    del A, A1, R, R1, LT, EQ

    for w in (2, 4, 8, 16):  # rounds 2-5: lo group at p = 0 mod 2w, hi group at p + w
        lo, pair = E[2 * w], E[2 * w] | (E[2 * w] << U(1))
        X = (W >> U(w + 1)) & lo  # eq_hi
        X |= X << U(1)  # ... beside both lt_lo and eq_lo
        Y = W & pair  # (lt_lo, eq_lo)
        Z = yield from _and(rt, m, w, _pack(X, w, 2), _pack(Y, w, 2))
        Z = _unpack(Z, w, pair, 2)  # (eq_hi lt_lo, eq_hi eq_lo)
        W = (W >> U(w)) & lo  # lt_hi
        W ^= Z

    # round 6: last level (width 32), one AND per element, 64 elements per word
    Z = _unpack((yield from _and(rt, m, 64, _pack((W >> U(33)) & U(1), 64), _pack(W & U(1), 64))), 64, U(1))
    borrow = ((W >> U(32)) ^ Z) & U(1)
    bx = borrow ^ (rb >> U(63))
    if first:
        bx ^= c >> U(63)

    # round 7: B2A with the daBit, fused products opened alongside
    ys = [flat(y) for y in (muls() if n_muls else [])]
    ds, (v,) = yield Open(add=[y - m[f"m{j}"] for j, y in enumerate(ys)], xor=[(bx ^ (m["sb"].view(U) & U(1))).astype(np.uint8)])
    v = v.astype(np.int64)
    g = 1 - 2 * v
    bit = g * m["s"]
    if first:
        bit += v
    prods = [(v * y + g * (d * m["s"] + m[f"ms{j}"]))[:n].reshape(shape) for j, (y, d) in enumerate(zip(ys, ds))]
    return bit[:n].reshape(shape), prods


def ltz(rt, x: np.ndarray, muls: list[np.ndarray] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """[x < 0] and [[x < 0] * y] for each y in `muls` (same shape as x), 7 rounds."""
    muls = list(muls)
    return run1(rt, ltz_steps(rt, x, len(muls), lambda: muls))

"""Truncation and powers in one round: [x] -> [u], [u^2], ..., [u^J] with u = x >> k.

The truncation of protocols.truncation opens c = x + 2^62 + r and gives
u = C + S with C = (c >> k) - 2^(62-k) public and S = -(r >> k) + w m 2^(64-k),
w = 1 - msb(c) public, m = msb(r). The dealer also hands out [S0^j] (S0 = -(r >> k))
and [m S0^l], so every power of S, (S0 + w m T)^j = S0^j + w sum_i binom(j, i) T^i m S0^(j-i)
(T = 2^(64-k); m^i = m), is a public combination of dealer shares, and
u^j = sum_i binom(j, i) C^(j-i) [S^i] is local. Ring identities: exact mod 2^64.
u carries the truncation's error (0 or +1 ulp); powers are those of that u.
Rounds: 1. Bytes per element per peer: 8. Dealer: 2J words per element.

`trunc_mul_steps` is the J = 1 case fused with a product: [u y] for a y whose mask
was opened earlier, again in the truncation's single round.
This is the power-tuple idea of Damgard et al. (TCC 2006, "[r], [r^2], ... from the
dealer") applied to the output of a truncation.
"""
from __future__ import annotations

from math import comb

import numpy as np

from mpcrt.kernels import ring
from mpcrt.protocols.rounds import Open, run1

OFFSET = np.int64(1 << 62)


def _public_parts(c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    C = ring.lshr(c, k) - np.int64(1 << (62 - k))
    w = 1 - ring.msb(c)
    return C, w


def trunc_pow_steps(rt, x: np.ndarray, k: int, J: int):
    """Generator (1 round): [(x >> k)^j] for j = 1..J, list in that order."""
    mat = rt.dealer.request("truncpow", shape=x.shape, k=int(k), J=int(J))
    own = mat.own()
    z = np.add(x, own["r"], out=np.empty(np.shape(x), np.int64))  # an array even for 0-d
    if rt.rank == 0:
        z += OFFSET
    (c,), _ = yield Open(add=[z])
    m = mat.get()
    C, w = _public_parts(c, k)
    T = [(1 << (i * (64 - k))) if i * (64 - k) < 64 else 0 for i in range(J + 1)]  # Python ints
    S = [None]  # S^j shares, j >= 1
    for j in range(1, J + 1):
        sj = m[f"S{j}"].copy()
        extra = np.zeros_like(sj)
        for i in range(1, j + 1):
            if T[i]:
                extra += ring.const(comb(j, i) * T[i]) * m[f"M{j - i}"]
        sj += w * extra
        S.append(sj)
    out = []
    Cp = [np.ones_like(C)]
    for j in range(1, J + 1):
        Cp.append(Cp[-1] * C)
    for j in range(1, J + 1):
        acc = np.zeros_like(C)
        for i in range(1, j + 1):
            acc += np.int64(comb(j, i)) * Cp[j - i] * S[i]
        if rt.rank == 0:
            acc += Cp[j]
        out.append(acc)
    return out


def trunc_pow(rt, x: np.ndarray, k: int, J: int) -> list[np.ndarray]:
    return run1(rt, trunc_pow_steps(rt, x, k, J))


def mask_request(rt, shape, k: int):
    """Ask the dealer for a (truncation, multiplicand mask) pair; returns the material."""
    return rt.dealer.request("truncmul", shape=tuple(shape), k=int(k))


def trunc_mul_steps(rt, x: np.ndarray, k: int, y: np.ndarray, e: np.ndarray, mat):
    """Generator (1 round): [(x >> k) * y] given e = y - a already opened (a = mat's mask)."""
    own = mat.own()
    z = x + own["r"]
    if rt.rank == 0:
        z += OFFSET
    (c,), _ = yield Open(add=[z])
    m = mat.get()
    C, w = _public_parts(c, k)
    T = ring.const(1 << (64 - k))
    # [S y] = e [S] + [S a] with S = S0 + w m T
    sy = e * m["S1"] + m["S1a"] + w * T * (e * m["M0"] + m["M0a"])
    return C * y + sy

"""Truncation and powers in one round: [x] -> [u], [u^2], ..., [u^J] with u = x >> k.

The truncation of protocols.truncation opens c = x + 2^62 + r and gives
u = C + S with C = (c >> k) - 2^(62-k) public and S = -(r >> k) + w m 2^(64-k),
w = 1 - msb(c) public, m = msb(r). The dealer also hands out [S0^j] (S0 = -(r >> k))
and [m S0^l], so every power of S, (S0 + w m T)^j = S0^j + w sum_i binom(j, i) T^i m S0^(j-i)
(T = 2^(64-k); m^i = m), is a public combination of dealer shares, and
u^j = sum_i binom(j, i) C^(j-i) [S^i] is local. Ring identities: exact mod 2^64.
u carries the truncation's error (0 or +1 ulp); powers are those of that u.
With `top=True` each party sends only the top 4-6 bytes of its share of the opening
(protocols.rounds.Top): c is then known up to d < N 2^s below it, which moves u by -1
with probability <= 1/16 (error -1..+1 ulp) and saves 3-4 of the 8 bytes.
Rounds: 1. Bytes per element per peer: 8. Dealer: 2J words per element (1.5J when k <= 32:
the [m S0^l] only matter mod 2^k, so they travel as 32-bit values).

`trunc_mul_steps` is the J = 1 case fused with a product: [u y] for a y whose mask
was opened earlier, again in the truncation's single round.
This is the power-tuple idea of Damgard et al. (TCC 2006, "[r], [r^2], ... from the
dealer") applied to the output of a truncation.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels import powers as fused
from mpcrt.kernels import ring
from mpcrt.kernels.prg import LazyRows
from mpcrt.protocols.rounds import Open, masked_sum, narrow, run1
from mpcrt.protocols.truncation import OFFSET


def _public_parts(c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    C = ring.lshr(c, k) - np.int64(1 << (62 - k))
    w = 1 - ring.msb(c)
    return C, w


def request(rt, shape: tuple, k: int, J: int):
    """Ask the dealer for a truncation-with-powers tuple ahead of use (a chain of steps
    requests all of them at its start, so the dealer works while the rounds run)."""
    return rt.dealer.request("truncpow", shape=tuple(shape), k=int(k), J=int(J))


def _open_steps(rt, x: np.ndarray, k: int, J: int, mat, top: bool = False):
    """Generator (1 round): open x + r (+ OFFSET on party 0) with the tuple `mat` (requested
    here if None); returns (c, S, M), the opening and the tuple's (J, n) arrays (LazyRows
    where this party expands them as it uses them, see tuple_arrays).
    top: only the bits the truncation keeps travel (rounds.narrow), and u is exact up to
    -1..+1 (the -1 with probability <= 1/16) instead of 0..+1, for x >= -2^62 + N 2^s
    (s = 64 - 8 bytes sent; below that the opening may cross the wrap and fail)."""
    mat = mat if mat is not None else request(rt, x.shape, k, J)
    r, add = mat.own()["r"], OFFSET if rt.rank == 0 else 0
    z = narrow(x, k, rt.world_size, r, add) if top else masked_sum(x, r, add)
    (c,), _ = yield Open(add=[z], fresh=True)
    return (c, *tuple_arrays(mat.get(), J, c.size, c.size))


def trunc_pow_steps(rt, x: np.ndarray, k: int, J: int, mat=None, opened: list | None = None, top: bool = False):
    """Generator (1 round): [(x >> k)^j] for j = 1..J, list in that order.
    `mat`: the tuple if requested ahead (`request` with the same shape, k, J);
    `opened`: a list the public opening c is appended to (for a later fused product);
    `top`: a narrow opening, see _open_steps."""
    c, S, M = yield from _open_steps(rt, x, k, J, mat, top)
    if opened is not None:
        opened.append(c)
    out = fused.combine(c.reshape(-1), S, M, k, rt.rank == 0)
    return [o.reshape(c.shape) for o in out]


def trunc_poly_steps(rt, x: np.ndarray, k: int, J: int, coef, X: np.ndarray | None = None, xcoef: int = 0, mat=None,
                     top: bool = False):
    """Generator (1 round): [sum_j coef[j] u^j + xcoef X] for u = x >> k (coef[0] the constant
    term, J + 1 public ring values; X a shared array of x's shape or None): a truncation
    with powers whose powers go straight into the polynomial (one fused pass, no [u^j] stored).
    `mat`, `top` as for trunc_pow_steps (request with the same shape, k, J)."""
    c, S, M = yield from _open_steps(rt, x, k, J, mat, top)
    return fused.poly(c.reshape(-1), S, M, k, rt.rank == 0, coef, X, xcoef).reshape(c.shape)


def tuple_arrays(m: dict, J: int, npad: int, n: int) -> tuple:
    """(S, M) of a truncation-with-powers tuple's arrays m, laid out for npad elements
    (a comparison pads to whole words): [S0^j] and [m S0^l] as (J, n) arrays (S a view
    where S1..SJ lie back to back in one buffer, as the dealer and the PRG lay them out,
    else kernels.powers.Rows, gathered a chunk at a time), or LazyRows for a lazily
    expanded tuple (correlations.expand_party)."""
    if isinstance(m.get("M"), LazyRows):  # shares this party expands where they are used
        return m["S*"].head(n), m["M"].head(n)
    rows = [m[f"S{j}"].reshape(-1) for j in range(1, J + 1)]
    M = m["M"].reshape(J, npad)[:, :n]
    start = rows[0].ctypes.data
    if all(r.ctypes.data == start + 8 * npad * i and r.flags.c_contiguous for i, r in enumerate(rows)):
        return np.lib.stride_tricks.as_strided(rows[0], shape=(J, npad), strides=(8 * npad, 8))[:, :n], M
    return fused.Rows([r[:n] for r in rows]), M  # rows in different reply frames


def trunc_pow(rt, x: np.ndarray, k: int, J: int) -> list[np.ndarray]:
    return run1(rt, trunc_pow_steps(rt, x, k, J))


def mask_request(rt, shape, k: int):
    """Ask the dealer for a (truncation, multiplicand mask) pair; returns the material."""
    return rt.dealer.request("truncmul", shape=tuple(shape), k=int(k))


def trunc_mul_steps(rt, x: np.ndarray, k: int, y: np.ndarray, e: np.ndarray, mat):
    """Generator (1 round): [(x >> k) * y] given e = y - a already opened (a = mat's mask)."""
    z = masked_sum(x, mat.own()["r"], OFFSET if rt.rank == 0 else 0)
    (c,), _ = yield Open(add=[z], fresh=True)
    m = mat.get()
    C, w = _public_parts(c, k)
    T = ring.const(1 << (64 - k))
    # [S y] = e [S] + [S a] with S = S0 + w m T
    sy = e * m["S1"] + m["S1a"] + w * T * (e * m["M0"] + m["M0a"])
    return C * y + sy

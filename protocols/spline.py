"""Piecewise-quadratic functions of a shared input for two parties in two rounds: sigmoid, tanh, gelu, ...

Computes f(x) from a table of protocols.spline_tables (sigmoid, tanh, silu, gelu in both forms,
elu, softplus, mish, and e^x for x <= 0 in softmax): knots t_1 < ... < t_m and pieces
P_j(x) = c_j0 + c_j1 (x - t_j) + c_j2 (x - t_j)^2 on [t_j, t_j+1), P_0 = f's left limit, P_m its right limit
(or 0, with x added apart where f tends to x: a tail, as silu, gelu, elu, softplus and mish
above their knots). With b_j = [x < t_j],

    f(x) = P_m(x) - sum_j b_j D_j(x),   D_j = P_j - P_j-1,

since for x in piece i exactly the b_j with j > i are 1 and the sum telescopes to P_m - P_i.
One FSS opening (protocols.fss with `sq`: one DCF key, payload (1 - 2m)(1, r, r^2)) of
z = x + r serves every knot: at z - t_j each party gets shares of b_j, b_j r and b_j r^2,
so b_j x = b_j z - b_j r and b_j x^2 = b_j z^2 - 2 z b_j r + b_j r^2 are local, as are
x = z - r and x^2 = z^2 - 2 z r + r^2 from [r], [r^2]. The sum is V = 2^S f(x), truncated
by S - f in the second round (only its top bytes travel, rounds.narrow).

Encoding. With X the ring integer of x (f fractional bits) and T_j that of t_j, piece j is
C_j0 + C_j1 (X - T_j) + C_j2 (X - T_j)^2 with C_jk = round(c_jk 2^(S - k f)) (the table's
coefficients are about the piece's own knot, so a rounding error is multiplied by at most the
piece's width squared), S = min(2f + 24, 57); expanded in powers of X in exact integers, and
D_j = P_j - P_j-1 as integers: the telescoping is exact modulo 2^64 for every ring element.
Far outside the knots, where X^2 wraps, the result's X and X^2 coefficients are exactly 0
(P_0 and P_m are constants), so no input wraps the result: exact limits beyond the knots.

Rounds: 2 (the masked opening, the truncation).
Bytes per element per peer: 12 (8 for z, 4 for the truncation's top bytes; 13 at f <= 12).
Dealer words per element: to each party the key (fss.key_bytes with sq: 2592 bytes, 324 words,
  at 64 bits, whatever the number of knots), plus the truncation's 2 words (1.5 at f = 8) to
  the corrected party.
  Local work: one DCF evaluation per knot (20 to 27 knots: 3 AES blocks per level each).
Error: the table's (within 1e-4 of f) + the coefficients' rounding (<= 2^-(S - 2f + 1) w^2 for
  a piece w wide: < 1e-6 at f = 16) + the truncation's -1..+1 ulp; exact limits beyond
  the knots. For 8 <= f <= 18 (`supports`); elsewhere the callers keep their exact-comparison
  protocols. With fewer FSS bits (MPCRT_FSS_BITS = L + 1; `use` refuses L < f + 6) it is right
  where |x| + 16 < 2^(L - f).
Reference: Boyle et al., "Function Secret Sharing for Mixed-Mode and Fixed-Point Secure
  Computation" (Eurocrypt 2021), splines from DCFs; here one DCF key is evaluated at the m
  shifted openings z - t_j (as fss.ltz_steps does for thresholds) and the powers of the mask
  ride in its payload, so one key serves all knots and both powers of x.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mpcrt.protocols import fss, truncation
from mpcrt.protocols.precision import at_f
from mpcrt.protocols.rounds import Open, narrow, run1, top_bytes
from mpcrt.protocols.shared import SharedTensor
from mpcrt.protocols.spline_tables import TABLES

NAMES = tuple(TABLES)
MIN_F, MAX_F = 8, 18  # precisions whose scale S leaves the x^2 coefficients >= 21 bits (module docstring)


def _wrap(v: int) -> int:
    """A Python integer as the int64 of its residue mod 2^64."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class Encoded:
    """A table at precision f: the knots as ring values, the first and last pieces' integer
    coefficients (of X^0, X^1, X^2) and each knot's D_j, at scale 2^S; `tail_lo` / `tail_hi`:
    add x below the first / above the last knot."""

    f: int
    S: int
    knots: tuple[int, ...]
    first: tuple[int, int, int]
    last: tuple[int, int, int]
    diffs: tuple[tuple[int, int, int], ...]
    tail_lo: bool
    tail_hi: bool


def supports(f: int) -> bool:
    """Whether the spline protocol runs at f fractional bits (module docstring)."""
    return MIN_F <= f <= MAX_F


@functools.lru_cache(maxsize=None)
def encoded(name: str, f: int) -> Encoded:
    """Table `name` at f fractional bits (module docstring: the encoding). Exact integer
    arithmetic on the table's literals, so every party derives the same integers."""
    if name not in TABLES:
        raise ValueError(f"no spline table {name!r}: use one of {', '.join(NAMES)}")
    if not supports(f):
        raise ValueError(f"splines run at {MIN_F}..{MAX_F} fractional bits, not {f}")
    tab = TABLES[name]
    S = min(2 * f + 24, 57)
    knots = tuple(round(t * 2.0 ** f) for t in tab["knots"])

    def const(v: float) -> tuple[int, int, int]:
        return (round(v * 2.0 ** S), 0, 0)

    def piece(c, T: int) -> tuple[int, int, int]:  # C0 + C1 (X - T) + C2 (X - T)^2 in powers of X, exactly
        c0, c1, c2 = (round(c[k] * 2.0 ** (S - k * f)) for k in range(3))
        return (c0 - c1 * T + c2 * T * T, c1 - 2 * c2 * T, c2)

    lo, hi = tab["left"] is None, tab["right"] is None
    pieces = [const(0.0 if lo else tab["left"])] + [piece(c, T) for c, T in zip(tab["pieces"], knots)]
    pieces.append(const(0.0 if hi else tab["right"]))
    diffs = tuple(tuple(_wrap(b - a) for a, b in zip(p, q)) for p, q in zip(pieces, pieces[1:]))
    return Encoded(f, S, knots, tuple(_wrap(c) for c in pieces[0]), tuple(_wrap(c) for c in pieces[-1]), diffs,
                   lo, hi)


def reference(name: str, f: int, X: np.ndarray) -> np.ndarray:
    """What the protocol computes before its truncation's -1..+1 ulp: floor(V / 2^(S - f)) (+ X
    beyond the knots with a tail), for ring integers X, in exact integer arithmetic."""
    e = encoded(name, f)
    out = np.empty(np.shape(X), np.int64)
    for i, x in enumerate(np.asarray(X, np.int64).ravel().tolist()):
        j = sum(x >= t for t in e.knots)  # the piece: P_0 .. P_m
        coef = [_wrap(e.first[k] + sum(d[k] for d in e.diffs[:j])) for k in range(3)]  # P_0 + D_1 + .. + D_j
        v = _wrap(sum(coef[k] * x**k for k in range(3))) >> (e.S - f)
        tail = (e.tail_hi and j == len(e.knots)) or (e.tail_lo and j == 0)
        out.flat[i] = _wrap(v + (x if tail else 0))
    return out


def request(rt, shape: tuple, f: int, name: str) -> tuple:
    """The dealer material of one spline over x of this shape: (FSS keys with sq, truncation tuple
    of x's shape, as protocols.lookahead's one-element guess scales it)."""
    e = encoded(name, f)
    spec = key_spec(rt, int(np.prod(shape, dtype=np.int64)))
    return fss.request(rt, spec), truncation.request(rt, tuple(shape), e.S - f)


def key_spec(rt, n: int) -> fss.FssSpec:
    """The FSS keys of a spline over n elements: with the product's and the square's terms, at
    MPCRT_FSS_BITS (`use` checks that they cover the knots)."""
    return fss.FssSpec.of(n, fss.bits_of(rt), prod=True, sq=True)


def steps(rt, x: np.ndarray, name: str, mats: tuple | None = None):
    """Generator, two rounds: [f(x)] at the runtime precision for the int64 shares x (any shape)."""
    f = rt.precision
    e = encoded(name, f)
    shape, n = np.shape(x), int(np.size(x))
    keys_mat, trunc_mat = mats if mats is not None else request(rt, shape, f, name)
    spec = key_spec(rt, n)
    z, keys, r, sm, smr = yield from fss.open_masked(rt, x, spec, keys_mat)
    k = e.S - f
    tr = trunc_mat.own()["r"].reshape(-1)
    if getattr(rt, "_dry", False):  # shape-only planning run (rt.plan): the rounds, none of the work
        yield Open(add=[np.zeros(n, np.int64)], fresh=True)
        return np.zeros(shape, np.int64)
    first = rt.rank == 0
    r2 = keys["w"][:n] + (keys["dr2"][:n] if first else 0)
    smr2 = keys["g"][:n] + (keys["dmr2"][:n] if first else 0)
    z2 = z * z
    x1 = -r  # [x] = z - [r], [x^2] = z^2 - 2 z [r] + [r^2]
    x2 = r2 - 2 * z * r
    c0, c1, c2 = (np.int64(c) for c in e.last)
    V = c1 * x1 + c2 * x2
    if first:
        x1 = x1 + z
        V += c0 + c1 * z + c2 * z2
    bx_first = bx_last = None
    for j, t in enumerate(e.knots):
        a, W = fss.eval_at(rt, spec, keys, z - np.int64(t))
        neg = 1 - 2 * a
        b = neg * (sm + W[0])  # [x < t_j]
        if first:
            b += a
        br = a * r + neg * (smr + W[1])  # b r
        br2 = a * r2 + neg * (smr2 + W[2])  # b r^2
        d0, d1, d2 = (np.int64(d) for d in e.diffs[j])
        V -= b * (d0 + d1 * z + d2 * z2) - br * (d1 + 2 * d2 * z) + d2 * br2  # b (D0 + D1 x + D2 x^2)
        if e.tail_lo and j == 0:
            bx_first = b * z - br  # [x < t_1] x
        if e.tail_hi and j == len(e.knots) - 1:
            bx_last = b * z - br
    (c,), _ = yield Open(add=[narrow(V, k, rt.world_size, tr, truncation.OFFSET if first else 0)], fresh=True)
    out = truncation.finish(rt, c, k, trunc_mat)
    if e.tail_lo:  # x below the first knot
        out += bx_first
    if e.tail_hi:  # x above the last knot: x - [x < t_m] x
        out += x1 - bx_last
    return out.reshape(shape)


def costs(rt, n: int, name: str, exact_rounds: int, exact_bytes: float, exact_dealer_bytes: float) -> tuple:
    """(exact, spline) seconds of f over n elements on rt.network (one-way delay, bytes/s),
    the exact protocol's rounds, bytes per element per peer and dealer bytes per element given;
    the dealer's part counted unless its material was fetched ahead (as fss.costs)."""
    delay, rate = rt.network
    n, online = fss.deciding(rt, n)
    e = encoded(name, rt.precision)
    sent = 8 + top_bytes(e.S - rt.precision, 2)
    exact = exact_rounds * delay + n * (exact_bytes / rate + fss.EXACT_S * exact_rounds / 7)
    exact += online * n * exact_dealer_bytes / rate
    return exact, 2 * delay + sent * n / rate + fss.key_seconds(key_spec(rt, n), n, len(e.knots), online, rate)


def use(rt, n: int, name: str, exact_rounds: int, exact_bytes: float, exact_dealer_bytes: float) -> bool:
    """Whether f over n elements runs as a spline: two parties, a supported precision, and
    MPCRT_COMPARISON fss, or auto where the cost model (`costs`) says it is faster over
    MPCRT_NETWORK (unset: loopback, where the exact protocols' cheaper local work wins); and
    MPCRT_FSS_BITS (L + 1) covering inputs up to 64 at least (L >= f + 6)."""
    if not supports(rt.precision) or fss.bits_of(rt) - 1 < rt.precision + 6:  # knots within 16: |x - t| < 2^6
        return False
    return fss.decide(rt, lambda: costs(rt, n, name, exact_rounds, exact_bytes, exact_dealer_bytes))


# the exact protocols' figures, measured at N = 2 over 10240 elements: rounds, bytes per element per
# peer, dealer bytes per element; what `use` weighs a spline against
EXACT_COSTS = {"sigmoid": (15, 130.3, 371.2), "tanh": (15, 130.3, 371.2), "silu": (24, 201.0, 455.2),
               "gelu": (30, 273.0, 519.2), "gelu_tanh": (28, 249.1, 498.8), "elu": (15, 98.8, 311.2),
               "softplus": (19, 155.0, 375.2), "mish": (46, 501.0, 788.8), "exp_neg": (7, 51.4, 263.5)}


def maybe(x: SharedTensor, name: str) -> SharedTensor | None:
    """f(x) as a SharedTensor (at the runtime precision, x first brought to it) by the spline where
    `use` picks it for x's size, else None (the caller runs its exact-comparison protocol)."""
    rt = x.rt
    if not use(rt, max(1, x.share.size), name, *EXACT_COSTS[name]):
        return None
    x = at_f(x)
    with rt.scope(name), np.errstate(over="ignore"):
        return SharedTensor(rt, run1(rt, steps(rt, x.share, name)), rt.precision)

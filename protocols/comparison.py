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
Rounds: 7. Bytes sent per element per peer: 8 (c) + 8 + 4 + 2 + 1 + 0.25 (levels)
+ 0.125 (the B2A bit, packed) = 23.4, plus 8 per fused product. Comparing one x against
R public thresholds opens x + r once and shares the edaBit: 8 + 15.4 R bytes; products
of every row with the same y share y's mask too (8 bytes, not 8 R), or open nothing
when y comes out of a truncation whose tuple the comparison carries (trunc_y). Range
checks that tolerate a window below each threshold compare bits 16..63 only
(coarse): 8 + 11.6 R bytes. Local work: one fused
pass per level (kernels.bitlt). Error: none (exact for all 2^64 ring values; coarse rows:
see ltz_steps).
References: Damgard et al., "Unconditionally secure constant-rounds MPC for equality,
comparison, bits and exponentiation" (TCC 2006) for bitwise LT; Escudero et al.,
"Improved primitives for MPC over mixed arithmetic-binary circuits" (CRYPTO 2020)
for edaBits; Rotaru and Wood, "MArBled circuits" (INDOCRYPT 2019) for daBits.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mpcrt.kernels import bitlt, bufpool, ring
from mpcrt.kernels import powers as powers_kernel
from mpcrt.protocols import truncation
from mpcrt.protocols.powers import tuple_arrays
from mpcrt.protocols.rounds import Open, run1

PAD = 64
LEVELS = (2, 4, 8, 16)  # packing widths of rounds 2-5; round 6 packs 64 elements per word
LO = {w: bitlt.period_mask(2 * w) for w in LEVELS}
PAIR = {w: LO[w] | np.int64(LO[w] << 1) for w in LEVELS}


def request(rt, n: int, n_muls: int = 0, rows: int = 1, mul_rows: int | None = None, shared_y: bool = False,
            powers: tuple[int, int, int] | None = None, coarse: int = 0, trunc_y: int = 0, halves: bool = False,
            xor_rows: bool = False):
    """Ask the dealer for one comparison's material ahead of use (n elements; with rows R,
    n elements compared against R thresholds each, sharing one mask; the fused products
    on the first mul_rows rows, default all; shared_y: every row multiplies the same y,
    so each product has one mask for all rows; powers (k, J, beta): also the tuple of a
    truncation-with-powers of beta x that reuses the comparison's opening, see ltz_steps;
    coarse, trunc_y, xor_rows: see ltz_steps; with trunc_y, `YTrunc(mat, n)` is y's truncation
    tuple; halves: two requests, see Halves)."""
    npad = -(-max(n, 1) // PAD) * PAD
    if rows == 1 and powers is None and not coarse and not halves and not xor_rows:
        return rt.dealer.request("ltz", n=npad, k=int(n_muls))
    p = dict(n=npad * int(rows), k=int(n_muls), rows=int(rows))
    if coarse:
        p["cb"] = int(coarse)
    if trunc_y:
        p["tk"] = int(trunc_y)
    if mul_rows is not None and mul_rows != rows:
        p["mrows"] = int(mul_rows)
    if shared_y and n_muls:
        p["ym"] = 1
    if powers is not None:
        p["pw"] = [int(v) for v in powers]
    if xor_rows:
        p["xr"] = 1
    if halves:
        return Halves(rt, p)
    return rt.dealer.request("ltz", **p)


class RidingPowers:
    """The truncation-with-powers of beta x that rides on a comparison's opening
    c = x + r (ltz_steps' `powers`): its public part is known after round 1; its dealer
    tuple is read when first used, so a consumer that waits a round lets the dealer's
    reply arrive while that round runs."""

    def __init__(self, rt, ct: np.ndarray, mat, k: int, J: int, npad: int, shape: tuple):
        self.rt, self.ct, self.mat, self.k, self.J, self.npad, self.shape = rt, ct, mat, k, J, npad, shape

    def _tuple(self):
        return tuple_arrays(self.mat.get(), self.J, self.npad, self.ct.size)

    def all(self) -> list[np.ndarray]:
        """[(beta x >> k)^j] for j = 1..J, each of x's shape."""
        out = powers_kernel.combine(self.ct, *self._tuple(), self.k, self.rt.rank == 0)
        return [o.reshape(self.shape) for o in out]

    def poly(self, coef, X: np.ndarray | None = None, xcoef: int = 0) -> np.ndarray:
        """[coef[0] + xcoef X + sum_j coef[j] u^j], u = beta x >> k, in one pass (x's shape)."""
        out = powers_kernel.poly(self.ct, *self._tuple(), self.k, self.rt.rank == 0, coef, X, xcoef)
        return out.reshape(self.shape)


class Halves:
    """A comparison's material requested in parts (request(..., halves=True)): `eda`
    (edaBit and AND triples: rounds 1-5) now, `pw` (the powers tuple of beta r, if
    `powers`: an 'ltzpow' request right after, read only when the powers are used), and
    `da` (daBits and product terms: rounds 6-7) when the caller calls request_da(), after
    the requests its own early rounds need, so that each part's corrected party gets
    what it uses first without waiting for the rest."""

    def __init__(self, rt, params: dict):
        self.rt, self.params = rt, {k: v for k, v in params.items() if k != "pw"}
        self.eda = rt.dealer.request("ltz", **self.params, part=1)
        # the powers tuple (if any) as a third request right after: rounds 2 on need it, not round 1's reply
        self.pw = None
        if "pw" in params:
            self.pw = rt.dealer.request("ltzpow", n=params["n"], rows=params["rows"], pw=params["pw"], back=1)
        self.da = None

    def request_da(self):
        if self.da is None:
            self.da = self.rt.dealer.request("ltz", **self.params, part=2)
        return self.da


class YTrunc:
    """The truncation tuple of y that a comparison requested with trunc_y carries, as the
    material protocols.powers.trunc_pow_steps takes (J = 1) for y = x >> k, x of n elements."""

    def __init__(self, mat, n: int, shape: tuple):
        self.mat, self.n, self.shape = mat, n, tuple(shape)

    def own(self) -> dict:
        return {"r": self.mat.own()["tr"][: self.n].reshape(self.shape)}

    def get(self) -> dict:
        m = self.mat.get()
        return {"S1": m["yS1"][: self.n], "M": m["yM"][: self.n]}


X_DEAD, Y_DEAD = np.int64(-1), np.int64(-0x5555555555555556)  # dead groups open as eq = 1; (lt, eq) = (0, 1)


def _live(X, dead: int):
    """The live (high 64 - dead) bits of the words in X, packed back to back."""
    if not dead:
        return X
    out = np.empty(X.size * (64 - dead) // 64, np.int64)
    bitlt.pack_live(X, dead, out)
    return out


def _with_dead(opened, m: int, dead: int, fill: np.int64):
    """m words from their opened live bits, the dead low bits set to their public value."""
    if not dead:
        return opened.view(np.int64)
    D = np.empty(m, np.int64)
    bitlt.unpack_live(opened.view(np.int64), dead, fill, D)
    return D


def _and_open(X, Y, dead: tuple[int, int] = (0, 0)):
    """Generator step: open the masked operands of a word AND (one round); of a coarse
    comparison's words only the live bits travel (`dead`: dead low bits of X, of Y)."""
    dx, dy = dead
    _, (D, F) = yield Open(xor=[_live(X, dx), _live(Y, dy)], fresh=True)
    return _with_dead(D, X.size, dx, X_DEAD), _with_dead(F, Y.size, dy, Y_DEAD)


def ltz_steps(rt, x: np.ndarray, n_muls: int = 0, muls: Callable[[], list[np.ndarray]] | None = None, mat=None,
              thresholds=None, mul_rows: int | None = None, shared_y: bool = False,
              powers: tuple[int, int, int] | None = None, on_powers: Callable[["RidingPowers"], None] | None = None,
              coarse: int = 0, trunc_y: int = 0, xor_rows: bool = False):
    """Generator: [x < 0] (int64 shares of 0/1) and [[x < 0] * y_j] for the n_muls
    arrays `muls()` returns (called in the last round; each of the result's shape).
    `mat`: the dealer material, if requested ahead with `request`.

    With `thresholds` (public ring values t_1..t_R) it compares x against all of them:
    [x - t_i < 0] stacked on a new first axis. One masked opening of x serves every
    row (c - t_i is the opening of x - t_i), and the rows share the edaBit: 8 bytes
    per element per peer and 16 dealer bytes less for each row after the first.
    `mul_rows` K: the products are for the first K rows only (muls() then returns
    arrays of shape (K, *x.shape)). `shared_y`: every row multiplies the same y (muls()
    returns arrays of x's shape): one masked opening of y serves all K rows, 8 bytes
    per element per peer less for each row after the first (request with shared_y too).
    `powers` (k, J, beta), beta odd: after round 1, on_powers gets a RidingPowers, whose
    all() gives [(beta x >> k)^j] for j = 1..J (x's shape, as protocols.powers.trunc_pow_steps
    would) and poly() a polynomial in them: the opened c = x + r is also beta x + beta r,
    and the dealer dealt the powers tuple of beta r with the comparison's material
    (request with the same powers; with halves, as a request of its own that is read
    when the powers are used). A chain running in lockstep saves that step's opening
    (8 bytes per element per peer).
    `coarse` L (0, 8 or 16): compare only bits L..63 of x - t, for range checks that
    tolerate either answer when -2^L <= x - t < 0 (and, beyond any fixed-point value,
    when x - t >= 2^63 - 2^L, as signed ring elements), exact everywhere else: BitLT on both operands with their low L bits zeroed, whose
    dead groups are public constants, so rounds 2-5 open only their live bits:
    11.5 instead of 15.25 bytes per element per row (L = 16). Request with the same L.
    `trunc_y` k (with n_muls = 1 and shared_y): y is the truncation x' >> k done with
    the tuple this comparison's material carries (YTrunc(mat, n, shape), used by the
    caller before the last round), and muls() returns [y, c'] with c' that truncation's
    opening: the products then open nothing (8 bytes per element per peer less).
    `xor_rows` (thresholds, R >= 2): row 0 is [x < t_0] xor [x < t_1], and so are its
    products (the dealer deals row 0's arithmetic daBit and product terms for s_0 xor s_1;
    request with the same flag): a band t_0 <= x < t_1 and its product for the price of
    one product row, where a caller would otherwise multiply both."""
    shape, n = x.shape, x.size
    npad = -(-max(n, 1) // PAD) * PAD
    R = 1 if thresholds is None else len(thresholds)
    K = R if mul_rows is None else int(mul_rows)
    if n_muls and not 0 < K <= R:
        raise ValueError(f"mul_rows must be in 1..{R} (the comparison's rows), got {K}")
    shared_y = bool(shared_y and n_muls and thresholds is not None)
    if trunc_y and not (n_muls == 1 and shared_y):
        raise ValueError("trunc_y needs one fused product with shared_y")
    if xor_rows and R < 2:
        raise ValueError("xor_rows needs two or more thresholds")
    mat = mat if mat is not None else request(rt, n, n_muls, R, K, shared_y, powers, coarse, trunc_y, xor_rows=xor_rows)
    dead = bitlt.dead_bits(coarse) if coarse else None
    halves = mat if isinstance(mat, Halves) else None
    if halves is not None:
        mat = halves.eda
    own = mat.own()
    z = np.empty(npad, np.int64)
    np.add(x.reshape(-1), own["r"][:n], out=z[:n])
    z[n:] = own["r"][n:]
    (c,), _ = yield Open(add=[z], fresh=True)  # round 1
    m = mat.get()
    first = rt.rank == 0
    md = m if halves is None else None  # the daBit half, fetched when round 6 needs it
    if powers is not None:
        kp, J, beta = powers
        ct = c[:n] * np.int64(beta)
        ct += truncation.OFFSET  # as party 0 adds before a truncation's own opening
        on_powers(RidingPowers(rt, ct, mat if halves is None else halves.pw, kp, J, npad, x.shape))
    rb, P = m["rb"], m["P"]
    # coarse: the low bits of both operands are zeroed (c - t_i, and <r>, <P> share by share)
    hi = bitlt.live_mask(coarse) if coarse else np.int64(-1)
    if thresholds is not None:  # the rows' openings c - t_i, all against the one edaBit
        shape = (R,) + shape
        ts = np.asarray(thresholds, np.int64)
        c = np.subtract(c[None, :], ts[:, None], out=bufpool.empty(R * npad).reshape(R, npad)).reshape(-1)
    per = npad  # padded length of one row: the result drops the pads below
    npad = R * npad

    W = bufpool.empty(npad)
    bitlt.level1(c, hi, rb, P, first, W)  # level 1 (width 1) is local
    for w in LEVELS:  # rounds 2-5
        a, b = m[f"a{w}"], m[f"b{w}"]
        # coarse: the AND masks are zero at dead bits (the dealer dealt c for these); the kernels mask them
        am, bm = (bitlt.live_mask(dead[w][0]), bitlt.live_mask(dead[w][1])) if coarse else (np.int64(-1), np.int64(-1))
        X, Y = np.empty(npad // w, np.int64), np.empty(npad // w, np.int64)
        bitlt.pack_level(W, w, LO[w], PAIR[w], a, b, am, bm, X, Y)
        D, F = yield from _and_open(X, Y, dead[w] if coarse else (0, 0))
        bitlt.finish_level(W, w, LO[w], PAIR[w], D, F, a, b, am, bm, m[f"c{w}"], first)
    a, b = m["a64"], m["b64"]  # round 6: the last level, one AND per element
    X, Y = np.empty(npad // 64, np.int64), np.empty(npad // 64, np.int64)
    bitlt.pack_last(W, a, b, X, Y)
    D, F = yield from _and_open(X, Y)
    vmask = np.empty(npad, np.uint8)
    if md is None:
        md = halves.request_da().get()
    bitlt.finish_last(W, D, F, a, b, m["c64"], first, rb, c, md["sb"], vmask)

    # round 7: B2A with the daBit, fused products opened alongside
    keep = x.size  # real elements per row

    def padded(y):
        rows = 1 if shared_y else K
        f = bufpool.empty(rows * per).reshape(rows, per)
        f[:, :keep] = y.reshape(rows, keep)
        f[:, keep:] = 0
        return f.reshape(-1)

    def unpadded(v, rows):
        return v.reshape(rows, per)[:, :keep].reshape((rows,) + shape[1:] if thresholds is not None else shape)

    ys = [padded(y) for y in (muls() if n_muls else [])]
    if trunc_y:  # [y, its truncation's opening]: the products open nothing
        ys, cy = ys[:1], ys[1]
    ds, (v,) = yield Open(add=[] if trunc_y else [y - md[f"m{j}"] for j, y in enumerate(ys)],
                          xor=[np.packbits(vmask, bitorder="little")], fresh=True)
    v = np.unpackbits(v, bitorder="little")  # the B2A bits travel packed, 8 per byte
    if xor_rows:  # (b_0 xor s_0) xor (b_1 xor s_1) opens b_0 xor b_1 under the dealer's s_0 xor s_1
        v[:per] ^= v[per : 2 * per]
    bit = bufpool.empty(npad)
    bitlt.b2a(v, md["s"], first, bit)
    prods = []
    nk = K * per
    if trunc_y:
        k = int(trunc_y)
        y, out = ys[0], bufpool.empty(nk)
        consts = (np.int64(k), ring.const((1 << (64 - k)) - 1), np.int64(1 << (62 - k)), ring.const(1 << (64 - k)))
        for lo in range(0, nk, y.size):
            hi = lo + y.size
            bitlt.b2a_product_trunc(v[lo:hi], y, cy, *consts, md["s"][lo:hi], md["sS"][lo:hi], md["sM"][lo:hi], out[lo:hi])
        return unpadded(bit, R), [unpadded(out, K)]
    for j, (y, d) in enumerate(zip(ys, ds)):
        out = bufpool.empty(nk)
        ms = md[f"ms{j}"]
        for lo in range(0, nk, y.size):  # each row with the same y when shared_y
            hi = lo + y.size
            bitlt.b2a_product(v[lo:hi], y, d, md["s"][lo:hi], ms[lo:hi], out[lo:hi])
        prods.append(unpadded(out, K))
    return unpadded(bit, R), prods


def ltz(rt, x: np.ndarray, muls: list[np.ndarray] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """[x < 0] and [[x < 0] * y] for each y in `muls` (same shape as x), 7 rounds."""
    muls = list(muls)
    return run1(rt, ltz_steps(rt, x, len(muls), lambda: muls))

"""Exact less-than-zero: [x] -> [msb(x)] for every ring element, in 7 rounds.

Also fuses products: the caller may ask for [b * y_j] for values y_j it supplies as
late as the last round (ReLU = x - b x costs the same 7 rounds as the comparison, and
a polynomial can be evaluated inside the comparison's rounds, see protocols.rounds).

Method (docs/design.md, 'Protocols', with one round saved):
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
Both halves live here: `LtzSpec` (the options, written once), `LtzBundle` (the
dealer's kind) and `request`/`ltz_steps` (the parties').

Rounds: 7 (1 opening of x + r, 5 BitLT levels, 1 B2A with the fused products opened alongside).
Bytes per element per peer: 8 (c) + 8 + 4 + 2 + 1 + 0.25 (levels) + 0.125 (the B2A bit,
  packed) = 23.4, plus 8 per fused product; the same for every N (each of a party's N - 1
  peers gets this). Comparing one x against R public thresholds opens x + r once and
  shares the edaBit: 8 + 15.4 R; products of every row with the same y share y's mask (8,
  not 8 R), or open nothing when y comes out of a truncation whose tuple the comparison
  carries (trunc_y); range checks that tolerate a window below each threshold compare bits
  16..63 only (coarse): 8 + 11.6 R.
Dealer words per element: 6.9 for one row (2.9 [r] and AND masks, expanded by every party
  from its seed; 4.0 corrected: <r>, <P>, the AND products, the daBits: 32 bytes sent to
  the corrected party), + 2 per fused product (mask and [m s]), + about 3.9 per extra row;
  independent of N (one corrected party; the dealer expands N seeds' streams).
Error: none (exact for all 2^64 ring values; coarse rows: either answer in a window of
  2^L below each threshold, see ltz_steps).
Reference: docs/design.md, 'Protocols' (comparison); Damgard et al., "Unconditionally
  secure constant-rounds MPC for equality, comparison, bits and exponentiation" (TCC
  2006) for bitwise LT; Escudero et al., "Improved primitives for MPC over mixed
  arithmetic-binary circuits" (CRYPTO 2020) for edaBits; Rotaru and Wood, "MArBled
  circuits" (INDOCRYPT 2019) for daBits. Local work: one fused pass per level (kernels.bitlt).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Callable

import numpy as np

from mpcrt.kernels import bitlt, bufpool, ring
from mpcrt.protocols import truncation
from mpcrt.protocols.dealt import (
    PARALLEL_MIN,
    Kind,
    Passes,
    as_how,
    count,
    from_wire,
    serial,
    spans,
    wire_int,
)
from mpcrt.protocols.powers import LtzPowersSpec, PowersSpec, TruncPowers, riding_powers, tuple_arrays
from mpcrt.protocols.rounds import Open, run1

PAD = 64
LEVELS = (2, 4, 8, 16)  # packing widths of rounds 2-5; round 6 packs 64 elements per word
LO = {w: bitlt.period_mask(2 * w) for w in LEVELS}
PAIR = {w: LO[w] | np.int64(LO[w] << 1) for w in LEVELS}


COARSE_BITS = (0, 8, 16)  # low bits a coarse comparison ignores (see ltz_steps)


@dataclass(frozen=True)
class LtzSpec:
    """One comparison's options, written once: the caller builds it (`LtzSpec.of`) and
    passes it to `request` and to `ltz_steps`; the dealer rebuilds it from the request's
    wire dict (`from_wire`, keys in brackets), refusing anything malformed.

    n [n]: elements, padded to whole words (PAD) per row, times `rows`;
    muls [k]: fused products (0..8); rows [rows]: public thresholds x is compared against,
    sharing one masked opening and one edaBit; mul_rows [mrows]: the first rows that have
    the products (None: all); shared_y [ym]: every product row multiplies the same y;
    powers [pw] (k, J, beta): also the powers tuple of beta r for a truncation-with-powers
    of beta x; coarse [cb] (0, 8, 16): compare bits L..63 only; trunc_y [tk]: y is a
    truncation x' >> k whose tuple the bundle carries; xor_rows [xr]: row 0 is the xor of
    rows 0 and 1; part [part] (0, 1, 2): the whole bundle, or its edaBit half (rounds 1-5)
    or its daBit half (rounds 6-7) as a request of its own (see Halves)."""

    n: int
    muls: int = 0
    rows: int = 1
    mul_rows: int | None = None
    shared_y: bool = False
    powers: tuple[int, int, int] | None = None
    coarse: int = 0
    trunc_y: int = 0
    xor_rows: bool = False
    part: int = 0

    def __post_init__(self) -> None:
        n, R, K, k = self.n, self.rows, self.K, self.muls
        if n <= 0 or R <= 0 or n % (PAD * R) or not 0 <= k <= 8 or not 0 < K <= R:
            raise ValueError(f"malformed comparison request n={n} rows={R} mrows={K} k={k}")
        if self.trunc_y and not (0 < self.trunc_y < 63 and k == 1 and self.shared_y):
            raise ValueError(f"a truncated y (tk={self.trunc_y}) needs 0 < tk < 63, one product and a shared y")
        if self.part not in (0, 1, 2):
            raise ValueError(f"comparison bundle part must be 0, 1 or 2, got {self.part!r}")
        if self.coarse not in COARSE_BITS:
            raise ValueError(f"coarse comparison bits must be one of {COARSE_BITS}, got {self.coarse!r}")
        if self.xor_rows and R < 2:
            raise ValueError("xor_rows (row 0 as the xor of rows 0 and 1) needs rows >= 2")
        if self.powers is not None:
            riding_powers(self.powers)

    @classmethod
    def of(cls, size: int, muls: int = 0, rows: int = 1, mul_rows: int | None = None, shared_y: bool = False,
           powers: tuple[int, int, int] | None = None, coarse: int = 0, trunc_y: int = 0,
           xor_rows: bool = False) -> "LtzSpec":
        """The spec for comparing `size` elements against `rows` thresholds (shared_y only
        counts with products and rows)."""
        npad = -(-max(int(size), 1) // PAD) * PAD
        return cls(npad * int(rows), int(muls), int(rows), None if mul_rows is None else int(mul_rows),
                   bool(shared_y and muls and rows > 1), None if powers is None else tuple(int(v) for v in powers),
                   int(coarse), int(trunc_y), bool(xor_rows))

    @property
    def K(self) -> int:
        """Rows with the fused products."""
        return self.rows if self.mul_rows is None else self.mul_rows

    @property
    def per_row(self) -> int:
        return self.n // self.rows

    @property
    def n_products(self) -> int:
        """Elements of each product's terms: the product rows'."""
        return self.per_row * self.K

    @property
    def n_mask(self) -> int:
        """Length of each mask m_j: one row's when the rows share y, else all product rows'."""
        return self.per_row if self.shared_y else self.n_products

    @cached_property
    def powers_spec(self) -> PowersSpec:
        """The TruncPowers request of beta r (one row), with powers."""
        return PowersSpec((self.per_row,), self.powers[0], self.powers[1])

    @property
    def halves(self) -> tuple[bool, bool]:
        """(has the edaBit half, has the daBit half)."""
        return self.part != 2, self.part != 1

    def to_wire(self) -> dict:
        if self.rows == 1 and self.powers is None and not (self.coarse or self.trunc_y or self.xor_rows or self.part):
            return {"n": self.n, "k": self.muls}
        p = {"n": self.n, "k": self.muls, "rows": self.rows}
        if self.coarse:
            p["cb"] = self.coarse
        if self.trunc_y:
            p["tk"] = self.trunc_y
        if self.mul_rows is not None and self.mul_rows != self.rows:
            p["mrows"] = self.mul_rows
        if self.shared_y and self.muls:
            p["ym"] = 1
        if self.powers is not None:
            p["pw"] = list(self.powers)
        if self.xor_rows:
            p["xr"] = 1
        if self.part:
            p["part"] = self.part
        return p

    @classmethod
    def from_wire(cls, p: dict) -> "LtzSpec":
        rows = wire_int(p, "rows", 1)
        pw = p.get("pw")
        return cls(wire_int(p, "n"), wire_int(p, "k", 0), rows, wire_int(p, "mrows", rows),
                   bool(wire_int(p, "ym", 0, 0, 1)), None if pw is None else riding_powers(pw),
                   wire_int(p, "cb", 0), wire_int(p, "tk", 0), bool(wire_int(p, "xr", 0, 0, 1)), wire_int(p, "part", 0))


# ------------------------------------------------------------ the dealer's half
LOW63 = np.int64((1 << 63) - 1)
EVEN = ring.const(0x5555555555555555)
LTZ_LEVELS = (2, 4, 8, 16, 64)  # packing widths of BitLT rounds 2-6 (64: the last level)


class LtzBundle(Kind):
    """Everything one exact less-than-zero over n (padded) elements needs (LtzSpec):

    edaBit r ([r], <r>); <P> = products of r's adjacent low-63 bit pairs (level 1 of
    BitLT becomes local); one word-AND triple per later level, sized for packed words;
    daBits ([s], <s> packed 64 per word) for the B2A; and for each of k fused products a mask [m_j]
    with [m_j s]. With R > 1 rows the n elements are R comparisons of one value
    against R public thresholds: they share the edaBit (r, <r>, <P> of n / R elements);
    the fused products then cover the first `mul_rows` rows only, and with a shared y
    every row multiplies the same y, so m_j is one row long and repeats.
    With powers (k, J, beta) (beta odd) it also carries the TruncPowers tuple of
    beta r (S1..SJ, M): the comparison's opening c = x + r then also opens
    beta x + beta r, so a truncation-with-powers of beta x needs no opening of its own.
    Coarse (L = 8 or 16): the AND masks a, b are zero at the bits bitlt.dead_bits(L)
    marks, on every party and here.
    A truncated y (trunc_y = k, one product, shared y): y = x >> k uses the tuple this
    bundle carries (r' in place of the mask m_0: [r'], [S0 = -(r' >> k)], [msb r'] as yS1,
    yM) with [s S0] and [s msb r'] per product row (sS, sM) in place of [m_0 s]: y's
    truncation opening then also serves the products, which open nothing.
    Part 1 or 2 deals half of the bundle as its own request: 1 the edaBit, the AND
    triples and the powers tuple (what rounds 1-5 use), 2 the daBits and the product terms
    (rounds 6-7), so that party 0 gets the first half while the dealer deals the rest.
    xor_rows (rows >= 2): row 0's arithmetic daBit, and its product terms, are those
    of s_0 xor s_1 (the boolean daBits stay as they are): the comparison then gives
    b_0 xor b_1 and its products (exp's in-range bit, as [x < lo] implies [x < hi]).
    """

    @staticmethod
    def spec(p: dict) -> LtzSpec:
        return from_wire(LtzSpec.from_wire, p, "comparison")

    @staticmethod
    def _and_masks(s: LtzSpec) -> dict:
        """{w: mask of c = a b} for a coarse comparison (a and b are zero at their dead
        bits, so c is zero at either's), else {}."""
        if not s.coarse:
            return {}
        return {w: bitlt.live_mask(dx) & bitlt.live_mask(dy) for w, (dx, dy) in bitlt.dead_bits(s.coarse).items()}

    def paired(self, p):
        return {f"{x}{w}" for w in LTZ_LEVELS for x in "ab"} | {"tr"}

    def own(self, p):
        s = self.spec(p)
        eda, da = s.halves
        out = []
        if eda:
            out += [("r", (s.per_row,), "a")]
            for w in LTZ_LEVELS:
                out += [(f"a{w}", (s.n // w,), "x"), (f"b{w}", (s.n // w,), "x")]
        if not da:
            return out
        if s.trunc_y:
            return out + [("tr", (s.per_row,), "a")]
        return out + [(f"m{j}", (s.n_mask,), "a") for j in range(s.muls)]

    def corrected(self, p):
        return self._corrected(self.spec(p))

    def _corrected(self, s: LtzSpec) -> list:
        n, nm = s.n, s.n_products
        eda, da = s.halves
        out = []
        if eda:
            out += [("rb", (s.per_row,), "x"), ("P", (s.per_row,), "x")]
            out += [(f"c{w}", (n // w,), "x") for w in LTZ_LEVELS]
        if da:
            out += [("sb", (n // 64,), "x"), ("s", (n,), "a")]
            if s.trunc_y:
                h = "a32" if s.trunc_y <= 32 else "a"  # msb terms enter times 2^(64 - tk)
                out += [("yS1", (s.per_row,), "a"), ("yM", (s.per_row,), h), ("sS", (nm,), "a"), ("sM", (nm,), h)]
            else:
                out += [(f"ms{j}", (nm,), "a") for j in range(s.muls)]
        return out + (self._tail(s) if eda else [])

    def _pw_entries(self, p) -> list:
        """The corrections of the powers tuple of beta r (none without powers)."""
        return self._tail(self.spec(p))

    def _tail(self, s: LtzSpec) -> list:
        return [] if s.powers is None else TruncPowers.corrected_spec(s.powers_spec)

    def deal(self, p, own, private, ops):
        s = self.spec(p)
        n, k = s.n, s.muls
        eda, da = s.halves
        out = {}
        if eda:
            r = own["r"]
            rl = r & LOW63
            out = {"rb": r, "P": ring.lshr(rl, 1) & rl & EVEN}
            masks = self._and_masks(s)
            for w in LTZ_LEVELS:
                out[f"c{w}"] = own[f"a{w}"] & own[f"b{w}"] & masks.get(w, np.int64(-1))
            if s.powers is not None:  # powers of the truncation of beta x, masked by beta r (uniform: beta odd)
                out.update(TruncPowers.deal_spec(s.powers_spec, r * np.int64(s.powers[2])))
        if not da:
            return out
        sb = private((n // 64,))  # the daBits, packed 64 per word (bit j % 64 of word j // 64)
        bits = np.unpackbits(self._arith_dabits(s, sb).view(np.uint8), bitorder="little").astype(np.int64)
        out["sb"], out["s"] = sb, bits
        nm = s.n_products
        if s.trunc_y:
            tr = own["tr"]
            s0, mr = -ring.lshr(tr, s.trunc_y), ring.msb(tr)
            out.update(yS1=s0, yM=mr, sS=np.tile(s0, nm // s0.size) * bits[:nm],
                       sM=np.tile(mr, nm // mr.size) * bits[:nm])
            k = 0
        for j in range(k):
            m = own[f"m{j}"]
            out[f"ms{j}"] = np.tile(m, nm // m.size) * bits[:nm]  # a shared mask repeats per row
        return out

    def deal_into(self, p, own, private, out, sub, ops, parallel: Passes = serial):
        """Fused: every correction written into `out` in one or two passes (kernels.bitlt),
        the independent passes run by `parallel` for a big bundle."""
        s = self.spec(p)
        n = s.n
        if sub is None:
            sub = np.zeros_like(out)
        views, off = {}, 0
        eda, da = s.halves
        corr, tail = self._corrected(s), (self._tail(s) if eda else [])
        for name, shape, how, o, w in spans(corr[: len(corr) - len(tail)]):
            size = count(shape)
            views[name] = (as_how(out[o : o + w], size, how), as_how(sub[o : o + w], size, how))
            off = o + w
        passes = []
        if tail:  # the powers tuple of beta r, as TruncPowers deals it (its M may be 32-bit)
            rb_ = np.multiply(own["r"], np.int64(s.powers[2]), out=bufpool.empty(own["r"].size))
            passes.append(lambda: TruncPowers.deal_into_spec(s.powers_spec, rb_, out[off:], sub[off:], ops))
        sbits = private((n // 64,)) if da else None
        abits = self._arith_dabits(s, sbits) if da else None  # what the arithmetic daBits and products use
        masks = self._and_masks(s)

        def edabits_and_triples():
            ops.bitlt.deal_pairs(own["r"], views["rb"][1], views["P"][1], views["rb"][0], views["P"][0])
            for w in LTZ_LEVELS:
                o, sb_ = views[f"c{w}"]
                a, b = own[f"a{w}"], own[f"b{w}"]
                mask = masks.get(w, np.int64(-1))
                if isinstance(a, tuple):  # two parties' shares: summed in the same pass
                    ops.bitlt.deal_and2(a[0], a[1], b[0], b[1], mask, sb_, o)
                    continue
                np.bitwise_and(a, b, out=o)
                if w in masks:
                    o &= mask
                o ^= sb_

        def dabits_and_products():
            np.bitwise_xor(sbits, views["sb"][1], out=views["sb"][0])
            ops.bitlt.deal_dabits(abits, np.zeros(0, np.int64), views["s"][1], views["s"][0])
            self._deal_products(s, own, abits, views, ops)

        if eda:
            passes.insert(0, edabits_and_triples)
        if da:
            passes.append(dabits_and_products)
        if n < PARALLEL_MIN:
            for f in passes:
                f()
        else:
            parallel(*passes)

    @staticmethod
    def _arith_dabits(s: LtzSpec, sb: np.ndarray) -> np.ndarray:
        """The packed daBits the arithmetic shares and products are of: sb itself, or with
        xor_rows row 0's words xor row 1's (rows are whole words: n is a multiple of 64 R)."""
        if not s.xor_rows:
            return sb
        w1 = sb.size // s.rows
        out = sb.copy()
        out[:w1] ^= sb[w1 : 2 * w1]
        return out

    @staticmethod
    def _deal_products(s: LtzSpec, own, sbits, views, ops) -> None:
        """Corrections of the fused products' terms with the daBits: [m_j s], or with a
        truncated y its tuple and [s S0], [s msb r']."""
        k, nm, tk = s.muls, s.n_products, s.trunc_y
        if tk and isinstance(own["tr"], tuple):  # two parties: one fused pass
            (tr0, tr1), v = own["tr"], views
            ops.bitlt.deal_ytrunc(tr0, tr1, np.int64(tk), ring.const((1 << (64 - tk)) - 1), sbits, nm // tr0.size,
                              v["yS1"][1], v["yM"][1], v["sS"][1], v["sM"][1], v["yS1"][0], v["yM"][0], v["sS"][0],
                              v["sM"][0])
            return
        if tk:  # y's truncation tuple and its products with the daBits, row by row
            tr = own["tr"]
            s0 = np.negative(ring.lshr(tr, tk))
            mr = ring.msb(tr)
            for nmv, val in (("yS1", s0), ("yM", mr)):
                o, sb_ = views[nmv]
                np.subtract(val.astype(o.dtype, copy=False), sb_, out=o)
            for nmv, val in (("sS", s0), ("sM", mr)):
                o, sb_ = views[nmv]
                for lo in range(0, nm, val.size):
                    hi = lo + val.size
                    ops.bitlt.deal_dabits(sbits[lo // 64 :], val, sb_[lo:hi], o[lo:hi])
            return
        for j in range(k):
            m = own[f"m{j}"]
            o, sb_ = views[f"ms{j}"]
            for lo in range(0, nm, m.size):  # a shared mask: row by row (rows are whole words of sbits)
                hi = lo + m.size
                ops.bitlt.deal_dabits(sbits[lo // 64 :], m, sb_[lo:hi], o[lo:hi])


KINDS: dict[str, Kind] = {"ltz": LtzBundle()}


# ------------------------------------------------------------ the parties' half
def request(rt, spec: LtzSpec, halves: bool = False):
    """Ask the dealer for one comparison's material ahead of use (`spec`: the same one
    ltz_steps then gets); with trunc_y, `YTrunc(mat, n, shape)` is y's truncation tuple;
    halves: two requests (and the powers tuple as a third), see Halves."""
    if halves:
        return Halves(rt, spec)
    return rt.dealer.request("ltz", **spec.to_wire())


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
        out = self.rt.backend.powers.combine(self.ct, *self._tuple(), self.k, self.rt.rank == 0)
        return [o.reshape(self.shape) for o in out]

    def poly(self, coef, X: np.ndarray | None = None, xcoef: int = 0) -> np.ndarray:
        """[coef[0] + xcoef X + sum_j coef[j] u^j], u = beta x >> k, in one pass (x's shape)."""
        out = self.rt.backend.powers.poly(self.ct, *self._tuple(), self.k, self.rt.rank == 0, coef, X, xcoef)
        return out.reshape(self.shape)


class Halves:
    """A comparison's material requested in parts (request(..., halves=True)): `eda`
    (edaBit and AND triples: rounds 1-5) now, `pw` (the powers tuple of beta r, if
    `powers`: an 'ltzpow' request right after, read only when the powers are used), and
    `da` (daBits and product terms: rounds 6-7) when the caller calls request_da(), after
    the requests its own early rounds need, so that each part's corrected party gets
    what it uses first without waiting for the rest."""

    def __init__(self, rt, spec: LtzSpec):
        self.rt, self.spec = rt, replace(spec, powers=None)
        self.eda = request(rt, replace(self.spec, part=1))
        # the powers tuple (if any) as a third request right after: rounds 2 on need it, not round 1's reply
        self.pw = None
        if spec.powers is not None:
            self.pw = rt.dealer.request("ltzpow", **LtzPowersSpec(spec.n, spec.rows, spec.powers).to_wire())
        self.da = None

    def request_da(self):
        if self.da is None:
            self.da = request(self.rt, replace(self.spec, part=2))
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


def _live(bk, X, dead: int):
    """The live (high 64 - dead) bits of the words in X, packed back to back (bk: the
    back end's bitlt kernels)."""
    if not dead:
        return X
    out = np.empty(X.size * (64 - dead) // 64, np.int64)
    bk.pack_live(X, dead, out)
    return out


def _with_dead(bk, opened, m: int, dead: int, fill: np.int64):
    """m words from their opened live bits, the dead low bits set to their public value."""
    if not dead:
        return opened.view(np.int64)
    D = np.empty(m, np.int64)
    bk.unpack_live(opened.view(np.int64), dead, fill, D)
    return D


def _and_open(bk, X, Y, dead: tuple[int, int] = (0, 0)):
    """Generator step: open the masked operands of a word AND (one round); of a coarse
    comparison's words only the live bits travel (`dead`: dead low bits of X, of Y)."""
    dx, dy = dead
    _, (D, F) = yield Open(xor=[_live(bk, X, dx), _live(bk, Y, dy)], fresh=True)
    return _with_dead(bk, D, X.size, dx, X_DEAD), _with_dead(bk, F, Y.size, dy, Y_DEAD)


def ltz_steps(rt, x: np.ndarray, n_muls: int | None = None, muls: Callable[[], list[np.ndarray]] | None = None,
              mat=None, thresholds=None, spec: LtzSpec | None = None,
              on_powers: Callable[["RidingPowers"], None] | None = None):
    """Generator: [x < 0] (int64 shares of 0/1) and [[x < 0] * y_j] for the n_muls
    arrays `muls()` returns (called in the last round; each of the result's shape).
    `spec`: the comparison's options (LtzSpec.of(x.size, n_muls, len(thresholds)) if
    None); `mat`: the dealer material, if requested ahead with `request` and that spec.

    With `thresholds` (public ring values t_1..t_R, R = spec.rows) it compares x against
    all of them: [x - t_i < 0] stacked on a new first axis. One masked opening of x serves
    every row (c - t_i is the opening of x - t_i), and the rows share the edaBit: 8 bytes
    per element per peer and 16 dealer bytes less for each row after the first.
    The spec's options:
    `mul_rows` K: the products are for the first K rows only (muls() then returns
    arrays of shape (K, *x.shape)). `shared_y`: every row multiplies the same y (muls()
    returns arrays of x's shape): one masked opening of y serves all K rows, 8 bytes
    per element per peer less for each row after the first.
    `powers` (k, J, beta), beta odd: after round 1, on_powers gets a RidingPowers, whose
    all() gives [(beta x >> k)^j] for j = 1..J (x's shape, as protocols.powers.trunc_pow_steps
    would) and poly() a polynomial in them: the opened c = x + r is also beta x + beta r,
    and the dealer dealt the powers tuple of beta r with the comparison's material
    (with halves, as a request of its own that is read when the powers are used). A chain
    running in lockstep saves that step's opening (8 bytes per element per peer).
    `coarse` L (0, 8 or 16): compare only bits L..63 of x - t, for range checks that
    tolerate either answer when -2^L <= x - t < 0 (and, beyond any fixed-point value,
    when x - t >= 2^63 - 2^L, as signed ring elements), exact everywhere else: BitLT on
    both operands with their low L bits zeroed, whose dead groups are public constants,
    so rounds 2-5 open only their live bits: 11.5 instead of 15.25 bytes per element per
    row (L = 16).
    `trunc_y` k (with one product and shared_y): y is the truncation x' >> k done with
    the tuple this comparison's material carries (YTrunc(mat, n, shape), used by the
    caller before the last round), and muls() returns [y, c'] with c' that truncation's
    opening: the products then open nothing (8 bytes per element per peer less).
    `xor_rows` (R >= 2): row 0 is [x < t_0] xor [x < t_1], and so are its products (the
    dealer deals row 0's arithmetic daBit and product terms for s_0 xor s_1): a band
    t_0 <= x < t_1 and its product for the price of one product row, where a caller
    would otherwise multiply both."""
    shape, n = x.shape, x.size
    R = 1 if thresholds is None else len(thresholds)
    if spec is None:
        spec = LtzSpec.of(n, n_muls or 0, R)
    npad = spec.per_row
    if spec.rows != R or npad != -(-max(n, 1) // PAD) * PAD or (n_muls is not None and n_muls != spec.muls):
        raise ValueError(f"comparison spec for {spec.rows} rows of {npad} (padded) elements with {spec.muls} "
                         f"products does not fit {R} thresholds, {n} elements and {n_muls} products")
    n_muls, K, shared_y, powers = spec.muls, spec.K, spec.shared_y, spec.powers
    coarse, trunc_y, xor_rows = spec.coarse, spec.trunc_y, spec.xor_rows
    mat = mat if mat is not None else request(rt, spec)
    dead = bitlt.dead_bits(coarse) if coarse else None
    bk = rt.backend.bitlt  # the fused levels: the back end's kernels (issue 22 puts them on the GPU)
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
    bk.level1(c, hi, rb, P, first, W)  # level 1 (width 1) is local
    for w in LEVELS:  # rounds 2-5
        a, b = m[f"a{w}"], m[f"b{w}"]
        # coarse: the AND masks are zero at dead bits (the dealer dealt c for these); the kernels mask them
        am, bm = (bitlt.live_mask(dead[w][0]), bitlt.live_mask(dead[w][1])) if coarse else (np.int64(-1), np.int64(-1))
        X, Y = np.empty(npad // w, np.int64), np.empty(npad // w, np.int64)
        bk.pack_level(W, w, LO[w], PAIR[w], a, b, am, bm, X, Y)
        D, F = yield from _and_open(bk, X, Y, dead[w] if coarse else (0, 0))
        bk.finish_level(W, w, LO[w], PAIR[w], D, F, a, b, am, bm, m[f"c{w}"], first)
    a, b = m["a64"], m["b64"]  # round 6: the last level, one AND per element
    X, Y = np.empty(npad // 64, np.int64), np.empty(npad // 64, np.int64)
    bk.pack_last(W, a, b, X, Y)
    D, F = yield from _and_open(bk, X, Y)
    vmask = np.empty(npad, np.uint8)
    if md is None:
        md = halves.request_da().get()
    bk.finish_last(W, D, F, a, b, m["c64"], first, rb, c, md["sb"], vmask)

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
    bk.b2a(v, md["s"], first, bit)
    prods = []
    nk = K * per
    if trunc_y:
        k = int(trunc_y)
        y, out = ys[0], bufpool.empty(nk)
        consts = (np.int64(k), ring.const((1 << (64 - k)) - 1), np.int64(1 << (62 - k)), ring.const(1 << (64 - k)))
        for lo in range(0, nk, y.size):
            hi = lo + y.size
            bk.b2a_product_trunc(v[lo:hi], y, cy, *consts, md["s"][lo:hi], md["sS"][lo:hi], md["sM"][lo:hi],
                                    out[lo:hi])
        return unpadded(bit, R), [unpadded(out, K)]
    for j, (y, d) in enumerate(zip(ys, ds)):
        out = bufpool.empty(nk)
        ms = md[f"ms{j}"]
        for lo in range(0, nk, y.size):  # each row with the same y when shared_y
            hi = lo + y.size
            bk.b2a_product(v[lo:hi], y, d, md["s"][lo:hi], ms[lo:hi], out[lo:hi])
        prods.append(unpadded(out, K))
    return unpadded(bit, R), prods


def ltz(rt, x: np.ndarray, muls: list[np.ndarray] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """[x < 0] and [[x < 0] * y] for each y in `muls` (same shape as x), 7 rounds."""
    muls = list(muls)
    return run1(rt, ltz_steps(rt, x, len(muls), lambda: muls))

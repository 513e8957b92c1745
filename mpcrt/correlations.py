"""Kinds of correlated randomness the dealer hands out, and how shares are laid out.

Request number k of a session is expanded, by every party i, from stream k of
PRG(seed_i), the seed party i agreed with the dealer. A kind lists its arrays in
two groups:

* `own`:       every party expands its share from its PRG (their sum is the value);
* `corrected`: all parties but one expand their share from the PRG too; that one,
               the request's corrected party (`corrected_party`: party 0), gets a
               correction from the dealer so that the shares sum (or XOR) to the
               value the dealer derived from the `own` values.

The corrected party expands only the `own` prefix of its stream. The dealer expands
all streams, computes the true values and sends the corrected party one message per
request (in parts, see reply_parts), whatever N is. Sharing is additive mod 2^64 ('a'), XOR of 64-bit words ('x'), or
additive mod 2^32 ('a32': uint32 values packed two per word, for values a protocol
only ever uses multiplied by 2^32 or more, so their high half never matters).
The dealer's own secrets (random bits) come from its private PRG.
"""
from __future__ import annotations

import concurrent.futures
import math
import threading

import numpy as np

from mpcrt import framing
from mpcrt.errors import DealerError
from mpcrt.kernels import beaver as fb
from mpcrt.kernels import bitlt
from mpcrt.kernels import bufpool
from mpcrt.kernels import powers as fused
from mpcrt.kernels import ring
from mpcrt.kernels.prg import LazyRows

Shape = tuple
PARALLEL_MIN = 1 << 18  # words: a deal this big runs its independent passes on threads
_pool = None
_pool_lock = threading.Lock()  # the dealer's worker threads may ask for the pool at once


PASS_THREADS = 4  # threads one deal's independent passes may use (the dealer sets it from its CPU share)


def _parallel(*fns) -> list:
    """Run independent dealer passes concurrently (the kernels and the AES keystream release
    the GIL); results in order. The dealer deals several requests at once too, so this only
    helps the big ones, which otherwise hold a party waiting on one thread. With
    PASS_THREADS = 1 (a host whose cores the parties already fill) the passes run in turn."""
    global _pool
    if len(fns) == 1 or PASS_THREADS <= 1:
        return [f() for f in fns]
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="deal-pass")
    futs = [_pool.submit(f) for f in fns[1:]]
    first = fns[0]()
    return [first] + [f.result() for f in futs]


def _shape(v) -> Shape:
    return tuple(int(d) for d in v)


def _bshape(a, b) -> Shape:
    return tuple(np.broadcast_shapes(_shape(a), _shape(b)))


def _matmul_shape(a, b) -> Shape:
    return ring.matmul_shape(_shape(a), _shape(b))


def _conv_shape(p) -> Shape:
    return ring.conv2d_shape(_shape(p["a"]), _shape(p["b"]), p["stride"], p["padding"], p["dilation"])


class Kind:
    """own: [(name, shape[, 'a'|'x'])], corrected: [(name, shape, 'a'|'x')], deal: true corrected values."""

    def own(self, p: dict) -> list[tuple[str, Shape]]:
        raise NotImplementedError

    def corrected(self, p: dict) -> list[tuple[str, Shape, str]]:
        raise NotImplementedError

    def paired(self, p: dict) -> set:
        """`own` names a two-party deal_into takes as the pair of shares (not summed), to
        fuse the sum into its own pass."""
        return set()

    def deal(self, p: dict, own: dict[str, np.ndarray], private) -> dict[str, np.ndarray]:
        raise NotImplementedError


class Triple(Kind):
    """Elementwise Beaver triple: c = a * b (broadcasting)."""

    def own(self, p):
        return [("a", _shape(p["a"])), ("b", _shape(p["b"]))]

    def corrected(self, p):
        return [("c", _bshape(p["a"], p["b"]), "a")]

    def deal(self, p, own, private):
        return {"c": own["a"] * own["b"]}

    def deal_two(self, p, s0, s1, out, private) -> bool:
        if tuple(p["a"]) != tuple(p["b"]):
            return False  # broadcasting: the generic path
        fb.deal_triple(s0["a"].reshape(-1), s1["a"].reshape(-1), s0["b"].reshape(-1), s1["b"].reshape(-1), s1["c"].reshape(-1), out)
        return True


class MatmulTriple(Kind):
    """Matrix Beaver triple: c = a @ b with torch.matmul semantics (batched, broadcast)."""

    def own(self, p):
        return [("a", _shape(p["a"])), ("b", _shape(p["b"]))]

    def corrected(self, p):
        return [("c", _matmul_shape(p["a"], p["b"]), "a")]

    def deal(self, p, own, private):
        return {"c": ring.matmul(own["a"], own["b"])}


class ConvTriple(Kind):
    """Convolution Beaver triple: c = conv2d(a, b) (NCHW, OIHW)."""

    def own(self, p):
        return [("a", _shape(p["a"])), ("b", _shape(p["b"]))]

    def corrected(self, p):
        return [("c", _conv_shape(p), "a")]

    def deal(self, p, own, private):
        return {"c": ring.conv2d(own["a"], own["b"], p["stride"], p["padding"], p["dilation"], p["groups"])}


def _msb_how(f: int) -> str:
    """[msb r] only enters multiplied by 2^(64-f) (protocols.truncation): for f <= 32 it
    matters mod 2^32 only, and travels as 32-bit shares ('a32')."""
    return "a32" if f <= 32 else "a"


def _pad_odd_a32(out: np.ndarray, corr: list) -> None:
    """Zero the last word of every 'a32' entry with an odd count: half of it is never written."""
    for _, s, how, off, w in _spans(corr):
        if how == "a32" and _count(s) % 2:
            out[off + w - 1] = 0


class TruncPair(Kind):
    """Truncation tuple for DESIGN.md section 6: [r], [r >> f], [msb(r)], r uniform in Z_2^64."""

    def own(self, p):
        return [("r", _shape(p["shape"]))]

    def corrected(self, p):
        s = _shape(p["shape"])
        return [("r_hi", s, "a"), ("r_msb", s, _msb_how(int(p["f"])))]

    def deal(self, p, own, private):
        r = own["r"]
        return {"r_hi": ring.lshr(r, int(p["f"])), "r_msb": ring.msb(r)}

    def deal_two(self, p, s0, s1, out, private) -> bool:
        f, corr = int(p["f"]), self.corrected(p)
        _pad_odd_a32(out, corr)
        v = split(out, corr)
        fb.deal_trunc(s0["r"].reshape(-1), s1["r"].reshape(-1), np.int64(f), ring.const((1 << (64 - f)) - 1),
                      s1["r_hi"].reshape(-1), s1["r_msb"].reshape(-1), v["r_hi"].reshape(-1), v["r_msb"].reshape(-1))
        return True


class Truncated(Kind):
    """A Beaver product kind (elementwise, matmul, conv2d) fused with a truncation tuple:
    [c + r] in place of [c] (r the dealer's private randomness, so [r] needs no shares of
    its own: the parties open their product's share + [c + r] + 2^62 directly), [r >> f],
    [msb r] as TruncPair; params: the base kind's and f. One request and one masked
    opening of the product instead of a triple and a pair, and 8 bytes less PRG output
    per element per party and per dealer share."""

    def __init__(self, base: Kind):
        self.base = base

    def own(self, p):
        return self.base.own(p)

    def corrected(self, p):
        ((_, s, _),) = self.base.corrected(p)
        return [("cr", s, "a"), ("r_hi", s, "a"), ("r_msb", s, _msb_how(int(p["f"])))]

    def deal(self, p, own, private):
        c = self.base.deal(p, own, private)["c"]
        r = private(c.shape)
        return {"cr": c + r, "r_hi": ring.lshr(r, int(p["f"])), "r_msb": ring.msb(r)}


class TripleTrunc(Truncated):
    """Truncated elementwise triple, with one fused dealer pass when a and b have the same shape."""

    def __init__(self):
        super().__init__(Triple())

    def deal_two(self, p, s0, s1, out, private) -> bool:
        if tuple(p["a"]) != tuple(p["b"]):
            return False  # broadcasting: the generic path
        f, corr = int(p["f"]), self.corrected(p)
        _pad_odd_a32(out, corr)
        v = split(out, corr)
        r = private(_shape(p["a"])).reshape(-1)
        flat = lambda d, nm: d[nm].reshape(-1)  # noqa: E731
        fb.deal_triple_trunc(flat(s0, "a"), flat(s1, "a"), flat(s0, "b"), flat(s1, "b"), r, np.int64(f),
                             ring.const((1 << (64 - f)) - 1), flat(s1, "cr"), flat(s1, "r_hi"), flat(s1, "r_msb"),
                             flat(v, "cr"), flat(v, "r_hi"), flat(v, "r_msb"))
        return True


LOW63 = np.int64((1 << 63) - 1)
EVEN = ring.const(0x5555555555555555)
LTZ_LEVELS = (2, 4, 8, 16, 64)  # packing widths of BitLT rounds 2-6 (64: the last level)
COARSE_BITS = (0, 8, 16)  # low bits a coarse comparison ignores (protocols.comparison)


class LtzBundle(Kind):
    """Everything one exact less-than-zero over n (padded) elements needs (protocols.comparison):

    edaBit r ([r], <r>); <P> = products of r's adjacent low-63 bit pairs (level 1 of
    BitLT becomes local); one word-AND triple per later level, sized for packed words;
    daBits ([s], <s> packed 64 per word) for the B2A; and for each of k fused products a mask [m_j]
    with [m_j s]. With `rows` R > 1 the n elements are R comparisons of one value
    against R public thresholds: they share the edaBit (r, <r>, <P> of n / R elements);
    the fused products then cover the first `mrows` rows only (default all), and with
    `ym` = 1 every row multiplies the same y, so m_j is one row long and repeats.
    With `pw` = [k, J, beta] (beta odd) it also carries the TruncPowers tuple of
    beta r (S1..SJ, M): the comparison's opening c = x + r then also opens
    beta x + beta r, so a truncation-with-powers of beta x needs no opening of its own.
    With `cb` = L (0, 8 or 16) the comparison is coarse (protocols.comparison): the AND
    masks a, b are zero at the bits bitlt.dead_bits(L) marks, on every party and here.
    With `tk` = k (needs k = 1 product and 'ym'): the shared y is a truncation y = x >> k
    whose tuple this bundle carries (r' in place of the mask m_0: [r'], [S0 = -(r' >> k)],
    [msb r'] as yS1, yM) with [s S0] and [s msb r'] per product row (sS, sM) in place of
    [m_0 s]: y's truncation opening then also serves the products, which open nothing.
    `part` 1 or 2 deals half of the bundle as its own request: 1 the edaBit, the AND
    triples and the powers tuple (what rounds 1-5 use), 2 the daBits and the product terms
    (rounds 6-7), so that party 0 gets the first half while the dealer deals the rest.
    With `xr` = 1 (rows >= 2) row 0's arithmetic daBit, and its product terms, are those
    of s_0 xor s_1 (the boolean daBits stay as they are): the comparison then gives
    b_0 xor b_1 and its products (exp's in-range bit, as [x < lo] implies [x < hi]).
    """

    @staticmethod
    def _nm(p) -> int:
        n, R = int(p["n"]), int(p.get("rows", 1))
        return n // R * int(p.get("mrows", R))

    @staticmethod
    def _nmask(p) -> int:
        """Length of each mask m_j: one row's when the rows share y ('ym'), else all product rows'."""
        return int(p["n"]) // int(p.get("rows", 1)) if int(p.get("ym", 0)) else LtzBundle._nm(p)

    @staticmethod
    def _check(p) -> None:
        n, k, R = int(p["n"]), int(p.get("k", 0)), int(p.get("rows", 1))
        K, ym = int(p.get("mrows", R)), int(p.get("ym", 0))
        if n <= 0 or R <= 0 or n % (64 * R) or not 0 <= k <= 8 or not 0 < K <= R or ym not in (0, 1):
            raise DealerError(f"malformed comparison request n={n} rows={R} mrows={K} k={k} ym={ym}")
        tk = int(p.get("tk", 0))
        if tk and not (0 < tk < 63 and k == 1 and ym == 1):
            raise DealerError(f"a truncated y (tk={tk}) needs 0 < tk < 63, k = 1 product and ym = 1")
        if int(p.get("part", 0)) not in (0, 1, 2):
            raise DealerError(f"comparison bundle part must be 0, 1 or 2, got {p.get('part')!r}")
        if int(p.get("cb", 0)) not in COARSE_BITS:
            raise DealerError(f"coarse comparison bits must be one of {COARSE_BITS}, got {p.get('cb')!r}")
        if int(p.get("xr", 0)) not in (0, 1) or (int(p.get("xr", 0)) and R < 2):
            raise DealerError(f"xr (row 0 as the xor of rows 0 and 1) must be 0 or 1, and 1 needs rows >= 2, got {p.get('xr')!r}")

    @staticmethod
    def _and_masks(p) -> dict:
        """{w: mask of c = a b} for a coarse comparison ('cb'; a and b are zero at their dead
        bits, so c is zero at either's), else {}."""
        L = int(p.get("cb", 0))
        if not L:
            return {}
        return {w: bitlt.live_mask(dx) & bitlt.live_mask(dy) for w, (dx, dy) in bitlt.dead_bits(L).items()}

    @staticmethod
    def _pw(p):
        """(k, J, beta) of the powers tuple riding on r ('pw'), or None."""
        pw = p.get("pw")
        if pw is None:
            return None
        if not (isinstance(pw, list) and len(pw) == 3 and all(isinstance(v, int) for v in pw)):
            raise DealerError(f"malformed powers parameters {pw!r}")
        k, J, beta = pw
        if not (0 < k < 63 and 1 <= J <= 8 and beta % 2 == 1 and -(2**63) <= beta < 2**63):
            raise DealerError(f"powers parameters out of range: k={k} J={J} beta={beta} (beta must be odd)")
        return k, J, beta

    def paired(self, p):
        return {f"{x}{w}" for w in LTZ_LEVELS for x in "ab"} | {"tr"}

    @staticmethod
    def _parts(p) -> tuple[bool, bool]:
        """(has the edaBit half, has the daBit half)."""
        part = int(p.get("part", 0))
        return part != 2, part != 1

    def own(self, p):
        self._check(p)
        self._pw(p)
        n, k, R = int(p["n"]), int(p.get("k", 0)), int(p.get("rows", 1))
        eda, da = self._parts(p)
        out = []
        if eda:
            out += [("r", (n // R,), "a")]
            for w in LTZ_LEVELS:
                out += [(f"a{w}", (n // w,), "x"), (f"b{w}", (n // w,), "x")]
        if not da:
            return out
        if int(p.get("tk", 0)):
            return out + [("tr", (n // R,), "a")]
        return out + [(f"m{j}", (self._nmask(p),), "a") for j in range(k)]

    def corrected(self, p):
        n, k, R = int(p["n"]), int(p.get("k", 0)), int(p.get("rows", 1))
        eda, da = self._parts(p)
        out = []
        if eda:
            out += [("rb", (n // R,), "x"), ("P", (n // R,), "x")]
            out += [(f"c{w}", (n // w,), "x") for w in LTZ_LEVELS]
        if da:
            out += [("sb", (n // 64,), "x"), ("s", (n,), "a")]
            tk = int(p.get("tk", 0))
            if tk:
                h = "a32" if tk <= 32 else "a"  # msb terms enter times 2^(64 - tk)
                out += [("yS1", (n // R,), "a"), ("yM", (n // R,), h), ("sS", (self._nm(p),), "a"), ("sM", (self._nm(p),), h)]
            else:
                out += [(f"ms{j}", (self._nm(p),), "a") for j in range(k)]
        return out + (self._pw_entries(p) if eda else [])

    def _pw_entries(self, p) -> list:
        pw = self._pw(p)
        if pw is None:
            return []
        kp, J, _ = pw
        n1 = int(p["n"]) // int(p.get("rows", 1))
        return TruncPowers().corrected({"shape": [n1], "k": kp, "J": J})

    def deal(self, p, own, private):
        n, k = int(p["n"]), int(p.get("k", 0))
        eda, da = self._parts(p)
        out = {}
        if eda:
            r = own["r"]
            rl = r & LOW63
            out = {"rb": r, "P": ring.lshr(rl, 1) & rl & EVEN}
            masks = self._and_masks(p)
            for w in LTZ_LEVELS:
                out[f"c{w}"] = own[f"a{w}"] & own[f"b{w}"] & masks.get(w, np.int64(-1))
            pw = self._pw(p)
            if pw is not None:  # powers of the truncation of beta x, masked by beta r (uniform: beta odd)
                kp, J, beta = pw
                out.update(TruncPowers().deal({"shape": [r.size], "k": kp, "J": J}, {"r": r * np.int64(beta)}, private))
        if not da:
            return out
        sb = private((n // 64,))  # the daBits, packed 64 per word (bit j % 64 of word j // 64)
        s = np.unpackbits(self._arith_dabits(p, sb).view(np.uint8), bitorder="little").astype(np.int64)
        out["sb"], out["s"] = sb, s
        nm = self._nm(p)
        tk = int(p.get("tk", 0))
        if tk:
            tr = own["tr"]
            s0, mr = -ring.lshr(tr, tk), ring.msb(tr)
            out.update(yS1=s0, yM=mr, sS=np.tile(s0, nm // s0.size) * s[:nm], sM=np.tile(mr, nm // mr.size) * s[:nm])
            k = 0
        for j in range(k):
            m = own[f"m{j}"]
            out[f"ms{j}"] = np.tile(m, nm // m.size) * s[:nm]  # a shared mask repeats per row
        return out

    def deal_into(self, p, own, private, out, sub):
        """Fused: every correction written into `out` in one or two passes (kernels.bitlt)."""
        n = int(p["n"])
        if sub is None:
            sub = np.zeros_like(out)
        views, off = {}, 0
        eda, da = self._parts(p)
        corr, tail = self.corrected(p), (self._pw_entries(p) if eda else [])
        for name, shape, how, o, w in _spans(corr[: len(corr) - len(tail)]):
            size = _count(shape)
            views[name] = (_as(out[o : o + w], size, how), _as(sub[o : o + w], size, how))
            off = o + w
        passes = []
        if tail:  # the powers tuple of beta r, as TruncPowers deals it (its M may be 32-bit)
            kp, J, beta = self._pw(p)
            rb_ = np.multiply(own["r"], np.int64(beta), out=bufpool.empty(own["r"].size))
            passes.append(lambda: TruncPowers().deal_into({"shape": [rb_.size], "k": kp, "J": J}, {"r": rb_}, private,
                                                          out[off:], sub[off:]))
        sbits = private((n // 64,)) if da else None
        abits = self._arith_dabits(p, sbits) if da else None  # what the arithmetic daBits and products use
        masks = self._and_masks(p)

        def edabits_and_triples():
            bitlt.deal_pairs(own["r"], views["rb"][1], views["P"][1], views["rb"][0], views["P"][0])
            for w in LTZ_LEVELS:
                o, sb_ = views[f"c{w}"]
                a, b = own[f"a{w}"], own[f"b{w}"]
                mask = masks.get(w, np.int64(-1))
                if isinstance(a, tuple):  # two parties' shares: summed in the same pass
                    bitlt.deal_and2(a[0], a[1], b[0], b[1], mask, sb_, o)
                    continue
                np.bitwise_and(a, b, out=o)
                if w in masks:
                    o &= mask
                o ^= sb_

        def dabits_and_products():
            np.bitwise_xor(sbits, views["sb"][1], out=views["sb"][0])
            bitlt.deal_dabits(abits, np.zeros(0, np.int64), views["s"][1], views["s"][0])
            self._deal_products(p, own, abits, views)

        if eda:
            passes.insert(0, edabits_and_triples)
        if da:
            passes.append(dabits_and_products)
        if n < PARALLEL_MIN:
            for f in passes:
                f()
        else:
            _parallel(*passes)

    @staticmethod
    def _arith_dabits(p, sb: np.ndarray) -> np.ndarray:
        """The packed daBits the arithmetic shares and products are of: sb itself, or with
        'xr' row 0's words xor row 1's (rows are whole words: n is a multiple of 64 R)."""
        if not int(p.get("xr", 0)):
            return sb
        w1 = sb.size // int(p["rows"])
        out = sb.copy()
        out[:w1] ^= sb[w1 : 2 * w1]
        return out

    def _deal_products(self, p, own, sbits, views) -> None:
        """Corrections of the fused products' terms with the daBits: [m_j s], or with a
        truncated y ('tk') its tuple and [s S0], [s msb r']."""
        k, nm, tk = int(p.get("k", 0)), self._nm(p), int(p.get("tk", 0))
        if tk and isinstance(own["tr"], tuple):  # two parties: one fused pass
            (tr0, tr1), v = own["tr"], views
            bitlt.deal_ytrunc(tr0, tr1, np.int64(tk), ring.const((1 << (64 - tk)) - 1), sbits, nm // tr0.size,
                              v["yS1"][1], v["yM"][1], v["sS"][1], v["sM"][1], v["yS1"][0], v["yM"][0], v["sS"][0], v["sM"][0])
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
                    bitlt.deal_dabits(sbits[lo // 64 :], val, sb_[lo:hi], o[lo:hi])
            return
        for j in range(k):
            m = own[f"m{j}"]
            o, sb_ = views[f"ms{j}"]
            for lo in range(0, nm, m.size):  # a shared mask ('ym'): row by row (rows are whole words of sbits)
                hi = lo + m.size
                bitlt.deal_dabits(sbits[lo // 64 :], m, sb_[lo:hi], o[lo:hi])


class TruncPowers(Kind):
    """Truncation tuple extended with powers (protocols.powers): r uniform, S0 = -(r >> k),
    m = msb(r); [r], [S0^j] for j = 1..J and M = [m S0^l] for l = 0..J-1 (one (J, ...) array).
    M only enters multiplied by T = 2^(64-k): for k <= 32 it is shared mod 2^32 ('a32'),
    which saves 4 bytes per word of it."""

    def own(self, p):
        return [("r", _shape(p["shape"]))]

    def corrected(self, p):
        s, J = _shape(p["shape"]), int(p["J"])
        return [(f"S{j}", s, "a") for j in range(1, J + 1)] + [("M", (J,) + s, "a32" if int(p["k"]) <= 32 else "a")]

    def deal(self, p, own, private):
        r, k, J = own["r"], int(p["k"]), int(p["J"])
        s0 = -ring.lshr(r, k)
        m = ring.msb(r)
        out, pw, M = {}, np.ones_like(r), []
        for j in range(J):
            M.append(m * pw)
            pw = pw * s0
            out[f"S{j + 1}"] = pw
        out["M"] = np.stack(M)
        return out

    def lazy_rows(self, p, prg, stream: int, first: int) -> dict:
        """An uncorrected party's S1..SJ ('S*') and M as LazyRows of its stream (which holds
        them from word `first` on, in `corrected` order)."""
        J, n = int(p["J"]), _count(_shape(p["shape"]))
        a32 = int(p["k"]) <= 32
        M = (LazyRows(prg, stream, 2 * (first + J * n), n, J, n, np.uint32) if a32
             else LazyRows(prg, stream, first + J * n, n, J, n))
        return {"S*": LazyRows(prg, stream, first, n, J, n), "M": M}

    def deal_into(self, p, own, private, out, sub):
        r, J = own["r"].reshape(-1), int(p["J"])
        n, corr = r.size, self.corrected(p)

        def blocks(flat):  # S1..SJ lie back to back: one (J, n) block; M is (J, ...) already
            return flat[: J * n].reshape(J, n), split(flat, corr)["M"].reshape(J, n)

        sS, sM = blocks(sub) if sub is not None else (None, None)
        fused.deal(r, int(p["k"]), J, sS, sM, *blocks(out))


class LtzPowers(Kind):
    """The powers tuple of beta r for a comparison bundle's edaBit r, as a request of its own
    (protocols.comparison.Halves): `back` requests earlier is an 'ltz' part-1 request with
    the same n and rows, whose `own` stream starts with r (n / rows words); every party
    already holds its share of r from there, so this kind has no `own` arrays and the
    dealer re-expands that prefix of each party's earlier stream (`borrowed`). Its
    corrections are TruncPowers' for beta r (beta odd, so beta r is uniform), k and J
    from `pw` = [k, J, beta]. Dealt apart from the bundle so that the comparison's early
    rounds do not wait for it."""

    @staticmethod
    def _sub(p) -> dict:
        n, R = int(p["n"]), int(p.get("rows", 1))
        back = p.get("back")
        if n <= 0 or R <= 0 or n % R or not isinstance(back, int) or back < 1:
            raise DealerError(f"malformed comparison powers request n={n} rows={R} back={back!r}")
        kp, J, _ = LtzBundle._pw(p) or (None, None, None)
        if kp is None:
            raise DealerError("a comparison powers request needs pw = [k, J, beta]")
        return {"shape": [n // R], "k": kp, "J": J}

    def own(self, p):
        self._sub(p)
        return []

    def corrected(self, p):
        return TruncPowers().corrected(self._sub(p))

    def borrowed(self, prgs: list, stream: int, p: dict) -> dict[str, np.ndarray]:
        """beta r, r summed from the first n / rows words of every party's stream `stream - back`."""
        sub, back = self._sub(p), int(p["back"])
        if stream - back < 0:
            raise DealerError(f"comparison powers request {stream} refers back {back} requests, before the first")
        n1 = sub["shape"][0]
        r = prgs[0].words(stream - back, n1)
        for prg in prgs[1:]:
            r += prg.words(stream - back, n1)
        r *= np.int64(p["pw"][2])
        return {"r": r}

    def deal(self, p, own, private):
        return TruncPowers().deal(self._sub(p), own, private)

    def lazy_rows(self, p, prg, stream: int, first: int) -> dict:
        return TruncPowers().lazy_rows(self._sub(p), prg, stream, first)

    def deal_into(self, p, own, private, out, sub):
        TruncPowers().deal_into(self._sub(p), own, private, out, sub)


class MulMask(Kind):
    """A mask [a] for a value y to be multiplied later by a truncated value, with the
    products [S0 a] and [m a] of a TruncPowers request of the same shape (protocols.powers)."""

    def own(self, p):
        return [("r", _shape(p["shape"])), ("a", _shape(p["shape"]))]

    def corrected(self, p):
        s = _shape(p["shape"])
        return [("S1", s, "a"), ("M0", s, "a"), ("S1a", s, "a"), ("M0a", s, "a")]

    def deal(self, p, own, private):
        r, k, a = own["r"], int(p["k"]), own["a"]
        s0, m = -ring.lshr(r, k), ring.msb(r)
        return {"S1": s0, "M0": m, "S1a": s0 * a, "M0a": m * a}


KINDS: dict[str, Kind] = {
    "truncpow": TruncPowers(),
    "truncmul": MulMask(),
    "ltz": LtzBundle(),
    "ltzpow": LtzPowers(),
    "triple": Triple(),
    "matmul": MatmulTriple(),
    "conv2d": ConvTriple(),
    "trunc": TruncPair(),
    "triple_trunc": TripleTrunc(),
    "matmul_trunc": Truncated(MatmulTriple()),
    "conv2d_trunc": Truncated(ConvTriple()),
}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise DealerError(f"unknown kind of correlated randomness {name!r}; known: {sorted(KINDS)}") from None


def own_layout(k: Kind, p: dict) -> list[tuple[str, Shape, str]]:
    """`own` entries as (name, shape, sharing), sharing 'a' (additive) unless given."""
    return [(e[0], e[1], e[2] if len(e) > 2 else "a") for e in k.own(p)]


def _count(shape: Shape) -> int:
    """Elements of an array of `shape` (math.prod: numpy's prod costs ~10x on small tuples,
    and layouts are computed for every request on both sides)."""
    return math.prod(int(d) for d in shape)


def _words(shape: Shape, how: str) -> int:
    """64-bit words an array of `shape` takes in a flat stream ('a32': two values per word)."""
    n = _count(shape)
    return (n + 1) // 2 if how == "a32" else n


def _as(flat: np.ndarray, n: int, how: str) -> np.ndarray:
    """The first n values of a flat int64 stretch, as uint32 for 'a32' entries."""
    return flat.view(np.uint32)[:n] if how == "a32" else flat[:n]


def _spans(entries: list):
    """(name, shape, how, first word, words) of arrays laid out back to back in a flat stream."""
    off = 0
    for nm, s, how in entries:
        w = _words(s, how)
        yield nm, s, how, off, w
        off += w


def split(flat: np.ndarray, entries: list) -> dict[str, np.ndarray]:
    """Name the arrays laid out back to back in `flat` by entries [(name, shape, how)]."""
    return {nm: _as(flat[off : off + w], _count(s), how).reshape(s)
            for nm, s, how, off, w in _spans(entries)}


GROUP_WORDS = framing.SINGLE_MAX // 8  # a reply part up to this size travels as one frame


def reply_parts(entries: list) -> list[tuple[int, int, list]]:
    """How the dealer sends party 0 one request's corrections: consecutive entries grouped
    into parts of at most GROUP_WORDS words (an entry larger than that alone), each part
    one message: (first word, end word, its entries). Each part then arrives as one frame
    that party 0 uses in place, where one big message would be chunked and reassembled
    (a copy of every word)."""
    parts, cur, lo, off = [], [], 0, 0
    for e in entries:
        w = _words(e[1], e[2])
        if cur and off + w - lo > GROUP_WORDS:
            parts.append((lo, off, cur))
            cur, lo = [], off
        cur.append(e)
        off += w
    if cur or not parts:
        parts.append((lo, off, cur))
    return parts


def flat_words(entries: list) -> int:
    return sum(_words(s, how) for _, s, how in entries)


def corrected_party(stream: int, world: int) -> int:
    """The party that gets request `stream`'s corrections from the dealer: party 0.

    Everything downstream (the dealer, DealerClient, the reply tags) works for any
    choice. Rotating (stream % world) was measured: it spreads the dealer's traffic over
    N links (exp on 1e5 elements over 1 Gbit/s links: 0.273 -> 0.231 s end to end) and
    balances the parties' CPU, but each dealer link then sits idle between its bursts,
    and TCP restarts slow start after an idle RTO (Linux's tcp_slow_start_after_idle,
    on by default): at N = 3 on loopback a 1e6 multiply took 47-78 ms end to end rotated
    against 47-51 ms with party 0 (50-56 ms rotated with that sysctl off). One hot link
    wins there, so party 0 it is."""
    return 0


def _expand(prg, stream: int, name: str, p: dict, corrected: bool) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """(arrays by name, the whole flat stream, words in its `own` prefix)."""
    k = kind(name)
    own = own_layout(k, p)
    corr = [] if corrected else k.corrected(p)
    nown = flat_words(own)
    flat = prg.words(stream, nown + flat_words(corr))
    return split(flat, own + corr), flat, nown


def expand_party(prg, stream: int, name: str, p: dict, corrected: bool, lazy: bool = False) -> dict:
    """A party's PRG-derived arrays for request `stream` (the corrected party's: the own prefix only).
    lazy: where the kind has `lazy_rows`, the other parties get its corrected entries as
    kernels.prg.LazyRows, expanded by the kernels that use them a chunk at a time."""
    k = kind(name)
    lazy = lazy and not corrected and hasattr(k, "lazy_rows")
    out, _, nown = _expand(prg, stream, name, p, corrected or lazy)  # lazy: the own prefix only, as if corrected
    if lazy:
        out.update(k.lazy_rows(p, prg, stream, nown))
    return out


def _unshare(how: str):
    """The ufunc that removes another party's share: xor for 'x', subtraction for 'a', 'a32'."""
    return np.bitwise_xor if how == "x" else np.subtract


def deal(prgs: list, private, stream: int, name: str, p: dict) -> np.ndarray:
    """Dealer side: the corrected party's corrections for request `stream` (prgs: every
    party's, by rank), flat in `corrected` order.

    The corrections are written straight into the buffer that is sent; the first other
    party's shares are subtracted inside the kind's fused kernel where it has one.
    """
    k = kind(name)
    c = corrected_party(stream, len(prgs))
    order = [c] + [i for i in range(len(prgs)) if i != c]  # the corrected party's arrays first
    jobs = [lambda i=i: _expand(prgs[i], stream, name, p, i == c) for i in order]
    big = flat_words(own_layout(k, p)) >= PARALLEL_MIN
    parts = _parallel(*jobs) if big else [j() for j in jobs]
    priv = lambda shape: private(stream, shape)  # noqa: E731
    if len(parts) == 2 and hasattr(k, "deal_two"):
        out = bufpool.empty(parts[1][1].size - parts[1][2])
        if k.deal_two(p, parts[0][0], parts[1][0], out, priv):
            return out
    own = {}
    paired = k.paired(p) if len(parts) == 2 and hasattr(k, "deal_into") else set()
    for n, _, how in own_layout(k, p):
        if n in paired:  # deal_into sums this pair in its own fused pass
            own[n] = (parts[0][0][n], parts[1][0][n])
            continue
        op = np.bitwise_xor if how == "x" else np.add
        first = parts[0][0][n]
        acc = bufpool.empty(first.size).view(first.dtype)[: first.size].reshape(first.shape)  # an array even when 0-d
        if len(parts) > 1:  # one pass: the first two summed straight into acc (no copy first)
            op(first, parts[1][0][n], out=acc)
        else:
            acc[...] = first
        for s in parts[2:]:
            op(acc, s[0][n], out=acc)
        own[n] = acc
    if hasattr(k, "borrowed"):  # arrays the parties hold from an earlier request
        own.update(k.borrowed(prgs, stream, p))
    corr = k.corrected(p)
    out = bufpool.empty(flat_words(corr))
    _pad_odd_a32(out, corr)
    subs = [flat[nown:] for _, flat, nown in parts[1:]]
    if hasattr(k, "deal_into"):
        k.deal_into(p, own, priv, out, subs[0] if subs else None)
        rest = subs[1:]
    else:
        true = k.deal(p, own, priv)
        views = split(out, corr)
        sub0 = split(subs[0], corr) if subs else None
        for n, s, how in corr:
            t = true[n].astype(views[n].dtype, copy=False)  # 'a32': the value mod 2^32
            if sub0 is not None:
                _unshare(how)(t, sub0[n], out=views[n])
            else:
                views[n][...] = t
        rest = subs[1:]
    mine = split(out, corr)
    for sub in rest:
        theirs = split(sub, corr)
        for n, _, how in corr:
            _unshare(how)(mine[n], theirs[n], out=mine[n])
    return out


def correction_shapes(name: str, p: dict) -> list[Shape]:
    return [s for _, s, _ in kind(name).corrected(p)]

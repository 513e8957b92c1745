"""Kinds of correlated randomness the dealer hands out, and how shares are laid out.

Request number k of a session is expanded, by every party i, from stream k of
PRG(seed_i), the seed party i agreed with the dealer. A kind lists its arrays in
two groups:

* `own`:       every party expands its share from its PRG (their sum is the value);
* `corrected`: parties 1..N-1 expand their share from the PRG too, party 0 gets a
               correction from the dealer so that the shares sum (or XOR) to the
               value the dealer derived from the `own` values.

Party 0 expands only the `own` prefix of its stream. The dealer expands all
streams, computes the true values and sends party 0 one message per request,
whatever N is. Sharing is additive mod 2^64 ('a') or XOR of 64-bit words ('x').
The dealer's own secrets (random bits) come from its private PRG.
"""
from __future__ import annotations

import numpy as np

from mpcrt.errors import DealerError
from mpcrt.kernels import ring

Shape = tuple


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


class TruncPair(Kind):
    """Truncation tuple for DESIGN.md section 6: [r], [r >> f], [msb(r)], r uniform in Z_2^64."""

    def own(self, p):
        return [("r", _shape(p["shape"]))]

    def corrected(self, p):
        s = _shape(p["shape"])
        return [("r_hi", s, "a"), ("r_msb", s, "a")]

    def deal(self, p, own, private):
        r = own["r"]
        return {"r_hi": ring.lshr(r, int(p["f"])), "r_msb": ring.msb(r)}


LOW63 = np.int64((1 << 63) - 1)
EVEN = ring.const(0x5555555555555555)
LTZ_LEVELS = (2, 4, 8, 16, 64)  # packing widths of BitLT rounds 2-6 (64: the last level)


class LtzBundle(Kind):
    """Everything one exact less-than-zero over n (padded) elements needs (protocols.comparison):

    edaBit r ([r], <r>); <P> = products of r's adjacent low-63 bit pairs (level 1 of
    BitLT becomes local); one word-AND triple per later level, sized for packed words;
    a daBit ([s], <s>) for the B2A; and for each of k fused products a mask [m_j]
    with [m_j s].
    """

    def own(self, p):
        n, k = int(p["n"]), int(p.get("k", 0))
        out = [("r", (n,), "a")]
        for w in LTZ_LEVELS:
            out += [(f"a{w}", (n // w,), "x"), (f"b{w}", (n // w,), "x")]
        return out + [(f"m{j}", (n,), "a") for j in range(k)]

    def corrected(self, p):
        n, k = int(p["n"]), int(p.get("k", 0))
        out = [("rb", (n,), "x"), ("P", (n,), "x")]
        out += [(f"c{w}", (n // w,), "x") for w in LTZ_LEVELS]
        out += [("sb", (n,), "x"), ("s", (n,), "a")]
        return out + [(f"ms{j}", (n,), "a") for j in range(k)]

    def deal(self, p, own, private):
        n, k = int(p["n"]), int(p.get("k", 0))
        r = own["r"]
        rl = r & LOW63
        out = {"rb": r, "P": ring.lshr(rl, 1) & rl & EVEN}
        for w in LTZ_LEVELS:
            out[f"c{w}"] = own[f"a{w}"] & own[f"b{w}"]
        s = private((n,)) & np.int64(1)
        out["sb"], out["s"] = s, s
        for j in range(k):
            out[f"ms{j}"] = own[f"m{j}"] * s
        return out


class TruncPowers(Kind):
    """Truncation tuple extended with powers (protocols.powers): r uniform, S0 = -(r >> k),
    m = msb(r); [r], [S0^j] for j = 1..J and [m S0^l] for l = 0..J-1."""

    def own(self, p):
        return [("r", _shape(p["shape"]))]

    def corrected(self, p):
        s, J = _shape(p["shape"]), int(p["J"])
        return [(f"S{j}", s, "a") for j in range(1, J + 1)] + [(f"M{l}", s, "a") for l in range(J)]

    def deal(self, p, own, private):
        r, k, J = own["r"], int(p["k"]), int(p["J"])
        s0 = -ring.lshr(r, k)
        m = ring.msb(r)
        out, pw = {}, np.ones_like(r)
        for j in range(J):
            out[f"M{j}"] = m * pw
            pw = pw * s0
            out[f"S{j + 1}"] = pw
        return out


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
    "triple": Triple(),
    "matmul": MatmulTriple(),
    "conv2d": ConvTriple(),
    "trunc": TruncPair(),
}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise DealerError(f"unknown kind of correlated randomness {name!r}; known: {sorted(KINDS)}") from None


def own_layout(k: Kind, p: dict) -> list[tuple[str, Shape, str]]:
    """`own` entries as (name, shape, sharing), sharing 'a' (additive) unless given."""
    return [(e[0], e[1], e[2] if len(e) > 2 else "a") for e in k.own(p)]


def expand_party(prg, stream: int, name: str, p: dict, rank: int) -> dict[str, np.ndarray]:
    """A party's PRG-derived arrays for request `stream` (party 0: the own prefix only)."""
    k = kind(name)
    own = own_layout(k, p)
    corr = k.corrected(p) if rank else []
    layout = [e[1] for e in own] + [e[1] for e in corr]
    arrays = prg.ring(stream, layout) if layout else []
    names = [e[0] for e in own] + [e[0] for e in corr]
    return dict(zip(names, arrays))


def deal(prgs: list, private, stream: int, name: str, p: dict) -> list[np.ndarray]:
    """Dealer side: party 0's corrections for request `stream`, in `corrected` order."""
    k = kind(name)
    shares = [expand_party(prg, stream, name, p, i) for i, prg in enumerate(prgs)]
    own = {}
    for n, _, how in own_layout(k, p):
        acc = shares[0][n].copy()
        for s in shares[1:]:
            if how == "x":
                acc ^= s[n]
            else:
                acc += s[n]
        own[n] = acc
    true = k.deal(p, own, lambda shape: private(stream, shape))
    out = []
    for n, _, how in k.corrected(p):
        acc = true[n].copy()
        for s in shares[1:]:
            if how == "x":
                acc ^= s[n]
            else:
                acc -= s[n]
        out.append(acc)
    return out


def correction_shapes(name: str, p: dict) -> list[Shape]:
    return [s for _, s, _ in kind(name).corrected(p)]

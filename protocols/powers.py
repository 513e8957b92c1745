"""Truncation and powers in one round: [x] -> [u], [u^2], ..., [u^J] with u = x >> k; both halves.

The truncation of protocols.truncation opens c = x + 2^62 + r and gives
u = C + S with C = (c >> k) - 2^(62-k) public and S = -(r >> k) + w m 2^(64-k),
w = 1 - msb(c) public, m = msb(r). The dealer also hands out [S0^j] (S0 = -(r >> k))
and [m S0^l] (`TruncPowers`), so every power of S, (S0 + w m T)^j = S0^j + w sum_i
binom(j, i) T^i m S0^(j-i) (T = 2^(64-k); m^i = m), is a public combination of dealer
shares, and u^j = sum_i binom(j, i) C^(j-i) [S^i] is local. Ring identities: exact mod 2^64.
With `top=True` each party sends only the top 4-6 bytes of its share of the opening
(protocols.rounds.Top): c is then known up to d < N 2^s below it, which moves u by -1
with probability <= 1/16 and saves 3-4 of the 8 bytes.
`trunc_mul_steps` is the J = 1 case fused with a product (`MulMask`): [u y] for a y whose
mask was opened earlier, again in the truncation's single round. `LtzPowers` deals the
powers tuple of beta r for a comparison's edaBit r (protocols.comparison), whose
opening then serves as this truncation's.

Rounds: 1.
Bytes per element per peer: 8 (top: 4-6, more bytes as N grows, rounds.top_bytes), for
  every N; a party sends it to each of its N - 1 peers.
Dealer words per element: 1 + 2J, of which 2J are sent to the corrected party (1.5J when
  k <= 32: the [m S0^l] only matter mod 2^k, so they travel as 32-bit values); MulMask 6
  (4 sent); independent of N.
Error: u carries the truncation's 0 or +1 ulp (top: -1..+1); powers are those of that u.
Reference: docs/design.md, 'Protocols' (truncation with powers); the power-tuple idea of
  Damgard et al. (TCC 2006, "[r], [r^2], ... from the dealer") applied to the output of a
  truncation.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mpcrt.errors import DealerError
from mpcrt.kernels import powers as fused
from mpcrt.kernels import ring
from mpcrt.kernels.prg import LazyRows
from mpcrt.protocols.dealt import Kind, Passes, Shape, count, from_wire, serial, split, wire_int, wire_shape
from mpcrt.protocols.rounds import Open, masked_sum, narrow
from mpcrt.protocols.truncation import OFFSET


@dataclass(frozen=True)
class PowersSpec:
    """A truncation-with-powers tuple's request ('truncpow'): the shape of x, the bits k the
    truncation drops and the number J of powers."""

    shape: Shape
    k: int
    J: int

    def __post_init__(self) -> None:
        if not (0 <= self.k < 64 and 1 <= self.J <= 8):
            raise ValueError(f"powers tuple needs 0 <= k < 64 and 1 <= J <= 8, got k={self.k} J={self.J}")

    def to_wire(self) -> dict:
        return {"shape": list(self.shape), "k": self.k, "J": self.J}

    @classmethod
    def from_wire(cls, p: dict) -> "PowersSpec":
        return cls(wire_shape(p, "shape"), wire_int(p, "k"), wire_int(p, "J"))


@dataclass(frozen=True)
class MulMaskSpec:
    """A (truncation, multiplicand mask) request ('truncmul'): the shape and the bits k."""

    shape: Shape
    k: int

    def __post_init__(self) -> None:
        if not 0 <= self.k < 64:
            raise ValueError(f"truncation bits k={self.k} out of range [0, 63]")

    def to_wire(self) -> dict:
        return {"shape": list(self.shape), "k": self.k}

    @classmethod
    def from_wire(cls, p: dict) -> "MulMaskSpec":
        return cls(wire_shape(p, "shape"), wire_int(p, "k"))


def riding_powers(pw) -> tuple[int, int, int]:
    """(k, J, beta) of a powers tuple that rides on a comparison's edaBit r (the wire's
    `pw` = [k, J, beta]): 0 < k < 63, 1 <= J <= 8, beta odd (so beta r is uniform)."""
    if not (isinstance(pw, (list, tuple)) and len(pw) == 3 and all(isinstance(v, int) for v in pw)):
        raise DealerError(f"malformed powers parameters {pw!r}")
    k, J, beta = pw
    if not (0 < k < 63 and 1 <= J <= 8 and beta % 2 == 1 and -(2**63) <= beta < 2**63):
        raise DealerError(f"powers parameters out of range: k={k} J={J} beta={beta} (beta must be odd)")
    return k, J, beta


@dataclass(frozen=True)
class LtzPowersSpec:
    """The powers tuple of beta r for a comparison bundle's edaBit r, as a request of its own
    ('ltzpow'): the bundle's n and rows, pw = (k, J, beta), and `back`, how many requests
    earlier the bundle's part-1 request was."""

    n: int
    rows: int
    pw: tuple[int, int, int]
    back: int = 1

    def __post_init__(self) -> None:
        if self.n <= 0 or self.rows <= 0 or self.n % self.rows or self.back < 1:
            raise DealerError(f"malformed comparison powers request n={self.n} rows={self.rows} back={self.back!r}")
        riding_powers(self.pw)

    @cached_property
    def tuple_spec(self) -> PowersSpec:
        """The TruncPowers request of beta r (one row: n / rows elements)."""
        return PowersSpec((self.n // self.rows,), self.pw[0], self.pw[1])

    def to_wire(self) -> dict:
        return {"n": self.n, "rows": self.rows, "pw": list(self.pw), "back": self.back}

    @classmethod
    def from_wire(cls, p: dict) -> "LtzPowersSpec":
        back = p.get("back")
        if not isinstance(back, int) or isinstance(back, bool):
            raise DealerError(f"malformed comparison powers request: back={back!r}")
        if p.get("pw") is None:
            raise DealerError("a comparison powers request needs pw = [k, J, beta]")
        return cls(wire_int(p, "n"), wire_int(p, "rows", 1), tuple(riding_powers(p["pw"])), back)


# ------------------------------------------------------------ the dealer's half
class TruncPowers(Kind):
    """Truncation tuple extended with powers: r uniform, S0 = -(r >> k), m = msb(r); [r],
    [S0^j] for j = 1..J and M = [m S0^l] for l = 0..J-1 (one (J, ...) array). M only
    enters multiplied by T = 2^(64-k): for k <= 32 it is shared mod 2^32 ('a32'), which
    saves 4 bytes per word of it. The methods below take the wire dict; `*_spec` a PowersSpec."""

    @staticmethod
    def spec(p: dict) -> PowersSpec:
        return from_wire(PowersSpec.from_wire, p, "powers")

    def own(self, p):
        return [("r", self.spec(p).shape)]

    def corrected(self, p):
        return self.corrected_spec(self.spec(p))

    @staticmethod
    def corrected_spec(s: PowersSpec) -> list:
        M = ("M", (s.J,) + s.shape, "a32" if s.k <= 32 else "a")
        return [(f"S{j}", s.shape, "a") for j in range(1, s.J + 1)] + [M]

    def deal(self, p, own, private, ops):
        return self.deal_spec(self.spec(p), own["r"])

    @staticmethod
    def deal_spec(s: PowersSpec, r: np.ndarray) -> dict:
        s0 = -ring.lshr(r, s.k)
        m = ring.msb(r)
        out, pw, M = {}, np.ones_like(r), []
        for j in range(s.J):
            M.append(m * pw)
            pw = pw * s0
            out[f"S{j + 1}"] = pw
        out["M"] = np.stack(M)
        return out

    def lazy_rows(self, p, prg, stream: int, first: int) -> dict:
        return self.lazy_rows_spec(self.spec(p), prg, stream, first)

    @staticmethod
    def lazy_rows_spec(s: PowersSpec, prg, stream: int, first: int) -> dict:
        """An uncorrected party's S1..SJ ('S*') and M as LazyRows of its stream (which holds
        them from word `first` on, in `corrected` order)."""
        J, n = s.J, count(s.shape)
        M = (LazyRows(prg, stream, 2 * (first + J * n), n, J, n, np.uint32) if s.k <= 32
             else LazyRows(prg, stream, first + J * n, n, J, n))
        return {"S*": LazyRows(prg, stream, first, n, J, n), "M": M}

    def deal_into(self, p, own, private, out, sub, ops, parallel: Passes = serial):
        self.deal_into_spec(self.spec(p), own["r"], out, sub, ops)

    @classmethod
    def deal_into_spec(cls, s: PowersSpec, r: np.ndarray, out: np.ndarray, sub: np.ndarray | None, ops) -> None:
        """The corrections written into `out` in one fused pass (kernels.powers), the first
        other party's shares `sub` (None: none) subtracted in it."""
        r, J = r.reshape(-1), s.J
        n, corr = r.size, cls.corrected_spec(s)

        def blocks(flat):  # S1..SJ lie back to back: one (J, n) block; M is (J, ...) already
            return flat[: J * n].reshape(J, n), split(flat, corr)["M"].reshape(J, n)

        sS, sM = blocks(sub) if sub is not None else (None, None)
        ops.powers.deal(r, s.k, J, sS, sM, *blocks(out))


class LtzPowers(Kind):
    """The powers tuple of beta r for a comparison bundle's edaBit r, as a request of its own
    (protocols.comparison.Halves): `back` requests earlier is an 'ltz' part-1 request with
    the same n and rows, whose `own` stream starts with r (n / rows words); every party
    already holds its share of r from there, so this kind has no `own` arrays and the
    dealer re-expands that prefix of each party's earlier stream (`borrowed`). Its
    corrections are TruncPowers' for beta r (beta odd, so beta r is uniform). Dealt apart
    from the bundle so that the comparison's early rounds do not wait for it."""

    @staticmethod
    def spec(p: dict) -> LtzPowersSpec:
        return from_wire(LtzPowersSpec.from_wire, p, "comparison powers")

    def own(self, p):
        self.spec(p)
        return []

    def corrected(self, p):
        return TruncPowers.corrected_spec(self.spec(p).tuple_spec)

    def borrowed(self, prgs: list, stream: int, p: dict) -> dict[str, np.ndarray]:
        """beta r, r summed from the first n / rows words of every party's stream `stream - back`."""
        s = self.spec(p)
        if stream - s.back < 0:
            raise DealerError(f"comparison powers request {stream} refers back {s.back} requests, before the first")
        n1 = s.n // s.rows
        r = prgs[0].words(stream - s.back, n1)
        for prg in prgs[1:]:
            r += prg.words(stream - s.back, n1)
        r *= np.int64(s.pw[2])
        return {"r": r}

    def deal(self, p, own, private, ops):
        return TruncPowers.deal_spec(self.spec(p).tuple_spec, own["r"])

    def lazy_rows(self, p, prg, stream: int, first: int) -> dict:
        return TruncPowers.lazy_rows_spec(self.spec(p).tuple_spec, prg, stream, first)

    def deal_into(self, p, own, private, out, sub, ops, parallel: Passes = serial):
        TruncPowers.deal_into_spec(self.spec(p).tuple_spec, own["r"], out, sub, ops)


class MulMask(Kind):
    """A mask [a] for a value y to be multiplied later by a truncated value, with the
    products [S0 a] and [m a] of a TruncPowers request of the same shape."""

    @staticmethod
    def spec(p: dict) -> MulMaskSpec:
        return from_wire(MulMaskSpec.from_wire, p, "truncated product")

    def own(self, p):
        s = self.spec(p).shape
        return [("r", s), ("a", s)]

    def corrected(self, p):
        s = self.spec(p).shape
        return [("S1", s, "a"), ("M0", s, "a"), ("S1a", s, "a"), ("M0a", s, "a")]

    def deal(self, p, own, private, ops):
        r, k, a = own["r"], self.spec(p).k, own["a"]
        s0, m = -ring.lshr(r, k), ring.msb(r)
        return {"S1": s0, "M0": m, "S1a": s0 * a, "M0a": m * a}


KINDS: dict[str, Kind] = {"truncpow": TruncPowers(), "truncmul": MulMask(), "ltzpow": LtzPowers()}


# ------------------------------------------------------------ the parties' half
def _public_parts(c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    C = ring.lshr(c, k) - np.int64(1 << (62 - k))
    w = 1 - ring.msb(c)
    return C, w


def request(rt, shape: tuple, k: int, J: int):
    """Ask the dealer for a truncation-with-powers tuple ahead of use (a chain of steps
    requests all of them at its start, so the dealer works while the rounds run)."""
    return rt.dealer.request("truncpow", **PowersSpec(tuple(shape), int(k), int(J)).to_wire())


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
    out = rt.backend.powers.combine(c.reshape(-1), S, M, k, rt.rank == 0)
    return [o.reshape(c.shape) for o in out]


def trunc_poly_steps(rt, x: np.ndarray, k: int, J: int, coef, X: np.ndarray | None = None, xcoef: int = 0, mat=None,
                     top: bool = False):
    """Generator (1 round): [sum_j coef[j] u^j + xcoef X] for u = x >> k (coef[0] the constant
    term, J + 1 public ring values; X a shared array of x's shape or None): a truncation
    with powers whose powers go straight into the polynomial (one fused pass, no [u^j] stored).
    `mat`, `top` as for trunc_pow_steps (request with the same shape, k, J)."""
    c, S, M = yield from _open_steps(rt, x, k, J, mat, top)
    return rt.backend.powers.poly(c.reshape(-1), S, M, k, rt.rank == 0, coef, X, xcoef).reshape(c.shape)


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


def mask_request(rt, shape, k: int):
    """Ask the dealer for a (truncation, multiplicand mask) pair; returns the material."""
    return rt.dealer.request("truncmul", **MulMaskSpec(tuple(shape), int(k)).to_wire())


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

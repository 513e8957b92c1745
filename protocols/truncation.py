"""Probabilistic-failure-free truncation: [x] -> [x >> f] in one round, for any N; both halves.

Computes floor(x / 2^f) + e, e in {0, +1} (one unit in the last place), for every
|x| < 2^62 with no failure probability. (The 2-party local truncation of SecureML
fails with probability ~|x|/2^63 per element, and a failure is a huge error.)

Dealer tuple (`TruncPair`): r uniform in Z_2^64 with [r], [r >> f], [msb(r)]. Open
c = x + 2^62 + r. Since 0 <= x + 2^62 < 2^63, the sum wraps modulo 2^64 exactly when
msb(r) = 1 and msb(c) = 0, so
    [x >> f] = (c >> f) - [r >> f] + [msb(r)] (1 - msb(c)) 2^(64-f) - 2^(62-f),
public terms added by party 0. The +1 comes from the borrow of the low f bits.

Rounds: 1.
Bytes per element per peer: 8, for every N (a party sends it to each of its N - 1 peers).
Dealer words per element: 3 ([r] from every party's seed; [r >> f] and [msb r] corrected:
  2 words sent, 1.5 when f <= 32, as [msb r] then travels mod 2^32); independent of N.
Error: 0 or +1 ulp, never a wrap, for |x| < 2^62.
Reference: docs/design.md, 'Protocols' (truncation); the same idea as the "probabilistic
  truncation with a wrap bit" of Escudero et al., "Improved primitives for MPC over mixed
  arithmetic-binary circuits" (CRYPTO 2020), made exact by the 2^62 offset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpcrt.kernels import ring
from mpcrt.protocols.dealt import Kind, Shape, from_wire, msb_how, pad_odd_a32, split, wire_int, wire_shape
from mpcrt.protocols.rounds import masked_sum

OFFSET = np.int64(1 << 62)


@dataclass(frozen=True)
class TruncSpec:
    """A truncation tuple's request ('trunc'): the shape of x and the bits f to drop."""

    shape: Shape
    f: int

    def __post_init__(self) -> None:
        if not 0 < self.f < 64:
            raise ValueError(f"truncation bits f={self.f} out of range [1, 63]")

    def to_wire(self) -> dict:
        return {"shape": list(self.shape), "f": self.f}

    @classmethod
    def from_wire(cls, p: dict) -> "TruncSpec":
        return cls(wire_shape(p, "shape"), wire_int(p, "f"))


# ------------------------------------------------------------ the dealer's half
class TruncPair(Kind):
    """Truncation tuple: [r], [r >> f], [msb(r)], r uniform in Z_2^64."""

    @staticmethod
    def spec(p: dict) -> TruncSpec:
        return from_wire(TruncSpec.from_wire, p, "truncation")

    def own(self, p):
        return [("r", self.spec(p).shape)]

    def corrected(self, p):
        s = self.spec(p)
        return [("r_hi", s.shape, "a"), ("r_msb", s.shape, msb_how(s.f))]

    def deal(self, p, own, private, ops):
        r = own["r"]
        return {"r_hi": ring.lshr(r, self.spec(p).f), "r_msb": ring.msb(r)}

    def deal_two(self, p, s0, s1, out, private, ops) -> bool:
        f, corr = self.spec(p).f, self.corrected(p)
        pad_odd_a32(out, corr)
        v = split(out, corr)
        ops.beaver.deal_trunc(s0["r"].reshape(-1), s1["r"].reshape(-1), np.int64(f), ring.const((1 << (64 - f)) - 1),
                      s1["r_hi"].reshape(-1), s1["r_msb"].reshape(-1), v["r_hi"].reshape(-1), v["r_msb"].reshape(-1))
        return True


KINDS: dict[str, Kind] = {"trunc": TruncPair()}


# ------------------------------------------------------------ the parties' half
def request(rt, shape: tuple, f: int):
    """Ask the dealer for the tuple ahead of use (lets it work while other rounds run)."""
    return rt.dealer.request("trunc", **TruncSpec(tuple(shape), int(f)).to_wire())


def truncate(rt, x: np.ndarray, f: int, material=None) -> np.ndarray:
    """[x >> f] (arithmetic shift of the shared signed value), exact up to +1 ulp."""
    if f == 0:
        return x
    mat = material if material is not None else request(rt, x.shape, f)
    z = masked_sum(x, mat.own()["r"], OFFSET if rt.rank == 0 else 0)
    (c,) = rt.open([z], "trunc", donate=True)
    return finish(rt, c, f, mat)


def finish(rt, c: np.ndarray, f: int, mat) -> np.ndarray:
    """[x >> f] from the opened c = x + 2^62 + r (one fused pass, kernels.beaver)."""
    m = mat.get()
    out = np.empty(c.shape, np.int64)
    rt.backend.beaver.trunc_finish(c.reshape(-1), m["r_hi"].reshape(-1), m["r_msb"].reshape(-1), np.int64(f),
                    ring.const((1 << (64 - f)) - 1), rt.rank == 0, out.reshape(-1))
    return out

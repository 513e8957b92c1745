"""Division by a public integer: [x] -> [floor(x / d) + e], e in {0, +1}, in one round, any N, d in [2, 2^40].

The truncation of protocols.truncation with a divisor that is not a power of two. A mean over
n elements, x / 3, an average pool's / 9 and a product by a public real a / b then lose one unit
in the last place, as a truncation does, where x * (1 / d) at f bits loses d's encoding error:
1/3 at f = 16 bits is 21845 / 65536, 1.5e-5 relative, so mean([1e4] * 3) gave 9999.85.

Dealer tuple (`DivPair`): r uniform in [0, 2^64) with [r], [r div d], [msb(r)]. Open
c = x + o + r mod 2^64, o = d floor(2^62 / d) (a multiple of d near 2^62). For |x| < 2^62 - d,
y = x + o is in [0, 2^63), so y + r wraps exactly when msb(r) = 1 and msb(c) = 0 (as for a
truncation), and as integers y + r = c + w 2^64 with w = [msb r] (1 - msb c). Then
    floor((y + r) / d) = c div d + w ((c + 2^64) div d - c div d),
the bracket public (msb c = 0: w = msb r, else w = 0), so
    [x div d] = floor((y + r) / d) - [r div d] - o / d = floor(x / d) + e,
since floor(y / d + r / d) - floor(r / d) is floor(y / d) or one more, and o / d is an integer. So 0
stays exactly 0 and x >= 0 stays >= 0, as with a truncation.

Rounds: 1.
Bytes per element per peer: 8, for every N (at N >= 3 an opening of 512 KiB or more is split, 2 rounds).
Dealer words per element: 3 ([r] from every party's seed; [r div d] and [msb r] corrected, 2 words
  sent: [msb r] is multiplied by a public number that is not a power of two); independent of N.
Error: 0 or +1 unit in x's last place, never a wrap, for |x| < 2^62 - d.
Reference: docs/design.md, 'Protocols' (division by a public integer); protocols.truncation's offset
  construction (after Escudero et al., CRYPTO 2020) with the wrap's quotient made public per element.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpcrt.protocols.dealt import Kind, Shape, from_wire, wire_int, wire_shape
from mpcrt.protocols.rounds import masked_sum

MAX_DIVISOR = 1 << 40  # beyond it x / d is below one unit for every |x| < 2^40 units: multiply instead


def offset(d: int) -> np.int64:
    """o = d floor(2^62 / d): party 0's offset, a multiple of d, so that o / d is exact."""
    return np.int64(d * ((1 << 62) // d))


@dataclass(frozen=True)
class DivSpec:
    """A division tuple's request ('div'): the shape of x and the public divisor d."""

    shape: Shape
    d: int

    def __post_init__(self) -> None:
        if not 2 <= self.d <= MAX_DIVISOR:
            raise ValueError(f"divisor d={self.d} out of range [2, 2^40]")

    def to_wire(self) -> dict:
        return {"shape": list(self.shape), "d": self.d}

    @classmethod
    def from_wire(cls, p: dict) -> "DivSpec":
        return cls(wire_shape(p, "shape"), wire_int(p, "d", lo=2, hi=MAX_DIVISOR))


# ------------------------------------------------------------ the dealer's half
class DivPair(Kind):
    """Division tuple: [r], [r div d], [msb(r)], r uniform in [0, 2^64)."""

    @staticmethod
    def spec(p: dict) -> DivSpec:
        return from_wire(DivSpec.from_wire, p, "division")

    def own(self, p):
        return [("r", self.spec(p).shape)]

    def corrected(self, p):
        s = self.spec(p)
        return [("q", s.shape, "a"), ("r_msb", s.shape, "a")]

    def deal(self, p, own, private, ops):
        r = own["r"].view(np.uint64)
        return {"q": (r // np.uint64(self.spec(p).d)).view(np.int64), "r_msb": (r >> np.uint64(63)).view(np.int64)}


KINDS: dict[str, Kind] = {"div": DivPair()}


# ------------------------------------------------------------ the parties' half
def request(rt, shape: tuple, d: int):
    """Ask the dealer for the tuple ahead of use (lets it work while other rounds run)."""
    return rt.dealer.request("div", **DivSpec(tuple(shape), int(d)).to_wire())


def divide(rt, x: np.ndarray, d: int, material=None) -> np.ndarray:
    """[floor(x / d) + e], e in {0, 1}, for a public integer d in [2, 2^40] and |x| < 2^62 - d."""
    mat = material if material is not None else request(rt, x.shape, d)
    z = masked_sum(x, mat.own()["r"], offset(d) if rt.rank == 0 else 0)
    (c,) = rt.open([z], "div", donate=True)
    return finish(rt, c, d, mat)


def finish(rt, c: np.ndarray, d: int, mat) -> np.ndarray:
    """[x div d] from the opened c = x + o + r (one fused pass, kernels.beaver)."""
    m = mat.get()
    u = np.uint64
    out = np.empty(np.shape(c), np.int64)
    rt.backend.beaver.div_finish(np.asarray(c, np.int64).reshape(-1).view(u), m["q"].reshape(-1).view(u),
                                 m["r_msb"].reshape(-1).view(u), u(d), u((1 << 64) // d), u((1 << 64) % d),
                                 u(1 << 63), u((1 << 62) // d), rt.rank == 0, out.reshape(-1).view(u))
    return out

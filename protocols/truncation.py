"""Probabilistic-failure-free truncation: [x] -> [x >> f] in one round, for any N.

Computes floor(x / 2^f) + e, e in {0, +1} (one unit in the last place), for every
|x| < 2^62 with no failure probability. (The 2-party local truncation of SecureML
fails with probability ~|x|/2^63 per element, and a failure is a huge error.)

Dealer tuple: r uniform in Z_2^64 with [r], [r >> f], [msb(r)]. Open
c = x + 2^62 + r (1 round, 8 (N-1) bytes per element per party). Since
0 <= x + 2^62 < 2^63, the sum wraps modulo 2^64 exactly when msb(r) = 1 and
msb(c) = 0, so
    [x >> f] = (c >> f) - [r >> f] + [msb(r)] (1 - msb(c)) 2^(64-f) - 2^(62-f),
public terms added by party 0. The +1 comes from the borrow of the low f bits.
Derivation: DESIGN.md section 6; the same idea as the "probabilistic truncation with
a wrap bit" of Escudero et al., "Improved primitives for MPC over mixed arithmetic-
binary circuits" (CRYPTO 2020), made exact by the 2^62 offset.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels import beaver as fb
from mpcrt.kernels import ring
from mpcrt.protocols.rounds import masked_sum

OFFSET = np.int64(1 << 62)


def request(rt, shape: tuple, f: int):
    """Ask the dealer for the tuple ahead of use (lets it work while other rounds run)."""
    return rt.dealer.request("trunc", shape=tuple(shape), f=int(f))


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
    fb.trunc_finish(c.reshape(-1), m["r_hi"].reshape(-1), m["r_msb"].reshape(-1), np.int64(f),
                    ring.const((1 << (64 - f)) - 1), rt.rank == 0, out.reshape(-1))
    return out

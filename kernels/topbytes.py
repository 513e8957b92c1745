"""Openings of the top bytes of additive shares (protocols.rounds.Top).

A party sends only bits s..63 of its int64 share z (s = 64 - 8 nbytes, nbytes 4 to 6)
as a 32-bit word `hi` (bits 32..63) and, for nbytes > 4, a low part `lo` (bits s..31,
uint8 or uint16). The receiver forms sum_i ((z_i >> s) << s) mod 2^64 = c - d with
0 <= d < N 2^s: the low parts are summed as integers, so their carries reach `hi`.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels.jit import njit

LO_DTYPES = {4: None, 5: np.uint8, 6: np.uint16}


def low_bits(nbytes: int) -> int:
    """s: the low bits of each share that do not travel."""
    return 64 - 8 * nbytes


@njit
def _pack(x, r, add, hi, lo, s):  # pragma: no cover - compiled
    for i in range(x.size):
        v = x[i] + r[i] + add
        hi[i] = v >> 32
        lo[i] = v >> s


@njit
def _pack_hi(x, r, add, hi):  # pragma: no cover - compiled
    for i in range(x.size):
        hi[i] = (x[i] + r[i] + add) >> 32


def pack(x: np.ndarray, nbytes: int, plus: np.ndarray | None = None, add: int = 0) -> list[np.ndarray]:
    """[hi] or [hi, lo]: the top nbytes of each element of x + plus + add (int64 arrays of
    one shape, plus None for none), in one pass."""
    if nbytes not in LO_DTYPES:
        raise ValueError(f"a top-bytes opening sends 4, 5 or 6 bytes per element, not {nbytes}")
    flat = np.ascontiguousarray(x, np.int64).reshape(-1)
    other = np.zeros(1, np.int64) if plus is None else np.ascontiguousarray(plus, np.int64).reshape(-1)
    if plus is None:
        other = np.broadcast_to(other, flat.shape)
    elif other.size != flat.size:
        raise ValueError(f"top-bytes opening: addend of {other.size} elements for {flat.size}")
    hi = np.empty(flat.size, np.int32)
    dt = LO_DTYPES[nbytes]
    if dt is None:
        _pack_hi(flat, other, np.int64(add), hi)
        return [hi]
    lo = np.empty(flat.size, dt)
    _pack(flat, other, np.int64(add), hi, lo, np.int64(low_bits(nbytes)))
    return [hi, lo]


@njit
def _sum(his, los, s, out):  # pragma: no cover - compiled
    for i in range(out.size):
        h = np.int64(0)
        lsum = np.int64(0)
        for p in range(len(his)):
            h += np.int64(his[p][i])
            lsum += np.int64(los[p][i])
        out[i] = (h << 32) + (lsum << s)


@njit
def _sum_hi(his, out):  # pragma: no cover - compiled
    for i in range(out.size):
        h = np.int64(0)
        for p in range(len(his)):
            h += np.int64(his[p][i])
        out[i] = h << 32


def unpack_sum(parts: list[list[np.ndarray]], nbytes: int, out: np.ndarray) -> np.ndarray:
    """out (int64, flat) = sum over the parties' packed parts ([hi] or [hi, lo] each) of
    their top bytes, shifted back into place: the opening c - d (module docstring)."""
    his = tuple(_readonly(p[0]) for p in parts)
    if LO_DTYPES[nbytes] is None:
        _sum_hi(his, out)
    else:
        _sum(his, tuple(_readonly(p[1]) for p in parts), np.int64(low_bits(nbytes)), out)
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: the kernels index a tuple of the parties' parts, which numba
    types only when all of them have one type (a received frame may be read-only)."""
    v = np.asarray(a).view()
    v.flags.writeable = False
    return v

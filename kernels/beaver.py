"""Fused loops of the elementwise Beaver multiply with truncation (protocols.beaver,
protocols.truncation, protocols.division), party and dealer side. One pass each instead of 4-8 numpy passes."""
from __future__ import annotations

from mpcrt.kernels.jit import njit


@njit
def product_masked(d, b, x, e, cr, offset, out):  # pragma: no cover - compiled
    """out = d b + x e + [c + r] + offset: the Beaver product's share, masked for the
    truncation's opening (offset: 2^62 on party 0, else 0)."""
    for i in range(out.size):
        out[i] = d[i] * b[i] + x[i] * e[i] + cr[i] + offset


@njit
def trunc_finish(c, r_hi, r_msb, f, low, rank0, out):  # pragma: no cover - compiled
    """[x >> f] = [msb r] (1 - msb c) 2^(64-f) - [r >> f] (+ (c >> f) - 2^(62-f) on party 0)."""
    wrapw = (1 << (64 - f)) if f > 0 else 0
    pub = 1 << (62 - f)
    for i in range(out.size):
        ci = c[i]
        v = r_msb[i] * (wrapw if ci >= 0 else 0) - r_hi[i]
        if rank0:
            v += ((ci >> f) & low) - pub
        out[i] = v


@njit
def div_finish(c, q, r_msb, d, q64, r64, top, pub, rank0, out):  # pragma: no cover - compiled
    """[x div d] = [msb r] (1 - msb c) ((c + 2^64) div d - c div d) - [r div d] (+ c div d - pub on party 0);
    (c + 2^64) div d = q64 + (c + r64) div d for 2^64 = d q64 + r64. Every argument uint64 (numba would
    take a mix of int64 and uint64 to float64)."""
    for i in range(out.size):
        ci = c[i]
        cq = ci // d
        v = (r_msb[i] * (q64 + (ci + r64) // d - cq) if ci < top else q64 - q64) - q[i]
        if rank0:
            v += cq - pub
        out[i] = v


@njit
def deal_triple(a0, a1, b0, b1, c1, out):  # pragma: no cover - compiled
    """Two parties: party 0's correction (a0 + a1)(b0 + b1) - c1."""
    for i in range(out.size):
        out[i] = (a0[i] + a1[i]) * (b0[i] + b1[i]) - c1[i]


@njit
def deal_trunc(r0, r1, f, low, sub_hi, sub_msb, out_hi, out_msb):  # pragma: no cover - compiled
    """Two parties: corrections of [r >> f] and [msb r], r = r0 + r1 (the msb arrays may be
    uint32, shares mod 2^32: the store wraps)."""
    for i in range(out_hi.size):
        r = r0[i] + r1[i]
        out_hi[i] = ((r >> f) & low) - sub_hi[i]
        out_msb[i] = (1 if r < 0 else 0) - sub_msb[i]


@njit
def deal_triple_trunc(a0, a1, b0, b1, r, f, low, sub_cr, sub_hi, sub_msb,  # pragma: no cover - compiled
                      out_cr, out_hi, out_msb):
    """Two parties: corrections of [a b + r], [r >> f], [msb r] (protocols.beaver.TripleTrunc)."""
    for i in range(out_cr.size):
        ri = r[i]
        out_cr[i] = (a0[i] + a1[i]) * (b0[i] + b1[i]) + ri - sub_cr[i]
        out_hi[i] = ((ri >> f) & low) - sub_hi[i]
        out_msb[i] = (1 if ri < 0 else 0) - sub_msb[i]

"""Comparisons of SharedTensors, and what is built from one exact less-than-zero.

Computes [x < y], [x > y], [x <= y], [x >= y], [x == y], [x != y], ltz, relu, abs, sign,
clamp (and clamp_excess for the activations) from the exact comparison of
protocols.comparison. Results are shared 0/1 tensors with 0 fractional bits, so
multiplying by them needs no truncation; relu, abs and clamp fuse their product with
the comparison's bit into its last round.

With two parties, where protocols.fss.use_fss says so (MPCRT_COMPARISON, and for auto
its cost model of MPCRT_NETWORK), the comparison is the one-round FSS one instead
(protocols.fss): ltz, relu, abs, clamp, eq, sign in 1 round (relu of an untruncated
product too: the truncation rides on the same opening); a product with another tensor
than the compared one takes a Beaver round more.

Rounds: 7 for each (one batched comparison run); FSS: 1 (2 with a foreign product).
Bytes per element per peer: 23.4 for one comparison (8 for the masked opening, 15.4
  for BitLT and the B2A), + 8 per fused product (relu, abs: 31.4); eq and sign compare
  against two thresholds sharing one opening (38.8). Each peer gets this, so a party
  sends (N - 1) times it. FSS: 8, whatever the thresholds and the fused product.
Dealer words per element: 6.9 per comparison (edaBit, AND triples, daBit; 4.0 of them
  sent, protocols.comparison), + 2 per fused product, + 3.9 per extra threshold row;
  independent of N (one corrected party). FSS: 1544 bytes to each party (2064 with the
  product, 2584 with the fused truncation; protocols.fss.key_bytes).
Error: none (exact for every ring value).
Reference: docs/design.md, 'Protocols' (comparison); Damgard et al., TCC 2006.
"""
from __future__ import annotations

import numpy as np

from mpcrt.protocols import beaver, comparison, fixedpoint, fss, powers
from mpcrt.protocols.rounds import run, run1
from mpcrt.protocols.shared import SharedTensor


def _fss_ltz(rt, flat: np.ndarray, ys: np.ndarray | None, self_prod: bool):
    """[flat < 0] by FSS (protocols.fss, 1 round) and its product with flat itself
    (self_prod, fused) or with ys (one more round, a Beaver product)."""
    bit, prod = run1(rt, fss.ltz_steps(rt, flat, prod=self_prod))
    if ys is not None:
        prod = beaver.mul(rt, bit, ys)
    return bit, ([prod] if prod is not None else [])


def ltz_many(parts: list[SharedTensor], muls: list[SharedTensor | None] | None = None):
    """ltz of several same-fbits tensors in one batched run (7 rounds for all; with two
    parties 1 by FSS, 2 where a product is with another tensor than the compared one)."""
    rt = parts[0].rt
    flat = np.concatenate([p.share.ravel() for p in parts])
    m = []
    if muls is not None:
        m = [np.concatenate([(q if q is not None else p).share.ravel() for p, q in zip(parts, muls)])]
    with rt.scope("ltz"):
        self_prod = muls is not None and all(q is None or q is p for p, q in zip(parts, muls))
        if fss.use_fss(rt, flat.size, 1, muls is not None):
            bit, prods = _fss_ltz(rt, flat, m[0] if m and not self_prod else None, self_prod)
        else:
            bit, prods = comparison.ltz(rt, flat, m)
    out, prod_out, off = [], [], 0
    for p in parts:
        k = p.share.size
        out.append(SharedTensor(rt, bit[off : off + k].reshape(p.shape), 0))
        if prods:
            prod_out.append(SharedTensor(rt, prods[0][off : off + k].reshape(p.shape), p.fbits))
        off += k
    return out, prod_out


def ltz_at(x: SharedTensor, ts: list[int], muls: list[SharedTensor] | None = None, same: SharedTensor | None = None):
    """[x < t] for public ring values t (in x's units), rows of one comparison run that
    share x's masked opening (protocols.comparison thresholds): 8 bytes per element per
    peer less for each row after the first. muls: one tensor per row (x's shape) to
    multiply by that row's bit, fused; or `same`: one tensor every row's bit multiplies
    (one masked opening of it for all rows)."""
    rt = x.rt
    if same is not None:
        muls, ys = [same] * len(ts), lambda: [same.share]
    else:
        ys = (lambda: [np.stack([q.share for q in muls])]) if muls else None
    with rt.scope("ltz"):
        if (not muls or same is x) and fss.use_fss(rt, x.share.size, len(ts), same is not None):
            # one opening and one key serve every row
            bits, prod = run1(rt, fss.ltz_steps(rt, x.share, thresholds=ts, prod=same is not None))
            prods = [] if prod is None else [prod]
        else:
            spec = comparison.LtzSpec.of(x.share.size, 1 if muls else 0, len(ts), shared_y=same is not None)
            bits, prods = run(rt, comparison.ltz_steps(rt, x.share, muls=ys, thresholds=ts, spec=spec))[0]
    out = [SharedTensor(rt, bits[i, ...], 0) for i in range(len(ts))]  # [i, ...]: 0-d arrays stay arrays
    return out, [SharedTensor(rt, prods[0][i, ...], q.fbits) for i, q in enumerate(muls)] if muls else []


def _diff(x: SharedTensor, y) -> SharedTensor:
    return x - y


def ltz(x: SharedTensor) -> SharedTensor:
    """[x < 0] as a shared 0/1 tensor."""
    return ltz_many([x])[0][0]


def lt(x: SharedTensor, y) -> SharedTensor:
    """[x < y] as a shared 0/1 tensor (y shared or public; 7 rounds)."""
    return ltz(_diff(x, y))


def gt(x: SharedTensor, y) -> SharedTensor:
    """[x > y] = [y - x < 0] as a shared 0/1 tensor (7 rounds)."""
    return ltz(-_diff(x, y))


def le(x: SharedTensor, y) -> SharedTensor:
    """[x <= y] = 1 - [x > y] as a shared 0/1 tensor (7 rounds)."""
    return 1 - gt(x, y)


def ge(x: SharedTensor, y) -> SharedTensor:
    """[x >= y] = 1 - [x < y] as a shared 0/1 tensor (7 rounds)."""
    return 1 - lt(x, y)


def eq(x: SharedTensor, y) -> SharedTensor:
    """[x == y] = [d < 1 ulp] - [d < 0] for d = x - y: one run, one shared opening."""
    (below, upto), _ = ltz_at(_diff(x, y), [0, 1])
    return upto - below


def ne(x: SharedTensor, y) -> SharedTensor:
    """[x != y] = 1 - [x == y] as a shared 0/1 tensor (7 rounds)."""
    return 1 - eq(x, y)


def relu(x: SharedTensor) -> SharedTensor:
    """max(x, 0) = x - [x < 0] x, the product fused into the comparison (7 rounds).

    An x with more fractional bits than the runtime's (an untruncated product) is
    truncated inside the same 7 rounds: the sign of x is that of its truncation, so the
    comparison runs on x while the truncation's opening shares round 1, and the fused
    product takes the truncated value."""
    rt, f = x.rt, x.rt.precision
    if x.fbits <= f:
        _, (bx,) = ltz_many([x], [x])
        return x - bx
    if fss.use_fss(rt, x.share.size, 1, True, x.fbits - f):  # the truncation rides on the FSS opening
        with rt.scope("relu"):
            return SharedTensor(rt, run1(rt, fss.relu_trunc_steps(rt, x.share, x.fbits - f)), f)
    hold = {}

    def trunc():
        (t,) = yield from powers.trunc_pow_steps(rt, x.share, x.fbits - f, 1)
        hold["t"] = t
        return t

    with rt.scope("relu"):
        _, (_, (bt,)) = run(rt, trunc(), comparison.ltz_steps(rt, x.share, 1, lambda: [hold["t"]]))
    return SharedTensor(rt, hold["t"] - bt, f)


def abs_(x: SharedTensor) -> SharedTensor:
    """|x| = x - 2 [x < 0] x, the product fused into the comparison (exact, 7 rounds)."""
    _, (bx,) = ltz_many([x], [x])
    return x - 2 * bx


def sign(x: SharedTensor) -> SharedTensor:
    """-1, 0 or 1 like torch.sign: [x > 0] - [x < 0] = 1 - [x < 1 ulp] - [x < 0] (one run)."""
    (neg, upto), _ = ltz_at(x, [0, 1])
    return 1 - upto - neg


def clamp(x: SharedTensor, min=None, max=None) -> SharedTensor:
    """torch.clamp with public bounds: lo + relu(x - lo) - relu(x - hi), one batched run."""
    if min is None and max is None:
        raise ValueError("clamp(): give min, max or both (as torch requires)")
    if min is not None and max is not None:
        if np.any(np.asarray(min) > np.asarray(max)):  # torch: min(max(x, min), max) = max there
            m = np.minimum(np.asarray(min, np.float64), np.asarray(max, np.float64))
            min = float(m) if m.ndim == 0 else m
        lo, hi = x - min, x - max
        scalars = np.ndim(min) == 0 and np.ndim(max) == 0
        t = [int(fixedpoint.encode(v, x.fbits)) for v in (min, max)] if scalars else None
        if t is not None and all(ti == v * 2.0**x.fbits for ti, v in zip(t, (min, max))) and lo.fbits == x.fbits:
            # public scalars on x's grid: one shared opening of x
            (bl, bh), (pl, ph) = ltz_at(x, t, same=x)  # b x for both bits, x opened masked once
            # b (x - t) = b x - b t, with t at x's precision: exact ring arithmetic
            blo = SharedTensor(x.rt, pl.share - bl.share * np.int64(t[0]), x.fbits)
            bhi = SharedTensor(x.rt, ph.share - bh.share * np.int64(t[1]), x.fbits)
        else:
            _, (blo, bhi) = ltz_many([lo, hi], [lo, hi])
        return (lo - blo) - (hi - bhi) + min
    if min is not None:
        return relu(x - min) + min
    return -relu(max - x) + max


def clamp_excess(x: SharedTensor, bound: float) -> tuple[SharedTensor, SharedTensor]:
    """(clamp(x, -bound, bound), relu(x - bound)) from one comparison run (7 rounds):
    for functions that are x plus a bounded term beyond the bound (GELU, SiLU), so the
    bounded part never multiplies a huge x. `bound` must lie on x's fixed-point grid."""
    t = [int(fixedpoint.encode(v, x.fbits)) for v in (-bound, bound)]
    if any(ti != v * 2.0**x.fbits for ti, v in zip(t, (-bound, bound))):
        raise ValueError(f"clamp_excess: bound {bound} is not on the {x.fbits}-bit grid")
    (bl, bh), (pl, ph) = ltz_at(x, t, same=x)
    relu_lo = (x + bound) - SharedTensor(x.rt, pl.share - bl.share * np.int64(t[0]), x.fbits)  # relu(x + bound)
    relu_hi = (x - bound) - SharedTensor(x.rt, ph.share - bh.share * np.int64(t[1]), x.fbits)  # relu(x - bound)
    return relu_lo - relu_hi - bound, relu_hi

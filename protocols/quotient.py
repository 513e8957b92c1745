"""x / y for a shared divisor y: the quotient keeps f fractional bits for divisors across the format.

x * reciprocal(y) loses the quotient once 1/y nears the resolution: at f = 16 the
reciprocal of 1.8e6 is 0.04 ulp, so a hand-written softmax exp(x) / exp(x).sum() gave 0
for logits near 14. Here |y| = m 2^k with m in [1/16, 1) (one batched comparison of |y|
with the powers of 16 of [2^(4 - f), 2^(60 - f)), as protocols.reciprocal normalizes), 1/m
from reciprocal's cubic and Newton steps (at g = min(f, 16) bits), and the quotient is
    x / y = sum over the buckets k of [bucket k] (sign(y) x (1/m)) >> (g + k),
one truncation per bucket (all in one round): the 2^-k scale is a shift of the quotient,
never a factor below the resolution. Each bucket's product [bucket k] sign(y) x is formed
while 1/m is computed.

Rounds: 25 (sign 7, normalization 7, 1/m 9, the products and the truncations 2); 13 with two
  parties where fss.use_fss picks the FSS comparison for the sign and the normalization.
Bytes per element per peer: 895 measured at N = 2 for x and y of one shape (the comparison of
  |y| with 15 thresholds, ~350 per element of y; two products and a truncation for each of
  the 15 buckets, ~550 per element of the quotient); 762 for a public numerator (its product
  with the buckets is local); x * reciprocal(y) sent 323.
Dealer words per element: 131 measured (116 for a public numerator), to the corrected party.
Error: rel 1e-3 + 1 ulp for 2^(4 - f) <= |y| < 2^(60 - f) (7.9e-4 to 9.7e-4 and 1.1 ulps over
  six runs of 20000 log-uniform divisors at f = 16: the truncations are random) while
  |x| 16 < 2^(62 - f - g) (sign x / m at f + g bits: |x| < 2^26 at f = 16, 2^18 at 24);
  |y| below 2^(4 - f) (16 ulps) is taken as 15 ulps, above the range as 2^(60 - f); y = 0
  gives x 2^f / 15 (bounded, not an error). Shapes broadcast as numpy's (x may have more
  dims than y, or fewer).
Reference: docs/design.md, 'Protocols' (normalization and Newton steps, 'Quotients'); division
  by normalization as in Catrina and Saxena, "Secure computation with fixed-point numbers"
  (FC 2010), here with one exact truncation (protocols.truncation) per bucket.
"""
from __future__ import annotations

import numpy as np

from mpcrt.protocols import beaver, fixedpoint, powers
from mpcrt.protocols.precision import at_f_share
from mpcrt.protocols.reciprocal import _abs_and_sign, _normalize_steps, inverse_m_steps
from mpcrt.protocols.rounds import lockstep, run
from mpcrt.protocols.shared import SharedTensor

STEP = 4
YF_BITS = 16  # 1/m in (1, 16] needs no more fractional bits (rel 2^-16 < the Newton steps' 4e-4); fewer
#               bits in the product sign x / m leave more room for x at high precisions


def bucket_range(f: int) -> tuple[int, int]:
    """The normalization's thresholds 2^lo .. 2^hi: from 16 ulps to 2^(60 - f), in steps of 16."""
    lo = STEP - f
    return lo, lo + STEP * ((60 - f - lo) // STEP)


def div(x: SharedTensor, other) -> SharedTensor:
    """x / other: a shared divisor by `quotient` (25 rounds), a public one by a product (x / 3 divides
    exactly: a scalar 1 / d is the fraction 1 / d there, shared._rational)."""
    if isinstance(other, SharedTensor):
        return quotient(x, other)
    a = fixedpoint.to_numpy(other).astype(np.float64)
    if np.any(a == 0):
        raise ZeroDivisionError("division of a SharedTensor by a public zero")
    return x * (1.0 / a)


def rdiv(y: SharedTensor, other) -> SharedTensor:
    """other / y for a public other (25 rounds, `quotient`)."""
    return quotient(other, y)


def quotient(x, y: SharedTensor) -> SharedTensor:
    """x / y for a shared y and a shared or public x (numpy broadcasting): rel 1e-3 + 1 ulp over
    the format. Its dealer tuples are all asked for at its start from the second call on the same
    shapes."""
    shared = isinstance(x, SharedTensor)
    xs = x.shape if shared else np.shape(x)
    key = ("quotient", shared, tuple(xs), y.shape, x.fbits if shared else None, y.fbits)
    with y.rt.lookahead(key), np.errstate(over="ignore"):
        return _quotient(x, y, shared)


def _quotient(x, y: SharedTensor, shared: bool) -> SharedTensor:
    rt, f = y.rt, y.rt.precision
    X = at_f_share(x) if shared else fixedpoint.encode(fixedpoint.to_numpy(x), f)
    A, b = _abs_and_sign(y)
    lo, hi = bucket_range(f)
    hold: dict = {}
    with rt.scope("quotient"):
        (bits,) = run(rt, _normalize_steps(rt, A, f, lo, hi, STEP, hold))
        ks = hold["ks"]
        # [bucket k] for k in ks; above the range (A clamped below 2^hi) counts as hi's bucket
        ind = [bits[0]] + [bits[i] - bits[i - 1] for i in range(1, len(ks))]
        ind[-1] = -bits[-2] + (1 if rt.rank == 0 else 0)
        sig = sum(i * np.int64(2 ** (hi - k)) for i, k in zip(ind, ks))  # m = Ac sig / 2^hi, from the same buckets
        sign = -2 * b
        if rt.rank == 0:
            sign += 1

        out_shape = np.broadcast_shapes(np.shape(X), y.shape)
        # the bucket axis leads; y's dims line up with the quotient's last ones, as numpy broadcasts
        ind = np.stack(ind).reshape((len(ks),) + (1,) * (len(out_shape) - y.ndim) + y.shape)

        def rows():  # [bucket k] sign(y) x, every bucket at once (integer factors: no truncation)
            s = yield from beaver.mul_steps(rt, ind, sign)
            if not shared:
                return s * X  # a public x: local
            return (yield from beaver.mul_steps(rt, s, X))

        g = min(f, YF_BITS)
        yf, sx = run(rt, inverse_m_steps(rt, hold["clamped"], sig, f, hi, g), rows())

        def scale():
            q = yield from beaver.mul_steps(rt, sx, yf)  # the bucket's x sign / m at f + g bits
            shifts = [g + k for k in ks]  # 2^-k: right shifts, or left ones below 2^-(g) at high f
            outs = yield from lockstep(*[powers.trunc_pow_steps(rt, q[i], s, 1)
                                         for i, s in enumerate(shifts) if s > 0])
            out = sum((o[0] for o in outs), np.zeros(out_shape, np.int64))
            for i, s in enumerate(shifts):
                if s <= 0:
                    out += q[i] << np.int64(-s)
            return out

        (out,) = run(rt, scale())
    return SharedTensor(rt, out, f)

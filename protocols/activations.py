"""Activations of neural-network layers: gelu, silu, hardswish, hardsigmoid, elu, selu,
celu, softplus, logsigmoid, mish, prelu, hardtanh and relu6, built from the exact comparisons
(protocols.compare) and the exp chain (protocols.exp).

Rounds: gelu 30 (tanh form 28), silu 24, hardswish 9, hardsigmoid 8, elu 15 (+1 for a
  non-integer alpha), softplus and logsigmoid 19, mish 46, prelu 9 (8 with a public w), hardtanh and relu6 7.
  With two parties, where protocols.spline's cost model picks its spline, gelu, silu, elu (alpha 1),
  softplus (beta 1), logsigmoid and mish take 2 rounds (error <= 1.2e-4).
Bytes per element per peer: gelu 273, silu 201, hardswish 70.9, elu 98.8, softplus 155,
  mish 501; each of a party's N - 1 peers gets this.
Dealer words per element: (sent to the corrected party) gelu 64.9, silu 56.9, hardswish 10.9, elu 38.9,
  softplus 46.9, mish 98.6; independent of N.
  Measured (10240 elements) at N = 2. From N = 3 every opening of 512 KiB or more goes in two
  steps (mpcrt.allreduce: fewer bytes per peer, two rounds): at 10240 elements log takes 13 and
  sqrt 19 rounds; at 128000 exp 13, sigmoid 28, reciprocal 45 (up to twice the rounds above).
Error: measured at 16 fractional bits (tests assert these): see each method below.
Reference: docs/design.md, 'Protocols' (activations).

Methods:
- gelu: t sigmoid(z(t)) + relu(x - 6), t = clamp(x, -6, 6) (both from one comparison
  run, so no product ever involves a huge x), z(t) = a t + b t^3 + c t^5. With the
  fitted (a, b, c) of GELU_ERF, sigmoid(z) matches the normal CDF of torch's exact
  (erf) GELU to 2.5e-5 in x Phi(x) on [-6, 6]; `approximate="tanh"` uses torch's own
  tanh form (c = 0, a = 2 sqrt(2/pi), b = 0.044715 a). Beyond the clamp z(t) > 16,
  where the sigmoid saturates to exactly 0 or 1: the result is x or 0 (true GELU there
  differs by < 6e-9). 30 rounds (clamp 7, t^2 and t^4 2 each, z = t p 2 with p's
  coefficients at 24 bits and no truncation of its own, sigmoid 15, product 2); the
  tanh form skips t^4 (28). Error: abs 1.8e-4 on [-8, 8] and
  every input the format holds (measured 1.3e-4 to 1.67e-4 near |x| = 5 over runs; torch's erf GELU
  as reference).
- silu: t sigmoid(t) + relu(x - 16), t = clamp(x, -16, 16) (Swish). 24 rounds; abs
  2.5e-4 on [-8, 8] (2.3e-4 measured), 5e-4 out to the clamp (|t| times sigmoid's 2-ulp
  floor: -4.9e-4 measured at x = -19), x or ~0 beyond +-16.
- elu(alpha): relu(x) + alpha [x < 0] (e^min(x, 0) - 1), the bit and min(x, 0) from one
  comparison, e^ by exp's precise chain, the bit's product (1 round) keeping x > 0
  exact: 15 rounds (+1 for a non-integer alpha), abs err 6e-4 alpha (5.2e-4 to 5.6e-4 measured
  on [-20, 20] and far out). selu and celu are elu with torch's constants / a scaled input
  (those scalings are products with public reals: |x| < 2^(62-2f), 2^30 at 16 bits).
- softplus(beta): (relu(b) + log1p(e^-|b|)) / beta, b = beta x, with |b| and relu(b) from
  one comparison and log1p(z) on [0, 1] by a quartic through 0 (8e-5; softplus(-inf) is
  exactly 0) whose one truncation takes
  all its terms: 19 rounds (+1 for beta != 1); abs err 3.5e-4 / beta (3.3e-4 measured near 0)
  for every input the format holds, which is not a relative bound where softplus is small (at
  x = -15 it gives 1 ulp for 2.6e-7); torch's linear regime beyond `threshold` differs
  from log(1 + e^(beta x)) / beta by < e^-threshold.
- logsigmoid: -softplus(-x) (19 rounds, softplus's error).
- mish: x n / (n + 2), n = e^x (e^x + 2) (= x tanh(softplus(x))), as n r for x < 0 and
  1 - 2 r for x >= 0, r = 1 / (n + 2): 46 rounds; abs err 6.5e-4 on [-20, 20] (6.1e-4 measured), rel
  3e-5 beyond 20, exactly 0 below -15.
- prelu: relu(x) + w min(x, 0) with a shared (9 rounds) or public (8) per-channel w.
- hardtanh / relu6: clamp to public bounds (exact, 7 rounds).
- hardswish: t (t + 3) / 6 + relu(x - 3), t = clamp(x, -3, 3) from one comparison run
  (x never multiplies itself beyond the clamp), the 1/6 folded into the product's
  truncation: 9 rounds, error a few ulps.
  hardsigmoid: clamp(x, -3, 3) / 6 + 1/2 (8 rounds).
Above 24 fractional bits (20 for gelu, hardswish and softplus) these compute at 24 (20) bits, where their
products stay below 2^62 (and gelu's coefficients keep 16 bits), and return at the
runtime's precision: one truncation round more, the error of that computation.
"""
from __future__ import annotations

import math

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.protocols import beaver, spline
from mpcrt.protocols import fixedpoint
from mpcrt.protocols.compare import clamp, clamp_excess, gt, ltz_at, relu
from mpcrt.protocols.comparison import ltz_steps
from mpcrt.protocols.exp import exp_precise, sigmoid
from mpcrt.protocols.normalize import per_channel
from mpcrt.protocols.polynomial import fit_through_zero
from mpcrt.protocols.precision import at_f, capped
from mpcrt.protocols.reciprocal import reciprocal
from mpcrt.protocols.rounds import run
from mpcrt.protocols.shared import SharedTensor, stack, where

GELU_CLAMP = 6.0  # |x| beyond: sigmoid(z) saturates exactly (z(6) = 20.1 > 16)
SILU_CLAMP = 16.0  # the sigmoid saturates beyond +-16
MISH_CLAMP = 20.0  # tanh(softplus(20)) = 1 - 8e-18; mish(-20) = -4e-8
GELU_ERF = (1.59501577, 0.0740112920, -7.03033577e-4)  # fit of sigmoid(z) to Phi (erf GELU)
G = 24  # fractional bits of the coefficients of z (fewer at precisions above 16)
_A = 2.0 * math.sqrt(2.0 / math.pi)
GELU_TANH = (_A, 0.044715 * _A, 0.0)  # torch's approximate="tanh": 0.5(1 + tanh(u)) = sigmoid(2u)


@capped(20)  # z's coefficients get g = 56 - 2f bits: 16 at f = 20 (at 24 only 8, and c ~ -7e-4 would vanish)
def gelu(x: SharedTensor, approximate: str = "none") -> SharedTensor:
    """torch.nn.functional.gelu: x Phi(x) (approximate="none") or its tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    a, b, c = GELU_ERF if approximate == "none" else GELU_TANH
    rt, f = x.rt, x.rt.precision
    x = at_f(x)
    s = spline.maybe(x, "gelu" if approximate == "none" else "gelu_tanh")
    if s is not None:
        return s
    g = max(8, min(G, 56 - 2 * f))  # coefficient bits: |z| < 2^(2f + g + 5) stays below 2^62
    t, above = clamp_excess(x, GELU_CLAMP)
    t2 = t * t
    # p = a + b t^2 + c t^4 at f + G bits with the coefficients at G bits: no truncation
    p = t2.share * np.int64(round(b * 2**g))
    if c:
        p += (t2 * t2).share * np.int64(round(c * 2**g))
    if rt.rank == 0:
        p += np.int64(round(a * 2 ** (f + g)))
    with rt.scope("mul"):  # z = t p at 2f + G bits (|z| < 2^61), truncated back to f
        z = SharedTensor(rt, beaver.mul(rt, t.share, p, f + g), f)
    return t * sigmoid(z) + above  # x beyond the clamp: 6 * 1 + (x - 6), or -6 * 0


@capped(24)
def silu(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.silu: x sigmoid(x)."""
    x = at_f(x)
    s = spline.maybe(x, "silu")
    if s is not None:
        return s
    t, above = clamp_excess(x, SILU_CLAMP)
    return t * sigmoid(t) + above


@capped(20)  # 1/6 gets g = 60 - 2f >= 20 bits
def hardswish(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.hardswish: x relu6(x + 3) / 6."""
    rt, f = x.rt, x.rt.precision
    x = at_f(x)
    t, above = clamp_excess(x, 3.0)
    g = min(28, 60 - 2 * f)  # |t (t + 3) 2^(2f + g) / 6| <= 3 2^(2f + g) < 2^62
    p = t.share * np.int64(round(2**g / 6))  # (t + 3) / 6 at f + g bits
    if rt.rank == 0:
        p += np.int64(round(3 * 2 ** (f + g) / 6))
    with rt.scope("mul"):
        return SharedTensor(rt, beaver.mul(rt, t.share, p, f + g), f) + above


@capped(24)
def hardsigmoid(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.hardsigmoid: relu6(x + 3) / 6."""
    return clamp(at_f(x), -3.0, 3.0) * (1.0 / 6.0) + 0.5


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # torch.nn.SELU's constants
LOG1P_POLY = fit_through_zero(np.log1p, 4)  # max error 8.2e-5 on [0, 1], exact at 0
SOFTPLUS_EXACT_THRESHOLD = 10.0  # below this, torch's linear regime (x itself) is applied exactly
P_BITS = 24  # fractional bits of softplus's polynomial coefficients


@capped(24)
def elu(x: SharedTensor, alpha: float = 1.0) -> SharedTensor:
    """torch.nn.functional.elu: x for x > 0, alpha (e^x - 1) otherwise."""
    rt, f = x.rt, x.rt.precision
    x = at_f(x)
    s = spline.maybe(x, "elu") if alpha == 1 else None
    if s is not None:
        return s
    X = x.share
    with rt.scope("relu"):  # b = [x < 0] and b x = min(x, 0) from one comparison
        ((b, (nb,)),) = run(rt, ltz_steps(rt, X, 1, lambda: [X]))
    e = exp_precise(SharedTensor(rt, nb, f))  # e^min(x, 0), in (0, 1]: ~0 below -15
    with rt.scope("mul"):  # b (e - 1): exactly 0 for x >= 0 (exp's own error at 0 stays out), 1 round
        neg = SharedTensor(rt, beaver.mul(rt, b, (e - 1.0).share, 0), f)
    return SharedTensor(rt, X - nb, f) + neg * (int(alpha) if float(alpha).is_integer() else float(alpha))


@capped(24)
def selu(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.selu: scale * elu(x, alpha) with torch's constants."""
    return elu(x, SELU_ALPHA) * SELU_SCALE


@capped(24)
def celu(x: SharedTensor, alpha: float = 1.0) -> SharedTensor:
    """torch.nn.functional.celu: max(0, x) + min(0, alpha (e^(x / alpha) - 1)), alpha > 0."""
    if not alpha > 0:
        raise ValueError(f"celu: alpha must be positive here, got {alpha} (a negative alpha is not supported)")
    return elu(x * (1.0 / alpha), 1.0) * alpha if alpha != 1 else elu(x, 1.0)


@capped(20)  # the polynomial's terms at f + P_BITS bits stay below 2^62
def softplus(x: SharedTensor, beta: float = 1.0, threshold: float = 20.0) -> SharedTensor:
    """torch.nn.functional.softplus: log(1 + e^(beta x)) / beta, and x where beta x >
    threshold (for thresholds of at least 10 the two differ by < e^-threshold / beta, under
    3 ulps at 16 bits, and the extra comparison is skipped)."""
    if beta <= 0:
        raise ValueError(f"softplus: beta must be positive, got {beta}")
    rt, f = x.rt, x.rt.precision
    x = at_f(x)
    s = spline.maybe(x, "softplus") if beta == 1 and threshold >= SOFTPLUS_EXACT_THRESHOLD else None
    if s is not None:
        return s
    b = x
    if beta != 1:
        b = at_f(b * float(beta))
    B = b.share
    with rt.scope("abs"):  # [b < 0] b from one comparison: |b| = b - 2 [b < 0] b, relu(b) = b - [b < 0] b
        ((_, (nb,)),) = run(rt, ltz_steps(rt, B, 1, lambda: [B]))
    z = exp_precise(SharedTensor(rt, 2 * nb - B, f))  # e^-|b| in (0, 1]
    z2 = z * z
    p34 = stack([z, z2]) * z2  # z^3 and z^4 in one product
    g = P_BITS  # log1p(z) = sum c_j z^j at f + g bits (z <= 1), then one truncation
    acc = z.share * np.int64(round(float(LOG1P_POLY[1]) * 2**g))
    for c, t in zip(LOG1P_POLY[2:], (z2, p34[0], p34[1])):
        acc = acc + t.share * np.int64(round(float(c) * 2**g))
    if rt.rank == 0:
        acc = acc + np.int64(round(float(LOG1P_POLY[0]) * 2 ** (f + g)))
    out = SharedTensor(rt, acc, f + g).to_precision() + SharedTensor(rt, B - nb, f)
    out = out if beta == 1 else out * (1.0 / float(beta))
    if threshold < SOFTPLUS_EXACT_THRESHOLD:
        out = where(gt(b, float(threshold)), at_f(x), out)
    return out


def logsigmoid(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.logsigmoid: log(1 / (1 + e^-x)) = -softplus(-x): 19 rounds, abs
    err 3e-4 (softplus's; exactly 0 from x = 2^(62-2f) up, x itself far below 0)."""
    return -softplus(-x)


def hardtanh(x: SharedTensor, min_val: float = -1.0, max_val: float = 1.0) -> SharedTensor:
    """torch.nn.functional.hardtanh (relu6 is hardtanh(x, 0, 6)): exact."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} exceeds max_val {max_val}")
    return clamp(x, min_val, max_val)




def relu6(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.relu6: hardtanh(x, 0, 6), exact, 7 rounds."""
    return hardtanh(x, 0.0, 6.0)


@capped(24)
def prelu(x: SharedTensor, weight) -> SharedTensor:
    """torch.nn.functional.prelu: relu(x) + weight min(x, 0), weight (shared or public) of
    one value or one per channel (dim 1). 7 rounds + one product (2)."""
    x = at_f(x)
    w = weight
    size = w.numel() if isinstance(w, SharedTensor) else np.size(w)
    if size != 1 and (x.ndim < 2 or x.shape[1] != size):
        raise ShapeError(f"prelu: {size} weights need an input with {size} channels in dim 1, got shape {x.shape}")
    r = relu(x)
    if size != 1:
        w = per_channel(w, x.ndim)
    elif isinstance(w, SharedTensor):
        w = w.reshape(())
    else:
        w = float(np.asarray(w).reshape(()))
    return r + (x - r) * w


@capped(24)
def mish(x: SharedTensor) -> SharedTensor:
    """torch.nn.functional.mish: x tanh(softplus(x)) = x n / (n + 2), n = e^x (e^x + 2).
    With r = 1 / (n + 2): n r for x < 0 (relative accuracy as n -> 0, so mish -> 0 far
    left instead of x times tanh's absolute error at 0) and 1 - 2 r for x >= 0 (no
    reciprocal range limit as n grows). Beyond +-20 mish(x) is x (to 1e-16) or 0 (to 5e-8): x is
    clamped to [-20, 20] and what lies above 20 added back, from the same comparison run as
    [x < 0], so the product with x never leaves the format (it wrapped from 2^33). 46 rounds;
    abs err 6e-4 on [-20, 20], and x itself above."""
    x = at_f(x)
    s = spline.maybe(x, "mish")
    if s is not None:
        return s
    rt, f = x.rt, x.fbits
    ts = [int(fixedpoint.encode(v, f)) for v in (-MISH_CLAMP, 0.0, MISH_CLAMP)]
    (bl, neg, bh), (pl, _, ph) = ltz_at(x, ts, same=x)  # [x < t] and [x < t] x for t = -20, 0, 20
    above = (x - MISH_CLAMP) - SharedTensor(rt, ph.share - bh.share * np.int64(ts[2]), f)  # relu(x - 20)
    t = (x + MISH_CLAMP) - SharedTensor(rt, pl.share - bl.share * np.int64(ts[0]), f) - above - MISH_CLAMP
    u = exp_precise(t)  # e^t: 0 below -15, e^11.5 above 11.5 (tanh(softplus) = 1 - 2e-10 there)
    n = u * (u + 2.0)
    r = reciprocal(n + 2.0)
    small, large = n * r, 1.0 - r * 2
    return t * (large + neg * (small - large)) + above

"""Nonlinear functions: exp, sigmoid, tanh, reciprocal, log, sqrt, rsqrt, softmax.

Every function works on all inputs the fixed-point format holds: an exact comparison
(protocols.comparison) selects between the approximation, valid on its range, and the
function's limit outside it; the selection is a product fused into the comparison,
and the polynomial work runs inside the comparison's rounds (protocols.rounds), so
the range handling costs few or no extra rounds. Polynomials are Chebyshev fits
evaluated with protocols.powers (truncation and powers in one round).

Methods, rounds and measured max error at 16 fractional bits (tests assert these):
- exp: u = x/27, e^u by a quartic (relative-error fit), cubed three times
  (e^x = (e^u)^27), each cube one truncation-with-powers round, then one truncation
  to f bits: a 5-round chain whose dealer tuples are all requested at its start.
  Its first step opens nothing: the range comparison's masked opening of x, times the
  odd public scale beta, is its truncation's opening (the dealer deals the powers of
  beta r for the comparison's edaBit r, as a request of its own after the comparison's
  first half, and the chain waits a round for it: round 2 waits only for that first
  half; each cube's powers go straight into the next step's input, one fused pass,
  kernels.powers.poly). Selection gives 0 below -15 and e^11.5
  above 11.5 by two coarse comparison rows, [x < -15] and [x <= 11.5] (bits 16..63 of
  x - t: either answer on the 1-wide windows [-16, -15) and (10.5, 11.5], where the
  chain is valid, exact elsewhere; 25% fewer bytes). The first implies the second, so
  their xor is the in-range bit, and one product row gives [in range] e^x (the dealer
  deals that row's daBit terms for s_0 xor s_1; 12 dealer bytes per element fewer than
  a product per row); it opens nothing: the chain's last truncation carries [t S0],
  [t msb r] for that daBit t. out = [in range] e^x + (1 - [x <= 11.5]) e^11.5. 7 rounds
  (the comparison's); at N = 2, 53.25 bytes per element per peer (CrypTen: 64; the three cubes' openings
  send only the bits their truncations keep, 4 or 5 bytes: rounds.Top), 239.5 dealer bytes
  (29.9 words, the chain's 22.5 of them; the comparison's material in three requests).
  Error: |err| <= max(3e-3 e^x, 2^-14) on [-10, 10] (rel 1.5e-3 on
  [0, 10]; below e^x ~ 2^-6 the 16-bit output's own rounding dominates), abs < 2e-5
  below -10. softmax uses a precise chain (more bits in the cubes, 3 more dealer
  words per element): rel 9e-4 on [0, 10].
- sigmoid: one comparison batch gives b = [x < 0] with |x| fused, and the saturation
  bits beyond +-16; z = e^-|x| by the exp chain (5 rounds), h = 1/(1+z) by a cubic
  plus one Newton step, and sigmoid = h (1 + lo - hi - 2b) + b - lo + hi, the product
  riding in h's last truncation. 15 rounds, one exp chain (half the dealer material
  of two). Error: abs < 2e-4 everywhere. tanh(x) = 2 sigmoid(2x) - 1: 15 rounds, abs < 4e-4.
- reciprocal: sign by comparison, |x| normalized to m in [1/16, 1) by comparisons
  with the powers of sixteen of the range (one batched run of 7), 1/m by a cubic
  (rel err 37%) plus three Newton steps, rescaled. 25 rounds.
  Error: rel < 1e-3 on 2^-7 <= |x| < 2^17 (clamped beyond).
- log: normalization as above (no sign), log m by a cubic, plus e ln 2. 11 rounds.
  Error: abs < 8e-3 on [2^-10, 2^14).
- rsqrt: normalization by powers of four to m in [0.25, 1), cubic plus one Newton
  step, rescaled by 2^-j (16 rounds). sqrt(x) = x rsqrt(x) (18). Error: rel < 1e-3 on [2^-10, 2^14).
- softmax: exp(x - max) / sum, max by a comparison tree, the sum's reciprocal.
Outside the stated input ranges results stay bounded (clamped), never wrap.
"""
from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
from numpy.polynomial import chebyshev as _cheb

from mpcrt.comparisons import max_
from mpcrt.protocols import powers
from mpcrt.protocols.comparison import ltz_steps
from mpcrt.protocols.comparison import PAD, YTrunc
from mpcrt.protocols.comparison import request as ltz_request
from mpcrt.protocols.rounds import Open, run
from mpcrt.tensor import SharedTensor

F = 16  # internal fractional bits of the pipelines
G = 12  # fractional bits of polynomial coefficients
EXP_LO, EXP_HI = -16.0, 11.5  # the exp chain's range; its coarse selection's 1-wide windows lie inside
SIG_BOUND = 16.0


def _fit(f, lo: float, hi: float, deg: int) -> np.ndarray:
    t = np.cos(np.linspace(0, np.pi, 2000)) * (hi - lo) / 2 + (hi + lo) / 2
    return _cheb.cheb2poly(_cheb.chebfit(t, f(t), deg))


H_POLY = _fit(lambda z: 1 / (1 + z), 0.0, 1.0, 3)
def _fit_rel(f, lo: float, hi: float, deg: int) -> np.ndarray:
    """Chebyshev fit weighted for relative error."""
    t = np.cos(np.linspace(0, np.pi, 2000)) * (hi - lo) / 2 + (hi + lo) / 2
    return _cheb.cheb2poly(_cheb.chebfit(t, f(t), deg, w=1 / np.abs(f(t))))


EXP_POLY = _fit_rel(np.exp, EXP_LO / 27, EXP_HI / 27, 4)  # e^u, u = x/27: rel err 4e-4 after ^27
RECIP_POLY = _fit_rel(lambda m: 1 / m, 0.0625, 1.0, 3)  # rel err 0.37 on [1/16, 1): 3 Newton steps -> 4e-4
LOG_POLY = _fit(np.log, 0.5, 1.0, 3)
RSQRT_POLY = _fit(lambda m: 1 / np.sqrt(m), 0.25, 1.0, 3)


# ----------------------------------------------------------------- helpers
PLAN_MIN = 1 << 12  # elements: below this a first call asks the dealer step by step


def _elementwise_plan(fn, x: SharedTensor, args, kwargs) -> list:
    """fn's dealer requests on x, from a dry run on one element with the sizes scaled to
    x's: every request of an elementwise function here has x's shape (or, for a
    comparison, x's padded size per row). A wrong guess is only abandoned, never used."""
    rt = x.rt
    plan = rt.plan(fn, SharedTensor(rt, np.zeros(1, np.int64), x.fbits), *args, **kwargs)
    npad = -(-x.share.size // PAD) * PAD
    out = []
    for kind, p in plan:
        q = {k: (list(x.shape) if k in ("shape", "a", "b") and v == [1] else v) for k, v in p.items()}
        if kind in ("ltz", "ltzpow"):
            q["n"] = npad * int(q.get("rows", 1))
        out.append((kind, q))
    return out


def _lookahead(fn=None, *, elementwise: bool = False):
    """Run fn under Runtime.lookahead: all of its dealer tuples are requested when it
    starts, from its second call on the same shape and precision (from its first call
    for elementwise functions of at least PLAN_MIN elements, by a one-element dry run)."""
    if fn is None:
        return functools.partial(_lookahead, elementwise=elementwise)

    @functools.wraps(fn)
    def wrapper(x: SharedTensor, *args, **kwargs):
        key = (fn.__name__, x.shape, x.fbits, args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
            guess = None
            if elementwise and x.share.size >= PLAN_MIN:
                guess = lambda: _elementwise_plan(fn, x, args, kwargs)  # noqa: E731
            ahead = x.rt.lookahead(key, guess)
        except TypeError:  # an unhashable argument: run on demand
            ahead = contextlib.nullcontext()
        # ring arithmetic wraps by design; on 0-d inputs numpy would warn of it
        with ahead, np.errstate(over="ignore"):
            return fn(x, *args, **kwargs)

    return wrapper


def _enc(v: float, bits: int) -> int:
    """A public constant v as a ring value with `bits` fractional bits."""
    return int(round(v * 2**bits))


def _const(rt, v: float, bits: int, shape) -> np.ndarray:
    """Party 0's share of a public constant v at `bits` fractional bits (others: 0)."""
    return np.full(shape, np.int64(_enc(v, bits)) if rt.rank == 0 else 0, np.int64)


def _poly3(rt, us: list[np.ndarray], coef: np.ndarray, g: int = G) -> np.ndarray:
    """sum c_j u^j from [u] (F bits), [u^2] (2F), [u^3] (3F): result at 3F + g bits.
    Needs |value| < 2^(14 - g) (g = 12: |value| < 4); intermediate terms may wrap."""
    out = _const(rt, coef[0], 3 * F + g, us[0].shape)
    for j in (1, 2, 3):
        out += np.int64(round(coef[j] * 2 ** (g + (3 - j) * F))) * us[j - 1]  # coefficient at full precision
    return out


def _beaver_steps(rt, x: np.ndarray, y: np.ndarray, mat=None):
    """Generator (1 round): [x * y] elementwise, no truncation (`mat`: a triple requested ahead)."""
    mat = mat if mat is not None else rt.dealer.request("triple", a=x.shape, b=y.shape)
    own = mat.own()
    (d, e), _ = yield Open(add=[x - own["a"], y - own["b"]], fresh=True)
    z = d * own["b"]
    z += x * e
    z += mat.get()["c"]
    return z


def _at_f(x: SharedTensor) -> np.ndarray:
    """x's share at the runtime precision (integer tensors are scaled up)."""
    f = x.rt.precision
    x = x.to_precision()
    if x.fbits == f:
        return x.share
    return x.share << np.int64(f - x.fbits)


def _coarse(f: int) -> int:
    """Low bits exp's range rows may ignore: a window of width 2^(L - f) <= 1 below each threshold."""
    return 16 if f >= 16 else 8 if f >= 8 else 0


EXP_B = 28  # fractional bits of the public scale of x in the first step


def _exp_plan(f: int, J_out: int, out_bits: int, fast: bool = False) -> list[tuple[int, int]]:
    """(k, J) of the chain's five truncation-with-powers steps (see _exp_chain).
    Precise: q at 20 bits, q^3 at 18, q^9 at 15. Fast: q, q^3 and q^9 at 15 bits each, so
    the two middle steps truncate by k = 30 <= 32 and their [m S0^l] travel as 32-bit
    words (22.5 dealer words per element instead of 25.5; error rel 4e-3 instead of 1e-3)."""
    if fast:
        return [(f + EXP_B - 15, 4), (45, 3), (30, 3), (30, 3), (45 - out_bits, J_out)]
    return [(f + EXP_B - 15, 4), (40, 3), (60 - 18, 3), (54 - 15, 3), (45 - out_bits, J_out)]


def _exp_requests(rt, shape: tuple, f: int, J_out: int, out_bits: int | None = None, steps: slice = slice(None),
                  fast: bool = False) -> list:
    """The dealer tuples of one exp chain (`steps` of its five), in the order the chain uses them."""
    ob = f if out_bits is None else out_bits
    return [powers.request(rt, shape, k, J) for k, J in _exp_plan(f, J_out, ob, fast)[steps]]


def _exp_beta() -> int:
    """The public scale of x in the chain's first step, 2^EXP_B c4^(1/4) / 27, made odd
    (so that beta r is uniform when that step reuses a comparison's mask r)."""
    return int(round(2**EXP_B * float(EXP_POLY[4]) ** 0.25 / 27)) | 1


def _exp_chain(rt, X: np.ndarray, f: int, J_out: int, hold: dict, key: str, out_bits: int | None = None,
               mats: list | None = None, fast: bool = False):
    """Generator (5 rounds; 6 when step 1 rides on a comparison, mats[0] None, which must
    run after this generator in each round): e^x at `out_bits` (default f) bits, and its
    powers up to J_out, valid for x in [EXP_LO, EXP_HI]; garbage (never used) outside.

    e^x = q^27 with q = c0 + c1 u + ... + c4 u^4, u = x/27 (a relative-error fit). The chain
    amplifies q's relative error 27 times, so: the linear term comes exactly from x;
    v = c4^(1/4) u is truncated to 15 bits so that c4 u^4 = v^4 needs no coefficient;
    each cube keeps as many bits as its value range allows (20, 18, 15), all below 2^62.
    All five dealer tuples are requested at the start (or passed in `mats`, requested
    by the caller in the order its rounds need them), so the dealer computes them
    while the rounds run.
    """
    ob = f if out_bits is None else out_bits
    plan = _exp_plan(f, J_out, ob, fast)
    mats = mats if mats is not None else _exp_requests(rt, X.shape, f, J_out, ob, fast=fast)
    steps = [(k, J, mat) for (k, J), mat in zip(plan, mats)]
    c0, c1, c2, c3, c4 = (float(c) for c in EXP_POLY)
    k4 = c4 ** 0.25
    # q = c0 + (c1 / 27) x + (c2 / k4^2) v^2 + (c3 / k4^3) v^3 + v^4 at 60 bits (v^j at 15 j bits)
    coef = [round(c0 * 2**60), 0, round(c2 / k4**2 * 2**30), round(c3 / k4**3 * 2**15), 1]
    xcoef = round(c1 / 27 * 2 ** (60 - f))
    if mats[0] is None:  # step 1 rides on a comparison's opening of x (exp), its RidingPowers in hold
        yield Open()  # round 1: the comparison's opening
        yield Open()  # round 2: the comparison's alone, while the powers tuple arrives
        q = hold[key + ":v"].poly(coef, X, xcoef)
    else:
        q = yield from powers.trunc_poly_steps(rt, X * _exp_beta(), *steps[0][:2], coef, X, xcoef, mat=steps[0][2])
    cube = [0, 0, 0, 1]
    # the cubes' openings send only the bits their truncations keep (4-5 bytes, not 8): their
    # inputs q, q^3, q^9 are positive in range and the extra -1 ulp is within the error budget
    p = yield from powers.trunc_poly_steps(rt, q, *steps[1][:2], cube, mat=steps[1][2], top=True)  # q^3 at 45 (precise: 60)
    p = yield from powers.trunc_poly_steps(rt, p, *steps[2][:2], cube, mat=steps[2][2], top=True)  # q^9 at 45 (54)
    p = yield from powers.trunc_poly_steps(rt, p, *steps[3][:2], cube, mat=steps[3][2], top=True)  # q^27 at 45
    opened: list = []
    out = yield from powers.trunc_pow_steps(rt, p, *steps[4], opened=opened)  # e^x at ob bits
    hold[key + ":c"] = opened[0]  # the last truncation's opening (exp's products reuse it)
    hold[key] = out
    return out


# -------------------------------------------------------------------- exp
@_lookahead(elementwise=True)
def exp(x: SharedTensor) -> SharedTensor:
    return _exp(x, fast=True)


@_lookahead(elementwise=True)
def _exp_precise(x: SharedTensor) -> SharedTensor:
    return _exp(x, fast=False)


def _exp(x: SharedTensor, fast: bool) -> SharedTensor:
    """exp by the fast chain or the precise one (for softmax); errors in the module docstring."""
    rt, f = x.rt, x.rt.precision
    X = _at_f(x)
    hold: dict = {}
    # The comparison's opening of x also opens beta x for the chain's first step (its
    # powers tuple is the request right after the comparison's first half); the chain
    # waits one round for it (the comparison has two rounds to spare after the chain),
    # so round 2 waits only for the comparison's first half. Dealer requests in the
    # order the rounds use them: comparison half 1, its powers, the chain's steps 2-4,
    # then the comparison's daBit half, which carries the chain's last truncation (round 6).
    plan = _exp_plan(f, 1, f, fast)
    pw = (*plan[0], _exp_beta())
    k5, coarse = plan[4][0], _coarse(f)
    # Rows [x < -15] and [x <= 11.5] (coarse: either answer on [-16, -15) and (10.5, 11.5]);
    # the first implies the second, so their xor is the in-range bit, and one product row,
    # [in range] e^x, serves both (xor_rows): out = [in range] e^x + (1 - [x <= 11.5]) e^11.5.
    ts = [_enc(EXP_LO + 1, f), _enc(EXP_HI, f) + 1]
    lt = ltz_request(rt, X.size, 1, rows=2, mul_rows=1, shared_y=True, powers=pw, coarse=coarse, trunc_y=k5,
                     halves=True, xor_rows=True)
    steps234 = _exp_requests(rt, X.shape, f, 1, steps=slice(1, 4), fast=fast)
    last = YTrunc(lt.request_da(), X.size, X.shape)
    chain = _exp_chain(rt, X, f, 1, hold, "y", mats=[None, *steps234, last], fast=fast)
    sel = ltz_steps(rt, X, 1, lambda: [hold["y"][0], hold["y:c"]], mat=lt, thresholds=ts, mul_rows=1, shared_y=True,
                    powers=pw, on_powers=lambda v: hold.__setitem__("y:v", v), coarse=coarse, trunc_y=k5,
                    xor_rows=True)
    with rt.scope("exp"):
        _, (bits, (prods,)) = run(rt, chain, sel)  # chain first: it hands sel y before sel's last round
    sat = np.int64(round(math.exp(EXP_HI) * 2**f))
    out = prods[0, ...] - bits[1, ...] * sat  # [i, ...]: a 0-d array (not a numpy scalar) for 0-d inputs
    if rt.rank == 0:
        out += sat
    return SharedTensor(rt, out, f)


# ---------------------------------------------------------------- sigmoid
def _h_newton(rt, zs: list[np.ndarray], y: np.ndarray, e: np.ndarray, mats: list, f: int):
    """Generator (3 rounds): [h y] at f bits, h = 1/(1+z) from [z], [z^2], [z^3] (F, 2F, 3F bits,
    z in [0, 1]) by a cubic and one Newton step; the last step's truncation carries the
    product by y (integer shares, e = y - a opened earlier, a the mask of mats[2])."""
    h0 = _poly3(rt, zs, H_POLY)
    h, h2 = yield from powers.trunc_pow_steps(rt, h0, 2 * F + G, 2, mat=mats[0])  # F, 2F
    one_z = zs[0] + _const(rt, 1.0, F, zs[0].shape)
    prod = yield from _beaver_steps(rt, one_z, h2, mat=mats[1])  # (1+z) h^2 at 3F
    h1 = (h << np.int64(2 * F + 1)) - prod  # 2h - (1+z) h^2 at 3F
    return (yield from powers.trunc_mul_steps(rt, h1, 3 * F - f, y, e, mats[2]))


def _h_requests(rt, shape: tuple, f: int) -> list:
    return [powers.request(rt, shape, 2 * F + G, 2), rt.dealer.request("triple", a=shape, b=shape),
            powers.mask_request(rt, shape, 3 * F - f)]


def _sigmoid_share(x: SharedTensor, scale_in: int = 1) -> np.ndarray:
    """sigmoid(scale_in * x) at the runtime precision (15 rounds, one exp chain).

    One batched comparison gives b = [x < 0] with the product b x fused (so |x|), and the
    saturation bits lo = [x < -B], hi = [x > B] (B = SIG_BOUND / scale_in). Then
    z = e^-|s x| (the exp chain), h = 1/(1 + z) = sigmoid(|s x|), and
    sigmoid(s x) = h (1 + lo - hi - 2 b) + b - lo + hi: in range that is h or 1 - h,
    saturated it is exactly 0 or 1 (the multiplier is 0, so garbage h never shows).
    The product with the multiplier rides in h's last truncation (powers.trunc_mul_steps)."""
    rt, f = x.rt, x.rt.precision
    X = _at_f(x)
    shape, n = X.shape, X.size
    bound = SIG_BOUND / scale_in
    # dealer requests in the order the rounds need them
    lt = ltz_request(rt, n, 1, rows=3, mul_rows=1)
    chain_mats = _exp_requests(rt, shape, f, 3, out_bits=F)
    h_mats = _h_requests(rt, shape, f)
    hold: dict = {}
    with rt.scope("sigmoid"):
        B = _enc(bound, f)
        # one opening of x for the three rows; the product b x only on the first
        (rows, (bx,)) = run(rt, ltz_steps(rt, X, 1, lambda: [X[None]], mat=lt, thresholds=[0, -B, B + 1],
                                          mul_rows=1))[0]
        b, lo, hi = rows[0, ...], rows[1, ...], -rows[2, ...]  # [x < 0], [x < -B], [x > B] = 1 - [x < B + 1 ulp]
        bx = bx[0, ...]
        if rt.rank == 0:
            hi += 1
        neg_abs = (2 * bx - X) * np.int64(scale_in)  # -|s x| (garbage when s x wraps: saturated)
        y = lo - hi - 2 * b
        if rt.rank == 0:
            y += 1
        a = h_mats[2].own()["a"]

        def open_mask():
            (e,), _ = yield Open(add=[y - a], fresh=True)
            return e

        zs, e = run(rt, _exp_chain(rt, neg_abs, f, 3, hold, "z", out_bits=F, mats=chain_mats), open_mask())
        (hy,) = run(rt, _h_newton(rt, zs, y, e, h_mats, f))
    return hy + (b - lo + hi) * np.int64(1 << f)


@_lookahead(elementwise=True)
def sigmoid(x: SharedTensor) -> SharedTensor:
    return SharedTensor(x.rt, _sigmoid_share(x), x.rt.precision)


@_lookahead(elementwise=True)
def tanh(x: SharedTensor) -> SharedTensor:
    rt, f = x.rt, x.rt.precision
    s = _sigmoid_share(x, 2)
    return SharedTensor(rt, 2 * s - _const(rt, 1.0, f, s.shape), f)


# ------------------------------------------------------ normalization family
def _normalize_steps(rt, A: np.ndarray, f: int, lo: int, hi: int, step: int, hold: dict):
    """Generator (7 rounds): bits b_k = [a < 2^k] for k = lo, lo+step, ..., hi (one batched
    comparison), and a clamped into [2^lo - ulp, 2^hi - ulp] (hold["clamped"]) so that
    inputs outside the range stay bounded: the two boundary comparisons run alongside,
    with the products [b_lo a], [b_hi a] fused."""
    if (hi - lo) % step:
        raise ValueError(f"normalization range [{lo}, {hi}] is not a whole number of steps of {step}")
    ks = list(range(lo, hi + 1, step))
    inner = ks[1:-1]

    # one opening of a for every threshold; the products b a only on the two edge rows
    bits, (eprod,) = yield from ltz_steps(rt, A, 1, lambda: [A], mul_rows=2, shared_y=True,
                                          thresholds=[_enc(2.0**k, f) for k in [lo, hi] + inner])
    b_lo, b_hi, mb = bits[0, ...], bits[1, ...], bits[2:]
    c_lo = np.int64(round((2.0**lo - 2.0**-f) * 2**f))
    c_hi = np.int64(round((2.0**hi - 2.0**-f) * 2**f))
    # a if in range, 2^hi - ulp above it, 2^lo - ulp below it (b_lo implies b_hi):
    # b_hi a - b_lo a + (1 - b_hi) c_hi + b_lo c_lo, the public 1 c_hi added by party 0
    clamped = eprod[1, ...] - eprod[0, ...] - b_hi * c_hi + b_lo * c_lo
    if rt.rank == 0:
        clamped += c_hi
    hold["ks"] = ks
    hold["clamped"] = clamped
    hold["clamped_top"] = clamped + eprod[0, ...] - b_lo * c_lo  # only the upper clamp
    return [b_lo] + [mb[i, ...] for i in range(len(mb))] + [b_hi]


def _indicator_weights(rt, bits: np.ndarray, ks: list[int], weight) -> np.ndarray:
    """sum over the bucket k (a in [2^(k-step), 2^k)) of weight(k), as a share (0 fbits).
    Buckets: below the first threshold -> ks[0]; at/above the last -> ks[-1] + step."""
    step = ks[1] - ks[0] if len(ks) > 1 else 1
    out = bits[0] * np.int64(weight(ks[0]))
    for i in range(1, len(ks)):
        out += (bits[i] - bits[i - 1]) * np.int64(weight(ks[i]))
    top = -bits[-1]
    if rt.rank == 0:
        top = top + 1
    out += top * np.int64(weight(ks[-1] + step))
    return out


def _abs_and_sign(x: SharedTensor):
    rt = x.rt
    X = _at_f(x)
    with rt.scope("abs"):
        res = run(rt, ltz_steps(rt, X, 1, lambda: [X]))[0]
    b, (bx,) = res
    return X - 2 * bx, b


REC_LO, REC_HI, REC_STEP, REC_G = -7, 17, 4, 9


@_lookahead(elementwise=True)
def reciprocal(x: SharedTensor) -> SharedTensor:
    rt, f = x.rt, x.rt.precision
    A, b = _abs_and_sign(x)
    hold: dict = {}
    with rt.scope("reciprocal"):
        (bits,) = run(rt, _normalize_steps(rt, A, f, REC_LO, REC_HI, REC_STEP, hold))
        ks = hold["ks"]
        top = ks[-1] + REC_STEP
        sig = _indicator_weights(rt, bits, ks, lambda k: 2 ** (top - k))  # m = a sig / 2^top in [1/16, 1)
        sign = -2 * b
        if rt.rank == 0:
            sign += 1
        Ac = hold["clamped"]

        def main():
            mx = yield from _beaver_steps(rt, Ac, sig)  # f bits
            ms = yield from powers.trunc_pow_steps(rt, mx, f + top - F, 3)  # m at F, F..3F
            y0 = _poly3(rt, ms, RECIP_POLY, REC_G)  # 1/m within 15%, at 3F + REC_G
            y, y2 = yield from powers.trunc_pow_steps(rt, y0, 2 * F + REC_G, 2)
            for it in range(3):  # Newton: y <- 2y - m y^2 (error squares)
                p = yield from _beaver_steps(rt, ms[0], y2)  # m y^2 at 3F
                y1 = (y << np.int64(2 * F + 1)) - p
                if it < 2:
                    y, y2 = yield from powers.trunc_pow_steps(rt, y1, 2 * F, 2)
            (yf,) = yield from powers.trunc_pow_steps(rt, y1, 3 * F - f, 1)
            return yf

        def scale():
            return (yield from _beaver_steps(rt, sig, sign))

        yf, tau = run(rt, main(), scale())
        (out,) = run(rt, _then_trunc(rt, yf, tau, top))
    return SharedTensor(rt, out, f)


def _then_trunc(rt, y, tau, k):
    z = yield from _beaver_steps(rt, y, tau)
    (out,) = yield from powers.trunc_pow_steps(rt, z, k, 1)
    return out


LOG_LO, LOG_HI = -10, 14


@_lookahead(elementwise=True)
def log(x: SharedTensor) -> SharedTensor:
    rt, f = x.rt, x.rt.precision
    A = _at_f(x)
    hold: dict = {}
    with rt.scope("log"):
        (bits,) = run(rt, _normalize_steps(rt, A, f, LOG_LO, LOG_HI, 1, hold))
        ks = hold["ks"]
        top = LOG_HI + 1
        sig = _indicator_weights(rt, bits, ks, lambda k: 2 ** (top - k))
        e = _indicator_weights(rt, bits, ks, lambda k: k)  # a in [2^(e-1), 2^e)

        Ac = hold["clamped"]

        def main():
            mx = yield from _beaver_steps(rt, Ac, sig)
            ms = yield from powers.trunc_pow_steps(rt, mx, f + top - F, 3)
            lp = _poly3(rt, ms, LOG_POLY)
            (lm,) = yield from powers.trunc_pow_steps(rt, lp, 3 * F + G - f, 1)
            return lm

        (lm,) = run(rt, main())
    return SharedTensor(rt, lm + e * np.int64(round(math.log(2) * 2**f)), f)


RSQRT_LO, RSQRT_HI = -10, 14


@_lookahead(elementwise=True)
def rsqrt(x: SharedTensor) -> SharedTensor:
    return _rsqrt(x)[0]


def _rsqrt(x: SharedTensor, lo: int = RSQRT_LO, hi: int = RSQRT_HI, extra: int = 0,
           scale: float = 1.0, scale_bits: int = 0, wide: bool = False) -> tuple[SharedTensor, SharedTensor]:
    """scale * rsqrt(x) (at f + extra fractional bits, extra <= (hi + 2) / 2) and x clamped
    from above (sqrt = that * rsqrt stays bounded, sqrt(0) = 0), for x in [2^lo, 2^hi) (lo,
    hi even; one comparison row per factor of 4 between them). x may carry more fractional
    bits than f (fa) when `wide` and 2^(hi + 2 + fa) < 2^62 (else it is truncated to f); the
    public `scale` rides in the final product's weights at `scale_bits` more bits."""
    rt, f = x.rt, x.rt.precision
    wide = wide and x.fbits > f and hi + 2 + x.fbits <= 61
    fa = x.fbits if wide else f
    A = x.share if wide else _at_f(x)
    hold: dict = {}
    with rt.scope("rsqrt"):
        (bits,) = run(rt, _normalize_steps(rt, A, fa, lo, hi, 2, hold))
        ks = hold["ks"]
        top = hi + 2  # even
        sig = _indicator_weights(rt, bits, ks, lambda k: 2 ** (top - k))  # m = a sig / 2^top in [1/4, 1)
        # rsqrt(a) = rsqrt(m) half / 2^(top/2)
        half = _indicator_weights(rt, bits, ks, lambda k: int(round(scale * 2 ** ((top - k) // 2 + scale_bits))))

        Ac = hold["clamped"]

        def main():
            mx = yield from _beaver_steps(rt, Ac, sig)
            ms = yield from powers.trunc_pow_steps(rt, mx, fa + top - F, 3)
            y0 = _poly3(rt, ms, RSQRT_POLY)
            y, y2 = yield from powers.trunc_pow_steps(rt, y0, 2 * F + G, 2)
            my2 = yield from _beaver_steps(rt, ms[0], y2)  # m y^2 at 3F
            (t,) = yield from powers.trunc_pow_steps(rt, my2, 2 * F, 1)  # at F
            three = _const(rt, 3.0, F, t.shape)
            z = yield from _beaver_steps(rt, y, three - t)  # y (3 - m y^2) at 2F
            (yf,) = yield from powers.trunc_pow_steps(rt, z, 2 * F + 1 - f, 1)  # /2, at f
            return yf

        (yf,) = run(rt, main())
        (out,) = run(rt, _then_trunc(rt, yf, half, top // 2 - extra + scale_bits))
    return SharedTensor(rt, out, f + extra), SharedTensor(rt, hold["clamped_top"], fa)


@_lookahead(elementwise=True)
def sqrt(x: SharedTensor) -> SharedTensor:
    r, xc = _rsqrt(x)
    return xc * r


# ---------------------------------------------------------------- softmax
@_lookahead
def softmax(x: SharedTensor, dim: int = -1) -> SharedTensor:
    """exp(x - max) / sum(exp(x - max)) along dim."""
    m = max_(x, dim, keepdim=True)  # values only (x.max(dim) also finds the indices)
    e = _exp_precise(x - m)  # softmax's abs 1e-3 on outputs near 1 wants exp's precise chain
    s = e.sum(dim=dim, keepdim=True)
    return e * s.reciprocal()


@_lookahead
def log_softmax(x: SharedTensor, dim: int = -1) -> SharedTensor:
    m = max_(x, dim, keepdim=True)  # values only (x.max(dim) also finds the indices)
    d = x - m
    return d - _exp_precise(d).sum(dim=dim, keepdim=True).log()

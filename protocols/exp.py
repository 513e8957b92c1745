"""e^x and the functions built on its chain: exp, sigmoid, tanh, softmax, log_softmax.

Every function works on all inputs the fixed-point format holds: an exact comparison
(protocols.comparison) selects between the approximation, valid on its range, and the
function's limit outside it; the selection is a product fused into the comparison,
and the polynomial work runs inside the comparison's rounds (protocols.rounds), so
the range handling costs few or no extra rounds. Polynomials are Chebyshev fits
evaluated with protocols.powers (truncation and powers in one round).

Rounds: exp 7 (the comparison's; the 5-step chain runs inside them); sigmoid and tanh 15
  (2 with two parties where protocols.spline's cost model picks its spline);
  softmax over k elements 7 ceil(log2 k) (the max) + 7 (exp) + the sum's reciprocal (25)
  + 2 (76 over 64, 48 over 3); log_softmax the max, exp and a log of the sum. softmax over 64: 76.
Bytes per element per peer: exp 53.4 (CrypTen: 64; the cubes' openings send only the
  bits their truncations keep, 4-6 bytes, rounds.top_bytes, more as N grows), sigmoid and
  tanh 130.3, softmax over 64 104.4; each of a party's N - 1 peers gets this.
Dealer words per element: (sent to the corrected party) exp 29.9 (the chain's 22.5, the
  comparison's material in three requests), sigmoid and tanh 46.4, softmax over 64 41.2;
  independent of N (one corrected party; every party expands its own share of the rest).
  Measured (10240 elements) at N = 2. From N = 3 every opening of 512 KiB or more goes in two
  steps (mpcrt.allreduce: fewer bytes per peer, two rounds): at 10240 elements log takes 13 and
  sqrt 19 rounds; at 128000 exp 13, sigmoid 28, reciprocal 45 (up to twice the rounds above).
Error: measured at 16 fractional bits (tests assert these): see each method below.
Reference: docs/design.md, 'Protocols' (exp chain, sigmoid); Damgard et al., TCC 2006
  (powers from the dealer).

Methods:
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
- softmax: exp(x - max) / sum, max by a comparison tree, the sum's reciprocal.
Outside the stated input ranges results stay bounded (clamped), never wrap.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from mpcrt.protocols import beaver, powers, spline
from mpcrt.protocols.comparison import LtzSpec, YTrunc, ltz_steps
from mpcrt.protocols.comparison import request as ltz_request
from mpcrt.protocols.lookahead import lookahead
from mpcrt.protocols.ordering import max_
from mpcrt.protocols.polynomial import F, G, const, enc, fit, fit_rel, poly3
from mpcrt.protocols.precision import at_f, at_f_share
from mpcrt.protocols.reciprocal import log, reciprocal
from mpcrt.protocols.rounds import Open, run
from mpcrt.protocols.shared import SharedTensor

EXP_LO, EXP_HI = -16.0, 11.5  # the exp chain's range; its coarse selection's 1-wide windows lie inside
SIG_BOUND = 16.0
H_POLY = fit(lambda z: 1 / (1 + z), 0.0, 1.0, 3)
EXP_POLY = fit_rel(np.exp, EXP_LO / 27, EXP_HI / 27, 4)  # e^u, u = x/27: rel err 4e-4 after ^27


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
    # q^3 at 45 (precise: 60)
    p = yield from powers.trunc_poly_steps(rt, q, *steps[1][:2], cube, mat=steps[1][2], top=True)
    p = yield from powers.trunc_poly_steps(rt, p, *steps[2][:2], cube, mat=steps[2][2], top=True)  # q^9 at 45 (54)
    p = yield from powers.trunc_poly_steps(rt, p, *steps[3][:2], cube, mat=steps[3][2], top=True)  # q^27 at 45
    opened: list = []
    out = yield from powers.trunc_pow_steps(rt, p, *steps[4], opened=opened)  # e^x at ob bits
    hold[key + ":c"] = opened[0]  # the last truncation's opening (exp's products reuse it)
    hold[key] = out
    return out


# -------------------------------------------------------------------- exp
@lookahead(elementwise=True)
def exp(x: SharedTensor) -> SharedTensor:
    """e^x: rel err < 3e-3 on [-10, 10], ~0 below -15, e^11.5 above 11.5. 7 rounds."""
    return _exp(x, fast=True)


@lookahead(elementwise=True)
def exp_precise(x: SharedTensor) -> SharedTensor:
    """e^x by the precise chain (more bits in the cubes, 3 more dealer words per element):
    rel 9e-4 on [0, 10]; softmax, elu, softplus and mish use it."""
    return _exp(x, fast=False)


def _exp(x: SharedTensor, fast: bool) -> SharedTensor:
    """exp by the fast chain or the precise one (for softmax); errors in the module docstring."""
    rt, f = x.rt, x.rt.precision
    X = at_f_share(x)
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
    ts = [enc(EXP_LO + 1, f), enc(EXP_HI, f) + 1]
    spec = LtzSpec.of(X.size, 1, rows=2, mul_rows=1, shared_y=True, powers=pw, coarse=coarse, trunc_y=k5,
                      xor_rows=True)
    lt = ltz_request(rt, spec, halves=True)
    steps234 = _exp_requests(rt, X.shape, f, 1, steps=slice(1, 4), fast=fast)
    last = YTrunc(lt.request_da(), X.size, X.shape)
    chain = _exp_chain(rt, X, f, 1, hold, "y", mats=[None, *steps234, last], fast=fast)
    sel = ltz_steps(rt, X, muls=lambda: [hold["y"][0], hold["y:c"]], mat=lt, thresholds=ts, spec=spec,
                    on_powers=lambda v: hold.__setitem__("y:v", v))
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
    h0 = poly3(rt, zs, H_POLY)
    h, h2 = yield from powers.trunc_pow_steps(rt, h0, 2 * F + G, 2, mat=mats[0])  # F, 2F
    one_z = zs[0] + const(rt, 1.0, F, zs[0].shape)
    prod = yield from beaver.mul_steps(rt, one_z, h2, mat=mats[1])  # (1+z) h^2 at 3F
    h1 = (h << np.int64(2 * F + 1)) - prod  # 2h - (1+z) h^2 at 3F
    return (yield from powers.trunc_mul_steps(rt, h1, 3 * F - f, y, e, mats[2]))


def _h_requests(rt, shape: tuple, f: int) -> list:
    return [powers.request(rt, shape, 2 * F + G, 2), beaver.request(rt, beaver.ProductSpec("triple", shape, shape)),
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
    X = at_f_share(x)
    shape, n = X.shape, X.size
    bound = SIG_BOUND / scale_in
    # dealer requests in the order the rounds need them
    spec = LtzSpec.of(n, 1, rows=3, mul_rows=1)
    lt = ltz_request(rt, spec)
    chain_mats = _exp_requests(rt, shape, f, 3, out_bits=F)
    h_mats = _h_requests(rt, shape, f)
    hold: dict = {}
    with rt.scope("sigmoid"):
        B = enc(bound, f)
        # one opening of x for the three rows; the product b x only on the first
        (rows, (bx,)) = run(rt, ltz_steps(rt, X, muls=lambda: [X[None]], mat=lt, thresholds=[0, -B, B + 1],
                                          spec=spec))[0]
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


@lookahead(elementwise=True)
def sigmoid(x: SharedTensor) -> SharedTensor:
    """1/(1+e^-x), abs err < 2e-4 for every input. 15 rounds (2 as a spline, protocols.spline)."""
    x = at_f(x)
    s = spline.maybe(x, "sigmoid")
    return s if s is not None else SharedTensor(x.rt, _sigmoid_share(x), x.rt.precision)


@lookahead(elementwise=True)
def tanh(x: SharedTensor) -> SharedTensor:
    """tanh(x) = 2 sigmoid(2x) - 1: abs err < 4e-4 for every input. 15 rounds (2 as a spline)."""
    x = at_f(x)
    t = spline.maybe(x, "tanh")
    if t is not None:
        return t
    rt, f = x.rt, x.rt.precision
    s = _sigmoid_share(x, 2)
    return SharedTensor(rt, 2 * s - const(rt, 1.0, f, s.shape), f)


def _softmax_dim(dim, ndim: int) -> int:
    """dim=None as torch reads it (its implicit dim, with its warning): 0 for 0-, 1- and 3-d input, else 1."""
    if dim is None:
        warnings.warn("softmax/log_softmax without dim: using torch's implicit choice; pass dim=", UserWarning,
                      stacklevel=3)
        return 0 if ndim in (0, 1, 3) else 1
    return dim


# ---------------------------------------------------------------- softmax
@lookahead
def softmax(x: SharedTensor, dim: int = -1) -> SharedTensor:
    """exp(x - max) / sum(exp(x - max)) along dim."""
    dim = _softmax_dim(dim, x.ndim)
    m = max_(x, dim, keepdim=True)  # values only (x.max(dim) also finds the indices)
    e = _exp_nonpositive(x - m)
    s = e.sum(dim=dim, keepdim=True)
    return e * reciprocal(s)


@lookahead
def log_softmax(x: SharedTensor, dim: int = -1) -> SharedTensor:
    """(x - max) - log(sum(exp(x - max))) along dim."""
    dim = _softmax_dim(dim, x.ndim)
    m = max_(x, dim, keepdim=True)  # values only (x.max(dim) also finds the indices)
    d = x - m
    return d - log(_exp_nonpositive(d).sum(dim=dim, keepdim=True))


def _exp_nonpositive(d: SharedTensor) -> SharedTensor:
    """e^d for d <= 0 (x - max): the spline (2 rounds, abs 1.2e-4) where protocols.spline picks
    it, else exp's precise chain (softmax's abs 1e-3 on outputs near 1 wants its precision)."""
    e = spline.maybe(d, "exp_neg")
    return e if e is not None else exp_precise(d)

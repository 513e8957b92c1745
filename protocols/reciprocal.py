"""1/x, log x, sqrt x and 1/sqrt x (x / y for a shared y: protocols.quotient).

A range normalization (one batched comparison of |x| against the powers of 2^step of
the range) brings x to m in [1/16, 1) (reciprocal) or [1/4, 1) (rsqrt, sqrt, log); a cubic
Chebyshev fit of the function on m (protocols.powers: truncation and powers in one
round) plus Newton steps (log: two cubics in a row, no Newton step), then the rescaling by
the public weight of m's bucket (log: plus k ln 2). Inputs outside the stated ranges are
clamped (results stay bounded, never wrap).

Rounds: reciprocal 25 (sign 7, normalization 7, m and the cubic 2, 3 Newton steps,
  rescale 2); log 10; rsqrt 16; sqrt 16. With two parties, where fss.use_fss picks the FSS
  comparison, the sign and the normalization take 1 round each: reciprocal 13, log 4, rsqrt
  and sqrt 10 (bytes: the comparisons' 8 per element per peer; dealer: their FSS keys).
Bytes per element per peer: reciprocal 299, log 505 (31 rows at every f; 504.7, 505.7 from
  f = 20; 432 for the old 25 rows over [2^-10, 2^14)), rsqrt 458 (22 rows at f = 16; 397 at
  f = 12, 520 at f = 20), sqrt 613 (31 rows at every even f); each of a party's N - 1 peers
  gets this.
Dealer words per element: (sent to the corrected party) reciprocal 46.3, log 108 (60.7 before:
  the products of all 31 rows save a round), rsqrt 65.8 (56.4 at f = 12, 73.7 at f = 20),
  sqrt 84.5; independent of N.
  Measured (10240 elements) at N = 2. From N = 3 every opening of 512 KiB or more goes in two
  steps (mpcrt.allreduce: fewer bytes per peer, two rounds): at 10240 elements log takes 13 and
  sqrt 19 rounds; at 128000 exp 13, sigmoid 28, reciprocal 45 (up to twice the rounds above).
Error: measured at 16 fractional bits (tests assert these):
  reciprocal: rel < 1e-3 on 2^-7 <= |x| < 2^6, then abs within 1 ulp up to 2^17 (1/x below 2^-6
    has under 10 significant bits at f = 16: 0 for 1/126510); clamped beyond;
  log: abs < 3.5e-4 + 2 ulp on [2^-f, 2^(62 - f)), the whole format, at any f (measured 2.7e-4
    at 16, 20 and 24 bits, 4.8e-4 at 12; before: 5.3e-4 on [2^-10, 2^14), ln 2^14 above),
    ln 2^-(f + 1) for x <= 0;
  rsqrt: rel < 1e-3 on [2^-10, 2^12), within 2 ulps on [2^12, 2^32) (1.01 measured; clamped beyond:
    about 2^-16; 32 below 2^-10);
  sqrt: rel < 1e-3 on [2^-10, 2^44) (1e-4 plus the last ulp: 4.9e-4 at 2^-10, 1e-4 from
    2^-4 up), within 2 ulps on [2^-16, 2^-10) (1.09 measured), 0 for x <= 0, clamped to about 2^22
    above.
  At f bits: sqrt over [2^-f, 2^(60 - f)), rsqrt up to 2^min(2f, 60 - f), same rel 1e-4 plus an ulp.
Reference: docs/design.md, 'Protocols' (normalization and Newton steps).

Methods:
- reciprocal: sign by comparison, |x| normalized to m in [1/16, 1) by comparisons
  with the powers of sixteen of the range (one batched run of 7), 1/m by a cubic
  (rel err 37%) plus three Newton steps, rescaled. 25 rounds.
  Error: as above.
- log: normalization by powers of four over [2^-f, 2^(62 - f)) (31 rows, the products of
  every row fused: no product round), m in [1/4, 1), log m = Q(P(m - 1)) by two truncations
  with powers (a composition of two cubics, 2.2e-4), plus k ln 2 in the last truncation's
  weights. 10 rounds. Chosen over a step-1 normalization (62 rows: 969 bytes for its
  comparison alone, one cubic, 5.3e-4) and over powers of 16 (16 rows, but three cubics
  for 9e-4, 11 rounds). Error: as above.
- rsqrt: normalization by powers of four to m in [0.25, 1), cubic plus one Newton
  step, rescaled by 2^-j (16 rounds). Error: as above.
- sqrt: the same normalization over [2^-f, 2^(60 - f)) (the format holds up to 2^(62 - f);
  x times its bucket's weight stays below the truncation's 2^62 there), m rsqrt(m) = sqrt(m)
  with the product m y in the Newton step's round, rescaled by 2^(k/2) (16 rounds). Not
  x rsqrt(x): rsqrt of a large x falls below the resolution (it gave 128 for every x >= 2^14).
"""
from __future__ import annotations

import math

import numpy as np

from mpcrt.protocols import beaver, fss, powers
from mpcrt.protocols.comparison import LtzSpec, ltz_steps
from mpcrt.protocols.lookahead import lookahead
from mpcrt.protocols.polynomial import F, G, const, enc, fit, fit_rel, poly3
from mpcrt.protocols.precision import at_f_share
from mpcrt.protocols.rounds import lockstep, run, run1
from mpcrt.protocols.shared import SharedTensor

RECIP_POLY = fit_rel(lambda m: 1 / m, 0.0625, 1.0, 3)  # rel err 0.37 on [1/16, 1): 3 Newton steps -> 4e-4
RSQRT_POLY = fit(lambda m: 1 / np.sqrt(m), 0.25, 1.0, 3)


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
    bits, eprod = yield from _rows_steps(rt, A, [enc(2.0**k, f) for k in [lo, hi] + inner], mul_rows=2)
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


def _indicator_weights(rt, bits: np.ndarray, ks: list[int], weight, one: np.ndarray | None = None) -> np.ndarray:
    """sum over the bucket k (a in [2^(k-step), 2^k)) of weight(k), as a share (0 fbits).
    Buckets: below the first threshold -> ks[0]; at/above the last -> ks[-1] + step.
    With `one` (a share y) and bits the products [b_k y]: sum of weight(k) [bucket k] y."""
    step = ks[1] - ks[0] if len(ks) > 1 else 1
    out = bits[0] * np.int64(weight(ks[0]))
    for i in range(1, len(ks)):
        out += (bits[i] - bits[i - 1]) * np.int64(weight(ks[i]))
    top = -bits[-1]
    if one is not None:
        top = top + one
    elif rt.rank == 0:
        top = top + 1
    out += top * np.int64(weight(ks[-1] + step))
    return out


def _rows_steps(rt, A: np.ndarray, ts: list[int], mul_rows: int | None = None):
    """Generator: [A < t] for each threshold (rows stacked) and [b A] for the first mul_rows rows
    (None: every row), by one FSS opening (1 round) where fss.use_fss picks it, else the exact
    comparison (7). The FSS keys are 64-bit whatever MPCRT_FSS_BITS asks of plain comparisons:
    the normalizations' thresholds reach 2^(60 - f)."""
    if fss.use_fss(rt, A.size, len(ts), True, bits=fss.EXACT_BITS):
        bits, prods = yield from fss.ltz_steps(rt, A, thresholds=ts, prod=True, spec=_full(A))
        return bits, prods if mul_rows is None else prods[:mul_rows]
    spec = LtzSpec.of(A.size, 1, len(ts), mul_rows=mul_rows, shared_y=True)
    bits, (prods,) = yield from ltz_steps(rt, A, muls=lambda: [A], spec=spec, thresholds=ts)
    return bits, prods


def _full(x: np.ndarray) -> "fss.FssSpec":
    """64-bit FSS keys with the product for x (`_rows_steps`; a sign must hold for every x)."""
    return fss.FssSpec.of(x.size, fss.EXACT_BITS, True)


def _abs_and_sign(x: SharedTensor):
    rt = x.rt
    X = at_f_share(x)
    with rt.scope("abs"):
        if fss.use_fss(rt, X.size, 1, True, bits=fss.EXACT_BITS):  # 1 round instead of 7
            b, bx = run1(rt, fss.ltz_steps(rt, X, prod=True, spec=_full(X)))
        else:
            b, (bx,) = run(rt, ltz_steps(rt, X, 1, lambda: [X]))[0]
    return X - 2 * bx, b


REC_LO, REC_HI, REC_STEP, REC_G = -7, 17, 4, 9


@lookahead(elementwise=True)
def reciprocal(x: SharedTensor) -> SharedTensor:
    """1/x (either sign): rel err < 1e-3 for 2^-7 <= |x| < 2^6, within 1 ulp up to 2^17. 25 rounds."""
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

        def scale():
            return (yield from beaver.mul_steps(rt, sig, sign))

        yf, tau = run(rt, inverse_m_steps(rt, Ac, sig, f, top), scale())
        (out,) = run(rt, _then_trunc(rt, yf, tau, top))
    return SharedTensor(rt, out, f)


def inverse_m_steps(rt, Ac: np.ndarray, sig: np.ndarray, f: int, top: int, out_bits: int | None = None):
    """Generator (9 rounds): [1/m] at out_bits (default f) bits for m = Ac sig / 2^top in [1/16, 1) (Ac at
    f bits, sig an integer share): m and its powers, a cubic within 37% (relative), three Newton steps
    (rel 4e-4)."""
    mx = yield from beaver.mul_steps(rt, Ac, sig)  # f bits
    ms = yield from powers.trunc_pow_steps(rt, mx, f + top - F, 3)  # m at F, F..3F
    y0 = poly3(rt, ms, RECIP_POLY, REC_G)  # 1/m within 15%, at 3F + REC_G
    y, y2 = yield from powers.trunc_pow_steps(rt, y0, 2 * F + REC_G, 2)
    for it in range(3):  # Newton: y <- 2y - m y^2 (error squares)
        p = yield from beaver.mul_steps(rt, ms[0], y2)  # m y^2 at 3F
        y1 = (y << np.int64(2 * F + 1)) - p
        if it < 2:
            y, y2 = yield from powers.trunc_pow_steps(rt, y1, 2 * F, 2)
    (yf,) = yield from powers.trunc_pow_steps(rt, y1, 3 * F - (f if out_bits is None else out_bits), 1)
    return yf


def _then_trunc(rt, y, tau, k):
    z = yield from beaver.mul_steps(rt, y, tau)
    (out,) = yield from powers.trunc_pow_steps(rt, z, k, 1)
    return out


# log: m = a 2^-k in [1/4, 1) (one comparison row per factor of 4), s = m - 1 at LOG_F1 bits,
# t = P(s) at 3 LOG_F1 + LOG_G1 = 61 bits, truncated to LOG_F2 bits, log m = Q(t) at
# LOG_OUT = 3 LOG_F2 + LOG_G2 = 56 bits, where k ln 2 (|log x| < 43 over the format) still fits.
# P, Q: a minimax fit of log m on [1/4, 1] by the composition of two cubics (max error 2.20e-4;
# a degree-6 polynomial's is 1.8e-4, one cubic's 8.5e-3), p3 and q3 rounded to their grids
# (2^-LOG_G1, 2^-LOG_G2) first and the rest refit (power basis in s, then in t).
LOG_STEP = 2
LOG_F1, LOG_G1, LOG_F2, LOG_G2 = 17, 10, 16, 8
LOG_OUT = 3 * LOG_F2 + LOG_G2
LOG_M0 = 0.625  # the m that x <= 0 gets (its bucket's additive weight then gives log's value there)
LOG_P = (0.3798634268496743, 0.5160576870904947, -0.30065540969371796, 567 / 2**LOG_G1)
LOG_Q = (-0.6567716309732957, 1.6178125415126487, -0.03677147626876831, 223 / 2**LOG_G2)


def _log_range(f: int) -> tuple[int, int]:
    """(lo, hi) of log's thresholds at f bits: 2^-f (the bucket below it holds only x <= 0)
    to 2^(60 - f): the top bucket [2^(60 - f), 2^(62 - f)) ends at the format's top, and
    a sig = m 2^62 (a at f bits, sig = 2^(62 - f - k)) less 2^62 stays within the
    truncation's [-2^62, 2^62) for every m in [0, 2)."""
    return -f, 60 - f


def log_at_zero(f: int) -> float:
    """What log returns for x <= 0 at f bits: ln 2^-(f + 1), the log of half an ulp (below
    the log of every positive input; -11.78 at 16 bits)."""
    return -(f + 1) * math.log(2)


def log_fit(m) -> np.ndarray:
    """Q(P(m - 1)) in float64: the function log evaluates on m in [1/4, 1) (log m within 2.2e-4)."""
    t = np.polynomial.polynomial.polyval(np.asarray(m, np.float64) - 1, LOG_P)
    return np.polynomial.polynomial.polyval(t, LOG_Q)


@lookahead(elementwise=True)
def log(x: SharedTensor) -> SharedTensor:
    """Natural log for x in [2^-f, 2^(62 - f)), every positive value of the format: abs err
    < 3.5e-4 plus 2 ulp at any f (measured 2.7e-4 at 16 bits, 4.8e-4 at 12); ln 2^-(f + 1)
    (log_at_zero) for x <= 0; ring values past the format's top, up to 2^(63 - f), bounded
    in [ln 2^(62 - f), ln 2^(62 - f) + 2.5] (m in [1, 2): the truncation still holds). 10 rounds.

    One comparison of a = x against 2^k, k = -f, -f + 2, ..., 60 - f (31 rows), with the
    products [b_k a] fused into its last round for every row (one opening of a's mask):
    a sig = m 2^62 is then local, m = a 2^-k in [1/4, 1) for a in [2^(k-2), 2^k) (k = 62 - f
    on top; x <= 0 gets m = 5/8 from its bucket's public weight instead); two truncations
    with powers (narrow openings) give t = P(m - 1) and log m = Q(t) at 56 bits, and a third
    takes log m + k ln 2 (the bucket's public weight, exact at 56 bits) to f bits.
    Why powers of 4: a step-1 normalization (m in [1/2, 1), one cubic) needs 62 rows over the
    format: 969 bytes for the comparison alone, for 5.3e-4; powers of 16 (16 rows, 262 bytes)
    leave m in [1/16, 1), where two cubics err by 1.1e-2 and three by 9e-4 (11 rounds). The
    fused products cost 30 dealer words more than a Beaver product of a and sig, which would
    take a round (11)."""
    rt, f = x.rt, x.rt.precision
    lo, hi = _log_range(f)
    top = hi + LOG_STEP  # 62 - f
    ks = list(range(lo, hi + 1, LOG_STEP))
    A = at_f_share(x)
    with rt.scope("log"):
        bits, ba = run1(rt, _rows_steps(rt, A, [enc(2.0**k, f) for k in ks]))
        # (m - 1) 2^62: a 2^(62 - f - k) in bucket k, 5/8 2^62 for x <= 0 (bucket lo)
        mx = _indicator_weights(rt, ba, ks, lambda k: 0 if k == lo else 1 << (top - k), one=A)
        mx += _indicator_weights(rt, bits, ks, lambda k: enc(LOG_M0, 62) if k == lo else 0)
        if rt.rank == 0:
            mx -= np.int64(1 << 62)
        zero = log_at_zero(f) - float(log_fit(LOG_M0))
        add = _indicator_weights(rt, bits, ks, lambda k: enc(zero if k == lo else k * math.log(2), LOG_OUT))
        s1 = 3 * LOG_F1 + LOG_G1
        cp = [enc(c, s1 - j * LOG_F1) for j, c in enumerate(LOG_P)]
        cq = [enc(c, LOG_OUT - j * LOG_F2) for j, c in enumerate(LOG_Q)]

        def main():
            t = yield from powers.trunc_poly_steps(rt, mx, 62 - LOG_F1, 3, cp, top=True)  # P(s) at 61 bits
            y = yield from powers.trunc_poly_steps(rt, t, s1 - LOG_F2, 3, cq, top=True)  # log m at 56 bits
            (out,) = yield from powers.trunc_pow_steps(rt, y + add, LOG_OUT - f, 1, top=True)
            return out

        (out,) = run(rt, main())
    return SharedTensor(rt, out, f)


RSQRT_LO, RSQRT_HI = -10, 14  # rsqrt_scaled's default range; rsqrt itself goes up to 2^(2f)
SQRT_BITS = 24  # fractional bits of sqrt(m) before the bucket's weight


def _hi_max(f: int) -> int:
    """The largest even hi the normalization takes at f fractional bits: the product a sig
    it truncates is m 2^(hi + 2 + f) with m < 1, and a truncation needs it below 2^62."""
    return (60 - f) - (60 - f) % 2


def _rsqrt_hi(f: int) -> int:
    """rsqrt's hi: 2f (above, 1/sqrt(x) < 2^-f is below the resolution), even, at most _hi_max."""
    return max(RSQRT_HI, min(2 * f, _hi_max(f)))


def _rsqrt_m_steps(rt, ms: list[np.ndarray], out_bits: int, times_m: bool = False):
    """Generator (5 rounds): 1/sqrt(m) for m in [1/4, 1) from ms = [m, m^2, m^3] (F, 2F, 3F
    bits): the cubic y, then one Newton step y (3 - m y^2) / 2, at out_bits. times_m:
    m/sqrt(m) = sqrt(m), as (m y)(3 - m y^2) / 2 with the product m y (kept at 2F bits,
    untruncated) in the round of m y^2: no extra round."""
    y0 = poly3(rt, ms, RSQRT_POLY)
    y, y2 = yield from powers.trunc_pow_steps(rt, y0, 2 * F + G, 2)
    if times_m:
        my2, y = yield from lockstep(beaver.mul_steps(rt, ms[0], y2), beaver.mul_steps(rt, ms[0], y))
        yb = 2 * F  # m y, < 1.01
    else:
        my2 = yield from beaver.mul_steps(rt, ms[0], y2)  # m y^2 at 3F
        yb = F
    (t,) = yield from powers.trunc_pow_steps(rt, my2, 2 * F, 1)  # at F
    three = const(rt, 3.0, F, t.shape)
    z = yield from beaver.mul_steps(rt, y, three - t)  # y (3 - m y^2) at yb + F (< 2^51)
    (out,) = yield from powers.trunc_pow_steps(rt, z, yb + F + 1 - out_bits, 1)  # /2, at out_bits
    return out


def _rsqrt_normalized(rt, A: np.ndarray, fa: int, lo: int, hi: int, out_bits: int, times_m: bool = False):
    """14 rounds: the normalization of a (A at fa bits) by powers of four to m = a 2^-k in
    [1/4, 1) (bucket k even, a in [2^(k-2), 2^k); one comparison row per factor of 4 from 2^lo
    to 2^hi, a clamped into [2^lo - ulp, 2^hi - ulp]), m at F bits with its powers, then
    _rsqrt_m_steps. Returns (rsqrt(m) or sqrt(m) at out_bits, the bucket bits, hold)."""
    hold: dict = {}
    (bits,) = run(rt, _normalize_steps(rt, A, fa, lo, hi, 2, hold))
    top = hi + 2  # even
    sig = _indicator_weights(rt, bits, hold["ks"], lambda k: 2 ** (top - k))  # m = a sig / 2^top in [1/4, 1)

    def main():
        mx = yield from beaver.mul_steps(rt, hold["clamped"], sig)  # m 2^(top + fa) < 2^62
        ms = yield from powers.trunc_pow_steps(rt, mx, fa + top - F, 3)
        return (yield from _rsqrt_m_steps(rt, ms, out_bits, times_m))

    (yf,) = run(rt, main())
    return yf, bits, hold


@lookahead(elementwise=True)
def rsqrt(x: SharedTensor) -> SharedTensor:
    """1/sqrt(x) for x in [2^-10, 2^min(2f, 60 - f)) (2^32 at f = 16; rsqrt_scaled with
    hi = _rsqrt_hi(f)): rel err < 1e-3 on [2^-10, 2^12) at 16 bits, within 1 ulp above
    (1/sqrt(x) there is under 2^-6); clamped outside (32 below, about 2^-f above). 16 rounds."""
    return rsqrt_scaled(x, hi=_rsqrt_hi(x.rt.precision))[0]


def rsqrt_scaled(x: SharedTensor, lo: int = RSQRT_LO, hi: int = RSQRT_HI, extra: int = 0,
           scale: float = 1.0, scale_bits: int = 0, wide: bool = False) -> tuple[SharedTensor, SharedTensor]:
    """scale * rsqrt(x) (at f + extra fractional bits, extra <= (hi + 2) / 2) and x clamped
    from above (x times the first stays bounded, 0 at 0), for x in [2^lo, 2^hi) (lo, hi even;
    one comparison row per factor of 4 between them; hi <= _hi_max(f)). x may carry more fractional
    bits than f (fa) when `wide` and 2^(hi + 2 + fa) < 2^62 (else it is truncated to f); the
    public `scale` rides in the final product's weights at `scale_bits` more bits."""
    rt, f = x.rt, x.rt.precision
    wide = wide and x.fbits > f and hi + 2 + x.fbits <= 61
    fa = x.fbits if wide else f
    A = x.share if wide else at_f_share(x)
    with rt.scope("rsqrt"):
        yf, bits, hold = _rsqrt_normalized(rt, A, fa, lo, hi, f)
        top = hi + 2
        # rsqrt(a) = rsqrt(m) half / 2^(top/2)
        half = _indicator_weights(rt, bits, hold["ks"],
                                  lambda k: int(round(scale * 2 ** ((top - k) // 2 + scale_bits))))
        (out,) = run(rt, _then_trunc(rt, yf, half, top // 2 - extra + scale_bits))
    return SharedTensor(rt, out, f + extra), SharedTensor(rt, hold["clamped_top"], fa)


@lookahead(elementwise=True)
def sqrt(x: SharedTensor) -> SharedTensor:
    """sqrt(x) for x in [2^-f, 2^(60 - f)) (2^44 at f = 16, the even top _hi_max(f); 0 for
    x <= 0): rel err < 1e-3 on [2^-10, 2^44) at 16 bits (1e-4 plus the last ulp at any f),
    clamped to about 2^(30 - f/2) above. 16 rounds.

    The normalization by powers of four from 2^lo = 2^-f (-(f + 1) for odd f: the bucket below
    it holds only x <= 0) gives m = x 2^-k in [1/4, 1); sqrt(m) = m rsqrt(m) at SQRT_BITS,
    then sqrt(x) = sqrt(m) 2^((k - lo)/2) 2^(lo/2): the public weight of m's bucket (0 for
    the bucket below 2^lo) and a truncation by SQRT_BITS - f - lo/2. (x rsqrt(x) does not
    scale: rsqrt of a large x falls below the resolution.)"""
    rt, f = x.rt, x.rt.precision
    lo, hi = -(f + f % 2), _hi_max(f)
    A = at_f_share(x)
    with rt.scope("sqrt"):
        s, bits, hold = _rsqrt_normalized(rt, A, f, lo, hi, SQRT_BITS, times_m=True)
        # s < 1.01 at SQRT_BITS times w < 2^((hi + 2 - lo) / 2) <= 2^31: below 2^56
        w = _indicator_weights(rt, bits, hold["ks"], lambda k: 0 if k == lo else 2 ** ((k - lo) // 2))
        (out,) = run(rt, _then_trunc(rt, s, w, SQRT_BITS - f - lo // 2))
    return SharedTensor(rt, out, f)

"""sqrt over the whole range the fixed-point format allows, rsqrt up to 2^min(2f, 60 - f)
(protocols.reciprocal), against float64 at the input the parties hold (rounded to the grid).

sqrt used to be x rsqrt(x) over [2^-10, 2^14) and clamp above: std, norm and torch.sqrt
returned ~128 for anything above 16384 under the root. Now, at f fractional bits:
* sqrt: |err| <= 2e-4 |ref| + 2 ulp on [2^-f, 2^hi), hi = 60 - f rounded down to even
  (2^44 at f = 16), rel < 1e-3 on [2^-10, 2^hi) from f = 16; exactly 0 for x <= 0; about
  2^(hi/2) above 2^hi (bounded, never wraps, up to the format's 2^(62 - f));
* rsqrt: the same tolerance (plus 2^(1 - f) relative: rsqrt(m) is held at f bits) on
  [2^-10, 2^min(2f, 60 - f)); bounded outside;
* both 16 rounds; std / norm / torch.sqrt through the model importer.
Parties are threads over the in-memory transport (mpcrt.launch.inprocess.run_parties).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from mpcrt.launch.inprocess import run_parties
from test_nn import _run_models

PRECS = [12, 16, 20, 24]
# rsqrt(m) in (1, 2] is held at f bits before the bucket's weight: 2^(1-f) relative more
RSQRT_REL = lambda f: 2e-4 + 2.0 ** (1 - f)  # noqa: E731


def run(fn, *args, precision=16):
    return run_parties(fn, 2, *args, precision=precision, timeout=60.0, join_timeout=300)


def sqrt_hi(f: int) -> int:
    return (60 - f) - (60 - f) % 2


def rsqrt_hi(f: int) -> int:
    return max(14, min(2 * f, sqrt_hi(f)))


def q(a, f: int) -> np.ndarray:
    """a rounded to the f-bit grid (what the parties hold)."""
    return np.rint(np.asarray(a, np.float64) * 2.0**f) / 2.0**f


def apply(rt, name, xs):
    """Share xs from party 0, apply `name`; (revealed result, rounds used)."""
    x = rt.share(xs if rt.rank == 0 else None, src=0)
    r0 = rt.stats()["rounds"]
    y = getattr(x, name)()
    r = rt.stats()["rounds"] - r0
    return y.reveal(), r


def assert_close(got, ref, f, x, what, rel=2e-4, ulps=2.0):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape and np.all(np.isfinite(got)), what
    err = np.abs(got - ref)
    tol = rel * np.abs(ref) + ulps * 2.0**-f
    bad = np.flatnonzero(err > tol)
    if bad.size:
        i = bad[np.argmax((err / tol)[bad])]
        raise AssertionError(f"{what} at f={f}: {bad.size} of {ref.size} out of tolerance; worst x={x[i]!r}: "
                             f"got {got[i]!r}, want {ref[i]!r}, err {err[i]:.3g} > {tol[i]:.3g}")


@pytest.mark.parametrize("f", PRECS)
def test_sqrt_and_rsqrt_log_uniform_over_the_whole_range(f):
    """Log-uniform x over [2^-10, 2^hi) (sqrt) and [2^-10, 2^rsqrt_hi) (rsqrt), plus
    [2^-f, 2^-10) for sqrt: within 2e-4 relative + 2 ulp; rel < 1e-3 from f = 16 (sqrt
    on the whole range, rsqrt on [2^-10, 2^12)); 16 rounds each."""
    rng = np.random.default_rng(f)
    xs = np.exp2(rng.uniform(-10, sqrt_hi(f), 6000))
    tiny = np.exp2(rng.uniform(-f, -10, 500))
    xr = np.exp2(rng.uniform(-10, rsqrt_hi(f), 6000))

    def fn(rt):
        s, rs = apply(rt, "sqrt", xs)
        st, _ = apply(rt, "sqrt", tiny)
        r, rr = apply(rt, "rsqrt", xr)
        return s, st, r, rs, rr

    s, st, r, rs, rr = run(fn, precision=f)[0]
    assert (rs, rr) == (16, 16)
    ref = np.sqrt(q(xs, f))
    assert_close(s, ref, f, xs, "sqrt")
    assert_close(st, np.sqrt(q(tiny, f)), f, tiny, "sqrt below 2^-10")
    rref = 1 / np.sqrt(q(xr, f))
    assert_close(r, rref, f, xr, "rsqrt", rel=RSQRT_REL(f))
    if f >= 16:
        assert np.max(np.abs(s - ref) / ref) < 1e-3
        low = xr < 2.0**12
        assert np.max(np.abs(r - rref)[low] / rref[low]) < 1e-3


@pytest.mark.parametrize("f", PRECS)
def test_sqrt_rsqrt_edges_and_beyond_the_range(f):
    """0 and negatives: sqrt exactly 0; 1-3 ulp, 2^-10, 2^14 +- 1 ulp, 2^hi - 1 ulp: within
    tolerance; 2^hi up to the format's top (2^(62 - f) - 1): sqrt about 2^(hi/2), never above
    sqrt(x), never wrapped; rsqrt bounded above its range and about 32 below 2^-10."""
    u, hi, rh = 2.0**-f, sqrt_hi(f), rsqrt_hi(f)
    inside = np.array([u, 2 * u, 3 * u, 2.0**-10, 1.0, 2.0**14 - u, 2.0**14, 2.0**14 + u,
                       2.0**hi - 2.0**(hi // 2), 2.0**hi - u])
    above = np.array([2.0**hi, 2.0**hi + 1, 2.0**(61 - f), 2.0**(62 - f) - 1])
    nonpos = np.array([0.0, -u, -1.0, -(2.0**20), -(2.0**(61 - f))])
    r_in = np.array([2.0**-10, 1.0, 2.0**12, 2.0**14 - u, 2.0**14, 2.0**14 + u, 2.0**rh - 2.0**(rh // 2)])
    r_out = np.array([2.0**rh, 2.0**(rh + 1), 2.0**(62 - f) - 1])
    r_low = np.array([2.0**-11, u, 0.0, -1.0])

    def fn(rt):
        return [apply(rt, nm, v)[0] for nm, v in (("sqrt", inside), ("sqrt", above), ("sqrt", nonpos),
                                                  ("rsqrt", r_in), ("rsqrt", r_out), ("rsqrt", r_low))]

    s_in, s_out, s_np, r_i, r_o, r_l = run(fn, precision=f)[0]
    assert_close(s_in, np.sqrt(q(inside, f)), f, inside, "sqrt at the edges")
    assert np.all(s_np == 0), f"sqrt of x <= 0: {s_np}"
    top = 2.0 ** (hi // 2)
    ok = (s_out >= top * (1 - 1e-3)) & (s_out <= top * (1 + 1e-3)) & (s_out <= np.sqrt(above))
    assert np.all(ok), f"sqrt above 2^{hi} not clamped to ~2^{hi // 2}: {dict(zip(above, s_out))}"
    assert_close(r_i, 1 / np.sqrt(q(r_in, f)), f, r_in, "rsqrt at the edges", rel=RSQRT_REL(f))
    ok = (r_o >= 0) & (r_o <= 2.0 ** (-rh / 2) * (1 + 1e-3) + 2 * u)
    assert np.all(ok), f"rsqrt above 2^{rh} out of bounds: {dict(zip(r_out, r_o))}"
    ok = (r_l >= 31) & (r_l <= 37)
    assert np.all(ok), f"rsqrt below 2^-10 not clamped to ~32: {dict(zip(r_low, r_l))}"


class _Roots(nn.Module):
    def forward(self, x):
        return torch.cat([x.std(dim=1, keepdim=True), x.norm(dim=1, keepdim=True),
                          torch.sqrt((x * x).sum(dim=1, keepdim=True) * 1000.0)], 1)


def test_std_norm_sqrt_through_the_model_importer():
    """An imported model's x.std(dim=1), x.norm(dim=1) and torch.sqrt on rows in the hundreds
    (variances ~1e5, sums of squares ~1e6, ~1e9 under the last root): rel 1e-3 of torch
    (std of [100, 400, 700, 1000] is 387.3, not 128)."""
    rng = np.random.default_rng(7)
    x = torch.tensor(np.concatenate([[[100.0, 400.0, 700.0, 1000.0], [10.0, 20.0, 30.0, 40.0]],
                                     rng.uniform(0, 1000, (6, 4))]), dtype=torch.float32)
    with torch.no_grad():
        ref = _Roots()(x).double().numpy()

    got = run(lambda rt: _run_models(rt, [_Roots()], [x])[0])[1]
    assert got.shape == ref.shape
    err = np.abs(got - ref)
    assert np.all(err <= 1e-3 * np.abs(ref) + 1e-2), (got, ref)
    assert abs(got[0, 0] - 387.298) < 0.4

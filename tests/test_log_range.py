"""log over every positive value of the fixed-point format (protocols.reciprocal), against
float64 at the input the parties hold (rounded to the grid).

log used to normalize x by powers of 2 over [2^-10, 2^14) only and clamp outside: the log of
anything above 16384 (counts, prices, a sum of many exponentials) came back as ln 16384 = 9.7.
Now, at f fractional bits:
* x in [2^-f, 2^(62 - f)) (the whole format): |err| <= 3.5e-4 + 2 ulp (2.2e-4 is the fit's),
  below 3.5e-4 from f = 16 (the old log: 5.3e-4 on [2^-10, 2^14) at 16 bits, 1.1e-3 at 12);
* x <= 0: ln 2^-(f + 1) (reciprocal.log_at_zero), the log of half an ulp;
* ring values past the format's top, [2^(62 - f), 2^(63 - f)): bounded, in
  [ln 2^(62 - f), ln 2^(62 - f) + 2.5], never wrapped;
* 10 rounds; torch.log through the model importer.
Parties are threads over the in-memory transport (mpcrt.launch.inprocess.run_parties).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mpcrt.launch.inprocess import run_parties
from mpcrt.protocols import reciprocal
from mpcrt.protocols.shared import SharedTensor
from test_nn import _run_models

PRECS = [12, 16, 20, 24]
FIT = 2.2e-4  # log_fit's max error on [1/4, 1]
TOL = 3.5e-4  # plus 2 ulp: the fit, m at 17 bits, t at 16 bits, the last truncation


def run(fn, *args, precision=16):
    return run_parties(fn, 2, *args, precision=precision, timeout=60.0, join_timeout=300)


def q(a, f: int) -> np.ndarray:
    """a rounded to the f-bit grid (what the parties hold)."""
    return np.rint(np.asarray(a, np.float64) * 2.0**f) / 2.0**f


def log_of_ring(R, f: int) -> np.ndarray:
    """ln(R / 2^f) for ring values R > 0 (exact integers, also beyond float64's 53 bits)."""
    return np.array([math.log(int(r)) - f * math.log(2) for r in R])


def apply_log(rt, xs):
    """Share xs from party 0, take its log; (revealed result, rounds used)."""
    x = rt.share(xs if rt.rank == 0 else None, src=0)
    r0 = rt.stats()["rounds"]
    y = x.log()
    r = rt.stats()["rounds"] - r0
    return y.reveal(), r


def log_ring(rt, R, f: int):
    """log of the tensor whose ring value (at f bits) is R: party 0 holds R, the others 0
    (a valid sharing; it reaches values rt.share refuses, past the format's top)."""
    R = np.asarray(R, np.int64)
    x = SharedTensor(rt, R.copy() if rt.rank == 0 else np.zeros_like(R), f)
    return reciprocal.log(x).reveal()


def assert_close(got, ref, f, x, what, tol=TOL, ulps=2.0):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape and np.all(np.isfinite(got)), what
    err = np.abs(got - ref)
    lim = tol + ulps * 2.0**-f
    bad = np.flatnonzero(err > lim)
    if bad.size:
        i = bad[np.argmax(err[bad])]
        raise AssertionError(f"{what} at f={f}: {bad.size} of {ref.size} out of tolerance; worst x={x[i]!r}: "
                             f"got {got[i]!r}, want {ref[i]!r}, err {err[i]:.3g} > {lim:.3g}")


def test_the_fit_log_evaluates_on_m():
    """Q(P(m - 1)) with the module's (grid-rounded) coefficients: within 2.2e-4 of log m on [1/4, 1]."""
    m = np.linspace(0.25, 1.0, 200001)
    assert np.max(np.abs(reciprocal.log_fit(m) - np.log(m))) < FIT + 1e-6


@pytest.mark.parametrize("f", PRECS)
def test_log_log_uniform_over_the_whole_format(f):
    """Log-uniform x over [2^-f, 2^(62 - f)): within 3.5e-4 + 2 ulp of float64 (below 3.5e-4
    from f = 16), in 10 rounds; also inputs in the tens of thousands and 2^-10..2^14, the old range."""
    rng = np.random.default_rng(f)
    xs = np.exp2(rng.uniform(-f, 62 - f, 6000))
    mid = np.concatenate([rng.uniform(1e4, 1e5, 500), np.exp2(rng.uniform(-10, 14, 500))])

    def fn(rt):
        y, r = apply_log(rt, xs)
        ym, _ = apply_log(rt, mid)
        return y, ym, r

    y, ym, r = run(fn, precision=f)[0]
    assert r == 10
    ref = np.log(q(xs, f))
    assert_close(y, ref, f, xs, "log")
    assert_close(ym, np.log(q(mid, f)), f, mid, "log in the tens of thousands")
    if f >= 16:
        assert np.max(np.abs(y - ref)) < TOL
    assert abs(float(ym[0]) - math.log(mid[0])) < 1e-3 and ym[0] > 9.3  # not ln 16384 = 9.70 any more


@pytest.mark.parametrize("f", PRECS)
def test_log_edges_every_bucket_and_outside(f):
    """Ring values (at f bits) 1, 2, 3 ulp, 2^-10, 1 +- 1 ulp, 2^14 +- 1 ulp, both sides of every
    power of two up to the format's top 2^62 - 1 (2^(62 - f) - 1 ulp): within tolerance; x <= 0
    (0, -1 ulp, -1, -2^20, the format's bottom): ln 2^-(f + 1); ring values past the top up to
    2^63 - 1: bounded in [ln 2^(62 - f), + 2.5]."""
    one = 1 << f
    inside = [1, 2, 3, one >> 10 or 1, one - 1, one, one + 1, (one << 14) - 1, one << 14, (one << 14) + 1,
              (1 << 62) - one, (1 << 62) - 1]
    for j in range(1, 62):  # both sides of every threshold and bucket edge
        inside += [(1 << j) - 1, 1 << j, (1 << j) + 1]
    inside = np.array(sorted(set(inside)), np.int64)
    nonpos = np.array([0, -1, -one, -(one << 20), -((1 << 62) - 1)], np.int64)
    beyond = np.array([1 << 62, (1 << 62) + (1 << 61), (1 << 63) - 1], np.int64)

    def fn(rt):
        return [log_ring(rt, v, f) for v in (inside, nonpos, beyond)]

    y_in, y_np, y_out = run(fn, precision=f)[0]
    assert_close(y_in, log_of_ring(inside, f), f, inside / 2.0**f, "log at the edges")
    zero = reciprocal.log_at_zero(f)
    assert np.all(np.abs(y_np - zero) <= 1e-4 + 2 * 2.0**-f), f"log of x <= 0, want {zero}: {y_np}"
    top = (62 - f) * math.log(2)
    ok = np.isfinite(y_out) & (y_out >= top - 1e-3) & (y_out <= top + 2.5)
    assert np.all(ok), f"log past the format's top not within [{top}, {top + 2.5}]: {y_out}"


class _Logs(nn.Module):
    def forward(self, x):
        return torch.cat([torch.log(x), torch.log(x.sum(dim=1, keepdim=True)), x.log_softmax(dim=1)], 1)


def test_torch_log_through_the_model_importer():
    """An imported model's torch.log of counts in the tens of thousands (and of their row
    sums, ~2e5): within 1e-3 of torch (log 50000 is 10.82, not 9.70); log_softmax within 1e-2."""
    rng = np.random.default_rng(3)
    x = torch.tensor(np.concatenate([[[50000.0, 20000.0, 90000.0, 16384.0]], rng.uniform(1e4, 1e5, (5, 4))]),
                     dtype=torch.float32)
    with torch.no_grad():
        ref = _Logs()(x).double().numpy()

    got = run(lambda rt: _run_models(rt, [_Logs()], [x])[0])[1]
    assert got.shape == ref.shape
    assert np.all(np.abs(got[:, :5] - ref[:, :5]) <= 1e-3), (got, ref)
    assert np.all(np.abs(got[:, 5:] - ref[:, 5:]) <= 1e-2), (got, ref)  # log_softmax, values to -9e4
    assert abs(got[0, 0] - math.log(50000.0)) < 1e-3

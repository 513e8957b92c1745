"""Division by a public integer (protocols.division) against exact integers, and the SharedTensor
ops built on it (mean, x / d, avg pooling) against float64 and torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mpcrt.errors import DealerError
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn.layers import SharedOps
from mpcrt.protocols import division

NS = [2, 3]
HSET = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.reuse, Phase.generate])
EDGE = [0, 1, -1, 2, -2, 2**62 - 2**40 - 1, -(2**62) + 2**40 + 1, 2**61, -(2**61), 3 * 2**60, -3 * 2**60,
        2**40 + 7, -(2**40) - 7]


def run(fn, n, *args):
    return run_parties(fn, n, *args, precision=16, timeout=20.0, join_timeout=40)


def _div_program(rt, vals, d):
    x = rt.share_ring(np.array(vals, np.int64) if rt.rank == 0 else None, src=0, fbits=0)
    r0 = rt.stats()["rounds"]
    y = division.divide(rt, x.share, d)
    r1 = rt.stats()["rounds"]
    (out,) = rt.open([y])
    return out, r1 - r0


def _check(vals, d, out):
    for v, got in zip(vals, out.tolist()):
        assert got - v // d in (0, 1), f"divide({v}, {d}) = {got}, floor {v // d}"  # // floors, also below 0
        if v % d == 0:  # multiples of d, 0 among them, divide exactly
            assert got == v // d, f"divide({v}, {d}) = {got}"


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("d", [3, 7, 10, 2**20 + 1, 2**40 - 1, 2**40])
def test_divide_within_two_units_near_the_bounds(n, d):
    # each value many times: every copy gets its own mask r, also masks that wrap
    vals = [v for v in EDGE + [d, -d, d - 1, 1 - d, 5 * d + 1] for _ in range(40)]
    res = run(_div_program, n, vals, d)
    out = res[0][0]
    for r in res[1:]:
        np.testing.assert_array_equal(r[0], out)
    _check(vals, d, out)
    assert all(r[1] == 1 for r in res)  # one round


@HSET
@given(st.sampled_from(NS), st.integers(2, 2**40),
       st.lists(st.integers(-(2**62) + 2**40 + 1, 2**62 - 2**40 - 1), min_size=1, max_size=30))
def test_divide_hypothesis(n, d, vals):
    vals = vals * 8
    _check(vals, d, run(_div_program, n, vals, d)[0][0])


@pytest.mark.parametrize("p", [{"shape": [3], "d": 1}, {"shape": [3], "d": 2**40 + 1}, {"shape": [3], "d": 2.5},
                               {"shape": [3]}, {"shape": [-1], "d": 3}])
def test_a_bad_division_request_is_a_dealer_error(p):
    with pytest.raises(DealerError):
        division.DivPair().corrected(p)


def test_dealer_values_are_r_div_d_and_msb():
    r = np.array([0, 1, -1, 2**62, -(2**62), 12345678901234], np.int64)
    got = division.DivPair().deal({"shape": [6], "d": 7}, {"r": r}, None, None)
    u = [int(v) % 2**64 for v in r.tolist()]
    assert [int(q) % 2**64 for q in got["q"].tolist()] == [v // 7 for v in u]
    assert got["r_msb"].tolist() == [v >> 63 for v in u]


def _ops_program(rt, x, pix):
    F = SharedOps()
    X = rt.share(x if rt.rank == 0 else None, src=0)
    P = rt.share(pix if rt.rank == 0 else None, src=0)
    m = (X > 0)  # 0/1 at 0 fractional bits
    return (X.mean().reveal(), X.mean(dim=1).reveal(), (X / 3).reveal(), (X / -7.0).reveal(), (X / 2.5).reveal(),
            m.mean().reveal(), (m.sum() / 3).reveal(), F.avg_pool2d(P, 3).reveal(), F.avg_pool2d(P, 3, 2).reveal(),
            F.adaptive_avg_pool2d(P, 1).reveal())


def test_mean_and_public_integer_division_keep_every_bit():
    """mean over 3 of 1e4 was 9999.85 (1/3 at 16 bits); now within 1 ulp of float64, also for integer
    tensors, for x / 3 and x / -7; x / 2.5 is x * 2 / 5; average pools divide exactly too."""
    x = np.array([[1e4, 1e4, 1e4], [1.0, 2.0, 4.0], [-30000.5, 123.25, 7.0]])
    pix = np.arange(81, dtype=np.float64).reshape(1, 1, 9, 9) * 3.0
    out = run(_ops_program, 2, x, pix)[0]
    u = 2.0**-16 * 1.001  # one ulp (the float64 references round too)
    assert abs(out[0] - x.mean()) <= u
    np.testing.assert_allclose(out[1], x.mean(axis=1), atol=u, rtol=0)
    np.testing.assert_allclose(out[2], x / 3, atol=u, rtol=0)
    np.testing.assert_allclose(out[3], x / -7, atol=u, rtol=0)
    np.testing.assert_allclose(out[4], x / 2.5, atol=u, rtol=0)  # 2/5: x * 2, then / 5
    assert abs(out[5] - (x > 0).mean()) <= u
    assert abs(out[6] - (x > 0).sum() / 3) <= u
    t = torch.tensor(pix)
    for got, want in zip(out[7:], (TF.avg_pool2d(t, 3), TF.avg_pool2d(t, 3, 2), TF.adaptive_avg_pool2d(t, 1))):
        np.testing.assert_allclose(got, want.numpy(), atol=u, rtol=0)

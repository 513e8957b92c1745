"""Runtime.lookahead: a repeated call announces its recorded dealer requests up front;
a run that leaves the recorded plan abandons the rest and stays correct."""
from __future__ import annotations

import numpy as np
import pytest

from mpcrt.launch.inprocess import run_parties


def _count_sends(rt):
    calls = []
    orig = rt.dealer._dispatch
    rt.dealer._dispatch = lambda batch: (calls.append(len(batch)), orig(batch))[1]
    return calls


@pytest.mark.parametrize("n", [2, 3])
def test_second_call_announces_its_plan_and_agrees(n):
    vals = np.array([0.5, -3.0, 7.25, 100.0, -0.02])

    def prog(rt):
        x = rt.share(vals if rt.rank == 0 else None, src=0)
        calls = _count_sends(rt)
        first = x.reciprocal().reveal()
        k1 = len(calls)
        second = x.reciprocal().reveal()
        return first, second, k1, calls[k1:]

    res = run_parties(prog, n, timeout=20, join_timeout=60)
    for first, second, _, _ in res:
        np.testing.assert_allclose(first, 1 / vals, rtol=2e-3)
        np.testing.assert_allclose(second, first, atol=2e-4)
    _, _, k1, later = res[0]  # party 0 is the one that sends the requests
    assert k1 > 5, "the first call asks on demand, request by request"
    assert len(later) == 1 and later[0] == k1, "the second call sends its whole plan in one batch"


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("cap_mb", [2048, 0])  # 0: the plan is numbered but asked for on demand
def test_a_run_that_leaves_the_plan_abandons_it_and_stays_correct(n, cap_mb, monkeypatch):
    from mpcrt import runtime

    monkeypatch.setattr(runtime, "LOOKAHEAD_MB", cap_mb)
    a = np.array([1.5, -2.0, 0.25, -7.0])

    def prog(rt):
        x = rt.share(a if rt.rank == 0 else None, src=0)
        with rt.lookahead("block"):
            y1 = (x * x).reveal()
        with rt.lookahead("block"):  # same key, other requests: the announced plan is dropped
            y2 = x.relu().reveal()
            y3 = (x * 3.5 * x).reveal()
        y4 = (x * x).reveal()  # later requests still line up with the dealer's numbering
        return y1, y2, y3, y4

    for y1, y2, y3, y4 in run_parties(prog, n, timeout=20, join_timeout=60):
        np.testing.assert_allclose(y1, a * a, atol=1e-4)
        np.testing.assert_allclose(y2, np.maximum(a, 0), atol=1e-4)
        np.testing.assert_allclose(y3, 3.5 * a * a, atol=1e-3)
        np.testing.assert_allclose(y4, a * a, atol=1e-4)


def test_a_plan_above_the_memory_cap_is_not_announced(monkeypatch):
    from mpcrt import runtime

    monkeypatch.setattr(runtime, "LOOKAHEAD_MB", 0)
    vals = np.array([2.0, -4.0])

    def prog(rt):
        x = rt.share(vals if rt.rank == 0 else None, src=0)
        calls = _count_sends(rt)
        x.reciprocal().reveal()
        k1 = len(calls)
        y = x.reciprocal().reveal()
        return y, k1, len(calls) - k1

    res = run_parties(prog, 2, timeout=20, join_timeout=60)
    for y, _, _ in res:
        np.testing.assert_allclose(y, 1 / vals, rtol=2e-3)
    _, k1, k2 = res[0]
    assert k1 == k2 > 5, "both calls ask on demand, request by request"


def test_prefetch_inside_an_announced_block_supersedes_it():
    a = np.array([0.5, -1.25, 3.0])

    def prog(rt):
        x = rt.share(a if rt.rank == 0 else None, src=0)
        with rt.lookahead("blk"):
            y1 = (x * x).reveal()
        with rt.lookahead("blk"):  # announced: the same multiply; a prefetch comes first
            rt.preprocess(lambda: x.relu())
            y2 = x.relu().reveal()
            y3 = (x * x).reveal()
        left = len(rt.dealer._corr) + len(rt.dealer._announced)
        return y1, y2, y3, left

    for y1, y2, y3, left in run_parties(prog, 2, timeout=20, join_timeout=60):
        np.testing.assert_allclose(y1, a * a, atol=1e-4)
        np.testing.assert_allclose(y2, np.maximum(a, 0), atol=1e-4)
        np.testing.assert_allclose(y3, a * a, atol=1e-4)
        assert left == 0, "abandoned replies must not stay behind"


def test_elementwise_plan_guess_matches_the_real_requests():
    """A first call's plan comes from a one-element dry run with the sizes scaled up: it
    must equal what a dry run on the real shape asks for, for every elementwise function."""
    from mpcrt.protocols import exp, reciprocal
    from mpcrt.protocols.lookahead import _elementwise_plan
    from mpcrt.tensor import SharedTensor

    fns = {nm: getattr(mod, nm) for mod, names in ((exp, ["exp", "sigmoid", "tanh"]),
                                                   (reciprocal, ["reciprocal", "log", "rsqrt", "sqrt"]))
           for nm in names}

    def prog(rt):
        bad = []
        for shape in [(), (5,), (3, 70), (4097,)]:
            x = SharedTensor(rt, np.zeros(shape, np.int64), rt.precision)
            for nm, wrapped in fns.items():
                fn = wrapped.__wrapped__
                if _elementwise_plan(fn, x, (), {}) != rt.plan(fn, x):
                    bad.append((nm, shape))
        return bad

    for bad in run_parties(prog, 2, timeout=30, join_timeout=60):
        assert bad == []


def test_first_large_call_is_announced_whole():
    vals = np.linspace(-20, 20, 5000)

    def prog(rt):
        x = rt.share(vals if rt.rank == 0 else None, src=0)
        calls = _count_sends(rt)
        y = x.sigmoid().reveal()
        return y, calls

    res = run_parties(prog, 2, timeout=30, join_timeout=60)
    for y, _ in res:
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-vals)), atol=1e-3)
    assert len(res[0][1]) == 1, "one batch: the whole plan at the start"

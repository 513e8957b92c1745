"""Protocols against a float64 reference, with parties as threads over real ZeroMQ/CURVE.

Every test runs a real session through `mpcrt.launch.inprocess.run_parties` (the
dealer and N parties, CurveZMQ on loopback) for N in {2, 3, 5}. Hypothesis examples
are few (each runs a whole protocol) and have no deadline.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import mpcrt
from mpcrt import ConfigError, ProtocolError, ShapeError
from mpcrt.protocols import fixedpoint
from mpcrt.launch.inprocess import run_parties
from mpcrt.protocols import truncation

NS = [2, 3, 5]
# few examples, no deadline, and no shrinking: a failing protocol example is reported as
# found (shrinking would rerun whole sessions many times)
HSET = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.reuse, Phase.generate])


def run(fn, n, *args, precision=16, timeout=15.0):
    """fn(rt, *args) on n parties; bounded in time (a hang fails the test, never blocks it)."""
    return run_parties(fn, n, *args, precision=precision, timeout=timeout, join_timeout=40)


def ulp(f=16):
    return 2.0**-f


def close(got, want, tol):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= tol, f"max error {err} > {tol}"


def all_equal(results):
    first = results[0]
    for r in results[1:]:
        np.testing.assert_array_equal(r, first)
    return first


def rounds(rt):
    return rt.stats()["rounds"]


def inputs(seed, *shapes, lo=-4.0, hi=4.0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(lo, hi, size=s) for s in shapes]


def share(rt, value, src):
    return rt.share(value if rt.rank == src else None, src=src)


# ------------------------------------------------------------------ share / reveal
@pytest.mark.parametrize("n", NS)
def test_share_and_reveal_to_all_and_to_one(n):
    (a,) = inputs(n, (3, 4))

    def fn(rt):
        src = n - 1
        x = share(rt, a, src)
        r0 = rounds(rt)
        everyone = x.reveal()
        r1 = rounds(rt)
        only1 = x.reveal(to=1)
        r2 = rounds(rt)
        f32 = x.reveal(dtype=np.float32)
        return everyone, only1, x.share, f32, (r1 - r0, r2 - r1)

    res = run(fn, n)
    everyone = all_equal([r[0] for r in res])
    close(everyone, a, ulp() / 2)
    assert res[1][1] is not None
    close(res[1][1], a, ulp() / 2)
    assert all(r[1] is None for i, r in enumerate(res) if i != 1)
    assert all(r[3].dtype == np.float32 for r in res)
    # the shares are additive: they sum (mod 2^64) to the encoding, and none of them is it
    enc = fixedpoint.encode(a, 16)
    total = sum((r[2] for r in res[1:]), res[0][2].copy())
    assert np.array_equal(total, enc)
    assert all(not np.array_equal(r[2], enc) for r in res)
    assert all(r[4] == (1, 1) for r in res)  # reveal: 1 round; reveal(to=): 1 round


@HSET
@given(st.sampled_from(NS), st.integers(0, 4), st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=6))
def test_share_reveal_hypothesis(n, src, vals):
    src = src % n
    a = np.array(vals)
    res = run(lambda rt: share(rt, a, src).reveal(), n)
    close(all_equal(res), a, ulp() / 2)


def test_share_accepts_torch_tensors():
    t = torch.tensor([[1.5, -2.25], [0.125, 3.0]])

    def fn(rt):
        x = rt.share(t if rt.rank == 0 else None, src=0)
        return x.reveal(), x.shape

    res = run(fn, 2)
    close(res[0][0], t.numpy(), 0)
    assert res[0][1] == res[1][1] == (2, 2)


def test_share_of_a_scalar_is_0_d():
    """Like torch.tensor(2.5), a shared Python scalar has shape () on every party."""

    def fn(rt):
        s = rt.share(2.5 if rt.rank == 1 else None, src=1)
        return s.shape, s.reveal()

    res = run(fn, 2)
    assert [r[0] for r in res] == [(), ()]
    close(res[0][1], 2.5, 0)


def test_0_d_products_wrap_without_overflow_warnings(recwarn):
    """Ring arithmetic wraps on purpose: 0-d products (dot products, scalar times scalar) must
    not turn into numpy-scalar arithmetic that warns 'overflow encountered'. Each truncation
    overflows with probability about 1/4 (random masks), so 16 of them nearly surely show it."""
    a, b = inputs(4, (4,), (4,))

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        return [(x @ y).reveal() for _ in range(8)] + [(x.sum() * 0.5).reveal() for _ in range(8)]

    res = run(fn, 2)
    for got in res[0][:8]:
        close(got, a @ b, 40 * ulp())
    for got in res[0][8:]:
        close(got, a.sum() * 0.5, 8 * ulp())
    overflow = [str(w.message) for w in recwarn.list
                if issubclass(w.category, RuntimeWarning) and "overflow" in str(w.message)]
    assert overflow == [], overflow[:3]


@pytest.mark.parametrize("n", [2, 3])
def test_reveal_to_one_party_of_a_0_d_result(n):
    """x.sum() is 0-d; revealing it to one party must work like revealing it to all."""
    (a,) = inputs(3, (4,))

    def fn(rt):
        s = share(rt, a, 1).sum()
        assert s.shape == ()
        return s.reveal(), s.reveal(to=0)

    res = run(fn, n, timeout=10)
    close(res[0][0], a.sum(), 4 * ulp())
    close(res[0][1], a.sum(), 4 * ulp())
    assert all(r[1] is None for r in res[1:])


# ------------------------------------------------------------------ linear ops
@pytest.mark.parametrize("n", NS)
def test_add_sub_neg_and_public_operands(n):
    a, b, p = inputs(10 + n, (2, 3), (2, 3), (3,))

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, n - 1)
        r0 = rounds(rt)
        outs = [x + y, x - y, -x, x + 1.5, 1.5 + x, x - 2.0, 2.0 - x, x + p, x - p, p + x, 3 + x, x - 3]
        assert rounds(rt) == r0  # all local
        return [o.reveal() for o in outs]

    res = run(fn, n)
    want = [a + b, a - b, -a, a + 1.5, 1.5 + a, a - 2.0, 2.0 - a, a + p, a - p, p + a, 3 + a, a - 3]
    for i, w in enumerate(want):
        close(all_equal([r[i] for r in res]), w, 3 * ulp())


@pytest.mark.parametrize(
    "public",
    [np.array([1, 2], np.uint8), np.array([1, 2], np.uint64), np.array([True, False])],
    ids=["uint8", "uint64", "bool"],
)
def test_subtract_unsigned_and_boolean_public_arrays(public):
    """x - p must be x - p for every integer dtype (an image is uint8): no unsigned wrap-around."""
    a = np.array([10.0, 20.0])
    p = public.astype(np.float64)

    def fn(rt):
        x = share(rt, a, 0)
        return (x - public).reveal(), (public - x).reveal(), (x + public).reveal()

    res = run(fn, 2)
    close(res[0][0], a - p, ulp())
    close(res[0][1], p - a, ulp())
    close(res[0][2], a + p, ulp())


@pytest.mark.parametrize("n", NS)
def test_multiply_by_public_scalars_and_arrays(n):
    a, p = inputs(20 + n, (2, 3), (3,))
    q = np.array([[1.0], [-2.0]])  # integer-valued: no truncation needed

    def fn(rt):
        x = share(rt, a, 1)
        out, cost = [], []
        for op in (lambda: x * 3, lambda: -2 * x, lambda: x * q, lambda: x * 0.375, lambda: 0.375 * x,
                   lambda: x * p, lambda: p * x, lambda: x / 4.0, lambda: x / p):
            r0 = rounds(rt)
            y = op()
            cost.append(rounds(rt) - r0)
            out.append(y.reveal())
        return out, cost

    res = run(fn, n)
    want = [a * 3, -2 * a, a * q, a * 0.375, 0.375 * a, a * p, p * a, a / 4.0, a / p]
    tol = [4 * ulp(), 4 * ulp(), 4 * ulp()] + [20 * ulp()] * 6
    for i, w in enumerate(want):
        close(all_equal([r[0][i] for r in res]), w, tol[i])
    # integer public factors are local; a fractional one costs one truncation round
    assert all(r[1] == [0, 0, 0, 1, 1, 1, 1, 1, 1] for r in res)


# ------------------------------------------------------------------ Beaver multiply
MUL_SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3), (3,)), ((1,), (2, 2)), ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("sa,sb", MUL_SHAPES)
def test_beaver_multiply_with_broadcasting(n, sa, sb):
    a, b = inputs(hash((n, sa, sb)) % 1000, sa, sb)

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        r0 = rounds(rt)
        z = x * y
        r1 = rounds(rt)
        sq = x.square()
        return z.reveal(), sq.reveal(), r1 - r0, z.shape, rt.stats()["by_op"]["mul"]["rounds"]

    res = run(fn, n)
    close(all_equal([r[0] for r in res]), a * b, 20 * ulp())
    close(all_equal([r[1] for r in res]), a * a, 20 * ulp())
    assert all(r[2] == 2 for r in res)  # a multiply with truncation: exactly 2 rounds
    assert all(r[3] == np.broadcast_shapes(sa, sb) for r in res)
    assert all(r[4] == 4 for r in res)  # two multiplies attributed to "mul"


@HSET
@given(st.sampled_from(NS), st.integers(0, 10**6))
def test_beaver_multiply_hypothesis(n, seed):
    a, b = inputs(seed, (5,), (5,), lo=-100, hi=100)
    res = run(lambda rt: (share(rt, a, 0) * share(rt, b, n - 1)).reveal(), n)
    close(all_equal(res), a * b, (200 + 2) * ulp())


@pytest.mark.parametrize("n", [2, 3])
def test_multiply_large_magnitudes_never_fail(n):
    """Products up to 2^28 (ring values near 2^60): exact truncation, no rare huge errors."""
    rng = np.random.default_rng(n)
    a = rng.uniform(-(2**14), 2**14, size=400)
    b = rng.uniform(-(2**14), 2**14, size=400)
    a[:4] = [2**14 - 1, -(2**14) + 1, 2**14 - 1, -(2**14) + 1]
    b[:4] = [2**14 - 1, 2**14 - 1, -(2**14) + 1, -(2**14) + 1]
    res = run(lambda rt: (share(rt, a, 0) * share(rt, b, 1)).reveal(), n)
    close(all_equal(res), a * b, 2**15 * ulp())


@pytest.mark.parametrize("n", [2, 3])
def test_power_chain(n):
    (a,) = inputs(7, (6,), lo=-1.5, hi=1.5)

    def fn(rt):
        x = share(rt, a, 0)
        return (x**3).reveal(), (x**0).reveal(), (x * x * x * x).reveal()

    res = run(fn, n)
    close(res[0][0], a**3, 60 * ulp())
    close(res[0][1], np.ones_like(a), 0)
    close(res[0][2], a**4, 100 * ulp())


# ------------------------------------------------------------------ matmul
MATMUL_SHAPES = [
    ((3, 4), (4, 2)),
    ((2, 3, 4), (2, 4, 5)),  # batched
    ((3, 4), (2, 4, 5)),  # broadcast
    ((2, 1, 3, 4), (3, 4, 2)),  # broadcast both
    ((4,), (4, 3)),  # vector @ matrix
    ((3, 4), (4,)),  # matrix @ vector
    ((4,), (4,)),  # dot product
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_like_torch(n, sa, sb):
    a, b = inputs(hash((n, sa, sb)) % 1000, sa, sb)
    want = torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, n - 1)
        r0 = rounds(rt)
        z = x @ y
        r1 = rounds(rt)
        return z.reveal(), r1 - r0, z.shape

    res = run(fn, n)
    close(all_equal([r[0] for r in res]), want, 4 * 8 * ulp() + 2 * ulp())
    assert all(r[1] == 2 for r in res)  # matmul: 2 rounds
    assert all(r[2] == want.shape for r in res)


@pytest.mark.parametrize("n", [2, 3])
def test_matmul_with_public_operands(n):
    a, w, v = inputs(30, (3, 4), (4, 2), (5, 3))
    wi = np.array([[1, 0], [2, -1], [0, 3], [1, 1]], dtype=np.int64)

    def fn(rt):
        x = share(rt, a, 0)
        r0 = rounds(rt)
        z1 = x @ w
        r1 = rounds(rt)
        z2 = v @ x  # numpy defers to SharedTensor.__rmatmul__
        z3 = x @ wi  # integer public weight: local
        r3 = rounds(rt)
        return z1.reveal(), z2.reveal(), z3.reveal(), (r1 - r0, r3 - r1)

    res = run(fn, n)
    close(res[0][0], a @ w, 40 * ulp())
    close(res[0][1], v @ a, 40 * ulp())
    close(res[0][2], a @ wi, 8 * ulp())
    assert res[0][3] == (1, 1)


@HSET
@given(st.sampled_from(NS), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(0, 10**6))
def test_matmul_hypothesis(n, m, k, p, seed):
    a, b = inputs(seed, (m, k), (k, p), lo=-10, hi=10)
    res = run(lambda rt: (share(rt, a, 0) @ share(rt, b, 1)).reveal(), n)
    close(all_equal(res), a @ b, k * 20 * ulp() + 2 * ulp())


# ------------------------------------------------------------------ conv2d
CONV = [
    ((1, 2, 5, 5), (3, 2, 3, 3), dict()),
    ((2, 3, 6, 6), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 4, 5, 5), (4, 2, 2, 2), dict(groups=2, dilation=2)),
]


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("xs,ws,kw", CONV)
def test_conv2d_with_shared_weight(n, xs, ws, kw):
    x_, w_ = inputs(hash((xs, ws, n)) % 1000, xs, ws, lo=-2, hi=2)
    want = torch.nn.functional.conv2d(torch.from_numpy(x_), torch.from_numpy(w_), **kw).numpy()

    def fn(rt):
        x, w = share(rt, x_, 0), share(rt, w_, 1 % n)
        r0 = rounds(rt)
        z = x.conv2d(w, **kw)
        r1 = rounds(rt)
        zp = x.conv2d(w_, **kw)  # public weight
        return z.reveal(), zp.reveal(), r1 - r0

    res = run(fn, n)
    close(all_equal([r[0] for r in res]), want, 40 * ulp())
    close(all_equal([r[1] for r in res]), want, 40 * ulp())
    assert all(r[2] == 2 for r in res)


# ------------------------------------------------------------------ reductions
@pytest.mark.parametrize("n", [2, 5])
def test_sum_and_mean(n):
    (a,) = inputs(40 + n, (2, 3, 4))
    t = torch.from_numpy(a)

    def fn(rt):
        x = share(rt, a, 0)
        r0 = rounds(rt)
        sums = [x.sum(), x.sum(dim=0), x.sum(dim=-1, keepdim=True), x.sum(dim=(0, 2))]
        r1 = rounds(rt)
        means = [x.mean(), x.mean(dim=1), x.mean(dim=(0, 2), keepdim=True), x[:, :1].mean(dim=1)]
        return [s.reveal() for s in sums], [m.reveal() for m in means], r1 - r0

    res = run(fn, n)
    want_s = [t.sum(), t.sum(dim=0), t.sum(dim=-1, keepdim=True), t.sum(dim=(0, 2))]
    want_m = [t.mean(), t.mean(dim=1), t.mean(dim=(0, 2), keepdim=True), t[:, :1].mean(dim=1)]
    for got, w in zip(res[0][0], want_s):
        close(got, w.numpy(), 24 * ulp())
    for got, w in zip(res[0][1], want_m):
        # the public factor 1/n is encoded to within ulp/2, an error the sum (|s| <= 96) scales
        close(got, w.numpy(), (48 + 16) * ulp())
    assert res[0][2] == 0  # sums are local


# ------------------------------------------------------------------ shape operations
@pytest.mark.parametrize("n", [2, 3])
def test_shape_operations_follow_torch(n):
    a, b = inputs(50 + n, (2, 3, 4), (2, 3, 4))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    mask = a[0] > 0
    idx = np.array([2, 0])

    cases = [
        (lambda x, y: x.reshape(6, 4), lambda x, y: x.reshape(6, 4)),
        (lambda x, y: x.reshape((4, -1)), lambda x, y: x.reshape((4, -1))),
        (lambda x, y: x.view(-1), lambda x, y: x.view(-1)),
        (lambda x, y: x.flatten(1), lambda x, y: x.flatten(1)),
        (lambda x, y: x.transpose(0, 2), lambda x, y: x.transpose(0, 2)),
        (lambda x, y: x.permute(2, 0, 1), lambda x, y: x.permute(2, 0, 1)),
        (lambda x, y: x.permute((1, 2, 0)), lambda x, y: x.permute((1, 2, 0))),
        (lambda x, y: x.mT, lambda x, y: x.mT),
        (lambda x, y: x[0].T, lambda x, y: x[0].T),
        (lambda x, y: x[1].t(), lambda x, y: x[1].t()),
        (lambda x, y: x.unsqueeze(1), lambda x, y: x.unsqueeze(1)),
        (lambda x, y: x.unsqueeze(-1), lambda x, y: x.unsqueeze(-1)),
        (lambda x, y: x[:, :1].squeeze(), lambda x, y: x[:, :1].squeeze()),
        (lambda x, y: x[:, :1].squeeze(1), lambda x, y: x[:, :1].squeeze(1)),
        (lambda x, y: x.squeeze(0), lambda x, y: x.squeeze(0)),  # not of size 1: unchanged
        (lambda x, y: x[:1].expand(3, -1, -1), lambda x, y: x[:1].expand(3, -1, -1)),
        (lambda x, y: x.repeat(1, 2, 1), lambda x, y: x.repeat(1, 2, 1)),
        (lambda x, y: x[1], lambda x, y: x[1]),
        (lambda x, y: x[-1, 1:3], lambda x, y: x[-1, 1:3]),
        (lambda x, y: x[..., 0], lambda x, y: x[..., 0]),
        (lambda x, y: x[:, None, ::2], lambda x, y: x[:, None, ::2]),
        (lambda x, y: x[:, idx], lambda x, y: x[:, torch.from_numpy(idx)]),
        (lambda x, y: x[0][mask], lambda x, y: x[0][torch.from_numpy(mask)]),
        (lambda x, y: x[1, 2, 3], lambda x, y: x[1, 2, 3]),
        (lambda x, y: mpcrt.cat([x, y], dim=1), lambda x, y: torch.cat([x, y], dim=1)),
        (lambda x, y: mpcrt.cat([x, y, x], dim=-1), lambda x, y: torch.cat([x, y, x], dim=-1)),
        (lambda x, y: mpcrt.stack([x, y]), lambda x, y: torch.stack([x, y])),
        (lambda x, y: mpcrt.stack([x, y], dim=2), lambda x, y: torch.stack([x, y], dim=2)),
        (lambda x, y: x.pad((1, 2)), lambda x, y: torch.nn.functional.pad(x, (1, 2))),
        (lambda x, y: x.pad((0, 1, 1, 0), value=1.5), lambda x, y: torch.nn.functional.pad(x, (0, 1, 1, 0), value=1.5)),
        (lambda x, y: x.contiguous(), lambda x, y: x.contiguous()),
    ]

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        r0 = rounds(rt)
        outs = [c[0](x, y) for c in cases]
        assert rounds(rt) == r0  # every shape operation is local
        assert x.shape == (2, 3, 4) and x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
        assert x.size() == (2, 3, 4) and x.size(1) == 3
        return [(o.shape, o.reveal()) for o in outs]

    res = run(fn, n)
    for i, c in enumerate(cases):
        want = c[1](ta, tb)
        shape, got = res[0][i]
        assert shape == tuple(want.shape), (i, shape, tuple(want.shape))
        close(got, want.numpy(), ulp())


@pytest.mark.parametrize("n", [2, 3])
def test_setitem_with_shared_and_public_values(n):
    a, b = inputs(60, (3, 4), (3, 4))

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        x[0] = y[2]
        x[1, 1:3] = 2.5
        x[2] = x[2] * 0.5
        return x.reveal()

    want = a.copy()
    want[0] = b[2]
    want[1, 1:3] = 2.5
    want[2] = a[2] * 0.5
    close(run(fn, n)[0], want, 2 * ulp())


# ------------------------------------------------------------------ truncation
def _trunc_program(rt, vals, f):
    x = rt.share_ring(np.array(vals, np.int64) if rt.rank == 0 else None, src=0, fbits=0)
    r0 = rounds(rt)
    y = truncation.truncate(rt, x.share, f)
    r1 = rounds(rt)
    (out,) = rt.open([y])
    return out, r1 - r0


NEAR = [2**61, -(2**61), 2**61 - 1, -(2**61) + 1, 2**61 + 12345, -(2**61) - 12345, 2**62 - 1, -(2**62) + 1,
        3 * 2**60, -3 * 2**60, 0, 1, -1, 2**40 + 7, -(2**40) - 7]


def _check_trunc(vals, f, out):
    for v, got in zip(vals, out.tolist()):
        d = got - (v >> f)  # Python's >> is floor division by 2^f, also for negative v
        assert d in (0, 1), f"truncate({v}, {f}) = {got}, floor = {v >> f}"


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("f", [1, 16, 20, 40, 60])
def test_truncate_exact_up_to_one_near_2_pow_61(n, f):
    # each value many times: every copy gets its own random mask r (including masks that wrap)
    vals = [v for v in NEAR + [2**f, -(2**f), 2**f - 1, -(2**f) + 1] for _ in range(60)]
    res = run(_trunc_program, n, vals, f)
    out = all_equal([r[0] for r in res])
    _check_trunc(vals, f, out)
    assert all(r[1] == 1 for r in res)  # one round


@HSET
@given(st.sampled_from(NS), st.integers(1, 62), st.lists(st.integers(-(2**62) + 1, 2**62 - 1), min_size=1, max_size=30))
def test_truncate_hypothesis(n, f, vals):
    vals = vals * 10
    res = run(_trunc_program, n, vals, f)
    _check_trunc(vals, f, res[0][0])


def _trunc_mul_program(rt, vals, ys, f):
    """[(x >> f) * y] by powers.trunc_mul_steps: y's mask opened in an earlier round."""
    from mpcrt.protocols import powers
    from mpcrt.protocols.rounds import Open, run1

    x = rt.share_ring(np.array(vals, np.int64) if rt.rank == 0 else None, src=0, fbits=0)
    y = rt.share_ring(np.array(ys, np.int64) if rt.rank == 1 else None, src=1, fbits=0)
    mat = powers.mask_request(rt, x.shape, f)

    def steps():
        (e,), _ = yield Open(add=[y.share - mat.own()["a"]])
        return (yield from powers.trunc_mul_steps(rt, x.share, f, y.share, e, mat))

    r0 = rounds(rt)
    z = run1(rt, steps())
    r1 = rounds(rt)
    (out,) = rt.open([z])
    return out, r1 - r0


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("f", [1, 16, 29, 45])
def test_trunc_mul_is_truncation_times_y(n, f):
    """Exact ring identity: the result is (floor(x / 2^f) + d) * y mod 2^64 with d in {0, 1}
    the same for both, for x near +-2^61 and y up to 2^20 or 0 (a saturating selector)."""
    rng = np.random.default_rng(f + n)
    vals = [v for v in NEAR for _ in range(20)]
    ys = [int(v) for v in rng.integers(-(2**20), 2**20, len(vals))]
    ys[::7] = [0] * len(ys[::7])
    res = run(_trunc_mul_program, n, vals, ys, f)
    out = all_equal([r[0] for r in res])
    for v, y, got in zip(vals, ys, out.tolist()):
        want = [((v >> f) + d) * y for d in (0, 1)]
        wrapped = [(w + 2**63) % 2**64 - 2**63 for w in want]
        assert got in wrapped, f"trunc_mul({v}, {f}) * {y} = {got}, want one of {wrapped}"
    assert all(r[1] == 2 for r in res)  # the mask's opening, then the truncation's


# ------------------------------------------------------------------ top-bytes openings
def _top_program(rt, shapes, nbytes, donate, seed):
    """open_mixed with rounds.Top entries among plain additive and XOR ones: returns the
    exact openings (opened in full afterwards) beside the narrow ones, and the bytes sent."""
    from mpcrt.protocols.rounds import Top

    rng = np.random.default_rng(seed + rt.rank)
    xs = [rng.integers(-(2**63), 2**63, s, dtype=np.int64) for s in shapes]
    ps = [rng.integers(-(2**63), 2**63, s, dtype=np.int64) for s in shapes]
    plain = rng.integers(-(2**63), 2**63, 5, dtype=np.int64)
    bits = rng.integers(0, 256, 7, dtype=np.uint8)
    adds = [Top(x, nbytes, p, 12345 if rt.rank == 0 else 0) for x, p in zip(xs, ps)] + [plain]
    s0 = rt.node.bytes_sent
    got_a, got_x = rt.open_mixed(adds, [bits], donate=donate)
    sent = rt.node.bytes_sent - s0
    exact = rt.open([x + p + (12345 if rt.rank == 0 else 0) for x, p in zip(xs, ps)] + [plain])
    (xored,) = rt.open_mixed([], [bits])[1]
    return got_a, exact, got_x[0], xored, sent


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("nbytes", [4, 5, 6])
@pytest.mark.parametrize("donate", [False, True])
def test_top_bytes_opening_is_the_sum_less_the_dropped_low_bits(n, nbytes, donate):
    """A Top entry opens to c - d with 0 <= d < N 2^s and its low s bits zero (s = 64 - 8
    nbytes), for 0-d, 1-d and 2-d shares, beside plain additive and XOR entries; only
    nbytes per element travel (large N = 3 openings go in two steps, and open in full)."""
    shapes = [(), (257,), (3, 5)]
    s = 64 - 8 * nbytes
    res = run(_top_program, n, shapes, nbytes, donate, 7 * nbytes + n)
    for got, exact, gx, xored, sent in res:
        for g, e, shape in zip(got[:3], exact[:3], shapes):
            assert g.shape == shape and g.dtype == np.int64
            d = (e.astype(object) - g.astype(object)) % 2**64
            assert np.all(d < n * 2**s), f"dropped bits sum {d.max()} >= {n} 2^{s}"
            assert np.all(g & np.int64((1 << s) - 1) == 0), "low bits of a top-bytes opening must be zero"
        np.testing.assert_array_equal(got[3], exact[3])  # the plain entry: exact
        np.testing.assert_array_equal(gx, xored)
        elements = 1 + 257 + 15
        payload = (n - 1) * (elements * nbytes + 5 * 8 + 7)
        assert payload <= sent < payload + (n - 1) * 2048, (sent, payload)  # headers and padding only
    for r in res[1:]:
        np.testing.assert_array_equal(r[0][0], res[0][0][0])


def _top_split_program(rt, nbytes):
    from mpcrt.protocols.rounds import Top

    x = np.random.default_rng(rt.rank).integers(-(2**63), 2**63, 100_000, dtype=np.int64)
    (got,), _ = rt.open_mixed([Top(x, nbytes)], [])
    (exact,) = rt.open([x])
    return got, exact


def test_top_bytes_opening_in_two_steps_is_exact(monkeypatch):
    """N = 3 and split openings on: it goes in two steps (mpcrt.allreduce), where a Top
    entry opens in full (d = 0)."""
    from mpcrt import allreduce

    monkeypatch.setattr(allreduce, "SPLIT_BYTES", 0)
    for got, exact in run(_top_split_program, 3, 5):
        np.testing.assert_array_equal(got, exact)


def test_top_bytes_rule():
    from mpcrt.protocols.rounds import Top, narrow, top_bytes

    assert [top_bytes(k, 2) for k in (16, 28, 29, 36, 37, 45, 62)] == [8, 6, 5, 5, 4, 4, 4]
    assert top_bytes(29, 3) == 6 and top_bytes(29, 5) == 6 and top_bytes(21, 2) == 6 and top_bytes(20, 2) == 8
    x = np.arange(4, dtype=np.int64)
    assert isinstance(narrow(x, 45, 2), Top)
    np.testing.assert_array_equal(narrow(x, 16, 2, x, 3), 2 * x + 3)  # too few bits kept: a plain sum


def _top_pow_program(rt, vals, k, J, top):
    from mpcrt.protocols import powers
    from mpcrt.protocols.rounds import run1

    x = rt.share_ring(np.array(vals, np.int64) if rt.rank == 0 else None, src=0, fbits=0)
    s0 = rt.node.bytes_sent
    us = run1(rt, powers.trunc_pow_steps(rt, x.share, k, J, top=top))
    sent = rt.node.bytes_sent - s0
    return rt.open(us), sent


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("k", [30, 45])
def test_trunc_pow_with_a_top_bytes_opening(n, k):
    """trunc_pow_steps(top=True): u = floor(x / 2^k) + d, d in {-1, 0, 1}, and its powers are
    exactly u^j, for x near +-2^61 (masks that wrap); fewer bytes than the full opening."""
    vals = [v for v in NEAR for _ in range(40)]
    J = 2
    (narrow_res, exact_res) = (run(_top_pow_program, n, vals, k, J, t) for t in (True, False))
    (u, u2), sent = narrow_res[0]
    for v, a, b in zip(vals, u.tolist(), u2.tolist()):
        assert a - (v >> k) in (-1, 0, 1), (v, k, a)
        assert b == (a * a + 2**63) % 2**64 - 2**63
    assert sent < exact_res[0][1] * 0.7, (sent, exact_res[0][1])


# ------------------------------------------------------------------ rounds and batching
@pytest.mark.parametrize("n", NS)
def test_round_counts_and_batched_opens(n):
    a, b = inputs(70, (2, 2), (2, 2))

    def fn(rt):
        out = {}
        r = rounds(rt)
        x = share(rt, a, 0)
        out["share"], r = rounds(rt) - r, rounds(rt)
        y = share(rt, b, 1)
        z = x * y
        out["mul"], r = rounds(rt) - r - 1, rounds(rt)
        m = x @ y
        out["matmul"], r = rounds(rt) - r, rounds(rt)
        z.reveal()
        out["reveal"], r = rounds(rt) - r, rounds(rt)
        # three independent opens in one call: one round, one frame per peer
        seq0 = sum(rt.node._send_seq[j] for j in rt.peers)
        opened = rt.open([x.share, y.share, m.share])
        out["open3"], r = rounds(rt) - r, rounds(rt)
        out["frames"] = sum(rt.node._send_seq[j] for j in rt.peers) - seq0
        out["opened"] = [fixedpoint.decode(o, 16) for o in opened]
        return out

    res = run(fn, n)
    for o in res:
        assert (o["share"], o["mul"], o["matmul"], o["reveal"], o["open3"]) == (1, 2, 2, 1, 1)
        assert o["frames"] == n - 1
    close(res[0]["opened"][0], a, ulp())
    close(res[0]["opened"][1], b, ulp())
    close(res[0]["opened"][2], a @ b, 8 * ulp())


def test_chained_multiplies_cost_two_rounds_each():
    (a,) = inputs(71, (3,))

    def fn(rt):
        x = share(rt, a, 0)
        r0 = rounds(rt)
        y = x * x
        r1 = rounds(rt)
        z = (y * x) * y  # a chain of two multiplies: 4 rounds
        r2 = rounds(rt)
        st_ = rt.stats()
        return (r1 - r0, r2 - r1), z.reveal(), st_["by_op"]["mul"]["calls"]

    res = run(fn, 3)
    assert res[0][0] == (2, 4)
    close(res[0][1], a**5, 500 * ulp())
    assert res[0][2] == 3


# ------------------------------------------------------------------ offline / online
def _prog(x, y):
    z = x * y + (x @ y.T) * 0.5
    return z.sum(dim=0)


@pytest.mark.parametrize("n", NS)
def test_preprocess_then_run_online_without_dealer_traffic(n):
    a, b = inputs(80 + n, (3, 3), (3, 3))

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        s0 = rt.stats()
        plan = rt.plan(_prog, x, y)
        s1 = rt.stats()
        assert s1["rounds"] == s0["rounds"] and s1["dealer_requests"] == s0["dealer_requests"]
        fetched = rt.preprocess(_prog, x, y)
        ready = rt.dealer.prefetched
        c0 = rt.dealer.counter
        log = []
        send, recv = rt.node.send, rt.node.recv
        rt.node.send = lambda peer, tag, arr: (log.append(("send", peer, tag)), send(peer, tag, arr))[1]
        rt.node.recv = lambda peer, *a_, **k: (log.append(("recv", peer)), recv(peer, *a_, **k))[1]
        try:
            z = _prog(x, y)
        finally:
            rt.node.send, rt.node.recv = send, recv
        dealer_msgs = [m for m in log if m[1] == rt.dealer_id]
        return z.reveal(), len(plan), fetched, ready, rt.dealer.counter - c0, dealer_msgs, rt.dealer.prefetched

    res = run(fn, n)
    want = (a * b + (a @ b.T) * 0.5).sum(axis=0)
    close(all_equal([r[0] for r in res]), want, 200 * ulp())
    for z, nplan, fetched, ready, used, dealer_msgs, left in res:
        assert nplan == fetched == ready == used == 3  # x*y and the matmul each fused with its truncation, 1 truncation
        assert dealer_msgs == []  # the online run never talks to the dealer
        assert left == 0


def test_preprocess_twice_prefetches_two_runs():
    """Two preprocess calls, then two runs: the second run must also be served from the prefetch."""
    (a,) = inputs(81, (2, 2))

    def fn(rt):
        x = share(rt, a, 0)
        k1 = rt.preprocess(lambda u: u * u, x)
        k2 = rt.preprocess(lambda u: u * u, x)
        ready = rt.dealer.prefetched
        log = []
        send = rt.node.send
        rt.node.send = lambda peer, tag, arr: (log.append((peer, tag)), send(peer, tag, arr))[1]
        try:
            y1, y2 = x * x, x * x
        finally:
            rt.node.send = send
        return (k1, k2, ready), [m for m in log if m[0] == rt.dealer_id], y1.reveal(), y2.reveal()

    res = run(fn, 2)
    close(res[0][2], a * a, 20 * ulp())
    close(res[0][3], a * a, 20 * ulp())
    assert res[0][0] == (1, 1, 2), "preprocess() reports a fused request fetched but did not fetch it"
    assert res[0][1] == [], "the second run asked the dealer online"


@pytest.mark.parametrize("second", ["other kind", "other shape"])
def test_program_that_differs_from_its_plan_raises(second):
    a, b = inputs(82, (2, 3), (2, 3))

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        rt.preprocess(lambda u, v: u * v, x, y)
        if second == "other kind":
            return (x @ y.T).reveal()
        return (x[:1] * y[:1]).reveal()

    t0 = time.monotonic()
    with pytest.raises(ProtocolError, match="differs from the planned one"):
        run(fn, 3)
    assert time.monotonic() - t0 < 30


def test_share_inside_a_plan_is_refused():
    def fn(rt):
        with pytest.raises(mpcrt.MpcError, match="share"):
            rt.plan(lambda: rt.share(np.ones(2) if rt.rank == 0 else None, src=0))
        return True

    assert run(fn, 2) == [True, True]


# ------------------------------------------------------------------ precision
@pytest.mark.parametrize("f", [12, 20])
@pytest.mark.parametrize("n", [2, 3])
def test_precision_is_configurable_per_runtime(f, n):
    a, b = inputs(90, (4,), (4,))

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        return rt.precision, x.share, (x * y).reveal(), (x @ y).reveal(), (x * 0.3).reveal()

    res = run(fn, n, precision=f)
    assert all(r[0] == f for r in res)
    total = sum((r[1] for r in res[1:]), res[0][1].copy())
    assert np.array_equal(total, fixedpoint.encode(a, f))  # encoded with f fractional bits
    close(res[0][2], a * b, 12 * 2.0**-f)
    close(res[0][3], a @ b, 40 * 2.0**-f)
    close(res[0][4], a * 0.3, 8 * 2.0**-f)


def test_precision_bounds_the_input_range():
    big = np.array([2.0**45])

    def fn(rt, f_ok):
        x = rt.share(big if rt.rank == 0 else None, src=0)
        return x.reveal()

    assert run(fn, 2, True, precision=12)[0].tolist() == [2.0**45]  # |x| < 2^50 at 12 bits
    with pytest.raises(mpcrt.EncodingError, match="range"):
        run(fn, 2, False, precision=20)  # |x| < 2^42 at 20 bits


def test_share_with_its_own_precision():
    (a,) = inputs(91, (3,))

    def fn(rt):
        x = rt.share(a if rt.rank == 0 else None, src=0, precision=8)
        return x.fbits, x.reveal()

    res = run(fn, 2)
    assert res[0][0] == 8
    close(res[0][1], a, 2.0**-9)


# ------------------------------------------------------------------ bad calls
@pytest.mark.parametrize(
    "op",
    [
        lambda x, y, p: x @ y,  # (2,3) @ (4,5)
        lambda x, y, p: x @ y[:, :3],  # (2,3) @ (4,3)
        lambda x, y, p: x[0] @ y[0],  # (3,) @ (5,)
        lambda x, y, p: x[0, 0] @ x,  # 0-d operand
        lambda x, y, p: x @ p,  # (2,3) @ public (4,)
        lambda x, y, p: p[:3] @ y,  # public (3,) @ (4,5)
    ],
)
def test_matmul_of_non_fitting_shapes_raises_shape_error(op):
    a, b = inputs(100, (2, 3), (4, 5))
    p = np.ones(4)

    def fn(rt):
        x, y = share(rt, a, 0), share(rt, b, 1)
        return op(x, y, p)

    t0 = time.monotonic()
    with pytest.raises(ShapeError, match="matmul"):
        run(fn, 2)
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize(
    "op,words",
    [
        (lambda x, y: x.conv2d(y), "NCHW"),
        (lambda x, y: x.reshape(1, 2, 3, 1).conv2d(y.reshape(4, 5, 1, 1)), "does not fit"),
        (lambda x, y: x.reshape(5), "reshape"),
        (lambda x, y: mpcrt.cat([x, y], dim=0), "cat"),
        (lambda x, y: mpcrt.stack([x, y]), "stack"),
        (lambda x, y: x.reshape(1, 2, 3).t(), "dimensions"),
    ],
)
def test_other_shape_errors(op, words):
    a, b = inputs(101, (2, 3), (4, 5))

    def fn(rt):
        return op(share(rt, a, 0), share(rt, b, 1))

    with pytest.raises(ShapeError, match=words):
        run(fn, 2)


@pytest.mark.parametrize("op", [lambda x, y: x * y, lambda x, y: x + y, lambda x, y: x - y])
def test_elementwise_ops_on_non_broadcastable_shapes_raise_shape_error(op):
    """ShapeError is 'operand shapes do not fit the operation'; numpy's bare ValueError is not it."""
    a, b = inputs(102, (2, 3), (4,))

    def fn(rt):
        return op(share(rt, a, 0), share(rt, b, 1))

    with pytest.raises(ShapeError):
        run(fn, 2)


@pytest.mark.parametrize("n", [2, 3])
def test_share_none_on_source_raises_shape_error(n):
    def fn(rt):
        return rt.share(None, src=0)  # party 0 is the source but passes nothing

    t0 = time.monotonic()
    with pytest.raises(ShapeError, match="passed None"):
        run(fn, n, timeout=5)
    assert time.monotonic() - t0 < 30


def test_runtime_rank_outside_cluster_is_a_config_error():
    from mpcrt.launch.inprocess import local_cluster

    cluster, secrets_ = local_cluster(2)
    for rank in (2, -1):
        with pytest.raises(ConfigError, match="rank"):
            mpcrt.Runtime.connect(cluster, rank, secrets_[0], timeout=2)


def test_bad_src_and_reveal_target():
    def fn(rt):
        with pytest.raises(ConfigError, match="src"):
            rt.share(np.ones(2), src=rt.world_size)
        with pytest.raises(ConfigError, match="src"):
            rt.share(np.ones(2), src=-1)
        x = share(rt, np.ones(2), 0)
        with pytest.raises(ValueError, match="reveal"):
            x.reveal(to=5)
        return x.reveal()

    assert run(fn, 2)[0].tolist() == [1.0, 1.0]


def test_index_by_shared_tensor_is_refused():
    def fn(rt):
        x = share(rt, np.ones(3), 0)
        with pytest.raises(TypeError, match="reveal"):
            x[x]
        return repr(x)

    r = run(fn, 2)
    assert "SharedTensor(shape=(3,)" in r[0] and "party 0 of 2" in r[0]


@pytest.mark.parametrize("kind,p", [
    ("triple", dict(a=[3], b=[4])),  # shapes that do not broadcast
    ("matmul", dict(a=[3, 4], b=[5, 2])),
    ("conv2d", dict(a=[1, 3, 8, 8], b=[4, 2, 3, 3], stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1)),
    ("conv2d", dict(a=[1, 3, 8, 8], b=[4, 3, 3, 3])),  # no stride
    ("triple_trunc", dict(a=[3], b=[3])),  # no f
    ("trunc", dict(shape=[3], f=0)),
    ("trunc", dict(shape="x", f=3)),
    ("truncpow", dict(shape=[3], k=3, J=0)),
    ("truncmul", dict(shape=[-1], k=3)),
    ("ltz", dict(n=64, k="1")),
    ("ltz", [64, 0]),
    ("ltz", dict(n=128, k=1, rows=2, xr=2)),
    ("ltzpow", dict(n=64, rows=1, pw=[3, 1, 3])),  # no back
    ("matmul", dict(a=[True], b=[1])),
])
def test_malformed_dealer_requests_are_dealer_errors(kind, p):
    """A request from the network that does not parse into its protocol's spec is refused
    with a DealerError naming it, on the dealer's side and the parties' alike, never a crash."""
    from mpcrt import correlations
    from mpcrt.errors import DealerError

    with pytest.raises(DealerError, match="malformed"):
        correlations.kind(kind).corrected(p)


def test_request_specs_round_trip_through_the_wire():
    """Each protocol's spec is written once: the dict the parties send parses back into the
    same spec on the dealer's side, and keeps the keys (and their order) of the wire format."""
    from mpcrt.protocols.beaver import ProductSpec
    from mpcrt.protocols.comparison import LtzSpec
    from mpcrt.protocols.powers import LtzPowersSpec, MulMaskSpec, PowersSpec
    from mpcrt.protocols.truncation import TruncSpec

    ltz = LtzSpec.of(100, 1, rows=2, mul_rows=1, shared_y=True, powers=(29, 4, 12345), coarse=16, trunc_y=29,
                     xor_rows=True)
    assert list(ltz.to_wire()) == ["n", "k", "rows", "cb", "tk", "mrows", "ym", "pw", "xr"]
    assert LtzSpec.of(100, 2).to_wire() == {"n": 128, "k": 2}
    assert LtzSpec.from_wire(ltz.to_wire()) == ltz
    conv = ProductSpec("conv2d", (1, 3, 8, 8), (4, 3, 3, 3), 16, (1, 1), (1, 1), (1, 1), 1)
    assert list(conv.to_wire()) == ["a", "b", "stride", "padding", "dilation", "groups", "f"]
    assert ProductSpec.from_wire(conv.to_wire(), "conv2d", True) == conv
    for spec in (TruncSpec((3, 4), 16), PowersSpec((5,), 29, 3), MulMaskSpec((2, 2), 40),
                 LtzPowersSpec(256, 2, (29, 4, 12345), 1)):
        assert type(spec).from_wire(spec.to_wire()) == spec

"""Secure comparison: exact less-than-zero and everything built from it.

Parties are threads over real ZeroMQ/CURVE (`mpcrt.launch.inprocess.run_parties`),
N in {2, 3}. Each hypothesis example is a whole protocol run, so examples are few and
each one checks a whole batch of values inside a single session.

Covers (docs/design.md, 'Protocols'; protocols/comparison.py, protocols/compare.py, protocols/ordering.py):
* protocols.comparison.ltz on raw ring values: zero wrong results for every int64
  (all edges: 0, +-1, +-2^k, 2^63 - 1, -2^63, ...), fused products equal b * y exactly;
* the issue's criterion: zero wrong results on 10^6 pairs (a third equal, a third one
  ulp apart, a third random) for <, >, <=, >=, == (x and y shared by different parties);
* relu, abs, sign, clamp, where, max, min, argmax / argmin (first extremum on ties, like
  torch), maxpool2d (vs torch.nn.functional.max_pool2d) within 2^-15 of the float
  reference, comparison bits exact;
* round counts (7 for ltz and any single comparison) and bytes per element per peer
  for ltz (<= 26), and the batching of independent ltz generators by protocols.rounds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcrt.errors import DimError
from mpcrt.launch.inprocess import run_parties
from mpcrt.protocols import comparison, normalize, rounds as rounds_mod
from mpcrt.protocols.comparison import LtzSpec
from mpcrt.protocols.rounds import run1
from mpcrt.tensor import where as t_where

NS = [2, 3]
FB = 16  # fixed-point fractional bits of the default runtime
ULP = 2.0**-FB
TOL = 2.0**-15  # fixed-point results vs float references
LTZ_ROUNDS = 7
HSET = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
EDGES = sorted(
    {0, 1, -1, 2, -2, I64_MAX, I64_MIN, I64_MAX - 1, I64_MIN + 1, 2**62, -(2**62), 2**62 - 1, -(2**62) + 1,
     2**62 + 1, -(2**62) - 1}
    | {s * (2**k + d) for k in range(63) for d in (-1, 0, 1) for s in (1, -1)}
    | {I64_MAX - 2**k for k in range(63)}
    | {I64_MIN + 2**k for k in range(63)}
    | {(2**63 - 1) ^ (2**k) for k in range(63)}  # all ones but one bit (low 63 bits)
)
EDGES = np.array([v for v in EDGES if I64_MIN <= v <= I64_MAX], dtype=np.int64)


def run(fn, n, *args, precision=16):
    """fn(rt, *args) on n parties; bounded in time (a hang fails, never blocks)."""
    return run_parties(fn, n, *args, precision=precision, timeout=30.0, join_timeout=120)


def rounds(rt) -> int:
    return rt.stats()["rounds"]


def opened(rt, t) -> np.ndarray:
    """Exact ring value of a SharedTensor (int64, no float conversion)."""
    (v,) = rt.open([t.share])
    return v


def share_from(rt, value, src, fbits=None):
    """Share a plaintext held by party `src` (None elsewhere); ring values if fbits given."""
    v = value if rt.rank == src else None
    if fbits is None:
        return rt.share(v, src=src)
    return rt.share_ring(v, src=src, fbits=fbits)


def enc(a) -> np.ndarray:
    """The fixed-point encoding the runtime uses, as int64."""
    return np.rint(np.asarray(a, np.float64) * 2.0**FB).astype(np.int64)


def q(a) -> np.ndarray:
    """a rounded to the fixed-point grid (what the parties actually hold)."""
    return enc(a).astype(np.float64) / 2.0**FB


def assert_close(got, want, tol=TOL, what=""):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if want.size:
        err = np.abs(got - want)
        i = int(np.argmax(err))
        assert err.flat[i] <= tol, \
            f"{what}: max error {err.flat[i]} > {tol} at flat index {i} (got {got.flat[i]}, want {want.flat[i]})"


# ------------------------------------------------------------ strategies
int64s = st.integers(I64_MIN, I64_MAX)
ring_arrays = hnp.arrays(np.int64, st.integers(1, 200), elements=int64s)
# fixed-point reals, away from the format's limit (2^46 at 16 bits) so differences never wrap
reals = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
small_grid = st.integers(-40, 40).map(lambda k: k / 8.0)  # many exact ties
real_arrays = hnp.arrays(np.float64, st.integers(1, 120), elements=st.one_of(reals, small_grid))


# =================================================== ltz on raw ring values
@pytest.mark.parametrize("n", NS)
@HSET
@given(xs=ring_arrays, seed=st.integers(0, 2**32 - 1))
def test_ltz_exact_on_ring_values_with_fused_products(n, xs, seed):
    """[x < 0] for every int64 (edges, hypothesis values, 20000 uniform words) and the
    fused products [b * y] (y arbitrary ring values) equal b * y exactly; 7 rounds."""
    rng = np.random.default_rng(seed)
    uni = rng.integers(I64_MIN, I64_MAX, size=20000, dtype=np.int64, endpoint=True)
    x = np.concatenate([EDGES, xs, uni, -uni[:1000], uni[:1000] ^ np.int64(I64_MIN)])
    y1 = rng.integers(I64_MIN, I64_MAX, size=x.size, dtype=np.int64, endpoint=True)
    y2 = x.copy()  # product with x itself (relu-style)

    def fn(rt):
        X = share_from(rt, x, 0, fbits=0)
        Y = share_from(rt, y1, rt.world_size - 1, fbits=0)
        r0 = rounds(rt)
        b, (p1, p2) = comparison.ltz(rt, X.share, [Y.share, X.share])
        r = rounds(rt) - r0
        ob, o1, o2 = rt.open([b, p1, p2])
        return r, ob, o1, o2

    res = run(fn, n)
    want = (x < 0).astype(np.int64)
    for r, ob, o1, o2 in res:
        assert r == LTZ_ROUNDS
        bad = np.flatnonzero(ob != want)
        assert bad.size == 0, f"{bad.size} wrong ltz results, e.g. x={x[bad[:5]]} got {ob[bad[:5]]}"
        np.testing.assert_array_equal(o1, np.where(want == 1, y1, 0))
        np.testing.assert_array_equal(o2, np.where(want == 1, y2, 0))


@pytest.mark.parametrize("n", NS)
@HSET
@given(xs=ring_arrays, ts=st.lists(int64s, min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_ltz_against_several_thresholds_shares_one_opening(n, xs, ts, seed):
    """ltz_steps(thresholds=t): [x - t_i < 0] (ring difference, so it may wrap) for every
    row, exactly, with the fused products; values at and next to each threshold included.
    Each row after the first sends 8 bytes per element less than a separate row."""
    rng = np.random.default_rng(seed)
    t = np.array(ts, np.int64)
    with np.errstate(over="ignore"):
        near = np.concatenate([t, t + 1, t - 1])
    x = np.concatenate([EDGES, xs, near, rng.integers(I64_MIN, I64_MAX, 3000, dtype=np.int64, endpoint=True)])
    y = rng.integers(I64_MIN, I64_MAX, size=(t.size, x.size), dtype=np.int64, endpoint=True)

    def fn(rt):
        X = share_from(rt, x, 0, fbits=0)
        Y = share_from(rt, y, rt.world_size - 1, fbits=0)
        s0 = rt.stats()
        b, (p,) = run1(rt, comparison.ltz_steps(rt, X.share, 1, lambda: [Y.share], thresholds=list(t)))
        s1 = rt.stats()
        ob, op = rt.open([b, p])
        sent = (s1["bytes_sent"] - s0["bytes_sent"]) / x.size / (rt.world_size - 1)
        return s1["rounds"] - s0["rounds"], ob, op, sent

    with np.errstate(over="ignore"):
        want = ((x[None, :] - t[:, None]) < 0).astype(np.int64)
    for r, ob, op, sent in run(fn, n):
        assert r == LTZ_ROUNDS and ob.shape == want.shape
        bad = np.argwhere(ob != want)
        assert bad.size == 0, f"{len(bad)} wrong results, e.g. row/col {bad[:3].tolist()}"
        np.testing.assert_array_equal(op, np.where(want == 1, y, 0))
        assert sent <= 8 + t.size * (18.3 + 8), f"{sent:.2f} bytes per element per peer for {t.size} rows"

    K = max(1, t.size // 2)  # products on the first K rows only: bits unchanged, K product rows

    def fn_k(rt):
        X = share_from(rt, x, 0, fbits=0)
        Y = share_from(rt, y[:K], rt.world_size - 1, fbits=0)
        b, (p,) = run1(rt, comparison.ltz_steps(rt, X.share, muls=lambda: [Y.share], thresholds=list(t),
                                                spec=LtzSpec.of(x.size, 1, len(t), mul_rows=K)))
        return rt.open([b, p])

    for ob, op in run(fn_k, n):
        np.testing.assert_array_equal(ob, want)
        assert op.shape == (K, x.size)
        np.testing.assert_array_equal(op, np.where(want[:K] == 1, y[:K], 0))

    def fn_same(rt):  # every product row with the same y: one masked opening of y
        X = share_from(rt, x, 0, fbits=0)
        Y = share_from(rt, y[0], rt.world_size - 1, fbits=0)
        s0 = rt.stats()
        b, (p,) = run1(rt, comparison.ltz_steps(rt, X.share, muls=lambda: [Y.share], thresholds=list(t),
                                                spec=LtzSpec.of(x.size, 1, len(t), mul_rows=K, shared_y=True)))
        s1 = rt.stats()
        return rt.open([b, p]), (s1["bytes_sent"] - s0["bytes_sent"]) / x.size / (rt.world_size - 1)

    for (ob, op), sent in run(fn_same, n):
        np.testing.assert_array_equal(ob, want)
        np.testing.assert_array_equal(op, np.where(want[:K] == 1, y[0][None, :], 0))
        assert sent <= 8 + t.size * 18.3 + 8, f"{sent:.2f} bytes per element per peer with one shared y"


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("coarse", [8, 16])
@HSET
@given(xs=ring_arrays, ts=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_coarse_rows_are_exact_outside_their_window(n, coarse, xs, ts, seed):
    """coarse=L: each row's bit is exact for every ring x with x - t outside [-2^L, 0)
    and [2^63 - 2^L, 2^63) (both answers allowed there; the second window lies beyond any
    fixed-point value), products exact for the bit given; rounds 2-5 send
    only live bits: <= 8 + 12.3 R (+ 8 for the shared y) bytes per element per peer at L = 16."""
    rng = np.random.default_rng(seed)
    t = np.array(ts, np.int64)
    w = np.int64(1 << coarse)
    near = np.concatenate([t, t - 1, t + 1, t - w, t - w - 1, t - w + 1, t - w // 2])
    x = np.concatenate([EDGES, xs, near, rng.integers(I64_MIN, I64_MAX, 3000, dtype=np.int64, endpoint=True),
                        (t[:, None] + rng.integers(-4 * w, 4 * w, (t.size, 500))).reshape(-1)])
    y = rng.integers(I64_MIN, I64_MAX, size=x.size, dtype=np.int64, endpoint=True)

    def fn(rt):
        X = share_from(rt, x, 0, fbits=0)
        Y = share_from(rt, y, rt.world_size - 1, fbits=0)
        s0 = rt.stats()
        b, (p,) = run1(rt, comparison.ltz_steps(rt, X.share, muls=lambda: [Y.share], thresholds=list(t),
                                                spec=LtzSpec.of(x.size, 1, len(t), shared_y=True, coarse=coarse)))
        s1 = rt.stats()
        ob, op = rt.open([b, p])
        return s1["rounds"] - s0["rounds"], ob, op, (s1["bytes_sent"] - s0["bytes_sent"]) / x.size / (rt.world_size - 1)

    with np.errstate(over="ignore"):
        d = x[None, :] - t[:, None]
    want = (d < 0).astype(np.int64)
    window = ((d < 0) & (d >= -w)) | (d >= I64_MAX - w + 1)
    for r, ob, op, sent in run(fn, n):
        assert r == LTZ_ROUNDS
        bad = np.argwhere((ob != want) & ~window)
        assert bad.size == 0, f"{len(bad)} wrong results outside the window, e.g. {bad[:3].tolist()}"
        assert np.all((ob == 0) | (ob == 1))
        np.testing.assert_array_equal(op, np.where(ob == 1, y[None, :], 0))
        if coarse == 16:
            assert sent <= 8 + t.size * 12.3 + 8, f"{sent:.2f} bytes per element per peer, {t.size} coarse rows"


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("k,halves", [(20, False), (40, False), (29, True)])
def test_products_with_a_truncated_y_open_nothing(n, k, halves):
    """trunc_y=k: y = x' >> k truncated with the tuple the comparison carries (YTrunc);
    the rows' products b y come from that truncation's opening, and the last round
    opens only the packed B2A bits (<= 1 byte per element per peer, rows included).
    halves: the same material as two dealer requests (comparison.Halves)."""
    from mpcrt.protocols import powers
    from mpcrt.protocols.rounds import run as run_gens

    rng = np.random.default_rng(k + n)
    m = 4000
    x = np.concatenate([EDGES[:1000], rng.integers(I64_MIN, I64_MAX, m, dtype=np.int64, endpoint=True)])
    xp = rng.integers(-(2**60), 2**60, x.size, dtype=np.int64)
    t = [0, -(1 << 30)]

    def fn(rt):
        X = share_from(rt, x, 0, fbits=0).share
        XP = share_from(rt, xp, rt.world_size - 1, fbits=0).share
        spec = LtzSpec.of(x.size, 1, rows=2, shared_y=True, trunc_y=k)
        mat = comparison.request(rt, spec, halves=halves)
        ymat = mat.request_da() if halves else mat
        hold = {}

        def chain():
            opened = []
            ytr = comparison.YTrunc(ymat, x.size, x.shape)
            (y,) = yield from powers.trunc_pow_steps(rt, XP, k, 1, mat=ytr, opened=opened)
            hold["y"], hold["c"] = y, opened[0]

        s0 = rt.stats()
        (b, (p,)), _ = run_gens(rt, comparison.ltz_steps(rt, X, muls=lambda: [hold["y"], hold["c"]], mat=mat,
                                                         thresholds=t, spec=spec), chain())
        s1 = rt.stats()
        ob, op, oy = rt.open([b, p, hold["y"]])
        sent = (s1["bytes_sent"] - s0["bytes_sent"]) / x.size / (rt.world_size - 1)
        return ob, op, oy, s1["rounds"] - s0["rounds"], sent

    with np.errstate(over="ignore"):
        want = ((x[None, :] - np.array(t, np.int64)[:, None]) < 0).astype(np.int64)
    for ob, op, oy, r, sent in run(fn, n):
        assert r == LTZ_ROUNDS
        np.testing.assert_array_equal(ob, want)
        assert np.all((oy == xp >> k) | (oy == (xp >> k) + 1))  # the truncation: exact up to +1
        np.testing.assert_array_equal(op, np.where(want == 1, oy[None, :], 0))
        assert sent <= 8 + 8 + 2 * 16.3, f"{sent:.2f} bytes per element per peer"


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("trunc,rows,coarse", [(False, 2, 0), (False, 3, 16), (True, 2, 16)])
def test_xor_rows_gives_the_band_and_its_product(n, trunc, rows, coarse):
    """xor_rows: row 0 is [x < t_0] xor [x < t_1] (the band t_0 <= x < t_1 when t_0 <= t_1),
    the other rows as they are, and the one product row is row 0's bit times y; with a
    truncated y (exp's case, halves) as well. The dealer deals row 0's arithmetic daBit
    and product terms for s_0 xor s_1, so no extra opening: the same rounds."""
    from mpcrt.protocols import powers
    from mpcrt.protocols.rounds import run as run_gens

    rng = np.random.default_rng(rows + 10 * n + trunc)
    t = [-(1 << 24), 1 << 26, 1 << 30][:rows]
    w = 1 << coarse
    x = np.concatenate([EDGES[:1000], rng.integers(I64_MIN, I64_MAX, 2000, dtype=np.int64, endpoint=True),
                        (np.array(t)[:, None] + rng.integers(-3 * w - 5, 3 * w + 5, (rows, 500))).reshape(-1)])
    y = rng.integers(-(2**60), 2**60, x.size, dtype=np.int64)
    k = 29

    def fn(rt):
        X = share_from(rt, x, 0, fbits=0).share
        Y = share_from(rt, y, rt.world_size - 1, fbits=0).share
        s0 = rt.stats()
        if not trunc:
            spec = LtzSpec.of(x.size, 1, rows, mul_rows=1, shared_y=True, coarse=coarse, xor_rows=True)
            b, (p,) = run1(rt, comparison.ltz_steps(rt, X, muls=lambda: [Y], thresholds=t, spec=spec))
            s1 = rt.stats()
            return rt.open([b, p]) + [y], s1["rounds"] - s0["rounds"]
        spec = LtzSpec.of(x.size, 1, rows=rows, mul_rows=1, shared_y=True, coarse=coarse, trunc_y=k, xor_rows=True)
        mat = comparison.request(rt, spec, halves=True)
        ymat = mat.request_da()
        hold = {}

        def chain():
            opened = []
            ytr = comparison.YTrunc(ymat, x.size, x.shape)
            (yt,) = yield from powers.trunc_pow_steps(rt, Y, k, 1, mat=ytr, opened=opened)
            hold["y"], hold["c"] = yt, opened[0]

        (b, (p,)), _ = run_gens(rt, comparison.ltz_steps(rt, X, muls=lambda: [hold["y"], hold["c"]], mat=mat,
                                                         thresholds=t, spec=spec), chain())
        s1 = rt.stats()
        return rt.open([b, p, hold["y"]]), s1["rounds"] - s0["rounds"]

    with np.errstate(over="ignore"):
        d = x[None, :] - np.array(t, np.int64)[:, None]
    lt = (d < 0).astype(np.int64)
    window = ((d < 0) & (d >= -w)) | (d >= I64_MAX - w + 1) if coarse else np.zeros(d.shape, bool)
    for (ob, op, oy), r in run(fn, n):
        assert r == LTZ_ROUNDS
        assert np.all((ob == 0) | (ob == 1)) and op.shape == (1, x.size)
        sure = ~window[0] & ~window[1]
        np.testing.assert_array_equal(ob[0][sure], (lt[0] ^ lt[1])[sure])
        for j in range(1, rows):
            np.testing.assert_array_equal(ob[j][~window[j]], lt[j][~window[j]])
        np.testing.assert_array_equal(op[0], np.where(ob[0] == 1, oy, 0))  # the product of the bit it gave
        if trunc:
            assert np.all((oy == y >> k) | (oy == (y >> k) + 1))


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("shape", [(), (1,), (63,), (65,), (3, 5, 7), (0,), (2, 0, 3)])
def test_ltz_shapes(n, shape):
    """Any shape, including sizes that are not a multiple of the 64-element packing."""
    rng = np.random.default_rng(len(shape) * 10 + n)
    x = rng.integers(I64_MIN, I64_MAX, size=shape, dtype=np.int64, endpoint=True)
    x = np.asarray(x, np.int64).reshape(shape)

    def fn(rt):
        X = rt.share_ring(x if rt.rank == 0 else None, src=0).share.reshape(shape)
        b, (p,) = comparison.ltz(rt, X, [X])
        assert b.shape == shape and p.shape == shape
        return rt.open([b, p]) if b.size else [b, p]

    for ob, op in run(fn, n):
        np.testing.assert_array_equal(ob, (x < 0).astype(np.int64))
        np.testing.assert_array_equal(op, np.where(x < 0, x, 0))


@pytest.mark.parametrize("n", NS)
def test_ltz_rounds_and_bytes_per_element(n):
    """ltz of 64 * 1000 elements: 7 rounds, <= 26 bytes sent per element per peer
    (DESIGN: 8 + 8 + 4 + 2 + 1 + 1/8 + 1 = 24.1); a fused product adds <= 8 bytes."""
    m = 64 * 1000
    x = np.random.default_rng(7).integers(I64_MIN, I64_MAX, size=m, dtype=np.int64, endpoint=True)

    def fn(rt):
        X = rt.share_ring(x if rt.rank == 0 else None, src=0)
        s0 = rt.stats()
        b, _ = comparison.ltz(rt, X.share)
        s1 = rt.stats()
        _, (p,) = comparison.ltz(rt, X.share, [X.share])
        s2 = rt.stats()
        ob = opened(rt, X._new(b, 0))
        peers = rt.world_size - 1
        return (
            s1["rounds"] - s0["rounds"],
            s2["rounds"] - s1["rounds"],
            (s1["bytes_sent"] - s0["bytes_sent"]) / m / peers,
            (s2["bytes_sent"] - s1["bytes_sent"]) / m / peers,
            ob,
        )

    for r1, r2, b1, b2, ob in run(fn, n):
        assert r1 == LTZ_ROUNDS and r2 == LTZ_ROUNDS
        assert b1 <= 26.0, f"ltz sent {b1:.3f} bytes per element per peer"
        assert b2 <= 26.0 + 8.0, f"ltz with one fused product sent {b2:.3f} bytes per element per peer"
        np.testing.assert_array_equal(ob, (x < 0).astype(np.int64))


def test_two_independent_ltz_share_rounds():
    """protocols.rounds.run drives two independent ltz generators in lockstep: their
    openings ride in the same 7 rounds (not 14), and both results stay exact."""
    rng = np.random.default_rng(11)
    a = np.concatenate([EDGES, rng.integers(I64_MIN, I64_MAX, size=5000, dtype=np.int64, endpoint=True)])
    b = rng.integers(-(2**40), 2**40, size=(7, 33), dtype=np.int64)
    y = rng.integers(I64_MIN, I64_MAX, size=b.shape, dtype=np.int64, endpoint=True)

    def fn(rt):
        A = rt.share_ring(a if rt.rank == 0 else None, src=0).share
        B = rt.share_ring(b if rt.rank == 1 else None, src=1).share
        Y = rt.share_ring(y if rt.rank == 0 else None, src=0).share
        r0 = rounds(rt)
        (ba, _), (bb, (pb,)) = rounds_mod.run(
            rt, comparison.ltz_steps(rt, A), comparison.ltz_steps(rt, B, 1, lambda: [Y])
        )
        r = rounds(rt) - r0
        # and three of them, one of another shape, still 7
        r1 = rounds(rt)
        outs = rounds_mod.run(rt, *(comparison.ltz_steps(rt, v) for v in (A, B, -A)))
        r3 = rounds(rt) - r1
        return r, r3, rt.open([ba, bb, pb] + [o[0] for o in outs])

    for r, r3, (ba, bb, pb, c1, c2, c3) in run(fn, 2):
        assert r == LTZ_ROUNDS, f"two parallel ltz took {r} rounds"
        assert r3 == LTZ_ROUNDS, f"three parallel ltz took {r3} rounds"
        np.testing.assert_array_equal(ba, (a < 0).astype(np.int64))
        np.testing.assert_array_equal(bb, (b < 0).astype(np.int64))
        np.testing.assert_array_equal(pb, np.where(b < 0, y, 0))
        np.testing.assert_array_equal(c1, (a < 0).astype(np.int64))
        np.testing.assert_array_equal(c2, (b < 0).astype(np.int64))
        np.testing.assert_array_equal(c3, (-a < 0).astype(np.int64))  # -(-2^63) = -2^63 in the ring


# ===================================== the criterion: 10^6 pairs, exact
def _million_pairs(total=10**6, seed=2024):
    """Encoded fixed-point pairs (ring int64 at 16 fractional bits) over the whole format
    range (|x| < 2^62): a third equal, a third one ulp (2^-16) apart, a third random."""
    rng = np.random.default_rng(seed)
    third = total // 3
    lim = 2**62 - 2

    def mixed(k):  # magnitudes spread over all scales, both signs, and some extremes
        v = rng.integers(-lim, lim, size=k, dtype=np.int64, endpoint=True)
        v >>= rng.integers(0, 62, size=k).astype(np.int64)
        edges = np.array([0, 1, -1, lim, -lim, 2**40, -(2**40), 2**16, -(2**16)], np.int64)
        v[: min(k, 64)] = rng.choice(edges, size=min(k, 64))
        return v

    x_eq = mixed(third)
    x_adj = mixed(third)
    y_adj = x_adj + rng.choice(np.array([-1, 1], np.int64), size=third)
    n_rand = total - 2 * third
    x_rand, y_rand = mixed(n_rand), mixed(n_rand)
    x = np.concatenate([x_eq, x_adj, x_rand])
    y = np.concatenate([x_eq, y_adj, y_rand])
    assert np.all(np.abs(x) < 2**62) and np.all(np.abs(y) < 2**62)
    return x, y


def test_million_pairs_zero_wrong_results():
    """<, >, <=, >=, == on 10^6 pairs (x from party 0, y from party 1), each operator in
    one call over the million, 7 rounds each: zero wrong results vs numpy on the encoded
    integers."""
    x, y = _million_pairs()
    ops = {
        "<": (lambda a, b: a < b, np.less),
        ">": (lambda a, b: a > b, np.greater),
        "<=": (lambda a, b: a <= b, np.less_equal),
        ">=": (lambda a, b: a >= b, np.greater_equal),
        "==": (lambda a, b: a == b, np.equal),
    }

    def fn(rt):
        X = share_from(rt, x, 0, fbits=FB)
        Y = share_from(rt, y, 1, fbits=FB)
        out = {}
        for name, (op, ref) in ops.items():
            r0 = rounds(rt)
            Z = op(X, Y)
            r = rounds(rt) - r0
            assert Z.fbits == 0 and Z.shape == x.shape
            got = opened(rt, Z)
            want = ref(x, y).astype(np.int64)
            out[name] = (r, int(got.size), int(np.count_nonzero(got != want)))
        return out

    res = run(fn, 2)
    eq_n, adj_n = int(np.sum(x == y)), int(np.sum(np.abs(x - y) == 1))
    assert x.size == 10**6 and eq_n >= 333_333 and adj_n >= 333_333
    for out in res:
        for name, (r, count, wrong) in out.items():
            assert count == 10**6, name
            assert wrong == 0, f"x {name} y: {wrong} wrong results out of {count}"
            assert r == LTZ_ROUNDS, f"x {name} y took {r} rounds"


# ============================================== comparison operators on tensors
@pytest.mark.parametrize("n", NS)
@HSET
@given(a=real_arrays, data=st.data())
def test_comparison_operators_match_numpy(n, a, data):
    """<, >, <=, >=, ==, != between two shared tensors (from different parties) and with
    public scalars / arrays: exact 0/1 results with 0 fractional bits, 7 rounds each."""
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=st.one_of(reals, small_grid)), label="b")
    c = data.draw(st.one_of(reals, small_grid), label="c")
    # make a fraction exact ties and one-ulp neighbours
    b = np.where(np.arange(a.size).reshape(a.shape) % 3 == 0, a, b)
    b = np.where(np.arange(a.size).reshape(a.shape) % 3 == 1, q(a) + ULP, b)
    ea, eb, ec = enc(a), enc(b), int(enc(c))

    def fn(rt):
        A = share_from(rt, a, 0)
        B = share_from(rt, b, rt.world_size - 1)
        res = {}
        for name, t in {
            "lt": lambda: A < B, "gt": lambda: A > B, "le": lambda: A <= B, "ge": lambda: A >= B,
            "eq": lambda: A == B, "ne": lambda: A != B,
            "lt_c": lambda: A < c, "ge_c": lambda: A >= c, "eq_c": lambda: A == c,
            "rlt_c": lambda: c < A,  # reflected: A > c
            "lt_arr": lambda: A < b,  # public array
            "ltz": lambda: A.ltz(),
        }.items():
            r0 = rounds(rt)
            z = t()
            res[name] = (rounds(rt) - r0, z.fbits, opened(rt, z))
        return res

    want = {
        "lt": ea < eb, "gt": ea > eb, "le": ea <= eb, "ge": ea >= eb, "eq": ea == eb, "ne": ea != eb,
        "lt_c": ea < ec, "ge_c": ea >= ec, "eq_c": ea == ec, "rlt_c": ec < ea, "lt_arr": ea < eb, "ltz": ea < 0,
    }
    for res in run(fn, n):
        for name, (r, fb, got) in res.items():
            assert r == LTZ_ROUNDS, (name, r)
            assert fb == 0, name
            np.testing.assert_array_equal(got, want[name].astype(np.int64), err_msg=name)


# ==================================================== relu, abs, sign, clamp
@pytest.mark.parametrize("n", NS)
@HSET
@given(a=real_arrays, lo=st.floats(-100, 100), width=st.floats(0, 100))
def test_relu_abs_sign_clamp(n, a, lo, width):
    hi = lo + width
    a = np.concatenate([a.ravel(), [0.0, ULP, -ULP, lo, hi, q(lo) - ULP, q(hi) + ULP, 3e4, -3e4, 2.0**45, -(2.0**45)]])

    def fn(rt):
        A = share_from(rt, a, 0)
        res = {}
        for name, t in {
            "relu": A.relu, "abs": A.abs, "sign": A.sign,
            "clamp": lambda: A.clamp(lo, hi), "clamp_min": lambda: A.clamp(min=lo),
            "clamp_max": lambda: A.clamp(max=hi), "abs_builtin": lambda: abs(A),
        }.items():
            r0 = rounds(rt)
            z = t()
            res[name] = (rounds(rt) - r0, z.reveal())
        return res

    qa = q(a)
    qlo, qhi = float(q(lo)), float(q(hi))
    want = {
        "relu": torch.relu(torch.tensor(qa)).numpy(),
        "abs": np.abs(qa),
        "abs_builtin": np.abs(qa),
        "sign": np.sign(qa),
        "clamp": np.clip(qa, qlo, qhi),
        "clamp_min": np.maximum(qa, qlo),
        "clamp_max": np.minimum(qa, qhi),
    }
    for res in run(fn, n):
        for name, (r, got) in res.items():
            assert r == LTZ_ROUNDS, (name, r)
            assert_close(got, want[name], 0.0 if name == "sign" else TOL, name)
            # and against the unrounded float inputs
            ref = {"relu": np.maximum(a, 0), "abs": np.abs(a), "abs_builtin": np.abs(a), "clamp": np.clip(a, lo, hi),
                   "clamp_min": np.maximum(a, lo), "clamp_max": np.minimum(a, hi)}.get(name)
            if ref is not None:
                assert_close(got, ref, TOL, name + " vs float64")


def test_clamp_min_above_max_gives_max_like_torch():
    """torch.clamp(x, min, max) = min(max(x, min), max): max wherever min > max (scalars
    and elementwise bounds)."""
    a = np.array([-3.0, 0.5, 4.0])
    lo, hi = np.array([2.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0])

    def fn(rt):
        A = share_from(rt, a, 0)
        return A.clamp(2.0, 1.0).reveal(), A.clamp(lo, hi).reveal()

    for s, e in run(fn, 2):
        assert np.array_equal(s, torch.clamp(torch.tensor(a), 2.0, 1.0).numpy())
        assert np.array_equal(e, torch.clamp(torch.tensor(a), torch.tensor(lo), torch.tensor(hi)).numpy())


# ================================================================= where
@pytest.mark.parametrize("n", NS)
@HSET
@given(a=real_arrays, data=st.data())
def test_where(n, a, data):
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=reals), label="b")
    mask = data.draw(hnp.arrays(np.bool_, a.shape), label="mask")
    c = data.draw(reals, label="c")

    def fn(rt):
        A = share_from(rt, a, 0)
        B = share_from(rt, b, rt.world_size - 1)
        cond = A < B  # shared 0/1
        r0 = rounds(rt)
        w1 = t_where(cond, A, B)
        r_where = rounds(rt) - r0
        return (
            r_where,
            w1.reveal(),
            A.where(cond, B).reveal(),  # torch-style method: where(cond, self, other)
            t_where(cond, A, c).reveal(),  # public other branch
            t_where(cond, c, B).reveal(),
            t_where(mask, A, B).reveal(),  # public condition
            t_where(torch.tensor(mask), A, c).reveal(),
            t_where(mask, c, B).reveal(),
        )

    qa, qb, qc = q(a), q(b), float(q(c))
    lt = enc(a) < enc(b)
    wants = [np.where(lt, qa, qb), np.where(lt, qa, qb), np.where(lt, qa, qc), np.where(lt, qc, qb),
             np.where(mask, qa, qb), np.where(mask, qa, qc), np.where(mask, qc, qb)]
    for r_where, *gots in run(fn, n):
        assert r_where == 1, "where with a shared condition is one Beaver product"
        for i, (g, w) in enumerate(zip(gots, wants)):
            assert_close(g, w, TOL, f"where #{i}")


# ====================================================== max, min, argmax
@pytest.mark.parametrize("n", NS)
@HSET
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 5)),
    seed=st.integers(0, 2**32 - 1),
    ties=st.booleans(),
)
def test_max_min_argmax_like_torch(n, shape, seed, ties):
    """max/min over each dim and over all elements, keepdim; argmax/argmin pick the
    first extremum on ties, like torch; one_hot argmax. Rounds: max over k elements
    7 ceil(log2 k); argmax 7 ceil(log2 k) + 14."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-3, 3, size=shape) / 4.0 if ties else rng.uniform(-1e3, 1e3, size=shape)
    qa = q(a)
    ta = torch.tensor(qa)

    def fn(rt):
        A = share_from(rt, a, 0)
        res = {}
        for d in (0, 1, 2, -1, None):
            k = a.size if d is None else a.shape[d]
            r0 = rounds(rt)
            m = A.max(dim=d)  # d given: (values, indices) as torch.max
            rm = rounds(rt) - r0
            r0 = rounds(rt)
            am = A.argmax(dim=d)
            ra = rounds(rt) - r0
            mn = A.min(dim=d)
            res[d] = dict(
                k=k, rm=rm, ra=ra,
                max=(m if d is None else m.values).reveal(), argmax=opened(rt, am),
                max_idx=None if d is None else opened(rt, m.indices),
                min=(mn if d is None else mn.values).reveal(), argmin=opened(rt, A.argmin(dim=d)),
                min_idx=None if d is None else opened(rt, mn.indices),
                max_keep=A.max(dim=d, keepdim=True).values.reveal() if d is not None else None,
                onehot=opened(rt, A.argmax(dim=d, one_hot=True)) if d is not None else None,
            )
        return res

    for res in run(fn, n):
        for d, r in res.items():
            lg = math.ceil(math.log2(r["k"])) if r["k"] > 1 else 0
            assert r["rm"] == LTZ_ROUNDS * lg + (0 if d is None else 2 * LTZ_ROUNDS), (d, r["rm"])
            assert r["ra"] == LTZ_ROUNDS * lg + 2 * LTZ_ROUNDS, (d, r["ra"])
            if d is None:
                assert_close(r["max"], ta.max().numpy(), TOL, "max")
                assert_close(r["min"], ta.min().numpy(), TOL, "min")
                np.testing.assert_array_equal(r["argmax"], ta.argmax().numpy())
                np.testing.assert_array_equal(r["argmin"], ta.argmin().numpy())
                continue
            assert_close(r["max"], ta.max(dim=d).values.numpy(), TOL, f"max dim={d}")
            assert_close(r["min"], ta.min(dim=d).values.numpy(), TOL, f"min dim={d}")
            assert_close(r["max_keep"], ta.max(dim=d, keepdim=True).values.numpy(), TOL, f"max keepdim dim={d}")
            np.testing.assert_array_equal(r["argmax"], ta.argmax(dim=d).numpy(), err_msg=f"argmax dim={d}")
            np.testing.assert_array_equal(r["max_idx"], ta.max(dim=d).indices.numpy(), err_msg=f"max indices dim={d}")
            np.testing.assert_array_equal(r["min_idx"], ta.argmin(dim=d).numpy(), err_msg=f"min indices dim={d}")
            np.testing.assert_array_equal(r["argmin"], ta.argmin(dim=d).numpy(), err_msg=f"argmin dim={d}")
            oh = F.one_hot(ta.argmax(dim=d), a.shape[d]).movedim(-1, d % a.ndim).numpy()
            np.testing.assert_array_equal(r["onehot"], oh, err_msg=f"one_hot dim={d}")


def test_out_of_range_dim_raises_like_torch():
    """A dim outside [-ndim, ndim) is refused before any round, as torch refuses it (IndexError),
    instead of wrapping onto another dimension; in-range negative dims still work."""
    a = np.array([[1.0, 3.0, 2.0], [4.0, 0.0, 5.0]])

    def fn(rt):
        A = share_from(rt, a, 0)
        r0 = rounds(rt)
        refused = []
        for call in (lambda: A.argmax(dim=2), lambda: A.max(dim=3), lambda: A.argmax(dim=-3),
                     lambda: A.min(dim=2), lambda: A.argmin(dim=2), lambda: A.softmax(dim=2),
                     lambda: A.flatten(0, 2), lambda: normalize.normalize(A, dim=-3)):
            with pytest.raises(DimError) as e:
                call()
            refused.append(isinstance(e.value, IndexError) and "out of range" in str(e.value))
        return refused, rounds(rt) - r0, opened(rt, A.argmax(dim=-2)), A.max(dim=-1).values.reveal()

    for refused, spent, am, mx in run(fn, 2):
        assert refused == [True] * 8
        assert spent == 0
        np.testing.assert_array_equal(am, [1, 0, 1])
        np.testing.assert_allclose(mx, [3.0, 5.0])


def test_argmax_first_maximum_on_ties():
    a = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [-1.0, -2.0, -1.0, -3.0], [0.0, 0.0, 0.0, 7.0],
                  [2.0, 1.0, 2.0, 2.0]])

    def fn(rt):
        A = share_from(rt, a, 1)
        return (opened(rt, A.argmax(dim=1)), opened(rt, A.argmin(dim=1)), opened(rt, A.argmax()),
                opened(rt, A.argmax(dim=0)))

    t = torch.tensor(a)
    for am, an, af, a0 in run(fn, 3):
        np.testing.assert_array_equal(am, [1, 0, 0, 3, 0])
        np.testing.assert_array_equal(am, t.argmax(dim=1).numpy())
        np.testing.assert_array_equal(an, t.argmin(dim=1).numpy())
        np.testing.assert_array_equal(af, t.argmax().numpy())
        np.testing.assert_array_equal(a0, t.argmax(dim=0).numpy())


@pytest.mark.parametrize("n", NS)
@HSET
@given(a=real_arrays, data=st.data())
def test_maximum_minimum_elementwise_like_torch(n, a, data):
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=reals), label="b")
    row = data.draw(hnp.arrays(np.float64, a.shape[-1:], elements=reals), label="row")  # broadcasts
    c = data.draw(reals, label="c")

    def fn(rt):
        A = share_from(rt, a, 0)
        B = share_from(rt, b, rt.world_size - 1)
        r0 = rounds(rt)
        mx = A.max(B)  # torch.max(input, other): elementwise
        r_max = rounds(rt) - r0
        return (r_max, mx.reveal(), A.min(B).reveal(), A.maximum(torch.tensor(row)).reveal(),
                A.minimum(row).reveal(), A.maximum(c).reveal(), B.minimum(A).reveal())

    qa, qb, qr, qc = q(a), q(b), q(row), float(q(c))
    ta, tb, tr = torch.tensor(qa), torch.tensor(qb), torch.tensor(qr)
    wants = [torch.maximum(ta, tb), torch.minimum(ta, tb), torch.maximum(ta, tr), torch.minimum(ta, tr),
             torch.clamp(ta, min=qc), torch.minimum(tb, ta)]
    for r_max, *gots in run(fn, n):
        assert r_max == LTZ_ROUNDS
        for i, (g, w) in enumerate(zip(gots, wants)):
            assert g.shape == tuple(w.shape), (i, g.shape, w.shape)
            assert_close(g, w.numpy(), TOL, f"maximum/minimum #{i}")


# ================================================================ maxpool2d
POOLS = [
    dict(kernel_size=2),
    dict(kernel_size=2, stride=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    dict(kernel_size=3, stride=2),
    dict(kernel_size=2, stride=2, dilation=2),
    dict(kernel_size=1),
    dict(kernel_size=2, stride=2, ceil_mode=True),  # 7x8: a partial last row of windows
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(3, 3), ceil_mode=True),  # a partial last window in both dims
]


@pytest.mark.parametrize("n", NS)
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_maxpool2d_like_torch(n, seed, ties):
    """maxpool2d vs torch.nn.functional.max_pool2d for several kernel / stride / padding /
    dilation / ceil_mode on NCHW and CHW inputs (negative inputs make the padding matter);
    rounds 7 ceil(log2(kh kw))."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-4, 0, size=(2, 3, 7, 8)) / 2.0 if ties else rng.uniform(-50, 50, size=(2, 3, 7, 8))
    x3 = x[0]
    tx = torch.tensor(q(x))

    def fn(rt):
        X = share_from(rt, x, 0)
        X3 = share_from(rt, x3, rt.world_size - 1)
        out = []
        for kw in POOLS:
            r0 = rounds(rt)
            y = X.maxpool2d(**kw)
            r = rounds(rt) - r0
            out.append((r, y.reveal(), X3.max_pool2d(**kw).reveal()))
        return out

    for out in run(fn, n):
        for kw, (r, got, got3) in zip(POOLS, out):
            want = F.max_pool2d(tx, **kw).numpy()
            assert_close(got, want, TOL, f"maxpool2d {kw}")
            assert_close(got3, F.max_pool2d(tx[0], **kw).numpy(), TOL, f"maxpool2d CHW {kw}")
            k = kw["kernel_size"]
            kk = k * k if isinstance(k, int) else k[0] * k[1]
            assert r == LTZ_ROUNDS * (math.ceil(math.log2(kk)) if kk > 1 else 0), (kw, r)


# ==================================================================== shapes
def test_comparisons_keep_0d_shape():
    """A 0-d tensor stays 0-d through comparisons, relu, sign, like torch."""

    def fn(rt):
        A = share_from(rt, np.array([-2.5]), 0).reshape(())
        return (A.shape, opened(rt, A < 1).shape, A.relu().reveal().shape, A.sign().reveal().shape,
                float(A.abs().reveal()))

    for *shapes, v in run(fn, 2):
        assert shapes == [(), (), (), ()], shapes
        assert v == 2.5


def test_share_of_0d_value_keeps_shape():
    """rt.share of a 0-d value (numpy scalar, 0-d torch tensor) gives a 0-d SharedTensor,
    like torch (library bug: np.ascontiguousarray in Runtime.share_ring makes it (1,))."""

    def fn(rt):
        return share_from(rt, np.float64(-2.5), 0).shape, share_from(rt, torch.tensor(1.5), 1).shape

    for shapes in run(fn, 2):
        assert shapes == ((), ()), shapes


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("halves", [False, True])
def test_ltz_hands_out_powers_of_beta_x_from_its_opening(n, halves):
    """ltz_steps(powers=(k, J, beta)): the comparison's opening of x also gives the
    truncation-with-powers of beta x (exp's first step): u = beta x >> k up to +1, and
    u^j exactly mod 2^64, with no opening of its own, and a polynomial in u (plus a
    multiple of x) in one fused pass; the comparison bits stay exact. With halves the
    powers tuple is a request of its own (ltzpow), read only when the powers are used."""
    k, J, beta = 29, 4, 1234567
    rng = np.random.default_rng(n)
    x = np.concatenate([np.array([0, 1, -1, 2**40, -(2**40), 3 * 2**38], np.int64),
                        rng.integers(-(2**41), 2**41, 5000, dtype=np.int64)])  # |beta x| < 2^62
    ts = [0, -(2**20)]
    coef = [int(v) for v in rng.integers(-(2**62), 2**62, J + 1)]
    xcoef = -987654321

    def fn(rt):
        X = share_from(rt, x, 0, fbits=0)
        got = {}
        s0 = rt.stats()
        spec = LtzSpec.of(x.size, 0, rows=2, powers=(k, J, beta))
        mat = comparison.request(rt, spec, halves=True) if halves else None
        b, _ = run1(rt, comparison.ltz_steps(rt, X.share, mat=mat, thresholds=ts, spec=spec,
                                             on_powers=lambda v: got.setdefault("v", v)))
        s1 = rt.stats()
        riding = got["v"]
        return rt.open([b] + riding.all() + [riding.poly(coef, X.share, xcoef)]), s1["rounds"] - s0["rounds"]

    want_bits = ((x[None, :] - np.array(ts, np.int64)[:, None]) < 0).astype(np.int64)
    floor_u = (x.astype(object) * beta) >> k
    for opened, r in run(fn, n):
        bits, pw, poly = opened[0], opened[1:-1], opened[-1]
        assert r == LTZ_ROUNDS
        np.testing.assert_array_equal(bits, want_bits)
        u = pw[0]
        assert all(int(a) - int(w) in (0, 1) for a, w in zip(u, floor_u))
        with np.errstate(over="ignore"):
            acc = u.copy()
            for j in range(1, J):
                acc = acc * u
                np.testing.assert_array_equal(pw[j], acc)
        want = [(coef[0] + xcoef * int(xe) + sum(coef[j] * int(ue) ** j for j in range(1, J + 1))) % 2**64
                for xe, ue in zip(x, u)]
        assert [int(v) % 2**64 for v in poly] == want


def test_dealer_refuses_malformed_powers_parameters():
    from mpcrt.errors import DealerError

    for pw in ([29, 4, 2], [0, 4, 1], [29, 9, 1], [29, 4], "x"):
        with pytest.raises(DealerError):
            comparison.LtzBundle().own(dict(n=128, k=0, pw=pw))

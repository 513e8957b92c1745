"""Split openings (mpcrt.allreduce): reduce-scatter then all-gather for N >= 3.

Unit checks of the chunking and the segment-wise reduction, then whole sessions
(parties as threads over ZeroMQ/CURVE) with the split forced for every opening
(SPLIT_BYTES = 0): openings, Beaver products and exact comparisons (whose rounds open
int64 and packed uint8 XOR shares together) still give exact results, each split
opening counts two rounds, and a party sends 2 (N - 1) / N of the buffer instead of
N - 1 times it.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt import allreduce
from mpcrt.launch.inprocess import run_parties
from mpcrt.protocols import comparison
from mpcrt.protocols.rounds import run1


@given(st.integers(0, 10_000), st.integers(1, 9))
def test_bounds_cover_in_order_and_aligned(nbytes, n):
    e = allreduce.bounds(nbytes, n)
    assert len(e) == n + 1 and e[0] == 0 and e[-1] == nbytes
    assert all(a <= b for a, b in zip(e, e[1:]))
    assert all(x % 8 == 0 for x in e[1:-1])
    assert max(b - a for a, b in zip(e, e[1:])) <= nbytes // n + 8


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 39), st.integers(0, 2**32 - 1))
@settings(max_examples=60)
def test_reduce_into_adds_words_and_xors_bytes(n_add, n_xor, cut, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**63), 2**63 - 1, n_add, dtype=np.int64, endpoint=True)
    b = rng.integers(-(2**63), 2**63 - 1, n_add, dtype=np.int64, endpoint=True)
    xa, xb = rng.integers(0, 256, n_xor, np.uint8), rng.integers(0, 256, n_xor, np.uint8)
    buf1 = np.concatenate([a.view(np.uint8), xa])
    buf2 = np.concatenate([b.view(np.uint8), xb])
    segs = [(0, 8 * n_add, True), (8 * n_add, 8 * n_add + n_xor, False)]
    lo = min(cut * 8, buf1.size)  # chunk edges are multiples of 8
    acc = buf1[lo:].copy()
    allreduce.reduce_into(acc, buf2[lo:], segs, lo)
    want = np.concatenate([(a + b).view(np.uint8), xa ^ xb])[lo:]
    assert np.array_equal(acc, want)


def test_split_only_from_three_parties_and_large_buffers(monkeypatch):
    monkeypatch.setattr(allreduce, "SPLIT_BYTES", 1 << 19)
    assert not allreduce.use_split(2, 1 << 30)
    assert allreduce.use_split(3, 1 << 19) and not allreduce.use_split(3, (1 << 19) - 1)
    monkeypatch.setattr(allreduce, "SPLIT_BYTES", -1)
    assert not allreduce.use_split(5, 1 << 30)


def _session(rt, xs, ys, vals):
    out = {}
    x, y = rt.share(xs if rt.rank == 0 else None, src=0), rt.share(ys if rt.rank == 1 else None, src=1)
    out["x"] = x.reveal()
    s0 = rt.stats()
    z = x * y
    s1 = rt.stats()
    out["xy"] = z.reveal()
    out["mul_rounds"] = s1["rounds"] - s0["rounds"]
    v = np.asarray(vals, np.int64)
    share = v if rt.rank == 0 else np.zeros_like(v)
    s0 = rt.stats()
    (opened,) = rt.open([share])
    s1 = rt.stats()
    out["opened"] = opened
    out["open_sent"], out["open_rounds"] = s1["bytes_sent"] - s0["bytes_sent"], s1["rounds"] - s0["rounds"]
    bits, _ = run1(rt, comparison.ltz_steps(rt, share, 0, None))
    out["ltz"] = rt.open([bits])[0]
    return out


@pytest.mark.parametrize("n", [3, 5])
def test_forced_split_is_exact(monkeypatch, n):
    monkeypatch.setattr(allreduce, "SPLIT_BYTES", 0)
    rng = np.random.default_rng(n)
    xs, ys = rng.uniform(-100, 100, 1001), rng.uniform(-100, 100, 1001)
    edges = [0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63)]
    vals = np.concatenate([np.array(edges, np.int64), rng.integers(-(2**63), 2**63 - 1, 3000, dtype=np.int64)])
    res = run_parties(_session, n, xs, ys, vals, timeout=20.0, join_timeout=60)
    q = lambda a: np.round(a * 2**16) / 2**16  # noqa: E731 (inputs on the fixed-point grid)
    for r in res:
        assert np.array_equal(r["x"], q(xs))
        assert np.max(np.abs(r["xy"] - q(xs) * q(ys))) <= 2**-15
        assert np.array_equal(r["opened"], vals)
        assert np.array_equal(r["ltz"], (vals < 0).astype(np.int64))
        assert r["open_rounds"] == 2
        assert r["mul_rounds"] == 4  # two openings, each split
        L = vals.nbytes
        assert r["open_sent"] <= 2 * (n - 1) * (L // n + 8) + 4096  # + frame headers
        assert r["open_sent"] < (n - 1) * L


def test_tiny_buffers_with_empty_chunks(monkeypatch):
    monkeypatch.setattr(allreduce, "SPLIT_BYTES", 0)

    def fn(rt):
        v = np.array([rt.rank + 1], np.int64)
        return rt.open([v, np.zeros((0,), np.int64), np.array(7 * rt.rank, np.int64)])

    for a, empty, b in run_parties(fn, 5, timeout=20.0, join_timeout=60):
        assert a.tolist() == [15] and empty.shape == (0,) and b.shape == () and int(b) == 70


def test_forced_split_nonlinear(monkeypatch):
    """exp and sigmoid through split openings (int64 and packed-bit XOR parts in one
    buffer, chunk edges inside them): same accuracy, twice the rounds."""
    monkeypatch.setattr(allreduce, "SPLIT_BYTES", 0)
    x = np.concatenate([np.linspace(-12, 10, 3001), [-1000.0, -16.0, 0.0, 10.5, 3000.0]])

    def fn(rt):
        t = rt.share(x if rt.rank == 2 else None, src=2)
        r0 = rt.stats()["rounds"]
        e = t.exp()
        r1 = rt.stats()["rounds"]
        s = t.sigmoid()
        r2 = rt.stats()["rounds"]
        return e.reveal(), s.reveal(), r1 - r0, r2 - r1

    q = np.round(x * 2**16) / 2**16
    for e, s, re, rs in run_parties(fn, 3, timeout=30.0, join_timeout=90):
        ref = np.exp(np.minimum(q, 11.5))
        inside = np.abs(q) <= 10
        assert np.all(np.abs(e - ref)[inside] <= np.maximum(1e-2 * ref, 2**-12)[inside])
        assert np.all(np.abs(e[q < -10]) <= 1e-3)
        assert np.max(np.abs(s - 0.5 * (1 + np.tanh(q / 2)))) <= 1e-3  # sigmoid, no overflow
        assert re == 14 and rs == 30

"""Elementwise ops in chunks (mpcrt.chunked): the same results as unchunked, the stated rounds.

Each test runs one session with chunking off and one with a tiny chunk size (sizes not a
multiple of it) on the same plaintext inputs, over the in-memory transport, and compares
the revealed results: exact ops (comparisons, relu, integer products, reveal) equal, the
truncating ones within their error. Rounds: a chunked op counts (chunks x the unchunked
op's rounds): every chunk opens in its own messages (up to chunked.WINDOW in flight).
"""
from __future__ import annotations

import numpy as np
import pytest

from mpcrt import SharedTensor, chunked
from mpcrt.launch.inprocess import run_parties

N_ELEMS = 203  # not a multiple of CHUNK
CHUNK = 37
CHUNKS = -(-N_ELEMS // CHUNK)  # 6
F = 16


def _inputs(n: int = N_ELEMS):
    rng = np.random.default_rng(7)
    a = rng.uniform(-4, 4, n)
    b = rng.uniform(-4, 4, n)
    a[:3] = [0.0, 1.0, -1.0]
    b[:3] = [0.0, 1.0, 2.0]  # ties for the comparisons
    return a, b


def _session(ops: dict, n_parties: int, chunk: int, shape=(N_ELEMS,)) -> dict:
    """{name: (revealed result, rounds of the op alone)} of every op on one session."""
    a, b = _inputs(int(np.prod(shape)))
    a, b = a.reshape(shape), b.reshape(shape)

    def prog(rt):
        x = rt.share(a if rt.rank == 0 else None, 0)
        y = rt.share(b if rt.rank == 1 else None, 1)
        out = {}
        for name, op in ops.items():
            r0 = rt.stats()["rounds"]
            z = op(x, y, a, b)
            rounds = rt.stats()["rounds"] - r0
            out[name] = (z.reveal(), rounds)
        return out

    old = chunked.CHUNK_ELEMENTS
    chunked.CHUNK_ELEMENTS = chunk
    try:
        res = run_parties(prog, n_parties, timeout=30.0, join_timeout=120)
    finally:
        chunked.CHUNK_ELEMENTS = old
    for name in ops:  # every party reveals the same
        for r in res[1:]:
            np.testing.assert_array_equal(r[name][0], res[0][name][0])
    return res[0]


EXACT = {
    "relu": lambda x, y, a, b: x.relu(),
    "ltz": lambda x, y, a, b: x.ltz(),
    "lt": lambda x, y, a, b: x < y,
    "ge_public": lambda x, y, a, b: x >= 0.5,
    "eq": lambda x, y, a, b: x == y,
    "abs": lambda x, y, a, b: abs(x),
    "sign": lambda x, y, a, b: x.sign(),
    "clamp": lambda x, y, a, b: x.clamp(-1.0, 2.0),
    "maximum": lambda x, y, a, b: x.maximum(y),
    "bit_times_x": lambda x, y, a, b: (x < y) * x,  # a 0-bit product: no truncation
    "int_public": lambda x, y, a, b: x * 3,
}
TRUNCATING = {  # name: (op, tolerance against the unchunked result: absolute, relative above 1)
    "mul": (lambda x, y, a, b: x * y, 2 * 2.0**-F),
    "mul_public_array": (lambda x, y, a, b: x * b, 4 * 2.0**-F),
    "square": (lambda x, y, a, b: x.square(), 2 * 2.0**-F),
    "to_precision": (lambda x, y, a, b: SharedTensor(x.rt, x.share << np.int64(F), 2 * F).to_precision(), 2.0**-F),
    "exp": (lambda x, y, a, b: x.exp(), 0.01),
    "sigmoid": (lambda x, y, a, b: x.sigmoid(), 0.01),
    "tanh": (lambda x, y, a, b: x.tanh(), 0.01),
    "reciprocal": (lambda x, y, a, b: (abs(x) + 1).reciprocal(), 0.01),
    "div": (lambda x, y, a, b: x / (abs(y) + 1), 0.02),
    "sqrt": (lambda x, y, a, b: (abs(x) + 0.5).sqrt(), 0.01),
    "gelu": (lambda x, y, a, b: x.gelu(), 0.01),
    "silu": (lambda x, y, a, b: x.silu(), 0.02),
    "hardtanh": (lambda x, y, a, b: x.hardtanh(), 0.0),
}


@pytest.mark.parametrize("n_parties", [2, 3])
def test_exact_ops_chunked_equal_unchunked(n_parties):
    whole = _session(EXACT, n_parties, 0)
    parts = _session(EXACT, n_parties, CHUNK)
    for name in EXACT:
        np.testing.assert_array_equal(parts[name][0], whole[name][0], err_msg=name)
        if whole[name][1]:  # protocol ops: every chunk opens in its own rounds
            assert parts[name][1] == CHUNKS * whole[name][1], (name, parts[name][1], whole[name][1])


def test_truncating_ops_chunked_within_error():
    ops = {k: v[0] for k, v in TRUNCATING.items()}
    whole = _session(ops, 2, 0)
    parts = _session(ops, 2, CHUNK)
    for name, (_, tol) in TRUNCATING.items():
        err = float(np.max(np.abs(parts[name][0] - whole[name][0]) / np.maximum(1.0, np.abs(whole[name][0]))))
        assert err <= tol, (name, err, tol)
        assert parts[name][1] == CHUNKS * whole[name][1], (name, parts[name][1], whole[name][1])
    a, b = (np.rint(v * 2**F) / 2**F for v in _inputs())  # as encoded
    assert np.max(np.abs(parts["mul"][0] - a * b)) <= 2.0**-F + 1e-9


def test_reveal_and_share_chunked():
    """reveal (to all and to one party) and share, multi-dimensional, with chunking on."""
    a, _ = _inputs(12 * 17)
    a = a.reshape(12, 17)

    def prog(rt):
        x = rt.share(a if rt.rank == 1 else None, 1)
        return x.reveal(), x.reveal(to=0), x.reveal(dtype=np.float32)

    chunked.CHUNK_ELEMENTS, old = 10, chunked.CHUNK_ELEMENTS
    try:
        res = run_parties(prog, 3, timeout=30.0)
    finally:
        chunked.CHUNK_ELEMENTS = old
    want = np.rint(a * 2**F) / 2**F
    for r, (full, to0, f32) in enumerate(res):
        np.testing.assert_array_equal(full, want)
        assert f32.dtype == np.float32 and f32.shape == a.shape
        if r == 0:
            np.testing.assert_array_equal(to0, want)
        else:
            assert to0 is None


def test_multidimensional_and_fallbacks():
    """A 2-d tensor chunks over its flat elements; a broadcast operand does not chunk (same
    result either way); a preprocessed (planned) chunked op runs on its prefetched material."""
    ops = {
        "relu2d": lambda x, y, a, b: x.relu(),
        "mul2d": lambda x, y, a, b: x * y,
        "broadcast": lambda x, y, a, b: x * y[:1, :1],
    }
    whole = _session(ops, 2, 0, shape=(7, 29))
    parts = _session(ops, 2, CHUNK, shape=(7, 29))
    np.testing.assert_array_equal(parts["relu2d"][0], whole["relu2d"][0])
    assert parts["relu2d"][0].shape == (7, 29)
    assert np.max(np.abs(parts["mul2d"][0] - whole["mul2d"][0])) <= 2 * 2.0**-F
    assert parts["broadcast"][1] == whole["broadcast"][1]  # not chunked: the same rounds

    a, b = _inputs()

    def planned(rt):
        x = rt.share(a if rt.rank == 0 else None, 0)
        y = rt.share(b if rt.rank == 0 else None, 0)
        fn = lambda: (x * y).relu()  # noqa: E731
        n = rt.preprocess(fn)
        assert rt.dealer.prefetched == n
        z = fn()
        assert rt.dealer.prefetched == 0
        return z.reveal()

    chunked.CHUNK_ELEMENTS, old = CHUNK, chunked.CHUNK_ELEMENTS
    try:
        got = run_parties(planned, 2, timeout=30.0)[0]
    finally:
        chunked.CHUNK_ELEMENTS = old
    a, b = (np.rint(v * 2**F) / 2**F for v in (a, b))  # as encoded
    assert np.max(np.abs(got - np.maximum(a * b, 0))) <= 2.0**-F + 1e-9


def test_failure_in_a_chunk_is_raised():
    """An error inside one chunk's protocol code reaches the caller (the other fibers stop)."""
    from mpcrt import MpcError

    def prog(rt):
        x = rt.share(np.zeros(N_ELEMS) if rt.rank == 0 else None, 0)

        def bad(t):
            if t.share.size < CHUNK:  # the last chunk only
                raise ValueError("boom")
            return t.relu()

        wrapped = chunked.elementwise(bad, "bad")
        try:
            wrapped(x)
        except ValueError as e:
            return str(e)
        return "no error"

    chunked.CHUNK_ELEMENTS, old = CHUNK, chunked.CHUNK_ELEMENTS
    try:
        res = run_parties(prog, 2, timeout=10.0, join_timeout=60)
    except MpcError:  # a party may also see its peer stop; the error itself is what matters
        return
    finally:
        chunked.CHUNK_ELEMENTS = old
    assert res == ["boom", "boom"]


@pytest.mark.parametrize("n_parties", [2, 3])
def test_dealer_slices_large_elementwise_requests(monkeypatch, n_parties):
    """With chunking off, a large product, truncation and truncated product are single
    requests; the dealer deals and sends them in slices (correlations.slices), sizes not a
    multiple of the slice, and the parties' results are as exact as ever."""
    from mpcrt import correlations

    monkeypatch.setattr(correlations, "SLICE_ELEMENTS", 16)
    assert correlations.slices("triple", {"a": [N_ELEMS], "b": [N_ELEMS]}) is not None
    assert correlations.slices("triple", {"a": [N_ELEMS], "b": [1]}) is None  # broadcasting: whole
    ops = {
        "int_mul": lambda x, y, a, b: (x < y) * (x.ltz() + 0),  # shared 0-bit x 0-bit: an exact triple
        "mul": lambda x, y, a, b: x * y,  # triple_trunc
        "mul_public": lambda x, y, a, b: x * b,  # trunc
        "relu": lambda x, y, a, b: x.relu(),
    }
    got = _session(ops, n_parties, 0)
    a, b = (np.rint(v * 2**F) / 2**F for v in _inputs())
    np.testing.assert_array_equal(got["int_mul"][0], ((a < b) & (a < 0)).astype(np.float64))
    assert np.max(np.abs(got["mul"][0] - a * b)) <= 2.0**-F + 1e-9
    assert np.max(np.abs(got["mul_public"][0] - a * b)) <= 2.0**-F * 4
    np.testing.assert_array_equal(got["relu"][0], np.maximum(a, 0))


@pytest.mark.parametrize("split", [0, 600])
def test_chunked_with_two_step_openings(monkeypatch, split):
    """At N = 3 with two-step openings (mpcrt.allreduce) for all or only the larger
    openings, chunks in flight are read before a two-step opening starts: the same results."""
    from mpcrt import allreduce

    monkeypatch.setattr(allreduce, "SPLIT_BYTES", split)
    ops = {"relu": EXACT["relu"], "lt": EXACT["lt"], "mul": TRUNCATING["mul"][0]}
    whole = _session(ops, 3, 0)
    parts = _session(ops, 3, CHUNK)
    np.testing.assert_array_equal(parts["relu"][0], whole["relu"][0])
    np.testing.assert_array_equal(parts["lt"][0], whole["lt"][0])
    assert np.max(np.abs(parts["mul"][0] - whole["mul"][0])) <= 2 * 2.0**-F

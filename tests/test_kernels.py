"""The fused numba kernels against the numpy formulas they replace, on random words
including the edge values, and the buffer pool's no-aliasing guarantee."""
from __future__ import annotations

import gc
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt import correlations
from mpcrt.errors import DealerError
from mpcrt.kernels import bufpool, ring
from mpcrt.kernels import powers as kp
from mpcrt.kernels.prg import PRG
from mpcrt.protocols import beaver, comparison, powers, truncation

EDGES = np.array([0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63), 2**31, -(2**31) + 1], np.int64)


def words(seed: int, shape) -> np.ndarray:
    a = np.random.default_rng(seed).integers(-(2**63), 2**63 - 1, shape, dtype=np.int64, endpoint=True)
    flat = a.reshape(-1)
    k = min(flat.size, EDGES.size)
    flat[:k] = EDGES[:k]
    return a


def combine_ref(c, S, M, k, rank0):
    J = S.shape[0]
    C = ring.lshr(c, k) - np.int64(1 << (62 - k))
    w = 1 - ring.msb(c)
    Ss = [None]
    for j in range(1, J + 1):
        extra = np.zeros_like(c)
        for i in range(1, j + 1):
            extra += ring.const(comb(j, i) * (1 << (i * (64 - k)))) * M[j - i]
        Ss.append(S[j - 1] + w * extra)
    out = []
    for j in range(1, J + 1):
        acc = np.zeros_like(c)
        for i in range(1, j + 1):
            acc += np.int64(comb(j, i)) * C ** np.int64(j - i) * Ss[i]
        if rank0:
            acc += C ** np.int64(j)
        out.append(acc)
    return np.array(out)


@settings(max_examples=40, deadline=None)
@given(J=st.integers(1, 5), k=st.integers(1, 62), seed=st.integers(0, 2**32), rank0=st.booleans())
def test_trunc_pow_combine_matches_numpy(J, k, seed, rank0):
    n = 97
    c, S, M = words(seed, n), words(seed + 1, (J, n)), words(seed + 2, (J, n))
    assert np.array_equal(kp.combine(c, S, M, k, rank0), combine_ref(c, S, M, k, rank0))
    if k <= 32:  # M shared mod 2^32 (uint32, zero-extended): the same result, whatever the carries
        M32 = M.astype(np.uint32)
        assert np.array_equal(kp.combine(c, S, M32, k, rank0), combine_ref(c, S, M, k, rank0))
        M32b = (M + np.int64(1 << 32)).astype(np.uint32) + np.uint32(7)  # other shares of the same value
        fix = M32 - M32b  # mod 2^32
        assert np.array_equal(kp.combine(c, S, M32b, k, rank0) + kp.combine(c, np.zeros_like(S), fix, k, False),
                              combine_ref(c, S, M, k, rank0))


@settings(max_examples=40, deadline=None)
@given(J=st.integers(1, 5), k=st.integers(1, 62), seed=st.integers(0, 2**32), rank0=st.booleans(), with_x=st.booleans(),
       m32=st.booleans())
def test_trunc_pow_poly_matches_combine(J, k, seed, rank0, with_x, m32):
    """poly: coef[0] (party 0) + xcoef X + sum_j coef[j] u^j from the same inputs as combine,
    in one pass, for the written-out J (3, 4) and the general loop; random edge-laden coefficients."""
    n = 83
    c, S, M = words(seed, n), words(seed + 1, (J, n)), words(seed + 2, (J, n))
    if m32 and k <= 32:
        M = M.astype(np.uint32)
    coef = [int(v) for v in words(seed + 3, J + 1)]
    X, xcoef = (words(seed + 4, n), int(words(seed + 5, 1)[0])) if with_x else (None, 0)
    U = kp.combine(c, S, M, k, rank0)
    with np.errstate(over="ignore"):
        want = np.full(n, np.int64(coef[0]) if rank0 else np.int64(0))
        for j in range(J):
            want += np.int64(coef[j + 1]) * U[j]
        if with_x:
            want += np.int64(xcoef) * X
    assert np.array_equal(kp.poly(c, S, M, k, rank0, coef, X, xcoef), want)


@settings(max_examples=40, deadline=None)
@given(J=st.integers(1, 5), k=st.integers(1, 62), seed=st.integers(0, 2**32), with_sub=st.booleans())
def test_trunc_pow_deal_matches_numpy(J, k, seed, with_sub):
    n = 101
    r = words(seed, n)
    sub = words(seed + 1, (2 * J, n)) if with_sub else None
    s0, m = -ring.lshr(r, k), ring.msb(r)
    want = np.array([s0 ** np.int64(j) for j in range(1, J + 1)] + [m * s0 ** np.int64(j) for j in range(J)])
    want = want - (sub if with_sub else 0)
    for dt in (np.int64, np.uint32):  # M rows in full, or mod 2^32
        oS, oM = np.empty((J, n), np.int64), np.empty((J, n), dt)
        sS, sM = (sub[:J], sub[J:].astype(dt)) if with_sub else (None, None)
        kp.deal(r, k, J, sS, sM, oS, oM)
        assert np.array_equal(oS, want[:J])
        assert np.array_equal(oM, want[J:].astype(dt))


def _generic(kind_cls, prgs, priv, p, name):
    """The dealer's numpy path for a kind (its fused hooks switched off)."""
    saved = {h: getattr(kind_cls, h) for h in ("deal_into", "deal_two") if h in kind_cls.__dict__}
    for h in saved:
        delattr(kind_cls, h)
    try:
        return correlations.deal(prgs, priv, 7, name, p)
    finally:
        for h, f in saved.items():
            setattr(kind_cls, h, f)


@pytest.mark.parametrize("N", [2, 3, 5])
@pytest.mark.parametrize(
    "name,p,cls",
    [
        ("ltz", dict(n=640, k=0), comparison.LtzBundle),
        ("ltz", dict(n=1280, k=3), comparison.LtzBundle),
        ("ltz", dict(n=1920, k=2, rows=3, mrows=1), comparison.LtzBundle),  # shared edaBit, products on row 0
        ("ltz", dict(n=1920, k=1, rows=3, mrows=2, ym=1), comparison.LtzBundle),  # one mask for both product rows
        ("ltz", dict(n=1280, k=2, rows=2, ym=1), comparison.LtzBundle),
        # + powers of beta r, M 32-bit
        ("ltz", dict(n=1280, k=1, rows=2, ym=1, pw=[29, 4, 1234567]), comparison.LtzBundle),
        ("ltz", dict(n=640, k=0, pw=[40, 3, -99]), comparison.LtzBundle),  # M 64-bit
        ("ltz", dict(n=1280, k=1, rows=2, ym=1, cb=16), comparison.LtzBundle),  # coarse: AND masks zero at dead bits
        ("ltz", dict(n=640, k=0, cb=8), comparison.LtzBundle),
        # y truncated, M 32-bit
        ("ltz", dict(n=1280, k=1, rows=2, ym=1, cb=16, tk=29, pw=[29, 4, 12345]), comparison.LtzBundle),
        ("ltz", dict(n=1920, k=1, rows=3, mrows=2, ym=1, tk=40), comparison.LtzBundle),  # y truncated, M 64-bit
        # halves
        ("ltz", dict(n=1280, k=1, rows=2, ym=1, cb=16, tk=29, pw=[29, 4, 12345], part=1), comparison.LtzBundle),
        ("ltz", dict(n=1280, k=1, rows=2, ym=1, cb=16, tk=29, pw=[29, 4, 12345], part=2), comparison.LtzBundle),
        ("ltz", dict(n=1280, k=2, rows=2, part=2), comparison.LtzBundle),
        # row 0: s0 xor s1
        ("ltz", dict(n=1280, k=1, rows=2, mrows=1, ym=1, cb=16, tk=29, xr=1, part=2), comparison.LtzBundle),
        ("ltz", dict(n=1920, k=1, rows=3, mrows=1, ym=1, xr=1), comparison.LtzBundle),
        ("ltzpow", dict(n=1280, rows=2, pw=[29, 4, 12345], back=1), powers.LtzPowers),  # M 32-bit
        ("ltzpow", dict(n=640, rows=1, pw=[40, 3, -99], back=3), powers.LtzPowers),  # M 64-bit
        ("truncpow", dict(shape=[3, 50], k=40, J=3), powers.TruncPowers),
        ("truncpow", dict(shape=[3, 51], k=29, J=4), powers.TruncPowers),  # M as uint32, odd count
        ("triple", dict(a=[200], b=[200]), beaver.Triple),
        ("trunc", dict(shape=[4, 25], f=16), truncation.TruncPair),
        ("trunc", dict(shape=[3, 33], f=16), truncation.TruncPair),  # msb as uint32, odd count
        ("trunc", dict(shape=[4, 25], f=40), truncation.TruncPair),  # f > 32: msb as int64
        ("triple_trunc", dict(a=[4, 25], b=[4, 25], f=16), beaver.TripleTrunc),
        ("triple_trunc", dict(a=[99], b=[99], f=20), beaver.TripleTrunc),
        ("triple_trunc", dict(a=[2, 7], b=[2, 7], f=40), beaver.TripleTrunc),
    ],
)
def test_fused_dealer_equals_generic(N, name, p, cls):
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(N)]

    def priv(stream, shape):
        return PRG(b"\x09" * 16).words(stream, int(np.prod(shape))).reshape(shape)

    fused = correlations.deal(prgs, priv, 7, name, p)
    assert np.array_equal(fused, _generic(cls, prgs, priv, p, name))


@pytest.mark.parametrize("N", [2, 3])
@pytest.mark.parametrize("pass_threads", [1, 4])
def test_big_ltz_deal_on_threads_equals_generic(N, pass_threads, monkeypatch):
    """A bundle of >= correlations.PARALLEL_MIN words runs its passes (and the parties'
    expansions) on threads, or in turn (PASS_THREADS = 1): the same corrections as the
    generic numpy path."""
    monkeypatch.setattr(correlations, "PASS_THREADS", pass_threads)
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(N)]

    def priv(stream, shape):
        return PRG(b"\x09" * 16).words(stream, int(np.prod(shape))).reshape(shape)

    for part in (0, 1, 2):
        p = dict(n=2 * correlations.PARALLEL_MIN, k=1, rows=2, ym=1, cb=16, tk=29, pw=[29, 4, 12345], part=part)
        fused = correlations.deal(prgs, priv, 7, "ltz", p)
        assert np.array_equal(fused, _generic(comparison.LtzBundle, prgs, priv, p, "ltz"))


@pytest.mark.parametrize("N", [2, 3])
def test_ltzpow_deals_the_powers_of_an_earlier_bundles_r(N):
    """An 'ltzpow' request `back` requests after an ltz part-1 request deals the same
    values (the powers tuple of beta r for that bundle's r) as the bundle's own 'pw'
    entries would, each shared afresh; it refuses a reference before the first request."""
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(N)]

    def priv(stream, shape):
        return PRG(b"\x09" * 16).words(stream, int(np.prod(shape))).reshape(shape)

    def values(stream, name, p, entries):
        """The dealt values of `entries` (the tail of `name`'s corrections): all parties' shares summed."""
        corr = correlations.kind(name).corrected(p)
        tail = len(corr) - len(entries)
        flat = correlations.deal(prgs, priv, stream, name, p)
        c = correlations.corrected_party(stream, N)
        got = [correlations.split(flat, corr)] + [correlations.expand_party(prg, stream, name, p, False)
                                                 for i, prg in enumerate(prgs) if i != c]
        out = {}
        with np.errstate(over="ignore"):
            for nm, _, how in corr[tail:]:
                v = sum(g[nm].astype(np.int64) for g in got)  # wraps mod 2^64
                out[nm] = v & 0xFFFFFFFF if how == "a32" else v
        return out

    bundle = dict(n=1280, k=1, rows=2, ym=1, cb=16, tk=29, pw=[29, 4, 12345])
    entries = comparison.LtzBundle()._pw_entries(bundle)
    want = values(7, "ltz", dict(bundle, part=1), entries)
    p = dict(n=1280, rows=2, pw=[29, 4, 12345], back=2)
    got = values(9, "ltzpow", p, entries)
    assert want.keys() == got.keys()
    for nm in want:
        assert np.array_equal(np.asarray(want[nm]), np.asarray(got[nm])), nm
    with pytest.raises(DealerError):
        correlations.deal(prgs, priv, 1, "ltzpow", p)
    with pytest.raises(DealerError):
        correlations.kind("ltzpow").own(dict(p, back=0))


def test_ltz_dabits_are_bits_and_packed():
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(2)]

    def priv(stream, shape):
        return PRG(b"\x09" * 16).words(stream, int(np.prod(shape))).reshape(shape)

    p = dict(n=256, k=1)
    out = correlations.deal(prgs, priv, 3, "ltz", p)  # the corrected party's corrections
    c = correlations.corrected_party(3, 2)
    other = correlations.expand_party(prgs[1 - c], 3, "ltz", p, False)  # the other party expands its shares
    shapes = correlations.correction_shapes("ltz", p)
    names = [n for n, _, _ in comparison.LtzBundle().corrected(p)]
    off, got = 0, {}
    for nm, s in zip(names, shapes):
        sz = int(np.prod(s))
        got[nm] = out[off : off + sz]
        off += sz
    s = got["s"] + other["s"]
    sb = got["sb"] ^ other["sb"]
    assert set(np.unique(s)) <= {0, 1}
    assert np.array_equal(s, np.unpackbits(sb.view(np.uint8), bitorder="little").astype(np.int64))


def test_bufpool_never_hands_out_live_memory():
    n = bufpool.THRESHOLD + 5
    a = bufpool.empty(n)
    a[:] = 1
    view = a[10:20].reshape(2, 5)
    del a
    gc.collect()
    b = bufpool.empty(n)  # the first block is still in use through `view`
    b[:] = 2
    assert np.all(view == 1)
    del view, b
    gc.collect()
    c = bufpool.empty(n)  # now a block comes back from the pool
    assert c.size == n and c.dtype == np.int64


def test_bufpool_small_arrays_are_plain():
    a = bufpool.empty(10)
    assert a.size == 10 and a.dtype == np.int64


@pytest.mark.parametrize("N", [2, 3])
def test_odd_a32_count_leaves_no_stale_memory(N, monkeypatch):
    """M words shared mod 2^32 with an odd count: the unused half word is zero, never
    whatever the pooled buffer held before (other streams' words, earlier secrets)."""
    dirty = bufpool.empty

    def empty(n):
        out = dirty(n)
        out[...] = np.int64(0x5A5A5A5A5A5A5A5A)
        return out

    monkeypatch.setattr(correlations.bufpool, "empty", empty)
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(N)]
    p = dict(shape=[3, 17], k=20, J=3)  # 3 * 51 = 153 M values: odd
    flat = correlations.deal(prgs, lambda st, sh: np.zeros(sh, np.int64), 5, "truncpow", p)
    assert flat.view(np.uint32)[-1] == 0


def test_bufpool_reuses_a_larger_idle_block_best_fit(monkeypatch):
    """An idle block of up to twice the size serves a smaller request (fewer fresh pages)."""
    monkeypatch.setattr(bufpool, "_free", {})  # an empty pool: no other idle block fits better
    monkeypatch.setattr(bufpool, "_returned", __import__("collections").deque())
    monkeypatch.setattr(bufpool, "_idle", 0)
    n = bufpool.THRESHOLD + 5 * bufpool.GRAIN
    a = bufpool.empty(n)
    addr = a.ctypes.data
    del a
    gc.collect()
    b = bufpool.empty(n - 3 * bufpool.GRAIN)  # smaller, same block
    assert b.ctypes.data == addr and b.size == n - 3 * bufpool.GRAIN
    c = bufpool.empty(n - 3 * bufpool.GRAIN)  # the block is leased: another one
    assert c.ctypes.data != addr


def test_bufpool_finalizer_takes_no_lock():
    """A lease's finalizer may run inside a garbage collection that starts while empty()
    holds the pool's lock: it must only queue the block (taking the lock would deadlock)."""
    import threading

    block = np.empty(bufpool.GRAIN, np.int64)
    with bufpool._lock:  # as if a collection ran inside empty()'s critical section
        t = threading.Thread(target=bufpool._give_back, args=(block,), daemon=True)
        t.start()
        t.join(2.0)
        assert not t.is_alive(), "the finalizer waited for the pool's lock"
    assert any(b is block for b in bufpool._returned)
    bufpool.empty(bufpool.THRESHOLD)  # the next empty() moves returned blocks into the pool
    assert all(b is not block for b in bufpool._returned)


@pytest.mark.parametrize("p", [dict(n=100), dict(n=640, rows=3), dict(n=1920, rows=3, mrows=4),
                               dict(n=1920, rows=3, mrows=0), dict(n=640, k=99)])
def test_malformed_comparison_requests_are_refused(p):
    """The dealer refuses comparison parameters its kernels would read past (mrows > rows, ...)."""
    from mpcrt.errors import DealerError

    with pytest.raises(DealerError, match="malformed comparison request"):
        comparison.LtzBundle().own(p)


@pytest.mark.parametrize("N", [2, 3])
@pytest.mark.parametrize(
    "name,p,prod",
    [
        ("matmul_trunc", dict(a=[5, 7], b=[7, 3], f=16), ring.matmul),
        ("matmul_trunc", dict(a=[2, 4, 6], b=[6, 5], f=40), ring.matmul),  # batched; msb as int64
        ("triple_trunc", dict(a=[4, 1], b=[1, 6], f=16), np.multiply),  # broadcast
    ],
)
def test_truncated_product_tuples_are_consistent(N, name, p, prod):
    """protocols.beaver.Truncated: the parties' shares sum to a b + r, r >> f and msb r for one
    r (the dealer's), with the corrected party's corrections from the dealer and the rest from seeds."""
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(N)]

    def priv(stream, shape):
        return PRG(b"\x09" * 16).words(stream, int(np.prod(shape))).reshape(shape)

    kind = correlations.kind(name)
    corr = correlations.split(correlations.deal(prgs, priv, 11, name, p), kind.corrected(p))
    c = correlations.corrected_party(11, N)
    parts = [correlations.expand_party(prgs[i], 11, name, p, i == c) for i in range(N)]
    with np.errstate(over="ignore"):
        tot = {k: corr[k] + sum(q[k] for i, q in enumerate(parts) if i != c) for k in ("cr", "r_hi", "r_msb")}
        a, b = sum(q["a"] for q in parts), sum(q["b"] for q in parts)
        r = tot["cr"] - prod(a, b)
    f = p["f"]
    assert np.array_equal(tot["r_hi"], ring.lshr(r, f))
    msb = ring.msb(r)
    assert np.array_equal(tot["r_msb"], msb.astype(tot["r_msb"].dtype))
    assert tot["r_msb"].dtype == (np.uint32 if f <= 32 else np.int64)


@pytest.mark.parametrize("name,p", [("truncpow", {"shape": [70001], "k": 30, "J": 3}),
                                    ("truncpow", {"shape": [5, 7], "k": 45, "J": 4}),
                                    ("ltzpow", {"n": 2 * 3 * 64 * 600, "rows": 2, "pw": [29, 4, 4384967], "back": 1})])
def test_lazy_tuples_equal_expanded_ones(name, p):
    """An uncorrected party's truncation-with-powers tuple expanded lazily (LazyRows, a
    chunk at a time in kernels.powers) gives the same S, M and the same combine and poly
    results as the one expanded in full; lazy and eager expansion share the own prefix."""
    from mpcrt.kernels.prg import LazyRows
    from mpcrt.protocols import powers as pw

    g = PRG(b"\x05" * 16)
    eager = correlations.expand_party(g, 21, name, p, False)
    lazy = correlations.expand_party(g, 21, name, p, False, lazy=True)
    assert isinstance(lazy["M"], LazyRows) and isinstance(lazy["S*"], LazyRows)
    for k in correlations.own_layout(correlations.kind(name), p):
        assert np.array_equal(lazy[k[0]], eager[k[0]])
    if name == "ltzpow":
        k, J, _ = p["pw"]
        npad = p["n"] // p["rows"]
        n = npad - 37  # a comparison's padding: only the first n columns are used
    else:
        k, J = p["k"], p["J"]
        npad = n = int(np.prod(p["shape"]))
    Se, Me = pw.tuple_arrays(eager, J, npad, n)
    Sl, Ml = pw.tuple_arrays(lazy, J, npad, n)
    assert Sl.shape == Se.shape and Ml.shape == Me.shape
    assert np.array_equal(Sl.chunk(0, n), Se) and np.array_equal(Ml.chunk(0, n), Me)
    rng = np.random.default_rng(3)
    c = rng.integers(-(2**63), 2**63, n, dtype=np.int64)
    X = rng.integers(-(2**63), 2**63, n, dtype=np.int64)
    coef = [int(v) for v in rng.integers(-(2**40), 2**40, J + 1)]
    for rank0 in (True, False):
        assert np.array_equal(kp.combine(c, Sl, Ml, k, rank0), kp.combine(c, Se, Me, k, rank0))
        assert np.array_equal(kp.poly(c, Sl, Ml, k, rank0, coef, X, 12345),
                              kp.poly(c, Se, Me, k, rank0, coef, X, 12345))


def test_rows_in_separate_arrays_equal_one_block():
    """kernels.powers.Rows (a tuple's S rows in separate buffers, as dealer reply frames
    leave them) gives the same combine and poly results as one (J, n) block, and
    protocols.powers.tuple_arrays uses it exactly when the rows do not lie back to back."""
    from mpcrt.protocols import powers as pw

    rng = np.random.default_rng(8)
    J, n, k = 4, 70001, 29
    S = rng.integers(-(2**63), 2**63, (J, n), dtype=np.int64)
    M = rng.integers(0, 2**32, (J, n), dtype=np.int64).astype(np.uint32)
    rows = kp.Rows([S[j].copy() for j in range(J)])
    c = rng.integers(-(2**63), 2**63, n, dtype=np.int64)
    coef = [int(v) for v in rng.integers(-(2**40), 2**40, J + 1)]
    assert np.array_equal(kp.combine(c, rows, M, k, True), kp.combine(c, S, M, k, True))
    assert np.array_equal(kp.poly(c, rows, M, k, False, coef, c, 7), kp.poly(c, S, M, k, False, coef, c, 7))
    flat = S.reshape(-1)
    apart = {f"S{j + 1}": S[j].copy() for j in range(J)} | {"M": M}
    together = {f"S{j + 1}": flat[j * n : (j + 1) * n] for j in range(J)} | {"M": M}
    assert isinstance(pw.tuple_arrays(apart, J, n, n - 5)[0], kp.Rows)
    S2 = pw.tuple_arrays(together, J, n, n - 5)[0]
    assert isinstance(S2, np.ndarray) and np.shares_memory(S2, flat) and np.array_equal(S2, S[:, : n - 5])


@pytest.mark.parametrize("nbytes", [4, 5, 6])
def test_topbytes_pack_and_sum_with_read_only_parts(nbytes):
    """kernels.topbytes: the sum of the parties' packed top bytes is sum_i (z_i >> s) << s
    mod 2^64, also when some received parts are read-only buffers."""
    from mpcrt.kernels import topbytes

    rng = np.random.default_rng(nbytes)
    zs = [rng.integers(-(2**63), 2**63, 1001, dtype=np.int64) for _ in range(3)]
    plus = rng.integers(-(2**63), 2**63, 1001, dtype=np.int64)
    received = [[np.frombuffer(p.tobytes(), p.dtype) for p in topbytes.pack(z, nbytes)] for z in zs[1:]]
    packed = [topbytes.pack(zs[0], nbytes, plus, 77)] + received
    out = topbytes.unpack_sum(packed, nbytes, np.empty(1001, np.int64))
    s = topbytes.low_bits(nbytes)
    with np.errstate(over="ignore"):
        want = (((zs[0] + plus + np.int64(77)) >> s) << s) + sum((z >> s) << s for z in zs[1:])
    assert np.array_equal(out, want)
    with pytest.raises(ValueError, match="4, 5 or 6"):
        topbytes.pack(zs[0], 7)

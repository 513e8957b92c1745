"""Ring Z_2^64 (mpcrt.kernels.ring): laws with wrap-around, against Python ints mod 2^64.

Also the torch-backed ring matmul and conv2d, exact against object-dtype (Python int)
references, with values large enough that every product and sum overflows.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.kernels import ring

MOD = 1 << 64
I64 = st.integers(-(1 << 63), (1 << 63) - 1)


def wrap(v: int) -> int:
    """Python int -> the signed int64 value of v mod 2^64."""
    v %= MOD
    return v - MOD if v >= 1 << 63 else v


wrap_all = np.vectorize(wrap, otypes=[object])


def as_obj(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(object)


def same(a: np.ndarray, ref_obj: np.ndarray) -> bool:
    """int64 array equals the (wrapped) object-dtype reference, shapes included."""
    a = np.asarray(a)
    ref = wrap_all(np.asarray(ref_obj, dtype=object)) if np.asarray(ref_obj).size else np.asarray(ref_obj)
    return (a.dtype == np.int64 and a.shape == np.shape(ref)
            and all(int(x) == int(y) for x, y in zip(a.ravel(), np.ravel(ref))))


def rand64(rng, shape):
    return rng.integers(-(1 << 63), (1 << 63) - 1, size=shape, dtype=np.int64, endpoint=True)


EDGE = [0, 1, -1, 2, (1 << 63) - 1, -(1 << 63), (1 << 62), -(1 << 62), (1 << 32) + 7, -(1 << 32) - 3,
        0x5555555555555555]


# ------------------------------------------------------------------ elementwise laws
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(I64, I64, I64), min_size=1, max_size=24))
def test_add_mul_sub_neg_match_python_ints_mod_2_64(triples):
    a, b, c = (np.array(col, dtype=np.int64) for col in zip(*triples))
    for i, (x, y, _) in enumerate(triples):
        assert int((a + b)[i]) == wrap(x + y)
        assert int((a - b)[i]) == wrap(x - y)
        assert int((a * b)[i]) == wrap(x * y)
        assert int((-a)[i]) == wrap(-x)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(I64, I64, I64), min_size=1, max_size=24))
def test_ring_laws_with_wraparound(triples):
    a, b, c = (np.array(col, dtype=np.int64) for col in zip(*triples))
    # commutativity
    assert np.array_equal(a + b, b + a)
    assert np.array_equal(a * b, b * a)
    # associativity
    assert np.array_equal((a + b) + c, a + (b + c))
    assert np.array_equal((a * b) * c, a * (b * c))
    # distributivity (both sides)
    assert np.array_equal(a * (b + c), a * b + a * c)
    assert np.array_equal((a + b) * c, a * c + b * c)
    # identities and inverses
    assert np.array_equal(a + ring.zeros(a.shape), a)
    assert np.array_equal(a + (-a), ring.zeros(a.shape))
    assert np.array_equal(a * np.int64(1), a)
    # additive sharing: shares r and x - r always sum back to x
    assert np.array_equal((a - b) + b, a)


def test_edge_values_wrap():
    xs = np.array([x for x in EDGE for _ in EDGE], dtype=np.int64)
    ys = np.array([y for _ in EDGE for y in EDGE], dtype=np.int64)
    pairs = [(x, y) for x in EDGE for y in EDGE]
    assert (xs + ys).tolist() == [wrap(x + y) for x, y in pairs]
    assert (xs - ys).tolist() == [wrap(x - y) for x, y in pairs]
    assert (xs * ys).tolist() == [wrap(x * y) for x, y in pairs]
    assert (-np.array(EDGE, np.int64)).tolist() == [wrap(-x) for x in EDGE]  # -(-2^63) wraps to itself


@settings(max_examples=60, deadline=None)
@given(st.integers(-(1 << 130), 1 << 130))
def test_const_reduces_mod_2_64(v):
    c = ring.const(v)
    assert isinstance(c, np.int64)
    assert int(c) == wrap(v)


# --------------------------------------------------------------------- shifts, msb
@settings(max_examples=60, deadline=None)
@given(st.lists(I64, min_size=1, max_size=24), st.integers(0, 63))
def test_lshr_is_logical_shift_of_unsigned_word(vals, k):
    a = np.array(vals, dtype=np.int64)
    before = a.copy()
    r = ring.lshr(a, k)
    assert r.dtype == np.int64
    assert np.array_equal(a, before), "lshr must not modify its input"
    for x, y in zip(vals, r.tolist()):
        assert y == wrap((x % MOD) >> k)
        if k >= 1:
            assert y >= 0  # logical, not arithmetic: no sign extension


@settings(max_examples=60, deadline=None)
@given(st.lists(I64, min_size=1, max_size=24))
def test_msb(vals):
    a = np.array(vals, dtype=np.int64)
    m = ring.msb(a)
    assert m.dtype == np.int64
    assert m.tolist() == [(x % MOD) >> 63 for x in vals]
    assert m.tolist() == [int(x < 0) for x in vals]


def test_lshr_edges():
    a = np.array([-1, -(1 << 63), (1 << 63) - 1, 1], dtype=np.int64)
    assert ring.lshr(a, 0).tolist() == a.tolist()
    assert ring.lshr(a, 63).tolist() == [1, 1, 0, 0]
    assert ring.lshr(a, 1).tolist() == [(1 << 63) - 1, 1 << 62, (1 << 62) - 1, 0]
    assert ring.msb(a).tolist() == [1, 1, 0, 0]


def test_lshr_of_non_contiguous_view():
    a = rand64(np.random.default_rng(1), (6, 5))
    v = a[:, ::2]
    assert ring.lshr(v, 7).tolist() == [[wrap((int(x) % MOD) >> 7) for x in row] for row in v.tolist()]


def test_u64_view_and_as_ring():
    a = np.array([-1, 5], dtype=np.int64)
    u = ring.u64(a)
    assert u.dtype == np.uint64 and np.shares_memory(u, a)
    assert u.tolist() == [MOD - 1, 5]
    r = ring.as_ring(np.array([MOD - 1, 3], dtype=np.uint64))
    assert r.dtype == np.int64 and r.flags.c_contiguous and r.tolist() == [-1, 3]
    t = ring.as_ring(np.arange(12, dtype=np.int64).reshape(3, 4).T)
    assert t.flags.c_contiguous and t.tolist() == np.arange(12).reshape(3, 4).T.tolist()
    assert ring.zeros((2, 3)).dtype == np.int64 and not ring.zeros((2, 3)).any()


# ------------------------------------------------------------------------- matmul
def ref_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(as_obj(a), as_obj(b))


def torch_shape(a, b):
    return tuple(torch.matmul(torch.zeros(a, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)).shape)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),  # 2-D
    ((2, 3, 4), (2, 4, 2)),  # batched
    ((3, 4), (2, 4, 5)),  # broadcast left
    ((2, 3, 4), (4, 5)),  # broadcast right
    ((2, 1, 3, 4), (1, 3, 4, 2)),  # broadcast both batch dims
    ((4,), (4, 3)),  # vector @ matrix
    ((3, 4), (4,)),  # matrix @ vector
    ((4,), (4,)),  # dot product -> 0-d
    ((2, 3, 4), (4,)),  # batched matrix @ vector
    ((4,), (2, 4, 3)),  # vector @ batched matrix
    ((3, 0), (0, 2)),  # empty inner dimension -> zeros
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_exact_with_overflow_and_torch_semantics(sa, sb):
    rng = np.random.default_rng(abs(hash((sa, sb))) % 2**32)
    a, b = rand64(rng, sa), rand64(rng, sb)
    out = ring.matmul(a, b)
    assert out.shape == torch_shape(sa, sb) == ring.matmul_shape(sa, sb)
    assert same(out, ref_matmul(a, b))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.integers(1, 5), st.data())
def test_matmul_exact_hypothesis(m, k, n, data):
    a = np.array(data.draw(st.lists(I64, min_size=m * k, max_size=m * k)), dtype=np.int64).reshape(m, k)
    b = np.array(data.draw(st.lists(I64, min_size=k * n, max_size=k * n)), dtype=np.int64).reshape(k, n)
    assert same(ring.matmul(a, b), ref_matmul(a, b))


def test_matmul_extreme_values_and_long_inner_dim():
    # every product is around 2^126 and every sum of 64 of them overflows many times
    a = np.full((3, 64), -(1 << 63) + 1, dtype=np.int64)
    a[1] = (1 << 63) - 1
    a[2, ::2] = -(1 << 63)
    b = np.full((64, 2), (1 << 63) - 3, dtype=np.int64)
    b[::3, 1] = -(1 << 62) - 5
    assert same(ring.matmul(a, b), ref_matmul(a, b))
    rng = np.random.default_rng(5)
    a, b = rand64(rng, (17, 70)), rand64(rng, (70, 9))
    assert same(ring.matmul(a, b), ref_matmul(a, b))


def test_matmul_non_contiguous_operands():
    rng = np.random.default_rng(3)
    a, b = rand64(rng, (5, 4)).T, rand64(rng, (6, 5))[::2].T  # (4,5) and (5,3) views
    assert not a.flags.c_contiguous
    assert same(ring.matmul(a, b), ref_matmul(a, b))


def test_matmul_is_bilinear_mod_2_64():
    rng = np.random.default_rng(4)
    a1, a2, b = rand64(rng, (3, 4)), rand64(rng, (3, 4)), rand64(rng, (4, 2))
    assert np.array_equal(ring.matmul(a1 + a2, b), ring.matmul(a1, b) + ring.matmul(a2, b))


def test_matmul_shape_rejects_non_fitting():
    for sa, sb in [((3, 4), (5, 2)), ((4,), (3,)), ((2, 3, 4), (3, 4, 5)), ((3, 4), (2, 5, 3))]:
        with pytest.raises(ValueError):
            ring.matmul_shape(sa, sb)


# ------------------------------------------------------------------------- conv2d
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Direct definition of torch's conv2d (cross-correlation) on Python ints."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=object)
    xp[:, :, ph : ph + h, pw : pw + wd] = as_obj(x)
    wo = as_obj(w)
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow), dtype=object)
    og = o // groups
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    s = 0
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                s += xp[b, g * cg + ci, i * sh + u * dh, j * sw + v * dw] * wo[oc, ci, u, v]
                    out[b, oc, i, j] = s
    return out


CONV_CASES = [
    # x shape, w shape, stride, padding, dilation, groups
    ((1, 1, 4, 4), (1, 1, 2, 2), 1, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1, 1, 1),
    ((1, 2, 6, 5), (3, 2, 3, 2), (2, 1), (1, 0), 1, 1),
    ((1, 2, 7, 7), (2, 2, 3, 3), 2, 2, 2, 1),
    ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2),  # grouped
    ((1, 3, 4, 4), (3, 1, 3, 3), 1, 1, 1, 3),  # depthwise
    ((1, 2, 6, 6), (2, 2, 2, 3), (1, 2), (2, 1), (2, 1), 1),
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_CASES)
def test_conv2d_exact_against_python_int_reference(xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(abs(hash((xs, ws))) % 2**32)
    x, w = rand64(rng, xs), rand64(rng, ws)
    out = ring.conv2d(x, w, stride, padding, dilation, groups)
    tshape = torch.nn.functional.conv2d(
        torch.zeros(xs, dtype=torch.float64), torch.zeros(ws, dtype=torch.float64),
        stride=stride, padding=padding, dilation=dilation, groups=groups).shape
    assert out.shape == tuple(tshape)
    assert ring.conv2d_shape(xs, ws, stride, padding, dilation) == tuple(tshape)
    assert same(out, ref_conv2d(x, w, stride, padding, dilation, groups))


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_CASES[:5])
def test_conv2d_matches_torch_on_small_integers(xs, ws, stride, padding, dilation, groups):
    # small values: float64 conv is exact, so this pins down torch's conv2d semantics
    rng = np.random.default_rng(9)
    x = rng.integers(-50, 50, size=xs).astype(np.int64)
    w = rng.integers(-50, 50, size=ws).astype(np.int64)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                     stride=stride, padding=padding, dilation=dilation, groups=groups).numpy()
    assert np.array_equal(ring.conv2d(x, w, stride, padding, dilation, groups), ref.astype(np.int64))


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(3, 6), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 2), st.integers(0, 1), st.data())
def test_conv2d_exact_hypothesis(n, c, h, o, k, stride, padding, data):
    k = min(k, h + 2 * padding)
    x = np.array(data.draw(st.lists(I64, min_size=n * c * h * h, max_size=n * c * h * h)), np.int64).reshape(n, c, h, h)
    w = np.array(data.draw(st.lists(I64, min_size=o * c * k * k, max_size=o * c * k * k)), np.int64).reshape(o, c, k, k)
    assert same(ring.conv2d(x, w, stride, padding), ref_conv2d(x, w, stride, padding))


def test_conv2d2_is_the_sum_of_two_convolutions():
    """ring.conv2d2 (a Beaver convolution's two local products, fused on the GPU) on the CPU."""
    from test_kernels import words

    x1, w1, x2, w2 = words(31, (2, 4, 9, 9)), words(32, (6, 2, 3, 3)), words(33, (2, 4, 9, 9)), words(34, (6, 2, 3, 3))
    want = ring.conv2d(x1, w1, 2, 1, 1, 2) + ring.conv2d(x2, w2, 2, 1, 1, 2)
    assert (ring.conv2d2(x1, w1, x2, w2, 2, 1, 1, 2) == want).all()

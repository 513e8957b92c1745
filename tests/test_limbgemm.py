"""kernels.limbgemm, the exact ring GEMM through float64 BLAS limbs, bit for bit against the int64
reference (torch's int64 matmul, which wraps modulo 2^64): edge values, random words, depths
across the K chunks, non-contiguous, transposed and batched operands, the worst-case limbs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.kernels import gemm, limbgemm

torch = gemm.torch()
I64 = np.iinfo(np.int64)
EDGES = [0, 1, -1, I64.min, I64.max, 1 << 21, -(1 << 21), (1 << 22) - 1, 1 << 43, -(1 << 42),
         I64.max + 1 - (1 << 42) - (1 << 21)]
# limbs all at their most negative: x0 = -2^21, x1 = x2 = -2^20, the largest |x0 + x1| and |x2|
WORST = np.int64(I64.max + 1 - (1 << 42) - (1 << 21))  # -2^21 - 2^42 - 2^63 mod 2^64


def ref(a, b):
    return torch.matmul(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))).numpy()


def ring_words(draw_seed: int, shape, edge_share: float) -> np.ndarray:
    rng = np.random.default_rng(draw_seed)
    a = rng.integers(I64.min, I64.max, shape, dtype=np.int64, endpoint=True)
    pick = rng.random(shape) < edge_share
    return np.where(pick, rng.choice(np.array(EDGES, np.int64), shape), a)


def test_split_limbs_and_bounds():
    x = ring_words(1, 100_000, 0.2)
    x[: len(EDGES)] = EDGES
    l0, l1, l2 = limbgemm.split(x)
    assert np.abs(l0).max() <= 2**21 and np.abs(l1).max() <= 2**20 and np.abs(l2).max() <= 2**20
    back = l0.astype(np.int64) + l1.astype(np.int64) * (1 << 22) + l2.astype(np.int64) * (1 << 43)
    assert (back == x).all()
    w0, w1, w2 = limbgemm.split(np.array([WORST]))
    assert (w0[0], w1[0], w2[0]) == (-(2.0**21), -(2.0**20), -(2.0**20))


@pytest.mark.parametrize("k", [limbgemm.KMAX, limbgemm.KMAX + 1, 2 * limbgemm.KMAX + 5])
def test_worst_case_limbs_at_the_chunk_bound(k):
    """Every limb at its extreme: Pm's partial sums reach KMAX * 9 * 2^40, just under 2^53."""
    assert limbgemm.KMAX * 9 * 2**40 <= 2**53 < (limbgemm.KMAX + 1) * 9 * 2**40  # the bound is tight
    a = np.full((3, k), WORST, np.int64)
    b = np.full((k, 4), WORST, np.int64)
    assert (limbgemm.matmul(a, b) == ref(a, b)).all()
    for v in EDGES:
        a, b = np.full((2, k), v, np.int64), np.full((k, 2), v, np.int64)
        assert (limbgemm.matmul(a, b) == ref(a, b)).all()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(0, 3000), m=st.integers(1, 40), seed=st.integers(0, 2**31),
       edge=st.sampled_from([0.0, 0.5, 1.0]))
def test_random_shapes_and_depths(n, k, m, seed, edge):
    a, b = ring_words(seed, (n, k), edge), ring_words(seed + 1, (k, m), edge)
    assert (limbgemm.matmul(a, b) == ref(a, b)).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 2000), transpose=st.booleans(), step=st.integers(1, 3))
def test_non_contiguous_transposed(seed, k, transpose, step):
    if transpose:
        a = ring_words(seed, (k * step, 17), 0.3)[::step].T
    else:
        a = ring_words(seed, (17, k * step), 0.3)[:, ::step]
    b = ring_words(seed + 1, (9, k), 0.3).T
    assert (limbgemm.matmul(a, b) == ref(a, b)).all()


@pytest.mark.parametrize("sa,sb", [
    ((2, 3, 8, 1000), (1000, 6)), ((8, 950), (4, 950, 6)), ((2, 1, 5, 7), (3, 7, 6)), ((7,), (7,)),
    ((1900,), (1900, 3)), ((3, 1900), (1900,)), ((4, 0), (0, 5)),
])
def test_batched_broadcast_and_vectors(sa, sb):
    a, b = ring_words(5, sa, 0.3), ring_words(6, sb, 0.3)
    got = limbgemm.matmul(a, b)
    want = ref(a, b)
    assert got.shape == want.shape and (got == want).all()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(1, 1500), m=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_matmul2_joined_along_k(n, k, m, seed):
    a1, b1 = ring_words(seed, (n, k), 0.3), ring_words(seed + 1, (k, m), 0.3)
    a2, b2 = ring_words(seed + 2, (n, k), 0.3), ring_words(seed + 3, (k, m), 0.3)
    assert (limbgemm.matmul2(a1, b1, a2, b2) == ref(a1, b1) + ref(a2, b2)).all()


def test_matmul2_batched_and_mixed_ranks():
    a1, b1 = ring_words(7, (2, 1, 5, 300), 0.3), ring_words(8, (3, 300, 6), 0.3)
    a2, b2 = ring_words(9, (1, 3, 5, 300), 0.3), ring_words(10, (300, 6), 0.3)
    assert (limbgemm.matmul2(a1, b1, a2, b2) == ref(a1, b1) + ref(a2, b2)).all()
    v, m = ring_words(11, (300,), 0.3), ring_words(12, (1, 300), 0.3)
    mb = ring_words(13, (300, 6), 0.3)
    assert (limbgemm.matmul2(v, mb, m, mb)[None] == ref(v, mb) + ref(m, mb)).all()


def test_threads_and_the_gemm_entry_point():
    a, b = ring_words(14, (200, 1200), 0.1), ring_words(15, (1200, 150), 0.1)
    for threads in (1, 2, None):
        assert (limbgemm.matmul(a, b, threads=threads) == ref(a, b)).all()
    assert (gemm.matmul(a, b, kind="blas") == ref(a, b)).all()

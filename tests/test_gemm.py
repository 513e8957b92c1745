"""The ring GEMM (kernels.gemm: AVX-512 kernel or torch) against an exact reference:
torch's int64 matmul, which wraps modulo 2^64, and Python integers for small cases."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.kernels import gemm
from test_kernels import words  # random words led by the edge values

torch = gemm.torch()
native = pytest.mark.skipif(not gemm.NATIVE, reason="the AVX-512 GEMM is not built or this CPU lacks AVX-512")


def ref(a, b):
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def test_python_int_reference_small():
    a, b = words(1, (3, 4)), words(2, (4, 5))
    exact = [[sum(int(a[i, t]) * int(b[t, j]) for t in range(4)) % 2**64 for j in range(5)] for i in range(3)]
    got = gemm.matmul(a, b).astype(np.uint64).astype(object)
    assert (got == np.array(exact, dtype=object)).all()


@native
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 70), k=st.integers(0, 600), m=st.integers(0, 70), seed=st.integers(0, 2**31))
def test_native_kernel_every_edge_tile(n, k, m, seed):
    """Shapes around the 6 x 16 micro-tile, the 120-row block and the 256-deep block."""
    a, b = words(seed, (n, k)), words(seed + 1, (k, m))
    out = np.full((n, m), 7, np.int64)
    gemm._gemm64.matmul(a, b, out, n, k, m, False)
    assert (out == ref(a, b)).all()
    acc = words(seed + 2, (n, m))
    want = acc + ref(a, b)
    gemm._gemm64.matmul(a, b, acc, n, k, m, True)
    assert (acc == want).all()


@native
@pytest.mark.parametrize("threads", [None, 1, 2, 3])
def test_native_large_and_threaded(threads):
    a, b = words(5, (301, 513)), words(6, (513, 257))
    assert gemm._use_native(a, b)
    assert (gemm.matmul(a, b, threads=threads) == ref(a, b)).all()
    z = words(7, (301, 257))
    want = z + ref(a, b)
    assert gemm.matmul(a, b, out=z, accumulate=True, threads=threads) is z
    assert (z == want).all()


@pytest.mark.parametrize("sa,sb", [
    ((64, 128), (128,)), ((128,), (128, 96)), ((2, 3, 80, 70), (70, 90)), ((80, 70), (4, 70, 60)),
    ((2, 1, 70, 64), (5, 64, 64)), ((5,), (5,)), ((1, 64, 4096), (4096, 64)),
])
def test_matmul_semantics_match_torch(sa, sb):
    a, b = words(8, sa), words(9, sb)
    got = gemm.matmul(a, b)
    want = ref(a, b)
    assert got.shape == want.shape and (got == want).all()


def test_out_shape_checked():
    a, b = words(1, (128, 128)), words(2, (128, 128))
    if gemm.NATIVE:
        with pytest.raises(ValueError, match="out must be"):
            gemm.matmul(a, b, out=np.empty((128, 127), np.int64))
    out = np.ones((128, 128), np.int64)
    assert (gemm.matmul(a, b, out=out, accumulate=True) == 1 + ref(a, b)).all()


def test_two_products_summed():
    """kernels.gemm.matmul2 (a Beaver matmul's two local products) = a1 @ b1 + a2 @ b2."""
    for sa, sb in (((70, 300), (300, 90)), ((3, 5, 7), (7, 6)), ((2, 1, 5, 7), (3, 7, 6))):
        a1, b1, a2, b2 = words(21, sa), words(22, sb), words(23, sa), words(24, sb)
        assert (gemm.matmul2(a1, b1, a2, b2) == ref(a1, b1) + ref(a2, b2)).all()
        assert (gemm.matmul2(a1, b1, a2, b2, threads=2) == ref(a1, b1) + ref(a2, b2)).all()


def test_cpu_share_is_a_pure_function():
    """The thread share takes its override as an argument (or a launcher's child environment),
    not from this process's environment."""
    cores = os.cpu_count() or 1
    assert gemm.cpu_share(2) == max(1, cores // 3)
    assert gemm.cpu_share(2, 5) == gemm.cpu_share(2, "5") == gemm.cpu_share(2, {"MPCRT_THREADS": "5"}) == 5
    assert gemm.cpu_share(1000, None) == gemm.cpu_share(1000, {}) == 1

"""The ring GEMM (kernels.gemm: AVX-512, AVX2, float64-limb and torch kernels) against an exact
reference: torch's int64 matmul, which wraps modulo 2^64, and Python integers for small cases.
Every kernel this machine runs is forced in turn; the limb GEMM's own bound is tests/test_limbgemm.py's."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.errors import ConfigError
from mpcrt.kernels import backend, gemm, ring
from test_kernels import words  # random words led by the edge values

torch = gemm.torch()
HERE = [k for k in gemm.KINDS if gemm.available(k)]
C_KINDS = [k for k in ("avx512", "avx2") if gemm.available(k)]
kinds = pytest.mark.parametrize("kind", HERE)


def ref(a, b):
    return torch.matmul(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))).numpy()


@kinds
def test_python_int_reference_small(kind):
    a, b = words(1, (3, 40)), words(2, (40, 5))
    exact = [[sum(int(a[i, t]) * int(b[t, j]) for t in range(40)) % 2**64 for j in range(5)] for i in range(3)]
    for forced in (gemm.MIN_MACS.copy(), {k: 0 for k in gemm.KINDS}):  # small products: torch, then the kernel
        old, gemm.MIN_MACS = gemm.MIN_MACS, forced
        try:
            got = gemm.matmul(a, b, kind=kind).astype(np.uint64).astype(object)
        finally:
            gemm.MIN_MACS = old
        assert (got == np.array(exact, dtype=object)).all()


@pytest.mark.skipif(not C_KINDS, reason="the C GEMM is not built or this CPU lacks AVX2")
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 70), k=st.integers(0, 600), m=st.integers(0, 70), seed=st.integers(0, 2**31),
       kind=st.sampled_from(C_KINDS or ["avx2"]))
def test_c_kernel_every_edge_tile(n, k, m, seed, kind):
    """Shapes around the 6 x 16 (AVX-512) and 2 x 8 (AVX2) micro-tiles, the 120-row and 256-deep blocks."""
    a, b = words(seed, (n, k)), words(seed + 1, (k, m))
    out = np.full((n, m), 7, np.int64)
    gemm._gemm64.matmul(a, b, out, n, k, m, False, gemm._C_KIND[kind])
    assert (out == ref(a, b)).all()
    acc = words(seed + 2, (n, m))
    want = acc + ref(a, b)
    gemm._gemm64.matmul(a, b, acc, n, k, m, True, gemm._C_KIND[kind])
    assert (acc == want).all()


@kinds
@pytest.mark.parametrize("threads", [None, 1, 2, 3])
def test_large_and_threaded(kind, threads):
    a, b = words(5, (301, 513)), words(6, (513, 257))
    assert gemm._macs(a, b) >= gemm.MIN_MACS[kind]
    assert (gemm.matmul(a, b, threads=threads, kind=kind) == ref(a, b)).all()
    z = words(7, (301, 257))
    want = z + ref(a, b)
    assert gemm.matmul(a, b, out=z, accumulate=True, threads=threads, kind=kind) is z
    assert (z == want).all()


@kinds
@pytest.mark.parametrize("sa,sb", [
    ((64, 128), (128,)), ((128,), (128, 96)), ((2, 3, 80, 70), (70, 90)), ((80, 70), (4, 70, 60)),
    ((2, 1, 70, 64), (5, 64, 64)), ((5,), (5,)), ((1, 64, 4096), (4096, 64)),
])
def test_matmul_semantics_match_torch(kind, sa, sb):
    a, b = words(8, sa), words(9, sb)
    got = gemm.matmul(a, b, kind=kind)
    want = ref(a, b)
    assert got.shape == want.shape and (got == want).all()


@kinds
def test_non_contiguous_and_transposed(kind):
    a, b = words(10, (300, 200)), words(11, (400, 300))
    assert (gemm.matmul(a.T, b.T, kind=kind) == ref(a.T, b.T)).all()
    assert (gemm.matmul(a[::2, ::3], b[:67:1, ::2], kind=kind) == ref(a[::2, ::3], b[:67, ::2])).all()


@kinds
def test_out_shape_checked(kind):
    a, b = words(1, (128, 128)), words(2, (128, 128))
    with pytest.raises(ValueError, match="out must be"):
        gemm.matmul(a, b, out=np.empty((128, 127), np.int64), kind=kind)
    out = np.ones((128, 128), np.int64)
    assert (gemm.matmul(a, b, out=out, accumulate=True, kind=kind) == 1 + ref(a, b)).all()


@kinds
def test_two_products_summed(kind):
    """kernels.gemm.matmul2 (a Beaver matmul's two local products) = a1 @ b1 + a2 @ b2."""
    for sa, sb in (((70, 300), (300, 90)), ((3, 5, 7), (7, 6)), ((2, 1, 5, 7), (3, 7, 6)),
                   ((2, 90, 700), (700, 80)), ((700,), (700, 90))):
        a1, b1, a2, b2 = words(21, sa), words(22, sb), words(23, sa), words(24, sb)
        assert (gemm.matmul2(a1, b1, a2, b2, kind=kind) == ref(a1, b1) + ref(a2, b2)).all()
        assert (gemm.matmul2(a1, b1, a2, b2, threads=2, kind=kind) == ref(a1, b1) + ref(a2, b2)).all()


def test_pick_rule():
    """The best kernel here comes first in avx512 > avx2 > blas; a forced one that cannot run is a
    ConfigError naming those that can; torch is never picked, only forced."""
    assert gemm.KIND == gemm.best() == gemm.pick() == gemm.pick("auto") == HERE[0]
    assert gemm.available("blas") and gemm.available("torch")
    assert gemm.NATIVE == (gemm.KIND == "avx512")
    with pytest.raises(ConfigError, match="use one of"):
        gemm.pick("int8")
    for k in HERE:
        assert gemm.pick(k) == k == backend.CpuBackend(gemm_kind=k).gemm_kind
    if not gemm.available("avx2"):
        with pytest.raises(ConfigError, match="does not run here"):
            gemm.pick("avx2")


@kinds
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 0, 1, 2), (1, 2, 2, 1)])
def test_backend_conv_uses_the_forced_kernel(kind, stride, padding, dilation, groups, monkeypatch):
    """CpuBackend's convolutions run its GEMM kernel (the same pick as its matmuls), bit for bit
    kernels.ring's torch convolution."""
    be = backend.CpuBackend(threads=1, gemm_kind=kind)
    x1, x2 = words(31, (2, 4, 11, 12)), words(32, (2, 4, 11, 12))
    w1, w2 = words(33, (6, 4 // groups, 3, 3)), words(34, (6, 4 // groups, 3, 3))
    seen = []
    real = gemm.matmul
    monkeypatch.setattr(gemm, "matmul", lambda *a, **k: seen.append(k["kind"]) or real(*a, **k))
    monkeypatch.setattr(gemm, "MIN_MACS", {k: 0 for k in gemm.KINDS})
    assert (be.conv2d(x1, w1, stride, padding, dilation, groups) ==
            ring.conv2d(x1, w1, stride, padding, dilation, groups)).all()
    assert (be.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups) ==
            ring.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups)).all()
    assert seen == [kind] * 3


def test_cpu_share_is_a_pure_function():
    """The thread share takes its override as an argument (or a launcher's child environment),
    not from this process's environment."""
    cores = os.cpu_count() or 1
    assert gemm.cpu_share(2) == max(1, cores // 3)
    assert gemm.cpu_share(2, 5) == gemm.cpu_share(2, "5") == 5
    assert gemm.cpu_share(1000, None) == gemm.cpu_share(1000, "") == 1


def test_without_the_extension_the_limb_gemm_is_picked(monkeypatch):
    """An install where gemm64.c could not be built (or aarch64, where it has no kernels): blas."""
    monkeypatch.setattr(gemm, "_gemm64", None)
    assert not gemm.available("avx512") and not gemm.available("avx2") and gemm.best() == "blas"
    with pytest.raises(ConfigError, match="does not run here"):
        gemm.pick("avx512")

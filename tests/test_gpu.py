"""The GPU ring GEMM (kernels.cuda_gemm) against torch's int64 matmul on the CPU, which wraps
modulo 2^64: both kernels, every tile edge, batches and broadcasting, accumulation, the
CUDA back end's dispatch (kernels.backend.CudaBackend), convolutions, and a secret-shared
matmul and conv2d between parties. Skipped where CuPy or a GPU is missing; the errors of
asking for the GPU without one are tested everywhere (the selection itself: test_backend.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.errors import ConfigError
from mpcrt.kernels import backend, cuda_gemm, gemm, ring
from test_kernels import words  # random words led by the edge values

torch = gemm.torch()
HAVE_GPU = cuda_gemm.available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason="needs CuPy and a CUDA GPU")
KERNELS = ("int64", "fp64")


def ref(a, b):
    return torch.matmul(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))).numpy()


def gpu_backend(min_macs: int = 1) -> backend.CudaBackend:
    """The CUDA back end with every product (of at least min_macs multiply-adds) on the GPU."""
    return backend.CudaBackend(backend.CpuBackend(), min_macs=min_macs)


@pytest.mark.skipif(HAVE_GPU, reason="checks the error where no GPU is usable")
def test_cuda_without_gpu_says_what_to_do():
    for make in (backend.CudaBackend, lambda: backend.select("cuda")):
        with pytest.raises(ConfigError, match="--device cpu"):
            make()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("kernel", KERNELS)
def test_edge_values_and_python_reference(kernel):
    edge = np.array([0, 1, -1, 2**63 - 1, -(2**63), 2**62, 65535, 65536, -65536], np.int64)
    a = np.resize(edge, (9, 9)).T.copy()
    b = np.resize(edge[::-1], (9, 9)).copy()
    got = cuda_gemm.matmul(a, b, kernel).astype(np.uint64).astype(object)
    exact = [[sum(int(a[i, t]) * int(b[t, j]) for t in range(9)) % 2**64 for j in range(9)] for i in range(9)]
    assert (got == np.array(exact, dtype=object)).all()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 140), k=st.integers(1, 300), m=st.integers(1, 140), seed=st.integers(0, 2**31))
def test_every_tile_edge(kernel, n, k, m, seed):
    a, b = words(seed, (n, k)), words(seed + 1, (k, m))
    assert (cuda_gemm.matmul(a, b, kernel) == ref(a, b)).all()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("sa,sb", [((3, 5, 7), (3, 7, 6)), ((5, 7), (4, 7, 6)), ((2, 1, 5, 7), (3, 7, 6)),
                                   ((4, 5, 7), (7, 6)), ((1, 65, 70), (2, 70, 66))])
def test_batched_and_broadcast(kernel, sa, sb):
    a, b = words(11, sa), words(12, sb)
    assert (cuda_gemm.matmul(a, b, kernel) == ref(a, b)).all()


@gpu
@pytest.mark.gpu
def test_int64_kernel_accumulates_and_handles_empty():
    cp = cuda_gemm.cupy()
    a, b, c = words(1, (70, 33)), words(2, (33, 80)), words(3, (70, 80))
    out = cp.asarray(c)
    cuda_gemm.matmul_int64_dev(cp.asarray(a), cp.asarray(b), out, accumulate=True)
    assert (cp.asnumpy(out) == c + ref(a, b)).all()
    z = cuda_gemm.matmul_int64_dev(cp.asarray(a[:, :0]), cp.asarray(b[:0]))
    assert z.shape == (70, 80) and not cp.asnumpy(z).any()
    z = cuda_gemm.matmul_int64_dev(cp.zeros((3, 4, 0), cp.int64), cp.zeros((3, 0, 5), cp.int64))
    assert z.shape == (3, 4, 5) and not cp.asnumpy(z).any()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("sa,sb", [((70, 33), (33, 80)), ((3, 5, 7), (7, 6)), ((2, 1, 5, 7), (3, 7, 6))])
def test_two_products_summed_on_the_gpu(monkeypatch, sa, sb):
    a1, b1, a2, b2 = words(15, sa), words(16, sb), words(17, sa), words(18, sb)
    want = ref(a1, b1) + ref(a2, b2)
    assert (cuda_gemm.matmul2(a1, b1, a2, b2) == want).all()
    calls = []
    monkeypatch.setattr(cuda_gemm, "matmul2", lambda *a, _f=cuda_gemm.matmul2: calls.append(1) or _f(*a))
    assert (gpu_backend().matmul2(a1, b1, a2, b2) == want).all()
    assert calls == [1]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", [
    ((2, 4, 9, 9), (6, 2, 3, 3), 2, 1, 1, 2), ((1, 3, 8, 8), (5, 3, 3, 3), 1, 1, 1, 1),
    ((2, 4, 10, 7), (4, 1, 3, 2), (2, 1), (1, 0), (2, 1), 4), ((3, 2, 5, 5), (2, 2, 1, 1), 1, 0, 1, 1)])
def test_convolutions_with_im2col_on_the_gpu(xs, ws, stride, padding, dilation, groups):
    x1, w1, x2, w2 = words(19, xs), words(20, ws), words(21, xs), words(22, ws)
    want1 = ring.conv2d(x1, w1, stride, padding, dilation, groups)
    want2 = want1 + ring.conv2d(x2, w2, stride, padding, dilation, groups)
    be = gpu_backend()
    assert (be.conv2d(x1, w1, stride, padding, dilation, groups) == want1).all()
    assert (be.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups) == want2).all()


@gpu
@pytest.mark.gpu
def test_grids_are_cut_at_the_block_limits(monkeypatch):
    monkeypatch.setattr(cuda_gemm, "MAX_GRID", 2)  # rows and batches in several launches
    a, b = words(13, (5, 300, 20)), words(14, (5, 20, 70))
    assert (cuda_gemm.matmul(a, b) == ref(a, b)).all()
    assert (cuda_gemm.matmul(a[0], b) == ref(a[0], b)).all()


@gpu
@pytest.mark.gpu
def test_fp64_splits_long_inner_sizes(monkeypatch):
    monkeypatch.setattr(cuda_gemm, "MAX_K_FP64", 64)  # exercise the chunking on a small product
    a, b = words(5, (30, 200)), words(6, (200, 20))
    assert (cuda_gemm.matmul(a, b, "fp64") == ref(a, b)).all()


@gpu
@pytest.mark.gpu
def test_dispatch_out_accumulate_and_conv(monkeypatch):
    """CudaBackend sends products of at least min_macs to the GPU, smaller ones to its CPU back end."""
    calls = []
    real, real_conv = cuda_gemm.matmul, cuda_gemm.conv2d
    monkeypatch.setattr(cuda_gemm, "matmul", lambda a, b, kernel="int64": calls.append(1) or real(a, b, kernel))
    monkeypatch.setattr(cuda_gemm, "conv2d", lambda *a: calls.append(1) or real_conv(*a))
    be = gpu_backend()
    a, b = words(7, (2, 50, 40)), words(8, (40, 30))
    assert (be.matmul(a, b) == ref(a, b)).all()
    out = words(9, (2, 50, 30))
    want = out + ref(a, b)
    assert be.matmul(a, b, out=out, accumulate=True) is out
    assert (out == want).all()
    x, w = words(10, (2, 4, 9, 9)), words(11, (6, 2, 3, 3))
    got = be.conv2d(x, w, stride=2, padding=1, groups=2)
    assert (got == ring.conv2d(x, w, stride=2, padding=1, groups=2)).all()
    assert len(calls) == 3
    small = gpu_backend(min_macs=2 * 50 * 40 * 30 + 1)  # one multiply-add short: on the CPU
    assert (small.matmul(a, b) == ref(a, b)).all() and len(calls) == 3
    assert (small.matmul(a[0, 0], b) == ref(a[0, 0], b)).all() and len(calls) == 3  # 1-D: always the CPU


def _shared_matmul_and_conv(rt, a, b, x, w):
    y = rt.share(a if rt.rank == 0 else None, src=0) @ rt.share(b if rt.rank == 1 else None, src=1)
    z = rt.share(x if rt.rank == 1 else None, src=1).conv2d(rt.share(w if rt.rank == 0 else None, src=0), padding=1)
    return y.reveal(), z.reveal()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("n", [2, 3])
def test_parties_on_the_gpu(monkeypatch, n):
    """The parties' and the dealer's products on the GPU give the float64 reference."""
    from mpcrt.launch.inprocess import run_parties

    from mpcrt import config

    monkeypatch.setattr(config, "_current", config.current().replace(device="cuda"))  # what --device cuda installs
    monkeypatch.setattr(cuda_gemm, "MIN_MACS", 1)  # the back ends' default threshold
    calls = {"matmul": [], "matmul2": [], "conv2d": [], "conv2d2": []}
    for name, got in calls.items():
        monkeypatch.setattr(cuda_gemm, name,
                            lambda *a, _f=getattr(cuda_gemm, name), _g=got, **k: _g.append(1) or _f(*a, **k))
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(64, 96)), rng.normal(size=(96, 80))
    x, w = rng.normal(size=(2, 3, 12, 12)), rng.normal(size=(5, 3, 3, 3))
    outs = run_parties(_shared_matmul_and_conv, n, a, b, x, w, insecure=True)
    tconv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    for y, z in outs:
        assert np.abs(y - a @ b).max() < 2e-3
        assert np.abs(z - tconv).max() < 2e-3
    # every party's Beaver matmul and conv: both products in one GPU call; the dealer's triples
    assert {k: len(v) for k, v in calls.items()} == {"matmul": 1, "matmul2": n, "conv2d": 1, "conv2d2": n}


@pytest.mark.skipif(HAVE_GPU, reason="checks the error where no GPU is usable")
def test_launch_device_cuda_without_gpu_stops_at_start(cli, write_script):
    script = write_script("import mpcrt\nrt = mpcrt.init()\nprint('started')\n")
    r = cli.run(["launch", "-n", "2", "--device", "cuda", script], timeout=60)
    assert r.returncode != 0 and r.left == []
    assert "started" not in r.stdout
    assert "--device cpu" in r.output


@pytest.mark.skipif(HAVE_GPU, reason="checks the error where no GPU is usable")
def test_bench_device_cuda_without_gpu_is_a_usage_error(cli, tmp_path):
    r = cli.run(["bench", "--parties", "2", "--ops", "matmul", "--sizes", "matmul=8", "--repeats", "1",
                 "--device", "cuda", "--out", str(tmp_path)], timeout=60)
    assert r.returncode == 2 and "--device cpu" in r.output and r.left == []

"""The back end (kernels.backend): selection by device, the CPU back end's operations bit for bit
kernels.ring's (and its PRG kernels.prg's keystream), the interface every back end has, and
that nothing under kernels/ reads the environment or imports a kernel module inside a function."""
from __future__ import annotations

import ast
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.errors import ConfigError
from mpcrt.kernels import backend, beaver, bitlt, cuda_gemm, powers, prg, ring, topbytes
from test_kernels import words  # random words led by the edge values

KERNELS = pathlib.Path(backend.__file__).parent
HAVE_GPU = cuda_gemm.available()
FUSED = {"beaver": (beaver, backend.BeaverKernels), "bitlt": (bitlt, backend.BitltKernels),
         "powers": (powers, backend.PowersKernels), "topbytes": (topbytes, backend.TopbytesKernels)}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


# -- selection --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "CPU", "Cpu", ""])
def test_select_cpu(device):
    be = backend.select(device, threads=2, native_aes=False)
    assert isinstance(be, backend.CpuBackend) and be.name == "cpu"
    assert be.threads == 2 and be.native_aes is False and not be.prg(bytes(16)).native
    assert "CpuBackend(threads=2" in repr(be)
    assert backend.select("cpu").threads is None


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:0", "cpu "])
def test_select_unknown_device(device):
    with pytest.raises(ConfigError, match=r"use one of cpu, cuda"):
        backend.select(device)


@pytest.mark.parametrize("threads", [0, -1])
def test_cpu_needs_a_thread(threads):
    with pytest.raises(ConfigError, match="at least 1 thread"):
        backend.select("cpu", threads=threads)


@pytest.mark.skipif(HAVE_GPU, reason="checks the error where no GPU is usable")
@pytest.mark.parametrize("device", ["cuda", "CUDA"])
def test_select_cuda_without_cupy_or_gpu(device):
    with pytest.raises(ConfigError, match=r"needs CuPy and a CUDA GPU") as e:
        backend.select(device, threads=1)
    assert "pip install 'mpcrt[gpu]'" in str(e.value) and "--device cpu" in str(e.value)


# -- the interface ----------------------------------------------------------------------------

def test_every_back_end_has_the_whole_interface():
    """Neither back end leaves an operation of Backend abstract, and the CPU's fused-kernel
    namespaces are the kernels modules, each with every function of its protocol class."""
    assert backend.CpuBackend.__abstractmethods__ == frozenset()
    assert backend.CudaBackend.__abstractmethods__ == frozenset()
    be = backend.CpuBackend()
    for name, (module, proto) in FUSED.items():
        assert getattr(be, name) is module
        assert isinstance(module, proto)
        declared = {m for m in vars(proto) if not m.startswith("_")}
        assert declared and all(callable(getattr(module, m)) for m in declared)


def test_backend_methods_have_ring_signatures():
    """The bilinear ops take kernels.ring's arguments, so a call site changes only its module."""
    import inspect

    for name in ("matmul", "matmul2", "conv2d", "conv2d2", "lshr", "msb", "const", "as_ring", "zeros", "u64"):
        want = list(inspect.signature(getattr(ring, name)).parameters)
        for cls in (backend.Backend, backend.CpuBackend, backend.CudaBackend):
            got = [p for p in inspect.signature(getattr(cls, name)).parameters if p != "self"]
            assert got == want, (cls.__name__, name)


# -- the CUDA back end's dispatch, with a stand-in for the GPU -------------------------------

@pytest.fixture
def fake_gpu(monkeypatch):
    """cuda_gemm with CuPy 'present' and its host entry points computed by kernels.ring on the
    CPU, each call recorded: the CUDA back end's host-side plumbing runs without a GPU."""
    calls = []
    monkeypatch.setattr(cuda_gemm, "cupy", lambda: None)

    def fake(name, cpu):
        def f(*args):
            calls.append(name)
            return cpu(*args)
        monkeypatch.setattr(cuda_gemm, name, f)

    fake("matmul", ring.matmul)
    fake("matmul2", ring.matmul2)
    fake("conv2d", lambda x, w, s, p, d, g: ring.conv2d(x, w, s, p, d, g))
    fake("conv2d2", lambda x1, w1, x2, w2, s, p, d, g: ring.conv2d2(x1, w1, x2, w2, s, p, d, g))
    return calls


def test_cuda_backend_sends_large_products_to_the_gpu(fake_gpu):
    be = backend.select("cuda", threads=2, native_aes=False)
    assert isinstance(be, backend.CudaBackend) and be.name == "cuda" and be.min_macs == cuda_gemm.MIN_MACS
    assert be.cpu.threads == 2 and not be.prg(bytes(16)).native  # the CPU settings reach its CPU back end
    for name in FUSED:
        assert getattr(be, name) is getattr(be.cpu, name)
    a, b, a2, b2 = words(1, (2, 30, 40)), words(2, (40, 50)), words(3, (2, 30, 40)), words(4, (40, 50))
    macs = 2 * 30 * 40 * 50
    small, large = backend.CudaBackend(min_macs=macs + 1), backend.CudaBackend(min_macs=macs)
    for be, where in ((small, []), (large, ["matmul", "matmul2"])):
        fake_gpu.clear()
        assert same(be.matmul(a, b), ring.matmul(a, b))
        assert same(be.matmul2(a, b, a2, b2), ring.matmul2(a, b, a2, b2))
        assert fake_gpu == where
    out, want = words(5, (2, 30, 50)), words(5, (2, 30, 50)) + ring.matmul(a, b)
    assert large.matmul(a, b, out, accumulate=True) is out and same(out, want)
    fake_gpu.clear()
    assert same(large.matmul(a[0, 0], b), ring.matmul(a[0, 0], b)) and fake_gpu == []  # 1-D: the CPU's
    assert same(large.matmul2(a, b, a2[0], b2), ring.matmul2(a, b, a2[0], b2))  # a broadcast, smaller product
    assert fake_gpu == []


def test_cuda_backend_sends_large_convolutions_to_the_gpu(fake_gpu):
    x1, w1, x2, w2 = words(1, (2, 4, 9, 9)), words(2, (6, 2, 3, 3)), words(3, (2, 4, 9, 9)), words(4, (6, 2, 3, 3))
    macs = 2 * 6 * 2 * 3 * 3 * 5 * 5  # n o (c/g) kh kw oh ow at stride 2, padding 1
    for min_macs, where in ((macs + 1, []), (macs, ["conv2d", "conv2d2"])):
        be = backend.CudaBackend(min_macs=min_macs)
        fake_gpu.clear()
        assert same(be.conv2d(x1, w1, 2, 1, 1, 2), ring.conv2d(x1, w1, 2, 1, 1, 2))
        assert same(be.conv2d2(x1, w1, x2, w2, 2, 1, 1, 2), ring.conv2d2(x1, w1, x2, w2, 2, 1, 1, 2))
        assert fake_gpu == where


# -- the CPU back end against kernels.ring, bit for bit ---------------------------------------

SHAPES = st.sampled_from([((5,), (5,)), ((3, 4), (4,)), ((4,), (4, 6)), ((7, 9), (9, 5)), ((2, 3, 8), (8, 4)),
                          ((2, 1, 5, 7), (3, 7, 6)), ((70, 300), (300, 90)), ((130, 257), (257, 65))])


@settings(max_examples=25, deadline=None)
@given(shapes=SHAPES, seed=st.integers(0, 2**31), threads=st.sampled_from([None, 1, 2, 3]))
def test_cpu_matmul_equals_ring(shapes, seed, threads):
    sa, sb = shapes
    be = backend.CpuBackend(threads=threads)
    a, b, a2, b2 = words(seed, sa), words(seed + 1, sb), words(seed + 2, sa), words(seed + 3, sb)
    want = ring.matmul(a, b)
    assert same(be.matmul(a, b), want)
    assert same(be.matmul2(a, b, a2, b2), ring.matmul2(a, b, a2, b2))
    if want.ndim >= 2:
        out, out2 = words(seed + 4, want.shape), words(seed + 4, want.shape)
        assert be.matmul(a, b, out=out, accumulate=True) is out
        assert same(out, ring.matmul(a, b, out2, True))


CONVS = st.sampled_from([((2, 4, 9, 9), (6, 2, 3, 3), 2, 1, 1, 2), ((1, 3, 8, 8), (5, 3, 3, 3), 1, 1, 1, 1),
                         ((2, 4, 10, 7), (4, 1, 3, 2), (2, 1), (1, 0), (2, 1), 4),
                         ((3, 2, 5, 5), (2, 2, 1, 1), 1, 0, 1, 1)])


@settings(max_examples=15, deadline=None)
@given(conv=CONVS, seed=st.integers(0, 2**31), threads=st.sampled_from([None, 1, 2]))
def test_cpu_conv_equals_ring(conv, seed, threads):
    xs, ws, stride, padding, dilation, groups = conv
    be = backend.CpuBackend(threads=threads)
    x1, w1, x2, w2 = words(seed, xs), words(seed + 1, ws), words(seed + 2, xs), words(seed + 3, ws)
    assert same(be.conv2d(x1, w1, stride, padding, dilation, groups), ring.conv2d(x1, w1, stride, padding, dilation,
                                                                                  groups))
    assert same(be.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups),
                ring.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 300), k=st.integers(0, 63),
       v=st.integers(-(2**70), 2**70))
def test_cpu_elementwise_equals_ring(seed, n, k, v):
    be = backend.CpuBackend()
    a = words(seed, (n,))
    assert same(be.lshr(a, k), ring.lshr(a, k)) and same(be.msb(a), ring.msb(a))
    assert same(be.u64(a), ring.u64(a)) and same(be.as_ring(a[::2]), ring.as_ring(a[::2]))
    assert same(be.zeros((n, 2)), ring.zeros((n, 2)))
    assert be.const(v) == ring.const(v) and type(be.const(v)) is np.int64


# -- the PRG: kernels.prg's keystream ---------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(seed=st.binary(min_size=16, max_size=16), stream=st.integers(0, 2**64 - 1), first=st.integers(0, 500),
       n=st.integers(0, 700), native_aes=st.sampled_from([None, True, False]))
def test_backend_prg_is_the_kernels_keystream(seed, stream, first, n, native_aes):
    g = backend.select("cpu", native_aes=native_aes).prg(seed)
    assert g.native == (prg.NATIVE and native_aes is not False)
    ref = prg.PRG(seed)
    assert same(g.words(stream, first + n), ref.words(stream, first + n))
    out = np.empty(n, np.int64)
    assert same(g.words_at(stream, first, out), ref.words(stream, first + n)[first:])
    shapes = [(2, 3), (), (n,)]
    assert all(same(x, y) for x, y in zip(g.ring(stream, shapes), ref.ring(stream, shapes)))


# -- kernels/ is configured by its callers ----------------------------------------------------

def test_no_kernel_module_reads_the_environment():
    pattern = re.compile(r"\bos\.environ\b|\bgetenv\b|\benviron\s*\[|\bputenv\b")
    sources = sorted(KERNELS.glob("*.py")) + sorted(KERNELS.glob("*.c"))
    assert len(sources) >= 10
    readers = [f"{p.name}:{i}" for p in sources for i, line in enumerate(p.read_text().splitlines(), 1)
               if pattern.search(line)]
    assert readers == []


def test_cuda_gemm_is_imported_once_at_module_level():
    """Only the CUDA back end imports kernels.cuda_gemm, and no kernels module imports one of
    the package's modules inside a function."""
    importers = []
    for p in sorted(KERNELS.glob("*.py")):
        tree = ast.parse(p.read_text())
        top = set(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                ours = any(n.startswith("mpcrt") for n in names)
                assert not ours or node in top or _in_module_try(tree, node), f"{p.name}:{node.lineno}"
                if any("cuda_gemm" in n for n in names):
                    importers.append(p.name)
    assert importers == ["backend.py"]


def _in_module_try(tree: ast.Module, node: ast.AST) -> bool:
    """node sits in a module-level try (an optional extension's import)."""
    return any(isinstance(t, ast.Try) and node in list(ast.walk(t)) for t in tree.body)

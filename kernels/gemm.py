"""Ring GEMM over Z_2^64 on the CPU: torch.matmul semantics, fastest kernel available.

Large 2-D products (and each matrix of a batched one) go to `_gemm64`, the AVX-512
kernel of gemm64.c (a 1024^3 product in ~53 ms on one core here, torch ~72 ms), with
rows split across MPCRT_THREADS threads (the C call releases the GIL). Small products,
CPUs without AVX-512, and installs where the extension could not be compiled use
torch's int64 matmul, which wraps modulo 2^64 the same way. With MPCRT_DEVICE=cuda
(`mpcrt launch --device cuda`) products of at least GPU_MIN_MACS multiply-adds run on
the GPU instead (kernels.cuda_gemm). All give the same ring result bit for bit;
tests/test_gemm.py checks each kernel against torch.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mpcrt.errors import ConfigError

try:
    from mpcrt.kernels import _gemm64

    NATIVE = bool(_gemm64.avx512())
except ImportError:  # the optional extension was not built: torch only
    _gemm64 = None
    NATIVE = False

MIN_MACS = 1 << 18  # below this the call overheads dominate and torch is as fast
GPU_MIN_MACS = 1 << 24  # below this the PCIe copies and the launch cost more than the CPU GEMM
DEVICES = ("cpu", "cuda")
_pool: ThreadPoolExecutor | None = None
_torch = None


def torch():
    """torch, imported on first use (it costs a second), with this party's thread count."""
    global _torch
    if _torch is None:
        import torch as t

        n = os.environ.get("MPCRT_THREADS")
        if n:
            t.set_num_threads(int(n))
        _torch = t
    return _torch


def device() -> str:
    """Where large ring GEMMs run: MPCRT_DEVICE, "cpu" (default) or "cuda"."""
    d = (os.environ.get("MPCRT_DEVICE") or "cpu").lower()
    if d not in DEVICES:
        raise ConfigError(f"MPCRT_DEVICE={d!r}: use one of {', '.join(DEVICES)}")
    return d


def check_device() -> None:
    """Fail at start, not at the first large product, when MPCRT_DEVICE=cuda cannot be served
    (ConfigError saying what to install); nothing to check for the CPU."""
    if device() == "cuda":
        from mpcrt.kernels import cuda_gemm

        cuda_gemm.cupy()


def _use_gpu(a: np.ndarray, b: np.ndarray) -> bool:
    if a.ndim < 2 or b.ndim < 2 or device() != "cuda":
        return False
    batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])))
    return use_gpu_for(batch * a.shape[-2] * a.shape[-1] * b.shape[-1])


def use_gpu_for(macs: int) -> bool:
    """True where a product of `macs` multiply-adds goes to the GPU (MPCRT_DEVICE=cuda)."""
    return macs >= GPU_MIN_MACS and device() == "cuda"


def threads() -> int:
    return max(1, int(os.environ.get("MPCRT_THREADS") or 1))


def cpu_share(world_size: int, env=None) -> int:
    """Threads each process of a local session may use: MPCRT_THREADS if set, else the
    host's cores shared by the world_size parties and the dealer, at least 1."""
    env = os.environ if env is None else env
    n = env.get("MPCRT_THREADS")
    return int(n) if n else max(1, (os.cpu_count() or 1) // (world_size + 1))


def _native_2d(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool) -> None:
    """out (+)= a @ b for C-contiguous 2-D int64 arrays, split by rows across threads."""
    global _pool
    n, k = a.shape
    m = b.shape[1]
    nt = min(threads(), max(1, n // 64))
    if nt == 1:
        _gemm64.matmul(a, b, out, n, k, m, accumulate)
        return
    if _pool is None or _pool._max_workers < nt:
        _pool = ThreadPoolExecutor(nt, thread_name_prefix="mpcrt-gemm")
    cuts = np.linspace(0, n, nt + 1).astype(int)
    jobs = [_pool.submit(_gemm64.matmul, a[lo:hi], b, out[lo:hi], hi - lo, k, m, accumulate)
            for lo, hi in zip(cuts[:-1], cuts[1:])]
    for j in jobs:
        j.result()


def _use_native(a: np.ndarray, b: np.ndarray) -> bool:
    return NATIVE and a.ndim >= 2 and b.ndim >= 2 and a.shape[-2] * a.shape[-1] * b.shape[-1] >= MIN_MACS


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False) -> np.ndarray:
    """a @ b modulo 2^64 (torch.matmul semantics: 1-D, 2-D, batched, broadcast).

    With `out` given (the right shape, C-contiguous int64) the product is written there,
    or added to it when `accumulate`; the result is returned either way.
    """
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
    if _use_gpu(a, b):
        from mpcrt.kernels import cuda_gemm

        return _into(cuda_gemm.matmul(a, b), out, accumulate)
    if _use_native(a, b):
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        shape = tuple(batch) + (a.shape[-2], b.shape[-1])
        if out is None:
            out, accumulate = np.empty(shape, np.int64), False
        elif out.shape != shape or not out.flags.c_contiguous or out.dtype != np.int64:
            raise ValueError(f"out must be a C-contiguous int64 array of shape {shape}")
        ab = np.broadcast_to(a, tuple(batch) + a.shape[-2:])
        bb = np.broadcast_to(b, tuple(batch) + b.shape[-2:])
        for idx in np.ndindex(*batch):
            _native_2d(np.ascontiguousarray(ab[idx]), np.ascontiguousarray(bb[idx]), out[idx], accumulate)
        return out
    t = torch()
    return _into(t.matmul(t.from_numpy(a), t.from_numpy(b)).numpy(), out, accumulate)


def matmul2(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """a1 @ b1 + a2 @ b2 modulo 2^64 for two products of the same result shape (a Beaver
    matmul's two local products); on the GPU the sum stays there until the end."""
    a1, b1, a2, b2 = (np.ascontiguousarray(v, dtype=np.int64) for v in (a1, b1, a2, b2))
    if _use_gpu(a1, b1) and _use_gpu(a2, b2):
        from mpcrt.kernels import cuda_gemm

        return cuda_gemm.matmul2(a1, b1, a2, b2)
    out = matmul(a1, b1)
    return matmul(a2, b2, out=out, accumulate=True)


def _into(r: np.ndarray, out: np.ndarray | None, accumulate: bool) -> np.ndarray:
    if out is None:
        return r
    if accumulate:
        np.add(out, r, out=out)
    else:
        out[...] = r
    return out

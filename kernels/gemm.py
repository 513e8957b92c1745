"""Ring GEMM over Z_2^64 on the CPU: torch.matmul semantics, fastest kernel available.

Large 2-D products (and each matrix of a batched one) go to `_gemm64`, the AVX-512
kernel of gemm64.c (a 1024^3 product in ~53 ms on one core here, torch ~72 ms), with
rows split across `threads` threads (the C call releases the GIL). Small products,
CPUs without AVX-512, and installs where the extension could not be compiled use
torch's int64 matmul, which wraps modulo 2^64 the same way. Both give the same ring
result bit for bit; tests/test_gemm.py checks each kernel against torch. The GPU's
GEMM is kernels.cuda_gemm, reached through kernels.backend.CudaBackend.

Nothing here reads the environment: the thread count comes in as an argument (from
kernels.backend.CpuBackend, which mpcrt.config's settings build).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    from mpcrt.kernels import _gemm64

    NATIVE = bool(_gemm64.avx512())
except ImportError:  # the optional extension was not built: torch only
    _gemm64 = None
    NATIVE = False

MIN_MACS = 1 << 18  # below this the call overheads dominate and torch is as fast
_pool: ThreadPoolExecutor | None = None
_torch = None
_torch_threads: int | None = None


def torch(threads: int | None = None):
    """torch, imported on first use (it costs a second); with `threads`, its intra-op thread
    count set to that (a process-wide setting: torch has one pool per process)."""
    global _torch, _torch_threads
    if _torch is None:
        import torch as t

        _torch = t
    if threads and threads != _torch_threads:
        _torch.set_num_threads(int(threads))
        _torch_threads = threads
    return _torch


def cpu_share(world_size: int, threads: int | str | None = None) -> int:
    """Threads each process of a local session may use: `threads` if given (MPCRT_THREADS),
    else the host's cores shared by the world_size parties and the dealer, at least 1."""
    return int(threads) if threads else max(1, (os.cpu_count() or 1) // (world_size + 1))


def _native_2d(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool, threads: int) -> None:
    """out (+)= a @ b for C-contiguous 2-D int64 arrays, split by rows across threads."""
    global _pool
    n, k = a.shape
    m = b.shape[1]
    nt = min(max(1, threads), max(1, n // 64))
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


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False,
           threads: int | None = None) -> np.ndarray:
    """a @ b modulo 2^64 (torch.matmul semantics: 1-D, 2-D, batched, broadcast), on the CPU.

    With `out` given (the right shape, C-contiguous int64) the product is written there,
    or added to it when `accumulate`; the result is returned either way. `threads`: how
    many threads the AVX-512 kernel splits rows across, and torch's thread count (None:
    one for the AVX-512 kernel, torch's as it is).
    """
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
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
            _native_2d(np.ascontiguousarray(ab[idx]), np.ascontiguousarray(bb[idx]), out[idx], accumulate,
                       threads or 1)
        return out
    t = torch(threads)
    return into(t.matmul(t.from_numpy(a), t.from_numpy(b)).numpy(), out, accumulate)


def matmul2(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray, threads: int | None = None) -> np.ndarray:
    """a1 @ b1 + a2 @ b2 modulo 2^64 for two products of the same result shape (a Beaver
    matmul's two local products), on the CPU."""
    out = matmul(a1, b1, threads=threads)
    return matmul(a2, b2, out=out, accumulate=True, threads=threads)


def into(r: np.ndarray, out: np.ndarray | None, accumulate: bool) -> np.ndarray:
    """r, or r written (accumulate: added) into `out` and `out` returned."""
    if out is None:
        return r
    if accumulate:
        np.add(out, r, out=out)
    else:
        out[...] = r
    return out



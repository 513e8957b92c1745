"""Ring GEMM over Z_2^64 on the CPU: torch.matmul semantics, the fastest exact kernel this CPU has.

Kernels (`KINDS`), all exact modulo 2^64, bit for bit the same result (1024^3 on one core of the
2-vCPU AMD EPYC (Zen 4) of benchmarks/README.md, CPU seconds; one float64 DGEMM: 0.043 s):
- "avx512": gemm64.c's AVX-512F/DQ kernel (vpmullq), 0.057 s.
- "avx2": gemm64.c's AVX2 kernel (vpmuludq + vpmulld), 0.127 s: x86 CPUs without AVX-512.
- "blas": kernels.limbgemm, float64 limbs through numpy's BLAS (five DGEMM-sized products),
  0.24 s: any CPU (aarch64, or x86 where the C extension could not be built).
- "torch": torch's int64 matmul: fbgemm's AVX-512 JIT kernel where the CPU has AVX-512 (0.09 s),
  else fbgemm's reference triple loop (1.4 s here in C, 7.2 s measured on an AVX2-only Zen 3):
  used only for products too small for the others' overheads (below `MIN_MACS[kind]`), or forced.

`best()` picks at import, in that order of speed: avx512 where the extension is built and the CPU
has AVX-512F/DQ, else avx2 where it has AVX2, else blas; `KIND` holds the pick, and every entry point
takes `kind` to force another (kernels.backend.CpuBackend's `gemm_kind`; tests and
benchmarks/gemm_paths.py force each). The C kernels split rows across `threads` threads (the C
call releases the GIL); the limb GEMM sets BLAS's thread count. tests/test_gemm.py and
tests/test_limbgemm.py check every kernel against torch's int64 matmul. The GPU's GEMM is
kernels.cuda_gemm, reached through kernels.backend.CudaBackend.

Nothing here reads the environment: the thread count and the kind come in as arguments (from
kernels.backend.CpuBackend, which mpcrt.config's settings build).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mpcrt.errors import ConfigError
from mpcrt.kernels import limbgemm

try:
    from mpcrt.kernels import _gemm64
except ImportError:  # the optional extension was not built: the limb GEMM and torch
    _gemm64 = None

KINDS = ("avx512", "avx2", "blas", "torch")
_C_KIND = {"avx512": 0, "avx2": 1}  # gemm64.c's kernel numbers
# products below this many multiply-adds go to torch (call overheads dominate). torch is fast for
# them on AVX-512 CPUs (the threshold the avx512 kernel always had) but ~0.14 GMAC/s without it.
MIN_MACS = {"avx512": 1 << 18, "avx2": 1 << 12, "blas": 1 << 15, "torch": 0}
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


def available(kind: str) -> bool:
    """Whether `kind` runs here: the C kernels need the extension and the CPU's instructions."""
    if kind in _C_KIND:
        return _gemm64 is not None and bool(getattr(_gemm64, kind)())
    return kind in KINDS


def best() -> str:
    """The fastest exact kernel this CPU runs (module docstring: the order)."""
    return next(k for k in ("avx512", "avx2", "blas") if available(k))


KIND = best()
NATIVE = KIND == "avx512"  # kept for callers that ask whether the AVX-512 kernel runs


def pick(kind: str | None = None) -> str:
    """`kind` checked (ConfigError where it does not run here), or the best one for None / "auto"."""
    if kind is None or kind == "auto":
        return KIND
    if kind not in KINDS:
        raise ConfigError(f"GEMM kernel {kind!r}: use one of auto, {', '.join(KINDS)}")
    if not available(kind):
        raise ConfigError(f"GEMM kernel {kind!r} does not run here (extension not built or the CPU lacks its "
                          f"instructions): use auto, or one of {', '.join(k for k in KINDS if available(k))}")
    return kind


def _native_2d(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool, threads: int, ck: int) -> None:
    """out (+)= a @ b for C-contiguous 2-D int64 arrays with C kernel `ck`, split by rows across threads."""
    global _pool
    n, k = a.shape
    m = b.shape[1]
    nt = min(max(1, threads), max(1, n // 64))
    if nt == 1:
        _gemm64.matmul(a, b, out, n, k, m, accumulate, ck)
        return
    if _pool is None or _pool._max_workers < nt:
        _pool = ThreadPoolExecutor(nt, thread_name_prefix="mpcrt-gemm")
    cuts = np.linspace(0, n, nt + 1).astype(int)
    jobs = [_pool.submit(_gemm64.matmul, a[lo:hi], b, out[lo:hi], hi - lo, k, m, accumulate, ck)
            for lo, hi in zip(cuts[:-1], cuts[1:])]
    for j in jobs:
        j.result()


def _macs(a: np.ndarray, b: np.ndarray) -> int:
    return a.shape[-1] * (a.shape[-2] if a.ndim > 1 else 1) * (b.shape[-1] if b.ndim > 1 else 1)


def _native(a: np.ndarray, b: np.ndarray, out: np.ndarray | None, accumulate: bool, threads: int | None,
            kind: str) -> np.ndarray:
    """The C kernel `kind` on each matrix of a (batched, broadcast) product; 1-D operands as rows/columns."""
    pa, pb, va, vb = limbgemm.promote(a, b)
    if pa.shape[-1] != pb.shape[-2]:
        raise ValueError(f"inner dimensions differ: {a.shape} @ {b.shape}")
    batch = np.broadcast_shapes(pa.shape[:-2], pb.shape[:-2])
    shape = tuple(batch) + (pa.shape[-2], pb.shape[-1])
    direct = out is not None and out.shape == shape  # written (accumulated) in place by the kernel
    c = out if direct else np.empty(shape, np.int64)
    ab = np.broadcast_to(pa, tuple(batch) + pa.shape[-2:])
    bb = np.broadcast_to(pb, tuple(batch) + pb.shape[-2:])
    for idx in np.ndindex(*batch):
        _native_2d(np.ascontiguousarray(ab[idx]), np.ascontiguousarray(bb[idx]), c[idx], direct and accumulate,
                   threads or 1, _C_KIND[kind])
    return c if direct else into(limbgemm.demote(c, va, vb), out, accumulate)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False,
           threads: int | None = None, kind: str | None = None) -> np.ndarray:
    """a @ b modulo 2^64 (torch.matmul semantics: 1-D, 2-D, batched, broadcast), on the CPU.

    With `out` given (the right shape, C-contiguous int64) the product is written there,
    or added to it when `accumulate`; the result is returned either way. `threads`: how
    many threads the C kernels split rows across, BLAS's and torch's thread count (None:
    one for the C kernels, the libraries' as they are). `kind`: the kernel (None: `KIND`,
    the best here; module docstring), which products below MIN_MACS[kind] leave to torch.
    """
    kind = KIND if kind is None else kind
    a = np.ascontiguousarray(a, dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
    if out is not None and (out.dtype != np.int64 or not out.flags.c_contiguous):
        raise ValueError("out must be a C-contiguous int64 array of the product's shape")
    if kind != "torch" and _macs(a, b) >= MIN_MACS[kind]:
        if kind == "blas":
            return into(limbgemm.matmul(a, b, threads), out, accumulate)
        return _native(a, b, out, accumulate, threads, kind)
    t = torch(threads)
    return into(t.matmul(t.from_numpy(a), t.from_numpy(b)).numpy(), out, accumulate)


def matmul2(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray, threads: int | None = None,
            kind: str | None = None) -> np.ndarray:
    """a1 @ b1 + a2 @ b2 modulo 2^64 for two products of the same result shape (a Beaver
    matmul's two local products), on the CPU; the limb GEMM joins them into one product of depth 2K."""
    kind = KIND if kind is None else kind
    if kind == "blas" and _macs(np.asarray(a1), np.asarray(b1)) >= MIN_MACS[kind]:
        return limbgemm.matmul2(a1, b1, a2, b2, threads)
    out = matmul(a1, b1, threads=threads, kind=kind)
    return matmul(a2, b2, out=out, accumulate=True, threads=threads, kind=kind)


def into(r: np.ndarray, out: np.ndarray | None, accumulate: bool) -> np.ndarray:
    """r, or r written (accumulate: added) into `out` and `out` returned (r may broadcast to out's shape:
    matmul2's second product)."""
    if out is None:
        return r
    try:
        fits = np.broadcast_shapes(out.shape, r.shape) == out.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"out must be a C-contiguous int64 array of shape {r.shape}")
    if accumulate:
        np.add(out, r, out=out)
    else:
        out[...] = r
    return out



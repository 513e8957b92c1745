"""The back end: one object per device holding every ring operation a party (or the dealer)
runs locally, chosen once (`select`) from the settings and passed down.

Interface (`Backend`), the same on every device:
- `name`: "cpu" or "cuda".
- Elementwise ring ops (kernels.ring's): `as_ring`, `zeros`, `u64`, `lshr`, `msb`, `const`.
  add, sub, mul and neg are the arrays' own operators (int64 wraps modulo 2^64).
- Bilinear ops, with kernels.ring's names and signatures: `matmul(a, b, out=None,
  accumulate=False)`, `matmul2(a1, b1, a2, b2)`, `conv2d(x, w, stride=1, padding=0,
  dilation=1, groups=1)`, `conv2d2(x1, w1, x2, w2, stride=1, padding=0, dilation=1, groups=1)`.
- Fused kernels, one namespace per protocol family, each with the functions of the kernels
  module of that name (party and dealer halves): `beaver` (BeaverKernels: the Beaver
  product and truncation), `bitlt` (BitltKernels: the comparison's levels, B2A and
  deals), `powers` (PowersKernels: the powers combine, polynomial and deal), `topbytes`
  (TopbytesKernels: the top-bytes openings' pack and sum). A GPU version plugs in as an
  object with the same functions.
- `prg(seed)`: the AES-128-CTR PRG of a 128-bit seed (kernels.prg.PRG's interface:
  words, words_at, ring), the same keystream on every device.

`CpuBackend` (numpy, numba, the C kernels) is complete. `CudaBackend` (CuPy) implements
only the bilinear ops: products of at least `min_macs` multiply-adds run on the GPU
(kernels.cuda_gemm), host arrays in and out; everything else is its CPU back end's, on
host arrays. Issue 22 (GPU-resident MPC) fills in the rest: shares as CuPy arrays, the
elementwise ops and fused kernels as CUDA kernels, and a CUDA AES-CTR behind `prg`.

Nothing under kernels/ reads the environment: the device, the thread count and the AES
choice come in as `select`'s arguments (mpcrt.config reads them once).
"""
from __future__ import annotations

import abc
from typing import Protocol, runtime_checkable

import numpy as np

from mpcrt.errors import ConfigError
from mpcrt.kernels import beaver, bitlt, convgemm, cuda_gemm, gemm, powers, ring, topbytes
from mpcrt.kernels.prg import PRG

DEVICES = ("cpu", "cuda")


@runtime_checkable
class BeaverKernels(Protocol):
    """The elementwise Beaver multiply with truncation (kernels.beaver)."""

    def product_masked(self, d, b, x, e, cr, offset, out) -> None: ...
    def trunc_finish(self, c, r_hi, r_msb, f, low, rank0, out) -> None: ...
    def div_finish(self, c, q, r_msb, d, q64, r64, top, pub, rank0, out) -> None: ...
    def deal_triple(self, a0, a1, b0, b1, c1, out) -> None: ...
    def deal_trunc(self, r0, r1, f, low, sub_hi, sub_msb, out_hi, out_msb) -> None: ...
    def deal_triple_trunc(self, a0, a1, b0, b1, r, f, low, sub_cr, sub_hi, sub_msb, out_cr, out_hi,
                          out_msb) -> None: ...


@runtime_checkable
class BitltKernels(Protocol):
    """The comparison's bit-sliced levels, B2A and deals (kernels.bitlt)."""

    def pack_live(self, X, dead, out) -> None: ...
    def unpack_live(self, P, dead, fill, out) -> None: ...
    def level1(self, c, hi, rb, P, first, out) -> None: ...
    def pack_level(self, W, w, lo, pair, a, b, am, bm, X, Y) -> None: ...
    def finish_level(self, W, w, lo, pair, D, F, a, b, am, bm, c, first) -> None: ...
    def pack_last(self, W, a, b, X, Y) -> None: ...
    def finish_last(self, W, D, F, a, b, c, first, rb, cpub, sb, out) -> None: ...
    def b2a(self, v, s, first, out) -> None: ...
    def b2a_product(self, v, y, d, s, ms, out) -> None: ...
    def b2a_product_trunc(self, v, y, cy, k, low, off, T, s, sS, sM, out) -> None: ...
    def deal_pairs(self, r, sub_rb, sub_P, out_rb, out_P) -> None: ...
    def deal_and2(self, a0, a1, b0, b1, mask, sub, out) -> None: ...
    def deal_ytrunc(self, tr0, tr1, k, low, sbits, rows, sub_yS, sub_yM, sub_sS, sub_sM, yS, yM, sS,
                    sM) -> None: ...
    def deal_dabits(self, sb, mask, sub_s, out_s) -> None: ...


@runtime_checkable
class PowersKernels(Protocol):
    """The powers u^1..u^J of a truncation and the polynomials in them (kernels.powers)."""

    def combine(self, c, S, M, k: int, rank0: bool) -> np.ndarray: ...
    def poly(self, c, S, M, k: int, rank0: bool, coef, X=None, xcoef: int = 0) -> np.ndarray: ...
    def deal(self, r, k: int, J: int, subS, subM, outS, outM) -> None: ...


@runtime_checkable
class TopbytesKernels(Protocol):
    """The top-bytes openings' pack and sum (kernels.topbytes)."""

    def pack(self, x, nbytes: int, plus=None, add: int = 0) -> list: ...
    def unpack_sum(self, parts: list, nbytes: int, out): ...


class Backend(abc.ABC):
    """The ring operations of one device (module docstring: the interface)."""

    name: str
    beaver: BeaverKernels
    bitlt: BitltKernels
    powers: PowersKernels
    topbytes: TopbytesKernels

    @abc.abstractmethod
    def as_ring(self, a):
        """`a` as a C-contiguous int64 array on this device."""

    @abc.abstractmethod
    def zeros(self, shape):
        """A ring array of zeros."""

    @abc.abstractmethod
    def u64(self, a):
        """Ring elements viewed as unsigned words (no copy)."""

    @abc.abstractmethod
    def lshr(self, a, k: int):
        """Logical right shift by k (as unsigned), int64 result."""

    @abc.abstractmethod
    def msb(self, a):
        """Most significant bit (0/1, int64) of each element."""

    @abc.abstractmethod
    def const(self, v: int) -> np.int64:
        """A Python int as an int64 ring constant, reduced modulo 2^64."""

    @abc.abstractmethod
    def matmul(self, a, b, out=None, accumulate: bool = False):
        """a @ b modulo 2^64, torch.matmul semantics; into `out` (added when `accumulate`) if given."""

    @abc.abstractmethod
    def matmul2(self, a1, b1, a2, b2):
        """a1 @ b1 + a2 @ b2 modulo 2^64 (one result shape: a Beaver matmul's two products)."""

    @abc.abstractmethod
    def conv2d(self, x, w, stride=1, padding=0, dilation=1, groups=1):
        """Ring 2-D convolution, NCHW input and OIHW weight."""

    @abc.abstractmethod
    def conv2d2(self, x1, w1, x2, w2, stride=1, padding=0, dilation=1, groups=1):
        """conv2d(x1, w1) + conv2d(x2, w2) (one result shape: a Beaver convolution's two products)."""

    @abc.abstractmethod
    def prg(self, seed: bytes) -> PRG:
        """The AES-128-CTR PRG of a 16-byte seed."""


class HostRingOps:
    """kernels.ring's elementwise ops, on host (numpy) arrays: the CPU back end's, and the CUDA
    one's until issue 22 keeps shares on the GPU."""

    as_ring = staticmethod(ring.as_ring)
    zeros = staticmethod(ring.zeros)
    u64 = staticmethod(ring.u64)
    lshr = staticmethod(ring.lshr)
    msb = staticmethod(ring.msb)
    const = staticmethod(ring.const)


class CpuBackend(HostRingOps, Backend):
    """numpy, numba's fused loops and the C kernels: the fastest exact ring GEMM this CPU runs
    (kernels.gemm.best: the AVX-512 kernel, else the AVX2 one, else float64 limbs through BLAS)
    for matmuls and convolutions alike, the VAES AES-CTR where built and supported (else
    `cryptography`'s).

    threads: threads for the C GEMMs' rows, BLAS's and torch's pools (None: one for the C
    GEMMs, the libraries' as they are; BLAS's and torch's counts are process-wide). native_aes:
    False to use `cryptography`'s AES-CTR even where the VAES keystream is there (same bytes).
    gemm_kind: None or "auto" for the best, or one of kernels.gemm.KINDS to force it (ConfigError
    where it does not run here); `gemm_kind` then holds the kernel in use."""

    name = "cpu"
    beaver = beaver
    bitlt = bitlt
    powers = powers
    topbytes = topbytes

    def __init__(self, threads: int | None = None, native_aes: bool | None = None, gemm_kind: str | None = None):
        if threads is not None and int(threads) < 1:
            raise ConfigError(f"threads={threads}: the CPU back end needs at least 1 thread (MPCRT_THREADS)")
        self.threads = None if threads is None else int(threads)
        self.native_aes = native_aes
        self.gemm_kind = gemm.pick(gemm_kind)

    def __repr__(self) -> str:
        return (f"CpuBackend(threads={self.threads}, gemm={self.gemm_kind}, "
                f"aes={'vaes' if self.prg(bytes(16)).native else 'cryptography'})")

    def matmul(self, a, b, out=None, accumulate: bool = False):
        return gemm.matmul(a, b, out, accumulate, self.threads, self.gemm_kind)

    def matmul2(self, a1, b1, a2, b2):
        return gemm.matmul2(a1, b1, a2, b2, self.threads, self.gemm_kind)

    def conv2d(self, x, w, stride=1, padding=0, dilation=1, groups=1):
        return convgemm.conv2d(x, w, stride, padding, dilation, groups, self.threads, self.gemm_kind)

    def conv2d2(self, x1, w1, x2, w2, stride=1, padding=0, dilation=1, groups=1):
        return convgemm.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups, self.threads, self.gemm_kind)

    def prg(self, seed: bytes) -> PRG:
        return PRG(seed, self.native_aes)


class CudaBackend(HostRingOps, Backend):
    """Ring GEMMs and convolutions of at least `min_macs` multiply-adds on a CUDA GPU (CuPy,
    kernels.cuda_gemm; default cuda_gemm.MIN_MACS, where the GPU beats the PCIe copies), host
    arrays in and out; smaller products and every other operation are `cpu`'s.

    What issue 22 fills in: shares resident on the GPU (CuPy arrays), the elementwise ops,
    the fused kernels (beaver, bitlt, powers, topbytes) and the PRG (a CUDA AES-CTR, the
    same keystream) on the GPU. Raises ConfigError where CuPy or a GPU is missing."""

    name = "cuda"

    def __init__(self, cpu: CpuBackend | None = None, min_macs: int | None = None):
        cuda_gemm.cupy()  # ConfigError saying what to install, before any work
        self.cpu = cpu if cpu is not None else CpuBackend()
        self.min_macs = cuda_gemm.MIN_MACS if min_macs is None else int(min_macs)
        self.beaver, self.bitlt = self.cpu.beaver, self.cpu.bitlt  # issue 22: CuPy kernels
        self.powers, self.topbytes = self.cpu.powers, self.cpu.topbytes

    def __repr__(self) -> str:
        return f"CudaBackend(min_macs={self.min_macs}, cpu={self.cpu!r})"

    def prg(self, seed: bytes) -> PRG:  # issue 22: a CUDA AES-CTR, the same keystream
        return self.cpu.prg(seed)

    # the bilinear ops: large products on the GPU
    def _gpu_matmul(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.ndim < 2 or b.ndim < 2:
            return False
        batch = int(np.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])))
        return batch * a.shape[-2] * a.shape[-1] * b.shape[-1] >= self.min_macs

    def _gpu_conv(self, xs: tuple, ws: tuple, stride, padding, dilation) -> bool:
        n, o, oh, ow = ring.conv2d_shape(xs, ws, stride, padding, dilation)
        return n * o * ws[1] * ws[2] * ws[3] * oh * ow >= self.min_macs

    def matmul(self, a, b, out=None, accumulate: bool = False):
        a, b = ring.as_ring(a), ring.as_ring(b)
        if self._gpu_matmul(a, b):
            return gemm.into(cuda_gemm.matmul(a, b), out, accumulate)
        return self.cpu.matmul(a, b, out, accumulate)

    def matmul2(self, a1, b1, a2, b2):
        a1, b1, a2, b2 = (ring.as_ring(v) for v in (a1, b1, a2, b2))
        if self._gpu_matmul(a1, b1) and self._gpu_matmul(a2, b2):
            return cuda_gemm.matmul2(a1, b1, a2, b2)  # the sum taken on the GPU: one download
        return self.cpu.matmul2(a1, b1, a2, b2)

    def conv2d(self, x, w, stride=1, padding=0, dilation=1, groups=1):
        if self._gpu_conv(x.shape, w.shape, stride, padding, dilation):  # im2col on the GPU too
            return cuda_gemm.conv2d(ring.as_ring(x), ring.as_ring(w), *_pairs(stride, padding, dilation), groups)
        return self.cpu.conv2d(x, w, stride, padding, dilation, groups)

    def conv2d2(self, x1, w1, x2, w2, stride=1, padding=0, dilation=1, groups=1):
        if self._gpu_conv(x1.shape, w1.shape, stride, padding, dilation):
            return cuda_gemm.conv2d2(*(ring.as_ring(v) for v in (x1, w1, x2, w2)), *_pairs(stride, padding, dilation),
                                     groups)
        return self.cpu.conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups)


def _pairs(*vs) -> tuple:
    return tuple(ring._pair(v) for v in vs)


def select(device: str = "cpu", threads: int | None = None, native_aes: bool | None = None,
           gemm_kind: str | None = None) -> Backend:
    """The back end of `device` ("cpu" or "cuda", any case), with the CPU's settings (CpuBackend:
    threads, native_aes, gemm_kind). ConfigError for another name, for "cuda" where CuPy or a GPU
    is missing (saying what to install, or to run with --device cpu), or for a GEMM kernel that
    does not run here."""
    d = (device or "cpu").lower()
    if d not in DEVICES:
        raise ConfigError(f"device {device!r} (--device, MPCRT_DEVICE): use one of {', '.join(DEVICES)}")
    cpu = CpuBackend(threads, native_aes, gemm_kind)
    return cpu if d == "cpu" else CudaBackend(cpu)

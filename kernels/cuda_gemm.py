"""Ring GEMM over Z_2^64 on a CUDA GPU (CuPy): the same ring result as kernels.gemm, bit for bit.

Two exact kernels:
- `int64` (the one the runtime uses): a tiled CUDA kernel (64x64 output tile per
  block, 4x4 per thread, k-steps of 16 through shared memory) multiplying and
  accumulating unsigned 64-bit words, which wrap modulo 2^64. Any inner size, batched
  and broadcast in one launch (zero batch strides). H200: 2.7 TMAC/s at 1024^3,
  3.1 at 4096^3 (0.4 ms and 22 ms).
- `fp64`: the operands split into four 16-bit limbs, a_i, b_j in [0, 2^16), and
  a b = sum over i + j < 4 of (A_i B_j) 2^(16 (i + j)) mod 2^64: ten float64 GEMMs on
  cuBLAS, each entry an integer below k 2^32 (four summed: k 2^34 <= 2^53), so exact;
  inner sizes above 2^19 are cut into chunks. An independent second implementation
  (the tests check one against the other and against the CPU); on the H200 it is
  1.15x (4096^3) to 9x (256^3) slower than the int64 kernel despite the FP64 tensor cores.

Operands arrive as host numpy arrays and the result goes back to the host: at the
sizes where the GPU pays (MIN_MACS) the PCIe copies, not the arithmetic, set the
time (1024^3: 2.7 ms host to host, 0.4 ms on the GPU; 16 CPU threads take 14 ms).
benchmarks/gpu_gemm.py measures both kernels against the CPU GEMM. The runtime reaches
these through kernels.backend.CudaBackend, which decides which products come here.
"""
from __future__ import annotations

import numpy as np

from mpcrt.errors import ConfigError

LIMB = 16
MIN_MACS = 1 << 24  # below this the PCIe copies and the launch cost more than the CPU GEMM
MAX_GRID = 65535  # blocks along a grid's y and z
MAX_K_FP64 = 1 << 19  # entries of one limb GEMM < k 2^32, four summed < k 2^34 <= 2^53

_KERNEL_SRC = r"""
typedef unsigned long long u64;
#define TM 64
#define TN 64
#define TK 16
extern "C" __global__ void ring_gemm(const u64* __restrict__ A, const u64* __restrict__ B, u64* __restrict__ C,
                                     int M, int N, int K, long long sA, long long sB, int accumulate,
                                     int row_base) {
    __shared__ u64 As[TK][TM + 1];
    __shared__ u64 Bs[TK][TN];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int row0 = row_base + blockIdx.y * TM, col0 = blockIdx.x * TN;
    const u64* a = A + sA * blockIdx.z;
    const u64* b = B + sB * blockIdx.z;
    u64* c = C + (long long)M * N * blockIdx.z;
    u64 acc[4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;
    for (int k0 = 0; k0 < K; k0 += TK) {
        #pragma unroll
        for (int l = 0; l < 4; ++l) {
            int e = t + 256 * l;
            int r = e / TK, q = e % TK, gr = row0 + r, gq = k0 + q;
            As[q][r] = (gr < M && gq < K) ? a[(long long)gr * K + gq] : 0ULL;
            int rb = e / TN, qb = e % TN, gk = k0 + rb, gc = col0 + qb;
            Bs[rb][qb] = (gk < K && gc < N) ? b[(long long)gk * N + gc] : 0ULL;
        }
        __syncthreads();
        #pragma unroll
        for (int kk = 0; kk < TK; ++kk) {
            u64 av[4], bv[4];
            #pragma unroll
            for (int i = 0; i < 4; ++i) av[i] = As[kk][ty + 16 * i];
            #pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
            #pragma unroll
            for (int i = 0; i < 4; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        int gr = row0 + ty + 16 * i;
        if (gr >= M) continue;
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            int gc = col0 + tx + 16 * j;
            if (gc < N) {
                long long o = (long long)gr * N + gc;
                c[o] = accumulate ? c[o] + acc[i][j] : acc[i][j];
            }
        }
    }
}
"""

_cp = None
_kernel = None


def cupy():
    """cupy, imported on first use; ConfigError with what to install when it is missing or finds no GPU."""
    global _cp
    if _cp is None:
        try:
            import cupy as cp

            n = cp.cuda.runtime.getDeviceCount()
        except Exception as e:  # ImportError, or CUDA's own error when there is no driver/device
            raise ConfigError(
                f"device cuda (--device cuda, MPCRT_DEVICE=cuda) needs CuPy and a CUDA GPU ({type(e).__name__}: {e}); "
                "install the gpu extra (pip install 'mpcrt[gpu]', or the cupy build matching your CUDA) "
                "or run with --device cpu"
            ) from None
        if n < 1:
            raise ConfigError("device cuda (--device cuda, MPCRT_DEVICE=cuda) but CUDA reports no GPU; "
                              "run with --device cpu")
        _cp = cp
    return _cp


def available() -> bool:
    """True where CuPy imports and sees at least one GPU."""
    try:
        cupy()
        return True
    except ConfigError:
        return False


def _ring_kernel():
    global _kernel
    if _kernel is None:
        _kernel = cupy().RawKernel(_KERNEL_SRC, "ring_gemm")
    return _kernel


def matmul_int64_dev(a, b, out=None, accumulate: bool = False):
    """Device arrays: out (+)= a @ b mod 2^64 for int64 a (..., n, k), b (..., k, m), batch dims
    broadcast; the int64 kernel."""
    cp = cupy()
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    n, k = a.shape[-2:]
    m = b.shape[-1]
    nb = int(np.prod(batch)) if batch else 1
    if out is None:
        out, accumulate = cp.empty(tuple(batch) + (n, m), cp.int64), False
    if n * m * nb == 0:
        return out
    if k == 0:
        if not accumulate:
            out.fill(0)
        return out
    a3 = _batch_view(cp, a, batch, n, k)
    b3 = _batch_view(cp, b, batch, k, m)
    sa = a3.strides[0] // 8 if a3.shape[0] > 1 else 0
    sb = b3.strides[0] // 8 if b3.shape[0] > 1 else 0
    o3 = out.reshape(nb, n, m)
    row_blocks = (n + 63) // 64
    for z0 in range(0, nb, MAX_GRID):  # CUDA grids hold at most 65535 blocks along y and z
        z1 = min(nb, z0 + MAX_GRID)
        for y0 in range(0, row_blocks, MAX_GRID):
            grid = ((m + 63) // 64, min(MAX_GRID, row_blocks - y0), z1 - z0)
            _ring_kernel()(grid, (256,), (a3[z0:z1] if sa else a3, b3[z0:z1] if sb else b3, o3[z0:z1], np.int32(n),
                                          np.int32(m), np.int32(k), np.int64(sa), np.int64(sb),
                                          np.int32(1 if accumulate else 0), np.int32(64 * y0)))
    return out


def _batch_view(cp, x, batch, r, c):
    """x as a C-contiguous (B or 1, r, c) array: B = prod(batch) when x has all batch dims,
    1 (broadcast by a zero stride) when it has none or only ones; else materialised."""
    xb = x.shape[:-2]
    if int(np.prod(xb)) == 1:
        return cp.ascontiguousarray(x.reshape(1, r, c))
    if tuple(xb) == tuple(batch):
        return cp.ascontiguousarray(x.reshape(-1, r, c))
    return cp.ascontiguousarray(cp.broadcast_to(x, tuple(batch) + (r, c)).reshape(-1, r, c))


def matmul_fp64_dev(a, b):
    """Device arrays: a @ b mod 2^64 for int64 operands by ten float64 GEMMs on 16-bit limbs."""
    cp = cupy()
    k = a.shape[-1]
    if k > MAX_K_FP64:
        out = None
        for lo in range(0, k, MAX_K_FP64):
            part = matmul_fp64_dev(a[..., lo:lo + MAX_K_FP64], b[..., lo:lo + MAX_K_FP64, :])
            out = part if out is None else out + part
        return out
    ua, ub = a.view(cp.uint64), b.view(cp.uint64)
    mask = cp.uint64(0xFFFF)
    la = [((ua >> cp.uint64(LIMB * i)) & mask).astype(cp.float64) for i in range(4)]
    lb = [((ub >> cp.uint64(LIMB * i)) & mask).astype(cp.float64) for i in range(4)]
    out = None
    for s in range(4):  # limb weight 2^(16 s): the pairs i + j = s, summed exactly in float64
        acc = None
        for i in range(s + 1):
            p = cp.matmul(la[i], lb[s - i])
            acc = p if acc is None else acc + p
        term = acc.astype(cp.uint64) << cp.uint64(LIMB * s)
        out = term if out is None else out + term
    return out.view(cp.int64)


def conv2d_dev(x, w, stride, padding, dilation, groups: int, out=None, accumulate: bool = False):
    """Device arrays: out (+)= conv2d(x, w) mod 2^64 (NCHW, OIHW), im2col on the GPU (the
    host sends x, not its kh kw times larger columns) and the int64 kernel."""
    cp = cupy()
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = cp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    patches = [xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
               for i in range(kh) for j in range(kw)]
    cols = cp.stack(patches, axis=2).reshape(n, groups, cg * kh * kw, oh * ow)  # torch's unfold order
    wg = w.reshape(1, groups, o // groups, cg * kh * kw)
    if out is not None:
        out = out.reshape(n, groups, o // groups, oh * ow)
    return matmul_int64_dev(wg, cols, out, accumulate).reshape(n, o, oh, ow)


def conv2d(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups: int) -> np.ndarray:
    """Host int64 arrays: conv2d(x, w) mod 2^64 on the GPU (stride, padding, dilation as pairs)."""
    cp = cupy()
    return cp.asnumpy(conv2d_dev(cp.asarray(x), cp.asarray(w), stride, padding, dilation, groups))


def conv2d2(x1, w1, x2, w2, stride, padding, dilation, groups: int) -> np.ndarray:
    """Host int64 arrays: conv2d(x1, w1) + conv2d(x2, w2) (one result shape) summed on the GPU."""
    cp = cupy()
    out = conv2d_dev(cp.asarray(x1), cp.asarray(w1), stride, padding, dilation, groups)
    conv2d_dev(cp.asarray(x2), cp.asarray(w2), stride, padding, dilation, groups, out, accumulate=True)
    return cp.asnumpy(out)


def matmul2(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Host int64 arrays: a1 @ b1 + a2 @ b2 mod 2^64 (both products of one shape, as in a
    Beaver matmul), the sum taken on the GPU: one download instead of two and no host add."""
    cp = cupy()
    out = matmul_int64_dev(cp.asarray(a1), cp.asarray(b1))
    matmul_int64_dev(cp.asarray(a2), cp.asarray(b2), out, accumulate=True)
    return cp.asnumpy(out)


def matmul(a: np.ndarray, b: np.ndarray, kernel: str = "int64") -> np.ndarray:
    """Host int64 arrays, at least 2-D: a @ b mod 2^64 computed on the GPU, returned on the host.
    kernel: "int64" (default) or "fp64" (see the module docstring)."""
    cp = cupy()
    da, db = cp.asarray(a), cp.asarray(b)
    if kernel == "int64":
        r = matmul_int64_dev(da, db)
    elif kernel == "fp64":
        r = matmul_fp64_dev(da, db)
    else:
        raise ValueError(f"kernel must be 'int64' or 'fp64', not {kernel!r}")
    return cp.asnumpy(r)

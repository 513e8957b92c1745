"""Ring 2-D convolution through kernels.gemm: im2col (kernels.ring's exact int64 unfold), then
the GEMM kernel the back end picked (AVX-512, AVX2, float64 limbs or torch), so convolutions
run on the same exact kernel as matmuls. kernels.backend.CpuBackend's conv2d and conv2d2 call it.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels import gemm, ring


def conv2d(x: np.ndarray, w: np.ndarray, stride=1, padding=0, dilation=1, groups=1, threads: int | None = None,
           kind: str | None = None) -> np.ndarray:
    """Ring 2-D convolution (NCHW input, OIHW weight) modulo 2^64 with GEMM kernel `kind` (None: gemm.KIND)."""
    torch = gemm.torch(threads)
    tx = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
    n = tx.shape[0]
    o, cg, kh, kw = w.shape
    _, _, oh, ow = ring.conv2d_shape(tuple(x.shape), tuple(w.shape), stride, padding, dilation)
    cols = ring._unfold_int(tx, kh, kw, stride, padding, dilation).numpy()  # exact, int64
    cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)
    wg = np.ascontiguousarray(w, dtype=np.int64).reshape(1, groups, o // groups, cg * kh * kw)
    return gemm.matmul(wg, cols, threads=threads, kind=kind).reshape(n, o, oh, ow)


def conv2d2(x1, w1, x2, w2, stride=1, padding=0, dilation=1, groups=1, threads: int | None = None,
            kind: str | None = None) -> np.ndarray:
    """conv2d(x1, w1) + conv2d(x2, w2) (one result shape: a Beaver convolution's two local products)."""
    z = conv2d(x1, w1, stride, padding, dilation, groups, threads, kind)
    z += conv2d(x2, w2, stride, padding, dilation, groups, threads, kind)
    return z

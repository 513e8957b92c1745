"""Build hook for the C extensions; everything else is in pyproject.toml.

`mpcrt.kernels._gemm64` is the ring GEMM (kernels/gemm64.c: an AVX-512 and an AVX2 kernel, each
with its own target attribute, so no -march flag and one binary for every x86-64 CPU),
`mpcrt.kernels._aesctr` the VAES AES-128-CTR keystream (kernels/aesctr.c), `mpcrt.kernels._dcfeval` the
FSS comparison's DCF evaluation on AES-NI (kernels/dcfeval.c). All are optional:
where one cannot be compiled (or on aarch64, where gemm64.c builds without kernels), the install
goes on and the portable path takes over (kernels/limbgemm.py's exact float64-limb GEMM through
BLAS, `cryptography`'s AES-CTR, kernels/dcf.py's numba levels): kernels/gemm.py, kernels/prg.py and
kernels/dcf.py detect them at import, and kernels.backend.CpuBackend uses them where present.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mpcrt.kernels._gemm64",
            sources=["kernels/gemm64.c"],
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        ),
        Extension(
            "mpcrt.kernels._aesctr",
            sources=["kernels/aesctr.c"],
            depends=["kernels/aes128.h"],
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        ),
        Extension(
            "mpcrt.kernels._dcfeval",
            sources=["kernels/dcfeval.c"],
            depends=["kernels/aes128.h"],
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        ),
    ]
)

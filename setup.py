"""Build hook for the C extensions; everything else is in pyproject.toml.

`mpcrt.kernels._gemm64` is the AVX-512 ring GEMM (kernels/gemm64.c), `mpcrt.kernels._aesctr`
the VAES AES-128-CTR keystream (kernels/aesctr.c). Both are optional: where one cannot be
compiled, the install goes on and the pure-Python path takes over (torch's int64 GEMM,
`cryptography`'s AES-CTR): kernels/gemm.py and kernels/prg.py detect them at import, and
kernels.backend.CpuBackend uses them where present.
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
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        ),
    ]
)

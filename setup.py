"""Build hook for the one C extension; everything else is in pyproject.toml.

`mpcrt.kernels._gemm64` is the AVX-512 ring GEMM (kernels/gemm64.c). It is optional:
where it cannot be compiled, the install goes on and ring matmuls use torch's int64
GEMM (kernels/gemm.py picks at import).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mpcrt.kernels._gemm64",
            sources=["kernels/gemm64.c"],
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        )
    ]
)

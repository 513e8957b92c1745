"""Benchmark workloads: each builds its inputs on every party and returns
(the function to time, the float64 reference of its result).

Inputs come from a fixed seed, so every party knows the reference (this is a benchmark,
not a private computation); party 0 shares x and party 1 shares y.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import mpcrt

Setup = Callable[["mpcrt.Runtime", int], tuple[Callable[[], "mpcrt.SharedTensor"], np.ndarray]]


def _pair(rt, shape, lo, hi, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(lo, hi, shape), rng.uniform(lo, hi, shape)
    x = rt.share(a if rt.rank == 0 else None, src=0)
    y = rt.share(b if rt.rank == 1 % rt.world_size else None, src=1 % rt.world_size)
    return x, y, a, b


def _unary(lo, hi, method, ref):
    def setup(rt, n):
        x, _, a, _ = _pair(rt, (n,), lo, hi)
        return (lambda: getattr(x, method)()), ref(a)

    return setup


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


WORKLOADS: dict[str, tuple[Setup, int, str]] = {
    # name: (setup, default size, what)
    "mul": (lambda rt, n: (lambda x, y, a, b: ((lambda: x * y), a * b))(*_pair(rt, (n,), -10, 10)), 1_000_000,
            "elementwise fixed-point multiply with truncation"),
    "trunc": (lambda rt, n: (lambda x, y, a, b: ((lambda: x * 0.5), a * 0.5))(*_pair(rt, (n,), -10, 10)), 1_000_000,
              "multiply by a public real (one truncation)"),
    "matmul": (lambda rt, n: (lambda x, y, a, b: ((lambda: x @ y), a @ b))(*_pair(rt, (n, n), -1, 1)), 1024,
               "n x n by n x n matmul with truncation"),
    "ltz": (_unary(-10, 10, "ltz", lambda a: (a < 0).astype(float)), 1_000_000, "x < 0"),
    "lt": (lambda rt, n: (lambda x, y, a, b: ((lambda: x < y), (a < b).astype(float)))(*_pair(rt, (n,), -10, 10)), 1_000_000,
           "x < y (shared)"),
    "relu": (_unary(-10, 10, "relu", lambda a: np.maximum(a, 0)), 1_000_000, "ReLU"),
    "sigmoid": (_unary(-10, 10, "sigmoid", _sigmoid), 1_000_000, "sigmoid on [-10, 10]"),
    "tanh": (_unary(-10, 10, "tanh", np.tanh), 1_000_000, "tanh on [-10, 10]"),
    "exp": (_unary(-10, 5, "exp", np.exp), 1_000_000, "exp on [-10, 5]"),
    "reciprocal": (_unary(1, 100, "reciprocal", lambda a: 1 / a), 1_000_000, "1/x on [1, 100]"),
    "log": (_unary(0.01, 100, "log", np.log), 1_000_000, "log on [0.01, 100]"),
    "sqrt": (_unary(0.01, 100, "sqrt", np.sqrt), 1_000_000, "sqrt on [0.01, 100]"),
}


def setup(rt, name: str, size: int | None):
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    fn, default, _ = WORKLOADS[name]
    return fn(rt, size or default)

"""Benchmark workloads: each builds its inputs on every party and returns
(the function to time, the float64 reference of its result).

Inputs come from a fixed seed, so every party knows the reference (this is a benchmark,
not a private computation); party 0 shares x and party 1 shares y. Inputs are rounded
to the fixed-point grid (multiples of 2^-f) before sharing, so `max_abs_err` is the
protocol's own error, not the quantisation of the inputs (launch/crypten_side.py
does the same for CrypTen).

Each workload has a size unit: "elements" (a vector of n elements) or "dim" (n x n
matrices). `mpcrt bench --sizes` applies bare sizes to the "elements" workloads only;
matmul takes its own (`--sizes 1e6,matmul=256:1024`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

import mpcrt

SetupFn = Callable[["mpcrt.Runtime", int], tuple[Callable[[], "mpcrt.SharedTensor"], np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Workload:
    setup: SetupFn
    default_size: int
    unit: str  # "elements" or "dim" (n x n)
    what: str
    # the same workload in launch/crypten_side.py: a name, or a function of the size (None: none)
    crypten: Callable[[int], str | None] | None = None

    def crypten_name(self, size: int) -> str | None:
        return self.crypten(size) if self.crypten else None


def _on_grid(rt, a: np.ndarray) -> np.ndarray:
    s = float(2 ** rt.precision)
    return np.round(a * s) / s


def _pair(rt, shape, lo, hi, seed=0):
    rng = np.random.default_rng(seed)
    a, b = _on_grid(rt, rng.uniform(lo, hi, shape)), _on_grid(rt, rng.uniform(lo, hi, shape))
    x = rt.share(a if rt.rank == 0 else None, src=0)
    y = rt.share(b if rt.rank == 1 % rt.world_size else None, src=1 % rt.world_size)
    return x, y, a, b


def _binary(lo, hi, shape, op, ref):
    def setup(rt, n):
        x, y, a, b = _pair(rt, shape(n), lo, hi)
        return (lambda: op(x, y)), ref(a, b)

    return setup


def _unary(lo, hi, method, ref):
    def setup(rt, n):
        x, _, a, _ = _pair(rt, (n,), lo, hi)
        return (lambda: getattr(x, method)()), ref(a)

    return setup


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _same(name):
    return lambda n: name


_vec = lambda n: (n,)  # noqa: E731
_sq = lambda n: (n, n)  # noqa: E731

WORKLOADS: dict[str, Workload] = {
    "mul": Workload(_binary(-10, 10, _vec, lambda x, y: x * y, lambda a, b: a * b), 1_000_000, "elements",
                    "elementwise fixed-point multiply x*y (both shared) with truncation, U[-10,10]", _same("mul")),
    "trunc": Workload(_binary(-10, 10, _vec, lambda x, y: x * 0.5, lambda a, b: a * 0.5), 1_000_000, "elements",
                      "multiply by a public real (one truncation), U[-10,10]"),
    "matmul": Workload(_binary(-1, 1, _sq, lambda x, y: x @ y, lambda a, b: a @ b), 256, "dim",
                       "n x n by n x n matmul (both shared) with truncation, U[-1,1]",
                       lambda n: f"matmul{n}" if n in (256, 1024) else None),
    "ltz": Workload(_unary(-10, 10, "ltz", lambda a: (a < 0).astype(float)), 1_000_000, "elements",
                    "x < 0, U[-10,10]", _same("ltz")),
    "lt": Workload(_binary(-10, 10, _vec, lambda x, y: x < y, lambda a, b: (a < b).astype(float)), 1_000_000,
                   "elements", "x < y (both shared), U[-10,10]"),
    "relu": Workload(_unary(-10, 10, "relu", lambda a: np.maximum(a, 0)), 1_000_000, "elements", "ReLU, U[-10,10]",
                     _same("relu")),
    "sigmoid": Workload(_unary(-10, 10, "sigmoid", _sigmoid), 1_000_000, "elements", "sigmoid, U[-10,10]",
                        _same("sigmoid")),
    "tanh": Workload(_unary(-10, 10, "tanh", np.tanh), 1_000_000, "elements", "tanh, U[-10,10]"),
    "exp": Workload(_unary(-10, 5, "exp", np.exp), 1_000_000, "elements", "exp, U[-10,5]", _same("exp")),
    "reciprocal": Workload(_unary(1, 100, "reciprocal", lambda a: 1 / a), 1_000_000, "elements", "1/x, U[1,100]",
                           _same("reciprocal")),
    "log": Workload(_unary(0.01, 100, "log", np.log), 1_000_000, "elements", "log, U[0.01,100]"),
    "sqrt": Workload(_unary(0.01, 100, "sqrt", np.sqrt), 1_000_000, "elements", "sqrt, U[0.01,100]"),
}


def setup(rt, name: str, size: int | None):
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    w = WORKLOADS[name]
    return w.setup(rt, size or w.default_size)

"""Fixed-point polynomial helpers the approximations share: Chebyshev fits of the
functions they approximate, public constants as ring values, and a cubic evaluated on
the powers a truncation-with-powers step returns (protocols.powers).

Rounds: 0 (local).
Bytes per element per peer: 0.
Dealer words per element: 0.
Error: the fits' own, stated where each fit is made (protocols.exp, protocols.reciprocal,
  protocols.activations).
Reference: docs/design.md, 'Protocols' (polynomial approximations).
"""
from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev as _cheb

F = 16  # internal fractional bits of the pipelines
G = 12  # fractional bits of polynomial coefficients


def fit(f, lo: float, hi: float, deg: int) -> np.ndarray:
    """Power-basis coefficients of a degree-`deg` Chebyshev fit of f on [lo, hi]."""
    t = np.cos(np.linspace(0, np.pi, 2000)) * (hi - lo) / 2 + (hi + lo) / 2
    return _cheb.cheb2poly(_cheb.chebfit(t, f(t), deg))


def fit_rel(f, lo: float, hi: float, deg: int) -> np.ndarray:
    """Chebyshev fit weighted for relative error."""
    t = np.cos(np.linspace(0, np.pi, 2000)) * (hi - lo) / 2 + (hi + lo) / 2
    return _cheb.cheb2poly(_cheb.chebfit(t, f(t), deg, w=1 / np.abs(f(t))))


def fit_through_zero(fn, deg: int) -> np.ndarray:
    """Coefficients (c0 = 0, c1..c_deg) of a least-squares fit of fn on (0, 1] at Chebyshev
    points with no constant term, so that fn(0) = 0 is exact (softplus(-inf) = 0)."""
    z = np.cos(np.linspace(0, np.pi, 4001)) * 0.5 + 0.5
    z = z[z > 0]
    c, *_ = np.linalg.lstsq(np.stack([z**j for j in range(1, deg + 1)], 1), fn(z), rcond=None)
    return np.concatenate([[0.0], c])


def enc(v: float, bits: int) -> int:
    """A public constant v as a ring value with `bits` fractional bits."""
    return int(round(v * 2**bits))


def const(rt, v: float, bits: int, shape) -> np.ndarray:
    """Party 0's share of a public constant v at `bits` fractional bits (others: 0)."""
    return np.full(shape, np.int64(enc(v, bits)) if rt.rank == 0 else 0, np.int64)


def poly3(rt, us: list[np.ndarray], coef: np.ndarray, g: int = G) -> np.ndarray:
    """sum c_j u^j from [u] (F bits), [u^2] (2F), [u^3] (3F): result at 3F + g bits.
    Needs |value| < 2^(14 - g) (g = 12: |value| < 4); intermediate terms may wrap."""
    out = const(rt, coef[0], 3 * F + g, us[0].shape)
    for j in (1, 2, 3):
        out += np.int64(round(coef[j] * 2 ** (g + (3 - j) * F))) * us[j - 1]  # coefficient at full precision
    return out

"""Optimisers on shared parameters: SGD (momentum, weight decay, nesterov) and Adam.

    opt = mpcrt.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); loss.backward(); opt.step()

Hyper-parameters are public. Each step works on all parameters at once (their shares
concatenated into one flat tensor), so a step's rounds do not grow with the number of
parameter tensors. Parameters, gradients and optimiser state stay shared.

Overflow: fixed point holds |x| < 2^(62 - 2f) in a product, and a learning rate that is
too large either wraps a product or sends the weights far outside any sane range. After
each step (check_range=True) one comparison run counts the parameters with |p| >= max_abs
(default 64); the count is revealed (it is the only thing revealed) and a non-zero count
raises RangeOverflowError naming the step and the learning rate. A wrapped product
lands uniformly in the ring, so it is caught with probability 1 - (2 max_abs 2^f / 2^64)
per wrapped element.

SGD (torch's update): g = grad + wd p; b = momentum b + (1 - dampening) g (b = g at the
first step); g = g + momentum b (nesterov) or b; p = p - lr g.

Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, p = p - lr m^ / (sqrt(v^) + eps)
with m^ = m / (1 - b1^t), v^ = v / (1 - b2^t). Under MPC: g is scaled by 2^k before
squaring (k = grad_scale_bits, exact: an integer product) so that v holds g^2 2^(2k):
at f = 16 a gradient of 1e-3 squares to 0.07 ulp, which would vanish. The denominator is
rsqrt(v^ 2^(2k) + (eps 2^k)^2) 2^k (protocols.reciprocal.rsqrt_scaled over [2^-f, 2^14):
relative error < 1e-3 there, so |g| in about [2^-(f/2 + k), 2^(7 - k)]: with the default
k = 4, [2^-14, 8] at f = 20; outside it a weight steps less than torch's lr); 1 / sqrt(v^ + eps^2)
differs from torch's 1 / (sqrt(v^) + eps) by a factor in [1, sqrt(2)], equal once
sqrt(v^) >> eps.

Rounds per step: SGD 1-3 public-product truncations (+7 for the range check), Adam
  about 25 (rsqrt's 16 with f/2 + 7 comparison rows, three products).
Bytes per element per peer: 8 per truncation, 16 + 8 per shared product, 23.4 for the
  range check's comparison.
Dealer words per element: those of the truncations, products and the comparison.
Error: each public product truncates (+-1 ulp of 2^-f per step per weight); Adam also
  rsqrt's 1e-3 relative.
Reference: docs/design.md, 'Training'.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from mpcrt.autograd import no_grad
from mpcrt.errors import EncodingError
from mpcrt.protocols import compare, fixedpoint, reciprocal
from mpcrt.tensor import SharedTensor

__all__ = ["Optimizer", "SGD", "Adam", "RangeOverflowError"]


class RangeOverflowError(EncodingError):
    """Parameters left the fixed-point range during training (the learning rate is too large)."""


class Optimizer:
    """Base class: holds the parameters (Variables), zero_grad(), and the flat-vector step."""

    def __init__(self, params: Iterable, lr: float, check_range: bool = True, max_abs: float = 64.0):
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimiser got no parameters")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        self.rt = self.params[0].rt
        f = self.rt.precision
        if lr >= fixedpoint.max_value(2 * f):
            raise RangeOverflowError(f"lr={lr} cannot be applied at {f} fractional bits: lr * grad overflows the "
                                     f"product range 2^{62 - 2 * f}; lower the learning rate")
        self.lr = float(lr)
        self.check_range = check_range
        self.max_abs = float(max_abs)
        self.steps = 0
        self._sizes = [p.numel() for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _flat(self, tensors) -> SharedTensor:
        f = self.rt.precision
        return SharedTensor(self.rt, np.concatenate([t.to_precision().share.ravel() for t in tensors]), f)

    def _grads(self) -> SharedTensor:
        f = self.rt.precision
        shares = [p.grad.to_precision().share.ravel() if p.grad is not None else np.zeros(p.numel(), np.int64)
                  for p in self.params]
        return SharedTensor(self.rt, np.concatenate(shares), f)

    def _write(self, flat: SharedTensor) -> None:
        off = 0
        for p, k in zip(self.params, self._sizes):
            p.share = np.ascontiguousarray(flat.share[off:off + k]).reshape(p.shape)
            p.fbits = flat.fbits
            off += k

    def step(self) -> None:
        with no_grad(), self.rt.scope("optim"):
            self.steps += 1
            new = self._update(self._flat(self.params), self._grads()).to_precision()
            if self.check_range:
                self._check(new)
            self._write(new)

    def _update(self, p: SharedTensor, g: SharedTensor) -> SharedTensor:
        raise NotImplementedError

    def _check(self, p: SharedTensor) -> None:
        """Reveal how many parameters have |p| >= max_abs (one comparison run); raise if any."""
        t = int(fixedpoint.encode(self.max_abs, p.fbits))
        (below, within), _ = compare.ltz_at(p, [-t, t])
        bad = int(round(float((below + 1 - within).sum().reveal())))
        if bad:
            raise RangeOverflowError(
                f"step {self.steps}: {bad} parameter(s) left the range |p| < {self.max_abs:g} (lr={self.lr:g}): the "
                "update overflowed or training diverged; lower the learning rate (or raise max_abs if the weights "
                "are meant to be that large)")


class SGD(Optimizer):
    """torch.optim.SGD on shared parameters."""

    def __init__(self, params: Iterable, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, **kw):
        super().__init__(params, lr, **kw)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening 0 (as torch)")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)
        self.buf: SharedTensor | None = None

    def _update(self, p: SharedTensor, g: SharedTensor) -> SharedTensor:
        if self.weight_decay:
            g = g + p * self.weight_decay
        if self.momentum:
            if self.buf is None:
                self.buf = g
            else:
                d = 1.0 - self.dampening
                self.buf = self.buf * self.momentum + (g * d if d != 1.0 else g)
            g = g + self.buf * self.momentum if self.nesterov else self.buf
        return p - g * self.lr


class Adam(Optimizer):
    """torch.optim.Adam on shared parameters (see the module docstring for its MPC form)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, grad_scale_bits: int = 4, **kw):
        super().__init__(params, lr, **kw)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay, self.k = float(eps), float(weight_decay), int(grad_scale_bits)
        self.m: SharedTensor | None = None
        self.v: SharedTensor | None = None

    def _update(self, p: SharedTensor, g: SharedTensor) -> SharedTensor:
        if self.weight_decay:
            g = g + p * self.weight_decay
        gs = g * (1 << self.k)  # exact: an integer product
        sq = gs * gs
        self.m = g * (1 - self.b1) if self.m is None else self.m * self.b1 + g * (1 - self.b1)
        self.v = sq * (1 - self.b2) if self.v is None else self.v * self.b2 + sq * (1 - self.b2)
        t = self.steps
        vhat = self.v * (1.0 / (1 - self.b2 ** t))
        scale = 2.0 ** self.k
        lo = -(self.rt.precision // 2 * 2)  # down to one ulp: tiny gradients still take steps of ~lr, as torch's
        denom = reciprocal.rsqrt_scaled(vhat + (self.eps * scale) ** 2, lo=lo)[0]  # 1 / (2^k sqrt(v^ + eps^2))
        step = self.m * (self.lr * scale / (1 - self.b1 ** t))
        return p - step * denom

"""DP-SGD under MPC: per-example clipping of shared gradients and jointly generated Gaussian noise.

    dp = mpcrt.dp.DPSGD(model, opt, max_grad_norm=1.0, noise_multiplier=1.1, n_rows=X.shape[0],
                        batch_size=64)
    for idx in schedule: dp.step(F.cross_entropy, X[idx], Y[idx])
    eps = dp.epsilon(delta=1e-5)          # from Google's dp-accounting (RDP accountant)

One step over a batch of B rows:

1. per-example gradients g_i: one forward/backward pass per row (batch 1; B passes, so a
   step costs about B times a plain one), each flattened over all parameters;
2. clipping, batched over the B rows: s_i = |g_i|^2 (one Beaver product), factor_i =
   min(1, C rsqrt(s_i)) = 1 - relu(1 - C rsqrt(s_i)) (rsqrt over [2^-f, 2^14): relative
   error < 1e-3; one comparison), g_i factor_i (one product). Nothing is revealed;
3. noise: every party adds its own sample of N(0, sigma^2 C^2 / h) to its share of
   sum_i g_i (Box-Muller on AES-CTR words from a fresh seed; no communication), so the
   total noise is N(0, N sigma^2 C^2 / h) and the noise of any h honest parties alone has
   variance sigma^2 C^2: the guarantee holds against a coalition of up to N - h parties
   (h = `honest`, default 1: every party adds the full sigma, the noise grows with N).
   The dealer never sees the noise;
4. p.grad = (sum + noise) / B, then the wrapped optimiser's step().

Accounting: dp_accounting.rdp.RdpAccountant over the steps taken, each a
PoissonSampledDpEvent(q = B / n, GaussianDpEvent(sigma)). The public shuffled schedule
draws fixed-size batches, which the Poisson model only approximates (the usual practice
of Opacus and TF Privacy); the epsilon is for add/remove-one neighbouring data sets.
BatchNorm is refused (batch statistics mix examples, as in Opacus).

Rounds per step: B times a batch-1 training pass + about 30 (rsqrt's, a comparison, 3
  products) + the optimiser's.
Bytes per element per peer: a Beaver product per gradient element twice (|g|^2 and the
  scaling: 2 x 24) + the per-example passes.
Dealer words per element: those of the products; the noise costs none.
Error: the clip norm is applied within rsqrt's relative 1e-3; noise is exact Gaussian
  up to 2^-f rounding of each party's sample.
Reference: docs/design.md, 'Training' (DP-SGD); Abadi et al., CCS 2016.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from mpcrt.autograd import no_grad
from mpcrt.errors import ConfigError
from mpcrt.kernels.prg import PRG, new_seed
from mpcrt.protocols import compare, fixedpoint, reciprocal
from mpcrt.tensor import SharedTensor

__all__ = ["DPSGD", "gaussian_noise", "epsilon"]


def gaussian_noise(n: int, std: float) -> np.ndarray:
    """n samples of N(0, std^2) from a fresh AES-CTR stream (Box-Muller on 53-bit uniforms)."""
    w = PRG(new_seed()).words(0, 2 * n).copy().view(np.uint64)
    u = ((w >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1)
    u1, u2 = u[:n], u[n:]
    return std * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def epsilon(steps: int, sample_rate: float, noise_multiplier: float, delta: float) -> float:
    """(epsilon for delta) of `steps` Poisson-subsampled Gaussian steps, from dp-accounting's RDP accountant."""
    try:
        from dp_accounting import dp_event, rdp
    except ImportError:
        raise ConfigError("epsilon accounting needs Google's dp-accounting: pip install 'mpcrt[dp]' "
                          "(or pip install dp-accounting)") from None
    acc = rdp.RdpAccountant()
    acc.compose(dp_event.PoissonSampledDpEvent(sample_rate, dp_event.GaussianDpEvent(noise_multiplier)), steps)
    return float(acc.get_epsilon(delta))


class DPSGD:
    """Wraps a model and an optimiser (mpcrt.optim) to take differentially private steps."""

    def __init__(self, model, optimizer, max_grad_norm: float, noise_multiplier: float, n_rows: int,
                 batch_size: int, honest: int = 1):
        if getattr(model, "_bn", None):
            raise ConfigError("DP-SGD needs per-example gradients: replace BatchNorm (batch statistics) by GroupNorm "
                              "or none")
        if max_grad_norm <= 0 or noise_multiplier < 0:
            raise ValueError("max_grad_norm must be > 0 and noise_multiplier >= 0")
        rt = optimizer.rt
        if not 1 <= honest <= rt.world_size:
            raise ValueError(f"honest must be in 1..{rt.world_size}")
        self.model, self.opt, self.rt = model, optimizer, rt
        self.C, self.sigma, self.honest = float(max_grad_norm), float(noise_multiplier), int(honest)
        self.n_rows, self.batch_size = int(n_rows), int(batch_size)
        self.steps = 0

    def _per_example(self, loss_fn: Callable, x: SharedTensor, y) -> tuple[SharedTensor, SharedTensor]:
        """(B, P) shared per-example gradients (P = all parameters flattened) and the summed loss."""
        rows, total = [], None
        params = self.opt.params
        for i in range(x.shape[0]):
            for p in params:
                p.grad = None
            loss = loss_fn(self.model(x[i:i + 1]), y[i:i + 1])
            loss.backward()
            value = SharedTensor(self.rt, loss.share, loss.fbits)
            total = value if total is None else total + value
            rows.append(self.opt._grads().share)
        return SharedTensor(self.rt, np.stack(rows), self.rt.precision), total

    def clip(self, g: SharedTensor) -> SharedTensor:
        """Each row scaled by min(1, C / |row|), batched."""
        f = self.rt.precision
        s = (g * g).sum(dim=1)
        r = reciprocal.rsqrt_scaled(s, lo=-(f // 2 * 2))[0]  # 1 / |g_i|
        factor = 1 - compare.relu(1 - r * self.C)  # min(1, C / |g_i|)
        return g * factor.unsqueeze(1)

    def step(self, loss_fn: Callable, x: SharedTensor, y) -> SharedTensor:
        """One DP-SGD step on the batch (x, y): per-example loss_fn(model(x_i), y_i). Returns
        the batch's mean loss (shared, as computed before the step)."""
        with self.rt.scope("dp"):
            g, loss = self._per_example(loss_fn, x, y)
            with no_grad():
                total = self.clip(g).sum(dim=0)
                std = self.sigma * self.C / math.sqrt(self.honest)
                noise = fixedpoint.encode(gaussian_noise(total.numel(), std), total.fbits)
                noisy = SharedTensor(self.rt, total.share + noise, total.fbits) * (1.0 / x.shape[0])
                off = 0
                for p in self.opt.params:
                    k = p.numel()
                    p.grad = noisy[off:off + k].reshape(p.shape)
                    off += k
            self.opt.step()
        self.steps += 1
        return loss * (1.0 / x.shape[0])

    def epsilon(self, delta: float = 1e-5) -> float:
        """The (epsilon, delta) guarantee of the steps taken so far (dp-accounting)."""
        return epsilon(self.steps, self.batch_size / self.n_rows, self.sigma, delta)

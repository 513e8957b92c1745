"""mpcrt.nn.functional: losses and layers with a backward pass, as torch.nn.functional.

    loss = mpcrt.nn.functional.cross_entropy(model(x), y)   # y: shared one-hot, shared or public indices
    loss.backward()

Losses (each returns a one-element Variable; `reduction` "mean" or "sum"):

* cross_entropy(logits, target): the gradient is (softmax(x) - y) / N, with softmax
  computed as exp(x - max) / sum: safe for large logits (the max is subtracted under
  MPC, exactly, by the comparison tree). The loss value log(sum exp(x - max)) - y.(x - max)
  costs one log per row (abs err < 3.5e-4 + 2 ulp) and one product. Shared class indices become
  one-hot by one batched equality comparison against 0..C-1.
* mse_loss(x, y): mean (x - y)^2, gradient 2 (x - y) / n.
* binary_cross_entropy(p, y) for probabilities (gradient (p - y) / (p (1 - p) n), a
  reciprocal under MPC; p is clamped to [2^-7, 1 - 2^-7] for the logs) and
  binary_cross_entropy_with_logits(z, y) (gradient (sigmoid(z) - y) / n: prefer it).

Rounds: cross_entropy over C classes: softmax's (7 ceil(log2 C) + 7 + 25 + 1) + log's 10
  + 2; backward 0 (the gradient is kept from the forward pass). mse 2 + backward 2.
Bytes per element per peer: softmax's (104 over 64 classes) + 24 for y.(x - max).
Dealer words per element: softmax's and one Beaver product's.
Error: cross_entropy's gradient: softmax's, abs ~1e-3 per element before the 1/N; the
  value: log's 3.5e-4 + 2 ulp per row.
Reference: docs/design.md, 'Training'.
"""
from __future__ import annotations

import numpy as np

from mpcrt.autograd import record, relu, sigmoid, tanh
from mpcrt.errors import ShapeError
from mpcrt.nn.train_layers import (  # noqa: F401  (the layers, as torch.nn.functional names them)
    adaptive_avg_pool2d,
    avg_pool2d,
    batch_norm,
    conv2d,
    dropout,
    linear,
    max_pool2d,
)
from mpcrt.protocols import activations, compare, exp, ordering, reciprocal
from mpcrt.tensor import SharedTensor, stack

__all__ = ["cross_entropy", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "one_hot",
           "relu", "sigmoid", "tanh", "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "batch_norm", "dropout", "softmax", "flatten"]


def _plain(t):
    return SharedTensor(t.rt, t.share, t.fbits) if isinstance(t, SharedTensor) else t


def _reduce(total: SharedTensor, n: int, reduction: str) -> SharedTensor:
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total * (1.0 / n) if n > 1 else total
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def one_hot(target, num_classes: int, rt=None):
    """Class indices as a one-hot tensor: a public (numpy) array stays public; a shared
    (N,) index tensor becomes a shared (N, C) 0/1 tensor by one equality comparison run."""
    if isinstance(target, SharedTensor):
        if target.ndim != 1:
            raise ShapeError(f"shared class indices must be 1-d, got shape {target.shape}")
        rows = target.to_precision().unsqueeze(1).expand(target.shape[0], num_classes)
        return compare.eq(rows, np.arange(num_classes, dtype=np.int64)[None, :])
    t = np.asarray(target)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise ShapeError(f"public class indices must be a 1-d integer array, got {t.dtype} {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ShapeError(f"class indices must lie in 0..{num_classes - 1}")
    return np.eye(num_classes, dtype=np.int64)[t]


def _target(logits: SharedTensor, target) -> object:
    c = logits.shape[1]
    if isinstance(target, SharedTensor) and target.ndim == logits.ndim:
        if target.shape != logits.shape:
            raise ShapeError(f"one-hot target {target.shape} does not match logits {logits.shape}")
        return _plain(target)
    t = np.asarray(target) if not isinstance(target, SharedTensor) else None
    if t is not None and t.ndim == logits.ndim:
        if t.shape != logits.shape:
            raise ShapeError(f"one-hot target {t.shape} does not match logits {logits.shape}")
        return t.astype(np.float64)
    return one_hot(_plain(target) if isinstance(target, SharedTensor) else target, c)


def softmax(x: SharedTensor, dim: int = -1) -> SharedTensor:
    """exp(x - max) / sum(exp(x - max)) without a backward (use cross_entropy to train)."""
    return exp.softmax(_plain(x), dim)


def flatten(x: SharedTensor, start_dim: int = 1, end_dim: int = -1) -> SharedTensor:
    return x.flatten(start_dim, end_dim)


def cross_entropy(logits: SharedTensor, target, reduction: str = "mean") -> SharedTensor:
    """torch.nn.functional.cross_entropy over (N, C) logits. target: a shared or public
    one-hot (or probability) tensor of the logits' shape, or class indices (shared or public)."""
    if logits.ndim != 2:
        raise ShapeError(f"cross_entropy takes (N, C) logits, got shape {logits.shape}")
    y = _target(logits, target)
    x = _plain(logits).to_precision()
    n = x.shape[0]
    m = ordering.max_(x, 1, keepdim=True)
    d = x - m
    e = exp.exp_precise(d)
    s = e.sum(dim=1, keepdim=True)
    p = e * reciprocal.reciprocal(s)
    picked = (d * y).sum()  # sum over rows of y . (x - max)
    total = reciprocal.log(s).sum() - picked
    scale = 1.0 if reduction == "sum" else 1.0 / n
    diff = (p - y) * scale if scale != 1.0 else p - y

    def back(g):
        return (diff * _plain(g).to_precision(),)

    return record(_reduce(total, n, reduction), (logits,), back, "cross_entropy")


def mse_loss(input: SharedTensor, target, reduction: str = "mean") -> SharedTensor:
    """torch.nn.functional.mse_loss."""
    d = input - target
    return _reduce((d * d).sum(), d.numel(), reduction)


BCE_CLAMP = 2.0 ** -7  # probabilities clamped to [BCE_CLAMP, 1 - BCE_CLAMP] (the gradient's reciprocal starts at 2^-7)


def binary_cross_entropy(input: SharedTensor, target, reduction: str = "mean") -> SharedTensor:
    """torch.nn.functional.binary_cross_entropy on probabilities."""
    p = compare.clamp(_plain(input).to_precision(), BCE_CLAMP, 1 - BCE_CLAMP)
    y = _plain(target)
    n = p.numel()
    logs = reciprocal.log(stack([p, 1 - p]))  # log p, log(1 - p): one run
    total = -((y * logs[0]).sum() + ((1 - y) * logs[1]).sum())
    scale = 1.0 if reduction == "sum" else 1.0 / n
    diff = (p - y) * reciprocal.reciprocal(p * (1 - p)) * scale

    def back(g):
        return (diff * _plain(g).to_precision(),)

    return record(_reduce(total, n, reduction), (input,), back, "binary_cross_entropy")


def binary_cross_entropy_with_logits(input: SharedTensor, target, reduction: str = "mean") -> SharedTensor:
    """torch.nn.functional.binary_cross_entropy_with_logits: log sigmoid by softplus, gradient sigmoid(z) - y."""
    z = _plain(input).to_precision()
    y = _plain(target)
    n = z.numel()
    ls = activations.logsigmoid(stack([z, -z]))  # log sigmoid(z), log(1 - sigmoid(z))
    total = -((y * ls[0]).sum() + ((1 - y) * ls[1]).sum())
    scale = 1.0 if reduction == "sum" else 1.0 / n
    diff = (exp.sigmoid(z) - y) * scale

    def back(g):
        return (diff * _plain(g).to_precision(),)

    return record(_reduce(total, n, reduction), (input,), back, "binary_cross_entropy_with_logits")

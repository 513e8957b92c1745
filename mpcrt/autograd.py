"""Reverse-mode autograd on SharedTensors: a tape of forward ops, a backward pass under MPC.

A `Variable` is a SharedTensor that remembers how it was computed. Every op on a
Variable that requires a gradient records one tape entry (its parents and a backward
function); `loss.backward()` walks the tape in reverse topological order and leaves the
gradient, a SharedTensor at the runtime precision, in `.grad` of every leaf that
requires one (the model's parameters), as torch does. Nothing is revealed: gradients are
shares, computed with the same protocols as the forward pass.

    w = Variable(rt.share(w0, src=0), requires_grad=True)
    loss = ((x @ w).sigmoid() - y).square().mean()
    loss.backward()          # w.grad: a SharedTensor

Rules (their cost, with g the incoming gradient):

* add, sub, neg, sum, mean, reshape, indexing, transpose, cat, stack: linear, local.
  Broadcasting is undone by summing g over the broadcast dims (local).
* x * y, x @ y (both shared): dx = g y, dy = x g (one Beaver product each, 2 rounds
  with its truncation); products by public values are public products (1 round).
* relu: forward one comparison giving the bit b = [x < 0] and the product b x fused;
  backward g - b g: one Beaver product by the 0-bit tensor b (1 round, no truncation).
  No second comparison.
* sigmoid: dx = g s (1 - s); tanh: dx = g (1 - t^2); exp: dx = g e (one or two products).

Rounds: forward as the op; backward of a product 2 (one fused Beaver round and its
  truncation), of relu 1, of sigmoid/tanh 4 (two products), linear ops 0.
Bytes per element per peer: backward of relu 16 (a Beaver product, |g| + |b|); of a
  shared product 2 x (16 + 8) (two products, each truncated).
Dealer words per element: those of the Beaver products and truncations it runs.
Error: every backward product truncates once (+-1 ulp, 2^-f); the forward ops' errors
  are the protocols' (see mpcrt.tensor).
Reference: docs/design.md, 'Training'.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterable, Sequence

import numpy as np

from mpcrt.errors import MpcError, ShapeError
from mpcrt.protocols import compare, exp, fixedpoint
from mpcrt.tensor import SharedTensor
from mpcrt.tensor import cat as _cat

__all__ = ["Variable", "record", "backward", "no_grad", "is_grad_enabled", "NoBackwardError", "ones_like",
           "relu", "sigmoid", "tanh", "unbroadcast", "as_variable", "cat"]


class NoBackwardError(MpcError, TypeError):
    """An operation on a tensor that requires a gradient has no backward rule here."""


_STATE = threading.local()  # in-process parties are threads: grad mode is per thread


def is_grad_enabled() -> bool:
    return getattr(_STATE, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Ops inside record nothing (evaluation, optimiser updates), as torch.no_grad()."""
    old = is_grad_enabled()
    _STATE.enabled = False
    try:
        yield
    finally:
        _STATE.enabled = old


class Node:
    """One tape entry: the parents an output was computed from and its backward function
    (g -> one gradient, or None, per parent)."""

    __slots__ = ("parents", "fn", "name")

    def __init__(self, parents: tuple, fn: Callable, name: str):
        self.parents, self.fn, self.name = parents, fn, name


def _needs(v) -> bool:
    return isinstance(v, Variable) and v.requires_grad


def record(value: SharedTensor, parents: Sequence, fn: Callable, name: str) -> SharedTensor:
    """value as a Variable whose backward is fn(g) -> gradients of `parents` (None for a
    parent that needs none); plain value if no parent needs a gradient or grad is off."""
    if not is_grad_enabled() or not any(_needs(p) for p in parents):
        return value
    return Variable(value, node=Node(tuple(parents), fn, name))


def as_variable(t: SharedTensor, requires_grad: bool = False) -> "Variable":
    return t if isinstance(t, Variable) else Variable(t, requires_grad=requires_grad)


def ones_like(t: SharedTensor) -> SharedTensor:
    f = t.rt.precision
    share = np.full(t.shape, 1 << f, np.int64) if t.rt.rank == 0 else np.zeros(t.shape, np.int64)
    return SharedTensor(t.rt, share, f)


def unbroadcast(g, shape: tuple):
    """g summed back to `shape` over the dims broadcasting added or stretched (local)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


def _public(v) -> np.ndarray:
    return np.asarray(fixedpoint.to_numpy(v), np.float64)


def _shape_of(v) -> tuple:
    return tuple(v.shape) if isinstance(v, SharedTensor) else np.shape(_public(v))


def _prec(t: SharedTensor) -> SharedTensor:
    return t.to_precision()


# ------------------------------------------------------------------ the engine
def _order(root: "Variable") -> list:
    """Variables reachable from root, each after every Variable computed from it (reverse topological)."""
    seen, order, stack = set(), [], [(root, False)]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        if v._node is not None:
            for p in v._node.parents:
                if _needs(p) and id(p) not in seen:
                    stack.append((p, False))
    return order[::-1]


def backward(root: "Variable", grad: SharedTensor | None = None, retain_graph: bool = False) -> None:
    """Accumulate d root / d leaf into `.grad` of every leaf requiring a gradient."""
    if not _needs(root):
        raise NoBackwardError("backward() on a tensor that does not require a gradient (no parameter or "
                              "requires_grad input went into it)")
    if grad is None:
        if root.numel() != 1:
            raise ShapeError(f"backward() without a gradient needs a one-element loss, got shape {root.shape}; "
                             "reduce it (sum/mean) or pass grad=")
        grad = ones_like(root)
    grads: dict[int, SharedTensor] = {id(root): grad}
    with no_grad():
        for v in _order(root):
            g = grads.pop(id(v), None)
            if g is None:
                continue
            if v._node is None:
                g = _prec(g)
                v.grad = g if v.grad is None else v.grad + g
                continue
            outs = v._node.fn(g)
            for p, gp in zip(v._node.parents, outs):
                if gp is None or not _needs(p):
                    continue
                if tuple(gp.shape) != tuple(p.shape):
                    raise ShapeError(f"backward of {v._node.name}: gradient {gp.shape} for an input of shape {p.shape}")
                k = id(p)
                grads[k] = gp if k not in grads else grads[k] + gp
            if not retain_graph:
                v._node = None  # frees the saved tensors, as torch does


# ------------------------------------------------------------------ Variable
class Variable(SharedTensor):
    """A SharedTensor on the tape. `requires_grad` leaves (parameters) collect `.grad`."""

    def __init__(self, t: SharedTensor, requires_grad: bool = False, node: Node | None = None):
        super().__init__(t.rt, t.share, t.fbits)
        self._node = node
        self.requires_grad = bool(requires_grad) or node is not None
        self.grad: SharedTensor | None = None

    def __repr__(self) -> str:
        kind = f"grad_fn={self._node.name}" if self._node is not None else f"requires_grad={self.requires_grad}"
        return f"Variable(shape={self.shape}, fbits={self.fbits}, {kind}, party {self.rt.rank})"

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def backward(self, grad: SharedTensor | None = None, retain_graph: bool = False) -> None:
        backward(self, grad, retain_graph)

    def detach(self) -> SharedTensor:
        return SharedTensor(self.rt, self.share, self.fbits)

    def requires_grad_(self, flag: bool = True) -> "Variable":
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # -------------------------------------------------------------- linear
    def __add__(self, other):
        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        return add(self, other, -1)

    def __rsub__(self, other):
        return add(-self, other)

    def __neg__(self):
        return record(SharedTensor.__neg__(self), (self,), lambda g: (-g,), "neg")

    def sum(self, dim=None, keepdim: bool = False):
        y = SharedTensor.sum(self, dim, keepdim)
        return record(y, (self,), lambda g: (_expand_back(g, self.shape, dim, keepdim),), "sum")

    def mean(self, dim=None, keepdim: bool = False):
        s = self.sum(dim, keepdim)
        n = self.numel() // max(1, s.numel())
        return s * (1.0 / n) if n > 1 else s

    def reshape(self, *shape):
        y = SharedTensor.reshape(self, *shape)
        return record(y, (self,), lambda g: (g.reshape(self.shape),), "reshape")

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        y = SharedTensor.flatten(self, start_dim, end_dim)
        return record(y, (self,), lambda g: (g.reshape(self.shape),), "flatten")

    def transpose(self, d0: int, d1: int):
        y = SharedTensor.transpose(self, d0, d1)
        return record(y, (self,), lambda g: (g.transpose(d0, d1),), "transpose")

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        inv = tuple(np.argsort(dims))
        y = SharedTensor.permute(self, dims)
        return record(y, (self,), lambda g: (g.permute(inv),), "permute")

    @property
    def T(self):
        return self.permute(tuple(range(self.ndim))[::-1])

    def t(self):
        if self.ndim > 2:
            raise ShapeError("t() expects a tensor with <= 2 dimensions; use transpose()")
        return self.T

    def unsqueeze(self, dim: int):
        y = SharedTensor.unsqueeze(self, dim)
        return record(y, (self,), lambda g: (g.reshape(self.shape),), "unsqueeze")

    def squeeze(self, dim=None):
        y = SharedTensor.squeeze(self, dim)
        return record(y, (self,), lambda g: (g.reshape(self.shape),), "squeeze")

    def __getitem__(self, idx):
        y = SharedTensor.__getitem__(self, idx)

        def back(g):
            z = np.zeros(self.shape, np.int64)
            np.add.at(z, idx, np.broadcast_to(g.share, y.shape))  # exact ring adds (repeated indices too)
            return (SharedTensor(self.rt, z, g.fbits),)

        return record(y, (self,), back, "getitem")

    def pad(self, pad, value: float = 0.0):
        y = SharedTensor.pad(self, pad, value)
        crop = tuple(slice(a, s - b) for (a, b), s in zip(_pad_widths(pad, self.ndim), y.shape))
        return record(y, (self,), lambda g: (g[crop],), "pad")

    # ------------------------------------------------------------ products
    def __mul__(self, other):
        return mul(self, other)

    __rmul__ = __mul__

    def square(self):
        return mul(self, self)

    def __truediv__(self, other):
        if isinstance(other, SharedTensor):
            raise NoBackwardError("division by a shared tensor has no backward here; multiply by .reciprocal() of a "
                                  "detached divisor, or divide by a public value")
        return mul(self, 1.0 / _public(other))

    def __matmul__(self, other):
        return matmul(self, other)

    def matmul(self, other, truncate: bool = True):
        return matmul(self, other)

    def __rmatmul__(self, other):
        # a SharedTensor on the left lands here too (Python asks the subclass first)
        return matmul(other, self) if isinstance(other, SharedTensor) else rmatmul(other, self)

    # ---------------------------------------------------------- nonlinear
    def relu(self):
        return relu(self)

    def sigmoid(self):
        return sigmoid(self)

    def tanh(self):
        return tanh(self)

    def exp(self):
        y = exp.exp(self)
        return record(y, (self,), lambda g: (_prec(g) * y,), "exp")

    def __pow__(self, k: int):
        if k == 2:
            return mul(self, self)
        if k == 1:
            return self
        raise NoBackwardError(f"x ** {k} has no backward here (only x ** 2; write products)")


def _no_backward(name: str):
    def method(self, *args, **kwargs):
        if self.requires_grad and is_grad_enabled():
            raise NoBackwardError(f"SharedTensor.{name}() has no backward: it cannot be used on a tensor that "
                                  "requires a gradient (use mpcrt.nn.functional's layers and losses, detach() it, or "
                                  "call it under mpcrt.autograd.no_grad())")
        return getattr(SharedTensor, name)(self.detach(), *args, **kwargs)

    method.__name__ = name
    return method


# every other protocol method (comparisons, softmax, norms, ...): refused while on the tape
for _name in ("softmax", "log_softmax", "log", "sqrt", "rsqrt", "reciprocal", "gelu", "silu", "layer_norm",
              "group_norm", "max", "min", "maxpool2d", "max_pool2d", "abs", "clamp", "elu", "softplus", "expand",
              "repeat", "conv2d"):
    setattr(Variable, _name, _no_backward(_name))


def _pad_widths(pad, ndim: int) -> list:
    widths = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        widths[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return widths


def _expand_back(g: SharedTensor, shape: tuple, dim, keepdim: bool) -> SharedTensor:
    """The gradient of sum(dim): g broadcast back over the summed dims."""
    if dim is None:
        return SharedTensor(g.rt, np.broadcast_to(g.share.reshape((1,) * len(shape)), shape).copy(), g.fbits)
    dims = tuple(d % len(shape) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
    s = g.share
    if not keepdim:
        for d in sorted(dims):
            s = np.expand_dims(s, d)
    return SharedTensor(g.rt, np.broadcast_to(s, shape).copy(), g.fbits)


# ------------------------------------------------------------------ rules
def add(a: SharedTensor, b, sign: int = 1) -> SharedTensor:
    """a + sign * b, either side shared or public, broadcasting."""
    y = SharedTensor.__add__(a, b) if sign > 0 else SharedTensor.__sub__(a, b)
    sa, sb = a.shape, _shape_of(b)

    def back(g):
        gb = unbroadcast(g, sb) if _needs(b) else None
        return unbroadcast(g, sa), (gb if sign > 0 or gb is None else -gb)

    return record(y, (a, b), back, "add" if sign > 0 else "sub")


def mul(a: SharedTensor, b) -> SharedTensor:
    """a * b (b shared or public), broadcasting: dx = g b, db = g a."""
    y = SharedTensor.__mul__(a, b)
    sa, sb = a.shape, _shape_of(b)

    def back(g):
        g = _prec(g)
        ga = unbroadcast(g * _detached(b), sa) if _needs(a) else None
        gb = unbroadcast(g * _detached(a), sb) if _needs(b) else None
        return ga, gb

    return record(y, (a, b), back, "mul")


def _detached(v):
    return v.detach() if isinstance(v, Variable) else v


def matmul(a: SharedTensor, b) -> SharedTensor:
    """a @ b for 2-d (or batched) a and a shared or public b: da = g b^T, db = a^T g."""
    y = SharedTensor.matmul(a, _detached(b))
    bd = _detached(b)

    def back(g):
        g = _prec(g)
        ga = gb = None
        if _needs(a):
            bt = bd.transpose(-1, -2) if isinstance(bd, SharedTensor) else np.swapaxes(_public(bd), -1, -2)
            ga = unbroadcast(g.matmul(bt), a.shape)
        if _needs(b):
            at = SharedTensor.transpose(a, -1, -2) if a.ndim > 1 else a.reshape(-1, 1)
            gb = unbroadcast(_as_shared(at).matmul(g), b.shape)
        return ga, gb

    return record(y, (a, b), back, "matmul")


def rmatmul(p, b: SharedTensor) -> SharedTensor:
    """public p @ shared b: db = p^T g."""
    y = SharedTensor.__rmatmul__(b, p)
    pt = np.swapaxes(_public(p), -1, -2)
    return record(y, (b,), lambda g: (unbroadcast(pt @ _prec(g), b.shape),), "rmatmul")


def _as_shared(t: SharedTensor) -> SharedTensor:
    return SharedTensor(t.rt, t.share, t.fbits)


def relu_with_bit(x: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
    """(relu(x), [x < 0]) from one comparison with the product fused (7 rounds; +1
    truncation round first if x carries 2f fractional bits)."""
    x = _prec(_as_shared(x))
    (b,), (bx,) = compare.ltz_many([x], [x])
    return x - bx, b


def relu(x: SharedTensor) -> SharedTensor:
    """max(x, 0); backward g - [x < 0] g with the forward's bit (1 round, no comparison)."""
    if not _needs(x) or not is_grad_enabled():
        return compare.relu(_as_shared(x))
    y, b = relu_with_bit(x)
    return record(y, (x,), lambda g: (g - b * g,), "relu")


def sigmoid(x: SharedTensor) -> SharedTensor:
    """sigmoid(x); backward g s (1 - s) (two products)."""
    s = exp.sigmoid(_as_shared(x))
    return record(s, (x,), lambda g: (_prec(g) * (s - s * s),), "sigmoid")


def tanh(x: SharedTensor) -> SharedTensor:
    """tanh(x); backward g (1 - t^2) (two products)."""
    t = exp.tanh(_as_shared(x))
    return record(t, (x,), lambda g: (_prec(g) - _prec(g) * (t * t),), "tanh")


def parameters_of(values: Iterable) -> list:
    """The Variables among values that require a gradient."""
    return [v for v in values if _needs(v)]


def cat(tensors: Sequence[SharedTensor], dim: int = 0) -> SharedTensor:
    """torch.cat; backward splits g back into the pieces (local)."""
    y = _cat([t.to_precision() for t in tensors], dim)
    d = dim % y.ndim
    cuts = np.cumsum([t.shape[d] for t in tensors])[:-1]

    def back(g):
        return tuple(SharedTensor(g.rt, np.ascontiguousarray(s), g.fbits) for s in np.split(g.share, cuts, axis=d))

    return record(y, tuple(tensors), back, "cat")

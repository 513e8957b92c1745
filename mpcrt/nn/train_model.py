"""Trainable private models: from_torch(..., train=True), parameters(), reveal_state_dict(), to_torch().

    model = mpcrt.nn.from_torch(net if rt.rank == 0 else None, example, src=0, train=True)
    opt = mpcrt.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = mpcrt.nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
    state = model.reveal_state_dict(to=0)      # numpy arrays on party 0, None elsewhere

Import: the owner traces the module as for inference (mpcrt.nn.tracer) with two changes
made on a deep copy first, so the public graph says what training needs:

* every BatchNorm is kept as its own layer (not folded into the conv before it): it is
  wrapped as Sequential(Identity(), bn) with running_mean 0 and running_var 1 - eps, so
  its traced "affine" node's scale and shift are exactly weight and bias; the real running
  statistics are shared next to the weights. The graph's meta names it
  ("bn:<node target>" -> "<torch name> <eps> <momentum>").
* every Dropout (an identity in eval mode) is named in the meta ("dropout:<target>" -> p).

Every node's op must have a backward (TRAINABLE_OPS); otherwise the import fails on
every party with UnsupportedLayerError naming the layer, before any weight is sent.

Rounds, bytes, error: those of the layers (mpcrt.nn.train_layers, mpcrt.autograd).
Reference: docs/design.md, 'Training'.
"""
from __future__ import annotations

import copy
import re

import numpy as np

from mpcrt.autograd import Variable
from mpcrt.errors import ShapeError
from mpcrt.nn import train_layers as L
from mpcrt.nn.ir import Graph, UnsupportedLayerError, resolve
from mpcrt.nn.layers import _Common, last_uses
from mpcrt.nn.model import _check_src, _runtime, distribute
from mpcrt.nn.model import from_torch as _infer_from_torch
from mpcrt.tensor import SharedTensor

__all__ = ["TrainableModel", "from_torch", "TRAINABLE_OPS"]


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else v


class GradOps(_Common):
    """The IR on Variables: every op records its backward (mpcrt.autograd, train_layers)."""

    def linear(self, input, weight, bias=None):
        return L.linear(input, weight, bias)

    def conv2d(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return L.conv2d(input, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups)

    def relu(self, input):
        return L.relu(input)

    def sigmoid(self, input):
        from mpcrt.autograd import sigmoid

        return sigmoid(input)

    def tanh(self, input):
        from mpcrt.autograd import tanh

        return tanh(input)

    def max_pool2d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        return L.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode)

    def avg_pool2d(self, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        return L.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    def adaptive_avg_pool2d(self, input, output_size):
        return L.adaptive_avg_pool2d(input, output_size)

    def affine(self, input, scale, shift):
        shp = (1, scale.shape[0]) + (1,) * (input.ndim - 2)
        return input * scale.reshape(shp) + shift.reshape(shp)

    def cat(self, tensors, dim=0):
        from mpcrt.autograd import cat

        return cat(list(tensors), dim)


# ops whose backward exists (the _Common ones work through Variable's recorded operators)
TRAINABLE_OPS = frozenset({
    "input", "param", "linear", "conv2d", "relu", "sigmoid", "tanh", "leaky_relu", "max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "affine", "cat", "identity", "add", "sub", "mul", "div", "neg", "matmul", "flatten",
    "reshape", "permute", "transpose", "unsqueeze", "squeeze", "sum", "mean", "size", "getattr", "getitem", "cast",
})


def check_trainable(graph: Graph) -> None:
    """UnsupportedLayerError naming the first layer without a backward."""
    for n in graph.nodes:
        if n["op"] not in TRAINABLE_OPS:
            raise UnsupportedLayerError(
                f"layer '{n['name']}' ({n['target']}): op '{n['op']}' has no backward pass for training; "
                f"trainable ops: {', '.join(sorted(TRAINABLE_OPS - {'input', 'param'}))}")


class TrainableModel:
    """A model with public architecture and shared weights that records a tape when called."""

    def __init__(self, rt, graph: Graph, params: list, src: int, buffers: dict, module=None):
        check_trainable(graph)
        self.rt, self.graph, self.src = rt, graph, src
        self.params = [Variable(p, requires_grad=True) for p in params]
        self.names = [p["name"] for p in graph.params]
        self.buffers = buffers  # {bn node target: {"mean": SharedTensor, "var": SharedTensor}}
        self.training = True
        self._module = module  # the torch module, on the owner only
        self._free_after = last_uses(graph)
        self._ops = GradOps()
        self._bn = {k[3:]: v.split() for k, v in graph.meta.items() if k.startswith("bn:")}
        self._drop = {k[8:]: float(v) for k, v in graph.meta.items() if k.startswith("dropout:")}

    # ------------------------------------------------------------ torch-like
    def parameters(self) -> list:
        return list(self.params)

    def named_parameters(self) -> list:
        return [(self.torch_name(n), p) for n, p in zip(self.names, self.params)]

    def train(self, mode: bool = True) -> "TrainableModel":
        self.training = bool(mode)
        return self

    def eval(self) -> "TrainableModel":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def torch_name(self, name: str) -> str:
        """The torch state_dict name of a graph parameter ("bn1.1.scale" -> "bn1.weight")."""
        for target, (torch_name, _, _) in self._bn.items():
            if name == target + ".scale":
                return torch_name + ".weight"
            if name == target + ".shift":
                return torch_name + ".bias"
        return name

    def __call__(self, x: SharedTensor):
        if not isinstance(x, SharedTensor):
            raise TypeError(f"a TrainableModel takes a SharedTensor, got {type(x).__name__}")
        want = tuple(self.graph.input_shape)
        if x.ndim != len(want) or tuple(x.shape[1:]) != want[1:]:
            raise ShapeError(f"the model expects input of shape (batch, {', '.join(map(str, want[1:]))}), "
                             f"got {x.shape}")
        env: list = [None] * len(self.graph.nodes)
        for i, node in enumerate(self.graph.nodes):
            env[i] = self._node(node, env, x)
            for r in self._free_after[i]:
                env[r] = None
        return resolve(self.graph.output, env)

    forward = __call__

    def _node(self, node: dict, env: list, x):
        op, target = node["op"], _module_of(node["target"])
        if op == "input":
            return x
        if op == "param":
            return self.params[node["args"]["index"]]
        args = {k: resolve(v, env) for k, v in node["args"].items()}
        if op == "affine" and target in self._bn:
            _, eps, momentum = self._bn[target]
            return L.batch_norm(args["input"], args["scale"], args["shift"], self.buffers[target], self.training,
                                float(momentum), float(eps))
        if op == "identity" and target in self._drop:
            return L.dropout(args["input"], self._drop[target], self.training)
        try:
            return getattr(self._ops, op)(**args)
        except ShapeError as e:
            raise ShapeError(f"layer '{node['name']}' ({node['target']}): {e}") from None

    # ------------------------------------------------------------ revealing
    def state_items(self) -> list[tuple[str, SharedTensor]]:
        """(torch name, shared value) of every parameter and BatchNorm running statistic."""
        items = [(self.torch_name(n), p) for n, p in zip(self.names, self.params)]
        for target, (torch_name, _, _) in self._bn.items():
            items += [(torch_name + ".running_mean", self.buffers[target]["mean"]),
                      (torch_name + ".running_var", self.buffers[target]["var"])]
        return items

    def reveal_state_dict(self, to: int = 0) -> dict | None:
        """{torch name: numpy float64 array} on party `to` (one opening to it), None elsewhere."""
        to = _check_src(self.rt, to)
        items = self.state_items()
        f = self.rt.precision
        flat = np.concatenate([t.to_precision().share.ravel() for _, t in items])
        joined = SharedTensor(self.rt, flat, f).reveal(to=to)
        if joined is None:
            return None
        out, off = {}, 0
        for name, t in items:
            out[name] = joined[off:off + t.numel()].reshape(t.shape)
            off += t.numel()
        return out

    def to_torch(self, module=None, to: int | None = None):
        """The trained weights loaded into `module` (default: the owner's own module) on
        party `to` (default: the owner); None on every other party."""
        to = self.src if to is None else to
        state = self.reveal_state_dict(to=to)
        if state is None:
            return None
        import torch

        module = module if module is not None else self._module
        if module is None:
            raise ValueError(f"party {to} holds no torch module: pass to_torch(module) (a fresh instance of the "
                             "architecture)")
        sd = module.state_dict()
        for name, value in state.items():
            if name not in sd:
                raise KeyError(f"the module has no tensor {name!r} (is it the same architecture?)")
            sd[name] = torch.as_tensor(value, dtype=sd[name].dtype).reshape(sd[name].shape)
        module.load_state_dict(sd)
        return module

    def __repr__(self) -> str:
        return (f"TrainableModel({self.graph.meta.get('model', '?')}, input {tuple(self.graph.input_shape)}, "
                f"{self.graph.param_count} shared weights, owner party {self.src}, training={self.training})")


def _module_of(target: str) -> str:
    """The module path in a node's target ("torch.nn...BatchNorm2d (module 'bn.1')" -> "bn.1"), else ''."""
    m = _MODULE.search(target)
    return m.group(1) if m else ""


_MODULE = re.compile(r"\(module '([^']*)'\)$")


# ------------------------------------------------------------------ import
def _prepare(net):
    """A deep copy of net with every BatchNorm unfolded (see the module docstring), the
    meta naming BatchNorms and Dropouts, and the running statistics to share."""
    import torch.nn as tnn

    net = copy.deepcopy(net)
    meta: dict = {}
    stats: list = []
    for path, mod in list(net.named_modules()):
        if isinstance(mod, (tnn.Dropout, tnn.Dropout1d, tnn.Dropout2d)) and mod.p > 0:
            meta[f"dropout:{path}"] = float(mod.p)
    for path, mod in list(net.named_modules()):
        if not isinstance(mod, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
            continue
        if not mod.affine or mod.running_mean is None:
            raise UnsupportedLayerError(f"{type(mod).__name__} '{path}' needs affine=True and running statistics "
                                        "to be trained")
        stats += [mod.running_mean.detach().double().numpy(), mod.running_var.detach().double().numpy()]
        bn = copy.deepcopy(mod)
        with __import__("torch").no_grad():
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        momentum = 0.1 if bn.momentum is None else float(bn.momentum)
        meta[f"bn:{path}.1"] = f"{path} {bn.eps!r} {momentum!r}"
        _set_module(net, path, tnn.Sequential(tnn.Identity(), bn))
    return net, meta, stats


def _set_module(net, path: str, new) -> None:
    parent, _, leaf = path.rpartition(".")
    owner = net.get_submodule(parent) if parent else net
    setattr(owner, leaf, new)


def from_torch(model, example_input=None, src: int = 0, rt=None, *, train: bool = False):
    """mpcrt.nn.from_torch with train=True: a TrainableModel (see the module docstring).
    train=False: the inference PrivateModel (mpcrt.nn.model.from_torch, same positional arguments)."""
    if not train:
        return _infer_from_torch(model, example_input, src, rt)
    rt = _runtime(rt)
    src = _check_src(rt, src)
    kept: dict = {}

    def build():
        from mpcrt.nn.tracer import trace

        net, meta, stats = _prepare(model)
        graph, arrays = trace(net, example_input)
        graph.meta.update(meta)
        check_trainable(graph)
        kept["stats"] = stats
        return graph, arrays

    pm = distribute(None if model is None else build, src, rt)
    check_trainable(pm.graph)
    bn_targets = [k[3:] for k in pm.graph.meta if k.startswith("bn:")]
    sizes = [_bn_channels(pm.graph, t) for t in bn_targets]
    flat = np.concatenate(kept["stats"]) if rt.rank == src and kept.get("stats") else None
    buffers: dict = {}
    if bn_targets:
        shared = rt.share(flat if rt.rank == src else None, src=src)
        if shared.shape != (2 * sum(sizes),):
            raise ShapeError(f"party {src} shared {shared.shape} BatchNorm statistics, the graph needs "
                             f"({2 * sum(sizes)},)")
        off = 0
        for t, c in zip(bn_targets, sizes):
            buffers[t] = {"mean": shared[off:off + c], "var": shared[off + c:off + 2 * c]}
            off += 2 * c
    return TrainableModel(rt, pm.graph, pm.params, src, buffers, module=model if rt.rank == src else None)


def _bn_channels(graph: Graph, target: str) -> int:
    for p in graph.params:
        if p["name"] == target + ".scale":
            return int(p["shape"][0])
    raise UnsupportedLayerError(f"BatchNorm '{target}' has no scale parameter in the graph")

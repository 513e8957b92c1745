"""SharedTensor's protocol-backed methods, attached in one place.

The class itself, with its local and linear algebra (+, *, @, conv2d, truncation,
reveal, shape operations, cat/stack/where), is mpcrt.protocols.shared.SharedTensor.
Every other method (comparisons and their operators, relu, exp, softmax, the norms,
the activations, ...) is a protocol function fn(x, *args, **kwargs) from a protocol
module, listed once in METHODS and attached here with the function's own docstring.

Adding an elementwise activation: one function in a protocol module (e.g.
protocols/activations.py), one METHODS entry and its name in CHUNKED (large tensors then
run it a chunk at a time, mpcrt.chunked). Model import reads the same table
(`torch`: the torch names an entry stands for; `params`: its keyword parameters in
torch's order, which are also the nn module's attribute names). An entry has torch names
only where fn(x, **params) is the whole call (x and its keyword parameters: activations,
reductions, pooling, norms); operators and aliases (lt, maximum, __truediv__, clip,
maxpool2d) have none, model import maps those torch calls itself.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from mpcrt import chunked
from mpcrt.protocols import activations, compare, exp, normalize, ordering, quotient, reciprocal
from mpcrt.protocols.shared import SharedTensor, cat, stack, where

__all__ = ["METHODS", "Method", "SharedTensor", "cat", "stack", "where"]


@dataclass(frozen=True)
class Method:
    fn: Callable[..., Any]        # the protocol function, fn(x, *args, **kwargs)
    torch: tuple[str, ...] = ()   # torch names it stands for ("gelu" -> torch.gelu / F.gelu / Tensor.gelu / nn.GELU)
    params: tuple[str, ...] = ()  # keyword parameters in torch's order (= nn module attribute names)


_POOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")  # torch.nn.MaxPool2d's

METHODS: dict[str, Method] = {
    # comparisons (protocols.compare): shared 0/1 results, exact, 7 rounds
    "ltz": Method(compare.ltz),
    "lt": Method(compare.lt),
    "gt": Method(compare.gt),
    "le": Method(compare.le),
    "ge": Method(compare.ge),
    "eq": Method(compare.eq),
    "ne": Method(compare.ne),
    "__lt__": Method(compare.lt),
    "__gt__": Method(compare.gt),
    "__le__": Method(compare.le),
    "__ge__": Method(compare.ge),
    "__eq__": Method(compare.eq),
    "__ne__": Method(compare.ne),
    "relu": Method(compare.relu, ("relu",)),
    "abs": Method(compare.abs_, ("abs",)),
    "__abs__": Method(compare.abs_),
    "sign": Method(compare.sign),  # torch names: model import does not map torch.sign yet
    "clamp": Method(compare.clamp, ("clamp",), ("min", "max")),
    "clip": Method(compare.clamp),
    # orderings (protocols.ordering)
    "max": Method(ordering.max_like_torch, ("max",), ("dim", "keepdim")),
    "min": Method(ordering.min_like_torch, ("min",), ("dim", "keepdim")),
    "maximum": Method(ordering.maximum),
    "minimum": Method(ordering.minimum),
    "argmax": Method(ordering.argmax, ("argmax",), ("dim", "keepdim")),
    "argmin": Method(ordering.argmin, ("argmin",), ("dim", "keepdim")),
    "maxpool2d": Method(ordering.maxpool2d),
    "max_pool2d": Method(ordering.maxpool2d, ("max_pool2d",), _POOL),
    # the exp chain (protocols.exp)
    "exp": Method(exp.exp, ("exp",)),
    "sigmoid": Method(exp.sigmoid, ("sigmoid",)),
    "tanh": Method(exp.tanh, ("tanh",)),
    "softmax": Method(exp.softmax, ("softmax",), ("dim",)),
    "log_softmax": Method(exp.log_softmax, ("log_softmax",), ("dim",)),
    # normalization and Newton steps (protocols.reciprocal)
    "reciprocal": Method(reciprocal.reciprocal, ("reciprocal",)),
    "__truediv__": Method(quotient.div),
    "__rtruediv__": Method(quotient.rdiv),
    "log": Method(reciprocal.log, ("log",)),
    "sqrt": Method(reciprocal.sqrt, ("sqrt",)),
    "rsqrt": Method(reciprocal.rsqrt, ("rsqrt",)),
    # layer normalization (protocols.normalize)
    "layer_norm": Method(normalize.layer_norm, ("layer_norm",), ("normalized_shape", "weight", "bias", "eps")),
    "rms_norm": Method(normalize.rms_norm, ("rms_norm",), ("normalized_shape", "weight", "eps")),
    "group_norm": Method(normalize.group_norm, ("group_norm",), ("num_groups", "weight", "bias", "eps")),
    # activations (protocols.activations)
    "gelu": Method(activations.gelu, ("gelu",), ("approximate",)),
    "silu": Method(activations.silu, ("silu",)),
    "elu": Method(activations.elu, ("elu",), ("alpha",)),
    "selu": Method(activations.selu, ("selu",)),
    "celu": Method(activations.celu, ("celu",), ("alpha",)),
    "softplus": Method(activations.softplus, ("softplus",), ("beta", "threshold")),
    "logsigmoid": Method(activations.logsigmoid, ("logsigmoid",)),
    "mish": Method(activations.mish, ("mish",)),
    "prelu": Method(activations.prelu, ("prelu",), ("weight",)),
    "hardswish": Method(activations.hardswish, ("hardswish",)),
    "hardsigmoid": Method(activations.hardsigmoid, ("hardsigmoid",)),
    "hardtanh": Method(activations.hardtanh, ("hardtanh",), ("min_val", "max_val")),
    "relu6": Method(activations.relu6),  # model import maps nn.ReLU6 to hardtanh
}

# elementwise methods: on tensors above MPCRT_CHUNK_ELEMENTS they run a chunk at a time
# (mpcrt.chunked), rounds and bytes attributed to the scope named here
CHUNKED: dict[str, str] = {
    **{n: n.strip("_") for n in ("ltz", "lt", "gt", "le", "ge", "eq", "ne", "__lt__", "__gt__", "__le__", "__ge__",
                                 "__eq__", "__ne__", "relu", "abs", "__abs__", "sign", "clamp", "clip", "maximum",
                                 "minimum", "exp", "sigmoid", "tanh", "reciprocal", "__truediv__", "__rtruediv__",
                                 "log", "sqrt", "rsqrt", "gelu", "silu", "elu", "selu", "celu", "softplus",
                                 "logsigmoid", "mish", "hardswish", "hardsigmoid", "hardtanh", "relu6")},
    "__mul__": "mul", "__rmul__": "mul", "to_precision": "trunc",
}

METHODS.update({n: dataclasses.replace(m, fn=chunked.elementwise(m.fn, CHUNKED[n]))
                for n, m in METHODS.items() if n in CHUNKED})
for _name, _m in METHODS.items():
    setattr(SharedTensor, _name, _m.fn)
# protocols.shared's own elementwise methods; a product by an integer, or a tensor already at
# the runtime's precision, is local and runs whole
_LOCAL = {"to_precision": lambda x: x.fbits <= x.rt.precision,
          "__mul__": lambda x, other: isinstance(other, numbers.Integral)}
_LOCAL["__rmul__"] = _LOCAL["__mul__"]
for _name, _local in _LOCAL.items():
    setattr(SharedTensor, _name, chunked.elementwise(getattr(SharedTensor, _name), CHUNKED[_name], _local))
SharedTensor.reveal = chunked.revealing(SharedTensor.reveal)

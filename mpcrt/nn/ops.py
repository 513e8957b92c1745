"""The op registry: every op of the IR, the arguments its nodes carry and what it needs.

One table for the whole package. The IR's validation (`ir`), the tracer's torch tables
(`fx_table`), the tracer's module import (`modules`), both executors (`layers`) and the
supported-ops lists (`supported()`, error messages, `python -m mpcrt.nn`) all read it.

Two kinds of entries:

* `ELEMENTWISE`: elementwise activations, generated from `Method` records by
  `elementwise_ops(methods)`. One record is everything an activation needs: the protocol
  function runs it on SharedTensors, its torch names (torch.X, F.X, Tensor.X, nn.X) are
  imported as it, its keyword parameters are the IR node's arguments (defaults from the
  function's signature) and the nn module's attributes. Adding an activation is one
  entry in `mpcrt.tensor.METHODS` (beside its protocol function).
* `_OPS`: every other op, written by hand (structural ops, layers with weights, ops
  whose import needs argument rewrites).

Importing this module does not import torch.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from mpcrt.tensor import METHODS, Method


@dataclass(frozen=True)
class Op:
    """One op of the IR."""

    sig: inspect.Signature  # the arguments (names and defaults) every node of this op carries
    needs: str | None = None  # the nonlinear SharedTensor method it runs on (None: linear or local)
    method: Method | None = None  # elementwise activations: the protocol function and its torch names


def _s(fn) -> inspect.Signature:
    return inspect.signature(fn)


# ------------------------------------------------------------------ other ops
_OPS: dict[str, Op] = {
    "input": Op(_s(lambda: None)),
    "param": Op(_s(lambda index: None)),
    "linear": Op(_s(lambda input, weight, bias=None: None)),
    "conv2d": Op(_s(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None)),
    "affine": Op(_s(lambda input, scale, shift: None)),  # per channel (dim 1): x * scale + shift
    "leaky_relu": Op(_s(lambda input, negative_slope=0.01: None), "relu"),
    "softmax": Op(_s(lambda input, dim: None), "softmax"),
    "log_softmax": Op(_s(lambda input, dim: None), "log_softmax"),
    "clamp": Op(_s(lambda input, min=None, max=None: None), "clamp"),
    "prelu": Op(_s(lambda input, weight: None), "prelu"),
    "group_norm": Op(_s(lambda input, num_groups, weight=None, bias=None, eps=1e-5: None), "group_norm"),
    "pow": Op(_s(lambda input, exponent: None)),  # tensors: an integer in 0..64; sizes (public numbers): any real
    # softmax(q k^T scale + mask) v over the last two dims (F.scaled_dot_product_attention)
    "attention": Op(_s(lambda input, key, value, attn_mask=None, is_causal=False, scale=None: None), "softmax"),
    "layer_norm": Op(_s(lambda input, normalized_shape, weight=None, bias=None, eps=1e-5: None), "layer_norm"),
    "rms_norm": Op(_s(lambda input, normalized_shape, weight=None, eps=None: None), "rms_norm"),
    "max_pool2d": Op(_s(lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False: None),
                     "maxpool2d"),
    "avg_pool2d": Op(_s(lambda input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        divisor_override=None: None)),
    "adaptive_avg_pool2d": Op(_s(lambda input, output_size: None)),
    "flatten": Op(_s(lambda input, start_dim=0, end_dim=-1: None)),
    "reshape": Op(_s(lambda input, shape: None)),
    "permute": Op(_s(lambda input, dims: None)),
    "repeat": Op(_s(lambda input, sizes: None)),
    "stack": Op(_s(lambda tensors, dim=0: None)),
    "chunk": Op(_s(lambda input, chunks, dim=0: None)),
    "split": Op(_s(lambda input, split_size_or_sections, dim=0: None)),
    "pad": Op(_s(lambda input, pad, value=0.0: None)),
    "compare": Op(_s(lambda input, other, op: None), "ltz"),
    "cast": Op(_s(lambda input: None)),
    "where": Op(_s(lambda condition, input, other: None), "ltz"),
    "maximum": Op(_s(lambda input, other: None), "maximum"),
    "minimum": Op(_s(lambda input, other: None), "minimum"),
    "max": Op(_s(lambda input, dim=None, keepdim=False: None), "max"),
    "min": Op(_s(lambda input, dim=None, keepdim=False: None), "min"),
    "amax": Op(_s(lambda input, dim, keepdim=False: None), "max"),
    "amin": Op(_s(lambda input, dim, keepdim=False: None), "min"),
    "argmax": Op(_s(lambda input, dim=None, keepdim=False: None), "argmax"),
    "argmin": Op(_s(lambda input, dim=None, keepdim=False: None), "argmin"),
    "var": Op(_s(lambda input, dim=None, correction=1, keepdim=False: None)),
    "std": Op(_s(lambda input, dim=None, correction=1, keepdim=False: None), "sqrt"),
    "norm": Op(_s(lambda input, dim=None, keepdim=False: None), "sqrt"),
    "normalize": Op(_s(lambda input, dim=1, eps=1e-12: None), "rsqrt"),
    "resize": Op(_s(lambda input, size, mode="nearest", align_corners=None, scale=None: None)),
    "expand": Op(_s(lambda input, sizes: None)),
    "transpose": Op(_s(lambda input, dim0, dim1: None)),
    "unsqueeze": Op(_s(lambda input, dim: None)),
    "squeeze": Op(_s(lambda input, dim=None: None)),
    "identity": Op(_s(lambda input: None)),
    "add": Op(_s(lambda input, other, alpha=1: None)),
    "sub": Op(_s(lambda input, other, alpha=1: None)),
    "mul": Op(_s(lambda input, other: None)),
    "div": Op(_s(lambda input, other: None)),
    "floordiv": Op(_s(lambda input, other: None)),
    "neg": Op(_s(lambda input: None)),
    "matmul": Op(_s(lambda input, other: None)),
    "cat": Op(_s(lambda tensors, dim=0: None)),
    "sum": Op(_s(lambda input, dim=None, keepdim=False: None)),
    "mean": Op(_s(lambda input, dim=None, keepdim=False: None)),
    "size": Op(_s(lambda input, dim=None: None)),
    "getattr": Op(_s(lambda input, name: None)),
    "getitem": Op(_s(lambda input, index: None)),
}


def elementwise_ops(methods: dict[str, Method]) -> dict[str, Op]:
    """The registry entries of the elementwise activations: one per Method record with torch names.

    A record's IR op is named as its key; its node carries `input` and the record's params,
    with the protocol function's defaults. Names the hand-written table defines keep their entry.
    """
    out = {}
    for name, m in methods.items():
        if not m.torch or name in _OPS:
            continue
        defaults = inspect.signature(m.fn).parameters
        params = [inspect.Parameter("input", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=defaults[p].default)
                   for p in m.params]
        out[name] = Op(inspect.Signature(params), None, m)
    return out


ELEMENTWISE: dict[str, Op] = elementwise_ops(METHODS)
OPS: dict[str, Op] = {**_OPS, **ELEMENTWISE}
#: the arguments of every op of the IR (what `ir` checks each node against on decode)
IR_OPS: dict[str, inspect.Signature] = {name: op.sig for name, op in OPS.items()}
#: ops that need a nonlinear SharedTensor method, and which (elementwise ones run their protocol function)
NONLINEAR_METHODS: dict[str, str] = {name: op.needs for name, op in OPS.items() if op.needs}


# ------------------------------------------------------------ supported lists
_MODULES = (
    "Linear", "Conv1d", "Conv2d", "ConvTranspose1d/2d (dilation 1)", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "RMSNorm", "LeakyReLU", "ReLU6",
    "Upsample", "PReLU",
    "GroupNorm", "InstanceNorm1d/2d", "Softmax", "LogSoftmax", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d (output size dividing the input's)",
    "Flatten", "Unflatten", "PixelShuffle", "PixelUnshuffle", "Dropout", "Dropout1d/2d/3d", "AlphaDropout", "Identity",
    "torchvision's StochasticDepth (eval)", "MultiheadAttention (no masks; output only)",
    "LSTM/GRU/RNN (zero initial state, no proj_size; unrolled over the example's length)",
    "Embedding (on the model's input: ids shared one-hot, model.encode_input)",
    "TransformerEncoderLayer (relu/gelu, no masks)", "TransformerEncoder",
)
_FUNCTIONS = (
    "+ - * / // ** (integer powers; any power of a size) math.sqrt (of a size) unary-, @, < <= > >= == !=, indexing, "
    "getattr(x, 'shape'/'values'/'indices'), "
    "torch.add/sub/mul/div/neg/matmul/bmm/where/maximum/minimum/max/min/amax/amin/argmax/argmin/"
    "var/std/norm/stack/chunk/split/pow/square/clamp/clip/clamp_min/clamp_max/"
    "softmax/log_softmax/flatten/reshape/permute/transpose/unsqueeze/squeeze/cat/concat/sum/mean, "
    "torch._assert on sizes, torchvision.ops.stochastic_depth (eval), "
    "F.scaled_dot_product_attention (is_causal, scale, float attn_mask)/leaky_relu/relu6/pad/interpolate/normalize/"
    "prelu/group_norm/instance_norm/softmax/log_softmax/layer_norm/rms_norm/max_pool1d/2d/avg_pool1d/2d/"
    "adaptive_avg_pool1d/2d/dropout/dropout2d/linear/conv1d/conv2d, tensor methods "
    "add/sub/mul/div/neg/matmul/pow/square/clamp/clip/clamp_min/clamp_max/"
    "softmax/log_softmax/view/reshape/flatten/permute/repeat/expand/transpose/t/unsqueeze/squeeze/contiguous/size/dim/"
    "sum/mean/chunk/split/bmm/lt/le/gt/ge/eq/ne/float/double/to(float dtype)/type_as/maximum/minimum/max/min/amax/amin/"
    "argmax/argmin/var/std/norm/masked_fill (torch. too; a public mask, such as a causal mask buffer)"
)


def elementwise_module_names() -> tuple[str, ...]:
    """The nn module classes of the elementwise activations (needs torch)."""
    import torch.nn as tnn

    return tuple(cls.__name__ for _, cls in module_classes(tnn))


def module_classes(tnn) -> list[tuple[str, type]]:
    """(op name, nn module class) of every elementwise activation with a module: nn.X whose
    lowercased name is one of its torch names."""
    by_name = {c.__name__.lower(): c for c in vars(tnn).values() if isinstance(c, type) and issubclass(c, tnn.Module)}
    return [(name, by_name[t]) for name, op in ELEMENTWISE.items() for t in op.method.torch if t in by_name]


def supported() -> dict[str, tuple[str, ...] | str]:
    """{"modules": nn layer names, "functions": torch functions and tensor methods} that import (needs torch)."""
    acts = "/".join(sorted({t for op in ELEMENTWISE.values() for t in op.method.torch}))
    return {"modules": _MODULES + elementwise_module_names(),
            "functions": f"{_FUNCTIONS}; elementwise (torch., F. and tensor methods where torch has them): {acts}"}


def supported_markdown() -> str:
    """The supported layers and functions as the README's list (`python -m mpcrt.nn`)."""
    s = supported()
    return "Layers: " + ", ".join(s["modules"]) + ".\n\nFunctions: " + s["functions"] + "."

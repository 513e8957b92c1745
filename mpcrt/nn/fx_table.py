"""The tracer's torch tables: which torch function or tensor method imports as which IR op.

Each entry is (IR op, the torch signature its fx arguments are bound to, fix or None);
the fix checks or rewrites the bound arguments (`fx_fixes`). The elementwise activations'
entries are generated from the op registry (`ops.ELEMENTWISE`): torch.X, F.X and the
tensor methods X and X_ of each of their torch names.
"""
from __future__ import annotations

import inspect
import math
import operator

from mpcrt.nn.fx_fixes import FIXES as fx
from mpcrt.nn.ops import ELEMENTWISE

S = inspect.signature
bin_ = S(lambda input, other: None)
unary = S(lambda input: None)
sumlike = S(lambda input, dim=None, keepdim=False, *, dtype=None, out=None: None)


def _function_table(torch, F) -> dict:
    return {
        operator.add: ("add", bin_, None), operator.iadd: ("add", bin_, None),
        operator.sub: ("sub", bin_, None), operator.isub: ("sub", bin_, None),
        operator.mul: ("mul", bin_, None), operator.imul: ("mul", bin_, None),
        operator.truediv: ("div", bin_, None), operator.itruediv: ("div", bin_, None),
        operator.floordiv: ("floordiv", bin_, None), operator.neg: ("neg", unary, None),
        operator.matmul: ("matmul", bin_, None),
        operator.getitem: ("getitem", S(lambda input, index: None), fx["getitem_fix"]),
        getattr: ("getattr", S(lambda input, name: None), fx["getattr_fix"]),
        torch.add: ("add", S(lambda input, other, *, alpha=1, out=None: None), fx["no_out"]),
        torch.sub: ("sub", S(lambda input, other, *, alpha=1, out=None: None), fx["no_out"]),
        torch.mul: ("mul", S(lambda input, other, *, out=None: None), fx["no_out"]),
        torch.div: ("div", S(lambda input, other, *, rounding_mode=None, out=None: None), fx["div_no_out"]),
        torch.neg: ("neg", unary, None),
        torch.matmul: ("matmul", S(lambda input, other, *, out=None: None), fx["no_out"]),
        F.leaky_relu: ("leaky_relu", S(lambda input, negative_slope=0.01, inplace=False: None), None),
        F.softmax: ("softmax", S(lambda input, dim=None, _stacklevel=3, dtype=None: None), fx["softmax"]),
        F.scaled_dot_product_attention: ("attention", S(lambda query, key, value, attn_mask=None, dropout_p=0.0,
                                                          is_causal=False, scale=None, enable_gqa=False: None),
                                         fx["sdpa"]),
        torch.softmax: ("softmax", S(lambda input, dim, dtype=None: None), fx["softmax"]),
        F.log_softmax: ("log_softmax", S(lambda input, dim=None, _stacklevel=3, dtype=None: None), fx["softmax"]),
        torch.log_softmax: ("log_softmax", S(lambda input, dim, dtype=None: None), fx["softmax"]),
        F.relu6: ("hardtanh", S(lambda input, inplace=False: None), fx["relu6"]),
        F.prelu: ("prelu", S(lambda input, weight: None), None),
        F.group_norm: ("group_norm", S(lambda input, num_groups, weight=None, bias=None, eps=1e-5: None), None),
        F.instance_norm: ("group_norm", S(lambda input, running_mean=None, running_var=None, weight=None, bias=None,
                                            use_input_stats=True, momentum=0.1, eps=1e-5: None), fx["instance_norm"]),
        torch.clamp: ("clamp", S(lambda input, min=None, max=None, *, out=None: None), fx["clamp"]),
        torch.clip: ("clamp", S(lambda input, min=None, max=None, *, out=None: None), fx["clamp"]),
        torch.clamp_min: ("clamp", S(lambda input, min: None), fx["clamp_min"]),
        torch.clamp_max: ("clamp", S(lambda input, max: None), fx["clamp_max"]),
        operator.pow: ("pow", S(lambda input, exponent: None), fx["pow"]),
        torch.pow: ("pow", S(lambda input, exponent, *, out=None: None), fx["pow"]),
        torch.square: ("pow", S(lambda input, *, out=None: None), fx["square"]),
        math.sqrt: ("pow", S(lambda input: None), fx["sqrt_size"]),
        F.layer_norm: ("layer_norm", S(lambda input, normalized_shape, weight=None, bias=None, eps=1e-5: None), None),
        **({F.rms_norm: ("rms_norm", S(lambda input, normalized_shape, weight=None, eps=None: None), None)}
           if hasattr(F, "rms_norm") else {}),
        F.max_pool2d: ("max_pool2d", S(lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                                       return_indices=False: None), fx["maxpool"]),
        F.avg_pool2d: ("avg_pool2d", S(lambda input, kernel_size, stride=None, padding=0, ceil_mode=False,
                                       count_include_pad=True, divisor_override=None: None), None),
        F.adaptive_avg_pool2d: ("adaptive_avg_pool2d", S(lambda input, output_size: None), None),
        torch.flatten: ("flatten", S(lambda input, start_dim=0, end_dim=-1: None), None),
        torch.reshape: ("reshape", S(lambda input, shape: None), None),
        torch.permute: ("permute", S(lambda input, dims: None), None),
        torch.transpose: ("transpose", S(lambda input, dim0, dim1: None), None),
        torch.unsqueeze: ("unsqueeze", S(lambda input, dim: None), None),
        torch.squeeze: ("squeeze", S(lambda input, dim=None: None), None),
        torch.cat: ("cat", S(lambda tensors, dim=0, *, out=None: None), fx["no_out"]),
        torch.stack: ("stack", S(lambda tensors, dim=0, *, out=None: None), fx["no_out"]),
        torch.chunk: ("chunk", S(lambda input, chunks, dim=0: None), None),
        torch.split: ("split", S(lambda tensor, split_size_or_sections, dim=0: None),
                      lambda t, n, a: ("split", {"input": a.pop("tensor"), **a})),
        torch.bmm: ("matmul", S(lambda input, mat2, *, out=None: None),
                    lambda t, n, a: ("matmul", {"input": a["input"], "other": a["mat2"]})),
        F.pad: ("pad", S(lambda input, pad, mode="constant", value=None: None), fx["pad_fix"]),
        F.interpolate: ("resize", S(lambda input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                                    recompute_scale_factor=None, antialias=False: None), fx["interpolate"]),
        F.normalize: ("normalize", S(lambda input, p=2.0, dim=1, eps=1e-12, out=None: None), fx["normalize_fix"]),
        operator.lt: ("compare", bin_, fx["compare_as"]("lt")), operator.le: ("compare", bin_, fx["compare_as"]("le")),
        operator.gt: ("compare", bin_, fx["compare_as"]("gt")), operator.ge: ("compare", bin_, fx["compare_as"]("ge")),
        operator.eq: ("compare", bin_, fx["compare_as"]("eq")), operator.ne: ("compare", bin_, fx["compare_as"]("ne")),
        torch.lt: ("compare", bin_, fx["compare_as"]("lt")), torch.le: ("compare", bin_, fx["compare_as"]("le")),
        torch.gt: ("compare", bin_, fx["compare_as"]("gt")), torch.ge: ("compare", bin_, fx["compare_as"]("ge")),
        torch.eq: ("compare", bin_, fx["compare_as"]("eq")), torch.ne: ("compare", bin_, fx["compare_as"]("ne")),
        torch.where: ("where", S(lambda condition, input, other: None), None),
        torch.masked_fill: ("where", S(lambda input, mask, value: None), fx["masked_fill"]),
        torch.maximum: ("maximum", S(lambda input, other, *, out=None: None), fx["no_out"]),
        torch.minimum: ("minimum", S(lambda input, other, *, out=None: None), fx["no_out"]),
        torch.max: ("max", S(lambda input, dim=None, keepdim=False, *, out=None: None),
                    fx["max_or_maximum"]("maximum")),
        torch.min: ("min", S(lambda input, dim=None, keepdim=False, *, out=None: None),
                    fx["max_or_maximum"]("minimum")),
        torch.amax: ("amax", S(lambda input, dim, keepdim=False, *, out=None: None), fx["one_dim"]),
        torch.amin: ("amin", S(lambda input, dim, keepdim=False, *, out=None: None), fx["one_dim"]),
        torch.argmax: ("argmax", S(lambda input, dim=None, keepdim=False: None), None),
        torch.argmin: ("argmin", S(lambda input, dim=None, keepdim=False: None), None),
        torch.var: ("var", S(lambda input, dim=None, unbiased=None, keepdim=False, *, correction=None: None),
                    fx["var_std"]),
        torch.std: ("std", S(lambda input, dim=None, unbiased=None, keepdim=False, *, correction=None: None),
                    fx["var_std"]),
        torch.norm: ("norm", S(lambda input, p="fro", dim=None, keepdim=False, out=None, dtype=None: None),
                     fx["norm_fix"]),
        torch.concat: ("cat", S(lambda tensors, dim=0, *, out=None: None), fx["no_out"]),
        torch.sum: ("sum", sumlike, fx["dtype_none"]), torch.mean: ("mean", sumlike, fx["dtype_none"]),
        F.dropout: ("identity", S(lambda input, p=0.5, training=True, inplace=False: None), None),
        F.dropout2d: ("identity", S(lambda input, p=0.5, training=True, inplace=False: None), None),
        F.linear: ("linear", S(lambda input, weight, bias=None: None), None),
        F.conv1d: ("conv2d", S(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None),
                   fx["conv1d"]),
        F.max_pool1d: ("max_pool2d", S(lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                                       return_indices=False: None), fx["max_pool1d"]),
        F.avg_pool1d: ("avg_pool2d", S(lambda input, kernel_size, stride=None, padding=0, ceil_mode=False,
                                       count_include_pad=True: None), fx["avg_pool1d"]),
        F.adaptive_avg_pool1d: ("adaptive_avg_pool2d", S(lambda input, output_size: None), fx["adaptive_avg_pool1d"]),
        F.conv2d: ("conv2d", S(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None),
                   fx["conv"]),
    }


def _method_table() -> dict:
    return {
        "add": ("add", S(lambda self, other, *, alpha=1: None), None),
        "add_": ("add", S(lambda self, other, *, alpha=1: None), None),
        "sub": ("sub", S(lambda self, other, *, alpha=1: None), None),
        "mul": ("mul", S(lambda self, other: None), None), "mul_": ("mul", S(lambda self, other: None), None),
        "div": ("div", S(lambda self, other, *, rounding_mode=None: None), fx["div"]),
        "neg": ("neg", S(lambda self: None), None),
        "matmul": ("matmul", S(lambda self, other: None), None),
        "clamp": ("clamp", S(lambda self, min=None, max=None: None), fx["clamp"]),
        "clip": ("clamp", S(lambda self, min=None, max=None: None), fx["clamp"]),
        "clamp_": ("clamp", S(lambda self, min=None, max=None: None), fx["clamp"]),
        "clamp_min": ("clamp", S(lambda self, min: None), fx["clamp_min"]),
        "clamp_max": ("clamp", S(lambda self, max: None), fx["clamp_max"]),
        "pow": ("pow", S(lambda self, exponent: None), fx["pow"]),
        "masked_fill": ("where", S(lambda self, mask, value: None), fx["masked_fill"]),
        "square": ("pow", S(lambda self: None), fx["square"]),
        "softmax": ("softmax", S(lambda self, dim, dtype=None: None), fx["softmax"]),
        "log_softmax": ("log_softmax", S(lambda self, dim, dtype=None: None), fx["softmax"]),
        "view": ("reshape", S(lambda self, *shape: None), fx["varargs"]("shape")),
        "reshape": ("reshape", S(lambda self, *shape: None), fx["varargs"]("shape")),
        "flatten": ("flatten", S(lambda self, start_dim=0, end_dim=-1: None), None),
        "permute": ("permute", S(lambda self, *dims: None), fx["varargs"]("dims")),
        "repeat": ("repeat", S(lambda self, *sizes: None), fx["varargs"]("sizes")),
        "chunk": ("chunk", S(lambda self, chunks, dim=0: None), None),
        "split": ("split", S(lambda self, split_size, dim=0: None),
                  lambda t, n, a: ("split", {"input": a["input"], "split_size_or_sections": a["split_size"],
                                             "dim": a["dim"]})),
        "bmm": ("matmul", S(lambda self, mat2: None),
                lambda t, n, a: ("matmul", {"input": a["input"], "other": a["mat2"]})),
        "t": ("transpose", S(lambda self: None), fx["t_fix"]),
        "lt": ("compare", S(lambda self, other: None), fx["compare_as"]("lt")),
        "le": ("compare", S(lambda self, other: None), fx["compare_as"]("le")),
        "gt": ("compare", S(lambda self, other: None), fx["compare_as"]("gt")),
        "ge": ("compare", S(lambda self, other: None), fx["compare_as"]("ge")),
        "eq": ("compare", S(lambda self, other: None), fx["compare_as"]("eq")),
        "ne": ("compare", S(lambda self, other: None), fx["compare_as"]("ne")),
        "bool": ("compare", S(lambda self: None), fx["to_bool"]),
        "float": ("cast", S(lambda self, memory_format=None: None), fx["cast"]),
        "double": ("cast", S(lambda self, memory_format=None: None), fx["cast"]),
        "to": ("cast", S(lambda self, dtype=None, non_blocking=False, copy=False, memory_format=None: None),
               fx["cast"]),
        "type_as": ("cast", S(lambda self, other: None), fx["cast"]),
        "maximum": ("maximum", S(lambda self, other: None), None),
        "minimum": ("minimum", S(lambda self, other: None), None),
        "max": ("max", S(lambda self, dim=None, keepdim=False: None), fx["max_or_maximum"]("maximum")),
        "min": ("min", S(lambda self, dim=None, keepdim=False: None), fx["max_or_maximum"]("minimum")),
        "amax": ("amax", S(lambda self, dim, keepdim=False: None), fx["one_dim"]),
        "amin": ("amin", S(lambda self, dim, keepdim=False: None), fx["one_dim"]),
        "argmax": ("argmax", S(lambda self, dim=None, keepdim=False: None), None),
        "argmin": ("argmin", S(lambda self, dim=None, keepdim=False: None), None),
        "var": ("var", S(lambda self, dim=None, unbiased=None, keepdim=False, *, correction=None: None), fx["var_std"]),
        "std": ("std", S(lambda self, dim=None, unbiased=None, keepdim=False, *, correction=None: None), fx["var_std"]),
        "norm": ("norm", S(lambda self, p="fro", dim=None, keepdim=False, dtype=None: None), fx["norm_fix"]),
        "expand": ("expand", S(lambda self, *sizes: None), fx["varargs"]("sizes")),
        "transpose": ("transpose", S(lambda self, dim0, dim1: None), None),
        "unsqueeze": ("unsqueeze", S(lambda self, dim: None), None),
        "squeeze": ("squeeze", S(lambda self, dim=None: None), None),
        "contiguous": ("identity", S(lambda self, memory_format=None: None), None),
        "size": ("size", S(lambda self, dim=None: None), None),
        "dim": ("getattr", S(lambda self: None), fx["dim_method"]),
        "sum": ("sum", S(lambda self, dim=None, keepdim=False, dtype=None: None), fx["dtype_none"]),
        "mean": ("mean", S(lambda self, dim=None, keepdim=False, dtype=None: None), fx["dtype_none"]),
    }


def _elementwise_tables(torch, F) -> tuple[dict, dict]:
    """(functions, methods) of the registry's elementwise activations: each torch name as torch.X and F.X
    (input, its params, inplace=False, *, out=None) and as the tensor methods X and X_ (self, its params)."""
    funcs, methods = {}, {}
    kw, pk = inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name, op in ELEMENTWISE.items():
        params = [p for p in op.sig.parameters.values() if p.name != "input"]
        fsig = inspect.Signature([inspect.Parameter("input", pk), *params,
                                  inspect.Parameter("inplace", pk, default=False),
                                  inspect.Parameter("out", kw, default=None)])
        msig = inspect.Signature([inspect.Parameter("self", pk), *params])
        for t in op.method.torch:
            for ns in (torch, F):
                if hasattr(ns, t):
                    funcs[getattr(ns, t)] = (name, fsig, fx["no_out"])
            for m in (t, t + "_"):
                if hasattr(torch.Tensor, m):
                    methods[m] = (name, msig, None)
    return funcs, methods


def _tables() -> tuple[dict, dict]:
    import torch
    import torch.nn.functional as F

    funcs, methods = _elementwise_tables(torch, F)
    funcs.update(_function_table(torch, F))  # written entries win over generated ones
    methods.update(_method_table())
    return funcs, methods


class _LazyTable(dict):
    """Filled on first use, so that importing mpcrt.nn does not import torch."""

    def __init__(self, which: int):
        super().__init__()
        self.which = which
        self.filled = False

    def get(self, k, default=None):
        if not self.filled:
            self.update(_tables()[self.which])
            self.filled = True
        return super().get(k, default)


FUNCTIONS = _LazyTable(0)
METHODS = _LazyTable(1)

"""Argument checks and rewrites of the tracer's torch tables (`fx_table`).

Each fix is fix(tracer, fx node, bound arguments) -> None (the arguments, possibly
edited in place, go to the table's op), an (op, arguments) pair, or an IR value (the
fix emitted the nodes itself). `FIXES` names them for the tables.
"""
from __future__ import annotations

import math

from mpcrt.nn.fx_args import (
    MASK_FILL,
    adaptive_pool1d_args,
    avg_pool1d_args,
    check_maxpool,
    conv_padding,
    describe,
    implicit_softmax_dim,
    is_size,
    max_pool1d_args,
    first_int,
    resize_args,
)
from mpcrt.nn.ir import GETATTR_NAMES, UnsupportedLayerError


def no_out(tr, n, a):
    if a.pop("out", None) is not None:
        raise UnsupportedLayerError(f"out= at fx node '{n.name}'")


def softmax(tr, n, a):
    if a.get("dtype") is not None:
        raise UnsupportedLayerError(f"softmax with dtype= at fx node '{n.name}'")
    if a.get("dim") is None:
        a["dim"] = implicit_softmax_dim(tr.in_shape(n))
    return None


def maxpool(tr, n, a):
    check_maxpool(a.get("ceil_mode", False), a.get("return_indices", False), describe(n), n.name)


def conv(tr, n, a):
    w = getattr(a.get("weight"), "meta", {}).get("tensor_meta")
    if isinstance(a.get("padding"), str):
        if w is None:
            raise UnsupportedLayerError(f"conv2d with padding={a['padding']!r} and unknown weight shape at fx node "
                                        f"'{n.name}'")
        d = a.get("dilation", 1)
        d = (d, d) if isinstance(d, int) else d
        a["padding"] = conv_padding(a["padding"], tuple(w.shape[2:]), d, describe(n), n.name)


def div(tr, n, a):
    if a.pop("rounding_mode", None) is not None:
        raise UnsupportedLayerError(f"division with rounding_mode at fx node '{n.name}'")


def varargs(name):
    def fix(tr, n, a):
        v = a.pop(name)
        if len(v) == 1 and isinstance(v[0], (tuple, list)):
            v = v[0]
        a[name] = list(v)
    return fix


def sdpa(tr, n, a):
    a["input"] = a.pop("query")
    if a.pop("dropout_p") not in (0, 0.0) or a.pop("enable_gqa"):
        raise UnsupportedLayerError(f"scaled_dot_product_attention with dropout or enable_gqa at fx node '{n.name}'")
    m = a["attn_mask"]
    tm = getattr(m, "meta", {}).get("tensor_meta") if m is not None else None
    if m is not None and (tm is None or not tm.dtype.is_floating_point):
        raise UnsupportedLayerError(f"scaled_dot_product_attention with a boolean (or non-tensor) attn_mask at fx node "
                                    f"'{n.name}': pass an additive float mask (0 where attending, -inf elsewhere, as "
                                    "nn.Transformer.generate_square_subsequent_mask makes), or is_causal=True")
    if a["scale"] is not None and not (public_number(a["scale"]) or is_size(a["scale"])):
        raise UnsupportedLayerError(f"scaled_dot_product_attention with a non-constant scale at fx node '{n.name}'")


def dim_method(tr, n, a):  # x.dim() -> getattr ndim
    return ("getattr", {"input": a["input"], "name": "ndim"})


def getattr_fix(tr, n, a):
    if a["name"] not in GETATTR_NAMES:
        raise UnsupportedLayerError(f"reading attribute .{a['name']} at fx node '{n.name}' (allowed: "
                                    f"{', '.join(GETATTR_NAMES)})")


def getitem_fix(tr, n, a):
    from torch.fx import Node

    idx = a["index"]
    src = tr.ref_of.get(a["input"]) if isinstance(a["input"], Node) else None
    if isinstance(src, list) and isinstance(idx, int) and -len(src) <= idx < len(src):
        return {"value": src[idx]}  # a part of a layer's tuple output (LSTM's (output, (h, c))): no node
    parts = idx if isinstance(idx, tuple) else (idx,)

    for p in parts:  # a list of literal integers (x[:, [-1], :]) picks public positions: allowed
        literal = isinstance(p, list) and p and all(isinstance(i, int) and not isinstance(i, bool) for i in p)
        if (isinstance(p, list) and not literal) or (isinstance(p, Node) and p.meta.get("tensor_meta") is not None):
            raise UnsupportedLayerError(f"advanced (tensor, or list of non-literal) indexing at fx node '{n.name}'")
    if sum(isinstance(p, list) for p in parts) > 1:
        raise UnsupportedLayerError(f"indexing by more than one list at fx node '{n.name}' (one list of positions)")


def relu6(tr, n, a):  # F.relu6(x) = hardtanh(x, 0, 6)
    return ("hardtanh", {"input": a["input"], "min_val": 0.0, "max_val": 6.0})


def public_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def clamp(tr, n, a):
    if a.pop("out", None) is not None:
        raise UnsupportedLayerError(f"out= at fx node '{n.name}'")
    if not (public_number(a.get("min")) and public_number(a.get("max"))):
        raise UnsupportedLayerError(f"clamp by tensor bounds at fx node '{n.name}' (public numbers only)")
    if a.get("min") is None and a.get("max") is None:
        raise UnsupportedLayerError(f"clamp without bounds at fx node '{n.name}'")
    return ("clamp", {"input": a["input"], "min": a.get("min"), "max": a.get("max")})


def clamp_min(tr, n, a):
    return clamp(tr, n, {"input": a["input"], "min": a["min"]})


def clamp_max(tr, n, a):
    return clamp(tr, n, {"input": a["input"], "max": a["max"]})


def pow_(tr, n, a):
    if a.pop("out", None) is not None:
        raise UnsupportedLayerError(f"out= at fx node '{n.name}'")
    e, base = a["exponent"], a["input"]
    if is_size(base) and public_number(e):  # e.g. head_dim ** -0.5: public arithmetic on sizes
        return ("pow", {"input": base, "exponent": float(e) if not float(e).is_integer() else int(e)})
    if not (isinstance(e, (int, float)) and not isinstance(e, bool) and float(e).is_integer() and 0 <= e <= 64):
        raise UnsupportedLayerError(f"power with exponent {e!r} at fx node '{n.name}' (a public integer in 0..64 only)")
    if public_number(base):
        raise UnsupportedLayerError(f"a number raised to a tensor power at fx node '{n.name}'")
    return ("pow", {"input": base, "exponent": int(e)})


def masked_fill(tr, n, a):
    """x.masked_fill(mask, value) as where(mask, value, x): a mask from the model's buffers (nanoGPT's
    causal mask) is public; value -inf fills with MASK_FILL (+inf with -MASK_FILL): exp() of it is 0
    under MPC too."""
    v = a["value"]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isinf(v):
        v = MASK_FILL if v < 0 else -MASK_FILL
    elif not public_number(v) and not hasattr(v, "op"):
        raise UnsupportedLayerError(f"masked_fill with value {v!r} at fx node '{n.name}' (a number or a tensor)")
    return ("where", {"condition": a["mask"], "input": v, "other": a["input"]})


def sqrt_size(tr, n, a):
    """math.sqrt of a size (1.0 / math.sqrt(k.size(-1)), nanoGPT's attention scale): public arithmetic."""
    if not is_size(a["input"]):
        raise UnsupportedLayerError(f"math.sqrt of a tensor at fx node '{n.name}': use torch.sqrt (math.sqrt "
                                    "applies to sizes only)")
    return ("pow", {"input": a["input"], "exponent": 0.5})


def square(tr, n, a):
    return ("pow", {"input": a["input"], "exponent": 2})


def one_d(op2d, build):
    """F.*1d as the 2-d op on (N, C, 1, L) (Tracer._emit_1d); build(tr, n, a) gives the
    2-d op's other arguments."""
    def fix(tr, n, a):
        what = describe(n)
        shape = tr.in_shape(n)
        if shape is not None and len(shape) != 3:
            raise UnsupportedLayerError(f"{what} on a {len(shape)}-d input at fx node '{n.name}' (batched (N, C, L) "
                                        f"only)")
        return tr._emit_1d(n, tr.enc(a["input"], n), op2d, what, **build(tr, n, a))
    return fix


def conv1d(tr, n, a):
    w = a["weight"]
    wm = getattr(w, "meta", {}).get("tensor_meta")
    if wm is None or len(wm.shape) != 3:
        raise UnsupportedLayerError(f"conv1d with a weight of unknown shape at fx node '{n.name}'")
    pad = a.get("padding", 0)
    pad = conv_padding(pad, (int(wm.shape[2]),), (first_int(a.get("dilation", 1)),), describe(n), n.name)[0] \
        if isinstance(pad, str) else first_int(pad)
    w4 = tr.emit("unsqueeze", {"input": tr.enc(w, n), "dim": 2}, n.name + ":weight2d", describe(n))
    b = a.get("bias")
    return {"weight": w4, "bias": None if b is None else tr.enc(b, n), "stride": [1, first_int(a.get("stride", 1))],
            "padding": [0, int(pad)], "dilation": [1, first_int(a.get("dilation", 1))],
            "groups": int(a.get("groups", 1))}


def max_pool1d(tr, n, a):
    check_maxpool(False, a.get("return_indices", False), describe(n), n.name)
    return max_pool1d_args(a["kernel_size"], a.get("stride"), a.get("padding", 0), a.get("dilation", 1),
                            a.get("ceil_mode", False))


def avg_pool1d(tr, n, a):
    return avg_pool1d_args(a["kernel_size"], a.get("stride"), a.get("padding", 0), a.get("ceil_mode", False),
                            a.get("count_include_pad", True))


def adaptive_avg_pool1d(tr, n, a):
    return adaptive_pool1d_args(a["output_size"])


def compare_as(op):
    def fix(tr, n, a):
        return ("compare", {"input": a["input"], "other": a["other"], "op": op})
    return fix


def to_bool(tr, n, a):  # mask.bool(): the comparison mask != 0 (0/1 under MPC, as every comparison)
    return ("compare", {"input": a["input"], "other": 0.0, "op": "ne"})


def cast(tr, n, a):
    dt = a.get("dtype")
    import torch

    if dt is not None and dt not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise UnsupportedLayerError(f"{describe(n)} to {dt} at fx node '{n.name}' (floating dtypes only)")
    return ("cast", {"input": a["input"]})


def max_or_maximum(op2):
    def fix(tr, n, a):
        from torch.fx import Node

        other = a.get("dim")
        if isinstance(other, Node):  # torch.max(x, y): elementwise
            return (op2, {"input": a["input"], "other": other})
        return None
    return fix


def one_dim(tr, n, a):
    dim = a.get("dim")
    if isinstance(dim, (tuple, list)):
        if len(dim) != 1:
            raise UnsupportedLayerError(f"{describe(n)} over several dims at fx node '{n.name}' (one dim only: "
                                        "chain them, e.g. x.amax(-1).amax(-1) for dims (-2, -1))")
        a["dim"] = int(dim[0])


def var_std(tr, n, a):
    dim, unbiased, corr = a.get("dim"), a.pop("unbiased", None), a.get("correction")
    if isinstance(dim, bool):  # torch.var(x, False): the old positional unbiased
        unbiased, dim = dim, None
    if corr is None:
        corr = 1 if unbiased is None or unbiased else 0
    a.update(dim=dim, correction=int(corr))


def norm_fix(tr, n, a):
    p = a.pop("p", "fro")
    if p not in (2, 2.0, "fro", None) or a.pop("dtype", None) is not None:
        raise UnsupportedLayerError(f"{describe(n)} with p={p!r} at fx node '{n.name}' (the 2-norm only)")


def normalize_fix(tr, n, a):
    if a.pop("p", 2.0) not in (2, 2.0) or a.pop("out", None) is not None:
        raise UnsupportedLayerError(f"normalize with p != 2 or out= at fx node '{n.name}'")


def t_fix(tr, n, a):
    shape = tr.in_shape(n)
    if shape is not None and len(shape) < 2:
        return ("identity", {"input": a["input"]})
    return ("transpose", {"input": a["input"], "dim0": 0, "dim1": 1})


def pad_fix(tr, n, a):
    mode, pad = a.pop("mode", "constant"), a.get("pad")
    if mode != "constant" or not all(isinstance(p, int) and p >= 0 for p in pad):
        raise UnsupportedLayerError(f"pad with mode={mode!r} or negative widths at fx node '{n.name}' (constant, >= 0)")
    if a.get("value") is None:
        a["value"] = 0.0


def interpolate(tr, n, a):
    return ("resize", {"input": a["input"], **resize_args(
        n, a.get("mode", "nearest"), a.get("align_corners"), a.get("scale_factor"),
        a.get("recompute_scale_factor"), a.get("antialias"), "interpolate")})


def instance_norm(tr, n, a):
    if not a.get("use_input_stats", True):
        raise UnsupportedLayerError(f"instance_norm with use_input_stats=False at fx node '{n.name}'")
    shape = tr.in_shape(n)
    if shape is None or len(shape) < 3:
        raise UnsupportedLayerError(f"instance_norm on an input of unknown or unbatched shape at fx node '{n.name}'")
    return ("group_norm", {"input": a["input"], "num_groups": int(shape[1]), "weight": a.get("weight"),
                           "bias": a.get("bias"), "eps": a.get("eps", 1e-5)})


def dtype_none(tr, n, a):
    if a.get("dtype") is not None or a.get("out") is not None:
        raise UnsupportedLayerError(f"dtype=/out= at fx node '{n.name}'")


def div_no_out(tr, n, a):
    div(tr, n, a)
    no_out(tr, n, a)


FIXES = dict(no_out=no_out, softmax=softmax, sdpa=sdpa, maxpool=maxpool, conv=conv, div=div, varargs=varargs,
             dim_method=dim_method, getattr_fix=getattr_fix, getitem_fix=getitem_fix, relu6=relu6, clamp=clamp,
             clamp_min=clamp_min, clamp_max=clamp_max, pow=pow_, sqrt_size=sqrt_size, square=square,
             masked_fill=masked_fill,
             instance_norm=instance_norm,
             compare_as=compare_as, cast=cast, to_bool=to_bool, max_or_maximum=max_or_maximum, one_dim=one_dim,
             var_std=var_std,
             norm_fix=norm_fix, normalize_fix=normalize_fix, t_fix=t_fix, pad_fix=pad_fix, interpolate=interpolate,
             conv1d=one_d("conv2d", conv1d), max_pool1d=one_d("max_pool2d", max_pool1d),
             avg_pool1d=one_d("avg_pool2d", avg_pool1d), adaptive_avg_pool1d=one_d("adaptive_avg_pool2d",
                                                                                    adaptive_avg_pool1d),
             dtype_none=dtype_none, div_no_out=div_no_out)

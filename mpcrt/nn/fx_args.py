"""torch arguments as IR arguments: conversions the tracer's module import and its fixes share."""
from __future__ import annotations

import numpy as np

from mpcrt.nn.ir import UnsupportedLayerError

MASK_FILL = -1e9  # a weight's -inf (an attention mask's fill): exp() of it is 0 under MPC too; 1e9 < 2^33 fits f <= 28


def as_f64(t):
    """A torch tensor (a module's parameter) as a float64 numpy array; None stays None."""
    return None if t is None else t.detach().double().numpy()


def is_size(v) -> bool:
    """An fx node computing a public number from sizes (x.shape[-1], x.size(1) // 2, ...)."""
    from torch.fx import Node

    return isinstance(v, Node) and v.meta.get("type") in (int, float, bool)


def first_int(v) -> int:
    v = v[0] if isinstance(v, (tuple, list)) else v
    return int(v) if not hasattr(v, "op") else static_int(v)


def size_dim(n, src=None):
    """(source node, dim or None) when fx node n reads a size of src (any node if src is None): x.size(d),
    x.size()[d], x.shape[d] give d, x.size() and x.shape give None; else (None, None)."""
    op, name = getattr(n, "op", None), getattr(getattr(n, "target", None), "__name__", getattr(n, "target", None))
    if op == "call_method" and name == "size" and n.args and (src is None or n.args[0] is src):
        d = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        return n.args[0], d if isinstance(d, int) else None
    if op == "call_function" and name == "getattr" and n.args[1:] == ("shape",) and (src is None or n.args[0] is src):
        return n.args[0], None
    if op == "call_function" and name == "getitem" and len(n.args) == 2 and isinstance(n.args[1], int):
        whole, d = size_dim(n.args[0], src)
        if whole is not None and d is None:
            return whole, n.args[1]
    return None, None


def in_place_method(n) -> bool:
    """An fx call of an in-place tensor method (x.add_(y), x.relu_()): torch's trailing underscore."""
    name = str(getattr(n, "target", ""))
    return getattr(n, "op", None) == "call_method" and name.endswith("_") and not name.startswith("_")


def only_feeding(nodes: list, sinks: set, eligible) -> set:
    """The fx nodes (of `nodes`, in graph order; those with eligible(n)) whose every user is in `sinks` or
    among them: what only the sinks read, so it need not be imported."""
    out: set = set()
    for n in reversed(nodes):
        if n not in sinks and eligible(n) and n.users and all(u in sinks or u in out for u in n.users):
            out.add(n)
    return out


def static_int(n) -> int:
    """The value of a size read off a traced tensor (x.size(2) as a pool's kernel): fixed at import."""
    src, d = size_dim(n)
    tm = getattr(src, "meta", {}).get("tensor_meta") if src is not None else None
    if d is None or not hasattr(tm, "shape"):
        raise UnsupportedLayerError(f"a number computed at fx node '{getattr(n, 'name', n)}' where a fixed "
                                    "integer is needed (a kernel size, a stride): use a number or x.size(d)")
    return int(tm.shape[d])


def stride_1d(stride, k: int) -> int:
    return k if stride is None or stride in ((), []) else first_int(stride)


def max_pool1d_args(kernel_size, stride, padding, dilation, ceil_mode) -> dict:
    """max_pool2d's arguments for a 1-d max pool on (N, C, 1, L)."""
    k = first_int(kernel_size)
    return {"kernel_size": [1, k], "stride": [1, stride_1d(stride, k)], "padding": [0, first_int(padding)],
            "dilation": [1, first_int(dilation)], "ceil_mode": bool(ceil_mode)}


def avg_pool1d_args(kernel_size, stride, padding, ceil_mode, count_include_pad) -> dict:
    """avg_pool2d's arguments for a 1-d average pool on (N, C, 1, L)."""
    k = first_int(kernel_size)
    return {"kernel_size": [1, k], "stride": [1, stride_1d(stride, k)], "padding": [0, first_int(padding)],
            "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad), "divisor_override": None}


def adaptive_pool1d_args(output_size) -> dict:
    return {"output_size": [1, None if output_size is None else first_int(output_size)]}


def resize_args(n, mode: str, align_corners, scale_factor, recompute, antialias, what: str) -> dict:
    """The resize op's arguments for nn.Upsample / F.interpolate: the output size as fx
    recorded it, and the model's scale factors where torch indexes by them."""
    tm = n.meta.get("tensor_meta")
    if tm is None or len(tm.shape) != 4 or mode not in ("nearest", "nearest-exact", "bilinear") or antialias:
        raise UnsupportedLayerError(f"{what} with mode={mode!r} (or antialias, or not 4-d) at fx node '{n.name}' "
                                    "(nearest, nearest-exact and bilinear on NCHW)")
    scale = None
    if scale_factor is not None and not recompute:
        sf = scale_factor
        scale = [float(v) for v in sf] if isinstance(sf, (tuple, list)) else [float(sf)] * 2
    return {"size": [int(v) for v in tm.shape[-2:]], "mode": mode, "align_corners": align_corners, "scale": scale}


def bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def conv_padding(padding, kernel, dilation, what, name) -> list:
    if padding == "valid":
        return [0, 0]
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedLayerError(f"{what} with padding='same' and an even kernel (asymmetric padding) at fx "
                                            f"node '{name}'")
            out.append(total // 2)
        return out
    if isinstance(padding, int):
        return [padding, padding]
    return [int(p) for p in padding]


def check_maxpool(ceil_mode, return_indices, what, name) -> None:
    if return_indices:
        raise UnsupportedLayerError(f"{what} with return_indices=True at fx node '{name}' (indices would reveal data)")


def implicit_softmax_dim(shape) -> int:
    nd = len(shape) if shape is not None else 2
    return 0 if nd in (0, 1, 3) else 1


def describe(n) -> str:
    t = n.target
    if n.op == "call_method":
        return f"tensor method .{t}()"
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or repr(t)
    if "boolean_dispatch" in name:
        name = getattr(t, "__name__", name)
    if mod == "_operator":
        mod = "operator"
    if name.startswith("_VariableFunctionsClass."):  # torch.sort and friends (C builtins)
        mod, name = "torch", name.split(".", 1)[1]
    return f"{mod + '.' if mod else ''}{name}"


#: functions and modules of optional libraries that are the identity in eval mode (by name:
#: the library need not be installed), with the functions' positional parameters
EVAL_IDENTITIES = {"torchvision.ops.stochastic_depth.stochastic_depth": ("input", "p", "mode", "training")}
EVAL_IDENTITY_MODULES = ("torchvision.ops.stochastic_depth.StochasticDepth",)


def qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def table_key(fn):
    try:
        hash(fn)
        return fn
    except TypeError:  # pragma: no cover
        return id(fn)

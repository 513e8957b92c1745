"""The tracer's import of torch.nn modules (fx call_module nodes) as IR nodes.

`import_module(tracer, node)` tries, in order, transformer blocks, layers with weights,
the registry's elementwise activations (any nn module whose class is one of theirs:
its attributes named by the record's params are the node's arguments), the other
nonlinear layers, and pools/shape layers; anything else is an UnsupportedLayerError
listing what is supported. `plan_folds` chooses the BatchNorms folded into a Conv/Linear.
"""
from __future__ import annotations

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.nn.conv_transpose import import_conv_transpose
from mpcrt.nn.embedding import import_embedding
from mpcrt.nn.recurrent import import_recurrent
from mpcrt.nn.fx_args import (
    EVAL_IDENTITY_MODULES,
    adaptive_pool1d_args,
    avg_pool1d_args,
    bn_affine,
    check_maxpool,
    conv_padding,
    implicit_softmax_dim,
    max_pool1d_args,
    as_f64,
    first_int,
    qualname,
    resize_args,
)
from mpcrt.nn.ir import UnsupportedLayerError
from mpcrt.nn.ops import ELEMENTWISE, module_classes, supported
from mpcrt.nn.transformer import encoder_layer, layer_norm, mha, no_masks


def import_module(tr, n) -> dict:
    """The IR value of fx node `n`, a call of the module n.target."""
    import torch.nn as tnn

    mod = tr.modules[n.target]
    what = f"{type(mod).__module__}.{type(mod).__name__} (module '{n.target}')"
    if isinstance(mod, tnn.MultiheadAttention):
        return [mha(tr, n, mod, str(n.target), what), None]  # (output, weights): [0] only
    if isinstance(mod, (tnn.TransformerEncoderLayer, tnn.TransformerEncoder)):
        return _transformer(tr, n, mod, what)
    if isinstance(mod, (tnn.LSTM, tnn.GRU, tnn.RNN)):
        return import_recurrent(tr, n, mod, str(n.target), what)
    if isinstance(mod, (tnn.ConvTranspose1d, tnn.ConvTranspose2d)) and (
            (set(n.kwargs) == {"output_size"} and len(n.args) == 1) or (not n.kwargs and len(n.args) == 2)):
        # forward(x, output_size): the traced output's size gives the output_padding it chose
        return import_conv_transpose(tr, n, mod, tr.enc(n.args[0], n), _layer_weights(tr, n, mod, str(n.target)),
                                     what, sized=True)
    if n.kwargs or len(n.args) != 1:
        raise UnsupportedLayerError(f"{what} at fx node '{n.name}' called with {len(n.args)} positional and "
                                    f"{len(n.kwargs)} keyword arguments (one input expected)")
    x = tr.enc(n.args[0], n)

    def go(op, **kw):
        return tr.emit(op, {"input": x, **kw}, n.name, what)

    for step in (_weighted, _elementwise, _nonlinear, _pool_or_shape):
        out = step(tr, n, mod, x, go, str(n.target), what)
        if out is not None:
            return out
    hint = MODULE_HINTS.get(type(mod).__name__, "")
    raise UnsupportedLayerError(
        f"unsupported layer {what} at fx node '{n.name}'{'; ' + hint if hint else ''}; supported layers: "
        f"{', '.join(supported()['modules'])}"
    )


# What to write instead, for layers users bring that have no MPC form here
_CELL = "run the whole sequence through nn.LSTM / nn.GRU / nn.RNN (they import, unrolled over its length)"
MODULE_HINTS = {
    "LSTMCell": _CELL, "GRUCell": _CELL, "RNNCell": _CELL,
    "AdaptiveMaxPool1d": "nn.MaxPool1d with kernel_size = stride = input length / output length imports",
    "Bilinear": "write it as nn.Linear layers and a product of shared tensors",
}


def _transformer(tr, n, mod, what: str) -> dict:
    """nn.TransformerEncoderLayer, or nn.TransformerEncoder as its layers and final norm."""
    import torch.nn as tnn

    no_masks(n, what)
    x = tr.enc(n.args[0], n)
    shape = tr.in_shape(n)
    if isinstance(mod, tnn.TransformerEncoderLayer):
        return encoder_layer(tr, n, mod, x, shape, str(n.target), what, n.name)
    for i, layer in enumerate(mod.layers):
        last = i == len(mod.layers) - 1 and mod.norm is None
        x = encoder_layer(tr, n, layer, x, shape, f"{n.target}.layers.{i}", what,
                          n.name if last else f"{n.name}:layer{i}")
    if mod.norm is not None:
        x = layer_norm(tr, x, mod.norm, f"{n.target}.norm", n.name, what)
    return x


def _weighted(tr, n, mod, x, go, t: str, what: str) -> dict | None:
    """Linear, Conv1d/2d (a BatchNorm folded in where planned), ConvTranspose1d/2d, Embedding (on the input)
    and BatchNorm as an affine layer."""
    import torch.nn as tnn

    if isinstance(mod, tnn.Embedding):  # on the model's input (embedding.token_input checked): one-hot @ W
        return import_embedding(tr, n, mod, x, t, what)
    if isinstance(mod, tnn.Linear):
        w, b, t = _layer_weights(tr, n, mod, t)
        return go("linear", weight=tr.param(w, t + ".weight"), bias=None if b is None else tr.param(b, t + ".bias"))
    if isinstance(mod, tnn.Conv2d):
        _check_conv(mod, what, n)
        pad = conv_padding(mod.padding, mod.kernel_size, mod.dilation, what, n.name)
        w, b, t = _layer_weights(tr, n, mod, t)
        return go("conv2d", weight=tr.param(w, t + ".weight"), bias=None if b is None else tr.param(b, t + ".bias"),
                  stride=list(mod.stride), padding=pad, dilation=list(mod.dilation), groups=int(mod.groups))
    if isinstance(mod, (tnn.Conv1d, tnn.MaxPool1d, tnn.AvgPool1d, tnn.AdaptiveAvgPool1d)):
        return _module_1d(tr, n, mod, x, t, what)
    if isinstance(mod, (tnn.ConvTranspose1d, tnn.ConvTranspose2d)):
        return import_conv_transpose(tr, n, mod, x, _layer_weights(tr, n, mod, t), what)
    if isinstance(mod, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
        if mod.running_mean is None:
            raise UnsupportedLayerError(f"{what} with track_running_stats=False at fx node '{n.name}' "
                                        "(uses batch statistics even in eval mode)")
        shape = tr.in_shape(n)
        want = (4,) if isinstance(mod, tnn.BatchNorm2d) else (2, 3)
        if shape is not None and len(shape) not in want:
            raise ShapeError(f"{what} gets a {len(shape)}-d input at fx node '{n.name}'")
        scale, shift = bn_affine(mod)
        return go("affine", scale=tr.param(scale, t + ".scale"), shift=tr.param(shift, t + ".shift"))
    return None


_MODULE_OPS: dict = {}


def _elementwise(tr, n, mod, x, go, t: str, what: str) -> dict | None:
    """A module of a registry activation (nn.GELU, nn.ReLU6 as its base nn.Hardtanh, ...): its params
    read from the module's attributes, cast to the type of the protocol function's defaults."""
    import torch.nn as tnn

    if not _MODULE_OPS:
        _MODULE_OPS.update((cls, name) for name, cls in module_classes(tnn))
    name = next((_MODULE_OPS[c] for c in type(mod).__mro__ if c in _MODULE_OPS), None)
    if name is None:
        return None
    kw = {}
    for p in list(ELEMENTWISE[name].sig.parameters.values())[1:]:
        v = getattr(mod, p.name)
        kw[p.name] = type(p.default)(v) if isinstance(p.default, (bool, int, float, str)) else v
    if name == "celu" and not kw["alpha"] > 0:
        raise UnsupportedLayerError(f"{what} with alpha={mod.alpha} at fx node '{n.name}' (positive alpha only)")
    return go(name, **kw)


def _nonlinear(tr, n, mod, x, go, t: str, what: str) -> dict | None:
    """LeakyReLU, Softmax, LogSoftmax, PReLU and the norms (Group, Instance, Layer)."""
    import torch.nn as tnn

    if isinstance(mod, tnn.LeakyReLU):
        return go("leaky_relu", negative_slope=float(mod.negative_slope))
    if isinstance(mod, (tnn.Softmax, tnn.LogSoftmax)):
        dim = mod.dim if mod.dim is not None else implicit_softmax_dim(tr.in_shape(n))
        return go("softmax" if isinstance(mod, tnn.Softmax) else "log_softmax", dim=int(dim))
    if isinstance(mod, tnn.PReLU):
        return go("prelu", weight=tr.param(as_f64(mod.weight), t + ".weight"))
    if isinstance(mod, tnn.GroupNorm):
        return go("group_norm", num_groups=int(mod.num_groups), weight=tr.opt_param(mod.weight, t + ".weight"),
                  bias=tr.opt_param(mod.bias, t + ".bias"), eps=float(mod.eps))
    if isinstance(mod, (tnn.InstanceNorm1d, tnn.InstanceNorm2d)):
        return _instance_norm(tr, n, mod, go, t, what)
    if isinstance(mod, tnn.LayerNorm):
        return layer_norm(tr, x, mod, t, n.name, what)
    if isinstance(mod, getattr(tnn, "RMSNorm", ())):  # torch >= 2.4
        return go("rms_norm", normalized_shape=[int(v) for v in mod.normalized_shape],
                  weight=tr.opt_param(mod.weight, t + ".weight"), eps=None if mod.eps is None else float(mod.eps))
    return None


def _instance_norm(tr, n, mod, go, t: str, what: str) -> dict:
    """InstanceNorm: an affine layer of its running statistics, else group_norm with a group per channel."""
    import torch.nn as tnn

    shape = tr.in_shape(n)
    if shape is not None and len(shape) != (3 if isinstance(mod, tnn.InstanceNorm1d) else 4):
        raise ShapeError(f"{what} gets a {len(shape)}-d input at fx node '{n.name}' (batched inputs only)")
    if mod.track_running_stats and mod.running_mean is not None:  # eval mode: the running statistics
        scale, shift = bn_affine(mod)
        return go("affine", scale=tr.param(scale, t + ".scale"), shift=tr.param(shift, t + ".shift"))
    w = tr.opt_param(mod.weight, t + ".weight") if mod.affine else None
    b = tr.opt_param(mod.bias, t + ".bias") if mod.affine else None
    channels = int(shape[1]) if shape is not None else int(mod.num_features)  # torch uses the input's (affine=False)
    return go("group_norm", num_groups=channels, weight=w, bias=b, eps=float(mod.eps))


def _pool_or_shape(tr, n, mod, x, go, t: str, what: str) -> dict | None:
    """2-d pools, Upsample, Flatten, and the layers that are the identity in eval mode."""
    import torch.nn as tnn

    if isinstance(mod, tnn.Upsample):  # UpsamplingNearest2d / UpsamplingBilinear2d too
        return go("resize", **resize_args(n, str(mod.mode), mod.align_corners, mod.scale_factor,
                                           mod.recompute_scale_factor, False, what))
    if isinstance(mod, tnn.MaxPool2d):
        check_maxpool(mod.ceil_mode, mod.return_indices, what, n.name)
        return go("max_pool2d", kernel_size=tr.enc(mod.kernel_size, n), stride=tr.enc(mod.stride, n),
                  padding=tr.enc(mod.padding, n), dilation=tr.enc(mod.dilation, n), ceil_mode=bool(mod.ceil_mode))
    if isinstance(mod, tnn.AvgPool2d):
        return go("avg_pool2d", kernel_size=tr.enc(mod.kernel_size, n), stride=tr.enc(mod.stride, n),
                  padding=tr.enc(mod.padding, n), ceil_mode=bool(mod.ceil_mode),
                  count_include_pad=bool(mod.count_include_pad), divisor_override=mod.divisor_override)
    if isinstance(mod, tnn.AdaptiveAvgPool2d):
        return go("adaptive_avg_pool2d", output_size=tr.enc(mod.output_size, n))
    if isinstance(mod, tnn.AdaptiveMaxPool2d):
        return go("max_pool2d", **_adaptive_max_args(tr.in_shape(n), mod, what, n.name))
    if isinstance(mod, tnn.Flatten):
        return go("flatten", start_dim=int(mod.start_dim), end_dim=int(mod.end_dim))
    if isinstance(mod, (tnn.Unflatten, tnn.PixelShuffle, tnn.PixelUnshuffle)):
        return _reshaping(tr, n, mod, x, what)
    if isinstance(mod, (tnn.Dropout, tnn.Dropout1d, tnn.Dropout2d, tnn.Dropout3d, tnn.AlphaDropout, tnn.Identity)):
        return go("identity")
    if qualname(type(mod)) in EVAL_IDENTITY_MODULES and not mod.training:
        return go("identity")
    return None


def _reshaping(tr, n, mod, x, what: str) -> dict:
    """nn.Unflatten as a reshape; nn.PixelShuffle / PixelUnshuffle as reshape, permute, reshape (all local)."""
    import torch.nn as tnn

    shape = tr.in_shape(n)
    if shape is None or len(shape) < 2 or (not isinstance(mod, tnn.Unflatten) and len(shape) != 4):
        raise ShapeError(f"{what} at fx node '{n.name}' needs a batched input of known shape"
                         + ("" if isinstance(mod, tnn.Unflatten) else " (N, C, H, W)"))
    if isinstance(mod, tnn.Unflatten):
        dim = int(mod.dim) % len(shape)
        if dim == 0:
            raise UnsupportedLayerError(f"{what} at fx node '{n.name}' unflattens the batch dim (dim 0)")
        sizes = [int(v) for v in mod.unflattened_size]
        if -1 in sizes:  # resolved now: dim 0 keeps the one -1 (the batch is free)
            sizes[sizes.index(-1)] = int(shape[dim]) // max(1, -int(np.prod(sizes)))
        return tr.emit("reshape", {"input": x, "shape": [-1, *shape[1:dim], *sizes, *shape[dim + 1:]]}, n.name, what)
    c, h, w = (int(v) for v in shape[1:])
    r = int(mod.upscale_factor if isinstance(mod, tnn.PixelShuffle) else mod.downscale_factor)
    if isinstance(mod, tnn.PixelShuffle):  # (N, C r^2, H, W) -> (N, C, H r, W r)
        steps = ([-1, c // (r * r), r, r, h, w], [0, 1, 4, 2, 5, 3], [-1, c // (r * r), h * r, w * r])
    else:  # (N, C, H r, W r) -> (N, C r^2, H, W)
        steps = ([-1, c, h // r, r, w // r, r], [0, 1, 3, 5, 2, 4], [-1, c * r * r, h // r, w // r])
    y = tr.emit("reshape", {"input": x, "shape": steps[0]}, n.name + ":split", what)
    y = tr.emit("permute", {"input": y, "dims": steps[1]}, n.name + ":move", what)
    return tr.emit("reshape", {"input": y, "shape": steps[2]}, n.name, what)


def _adaptive_max_args(shape, mod, what: str, name: str) -> dict:
    """AdaptiveMaxPool2d as max_pool2d where each output size divides the input's (kernel = stride = ratio)."""
    out = mod.output_size if isinstance(mod.output_size, (tuple, list)) else (mod.output_size,) * 2
    if mod.return_indices or shape is None or len(shape) < 2:
        raise UnsupportedLayerError(f"{what} at fx node '{name}' with return_indices or an input of unknown shape")
    ins = [int(v) for v in shape[-2:]]
    outs = [i if o is None else int(o) for i, o in zip(ins, out)]
    if any(o <= 0 or i % o for i, o in zip(ins, outs)):
        raise UnsupportedLayerError(f"{what} at fx node '{name}': output size {tuple(outs)} does not divide the "
                                    f"input's {tuple(ins)}; use nn.MaxPool2d with a kernel and stride of your choice")
    k = [i // o for i, o in zip(ins, outs)]
    return dict(kernel_size=k, stride=k, padding=[0, 0], dilation=[1, 1], ceil_mode=False)


def _module_1d(tr, n, mod, x, t: str, what: str) -> dict:
    """Conv1d and the 1-d pools as their 2-d ops on (N, C, 1, L): unsqueeze, op, squeeze
    (the squeeze carries the fx node's name, so layer-by-layer checks see (N, C, L))."""
    import torch.nn as tnn

    shape = tr.in_shape(n)
    if shape is not None and len(shape) != 3:
        raise ShapeError(f"{what} needs an (N, C, L) input at fx node '{n.name}', got {len(shape)}-d")
    if isinstance(mod, tnn.Conv1d):
        _check_conv(mod, what, n)
        pad = conv_padding(mod.padding, mod.kernel_size, mod.dilation, what, n.name)
        w, b, t = _layer_weights(tr, n, mod, t)
        return tr._emit_1d(n, x, "conv2d", what, weight=tr.param(w[:, :, None, :], t + ".weight"),
                           bias=None if b is None else tr.param(b, t + ".bias"), stride=[1, first_int(mod.stride)],
                           padding=[0, int(pad[0])], dilation=[1, first_int(mod.dilation)], groups=int(mod.groups))
    if isinstance(mod, tnn.MaxPool1d):
        check_maxpool(mod.ceil_mode, mod.return_indices, what, n.name)
        return tr._emit_1d(n, x, "max_pool2d", what, **max_pool1d_args(
            mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode))
    if isinstance(mod, tnn.AvgPool1d):
        return tr._emit_1d(n, x, "avg_pool2d", what, **avg_pool1d_args(
            mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad))
    return tr._emit_1d(n, x, "adaptive_avg_pool2d", what, **adaptive_pool1d_args(mod.output_size))


def _layer_weights(tr, n, mod, t: str) -> tuple:
    """(weight, bias or None, parameter name) of a Linear/Conv module, with a BatchNorm
    folded in where _plan_folds chose to."""
    w, b = as_f64(mod.weight), as_f64(mod.bias)
    if n in tr.folded:
        w, b, bn_name = tr.folded[n]
        t = f"{t}+{bn_name}"
    return w, b, t


def _check_conv(mod, what: str, n) -> None:
    if mod.padding_mode != "zeros":
        raise UnsupportedLayerError(f"{what} with padding_mode={mod.padding_mode!r} at fx node '{n.name}' (only "
                                    f"'zeros')")


# --------------------------------------------------------- BN folding
def plan_folds(tr, gm) -> dict:
    """{conv/linear fx node: (weight, bias)} for BatchNorms folded into them; the BN nodes alias them."""
    import torch.nn as tnn

    folded = {}
    tr.alias = {}
    for n in gm.graph.nodes:
        if n.op != "call_module" or not isinstance(tr.modules[n.target], (tnn.BatchNorm1d, tnn.BatchNorm2d)):
            continue
        bn = tr.modules[n.target]
        prev = n.args[0] if n.args else None
        if (bn.running_mean is None or getattr(prev, "op", None) != "call_module" or len(prev.users) != 1
                or prev in folded):
            continue
        layer = tr.modules[prev.target]
        ok = (isinstance(bn, tnn.BatchNorm2d) and isinstance(layer, (tnn.Conv2d, tnn.ConvTranspose2d))) or (
            isinstance(bn, tnn.BatchNorm1d) and isinstance(layer, tnn.Linear) and len(tr.in_shape(n) or ()) == 2
        ) or (isinstance(bn, tnn.BatchNorm1d) and isinstance(layer, (tnn.Conv1d, tnn.ConvTranspose1d)))
        if not ok:
            continue
        scale, shift = bn_affine(bn)
        w = layer.weight.detach().double().numpy()
        if isinstance(layer, (tnn.ConvTranspose1d, tnn.ConvTranspose2d)):  # (C_in, C_out / g, k...): out = g co
            g, cog = layer.groups, w.shape[1]
            per = scale.reshape(g, cog)[np.arange(w.shape[0]) // (w.shape[0] // g)]  # (C_in, C_out / g)
            w = w * per.reshape(per.shape + (1,) * (w.ndim - 2))
        else:
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(scale.shape[0])
        b = b * scale + shift
        folded[prev] = (w, b, n.target)
        tr.alias[n] = prev
    return folded

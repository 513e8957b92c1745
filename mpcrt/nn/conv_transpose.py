"""nn.ConvTranspose1d/2d imported as one ordinary convolution and a pixel shuffle.

A transposed convolution with stride s scatters each input pixel over the output with
step s. Written as a gather, output o (with the padding p added back, o + p = q s + r)
only meets the kernel taps t = r + j s, at input q - j: so for each phase r (s_h s_w of
them) the output rows q s + r are an ordinary convolution of the input with the
sub-kernel w[r + j s] (j = 0 .. J - 1, J = ceil(k / s), zero taps past k), flipped, the
input zero-padded by J - 1 on each side. The import stacks the s_h s_w sub-kernels as
output channels of one conv2d weight (grouped as torch groups them), so the shared model
runs one Beaver convolution of the input as it is, then interleaves the phases (reshape,
permute, reshape: local) and crops the padding p (indexing: local).

Cost: one convolution of the unexpanded input: its opening is |x| + |weight| words, its
multiply-adds those of the transposed convolution (plus zero taps where s does not
divide k), where zero-inserting the input (the textbook lowering) would open s_h s_w
times the input and spend s_h s_w times the multiply-adds. No new protocol: the weight
is masked once like any conv2d weight, and the error is the convolution's.
Derivation: the sub-pixel form of W. Shi et al., "Is the deconvolution layer the same
as a convolutional layer?" (arXiv:1609.07009), checked at import against torch (the
tracer's self-check) and in tests/test_nn.py.
"""
from __future__ import annotations

import numpy as np

from mpcrt.nn.ir import UnsupportedLayerError
from mpcrt.errors import ShapeError


def stacked_weight(w: np.ndarray, bias: np.ndarray | None, stride: tuple[int, int], groups: int):
    """(conv2d weight, conv2d bias or None, (J_h, J_w)) of a ConvTranspose2d weight w (C_in, C_out/g, kh, kw):
    output channel ((g sh + rh) sw + rw) C_out/g + co holds phase (rh, rw)'s flipped sub-kernel."""
    cin, cog, kh, kw = w.shape
    sh, sw = stride
    jh, jw = -(-kh // sh), -(-kw // sw)
    wp = np.zeros((cin, cog, jh * sh, jw * sw))
    wp[:, :, :kh, :kw] = w
    a = wp.reshape(groups, cin // groups, cog, jh, sh, jw, sw)[:, :, :, ::-1, :, ::-1, :]  # tap j s + r; j flipped
    v = a.transpose(0, 4, 6, 2, 1, 3, 5).reshape(groups * sh * sw * cog, cin // groups, jh, jw)
    b = None
    if bias is not None:
        b = np.broadcast_to(bias.reshape(groups, 1, 1, cog), (groups, sh, sw, cog)).reshape(-1)
    return np.ascontiguousarray(v), b, (jh, jw)


def _check(mod, what: str, name: str) -> None:
    if mod.padding_mode != "zeros":
        raise UnsupportedLayerError(f"{what} with padding_mode={mod.padding_mode!r} at fx node '{name}' (only 'zeros')")
    if any(int(d) != 1 for d in mod.dilation):
        raise UnsupportedLayerError(f"{what} with dilation={tuple(mod.dilation)} at fx node '{name}' (dilation 1 only; "
                                    "nn.Upsample(scale_factor=stride) and a dilated nn.Conv2d import)")
    if isinstance(mod.padding, str):
        raise UnsupportedLayerError(f"{what} with padding={mod.padding!r} at fx node '{name}' (numbers only)")


def import_conv_transpose(tr, n, mod, x: dict, weights: tuple, what: str, sized: bool = False) -> dict:
    """The IR of nn.ConvTranspose1d (on (N, C, L)) or nn.ConvTranspose2d (on (N, C, H, W)) at fx node n;
    weights: (weight, bias or None, parameter name), a following BatchNorm folded in where planned.
    sized: called with output_size, whose output_padding is read off the traced output's size."""
    import torch.nn as tnn

    _check(mod, what, n.name)
    one_d = isinstance(mod, tnn.ConvTranspose1d)
    shape = tr.in_shape(n)
    if shape is None or len(shape) != (3 if one_d else 4):
        got = "an input of unknown shape" if shape is None else f"a {len(shape)}-d input"
        raise ShapeError(f"{what} needs an (N, C, {'L' if one_d else 'H, W'}) input at fx node '{n.name}', got {got}")
    w, b, t = weights
    lift = (lambda v, fill: (fill, int(v[0]))) if one_d else (lambda v, fill: (int(v[0]), int(v[1])))
    if one_d:
        w, x = w[:, :, None, :], tr.emit("unsqueeze", {"input": x, "dim": 2}, n.name + ":2d", what)
    stride, pad, out_pad = lift(mod.stride, 1), lift(mod.padding, 0), lift(mod.output_padding, 0)
    ins = (1, int(shape[-1])) if one_d else (int(shape[-2]), int(shape[-1]))
    g = int(mod.groups)
    v, vb, js = stacked_weight(w, b, stride, g)
    k = w.shape[-2:]
    outs = [(i - 1) * s - 2 * p + kk + op for i, s, p, kk, op in zip(ins, stride, pad, k, out_pad)]
    tm = n.meta.get("tensor_meta")
    if sized and hasattr(tm, "shape"):  # output_size chose the output_padding (torch checks it is < stride)
        got = (1, int(tm.shape[-1])) if one_d else (int(tm.shape[-2]), int(tm.shape[-1]))
        outs, out_pad = list(got), tuple(v - o + op for v, o, op in zip(got, outs, out_pad))
    qs, rights = [], []
    for i, s, p, j, o in zip(ins, stride, pad, js, outs):
        extra = max(0, -(-(p + o) // s) - (i + j - 1))  # output_padding past the last full phase row
        qs.append(i + j - 1 + extra)
        rights.append(j - 1 + extra)
    emit = lambda op, args, tag: tr.emit(op, {"input": y, **args}, f"{n.name}:{tag}", what)  # noqa: E731
    y = tr.emit("pad", {"input": x, "pad": [js[1] - 1, rights[1], js[0] - 1, rights[0]]}, n.name + ":pad", what)
    y = emit("conv2d", {"weight": tr.param(v, t + ".weight:phases"),
                        "bias": None if vb is None else tr.param(vb, t + ".bias:phases"), "groups": g}, "phases")
    cout = v.shape[0] // (stride[0] * stride[1])
    y = emit("reshape", {"shape": [-1, g, stride[0], stride[1], cout // g, qs[0], qs[1]]}, "split")
    y = emit("permute", {"dims": [0, 1, 4, 5, 2, 6, 3]}, "interleave")
    y = emit("reshape", {"shape": [-1, cout, qs[0] * stride[0], qs[1] * stride[1]]}, "full")
    whole = {"slice": [None, None, None]}
    crop = [whole, whole] + [{"slice": [p, p + o, None]} for p, o in zip(pad, outs)]
    if one_d:
        y = emit("getitem", {"index": crop}, "crop")
        return tr.emit("squeeze", {"input": y, "dim": 2}, n.name, what)
    return tr.emit("getitem", {"input": y, "index": crop}, n.name, what)

"""The IR's ops, on two back ends: SharedTensor (MPC) and torch (plaintext float64).

`run_graph(graph, params, x, ops)` evaluates a Graph node by node, freeing each
value after its last use. Shape ops, indexing, additions and products by public
constants are the same code on both back ends (duck typing); the ops below differ.

Cost of each layer under MPC (N parties, one round = everyone sends once):

* linear, conv2d: one Beaver matmul/conv (1 round), left untruncated (2f bits); the
  truncation happens inside a following relu (no extra round) or on first use (1 round).
  A weight masked once at load (PrivateModel.mask_weights, the default; protocols.fixedmask)
  comes as its FixedMask (`overrides`), and the call opens only the input's mask.
* affine (an unfolded BatchNorm): one Beaver product (2 rounds); folded BatchNorm: free.
* avg_pool2d, adaptive_avg_pool2d: linear with public weights: sums are exact
  (integer weights, no truncation), then one multiplication by a public 1/count
  (1 truncation round). Non-overlapping windows are plain reshaped sums.
* the registry's elementwise activations (relu, sigmoid, gelu, sqrt, ...; see
  mpcrt.nn.ops.ELEMENTWISE): their protocol functions; softmax, max_pool2d, clamp,
  prelu, group_norm, layer_norm: the SharedTensor methods of the same names
  (comparison-based or approximations; see mpcrt.tensor); pow: repeated squaring
  (2 rounds per product).
* attention (F.scaled_dot_product_attention, and nn.MultiheadAttention /
  TransformerEncoderLayer, which import as linear layers around it): q k^T and the
  weights times v are Beaver matmuls of two shared tensors (2 rounds each), the scale a
  public product (folded into the query weights for nn.MultiheadAttention), softmax
  over the keys; a TransformerEncoderLayer (d 16-128, gelu) takes 145-166 rounds and
  stays within 3e-4 of torch.
* flatten, reshape, permute, cat, identity, dropout, additions: local, free.
"""
from __future__ import annotations

import math
import operator as _operator

import numpy as np

from mpcrt.errors import MpcError, ShapeError
from mpcrt.nn.ir import MAX_PARAM_ELEMENTS, UnsupportedLayerError, refs_of, resolve
from mpcrt.nn.ops import ELEMENTWISE, NONLINEAR_METHODS
from mpcrt.protocols import fixedmask
from mpcrt.protocols.fixedmask import FixedMask
from mpcrt.protocols.normalize import normalize
from mpcrt.tensor import SharedTensor, cat, stack, where


MASKED = 4096.0  # what a causal mask subtracts from a score (torch: inf)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _unwrap(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


class _Common:
    """Ops whose code is the same for SharedTensor and torch.Tensor."""

    def identity(self, input):
        return input

    def add(self, input, other, alpha=1):
        return input + (other if alpha == 1 else other * alpha)

    def sub(self, input, other, alpha=1):
        return input - (other if alpha == 1 else other * alpha)

    def mul(self, input, other):
        return input * other

    def div(self, input, other):
        return input / other

    def floordiv(self, input, other):
        if not all(isinstance(v, (int, np.integer)) for v in (input, other)):
            raise UnsupportedLayerError("floor division of tensors (only of sizes)")
        return input // other

    def neg(self, input):
        return -input

    def matmul(self, input, other):
        return input @ other

    def flatten(self, input, start_dim=0, end_dim=-1):
        return input.flatten(start_dim, end_dim)

    def reshape(self, input, shape):
        return input.reshape(_unwrap(shape))

    def permute(self, input, dims):
        return input.permute(*_unwrap(dims))

    def repeat(self, input, sizes):
        return input.repeat(*_unwrap(sizes))

    def expand(self, input, sizes):
        sizes = _unwrap(sizes)
        if math.prod(max(1, s) for s in sizes) > MAX_PARAM_ELEMENTS:  # sizes from graph values: bounded here
            raise ShapeError(f"expand to {sizes}: more than {MAX_PARAM_ELEMENTS} elements")
        return input.expand(*sizes)

    def transpose(self, input, dim0, dim1):
        return input.transpose(dim0, dim1)

    def unsqueeze(self, input, dim):
        return input.unsqueeze(dim)

    def squeeze(self, input, dim=None):
        return input.squeeze() if dim is None else input.squeeze(dim)

    def sum(self, input, dim=None, keepdim=False):
        return input.sum() if dim is None else input.sum(dim=dim, keepdim=keepdim)

    def mean(self, input, dim=None, keepdim=False):
        return input.mean() if dim is None else input.mean(dim=dim, keepdim=keepdim)

    def size(self, input, dim=None):
        s = tuple(int(d) for d in input.shape)
        return s if dim is None else s[dim]

    def getattr(self, input, name):
        if name == "shape":
            return tuple(int(d) for d in input.shape)
        return getattr(input, name)

    def getitem(self, input, index):
        return input[index]

    def leaky_relu(self, input, negative_slope=0.01):
        return input * negative_slope + self.relu(input) * (1.0 - negative_slope)

    def pow(self, input, exponent):
        if isinstance(input, (int, float, np.integer, np.floating)):  # a size: public arithmetic
            if isinstance(input, (int, np.integer)) and float(exponent).is_integer() and exponent >= 0:
                return int(input) ** int(exponent)  # stays a size (a slice bound, a shape)
            return float(input) ** exponent
        if not float(exponent).is_integer() or not 0 <= exponent <= 64:
            raise UnsupportedLayerError(f"a tensor raised to the power {exponent!r} (integers 0..64 only)")
        return input ** int(exponent)

    def attention(self, input, key, value, attn_mask=None, is_causal=False, scale=None):
        """softmax(q k^T scale + mask) v: two shared batched matmuls and a softmax over the
        keys; a causal mask adds a public -2^12 above the diagonal (e^-4096 is 0 in the
        format, as torch's -inf gives 0)."""
        L, S = input.shape[-2], key.shape[-2]
        s = input @ key.transpose(-2, -1)
        c = 1.0 / math.sqrt(input.shape[-1]) if scale is None else float(scale)
        if c != 1.0:
            s = s * c
        if attn_mask is not None:
            s = s + attn_mask
        if is_causal:
            s = s + np.triu(np.full((L, S), -MASKED), 1)
        return self.softmax(s, -1) @ value

    def compare(self, input, other, op):
        return _COMPARE[op](input, other)

    def cast(self, input):
        return input

    def chunk(self, input, chunks, dim=0):
        size = input.shape[dim]
        step = -(-size // int(chunks))
        return self._pieces(input, list(range(0, size, step)) + [size], dim)

    def split(self, input, split_size_or_sections, dim=0):
        size = input.shape[dim]
        if isinstance(split_size_or_sections, int):
            cuts = list(range(0, size, split_size_or_sections)) + [size]
        else:
            cuts = [0]
            for k in split_size_or_sections:
                cuts.append(cuts[-1] + int(k))
        return self._pieces(input, cuts, dim)

    @staticmethod
    def _pieces(input, cuts, dim):
        d = dim % input.ndim
        pre = (slice(None),) * d
        return tuple(input[pre + (slice(a, b),)] for a, b in zip(cuts[:-1], cuts[1:]) if b > a)

    def max(self, input, dim=None, keepdim=False):
        return input.max() if dim is None else input.max(dim, keepdim)

    def min(self, input, dim=None, keepdim=False):
        return input.min() if dim is None else input.min(dim, keepdim)

    def amax(self, input, dim, keepdim=False):
        return input.max(dim, keepdim)[0]

    def amin(self, input, dim, keepdim=False):
        return input.min(dim, keepdim)[0]

    def argmax(self, input, dim=None, keepdim=False):
        return input.argmax(dim, keepdim)

    def argmin(self, input, dim=None, keepdim=False):
        return input.argmin(dim, keepdim)

    def var(self, input, dim=None, correction=1, keepdim=False):
        n = input.numel() if dim is None else int(np.prod([input.shape[d] for d in _dims(dim)]))
        d = input - (input.mean() if dim is None else input.mean(dim=dim, keepdim=True))
        s = (d * d).sum() if dim is None else (d * d).sum(dim=dim, keepdim=keepdim)
        return s / max(n - correction, 1)  # a public integer: exact division (protocols.division)

    def std(self, input, dim=None, correction=1, keepdim=False):
        return self.sqrt(self.var(input, dim, correction, keepdim))

    def norm(self, input, dim=None, keepdim=False):
        s = (input * input).sum() if dim is None else (input * input).sum(dim=dim, keepdim=keepdim)
        return self.sqrt(s)

    def resize(self, input, size, mode="nearest", align_corners=None, scale=None):
        """F.interpolate / nn.Upsample to `size` (fixed at import): separable public
        matrices, each row torch's own weights (taken from torch on unit vectors; with
        the model's scale factors where it gave them, as torch indexes by those)."""
        sh, sw = (None, None) if scale is None else scale
        mh = _interp_matrix(input.shape[-2], size[0], mode, align_corners, sh)
        mw = _interp_matrix(input.shape[-1], size[1], mode, align_corners, sw)
        y = self._public_matmul(input, mw.T)  # (..., H, OW)
        return self._public_matmul(y.transpose(-1, -2), mh.T).transpose(-1, -2)


class TorchOps(_Common):
    """Plaintext reference (float64 torch tensors): the model owner's self-check and tests."""

    def __init__(self):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F

    def __getattr__(self, name: str):
        """The registry's elementwise activations: torch's function of the op's first torch name."""
        op = ELEMENTWISE.get(name)
        if op is None:
            raise AttributeError(name)
        t = op.method.torch[0]
        fn = getattr(self.torch, t, None) or getattr(self.F, t)
        return lambda input, **params: fn(input, **params)

    def linear(self, input, weight, bias=None):
        return self.F.linear(input, weight, bias)

    def conv2d(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return self.F.conv2d(input, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups)

    def affine(self, input, scale, shift):
        shp = (1, -1) + (1,) * (input.ndim - 2)
        return input * scale.reshape(shp) + shift.reshape(shp)

    def softmax(self, input, dim):
        return self.torch.softmax(input, dim)

    def log_softmax(self, input, dim):
        return self.torch.log_softmax(input, dim)

    def layer_norm(self, input, normalized_shape, weight=None, bias=None, eps=1e-5):
        return self.F.layer_norm(input, tuple(normalized_shape), weight, bias, eps)

    def rms_norm(self, input, normalized_shape, weight=None, eps=None):
        return self.F.rms_norm(input, tuple(normalized_shape), weight, eps)

    def clamp(self, input, min=None, max=None):
        return self.torch.clamp(input, min, max)

    def cast(self, input):
        return input.to(self.torch.float64) if isinstance(input, self.torch.Tensor) else input

    def where(self, condition, input, other):
        t = self.torch
        cond = condition.bool() if isinstance(condition, t.Tensor) else t.as_tensor(condition).bool()
        return t.where(cond, t.as_tensor(input, dtype=t.float64), t.as_tensor(other, dtype=t.float64))

    def maximum(self, input, other):
        return self.torch.maximum(input, self.torch.as_tensor(other, dtype=input.dtype))

    def minimum(self, input, other):
        return self.torch.minimum(input, self.torch.as_tensor(other, dtype=input.dtype))

    def stack(self, tensors, dim=0):
        return self.torch.stack(list(tensors), dim)

    def pad(self, input, pad, value=0.0):
        return self.F.pad(input, list(pad), "constant", value)

    def normalize(self, input, dim=1, eps=1e-12):
        return self.F.normalize(input, 2.0, dim, eps)

    @staticmethod
    def _public_matmul(x, m):
        import torch

        return x @ torch.as_tensor(m, dtype=torch.float64)

    def prelu(self, input, weight):
        return self.F.prelu(input, weight)

    def group_norm(self, input, num_groups, weight=None, bias=None, eps=1e-5):
        return self.F.group_norm(input, num_groups, weight, bias, eps)

    def max_pool2d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        return self.F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode)

    def avg_pool2d(self, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        return self.F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    def adaptive_avg_pool2d(self, input, output_size):
        return self.F.adaptive_avg_pool2d(input, output_size)

    def cat(self, tensors, dim=0):
        return self.torch.cat(list(tensors), dim)

    def attention(self, input, key, value, attn_mask=None, is_causal=False, scale=None):
        return self.F.scaled_dot_product_attention(input, key, value, attn_mask, 0.0, bool(is_causal), scale=scale)


class SharedOps(_Common):
    """The IR on SharedTensors (weights shared too): what parties run."""

    # Linear and conv2d leave their product untruncated (2f fractional bits, one round):
    # a following relu truncates inside its own rounds, anything else truncates on use.
    # A weight masked once at load (protocols.fixedmask, `masked_uses`) arrives as its
    # FixedMask: the product opens only the input's mask (a linear's is W^T's mask).
    def linear(self, input, weight, bias=None):
        if isinstance(weight, FixedMask):
            y = _fixed(input, weight, "matmul", fixedmask.matmul)
        else:
            y = input.matmul(weight.T, truncate=False)
        return y + bias if bias is not None else y

    def conv2d(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        conv = _pair(stride), _pair(padding), _pair(dilation), groups
        if isinstance(weight, FixedMask):
            y = _fixed(input, weight, "conv2d", fixedmask.conv2d, *conv)
        else:
            y = input.conv2d(weight, *conv, truncate=False)
        return y + bias.reshape(1, -1, 1, 1) if bias is not None else y

    def affine(self, input, scale, shift):
        if input.ndim < 2 or input.shape[1] != scale.shape[0]:
            raise ShapeError(f"batch norm over {scale.shape[0]} channels got an input of shape {input.shape}")
        shp = (1, scale.shape[0]) + (1,) * (input.ndim - 2)
        return input * scale.reshape(shp) + shift.reshape(shp)

    def __getattr__(self, name: str):
        """The registry's elementwise activations: their protocol functions, fn(x, **params)."""
        op = ELEMENTWISE.get(name)
        if op is None:
            raise AttributeError(name)
        fn = op.method.fn
        return lambda input, **params: fn(input, **params)

    @staticmethod
    def _nl(x, method: str, *args, **kw):
        fn = getattr(x, method, None)
        if fn is None:
            raise UnsupportedLayerError(f"this mpcrt build has no SharedTensor.{method}()")
        return fn(*args, **kw)

    def softmax(self, input, dim):
        return self._nl(input, "softmax", dim)

    def log_softmax(self, input, dim):
        return self._nl(input, "log_softmax", dim)

    def layer_norm(self, input, normalized_shape, weight=None, bias=None, eps=1e-5):
        return self._nl(input, "layer_norm", normalized_shape, weight, bias, eps)

    def rms_norm(self, input, normalized_shape, weight=None, eps=None):
        return self._nl(input, "rms_norm", normalized_shape, weight, eps)

    def clamp(self, input, min=None, max=None):
        return self._nl(input, "clamp", min, max)

    def where(self, condition, input, other):
        return where(condition, input, other)

    def maximum(self, input, other):
        return self._nl(input, "maximum", other)

    def minimum(self, input, other):
        return self._nl(input, "minimum", other)

    def stack(self, tensors, dim=0):
        return stack(list(tensors), dim)

    def pad(self, input, pad, value=0.0):
        return input.pad([int(p) for p in pad], value)

    def normalize(self, input, dim=1, eps=1e-12):
        return normalize(input, dim, eps)

    @staticmethod
    def _public_matmul(x, m):
        return x @ m

    def prelu(self, input, weight):
        return self._nl(input, "prelu", weight)

    def group_norm(self, input, num_groups, weight=None, bias=None, eps=1e-5):
        return self._nl(input, "group_norm", num_groups, weight, bias, eps)

    def max_pool2d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        _check4(input, "max_pool2d")
        k = _pair(kernel_size)
        s = k if stride is None or stride == () else _pair(stride)
        extra = {"ceil_mode": True} if ceil_mode else {}
        if _pair(dilation) == (1, 1):
            return self._nl(input, "maxpool2d", k, stride=s, padding=_pair(padding), **extra)
        return self._nl(input, "maxpool2d", k, stride=s, padding=_pair(padding), dilation=_pair(dilation), **extra)

    def avg_pool2d(self, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        import torch
        import torch.nn.functional as F

        _check4(input, "avg_pool2d")
        (kh, kw) = _pair(kernel_size)
        (sh, sw) = (kh, kw) if stride is None or stride == () else _pair(stride)
        (ph, pw) = _pair(padding)
        n, c, h, w = input.shape
        if (sh, sw) == (kh, kw) and ph == pw == 0 and h % kh == 0 and w % kw == 0 and divisor_override is None:
            s = input.reshape(n, c, h // kh, kh, w // kw, kw).sum(dim=(3, 5))
            return s / (kh * kw)
        # public per-position factor 1/divisor, from torch on a public tensor of ones
        ones = torch.ones(1, 1, h, w, dtype=torch.float64)
        try:
            avg1 = F.avg_pool2d(ones, (kh, kw), (sh, sw), (ph, pw), ceil_mode, count_include_pad, divisor_override)
            cnt = F.avg_pool2d(ones, (kh, kw), (sh, sw), (ph, pw), ceil_mode, True, 1)
        except RuntimeError as e:
            raise ShapeError(f"avg_pool2d on input {input.shape}: {e}") from None
        oh, ow = avg1.shape[-2:]
        factor = (avg1 / cnt)[0, 0].numpy()
        eh = max(0, (oh - 1) * sh + kh - (h + 2 * ph))
        ew = max(0, (ow - 1) * sw + kw - (w + 2 * pw))
        xp = input.pad((pw, pw + ew, ph, ph + eh)) if (ph or pw or eh or ew) else input
        ones_w = np.ones((c, 1, kh, kw), np.int64)
        s = xp.conv2d(ones_w, (sh, sw), 0, 1, c)[:, :, :oh, :ow]  # exact integer sums
        f0 = float(factor.flat[0])
        return s * (f0 if np.all(factor == f0) else factor)  # a scalar 1 / k divides exactly (shared._rational)

    def adaptive_avg_pool2d(self, input, output_size):
        _check4(input, "adaptive_avg_pool2d")
        n, c, h, w = input.shape
        if isinstance(output_size, (tuple, list)):
            oh, ow = (output_size[0], output_size[-1]) if len(output_size) else (None, None)
        else:
            oh = ow = output_size
        oh, ow = int(h if oh is None else oh), int(w if ow is None else ow)
        if (oh, ow) == (1, 1):
            return input.sum(dim=(2, 3), keepdim=True) / (h * w)
        if h % oh == 0 and w % ow == 0:
            return self.avg_pool2d(input, (h // oh, w // ow))
        mh, lh = _adaptive_matrix(h, oh)
        mw, lw = _adaptive_matrix(w, ow)
        s = input @ mw.T  # n, c, h, ow (exact: 0/1 weights)
        s = (s.transpose(2, 3) @ mh.T).transpose(2, 3)  # n, c, oh, ow
        return s * (1.0 / np.outer(lh, lw))

    def cat(self, tensors, dim=0):
        return cat(list(tensors), dim)


def _fixed(x, m: FixedMask, scope: str, product, *args):
    """product(rt, [x], m, *args) of a SharedTensor x and a weight masked once, untruncated
    (2f fractional bits, as the layers leave their products)."""
    if not isinstance(x, SharedTensor):
        raise UnsupportedLayerError(f"a public input times a shared weight ({type(x).__name__}); share the input")
    x = x.to_precision()
    with x.rt.scope(scope):
        return x._new(product(x.rt, x.share, m, *args), x.fbits + m.fbits)


MASKED_OPS = {"linear": True, "conv2d": False}  # the layers whose weight is masked once: transposed?


def masked_uses(graph) -> dict[int, tuple[int, bool]]:
    """The layers whose weight is masked once: {node index: (parameter index, transposed)}
    for every linear (its weight used as W^T) and conv2d whose weight is a parameter node."""
    out = {}
    for i, n in enumerate(graph.nodes):
        v = n["args"].get("weight") if n["op"] in MASKED_OPS else None
        if isinstance(v, dict) and "ref" in v and graph.nodes[v["ref"]]["op"] == "param":
            out[i] = (graph.nodes[v["ref"]]["args"]["index"], MASKED_OPS[n["op"]])
    return out


_COMPARE = {"lt": _operator.lt, "le": _operator.le, "gt": _operator.gt, "ge": _operator.ge, "eq": _operator.eq,
            "ne": _operator.ne}


def _dims(dim) -> tuple:
    return tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)


def _interp_matrix(n_in: int, n_out: int, mode: str, align_corners, scale=None) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1-d interpolation along one axis: torch applied to
    the unit vectors (nearest, nearest-exact, bilinear/linear are separable)."""
    import torch
    import torch.nn.functional as F

    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, 1, n_in)
    m2 = {"linear": "bilinear"}.get(mode, mode)
    kw = {} if m2 in ("nearest", "nearest-exact") else {"align_corners": bool(align_corners)}
    if scale is not None:
        out = F.interpolate(eye, scale_factor=(1.0, float(scale)), mode=m2, **kw)
        if out.shape[-1] != n_out:
            raise ShapeError(f"interpolate: scale {scale} gives {out.shape[-1]} columns from {n_in}, expected {n_out}")
    else:
        out = F.interpolate(eye, size=(1, n_out), mode=m2, **kw)
    m = out.reshape(n_in, n_out).T.numpy()
    return np.rint(m).astype(np.int64) if m2 in ("nearest", "nearest-exact") else m


def _check4(x, what: str) -> None:
    if x.ndim != 4:
        raise ShapeError(f"{what} needs an NCHW input, got shape {x.shape}")


def _adaptive_matrix(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 matrix (out, size) of torch's adaptive pooling windows, and the window lengths."""
    m = np.zeros((out, size), np.int64)
    for i in range(out):
        a, b = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, a:b] = 1
    return m, m.sum(1)


def last_uses(graph) -> list[list[int]]:
    """free_after[i]: the node values that can be dropped once node i has run."""
    last = {}
    for i, n in enumerate(graph.nodes):
        for v in n["args"].values():
            for r in refs_of(v):
                last[r] = i
    for r in refs_of(graph.output):
        last[r] = len(graph.nodes)
    free_after: list[list[int]] = [[] for _ in graph.nodes]
    for r, i in last.items():
        if i < len(graph.nodes):
            free_after[i].append(r)
    return free_after


def run_graph(graph, params: list, x, ops, free_after=None, collect: dict | None = None,
              overrides: dict | None = None):
    """Evaluate `graph` on input x with the given parameter values and back end.

    `collect`, if given, receives {fx node name: value} of every node (layer-by-layer checks).
    `overrides`: {node index: {argument: value}} replacing resolved arguments (the weights
    masked once, as their FixedMasks).
    """
    env: list = [None] * len(graph.nodes)
    free_after = free_after if free_after is not None else last_uses(graph)
    for i, node in enumerate(graph.nodes):
        op = node["op"]
        if op == "input":
            val = x
        elif op == "param":
            val = params[node["args"]["index"]]
        else:
            args = {k: resolve(v, env) for k, v in node["args"].items()}
            if overrides and i in overrides:
                args.update(overrides[i])
            try:
                val = getattr(ops, op)(**args)
            except UnsupportedLayerError as e:
                raise UnsupportedLayerError(f"layer '{node['name']}' ({node['target']}): {e}") from None
            except ShapeError as e:
                raise ShapeError(f"layer '{node['name']}' ({node['target']}): {e}") from None
            except MpcError:
                raise
            except (ValueError, TypeError, IndexError, RuntimeError) as e:
                raise ShapeError(f"layer '{node['name']}' ({node['target']}) failed on its input: {type(e).__name__}: "
                                 f"{e}") from None
        env[i] = val
        if collect is not None:
            collect[node["name"]] = val
        for r in free_after[i]:
            env[r] = None
    return resolve(graph.output, env)


def missing_methods(graph) -> list[str]:
    """Nonlinear SharedTensor methods the graph needs that this build lacks."""
    need = {NONLINEAR_METHODS[n["op"]] for n in graph.nodes if n["op"] in NONLINEAR_METHODS}
    return sorted(m for m in need if not hasattr(SharedTensor, m))

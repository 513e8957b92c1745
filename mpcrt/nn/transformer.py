"""The tracer's import of attention: nn.MultiheadAttention, nn.TransformerEncoderLayer (as IR).

Each block becomes linear layers around the IR's `attention` op (softmax(q k^T scale) v),
with its heads split by reshape/transpose and its LayerNorms and residuals as nodes.
"""
from __future__ import annotations

import math

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.nn.fx_args import as_f64
from mpcrt.nn.ir import UnsupportedLayerError


def no_masks(n, what: str) -> None:
    for k, v in n.kwargs.items():
        if v not in (None, False):
            raise UnsupportedLayerError(
                f"{what} at fx node '{n.name}' with {k}=...: masks are not supported (a causal model can use "
                "F.scaled_dot_product_attention(q, k, v, is_causal=True))")
    if len(n.args) != 1:
        raise UnsupportedLayerError(f"{what} at fx node '{n.name}' with {len(n.args)} positional arguments (the input "
                                    f"only)")


def lin(tr, x, w, b, pname: str, name: str, what: str) -> dict:
    """A linear layer with the given float64 weight (out, in) and bias (or None)."""
    return tr.emit("linear", {"input": x, "weight": tr.param(w, pname + ".weight"),
                              "bias": None if b is None else tr.param(b, pname + ".bias")}, name, what)


def layer_norm(tr, x, mod, pname: str, name: str, what: str) -> dict:
    return tr.emit("layer_norm", {"input": x, "normalized_shape": [int(v) for v in mod.normalized_shape],
                                  "weight": tr.opt_param(mod.weight, pname + ".weight"),
                                  "bias": tr.opt_param(mod.bias, pname + ".bias"), "eps": float(mod.eps)},
                   name, what)


def mha(tr, n, mod, t: str, what: str, name: str | None = None, args=None, kwargs=None) -> dict:
    """nn.MultiheadAttention(q, k, v) in eval mode, as IR: the in-projections (the
    1/sqrt(head_dim) scale folded into the query's weights; one linear when q, k and v are
    the same tensor), heads split by reshape/transpose, `attention`, the out-projection."""
    name = n.name if name is None else name
    kw = _mha_inputs(n, mod, what, n.args if args is None else args, n.kwargs if kwargs is None else kwargs)
    q, k, v = _in_projections(tr, n, mod, kw, t, what, name)
    E, H = int(mod.embed_dim), int(mod.num_heads)
    D = E // H
    bf = bool(mod.batch_first)

    def dims(x, tag):  # (batch, length) of a (B, L, E) value, as graph values: any batch and length
        sh = tr.emit("getattr", {"input": x, "name": "shape"}, f"{name}:{tag}shape", what)
        return [tr.emit("getitem", {"input": sh, "index": i}, f"{name}:{tag}dim{i}", what) for i in (0, 1)]

    def heads(x, tag):
        x = tr.emit("reshape", {"input": x, "shape": dims(x, tag) + [H, D]}, f"{name}:{tag}heads", what)
        return tr.emit("transpose", {"input": x, "dim0": 1, "dim1": 2}, f"{name}:{tag}bhld", what)

    bl = dims(q, "o")
    o = tr.emit("attention", {"input": heads(q, "q"), "key": heads(k, "k"), "value": heads(v, "v"),
                              "attn_mask": None, "is_causal": False, "scale": 1.0}, name + ":attention", what)
    o = tr.emit("transpose", {"input": o, "dim0": 1, "dim1": 2}, name + ":blhd", what)
    o = tr.emit("reshape", {"input": o, "shape": bl + [E]}, name + ":concat", what)
    op = mod.out_proj
    out = lin(tr, o, as_f64(op.weight), as_f64(op.bias), t + ".out_proj", name if bf else name + ":out", what)
    return out if bf else tr.emit("transpose", {"input": out, "dim0": 0, "dim1": 1}, name, what)


def _mha_inputs(n, mod, what: str, args, kwargs) -> dict:
    """The call's query, key and value (fx nodes of 3-d tensors), refusing masks and the options not imported."""
    kw = dict(zip(("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask"), args))
    kw.update(kwargs)
    for k in ("key_padding_mask", "attn_mask"):
        if kw.get(k) is not None:
            raise UnsupportedLayerError(f"{what} at fx node '{n.name}' with {k}: masks are not supported (a causal "
                                        "model can use F.scaled_dot_product_attention(q, k, v, is_causal=True))")
    if kw.get("is_causal"):
        raise UnsupportedLayerError(f"{what} at fx node '{n.name}' with is_causal (torch needs a mask with it)")
    if mod.bias_k is not None or mod.add_zero_attn:
        raise UnsupportedLayerError(f"{what} with add_bias_kv or add_zero_attn at fx node '{n.name}'")
    if not all(k in kw for k in ("query", "key", "value")):
        raise UnsupportedLayerError(f"{what} at fx node '{n.name}' needs query, key and value")
    shapes = [tuple(a.meta["tensor_meta"].shape) if hasattr(a, "meta") and a.meta.get("tensor_meta") is not None
              else None for a in (kw["query"], kw["key"], kw["value"])]
    if any(s is None or len(s) != 3 for s in shapes):
        raise ShapeError(f"{what} at fx node '{n.name}': batched 3-d query, key and value only, got {shapes}")
    return kw


def _in_projections(tr, n, mod, kw: dict, t: str, what: str, name: str) -> tuple:
    """q, k, v: the in-projections of the batch-first inputs, the 1/sqrt(head_dim) scale folded into q's."""
    E, H = int(mod.embed_dim), int(mod.num_heads)
    D = E // H
    bf = bool(mod.batch_first)
    c = 1.0 / math.sqrt(D)
    if mod.in_proj_weight is not None:
        W = as_f64(mod.in_proj_weight)
        Wq, Wk, Wv = W[:E], W[E:2 * E], W[2 * E:]
    else:
        Wq, Wk, Wv = (as_f64(getattr(mod, f"{p}_proj_weight")) for p in "qkv")
    B = as_f64(mod.in_proj_bias)
    bq, bk, bv = (None, None, None) if B is None else (B[:E], B[E:2 * E], B[2 * E:])

    def batch_first(v):
        v = tr.enc(v, n)
        return v if bf else tr.emit("transpose", {"input": v, "dim0": 0, "dim1": 1}, name + ":bf", what)

    q_in, k_in, v_in = kw["query"], kw["key"], kw["value"]
    if q_in is k_in is v_in:
        x = batch_first(q_in)
        bqkv = None if B is None else np.concatenate([bq * c, bk, bv])
        qkv = lin(tr, x, np.concatenate([Wq * c, Wk, Wv]), bqkv, t + ".in_proj", name + ":qkv", what)
        parts = tr.emit("chunk", {"input": qkv, "chunks": 3, "dim": -1}, name + ":split", what)
        q, k, v = (tr.emit("getitem", {"input": parts, "index": i}, f"{name}:{'qkv'[i]}", what) for i in range(3))
    else:
        q = lin(tr, batch_first(q_in), Wq * c, None if bq is None else bq * c, t + ".q_proj", name + ":q", what)
        k = lin(tr, batch_first(k_in), Wk, bk, t + ".k_proj", name + ":k", what)
        v = lin(tr, batch_first(v_in), Wv, bv, t + ".v_proj", name + ":v", what)
    return q, k, v


def encoder_layer(tr, n, mod, x, shape, t: str, what: str, name: str) -> dict:
    """nn.TransformerEncoderLayer (eval, no masks): self-attention and the feed-forward
    block, each with its residual and LayerNorm (before with norm_first, else after)."""
    import torch.nn as tnn
    import torch.nn.functional as F

    act = mod.activation  # a module first: its own settings (GELU's approximate) count
    if isinstance(act, tnn.GELU):
        act_op = ("gelu", {"approximate": str(act.approximate)})
    elif isinstance(act, tnn.ReLU) or act is F.relu:
        act_op = ("relu", {})
    elif act is F.gelu:
        act_op = ("gelu", {"approximate": "none"})
    else:
        raise UnsupportedLayerError(f"{what}: activation {act!r:.60} (relu or gelu only)")
    # self_attn sees the layer's input node's metadata (its shapes) for q, k and v
    src = n.args[0]

    def sa(v, tag):
        ref = tr.ref_of.get(src)
        tr.ref_of[src] = v  # the attention reads its input through enc(src)
        try:
            return mha(tr, n, mod.self_attn, t + ".self_attn", what, f"{name}:{tag}", (src, src, src), {})
        finally:
            tr.ref_of[src] = ref

    def ff(v, tag):
        h = lin(tr, v, as_f64(mod.linear1.weight), as_f64(mod.linear1.bias), t + ".linear1", f"{name}:{tag}1", what)
        h = tr.emit(act_op[0], {"input": h, **act_op[1]}, f"{name}:{tag}act", what)
        return lin(tr, h, as_f64(mod.linear2.weight), as_f64(mod.linear2.bias), t + ".linear2", f"{name}:{tag}2", what)

    def add(a, b, tag):
        return tr.emit("add", {"input": a, "other": b, "alpha": 1}, f"{name}:{tag}", what)

    def norm(v, m, tag, final=False):
        return layer_norm(tr, v, m, f"{t}.{tag}", name if final else f"{name}:{tag}", what)

    if mod.norm_first:
        x = add(x, sa(norm(x, mod.norm1, "norm1"), "sa"), "res1")
        return tr.emit("add", {"input": x, "other": ff(norm(x, mod.norm2, "norm2"), "ff"), "alpha": 1}, name, what)
    x = norm(add(x, sa(x, "sa"), "res1"), mod.norm1, "norm1")
    return norm(add(x, ff(x, "ff"), "res2"), mod.norm2, "norm2", final=True)

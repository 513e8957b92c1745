"""Tensors a forward() builds without reading the input's values: folded at import into parameters.

Position indices for a learned position embedding (nanoGPT's `wpe(torch.arange(0, t))`, Hugging
Face's `position_embeddings(self.position_ids[:, :t])`), causal masks made in forward
(`torch.ones(t, t).tril()`), constant offsets: their values depend on the model and on the
input's fixed sizes (dims 1 and up; the batch dim, which may change, is never among them), not on
the data. The model owner evaluates them on the example (torch.fx's Interpreter) and each becomes
a parameter of the graph, shared like the weights, instead of ops (arange, ones, tril) with no
MPC form. Nothing is folded that reads the input's values or its batch size; bool results (the
comparisons that make masks) stay ops on the folded numbers, as for mask buffers.

`fold(gm, modules, x)` returns {fx node: value} for the nodes to emit as parameters and the set
of nodes only they read (not imported at all).
"""
from __future__ import annotations

import numpy as np

_SIZE_METHODS = ("size",)


def _input_dim(n, placeholder, ndim: int) -> int | None:
    """The input dim a size query reads (x.size(d), x.shape[d], x.size()[d]), as 0..ndim-1; None if n is none."""
    if n.op == "call_method" and n.target in _SIZE_METHODS and n.args and n.args[0] is placeholder:
        d = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        return d % ndim if isinstance(d, int) else None
    if n.op == "call_function" and getattr(n.target, "__name__", "") == "getitem" and len(n.args) == 2:
        src, i = n.args
        whole = getattr(src, "op", None) == "call_method" and src.target in _SIZE_METHODS and len(src.args) == 1 \
            and not src.kwargs
        shape = getattr(src, "op", None) == "call_function" and getattr(src.target, "__name__", "") == "getattr" \
            and src.args[1:] == ("shape",)
        if (whole or shape) and src.args[0] is placeholder and isinstance(i, int):
            return i % ndim
    return None


def _buffer(gm, n) -> bool:
    import torch

    if n.op != "get_attr":
        return False
    obj = gm
    for part in str(n.target).split("."):
        obj = getattr(obj, part, None)
    return isinstance(obj, torch.Tensor) and not isinstance(obj, torch.nn.Parameter)


def fold(gm, modules: dict, x) -> tuple[dict, set]:
    """({fx node: numpy value} to import as parameters, {fx nodes only those read}); ({}, set()) if none."""
    import torch
    import torch.nn as tnn
    from torch.fx import Interpreter

    nodes = list(gm.graph.nodes)
    placeholder = next(n for n in nodes if n.op == "placeholder")
    ndim = x.ndim
    pure, from_buffers = set(), set()  # input-free; input-free but reading buffers (only folded into an Embedding)
    for n in nodes:
        ins = n.all_input_nodes
        if n.op in ("placeholder", "output"):
            continue
        if _buffer(gm, n):
            from_buffers.add(n)
        elif (d := _input_dim(n, placeholder, ndim)) is not None:
            if d >= 1:
                pure.add(n)
        elif n.op in ("call_function", "call_method") and all(i in pure for i in ins) and not _is_bool(n):
            pure.add(n)
        elif n.op in ("call_function", "call_method") and ins and all(i in pure or i in from_buffers for i in ins):
            from_buffers.add(n)
        elif n.op == "call_module" and isinstance(modules.get(n.target), tnn.Embedding) and ins and all(
                i in pure or i in from_buffers for i in ins):
            pure.add(n)  # a lookup at constant positions: the rows it reads
    folded = [n for n in pure if _is_tensor(n) and any(u not in pure for u in n.users)]
    if not folded:
        return {}, set()
    skip = set()
    for n in reversed(nodes):  # what only the folded nodes (or other skipped ones) read
        if n not in folded and (n in pure or n in from_buffers) and n.users and all(
                u in skip or u in folded for u in n.users):
            skip.add(n)
    want = set(folded)
    values: dict = {}

    class Capture(Interpreter):
        def run_node(self, n):
            v = super().run_node(n)
            if n in want:
                values[n] = v
            return v

    with torch.no_grad():
        Capture(gm).run(x.clone())
    return {n: np.asarray(values[n].detach().double().cpu().numpy()) for n in folded}, skip


def _is_tensor(n) -> bool:
    return hasattr(n.meta.get("tensor_meta"), "shape")


def _is_bool(n) -> bool:
    import torch

    tm = n.meta.get("tensor_meta")
    return tm is not None and getattr(tm, "dtype", None) == torch.bool

"""Tensors a forward() builds without reading the input's values: folded at import into parameters.

Position indices for a learned position embedding (nanoGPT's `wpe(torch.arange(0, t))`, Hugging
Face's `position_embeddings(self.position_ids[:, :t])`), causal masks made in forward
(`torch.ones(t, t).tril()`), constant offsets: their values depend on the model and on the
input's fixed sizes (dims 1 and up; the batch dim, which may change, is never among them), not on
the data. The model owner evaluates them on the example (torch.fx's Interpreter) and each becomes
a parameter of the graph, shared like the weights, instead of ops (arange, ones, tril) with no
MPC form. Nothing is folded that reads the input's values or its batch size, nor random or
uninitialised tensors (torch.rand, torch.empty: fresh on each call), nor a tensor changed in place
later; x.device and x.dtype are public facts. bool results (the comparisons that make masks) stay
ops on the folded numbers, as for mask buffers.

`fold(gm, modules, x, alt_shapes)` returns {fx node: value} for the nodes to emit as parameters
and the set of nodes only they read (not imported at all); alt_shapes: the nodes' shapes with the
example's batch one larger, which tells the sizes of inner tensors that do not follow the batch.
"""
from __future__ import annotations

import numpy as np

from mpcrt.nn.fx_args import in_place_method, only_feeding, size_dim

# made afresh on each call (random or uninitialised): never a constant
_FRESH = ("rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "randperm", "normal", "bernoulli",
          "multinomial", "empty", "empty_like", "new_empty", "poisson", "dropout", "uniform_", "normal_")


def _fixed_size(n, placeholder, alt_shapes: dict) -> bool | None:
    """For a size query (x.size(d), x.shape[d], x.size()[d]): whether that size is fixed (a dim >= 1 of
    the input, or of an inner tensor one that stays put when the batch grows); None if n is no size query."""
    src, d = size_dim(n)
    tm = getattr(src, "meta", {}).get("tensor_meta") if src is not None and d is not None else None
    if tm is None or not hasattr(tm, "shape"):
        return None
    d %= len(tm.shape)
    if src is placeholder:
        return d >= 1
    alt = alt_shapes.get(src)
    return alt is not None and len(alt) == len(tm.shape) and alt[d] == tm.shape[d]


def public_metadata(n, src=None) -> bool:
    """x.device, x.dtype (of src, or of any node): public facts, not values."""
    return (n.op == "call_function" and getattr(n.target, "__name__", "") == "getattr"
            and n.args[1:] in (("device",), ("dtype",)) and (src is None or n.args[0] is src))


def _fresh_or_mutated(n) -> bool:
    name = getattr(n.target, "__name__", n.target) if n.op in ("call_function", "call_method") else ""
    return name in _FRESH or any(in_place_method(u) for u in n.users)


def _buffer(gm, n) -> bool:
    import torch

    if n.op != "get_attr":
        return False
    obj = gm
    for part in str(n.target).split("."):
        obj = getattr(obj, part, None)
    return isinstance(obj, torch.Tensor) and not isinstance(obj, torch.nn.Parameter)


def fold(gm, modules: dict, x, alt_shapes: dict) -> tuple[dict, set]:
    """({fx node: numpy value} to import as parameters, {fx nodes only those read}); ({}, set()) if none."""
    import torch
    import torch.nn as tnn
    from torch.fx import Interpreter

    nodes = list(gm.graph.nodes)
    placeholder = next(n for n in nodes if n.op == "placeholder")
    pure, from_buffers = set(), set()  # input-free; input-free but reading buffers (only folded into an Embedding)
    for n in nodes:
        ins = n.all_input_nodes
        if n.op in ("placeholder", "output"):
            continue
        if _buffer(gm, n):
            from_buffers.add(n)
        elif (fixed := _fixed_size(n, placeholder, alt_shapes)) is not None:
            if fixed:
                pure.add(n)
        elif public_metadata(n, placeholder):
            pure.add(n)
        elif _fresh_or_mutated(n):
            continue
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
    want = set(folded)
    skip = only_feeding(nodes, want, lambda n: n in pure or n in from_buffers)  # what only the folded ones read
    values: dict = {}

    class Capture(Interpreter):
        def run_node(self, n):
            v = super().run_node(n)
            if n in want:  # a copy: forward() may change the tensor later (in place)
                values[n] = v.detach().clone() if isinstance(v, torch.Tensor) else v
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

"""Rewrites of the traced IR (a list of nodes) that keep its outputs and cost fewer rounds or bits.

- `pool_before_relu`: relu -> max_pool2d runs as max_pool2d -> relu.
- `fuse_rms_norm`: a hand-written RMSNorm, x * rsqrt(mean(x^2, last dims, keepdim) + eps)
  (LLaMA's, T5's, Hugging Face's; also x / sqrt(...)), runs as the rms_norm op. Written out,
  rsqrt's result sits at the format's f bits, so at |x| ~ 1e4 (rsqrt ~ 1e-4) it keeps a few
  significant bits (2.5e-2 relative error); rms_norm (protocols.normalize) holds the sum of
  squares at 2f - log2 n bits and rsqrt at up to 20 more, and costs fewer rounds.
- `drop_dead`: nodes no output needs (left by the rewrites, or a tuple's unused parts) are
  removed and the references renumbered, so they cost no rounds.
"""
from __future__ import annotations

from typing import Callable

from mpcrt.nn.ir import refs_of

_SEE_THROUGH = ("cast", "identity")  # .float(), .to(dtype), type_as, dropout: the same value


def _users(nodes: list, output) -> dict[int, list[int]]:
    users: dict[int, list[int]] = {}
    for j, n in enumerate(nodes):
        for v in n["args"].values():
            for r in refs_of(v):
                users.setdefault(r, []).append(j)
    for r in refs_of(output):
        users.setdefault(r, []).append(len(nodes))
    return users


def pool_before_relu(nodes: list, output) -> None:
    """relu -> max_pool2d becomes max_pool2d -> relu (in place) where the relu feeds only the pool.

    Both are monotone, so max(relu(a), relu(b)) = relu(max(a, b)): the same output with
    k*k times fewer comparisons for the ReLU (a k x k pool). Node order stays topological.
    """
    users = _users(nodes, output)
    for i, n in enumerate(nodes):
        u = users.get(i, [])
        if n["op"] != "relu" or len(u) != 1 or u[0] >= len(nodes):
            continue
        j = u[0]
        pool = nodes[j]
        if pool["op"] != "max_pool2d" or pool["args"]["input"] != {"ref": i}:
            continue
        relu_in = n["args"]["input"]
        nodes[i] = {**pool, "args": {**pool["args"], "input": relu_in}}
        nodes[j] = {**n, "args": {"input": {"ref": i}}}


def fuse_rms_norm(nodes: list, shape_of: Callable[[int], tuple | None]) -> int:
    """Replace each hand-written RMSNorm's final mul (div) by an rms_norm node, in place; the
    nodes it no longer needs are left for drop_dead. shape_of: a node's output shape (None when
    unknown). Returns how many were fused."""
    def base(v):  # the node a value is, seen through casts
        while isinstance(v, dict) and "ref" in v and nodes[v["ref"]]["op"] in _SEE_THROUGH:
            v = nodes[v["ref"]]["args"]["input"]
        return v.get("ref") if isinstance(v, dict) else None

    def node(v, op):
        return nodes[v["ref"]] if isinstance(v, dict) and "ref" in v and nodes[v["ref"]]["op"] == op else None

    fused = 0
    for i, n in enumerate(nodes):
        if n["op"] == "mul":
            a, b = n["args"]["input"], n["args"]["other"]
            pairs = ((a, b, "rsqrt"), (b, a, "rsqrt"))
        elif n["op"] == "div":
            pairs = ((n["args"]["input"], n["args"]["other"], "sqrt"),)
        else:
            continue
        for x, scale, root in pairs:
            r = node(scale, root)
            eps, ms = 0.0, r and r["args"]["input"]
            a = node(ms, "add")
            if a is not None and isinstance(a["args"]["other"], (int, float)) and a["args"].get("alpha", 1) == 1:
                eps, ms = float(a["args"]["other"]), a["args"]["input"]
            m = node(ms, "mean")
            xb = base(x)
            if not (r and m and m["args"]["keepdim"] and eps >= 0 and xb is not None
                    and _squared(nodes, m["args"]["input"], base) == xb):
                continue
            shape = shape_of(xb)
            dims = m["args"]["dim"]
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            if shape is None or not dims or any(not isinstance(d, int) for d in dims):
                continue
            nd = len(shape)
            norm = sorted(d % nd for d in dims)
            if norm != list(range(nd - len(norm), nd)) or norm[0] == 0:
                continue  # only trailing dims, never the batch dim (its size is the example's), are an rms_norm
            nodes[i] = {**n, "op": "rms_norm", "args": {"input": {"ref": xb}, "normalized_shape": [
                int(shape[d]) for d in norm], "weight": None, "eps": eps}}
            fused += 1
            break
    return fused


def _squared(nodes: list, v, base) -> int | None:
    """The node (seen through casts) whose square v is: x ** 2, torch.square(x), x * x; else None."""
    n = nodes[v["ref"]] if isinstance(v, dict) and "ref" in v else None
    if n is not None and n["op"] == "pow" and n["args"]["exponent"] in (2, 2.0):
        return base(n["args"]["input"])
    if n is not None and n["op"] == "mul" and base(n["args"]["input"]) == base(n["args"]["other"]):
        return base(n["args"]["input"])
    return None


def drop_dead(nodes: list, output, keep: Callable[[dict], bool]) -> tuple[list, object]:
    """(nodes, output) without the nodes no output needs (keep(node) True: kept anyway), refs renumbered."""
    live = set(refs_of(output))
    for i in range(len(nodes) - 1, -1, -1):
        if i in live or keep(nodes[i]):
            live.add(i)
            for v in nodes[i]["args"].values():
                live.update(refs_of(v))
    new = {old: k for k, old in enumerate(i for i in range(len(nodes)) if i in live)}

    def renum(v):
        if isinstance(v, list):
            return [renum(e) for e in v]
        if isinstance(v, dict):
            if "ref" in v:
                return {"ref": new[v["ref"]]}
            if "slice" in v:
                return {"slice": [renum(e) for e in v["slice"]]}
        return v

    kept = [{**n, "args": {k: renum(v) for k, v in n["args"].items()}} for i, n in enumerate(nodes) if i in live]
    return kept, renum(output)

"""Model import: a torch.nn.Module -> a public architecture graph plus its weights.

`trace(model, example_input)` runs on the model owner's party only. It traces the
module with torch.fx, propagates the example input's shape through it
(torch.fx.passes.shape_prop), folds every BatchNorm that directly follows a Conv2d or
Linear into that layer's weight and bias (other BatchNorms become per-channel affine
layers), and returns

* a `Graph`: the architecture, public by design. A list of nodes in topological
  order, each an op of the small IR below with its hyper-parameters, and the names
  and shapes of the parameters. It serialises to msgpack (never pickle) and is
  validated field by field when read back, so a party that receives it runs no code
  it did not already have;
* the parameter arrays (float64 numpy), which the caller secret-shares.

IR values: None, bool, int, float, str, lists, {"ref": i} (the value of node i),
{"slice": [start, stop, step]}, {"ellipsis": true}. Every op's arguments are named
and checked against the op's signature in `IR_OPS` on decode.

Only what the graph needs to say is said: the parameter *values* never enter it.
"""
from __future__ import annotations

import inspect
import math
import numbers
import operator
from dataclasses import dataclass, field

import msgpack
import numpy as np

from mpcrt.errors import ConfigError, MpcError, ShapeError

FORMAT = "mpcrt-nn"
VERSION = 1
MAX_GRAPH_BYTES = 64 << 20  # a serialised graph larger than this is refused
MAX_NODES = 200_000
MAX_PARAM_ELEMENTS = 1 << 31  # about 2 billion weights (16 GiB of shares)
MAX_POW = 64  # largest integer power a graph may take
MAX_REPEAT = 1 << 20  # largest total tiling factor of a repeat node (peers allocate what it asks)
MAX_NDIM = 8
_MAX_DEPTH = 6
_MAX_LIST = 4096


class ModelImportError(MpcError):
    """A model could not be imported: untraceable, malformed graph or model file."""


class UnsupportedLayerError(ModelImportError):
    """The model uses a layer, function or method that mpcrt.nn cannot run under MPC."""


class ModelFileError(ModelImportError, ConfigError):
    """A model file is missing, unreadable, pickled, or not an mpcrt model archive."""


# ---------------------------------------------------------------- the IR's ops
# Signatures only: the argument names (and defaults) every node of that op carries.
def _s(fn) -> inspect.Signature:
    return inspect.signature(fn)


IR_OPS: dict[str, inspect.Signature] = {
    "input": _s(lambda: None),
    "param": _s(lambda index: None),
    "linear": _s(lambda input, weight, bias=None: None),
    "conv2d": _s(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None),
    "affine": _s(lambda input, scale, shift: None),  # per channel (dim 1): x * scale + shift
    "relu": _s(lambda input: None),
    "leaky_relu": _s(lambda input, negative_slope=0.01: None),
    "sigmoid": _s(lambda input: None),
    "tanh": _s(lambda input: None),
    "exp": _s(lambda input: None),
    "softmax": _s(lambda input, dim: None),
    "log_softmax": _s(lambda input, dim: None),
    "gelu": _s(lambda input, approximate="none": None),
    "silu": _s(lambda input: None),
    "hardtanh": _s(lambda input, min_val=-1.0, max_val=1.0: None),
    "clamp": _s(lambda input, min=None, max=None: None),
    "hardswish": _s(lambda input: None),
    "elu": _s(lambda input, alpha=1.0: None),
    "selu": _s(lambda input: None),
    "celu": _s(lambda input, alpha=1.0: None),
    "softplus": _s(lambda input, beta=1.0, threshold=20.0: None),
    "mish": _s(lambda input: None),
    "prelu": _s(lambda input, weight: None),
    "group_norm": _s(lambda input, num_groups, weight=None, bias=None, eps=1e-5: None),
    "hardsigmoid": _s(lambda input: None),
    "abs": _s(lambda input: None),
    "sqrt": _s(lambda input: None),
    "rsqrt": _s(lambda input: None),
    "reciprocal": _s(lambda input: None),
    "log": _s(lambda input: None),
    "pow": _s(lambda input, exponent: None),  # tensors: an integer in 0..64; sizes (public numbers): any real
    # softmax(q k^T scale + mask) v over the last two dims (F.scaled_dot_product_attention)
    "attention": _s(lambda input, key, value, attn_mask=None, is_causal=False, scale=None: None),
    "layer_norm": _s(lambda input, normalized_shape, weight=None, bias=None, eps=1e-5: None),
    "max_pool2d": _s(lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False: None),
    "avg_pool2d": _s(lambda input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None: None),
    "adaptive_avg_pool2d": _s(lambda input, output_size: None),
    "flatten": _s(lambda input, start_dim=0, end_dim=-1: None),
    "reshape": _s(lambda input, shape: None),
    "permute": _s(lambda input, dims: None),
    "repeat": _s(lambda input, sizes: None),
    "stack": _s(lambda tensors, dim=0: None),
    "chunk": _s(lambda input, chunks, dim=0: None),
    "split": _s(lambda input, split_size_or_sections, dim=0: None),
    "pad": _s(lambda input, pad, value=0.0: None),
    "compare": _s(lambda input, other, op: None),
    "cast": _s(lambda input: None),
    "where": _s(lambda condition, input, other: None),
    "maximum": _s(lambda input, other: None),
    "minimum": _s(lambda input, other: None),
    "max": _s(lambda input, dim=None, keepdim=False: None),
    "min": _s(lambda input, dim=None, keepdim=False: None),
    "amax": _s(lambda input, dim, keepdim=False: None),
    "amin": _s(lambda input, dim, keepdim=False: None),
    "argmax": _s(lambda input, dim=None, keepdim=False: None),
    "argmin": _s(lambda input, dim=None, keepdim=False: None),
    "var": _s(lambda input, dim=None, correction=1, keepdim=False: None),
    "std": _s(lambda input, dim=None, correction=1, keepdim=False: None),
    "norm": _s(lambda input, dim=None, keepdim=False: None),
    "normalize": _s(lambda input, dim=1, eps=1e-12: None),
    "resize": _s(lambda input, size, mode="nearest", align_corners=None, scale=None: None),
    "expand": _s(lambda input, sizes: None),
    "transpose": _s(lambda input, dim0, dim1: None),
    "unsqueeze": _s(lambda input, dim: None),
    "squeeze": _s(lambda input, dim=None: None),
    "identity": _s(lambda input: None),
    "add": _s(lambda input, other, alpha=1: None),
    "sub": _s(lambda input, other, alpha=1: None),
    "mul": _s(lambda input, other: None),
    "div": _s(lambda input, other: None),
    "floordiv": _s(lambda input, other: None),
    "neg": _s(lambda input: None),
    "matmul": _s(lambda input, other: None),
    "cat": _s(lambda tensors, dim=0: None),
    "sum": _s(lambda input, dim=None, keepdim=False: None),
    "mean": _s(lambda input, dim=None, keepdim=False: None),
    "size": _s(lambda input, dim=None: None),
    "getattr": _s(lambda input, name: None),
    "getitem": _s(lambda input, index: None),
}
#: attributes `getattr` may read (anything else is refused on decode)
GETATTR_NAMES = ("shape", "ndim", "T", "mT", "values", "indices")
#: ops that need a nonlinear SharedTensor method, and which
NONLINEAR_METHODS = {"relu": "relu", "leaky_relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp",
                     "softmax": "softmax", "log_softmax": "log_softmax", "max_pool2d": "maxpool2d", "gelu": "gelu",
                     "silu": "silu", "hardtanh": "clamp", "layer_norm": "layer_norm", "clamp": "clamp",
                     "hardswish": "hardswish", "hardsigmoid": "hardsigmoid", "elu": "elu", "selu": "selu",
                     "celu": "celu", "softplus": "softplus", "mish": "mish", "prelu": "prelu",
                     "group_norm": "group_norm", "compare": "ltz", "where": "ltz", "maximum": "maximum",
                     "minimum": "minimum", "max": "max", "min": "min", "amax": "max", "amin": "min",
                     "argmax": "argmax", "argmin": "argmin", "std": "sqrt", "norm": "sqrt", "normalize": "rsqrt", "abs": "abs", "sqrt": "sqrt",
                     "rsqrt": "rsqrt", "reciprocal": "reciprocal", "log": "log", "attention": "softmax"}


# ----------------------------------------------------------------- the graph
@dataclass
class Graph:
    """A model's public architecture: nodes of the IR, parameter names and shapes."""

    input_shape: list  # the example input's shape; dim 0 (the batch) may differ at run time
    params: list  # [{"name": str, "shape": [int, ...]}] in sharing order
    nodes: list  # [{"op": str, "args": {...}, "name": str, "target": str}]
    output: object  # an IR value (a ref, or a list of refs)
    meta: dict = field(default_factory=dict)  # free-form public notes (model class name, ...)

    # ------------------------------------------------------------ summaries
    @property
    def param_count(self) -> int:
        return int(sum(math.prod(p["shape"]) for p in self.params))

    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n["op"]] = out.get(n["op"], 0) + 1
        return out

    def summary(self) -> str:
        """One line per node: index, op, fx node name, hyper-parameters."""
        lines = [f"mpcrt.nn graph: input {tuple(self.input_shape)}, {len(self.nodes)} nodes, "
                 f"{len(self.params)} parameter tensors ({self.param_count} weights)"]
        for i, n in enumerate(self.nodes):
            hp = {k: v for k, v in n["args"].items() if not (isinstance(v, dict) and "ref" in v)}
            refs = [v["ref"] for v in n["args"].values() if isinstance(v, dict) and "ref" in v]
            lines.append(f"  {i:4d} {n['op']:<20} {n['name']:<24} in={refs} {hp if hp else ''}")
        return "\n".join(lines)

    # -------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "input_shape": list(self.input_shape),
                "params": [{"name": p["name"], "shape": list(p["shape"])} for p in self.params],
                "nodes": self.nodes, "output": self.output, "meta": self.meta}

    def to_bytes(self) -> bytes:
        """msgpack bytes of the graph (no pickle anywhere)."""
        return msgpack.packb(self.to_dict(), use_bin_type=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Graph":
        """Parse and validate msgpack bytes from `to_bytes`; ModelImportError if malformed."""
        if len(raw) > MAX_GRAPH_BYTES:
            raise ModelImportError(f"model graph of {len(raw)} bytes exceeds the limit of {MAX_GRAPH_BYTES}")
        try:
            d = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0,
                                use_list=True)
        except Exception as e:  # msgpack raises several types on garbage
            raise ModelImportError(f"model graph is not valid msgpack ({type(e).__name__}: {e})") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d) -> "Graph":
        _validate(d)
        return cls(input_shape=list(d["input_shape"]), params=d["params"], nodes=d["nodes"], output=d["output"],
                   meta=d.get("meta", {}))


def _bad(what: str) -> ModelImportError:
    return ModelImportError(f"malformed model graph: {what}")


def _validate(d) -> None:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise _bad("not an mpcrt.nn graph (missing format marker)")
    if d.get("version") != VERSION:
        raise _bad(f"graph version {d.get('version')!r}, this mpcrt reads version {VERSION} (upgrade the older side)")
    keys = {"format", "version", "input_shape", "params", "nodes", "output", "meta"}
    if set(d) - keys or not {"input_shape", "params", "nodes", "output"} <= set(d):
        raise _bad(f"unexpected fields {sorted(set(d) ^ keys)}")
    if not _is_shape(d["input_shape"]) or len(d["input_shape"]) < 1:
        raise _bad(f"input_shape {d['input_shape']!r}")
    if not isinstance(d.get("meta", {}), dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in d.get("meta", {}).items()):
        raise _bad("meta must map names to strings or numbers")
    params = d["params"]
    if not isinstance(params, list):
        raise _bad("params is not a list")
    total = 0
    for i, p in enumerate(params):
        if not isinstance(p, dict) or set(p) != {"name", "shape"} or not isinstance(p["name"], str) or not _is_shape(p["shape"]):
            raise _bad(f"parameter #{i} {p!r:.80}")
        total += math.prod(p["shape"])
    if total > MAX_PARAM_ELEMENTS:
        raise _bad(f"{total} weights exceed the limit of {MAX_PARAM_ELEMENTS}")
    nodes = d["nodes"]
    if not isinstance(nodes, list) or not nodes or len(nodes) > MAX_NODES:
        raise _bad("nodes must be a non-empty list of at most %d nodes" % MAX_NODES)
    n_inputs = 0
    for i, n in enumerate(nodes):
        if not isinstance(n, dict) or set(n) != {"op", "args", "name", "target"}:
            raise _bad(f"node #{i} has fields {sorted(n) if isinstance(n, dict) else type(n).__name__}")
        if n["op"] not in IR_OPS:
            raise _bad(f"node #{i} has unknown op {n['op']!r}")
        if not isinstance(n["name"], str) or not isinstance(n["target"], str) or not isinstance(n["args"], dict):
            raise _bad(f"node #{i} name/target/args types")
        try:
            IR_OPS[n["op"]].bind(**n["args"])
        except TypeError as e:
            raise _bad(f"node #{i} ({n['op']}) arguments: {e}") from None
        for v in n["args"].values():
            _check_value(v, i, 0)
        if n["op"] == "input":
            n_inputs += 1
        elif n["op"] == "param":
            ix = n["args"]["index"]
            if not isinstance(ix, int) or isinstance(ix, bool) or not 0 <= ix < len(params):
                raise _bad(f"node #{i} refers to parameter {ix!r} of {len(params)}")
        elif n["op"] == "getattr" and n["args"]["name"] not in GETATTR_NAMES:
            raise _bad(f"node #{i} reads attribute {n['args']['name']!r} (allowed: {GETATTR_NAMES})")
        elif n["op"] == "pow":
            e = n["args"]["exponent"]  # non-integers apply to sizes only (layers.pow refuses them on tensors)
            if not isinstance(e, (int, float)) or isinstance(e, bool) or not -MAX_POW <= e <= MAX_POW:
                raise _bad(f"node #{i} raises to the power {e!r} (a number in -{MAX_POW}..{MAX_POW})")
        elif n["op"] in ("repeat", "expand"):
            sizes = n["args"]["sizes"]  # expand may take sizes computed from the input's (the batch): checked when run
            ok = isinstance(sizes, list) and len(sizes) <= MAX_NDIM and all(
                (isinstance(v, int) and not isinstance(v, bool) and -1 <= v < 1 << 31)
                or (n["op"] == "expand" and isinstance(v, dict) and "ref" in v) for v in sizes)
            known = [v for v in sizes if isinstance(v, int)] if ok else []
            if not ok or math.prod(max(1, v) for v in known) > (MAX_REPEAT if n["op"] == "repeat" else MAX_PARAM_ELEMENTS):
                raise _bad(f"node #{i} ({n['op']}) sizes {sizes!r:.80}: too large or not small integers")
    if n_inputs != 1:
        raise _bad(f"{n_inputs} input nodes (exactly one is supported)")
    _check_value(d["output"], len(nodes), 0)


def _is_shape(s) -> bool:
    return isinstance(s, list) and len(s) <= MAX_NDIM and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in s)


def _check_value(v, n_before: int, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _bad("value nested too deeply")
    if v is None or isinstance(v, (bool, int, float, str)):
        return
    if isinstance(v, list):
        if len(v) > _MAX_LIST:
            raise _bad(f"list of {len(v)} elements")
        for e in v:
            _check_value(e, n_before, depth + 1)
        return
    if isinstance(v, dict):
        if set(v) == {"ref"}:
            r = v["ref"]
            if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < n_before:
                raise _bad(f"reference {r!r} is not to an earlier node (< {n_before})")
            return
        if set(v) == {"slice"} and isinstance(v["slice"], list) and len(v["slice"]) == 3:
            for e in v["slice"]:
                _check_value(e, n_before, depth + 1)
            return
        if v == {"ellipsis": True}:
            return
    raise _bad(f"value {v!r:.60} of type {type(v).__name__}")


def resolve(v, env: list):
    """An IR value with refs replaced by the nodes' values (lists become tuples)."""
    if isinstance(v, list):
        return tuple(resolve(e, env) for e in v)
    if isinstance(v, dict):
        if "ref" in v:
            return env[v["ref"]]
        if "slice" in v:
            return slice(*(resolve(e, env) for e in v["slice"]))
        return Ellipsis
    return v


def refs_of(v) -> list[int]:
    if isinstance(v, list):
        return [r for e in v for r in refs_of(e)]
    if isinstance(v, dict):
        if "ref" in v:
            return [v["ref"]]
        if "slice" in v:
            return refs_of(v["slice"])
    return []


# ================================================================== tracing
def trace(model, example_input) -> tuple[Graph, list[np.ndarray]]:
    """Trace `model` (a torch.nn.Module, evaluated in eval mode) into (Graph, parameter arrays).

    Raises UnsupportedLayerError naming the op and the fx node for anything outside the
    supported set, ModelImportError if torch.fx cannot trace the model, ShapeError if
    `example_input` does not fit it. The model's train/eval mode is restored afterwards.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ModelImportError(f"from_torch needs a torch.nn.Module, got {type(model).__name__}")
    x = _example(example_input, model)
    was_training = model.training
    model.eval()
    try:
        return _Tracer(model, x).run()
    finally:
        model.train(was_training)


def _example(example_input, model):
    import torch

    if example_input is None:
        raise ShapeError("the model owner must pass example_input (a tensor of the input's shape, batch first)")
    if isinstance(example_input, torch.Tensor):
        x = example_input.detach()
    else:
        x = torch.as_tensor(np.asarray(example_input))
    p = next(iter(model.parameters()), None)
    dt = p.dtype if p is not None and p.dtype.is_floating_point else torch.float32
    return x.to(dt).clone()  # in-place ops in forward() must not touch the caller's tensor


class _Tracer:
    def __init__(self, model, x):
        self.model = model
        self.x = x
        self.nodes: list[dict] = []
        self.params: list[dict] = []
        self.arrays: list[np.ndarray] = []
        self.ref_of: dict = {}

    # ----------------------------------------------------------------- run
    def run(self) -> tuple[Graph, list[np.ndarray]]:
        import torch
        from torch.fx import symbolic_trace
        from torch.fx.passes.shape_prop import ShapeProp

        root = _wrapped(self.model) if isinstance(self.model, _transformer_types()) else self.model
        try:
            gm = symbolic_trace(root)
        except Exception as e:
            raise ModelImportError(
                f"torch.fx could not trace {type(self.model).__name__}: {type(e).__name__}: {e}. "
                "Models whose forward() branches on tensor values cannot be imported; make the "
                "control flow static (or mark such helpers with torch.fx.wrap)."
            ) from None
        gm.graph.eliminate_dead_code()
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self._refuse_lookups(gm)
        self._refuse_attention_weights(gm)
        try:
            with torch.no_grad():
                reference = self.model(self.x.clone())  # first: ShapeProp prints tracebacks on failure
                ShapeProp(gm).propagate(self.x.clone())
        except Exception as e:
            raise ShapeError(
                f"the example input of shape {tuple(self.x.shape)} does not fit {type(self.model).__name__}: "
                f"{type(e).__name__}: {e}"
            ) from None
        self.folded = self._plan_folds(gm)
        output = None
        for n in gm.graph.nodes:
            if n.op == "output":
                output = self.enc(n.args[0], n)
            else:
                self.translate(n)
        _pool_before_relu(self.nodes, output)
        graph = Graph(input_shape=[int(d) for d in self.x.shape], params=self.params, nodes=self.nodes,
                      output=output, meta={"model": type(self.model).__name__})
        graph = Graph.from_bytes(graph.to_bytes())  # what the other parties will read
        self._self_check(graph, reference)
        return graph, self.arrays

    def _refuse_lookups(self, gm) -> None:
        """Embedding layers index by integer tokens, which the float example (and a shared
        input) cannot be: say so before the example run fails with a dtype error."""
        import torch.nn as tnn

        for n in gm.graph.nodes:
            mod = self.modules.get(n.target) if n.op == "call_module" else None
            if isinstance(mod, (tnn.Embedding, tnn.EmbeddingBag)):
                raise UnsupportedLayerError(
                    f"{type(mod).__name__} (module '{n.target}') at fx node '{n.name}': a lookup by a secret token "
                    "index is not supported; share one-hot inputs instead and replace it by "
                    f"nn.Linear({mod.num_embeddings}, {mod.embedding_dim}, bias=False) with weight = embedding.weight.T")

    def _refuse_attention_weights(self, gm) -> None:
        """nn.MultiheadAttention returns (output, weights): only the output is imported."""
        import torch.nn as tnn

        for n in gm.graph.nodes:
            if n.op == "call_module" and isinstance(self.modules.get(n.target), tnn.MultiheadAttention):
                if any(u.op != "call_function" or u.target is not operator.getitem or u.args[1] != 0 for u in n.users):
                    raise UnsupportedLayerError(
                        f"the attention weights of nn.MultiheadAttention (module '{n.target}', fx node '{n.name}'): "
                        "only its output, attn(q, k, v)[0], can be imported")

    def _self_check(self, graph: Graph, reference) -> None:
        """The graph, run in plaintext float64, must reproduce the model on the example."""
        import torch

        from mpcrt.nn.layers import TorchOps, run_graph

        params = [torch.from_numpy(a) for a in self.arrays]
        with torch.no_grad():
            got = run_graph(graph, params, self.x.to(torch.float64).clone(), TorchOps())
        ref_flat, got_flat = _flat_tensors(reference), _flat_tensors(got)
        if len(ref_flat) != len(got_flat):
            raise ModelImportError(f"internal error: imported graph returns {len(got_flat)} tensors, the model {len(ref_flat)}")
        for r, g in zip(ref_flat, got_flat):
            r = r.to(torch.float64)
            if tuple(r.shape) != tuple(g.shape):
                raise ModelImportError(f"internal error: imported graph output shape {tuple(g.shape)} != model's {tuple(r.shape)}")
            scale = max(1.0, float(r.abs().max())) if r.numel() else 1.0
            err = float((r - g).abs().max()) if r.numel() else 0.0
            if not err <= 1e-3 * scale:
                raise ModelImportError(
                    f"internal error: the imported graph differs from the model by {err:.3g} on the example input "
                    "(please report this model)"
                )

    # ------------------------------------------------------------- helpers
    def emit(self, op: str, args: dict, name: str, target: str) -> dict:
        try:
            IR_OPS[op].bind(**args)
        except TypeError as e:  # pragma: no cover - a bug in a handler
            raise ModelImportError(f"internal error building {op} for {name}: {e}") from None
        self.nodes.append({"op": op, "args": args, "name": name, "target": target})
        return {"ref": len(self.nodes) - 1}

    def param(self, array, name: str) -> dict:
        a = np.ascontiguousarray(np.asarray(array, dtype=np.float64))
        if not np.all(np.isfinite(a)):
            raise ModelImportError(f"parameter {name} contains NaN or infinity")
        self.params.append({"name": name, "shape": [int(s) for s in a.shape]})
        self.arrays.append(a)
        return self.emit("param", {"index": len(self.params) - 1}, name, "param")

    def enc(self, v, n):
        """An fx argument as an IR value."""
        import torch
        from torch.fx import Node

        if isinstance(v, Node):
            if v not in self.ref_of:
                raise ModelImportError(f"internal error: fx node {v.name} used before it was translated")
            return self.ref_of[v]
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            return float(v)
        if isinstance(v, (tuple, list, torch.Size)):
            return [self.enc(e, n) for e in v]
        if isinstance(v, slice):
            return {"slice": [self.enc(v.start, n), self.enc(v.stop, n), self.enc(v.step, n)]}
        if v is Ellipsis:
            return {"ellipsis": True}
        if isinstance(v, torch.Tensor):
            raise UnsupportedLayerError(f"a tensor constant ({tuple(v.shape)}) as an argument at fx node '{n.name}' "
                                        "(register it as a buffer or parameter instead)")
        raise UnsupportedLayerError(f"argument {v!r:.60} of type {type(v).__name__} at fx node '{n.name}' ({_describe(n)})")

    def in_shape(self, n, i: int = 0):
        a = n.args[i] if len(n.args) > i else None
        tm = getattr(a, "meta", {}).get("tensor_meta")
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    # --------------------------------------------------------- BN folding
    def _plan_folds(self, gm) -> dict:
        """{conv/linear fx node: (weight, bias)} for BatchNorms folded into them; the BN nodes alias them."""
        import torch.nn as tnn

        folded = {}
        self.alias = {}
        for n in gm.graph.nodes:
            if n.op != "call_module" or not isinstance(self.modules[n.target], (tnn.BatchNorm1d, tnn.BatchNorm2d)):
                continue
            bn = self.modules[n.target]
            prev = n.args[0] if n.args else None
            if bn.running_mean is None or getattr(prev, "op", None) != "call_module" or len(prev.users) != 1 or prev in folded:
                continue
            layer = self.modules[prev.target]
            ok = (isinstance(bn, tnn.BatchNorm2d) and isinstance(layer, tnn.Conv2d)) or (
                isinstance(bn, tnn.BatchNorm1d) and isinstance(layer, tnn.Linear) and len(self.in_shape(n) or ()) == 2
            ) or (isinstance(bn, tnn.BatchNorm1d) and isinstance(layer, tnn.Conv1d))
            if not ok:
                continue
            scale, shift = _bn_affine(bn)
            w = layer.weight.detach().double().numpy()
            b = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(w.shape[0])
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            b = b * scale + shift
            folded[prev] = (w, b, n.target)
            self.alias[n] = prev
        return folded

    # --------------------------------------------------------- translation
    def translate(self, n) -> None:
        if n in self.alias:
            self.ref_of[n] = self.ref_of[self.alias[n]]
            return
        if n.op == "placeholder":
            if any(nd["op"] == "input" for nd in self.nodes):
                raise UnsupportedLayerError(f"a second model input '{n.target}' (fx node '{n.name}'): only single-input models are supported")
            self.ref_of[n] = self.emit("input", {}, n.name, str(n.target))
        elif n.op == "get_attr":
            self.ref_of[n] = self._get_attr(n)
        elif n.op == "call_module":
            self.ref_of[n] = self._module(n)
        elif n.op == "call_function":
            spec = _FUNCTIONS.get(_key(n.target))
            if _qualname(n.target) == "torch._assert" and all(_is_size(a) or isinstance(a, (bool, str)) for a in n.args):
                self.ref_of[n] = None  # a check on public sizes (true for the example; the ops check the rest)
                return
            if spec is None and _qualname(n.target) in _EVAL_IDENTITIES:
                self.ref_of[n] = self._eval_identity(n, _qualname(n.target))
                return
            self.ref_of[n] = self._call(n, spec, _describe(n))
        elif n.op == "call_method":
            self.ref_of[n] = self._call(n, _METHODS.get(n.target), _describe(n))
        else:  # pragma: no cover
            raise UnsupportedLayerError(f"fx node kind {n.op!r} at '{n.name}'")

    def _eval_identity(self, n, name: str) -> dict:
        """A function that is the identity in eval mode (torchvision's stochastic_depth)."""
        params = _EVAL_IDENTITIES[name]
        a = dict(zip(params, n.args))
        a.update(n.kwargs)
        if a.get("training") or n.meta.get("tensor_meta") is None:
            raise UnsupportedLayerError(f"{name} in training mode at fx node '{n.name}' (call model.eval() first)")
        return self.emit("identity", {"input": self.enc(a["input"], n)}, n.name, name)

    def _module_1d(self, n, mod, x, t: str, what: str) -> dict:
        """Conv1d and the 1-d pools as their 2-d ops on (N, C, 1, L): unsqueeze, op, squeeze
        (the squeeze carries the fx node's name, so layer-by-layer checks see (N, C, L))."""
        import torch.nn as tnn

        shape = self.in_shape(n)
        if shape is not None and len(shape) != 3:
            raise ShapeError(f"{what} needs an (N, C, L) input at fx node '{n.name}', got {len(shape)}-d")
        if isinstance(mod, tnn.Conv1d):
            self._check_conv(mod, what, n)
            pad = _conv_padding(mod.padding, mod.kernel_size, mod.dilation, what, n.name)
            w, b, t = self._layer_weights(n, mod, t)
            return self._emit_1d(n, x, "conv2d", what, weight=self.param(w[:, :, None, :], t + ".weight"),
                                 bias=None if b is None else self.param(b, t + ".bias"), stride=[1, _one(mod.stride)],
                                 padding=[0, int(pad[0])], dilation=[1, _one(mod.dilation)], groups=int(mod.groups))
        if isinstance(mod, tnn.MaxPool1d):
            _check_maxpool(mod.ceil_mode, mod.return_indices, what, n.name)
            return self._emit_1d(n, x, "max_pool2d", what, **_max_pool1d_args(
                mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode))
        if isinstance(mod, tnn.AvgPool1d):
            return self._emit_1d(n, x, "avg_pool2d", what, **_avg_pool1d_args(
                mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad))
        return self._emit_1d(n, x, "adaptive_avg_pool2d", what, **_adaptive_pool1d_args(mod.output_size))

    def _emit_1d(self, n, x: dict, op2d: str, what: str, **kw) -> dict:
        """A 1-d op as its 2-d op on (N, C, 1, L): unsqueeze, op, squeeze (the squeeze
        carries the fx node's name, so layer-by-layer checks see (N, C, L))."""
        u = self.emit("unsqueeze", {"input": x, "dim": 2}, n.name + ":2d", what)
        y = self.emit(op2d, {"input": u, **kw}, n.name + ":" + op2d, what)
        return self.emit("squeeze", {"input": y, "dim": 2}, n.name, what)

    def _layer_weights(self, n, mod, t: str) -> tuple:
        """(weight, bias or None, parameter name) of a Linear/Conv module, with a BatchNorm
        folded in where _plan_folds chose to."""
        w, b = _np(mod.weight), _np(mod.bias)
        if n in self.folded:
            w, b, bn_name = self.folded[n]
            t = f"{t}+{bn_name}"
        return w, b, t

    @staticmethod
    def _check_conv(mod, what: str, n) -> None:
        if mod.padding_mode != "zeros":
            raise UnsupportedLayerError(f"{what} with padding_mode={mod.padding_mode!r} at fx node '{n.name}' (only 'zeros')")

    # ------------------------------------------------------- transformers
    @staticmethod
    def _no_masks(n, what: str) -> None:
        for k, v in n.kwargs.items():
            if v not in (None, False):
                raise UnsupportedLayerError(
                    f"{what} at fx node '{n.name}' with {k}=...: masks are not supported (a causal model can use "
                    "F.scaled_dot_product_attention(q, k, v, is_causal=True))")
        if len(n.args) != 1:
            raise UnsupportedLayerError(f"{what} at fx node '{n.name}' with {len(n.args)} positional arguments (the input only)")

    def _lin(self, x, w, b, pname: str, name: str, what: str) -> dict:
        """A linear layer with the given float64 weight (out, in) and bias (or None)."""
        return self.emit("linear", {"input": x, "weight": self.param(w, pname + ".weight"),
                                    "bias": None if b is None else self.param(b, pname + ".bias")}, name, what)

    def opt_param(self, array, name: str) -> dict | None:
        """`param` of an optional array (a module's weight or bias that may be None)."""
        return None if array is None else self.param(_np(array), name)

    def _layer_norm(self, x, mod, pname: str, name: str, what: str) -> dict:
        return self.emit("layer_norm", {"input": x, "normalized_shape": [int(v) for v in mod.normalized_shape],
                                        "weight": self.opt_param(mod.weight, pname + ".weight"),
                                        "bias": self.opt_param(mod.bias, pname + ".bias"), "eps": float(mod.eps)},
                         name, what)

    def _mha(self, n, mod, t: str, what: str, name: str | None = None, args=None, kwargs=None) -> dict:
        """nn.MultiheadAttention(q, k, v) in eval mode, as IR: the in-projections (the
        1/sqrt(head_dim) scale folded into the query's weights; one linear when q, k and v are
        the same tensor), heads split by reshape/transpose, `attention`, the out-projection."""
        args = n.args if args is None else args
        kw = dict(zip(("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask"), args))
        kw.update(n.kwargs if kwargs is None else kwargs)
        name = n.name if name is None else name
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
        E, H = int(mod.embed_dim), int(mod.num_heads)
        D = E // H
        bf = bool(mod.batch_first)
        c = 1.0 / math.sqrt(D)
        if mod.in_proj_weight is not None:
            W = _np(mod.in_proj_weight)
            Wq, Wk, Wv = W[:E], W[E:2 * E], W[2 * E:]
        else:
            Wq, Wk, Wv = (_np(getattr(mod, f"{p}_proj_weight")) for p in "qkv")
        B = _np(mod.in_proj_bias)
        bq, bk, bv = (None, None, None) if B is None else (B[:E], B[E:2 * E], B[2 * E:])

        def batch_first(v):
            v = self.enc(v, n)
            return v if bf else self.emit("transpose", {"input": v, "dim0": 0, "dim1": 1}, name + ":bf", what)

        q_in, k_in, v_in = kw["query"], kw["key"], kw["value"]
        if q_in is k_in is v_in:
            x = batch_first(q_in)
            bqkv = None if B is None else np.concatenate([bq * c, bk, bv])
            qkv = self._lin(x, np.concatenate([Wq * c, Wk, Wv]), bqkv, t + ".in_proj", name + ":qkv", what)
            parts = self.emit("chunk", {"input": qkv, "chunks": 3, "dim": -1}, name + ":split", what)
            q, k, v = (self.emit("getitem", {"input": parts, "index": i}, f"{name}:{'qkv'[i]}", what) for i in range(3))
        else:
            q = self._lin(batch_first(q_in), Wq * c, None if bq is None else bq * c, t + ".q_proj", name + ":q", what)
            k = self._lin(batch_first(k_in), Wk, bk, t + ".k_proj", name + ":k", what)
            v = self._lin(batch_first(v_in), Wv, bv, t + ".v_proj", name + ":v", what)

        def dims(x, tag):  # (batch, length) of a (B, L, E) value, as graph values: any batch and length
            sh = self.emit("getattr", {"input": x, "name": "shape"}, f"{name}:{tag}shape", what)
            return [self.emit("getitem", {"input": sh, "index": i}, f"{name}:{tag}dim{i}", what) for i in (0, 1)]

        def heads(x, tag):
            x = self.emit("reshape", {"input": x, "shape": dims(x, tag) + [H, D]}, f"{name}:{tag}heads", what)
            return self.emit("transpose", {"input": x, "dim0": 1, "dim1": 2}, f"{name}:{tag}bhld", what)

        bl = dims(q, "o")
        o = self.emit("attention", {"input": heads(q, "q"), "key": heads(k, "k"), "value": heads(v, "v"),
                                    "attn_mask": None, "is_causal": False, "scale": 1.0}, name + ":attention", what)
        o = self.emit("transpose", {"input": o, "dim0": 1, "dim1": 2}, name + ":blhd", what)
        o = self.emit("reshape", {"input": o, "shape": bl + [E]}, name + ":concat", what)
        op = mod.out_proj
        out = self._lin(o, _np(op.weight), _np(op.bias), t + ".out_proj",
                        name if bf else name + ":out", what)
        return out if bf else self.emit("transpose", {"input": out, "dim0": 0, "dim1": 1}, name, what)

    def _encoder_layer(self, n, mod, x, shape, t: str, what: str, name: str) -> dict:
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
            ref = self.ref_of.get(src)
            self.ref_of[src] = v  # the attention reads its input through enc(src)
            try:
                return self._mha(n, mod.self_attn, t + ".self_attn", what, f"{name}:{tag}", (src, src, src), {})
            finally:
                self.ref_of[src] = ref

        def ff(v, tag):
            h = self._lin(v, _np(mod.linear1.weight), _np(mod.linear1.bias), t + ".linear1", f"{name}:{tag}1", what)
            h = self.emit(act_op[0], {"input": h, **act_op[1]}, f"{name}:{tag}act", what)
            return self._lin(h, _np(mod.linear2.weight), _np(mod.linear2.bias), t + ".linear2", f"{name}:{tag}2", what)

        def add(a, b, tag):
            return self.emit("add", {"input": a, "other": b, "alpha": 1}, f"{name}:{tag}", what)

        def norm(v, m, tag, final=False):
            return self._layer_norm(v, m, f"{t}.{tag}", name if final else f"{name}:{tag}", what)

        if mod.norm_first:
            x = add(x, sa(norm(x, mod.norm1, "norm1"), "sa"), "res1")
            return self.emit("add", {"input": x, "other": ff(norm(x, mod.norm2, "norm2"), "ff"), "alpha": 1}, name, what)
        x = norm(add(x, sa(x, "sa"), "res1"), mod.norm1, "norm1")
        return norm(add(x, ff(x, "ff"), "res2"), mod.norm2, "norm2", final=True)

    def _get_attr(self, n) -> dict:
        import torch

        obj = self.gm
        for part in str(n.target).split("."):
            obj = getattr(obj, part)
        if isinstance(obj, torch.Tensor):
            return self.param(obj.detach().double().numpy(), str(n.target))
        raise UnsupportedLayerError(f"attribute '{n.target}' of type {type(obj).__name__} read at fx node '{n.name}'")

    def _call(self, n, spec, what: str) -> dict:
        if spec is None:
            raise UnsupportedLayerError(f"unsupported operation {what} at fx node '{n.name}'; see mpcrt.nn.SUPPORTED for what runs under MPC")
        op, sig, fix = spec
        try:
            b = sig.bind(*n.args, **n.kwargs)
        except TypeError as e:
            raise UnsupportedLayerError(f"{what} at fx node '{n.name}' called with unsupported arguments: {e}") from None
        b.apply_defaults()
        a = dict(b.arguments)
        if "self" in a:
            a["input"] = a.pop("self")
        if fix is not None:
            r = fix(self, n, a)
            if isinstance(r, dict) and "ref" in r:
                return r
            if isinstance(r, tuple):
                op, a = r
        keep = IR_OPS[op].parameters
        for k in list(a):
            if k not in keep:
                del a[k]
        return self.emit(op, {k: self.enc(v, n) for k, v in a.items()}, n.name, what)

    def _module(self, n) -> dict:
        import torch.nn as tnn

        mod = self.modules[n.target]
        what = f"{type(mod).__module__}.{type(mod).__name__} (module '{n.target}')"
        if isinstance(mod, tnn.MultiheadAttention):
            return [self._mha(n, mod, str(n.target), what), None]  # (output, weights): [0] only
        if isinstance(mod, (tnn.TransformerEncoderLayer, tnn.TransformerEncoder)):
            self._no_masks(n, what)
            x = self.enc(n.args[0], n)
            shape = self.in_shape(n)
            if isinstance(mod, tnn.TransformerEncoderLayer):
                return self._encoder_layer(n, mod, x, shape, str(n.target), what, n.name)
            for i, layer in enumerate(mod.layers):
                last = i == len(mod.layers) - 1 and mod.norm is None
                x = self._encoder_layer(n, layer, x, shape, f"{n.target}.layers.{i}", what,
                                        n.name if last else f"{n.name}:layer{i}")
            if mod.norm is not None:
                x = self._layer_norm(x, mod.norm, f"{n.target}.norm", n.name, what)
            return x
        if n.kwargs or len(n.args) != 1:
            raise UnsupportedLayerError(f"{what} at fx node '{n.name}' called with {len(n.args)} positional and "
                                        f"{len(n.kwargs)} keyword arguments (one input expected)")
        x = self.enc(n.args[0], n)
        t = str(n.target)

        def go(op, **kw):
            return self.emit(op, {"input": x, **kw}, n.name, what)

        if isinstance(mod, tnn.Linear):
            w, b, t = self._layer_weights(n, mod, t)
            return go("linear", weight=self.param(w, t + ".weight"), bias=None if b is None else self.param(b, t + ".bias"))
        if isinstance(mod, tnn.Conv2d):
            self._check_conv(mod, what, n)
            pad = _conv_padding(mod.padding, mod.kernel_size, mod.dilation, what, n.name)
            w, b, t = self._layer_weights(n, mod, t)
            return go("conv2d", weight=self.param(w, t + ".weight"), bias=None if b is None else self.param(b, t + ".bias"),
                      stride=list(mod.stride), padding=pad, dilation=list(mod.dilation), groups=int(mod.groups))
        if isinstance(mod, (tnn.Conv1d, tnn.MaxPool1d, tnn.AvgPool1d, tnn.AdaptiveAvgPool1d)):
            return self._module_1d(n, mod, x, t, what)
        if isinstance(mod, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
            if mod.running_mean is None:
                raise UnsupportedLayerError(f"{what} with track_running_stats=False at fx node '{n.name}' "
                                            "(uses batch statistics even in eval mode)")
            shape = self.in_shape(n)
            want = 4 if isinstance(mod, tnn.BatchNorm2d) else (2, 3)
            if shape is not None and len(shape) not in (want if isinstance(want, tuple) else (want,)):
                raise ShapeError(f"{what} gets a {len(shape)}-d input at fx node '{n.name}'")
            scale, shift = _bn_affine(mod)
            return go("affine", scale=self.param(scale, t + ".scale"), shift=self.param(shift, t + ".shift"))
        if isinstance(mod, tnn.ReLU):
            return go("relu")
        if isinstance(mod, tnn.LeakyReLU):
            return go("leaky_relu", negative_slope=float(mod.negative_slope))
        if isinstance(mod, tnn.Sigmoid):
            return go("sigmoid")
        if isinstance(mod, tnn.Tanh):
            return go("tanh")
        if isinstance(mod, tnn.Softmax):
            dim = mod.dim if mod.dim is not None else _implicit_softmax_dim(self.in_shape(n))
            return go("softmax", dim=int(dim))
        if isinstance(mod, tnn.LogSoftmax):
            dim = mod.dim if mod.dim is not None else _implicit_softmax_dim(self.in_shape(n))
            return go("log_softmax", dim=int(dim))
        if isinstance(mod, tnn.GELU):
            return go("gelu", approximate=str(mod.approximate))
        if isinstance(mod, tnn.SiLU):
            return go("silu")
        if isinstance(mod, tnn.Hardswish):
            return go("hardswish")
        if isinstance(mod, tnn.ELU):
            return go("elu", alpha=float(mod.alpha))
        if isinstance(mod, tnn.SELU):
            return go("selu")
        if isinstance(mod, tnn.CELU):
            if not mod.alpha > 0:
                raise UnsupportedLayerError(f"{what} with alpha={mod.alpha} at fx node '{n.name}' (positive alpha only)")
            return go("celu", alpha=float(mod.alpha))
        if isinstance(mod, tnn.Softplus):
            return go("softplus", beta=float(mod.beta), threshold=float(mod.threshold))
        if isinstance(mod, tnn.Mish):
            return go("mish")
        if isinstance(mod, tnn.Upsample):  # UpsamplingNearest2d / UpsamplingBilinear2d too
            return go("resize", **_resize_args(n, str(mod.mode), mod.align_corners, mod.scale_factor,
                                               mod.recompute_scale_factor, False, what))
        if isinstance(mod, tnn.PReLU):
            return go("prelu", weight=self.param(_np(mod.weight), t + ".weight"))
        if isinstance(mod, tnn.GroupNorm):
            return go("group_norm", num_groups=int(mod.num_groups), weight=self.opt_param(mod.weight, t + ".weight"),
                      bias=self.opt_param(mod.bias, t + ".bias"), eps=float(mod.eps))
        if isinstance(mod, (tnn.InstanceNorm1d, tnn.InstanceNorm2d)):
            shape = self.in_shape(n)
            if shape is not None and len(shape) != (3 if isinstance(mod, tnn.InstanceNorm1d) else 4):
                raise ShapeError(f"{what} gets a {len(shape)}-d input at fx node '{n.name}' (batched inputs only)")
            if mod.track_running_stats and mod.running_mean is not None:  # eval mode: the running statistics
                scale, shift = _bn_affine(mod)
                return go("affine", scale=self.param(scale, t + ".scale"), shift=self.param(shift, t + ".shift"))
            w = self.opt_param(mod.weight, t + ".weight") if mod.affine else None
            b = self.opt_param(mod.bias, t + ".bias") if mod.affine else None
            channels = int(shape[1]) if shape is not None else int(mod.num_features)  # torch uses the input's (affine=False)
            return go("group_norm", num_groups=channels, weight=w, bias=b, eps=float(mod.eps))
        if isinstance(mod, tnn.Hardsigmoid):
            return go("hardsigmoid")
        if isinstance(mod, tnn.Hardtanh):  # ReLU6 too
            return go("hardtanh", min_val=float(mod.min_val), max_val=float(mod.max_val))
        if isinstance(mod, tnn.LayerNorm):
            return self._layer_norm(x, mod, t, n.name, what)
        if isinstance(mod, tnn.MaxPool2d):
            _check_maxpool(mod.ceil_mode, mod.return_indices, what, n.name)
            return go("max_pool2d", kernel_size=self.enc(mod.kernel_size, n), stride=self.enc(mod.stride, n),
                      padding=self.enc(mod.padding, n), dilation=self.enc(mod.dilation, n), ceil_mode=bool(mod.ceil_mode))
        if isinstance(mod, tnn.AvgPool2d):
            return go("avg_pool2d", kernel_size=self.enc(mod.kernel_size, n), stride=self.enc(mod.stride, n),
                      padding=self.enc(mod.padding, n), ceil_mode=bool(mod.ceil_mode),
                      count_include_pad=bool(mod.count_include_pad), divisor_override=mod.divisor_override)
        if isinstance(mod, tnn.AdaptiveAvgPool2d):
            return go("adaptive_avg_pool2d", output_size=self.enc(mod.output_size, n))
        if isinstance(mod, tnn.Flatten):
            return go("flatten", start_dim=int(mod.start_dim), end_dim=int(mod.end_dim))
        if isinstance(mod, (tnn.Dropout, tnn.Dropout1d, tnn.Dropout2d, tnn.Dropout3d, tnn.AlphaDropout, tnn.Identity)):
            return go("identity")
        if _qualname(type(mod)) in _EVAL_IDENTITY_MODULES and not mod.training:
            return go("identity")
        raise UnsupportedLayerError(
            f"unsupported layer {what} at fx node '{n.name}'; supported layers: {', '.join(SUPPORTED_MODULES)}"
        )


def _np(t):
    """A torch tensor (a module's parameter) as a float64 numpy array; None stays None."""
    return None if t is None else t.detach().double().numpy()


def _is_size(v) -> bool:
    """An fx node computing a public number from sizes (x.shape[-1], x.size(1) // 2, ...)."""
    from torch.fx import Node

    return isinstance(v, Node) and v.meta.get("type") in (int, float, bool)


def _wrapped(model):
    """A transformer block given as the model itself, inside a module whose forward calls it:
    fx traces a root's forward, and torch's transformer forwards branch on their inputs;
    as a call inside a root they are one leaf node that _Tracer._module decomposes."""
    import torch.nn as tnn

    class Root(tnn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)

    return Root(model)


def _transformer_types() -> tuple:
    import torch.nn as tnn

    return (tnn.TransformerEncoderLayer, tnn.TransformerEncoder)


def _one(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _stride_1d(stride, k: int) -> int:
    return k if stride is None or stride in ((), []) else _one(stride)


def _max_pool1d_args(kernel_size, stride, padding, dilation, ceil_mode) -> dict:
    """max_pool2d's arguments for a 1-d max pool on (N, C, 1, L)."""
    k = _one(kernel_size)
    return {"kernel_size": [1, k], "stride": [1, _stride_1d(stride, k)], "padding": [0, _one(padding)],
            "dilation": [1, _one(dilation)], "ceil_mode": bool(ceil_mode)}


def _avg_pool1d_args(kernel_size, stride, padding, ceil_mode, count_include_pad) -> dict:
    """avg_pool2d's arguments for a 1-d average pool on (N, C, 1, L)."""
    k = _one(kernel_size)
    return {"kernel_size": [1, k], "stride": [1, _stride_1d(stride, k)], "padding": [0, _one(padding)],
            "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad), "divisor_override": None}


def _adaptive_pool1d_args(output_size) -> dict:
    return {"output_size": [1, None if output_size is None else _one(output_size)]}


def _resize_args(n, mode: str, align_corners, scale_factor, recompute, antialias, what: str) -> dict:
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


def _pool_before_relu(nodes: list, output) -> None:
    """relu -> max_pool2d becomes max_pool2d -> relu (in place) where the relu feeds only the pool.

    Both are monotone, so max(relu(a), relu(b)) = relu(max(a, b)): the same output with
    k*k times fewer comparisons for the ReLU (a k x k pool). Node order stays topological.
    """
    users: dict[int, list[int]] = {}
    for j, n in enumerate(nodes):
        for v in n["args"].values():
            for r in refs_of(v):
                users.setdefault(r, []).append(j)
    for r in refs_of(output):
        users.setdefault(r, []).append(len(nodes))
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


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _conv_padding(padding, kernel, dilation, what, name) -> list:
    if padding == "valid":
        return [0, 0]
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            if total % 2:
                raise UnsupportedLayerError(f"{what} with padding='same' and an even kernel (asymmetric padding) at fx node '{name}'")
            out.append(total // 2)
        return out
    if isinstance(padding, int):
        return [padding, padding]
    return [int(p) for p in padding]


def _check_maxpool(ceil_mode, return_indices, what, name) -> None:
    if return_indices:
        raise UnsupportedLayerError(f"{what} with return_indices=True at fx node '{name}' (indices would reveal data)")


def _implicit_softmax_dim(shape) -> int:
    nd = len(shape) if shape is not None else 2
    return 0 if nd in (0, 1, 3) else 1


def _flat_tensors(v) -> list:
    if isinstance(v, (tuple, list)):
        return [t for e in v for t in _flat_tensors(e)]
    return [v]


def _describe(n) -> str:
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
_EVAL_IDENTITIES = {"torchvision.ops.stochastic_depth.stochastic_depth": ("input", "p", "mode", "training")}
_EVAL_IDENTITY_MODULES = ("torchvision.ops.stochastic_depth.StochasticDepth",)


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _key(fn):
    try:
        hash(fn)
        return fn
    except TypeError:  # pragma: no cover
        return id(fn)


# ------------------------------------------------- function and method tables
def _nonneg_fixes():
    """Per-op argument checks and rewrites (fix(tracer, node, args) -> None | (op, args))."""

    def no_out(tr, n, a):
        if a.pop("out", None) is not None:
            raise UnsupportedLayerError(f"out= at fx node '{n.name}'")

    def softmax(tr, n, a):
        if a.get("dtype") is not None:
            raise UnsupportedLayerError(f"softmax with dtype= at fx node '{n.name}'")
        if a.get("dim") is None:
            a["dim"] = _implicit_softmax_dim(tr.in_shape(n))
        return None

    def maxpool(tr, n, a):
        _check_maxpool(a.get("ceil_mode", False), a.get("return_indices", False), _describe(n), n.name)

    def conv(tr, n, a):
        w = getattr(a.get("weight"), "meta", {}).get("tensor_meta")
        if isinstance(a.get("padding"), str):
            if w is None:
                raise UnsupportedLayerError(f"conv2d with padding={a['padding']!r} and unknown weight shape at fx node '{n.name}'")
            d = a.get("dilation", 1)
            d = (d, d) if isinstance(d, int) else d
            a["padding"] = _conv_padding(a["padding"], tuple(w.shape[2:]), d, _describe(n), n.name)

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
            raise UnsupportedLayerError(f"scaled_dot_product_attention with a boolean or constant attn_mask at fx node "
                                        f"'{n.name}' (an additive float mask computed by the model, or is_causal=True)")
        if a["scale"] is not None and not (public_number(a["scale"]) or _is_size(a["scale"])):
            raise UnsupportedLayerError(f"scaled_dot_product_attention with a non-constant scale at fx node '{n.name}'")

    def dim_method(tr, n, a):  # x.dim() -> getattr ndim
        return ("getattr", {"input": a["input"], "name": "ndim"})

    def getattr_fix(tr, n, a):
        if a["name"] not in GETATTR_NAMES:
            raise UnsupportedLayerError(f"reading attribute .{a['name']} at fx node '{n.name}' (allowed: {', '.join(GETATTR_NAMES)})")

    def getitem_fix(tr, n, a):
        idx = a["index"]
        parts = idx if isinstance(idx, tuple) else (idx,)
        from torch.fx import Node

        for p in parts:
            if isinstance(p, list) or (isinstance(p, Node) and p.meta.get("tensor_meta") is not None):
                raise UnsupportedLayerError(f"advanced (tensor or list) indexing at fx node '{n.name}'")

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
        if _is_size(base) and public_number(e):  # e.g. head_dim ** -0.5: public arithmetic on sizes
            return ("pow", {"input": base, "exponent": float(e) if not float(e).is_integer() else int(e)})
        if not (isinstance(e, (int, float)) and not isinstance(e, bool) and float(e).is_integer() and 0 <= e <= 64):
            raise UnsupportedLayerError(f"power with exponent {e!r} at fx node '{n.name}' (a public integer in 0..64 only)")
        if public_number(base):
            raise UnsupportedLayerError(f"a number raised to a tensor power at fx node '{n.name}'")
        return ("pow", {"input": base, "exponent": int(e)})

    def square(tr, n, a):
        return ("pow", {"input": a["input"], "exponent": 2})

    def one_d(op2d, build):
        """F.*1d as the 2-d op on (N, C, 1, L) (Tracer._emit_1d); build(tr, n, a) gives the
        2-d op's other arguments."""
        def fix(tr, n, a):
            what = _describe(n)
            shape = tr.in_shape(n)
            if shape is not None and len(shape) != 3:
                raise UnsupportedLayerError(f"{what} on a {len(shape)}-d input at fx node '{n.name}' (batched (N, C, L) only)")
            return tr._emit_1d(n, tr.enc(a["input"], n), op2d, what, **build(tr, n, a))
        return fix

    def conv1d(tr, n, a):
        w = a["weight"]
        wm = getattr(w, "meta", {}).get("tensor_meta")
        if wm is None or len(wm.shape) != 3:
            raise UnsupportedLayerError(f"conv1d with a weight of unknown shape at fx node '{n.name}'")
        pad = a.get("padding", 0)
        pad = _conv_padding(pad, (int(wm.shape[2]),), (_one(a.get("dilation", 1)),), _describe(n), n.name)[0] \
            if isinstance(pad, str) else _one(pad)
        w4 = tr.emit("unsqueeze", {"input": tr.enc(w, n), "dim": 2}, n.name + ":weight2d", _describe(n))
        b = a.get("bias")
        return {"weight": w4, "bias": None if b is None else tr.enc(b, n), "stride": [1, _one(a.get("stride", 1))],
                "padding": [0, int(pad)], "dilation": [1, _one(a.get("dilation", 1))], "groups": int(a.get("groups", 1))}

    def max_pool1d(tr, n, a):
        _check_maxpool(False, a.get("return_indices", False), _describe(n), n.name)
        return _max_pool1d_args(a["kernel_size"], a.get("stride"), a.get("padding", 0), a.get("dilation", 1),
                                a.get("ceil_mode", False))

    def avg_pool1d(tr, n, a):
        return _avg_pool1d_args(a["kernel_size"], a.get("stride"), a.get("padding", 0), a.get("ceil_mode", False),
                                a.get("count_include_pad", True))

    def adaptive_avg_pool1d(tr, n, a):
        return _adaptive_pool1d_args(a["output_size"])

    def compare_as(op):
        def fix(tr, n, a):
            return ("compare", {"input": a["input"], "other": a["other"], "op": op})
        return fix

    def cast(tr, n, a):
        dt = a.get("dtype")
        import torch

        if dt is not None and dt not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise UnsupportedLayerError(f"{_describe(n)} to {dt} at fx node '{n.name}' (floating dtypes only)")
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
                raise UnsupportedLayerError(f"{_describe(n)} over several dims at fx node '{n.name}' (one dim only)")
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
            raise UnsupportedLayerError(f"{_describe(n)} with p={p!r} at fx node '{n.name}' (the 2-norm only)")

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
        return ("resize", {"input": a["input"], **_resize_args(
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

    return dict(no_out=no_out, softmax=softmax, sdpa=sdpa, maxpool=maxpool, conv=conv, div=div, varargs=varargs,
                dim_method=dim_method, getattr_fix=getattr_fix, getitem_fix=getitem_fix, relu6=relu6, clamp=clamp,
                clamp_min=clamp_min, clamp_max=clamp_max, pow=pow_, square=square, instance_norm=instance_norm,
                compare_as=compare_as, cast=cast, max_or_maximum=max_or_maximum, one_dim=one_dim, var_std=var_std,
                norm_fix=norm_fix, normalize_fix=normalize_fix, t_fix=t_fix, pad_fix=pad_fix, interpolate=interpolate,
                conv1d=one_d("conv2d", conv1d), max_pool1d=one_d("max_pool2d", max_pool1d),
                avg_pool1d=one_d("avg_pool2d", avg_pool1d), adaptive_avg_pool1d=one_d("adaptive_avg_pool2d", adaptive_avg_pool1d))


def _tables():
    import torch
    import torch.nn.functional as F

    fx = _nonneg_fixes()
    S = _s
    bin_ = S(lambda input, other: None)
    unary = S(lambda input: None)
    unary_inplace = S(lambda input, inplace=False: None)
    sumlike = S(lambda input, dim=None, keepdim=False, *, dtype=None, out=None: None)

    def dtype_none(tr, n, a):
        if a.get("dtype") is not None or a.get("out") is not None:
            raise UnsupportedLayerError(f"dtype=/out= at fx node '{n.name}'")

    funcs = {
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
        torch.div: ("div", S(lambda input, other, *, rounding_mode=None, out=None: None), lambda t, n, a: (fx["div"](t, n, a), fx["no_out"](t, n, a))[-1]),
        torch.neg: ("neg", unary, None),
        torch.matmul: ("matmul", S(lambda input, other, *, out=None: None), fx["no_out"]),
        torch.relu: ("relu", unary, None), F.relu: ("relu", unary_inplace, None),
        F.leaky_relu: ("leaky_relu", S(lambda input, negative_slope=0.01, inplace=False: None), None),
        torch.sigmoid: ("sigmoid", unary, None), F.sigmoid: ("sigmoid", unary, None),
        torch.tanh: ("tanh", unary, None), F.tanh: ("tanh", unary, None),
        torch.exp: ("exp", unary, None),
        F.softmax: ("softmax", S(lambda input, dim=None, _stacklevel=3, dtype=None: None), fx["softmax"]),
        F.scaled_dot_product_attention: ("attention", S(lambda query, key, value, attn_mask=None, dropout_p=0.0,
                                                          is_causal=False, scale=None, enable_gqa=False: None), fx["sdpa"]),
        torch.softmax: ("softmax", S(lambda input, dim, dtype=None: None), fx["softmax"]),
        F.log_softmax: ("log_softmax", S(lambda input, dim=None, _stacklevel=3, dtype=None: None), fx["softmax"]),
        torch.log_softmax: ("log_softmax", S(lambda input, dim, dtype=None: None), fx["softmax"]),
        F.gelu: ("gelu", S(lambda input, approximate="none": None), None),
        F.silu: ("silu", S(lambda input, inplace=False: None), None),
        F.hardtanh: ("hardtanh", S(lambda input, min_val=-1.0, max_val=1.0, inplace=False: None), None),
        F.relu6: ("hardtanh", S(lambda input, inplace=False: None), fx["relu6"]),
        F.hardswish: ("hardswish", S(lambda input, inplace=False: None), None),
        F.hardsigmoid: ("hardsigmoid", S(lambda input, inplace=False: None), None),
        F.elu: ("elu", S(lambda input, alpha=1.0, inplace=False: None), None),
        F.selu: ("selu", S(lambda input, inplace=False: None), None),
        F.celu: ("celu", S(lambda input, alpha=1.0, inplace=False: None), None),
        F.softplus: ("softplus", S(lambda input, beta=1.0, threshold=20.0: None), None),
        F.mish: ("mish", S(lambda input, inplace=False: None), None),
        F.prelu: ("prelu", S(lambda input, weight: None), None),
        F.group_norm: ("group_norm", S(lambda input, num_groups, weight=None, bias=None, eps=1e-5: None), None),
        F.instance_norm: ("group_norm", S(lambda input, running_mean=None, running_var=None, weight=None, bias=None,
                                            use_input_stats=True, momentum=0.1, eps=1e-5: None), fx["instance_norm"]),
        torch.clamp: ("clamp", S(lambda input, min=None, max=None, *, out=None: None), fx["clamp"]),
        torch.clip: ("clamp", S(lambda input, min=None, max=None, *, out=None: None), fx["clamp"]),
        torch.clamp_min: ("clamp", S(lambda input, min: None), fx["clamp_min"]),
        torch.clamp_max: ("clamp", S(lambda input, max: None), fx["clamp_max"]),
        torch.abs: ("abs", S(lambda input, *, out=None: None), fx["no_out"]),
        torch.sqrt: ("sqrt", S(lambda input, *, out=None: None), fx["no_out"]),
        torch.rsqrt: ("rsqrt", S(lambda input, *, out=None: None), fx["no_out"]),
        torch.reciprocal: ("reciprocal", S(lambda input, *, out=None: None), fx["no_out"]),
        torch.log: ("log", S(lambda input, *, out=None: None), fx["no_out"]),
        operator.pow: ("pow", S(lambda input, exponent: None), fx["pow"]),
        torch.pow: ("pow", S(lambda input, exponent, *, out=None: None), fx["pow"]),
        torch.square: ("pow", S(lambda input, *, out=None: None), fx["square"]),
        F.layer_norm: ("layer_norm", S(lambda input, normalized_shape, weight=None, bias=None, eps=1e-5: None), None),
        F.max_pool2d: ("max_pool2d", S(lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False: None), fx["maxpool"]),
        F.avg_pool2d: ("avg_pool2d", S(lambda input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None: None), None),
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
        torch.maximum: ("maximum", S(lambda input, other, *, out=None: None), fx["no_out"]),
        torch.minimum: ("minimum", S(lambda input, other, *, out=None: None), fx["no_out"]),
        torch.max: ("max", S(lambda input, dim=None, keepdim=False, *, out=None: None), fx["max_or_maximum"]("maximum")),
        torch.min: ("min", S(lambda input, dim=None, keepdim=False, *, out=None: None), fx["max_or_maximum"]("minimum")),
        torch.amax: ("amax", S(lambda input, dim, keepdim=False, *, out=None: None), fx["one_dim"]),
        torch.amin: ("amin", S(lambda input, dim, keepdim=False, *, out=None: None), fx["one_dim"]),
        torch.argmax: ("argmax", S(lambda input, dim=None, keepdim=False: None), None),
        torch.argmin: ("argmin", S(lambda input, dim=None, keepdim=False: None), None),
        torch.var: ("var", S(lambda input, dim=None, unbiased=None, keepdim=False, *, correction=None: None), fx["var_std"]),
        torch.std: ("std", S(lambda input, dim=None, unbiased=None, keepdim=False, *, correction=None: None), fx["var_std"]),
        torch.norm: ("norm", S(lambda input, p="fro", dim=None, keepdim=False, out=None, dtype=None: None), fx["norm_fix"]),
        torch.concat: ("cat", S(lambda tensors, dim=0, *, out=None: None), fx["no_out"]),
        torch.sum: ("sum", sumlike, dtype_none), torch.mean: ("mean", sumlike, dtype_none),
        F.dropout: ("identity", S(lambda input, p=0.5, training=True, inplace=False: None), None),
        F.dropout2d: ("identity", S(lambda input, p=0.5, training=True, inplace=False: None), None),
        F.linear: ("linear", S(lambda input, weight, bias=None: None), None),
        F.conv1d: ("conv2d", S(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None), fx["conv1d"]),
        F.max_pool1d: ("max_pool2d", S(lambda input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                                       return_indices=False: None), fx["max_pool1d"]),
        F.avg_pool1d: ("avg_pool2d", S(lambda input, kernel_size, stride=None, padding=0, ceil_mode=False,
                                       count_include_pad=True: None), fx["avg_pool1d"]),
        F.adaptive_avg_pool1d: ("adaptive_avg_pool2d", S(lambda input, output_size: None), fx["adaptive_avg_pool1d"]),
        F.conv2d: ("conv2d", S(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None), fx["conv"]),
    }
    methods = {
        "add": ("add", S(lambda self, other, *, alpha=1: None), None),
        "add_": ("add", S(lambda self, other, *, alpha=1: None), None),
        "sub": ("sub", S(lambda self, other, *, alpha=1: None), None),
        "mul": ("mul", S(lambda self, other: None), None), "mul_": ("mul", S(lambda self, other: None), None),
        "div": ("div", S(lambda self, other, *, rounding_mode=None: None), fx["div"]),
        "neg": ("neg", S(lambda self: None), None),
        "matmul": ("matmul", S(lambda self, other: None), None),
        "relu": ("relu", S(lambda self: None), None), "relu_": ("relu", S(lambda self: None), None),
        "sigmoid": ("sigmoid", S(lambda self: None), None), "tanh": ("tanh", S(lambda self: None), None),
        "exp": ("exp", S(lambda self: None), None),
        "clamp": ("clamp", S(lambda self, min=None, max=None: None), fx["clamp"]),
        "clip": ("clamp", S(lambda self, min=None, max=None: None), fx["clamp"]),
        "clamp_": ("clamp", S(lambda self, min=None, max=None: None), fx["clamp"]),
        "clamp_min": ("clamp", S(lambda self, min: None), fx["clamp_min"]),
        "clamp_max": ("clamp", S(lambda self, max: None), fx["clamp_max"]),
        "abs": ("abs", S(lambda self: None), None),
        "sqrt": ("sqrt", S(lambda self: None), None),
        "rsqrt": ("rsqrt", S(lambda self: None), None),
        "reciprocal": ("reciprocal", S(lambda self: None), None),
        "log": ("log", S(lambda self: None), None),
        "pow": ("pow", S(lambda self, exponent: None), fx["pow"]),
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
                  lambda t, n, a: ("split", {"input": a["input"], "split_size_or_sections": a["split_size"], "dim": a["dim"]})),
        "bmm": ("matmul", S(lambda self, mat2: None), lambda t, n, a: ("matmul", {"input": a["input"], "other": a["mat2"]})),
        "t": ("transpose", S(lambda self: None), fx["t_fix"]),
        "lt": ("compare", S(lambda self, other: None), fx["compare_as"]("lt")),
        "le": ("compare", S(lambda self, other: None), fx["compare_as"]("le")),
        "gt": ("compare", S(lambda self, other: None), fx["compare_as"]("gt")),
        "ge": ("compare", S(lambda self, other: None), fx["compare_as"]("ge")),
        "eq": ("compare", S(lambda self, other: None), fx["compare_as"]("eq")),
        "ne": ("compare", S(lambda self, other: None), fx["compare_as"]("ne")),
        "float": ("cast", S(lambda self, memory_format=None: None), fx["cast"]),
        "double": ("cast", S(lambda self, memory_format=None: None), fx["cast"]),
        "to": ("cast", S(lambda self, dtype=None, non_blocking=False, copy=False, memory_format=None: None), fx["cast"]),
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
        "sum": ("sum", S(lambda self, dim=None, keepdim=False, dtype=None: None), dtype_none),
        "mean": ("mean", S(lambda self, dim=None, keepdim=False, dtype=None: None), dtype_none),
    }
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


_FUNCTIONS = _LazyTable(0)
_METHODS = _LazyTable(1)

SUPPORTED_MODULES = (
    "Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "ReLU", "LeakyReLU", "ReLU6", "Hardtanh", "Hardswish", "Hardsigmoid", "ELU", "SELU", "CELU", "Softplus", "Mish", "Upsample", "PReLU", "GroupNorm", "InstanceNorm1d/2d", "GELU",
    "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "Flatten", "Dropout", "Dropout1d/2d/3d", "AlphaDropout", "Identity",
    "torchvision's StochasticDepth (eval)", "MultiheadAttention (no masks; output only)", "TransformerEncoderLayer (relu/gelu, no masks)", "TransformerEncoder",
)
SUPPORTED_FUNCTIONS = (
    "+ - * / // ** (integer powers; any power of a size) unary-, @, < <= > >= == !=, indexing, getattr(x, 'shape'/'values'/'indices'), "
    "torch.add/sub/mul/div/neg/matmul/bmm/relu/sigmoid/tanh/exp/where/maximum/minimum/max/min/amax/amin/argmax/argmin/"
    "var/std/norm/stack/chunk/split/"
    "log/sqrt/rsqrt/reciprocal/abs/pow/square/clamp/clip/clamp_min/clamp_max/"
    "softmax/log_softmax/flatten/reshape/permute/transpose/unsqueeze/squeeze/cat/concat/sum/mean, F.relu/leaky_relu/"
    "torch._assert on sizes, torchvision.ops.stochastic_depth (eval), scaled_dot_product_attention (is_causal, scale, float attn_mask)/relu6/hardtanh/hardswish/hardsigmoid/pad/interpolate/normalize/elu/selu/celu/softplus/mish/prelu/group_norm/instance_norm/gelu/silu/sigmoid/tanh/softmax/log_softmax/layer_norm/max_pool1d/2d/avg_pool1d/2d/adaptive_avg_pool1d/2d/dropout/dropout2d/linear/conv1d/conv2d, tensor methods "
    "add/sub/mul/div/neg/matmul/relu/sigmoid/tanh/exp/log/sqrt/rsqrt/reciprocal/abs/pow/square/clamp/clip/clamp_min/clamp_max/"
    "softmax/log_softmax/view/reshape/flatten/permute/repeat/expand/transpose/t/unsqueeze/squeeze/contiguous/size/dim/sum/mean/"
    "chunk/split/bmm/lt/le/gt/ge/eq/ne/float/double/to(float dtype)/type_as/maximum/minimum/max/min/amax/amin/argmax/argmin/"
    "var/std/norm"
)
SUPPORTED = {"modules": SUPPORTED_MODULES, "functions": SUPPORTED_FUNCTIONS}

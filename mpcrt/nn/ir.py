"""The IR: a model's public architecture (`Graph`), its msgpack form and its validation.

A `Graph` is a list of nodes in topological order, each an op of the registry
(`mpcrt.nn.ops`) with its hyper-parameters, and the names and shapes of the parameters.
It serialises to msgpack (never pickle) and is validated field by field when read back,
so a party that receives it runs no code it did not already have. The parameter
*values* never enter it.

IR values: None, bool, int, float, str, lists, {"ref": i} (the value of node i),
{"slice": [start, stop, step]}, {"ellipsis": true}. Every op's arguments are named
and checked against the op's signature in `IR_OPS` on decode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgpack
import numpy as np

from mpcrt.errors import ConfigError, MpcError
from mpcrt.nn.ops import IR_OPS

FORMAT = "mpcrt-nn"
VERSION = 1
MAX_GRAPH_BYTES = 64 << 20  # a serialised graph larger than this is refused
MAX_NODES = 200_000
MAX_PARAM_ELEMENTS = 1 << 31  # about 2 billion weights (16 GiB of shares)
MAX_POW = 64  # largest integer power a graph may take
MAX_REPEAT = 1 << 20  # largest total tiling factor of a repeat node (peers allocate what it asks)
MAX_NDIM = 8
MAX_VOCAB = 1 << 24  # largest one-hot input (token ids; mpcrt.nn.embedding)
_MAX_DEPTH = 6
_MAX_LIST = 4096


class ModelImportError(MpcError):
    """A model could not be imported: untraceable, malformed graph or model file."""


class UnsupportedLayerError(ModelImportError):
    """The model uses a layer, function or method that mpcrt.nn cannot run under MPC."""


class ModelFileError(ModelImportError, ConfigError):
    """A model file is missing, unreadable, pickled, or not an mpcrt model archive."""


#: attributes `getattr` may read (anything else is refused on decode)
GETATTR_NAMES = ("shape", "ndim", "T", "mT", "values", "indices")


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

    def check_arrays(self, arrays) -> None:
        """ModelImportError unless `arrays` are one array per declared parameter, of its shape."""
        if len(arrays) != len(self.params):
            raise ModelImportError(f"{len(arrays)} parameter arrays for {len(self.params)} declared parameters")
        for a, p in zip(arrays, self.params):
            if tuple(np.shape(a)) != tuple(p["shape"]):
                raise ModelImportError(f"parameter {p['name']} has shape {np.shape(a)}, "
                                       f"the graph declares {tuple(p['shape'])}")

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
    _check_header(d)
    params = _check_params(d["params"])
    nodes = d["nodes"]
    if not isinstance(nodes, list) or not nodes or len(nodes) > MAX_NODES:
        raise _bad("nodes must be a non-empty list of at most %d nodes" % MAX_NODES)
    for i, n in enumerate(nodes):
        _check_node(i, n, len(params))
    n_inputs = sum(n["op"] == "input" for n in nodes)
    if n_inputs != 1:
        raise _bad(f"{n_inputs} input nodes (exactly one is supported)")
    _check_value(d["output"], len(nodes), 0)


def _check_header(d) -> None:
    """Format marker, version, fields, input shape and meta."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise _bad("not an mpcrt.nn graph (missing format marker)")
    if d.get("version") != VERSION:
        raise _bad(f"graph version {d.get('version')!r}, this mpcrt reads version {VERSION} (upgrade the older side)")
    keys = {"format", "version", "input_shape", "params", "nodes", "output", "meta"}
    if set(d) - keys or not {"input_shape", "params", "nodes", "output"} <= set(d):
        raise _bad(f"unexpected fields {sorted(set(d) ^ keys)}")
    if not _is_shape(d["input_shape"]) or len(d["input_shape"]) < 1:
        raise _bad(f"input_shape {d['input_shape']!r}")
    meta = d.get("meta", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float))
                                             for k, v in meta.items()):
        raise _bad("meta must map names to strings or numbers")
    v = meta.get("input_one_hot")
    if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= MAX_VOCAB
                              and d["input_shape"][-1] == v):
        raise _bad(f"input_one_hot {v!r}: an integer in [2, {MAX_VOCAB}], the input shape's last dim")


def _check_params(params) -> list:
    """Each parameter's name and shape, and the total within MAX_PARAM_ELEMENTS."""
    if not isinstance(params, list):
        raise _bad("params is not a list")
    total = 0
    for i, p in enumerate(params):
        if (not isinstance(p, dict) or set(p) != {"name", "shape"} or not isinstance(p["name"], str)
                or not _is_shape(p["shape"])):
            raise _bad(f"parameter #{i} {p!r:.80}")
        total += math.prod(p["shape"])
    if total > MAX_PARAM_ELEMENTS:
        raise _bad(f"{total} weights exceed the limit of {MAX_PARAM_ELEMENTS}")
    return params


def _check_node(i: int, n, n_params: int) -> None:
    """Node i's fields, its op's arguments, its values, and the limits of param/getattr/pow/repeat/expand."""
    if not isinstance(n, dict) or set(n) != {"op", "args", "name", "target"}:
        raise _bad(f"node #{i} has fields {sorted(n) if isinstance(n, dict) else type(n).__name__}")
    if not isinstance(n["op"], str) or n["op"] not in IR_OPS:
        raise _bad(f"node #{i} has unknown op {n['op']!r}")
    if not isinstance(n["name"], str) or not isinstance(n["target"], str) or not isinstance(n["args"], dict):
        raise _bad(f"node #{i} name/target/args types")
    try:
        IR_OPS[n["op"]].bind(**n["args"])
    except TypeError as e:
        raise _bad(f"node #{i} ({n['op']}) arguments: {e}") from None
    for v in n["args"].values():
        _check_value(v, i, 0)
    op, args = n["op"], n["args"]
    if op == "param":
        ix = args["index"]
        if not isinstance(ix, int) or isinstance(ix, bool) or not 0 <= ix < n_params:
            raise _bad(f"node #{i} refers to parameter {ix!r} of {n_params}")
    elif op == "getattr" and args["name"] not in GETATTR_NAMES:
        raise _bad(f"node #{i} reads attribute {args['name']!r} (allowed: {GETATTR_NAMES})")
    elif op == "pow":
        e = args["exponent"]  # non-integers apply to sizes only (layers.pow refuses them on tensors)
        if not isinstance(e, (int, float)) or isinstance(e, bool) or not -MAX_POW <= e <= MAX_POW:
            raise _bad(f"node #{i} raises to the power {e!r} (a number in -{MAX_POW}..{MAX_POW})")
    elif op in ("repeat", "expand"):
        _check_sizes(i, op, args["sizes"])


def _check_sizes(i: int, op: str, sizes) -> None:
    """repeat/expand sizes: small integers (expand may take sizes computed from the input's: checked when run)."""
    ok = isinstance(sizes, list) and len(sizes) <= MAX_NDIM and all(
        (isinstance(v, int) and not isinstance(v, bool) and -1 <= v < 1 << 31)
        or (op == "expand" and isinstance(v, dict) and "ref" in v) for v in sizes)
    known = [v for v in sizes if isinstance(v, int)] if ok else []
    if not ok or math.prod(max(1, v) for v in known) > (MAX_REPEAT if op == "repeat" else MAX_PARAM_ELEMENTS):
        raise _bad(f"node #{i} ({op}) sizes {sizes!r:.80}: too large or not small integers")


def _is_shape(s) -> bool:
    return isinstance(s, list) and len(s) <= MAX_NDIM and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in s)


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


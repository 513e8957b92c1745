"""The tracer: a torch.nn.Module -> (Graph, parameter arrays), on the model owner's party only.

`trace(model, example_input)` traces the module with torch.fx, propagates the example
input's shape through it (torch.fx.passes.shape_prop), folds every BatchNorm that directly
follows a Conv2d or Linear into that layer's weight and bias (other BatchNorms become
per-channel affine layers), translates each fx node into IR nodes (modules: `modules`;
functions and tensor methods: the tables of `fx_table`), checks that the graph, read
back as the other parties will and run in plaintext float64 (`layers.TorchOps`),
reproduces the model on the example, and returns the graph and the float64 weights.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import numbers
import operator

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.nn.fx_args import (EVAL_IDENTITIES, MASK_FILL, as_f64, describe, in_place_method, is_size, qualname,
                              size_dim, table_key)
from mpcrt.nn.fx_table import FUNCTIONS, METHODS
from mpcrt.nn import constants, embedding, peephole
from mpcrt.nn.ir import IR_OPS, Graph, ModelImportError, UnsupportedLayerError
from mpcrt.nn.layers import TorchOps, run_graph
from mpcrt.nn.modules import import_module, plan_folds
from mpcrt.nn.recurrent import ZERO_STATE, zero_states


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


# What to write instead, for calls users bring that have no MPC form here (keyed by the end of their name)
CALL_HINTS = {
    "erf": "for GELU use F.gelu or nn.GELU (exact or tanh form)",
    "einsum": "write it with @ (torch.matmul) and permute/transpose/reshape",
    "conv_transpose1d": "use nn.ConvTranspose1d (the module imports)",
    "conv_transpose2d": "use nn.ConvTranspose2d (the module imports)",
    "zeros": "torch.zeros as an LSTM/GRU/RNN's initial state imports (it is the zero state); register other "
             "constant tensors as buffers (self.register_buffer)",
    "ones": "register constant tensors as buffers (self.register_buffer)",
    "embedding": "use nn.Embedding as the model's first layer (it imports: ids are shared one-hot)",
}

ONE_INPUT_HINT = ("Wrap the model so that forward() takes one tensor: the data owner concatenates its inputs "
                  "(torch.cat along the last dim) and forward() splits them again (torch.split)")


PACKED_HINT = ("Packed sequences (pack_padded_sequence, PackedSequence) are not supported: pass the padded "
               "batch as one tensor; the recurrent layer then runs every step of the padded length, so pad "
               "at the front, or read each row's output at its own last step")


def _uses_packing(model) -> bool:
    """Whether a forward() of the model or its submodules packs sequences (best effort: their source)."""
    for m in model.modules():
        try:
            src = inspect.getsource(type(m).forward)
        except (OSError, TypeError):
            continue
        if "pack_padded_sequence" in src or "pack_sequence" in src:
            return True
    return False


def _defaults_after_first(root) -> dict:
    """forward()'s arguments after the input that have defaults (forward(x, mask=None)): traced at
    those defaults, as the shared model is always called with one input."""
    try:
        params = list(inspect.signature(root.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in params if p.kind in kinds and p.default is not inspect.Parameter.empty}


def _drop_specialized(gm) -> None:
    """Remove what torch.fx adds for arguments traced at their defaults: the checks that they keep
    that value and, once unused, their placeholders (after the first, the model's input)."""
    import torch
    from torch.fx import _symbolic_trace

    checks = (torch._assert, getattr(_symbolic_trace, "_assert_is_none", None))
    places = [n for n in gm.graph.nodes if n.op == "placeholder"][1:]
    if not places:
        return
    for n in reversed(list(gm.graph.nodes)):
        if n.op == "call_function" and n.target in checks and not n.users and _only_from(n, places):
            gm.graph.erase_node(n)
    gm.graph.eliminate_dead_code()
    for n in places:
        if not n.users:
            gm.graph.erase_node(n)
    gm.recompile()


def _only_from(node, places) -> bool:
    """Whether every placeholder that `node` depends on is one of `places`."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder" and n not in places:
            return False
        todo.extend(n.all_input_nodes)
    return True


def _example(example_input, model):
    import torch

    if example_input is None:
        raise ShapeError("the model owner must pass example_input (a tensor of the input's shape, batch first)")
    if type(example_input).__name__ == "PackedSequence":
        raise UnsupportedLayerError(f"example_input is a PackedSequence. {PACKED_HINT}")
    if isinstance(example_input, (tuple, list, dict)) and any(
            isinstance(v, (torch.Tensor, np.ndarray)) for v in (
                example_input.values() if isinstance(example_input, dict) else example_input)):
        raise UnsupportedLayerError(
            f"example_input is a {type(example_input).__name__} of {len(example_input)} tensors: only models with "
            f"one input are supported. {ONE_INPUT_HINT}")
    if isinstance(example_input, torch.Tensor):
        x = example_input.detach()
    else:
        x = torch.as_tensor(np.asarray(example_input))
    if not (x.dtype.is_floating_point or x.dtype == torch.bool):  # maybe token ids: _Tracer.run decides
        return x.to(torch.int64).clone()
    return x.to(_float_type(model)).clone()  # in-place ops in forward() must not touch the caller's tensor


def _float_type(model):
    """The model's floating-point type (its first parameter's; float32 without one)."""
    import torch

    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None and p.dtype.is_floating_point else torch.float32


class _Tracer:
    def __init__(self, model, x):
        self.model = model
        self.x = x
        self.nodes: list[dict] = []
        self.params: list[dict] = []
        self.arrays: list[np.ndarray] = []
        self.ref_of: dict = {}
        self.fixed_input = ""  # why the input's shape is fixed (recurrent.import_recurrent sets it), if it is

    # ----------------------------------------------------------------- run
    def run(self) -> tuple[Graph, list[np.ndarray]]:
        import torch
        from torch.fx import GraphModule, Tracer
        from torch.fx.passes.shape_prop import ShapeProp

        root = _wrapped(self.model) if isinstance(self.model, _leaf_types()) else self.model
        try:
            fx_tracer = Tracer()
            fx_tracer.proxy_buffer_attributes = True  # buffers as graph values: nanoGPT slices its mask by T
            gm = GraphModule(root, fx_tracer.trace(root, concrete_args=_defaults_after_first(root) or None))
            _drop_specialized(gm)
        except Exception as e:
            hint = PACKED_HINT if _uses_packing(self.model) else (
                "A forward() that branches (if/while) on tensor values, or on sizes such as x.dim() or "
                "x.shape[0], cannot be traced; make the control flow static (or mark such helpers with "
                "torch.fx.wrap).")
            raise ModelImportError(
                f"torch.fx could not trace {type(self.model).__name__}: {type(e).__name__}: {e}. {hint}") from None
        _refuse_reads_after_in_place(gm)  # before dead-code elimination drops the unused in-place calls
        gm.graph.eliminate_dead_code()
        extra = [n for n in gm.graph.nodes if n.op == "placeholder"][1:]
        if extra:
            raise UnsupportedLayerError(
                f"a second model input '{extra[0].target}' (fx node '{extra[0].name}'): only models with one input "
                f"are supported (arguments with defaults are traced at them). {ONE_INPUT_HINT}")
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self._refuse_attention_weights(gm)
        if not (self.x.dtype.is_floating_point or embedding.reads_ids(gm, self.modules)):
            self.x = self.x.to(_float_type(self.model))  # integers, but no embedding reads them: pixels, say
        self.alt_shapes = self._shapes_at_another_batch(gm)
        try:
            with torch.no_grad():
                reference = self.model(self.x.clone())  # first: ShapeProp prints tracebacks on failure
                ShapeProp(gm).propagate(self.x.clone())
        except Exception as e:
            raise ShapeError(
                f"the example input of shape {tuple(self.x.shape)} does not fit {type(self.model).__name__}: "
                f"{type(e).__name__}: {e}"
            ) from None
        self.consts, self.skipped = constants.fold(gm, self.modules, self.x, self.alt_shapes)  # positions, masks
        self.one_hot, id_casts = embedding.token_input(gm, self.modules, set(self.consts) | self.skipped)
        self.folded = plan_folds(self, gm)
        self.alias.update(id_casts)  # ids.long() before the embedding: the one-hot input itself
        self.zero_states = zero_states(gm, self.modules)  # torch.zeros(...) as an LSTM's (h0, c0): no state
        output = None
        for n in gm.graph.nodes:
            if n.op == "output":
                output = self.enc(n.args[0], n)
            else:
                self.translate(n)
        self._rewrite(output)
        output = self.output
        meta = {"model": type(self.model).__name__}
        if self.one_hot:
            meta["input_one_hot"] = self.one_hot
        if self.fixed_input:
            meta["input_fixed"] = self.fixed_input
        graph = Graph(input_shape=[int(d) for d in self.x.shape] + ([self.one_hot] if self.one_hot else []),
                      params=self.params, nodes=self.nodes, output=output, meta=meta)
        graph = Graph.from_bytes(graph.to_bytes())  # what the other parties will read
        self._self_check(graph, reference)
        return graph, self.arrays

    def _shapes_at_another_batch(self, gm) -> dict:
        """{fx node: shape} with the example's dim 0 one longer, for graphs with a recurrent layer (which
        unrolls over its time axis: one that follows dim 0 fixes the input's shape) or that read sizes of
        inner tensors (those that stay put are fixed, for constants.fold); {} if it cannot run."""
        import torch
        import torch.nn as tnn
        from torch.fx.passes.shape_prop import ShapeProp

        inner_sizes = any((src := size_dim(n)[0]) is not None and src.op != "placeholder" for n in gm.graph.nodes)
        if not inner_sizes and not any(isinstance(m, tnn.RNNBase) for m in self.modules.values()):
            return {}
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(gm).propagate(torch.cat([self.x, self.x[:1]]))  # (it prints its failures' tracebacks)
        except Exception:  # noqa: BLE001 - a model that fixes its batch size: nothing learned
            return {}
        return {n: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
                if hasattr(n.meta.get("tensor_meta"), "shape")}

    def _rewrite(self, output) -> None:
        """The peephole rewrites (mpcrt.nn.peephole), then the nodes no output needs dropped; sets self.output."""
        shapes = {}
        for fx_node, v in self.ref_of.items():
            tm = fx_node.meta.get("tensor_meta") if isinstance(v, dict) and "ref" in v else None
            if tm is not None and hasattr(tm, "shape"):
                shapes[v["ref"]] = tuple(int(d) for d in tm.shape)
        peephole.pool_before_relu(self.nodes, output)
        peephole.fuse_rms_norm(self.nodes, shapes.get)
        self.nodes, self.output = peephole.drop_dead(self.nodes, output, lambda n: n["op"] in ("input", "param"))

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

        params = [torch.from_numpy(a) for a in self.arrays]
        with torch.no_grad():
            x = torch.from_numpy(embedding.one_hot(self.x.numpy(), self.one_hot)) if self.one_hot else self.x
            got = run_graph(graph, params, x.to(torch.float64).clone(), TorchOps())
        ref_flat, got_flat = _flat_tensors(reference), _flat_tensors(got)
        if len(ref_flat) != len(got_flat):
            raise ModelImportError(f"internal error: imported graph returns {len(got_flat)} tensors, the model "
                                   f"{len(ref_flat)}")
        for r, g in zip(ref_flat, got_flat):
            r = r.to(torch.float64)
            if tuple(r.shape) != tuple(g.shape):
                raise ModelImportError(f"internal error: imported graph output shape {tuple(g.shape)} != model's "
                                       f"{tuple(r.shape)}")
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
        a = np.array(array, dtype=np.float64, order="C")  # a copy: writable (torch.from_numpy in the self-check)
        if np.any(np.isneginf(a)):  # an additive mask (generate_square_subsequent_mask): -inf has no fixed point
            a = np.where(np.isneginf(a), MASK_FILL, a)
        if not np.all(np.isfinite(a)):
            raise ModelImportError(f"parameter {name} contains NaN or +infinity (only -inf, the masks' fill, is "
                                   f"imported: as {MASK_FILL:g})")
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
        raise UnsupportedLayerError(f"argument {v!r:.60} of type {type(v).__name__} at fx node '{n.name}' "
                                    f"({describe(n)})")

    def in_shape(self, n, i: int = 0):
        a = n.args[i] if len(n.args) > i else None
        tm = getattr(a, "meta", {}).get("tensor_meta")
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    # --------------------------------------------------------- translation
    def translate(self, n) -> None:
        if n in self.zero_states:
            self.ref_of[n] = ZERO_STATE
            return
        if n in self.consts or n in self.skipped:  # built without the input: its value, a parameter
            self.ref_of[n] = self.param(self.consts[n], f"{n.name}:const") if n in self.consts else None
            return
        if self.one_hot and n.args and n.args[0] is self.input_node and size_dim(n, self.input_node)[0] is not None:
            self.ref_of[n] = embedding.id_sizes(self, n)  # the ids' sizes, not the one-hot's
            return
        if n in self.alias:
            self.ref_of[n] = self.ref_of[self.alias[n]]
            return
        if n.op == "placeholder":
            self.input_node = n
            self.ref_of[n] = self.emit("input", {}, n.name, str(n.target))
        elif n.op == "get_attr":
            self.ref_of[n] = self._get_attr(n)
        elif n.op == "call_module":
            self.ref_of[n] = import_module(self, n)
        elif n.op == "call_function":
            spec = FUNCTIONS.get(table_key(n.target))
            if qualname(n.target) == "torch._assert" and all(is_size(a) or isinstance(a, (bool, str))
                                                               for a in n.args):
                self.ref_of[n] = None  # a check on public sizes (true for the example; the ops check the rest)
                return
            if spec is None and qualname(n.target) in EVAL_IDENTITIES:
                self.ref_of[n] = self._eval_identity(n, qualname(n.target))
                return
            self.ref_of[n] = self._call(n, spec, describe(n))
        elif n.op == "call_method":
            self.ref_of[n] = self._call(n, METHODS.get(n.target), describe(n))
        else:  # pragma: no cover
            raise UnsupportedLayerError(f"fx node kind {n.op!r} at '{n.name}'")

    def _eval_identity(self, n, name: str) -> dict:
        """A function that is the identity in eval mode (torchvision's stochastic_depth)."""
        params = EVAL_IDENTITIES[name]
        a = dict(zip(params, n.args))
        a.update(n.kwargs)
        if a.get("training") or n.meta.get("tensor_meta") is None:
            raise UnsupportedLayerError(f"{name} in training mode at fx node '{n.name}' (call model.eval() first)")
        return self.emit("identity", {"input": self.enc(a["input"], n)}, n.name, name)

    def _emit_1d(self, n, x: dict, op2d: str, what: str, **kw) -> dict:
        """A 1-d op as its 2-d op on (N, C, 1, L): unsqueeze, op, squeeze (the squeeze
        carries the fx node's name, so layer-by-layer checks see (N, C, L))."""
        u = self.emit("unsqueeze", {"input": x, "dim": 2}, n.name + ":2d", what)
        y = self.emit(op2d, {"input": u, **kw}, n.name + ":" + op2d, what)
        return self.emit("squeeze", {"input": y, "dim": 2}, n.name, what)

    def opt_param(self, array, name: str) -> dict | None:
        """`param` of an optional array (a module's weight or bias that may be None)."""
        return None if array is None else self.param(as_f64(array), name)

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
            hint = next((h for k, h in CALL_HINTS.items() if what.endswith(k)), "")
            raise UnsupportedLayerError(f"unsupported operation {what} at fx node '{n.name}'; "
                                        f"{hint + '; ' if hint else ''}see mpcrt.nn.SUPPORTED for what runs under MPC")
        op, sig, fix = spec
        try:
            b = sig.bind(*n.args, **n.kwargs)
        except TypeError as e:
            raise UnsupportedLayerError(f"{what} at fx node '{n.name}' called with unsupported arguments: "
                                        f"{e}") from None
        b.apply_defaults()
        a = dict(b.arguments)
        if "self" in a:
            a["input"] = a.pop("self")
        if fix is not None:
            r = fix(self, n, a)
            if isinstance(r, dict) and "ref" in r:
                return r
            if isinstance(r, dict) and "value" in r:  # an IR value as it is (a list: part of a tuple output)
                return r["value"]
            if isinstance(r, tuple):
                op, a = r
        keep = IR_OPS[op].parameters
        for k in list(a):
            if k not in keep:
                del a[k]
        return self.emit(op, {k: self.enc(v, n) for k, v in a.items()}, n.name, what)


def _wrapped(model):
    """A layer the import decomposes (a transformer block, a recurrent layer, a transposed convolution)
    given as the model itself, inside a module whose forward calls it: fx traces a root's forward (torch's
    transformer and recurrent forwards branch on their inputs), but a call inside a root is one leaf node
    that modules.import_module decomposes."""
    import torch.nn as tnn

    class Root(tnn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)

    return Root(model)


def _leaf_types() -> tuple:
    import torch.nn as tnn

    return (tnn.TransformerEncoderLayer, tnn.TransformerEncoder, tnn.RNNBase, tnn.ConvTranspose1d, tnn.ConvTranspose2d)


def _flat_tensors(v) -> list:
    if isinstance(v, (tuple, list)):
        return [t for e in v for t in _flat_tensors(e)]
    return [] if v is None else [v]  # forward() returning (logits, None): None on both sides


# in-place methods the tracer reads as their out-of-place forms (x.add_(y) as x + y)
def _refuse_reads_after_in_place(gm) -> None:
    """x.add_(y) imports as x + y: right where x is not read again, silently wrong where it is (the
    later reads would see x before the change). Refuse those with what to write instead."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in gm.graph.nodes:
        if in_place_method(n) and n.args:
            src = n.args[0]
            later = [u for u in getattr(src, "users", ()) if u is not n and order[u] > order[n]]
            if later:
                raise UnsupportedLayerError(
                    f"in-place .{n.target}() at fx node '{n.name}' changes a tensor read again at fx node "
                    f"'{later[0].name}': write it out of place (y = x.{str(n.target)[:-1]}(...)) and read y")

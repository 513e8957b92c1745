"""Private models: a public graph, secret-shared weights, and batched private inference.

    model = mpcrt.nn.from_torch(net if rt.rank == 0 else None, example if rt.rank == 0 else None, src=0)
    x = rt.share(images if rt.rank == 1 else None, src=1)
    logits = model(x)                      # a SharedTensor
    out = logits.reveal(to=1)              # only the data owner learns the result

How the model reaches the other parties (two small messages, then one share):

1. the owner (party `src`) sends every party an int64 header [status, n], then n
   bytes: the msgpack graph (status 0), or, if the import failed on the owner, the
   error message (status 1), so that every party fails with the same clear error
   instead of waiting for weights that never come. n is checked against
   MAX_GRAPH_BYTES before anything is received; the bytes are validated by
   Graph.from_bytes (no pickle, no code);
2. all weights, concatenated in the graph's parameter order, are secret-shared by
   the owner with one rt.share() call (one shape message; the shares come from the
   pairwise PRGs). Every receiver checks the announced length against the graph.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from mpcrt import config
from mpcrt.errors import PrecisionWarning, ProtocolError, ShapeError
from mpcrt.nn.archive import load
from mpcrt.nn.embedding import check_ids, one_hot
from mpcrt.nn.ir import MAX_GRAPH_BYTES, Graph, ModelImportError, UnsupportedLayerError
from mpcrt.nn.layers import SharedOps, last_uses, masked_uses, missing_methods, run_graph
from mpcrt.nn.rows import batch_rows, mark
from mpcrt.protocols import fixedmask
from mpcrt.nn.tracer import trace
from mpcrt.tensor import SharedTensor

MASK_WEIGHTS = True  # distribute()'s default: weights masked once at load (protocols.fixedmask)


class PrivateModel:
    """A model whose architecture is public and whose weights are secret-shared.

    Call it on a SharedTensor batch (batch first, the rest of the shape as the
    example input's) to get a SharedTensor (or a tuple of them, as the model returns).
    """

    def __init__(self, rt, graph: Graph, params: list, src: int):
        self.rt = rt
        self.graph = graph
        self.params = params
        self.src = src
        self._free_after = last_uses(graph)
        self._masked: dict[int, dict] = {}  # node index -> {"weight": its FixedMask}
        self.fixed_masks = False  # whether calls use the weights masked once (mask_weights)
        self.mask_openings = 0  # rounds that opened W - B: 1 per model once masked, never per call
        missing = missing_methods(graph)
        if missing:
            raise UnsupportedLayerError(
                "the model needs SharedTensor." + "(), SharedTensor.".join(missing) + "(), which this mpcrt build lacks"
            )

    @property
    def input_shape(self) -> tuple:
        """The example input's shape; dim 0 (batch) is free at call time."""
        return tuple(self.graph.input_shape)

    @property
    def one_hot(self) -> int | None:
        """V when the model's input is token ids for an nn.Embedding, shared one-hot (mpcrt.nn.embedding)."""
        return self.graph.meta.get("input_one_hot")

    def encode_input(self, x) -> np.ndarray:
        """What the data owner shares for input x: one_hot(x) for a model over token ids (its first layer
        an nn.Embedding), else x as float64. Local: call it on the data owner before rt.share."""
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else x
        return one_hot(x, self.one_hot) if self.one_hot else np.asarray(x, dtype=np.float64)

    def encoded_shape(self, shape) -> tuple:
        """The shape of what the data owner shares for an input of `shape` (token ids: one more dim, V)."""
        return tuple(shape) + ((self.one_hot,) if self.one_hot else ())

    def shared_batches(self, inputs, data_owner: int, batch_size: int):
        """(rows, rows per call, iterator of (first row, SharedTensor batch)) of the data owner's `inputs`
        (None on the others), run `batch_size` rows a call (all at once where the model mixes its rows).

        Plain inputs are shared at once (one shape message) and sliced. Token ids are one-hot encoded
        and shared a batch at a time (the one-hot set is V times the ids: BERT's 30522 tokens make a
        row of 128 ids 3.9M numbers); the row count goes to the others first, one small message."""
        rt = self.rt
        if not self.one_hot:
            x = rt.share(None if inputs is None else self.encode_input(inputs), src=data_owner,
                         shape=self.check_input_shape)
            self.check_input_shape(x.shape)
            step = batch_rows(self.graph, batch_size, x.shape[0])
            return x.shape[0], step, ((s, x[s:s + step]) for s in range(0, x.shape[0], step))
        if rt.rank == data_owner:
            check_ids(inputs, self.one_hot)
            rows = np.array([np.shape(inputs)[0]], np.int64)
            rt.exchange({j: rows for j in rt.peers}, {}, "nn.rows")
        else:
            rows = rt.exchange({}, {data_owner: (1,)}, "nn.rows")[data_owner]
        total = int(rows[0])
        if not 0 < total <= 1 << 31:
            raise ProtocolError(f"party {data_owner}", f"announced {total} input rows")
        step = batch_rows(self.graph, batch_size, total)

        def batches():
            for s in range(0, total, step):
                part = None if inputs is None else self.encode_input(np.asarray(inputs)[s:s + step])
                xb = rt.share(part, src=data_owner, shape=self.check_input_shape)
                self.check_input_shape(xb.shape)
                yield s, xb

        return total, step, batches()

    def check_input_shape(self, shape) -> None:
        want = self.input_shape
        shape = tuple(shape)
        fixed = self.graph.meta.get("input_fixed")
        if fixed and shape != want:
            raise ShapeError(f"the model takes input of exactly the example's shape {want}, got {shape}: {fixed} "
                             "(sequence-first or unbatched input); trace it with a full-length example of the "
                             "batch you will share, or make the layer batch_first")
        if len(shape) != len(want) or shape[1:] != want[1:]:
            ids = (f"; the model reads token ids, shared one-hot over {self.one_hot}: share "
                   f"model.encode_input(ids) with ids of shape (batch, {', '.join(map(str, want[1:-1]))})"
                   if self.one_hot else "")
            raise ShapeError(
                f"the model expects input of shape (batch, {', '.join(map(str, want[1:]))}) "
                f"(example input {want}), got {shape}{ids}"
            )

    def mask_weights(self) -> int:
        """Mask the weights of every Linear and Conv2d (attention projections included) once
        (protocols.fixedmask): one dealer mask B per weight tensor, all W - B opened in one
        round; later calls open only their activations' masks. Every party calls it (from_torch
        and the other importers do, unless told not to); a second call does nothing. Returns the
        number of weight tensors masked."""
        if not self._masked:
            uses = masked_uses(self.graph)
            keys = sorted({u for u in uses.values()})  # (parameter, transposed): one mask each
            shares = [self.params[i].share.T if t else self.params[i].share for i, t in keys]
            with self.rt.scope("nn.mask_weights"):
                masks = dict(zip(keys, fixedmask.mask(self.rt, shares, self.rt.precision)))
            self.mask_openings += 1 if keys else 0
            self._masked = {node: {"weight": masks[u]} for node, u in uses.items()}
        self.fixed_masks = True
        return len({id(m["weight"]) for m in self._masked.values()})

    def _run(self, x, collect: dict | None = None):
        self.check_input_shape(x.shape)
        overrides = self._masked if self.fixed_masks else None
        return run_graph(self.graph, self.params, x, SharedOps(), self._free_after, collect, overrides)

    def __call__(self, x):
        if not isinstance(x, SharedTensor):
            raise TypeError(f"a PrivateModel takes a SharedTensor (share the input first with rt.share), got "
                            f"{type(x).__name__}")
        return self._run(x)

    forward = __call__

    def intermediates(self, x) -> dict:
        """{fx node name: value} of every node on input x (SharedTensors for tensors): layer-by-layer debugging."""
        out: dict = {}
        self._run(x, out)
        return out

    def infer(self, inputs=None, data_owner: int = 1, reveal_to: int | None = None, batch_size: int = 64,
              progress: bool | Callable = False) -> np.ndarray | None:
        """Private inference of a whole data set held by `data_owner`.

        `inputs` (a numpy array or torch tensor, batch first) on the data owner, None
        elsewhere. The whole set is shared at once (one shape message: the shares
        come from pairwise PRGs), then run in batches of `batch_size` (in one call
        where the model mixes the rows of dim 0: mpcrt.nn.rows); each batch's
        output is revealed only to `reveal_to` (default: the data owner). Returns the
        outputs stacked (numpy float64) there, None on every other party.
        `progress`: True for a tqdm bar on the receiving party, or a callable
        progress(done, total) called after each batch on every party.
        """
        rt = self.rt
        to = data_owner if reveal_to is None else reveal_to
        if rt.rank == data_owner:
            if inputs is None:
                raise ShapeError(f"party {data_owner} is the data owner: pass the inputs")
            self.check_input_shape(self.encoded_shape(np.shape(inputs)))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        total, batch_size, batches = self.shared_batches(inputs if rt.rank == data_owner else None, data_owner,
                                                         batch_size)
        bar = None
        if progress is True and rt.rank == to:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="img", desc="private inference")
            except ImportError:  # pragma: no cover
                bar = None
        outs = []
        try:
            for start, xb in batches:
                y = self(xb)
                if not hasattr(y, "reveal"):
                    raise UnsupportedLayerError("infer() needs a model with a single tensor output")
                r = y.reveal(to=to)
                if r is not None:
                    outs.append(r)
                done = min(total, start + batch_size)
                if bar is not None:
                    bar.update(done - bar.n)
                if callable(progress):
                    progress(done, total)
        finally:
            if bar is not None:
                bar.close()
        if rt.rank != to:
            return None
        return np.concatenate(outs, axis=0) if outs else np.zeros((0,), np.float64)

    def __repr__(self) -> str:
        return (f"PrivateModel({self.graph.meta.get('model', '?')}, input {self.input_shape}, "
                f"{len(self.graph.nodes)} nodes, {self.graph.param_count} shared weights, owner party {self.src})")


# ------------------------------------------------------------------ building
def _runtime(rt):
    if rt is not None:
        return rt
    import mpcrt

    return mpcrt.init()


def _check_src(rt, src) -> int:
    if not isinstance(src, (int, np.integer)) or not 0 <= int(src) < rt.world_size:
        raise ValueError(f"src must be a party rank in 0..{rt.world_size - 1}, got {src!r}")
    return int(src)


def _mask_default(mask_weights: bool | None) -> bool:
    """`mask_weights`, else the configuration's `fixed_masks` (MPCRT_FIXED_MASKS) and MASK_WEIGHTS."""
    if mask_weights is not None:
        return bool(mask_weights)
    return bool(config.current().fixed_masks) and MASK_WEIGHTS


def distribute(build: Callable[[], tuple[Graph, list]] | None, src: int = 0, rt=None,
               mask_weights: bool | None = None) -> PrivateModel:
    """Run `build()` on party `src` (returning (Graph, parameter arrays)), send the graph and share the weights.

    Every party calls this with the same `src`; `build` is only called (and only
    needed) on `src`. Errors in `build` reach every party as ModelImportError.
    `mask_weights` (default True, MASK_WEIGHTS): mask the Linear and Conv2d weights once
    (PrivateModel.mask_weights), so that calls send only activation-sized openings; every
    party must pass the same value. False: each call masks the weights afresh (as before).
    """
    rt = _runtime(rt)
    src = _check_src(rt, src)
    with rt.scope("nn.import"):
        graph, w = _send_model(rt, src, build) if rt.rank == src else _receive_model(rt, src)
        total = graph.param_count
        if w.shape != (total,):
            raise ProtocolError(f"party {src}", f"shared {w.shape} weights, the graph declares ({total},)")
        params, off = [], 0
        for p in graph.params:
            k = math.prod(p["shape"])
            params.append(w[off:off + k].reshape(tuple(p["shape"])))
            off += k
    model = PrivateModel(rt, graph, params, src)
    if _mask_default(mask_weights):
        model.mask_weights()
    return model


def _send_model(rt, src: int, build) -> tuple[Graph, object]:
    """The owner's half: build, send the header and the graph (or the error), share the weights."""
    graph, arrays, err = None, None, None
    try:
        if build is None:
            raise ModelImportError(f"party {src} is the model owner: pass the model")
        graph, arrays = build()
        graph.check_arrays(arrays)
        _check_range(graph, arrays, rt.precision)
        mark(graph, arrays)  # whether dim 0 is a batch: every party's infer() batches alike
        payload, status = graph.to_bytes(), 0
    except Exception as e:  # every party must hear of it, not wait for weights that never come
        err = e
        payload, status = f"{type(e).__name__}: {e}".encode("utf-8", "replace")[: 1 << 16], 1
    buf = np.frombuffer(payload, np.uint8)
    rt.exchange({j: np.array([status, buf.size], np.int64) for j in rt.peers}, {}, "nn.graph.len")
    rt.exchange({j: buf for j in rt.peers}, {}, "nn.graph", dtype=np.uint8)
    if err is not None:
        raise err
    flat = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)
    return graph, rt.share(flat, src=src)


def _receive_model(rt, src: int) -> tuple[Graph, object]:
    """Every other party's half: the header (checked before anything else is received), the graph, the shares."""
    (hdr,) = rt.exchange({}, {src: (2,)}, "nn.graph.len").values()
    status, n = int(hdr[0]), int(hdr[1])
    if status not in (0, 1) or not 0 <= n <= MAX_GRAPH_BYTES:
        raise ProtocolError(f"party {src}", f"model graph header [{status}, {n}] is malformed or too large")
    (raw,) = rt.exchange({}, {src: (n,)}, "nn.graph", dtype=np.uint8).values()
    if status == 1:
        raise ModelImportError(
            f"the model owner (party {src}) could not import its model: {bytes(raw).decode('utf-8', 'replace')}"
        )
    graph = Graph.from_bytes(bytes(raw))
    return graph, rt.share(None, src=src, shape=(graph.param_count,))  # checked before any allocation


def _check_range(graph: Graph, arrays, precision: int) -> None:
    """Every weight must be encodable at this precision (checked before anything is sent)."""
    from mpcrt.protocols import fixedpoint

    lim = fixedpoint.max_value(precision)
    for a, p in zip(arrays, graph.params):
        a = np.asarray(a)
        if a.size and not np.all(np.isfinite(a)):
            raise ModelImportError(f"parameter {p['name']} contains NaN or infinity")
        if a.size and float(np.abs(a).max()) >= lim:
            raise ModelImportError(f"parameter {p['name']} has magnitude {float(np.abs(a).max()):.3g}, outside the "
                                   f"fixed-point range |w| < {lim:g} at {precision} fractional bits")
        _warn_faint_columns(p["name"], a, precision)


FAINT_ULPS = 16  # an input column whose weights all round to fewer ulps keeps under 4 significant bits


def _warn_faint_columns(name: str, w: np.ndarray, precision: int) -> None:
    """Warn (PrecisionWarning) where a Linear or Conv weight has whole input columns (axis 1) of tiny,
    nonzero weights: the usual sign of unscaled input features, whose contributions then keep only a
    few bits (a weight of 2e-5 is 1.3 ulps at 16 bits)."""
    if w.ndim < 2 or not w.size or w.shape[1] == 0:
        return
    col = np.abs(np.moveaxis(w, 1, 0).reshape(w.shape[1], -1)).max(axis=1)
    faint = (col > 0) & (col < FAINT_ULPS * 2.0**-precision)
    if faint.any():
        import warnings

        j = int(np.flatnonzero(faint)[0])
        warnings.warn(
            f"parameter {name}: {int(faint.sum())} of {col.size} input columns have every weight below "
            f"{FAINT_ULPS} ulps ({FAINT_ULPS * 2.0**-precision:.2g}) at {precision} fractional bits (column {j}: "
            f"max {col[j]:.2g}), so those inputs keep under 4 significant bits in the products. Scale (standardize) "
            "the input features so the weights grow, or import at a higher precision", PrecisionWarning, stacklevel=3)


def from_torch(model, example_input=None, src: int = 0, rt=None, mask_weights: bool | None = None) -> PrivateModel:
    """Import a torch.nn.Module held by party `src` as a PrivateModel on every party.

    On `src`: `model` is the module (traced with torch.fx in eval mode) and
    `example_input` a tensor or array of one input batch's shape (batch first). On
    every other party pass model=None (and no example): they receive only the public
    architecture and their shares of the weights, and need no model code.
    """
    rt = _runtime(rt)
    build = None if model is None else (lambda: trace(model, example_input))
    return distribute(build, src, rt, mask_weights)


def from_graph(graph: Graph | None, params: list | None, src: int = 0, rt=None,
               mask_weights: bool | None = None) -> PrivateModel:
    """Like from_torch for an already traced (Graph, parameter arrays), e.g. from load()."""
    build = None if graph is None else (lambda: (graph, [np.asarray(p, np.float64) for p in params]))
    return distribute(build, src, rt, mask_weights)


def load_model(path: str | None, src: int = 0, rt=None, mask_weights: bool | None = None) -> PrivateModel:
    """Like from_torch for a model archive written by save(): `path` on `src`, None elsewhere."""
    build = None if path is None else (lambda: load(path))
    return distribute(build, src, rt, mask_weights)

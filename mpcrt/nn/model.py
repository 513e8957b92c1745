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
import os
from typing import Callable

import numpy as np

from mpcrt.errors import ProtocolError, ShapeError
from mpcrt.nn.graph import MAX_GRAPH_BYTES, Graph, ModelFileError, ModelImportError, UnsupportedLayerError, trace
from mpcrt.nn.layers import SharedOps, last_uses, missing_methods, run_graph

ARCHIVE_GRAPH_KEY = "__mpcrt_graph__"


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
        missing = missing_methods(graph)
        if missing:
            raise UnsupportedLayerError(
                "the model needs SharedTensor." + "(), SharedTensor.".join(missing) + "(), which this mpcrt build lacks"
            )

    @property
    def input_shape(self) -> tuple:
        """The example input's shape; dim 0 (batch) is free at call time."""
        return tuple(self.graph.input_shape)

    def check_input_shape(self, shape) -> None:
        want = self.input_shape
        shape = tuple(shape)
        if len(shape) != len(want) or shape[1:] != want[1:]:
            raise ShapeError(
                f"the model expects input of shape (batch, {', '.join(map(str, want[1:]))}) "
                f"(example input {want}), got {shape}"
            )

    def __call__(self, x):
        from mpcrt.tensor import SharedTensor

        if not isinstance(x, SharedTensor):
            raise TypeError(f"a PrivateModel takes a SharedTensor (share the input first with rt.share), got {type(x).__name__}")
        self.check_input_shape(x.shape)
        return run_graph(self.graph, self.params, x, SharedOps(), self._free_after)

    forward = __call__

    def intermediates(self, x) -> dict:
        """{fx node name: value} of every node on input x (SharedTensors for tensors): layer-by-layer debugging."""
        self.check_input_shape(x.shape)
        out: dict = {}
        run_graph(self.graph, self.params, x, SharedOps(), self._free_after, collect=out)
        return out

    def infer(self, inputs=None, data_owner: int = 1, reveal_to: int | None = None, batch_size: int = 64,
              progress: bool | Callable = False) -> np.ndarray | None:
        """Private inference of a whole data set held by `data_owner`.

        `inputs` (a numpy array or torch tensor, batch first) on the data owner, None
        elsewhere. The whole set is shared at once (one shape message: the shares
        come from pairwise PRGs), then run in batches of `batch_size`; each batch's
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
            self.check_input_shape(np.shape(inputs))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        x = rt.share(inputs if rt.rank == data_owner else None, src=data_owner)
        self.check_input_shape(x.shape)
        total = x.shape[0]
        bar = None
        if progress is True and rt.rank == to:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="img", desc="private inference")
            except ImportError:  # pragma: no cover
                bar = None
        outs = []
        try:
            for start in range(0, total, batch_size):
                y = self(x[start:start + batch_size])
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


def distribute(build: Callable[[], tuple[Graph, list]] | None, src: int = 0, rt=None) -> PrivateModel:
    """Run `build()` on party `src` (returning (Graph, parameter arrays)), send the graph and share the weights.

    Every party calls this with the same `src`; `build` is only called (and only
    needed) on `src`. Errors in `build` reach every party as ModelImportError.
    """
    rt = _runtime(rt)
    src = _check_src(rt, src)
    with rt.scope("nn.import"):
        if rt.rank == src:
            graph, arrays, err = None, None, None
            try:
                if build is None:
                    raise ModelImportError(f"party {src} is the model owner: pass the model")
                graph, arrays = build()
                _check_arrays(graph, arrays)
                _check_range(graph, arrays, rt.precision)
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
            w = rt.share(flat, src=src)
        else:
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
            w = rt.share(None, src=src)
        total = graph.param_count
        if w.shape != (total,):
            raise ProtocolError(f"party {src}", f"shared {w.shape} weights, the graph declares ({total},)")
        params, off = [], 0
        for p in graph.params:
            k = math.prod(p["shape"])
            params.append(w[off:off + k].reshape(tuple(p["shape"])))
            off += k
    return PrivateModel(rt, graph, params, src)


def _check_arrays(graph: Graph, arrays) -> None:
    if len(arrays) != len(graph.params):
        raise ModelImportError(f"{len(arrays)} parameter arrays for {len(graph.params)} declared parameters")
    for a, p in zip(arrays, graph.params):
        if tuple(np.shape(a)) != tuple(p["shape"]):
            raise ModelImportError(f"parameter {p['name']} has shape {np.shape(a)}, the graph declares {tuple(p['shape'])}")


def _check_range(graph: Graph, arrays, precision: int) -> None:
    """Every weight must be encodable at this precision (checked before anything is sent)."""
    from mpcrt import fixedpoint

    lim = fixedpoint.max_value(precision)
    for a, p in zip(arrays, graph.params):
        a = np.asarray(a)
        if a.size and not np.all(np.isfinite(a)):
            raise ModelImportError(f"parameter {p['name']} contains NaN or infinity")
        if a.size and float(np.abs(a).max()) >= lim:
            raise ModelImportError(f"parameter {p['name']} has magnitude {float(np.abs(a).max()):.3g}, outside the "
                                   f"fixed-point range |w| < {lim:g} at {precision} fractional bits")


def from_torch(model, example_input=None, src: int = 0, rt=None) -> PrivateModel:
    """Import a torch.nn.Module held by party `src` as a PrivateModel on every party.

    On `src`: `model` is the module (traced with torch.fx in eval mode) and
    `example_input` a tensor or array of one input batch's shape (batch first). On
    every other party pass model=None (and no example): they receive only the public
    architecture and their shares of the weights, and need no model code.
    """
    rt = _runtime(rt)
    build = None if model is None else (lambda: trace(model, example_input))
    return distribute(build, src, rt)


def from_graph(graph: Graph | None, params: list | None, src: int = 0, rt=None) -> PrivateModel:
    """Like from_torch for an already traced (Graph, parameter arrays), e.g. from load()."""
    build = None if graph is None else (lambda: (graph, [np.asarray(p, np.float64) for p in params]))
    return distribute(build, src, rt)


def load_model(path: str | None, src: int = 0, rt=None) -> PrivateModel:
    """Like from_torch for a model archive written by save(): `path` on `src`, None elsewhere."""
    build = None if path is None else (lambda: load(path))
    return distribute(build, src, rt)


# ------------------------------------------------------------------ archives
def save(model, example_input, path: str) -> Graph:
    """Trace `model` and write an mpcrt model archive: one .npz holding the msgpack graph
    (key __mpcrt_graph__, uint8) and the folded weights p0, p1, ... (float64).

    Reading it back (load) needs only numpy with allow_pickle=False and msgpack: no
    pickle, no model code, nothing in the file is ever executed.
    """
    graph, arrays = trace(model, example_input)
    save_graph(graph, arrays, path)
    return graph


def save_graph(graph: Graph, arrays: list, path: str) -> None:
    _check_arrays(graph, arrays)
    payload = {ARCHIVE_GRAPH_KEY: np.frombuffer(graph.to_bytes(), np.uint8)}
    payload.update({f"p{i}": np.asarray(a, np.float64) for i, a in enumerate(arrays)})
    with open(path, "wb") as fh:  # np.savez would append .npz to a str path without it
        np.savez(fh, **payload)


def sniff(path: str) -> str:
    """What a file is, from its first bytes: 'npz', 'npy', 'torch' (torch.save zip), 'pickle', 'zip' or 'other'.

    Raises ModelFileError if it is missing or unreadable.
    """
    import zipfile

    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path!r} is a directory")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise ModelFileError(f"model file {path!r} is not readable ({e.strerror})") from None
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return "other"
        if any(n.endswith(("data.pkl", ".pkl")) or "/data/" in n or n.startswith("archive/") for n in names):
            return "torch"
        return "npz" if names and all(n.endswith(".npy") for n in names) else "zip"
    if head[:1] == b"\x80":
        return "pickle"
    return "other"


KIND_HELP = {
    "torch": "a torch.save / torch.export archive (its loader unpickles, which can run code)",
    "pickle": "a pickle (unpickling runs code)",
    "zip": "a zip archive that is not a numpy .npz",
    "other": "neither an .npz nor an .npy file",
    "npy": "a single .npy array",
}


def load(path: str) -> tuple[Graph, list[np.ndarray]]:
    """Read an mpcrt model archive (see save); ModelFileError for anything else."""
    kind = sniff(path)
    if kind != "npz":
        raise ModelFileError(
            f"{path!r} is not an mpcrt model archive: it is {KIND_HELP[kind]}. Write the model on a trusted "
            "machine with mpcrt.nn.save(model, example_input, 'model.npz') (mpcrt never unpickles)"
        )
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ModelFileError(f"{path!r} is not a readable .npz archive: {type(e).__name__}: {e}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path!r} is a single .npy array, not an mpcrt model archive (.npz from mpcrt.nn.save)")
    with z:
        if ARCHIVE_GRAPH_KEY not in z.files:
            raise ModelFileError(
                f"{path!r} is an .npz without an mpcrt graph (a plain state_dict?). Write it with "
                "mpcrt.nn.save(model, example_input, path), or pass the architecture with --arch module:Class"
            )
        try:
            raw = z[ARCHIVE_GRAPH_KEY]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ModelFileError(f"{path!r}: {ARCHIVE_GRAPH_KEY} is not a uint8 byte array")
            graph = Graph.from_bytes(raw.tobytes())
            arrays = []
            for i, p in enumerate(graph.params):
                key = f"p{i}"
                if key not in z.files:
                    raise ModelFileError(f"{path!r} lacks weight array {key} ({p['name']})")
                a = z[key]
                if not np.issubdtype(a.dtype, np.floating) or tuple(a.shape) != tuple(p["shape"]):
                    raise ModelFileError(f"{path!r}: weight {key} ({p['name']}) is {a.dtype}{tuple(a.shape)}, "
                                         f"the graph declares float{tuple(p['shape'])}")
                arrays.append(a.astype(np.float64))
        except ModelImportError as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{path!r}: {e}") from None
        except ValueError as e:
            raise ModelFileError(f"{path!r}: unreadable array ({e})") from None
    return graph, arrays



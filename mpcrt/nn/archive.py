"""Model archives: one .npz holding the msgpack graph and the folded float64 weights.

`save` traces a model and writes its archive; `load` reads one back with numpy's
allow_pickle=False and msgpack: no pickle, no model code, nothing in the file is ever
executed. `sniff` tells what a file is from its first bytes, so that a pickle or a
torch.save archive is refused with a message that says how to convert it.
"""
from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from mpcrt.nn.ir import MAX_GRAPH_BYTES, Graph, ModelFileError, ModelImportError
from mpcrt.nn.tracer import trace

ARCHIVE_GRAPH_KEY = "__mpcrt_graph__"
# what reading a damaged zip member may raise (zipfile's CRC and header checks, zlib, an
# unsupported compression method or an encrypted member, a short read)
_UNREADABLE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
               KeyError)


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
    graph.check_arrays(arrays)
    payload = {ARCHIVE_GRAPH_KEY: np.frombuffer(graph.to_bytes(), np.uint8)}
    payload.update({f"p{i}": np.asarray(a, np.float64) for i, a in enumerate(arrays)})
    with open(path, "wb") as fh:  # np.savez would append .npz to a str path without it
        np.savez(fh, **payload)


def sniff(path: str) -> str:
    """What a file is, from its first bytes: 'npz', 'npy', 'torch' (torch.save zip), 'pickle', 'zip' or 'other'.

    Raises ModelFileError if it is missing or unreadable.
    """
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
        except _UNREADABLE:
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


def _member(z, key: str, shape: tuple | None, floating: bool, path: str) -> np.ndarray:
    """Array `key` of the open .npz `z`, its .npy header checked first: a plain dtype (never
    an object array: that would unpickle), float or uint8 as `floating` says, and `shape`
    (None: one dimension of at most MAX_GRAPH_BYTES), so that numpy allocates nothing the
    file merely claims."""
    with z.zip.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            got, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            got, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ModelFileError(f"{path!r}: array {key} has .npy format version {version}, not 1.0 or 2.0")
    if dtype.hasobject or dtype.kind != ("f" if floating else "u") or (not floating and dtype.itemsize != 1):
        raise ModelFileError(f"{path!r}: array {key} has dtype {dtype}, expected "
                             f"{'a float' if floating else 'uint8'} (mpcrt never loads object arrays)")
    if shape is None:
        if len(got) != 1 or got[0] > MAX_GRAPH_BYTES:
            raise ModelFileError(f"{path!r}: {key} is not a uint8 byte array of at most {MAX_GRAPH_BYTES} bytes")
    elif tuple(got) != tuple(shape):
        raise ModelFileError(f"{path!r}: array {key} is {dtype}{tuple(got)}, the graph declares float{tuple(shape)}")
    return z[key]


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
            graph = Graph.from_bytes(_member(z, ARCHIVE_GRAPH_KEY, None, False, path).tobytes())
            arrays = []
            for i, p in enumerate(graph.params):
                key = f"p{i}"
                if key not in z.files:
                    raise ModelFileError(f"{path!r} lacks weight array {key} ({p['name']})")
                arrays.append(_member(z, key, p["shape"], True, path).astype(np.float64))
        except ModelImportError as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{path!r}: {e}") from None
        except _UNREADABLE as e:
            raise ModelFileError(f"{path!r}: unreadable array ({type(e).__name__}: {e})") from None
    return graph, arrays

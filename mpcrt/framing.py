"""Wire frames: a msgpack header plus the raw array buffer in chunks. Never pickle.

A buffer of up to SINGLE_MAX bytes travels as one frame; a larger one as
ceil(bytes / CHUNK_BYTES) chunks, every one but the last exactly CHUNK_BYTES long (the
ZeroMQ node sends each as a message of its own, so heartbeats interleave):
libzmq allocates each received frame with malloc, and glibc maps blocks above 32 MB
afresh each time (page-faulting them in), so one 64 MB frame cost the receiver 5x
the CPU of eight 8 MB ones on loopback. (Smaller buffers stay whole: reassembling
chunks costs a copy.)

Header fields: v (protocol version), sid (session id), src (sender rank),
seq (per-channel sequence number), tag (op tag), dt (dtype string), sh (shape).
`check` validates every field against what the receiver expects and raises
ProtocolError naming the peer and what differed.
"""
from __future__ import annotations

import math

import msgpack
import numpy as np

from mpcrt.errors import ProtocolError

VERSION = 2
CHUNK_BYTES = 8 << 20
SINGLE_MAX = 30 << 20
ALLOWED_DTYPES = {"<i8": np.int64, "<u8": np.uint64, "<i4": np.int32, "<u2": np.uint16, "|u1": np.uint8,
                  "<f8": np.float64}
MAX_HEADER = 4096
MAX_DIMS = 32
MAX_ELEMENTS = 1 << 40  # a frame's shape may claim no more (8 TB of int64), zero dimensions aside


def pack_header(sid: str, src: int, seq: int, tag: str, dtype: np.dtype, shape: tuple) -> bytes:
    return msgpack.packb(
        {"v": VERSION, "sid": sid, "src": src, "seq": seq, "tag": tag, "dt": np.dtype(dtype).str, "sh": list(shape)},
        use_bin_type=True,
    )


def unpack_header(raw: bytes, peer: str) -> dict:
    if len(raw) > MAX_HEADER:
        raise ProtocolError(peer, f"header of {len(raw)} bytes exceeds {MAX_HEADER}")
    try:
        h = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    except Exception as e:  # msgpack raises several types on garbage
        raise ProtocolError(peer, f"undecodable header ({type(e).__name__}): not an mpcrt frame") from None
    if not isinstance(h, dict) or set(h) != {"v", "sid", "src", "seq", "tag", "dt", "sh"}:
        raise ProtocolError(peer, "header fields are not those of an mpcrt frame")
    types = {"v": (int, "version"), "sid": (str, "session"), "src": (int, "sender"), "seq": (int, "sequence"),
             "tag": (str, "tag"), "dt": (str, "dtype"), "sh": (list, "shape")}
    for k, (t, what) in types.items():
        if not isinstance(h[k], t) or isinstance(h[k], bool):
            raise ProtocolError(peer, f"malformed {what} field: {type(h[k]).__name__}, expected {t.__name__}")
    sh = h["sh"]
    if len(sh) > MAX_DIMS or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in sh):
        raise ProtocolError(peer, f"malformed shape {sh!r}")
    if math.prod(max(d, 1) for d in sh) > MAX_ELEMENTS:  # (numpy refuses such a shape even with a 0 in it)
        raise ProtocolError(peer, f"shape {sh!r} claims more than {MAX_ELEMENTS} elements")
    return h


def check(h: dict, peer: str, *, sid: str, src: int, seq: int, tag: str, dtype=None, shape=None) -> None:
    """Validate a decoded header against the receiver's expectations."""
    if h["v"] != VERSION:
        raise ProtocolError(peer, f"protocol version {h['v']!r}, expected {VERSION}")
    if h["sid"] != sid:
        raise ProtocolError(peer, f"frame from another session {h['sid']!r} (expected {sid!r})")
    if h["src"] != src:
        raise ProtocolError(peer, f"frame claims sender {h['src']!r} but came from rank {src}")
    if h["seq"] != seq:
        raise ProtocolError(peer, f"out of sequence: got #{h['seq']!r}, expected #{seq}")
    if h["tag"] != tag:
        raise ProtocolError(peer, f"op tag {h['tag']!r}, expected {tag!r} (parties ran different programs?)")
    if h["dt"] not in ALLOWED_DTYPES:
        raise ProtocolError(peer, f"dtype {h['dt']!r} is not allowed")
    if dtype is not None and np.dtype(ALLOWED_DTYPES[h["dt"]]) != np.dtype(dtype):
        raise ProtocolError(peer, f"dtype {h['dt']!r}, expected {np.dtype(dtype).str!r}")
    if shape is not None and tuple(h["sh"]) != tuple(shape):
        raise ProtocolError(peer, f"shape {tuple(h['sh'])}, expected {tuple(shape)}")


def to_array(h: dict, buf, peer: str) -> np.ndarray:
    """Interpret the payload buffer; its byte length must match dtype and shape exactly."""
    try:
        mv = memoryview(buf)
    except TypeError:
        raise ProtocolError(peer, f"payload is a {type(buf).__name__}, not a buffer") from None
    if mv.nbytes != payload_bytes(h):
        raise ProtocolError(peer, f"payload is {mv.nbytes} bytes, header says {payload_bytes(h)}")
    return np.frombuffer(mv, dtype=ALLOWED_DTYPES[h["dt"]]).reshape(h["sh"])


def n_chunks(nbytes: int) -> int:
    """How many payload frames carry a buffer of `nbytes`."""
    return 1 if nbytes <= SINGLE_MAX else -(-nbytes // CHUNK_BYTES)


def payload_bytes(h: dict) -> int:
    """Bytes the header's dtype and shape call for."""
    n = np.dtype(ALLOWED_DTYPES[h["dt"]]).itemsize if h["dt"] in ALLOWED_DTYPES else 1
    for d in h["sh"]:
        n *= d
    return n

"""Fuzzing the wire frames (mpcrt.framing) and the transports' receive paths.

A hostile or broken peer may send any bytes as a header and any payload. Only
ProtocolError may come out, naming the peer; nothing is allocated from a size the
header claims before the payload's length is checked against it; nothing hangs.
Every test is bounded: hypothesis deadlines and example counts are set here, so no
profile changes their cost.
"""
from __future__ import annotations

import tracemalloc

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpcrt import PeerFailure, ProtocolError, framing, zmq_transport
from mpcrt.launch.local import free_ports
from mpcrt.memory_transport import MemoryNetwork

PEER = "party 1"
EXPECT = dict(sid="sess", src=1, seq=0, tag="t")
FIELDS = ("v", "sid", "src", "seq", "tag", "dt", "sh")
FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# any value msgpack can carry (bin and ext included, which headers must refuse)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.binary(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)
odd_dtypes = st.sampled_from(["|O", "O", "V8", "|V16", "<f16", "<c16", "S10", "<U3", "<M8[s]", "<m8", "|b1",
                              "[('a', '<i8')]", "<i8,<i8", "int64", ">i8", "=i8", "", "\x00", "<i8 "])
dims = st.integers(-(2**63), 2**64 - 1) | st.sampled_from([-1, 2**40, 2**40 - 1, 2**60, 2**63 - 1]) | values


def valid() -> dict:
    return {"v": framing.VERSION, "sid": "sess", "src": 1, "seq": 0, "tag": "t", "dt": "<i8", "sh": [2, 3]}


def pack(h) -> bytes:
    return msgpack.packb(h, use_bin_type=True)


@st.composite
def mutated_headers(draw) -> bytes:
    """A valid header with one field changed, a field added or removed, or bytes appended."""
    h = valid()
    how = draw(st.sampled_from(["value", "dtype", "shape", "add", "drop", "trail", "nest", "wrap"]))
    if how == "value":
        h[draw(st.sampled_from(FIELDS))] = draw(values)
    elif how == "dtype":
        h["dt"] = draw(odd_dtypes | st.sampled_from(sorted(framing.ALLOWED_DTYPES)))
    elif how == "shape":
        h["sh"] = draw(st.lists(dims, max_size=40) | values)
    elif how == "add":
        h[draw(st.text(max_size=4))] = draw(values)
    elif how == "drop":
        del h[draw(st.sampled_from(FIELDS))]
    elif how == "nest":  # deep nesting inside the header's size bound
        return nested(draw(st.sampled_from(FIELDS)), draw(st.integers(1, 4000)))
    raw = pack(h)
    if how == "wrap":  # the header inside a list, or its map marker cut off
        raw = pack([h]) if draw(st.booleans()) else raw[1:]
    if how == "trail":
        raw += draw(st.binary(min_size=1, max_size=16))
    return raw


def nested(field: str, depth: int) -> bytes:
    """A valid header whose `field` is a list nested `depth` deep (msgpack's packer stops at 512)."""
    h = valid()
    return bytes([0x80 | len(h)]) + b"".join(
        pack(k) + (b"\x91" * depth + b"\x90" if k == field else pack(v)) for k, v in h.items())


def checked(raw: bytes, payload: bytes):
    """What a receiver does with one frame; returns the array or raises ProtocolError."""
    h = framing.unpack_header(raw, PEER)
    framing.check(h, PEER, **EXPECT)
    want = 1 + framing.n_chunks(framing.payload_bytes(h))
    assert want >= 2
    return framing.to_array(h, payload, PEER)


def only_protocol_errors(raw: bytes, payload: bytes = b"") -> None:
    try:
        arr = checked(raw, payload)
    except ProtocolError as e:
        assert e.peer == PEER and str(e).startswith(f"protocol error from {PEER}: ")
        return
    h = msgpack.unpackb(raw)  # accepted: it was a valid header whose payload fits
    assert arr.dtype == np.dtype(framing.ALLOWED_DTYPES[h["dt"]]) and list(arr.shape) == h["sh"]
    assert arr.nbytes == len(payload)


# ------------------------------------------------------------------ headers
@FAST
@given(st.binary(max_size=300), st.binary(max_size=64))
@example(b"", b"")
@example(b"\xc1", b"")  # a byte msgpack never uses
@example(b"\x80", b"")  # an empty map
@example(b"\xdd\xff\xff\xff\xff", b"")  # an array claiming 2^32 - 1 elements in 5 bytes
@example(b"\xd9\x05\xff\xfe", b"")  # a str of invalid UTF-8
@example(b"\xc7\x00\xff", b"")  # an ext (timestamps are ext) of length 0
def test_random_bytes_as_header(raw, payload):
    only_protocol_errors(raw, payload)


@FAST
@given(mutated_headers(), st.binary(max_size=64))
@example(pack({**valid(), "sh": [0, 2**39, 2**39, 2**39]}), b"")  # found: numpy's "array is too big" ValueError
@example(pack({**valid(), "sh": [0] + [2**40 - 1] * 31}), b"")
@example(pack({**valid(), "sh": [2**40]}), b"")
@example(pack({**valid(), "sh": [-1]}), b"")
@example(pack({**valid(), "sh": [2.0, 3.0]}), b"")
@example(pack({**valid(), "sh": [True, 3]}), b"")
@example(pack({**valid(), "dt": "|O"}), b"\0" * 48)  # object dtype: never an array of pointers
@example(pack({**valid(), "dt": "[('a', '<i8')]"}), b"\0" * 48)
@example(pack({**valid(), "src": True}), b"\0" * 48)
@example(pack({**valid(), "seq": 2**64 - 1}), b"\0" * 48)
@example(pack({**valid(), "sid": b"sess"}), b"\0" * 48)
@example(pack({**valid(), "sh": [2, 3]}) + b"\x00", b"\0" * 48)  # trailing bytes
@example(pack({**valid(), "v": 2**64 - 1}), b"\0" * 48)
@example(pack({**valid(), "x": 1}), b"\0" * 48)
@example(pack({k: v for k, v in valid().items() if k != "seq"}), b"\0" * 48)
@example(nested("sh", 2000), b"")
@example(nested("sid", 4000), b"")
def test_mutated_header(raw, payload):
    only_protocol_errors(raw, payload)


def test_valid_header_is_accepted():
    arr = checked(pack(valid()), np.arange(6, dtype=np.int64).tobytes())
    assert arr.tolist() == [[0, 1, 2], [3, 4, 5]]


@settings(max_examples=80, deadline=2000)
@given(st.integers(0, 200), st.sampled_from(sorted(framing.ALLOWED_DTYPES)),
       st.lists(st.integers(0, 2**10), min_size=0, max_size=4))
def test_payload_length_must_match(nbytes, dt, shape):
    raw = pack({**valid(), "dt": dt, "sh": shape})
    want = framing.payload_bytes(msgpack.unpackb(raw))
    if nbytes == want:
        assert checked(raw, b"\0" * nbytes).shape == tuple(shape)
    else:
        with pytest.raises(ProtocolError, match="payload is"):
            checked(raw, b"\0" * nbytes)


def test_payload_that_is_no_buffer_is_refused():
    with pytest.raises(ProtocolError, match="payload"):
        checked(pack(valid()), "not a buffer")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [[2**39, 2**39], [2**40 - 1], [2**20] * 3, [0, 2**40 - 1, 2**40 - 1]])
def test_huge_claimed_shape_allocates_nothing(shape):
    """A header claiming a vast array with a short payload is refused before any allocation."""
    raw = pack({**valid(), "sh": shape})
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            checked(raw, b"\0" * 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@settings(max_examples=200, deadline=1000)
@given(st.integers(0, 2**62))
@example(framing.SINGLE_MAX)
@example(framing.SINGLE_MAX + 1)
def test_chunk_count_covers_the_payload(nbytes):
    k = framing.n_chunks(nbytes)
    if nbytes <= framing.SINGLE_MAX:
        assert k == 1
    else:
        assert (k - 1) * framing.CHUNK_BYTES < nbytes <= k * framing.CHUNK_BYTES


# ------------------------------------------------- end to end: in-memory transport
@settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_headers() | st.binary(max_size=100), st.binary(max_size=64), st.booleans())
@example(pack({**valid(), "sh": [0, 2**39, 2**39, 2**39]}), b"", False)
@example(pack({**valid(), "src": 0}), b"\0" * 48, False)  # claims to be another party
@example(pack({**valid(), "seq": 1}), b"\0" * 48, True)  # skips a frame
def test_memory_transport_refuses_hostile_frames(raw, payload, any_peer):
    """Frames a hostile party 1 puts in party 0's queue: ProtocolError naming party 1."""
    net = MemoryNetwork(2, session="sess")
    me = net.node(0, timeout=2)
    net.post(1, 0, raw, payload)
    try:
        if any_peer:
            got = me.recv_any(timeout=2)
            assert got is not None
        else:
            me.recv(1, "t")
    except ProtocolError as e:
        assert e.peer == PEER
    finally:
        me.close(barrier=False)


# ---------------------------------------------------- end to end: a raw ZeroMQ peer
@pytest.fixture(scope="module")
def zmq_party():
    """Party 0 of a plaintext 2-party session on loopback, and a raw DEALER socket that
    dials it as 'party 1' (plaintext: anyone may claim any identity)."""
    from mpcrt.zmq_transport import Node

    names = {0: "party 0", 1: "party 1", 2: "dealer"}
    ports = dict(zip(names, free_ports(len(names))))
    eps = {i: f"tcp://127.0.0.1:{p}" for i, p in ports.items()}
    with pytest.warns(UserWarning, match="PLAINTEXT"):
        node = Node(0, names, eps, None, None, "sess", connect_to=[], timeout=3, insecure=True)
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.setsockopt(zmq.ROUTING_ID, b"n1")
    rogue.connect(eps[0])
    yield node, rogue, ctx
    rogue.close(0)
    ctx.term()
    node.close(barrier=False)


def _zmq_frames(raw: bytes, payload: bytes, extra: list[bytes]) -> list[bytes]:
    return [raw, payload, *extra]


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(mutated_headers() | st.binary(max_size=100), st.binary(max_size=64),
       st.lists(st.binary(max_size=16), max_size=3))
@example(pack(valid()), b"\0" * 48, [b"x"])  # a valid frame with a stray chunk
@example(pack({**valid(), "sh": [2**30]}), b"\0" * 8, [b"\0" * 8] * 2)  # claims 1024 chunks, sends 3
@example(pack({**valid(), "sh": [framing.SINGLE_MAX // 8 + 1]}), b"\0" * 8, [b"\0" * 8] * 3)  # 4 short chunks
@example(pack({**valid(), "sh": [0, 2**39, 2**39, 2**39]}), b"", [])
def test_zmq_node_refuses_garbage_from_a_raw_socket(zmq_party, raw, payload, extra):
    """Garbage from a raw plaintext socket claiming to be party 1: ProtocolError naming it,
    at once (a frame that happens to be valid and next in sequence is accepted)."""
    node, rogue, _ = zmq_party
    rogue.send_multipart(_zmq_frames(raw, payload, extra))
    try:
        arr = node.recv(1, "t")
    except ProtocolError as e:
        assert e.peer == PEER
    else:
        assert not extra and list(arr.shape) == msgpack.unpackb(raw)["sh"]


def test_zmq_node_refuses_a_lone_header_and_unknown_identities(zmq_party):
    node, rogue, ctx = zmq_party
    rogue.send_multipart([pack(valid())])
    with pytest.raises(ProtocolError, match="header without its payload") as ei:
        node.recv(1, "t")
    assert ei.value.peer == PEER
    stranger = ctx.socket(zmq.DEALER)
    stranger.setsockopt(zmq.LINGER, 0)
    stranger.setsockopt(zmq.ROUTING_ID, b"n9")
    stranger.connect(f"tcp://127.0.0.1:{node.router.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(':', 1)[1]}")
    try:
        stranger.send_multipart([pack(valid()), b"\0" * 48])
        with pytest.raises(ProtocolError, match="not in the cluster") as ei:
            node.recv(1, "t")
        assert "n9" in ei.value.peer
    finally:
        stranger.close(0)


def _chunk(seq: int, i: int, payload: bytes) -> list[bytes]:
    """A chunk message as the ZeroMQ node sends it: marker (magic, frame seq, index), bytes."""
    return [zmq_transport._CHUNK.pack(zmq_transport._CHUNK_MAGIC, seq, i), payload]


BIG = framing.SINGLE_MAX // 8 + 1  # words: a payload that must come as 4 chunk messages


@pytest.mark.parametrize("shape,inline,chunks,words", [
    ([2**30], [b"\0" * 8], [], "must come in 1024 chunk messages, not inline"),  # 8 GiB claimed: nothing allocated
    ([BIG], [], [(0, 8)] * 4, "chunk 0 of frame #.* is 8 bytes"),  # right count, short chunks
    ([BIG], [], [(0, framing.CHUNK_BYTES), (2, framing.CHUNK_BYTES)], "out of order: expected chunk 1"),
    ([BIG], [], [(i, framing.CHUNK_BYTES) for i in range(3)] + [(3, 16)], "chunk 3 of frame #.* is 16 bytes"),
])
def test_zmq_node_checks_chunk_structure_before_reassembling(zmq_party, shape, inline, chunks, words):
    node, rogue, _ = zmq_party
    seq = node._recv_seq[1]
    rogue.send_multipart([pack({**valid(), "seq": seq, "sh": shape}), *inline])
    for i, size in chunks:
        rogue.send_multipart(_chunk(seq, i, b"\0" * size))
    with pytest.raises(ProtocolError, match=words) as ei:
        node.recv(1, "t")
    assert ei.value.peer == PEER
    node._pump(200)  # the refused frame's other chunk messages: dropped, so the next case starts clean
    node._inbox[1].clear()


def test_zmq_node_drops_a_frame_larger_than_any_it_sends(zmq_party):
    """A frame over SINGLE_MAX + MAX_HEADER (no node sends one) is refused by libzmq
    (ZMQ_MAXMSGSIZE: the sender's connection is dropped), so the receiver never allocates
    what a peer claims: nothing arrives, and the receive ends in PeerFailure: at once where
    that connection had carried the peer's frames before, else at its timeout."""
    node, rogue, _ = zmq_party
    rogue.send_multipart([pack({**valid(), "seq": node._recv_seq[1]}), b"\0" * (framing.SINGLE_MAX + 8192)])
    with pytest.raises(PeerFailure, match="sent nothing|disconnected") as ei:
        node.recv(1, "t")
    assert ei.value.peer == PEER


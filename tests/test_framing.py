"""Wire frames (mpcrt.framing): header round trip, validation, garbage, never unpickling."""
from __future__ import annotations

import pickle
import re

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt import ProtocolError, framing

PEER = "party 3"
DTYPES = [np.int64, np.uint64, np.uint8, np.float64]
EXPECT = dict(sid="sess-1", src=3, seq=5, tag="beaver", dtype=np.int64, shape=(2, 3))


def header(**over) -> dict:
    fields = dict(sid="sess-1", src=3, seq=5, tag="beaver", dtype=np.int64, shape=(2, 3))
    fields.update(over)
    raw = framing.pack_header(*(fields[k] for k in ("sid", "src", "seq", "tag", "dtype", "shape")))
    return framing.unpack_header(raw, PEER)


def raw_header(**over) -> bytes:
    h = {"v": framing.VERSION, "sid": "sess-1", "src": 3, "seq": 5, "tag": "beaver", "dt": "<i8", "sh": [2, 3]}
    h.update(over)
    return msgpack.packb(h, use_bin_type=True)


# ------------------------------------------------------------------ round trip
@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40), st.integers(0, 1000), st.integers(0, 2**40), st.text(max_size=20),
       st.sampled_from(DTYPES), st.lists(st.integers(0, 6), max_size=5))
def test_header_round_trip(sid, src, seq, tag, dtype, shape):
    raw = framing.pack_header(sid, src, seq, tag, dtype, tuple(shape))
    assert isinstance(raw, bytes)
    h = framing.unpack_header(raw, PEER)
    assert h == {"v": framing.VERSION, "sid": sid, "src": src, "seq": seq, "tag": tag,
                 "dt": np.dtype(dtype).str, "sh": list(shape)}
    framing.check(h, PEER, sid=sid, src=src, seq=seq, tag=tag, dtype=dtype, shape=tuple(shape))
    arr = (np.arange(int(np.prod(shape, dtype=np.int64))) % 200).astype(dtype).reshape(shape)
    back = framing.to_array(h, memoryview(arr).cast("B") if arr.size else b"", PEER)
    assert back.dtype == np.dtype(dtype) and back.shape == tuple(shape) and np.array_equal(back, arr)


def test_check_accepts_unspecified_dtype_and_shape():
    framing.check(header(), PEER, sid="sess-1", src=3, seq=5, tag="beaver")


# ------------------------------------------------------------------ check errors
@pytest.mark.parametrize(
    "expect,words",
    [
        (dict(sid="other-session"), "another session"),
        (dict(src=2), "sender"),
        (dict(seq=4), "out of sequence"),
        (dict(seq=6), "out of sequence"),
        (dict(tag="trunc"), "tag"),
        (dict(dtype=np.uint64), "dtype"),
        (dict(dtype=np.float64), "dtype"),
        (dict(shape=(3, 2)), "shape"),
        (dict(shape=(6,)), "shape"),
        (dict(shape=(2, 3, 1)), "shape"),
    ],
)
def test_check_raises_protocol_error_naming_peer_and_field(expect, words):
    want = dict(EXPECT, **expect)
    with pytest.raises(ProtocolError) as ei:
        framing.check(header(), PEER, **want)
    assert ei.value.peer == PEER
    assert PEER in str(ei.value) and words in str(ei.value)


def test_check_version_and_disallowed_dtypes():
    h = framing.unpack_header(raw_header(v=framing.VERSION - 1), PEER)  # the unchunked format
    with pytest.raises(ProtocolError, match="version"):
        framing.check(h, PEER, sid="sess-1", src=3, seq=5, tag="beaver")
    for dt in ("|O", "<f4", "<i2", ">i4", ">i8", "|V8", "garbage"):
        h = framing.unpack_header(raw_header(dt=dt), PEER)
        with pytest.raises(ProtocolError, match="not allowed"):
            framing.check(h, PEER, sid="sess-1", src=3, seq=5, tag="beaver")


def test_byte_length_must_match_exactly():
    h = header()
    good = np.arange(6, dtype=np.int64)
    assert framing.to_array(h, good.tobytes(), PEER).tolist() == [[0, 1, 2], [3, 4, 5]]
    for n in (0, 8, 47, 49, 56, 480):
        with pytest.raises(ProtocolError, match="bytes") as ei:
            framing.to_array(h, b"\x00" * n, PEER)
        assert ei.value.peer == PEER
    empty = header(shape=(0, 4))
    assert framing.to_array(empty, b"", PEER).shape == (0, 4)
    with pytest.raises(ProtocolError):
        framing.to_array(empty, b"\x00" * 8, PEER)


# ------------------------------------------------------------------ garbage
@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_bytes_raise_protocol_error(raw):
    try:
        h = framing.unpack_header(raw, PEER)
    except ProtocolError as e:
        assert e.peer == PEER
        return
    # the rare byte string that is a well-formed header must still pass validation to be used
    assert set(h) == {"v", "sid", "src", "seq", "tag", "dt", "sh"}


@pytest.mark.parametrize(
    "raw,words",
    [
        (b"", "undecodable"),
        (b"\xc1", "undecodable"),  # never-used msgpack byte
        (b"\x93\x01\x02", "undecodable"),  # truncated array
        (msgpack.packb([1, 2, 3]), "fields"),
        (msgpack.packb("hello"), "fields"),
        (msgpack.packb({"v": 1}), "fields"),
        (raw_header(extra=1), "fields"),
        (msgpack.packb({1: 2}), ""),  # non-string map keys
        (raw_header(sh=[-1, 3]), "shape"),
        (raw_header(sh="23"), "shape|'sh'"),
        (raw_header(sh=[2.0, 3]), "shape"),
        (raw_header(sh=None), "shape|'sh'"),
        (msgpack.packb({"v": 1, "sid": b"\x00" * 8}, use_bin_type=True), ""),  # bin values refused
        (msgpack.packb(msgpack.ExtType(1, b"x")), ""),  # ext types refused
        (b"\x81" + b"\xa1x" * 1 + b"\x00" * (framing.MAX_HEADER + 10), "exceeds"),
    ],
)
def test_malformed_headers(raw, words):
    with pytest.raises(ProtocolError) as ei:
        framing.unpack_header(raw, PEER)
    assert ei.value.peer == PEER and re.search(words, str(ei.value)), str(ei.value)


_PICKLE_RAN: list = []


def _side_effect(x):  # what a malicious pickle would call
    _PICKLE_RAN.append(x)
    return x


class _Evil:
    def __reduce__(self):
        return (_side_effect, ("pwned",))


def test_pickles_are_never_unpickled():
    evil = pickle.dumps(_Evil())
    assert pickle.loads(evil) == "pwned" and _PICKLE_RAN == ["pwned"]  # the payload works...
    _PICKLE_RAN.clear()
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):  # ...but not as an mpcrt header
        with pytest.raises(ProtocolError):
            framing.unpack_header(pickle.dumps(_Evil(), protocol=proto), PEER)
    # nor as a payload: it is raw bytes viewed as numbers, whatever the length
    payload = evil + b"\x00" * (-len(evil) % 8)
    h = header(shape=(len(payload) // 8,))
    arr = framing.to_array(h, payload, PEER)
    assert arr.dtype == np.int64 and arr.tobytes() == payload
    # object dtype, the only way numpy could hold Python objects, is refused
    with pytest.raises(ProtocolError):
        framing.check(framing.unpack_header(raw_header(dt="|O"), PEER), PEER, sid="sess-1", src=3, seq=5, tag="beaver")
    assert _PICKLE_RAN == []


# ---------------------------------------------- well-formed msgpack, wrong types
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _validate(raw: bytes, payload: bytes) -> None:
    """What a receiver does with one frame; must raise nothing but ProtocolError."""
    h = framing.unpack_header(raw, PEER)
    framing.check(h, PEER, sid="sess-1", src=3, seq=5, tag="beaver", dtype=None, shape=None)
    framing.to_array(h, payload, PEER)


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({k: _JSONISH for k in ("v", "sid", "src", "seq", "tag", "dt", "sh")}),
       st.binary(max_size=64))
def test_fuzz_header_all_fields_only_raise_protocol_error(fields, payload):
    try:
        _validate(msgpack.packb(fields, use_bin_type=True), payload)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["v", "sid", "src", "seq", "tag", "dt", "sh"]), _JSONISH, st.binary(max_size=64))
def test_fuzz_one_header_field_only_raises_protocol_error(field, value, payload):
    """A header that is right but for one field of any type: ProtocolError or a valid frame, nothing else."""
    try:
        _validate(raw_header(**{field: value}), payload)
    except ProtocolError:
        pass


@pytest.mark.parametrize("dt", [[1], {"a": 1}, ["<i8"]])
def test_unhashable_dtype_field_is_a_protocol_error(dt):
    """A peer sending a list/map as the dtype field must get ProtocolError, not TypeError."""
    with pytest.raises(ProtocolError):
        _validate(raw_header(dt=dt, sh=[1]), b"\x00" * 8)


def test_boolean_shape_entries_are_a_protocol_error():
    """msgpack booleans are not dimensions: [true, 2] must be refused as a malformed shape."""
    with pytest.raises(ProtocolError):
        _validate(raw_header(sh=[True, 2]), b"\x00" * 16)


def test_too_many_dimensions_is_a_protocol_error():
    """A shape of 70 ones (a 300-byte header) must be refused, not crash numpy's reshape."""
    with pytest.raises(ProtocolError):
        _validate(raw_header(sh=[1] * 70), b"\x00" * 8)


def test_fields_with_wrong_types_fail_validation():
    for over, words in [
        (dict(sid=5), "session|'sid'"),
        (dict(src="3"), "sender|'src'"),
        (dict(seq=None), "sequence|'seq'"),
        (dict(seq="5"), "sequence|'seq'"),
        (dict(seq=5.0), "sequence|'seq'"),
        (dict(tag=1), "tag"),
        (dict(v="1"), "version|'v'"),
    ]:
        with pytest.raises(ProtocolError, match=words) as ei:
            _validate(raw_header(**over), b"\x00" * 48)
        assert ei.value.peer == PEER


def test_chunk_count_follows_the_payload_size():
    C, S = framing.CHUNK_BYTES, framing.SINGLE_MAX
    assert [framing.n_chunks(b) for b in (0, 1, C, S, S + 1, 8 * C)] == [1, 1, 1, 1, -(-(S + 1) // C), 8]
    assert framing.payload_bytes(header()) == 6 * 8

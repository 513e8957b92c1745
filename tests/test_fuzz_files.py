"""Fuzzing the files mpcrt reads: cluster files and key files (ConfigError only) and
model archives and graphs (mpcrt.nn's ModelFileError / ModelImportError only).

Each test feeds random bytes, and valid files with one thing changed; an accepted file
must be one a node can use (keys libzmq takes, ranks 0..N-1, a graph that validates).
A model archive's arrays are checked against their .npy headers before numpy reads
them: no allocation from a size the file merely claims, no object arrays (pickle).
"""
from __future__ import annotations

import io
import math
import os
import tempfile
import tracemalloc
import zipfile

import msgpack
import numpy as np
import pytest
import zmq.utils.z85
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpcrt import ConfigError
from mpcrt.cluster import format_cluster, load_cluster, load_secret_key, parse_cluster, write_secret_key
from mpcrt.nn import archive
from mpcrt.nn.ir import Graph, ModelFileError, ModelImportError
from mpcrt.nn.ops import IR_OPS
from mpcrt.zmq_transport import generate_keypair

SETTINGS = settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
KEYS = [generate_keypair() for _ in range(4)]
PUB = [k[0].decode() for k in KEYS]
BAD_Z85 = "#" * 40  # z85 characters whose 5-character groups exceed 2^32: libzmq refuses the key


def _tmp(data: bytes, suffix: str = "") -> str:
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


# ----------------------------------------------------------------- cluster files
def valid_doc(n: int = 2) -> dict:
    return {"session": "fuzz-1", "precision": 16,
            "dealer": {"address": "tcp://10.0.0.10:7000", "public_key": PUB[n]},
            "party": [{"rank": r, "address": f"tcp://10.0.0.{11 + r}:7001", "public_key": PUB[r]} for r in range(n)]}


def toml_value(v) -> str:
    """v as an inline TOML value (tables inline, so any nesting is one line)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_key(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(e) for e in v) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(e)}" for k, e in v.items()) + "}"


def toml_key(s: str) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" if c < " " or c in '"\\\x7f' else c for c in s) + '"'


def toml_doc(d: dict) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in d.items())


toml_scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=50)
                | st.sampled_from(["tcp://h:0", "tcp://h:65536", "tcp://h:99999", "tcp://[::1]:7000", "tcp://h:7000",
                                   "tcp://10.0.0.10:7000", "udp://h:1", "tcp://h", "tcp://:1", BAD_Z85, PUB[0],
                                   PUB[0][:39], PUB[0] + "x", "", "\x00"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
FIELDS = ["session", "precision", "address", "public_key", "rank", "bind", "extra"]


@st.composite
def mutated_docs(draw) -> str:
    doc = valid_doc(draw(st.integers(2, 3)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "dealer", "party", "drop", "dup"]))
        field = draw(st.sampled_from(FIELDS))
        if where == "top":
            doc[field if field in ("session", "precision", "extra") else draw(st.sampled_from(["dealer", "party"]))] \
                = draw(toml_values)
        elif where == "dealer" and isinstance(doc.get("dealer"), dict):
            doc["dealer"][field] = draw(toml_values)
        elif where == "party" and isinstance(doc.get("party"), list) and doc["party"]:
            p = draw(st.sampled_from(doc["party"]))
            if isinstance(p, dict):
                p[field] = draw(toml_values)
        elif where == "drop":
            tbl = draw(st.sampled_from([doc, doc.get("dealer"), *(doc.get("party") or [])]))
            if isinstance(tbl, dict) and tbl:
                del tbl[draw(st.sampled_from(sorted(tbl)))]
        elif isinstance(doc.get("party"), list) and doc["party"] and isinstance(doc["party"][0], dict):
            # a party twice, or a key reused
            doc["party"].append(dict(doc["party"][0]) if draw(st.booleans()) else
                                {**doc["party"][0], "rank": len(doc["party"]), "address": "tcp://z:1"})
    return toml_doc(doc)


def usable(c) -> None:
    """An accepted cluster is one a node can start from."""
    n = c.world_size
    assert n >= 2 and sorted(c.endpoints) == list(range(n + 1)) and sorted(c.public_keys) == list(range(n + 1))
    assert len(set(c.public_keys.values())) == n + 1
    for k in c.public_keys.values():
        assert len(zmq.utils.z85.decode(k)) == 32
    assert parse_cluster(format_cluster(c)) == c


def cluster_ok_or_config_error(text: str) -> None:
    try:
        c = parse_cluster(text)
    except ConfigError as e:
        assert "\n  - " in str(e) or "TOML" in str(e)
        return
    usable(c)


@SETTINGS
@given(st.text(max_size=300))
@example("")
@example("[[party]]\n" * 3)
@example("party = 1\ndealer = 2\nsession = 3")
def test_random_text_as_cluster_file(text):
    cluster_ok_or_config_error(text)


@SETTINGS
@given(mutated_docs())
@example(toml_doc({**valid_doc(), "dealer": {**valid_doc()["dealer"], "public_key": BAD_Z85}}))  # found: libzmq
@example(toml_doc({**valid_doc(), "dealer": {**valid_doc()["dealer"], "public_key": PUB[0]}}))  # found: key reused
@example(toml_doc({**valid_doc(), "session": 'a"b\\c\x01\x7f'}))  # found: format_cluster wrote invalid TOML
@example(toml_doc({**valid_doc(), "party": [valid_doc()["party"][0]] * 2}))
@example(toml_doc({**valid_doc(), "party": [{**p, "rank": 5} for p in valid_doc()["party"]]}))
@example(toml_doc({**valid_doc(), "party": [{**p, "rank": float(p["rank"])} for p in valid_doc()["party"]]}))
@example(toml_doc({**valid_doc(), "party": [{**p, "address": "tcp://10.0.0.10:7000"} for p in valid_doc()["party"]]}))
@example(toml_doc({**valid_doc(), "precision": True}))
@example(toml_doc({**valid_doc(), "party": {"rank": 0}}))
@example(toml_doc({**valid_doc(), "dealer": []}))
def test_mutated_cluster_file(text):
    cluster_ok_or_config_error(text)


@settings(max_examples=60, deadline=3000)
@given(st.binary(max_size=200))
@example(b"\xff\xfe session")  # found: UnicodeDecodeError from load_cluster
@example(toml_doc(valid_doc()).encode())
def test_random_bytes_as_cluster_file(data):
    path = _tmp(data, ".toml")
    try:
        usable(load_cluster(path))
    except ConfigError:
        pass
    finally:
        os.unlink(path)


def test_cluster_file_that_is_a_directory_or_huge(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_cluster(str(tmp_path))
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_cluster(str(big))


# ------------------------------------------------------------------- key files
def keygen_text() -> str:
    buf = tempfile.mktemp()
    write_secret_key(buf, KEYS[0][0], KEYS[0][1])
    with open(buf) as fh:
        text = fh.read()
    os.unlink(buf)
    return text


KEY_TEXT = keygen_text()


@st.composite
def mutated_key_files(draw) -> bytes:
    raw = KEY_TEXT.encode()
    how = draw(st.sampled_from(["set", "insert", "delete", "truncate", "random"]))
    if how == "random":
        return draw(st.binary(max_size=200))
    i = draw(st.integers(0, len(raw) - 1))
    if how == "set":
        return raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    if how == "insert":
        return raw[:i] + draw(st.binary(min_size=1, max_size=4)) + raw[i:]
    if how == "delete":
        return raw[:i] + raw[i + draw(st.integers(1, 8)):]
    return raw[:i]


@SETTINGS
@given(mutated_key_files())
@example(KEY_TEXT.encode())
@example(KEY_TEXT.replace(KEYS[0][1].decode(), BAD_Z85).encode())  # found: a key libzmq refuses was returned
@example(KEY_TEXT.replace(KEYS[0][1].decode(), " " * 40).encode())
@example(b"\x80" + KEY_TEXT.encode())  # found: UnicodeDecodeError
def test_mutated_key_file(data):
    path = _tmp(data)
    try:
        key = load_secret_key(path)
    except ConfigError:
        return
    finally:
        os.unlink(path)
    assert len(zmq.utils.z85.decode(key)) == 32


# ------------------------------------------------------------- model archives
GRAPH = {"format": "mpcrt-nn", "version": 1, "input_shape": [1, 3],
         "params": [{"name": "0.weight", "shape": [2, 3]}, {"name": "0.bias", "shape": [2]}],
         "nodes": [{"op": "input", "args": {}, "name": "input_1", "target": "input"},
                   {"op": "param", "args": {"index": 0}, "name": "0.weight", "target": "param"},
                   {"op": "param", "args": {"index": 1}, "name": "0.bias", "target": "param"},
                   {"op": "linear", "args": {"input": {"ref": 0}, "weight": {"ref": 1}, "bias": {"ref": 2}},
                    "name": "_0", "target": "Linear"},
                   {"op": "relu", "args": {"input": {"ref": 3}}, "name": "_1", "target": "ReLU"}],
         "output": {"ref": 4}, "meta": {"model": "Sequential"}}
WEIGHTS = [np.ones((2, 3)), np.zeros(2)]


def npz_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def archive_bytes(graph_raw: bytes, weights=WEIGHTS) -> bytes:
    return npz_bytes({archive.ARCHIVE_GRAPH_KEY: np.frombuffer(graph_raw, np.uint8),
                      **{f"p{i}": w for i, w in enumerate(weights)}})


VALID_ARCHIVE = archive_bytes(msgpack.packb(GRAPH))


def load_or_model_error(data: bytes):
    path = _tmp(data, ".npz")
    try:
        return archive.load(path)
    except ModelFileError as e:
        assert path in str(e) or "model file" in str(e)
        return None
    finally:
        os.unlink(path)


def test_valid_archive_loads():
    graph, arrays = load_or_model_error(VALID_ARCHIVE)
    assert graph.to_dict() == GRAPH and [a.shape for a in arrays] == [(2, 3), (2,)]


@SETTINGS
@given(st.binary(max_size=400))
@example(b"PK\x03\x04" + b"\0" * 26)  # a local header and nothing else
@example(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
@example(b"\x93NUMPY\x01\x00")
@example(b"\x80\x04K\x01.")  # a pickle
def test_random_bytes_as_archive(data):
    load_or_model_error(data)


@settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID_ARCHIVE)), st.integers(0, len(VALID_ARCHIVE) - 1), st.integers(0, 255),
       st.booleans())
@example(len(VALID_ARCHIVE) // 2, 0, 0, False)
@example(len(VALID_ARCHIVE), 28, 0, True)  # found: zipfile.BadZipFile (bad CRC-32) escaped load
@example(len(VALID_ARCHIVE), 26, 0, True)  # found: BadZipFile (file name in directory and header differ)
def test_truncated_or_flipped_archive(cut, at, byte, flip):
    data = VALID_ARCHIVE[:cut]
    if flip and at < len(data):
        data = data[:at] + bytes([byte]) + data[at + 1:]
    got = load_or_model_error(data)
    if got is not None:
        assert got[0].to_dict() == GRAPH


# graph mutations: one node, param or top-level field replaced or damaged
ir_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10)
              | st.binary(max_size=4))
ir_values = st.recursive(ir_scalars | st.builds(lambda r: {"ref": r}, st.integers(-3, 8)),
                         lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
ops = st.sampled_from(["input", "param", "linear", "relu", "conv2d", "repeat", "expand", "pow", "getattr",
                       "reshape", "pad", "nosuchop", "__import__", "eval"]) | ir_values


@st.composite
def mutated_graphs(draw) -> dict:
    g = msgpack.unpackb(msgpack.packb(GRAPH))  # a deep copy
    how = draw(st.sampled_from(["op", "arg", "node", "ref", "param", "top", "drop"]))
    i = draw(st.integers(0, len(g["nodes"]) - 1))
    if how == "op":
        g["nodes"][i]["op"] = draw(ops)
    elif how == "arg":
        g["nodes"][i]["args"][draw(st.sampled_from(["input", "index", "weight", "sizes", "exponent", "name",
                                                    "x"]))] = draw(ir_values)
    elif how == "node":
        g["nodes"][i] = draw(ir_values)
    elif how == "ref":  # forward refs, self refs (cycles), out of range
        g["nodes"][i]["args"]["input"] = {"ref": draw(st.integers(-2, 10))}
    elif how == "param":
        g["params"][draw(st.integers(0, 1))]["shape"] = draw(st.lists(st.integers(-1, 2**41), max_size=9)
                                                             | ir_values)
    elif how == "top":
        g[draw(st.sampled_from(["format", "version", "input_shape", "params", "nodes", "output", "meta",
                                "x"]))] = draw(ir_values)
    else:
        del g[draw(st.sampled_from(sorted(g)))]
    return g


def graph_ok_or_import_error(g) -> None:
    try:
        back = Graph.from_bytes(msgpack.packb(g, use_bin_type=True))
    except ModelImportError:
        return
    assert all(n["op"] in IR_OPS for n in back.nodes)
    assert Graph.from_bytes(back.to_bytes()).to_dict() == back.to_dict()


@SETTINGS
@given(mutated_graphs())
@example({**GRAPH, "nodes": [{**GRAPH["nodes"][0], "op": [1]}] + GRAPH["nodes"][1:]})  # found: TypeError
@example({**GRAPH, "nodes": [{**GRAPH["nodes"][0], "op": {"a": 1}}] + GRAPH["nodes"][1:]})
@example({**GRAPH, "nodes": GRAPH["nodes"][:4] + [{**GRAPH["nodes"][4], "args": {"input": {"ref": 4}}}]})  # cycle
@example({**GRAPH, "params": [{"name": "w", "shape": [2**39, 2**39]}]})
@example({**GRAPH, "nodes": GRAPH["nodes"] + [{"op": "repeat", "args": {"input": {"ref": 4}, "sizes": [2**30] * 2},
                                               "name": "r", "target": "r"}]})
@example({**GRAPH, "nodes": GRAPH["nodes"][:3] + [{**GRAPH["nodes"][3], "args": {"input": 1}}] + GRAPH["nodes"][4:]})
def test_mutated_graph(g):
    graph_ok_or_import_error(g)


@settings(max_examples=40, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_graphs())
def test_mutated_graph_in_an_archive(g):
    got = load_or_model_error(archive_bytes(msgpack.packb(g, use_bin_type=True)))
    if got is not None:
        assert len(got[1]) == len(got[0].params)


class Bomb:
    """Unpickling it would record that code ran."""

    ran = False

    def __reduce__(self):
        return (setattr, (Bomb, "ran", True))


def npy_bytes(header: dict, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return b"".join([buf.getvalue(), data])


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _obj_npy(obj) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([obj], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _graph_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(msgpack.packb(GRAPH), np.uint8))
    return buf.getvalue()


@pytest.mark.parametrize("where", ["p0", archive.ARCHIVE_GRAPH_KEY])
def test_pickle_bearing_npy_is_refused_unpickled(where):
    members = {f"{archive.ARCHIVE_GRAPH_KEY}.npy": _graph_npy(), "p0.npy": npy_bytes(
        {"descr": "<f8", "fortran_order": False, "shape": (2, 3)}, b"\0" * 48), "p1.npy": npy_bytes(
        {"descr": "<f8", "fortran_order": False, "shape": (2,)}, b"\0" * 16)}
    members[f"{where}.npy"] = _obj_npy(Bomb())
    Bomb.ran = False
    assert load_or_model_error(zip_of(members)) is None
    assert not Bomb.ran


@pytest.mark.parametrize("where,shape", [("p0", (2**40,)), ("p0", (2**20, 2**20)), ("p1", (2**33,)),
                                         (archive.ARCHIVE_GRAPH_KEY, (2**40,))])
def test_huge_claimed_array_allocates_nothing(where, shape):
    """An .npy header claiming a vast array (with a few bytes of data) is refused before numpy
    allocates it (found: numpy's reader allocates the claimed count first, then reads)."""
    members = {f"{archive.ARCHIVE_GRAPH_KEY}.npy": _graph_npy(), "p0.npy": npy_bytes(
        {"descr": "<f8", "fortran_order": False, "shape": (2, 3)}, b"\0" * 48), "p1.npy": npy_bytes(
        {"descr": "<f8", "fortran_order": False, "shape": (2,)}, b"\0" * 16)}
    dt = "|u1" if where == archive.ARCHIVE_GRAPH_KEY else "<f8"
    members[f"{where}.npy"] = npy_bytes({"descr": dt, "fortran_order": False, "shape": shape}, b"\0" * 64)
    data = zip_of(members)
    tracemalloc.start()
    try:
        assert load_or_model_error(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


@settings(max_examples=60, deadline=3000)
@given(st.text(max_size=30))
@example("../escape")  # found: wrote outside the directory
@example("a/b")
@example("")
@example("..")
@example("x\0y")
def test_keygen_names(name):
    from mpcrt.launch.keys import keygen

    with tempfile.TemporaryDirectory() as d:
        keys = os.path.join(d, "keys")
        try:
            pub, pub_path, sec_path = keygen(name, keys)
        except ConfigError:
            pub = None
        written = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]
        assert all(os.path.dirname(f) == keys for f in written)  # nothing outside the directory
        if pub is not None:
            assert sorted(written) == sorted([pub_path, sec_path])
            assert load_secret_key(sec_path) and len(zmq.utils.z85.decode(pub)) == 32

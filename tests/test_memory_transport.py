"""The in-memory transport (mpcrt.memory_transport): the same frame checks as the ZeroMQ
node, peer death and timeouts as PeerFailure, copies where a sender keeps its buffer,
and the same results and byte counts as ZeroMQ for the same program."""
from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

from mpcrt import ConfigError, PeerFailure, ProtocolError, framing
from mpcrt.launch.inprocess import run_parties
from mpcrt.memory_transport import MemoryNetwork
from mpcrt.transport import Transport

SID = "test-memory"


@pytest.fixture
def net():
    return MemoryNetwork(2, session=SID)


def frame(sid=SID, src=1, seq=0, tag="beaver", arr=None, dtype=None, shape=None):
    arr = np.arange(2, dtype=np.int64) if arr is None else arr
    hdr = framing.pack_header(sid, src, seq, tag, dtype or arr.dtype, arr.shape if shape is None else shape)
    return hdr, arr.tobytes()


@pytest.mark.parametrize(
    "raw,words",
    [
        (frame(sid="another-session"), "another session"),
        (frame(seq=1), "out of sequence"),
        (frame(tag="trunc"), "tag"),
        (frame(arr=np.arange(3, dtype=np.int64)), "shape"),
        (frame(arr=np.arange(2, dtype=np.float64)), "dtype"),
        (frame(src=0), "claims sender"),
        (frame(src=2), "claims sender"),
        ((frame()[0], b"\x00" * 12), "bytes"),
        ((frame()[0], b""), "bytes"),
        ((b"\xde\xad\xbe\xef" * 8, b"\x00" * 16), "undecodable"),
        ((pickle.dumps({"v": 1, "sid": SID}), b"\x00" * 16), "not an mpcrt frame"),
    ],
)
def test_bad_frames_raise_protocol_error_naming_the_peer(net, raw, words):
    node = net.node(0, timeout=2)
    net.post(1, 0, *raw)
    with pytest.raises(ProtocolError, match=words) as ei:
        node.recv(1, "beaver", dtype=np.int64, shape=(2,))
    assert ei.value.peer == "party 1"


def test_good_frames_arrive_in_order_and_are_counted_like_zmq(net):
    a, b = net.node(0), net.node(1)
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    a.send(1, "t", x)
    a.send(1, "t", x[:, 1])  # not contiguous: sent as a copy
    a.send(1, "u", np.int64(5))  # 0-d
    assert b.recv(0, "t", dtype=np.int64, shape=(2, 3)).tolist() == x.tolist()
    assert b.recv(0, "t", dtype=np.int64, shape=(2,)).tolist() == [1, 4]
    got = b.recv(0, "u")
    assert got.shape == () and int(got) == 5
    hdrs = [framing.pack_header(SID, 0, i, t, np.int64, s) for i, (t, s) in enumerate([("t", (2, 3)), ("t", (2,)),
                                                                                         ("u", ())])]
    want = sum(len(h) for h in hdrs) + 8 * (6 + 2 + 1)
    assert a.bytes_sent == a.sent_to[1] == b.bytes_received == b.received_from[0] == want
    with pytest.raises(ProtocolError, match="out of sequence"):  # a replay
        net.post(0, 1, hdrs[0], x.tobytes())
        b.recv(0, "t")


def test_a_sender_may_change_its_array_after_send_and_a_receiver_owns_its_copy(net):
    a, b = net.node(0), net.node(1)
    x = np.arange(4, dtype=np.int64)
    a.send(1, "t", x)
    x[:] = -1
    got = b.recv(0, "t")
    assert got.tolist() == [0, 1, 2, 3] and got.flags.writeable
    got += 1  # as a socket's receive buffer: the receiver's own
    assert x.tolist() == [-1] * 4
    y = np.arange(3, dtype=np.int64)
    a.send(1, "d", y, donate=True)  # donated: handed over as it is
    assert np.shares_memory(b.recv(0, "d"), y)
    ro = np.frombuffer(b"\x01" * 8, np.int64)  # read-only: copied even when donated
    a.send(1, "r", ro, donate=True)
    assert b.recv(0, "r").flags.writeable


def test_closed_peer_is_peer_failure_after_what_it_sent(net):
    a, b = net.node(0, timeout=10), net.node(1, timeout=10)
    b.send(0, "x", np.ones(2, np.int64))
    b.close(barrier=False)
    assert a.recv(1, "x").tolist() == [1, 1]  # sent before it closed
    t0 = time.monotonic()
    with pytest.raises(PeerFailure, match="party 1 disconnected"):
        a.recv(1, "y")
    assert time.monotonic() - t0 < 1
    assert a.peer_dead(1) is not None and a.disconnects == 1
    a.send(1, "z", np.ones(1, np.int64))  # to a closed node: dropped, as on a closed connection


def test_peer_thread_that_ends_without_closing_is_peer_failure(net):
    a = net.node(0, timeout=10)
    t = threading.Thread(target=lambda: net.node(1).send(0, "x", np.zeros(1, np.int64)))
    t.start()
    t.join()
    a.recv(1, "x")
    t0 = time.monotonic()
    with pytest.raises(PeerFailure, match="thread ended"):
        a.recv(1, "y")
    assert time.monotonic() - t0 < 2


def test_silent_peer_times_out(net):
    a, _ = net.node(0, timeout=0.3), net.node(1)
    t0 = time.monotonic()
    with pytest.raises(PeerFailure, match="party 1 sent nothing for 0 s"):
        a.recv(1, "y")
    assert 0.3 <= time.monotonic() - t0 < 2


def test_recv_any_wake_and_a_node_is_taken_once(net):
    a, b = net.node(0), net.node(1)
    assert isinstance(a, Transport)
    b.send(0, "hello", np.zeros(0, np.int64))
    peer, h, arr = a.recv_any(timeout=1)
    assert (peer, h["tag"], arr.size) == (1, "hello", 0)
    threading.Timer(0.05, a.wake).start()
    t0 = time.monotonic()
    assert a.recv_any(timeout=10) is None
    assert time.monotonic() - t0 < 5
    with pytest.raises(ConfigError, match="already"):
        net.node(0)
    with pytest.raises(ConfigError, match="not in"):
        net.node(7)


def test_run_parties_refuses_an_unknown_transport():
    with pytest.raises(ConfigError, match="memory, zmq"):
        run_parties(lambda rt: None, 2, transport="udp")


def _program(rt):
    """Integers at precision 0: no probabilistic truncation, so the results are exact."""
    x = rt.share(np.arange(-6, 6).reshape(3, 4) if rt.rank == 0 else None, src=0)
    w = rt.share(np.arange(8).reshape(4, 2) - 3 if rt.rank == rt.world_size - 1 else None, src=rt.world_size - 1)
    with rt.scope("body"):
        y = (x @ w).relu() + x.sum()
        z = (x * x).sum(dim=1) * (x[:, 0] > 1)
    out = y.reveal(), z.reveal()
    return out, rt.stats()


@pytest.mark.parametrize("n", [2, 3])
def test_same_program_same_results_and_stats_over_memory_and_zmq(n):
    mem = run_parties(_program, n, precision=0, timeout=20, join_timeout=60, transport="memory")
    zmq = run_parties(_program, n, precision=0, timeout=20, join_timeout=60, transport="zmq")
    x, w = np.arange(-6, 6).reshape(3, 4), np.arange(8).reshape(4, 2) - 3
    for r in range(n):
        (my, mz), ms = mem[r]
        (zy, zz), zs = zmq[r]
        assert np.array_equal(my, np.maximum(x @ w, 0) + x.sum()) and np.array_equal(my, zy)
        assert np.array_equal(mz, (x * x).sum(1) * (x[:, 0] > 1)) and np.array_equal(mz, zz)
        assert ms == zs, (r, ms, zs)
        assert ms["bytes_sent"] > 0 and ms["dealer_bytes_received"] > 0 and ms["by_op"]["body"]["rounds"] > 2


def test_abort_after_a_caught_failure_still_tells_the_others():
    """A program that catches a member's PeerFailure and exits: its Runtime.abort() sends the last word
    naming that member (the dealer then names party 2, not party 1, whose link it sees close), once."""
    from mpcrt.runtime import Runtime

    net = MemoryNetwork(3, session=SID)
    n0, n1, n2, d = (net.node(i, timeout=0.3) for i in range(4))
    rt1 = object.__new__(Runtime)  # only its abort() on this node (a real start would handshake with the dealer)
    rt1.node, rt1._closed = n1, False
    with pytest.raises(PeerFailure, match="sent nothing"):
        n1.recv(2, "beaver")  # party 2 is silent: the program catches this and exits
    assert n1.raised is not None and n1.raised.peer == "party 2"
    rt1.abort()
    with pytest.raises(PeerFailure, match="party 1 lost it") as ei:
        d.recv_any(timeout=1)
    assert ei.value.peer == "party 2"
    with pytest.raises(PeerFailure, match="party 1 lost it"):
        n0.recv(1, "beaver")
    assert len(n0._inbox[1]) == 0 and not n2._inbox[1]  # one word each, none to the culprit


def test_a_last_word_names_the_failed_member_to_the_others():
    """tell_gone: party 1 stops because party 2 failed; party 0 and the dealer learn it was
    party 2, party 2 itself is not told."""
    net = MemoryNetwork(3, session=SID)
    n0, n1, n2, d = (net.node(i, timeout=2) for i in range(4))
    n1.tell_gone(PeerFailure("party 2", "sent nothing"))
    with pytest.raises(PeerFailure) as ei:
        n0.recv(1, "beaver")
    assert ei.value.peer == "party 2" and "party 1 lost it" in str(ei.value) and n0.reported() is ei.value
    with pytest.raises(PeerFailure, match="party 1 lost it"):
        d.recv_any(timeout=1)
    assert not n2._inbox[1]
    n1.tell_gone(PeerFailure("party 1", "myself"))  # a failure naming ourselves: nothing to tell
    assert not n0._inbox[1]

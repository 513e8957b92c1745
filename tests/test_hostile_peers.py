"""Hostile peers against a Node: floods, size claims and shapes that must be refused before anything is
allocated, each ending in the project's own error, naming the sender, within the receive timeout.

From an audit that drove real nodes: a stranger flooding the sealed port kept a 5 s receive waiting
42 s (a 10 s flood) and its memory grew 0.5 GB; a member's flood on the CURVE port took 4 GB; a
26-byte header claiming a 1 TiB sealed payload crashed the dealer with MemoryError; an 8-byte share()
shape made a party allocate and fill 2 GiB.
"""
from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
import pytest
import zmq

from mpcrt import PeerFailure, ProtocolError, ShapeError, aead, framing
from mpcrt.runtime import MAX_SHARE_ELEMENTS, _announced_shape, max_share_elements
from mpcrt.zmq_transport import INBOX_MAX, Node, generate_keypair
from test_transport_faults import NAMES, SID, Rogue, _gone, endpoints, frame


@pytest.fixture
def keys():
    return {i: generate_keypair() for i in range(3)}


def _node(keys, timeout):
    ep = endpoints()
    return Node(0, NAMES, ep, {i: k[0] for i, k in keys.items()}, keys[0][1], SID, connect_to=[], timeout=timeout), ep


def test_a_stranger_flooding_the_sealed_port_cannot_hold_a_wait_past_its_timeout(keys):
    node, ep = _node(keys, timeout=2)
    rogue, stop = Rogue(), threading.Event()
    s = rogue.dealer(f"tcp://127.0.0.1:{node._sealed.port}", b"stranger")  # plaintext ZMTP: anyone may

    def flood():
        end = time.monotonic() + 12  # bounded: a regression fails the timing below instead of hanging
        while not stop.is_set() and time.monotonic() < end:
            try:
                s.send(b"x", zmq.NOBLOCK)
            except zmq.Again:
                time.sleep(0.001)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        t0 = time.monotonic()
        with pytest.raises(PeerFailure) as ei:
            node.recv(1, "beaver", dtype=np.int64, shape=(2,))
        assert time.monotonic() - t0 < 6, time.monotonic() - t0  # the 2 s timeout, not the flood's 12 s
        assert "party 1" in str(ei.value) and node._sealed.dropped > 0
    finally:
        stop.set()
        t.join(5)
        rogue.close()
        node.close(barrier=False)


def test_a_member_flooding_its_curve_link_is_a_protocol_error_naming_it(keys):
    node, ep = _node(keys, timeout=20)
    rogue = Rogue()
    try:
        s = rogue.dealer(ep[0], None, keypair=keys[1], server_key=keys[0][0])
        one = frame()
        for _ in range(INBOX_MAX + 10):
            s.send_multipart(one)
        t0 = time.monotonic()
        with pytest.raises(ProtocolError) as ei:
            node.recv(2, "beaver", dtype=np.int64, shape=(2,))  # waiting on the dealer meanwhile
        assert ei.value.peer == "party 1" and "flood" in str(ei.value)
        assert time.monotonic() - t0 < 15
    finally:
        rogue.close()
        node.close(barrier=False)


def test_a_sealed_payload_claim_past_max_bytes_is_refused_unallocated(keys):
    """[header claiming 2^37 int64, MARK] to a shape-less receive with max_bytes (the dealer's serve loop):
    a ProtocolError naming the sender, not a MemoryError for 1 TiB."""
    node, ep = _node(keys, timeout=5)
    rogue = Rogue()
    try:
        s = rogue.dealer(ep[0], None, keypair=keys[1], server_key=keys[0][0])
        hdr = framing.pack_header(SID, 1, 0, "req", np.int64, (1 << 37,))
        s.send_multipart([hdr, aead.MARK])
        with pytest.raises(ProtocolError) as ei:
            node.recv_any(timeout=5, max_bytes=64 << 20)
        assert ei.value.peer == "party 1" and "claims" in str(ei.value)
    finally:
        rogue.close()
        node.close(barrier=False)


def test_a_share_shape_is_checked_before_anything_is_allocated():
    with pytest.raises(ProtocolError, match="malformed"):
        _announced_shape(np.array([[1, 2]]), None, "party 1")
    with pytest.raises(ProtocolError, match="malformed"):
        _announced_shape(np.array([3, -1]), None, "party 1")
    with pytest.raises(ProtocolError, match="more than"):
        _announced_shape(np.array([1 << 20, 1 << 20]), None, "party 1")
    assert MAX_SHARE_ELEMENTS < (1 << 40)
    assert _announced_shape(np.array([5, 784]), (None, 784), "party 1") == (5, 784)
    with pytest.raises(ShapeError, match="expects"):
        _announced_shape(np.array([5, 783]), (None, 784), "party 1")
    with pytest.raises(ShapeError, match="expects"):
        _announced_shape(np.array([5]), (None, 784), "party 1")
    seen = []
    assert _announced_shape(np.array([2, 3]), seen.append, "party 1") == (2, 3) and seen == [(2, 3)]


def test_the_share_cap_follows_the_setting_and_this_machines_memory(monkeypatch):
    from mpcrt import config

    monkeypatch.setattr(config, "_current", config.Config().replace(max_share_mb=1))
    assert max_share_elements() == 1 << 17
    assert _announced_shape(np.array([128, 1024]), None, "party 1") == (128, 1024)  # exactly 1 MB
    with pytest.raises(ProtocolError, match="MPCRT_MAX_SHARE_MB"):
        _announced_shape(np.array([129, 1024]), None, "party 1")
    monkeypatch.setattr(config, "_current", config.Config())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert max_share_elements() == min(MAX_SHARE_ELEMENTS, (memory // 2 >> 20 << 20) // 8)


def test_a_last_word_blaming_a_member_whose_link_is_up_names_its_speaker(monkeypatch):
    """Party 1 says the dealer failed, but party 0's own link to the dealer is up and the dealer alive:
    after claim_s party 0 names party 1, not the dealer (a member's word alone never names another).
    Before, the dealer was named at once, so one empty frame from a hostile member blamed an honest one."""
    monkeypatch.setenv("MPCRT_HEARTBEAT_TIMEOUT", "2")  # claim_s = 3 s: the time a stopped member takes to be found
    ep = endpoints()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dealer = Node(2, NAMES, ep, None, None, SID, connect_to=[], timeout=10, insecure=True)
        node = Node(0, NAMES, ep, None, None, SID, connect_to=[2], timeout=10, insecure=True)
    rogue = Rogue()
    try:
        deadline = time.monotonic() + 5
        while not node._up[2] and time.monotonic() < deadline:  # our link to the dealer is up
            node._pump(50)
            dealer._pump(0)
        assert node._up[2]
        rogue.dealer(ep[0]).send_multipart(_gone(2))
        t0 = time.monotonic()
        with pytest.raises(PeerFailure) as ei:
            node.recv(2, "beaver")  # a wait on the dealer, whose link stays up (libzmq's threads keep it)
        waited = time.monotonic() - t0
        assert ei.value.peer == "party 1" and "not taken" in str(ei.value), ei.value
        assert node.claim_s - 0.5 <= waited < node.claim_s + 3, waited
    finally:
        rogue.close()
        node.close(barrier=False)
        dealer.close(barrier=False)

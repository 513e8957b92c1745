"""Sealed payloads (mpcrt.aead, mpcrt.sealed_links): AES-256-GCM under keys handed over CURVE.

A flipped bit anywhere in a sealed piece (ciphertext or tag), a frame header that differs
from the one the payload was sealed with, a replayed, reordered, dropped or cut piece, and a
piece sealed under another key are each a ProtocolError naming the peer. Strangers on the
sealed port are dropped and counted, never an error and never a liveness signal.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time

import numpy as np
import pytest
import zmq

from mpcrt import aead, framing
from mpcrt.errors import ProtocolError
from mpcrt.launch.inprocess import run_parties
from mpcrt.launch.local import free_ports
from mpcrt.sealed_links import SealedLinks
from mpcrt.zmq_transport import Node, generate_keypair

NAMES = {0: "party 0", 1: "party 1"}
SID = "aead-test"
BIG = np.arange(3 * aead.PIECE_BYTES // 8 - 5, dtype=np.int64)  # three pieces, the last one short


# ---------------------------------------------------------------- the AEAD alone
def _sealed(seq=3, hdr=b"header", payload=None, key=None):
    key = key or os.urandom(aead.KEY_BYTES)
    payload = BIG.view(np.uint8) if payload is None else payload
    return key, [p.copy() for p in aead.Sealer(key).seal(seq, hdr, memoryview(payload))]


def _open_all(key, pieces, seq=3, hdr=b"header", nbytes=BIG.nbytes):
    out = np.empty(nbytes, np.uint8)
    opener = aead.Opener(key)
    for (i, lo, hi), p in zip(aead.piece_bounds(nbytes), pieces):
        opener.open_into(seq, i, hdr, p, out[lo:hi], "party 7")
    return out


def test_seal_then_open_gives_the_payload_back():
    key, pieces = _sealed()
    assert len(pieces) == 3 == aead.n_pieces(BIG.nbytes)
    assert [p.nbytes for p in pieces] == [aead.PIECE_BYTES + 16] * 2 + [BIG.nbytes - 2 * aead.PIECE_BYTES + 16]
    assert np.array_equal(_open_all(key, pieces).view(np.int64), BIG)
    assert not np.array_equal(pieces[0][:64], BIG.view(np.uint8)[:64])  # encrypted


@pytest.mark.parametrize("piece", [0, 1, 2])
@pytest.mark.parametrize("where", ["first byte", "middle", "last ciphertext byte", "tag"])
def test_a_flipped_bit_anywhere_in_a_piece_is_a_protocol_error_naming_the_peer(piece, where):
    key, pieces = _sealed()
    n = pieces[piece].nbytes
    at = {"first byte": 0, "middle": n // 2, "last ciphertext byte": n - 17, "tag": n - 3}[where]
    pieces[piece][at] ^= 0x10
    with pytest.raises(ProtocolError, match="party 7.*failed authentication"):
        _open_all(key, pieces)


def test_header_is_associated_data():
    key, pieces = _sealed(hdr=b"header")
    with pytest.raises(ProtocolError, match="failed authentication"):
        _open_all(key, pieces, hdr=b"headex")


def test_replayed_reordered_cut_and_foreign_pieces_fail():
    key, pieces = _sealed(seq=3)
    with pytest.raises(ProtocolError, match="failed authentication"):  # frame 3's pieces replayed as frame 4
        _open_all(key, pieces, seq=4)
    two = [pieces[1], pieces[0], pieces[2]]
    with pytest.raises(ProtocolError, match="piece 0 of frame #3 failed"):
        _open_all(key, two)
    with pytest.raises(ProtocolError, match="is .* bytes, expected"):
        _open_all(key, [pieces[0], pieces[1], pieces[2][:-1]])
    with pytest.raises(ProtocolError, match="failed authentication"):  # under another key
        _open_all(os.urandom(aead.KEY_BYTES), pieces)


def test_nonces_are_distinct_for_every_frame_and_piece():
    seen = {aead.nonce(s, i) for s in range(50) for i in range(50)}
    assert len(seen) == 2500 and all(len(x) == 12 for x in seen)
    with pytest.raises(ValueError):
        aead.nonce(2**64, 0)


def test_offers_round_trip_and_malformed_ones_name_the_peer():
    o = aead.Offer(SID, 5)
    parts = o.pack()
    assert parts[0] == aead.OFFER
    back = aead.Offer.unpack(parts[1], "party 1", SID)
    assert (back.port_offset, back.rid, back.key) == (5, o.rid, o.key)
    assert len(o.key) == 32 and o.rid[:1] != b"\x00" and aead.Offer(SID, 5).key != o.key
    with pytest.raises(ProtocolError, match="party 1.*another session"):
        aead.Offer.unpack(parts[1], "party 1", "other")
    for junk in (b"", b"\x93\x01\x02\x03", parts[1][:-3], b"\xc1" * 40):
        with pytest.raises(ProtocolError, match="party 1"):
            aead.Offer.unpack(junk, "party 1", SID)


# ---------------------------------------------------------------- two nodes over ZeroMQ
@contextlib.contextmanager
def two_nodes(ports=None, **kw):
    """Party 0 and party 1, secure, each dialling the other."""
    keys = {i: generate_keypair() for i in range(2)}
    ep = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports or free_ports(2))}
    pub = {i: k[0] for i, k in keys.items()}
    a = Node(0, NAMES, ep, pub, keys[0][1], SID, connect_to=[1], timeout=4, **kw)
    b = Node(1, NAMES, ep, pub, keys[1][1], SID, connect_to=[0], timeout=4, **kw)
    try:
        yield a, b
    finally:
        a.close(barrier=False)
        b.close(barrier=False)


@pytest.fixture
def pair():
    with two_nodes() as (a, b):
        _warm(a, b)
        yield a, b


def _warm(a, b):
    """Exchange one large frame each way until both sealed links are up."""
    for _ in range(50):
        a.send(1, "warm", BIG)
        b.send(0, "warm", BIG)
        assert np.array_equal(b.recv(0, "warm"), BIG) and np.array_equal(a.recv(1, "warm"), BIG)
        if a._sealed.ready(1) and b._sealed.ready(0):
            return
    raise AssertionError("the sealed links never came up")


class Tap:
    """Stands in for a sealed link's (or a CURVE link's) socket and rewrites what is sent."""

    def __init__(self, sock, rewrite):
        self.sock, self.rewrite, self.sent = sock, rewrite, []

    def __getattr__(self, name):  # close, disable_monitor, ...
        return getattr(self.sock, name)

    def send(self, data, copy=True):
        self.sent.append(bytes(memoryview(data)))
        for out in self.rewrite(len(self.sent) - 1, bytes(memoryview(data))):
            self.sock.send(out)

    def send_multipart(self, parts, copy=True):
        parts = [bytes(memoryview(p)) for p in parts]
        self.sock.send_multipart(self.rewrite(parts))


def _flip(at):
    def rewrite(i, data):
        b = bytearray(data)
        if i == at[0]:
            b[at[1] % len(b)] ^= 1
        return [bytes(b)]
    return rewrite


def _expect_error(b, match="failed authentication"):
    t0 = time.monotonic()
    with pytest.raises(ProtocolError, match="party 0") as ei:
        b.recv(0, "x")
    assert time.monotonic() - t0 < 3
    assert ei.match(match)


def test_large_payloads_go_sealed_and_small_ones_inside_curve(pair):
    a, b = pair
    tap = a._sealed.out[1] = Tap(a._sealed.out[1], lambda i, d: [d])
    small = np.arange(100, dtype=np.int64)
    a.send(1, "x", small)
    a.send(1, "x", BIG)
    assert np.array_equal(b.recv(0, "x"), small) and np.array_equal(b.recv(0, "x"), BIG)
    assert len(tap.sent) == 3 and BIG.view(np.uint8)[:4096].tobytes() not in tap.sent[0]
    hdr = framing.pack_header(SID, 0, 0, "x", BIG.dtype, BIG.shape)
    assert a.bytes_sent == b.bytes_received > len(hdr) + BIG.nbytes + small.nbytes  # counted as before
    assert a.peer_dead(1) is None and b.peer_dead(0) is None


@pytest.mark.parametrize("piece,byte", [(0, 0), (1, 12345), (2, -1), (2, -20)])
def test_a_flipped_bit_on_the_sealed_link_is_a_protocol_error_naming_the_peer(pair, piece, byte):
    a, b = pair
    a._sealed.out[1] = Tap(a._sealed.out[1], _flip((piece, byte)))
    a.send(1, "x", BIG)
    _expect_error(b)


def test_a_changed_header_fails_the_payloads_tag(pair):
    """The header (AAD) is rewritten on its way so that it still passes every frame check."""
    a, b = pair

    def retag(parts):
        h = framing.unpack_header(parts[0], "test")
        return [framing.pack_header(h["sid"], h["src"], h["seq"], "x", np.dtype(h["dt"]), h["sh"]), parts[1]]

    a.out[1] = Tap(a.out[1], retag)
    a.send(1, "y", BIG)
    _expect_error(b)


def test_replayed_pieces_are_a_protocol_error(pair):
    a, b = pair
    log = []

    def replay(i, data):  # frame 1's three pieces are replaced by frame 0's
        log.append(data)
        return [log[i - 3]] if i >= 3 else [data]

    a._sealed.out[1] = Tap(a._sealed.out[1], replay)
    a.send(1, "x", BIG)
    a.send(1, "x", BIG)
    assert np.array_equal(b.recv(0, "x"), BIG)
    _expect_error(b)


def test_reordered_pieces_are_a_protocol_error(pair):
    a, b = pair
    held = []

    def swap(i, data):  # pieces 0 and 1 swapped
        if i == 0:
            held.append(data)
            return []
        return [data, held.pop()] if i == 1 else [data]

    a._sealed.out[1] = Tap(a._sealed.out[1], swap)
    a.send(1, "x", BIG)
    _expect_error(b, "piece 0 of frame")


def test_a_dropped_piece_is_a_protocol_error(pair):
    a, b = pair
    a._sealed.out[1] = Tap(a._sealed.out[1], lambda i, d: [] if i == 1 else [d])  # piece 1 lost
    a.send(1, "x", BIG)
    _expect_error(b, "piece 1 of frame .* is .* bytes")


def test_a_piece_sealed_under_another_key_is_a_protocol_error(pair):
    a, b = pair
    a._sealed._sealers[1] = aead.Sealer(os.urandom(aead.KEY_BYTES))
    a.send(1, "x", BIG)
    _expect_error(b)


def test_strangers_on_the_sealed_port_are_dropped_not_fatal(pair):
    a, b = pair
    ctx = zmq.Context()
    where = f"tcp://127.0.0.1:{b._sealed.port}"
    socks = []
    try:
        for rid in (None, b"n0", b"s" + os.urandom(15)):  # none, the CURVE name, a guessed routing id
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            if rid is not None:
                s.setsockopt(zmq.ROUTING_ID, rid)
            s.connect(where)
            s.send(os.urandom(aead.PIECE_BYTES + 16))
            s.send_multipart([b"\x00", b"junk"])
            socks.append(s)
        deadline = time.monotonic() + 5
        while b._sealed.dropped < 6 and time.monotonic() < deadline:
            b._pump(100)
        assert b._sealed.dropped == 6
        for s in socks:  # strangers leaving is no liveness signal either
            s.close(0)
        socks.clear()
        time.sleep(0.3)
        b._pump(100)
        a.send(1, "x", BIG)
        assert np.array_equal(b.recv(0, "x"), BIG)
        assert b.peer_dead(0) is None and b.disconnects == 0
    finally:
        for s in socks:
            s.close(0)
        ctx.term()


def test_a_message_of_several_parts_under_the_members_id_is_a_protocol_error(pair):
    a, b = pair
    sock = a._sealed.out[1]
    a._sealed.out[1] = Tap(sock, lambda i, d: [d])
    a._sealed.out[1].send = lambda data, copy=True: sock.send_multipart([data, b"extra"])
    a.send(1, "x", BIG)
    _expect_error(b, "came in 2 parts")


def test_payloads_stay_inside_curve_when_the_sealed_port_cannot_be_reached(monkeypatch):
    nowhere = free_ports(1)[0]
    real = SealedLinks.offer

    def offer_nowhere(self, peer):
        self._offset = nowhere - int(self.endpoints[1].rpartition(":")[2])
        return real(self, peer)

    monkeypatch.setattr(SealedLinks, "offer", offer_nowhere)
    with two_nodes() as (a, b):
        for _ in range(3):
            a.send(1, "x", BIG)
            assert np.array_equal(b.recv(0, "x"), BIG)
            time.sleep(0.1)
        assert 1 in a._sealed._sealers and not a._sealed.ready(1)  # offered, never reached


def test_a_secure_session_multiplies_large_tensors_correctly():
    x = np.linspace(-3, 3, 200_000)

    def fn(rt):
        a = rt.share(x if rt.rank == 0 else None, src=0)
        return (a * a).reveal()

    res = run_parties(fn, 2, timeout=20, join_timeout=120, transport="zmq")
    for r in res:
        assert np.max(np.abs(r - x * x)) < 1e-3


def _four_free_ports():
    for _ in range(50):
        base = free_ports(1)[0]
        socks = []
        try:
            for p in range(base, base + 4):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no four consecutive free ports")


def test_a_fixed_sealed_port_offset_binds_there_and_is_used():
    base = _four_free_ports()
    with two_nodes([base, base + 1], sealed_port_offset=2) as (a, b):
        assert (a._sealed.port, b._sealed.port) == (base + 2, base + 3)
        _warm(a, b)

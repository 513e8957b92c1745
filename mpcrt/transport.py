"""The transport seam: what the runtime, the dealer client, the split openings and the
dealer use to move frames between the nodes of one session.

Node ids: 0..N-1 are the parties, N is the dealer (`names` maps every id to its name).
Two implementations:

* `mpcrt.zmq_transport.Node`: ZeroMQ sockets with CurveZMQ, one process per node
  (`mpcrt launch`, `mpcrt party`, `mpcrt dealer`);
* `mpcrt.memory_transport.MemoryTransport`: threads and queues inside one process,
  for fast protocol tests (`mpcrt.launch.inprocess.run_parties`).

Both run every frame through `mpcrt.framing` (msgpack header: session, sender, per-channel
sequence number, tag, dtype, shape; payload length checked against them), so a mismatch
is the same ProtocolError naming the peer, and both count bytes alike (header plus
payload, per peer), so `Runtime.stats()` reports the same figures over either.
`FrameBook` holds that shared bookkeeping.
"""
from __future__ import annotations

import collections
import time
from typing import Protocol, runtime_checkable

import numpy as np

from mpcrt import framing
from mpcrt.errors import PeerFailure, ProtocolError

DEFAULT_TIMEOUT = 60.0  # seconds a receive waits (MPCRT_TIMEOUT, --timeout)
# A member's last word before it stops on a PeerFailure: an empty frame tagged "gone:<id>", naming
# the member whose loss stopped it, so that the others name that one rather than the messenger
# (best effort: a cut link drops it, and then the members find the loss themselves).
GONE_TAG = "gone:"


@runtime_checkable
class Transport(Protocol):
    """Ordered, authenticated channels from this node to every other node of the session."""

    id: int  # this node's id (0..N-1 a party, N the dealer)
    names: dict[int, str]  # every node's name, for messages ("party 1", "dealer")
    session: str
    timeout: float  # seconds a receive waits before PeerFailure
    bytes_sent: int  # header + payload bytes, all peers
    bytes_received: int
    sent_to: collections.Counter  # bytes per peer
    received_from: collections.Counter
    disconnects: int  # peers found gone through their own (authenticated) links

    def send(self, peer: int, tag: str, array: np.ndarray, donate: bool = False) -> None:
        """Queue one array for `peer`; never blocks on the peer. The array must not be
        changed until it is gone (the ZeroMQ node sends large buffers without a copy);
        donate=True: the caller never reads or writes it again and sends it to this one
        peer only, so it may be handed over as it is."""

    def recv(self, peer: int, tag: str, dtype=None, shape=None) -> np.ndarray:
        """The next frame from `peer`, checked against (tag, dtype, shape); ProtocolError
        on a mismatch, PeerFailure if the peer is gone or silent past `timeout`."""

    def recv_any(self, timeout: float | None = None,
                 max_bytes: int | None = None) -> tuple[int, dict, np.ndarray] | None:
        """(peer, header, array) of the next frame from any peer; None after `timeout`
        seconds, once another thread called wake(), or (an implementation may) as soon as a
        peer disconnected: a caller checks its conditions on None and waits again. A frame
        claiming more than `max_bytes` of payload is a ProtocolError naming its sender."""

    def wake(self) -> None:
        """Thread-safe: make a waiting (or the next) recv_any return None at once."""

    def peer_dead(self, peer: int) -> str | None:
        """Why `peer` is known to be gone, or None."""

    def tell_gone(self, failure: PeerFailure) -> None:
        """Our last word before we stop on `failure` (GONE_TAG, naming its member), to every other member."""

    def reported(self) -> PeerFailure | None:
        """The PeerFailure a member's last word (GONE_TAG) leads to, once settled (FrameBook.reported), or None."""

    def close(self, barrier: bool = True, barrier_peers: list[int] | None = None) -> None:
        """Optionally exchange goodbyes with barrier_peers (so nobody sees our exit as a
        failure), then release the channels. Idempotent."""


class FrameBook:
    """Sequence numbers and byte counters of one node's channels, the frame checks and the
    closing barrier: the part both transports share, so that they check and count alike.
    An implementation adds send, recv, recv_any, wake, peer_dead and _release."""

    def __init__(self, my_id: int, names: dict[int, str], session: str, timeout: float):
        self.id = my_id
        self.names = names
        self.session = session
        self.timeout = float(timeout)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sent_to: collections.Counter = collections.Counter()
        self.received_from: collections.Counter = collections.Counter()
        self._send_seq: collections.Counter = collections.Counter()
        self._recv_seq: collections.Counter = collections.Counter()
        self._closed = False
        self._claim: tuple[int, int, float] | None = None  # 1st last word naming a third member: from, named, when
        self._reported: PeerFailure | None = None  # what reported() settled on for it
        # a third member named in a last word is taken as failed once this node's own link to it shows it gone
        # (claim_confirmed), or without that after CLAIM_S; past CLAIM_S with the named member's link still
        # up, the failure named is the speaker's own. In one process (MemoryNetwork) no member lies: 0 s
        self.claim_s = 0.0
        self.raised: PeerFailure | None = None  # the last failure of a member this node raised (abort's last word)
        self._told = False

    def failed(self, failure: PeerFailure) -> PeerFailure:
        """`failure` (about a member found gone or silent), remembered for the last word; raise what it returns."""
        self.raised = failure
        return failure

    def name(self, peer: int) -> str:
        return self.names.get(peer, f"node {peer}")

    def outgoing(self, peer: int, tag: str, array) -> tuple[bytes, np.ndarray]:
        """(header, C-contiguous array) of the next frame to `peer` (takes its sequence number)."""
        arr = np.asarray(array)
        if not arr.flags.c_contiguous:
            arr = arr.copy()  # (np.ascontiguousarray would turn 0-d into 1-d)
        seq = self._send_seq[peer]
        self._send_seq[peer] += 1
        return framing.pack_header(self.session, self.id, seq, tag, arr.dtype, arr.shape), arr

    def count_sent(self, peer: int, header: bytes, arr: np.ndarray) -> None:
        self.bytes_sent += len(header) + arr.nbytes
        self.sent_to[peer] += len(header) + arr.nbytes

    def incoming(self, peer: int, header: bytes, tag: str | None, dtype, shape, max_bytes: int | None = None) -> dict:
        """The checked header of the next frame from `peer` (tag None: any tag, as recv_any); a payload
        claimed past `max_bytes` is a ProtocolError, before anything is allocated for it."""
        name = self.name(peer)
        h = framing.unpack_header(header, name)
        notice = self.note_gone(peer, h) if h["tag"] != tag else None
        if notice is True:  # it names a third member: that one once settled (reported), else the speaker stops
            notice = self.reported() or PeerFailure(name, "stopped, saying that another member failed")
        if notice is not None:  # a member's last word, where the caller expected a frame
            raise notice
        framing.check(h, name, sid=self.session, src=peer, seq=self._recv_seq[peer],
                      tag=h["tag"] if tag is None else tag, dtype=dtype, shape=shape)
        if max_bytes is not None and framing.payload_bytes(h) > max_bytes:
            raise ProtocolError(name, f"frame {h['tag']!r} claims {framing.payload_bytes(h)} bytes of payload, at "
                                      f"most {max_bytes} are taken here")
        return h

    def tell_gone(self, failure: PeerFailure) -> None:
        """Our last word before we stop on `failure`, naming its member to every other member (best
        effort), so that they name it too rather than us, who leave because of it."""
        culprit = next((i for i, name in self.names.items() if name == failure.peer), None)
        if culprit is None or culprit == self.id or self._told:
            return
        self._told = True
        for j in self.names:
            if j not in (self.id, culprit):
                try:
                    self.send(j, f"{GONE_TAG}{culprit}", np.zeros(0, np.int64))
                except Exception:  # noqa: BLE001 (a closed or failed channel: the last word is optional)
                    pass

    def note_gone(self, peer: int, h: dict) -> PeerFailure | bool | None:
        """If header `h` from `peer` is a member's last word (GONE_TAG) of this session: a PeerFailure
        naming `peer` if it says it lost us or itself; True if it names a third member (the first such
        word is kept for reported(), which weighs it); None if it is no last word."""
        tag, culprit = h["tag"], h["tag"][len(GONE_TAG):]
        if (not tag.startswith(GONE_TAG) or not (culprit.isascii() and culprit.isdigit() and len(culprit) < 9)
                or int(culprit) not in self.names
                or h["sid"] != self.session or h["src"] != peer or h["sh"] != [0]):
            return None
        culprit = int(culprit)
        if culprit in (peer, self.id):
            return PeerFailure(self.name(peer), "stopped: it lost its link to us (process stopped or network lost)")
        if self._claim is None:
            self._claim = (peer, culprit, time.monotonic())
        return True

    def claim_confirmed(self, member: int) -> bool:
        """Whether this node's own link shows `member` gone (an implementation with links says)."""
        return True

    def reported(self) -> PeerFailure | None:
        """The PeerFailure a member's last word leads to, once settled: the member it named, when this
        node's own link to that member shows it gone too (or at once where claim_s is 0); the speaker,
        when claim_s passed with the named member's link up (a member's word alone never names
        another: a hostile one could make the others blame an honest member). None: no such word, or
        not settled yet."""
        if self._reported is not None or self._claim is None:
            return self._reported
        speaker, named, at = self._claim
        if self.claim_s <= 0 or self.claim_confirmed(named):
            self._reported = PeerFailure(self.name(named), f"failed: {self.name(speaker)} lost it and stopped")
        elif time.monotonic() - at >= self.claim_s:
            self._reported = PeerFailure(self.name(speaker), f"stopped, saying that {self.name(named)} failed, "
                                         f"while {self.name(named)}'s own link to us stayed up: not taken")
        return self._reported

    def accepted(self, peer: int, header: bytes, arr: np.ndarray) -> np.ndarray:
        """Count a frame whose header and payload passed the checks; returns arr."""
        self._recv_seq[peer] += 1
        self.bytes_received += len(header) + arr.nbytes
        self.received_from[peer] += len(header) + arr.nbytes
        return arr

    def close(self, barrier: bool = True, barrier_peers: list[int] | None = None) -> None:
        """Optionally say goodbye to peers (so nobody sees our exit as a failure), then
        release the channels (the implementation's _release). Idempotent."""
        if self._closed:
            return
        if barrier and barrier_peers:  # the closing barrier: a peer that is gone, or says something else, is let go
            for j in barrier_peers:
                self.send(j, "bye", np.zeros(0, np.int64))
            for j in barrier_peers:
                try:
                    self.recv(j, "bye")
                except (PeerFailure, ProtocolError):
                    pass
        self._closed = True
        self._release()

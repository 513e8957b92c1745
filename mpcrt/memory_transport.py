"""The in-memory transport (mpcrt.transport.Transport): the nodes of one session as threads
of one process, their channels queues.

For fast protocol tests (`mpcrt.launch.inprocess.run_parties`): no sockets, keys or
handshakes, yet the same frames as the ZeroMQ node: every frame carries the msgpack
header of `mpcrt.framing` and is checked on arrival by the same code (session, sender,
sequence, tag, dtype, shape, payload length: a mismatch is a ProtocolError naming the
peer), and bytes are counted alike (header plus payload), so `Runtime.stats()` reports
the same figures as over ZeroMQ.

A sent array is copied (the sender may change it afterwards, and each receiver gets its
own writable array, as from a socket) unless the sender donates it (send(donate=True):
it never touches it again and sends it to one peer). A node that closed, or whose
thread ended, is gone: its peers get PeerFailure once they have read what it sent.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np

from mpcrt import framing
from mpcrt.errors import ConfigError, PeerFailure
from mpcrt.transport import DEFAULT_TIMEOUT, FrameBook


class _Mailbox:
    """One node's queues, one per sender; they exist before the node's thread takes them
    (a frame to a node that is still starting waits, as ZeroMQ queues it)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.inbox: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self.owner: threading.Thread | None = None  # the thread that took the node
        self.closed = False
        self.woken = False
        self.disconnects = 0  # other nodes that closed


class MemoryNetwork:
    """The wires of one in-process session: node ids 0..N (N the dealer) and their queues."""

    def __init__(self, world_size: int, session: str = "memory"):
        self.world_size = world_size
        self.session = session
        self.names = {**{i: f"party {i}" for i in range(world_size)}, world_size: "dealer"}
        self._boxes = {i: _Mailbox() for i in self.names}
        self._lock = threading.Lock()

    def node(self, my_id: int, timeout: float = DEFAULT_TIMEOUT) -> "MemoryTransport":
        """The transport of node `my_id`, owned by the calling thread (its end ends the node)."""
        with self._lock:
            if my_id not in self.names:
                raise ConfigError(f"node {my_id} is not in 0..{self.world_size} of this session")
            if self._boxes[my_id].owner is not None:
                raise ConfigError(f"{self.names[my_id]} already has a transport in this session")
            self._boxes[my_id].owner = threading.current_thread()
        return MemoryTransport(self, my_id, timeout)

    def post(self, src: int, dst: int, header: bytes, payload) -> None:
        """Put one frame (header bytes, payload buffer) in dst's queue from src; dropped
        when dst is gone (as bytes written to a closed connection)."""
        box = self._boxes[dst]
        with box.cond:
            if not box.closed:
                box.inbox[src].append((header, payload))
                box.cond.notify_all()

    def gone(self, peer: int) -> str | None:
        """Why node `peer` is gone (closed, or its thread ended), or None."""
        box = self._boxes.get(peer)
        if box is None or box.owner is None:
            return None
        if box.closed:
            return "disconnected (it closed its channels: its thread ended or failed)"
        if not box.owner.is_alive():
            return "disconnected (its thread ended without closing its channels)"
        return None

    def _closing(self, src: int) -> None:
        box = self._boxes[src]
        with box.cond:
            box.closed = True
            box.inbox.clear()
        for j, other in self._boxes.items():
            if j != src:
                with other.cond:
                    other.disconnects += 1
                    other.cond.notify_all()


class MemoryTransport(FrameBook):
    """One node's channels in a MemoryNetwork (made by MemoryNetwork.node)."""

    def __init__(self, net: MemoryNetwork, my_id: int, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(my_id, net.names, net.session, timeout)
        self._net = net
        self._box = net._boxes[my_id]
        self._cond = self._box.cond
        self._inbox = self._box.inbox

    @property
    def disconnects(self) -> int:
        """Other nodes that closed (for the dealer: parties that left)."""
        return self._box.disconnects

    # ------------------------------------------------------------------ send
    def send(self, peer: int, tag: str, array: np.ndarray, donate: bool = False) -> None:
        """Queue one array for `peer` (a copy unless donated). Never blocks."""
        if peer not in self.names or peer == self.id:
            raise PeerFailure(self.name(peer), "is not a peer of this session")
        hdr, arr = self.outgoing(peer, tag, array)
        flat = arr.reshape(-1)
        if not donate or not flat.flags.writeable:  # (a receiver's array is its own and writable)
            flat = flat.copy()
        self._net.post(self.id, peer, hdr, flat.view(np.uint8) if flat.size else b"")
        self.count_sent(peer, hdr, arr)

    # --------------------------------------------------------------- receive
    def recv(self, peer: int, tag: str, dtype=None, shape=None) -> np.ndarray:
        """The next frame from `peer`, checked against (tag, dtype, shape)."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not self._inbox[peer]:
                why = self._net.gone(peer)
                if why is not None:
                    raise self.failed(PeerFailure(self.name(peer), why))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.failed(PeerFailure(self.name(peer), f"sent nothing for {self.timeout:.0f} s "
                                                                   "(receive timeout; raise it with MPCRT_TIMEOUT)"))
                self._cond.wait(min(left, 0.5))  # (a peer's thread may end without notifying)
            header, payload = self._inbox[peer].popleft()
        return self._decode(peer, header, payload, tag, dtype, shape)[1]

    def recv_any(self, timeout: float | None = None,
                 max_bytes: int | None = None) -> tuple[int, dict, np.ndarray] | None:
        """(peer, header, array) of the next frame from any peer; None after `timeout`
        seconds, at once after wake(), or when another node closes (so that the caller
        looks at `disconnects` now rather than after the timeout). A frame claiming more
        than `max_bytes` of payload is a ProtocolError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            seen = self._box.disconnects
            while True:
                if self._box.woken:
                    self._box.woken = False
                    return None
                peer = next((p for p, q in self._inbox.items() if q), None)
                if peer is not None:
                    header, payload = self._inbox[peer].popleft()
                    break
                if self._box.disconnects != seen:  # (after what the node sent before it left)
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
        return (peer, *self._decode(peer, header, payload, None, None, None, max_bytes))

    def _decode(self, peer: int, header: bytes, payload, tag, dtype, shape,
                max_bytes: int | None = None) -> tuple[dict, np.ndarray]:
        """The checked header and the array of one frame (counted as received)."""
        h = self.incoming(peer, header, tag, dtype, shape, max_bytes)
        return h, self.accepted(peer, header, framing.to_array(h, payload, self.name(peer)))

    def wake(self) -> None:
        with self._cond:
            self._box.woken = True
            self._cond.notify_all()

    def peer_dead(self, peer: int) -> str | None:
        return self._net.gone(peer)

    def _release(self) -> None:
        """Leave the network: peers waiting on this node fail at once."""
        self._net._closing(self.id)

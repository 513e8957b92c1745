"""The sealed links of one ZeroMQ node (mpcrt.zmq_transport.Node in secure mode): a second,
NULL-mechanism ZeroMQ link per direction that carries large payloads sealed with
AES-256-GCM (mpcrt.aead), beside the CurveZMQ link that carries every frame header,
every small frame and the keys.

Layout. Each node binds one more ROUTER (its sealed port: NULL mechanism, it only
receives) on the interface of its CURVE port, at a port the system picks, and tells each
peer it dials, in an offer over CURVE, that port (as an offset from its CURVE port), a
routing id and the key for that peer's payloads to it. The peer, on the offer, dials the
sealed port with a DEALER that carries the routing id. Once that DEALER's handshake is
done, a payload of at least aead.SEAL_MIN bytes goes as [header, MARK] over CURVE and as
sealed pieces over the sealed link; before that (and for good where the sealed port
cannot be reached, e.g. behind a relay that forwards only the CURVE port) it goes inside
CURVE as before. The receiver reads a frame's payload where its header message says.
A sealing thread of the node seals and sends the queued payloads, in order (AESGCM
releases the GIL, so it overlaps the caller's work); the receiver opens each piece as it
arrives, in its own thread.

Who can reach the sealed port, and what counts. The port speaks plaintext ZMTP, so
anyone who reaches it can connect and send. The rule:
* a message is read only if it arrived on a connection whose routing id this node
  offered (to exactly one member, confidentially over CURVE); any other is dropped and
  counted (`dropped`), with a warning at most once per DROP_LOG_S: never an error,
  never a liveness signal;
* a message under an offered routing id that does not open (AEAD tag, size, parts) is a
  ProtocolError naming that member, raised when its frame is received: only that member
  holds the routing id and the key, so it is an attack on that member's link (as a forged
  CURVE message would be, which libzmq answers by closing the link);
* the sealed links give no liveness signal at all: liveness stays with the CURVE links
  (mpcrt.zmq_transport). ZeroMQ redials a sealed connection that dropped.
Limit: the routing id crosses the wire in clear (ZMTP's READY command). Someone who reads
the traffic and can reach the port may, while the member's own connection is down,
connect under it and send junk, which ends the session with a ProtocolError naming the
member (such an observer can reset TCP connections anyway). It can neither read nor
forge a payload: the key never leaves CURVE.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import Callable

import numpy as np
import zmq
from zmq.utils.monitor import parse_monitor_message

from mpcrt import aead
from mpcrt.errors import ProtocolError

log = logging.getLogger("mpcrt.transport")

DROP_LOG_S = 10.0  # at most one warning per this many seconds about dropped messages
DRAIN_MAX = 1024  # messages one drain() takes, and the sealed port's queue per connection


def _host_port(endpoint: str | None) -> tuple[str, int] | None:
    """("tcp://host", port) of a TCP endpoint; None for any other (ipc, inproc, a name without port)."""
    if not endpoint or not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint.rpartition(":")
    return (host, int(port)) if port.isdigit() and host != "tcp:/" else None


class SealedLinks:
    """This node's sealed port, its offers to peers and its sealed links to peers.

    bind: this node's CURVE bind endpoint (TCP); port_offset: bind the sealed port that many
    ports above it (for relays and firewalls set up in advance; every node of the cluster
    must use the same), None: at a port the system picks. tune: the Node's socket settings.
    Owned by the thread that owns the Node, like its other sockets, except the sealed
    DEALERs: once made (take_offer) only the sealing thread uses them, until close."""

    def __init__(self, ctx: zmq.Context, names: dict[int, str], endpoints: dict[int, str], bind: str,
                 session: str, tune: Callable[[zmq.Socket], None], port_offset: int | None = None):
        hp = _host_port(bind)
        if hp is None:
            raise ValueError(f"no sealed port beside a non-TCP endpoint {bind!r}")
        self._ctx, self._tune = ctx, tune
        self.names, self.endpoints, self.session = names, endpoints, session
        self.router = ctx.socket(zmq.ROUTER)
        self._tune_sealed(self.router)
        # a bounded queue per connection: past it libzmq stops reading that connection (TCP pushes back on
        # the sender) instead of buffering whatever a stranger sends; 1024 pieces of 1 MiB per member link
        self.router.setsockopt(zmq.RCVHWM, DRAIN_MAX)
        try:
            self.router.bind(f"{hp[0]}:{'*' if port_offset is None else hp[1] + port_offset}")
        except zmq.ZMQError:
            self.router.close(0)
            raise
        self.port = int(self.router.getsockopt(zmq.LAST_ENDPOINT).decode().rpartition(":")[2])
        self._offset = self.port - hp[1]
        self._openers: dict[int, aead.Opener] = {}
        self._peer_of_rid: dict[bytes, int] = {}
        self._sealers: dict[int, aead.Sealer] = {}
        self.out: dict[int, zmq.Socket] = {}
        self.monitors: dict[zmq.Socket, int] = {}
        self._up: set[int] = set()
        self.inbox: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self.dropped = 0  # messages on the sealed port under no offered routing id
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._failed: BaseException | None = None
        self._warned = -DROP_LOG_S

    def _tune_sealed(self, s: zmq.Socket) -> None:
        """The Node's settings without ZMTP heartbeats: a sealed link says nothing about
        liveness (the CURVE links do), and one closed by a late heartbeat on a loaded host
        would lose the pieces in flight (ZeroMQ redials, but does not resend them)."""
        self._tune(s)
        s.setsockopt(zmq.HEARTBEAT_IVL, 0)

    # ------------------------------------------------------------ keys
    def offer(self, peer: int) -> list[bytes]:
        """The offer message for `peer` (send it over CURVE): fresh key and routing id."""
        o = aead.Offer(self.session, self._offset)
        self._openers[peer] = aead.Opener(o.key)
        self._peer_of_rid[o.rid] = peer
        return o.pack()

    def take_offer(self, peer: int, body: bytes) -> zmq.Socket | None:
        """`peer` (authenticated by CURVE) offers its sealed port: dial it. Returns the new
        link's monitor socket (to poll; on_monitor reads it), None if the port cannot be dialled."""
        name = self.names[peer]
        if peer in self._sealers:
            raise ProtocolError(name, "a second sealed-link offer in one session")
        o = aead.Offer.unpack(body, name, self.session)
        self._sealers[peer] = aead.Sealer(o.key)
        hp = _host_port(self.endpoints.get(peer))
        port = None if hp is None else hp[1] + o.port_offset
        if port is None or not 0 < port < 65536:
            log.info("no sealed link to %s (endpoint %r): its payloads stay inside CURVE", name,
                     self.endpoints.get(peer))
            return None
        s = self._ctx.socket(zmq.DEALER)
        self._tune_sealed(s)
        s.setsockopt(zmq.ROUTING_ID, o.rid)
        mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        s.connect(f"{hp[0]}:{port}")
        self.out[peer] = s
        self.monitors[mon] = peer
        return mon

    def on_monitor(self, mon: zmq.Socket) -> None:
        """Read a sealed link's monitor: its handshake done, payloads to that peer go sealed."""
        while True:
            try:
                ev = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._up.add(self.monitors[mon])

    # ------------------------------------------------------------ payloads
    def ready(self, peer: int) -> bool:
        """Whether payloads to `peer` go sealed now."""
        return peer in self._up

    def send(self, peer: int, seq: int, header: bytes, payload: memoryview) -> None:
        """Queue frame `seq`'s payload for `peer` (after its header went over CURVE): the
        sealing thread seals it and sends its pieces, frame after frame in this order, while
        the caller goes on (AESGCM releases the GIL). The payload must stay unchanged until
        then, as for every send (Transport.send: large buffers go without a copy)."""
        if self._failed is not None:
            raise self._failed
        if self._worker is None:
            self._worker = threading.Thread(target=self._seal_loop, name="mpcrt-seal", daemon=True)
            self._worker.start()
        self._jobs.put((peer, seq, header, payload))

    def _seal_loop(self) -> None:
        """The sealing thread: the only user of the sealed DEALERs once they exist."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            peer, seq, header, payload = job
            try:
                s = self.out[peer]
                for piece in self._sealers[peer].seal(seq, header, payload):
                    s.send(piece, copy=False)
            except Exception as e:  # the next send raises it; the peer sees the frame missing
                log.error("sealing frame #%d for %s failed: %s", seq, self.names.get(peer, peer), e)
                self._failed = e

    def drain(self) -> None:
        """Move what arrived on the sealed port to the inboxes of the members it belongs to;
        drop (count, warn now and then) anything under a routing id this node did not offer. At most
        DRAIN_MAX messages per call: a flood cannot keep the caller's wait from its deadline."""
        for _ in range(DRAIN_MAX):
            try:
                msg = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            peer = self._peer_of_rid.get(msg[0].bytes)
            if peer is None:
                self.dropped += 1
                now = time.monotonic()
                if now - self._warned >= DROP_LOG_S:
                    self._warned = now
                    log.warning("dropped a message on the sealed port from a connection no member holds (%d so "
                                "far): a stranger, or a stale connection", self.dropped)
                continue
            self.inbox[peer].append(msg[1:])

    def open_into(self, peer: int, seq: int, piece: int, header: bytes, msg: list, dest: np.ndarray) -> None:
        """Check and decrypt piece `piece` of frame `seq` from `peer` into dest; ProtocolError naming it."""
        name = self.names[peer]
        if peer not in self._openers:
            raise ProtocolError(name, "sent a payload on a sealed link this node never offered it")
        if len(msg) != 1:
            raise ProtocolError(name, f"sealed piece {piece} of frame #{seq} came in {len(msg)} parts, expected 1")
        self._openers[peer].open_into(seq, piece, header, msg[0].buffer, dest, name)

    def close(self) -> None:
        """Let the sealing thread send what is queued, then close every socket."""
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join()
        for s in list(self.out.values()) + [self.router]:
            try:
                s.disable_monitor()
            except zmq.ZMQError:
                pass
            s.close()
        for m in self.monitors:
            m.close(0)

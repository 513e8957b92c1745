"""The ZeroMQ transport (mpcrt.transport.Transport): authenticated, ordered channels between
the nodes of one session (parties and dealer), one process per node.

Each node binds one ROUTER socket that only receives, and dials every peer (parties and
dealer alike) with a DEALER socket of its own that only sends: a frame from node j to
node i always travels j.DEALER -> i.ROUTER, one ordered stream per direction of each
pair. An array above framing.SINGLE_MAX bytes goes as a header message and then one
message per framing.CHUNK_BYTES chunk (each tagged with the frame's sequence number
and the chunk's index), so ZMTP heartbeats interleave with a large transfer; the
receiver checks the header against what it expects, then every chunk's place and size,
and only then assembles the array.

Security: CurveZMQ (X25519 + XSalsa20-Poly1305) on every socket by default. A ZAP
handler accepts only the public keys of the cluster, and each inbound frame's
authenticated key (its `User-Id`) names its sender: the DEALERs set no routing id, so a
member cannot take another's (the ROUTER names each connection itself). Payloads of
aead.SEAL_MIN bytes and more go sealed with AES-256-GCM over a second link per direction,
keyed over CURVE (mpcrt.sealed_links, mpcrt.aead: CURVE alone carried ~0.6 GB/s a
socket); their headers still go over CURVE. Plaintext is allowed only with
`insecure=True`, which warns loudly (and has no sealed links).

Liveness comes from authenticated links only: a peer is dead when our outbound link to
it closes after its CURVE handshake succeeded (its socket monitor), or when an inbound
connection that carried a frame authenticated as that peer's closes (the ROUTER's
monitor, matched by the connection's file descriptor). A connection that fails the
handshake, or never carried a member's authenticated frame (a port scanner, a rogue
key, plaintext), never counts. ZMTP heartbeats (1 s interval, MPCRT_HEARTBEAT_TIMEOUT,
10 s by default) close a silent link. Bounds: a process that dies is seen within about
a second (its kernel closes the TCP connections); a silently lost path or a stopped
process within the heartbeat timeout; a peer whose link never came up within the
receive timeout (MPCRT_TIMEOUT). No receive ever blocks forever.
"""
from __future__ import annotations

import collections
import logging
import os
import struct
import time
import warnings

import numpy as np
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from mpcrt import aead, config, faults, framing
from mpcrt.cluster import Cluster
from mpcrt.errors import ConfigError, PeerFailure, ProtocolError
from mpcrt.kernels import bufpool
from mpcrt.sealed_links import SealedLinks
from mpcrt.transport import DEFAULT_TIMEOUT, GONE_TAG, FrameBook

log = logging.getLogger("mpcrt.transport")

HEARTBEAT_IVL_MS = 1000
# ZMTP heartbeats go between messages; large arrays travel as one message per chunk, so a
# heartbeat waits for at most one chunk and the timeout (MPCRT_HEARTBEAT_TIMEOUT, seconds:
# mpcrt.config) bounds how long a silently lost path goes unnoticed, whatever the sizes.
HANDSHAKE_RETRIES = 5
DRAIN_S = 1.0  # a peer found gone may still have frames on the way over its other link
PUMP_MAX = 1024  # messages one pump takes off a socket before the wait looks at its deadline again
INBOX_MAX = 1 << 16  # messages a member may have waiting here, unasked for, before it is a ProtocolError
# A chunk message is [marker, bytes]; the marker starts with 0xc1, a byte msgpack never
# uses, so it cannot be taken for a frame header. Then the frame's sequence number, the index.
_CHUNK = struct.Struct("<4sQI")
_CHUNK_MAGIC = b"\xc1MPC"
_MON_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED
               | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
               | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class _KeyAllowList:
    """ZAP credentials provider: only the cluster's public keys may connect."""

    def __init__(self, keys: set[bytes]):
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.keys
        if not ok:
            log.warning("refused a connection from an unknown public key")
        return ok


class Node(FrameBook):
    """One endpoint of the session's mesh (a mpcrt.transport.Transport).

    ids: 0..N-1 are parties, N is the dealer. `endpoints[id]` is where `id` binds;
    `binds` (optional) where a node listens when that differs from where others dial it;
    `public_keys[id]` its z85 public key (unused when insecure). `connect_to` lists
    the peers this node dials, the only ones it can send to (party_node and dealer_node:
    every other node); frames from a peer arrive on our ROUTER, over its own link.
    `sealed_port_offset`: where the sealed port (mpcrt.sealed_links) listens, that many
    ports above the CURVE port (the same on every node); None: a port the system picks.
    """

    def __init__(
        self,
        my_id: int,
        names: dict[int, str],
        endpoints: dict[int, str],
        public_keys: dict[int, bytes] | None,
        secret_key: bytes | None,
        session: str,
        connect_to: list[int],
        timeout: float = DEFAULT_TIMEOUT,
        insecure: bool = False,
        binds: dict[int, str] | None = None,
        sealed_port_offset: int | None = None,
    ):
        super().__init__(my_id, names, session, timeout)
        self.insecure = insecure
        self._inbox: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._dead: dict[int, str] = {}
        self._said_bye: set[int] = set()  # members we said goodbye to: their leaving is no failure
        self._dead_at: dict[int, float] = {}  # when each member was found gone (monotonic)
        # how long another member's loss waits before it fails a wait on a live, linked peer: the time a
        # stopped or cut member takes to be found, so a survivor that left because of it is not named first
        self._blame_after = quiet_ms() / 1000 + 1.0
        self.claim_s = self._blame_after  # a last word naming a third member waits for our own link's view
        self._member_fds: dict[int, int] = {}  # inbound connection fd -> the member it carried authenticated frames of
        self.refused_inbound = 0  # inbound connections that failed the handshake (never a liveness signal)
        self._hs_fail = collections.Counter()
        self._up = collections.Counter()
        cfg = config.current()
        self._fault = faults.hook(names[my_id], cfg.fault, cfg.fault_cut)  # MPCRT_FAULT: tests only
        self.ctx = zmq.Context(io_threads=cfg.io_threads)
        self._auth = None
        if insecure:
            warnings.warn(
                "mpcrt: PLAINTEXT channels (--insecure-plaintext): shares cross the network unencrypted "
                "and unauthenticated. Use only for local benchmarking.",
                stacklevel=2,
            )
            log.warning("INSECURE PLAINTEXT MODE: channels are neither encrypted nor authenticated")
        else:
            if public_keys is None or secret_key is None:
                raise ConfigError("secure mode needs every node's public key and this node's secret key")
            self._keys = {i: bytes(k) for i, k in public_keys.items()}
            self._rank_of_key = {k.decode(): i for i, k in self._keys.items()}
            self._secret = bytes(secret_key)
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            allow = _KeyAllowList(set(self._keys.values()))
            self._auth.configure_curve_callback(domain="*", credentials_provider=allow)

        self.router = self.ctx.socket(zmq.ROUTER)
        self._tune(self.router)
        if not insecure:
            self.router.curve_secretkey = self._secret
            self.router.curve_publickey = self._keys[my_id]
            self.router.curve_server = True
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        where = (binds or {}).get(my_id, endpoints[my_id])
        try:
            self.router.bind(where)
        except zmq.ZMQError as e:
            self._closed = True
            self.router.close(0)
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()
            raise ConfigError(f"{names[my_id]} cannot listen on {where}: {e}") from None
        self._router_mon = self.router.get_monitor_socket(_MON_EVENTS)

        self.out: dict[int, zmq.Socket] = {}
        self._mon: dict[zmq.Socket, int] = {}
        for j in connect_to:
            s = self.ctx.socket(zmq.DEALER)
            self._tune(s)
            if insecure:  # plaintext: the routing id is the only name a frame has
                s.setsockopt(zmq.ROUTING_ID, f"n{my_id}".encode())
            else:  # no routing id: the ROUTER gives each connection its own, so none can be squatted
                s.curve_secretkey = self._secret
                s.curve_publickey = self._keys[my_id]
                s.curve_serverkey = self._keys[j]
            self._mon[s.get_monitor_socket(_MON_EVENTS)] = j
            s.connect(endpoints[j])
            self.out[j] = s

        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)  # the DEALERs only send: nobody writes back on them
        for m in self._mon:
            self._poller.register(m, zmq.POLLIN)
        self._poller.register(self._router_mon, zmq.POLLIN)
        self._wake_r, self._wake_w = os.pipe()  # wake(): another thread ends a recv_any wait at once
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._woken = False
        self._sealed: SealedLinks | None = None
        if not insecure and where.startswith("tcp://"):
            try:
                self._sealed = SealedLinks(self.ctx, names, endpoints, where, session, self._tune, sealed_port_offset)
            except zmq.ZMQError as e:
                self.close(barrier=False)
                raise ConfigError(f"{names[my_id]} cannot open its sealed port beside {where}: {e}") from None
            self._poller.register(self._sealed.router, zmq.POLLIN)
            for j in connect_to:  # the first message on each link: where and how j seals its payloads to us
                self.out[j].send_multipart(self._sealed.offer(j))

    @staticmethod
    def _tune(s: zmq.Socket) -> None:
        s.setsockopt(zmq.LINGER, 2000)
        # no frame of ours is larger (headers, payloads up to SINGLE_MAX, 8 MB chunks): libzmq
        # drops a connection that sends a larger one instead of allocating what it claims
        s.setsockopt(zmq.MAXMSGSIZE, framing.SINGLE_MAX + framing.MAX_HEADER)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        quiet = quiet_ms()
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, quiet)
        s.setsockopt(zmq.HEARTBEAT_TTL, quiet)
        # No SNDBUF/RCVBUF: a fixed size turns off Linux's buffer autotuning, which grows
        # the buffers as the link needs (tcp_rmem / tcp_wmem). Measured: exp on 1e6
        # elements at N = 2 took 157-160 ms with autotuning against 163-167 ms with fixed
        # 4 MB buffers (party 0 spent 12 ms less in the kernel receiving the dealer's 240 MB).

    # ------------------------------------------------------------------ send
    def send(self, peer: int, tag: str, array: np.ndarray, donate: bool = False) -> None:
        """Send one array to `peer` over our own link to it (zero-copy for large buffers,
        donated or not; above framing.SINGLE_MAX as chunk messages). Never blocks on the peer."""
        if self._fault is not None:
            self._fault.before_send(tag)
        if tag == "bye":
            self._said_bye.add(peer)
        s = self.out.get(peer)
        if s is None:
            raise PeerFailure(self.name(peer), "is not a peer this node dials (not in its connect_to)")
        hdr, arr = self.outgoing(peer, tag, array)
        payload = memoryview(arr.reshape(-1)).cast("B") if arr.size else b""
        if self._sealed is not None and arr.nbytes >= aead.SEAL_MIN:
            if not self._sealed.ready(peer):
                self._pump(0)  # its offer, or its link's handshake, may be waiting to be read
            if self._sealed.ready(peer):
                s.send_multipart([hdr, aead.MARK])
                self._sealed.send(peer, self._send_seq[peer] - 1, hdr, payload)
                self.count_sent(peer, hdr, arr)
                return
        if framing.n_chunks(arr.nbytes) == 1:
            s.send_multipart([hdr, payload], copy=False)
        else:
            seq, step = self._send_seq[peer] - 1, framing.CHUNK_BYTES
            s.send(hdr, copy=False)
            for i, lo in enumerate(range(0, len(payload), step)):
                s.send_multipart([_CHUNK.pack(_CHUNK_MAGIC, seq, i), payload[lo : lo + step]], copy=False)
        self.count_sent(peer, hdr, arr)

    # --------------------------------------------------------------- receive
    def recv(self, peer: int, tag: str, dtype=None, shape=None) -> np.ndarray:
        """Receive the next frame from `peer`, validated against (tag, dtype, shape)."""
        deadline = time.monotonic() + self.timeout
        self._wait(peer, 1, deadline)
        return self._decode(peer, tag, dtype, shape, deadline)[1]

    def _wait(self, peer: int, count: int, deadline: float, inbox: dict | None = None) -> None:
        """Pump until `peer`'s inbox (or its sealed inbox) holds `count` messages; PeerFailure if
        it is gone or silent."""
        name, box = self.name(peer), self._inbox if inbox is None else inbox
        while len(box[peer]) < count:
            told = self.reported()  # a member stopped because another failed: name that one, once settled
            if told is not None:
                raise told
            other = self._other_gone(peer)
            if peer in self._dead and other is None:
                for _ in range(int(DRAIN_S * 10)):  # messages sent just before it died may still be queued
                    self._pump(100)
                    if len(box[peer]) >= count:
                        return
                raise self.failed(PeerFailure(name, self._dead[peer]))
            if other is not None:  # the session cannot finish without it: fail now, not at our next wait on it
                raise self.failed(PeerFailure(self.name(other), self._dead[other]))
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.failed(PeerFailure(name, f"sent nothing for {self.timeout:.0f} s "
                                                    "(receive timeout; raise it with MPCRT_TIMEOUT)"))
            self._pump(int(min(left, 0.5) * 1000) + 1)

    def wake(self) -> None:
        """Thread-safe: make a recv_any that is waiting (or the next one) return None now."""
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:  # the pipe is full: a wake-up is pending anyway
            pass

    def recv_any(self, timeout: float | None = None,
                 max_bytes: int | None = None) -> tuple[int, dict, np.ndarray] | None:
        """Next frame from any peer, in arrival order (used by the dealer's serve loop);
        None after `timeout` seconds, as soon as another thread called wake(), or once a
        peer was found dead (the caller asks peer_dead). A frame whose header claims more than
        `max_bytes` of payload is a ProtocolError, before anything is allocated for it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        dead = len(self._dead)
        while True:
            if self._woken:
                self._woken = False
                return None
            for peer, q in self._inbox.items():
                if q:
                    return (peer, *self._decode(peer, None, None, None, time.monotonic() + self.timeout, max_bytes))
            left = deadline - time.monotonic()
            if left <= 0 or len(self._dead) != dead or self.reported() is not None:
                return None
            self._pump(int(min(left, 0.5) * 1000) + 1)

    def _decode(self, peer, tag, dtype, shape, deadline: float,
                max_bytes: int | None = None) -> tuple[dict, np.ndarray]:
        """The checked header and the array of the message at the head of `peer`'s inbox (with its chunk messages,
        waited for until `deadline`): the header is checked against what the caller expects
        before any chunk is looked at, every chunk's place and size before the array is assembled.
        A message refused with a ProtocolError is consumed (the next receive reads what follows)."""
        q = self._inbox[peer]
        head = q[0]
        try:
            h, arr = self._decode_head(peer, tag, dtype, shape, deadline, max_bytes)
        except ProtocolError:
            if q and q[0] is head:
                q.popleft()
            raise
        if self._fault is not None:
            self._fault.after_recv(h["tag"])
        return h, arr

    def _decode_head(self, peer, tag, dtype, shape, deadline: float, max_bytes: int | None) -> tuple[dict, np.ndarray]:
        name, q = self.name(peer), self._inbox[peer]
        first = q[0]
        if _is_chunk(first):
            raise ProtocolError(name, "payload chunk out of order: a frame header was expected")
        if len(first) not in (1, 2):
            raise ProtocolError(name, f"expected a message of 1 or 2 frames (header, payload), got {len(first)}")
        hdr = first[0].bytes
        h = self.incoming(peer, hdr, tag, dtype, shape, max_bytes)
        nbytes = framing.payload_bytes(h)
        if len(first) == 2 and nbytes >= aead.SEAL_MIN and first[1].bytes == aead.MARK:
            return h, self.accepted(peer, hdr, framing.to_array(h, self._open_sealed(peer, h, hdr, deadline), name))
        want = framing.n_chunks(nbytes)
        if len(first) == 2:
            if want != 1:
                raise ProtocolError(name, f"a {nbytes}-byte payload must come in {want} chunk messages, not inline")
            q.popleft()
            return h, self.accepted(peer, hdr, framing.to_array(h, first[1].buffer, name))
        if want == 1:
            raise ProtocolError(name, "frame header without its payload")
        last = nbytes - (want - 1) * framing.CHUNK_BYTES
        for i in range(want):
            self._wait(peer, i + 2, deadline)
            m = q[i + 1]
            size = memoryview(m[1].buffer).nbytes if len(m) == 2 else -1
            if not _is_chunk(m) or m[0].bytes != _CHUNK.pack(_CHUNK_MAGIC, h["seq"], i):
                raise ProtocolError(name, f"payload chunk out of order: expected chunk {i} of {want} of frame "
                                          f"#{h['seq']}")
            if size != (framing.CHUNK_BYTES if i < want - 1 else last):
                raise ProtocolError(name, f"payload chunk {i} of frame #{h['seq']} is {size} bytes, expected "
                                          f"{framing.CHUNK_BYTES if i < want - 1 else last}")
        q.popleft()
        # every chunk is in and of the right size: one pooled buffer, one copy, no fresh pages
        buf = bufpool.empty(-(-nbytes // 8)).view(np.uint8)[:nbytes]
        off = 0
        for _ in range(want):
            f = q.popleft()[1]
            k = memoryview(f.buffer).nbytes
            buf[off : off + k] = np.frombuffer(f.buffer, np.uint8)
            off += k
        return h, self.accepted(peer, hdr, framing.to_array(h, buf, name))

    def _open_sealed(self, peer: int, h: dict, hdr: bytes, deadline: float) -> np.ndarray:
        """The payload of the frame at the head of `peer`'s inbox, from its sealed pieces, each
        opened as soon as it is in (into one pooled buffer); consumes the frame."""
        if self._sealed is None:
            raise ProtocolError(self.name(peer), "sent a payload on a sealed link (this node has none)")
        nbytes = framing.payload_bytes(h)
        buf = bufpool.empty(-(-nbytes // 8)).view(np.uint8)[:nbytes]
        self._inbox[peer].popleft()
        box = self._sealed.inbox
        for i, lo, hi in aead.piece_bounds(nbytes):
            self._wait(peer, 1, deadline, box)
            self._sealed.open_into(peer, h["seq"], i, hdr, box[peer].popleft(), buf[lo:hi])
        return buf

    def _pump(self, timeout_ms: int) -> None:
        events = dict(self._poller.poll(timeout_ms))
        if not events:
            return
        if self._wake_r in events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            self._woken = True
        batch = []
        if self.router in events:
            while len(batch) < PUMP_MAX:  # bounded: a flood cannot keep a wait from seeing its deadline
                try:
                    batch.append(self.router.recv_multipart(zmq.NOBLOCK, copy=False))
                except zmq.Again:
                    break
        # the ROUTER's events before this batch's frames: an fd closed and reused by a new
        # connection must be closed for its old member, never for the one whose frames follow
        self._monitor_event(self._router_mon, None)
        for msg in batch:
            self._route_inbound(msg)
        for m, peer in self._mon.items():
            if m in events:
                self._monitor_event(m, peer)
        if self._sealed is not None:
            if self._sealed.router in events:
                self._sealed.drain()
            for m in self._sealed.monitors:
                if m in events:
                    self._sealed.on_monitor(m)

    def _route_inbound(self, msg: list) -> None:
        if self.insecure:  # plaintext: the routing id the sender chose names it
            ident = msg[0].bytes
            try:
                peer = int(ident[1:].decode()) if ident[:1] == b"n" else None
            except ValueError:
                peer = None
            if peer is None or peer not in self.names or peer == self.id:
                raise ProtocolError(f"unknown sender {ident!r}", "frame with an identity that is not in the cluster")
        else:  # CURVE: the key the handshake authenticated names the member, whatever connection it came on
            peer = self._rank_of_key.get(msg[0].get("User-Id"))
            if peer is None or peer == self.id:
                raise ProtocolError("unknown sender", "frame under a key that is not another member's")
        if len(self._inbox[peer]) >= INBOX_MAX:
            raise ProtocolError(self.names[peer], f"sent more than {INBOX_MAX} messages this node has not asked for "
                                                  "yet (a flood)")
        self._member_fds[msg[0].get(zmq.SRCFD)] = peer  # this connection is that member's link to us
        if not self.insecure and aead.is_offer(msg[1:]):  # its sealed port (without one here: stay inside CURVE)
            mon = None if self._sealed is None else self._sealed.take_offer(peer, msg[2].bytes)
            if mon is not None:
                self._poller.register(mon, zmq.POLLIN)
            return
        if len(msg) == 3 and len(msg[2]) == 0 and self._last_word(peer, msg[1].bytes):
            return
        self._inbox[peer].append(msg[1:])

    def _last_word(self, peer: int, hdr: bytes) -> bool:
        """Whether an empty frame is `peer`'s last word (transport.GONE_TAG): it names the member whose
        loss stops it (kept for reported(), which fails our waits at once) or us (then it is gone)."""
        if GONE_TAG.encode() not in hdr:
            return False
        try:
            notice = self.note_gone(peer, framing.unpack_header(hdr, self.name(peer)))
        except ProtocolError:
            return False  # a receive reports it
        if isinstance(notice, PeerFailure):
            self._gone(peer, "stopped: it lost its link to us (process stopped or network lost)")
        return notice is not None

    def _monitor_event(self, m: zmq.Socket, peer: int | None) -> None:
        while True:
            try:
                ev = parse_monitor_message(m.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            e = ev["event"]
            if peer is None:  # our ROUTER: only a member's authenticated connection counts
                if e == zmq.EVENT_DISCONNECTED and ev["value"] in self._member_fds and not self._closed:
                    gone = self._member_fds.pop(ev["value"])
                    self._gone(gone, "disconnected (its link to us closed: process died or network lost)")
                elif e & (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                    self.refused_inbound += 1
                    log.debug("%s refused an inbound connection (bad or unknown key)", self.names[self.id])
                continue
            name = self.names.get(peer, f"node {peer}")
            if e == zmq.EVENT_DISCONNECTED and not self._closed:
                if self._up[peer]:  # before a completed handshake ZeroMQ just retries
                    self._gone(peer, "disconnected (process died or network lost)")
            elif e == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._gone(peer, "refused our key: this node's public key is not in its cluster file", first=False)
            elif e == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self._gone(peer, "failed the CURVE handshake (wrong server key in our cluster file, "
                                 "or plaintext mode on one side only)", first=False)
            elif e == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                # a connection closed before the handshake ended: a peer still starting, a relay
                # that accepts early; ZeroMQ reconnects. Repeated failures mean wrong keys or modes.
                self._hs_fail[peer] += 1
                if self._hs_fail[peer] >= HANDSHAKE_RETRIES:
                    self._gone(peer, "failed the CURVE handshake repeatedly (wrong server key in our cluster "
                                     "file, or plaintext mode on one side only)", first=False)
            elif e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._hs_fail[peer] = 0
                self._up[peer] = True
            elif e == zmq.EVENT_CONNECTED:
                log.debug("connected to %s", name)

    def _gone(self, peer: int, why: str, first: bool = True) -> None:
        """Note that `peer` is gone (first: keep an earlier reason)."""
        if first and peer in self._dead:
            return
        self._dead[peer] = why
        self._dead_at.setdefault(peer, time.monotonic())

    def _other_gone(self, peer: int) -> int | None:
        """Another member to name while we wait on `peer`: the first found gone, if we had not said
        goodbye to it (after that its leaving is the session's normal end), if it was found before
        `peer` was (if `peer` was), and if `peer`'s link is up and the loss is `_blame_after` old: the
        time a stopped or cut `peer` takes to be found, so that a survivor which left because of
        `peer` is not named in its place."""
        now = time.monotonic()
        for p, at in self._dead_at.items():
            if p == peer:
                return None
            if p not in self._said_bye and self._up[peer] and now - at >= self._blame_after:
                return p
        return None

    def claim_confirmed(self, member: int) -> bool:
        """Our own view does not contradict a last word naming `member`: found gone, or no link to it up."""
        return member in self._dead or not self._up[member]

    def peer_dead(self, peer: int) -> str | None:
        """Why `peer` is gone (what it sent just before may still be on its way: DRAIN_S)."""
        return self._dead.get(peer)

    @property
    def disconnects(self) -> int:
        """Members found gone through their own authenticated links."""
        return len(self._dead)


    # ----------------------------------------------------------------- close
    def _release(self) -> None:
        """Close the sockets, monitors, authenticator and context (after close's barrier)."""
        if getattr(self, "_sealed", None) is not None:
            self._sealed.close()
        for s in list(self.out.values()) + [getattr(self, "router", None)]:
            if s is not None:
                try:
                    s.disable_monitor()
                except zmq.ZMQError:
                    pass
                s.close()
        for m in list(self._mon) + [getattr(self, "_router_mon", None)]:
            if m is not None:
                m.close(0)
        if self._auth is not None:
            self._auth.stop()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.ctx.term()


def party_node(cluster: Cluster, rank: int, secret_key: bytes | None, timeout: float = DEFAULT_TIMEOUT,
               insecure: bool = False, sealed_port_offset: int | None = None) -> Node:
    """Party `rank`'s node of a cluster: it dials every other party and the dealer."""
    n = cluster.world_size
    if not 0 <= rank < n:
        raise ConfigError(f"rank {rank} is not in 0..{n - 1} for a {n}-party cluster")
    return Node(rank, cluster.names, cluster.endpoints, None if insecure else cluster.public_keys, secret_key,
                cluster.session, connect_to=[j for j in range(n) if j != rank] + [n], timeout=timeout,
                insecure=insecure, binds=cluster.binds, sealed_port_offset=sealed_port_offset)


def dealer_node(cluster: Cluster, secret_key: bytes | None, timeout: float = DEFAULT_TIMEOUT,
                insecure: bool = False, sealed_port_offset: int | None = None) -> Node:
    """The dealer's node of a cluster: it dials every party (and every party dials it)."""
    return Node(cluster.world_size, cluster.names, cluster.endpoints, None if insecure else cluster.public_keys,
                secret_key, cluster.session, connect_to=list(range(cluster.world_size)), timeout=timeout,
                insecure=insecure, binds=cluster.binds, sealed_port_offset=sealed_port_offset)


def quiet_ms() -> int:
    """How long a link may stay silent before ZMTP closes it (MPCRT_HEARTBEAT_TIMEOUT): at least
    two intervals, since a timeout equal to the interval races every next ping and closed healthy
    links under load (measured with 1 s: a 100 MB exchange lost a link)."""
    return max(int(config.current().heartbeat_timeout * 1000), 2 * HEARTBEAT_IVL_MS)


def _is_chunk(msg: list) -> bool:
    """A chunk message (marker, bytes) rather than a frame (header[, payload])."""
    return len(msg) == 2 and len(msg[0]) == _CHUNK.size and msg[0].bytes[:4] == _CHUNK_MAGIC


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh CurveZMQ key pair (public, secret), z85 encoded."""
    return zmq.curve_keypair()

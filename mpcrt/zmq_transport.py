"""The ZeroMQ transport (mpcrt.transport.Transport): authenticated, ordered channels between
the nodes of one session (parties and dealer), one process per node.

Each node binds one ROUTER socket for inbound traffic and connects one DEALER socket
to each peer it talks to first. A frame from node j to node i travels j.DEALER ->
i.ROUTER when j connects to i (party to party, party to dealer), or back over the
same connection (dealer to party). ZeroMQ keeps every such stream in order.

Security: CurveZMQ (X25519 + XSalsa20-Poly1305) on every socket by default. A ZAP
handler accepts only the public keys of the cluster, and each inbound frame's
authenticated key (its `User-Id`) must be the key of the rank it claims. Plaintext
is allowed only with `insecure=True`, which warns loudly.

Liveness: ZMTP heartbeats (1 s interval, 60 s timeout) close a silent connection; a
socket monitor turns a closed connection into PeerFailure for anyone waiting on that
peer; every receive also has an overall timeout. No receive ever blocks forever.
"""
from __future__ import annotations

import collections
import logging
import os
import time
import warnings

import numpy as np
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from mpcrt import config, framing
from mpcrt.cluster import Cluster
from mpcrt.errors import ConfigError, PeerFailure, ProtocolError
from mpcrt.kernels import bufpool
from mpcrt.transport import DEFAULT_TIMEOUT, FrameBook

log = logging.getLogger("mpcrt.transport")

HEARTBEAT_IVL_MS = 1000
# ZMTP heartbeats only see whole messages, so a large array on a slow link must not trip
# them: a dead process is seen at once through the closed TCP connection anyway; this
# timeout is for a silently lost network path (MPCRT_HEARTBEAT_TIMEOUT, seconds: mpcrt.config).
HANDSHAKE_RETRIES = 5
ROUTED_GRACE = 2.0
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
    the peers this node dials; everyone else must dial us.
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
    ):
        super().__init__(my_id, names, session, timeout)
        self.insecure = insecure
        self._inbox: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._dead: dict[int, str] = {}
        self.router_disconnects = 0
        self._hs_fail = collections.Counter()
        self._up = collections.Counter()
        self.ctx = zmq.Context(io_threads=config.current().io_threads)
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
            s.setsockopt(zmq.ROUTING_ID, f"n{my_id}".encode())
            if not insecure:
                s.curve_secretkey = self._secret
                s.curve_publickey = self._keys[my_id]
                s.curve_serverkey = self._keys[j]
            self._mon[s.get_monitor_socket(_MON_EVENTS)] = j
            s.connect(endpoints[j])
            self.out[j] = s

        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)
        for s in self.out.values():
            self._poller.register(s, zmq.POLLIN)
        for m in self._mon:
            self._poller.register(m, zmq.POLLIN)
        self._poller.register(self._router_mon, zmq.POLLIN)
        self._wake_r, self._wake_w = os.pipe()  # wake(): another thread ends a recv_any wait at once
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._woken = False
        self._routed: set[int] = set()  # peers that dialled us (we reply through the router)

    @staticmethod
    def _tune(s: zmq.Socket) -> None:
        s.setsockopt(zmq.LINGER, 2000)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        quiet_ms = int(config.current().heartbeat_timeout * 1000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, quiet_ms)
        s.setsockopt(zmq.HEARTBEAT_TTL, quiet_ms)
        # No SNDBUF/RCVBUF: a fixed size turns off Linux's buffer autotuning, which grows
        # the buffers as the link needs (tcp_rmem / tcp_wmem). Measured: exp on 1e6
        # elements at N = 2 took 157-160 ms with autotuning against 163-167 ms with fixed
        # 4 MB buffers (party 0 spent 12 ms less in the kernel receiving the dealer's 240 MB).

    # ------------------------------------------------------------------ send
    def send(self, peer: int, tag: str, array: np.ndarray, donate: bool = False) -> None:
        """Send one array to `peer` (zero-copy for large buffers, donated or not). Never blocks on the peer."""
        hdr, arr = self.outgoing(peer, tag, array)
        payload = memoryview(arr.reshape(-1)).cast("B") if arr.size else b""
        step = framing.CHUNK_BYTES if framing.n_chunks(arr.nbytes) > 1 else max(arr.nbytes, 1)
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
        if peer in self.out:
            self.out[peer].send_multipart([hdr, *chunks], copy=False)
        else:
            try:
                self.router.send_multipart([f"n{peer}".encode(), hdr, *chunks], copy=False)
            except zmq.ZMQError as e:
                raise PeerFailure(self.name(peer), f"is not connected ({e})") from None
        self.count_sent(peer, hdr, arr)

    # --------------------------------------------------------------- receive
    def recv(self, peer: int, tag: str, dtype=None, shape=None) -> np.ndarray:
        """Receive the next frame from `peer`, validated against (tag, dtype, shape)."""
        name = self.names.get(peer, f"node {peer}")
        deadline = time.monotonic() + self.timeout
        routed_only = peer not in self.out or not self._up[peer]  # no outbound link of ours is up
        seen_disc = self.router_disconnects
        disc_at = None
        while not self._inbox[peer]:
            if routed_only and self.router_disconnects > seen_disc and disc_at is None:
                disc_at = time.monotonic()
            if disc_at is not None and time.monotonic() - disc_at > ROUTED_GRACE:
                # a connection to our router closed and this peer (which reaches us only
                # through it) stayed silent since: it is gone
                raise PeerFailure(name, "disconnected (its connection to us closed and it sent nothing since)")
            if peer in self._dead:
                for _ in range(10):  # frames sent just before it died may still be queued
                    self._pump(100)
                    if self._inbox[peer]:
                        break
                if not self._inbox[peer]:
                    raise PeerFailure(name, self._dead[peer])
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerFailure(name, f"sent nothing for {self.timeout:.0f} s "
                                        "(receive timeout; raise it with MPCRT_TIMEOUT)")
            self._pump(int(min(left, 0.5) * 1000) + 1)
        frames = self._inbox[peer].popleft()
        return self._decode(peer, name, frames, tag, dtype, shape)

    def wake(self) -> None:
        """Thread-safe: make a recv_any that is waiting (or the next one) return None now."""
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:  # the pipe is full: a wake-up is pending anyway
            pass

    def recv_any(self, timeout: float | None = None) -> tuple[int, dict, np.ndarray] | None:
        """Next frame from any peer, in arrival order (used by the dealer's serve loop);
        None after `timeout` seconds, or as soon as another thread called wake()."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self._woken:
                self._woken = False
                return None
            for peer, q in self._inbox.items():
                if q:
                    frames = q.popleft()
                    name = self.name(peer)
                    if len(frames) < 2:
                        raise ProtocolError(name, f"expected 2 frames, got {len(frames)}")
                    arr = self._decode(peer, name, frames, None, None, None)
                    return peer, framing.unpack_header(frames[0].bytes, name), arr
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._pump(int(min(left, 0.5) * 1000) + 1)

    def _decode(self, peer, name, frames, tag, dtype, shape) -> np.ndarray:
        if len(frames) < 2:
            raise ProtocolError(name, f"expected 2 frames (header, payload), got {len(frames)}")
        h = self.incoming(peer, frames[0].bytes, tag, dtype, shape)
        want = 1 + framing.n_chunks(framing.payload_bytes(h))
        if len(frames) != want:
            raise ProtocolError(name, f"expected {want} frames (header, payload in {want - 1} chunk(s)), "
                                      f"got {len(frames)}")
        if want == 2:
            buf = frames[1].buffer
        else:  # reassemble into one pooled buffer (one copy; no fresh pages)
            sizes = [memoryview(f.buffer).nbytes for f in frames[1:]]
            if any(k != framing.CHUNK_BYTES for k in sizes[:-1]) or sum(sizes) != framing.payload_bytes(h):
                raise ProtocolError(name, "payload chunk of the wrong size")
            buf = bufpool.empty(-(-sum(sizes) // 8)).view(np.uint8)[: sum(sizes)]
            off = 0
            for f, k in zip(frames[1:], sizes):
                buf[off : off + k] = np.frombuffer(f.buffer, np.uint8)
                off += k
        return self.accepted(peer, frames[0].bytes, framing.to_array(h, buf, name))

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
        if self.router in events:
            while True:
                try:
                    msg = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._route_inbound(msg)
        for peer, s in self.out.items():
            if s in events:
                while True:
                    try:
                        self._inbox[peer].append(s.recv_multipart(zmq.NOBLOCK, copy=False))
                    except zmq.Again:
                        break
        for m, peer in self._mon.items():
            if m in events:
                self._monitor_event(m, peer)
        if self._router_mon in events:
            self._monitor_event(self._router_mon, None)

    def _route_inbound(self, msg: list) -> None:
        ident = msg[0].bytes
        try:
            peer = int(ident[1:].decode()) if ident[:1] == b"n" else None
        except ValueError:
            peer = None
        if peer is None or peer not in self.names or peer == self.id:
            raise ProtocolError(f"unknown sender {ident!r}", "frame with an identity that is not in the cluster")
        if not self.insecure:
            uid = msg[0].get("User-Id")
            if self._rank_of_key.get(uid) != peer:
                raise ProtocolError(self.names[peer],
                                    "frame's authenticated key is not that rank's key (impersonation?)")
        self._routed.add(peer)
        self._inbox[peer].append(msg[1:])

    def _monitor_event(self, m: zmq.Socket, peer: int | None) -> None:
        while True:
            try:
                ev = parse_monitor_message(m.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            e = ev["event"]
            if peer is None:
                if e == zmq.EVENT_DISCONNECTED:
                    self.router_disconnects += 1
                if e & (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                    log.warning("%s refused an inbound connection (bad or unknown key)", self.names[self.id])
                continue
            name = self.names.get(peer, f"node {peer}")
            if e == zmq.EVENT_DISCONNECTED and not self._closed:
                if self._up[peer]:  # before a completed handshake ZeroMQ just retries
                    self._dead.setdefault(peer, "disconnected (process died or network lost)")
            elif e == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._dead[peer] = "refused our key: this node's public key is not in its cluster file"
            elif e == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self._dead[peer] = ("failed the CURVE handshake (wrong server key in our cluster file, "
                                    "or plaintext mode on one side only)")
            elif e == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                # a connection closed before the handshake ended: a peer still starting, a relay
                # that accepts early; ZeroMQ reconnects. Repeated failures mean wrong keys or modes.
                self._hs_fail[peer] += 1
                if self._hs_fail[peer] >= HANDSHAKE_RETRIES:
                    self._dead[peer] = ("failed the CURVE handshake repeatedly (wrong server key in our cluster file, "
                                        "or plaintext mode on one side only)")
            elif e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._hs_fail[peer] = 0
                self._up[peer] = True
            elif e == zmq.EVENT_CONNECTED:
                log.debug("connected to %s", name)

    def peer_dead(self, peer: int) -> str | None:
        return self._dead.get(peer)

    @property
    def disconnects(self) -> int:
        """Connections to our router that closed (peers that dialled us and left)."""
        return self.router_disconnects

    # ----------------------------------------------------------------- close
    def _release(self) -> None:
        """Close the sockets, monitors, authenticator and context (after close's barrier)."""
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
               insecure: bool = False) -> Node:
    """Party `rank`'s node of a cluster: it dials every other party and the dealer."""
    n = cluster.world_size
    if not 0 <= rank < n:
        raise ConfigError(f"rank {rank} is not in 0..{n - 1} for a {n}-party cluster")
    return Node(rank, cluster.names, cluster.endpoints, None if insecure else cluster.public_keys, secret_key,
                cluster.session, connect_to=[j for j in range(n) if j != rank] + [n], timeout=timeout,
                insecure=insecure, binds=cluster.binds)


def dealer_node(cluster: Cluster, secret_key: bytes | None, timeout: float = DEFAULT_TIMEOUT,
                insecure: bool = False) -> Node:
    """The dealer's node of a cluster: every party dials it."""
    return Node(cluster.world_size, cluster.names, cluster.endpoints, None if insecure else cluster.public_keys,
                secret_key, cluster.session, connect_to=[], timeout=timeout, insecure=insecure, binds=cluster.binds)


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh CurveZMQ key pair (public, secret), z85 encoded."""
    return zmq.curve_keypair()

"""The dealer process: agrees a seed with each party, then serves party 0's requests.

It never receives a party's input, share or output: only (request number, kind,
parameters) from party 0, and it sends each request's corrections to that request's
corrected party (correlations.corrected_party: party 0). It
exits when every party said goodbye, or with an error when a party vanished first.

Requests are dealt by a small thread pool (the kernels and the AES keystream release
the GIL), so while one large request is dealt the next ones are too; the main thread
alone talks to the sockets and sends the corrections in request order, woken by each
finished deal (no polling interval). Its size, `MPCRT_DEALER_THREADS`, defaults to 2
where the host has cores to spare (MPCRT_THREADS, else cores // (N + 1), at least 2),
else 1, with one deal's passes in turn too: on a host the parties already fill (2
cores, 2 parties) more dealer threads only slowed the transfer a party waits for.
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import sys
import time

import msgpack
import numpy as np

from mpcrt import config, correlations
from mpcrt.runtime import default_backend
from mpcrt.cluster import Cluster, load_cluster, load_secret_key
from mpcrt.dealer_client import reply_tag
from mpcrt.errors import ConfigError, DealerError, MpcError, PeerFailure, ProtocolError
from mpcrt.kernels import allocator, gemm
from mpcrt.kernels.backend import Backend
from mpcrt.kernels.prg import new_seed
from mpcrt.parties.warmup import maybe_rehearse
from mpcrt.protocols.dealt import copy_tag
from mpcrt.transport import DEFAULT_TIMEOUT, Transport
from mpcrt.zmq_transport import dealer_node

log = logging.getLogger("mpcrt.dealer")
GOODBYE_GRACE = 1.0  # seconds a party found gone has to deliver what it sent before (its bye)
MAX_REQUEST_BYTES = 64 << 20  # the largest frame a party may send the dealer (a batch of requests, a plan)


class Dealer:
    """The dealer of a session, over the transport it is given (its `node`, whose id N is
    the dealer's: parties are 0..N-1)."""

    def __init__(self, transport: Transport, backend: Backend | None = None):
        allocator.tune()  # reuse big numpy temporaries instead of page-faulting fresh mmaps
        self.n = len(transport.names) - 1
        if transport.id != self.n:
            raise ConfigError(f"the dealer is node {self.n} of this session, not {transport.id}")
        self.node = transport
        cfg = config.current()
        share = gemm.cpu_share(self.n, cfg.threads)
        # the back end runs the fused deal kernels and the matmul and conv triples' products
        self.backend = backend if backend is not None else default_backend(self.n)
        self.seeds = {i: new_seed() for i in range(self.n)}
        self.prgs = [self.backend.prg(self.seeds[i]) for i in range(self.n)]
        self._private = self.backend.prg(new_seed())
        self.requests_served = 0
        self.busy_seconds = self.deal_seconds = self.send_seconds = 0.0
        threads = cfg.dealer_threads or min(2, share)
        correlations.PASS_THREADS = min(share, 4)
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="deal")
        self._pending: collections.deque = collections.deque()  # futures of dealt requests, in request order
        self._hello: set[int] = set()  # parties sent their seed: a reply to one goes after its seed
        self._last_n = -1  # the last request number party 0 sent

    @classmethod
    def connect(cls, cluster: Cluster, secret_key: bytes | None, insecure: bool = False,
                timeout: float = DEFAULT_TIMEOUT, backend: Backend | None = None) -> "Dealer":
        """The dealer of a cluster file's session, over ZeroMQ (CurveZMQ unless insecure)."""
        node = dealer_node(cluster, secret_key, timeout=timeout, insecure=insecure,
                           sealed_port_offset=config.current().sealed_port_offset)
        try:
            return cls(node, backend)
        except BaseException:
            node.close(barrier=False)
            raise

    def _private_words(self, stream: int, shape: tuple) -> np.ndarray:
        return self._private.ring(stream, [shape])[0]

    def _private_words_at(self, stream: int, first: int, shape: tuple) -> np.ndarray:
        return self._private.words_at(stream, first, np.empty(shape, np.int64).reshape(-1)).reshape(shape)

    def serve(self, idle_timeout: float | None = None) -> None:
        """Serve until all parties said bye. Raises PeerFailure-like errors on a vanished party."""
        hello, bye = self._hello, set()
        gone: dict[int, float] = {}  # party -> when first seen gone, the first first
        last = start = time.monotonic()
        while len(bye) < self.n:
            self._send_ready()
            got = self.node.recv_any(timeout=1.0, max_bytes=MAX_REQUEST_BYTES)  # a finished deal wakes it
            if got is None and self._head_sendable():
                continue  # what was asked is sent before a vanished party can stop the dealer
            if got is None:
                if len(hello) < self.n and time.monotonic() - start > self.node.timeout:
                    missing = sorted(set(range(self.n)) - hello)
                    raise MpcError(f"parties {missing} never connected to the dealer within {self.node.timeout:.0f} s "
                                   "(down, or their key is not in the dealer's cluster file)")
                self._check_gone(bye, gone)
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    raise MpcError(f"dealer idle for {idle_timeout:.0f} s with parties still registered; stopping")
                continue
            last = time.monotonic()
            peer, h, payload = got
            tag = h["tag"]
            if tag == "hello":
                hello.add(peer)
                self.node.send(peer, "seed", np.frombuffer(self.seeds[peer], np.uint8))
            elif tag == "req":
                if peer != 0:
                    raise ProtocolError(self.node.names[peer], "only party 0 may send dealer requests")
                self._serve_batch(payload)
            elif tag == "bye":
                self._send_ready(wait=True)
                bye.add(peer)
            else:
                raise ProtocolError(self.node.names[peer], f"unexpected op tag {tag!r} at the dealer")

    def _check_gone(self, bye: set, gone: dict) -> None:
        """PeerFailure naming the first party found gone that did not say goodbye within
        GOODBYE_GRACE since (its goodbye may still be on the way over its other link). Only a
        party's own authenticated link tells its death (mpcrt.zmq_transport), never a connection
        to our port that some other process opened and closed."""
        if self.node.reported() is not None:  # a party stopped because another member failed
            raise self.node.reported()
        now = time.monotonic()
        for p in range(self.n):
            if p not in bye and p not in gone and self.node.peer_dead(p):
                gone[p] = now
        late = [p for p, t in gone.items() if p not in bye and now - t >= GOODBYE_GRACE]
        if late:
            raise PeerFailure(self.node.names[late[0]], f"{self.node.peer_dead(late[0])} before it finished; "
                                                        "the dealer stops")

    def _serve_batch(self, payload: np.ndarray) -> None:
        t0 = time.perf_counter()
        try:
            batch = msgpack.unpackb(payload.tobytes(), raw=False, strict_map_key=True)
        except Exception:
            raise ProtocolError("party 0", "malformed dealer request") from None
        if not isinstance(batch, list):
            raise ProtocolError("party 0", f"malformed dealer request: a list expected, got {type(batch).__name__}")
        for item in batch:
            if not (isinstance(item, list) and len(item) == 3 and type(item[0]) is int
                    and isinstance(item[1], str) and isinstance(item[2], dict)):
                raise ProtocolError("party 0", f"malformed dealer request item {repr(item)[:200]}")
            n, kind, p = item
            # request numbers only grow: a number dealt twice would hand out the same PRG
            # stream twice (and the stream counter must fit the AES-CTR block counter)
            if not self._last_n < n < 1 << 63:
                raise ProtocolError("party 0", f"dealer request number {n} after {self._last_n}: numbers must "
                                    "increase and stay below 2^63")
            self._last_n = n
            fut = self._pool.submit(self._deal, n, kind, p)
            fut.add_done_callback(lambda _: self.node.wake())
            self._pending.append((fut, n, kind, p))
        self.busy_seconds += time.perf_counter() - t0

    def _deal(self, n: int, kind: str, p: dict) -> np.ndarray | None:
        """A request's corrections, flat (None for one dealt in slices as it is sent: _send_ready)."""
        if correlations.slices(kind, p) is not None:
            return None
        t1 = time.perf_counter()
        try:
            flat = correlations.deal(self.prgs, self._private_words, n, kind, p, self.backend)
        except MpcError:
            raise
        except Exception as e:  # a request the spec checks let through must still not crash the dealer
            raise DealerError(f"request {n} ({kind}) could not be dealt: {type(e).__name__}: {e}") from e
        self.deal_seconds += time.perf_counter() - t1
        return flat

    def _deal_slice(self, n: int, kind: str, p: dict, lo: int, hi: int) -> np.ndarray:
        t1 = time.perf_counter()
        try:
            flat = correlations.deal_slice(self.prgs, self._private_words_at, n, kind, p, lo, hi, self.backend)
        except MpcError:
            raise
        except Exception as e:
            raise DealerError(f"request {n} ({kind}) could not be dealt: {type(e).__name__}: {e}") from e
        self.deal_seconds += time.perf_counter() - t1
        return flat

    def _head_sendable(self) -> bool:
        """A request is pending and its corrected party has its seed (party 0 may ask before
        another party said hello; that party's seed must reach it first)."""
        if not self._pending:
            return False
        if correlations.kind(self._pending[0][2]).to_all:  # a copy goes to every party
            return len(self._hello) == self.n
        return correlations.corrected_party(self._pending[0][1], self.n) in self._hello

    def _send_ready(self, wait: bool = False) -> None:
        """Send the corrections dealt so far, in request order (all of them if `wait`);
        a request whose dealing failed raises its error here."""
        while self._head_sendable() and (wait or self._pending[0][0].done()):
            fut, n, kind, p = self._pending.popleft()
            flat = fut.result()
            t2 = time.perf_counter()
            to = correlations.corrected_party(n, self.n)
            if flat is not None and correlations.kind(kind).to_all:  # the others' copies (dealt.Kind.to_all)
                for j in range(self.n):
                    if j != to:
                        self.node.send(j, copy_tag(n), flat)
            if flat is None:  # a large elementwise request: dealt a slice at a time, each sent at once
                for lo, hi in correlations.slices(kind, p):
                    self.node.send(to, reply_tag(n), self._deal_slice(n, kind, p, lo, hi), donate=True)
            else:
                for lo, hi, _ in correlations.reply_parts(correlations.kind(kind).corrected(p)):
                    # one frame per part, used in place; the dealer never touches flat again
                    self.node.send(to, reply_tag(n), flat[lo:hi], donate=True)
            self.send_seconds += time.perf_counter() - t2
            self.requests_served += 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)  # no deal may wake a closed node
        cpu = os.times()
        log.info("served %d requests, busy %.3f s (dealing %.3f s, sending %.3f s); process CPU user %.3f s, "
                 "sys %.3f s", self.requests_served, self.busy_seconds, self.deal_seconds, self.send_seconds,
                 cpu.user, cpu.system)
        self.node.close(barrier=False)


def main() -> int:
    """Entry of the dealer process; reads the same configuration as a party (mpcrt.config)."""
    try:
        cfg = config.current()
        logging.basicConfig(level=cfg.loglevel, format="%(name)s: %(message)s")
        if cfg.cluster is None:
            raise ConfigError("the dealer needs a cluster file: --cluster FILE (or MPCRT_CLUSTER)")
        cluster = load_cluster(cfg.cluster)
        maybe_rehearse(Dealer)  # load the kernels before the parties' first requests
        secret = None if cfg.insecure else load_secret_key(cfg.secret_key or "")
        backend = default_backend(cluster.world_size)  # --device cuda without CuPy or a GPU stops here
        d = Dealer.connect(cluster, secret, insecure=cfg.insecure, timeout=cfg.timeout, backend=backend)
    except MpcError as e:
        print(f"dealer: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    try:
        d.serve()
    except MpcError as e:
        print(f"dealer: {type(e).__name__}: {e}", file=sys.stderr)
        if isinstance(e, PeerFailure):
            d.node.tell_gone(e)
        return 1
    finally:
        d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

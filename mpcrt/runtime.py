"""The party runtime: who am I, my channels, my dealer client, and the round primitives.

`Runtime` is what protocols see: `rank`, `world_size`, `precision`, `open` (one
round, batched; two smaller ones for large openings among N >= 3, mpcrt.allreduce),
`exchange`, `dealer.request`, `scope` (stats attribution) and the pairwise PRGs used to
share inputs without sending them. It talks through a transport it is given
(mpcrt.transport.Transport: ZeroMQ between processes, or in memory between threads);
`Runtime.connect` opens a cluster file's ZeroMQ channels, and `init()` builds one from
the configuration `mpcrt launch` / `mpcrt party` set up (mpcrt.config).
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import math
import os
import time
from typing import Callable, Sequence

import numpy as np

from mpcrt import agreement, allreduce, chunked, config
from mpcrt.protocols import fixedpoint, fss
from mpcrt.cluster import Cluster, load_cluster, load_secret_key
from mpcrt.dealer_client import DealerClient
from mpcrt.errors import ConfigError, MpcError, ProtocolError, ShapeError
from mpcrt.kernels import allocator, bufpool, gemm
from mpcrt.kernels.backend import Backend, select
from mpcrt.kernels.prg import PRG, new_seed
from mpcrt.protocols.rounds import Top
from mpcrt.transport import DEFAULT_TIMEOUT, Transport
from mpcrt.zmq_transport import party_node

log = logging.getLogger("mpcrt")
LOOKAHEAD_MB: int | None = None  # None: mpcrt.config's lookahead_mb (tests set a number)
MAX_PLANS = 1024  # lookahead plans kept per runtime

_current: "Runtime | None" = None


class Posted:
    """An opening whose shares are sent (Runtime.post): `result` once its replies are read."""

    __slots__ = ("result", "finish")

    def __init__(self, result: tuple | None, finish: Callable[[], tuple] | None = None):
        self.result, self.finish = result, finish


class Runtime:
    """One party's view of an MPC session, over the transport it is given (its `node`:
    node ids 0..N-1 are the parties, N the dealer; this party is `transport.id`)."""

    def __init__(self, transport: Transport, precision: int = 16, backend: Backend | None = None):
        n = len(transport.names) - 1
        if not 0 <= transport.id < n:
            raise ConfigError(f"rank {transport.id} is not in 0..{n - 1} for a {n}-party session")
        allocator.tune()  # reuse big numpy temporaries instead of page-faulting fresh mmaps
        self.rank = transport.id
        self.world_size = n
        self.precision = fixedpoint.check_precision(precision)
        self.dealer_id = n
        self.node = transport
        self.backend = backend if backend is not None else default_backend(n)
        self._rounds = 0
        self._by_op: dict[str, dict[str, int]] = {}
        self._scope: str | None = None
        self._dry = False
        self._closed = False
        self._plans: dict = {}  # lookahead key -> the dealer requests its last run made
        self._looking_ahead = False
        cfg = config.current()
        # protocols.fss's choice (tests may set them)
        self.comparison, self.fss_bits, self.network = cfg.comparison, cfg.fss_bits, config.network_link(cfg.network)
        # set by protocols.lookahead while its one-element guess stands for a call (protocols.fss.deciding)
        self.plan_scale, self.plan_online = 1, None
        self._posted: collections.deque[Posted] = collections.deque()  # openings sent, replies not read
        try:
            self._setup()
        except BaseException:
            self.node.close(barrier=False)
            raise

    @classmethod
    def connect(cls, cluster: Cluster, rank: int, secret_key: bytes | None, precision: int | None = None,
                timeout: float = DEFAULT_TIMEOUT, insecure: bool = False, backend: Backend | None = None) -> "Runtime":
        """Party `rank` of a cluster file's session, over ZeroMQ (CurveZMQ unless insecure)."""
        precision = fixedpoint.check_precision(cluster.precision if precision is None else precision)
        return cls(party_node(cluster, rank, secret_key, timeout=timeout, insecure=insecure,
                              sealed_port_offset=config.current().sealed_port_offset), precision, backend)

    def _setup(self) -> None:
        # a seed with the dealer (over the encrypted channel), then one per pair of parties
        self.node.send(self.dealer_id, "hello", np.zeros(0, np.int64))
        seed = self.node.recv(self.dealer_id, "seed", dtype=np.uint8, shape=(16,))
        self.dealer = DealerClient(self.node, self.rank, self.world_size, self.dealer_id, self.backend.prg(bytes(seed)))
        self._pair: dict[int, PRG] = {}
        self._pair_ctr: dict[int, int] = {}
        for j in range(self.rank + 1, self.world_size):
            s = new_seed()
            self.node.send(j, "pairseed", np.frombuffer(s, np.uint8))
            self._pair[j] = self.backend.prg(s)
        for j in range(self.rank):
            self._pair[j] = self.backend.prg(bytes(self.node.recv(j, "pairseed", dtype=np.uint8, shape=(16,))))
        self._pair_ctr = {j: 0 for j in self._pair}
        agreement.check(self)  # the settings that choose protocol steps, the same on every party

    # --------------------------------------------------------------- rounds
    @property
    def peers(self) -> list[int]:
        return [j for j in range(self.world_size) if j != self.rank]

    def open(self, shares: list[np.ndarray], tag: str = "open", donate: bool = False) -> list[np.ndarray]:
        """Open several shared ring arrays together: one round in which everyone sends its
        shares to everyone, or (N >= 3, large buffers) mpcrt.allreduce's two steps.
        donate=True: the caller never changes its arrays again, so a single contiguous
        int64 array is sent as it is instead of a copy of it."""
        if self._dry:
            return [np.zeros(s.shape, np.int64) for s in shares]
        self.drain()
        one = shares[0] if len(shares) == 1 else None
        if donate and isinstance(one, np.ndarray) and one.dtype == np.int64 and one.flags.c_contiguous and one.ndim:
            flat = one.reshape(-1)
        else:  # a new array (sent without a copy: the caller may change its own arrays afterwards)
            flat = (np.concatenate([np.ascontiguousarray(s, np.int64).ravel() for s in shares]) if len(shares) > 1
                    else np.array(shares[0], np.int64).ravel())
        if allreduce.use_split(self.world_size, flat.nbytes):
            total = allreduce.open_split(self.node, self.rank, self.world_size, flat.view(np.uint8),
                                         [(0, flat.nbytes, True)], tag).view(np.int64)
            self._count_round(2)
            return _unflatten(total, shares)
        for j in self.peers:
            self.node.send(j, tag, flat)
        total = None  # flat itself is being sent without a copy: never modify it
        for j in self.peers:
            got = self.node.recv(j, tag, dtype=np.int64, shape=flat.shape)
            if total is None:
                total = flat + got
            else:
                total += got
        self._count_round()
        return _unflatten(total, shares)

    def open_mixed(self, adds: list, xors: list[np.ndarray], tag: str = "open",
                   donate: bool = False) -> tuple[list, list]:
        """One round opening additive int64 shares and XOR shares (any dtype) together.
        An additive entry may be a rounds.Top: only its top bytes travel, and its opening
        is c - d, low bits zero (see Top). donate=True: the caller never changes these
        arrays again, so (for direct openings) each goes out as its own message, as it
        is, instead of being copied into one."""
        return self.collect(self.post(adds, xors, tag, donate))

    def post(self, adds: list, xors: list[np.ndarray], tag: str = "open", donate: bool = False) -> "Posted":
        """The sending half of open_mixed: my shares go out now, `collect` reads the peers'
        (mpcrt.chunked keeps several chunks' openings in flight this way). Openings are
        collected in the order they were posted (collecting a later one collects the earlier
        ones first), and any other exchange with the peers first collects all posted ones, so
        every channel is read in the order it was written on every party."""
        if not adds and not xors:
            return Posted(([], []))
        plain = [a.share if isinstance(a, Top) else a for a in adds]  # for shapes and sizes
        if self._dry:
            return Posted(([np.zeros(np.shape(a), np.int64) for a in plain],
                           [np.zeros(a.shape, a.dtype) for a in xors]))
        shapes = [np.shape(a) for a in plain] + [np.shape(a) for a in xors]  # ascontiguousarray makes 0-d 1-d
        full = sum(8 * int(np.size(a)) for a in plain) + sum(np.asarray(a).nbytes for a in xors)
        if allreduce.use_split(self.world_size, full):  # two steps: Top entries open in full
            self.drain()  # (its second step is sent only after its first is read)
            full_adds = [a.full() if isinstance(a, Top) else a for a in adds]
            parts = [np.ascontiguousarray(a, np.int64) for a in full_adds] + [np.ascontiguousarray(a) for a in xors]
            return Posted(self._open_split(parts, len(adds), shapes, tag))
        # wire parts, and per opened entry: (kind, first part, number of parts, Top bytes)
        parts, plan = [], []
        for a in adds:
            if isinstance(a, Top):
                packed = self.backend.topbytes.pack(a.share, a.nbytes, a.plus, a.add)
                plan.append(("t", len(parts), len(packed), a.nbytes))
                parts += packed
            else:
                plan.append(("a", len(parts), 1, 8))
                parts.append(np.ascontiguousarray(a, np.int64))
        for a in xors:
            plan.append(("x", len(parts), 1, 0))
            parts.append(np.ascontiguousarray(a))
        # (without donate, the caller may change its arrays while they are still being sent)
        mine, receive = self._send_parts(parts, tag) if donate else self._send_copy(parts, tag)
        posted = Posted(None, lambda: self._sum_mixed(plan, shapes, mine, receive(), len(adds)))
        self._posted.append(posted)
        return posted

    def collect(self, posted: "Posted") -> tuple[list, list]:
        """The opened values of a posted opening (reading the earlier posted ones first)."""
        while posted.result is None:
            first = self._posted.popleft()
            first.result = first.finish()
            first.finish = None
            self._count_round()
        return posted.result

    def drain(self) -> None:
        """Read every posted opening's replies (before another exchange with the peers)."""
        while self._posted:
            self.collect(self._posted[-1])

    def _sum_mixed(self, plan: list, shapes: list, mine: list, got: list, n_add: int) -> tuple[list, list]:
        """The openings of open_mixed from my parts and the peers' (`plan`: see post)."""
        out = []
        for (kind, i, cnt, nb), shape in zip(plan, shapes):
            if kind == "t":
                n = mine[i].size
                parts = [mine[i : i + cnt], *[g[i : i + cnt] for g in got]]
                res = self.backend.topbytes.unpack_sum(parts, nb, bufpool.empty(n)[:n])
            else:
                op = np.add if kind == "a" else np.bitwise_xor
                p = mine[i]
                res = op(p, got[0][i], out=bufpool.empty(-(-p.nbytes // 8)).view(p.dtype)[: p.size])
                for g in got[1:]:
                    op(res, g[i], out=res)
            out.append(res.reshape(shape))
        return out[:n_add], out[n_add:]

    def _send_parts(self, parts: list[np.ndarray], tag: str) -> tuple[list, Callable[[], list]]:
        """Every part to every peer as its own message, sent without a copy; returns (my
        parts flat, a function that reads each peer's parts flat)."""
        mine = [p.reshape(-1) for p in parts]
        for j in self.peers:
            for p in mine:
                self.node.send(j, tag, p)
        return mine, lambda: [[self.node.recv(j, tag, dtype=p.dtype, shape=(p.size,)) for p in parts]
                              for j in self.peers]

    def _send_copy(self, parts: list[np.ndarray], tag: str) -> tuple[list, Callable[[], list]]:
        """The parts copied into one message per peer (each at an offset that is a multiple
        of 8 bytes); returns views as _send_parts does. The message is sent without a
        copy, so my views into it must not be changed."""
        offs, off = [], 0
        for p in parts:
            offs.append(off)
            off += -(-p.nbytes // 8) * 8
        buf = bufpool.empty(off // 8).view(np.uint8)  # pooled: no fresh pages
        for p, o, end in zip(parts, offs, offs[1:] + [off]):
            buf[o : o + p.nbytes] = p.reshape(-1).view(np.uint8)
            buf[o + p.nbytes : end] = 0  # padding: never send stale memory
        for j in self.peers:
            self.node.send(j, tag, buf)

        def views(b):
            return [b[o : o + p.nbytes].view(p.dtype) for p, o in zip(parts, offs)]
        return views(buf), lambda: [views(self.node.recv(j, tag, dtype=np.uint8, shape=buf.shape))
                                    for j in self.peers]

    def _open_split(self, parts: list[np.ndarray], n_add: int, shapes: list, tag: str) -> tuple[list, list]:
        """open_mixed in two steps (mpcrt.allreduce): parts back to back in one buffer."""
        sizes = [p.nbytes for p in parts]
        buf = bufpool.empty(-(-sum(sizes) // 8)).view(np.uint8)[: sum(sizes)]
        segs, off = [], 0
        for i, (p, k) in enumerate(zip(parts, sizes)):
            buf[off : off + k] = p.reshape(-1).view(np.uint8)
            segs.append((off, off + k, i < n_add))
            off += k
        total = allreduce.open_split(self.node, self.rank, self.world_size, buf, segs, tag)
        self._count_round(2)
        out, off = [], 0
        for p, k, shape in zip(parts, sizes, shapes):
            out.append(total[off : off + k].view(p.dtype).reshape(shape) if off % p.dtype.itemsize == 0
                       else total[off : off + k].copy().view(p.dtype).reshape(shape))
            off += k
        return out[:n_add], out[n_add:]

    def open_to(self, share: np.ndarray, to: int, tag: str = "reveal") -> np.ndarray | None:
        """Open one ring array to party `to` only (one round); None on the others."""
        if self._dry:
            return np.zeros(share.shape, np.int64) if self.rank == to else None
        self.drain()
        if self.rank != to:
            self.node.send(to, tag, np.array(share, np.int64))  # a copy: sent without one
            self._count_round()
            return None
        total = np.array(share, np.int64, copy=True)
        for j in self.peers:
            total += self.node.recv(j, tag, dtype=np.int64, shape=share.shape)
        self._count_round()
        return total

    def exchange(self, send: dict[int, np.ndarray], recv: dict[int, tuple], tag: str,
                 dtype=np.int64) -> dict[int, np.ndarray]:
        """One round of point-to-point messages: send[j] to j, receive arrays of shape recv[j]."""
        if self._dry:
            return {j: np.zeros(s, dtype) for j, s in recv.items()}
        self.drain()
        for j, a in send.items():
            self.node.send(j, tag, a)
        out = {j: self.node.recv(j, tag, dtype=dtype, shape=s) for j, s in recv.items()}
        self._count_round()
        return out

    def _count_round(self, k: int = 1) -> None:
        self._rounds += k
        if self._scope is not None:
            self._by_op[self._scope]["rounds"] += k

    @contextlib.contextmanager
    def scope(self, name: str):
        """Attribute rounds and bytes to `name` (the outermost scope wins)."""
        if self._scope is not None or self._dry:
            yield
            return
        self._scope = name
        d = self._by_op.setdefault(name, {"rounds": 0, "bytes_sent": 0, "bytes_received": 0, "calls": 0})
        s0, r0 = self.node.bytes_sent, self.node.bytes_received
        try:
            yield
        finally:
            d["bytes_sent"] += self.node.bytes_sent - s0
            d["bytes_received"] += self.node.bytes_received - r0
            d["calls"] += 1
            self._scope = None

    def stats(self) -> dict:
        """Bytes sent/received to/from other parties, dealer bytes apart, rounds, per-op figures.

        `by_op` bytes include dealer traffic that happened inside the op.
        """
        d = self.dealer_id
        return {
            "rank": self.rank,
            "bytes_sent": self.node.bytes_sent - self.node.sent_to[d],
            "bytes_received": self.node.bytes_received - self.node.received_from[d],
            "dealer_bytes_sent": self.node.sent_to[d],
            "dealer_bytes_received": self.node.received_from[d],
            "rounds": self._rounds,
            "dealer_requests": self.dealer.counter,
            "by_op": {k: dict(v) for k, v in self._by_op.items()},
        }

    def reset_stats(self) -> None:
        self.node.bytes_sent = self.node.bytes_received = 0
        self.node.sent_to.clear()
        self.node.received_from.clear()
        self._rounds = 0
        self._by_op.clear()

    # ---------------------------------------------------------------- inputs
    def share(self, value, src: int = 0, precision: int | None = None,
              shape: Sequence | Callable[[tuple], None] | None = None):
        """Secret-share `value` (numpy array, torch tensor or scalar) held by party `src`.

        Other parties pass None. Costs one small message (the shape) from `src`; the
        shares themselves come from PRGs seeded pairwise between parties, so the
        input's bytes never cross the network. `shape` (receivers): the shape src must announce
        (None entries match any size; or a function that raises on a shape it refuses), checked
        before anything is allocated; more than max_share_elements() (MPCRT_MAX_SHARE_MB) is a ProtocolError.
        """
        if self._dry:
            raise MpcError("share() inside a planned function: share the inputs before rt.plan()/rt.preprocess()")
        if not isinstance(src, (int, np.integer)) or not 0 <= src < self.world_size:
            raise ConfigError(f"src must be a party rank in 0..{self.world_size - 1}, got {src!r}")
        f = self.precision if precision is None else fixedpoint.check_precision(precision)
        with self.scope("share"):
            x = None
            if self.rank == src:
                if value is None:
                    raise ShapeError(f"party {src} is the source of this share() but passed None: pass the array")
                x = _encode(value, f)
            return self._share_ring(x, src, f, owned=True, expect=shape)

    def _pair_stream(self, j: int, shape: tuple) -> np.ndarray:
        """The next pair stream with party j, as a new array of `shape` (filled a chunk at a time:
        no pooled block of its size stays behind, kernels.bufpool)."""
        out = np.empty(shape, np.int64)
        self._apply_pair_stream(j, out, None)
        return out

    def _apply_pair_stream(self, j: int, x: np.ndarray, op) -> None:
        """x = op(x, the next pair stream with party j) (op None: x = the stream), expanded a chunk at a time."""
        ctr = self._pair_ctr[j]
        self._pair_ctr[j] += 1
        flat, step = x.reshape(-1), chunked.chunk_elements() or max(x.size, 1)
        buf = np.empty(min(step, flat.size), np.int64) if op is not None else None
        for lo in range(0, flat.size, step):
            part = flat[lo : lo + step]
            if op is None:
                self._pair[j].words_at(ctr, lo, part)
            else:
                op(part, self._pair[j].words_at(ctr, lo, buf[: part.size]), out=part)

    def share_ring(self, ring_value, src: int = 0, fbits: int = 0,
                   shape: Sequence | Callable[[tuple], None] | None = None):
        """Share an int64 array that is already in the ring (encoded with `fbits` fractional bits)."""
        return self._share_ring(ring_value, src, fbits, owned=False, expect=shape)

    def _share_ring(self, ring_value, src: int, fbits: int, owned: bool, expect=None):
        """share_ring; owned: ring_value is a fresh int64 array nobody else holds (it becomes the share)."""
        from mpcrt.tensor import SharedTensor

        self.drain()
        if self.rank == src:
            # keeps 0-d shapes; an owned array (fresh from _encode) becomes the share in place
            mine = np.asarray(ring_value, np.int64) if owned else np.array(ring_value, np.int64, copy=True)
            if not (mine.flags.writeable and mine.flags.c_contiguous):
                mine = mine.copy()
            for j in self.peers:
                self.node.send(j, "share", np.asarray(mine.shape, np.int64))
            for j in self.peers:
                self._apply_pair_stream(j, mine, np.subtract)
            self._count_round()
            return SharedTensor(self, mine, fbits)
        got = self.node.recv(src, "share", dtype=np.int64)
        shape = _announced_shape(got, expect, self.node.name(src))
        self._count_round()
        return SharedTensor(self, self._pair_stream(src, shape), fbits)

    # ----------------------------------------------------- offline / online
    def plan(self, fn, *args, **kwargs) -> list:
        """Run `fn` shape-only (nothing sent, values are dummies) and return its dealer requests.

        Protocols never branch on secret or opened values, so the dry run makes the
        same requests, in the same order, as the real run.
        """
        rec: list = []
        self.dealer.recording = rec
        self._dry = True
        try:
            fn(*args, **kwargs)
        finally:
            self._dry = False
            self.dealer.recording = None
        return rec

    def preprocess(self, fn_or_plan, *args, **kwargs) -> int:
        """Fetch all dealer material for the next run of `fn` (or for a plan) ahead of time.

        Returns the number of requests fetched. The next `fn(*args)` then runs online only.
        """
        plan = fn_or_plan if isinstance(fn_or_plan, list) else self.plan(fn_or_plan, *args, **kwargs)
        fetched = [(n, p) for n, kind, p in self.dealer.prefetch(plan) if kind == "fss"]
        if self.rank and fetched:  # this party's FSS key copies too: the online run then reads no keys
            copies = fss.copies(self)
            for n, p in fetched:
                copies.expect(n, p)
            copies.fetch(self, fetched[-1][0])
        return len(plan)

    @contextlib.contextmanager
    def lookahead(self, key, guess=None):
        """Run a block whose dealer requests are those of its last run with the same `key`
        (a function name, shapes, precisions): they are all sent to the dealer on entry,
        so it deals the later steps while the first rounds run instead of on demand.

        The first run of a key records its requests; `guess()`, if given, supplies a plan
        for that first run (a list of (kind, params)). A run that asks for something else
        abandons the rest of the announced plan (correct, just not ahead). A plan whose
        corrections exceed MPCRT_LOOKAHEAD_MB (default 2048) is asked for on demand, not
        at the start (the corrected party would hold all of it at once; the parties replies
        go to must use the same value, see DealerClient.announce). Nested blocks and dry runs
        pass through. Every party enters the same blocks in the same order.
        """
        if self._looking_ahead or self._dry:
            yield
            return
        d = self.dealer
        key = (key, self.precision)
        plan = self._plans.get(key)
        if plan is None and guess is not None:
            try:
                plan = guess()
            except Exception as e:  # a guess is an optimisation: fall back to asking on demand
                log.debug("lookahead guess for %r failed: %s", key, e)
        plan = plan or []
        # every party numbers the plan alike; only whether party 0 sends it early may differ
        cap_mb = config.current().lookahead_mb if LOOKAHEAD_MB is None else LOOKAHEAD_MB
        first, send = d.counter, bool(plan) and d.correction_bytes(plan) <= cap_mb << 20
        if d.announce(plan, send=send) and send and self.rank:  # the FSS key copies sent ahead come here too
            for i, (kind, p) in enumerate(plan):
                if kind == "fss":
                    fss.copies(self).expect(first + i, p)
        d.log, self._looking_ahead = [], True
        ok = False
        try:
            yield
            ok = True
        finally:
            if ok:
                if len(self._plans) >= MAX_PLANS and key not in self._plans:
                    self._plans.pop(next(iter(self._plans)))  # the oldest
                self._plans[key] = d.log
            d.log, self._looking_ahead = None, False
            d.abandon()

    # ------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Say goodbye to the peers and the dealer, then close the channels."""
        global _current
        if self._closed:
            return
        self._closed = True
        try:
            self.node.send(self.dealer_id, "bye", np.zeros(0, np.int64))
            self.node.close(barrier=True, barrier_peers=self.peers)
        finally:
            if _current is self:
                _current = None

    def abort(self) -> None:
        """Close without the goodbye barrier (after a failure). Where this node raised a member's
        PeerFailure (even one the program caught before it exited), the others hear it first
        (the last word: they name that member, not us)."""
        if not self._closed:
            self._closed = True
            if getattr(self.node, "raised", None) is not None:
                self.node.tell_gone(self.node.raised)
            self.node.close(barrier=False)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.close()
        else:
            self.abort()


def _encode(value, f: int) -> np.ndarray:
    """fixedpoint.encode(value, f) a chunk at a time (its float temporaries stay chunk-sized)."""
    a = fixedpoint.to_numpy(value)
    step = chunked.chunk_elements()
    if not step or a.size <= step or a.dtype == np.int64:
        return fixedpoint.encode(a, f)
    flat = a.reshape(-1)
    out = np.empty(a.shape, np.int64)
    for lo in range(0, flat.size, step):
        out.reshape(-1)[lo : lo + step] = fixedpoint.encode(flat[lo : lo + step], f)
    return out


def _unflatten(total: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """Consecutive pieces of the flat int64 array `total`, shaped as the arrays `like`."""
    out, off = [], 0
    for s in like:
        out.append(total[off : off + s.size].reshape(s.shape))
        off += s.size
    return out


def init(precision: int | None = None, timeout: float | None = None) -> Runtime:
    """The runtime of this party, built from what `mpcrt launch` or `mpcrt party` set
    (mpcrt.config: MPCRT_CLUSTER, MPCRT_RANK, MPCRT_SECRET_KEY, ...).

    Calling it again returns the same runtime. The channels close at exit.
    """
    global _current
    if _current is not None:
        return _current
    cfg = config.current()
    if cfg.cluster is None or cfg.rank is None:
        raise ConfigError(
            "mpcrt.init() found no launch settings: run the script with "
            "`mpcrt launch -n N script.py` or `mpcrt party --cluster FILE --rank I script.py`"
        )
    cluster = load_cluster(cfg.cluster)
    secret = None if cfg.insecure else load_secret_key(cfg.secret_key or "")
    precision = cfg.precision if precision is None else precision
    timeout = cfg.timeout if timeout is None else timeout
    backend = default_backend(cluster.world_size)  # --device cuda without CuPy or a GPU stops here
    t0 = time.perf_counter()
    rt = Runtime.connect(cluster, cfg.rank, secret, precision=precision, timeout=timeout, insecure=cfg.insecure,
                         backend=backend)
    log.debug("party %d ready in %.2fs", rt.rank, time.perf_counter() - t0)
    _current = rt
    atexit.register(_close_at_exit, rt)
    return rt


def _close_at_exit(rt: Runtime) -> None:
    try:
        rt.close()
    except MpcError:
        rt.abort()


def default_backend(world_size: int) -> Backend:
    """The back end the configuration names (MPCRT_DEVICE, MPCRT_NATIVE_AES, MPCRT_GEMM), with this
    process's share of the host's cores (MPCRT_THREADS, else cores // (N + 1)): chosen once
    per runtime and passed down to every protocol as `rt.backend`."""
    cfg = config.current()
    return select(cfg.device, gemm.cpu_share(world_size, cfg.threads), cfg.native_aes, cfg.gemm)


MAX_SHARE_ELEMENTS = 1 << 32  # the most elements a share() may announce (32 GiB of shares): a peer's 8-byte claim


def max_share_elements() -> int:
    """The most elements a peer's share() may announce to this party: MPCRT_MAX_SHARE_MB, else half this
    machine's memory; never above MAX_SHARE_ELEMENTS. The receiver fills what is announced, so the cap
    bounds what one 8-byte claim of an insider can make it allocate."""
    mb = config.current().max_share_mb
    if mb is None:
        try:
            mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 >> 20
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name: the fixed cap
            mb = MAX_SHARE_ELEMENTS * 8 >> 20
    return max(1, min(MAX_SHARE_ELEMENTS, (int(mb) << 20) // 8))


def _announced_shape(got: np.ndarray, expect: Sequence | None, who: str) -> tuple:
    """The shape a share()'s source announced, checked before anything is allocated for it: at most 32
    non-negative dimensions and max_share_elements() elements (else ProtocolError), and `expect`: a shape
    (None entries: any size; else ShapeError) or a function that raises on a shape it refuses."""
    if got.ndim != 1 or got.size > 32 or (got < 0).any():
        raise ProtocolError(who, f"announced a malformed shape for share(): {got.tolist()!r}")
    shape = tuple(int(d) for d in got)
    cap = max_share_elements()
    if math.prod(shape) > cap:
        raise ProtocolError(who, f"announced a share() of shape {shape}: more than {cap} elements "
                                 f"({cap * 8 >> 20} MB, MPCRT_MAX_SHARE_MB); share a large input in parts "
                                 "or raise MPCRT_MAX_SHARE_MB on the receivers")
    if callable(expect):
        expect(shape)
    elif expect is not None:
        want = tuple(expect)
        if len(want) != len(shape) or any(w is not None and int(w) != d for w, d in zip(want, shape)):
            raise ShapeError(f"{who} shares an input of shape {shape}, this party expects {want} (None: any size)")
    return shape

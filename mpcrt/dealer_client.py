"""A party's side of the dealer: numbered requests, seed expansion, prefetching.

Every call of `request` takes the next request number. Party 0 sends the request
(kind, params) at once, so the dealer computes while the protocol runs. Each request
has one corrected party (correlations.corrected_party: party 0, though any choice
works): it reads the dealer's correction when the protocol needs it, the others
expand their shares from their seed. Every party runs the same program, so each
knows which replies come to it, in order; a reply's tag carries its request number.
`prefetch` takes a recorded plan and fetches everything ahead, so the online phase
never waits on the dealer. Outside prefetch, an uncorrected party's truncation-with-powers
tuples stay unexpanded (kernels.prg.LazyRows) until the kernel that uses them expands
them a chunk at a time.
"""
from __future__ import annotations

import collections

import msgpack
import numpy as np

from mpcrt import correlations
from mpcrt.errors import ProtocolError
from mpcrt.kernels.prg import PRG
from mpcrt.transport import Transport


def reply_tag(n: int) -> str:
    """The frame tag of the dealer's reply to request n."""
    return f"corr{n}"


class Material:
    """The arrays of one request.

    `own()`: this party's PRG-expanded arrays, available at once. `get()`: all arrays,
    for the request's corrected party including the dealer's corrections (waits for
    them if needed).
    """

    __slots__ = ("_client", "_n", "_own", "_value")

    def __init__(self, client: "DealerClient", n: int, value=None):
        self._client, self._n, self._own, self._value = client, n, None, value

    def own(self) -> dict[str, np.ndarray]:
        if self._value is not None:
            return self._value
        if self._own is None:
            self._own = self._client._expand(self._n)
        return self._own

    def get(self) -> dict[str, np.ndarray]:
        if self._value is None:
            self._value = self._client._complete(self._n, self.own())
        return self._value


class DealerClient:
    def __init__(self, node: Transport, rank: int, world: int, dealer_id: int, prg: PRG):
        """`prg`: keyed with the seed this party agreed with the dealer (from the runtime's
        back end, `Backend.prg`)."""
        self.node, self.rank, self.world, self.dealer_id = node, rank, world, dealer_id
        self.prg = prg
        self.counter = 0
        self._requests: dict[int, tuple[str, dict]] = {}
        self._ready: dict[int, dict] = {}
        self._planned: dict[int, tuple[str, dict]] = {}
        self._corr: dict[int, np.ndarray] = {}
        # (request, reply parts) due here, not read
        self._awaiting: collections.deque[tuple[int, list[int]]] = collections.deque()
        self._announced: dict[int, tuple[str, dict]] = {}  # numbered ahead, handed out lazily by request()
        self._sent_ahead: set[int] = set()  # announced numbers party 0 already sent to the dealer
        self._abandoned: set[int] = set()  # sent ahead, never used, due here: replies dropped
        self.recording: list | None = None
        self.log: list | None = None  # when a list, request() appends (kind, params)

    def request(self, kind: str, **params) -> Material:
        """Take the next request number for `kind` with `params` (shapes as tuples)."""
        p = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
        if self.recording is not None:
            self.recording.append((kind, p))
            k = correlations.kind(kind)
            shapes = [e[1] for e in correlations.own_layout(k, p)] + correlations.correction_shapes(kind, p)
            names = [e[0] for e in correlations.own_layout(k, p)] + [n for n, _, _ in k.corrected(p)]
            return Material(self, -1, {n: np.zeros(s, np.int64) for n, s in zip(names, shapes)})
        if self.log is not None:
            self.log.append((kind, p))
        n = self.counter
        if n in self._announced:
            if self._announced[n] == (kind, p):
                self.counter += 1
                self._requests[n] = self._announced.pop(n)
                if n not in self._sent_ahead:
                    self._dispatch([(n, kind, p)])
                self._sent_ahead.discard(n)
                return Material(self, n)
            self.abandon()  # the run left the announced plan: skip what is left of it
            n = self.counter
        self.counter += 1
        if n in self._planned:
            want = self._planned.pop(n)
            if want != (kind, p):
                raise ProtocolError(
                    "local program",
                    f"request #{n} is {kind} {p} but the preprocessed plan had {want[0]} {want[1]}: "
                    "the online run differs from the planned one",
                )
            return Material(self, n, self._ready.pop(n))
        self._requests[n] = (kind, p)
        self._dispatch([(n, kind, p)])
        return Material(self, n)

    def prefetch(self, plan: list[tuple[str, dict]]) -> list[tuple[int, str, dict]]:
        """Fetch and expand the material of `plan`'s requests, numbered from the current counter;
        returns the (number, kind, params) of those fetched now."""
        self.abandon()  # an explicit prefetch supersedes an announced plan
        first = max([self.counter] + [n + 1 for n in self._planned])  # after anything planned already
        batch = []
        for i, (kind, p) in enumerate(plan):
            n = first + i
            if n in self._planned or n in self._requests:
                continue
            self._requests[n] = (kind, p)
            batch.append((n, kind, p))
        if batch:
            self._dispatch(batch)
        for n, kind, p in batch:
            self._ready[n] = self._complete(n, self._expand(n, lazy=False))  # all expanded ahead of the online run
            self._planned[n] = (kind, p)
        return batch

    def announce(self, plan: list[tuple[str, dict]], send: bool = True) -> bool:
        """Number the requests of `plan` from the current counter; party 0 sends them to
        the dealer now (if `send`), without waiting: the dealer deals them while the
        program runs and `request` hands them out in order (sending any not sent yet).
        Every party calls this at the same point with the same plan and `send` (the
        parties a reply goes to count on it; a mismatch shows as a tag error). Returns
        False (and does nothing) if other requests are outstanding."""
        if not plan or self._planned or self._announced:
            return False
        batch = [(self.counter + i, kind, p) for i, (kind, p) in enumerate(plan)]
        self._announced = {n: (kind, p) for n, kind, p in batch}
        if send:
            self._dispatch(batch)
            self._sent_ahead = set(self._announced)
        return True

    @staticmethod
    def correction_bytes(plan: list[tuple[str, dict]]) -> int:
        """What the dealer would send for `plan` (to all parties together)."""
        return 8 * sum(correlations.flat_words(correlations.kind(k).corrected(p)) for k, p in plan)

    def abandon(self) -> None:
        """Give up the announced requests not used yet: their numbers are skipped (on every
        party alike, as every party runs the same program) and the parties they were due
        to drop their replies."""
        if self._announced:
            self.counter = max(self.counter, max(self._announced) + 1)
            gone = {n for n in self._sent_ahead & set(self._announced) if self._due_here(n)}
            got = gone & set(self._corr)  # replies already read while waiting for others
            for n in got:
                del self._corr[n]
            self._abandoned.update(gone - got)
            self._announced, self._sent_ahead = {}, set()

    def discard_prefetched(self) -> int:
        """Drop material fetched ahead and not used (a serving party whose next request has another
        shape): its request numbers are skipped. Every party must call it at the same point.
        Returns how many requests were dropped."""
        n = len(self._planned)
        if n:
            self.counter = max(self.counter, max(self._planned) + 1)
            self._planned.clear()
            self._ready.clear()
        return n

    @property
    def prefetched(self) -> int:
        """How many requests are fetched ahead and not yet used."""
        return len(self._planned)

    def _due_here(self, n: int) -> bool:
        """Whether request n's corrections come to this party."""
        return correlations.corrected_party(n, self.world) == self.rank

    def _dispatch(self, batch: list) -> None:
        """Party 0 sends the requests to the dealer; every party notes the replies due to it."""
        if self.rank == 0:
            raw = msgpack.packb([[n, k, p] for n, k, p in batch], use_bin_type=True)
            self.node.send(self.dealer_id, "req", np.frombuffer(raw, np.uint8))
        self._awaiting.extend((n, correlations.reply_words(k, p)) for n, k, p in batch if self._due_here(n))

    def _expand(self, n: int, lazy: bool = True) -> dict[str, np.ndarray]:
        """This party's PRG-derived arrays of request n; `lazy`: tuples the kernels can
        expand a chunk at a time where they use them stay unexpanded (correlations.expand_party)."""
        kind, p = self._requests[n]
        return correlations.expand_party(self.prg, n, kind, p, self._due_here(n), lazy)

    def _complete(self, n: int, own: dict) -> dict[str, np.ndarray]:
        kind, p = self._requests.pop(n)
        if not self._due_here(n):
            return own
        flat = self._corr.pop(n, None)
        while flat is None:  # replies come in request order; keep those of other requests
            m, sizes = self._awaiting.popleft()
            got = [self.node.recv(self.dealer_id, reply_tag(m), dtype=np.int64, shape=(w,)) for w in sizes]
            if m == n:
                flat = got
            elif m in self._abandoned:
                self._abandoned.discard(m)
            else:
                self._corr[m] = got
        out = dict(own)
        out.update(correlations.assemble(kind, p, flat))
        return out

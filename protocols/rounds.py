"""Running several protocols in lockstep so that their openings share rounds.

A protocol written as a generator yields `Open(add=[...], xor=[...])` each time it
needs values opened and receives `(added, xored)`; its return value is its result.
`run(rt, *gens)` advances every generator one step per round and opens everything
they asked for in that round with one message per peer (`rt.open_mixed`). So a
polynomial pipeline can run inside the rounds of a comparison at no extra latency.
`Top` and `narrow` send only the top bytes of a share whose opening is truncated right after.

Rounds: those of the longest generator run (openings of a round share one message per peer).
Bytes per element per peer: the generators' own, unchanged (a Top opening: 4-6 instead of
  8, the fewest for which N 2^(64 - 8 nbytes) 16 <= 2^k, so it grows with N).
Dealer words per element: none of its own.
Error: none of its own; a Top opening moves the truncation after it by -1 with
  probability <= 1/16.
Reference: docs/design.md, 'Protocols' (lockstep rounds).
"""
from __future__ import annotations

import dataclasses
from typing import Generator

import numpy as np


@dataclasses.dataclass
class Top:
    """An additive share of which only the top `nbytes` bytes of each element travel (4 to 6:
    bits s = 64 - 8 nbytes and up), for an opening that is truncated right after. The
    opening is then c - d with 0 <= d < N 2^s, its low s bits zero (kernels.topbytes);
    where the runtime opens it in two steps (mpcrt.allreduce) it is opened in full (d = 0).
    Reveals nothing beyond c: each party sends a function of its share, and c with the
    receiver's own share determines the sender's share."""
    share: np.ndarray
    nbytes: int
    plus: np.ndarray | None = None  # opened: share + plus + add (packed in one pass, no sum stored)
    add: int = 0

    def full(self) -> np.ndarray:
        """share + plus + add as one int64 array (for a full opening)."""
        return masked_sum(self.share, self.plus, self.add)


def masked_sum(x: np.ndarray, plus: np.ndarray | None = None, add: int = 0) -> np.ndarray:
    """x + plus + add as a new int64 array (an array even for 0-d operands): a share masked
    for an opening (plus the mask's share, add a public constant on party 0)."""
    if plus is None:
        z = np.array(x, np.int64, copy=True)
    else:
        z = np.add(x, plus, dtype=np.int64, out=np.empty(np.shape(x), np.int64))
    if add:
        z += np.int64(add)
    return z


def top_bytes(k: int, world: int) -> int:
    """The fewest bytes (4, 5, 6; 8 for none) a share of an opening truncated by k bits may
    send while the dropped low bits move the truncation by one unit with probability at
    most 1/16 (d / 2^k <= N 2^(s-k) <= 1/16)."""
    for nb in (4, 5, 6):
        if world * 2 ** (64 - 8 * nb) * 16 <= 2**k:
            return nb
    return 8


def narrow(x: np.ndarray, k: int, world: int, plus: np.ndarray | None = None, add: int = 0):
    """x + plus + add as an opening for a truncation by k: a Top where that sends fewer
    bytes, else the sum as an int64 array."""
    nb = top_bytes(k, world)
    top = Top(x, nb, plus, add)
    return top if nb < 8 else top.full()


@dataclasses.dataclass
class Open:
    add: list = dataclasses.field(default_factory=list)  # int64 additive shares (or Top)
    xor: list = dataclasses.field(default_factory=list)  # XOR shares (uint64 or uint8)
    # fresh: the arrays were made for this opening and nobody changes them again, so
    # they may be sent as they are (no copy into one message); see Runtime.open_mixed
    fresh: bool = False

    def sends_fresh(self) -> bool:
        return self.fresh or not (self.add or self.xor)


Steps = Generator[Open, tuple, object]


def lockstep(*gens: Steps) -> Steps:
    """A generator that runs sub-generators in the same rounds; returns their results.

    For composing protocols inside another generator (`yield from lockstep(a, b)`)."""
    replies: list = [None] * len(gens)
    results: list = [None] * len(gens)
    active = list(range(len(gens)))
    while active:
        asks: dict[int, Open] = {}
        for i in list(active):
            try:
                asks[i] = gens[i].send(replies[i])
            except StopIteration as e:
                results[i] = e.value
                active.remove(i)
        if not asks:
            break
        got_a, got_x = yield Open(add=[a for o in asks.values() for a in o.add],
                                  xor=[a for o in asks.values() for a in o.xor],
                                  fresh=all(o.sends_fresh() for o in asks.values()))
        ia = ix = 0
        for i, o in asks.items():
            replies[i] = (got_a[ia : ia + len(o.add)], got_x[ix : ix + len(o.xor)])
            ia += len(o.add)
            ix += len(o.xor)
    return results


def run(rt, *gens: Steps) -> list:
    """Drive the generators to completion, one message per peer per round; return their results."""
    return _drive(rt, lockstep(*gens))


def _drive(rt, gen: Steps):
    reply = None
    while True:
        try:
            ask = gen.send(reply)
        except StopIteration as e:
            return e.value
        reply = rt.open_mixed(ask.add, ask.xor, donate=ask.fresh)


def run1(rt, gen: Steps):
    return run(rt, gen)[0]


def opened(reply: tuple) -> list[np.ndarray]:
    """The additive openings of a reply, for generators that only open additively."""
    return reply[0]

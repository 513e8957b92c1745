"""Running several protocols in lockstep so that their openings share rounds.

A protocol written as a generator yields `Open(add=[...], xor=[...])` each time it
needs values opened and receives `(added, xored)`; its return value is its result.
`run(rt, *gens)` advances every generator one step per round and opens everything
they asked for in that round with one message per peer (`rt.open_mixed`). So a
polynomial pipeline can run inside the rounds of a comparison at no extra latency.
"""
from __future__ import annotations

import dataclasses
from typing import Generator

import numpy as np


@dataclasses.dataclass
class Open:
    add: list = dataclasses.field(default_factory=list)  # int64 additive shares
    xor: list = dataclasses.field(default_factory=list)  # XOR shares (uint64 or uint8)


Steps = Generator[Open, tuple, object]


def run(rt, *gens: Steps) -> list:
    """Drive the generators to completion; return their results in order."""
    results: list = [None] * len(gens)
    replies: dict[int, tuple | None] = {i: None for i in range(len(gens))}
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
        adds = [a for o in asks.values() for a in o.add]
        xors = [a for o in asks.values() for a in o.xor]
        got_a, got_x = rt.open_mixed(adds, xors)
        ia = ix = 0
        for i, o in asks.items():
            replies[i] = (got_a[ia : ia + len(o.add)], got_x[ix : ix + len(o.xor)])
            ia += len(o.add)
            ix += len(o.xor)
    return results


def run1(rt, gen: Steps):
    return run(rt, gen)[0]


def opened(reply: tuple) -> list[np.ndarray]:
    """The additive openings of a reply, for generators that only open additively."""
    return reply[0]

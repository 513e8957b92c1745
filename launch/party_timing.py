"""Timing on the party side of the benchmarks (launch/bench_party.py, benchmarks/models.py):
barriers around a timed call, its rounds and bytes, and gathering every party's figures."""
from __future__ import annotations

import time
from typing import Any, Callable

import msgpack
import numpy as np

COUNTED = ("bytes_sent", "bytes_received", "dealer_bytes_sent", "dealer_bytes_received", "rounds")


def barrier(rt) -> None:
    """All parties reach this point (one opening of a 1-element zero; not part of any timed call)."""
    rt.open([np.zeros(1, np.int64)], "barrier")


def timed(rt, fn: Callable[[], Any], by_op: bool = False) -> tuple[float, Any, dict]:
    """(seconds, output, rt.stats() delta of COUNTED) of one call of fn between two barriers;
    the barriers are outside both the time and the counts. by_op: also the per-op deltas."""
    barrier(rt)
    s0 = rt.stats()
    t0 = time.perf_counter()
    out = fn()
    t = time.perf_counter() - t0
    s1 = rt.stats()
    barrier(rt)
    delta = {k: s1[k] - s0[k] for k in COUNTED}
    if by_op:
        delta["by_op"] = {}
        for op, d in s1["by_op"].items():
            b = s0["by_op"].get(op, {})
            dd = {k: v - b.get(k, 0) for k, v in d.items()}
            if any(dd.values()):
                delta["by_op"][op] = dd
    return t, out, delta


def gather(rt, obj) -> list | None:
    """Every party's `obj` (msgpack-able) on party 0, in rank order; None elsewhere."""
    if rt.rank:
        rt.node.send(0, "gather", np.frombuffer(msgpack.packb(obj), np.uint8))
        return None
    return [obj] + [msgpack.unpackb(rt.node.recv(j, "gather", dtype=np.uint8).tobytes(), strict_map_key=False)
                    for j in rt.peers]


def slowest(per_party: list[dict], key: str) -> list[float]:
    """Per repeat, the slowest party's time under `key`."""
    return [max(ts) for ts in zip(*[p[key] for p in per_party])]

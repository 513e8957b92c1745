"""Opening shares among N >= 3 parties in two steps, for less traffic.

A direct opening is one round: every party sends its whole share to every other, so
each sends and receives (N - 1) L bytes for an L-byte opening. The split opening
(reduce-scatter, then all-gather) cuts the buffer into N chunks; party i sums chunk i of
everyone's shares and sends that sum to everyone. Each party then sends and receives
2 (N - 1) / N L bytes (4/3 L at N = 3 instead of 2 L; at N = 2 it would save nothing),
in two rounds instead of one, and no party learns more than the opened value: the
chunk sums it receives are chunks of that value.

The runtime splits an opening when N >= 3 and the buffer is at least SPLIT_BYTES long
(MPCRT_SPLIT_OPEN_BYTES, mpcrt.config; 0 splits every opening, -1 none; every party must use the
same value, or the first split opening fails with a ProtocolError on the frame's shape).
The default, 512 KiB, is where the bytes saved (2/3 L at N = 3) take about as long on a
link as one more one-way delay: 340 KiB at 0.25 ms and 10 Gbit/s (LAN) and at 25 ms and 100 Mbit/s (WAN).
"""
from __future__ import annotations

import numpy as np

from mpcrt import config
from mpcrt.kernels import bufpool
from mpcrt.transport import Transport

SPLIT_BYTES: int | None = None  # None: mpcrt.config's split_open_bytes (tests set a number)


def use_split(world_size: int, nbytes: int) -> bool:
    """Whether an opening of nbytes per party goes in two steps (all parties agree)."""
    split = config.current().split_open_bytes if SPLIT_BYTES is None else SPLIT_BYTES
    return world_size > 2 and split >= 0 and nbytes >= split


def bounds(nbytes: int, n: int) -> list[int]:
    """Chunk edges: n chunks of about equal size, inner edges on multiples of 8 bytes."""
    return [((nbytes * i) // n) & ~7 for i in range(n)] + [nbytes]


def reduce_into(acc: np.ndarray, other: np.ndarray, segs: list[tuple[int, int, bool]], lo: int) -> None:
    """acc += other (byte views of the range starting at byte lo) segment by segment:
    segs are (start, end, additive) byte ranges of the whole buffer; additive ranges are
    int64 words summed mod 2^64 and start on multiples of 8, the others are XORed."""
    hi = lo + acc.size
    for start, end, additive in segs:
        a, b = max(start, lo), min(end, hi)
        if a >= b:
            continue
        x, y = acc[a - lo : b - lo], other[a - lo : b - lo]
        if additive:
            np.add(x.view(np.int64), y.view(np.int64), out=x.view(np.int64))
        elif a % 8 == 0 and (b - a) % 8 == 0:
            np.bitwise_xor(x.view(np.uint64), y.view(np.uint64), out=x.view(np.uint64))
        else:
            np.bitwise_xor(x, y, out=x)


def open_split(node: Transport, rank: int, world_size: int, buf: np.ndarray, segs: list, tag: str) -> np.ndarray:
    """The opened buffer (uint8, same length as buf, a new array) by reduce-scatter and
    all-gather. buf: this party's shares, laid out as segs say; it is sent without a
    copy, so the caller must not change it afterwards."""
    edges = bounds(buf.size, world_size)
    peers = [j for j in range(world_size) if j != rank]
    for j in peers:  # step 1: chunk j of my share to party j
        node.send(j, tag, buf[edges[j] : edges[j + 1]])
    lo, hi = edges[rank], edges[rank + 1]
    out = bufpool.empty(-(-buf.size // 8)).view(np.uint8)[: buf.size]
    mine = out[lo:hi]
    mine[...] = buf[lo:hi]
    for j in peers:
        reduce_into(mine, node.recv(j, tag, dtype=np.uint8, shape=(hi - lo,)), segs, lo)
    done = mine.copy()  # sent without a copy while out is filled in
    for j in peers:  # step 2: my chunk of the opened value to everyone
        node.send(j, tag, done)
    for j in peers:
        out[edges[j] : edges[j + 1]] = node.recv(j, tag, dtype=np.uint8, shape=(edges[j + 1] - edges[j],))
    return out

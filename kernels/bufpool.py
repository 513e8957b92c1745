"""Reused large int64 buffers (glibc maps every allocation above 32 MiB afresh and unmaps
it on free, so a protocol step that expands 100 MB of dealer material page-faults all
of it in again, which under load cost the dealer 3-4x its compute).

`empty(n)` hands out an array backed by a pooled block (the smallest idle one of n to
2n words, else a new one); the block returns to the pool
when the last array or view using it is gone (a weakref finalizer on a ctypes lease
that every view keeps alive), so reuse never aliases live data.
"""
from __future__ import annotations

import collections
import ctypes
import threading
import weakref

import numpy as np

THRESHOLD = 1 << 21  # words (16 MB): smaller arrays come from the heap, which reuses them
GRAIN = 1 << 18  # block sizes are rounded up to multiples of 2 MB
CAP = 3 << 30  # bytes kept idle in the pool at most

_free: dict[int, list[np.ndarray]] = {}
_returned: collections.deque = collections.deque()  # blocks whose last view died, not yet in _free
_idle = 0
_lock = threading.Lock()


def _give_back(block: np.ndarray) -> None:
    """Finalizer of a lease: queue the block for reuse. No lock here: a finalizer may run
    inside a garbage collection that starts while `empty` holds the lock."""
    _returned.append(block)  # deque.append is atomic


def _reclaim() -> None:
    """Move returned blocks into the pool (caller holds the lock)."""
    global _idle
    while _returned:
        block = _returned.popleft()
        if _idle + block.nbytes <= CAP:
            _free.setdefault(block.size, []).append(block)
            _idle += block.nbytes


def empty(n: int) -> np.ndarray:
    """An uninitialised int64 array of n words."""
    global _idle
    if n < THRESHOLD:
        return np.empty(n, np.int64)
    size = -(-n // GRAIN) * GRAIN
    with _lock:  # best fit among idle blocks of size..2 size: fewer fresh pages (first touch is slow)
        _reclaim()
        fits = [k for k in _free if size <= k <= 2 * size and _free[k]]
        block = _free[min(fits)].pop() if fits else None
        if block is not None:
            _idle -= block.nbytes
    if block is None:
        block = np.empty(size, np.int64)
    lease = (ctypes.c_int64 * n).from_address(block.ctypes.data)
    weakref.finalize(lease, _give_back, block)
    return np.ctypeslib.as_array(lease)

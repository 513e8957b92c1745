"""Large elementwise operations in chunks of bounded size, several chunks in flight.

An elementwise method (a product, a truncation, a comparison, relu, exp, the activations,
...) on a tensor of more than MPCRT_CHUNK_ELEMENTS elements runs on consecutive flat chunks
of that size: each chunk runs the method's unchanged protocol code in a fiber (a thread of
which only one runs at a time: control passes back and forth through two queues), with a
runtime view (`ChunkView`) whose openings go to the driver instead of the network. The
driver keeps up to WINDOW chunks in flight: it posts a chunk's opening (Runtime.post: the
shares go out at once), reads the oldest posted one and resumes that chunk, which computes
its next step while the other chunks' messages are on the wire; a finished chunk is
replaced by the next one, whose dealer requests go out then. Every party runs the same
driver over the same chunks, so all of them post, read and number dealer requests in the
same order. A reveal of a large tensor opens and decodes it a chunk at a time.

A party then holds the operands and the result in full plus WINDOW chunks' working set
(their dealer material and temporaries); each dealer request is chunk-sized, so the
dealer's working set is bounded too.

Rounds: each chunk opens in its own messages: a chunked op counts chunks x (the op's
  rounds) rounds, up to WINDOW of them in flight together.
Bytes per element per peer: the op's own, unchanged.
Dealer words per element: the op's own, in chunk-sized requests.
Error: the op's own: each chunk is the op on its elements (exact ops give the unchunked
  result; truncating ones differ from it only within their stated error).
Reference: docs/design.md, 'Bounded memory'.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import numbers
import queue
import threading
from typing import Any, Callable, Iterable

import numpy as np

from mpcrt import config
from mpcrt.errors import MpcError
from mpcrt.protocols import fixedpoint
from mpcrt.protocols.shared import SharedTensor

CHUNK_ELEMENTS: int | None = None  # None: mpcrt.config's chunk_elements (tests set a number)
WINDOW = 3  # chunks in flight at once
_ASK, _DONE, _ERROR, _CANCEL = "ask", "done", "error", object()


def chunk_elements() -> int:
    """Elements per chunk (0: elementwise ops never chunk); the same on every party."""
    return config.current().chunk_elements if CHUNK_ELEMENTS is None else CHUNK_ELEMENTS


class _Cancelled(BaseException):
    """Raised inside a chunk's fiber when the driver gives up on it (another chunk failed)."""


class _Fiber:
    """`job(fiber)` on its own thread, run by `resume` up to its next opening (`ask`) or its end."""

    def __init__(self, job: Callable[["_Fiber"], Any]):
        self._to: queue.SimpleQueue = queue.SimpleQueue()
        self._back: queue.SimpleQueue = queue.SimpleQueue()
        self.done = False
        self._thread = threading.Thread(target=self._main, args=(job,), name="mpcrt-chunk", daemon=True)
        self._thread.start()

    def _main(self, job) -> None:
        if self._to.get() is _CANCEL:
            self._back.put((_DONE, None))
            return
        try:
            self._back.put((_DONE, job(self)))
        except _Cancelled:
            self._back.put((_DONE, None))
        except BaseException as e:  # handed to the driver, which raises it
            self._back.put((_ERROR, e))

    def ask(self, opening: tuple) -> tuple:
        """In the fiber: hand an opening to the driver, wait for its result."""
        self._back.put((_ASK, opening))
        got = self._to.get()
        if got is _CANCEL:
            raise _Cancelled
        return got

    def resume(self, reply) -> tuple[str, Any]:
        """In the driver: run the fiber (given `reply`) to its next opening or its end."""
        self._to.put(reply)
        what, value = self._back.get()
        if what != _ASK:
            self.done = True
            self._thread.join()
        if what == _ERROR:
            raise value
        return what, value

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            self._to.put(_CANCEL)
            self._back.get()
            self._thread.join()


class ChunkView:
    """The runtime as one chunk's protocol code sees it: the real one's attributes and
    methods, except the openings, which go to the driver (a shape-only dry run opens
    nothing and goes straight to the runtime)."""

    __slots__ = ("_rt", "_fiber")

    def __init__(self, rt, fiber: _Fiber):
        object.__setattr__(self, "_rt", rt)
        object.__setattr__(self, "_fiber", fiber)

    def __getattr__(self, name: str):
        return getattr(self._rt, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._rt, name, value)

    def open(self, shares: list[np.ndarray], tag: str = "open", donate: bool = False) -> list[np.ndarray]:
        if self._rt._dry:
            return self._rt.open(shares, tag, donate)
        return self._fiber.ask((list(shares), [], tag, donate))[0]

    def open_mixed(self, adds: list, xors: list, tag: str = "open", donate: bool = False) -> tuple[list, list]:
        if self._rt._dry:
            return self._rt.open_mixed(adds, xors, tag, donate)
        return self._fiber.ask((adds, xors, tag, donate))


def drive(rt, jobs: Iterable[Callable[[ChunkView], Any]], window: int = WINDOW) -> None:
    """Run each job(view) as a fiber, up to `window` at once, their openings in flight together."""
    todo = iter(jobs)
    flight: collections.deque = collections.deque()  # (fiber, its posted opening), oldest first
    fibers: list[_Fiber] = []

    def step(f: _Fiber, reply) -> None:
        what, value = f.resume(reply)
        if what == _ASK:
            adds, xors, tag, donate = value
            flight.append((f, rt.post(adds, xors, tag, donate)))

    try:
        more = True
        while True:
            while more and len(flight) < window:
                job = next(todo, None)
                if job is None:
                    more = False
                    break
                f = _Fiber(lambda fb, job=job: job(ChunkView(rt, fb)))
                fibers.append(f)
                step(f, None)
            if not flight:
                return
            f, posted = flight.popleft()
            step(f, rt.collect(posted))
    except BaseException:
        for f in fibers:
            f.cancel()
        raise


@contextlib.contextmanager
def _no_lookahead(rt):
    """Chunks ask the dealer as they go: one chunk's lookahead plan would be abandoned by the
    next chunk's requests (Runtime.lookahead numbers a plan for one block at a time)."""
    before = rt._looking_ahead
    rt._looking_ahead = True
    try:
        yield
    finally:
        rt._looking_ahead = before


def _how(v, shape: tuple) -> str | None:
    """How an argument goes to each chunk: 'cut' (x's shape: its chunk), 'whole' (a scalar
    or a public size-1 array), None (anything else: the op does not chunk)."""
    if isinstance(v, SharedTensor):
        return "cut" if v.shape == shape else None
    if v is None or isinstance(v, (numbers.Number, str)):
        return "whole"
    s = getattr(v, "shape", None)
    if s is not None and not isinstance(v, type):
        return "cut" if tuple(s) == shape else "whole" if int(np.prod(s)) == 1 else None
    return None


def _cut(v, how: str, view: ChunkView, lo: int, hi: int):
    if how == "whole":
        return v
    if isinstance(v, SharedTensor):
        return SharedTensor(view, v.share.reshape(-1)[lo:hi], v.fbits)
    return v.reshape(-1)[lo:hi]


def elementwise(fn: Callable, scope: str, local: Callable[..., bool] | None = None) -> Callable:
    """fn(x, *args, **kwargs), an elementwise SharedTensor op, run in chunks when x is larger
    than chunk_elements() and every other argument is a scalar or has x's shape; rounds and
    bytes are attributed to `scope`. local(x, *args, **kwargs): True where the call is
    local (no protocol: run whole)."""

    @functools.wraps(fn)
    def method(x, *args, **kwargs):
        step = chunk_elements()
        if not step or not isinstance(x, SharedTensor) or x.share.size <= step or isinstance(x.rt, ChunkView) or \
                (local is not None and local(x, *args, **kwargs)):
            return fn(x, *args, **kwargs)
        hows = [_how(v, x.shape) for v in args]
        khows = {k: _how(v, x.shape) for k, v in kwargs.items()}
        if None in hows or None in khows.values():
            return fn(x, *args, **kwargs)
        return _run(fn, scope, x, step, list(zip(args, hows)), {k: (v, khows[k]) for k, v in kwargs.items()})

    return method


def _run(fn, scope: str, x: SharedTensor, step: int, args: list, kwargs: dict) -> SharedTensor:
    rt, flat = x.rt, x.share.reshape(-1)
    total = flat.size
    out = np.empty(total, np.int64)
    fbits: set[int] = set()

    def job(lo: int):
        hi = min(lo + step, total)

        def run(view: ChunkView) -> None:
            a = [_cut(v, how, view, lo, hi) for v, how in args]
            kw = {k: _cut(v, how, view, lo, hi) for k, (v, how) in kwargs.items()}
            r = fn(SharedTensor(view, flat[lo:hi], x.fbits), *a, **kw)
            if not isinstance(r, SharedTensor) or r.share.size != hi - lo:
                raise MpcError(f"{fn.__name__} is not elementwise: set MPCRT_CHUNK_ELEMENTS=0 and report this")
            out[lo:hi] = r.share.reshape(-1)
            fbits.add(r.fbits)
        return run

    with rt.scope(scope), _no_lookahead(rt):
        drive(rt, (job(lo) for lo in range(0, total, step)))
    if len(fbits) != 1:
        raise MpcError(f"{fn.__name__}'s chunks came out at different precisions {sorted(fbits)}: "
                       "set MPCRT_CHUNK_ELEMENTS=0 and report this")
    return SharedTensor(rt, out.reshape(x.shape), fbits.pop())


def revealing(reveal: Callable) -> Callable:
    """SharedTensor.reveal, a chunk at a time for tensors larger than chunk_elements() (the
    share is never copied in full; each chunk's opening is decoded into the result)."""

    @functools.wraps(reveal)
    def method(x: SharedTensor, to: int | None = None, dtype=np.float64):
        step, rt = chunk_elements(), x.rt
        if not step or x.share.size <= step or isinstance(rt, ChunkView) or rt._dry:
            return reveal(x, to, dtype)
        if to is not None and (not isinstance(to, (int, np.integer)) or not 0 <= to < rt.world_size):
            return reveal(x, to, dtype)  # its error message
        flat = x.share.reshape(-1)
        out = np.empty(flat.size, dtype) if to is None or rt.rank == to else None
        with rt.scope("reveal"):
            if to is None:
                _open_all(rt, flat, step, lambda lo, v: _decode_into(out, lo, v, x.fbits))
            else:
                for lo in range(0, flat.size, step):
                    v = rt.open_to(flat[lo : lo + step], int(to))
                    if v is not None:
                        _decode_into(out, lo, v, x.fbits)
        return None if out is None else out.reshape(x.shape)

    return method


def _open_all(rt, flat: np.ndarray, step: int, use: Callable[[int, np.ndarray], None]) -> None:
    """Open flat a chunk at a time, the next chunk posted before the last one is read."""
    prev = None
    for lo in range(0, flat.size, step):
        posted = rt.post([flat[lo : lo + step]], [], "reveal")
        if prev is not None:
            use(prev[0], rt.collect(prev[1])[0][0])
        prev = (lo, posted)
    use(prev[0], rt.collect(prev[1])[0][0])


def _decode_into(out: np.ndarray, lo: int, v: np.ndarray, fbits: int) -> None:
    out[lo : lo + v.size] = fixedpoint.decode(v, fbits, out.dtype)

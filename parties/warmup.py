"""Start-up warm-up: pay a process's one-time costs before the session's clock starts.

A party's first protocol call used to pay for loading numba's cached kernels (one per
fused kernel, from __pycache__), importing torch (its int64 GEMM serves small products)
and the lazily imported protocol modules: 3.6 s for the first call of a 4.8k-weight
MLP against 0.045 s for the next, paid by each party in turn while its peer waited, and
counted by `mpcrt infer` as inference time. `rehearse()` runs the protocols once on tiny
tensors, two parties and a dealer in this process over the in-memory transport
(mpcrt.memory_transport: no sockets, nothing leaves the process, its own throw-away
PRG seeds), so every kernel and module the real session uses is loaded when it starts.
Launched and cluster parties and the dealer call it before they connect (all nodes at
once, instead of one after the other inside the first round); MPCRT_WARMUP=0 turns it
off (the test suite does, to save CPU).

What it costs: about the load time it saves, once per process, while the peers start
too; nothing of it depends on the session's data or keys.
"""
from __future__ import annotations

import inspect
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from mpcrt import config
from mpcrt.memory_transport import MemoryNetwork
from mpcrt.runtime import Runtime
from mpcrt.tensor import METHODS

log = logging.getLogger("mpcrt.warmup")

SKIP = {"log", "sqrt", "rsqrt", "reciprocal", "clamp", "clip"}  # positive inputs (called below); bounds


def _unary_methods() -> list[str]:
    """The table's methods callable as x.name() (activations, abs, sign, relu, ltz, ...)."""
    out = []
    for name, m in METHODS.items():
        if name.startswith("__") or name in SKIP:
            continue
        params = list(inspect.signature(m.fn).parameters.values())[1:]
        if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            out.append(name)
    return out


def _program(rt: Runtime) -> float:
    """Every family of protocol once, on tiny tensors; returns a checksum (so nothing is optimised away)."""
    v = np.linspace(-3.0, 3.0, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    x = rt.share(v if rt.rank == 0 else None, src=0)
    w = rt.share(np.full((4, 3, 3, 3), 0.1) if rt.rank == 1 else None, src=1)
    y = x.conv2d(w, padding=1)  # conv triples, truncation
    z = (x.reshape(6, 16) @ x.reshape(6, 16).T) * 0.5  # matmul triples, public scaling
    big = rt.share(np.ones((64, 64)) if rt.rank == 0 else None, src=0)
    big = big @ big  # a product above the native GEMM's threshold
    m = y.relu().maxpool2d(2)  # comparisons, max
    s = (x * x).sum(dim=1)  # elementwise product
    pos = s + 1.0
    for f in (pos.reciprocal, pos.sqrt, pos.rsqrt, pos.log, lambda: z.softmax(dim=1), lambda: z.argmax(dim=1),
              lambda: z.layer_norm((6,)), lambda: z.max(dim=1)):
        f()
    for name in _unary_methods():
        getattr(x, name)()
    rt.comparison = "fss"  # the 2-party one-round comparisons (protocols.fss), which auto may pick
    f = (x.reshape(6, 16) @ x.reshape(6, 16).T).relu() + y.relu().maxpool2d(2).sum()  # fused truncation too
    out = m.sum() + z.sum() + big.sum() + f.sum()
    r = out.reveal(to=0)
    return float(r) if r is not None else 0.0


def rehearse(make_dealer: Callable[[Any], Any], precision: int = 16, timeout: float = 60.0) -> float:
    """Run the warm-up program (2 parties + make_dealer(transport), in this process); returns its seconds.

    make_dealer: parties.dealer.Dealer (passed in: the dealer process warms up too, and this
    module must not import it back)."""
    t0 = time.perf_counter()
    net = MemoryNetwork(2, session="warmup")
    dealer = make_dealer(net.node(2, timeout=timeout))
    errors: list[BaseException] = []

    def party(r: int) -> None:
        try:
            rt = Runtime(net.node(r, timeout=timeout), precision)
            try:
                _program(rt)
            finally:
                rt.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def serve() -> None:
        try:
            dealer.serve()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=serve, daemon=True)]
    threads += [threading.Thread(target=party, args=(r,), daemon=True) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    seconds = time.perf_counter() - t0
    if errors:  # a warm-up problem never stops a session: the real run reports real errors
        log.warning("warm-up did not complete (%s: %s); continuing", type(errors[0]).__name__, errors[0])
    else:
        log.debug("warm-up took %.2f s", seconds)
    return seconds


def maybe_rehearse(make_dealer: Callable[[Any], Any]) -> None:
    """rehearse() unless MPCRT_WARMUP=0; never raises (a warm-up problem must not stop a session)."""
    try:
        cfg = config.current()
        if cfg.warmup:
            rehearse(make_dealer, cfg.precision or 16)
    except Exception as e:  # noqa: BLE001 - e.g. a bad MPCRT_* variable: the real start reports it
        log.debug("warm-up skipped: %s", e)

"""Dealer lookahead for the elementwise protocols: every dealer tuple of a call requested
when it starts, so the dealer deals while the rounds run.

A protocol function decorated with `lookahead` runs under Runtime.lookahead: from its
second call on the same shape and precision its recorded requests are announced at
its start; an elementwise one of at least PLAN_MIN elements gets them from its first
call, by a dry run on one element with the sizes scaled to x's.
It changes when requests are sent, not what is sent (a wrong guess is abandoned, never used).

Rounds: none of its own.
Bytes per element per peer: none of its own.
Dealer words per element: none of its own (the decorated protocol's, requested earlier).
Error: none.
Reference: docs/design.md, 'Protocols' (dealer lookahead).
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np

from mpcrt.protocols.comparison import PAD
from mpcrt.protocols.shared import SharedTensor

PLAN_MIN = 1 << 12  # elements: below this a first call asks the dealer step by step


def _elementwise_plan(fn, x: SharedTensor, args, kwargs) -> list:
    """fn's dealer requests on x, from a dry run on one element with the sizes scaled to
    x's: every request of an elementwise function here has x's shape (or, for a
    comparison, x's padded size per row). A wrong guess is only abandoned, never used."""
    rt = x.rt
    real = getattr(rt, "_rt", rt)  # a chunk's view (mpcrt.chunked) forwards to its runtime
    # size- and dealer-dependent choices (protocols.fss.deciding) decide as the real call will
    real.plan_scale, real.plan_online = x.share.size, rt.dealer.prefetched == 0
    try:
        plan = rt.plan(fn, SharedTensor(rt, np.zeros(1, np.int64), x.fbits), *args, **kwargs)
    finally:
        real.plan_scale, real.plan_online = 1, None
    npad = -(-x.share.size // PAD) * PAD
    out = []
    for kind, p in plan:
        q = {k: (list(x.shape) if k in ("shape", "a", "b") and v == [1] else v) for k, v in p.items()}
        if kind in ("ltz", "ltzpow"):
            q["n"] = npad * int(q.get("rows", 1))
        elif kind == "fss":  # one key per element, whatever the rows
            q["n"] = npad
        out.append((kind, q))
    return out


def lookahead(fn=None, *, elementwise: bool = False):
    """Run fn under Runtime.lookahead: all of its dealer tuples are requested when it
    starts, from its second call on the same shape and precision (from its first call
    for elementwise functions of at least PLAN_MIN elements, by a one-element dry run)."""
    if fn is None:
        return functools.partial(lookahead, elementwise=elementwise)

    @functools.wraps(fn)
    def wrapper(x: SharedTensor, *args, **kwargs):
        key = (fn.__name__, x.shape, x.fbits, args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
            guess = None
            if elementwise and x.share.size >= PLAN_MIN:
                guess = lambda: _elementwise_plan(fn, x, args, kwargs)  # noqa: E731
            ahead = x.rt.lookahead(key, guess)
        except TypeError:  # an unhashable argument: run on demand
            ahead = contextlib.nullcontext()
        # ring arithmetic wraps by design; on 0-d inputs numpy would warn of it
        with ahead, np.errstate(over="ignore"):
            return fn(x, *args, **kwargs)

    return wrapper

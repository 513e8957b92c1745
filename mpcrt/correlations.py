"""Correlated randomness in common: seed layout, expansion, the dealer's deal, dispatch by kind.

Each kind of correlated randomness lives with its protocol, both halves together (its
`Kind` subclass and its frozen request spec in protocols/<name>.py: products in
protocols.beaver, truncation pairs in protocols.truncation, comparison bundles in
protocols.comparison, powers tuples in protocols.powers; their base class and the flat
layout helpers in protocols.dealt). This module holds what every kind shares.

Request number k of a session is expanded, by every party i, from stream k of
PRG(seed_i), the seed party i agreed with the dealer. A kind lists its arrays in
two groups:

* `own`:       every party expands its share from its PRG (their sum is the value);
* `corrected`: all parties but one expand their share from the PRG too; that one,
               the request's corrected party (`corrected_party`: party 0), gets a
               correction from the dealer so that the shares sum (or XOR) to the
               value the dealer derived from the `own` values.

The corrected party expands only the `own` prefix of its stream. The dealer expands
all streams, computes the true values and sends the corrected party one message per
request (in parts, see reply_parts), whatever N is. Sharing is additive mod 2^64 ('a'), XOR of 64-bit words ('x'), or
additive mod 2^32 ('a32': uint32 values packed two per word, for values a protocol
only ever uses multiplied by 2^32 or more, so their high half never matters).
The dealer's own secrets (random bits) come from its private PRG. A malformed request
(a missing or mistyped parameter, a value out of range) is a DealerError.
"""
from __future__ import annotations

import concurrent.futures
import functools
import threading

import numpy as np

from mpcrt import framing
from mpcrt.errors import DealerError, ProtocolError
from mpcrt.kernels import bufpool
from mpcrt.kernels.backend import Backend, CpuBackend
from mpcrt.protocols import beaver, comparison, division, fixedmask, fss, powers, truncation
from mpcrt.protocols.dealt import PARALLEL_MIN, Kind, Shape, count, pad_odd_a32, spans, split, words

_pool = None
_pool_lock = threading.Lock()  # the dealer's worker threads may ask for the pool at once


PASS_THREADS = 4  # threads one deal's independent passes may use (the dealer sets it from its CPU share)


def _parallel(*fns) -> list:
    """Run independent dealer passes concurrently (the kernels and the AES keystream release
    the GIL); results in order. The dealer deals several requests at once too, so this only
    helps the big ones, which otherwise hold a party waiting on one thread. With
    PASS_THREADS = 1 (a host whose cores the parties already fill) the passes run in turn."""
    global _pool
    if len(fns) == 1 or PASS_THREADS <= 1:
        return [f() for f in fns]
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(3, thread_name_prefix="deal-pass")
    futs = [_pool.submit(f) for f in fns[1:]]
    first = fns[0]()
    return [first] + [f.result() for f in futs]


KINDS: dict[str, Kind] = {**powers.KINDS, **comparison.KINDS, **beaver.KINDS, **truncation.KINDS,
                         **division.KINDS, **fixedmask.KINDS, **fss.KINDS}


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise DealerError(f"unknown kind of correlated randomness {name!r}; known: {sorted(KINDS)}") from None


def own_layout(k: Kind, p: dict) -> list[tuple[str, Shape, str]]:
    """`own` entries as (name, shape, sharing), sharing 'a' (additive) unless given."""
    return [(e[0], e[1], e[2] if len(e) > 2 else "a") for e in k.own(p)]


GROUP_WORDS = framing.SINGLE_MAX // 8  # a reply part up to this size travels as one frame


def reply_parts(entries: list) -> list[tuple[int, int, list]]:
    """How the dealer sends party 0 one request's corrections: consecutive entries grouped
    into parts of at most GROUP_WORDS words (an entry larger than that alone), each part
    one message: (first word, end word, its entries). Each part then arrives as one frame
    that party 0 uses in place, where one big message would be chunked and reassembled
    (a copy of every word)."""
    parts, cur, lo, off = [], [], 0, 0
    for e in entries:
        w = words(e[1], e[2])
        if cur and off + w - lo > GROUP_WORDS:
            parts.append((lo, off, cur))
            cur, lo = [], off
        cur.append(e)
        off += w
    if cur or not parts:
        parts.append((lo, off, cur))
    return parts


def flat_words(entries: list) -> int:
    return sum(words(s, how) for _, s, how in entries)


def corrected_party(stream: int, world: int) -> int:
    """The party that gets request `stream`'s corrections from the dealer: party 0.

    Everything downstream (the dealer, DealerClient, the reply tags) works for any
    choice. Rotating (stream % world) was measured: it spreads the dealer's traffic over
    N links (exp on 1e5 elements over 1 Gbit/s links: 0.273 -> 0.231 s end to end) and
    balances the parties' CPU, but each dealer link then sits idle between its bursts,
    and TCP restarts slow start after an idle RTO (Linux's tcp_slow_start_after_idle,
    on by default): at N = 3 on loopback a 1e6 multiply took 47-78 ms end to end rotated
    against 47-51 ms with party 0 (50-56 ms rotated with that sysctl off). One hot link
    wins there, so party 0 it is."""
    return 0


def _expand(prg, stream: int, name: str, p: dict, corrected: bool) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """(arrays by name, the whole flat stream, words in its `own` prefix)."""
    k = kind(name)
    own = own_layout(k, p)
    corr = [] if corrected else k.corrected(p)
    nown = flat_words(own)
    flat = prg.words(stream, nown + flat_words(corr))
    return split(flat, own + corr), flat, nown


def expand_party(prg, stream: int, name: str, p: dict, corrected: bool, lazy: bool = False) -> dict:
    """A party's PRG-derived arrays for request `stream` (the corrected party's: the own prefix only).
    lazy: where the kind has `lazy_rows`, the other parties get its corrected entries as
    kernels.prg.LazyRows, expanded by the kernels that use them a chunk at a time."""
    k = kind(name)
    corrected = corrected or k.to_all  # its corrections come whole from the dealer
    lazy = lazy and not corrected and hasattr(k, "lazy_rows")
    out, _, nown = _expand(prg, stream, name, p, corrected or lazy)  # lazy: the own prefix only, as if corrected
    if lazy:
        out.update(k.lazy_rows(p, prg, stream, nown))
    return out


def _unshare(how: str):
    """The ufunc that removes another party's share: xor for 'x', subtraction for 'a', 'a32'."""
    return np.bitwise_xor if how == "x" else np.subtract


@functools.lru_cache(maxsize=1)
def _cpu() -> CpuBackend:
    """The CPU back end, for callers (tests, tools) that deal without a dealer's back end."""
    return CpuBackend()


def deal(prgs: list, private, stream: int, name: str, p: dict, ops: Backend | None = None) -> np.ndarray:
    """Dealer side: the corrected party's corrections for request `stream` (prgs: every
    party's, by rank), flat in `corrected` order; `ops` is the dealer's back end
    (kernels.backend: its fused deal kernels, matmul and conv; None: the CPU's).

    The corrections are written straight into the buffer that is sent; the first other
    party's shares are subtracted inside the kind's fused kernel where it has one.
    """
    return _deal(prgs, lambda shape: private(stream, shape), stream, name, p, ops,
                 lambda prg, corrected: _expand(prg, stream, name, p, corrected))


def deal_slice(prgs: list, private_at, stream: int, name: str, p: dict, lo: int, hi: int,
               ops: Backend | None = None) -> np.ndarray:
    """Dealer side: the corrections of elements lo..hi-1 of a request that `slices` cuts, as
    one reply part (each corrected entry's slice, back to back): only the slice's words
    of each party's stream are expanded. `private_at(stream, first, shape)`: the dealer's
    private words from word `first` of the stream on."""
    sub = _sub_request(p, hi - lo)
    return _deal(prgs, lambda shape: private_at(stream, lo, shape), stream, name, sub, ops,
                 lambda prg, corrected: _expand_slice(prg, stream, name, p, sub, lo, corrected))


def _deal(prgs: list, priv, stream: int, name: str, p: dict, ops: Backend | None, expand) -> np.ndarray:
    """deal's work once the way to expand a party's arrays (`expand(prg, corrected)`) and the
    dealer's private words (`priv(shape)`) are fixed."""
    k = kind(name)
    ops = ops if ops is not None else _cpu()
    c = corrected_party(stream, len(prgs))
    order = [c] + [i for i in range(len(prgs)) if i != c]  # the corrected party's arrays first
    jobs = [lambda i=i: expand(prgs[i], i == c or k.to_all) for i in order]
    big = flat_words(own_layout(k, p)) >= PARALLEL_MIN
    parts = _parallel(*jobs) if big else [j() for j in jobs]
    if len(parts) == 2 and hasattr(k, "deal_two"):
        out = bufpool.empty(parts[1][1].size - parts[1][2])
        if k.deal_two(p, parts[0][0], parts[1][0], out, priv, ops):
            return out
    own = {}
    paired = k.paired(p) if len(parts) == 2 and hasattr(k, "deal_into") else set()
    for n, _, how in own_layout(k, p):
        if n in paired:  # deal_into sums this pair in its own fused pass
            own[n] = (parts[0][0][n], parts[1][0][n])
            continue
        op = np.bitwise_xor if how == "x" else np.add
        first = parts[0][0][n]
        acc = bufpool.empty(first.size).view(first.dtype)[: first.size].reshape(first.shape)  # an array even when 0-d
        if len(parts) > 1:  # one pass: the first two summed straight into acc (no copy first)
            op(first, parts[1][0][n], out=acc)
        else:
            acc[...] = first
        for s in parts[2:]:
            op(acc, s[0][n], out=acc)
        own[n] = acc
    if hasattr(k, "borrowed"):  # arrays the parties hold from an earlier request
        own.update(k.borrowed(prgs, stream, p))
    corr = k.corrected(p)
    out = bufpool.empty(flat_words(corr))
    pad_odd_a32(out, corr)
    subs = [] if k.to_all else [flat[nown:] for _, flat, nown in parts[1:]]  # to_all: dealt whole
    if hasattr(k, "deal_into"):
        k.deal_into(p, own, priv, out, subs[0] if subs else None, ops, parallel=_parallel)
        rest = subs[1:]
    else:
        true = k.deal(p, own, priv, ops)
        views = split(out, corr)
        sub0 = split(subs[0], corr) if subs else None
        for n, s, how in corr:
            t = true[n].astype(views[n].dtype, copy=False)  # 'a32': the value mod 2^32
            if sub0 is not None:
                _unshare(how)(t, sub0[n], out=views[n])
            else:
                views[n][...] = t
        rest = subs[1:]
    mine = split(out, corr)
    for sub in rest:
        theirs = split(sub, corr)
        for n, _, how in corr:
            _unshare(how)(mine[n], theirs[n], out=mine[n])
    return out


# ------------------------------------------------- large elementwise requests in slices
SLICE_ELEMENTS = 1 << 20  # (even: 'a32' entries slice on whole words)
# elementwise kinds whose shapes are "a", "b", "shape"
SLICED_KINDS = frozenset({"triple", "trunc", "triple_trunc", "div"})
_SHAPE_KEYS = ("a", "b", "shape")


def slices(name: str, p: dict) -> list[tuple[int, int]] | None:
    """The element ranges [lo, hi) in which the dealer deals and sends request (name, p), one
    reply part each; None: in one piece (reply_parts). A request of an elementwise kind whose
    arrays all have its n > 2 SLICE_ELEMENTS elements is cut, so the dealer never expands
    more than a slice of it at a time (the parties' elementwise ops ask in chunks anyway,
    mpcrt.chunked; this bounds the dealer for requests that do not)."""
    if name not in SLICED_KINDS:
        return None
    k = kind(name)
    entries = own_layout(k, p) + k.corrected(p)
    n = count(entries[0][1])
    if n <= 2 * SLICE_ELEMENTS or any(count(s) != n for _, s, _ in entries):
        return None
    return [(lo, min(lo + SLICE_ELEMENTS, n)) for lo in range(0, n, SLICE_ELEMENTS)]


def _sub_request(p: dict, m: int) -> dict:
    """The request p over m elements (a slice of it): its shapes made (m,)."""
    return {key: ([m] if key in _SHAPE_KEYS else v) for key, v in p.items()}


def _expand_slice(prg, stream: int, name: str, p: dict, sub: dict, lo: int,
                  corrected: bool) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """_expand's result for the sub-request `sub` (elements lo.. of request p): each array's
    slice read from where the whole request lays it out in the stream."""
    k = kind(name)
    whole = own_layout(k, p) + ([] if corrected else k.corrected(p))
    part = own_layout(k, sub) + ([] if corrected else k.corrected(sub))
    flat = bufpool.empty(flat_words(part))
    for (_, _, how, off, _), (_, _, _, soff, sw) in zip(spans(whole), spans(part)):
        prg.words_at(stream, off + (lo // 2 if how == "a32" else lo), flat[soff : soff + sw])
    return split(flat, part), flat, flat_words(own_layout(k, sub))


def reply_words(name: str, p: dict) -> list[int]:
    """The words of each message that carries request (name, p)'s corrections, in order (a party
    receives each with that shape: a larger claim is refused before anything is allocated)."""
    sl = slices(name, p)
    if sl is None:
        return [hi - lo for lo, hi, _ in reply_parts(kind(name).corrected(p))]
    return [flat_words(kind(name).corrected(_sub_request(p, hi - lo))) for lo, hi in sl]


def assemble(name: str, p: dict, got: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The named corrections of request (name, p) from its reply messages (reply_parts, or
    `slices`: each slice's entries copied into place). A message of the wrong size is a
    ProtocolError naming the dealer."""
    corr = kind(name).corrected(p)
    sl = slices(name, p)
    if sl is None:
        out = {}
        for (lo, hi, entries), flat in zip(reply_parts(corr), got):
            _check_part(name, flat, hi - lo)
            out.update(split(flat, entries))
        return out
    full = split(np.empty(flat_words(corr), np.int64), corr)
    for (lo, hi), flat in zip(sl, got):
        sub = kind(name).corrected(_sub_request(p, hi - lo))
        _check_part(name, flat, flat_words(sub))
        for nm, v in split(flat, sub).items():
            full[nm].reshape(-1)[lo:hi] = v.reshape(-1)
    return full


def _check_part(name: str, flat: np.ndarray, want: int) -> None:
    if flat.size != want:
        raise ProtocolError("dealer", f"correction for {name} has a part of {flat.size} words, expected {want}")


def correction_shapes(name: str, p: dict) -> list[Shape]:
    return [s for _, s, _ in kind(name).corrected(p)]

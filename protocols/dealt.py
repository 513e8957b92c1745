"""What every protocol's dealer half shares: the `Kind` base class, the request-spec
parsing that turns a wire dict into a frozen spec (a malformed request is a DealerError,
never a crash), and the flat layout of a kind's arrays in a PRG stream or a reply.

A kind lists its arrays in two groups: `own` (every party expands its share from its
PRG; their sum is the value) and `corrected` (all parties but the request's corrected
party expand theirs too; that one gets a correction from the dealer). Entries are
(name, shape, how): additive mod 2^64 ('a'), XOR of 64-bit words ('x'), or additive mod
2^32 ('a32': uint32 values packed two per word, for values a protocol only ever uses
multiplied by 2^32 or more). mpcrt.correlations expands, deals and dispatches them.

Rounds: none (the dealer's side).
Bytes per element per peer: none.
Dealer words per element: each kind's own (its protocol module states them).
Error: none.
Reference: docs/design.md, 'Protocols' (the dealer and correlated randomness).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, TypeVar

import numpy as np

from mpcrt.errors import DealerError

Shape = tuple
PARALLEL_MIN = 1 << 18  # words: a deal this big runs its independent passes on threads
# elements of one array a request may ask for (32 GiB of int64): a request's sizes come from
# party 0 and are checked against this before anything is allocated (`count`, `wire_shape`)
MAX_ELEMENTS = 1 << 32
Passes = Callable[..., list]  # runs independent dealer passes (on threads where it pays), results in order


def serial(*fns) -> list:
    """Run dealer passes in turn (what a deal gets when no thread pool is offered)."""
    return [f() for f in fns]


class Kind:
    """A kind of correlated randomness: own: [(name, shape[, 'a'|'x'])], corrected:
    [(name, shape, 'a'|'x'|'a32')], deal: the true corrected values from the summed own
    values. Every method takes the request's wire dict p (what the parties send).

    to_all: the corrected entries are values both parties may see (FSS keys' common
    correction words, corrections masked by both parties' PRG words): the dealer deals
    them whole (no party's PRG share subtracted, none expanded) and sends them to party 0
    as a reply and to every other party as one frame tagged copy_tag(n)."""

    to_all = False

    def own(self, p: dict) -> list[tuple]:
        raise NotImplementedError

    def corrected(self, p: dict) -> list[tuple[str, Shape, str]]:
        raise NotImplementedError

    def paired(self, p: dict) -> set:
        """`own` names a two-party deal_into takes as the pair of shares (not summed), to
        fuse the sum into its own pass."""
        return set()

    def deal(self, p: dict, own: dict[str, np.ndarray], private, ops) -> dict[str, np.ndarray]:
        """The true values of the corrected entries from the summed `own` arrays; `private`
        gives the dealer's private words, `ops` is the dealer's ring back end (its matmul,
        conv2d: kernels.backend)."""
        raise NotImplementedError


def copy_tag(n: int) -> str:
    """The frame tag of a 'to_all' reply's copy for the parties other than 0 (request n)."""
    return f"copy{n}"


# ----------------------------------------------------------- request specs
S = TypeVar("S")


_parsed: dict = {}  # (what, the wire dict frozen) -> its spec: layouts are asked for several times per request
PARSED_MAX = 4096


def from_wire(spec: Callable[[dict], S], p: Any, what: str) -> S:
    """spec(p) (a spec class's from_wire) for a request dict from the wire: anything
    malformed in it (a missing key, a wrong type, a value out of range) is a DealerError.
    `what` names the parser (one name per spec and mode); specs are frozen, so a parsed
    one is kept and handed out again for an equal dict."""
    if not isinstance(p, dict):
        raise DealerError(f"malformed {what} request: parameters must be a map, got {type(p).__name__}")
    key = (what, repr(p))  # repr: exact for the ints and lists of ints a request holds, and quick
    got = _parsed.get(key)
    if got is not None:
        return got
    try:
        out = spec(p)
    except DealerError:
        raise
    except (LookupError, TypeError, ValueError, ArithmeticError) as e:
        shown = key[1] if len(key[1]) <= 200 else key[1][:200] + "..."
        raise DealerError(f"malformed {what} request {shown}: {e}") from None
    if len(_parsed) >= PARSED_MAX:
        _parsed.clear()
    _parsed[key] = out
    return out


def wire_int(p: dict, key: str, default: int | None = None, lo: int | None = None, hi: int | None = None) -> int:
    """p[key] as an int in [lo, hi] (a missing key: `default`, or KeyError if None)."""
    v = p.get(key, default)
    if v is None:
        raise KeyError(f"missing {key!r}")
    if type(v) is not int and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
        raise TypeError(f"{key} must be an integer, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{key}={v} out of range" + (f" [{lo}, {hi}]" if hi is not None else f": must be >= {lo}"))
    return v


def wire_ints(p: dict, key: str, length: int | None = None, lo: int | None = None) -> tuple[int, ...]:
    """p[key] as a tuple of ints (a shape, or `length` parameters), each >= lo."""
    v = p.get(key)
    if v is None:
        raise KeyError(f"missing {key!r}")
    if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length):
        raise TypeError(f"{key} must be a list of {'' if length is None else f'{length} '}integers, got {v!r}")
    return tuple(wire_int({key: d}, key, lo=lo) for d in v)


def wire_shape(p: dict, key: str) -> Shape:
    """p[key] as an array shape (non-negative dimensions, at most MAX_ELEMENTS elements)."""
    s = wire_ints(p, key, lo=0)
    if len(s) > 32:
        raise ValueError(f"{key} has {len(s)} dimensions")
    count(s)
    return s


# --------------------------------------------------------------- layouts
def count(shape: Shape) -> int:
    """Elements of an array of `shape` (math.prod: numpy's prod costs ~10x on small tuples,
    and layouts are computed for every request on both sides). More than MAX_ELEMENTS (or
    a negative dimension) is a DealerError: every layout counts its arrays' elements
    before any of them is allocated, so a request's derived shapes (a conv's padded
    output, a comparison's rows) are bounded too."""
    n = math.prod(int(d) for d in shape)
    if n > MAX_ELEMENTS or min(shape, default=0) < 0:
        raise DealerError(f"request for an array of shape {tuple(shape)}: more than {MAX_ELEMENTS} elements "
                          "(or a negative dimension); split the computation into smaller tensors")
    return n


def words(shape: Shape, how: str) -> int:
    """64-bit words an array of `shape` takes in a flat stream ('a32': two values per word)."""
    n = count(shape)
    return (n + 1) // 2 if how == "a32" else n


def as_how(flat: np.ndarray, n: int, how: str) -> np.ndarray:
    """The first n values of a flat int64 stretch, as uint32 for 'a32' entries."""
    return flat.view(np.uint32)[:n] if how == "a32" else flat[:n]


def spans(entries: list):
    """(name, shape, how, first word, words) of arrays laid out back to back in a flat stream."""
    off = 0
    for nm, s, how in entries:
        w = words(s, how)
        yield nm, s, how, off, w
        off += w


def split(flat: np.ndarray, entries: list) -> dict[str, np.ndarray]:
    """Name the arrays laid out back to back in `flat` by entries [(name, shape, how)]."""
    return {nm: as_how(flat[off : off + w], count(s), how).reshape(s) for nm, s, how, off, w in spans(entries)}


def msb_how(f: int) -> str:
    """[msb r] only enters multiplied by 2^(64-f) (protocols.truncation): for f <= 32 it
    matters mod 2^32 only, and travels as 32-bit shares ('a32')."""
    return "a32" if f <= 32 else "a"


def pad_odd_a32(out: np.ndarray, corr: list) -> None:
    """Zero the last word of every 'a32' entry with an odd count: half of it is never written."""
    for _, s, how, off, w in spans(corr):
        if how == "a32" and count(s) % 2:
            out[off + w - 1] = 0

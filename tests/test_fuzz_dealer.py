"""Fuzzing the dealer's requests: what party 0 sends it (a msgpack batch of
[request number, kind, parameters]) and each kind's wire parser (protocols.dealt
from_wire and the specs' from_wire).

Random and mutated requests must be DealerError or ProtocolError, never KeyError,
TypeError, MemoryError or a huge allocation: a request for more than
protocols.dealt.MAX_ELEMENTS elements in any array is refused while its layout is
computed, before anything is allocated.
"""
from __future__ import annotations

import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpcrt import correlations
from mpcrt.errors import DealerError, ProtocolError
from mpcrt.kernels.prg import PRG
from mpcrt.memory_transport import MemoryNetwork
from mpcrt.protocols.fss import FssSpec
from mpcrt.protocols import dealt
from mpcrt.protocols.beaver import ProductSpec
from mpcrt.protocols.comparison import LtzSpec
from mpcrt.protocols.division import DivSpec
from mpcrt.protocols.powers import LtzPowersSpec, MulMaskSpec, PowersSpec
from mpcrt.protocols.truncation import TruncSpec

SMALL_WORDS = 1 << 16  # accepted requests up to this many words are also dealt
SETTINGS = settings(max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.too_slow])

VALID = {
    "triple": ProductSpec("triple", (2, 3), (3,)).to_wire(),
    "matmul": ProductSpec("matmul", (2, 3), (3, 4)).to_wire(),
    "conv2d": ProductSpec("conv2d", (1, 2, 5, 5), (3, 2, 3, 3)).to_wire(),
    "triple_trunc": ProductSpec("triple", (4,), (4,), 16).to_wire(),
    "matmul_trunc": ProductSpec("matmul", (2, 3), (3, 2), 16).to_wire(),
    "conv2d_trunc": ProductSpec("conv2d", (1, 2, 4, 4), (2, 1, 3, 3), 16, groups=2).to_wire(),
    "trunc": TruncSpec((5,), 16).to_wire(),
    "div": DivSpec((5,), 3).to_wire(),
    "truncpow": PowersSpec((5,), 16, 3).to_wire(),
    "truncmul": MulMaskSpec((5,), 16).to_wire(),
    "ltz": LtzSpec.of(100, muls=2, rows=2, powers=(16, 2, 3), coarse=8).to_wire(),
    "ltzpow": LtzPowersSpec(128, 2, (16, 2, 3)).to_wire(),
    "wmask": {"shape": [3, 4]},
    "fm_matmul": {**ProductSpec("matmul", (2, 3), (3, 4)).to_wire(), "mask": 1},
    "fm_conv2d": {**ProductSpec("conv2d", (1, 2, 5, 5), (3, 2, 3, 3)).to_wire(), "mask": 2},
    "fm_matmul_trunc": {**ProductSpec("matmul", (2, 3), (3, 2), 16).to_wire(), "mask": 0},
    "fm_conv2d_trunc": {**ProductSpec("conv2d", (1, 2, 4, 4), (2, 1, 3, 3), 16, groups=2).to_wire(), "mask": 1},
    "fss": FssSpec.of(100, 64, True, 16).to_wire(),
}
assert set(VALID) == set(correlations.KINDS)

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
           | st.text(max_size=8) | st.binary(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=15)
numbers = (st.integers(-(2**63), 2**64 - 1) |  # what msgpack can carry
            st.sampled_from([0, 1, -1, 2**31, 2**32, 2**32 + 1, 2**40, 2**63 - 1])
           | values)
shapes = st.lists(numbers, max_size=6) | st.lists(st.integers(0, 2**34), max_size=4) | values


@st.composite
def mutated(draw) -> tuple[str, object]:
    """(kind, parameters): a valid request with one parameter changed, added or removed, or random."""
    name = draw(st.sampled_from(sorted(VALID)))
    p = dict(VALID[name])
    how = draw(st.sampled_from(["number", "shape", "drop", "add", "random", "notamap"]))
    key = draw(st.sampled_from(sorted(p)))
    if how == "number":
        p[key] = draw(numbers)
    elif how == "shape":
        p[key] = draw(shapes)
    elif how == "drop":
        del p[key]
    elif how == "add":
        p[draw(st.sampled_from(["stride", "padding", "dilation", "groups", "f", "rows", "mrows", "pw", "back",
                                "ym", "cb", "tk", "xr", "part", "J", "k", "n", "mask"]))] = draw(numbers | shapes)
    elif how == "random":
        p = draw(st.dictionaries(st.text(max_size=6), values, max_size=6))
    else:
        return name, draw(values)
    return name, p


def layout_words(name: str, p) -> int:
    """What both sides compute first for a request: its layout (own, then corrected), in words."""
    k = correlations.kind(name)
    return correlations.flat_words(correlations.own_layout(k, p)) + correlations.flat_words(k.corrected(p))


def refused_or_small(name: str, p) -> int | None:
    """The request's words, or None when it is refused with a DealerError."""
    try:
        return layout_words(name, p)
    except DealerError as e:
        assert str(e)
        return None


# -------------------------------------------------------------- the parsers
@SETTINGS
@given(mutated())
@example(("trunc", {"shape": [2**40], "f": 16}))  # found: nothing bounded a request's size
@example(("matmul", {"a": [2**20, 2**20], "b": [2**20, 2**20]}))  # each operand 2^40 elements
@example(("conv2d", {**VALID["conv2d"], "padding": [2**40, 2**40]}))  # small operands, a vast output
@example(("ltz", {"n": 2**40, "k": 0}))
@example(("truncpow", {"shape": [2**16, 2**16, 2], "k": 16, "J": 8}))
@example(("ltzpow", {"n": 2**40, "rows": 1, "pw": [16, 2, 3], "back": 1}))
@example(("triple", {"a": [], "b": [2**32 + 1]}))
@example(("matmul", {"a": [], "b": []}))  # 0-d operands
@example(("matmul", {"a": [3], "b": [3]}))
@example(("conv2d", {**VALID["conv2d"], "stride": [0, 1]}))
@example(("conv2d", {**VALID["conv2d"], "groups": 0}))
@example(("conv2d", {**VALID["conv2d"], "a": [1, 2, 5]}))
@example(("ltz", {"n": 64, "k": 0, "rows": 0}))
@example(("ltz", {"n": 64, "k": 0, "pw": [16, 2, 4]}))  # beta even
@example(("ltz", {"n": 64, "k": 0, "pw": "x"}))
@example(("ltzpow", {"n": 64, "rows": 1, "pw": [16, 2, 3], "back": True}))
@example(("trunc", {"shape": [True], "f": 16}))
@example(("trunc", {"shape": [5], "f": 16.0}))
@example(("trunc", []))
@example(("nosuchkind", {}))
def test_mutated_requests_are_dealer_errors(req):
    name, p = req
    words = refused_or_small(name, p)
    if words is not None:  # accepted: every array within the bound
        assert all(dealt.count(s) <= dealt.MAX_ELEMENTS for _, s, _ in correlations.kind(name).corrected(p))


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
@example(("conv2d_trunc", VALID["conv2d_trunc"]))
@example(("ltz", VALID["ltz"]))
def test_small_accepted_requests_are_dealt(req):
    """An accepted request of a modest size is dealt by the dealer's code (two parties)."""
    name, p = req
    words = refused_or_small(name, p)
    if words is None or words > SMALL_WORDS:
        return
    prgs = [PRG(bytes([i]) * 16) for i in range(2)]
    private = PRG(b"\x07" * 16)
    try:
        out = correlations.deal(prgs, lambda s, shape: private.ring(s, [shape])[0], 3, name, p)
    except DealerError:
        return
    assert out.dtype == np.int64


@pytest.mark.parametrize("name,p", [
    ("trunc", {"shape": [2**40], "f": 16}),
    ("trunc", {"shape": [2**32 + 1], "f": 16}),
    ("matmul", {"a": [2**20, 2**20], "b": [2**20, 2**20]}),
    ("conv2d", {**VALID["conv2d"], "padding": [2**40, 2**40]}),
    ("ltz", {"n": 2**40, "k": 2}),
    ("truncpow", {"shape": [2**31, 4], "k": 16, "J": 8}),
])
def test_oversized_requests_are_refused_before_any_allocation(name, p):
    tracemalloc.start()
    try:
        with pytest.raises(DealerError, match="more than"):
            correlations.deal([PRG(b"\0" * 16), PRG(b"\1" * 16)], None, 0, name, p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_the_bound_admits_a_1e8_element_request():
    assert layout_words("triple_trunc", {"a": [10**8], "b": [10**8], "f": 16}) > 3 * 10**8


# ------------------------------------------------------- the dealer's batch
@pytest.fixture
def dealer():
    from mpcrt.parties.dealer import Dealer

    net = MemoryNetwork(2, session="fuzz")
    d = Dealer(net.node(2, timeout=2))
    d._hello = {0, 1}  # both parties said hello: replies may go
    yield d
    d.close()


batches = (st.binary(max_size=200).map(lambda b: ("raw", b))
           | st.lists(st.tuples(st.integers(0, 1000), mutated()), max_size=4).map(lambda b: ("items", b))
           | values.map(lambda v: ("value", v)))


def _payload(batch) -> np.ndarray:
    how, b = batch
    if how == "raw":
        raw = b
    elif how == "items":
        raw = msgpack.packb([[n, name, p] for n, (name, p) in b], use_bin_type=True)
    else:
        raw = msgpack.packb(b, use_bin_type=True)
    return np.frombuffer(raw, np.uint8)


@settings(max_examples=40, deadline=10_000, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(batches)
@example(("items", [(0, ("trunc", {"shape": [2**40], "f": 16}))]))
@example(("value", [[0, "trunc"]]))
@example(("value", [[True, "trunc", {"shape": [4], "f": 16}]]))
@example(("value", {"a": 1}))
def test_dealer_batches_are_dealer_or_protocol_errors(dealer, batch):
    """party 0's batch as the dealer serves it: parsed, dealt on the pool, sent in order."""
    dealer._pending.clear()
    try:
        dealer._serve_batch(_payload(batch))
        dealer._send_ready(wait=True)
    except (DealerError, ProtocolError):
        dealer._pending.clear()


@pytest.mark.parametrize("n", [-1, 2**64 - 1, 2**63, True])
def test_dealer_refuses_request_numbers_out_of_range(dealer, n):
    """A number outside [0, 2^63) would wrap the VAES PRG's stream counter (2^64 would be
    stream 0 again, -1 its last) or overflow the portable one: refused before anything is dealt."""
    with pytest.raises(ProtocolError, match="request"):
        dealer._serve_batch(_payload(("value", [[n, "trunc", {"shape": [4], "f": 16}]])))
    assert not dealer._pending


def test_dealer_refuses_a_request_number_twice(dealer):
    """Numbers only grow: dealing one twice would hand out the same PRG stream twice."""
    dealer._serve_batch(_payload(("value", [[5, "trunc", {"shape": [4], "f": 16}]])))
    for n in (5, 4):
        with pytest.raises(ProtocolError, match="must increase"):
            dealer._serve_batch(_payload(("value", [[n, "trunc", {"shape": [4], "f": 16}]])))
    dealer._serve_batch(_payload(("value", [[6, "trunc", {"shape": [4], "f": 16}]])))
    assert [item[1] for item in dealer._pending] == [5, 6]

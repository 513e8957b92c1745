"""Fixed-point encoding (mpcrt.protocols.fixedpoint): round trips within 2^-f, refusals, edge values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt import EncodingError
from mpcrt.protocols import fixedpoint
from mpcrt.protocols.fixedpoint import decode, encode

PRECISIONS = [0, 1, 8, 12, 16, 20, 30, 40]


def limit(f: int) -> float:
    return float(2 ** (62 - f))


def test_max_value_is_2_pow_62_minus_f():
    for f in PRECISIONS:
        assert fixedpoint.max_value(f) == 2.0 ** (62 - f)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PRECISIONS), st.data())
def test_round_trip_within_2_pow_minus_f(f, data):
    lim = limit(f)
    floats = st.floats(-lim, lim, exclude_min=True, exclude_max=True, allow_nan=False)
    vals = data.draw(st.lists(floats, min_size=1, max_size=16))
    a = np.array(vals, dtype=np.float64)
    e = encode(a, f)
    assert e.dtype == np.int64 and e.shape == a.shape
    d = decode(e, f)
    assert d.dtype == np.float64
    # round to nearest: error at most half a unit in the last place (and so within 2^-f)
    assert np.all(np.abs(d - a) <= 2.0 ** -(f + 1))
    # no silent wrap: signs are kept
    assert np.all((e < 0) == (np.rint(a * 2.0**f) < 0))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(PRECISIONS), st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_either_round_trips_or_raises(f, v):
    """The encoder never wraps: a value either decodes to itself within 2^-f or is refused."""
    in_range = math.isfinite(v) and abs(v) < limit(f)
    if in_range:
        assert abs(float(decode(encode(np.array([v]), f), f)[0]) - v) <= 2.0**-f
    else:
        with pytest.raises(EncodingError):
            encode(np.array([v]), f)


@pytest.mark.parametrize("f", PRECISIONS)
def test_out_of_range_raises(f):
    lim = limit(f)
    for bad in (lim, -lim, 2 * lim, -3 * lim, 1e300, -1e300):
        with pytest.raises(EncodingError, match="range"):
            encode(np.array([0.5, bad]), f)
    # the largest float below the limit still encodes, and keeps its sign
    below = np.nextafter(lim, 0)
    assert decode(encode(np.array([below, -below]), f), f).tolist() == pytest.approx([below, -below], abs=2.0**-f)
    assert encode(np.array([below]), f)[0] > 0 and encode(np.array([-below]), f)[0] < 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_raise(bad):
    with pytest.raises(EncodingError, match="NaN or infinity"):
        encode(np.array([1.0, bad, 2.0]), 16)
    with pytest.raises(EncodingError):
        encode(bad, 16)
    with pytest.raises(EncodingError):
        encode(torch.tensor([bad]), 16)


@pytest.mark.parametrize("f", [0, 12, 16, 20, 40])
def test_integer_inputs_exact_and_bounded(f):
    top = (1 << (62 - f)) - 1
    a = np.array([0, 1, -1, 7, -top, top], dtype=np.int64)
    e = encode(a, f)
    assert e.dtype == np.int64
    assert e.tolist() == [int(v) << f for v in a.tolist()]
    for bad in (top + 1, -(top + 1), (1 << 63) - 1):
        with pytest.raises(EncodingError, match="range"):
            encode(np.array([1, bad], dtype=np.int64), f)
    with pytest.raises(EncodingError):
        encode(np.array([(1 << 64) - 1], dtype=np.uint64), f)
    with pytest.raises(EncodingError):
        encode(1 << 70, f)  # a Python int beyond int64


def test_edge_values():
    f = 16
    ulp = 2.0**-f
    assert encode(np.array([ulp, -ulp, 0.0, -0.0]), f).tolist() == [1, -1, 0, 0]
    assert decode(np.array([1, -1], np.int64), f).tolist() == [ulp, -ulp]
    # round half to even at the last place
    assert encode(np.array([ulp / 2, 1.5 * ulp, -ulp / 2]), f).tolist() == [0, 2, 0]
    assert encode(np.array([ulp / 2 + ulp / 8]), f).tolist() == [1]
    # the extreme ring elements decode as signed
    assert decode(np.array([-(1 << 63), (1 << 63) - 1], np.int64), f).tolist() == [-(2.0 ** (63 - f)), 2.0 ** (63 - f)]
    # empty inputs and 0-d inputs
    assert encode(np.zeros((0, 3)), f).shape == (0, 3)
    assert encode(2.5, f).shape == () and int(encode(2.5, f)) == int(2.5 * 2**f)


def test_input_kinds():
    f = 12
    expect = [int(round(v * 2**f)) for v in (1.25, -2.5, 3.0)]
    assert encode([1.25, -2.5, 3.0], f).tolist() == expect
    assert encode(np.array([1.25, -2.5, 3.0], np.float32), f).tolist() == expect
    assert encode(torch.tensor([1.25, -2.5, 3.0], dtype=torch.float64), f).tolist() == expect
    assert encode(torch.tensor([1.25, -2.5, 3.0], requires_grad=True), f).tolist() == expect
    assert encode(torch.tensor([1, -2, 3]), f).tolist() == [1 << f, -2 << f, 3 << f]
    assert encode(np.array([True, False]), f).tolist() == [1 << f, 0]
    for bad in (np.array(["a"]), np.array([1 + 2j]), np.array([1.0, None], dtype=object)):
        with pytest.raises(EncodingError, match="dtype"):
            encode(bad, f)


def test_encode_does_not_modify_input():
    a = np.array([1.5, -2.25])
    before = a.copy()
    encode(a, 16)
    assert np.array_equal(a, before)


def test_decode_dtype():
    e = encode(np.array([1.5, -0.25]), 16)
    d32 = decode(e, 16, np.float32)
    assert d32.dtype == np.float32 and d32.tolist() == [1.5, -0.25]


def test_check_precision():
    assert fixedpoint.check_precision(16) == 16
    assert fixedpoint.check_precision(np.int32(12)) == 12
    assert fixedpoint.DEFAULT_PRECISION == 16
    for bad in (-1, 41, 1.5, "16", None):
        with pytest.raises(EncodingError, match="precision"):
            fixedpoint.check_precision(bad)

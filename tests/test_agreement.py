"""Settings that choose protocol steps are compared at connect (mpcrt.agreement): a party set
differently is a ConfigError on both sides naming the setting, never a desynchronised session;
the settings frame is msgpack of a fixed size, and a malformed one is a ProtocolError."""
from __future__ import annotations

import numpy as np
import pytest

from mpcrt import agreement
from mpcrt.errors import ConfigError, ProtocolError
from mpcrt.launch.inprocess import run_parties


def _sum(rt):
    x = rt.share(np.arange(4.0) if rt.rank == 0 else None, src=0)
    return (x + 1).reveal()


def test_equal_settings_connect():
    for got in run_parties(_sum, 3):
        np.testing.assert_allclose(got, np.arange(4.0) + 1)


@pytest.mark.parametrize("name,here,there", [("network", "25:100", None), ("precision", 16, 20),
                                             ("comparison", "fss", "auto"), ("fixed_masks", True, False)])
def test_a_party_set_differently_is_a_config_error_naming_the_setting(monkeypatch, name, here, there):
    real = agreement.settings

    def skewed(rt):
        out = real(rt)
        out[name] = here if rt.rank == 0 else there
        return out

    monkeypatch.setattr(agreement, "settings", skewed)
    with pytest.raises(ConfigError, match=agreement.ENV[name].split(" ")[0]) as e:
        run_parties(_sum, 2, timeout=10.0, join_timeout=60)
    assert repr(here) in str(e.value) and repr(there) in str(e.value)


def test_frame_round_trip_and_malformed_frames():
    values = {"precision": 16, "comparison": "auto", "network": "25:100", "fss_bits": 64, "chunk_elements": 1 << 20,
              "lookahead_mb": 2048, "split_open_bytes": 1 << 19, "fixed_masks": True}
    f = agreement.frame(values)
    assert f.shape == (agreement.FRAME,) and f.dtype == np.uint8
    assert agreement.read("party 1", f) == values
    bad = f.copy()
    bad[0], bad[1] = 0xFF, 0xFF  # a length past the frame
    with pytest.raises(ProtocolError, match="party 1"):
        agreement.read("party 1", bad)
    junk = np.zeros(agreement.FRAME, np.uint8)
    junk[0], junk[2:6] = 4, [0xC1, 0xC1, 0xC1, 0xC1]  # 0xc1: never used in msgpack
    with pytest.raises(ProtocolError, match="party 2"):
        agreement.read("party 2", junk)
    listy = np.zeros(agreement.FRAME, np.uint8)
    listy[0], listy[2] = 1, 0x90  # an empty array, not a map
    with pytest.raises(ProtocolError, match="not a msgpack map"):
        agreement.read("party 2", listy)
    with pytest.raises(ConfigError, match="shorten"):
        agreement.frame({"network": "x" * 2000})

"""kernels/aesctr.c's 256-bit VAES path (CPUs with AVX2 and VAES but no AVX-512, AMD Zen 3), forced
here with keystream's force256 argument: byte for byte `cryptography`'s AES-128-CTR and the 512-bit
path, at every length and starting block, including the tails below 16 blocks and 16 bytes."""
from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

_aesctr = pytest.importorskip("mpcrt.kernels._aesctr")
pytestmark = pytest.mark.skipif(not _aesctr.vaes(), reason="this CPU lacks VAES")


def reference(key: bytes, sid: int, first: int, n: int) -> bytes:
    iv = sid.to_bytes(8, "big") + first.to_bytes(8, "big")
    return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor().update(bytes(n))


@settings(max_examples=150, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), sid=st.integers(0, 2**64 - 1), first=st.integers(0, 2**48),
       n=st.integers(0, 3000))
def test_256_bit_path_matches_cryptography(key, sid, first, n):
    out = np.full(n, 0xAA, np.uint8)
    _aesctr.keystream(key, sid, out, first, True)
    assert out.tobytes() == reference(key, sid, first, n)


def test_both_paths_agree_on_a_large_buffer():
    key, n = bytes(range(16)), (1 << 20) + 37
    a, b = np.empty(n, np.uint8), np.empty(n, np.uint8)
    _aesctr.keystream(key, 7, a, 5, True)
    _aesctr.keystream(key, 7, b, 5)
    assert (a == b).all() and a.tobytes()[:4096] == reference(key, 7, 5, 4096)
    assert _aesctr.vaes512() in (True, False)

"""The AES-128-CTR PRG (mpcrt.kernels.prg): determinism per (seed, stream), streams differ.

The known-answer test recomputes the keystream with AES-ECB on the documented counter
blocks (stream id: 8 bytes big-endian || block index: 8 bytes big-endian).
"""
from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcrt.kernels import prg as prg_mod
from mpcrt.kernels.prg import PRG, SEED_BYTES, new_seed

SEEDS = st.binary(min_size=16, max_size=16)
STREAMS = st.integers(0, (1 << 64) - 1)


def ecb_keystream(seed: bytes, stream: int, nwords: int) -> np.ndarray:
    nblocks = (8 * nwords + 15) // 16
    blocks = b"".join(stream.to_bytes(8, "big") + i.to_bytes(8, "big") for i in range(nblocks))
    enc = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    ks = enc.update(blocks) + enc.finalize()
    return np.frombuffer(ks[: 8 * nwords], dtype="<i8").astype(np.int64)


@settings(max_examples=30, deadline=None)
@given(SEEDS, STREAMS, st.integers(0, 70))
def test_known_answer_against_aes_ecb_counter_blocks(seed, stream, n):
    w = PRG(seed).words(stream, n)
    assert w.dtype == np.int64 and w.shape == (n,)
    assert np.array_equal(w, ecb_keystream(seed, stream, n))


@settings(max_examples=30, deadline=None)
@given(SEEDS, STREAMS, st.integers(1, 200))
def test_deterministic_per_seed_and_stream(seed, stream, n):
    a = PRG(seed).words(stream, n)
    b = PRG(bytes(seed)).words(stream, n)  # a fresh object with the same seed
    g = PRG(seed)
    c1 = g.words(stream, n)
    g.words(stream + 1 if stream < (1 << 64) - 1 else 0, 3 * n)  # other streams in between
    c2 = g.words(stream, n)  # same object, same stream again: the same words
    assert np.array_equal(a, b) and np.array_equal(a, c1) and np.array_equal(a, c2)


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.integers(0, (1 << 63)), st.integers(1, 1 << 20))
def test_streams_differ(seed, stream, delta):
    g = PRG(seed)
    a, b = g.words(stream, 16), g.words(stream + delta, 16)
    assert not np.array_equal(a, b)
    assert np.count_nonzero(a == b) <= 1  # not even shifted copies of each other
    assert not set(a.tolist()) & set(g.words(stream + delta, 64).tolist())


@settings(max_examples=30, deadline=None)
@given(SEEDS, SEEDS, STREAMS)
def test_seeds_differ(s1, s2, stream):
    if s1 == s2:
        return
    assert not np.array_equal(PRG(s1).words(stream, 8), PRG(s2).words(stream, 8))


def test_prefix_property_and_ring_layout():
    g = PRG(bytes(range(16)))
    full = g.words(7, 100)
    assert np.array_equal(g.words(7, 37), full[:37])  # counter mode: a longer request extends a shorter one
    parts = g.ring(7, [(2, 3), (), (0, 4), (4, 5, 2)])
    assert [p.shape for p in parts] == [(2, 3), (), (0, 4), (4, 5, 2)]
    assert all(p.dtype == np.int64 for p in parts)
    flat = np.concatenate([p.ravel() for p in parts])
    assert np.array_equal(flat, full[: 6 + 1 + 0 + 40])
    assert g.ring(7, []) == []


def test_outputs_are_independent_buffers():
    g = PRG(bytes(16))
    a = g.words(1, 10)
    keep = a.copy()
    a[:] = 0  # caller owns the buffer: writing into it changes nothing later
    assert np.array_equal(g.words(1, 10), keep)
    b = g.words(2, 10)
    assert np.array_equal(a, np.zeros(10, np.int64)) and not np.shares_memory(a, b)


def test_output_looks_uniform():
    w = PRG(b"\x01" * 16).words(0, 1 << 15)
    bits = np.unpackbits(w.view(np.uint8))
    # 2^21 fair bits: mean within 6 sigma (sigma = 0.5 / sqrt(2^21) ~ 3.5e-4)
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / np.sqrt(bits.size)
    # each of the 64 bit positions (the msb included) is balanced
    per_pos = ((w.view(np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
    assert np.all(np.abs(per_pos - 0.5) < 6 * 0.5 / np.sqrt(w.size))
    assert len(set(w.tolist())) == w.size  # no repeated 64-bit word


def test_seed_validation_and_new_seed():
    for bad in (b"", b"\x00" * 15, b"\x00" * 17, b"\x00" * 32):
        with pytest.raises(ValueError, match="16 bytes"):
            PRG(bad)
    seeds = {new_seed() for _ in range(64)}
    assert len(seeds) == 64 and all(isinstance(s, bytes) and len(s) == SEED_BYTES == 16 for s in seeds)


def test_zero_words():
    assert PRG(bytes(16)).words(3, 0).shape == (0,)


@pytest.mark.skipif(not prg_mod.NATIVE,
                    reason="the VAES keystream (kernels/aesctr.c) is not built or the CPU lacks VAES")
@settings(max_examples=40, deadline=None)
@given(SEEDS, STREAMS, st.sampled_from([0, 1, 15, 16, 17, 255, 256, 257, 511, 4097, 65536 + 9, 1 << 20]))
def test_native_keystream_equals_cryptography(seed, stream, nbytes):
    """kernels/aesctr.c against cryptography's AES-128-CTR on the same counter block, at
    sizes around its 256-byte main loop and its one-block and partial-block tails."""
    out = np.full(nbytes + 8, 0xA5, np.uint8)
    prg_mod._aesctr.keystream(seed, stream, out[:nbytes])
    nonce = stream.to_bytes(8, "big") + b"\0" * 8
    ref = Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor().update(b"\0" * nbytes)
    assert out[:nbytes].tobytes() == ref
    assert np.all(out[nbytes:] == 0xA5), "wrote past the end of its buffer"


@pytest.mark.skipif(not prg_mod.NATIVE, reason="the VAES keystream is not built or the CPU lacks VAES")
def test_native_and_fallback_prg_agree():
    seed = bytes(range(16))
    assert PRG(seed).native and PRG(seed, True).native and not PRG(seed, native=False).native
    native = [PRG(seed).words(s, n) for s, n in [(0, 1000), (5, 3), (2**64 - 1, 100001)]]
    fallback = [PRG(seed, native=False).words(s, n) for s, n in [(0, 1000), (5, 3), (2**64 - 1, 100001)]]
    for a, b in zip(native, fallback):
        assert np.array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(SEEDS, STREAMS, st.integers(0, 3000), st.integers(0, 700), st.booleans())
def test_words_at_is_a_window_of_the_stream(seed, stream, first, n, native):
    """words_at(stream, first, out) gives words first..first + n - 1 of the stream, at even
    and odd offsets, with the VAES keystream and with the cryptography fallback."""
    if native and not prg_mod.NATIVE:
        return
    full = PRG(seed).words(stream, first + n).copy()
    out = np.full(n, 7, np.int64)
    PRG(seed, native=native).words_at(stream, first, out)
    assert np.array_equal(out, full[first:])


@pytest.mark.parametrize("dtype", [np.int64, np.uint32])
@pytest.mark.parametrize("first,stride", [(0, 1000), (6, 1000), (7, 1001), (200, 1200)])
def test_lazy_rows_chunks_are_the_stream_block(dtype, first, stride):
    """LazyRows(first, stride, rows, n) chunk (lo, hi) is the (rows, hi - lo) block of the
    stream (in int64 words or uint32 half-words, low half first), C-contiguous, for chunks
    at odd and even columns, with and without a scratch buffer."""
    g = PRG(bytes(range(16)))
    rows, n = 3, 1000
    per = 8 // np.dtype(dtype).itemsize
    units = g.words(4, -(-(first + (rows - 1) * stride + n) // per) + 1).view(dtype)
    block = np.stack([units[first + i * stride : first + i * stride + n] for i in range(rows)])
    lazy = prg_mod.LazyRows(g, 4, first, stride, rows, n, dtype)
    assert lazy.shape == (rows, n) and lazy.head(10).shape == (rows, 10)
    for lo, hi in [(0, n), (0, 1), (1, 9), (2, 10), (333, 777), (n - 3, n)]:
        for scratch in (None, np.empty(rows * (hi - lo + 2), np.int64)):
            got = lazy.chunk(lo, hi, scratch)
            assert got.dtype == dtype and got.flags.c_contiguous
            assert np.array_equal(got, block[:, lo:hi]), (lo, hi)

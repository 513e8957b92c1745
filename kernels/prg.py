"""Cryptographic PRG: AES-128-CTR expansion of a 128-bit seed into ring elements.

Stream `stream_id` of a seed is AES-128-CTR with the 16-byte counter block
(stream_id: 8 bytes big-endian || block index: 8 bytes, starting at 0), so
distinct requests never share keystream. Where the CPU has VAES and the C extension
`_aesctr` (kernels/aesctr.c) is built, the keystream comes from it (20 GB/s on one core
here); else from `cryptography`'s AES-CTR, `update_into` a preallocated buffer (8 GB/s).
Both give the same bytes (tests/test_prg.py). Which one a PRG uses is its `native`
argument (kernels.backend.CpuBackend passes its `native_aes` setting); nothing here
reads the environment.
"""
from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpcrt.kernels import bufpool

SEED_BYTES = 16

try:  # the VAES keystream (optional C extension, setup.py)
    from mpcrt.kernels import _aesctr

    NATIVE = bool(_aesctr.vaes())  # built, and this CPU has VAES
except ImportError:
    _aesctr = None
    NATIVE = False


def new_seed() -> bytes:
    """A fresh 128-bit seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


class PRG:
    """Counter-mode AES keyed by one seed; each stream id is an independent stream.

    native: use the VAES keystream where it is built and the CPU has VAES (True or None,
    the default), or `cryptography`'s always (False); the bytes are the same either way."""

    def __init__(self, seed: bytes, native: bool | None = None):
        if len(seed) != SEED_BYTES:
            raise ValueError(f"PRG seed must be {SEED_BYTES} bytes, got {len(seed)}")
        self._key = bytes(seed)
        self.native = NATIVE and native is not False
        self._zeros = np.zeros(0, dtype=np.uint8)

    def _zero_buf(self, n: int) -> np.ndarray:
        if self._zeros.size < n:
            self._zeros = np.zeros(max(n, 2 * self._zeros.size), dtype=np.uint8)
        return self._zeros[:n]

    def _fill(self, stream_id: int, block: int, buf: np.ndarray, nbytes: int) -> None:
        """Keystream bytes of stream `stream_id` from block `block` into the first nbytes of
        buf (a uint8 array with 15 bytes of slack beyond them: update_into wants them)."""
        if self.native:
            _aesctr.keystream(self._key, int(stream_id), buf[:nbytes], int(block))
        elif nbytes:
            nonce = int(stream_id).to_bytes(8, "big") + int(block).to_bytes(8, "big")
            enc = Cipher(algorithms.AES(self._key), modes.CTR(nonce)).encryptor()
            enc.update_into(memoryview(self._zero_buf(nbytes)), memoryview(buf))

    def words(self, stream_id: int, n: int) -> np.ndarray:
        """n uniformly random 64-bit words (int64) of stream `stream_id`."""
        out = bufpool.empty(n + 2)  # update_into wants 15 bytes of slack
        self._fill(stream_id, 0, out.view(np.uint8), 8 * n)
        return out[:n]

    def words_at(self, stream_id: int, first: int, out: np.ndarray) -> np.ndarray:
        """Words first, first + 1, ... of stream `stream_id` into the int64 array `out` (as
        many as it holds): the same words as words(stream_id, first + out.size)[first:],
        computed without the ones before (for expanding a stream a chunk at a time)."""
        n, skip = out.size, first & 1  # a 16-byte block holds two words
        if n == 0:
            return out
        if self.native and not skip:  # straight into out (the native keystream needs no slack)
            self._fill(stream_id, first >> 1, out.view(np.uint8), 8 * n)
            return out
        buf = np.empty(n + skip + 2, np.int64)
        self._fill(stream_id, first >> 1, buf.view(np.uint8), 8 * (n + skip))
        out[...] = buf[skip : skip + n]
        return out

    def ring(self, stream_id: int, shapes: list[tuple]) -> list[np.ndarray]:
        """Random ring arrays of the given shapes, all from one stream."""
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        flat = self.words(stream_id, sum(sizes))
        out, off = [], 0
        for s, k in zip(shapes, sizes):
            out.append(flat[off : off + k].reshape(s))
            off += k
        return out


class LazyRows:
    """A (rows, n) block of a PRG stream that is expanded a chunk of columns at a time,
    where it is used (kernels.powers): a party's shares of a dealer tuple that it would
    otherwise write out in full and read back from memory. Row i, column e is word
    (or, for 32-bit rows, half-word) first + i * stride + e of the stream, counted
    in units of the row dtype; 32-bit units are the halves of the 64-bit words, low first."""

    def __init__(self, prg: PRG, stream: int, first: int, stride: int, rows: int, n: int, dtype=np.int64):
        self.prg, self.stream, self.first, self.stride = prg, int(stream), int(first), int(stride)
        self.rows, self.n, self.dtype = int(rows), int(n), np.dtype(dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.n)

    def head(self, n: int) -> "LazyRows":
        """The first n columns."""
        return LazyRows(self.prg, self.stream, self.first, self.stride, self.rows, n, self.dtype)

    def chunk(self, lo: int, hi: int, scratch: np.ndarray | None = None) -> np.ndarray:
        """Columns lo..hi-1 as a C-contiguous (rows, hi - lo) array (in `scratch` if given, of
        at least rows * (hi - lo + 2) words)."""
        m = hi - lo
        per = 8 // self.dtype.itemsize  # units per word
        units = [self.first + i * self.stride + lo for i in range(self.rows)]
        buf = scratch if scratch is not None else np.empty(self.rows * (m + 2), np.int64)
        if m % per == 0 and all(u % per == 0 for u in units):  # rows start on words: straight in
            nw = m // per
            for i, u in enumerate(units):
                self.prg.words_at(self.stream, u // per, buf[i * nw : (i + 1) * nw])
            return buf[: self.rows * nw].view(self.dtype).reshape(self.rows, m)
        out = np.empty((self.rows, m), self.dtype)
        for i, u in enumerate(units):
            w0, off = divmod(u, per)
            seg = buf[: -(-(off + m) // per)]
            self.prg.words_at(self.stream, w0, seg)
            out[i] = seg.view(self.dtype)[off : off + m]
        return out

"""Cryptographic PRG: AES-128-CTR expansion of a 128-bit seed into ring elements.

Stream `stream_id` of a seed is AES-128-CTR with the 16-byte counter block
(stream_id: 8 bytes big-endian || block index: 8 bytes, starting at 0), so
distinct requests never share keystream. Where the CPU has VAES and the C extension
`_aesctr` (kernels/aesctr.c) is built, the keystream comes from it (20 GB/s on one core
here); else from `cryptography`'s AES-CTR, `update_into` a preallocated buffer (8 GB/s).
Both give the same bytes (tests/test_prg.py).
"""
from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpcrt.kernels import bufpool

SEED_BYTES = 16

try:  # the VAES keystream (optional C extension, setup.py)
    from mpcrt.kernels import _aesctr

    NATIVE = bool(_aesctr.vaes()) and os.environ.get("MPCRT_NATIVE_AES", "1") != "0"
except ImportError:
    _aesctr = None
    NATIVE = False


def new_seed() -> bytes:
    """A fresh 128-bit seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


class PRG:
    """Counter-mode AES keyed by one seed; each stream id is an independent stream."""

    def __init__(self, seed: bytes):
        if len(seed) != SEED_BYTES:
            raise ValueError(f"PRG seed must be {SEED_BYTES} bytes, got {len(seed)}")
        self._key = bytes(seed)
        self._zeros = np.zeros(0, dtype=np.uint8)

    def _zero_buf(self, n: int) -> np.ndarray:
        if self._zeros.size < n:
            self._zeros = np.zeros(max(n, 2 * self._zeros.size), dtype=np.uint8)
        return self._zeros[:n]

    def words(self, stream_id: int, n: int) -> np.ndarray:
        """n uniformly random 64-bit words (int64) of stream `stream_id`."""
        nbytes = 8 * n
        out = bufpool.empty(n + 2)  # update_into wants 15 bytes of slack
        if NATIVE:
            _aesctr.keystream(self._key, int(stream_id), out.view(np.uint8)[:nbytes])
            return out[:n]
        nonce = int(stream_id).to_bytes(8, "big") + b"\x00" * 8
        enc = Cipher(algorithms.AES(self._key), modes.CTR(nonce)).encryptor()
        if nbytes:
            enc.update_into(memoryview(self._zero_buf(nbytes)), memoryview(out.view(np.uint8)))
        return out[:n]

    def ring(self, stream_id: int, shapes: list[tuple]) -> list[np.ndarray]:
        """Random ring arrays of the given shapes, all from one stream."""
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        flat = self.words(stream_id, sum(sizes))
        out, off = [], 0
        for s, k in zip(shapes, sizes):
            out.append(flat[off : off + k].reshape(s))
            off += k
        return out

"""AES-256-GCM sealing of bulk payloads, keyed over CurveZMQ (the cryptography of
mpcrt.sealed_links; no sockets here).

Why: CurveZMQ (XSalsa20-Poly1305 in libzmq's I/O thread, with copies) carries about
0.6 GB/s per socket and made a 1M-element multiply 2.3-2.7x slower than plaintext
channels. AES-256-GCM through `cryptography` (OpenSSL: AES-NI/VAES and PCLMULQDQ)
seals about 10 GB/s on one core into a preallocated buffer (`encrypt_into`), and
releases the GIL while it does.

Keys. Each node, for every peer it dials, draws a fresh 256-bit key and a 16-byte
routing id from the operating system (os.urandom) and hands them to that peer in an
*offer* over its CurveZMQ link (confidential and authenticated as this node by CURVE:
the ZAP allow-list and the per-frame User-Id check of mpcrt.zmq_transport). The peer
seals what it sends to the offering node under that key: one key per direction of each
pair, chosen by the receiver, known to the two nodes only, never reused across sessions
(a new Node draws new keys), forgotten when the Node is closed. CurveZMQ's transient
keys give the offer forward secrecy, and so the payload keys too.

Nonces and associated data. A payload is sealed in pieces of PIECE_BYTES; piece i of
the frame with per-direction sequence number seq is sealed under the 96-bit nonce
seq (64 bits) || i (32 bits) with the frame's msgpack header as associated data. The
sequence number grows by one per frame of a direction and a key serves one direction,
so no nonce repeats under a key. The receiver never reads a nonce off the wire: it
computes the one it expects, so a piece replayed, reordered, dropped, spliced from
another frame or direction, or sealed under another key fails the tag check, and so
does a piece whose frame header (session, sender, sequence, tag, dtype, shape) differs
from the one it was sealed with. Every such failure is a ProtocolError naming the peer.
"""
from __future__ import annotations

import os
import struct

import msgpack
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpcrt.errors import ProtocolError

KEY_BYTES = 32  # AES-256
TAG_BYTES = 16
RID_BYTES = 16
# Pieces of 1 MiB: the sender's I/O thread sends piece i while it seals piece i + 1, the
# receiver opens piece i while the next ones arrive. Measured (mul 1M, N = 2): see
# benchmarks/README.md, "Secure channels".
PIECE_BYTES = 1 << 20
# Payloads from 64 KiB on go sealed; smaller frames stay inside CURVE whole (for them
# the second link's extra message costs more than CURVE's encryption).
SEAL_MIN = 64 << 10
# The second part of a frame-header message whose payload follows on the sealed link:
# 0xc1 is a byte msgpack never uses, and the mark is only read as one where the header
# calls for at least SEAL_MIN bytes (so never for an inline payload of its own length).
MARK = b"\xc1SEAL"
OFFER = b"\xc1OFFER1"  # first part of an offer message (then its msgpack body)
_NONCE = struct.Struct("<QI")
_MAX_SEQ = (1 << 64) - 1
_MAX_PIECES = 1 << 32


def nonce(seq: int, piece: int) -> bytes:
    """The 96-bit nonce of piece `piece` of frame `seq`."""
    if not (0 <= seq <= _MAX_SEQ and 0 <= piece < _MAX_PIECES):
        raise ValueError(f"no nonce for frame #{seq} piece {piece}")
    return _NONCE.pack(seq, piece)


def n_pieces(nbytes: int) -> int:
    """How many sealed pieces carry a payload of `nbytes` (at least one)."""
    return max(1, -(-nbytes // PIECE_BYTES))


def piece_bounds(nbytes: int):
    """(index, start, stop) of each piece of an `nbytes` payload."""
    for i in range(n_pieces(nbytes)):
        lo = i * PIECE_BYTES
        yield i, lo, min(lo + PIECE_BYTES, nbytes)


class Offer:
    """What a receiving node hands a sending peer over CURVE: where to dial its sealed
    port (as an offset from its CURVE port, so relays and port maps keep working when
    they map both alike), the routing id to dial it with, and the key to seal under."""

    def __init__(self, session: str, port_offset: int, rid: bytes | None = None, key: bytes | None = None):
        self.session = session
        self.port_offset = port_offset
        self.rid = rid if rid is not None else b"s" + os.urandom(RID_BYTES - 1)  # never 0x00 first (libzmq's ids)
        self.key = key if key is not None else os.urandom(KEY_BYTES)

    def pack(self) -> list[bytes]:
        body = {"sid": self.session, "port": self.port_offset, "rid": self.rid, "key": self.key}
        return [OFFER, msgpack.packb(body, use_bin_type=True)]

    @classmethod
    def unpack(cls, raw: bytes, peer: str, session: str) -> Offer:
        """Parse and check an offer's body from `peer` (ProtocolError naming it when malformed)."""
        try:
            body = msgpack.unpackb(raw, raw=False, max_bin_len=64, max_str_len=4096, max_array_len=0,
                                   max_map_len=8, max_ext_len=0)
        except Exception as e:  # msgpack raises several types on garbage
            raise ProtocolError(peer, f"undecodable sealed-link offer ({type(e).__name__})") from None
        ok = (isinstance(body, dict) and set(body) == {"sid", "port", "rid", "key"}
              and isinstance(body["port"], int) and not isinstance(body["port"], bool)
              and -65535 <= body["port"] <= 65535 and isinstance(body["rid"], bytes) and len(body["rid"]) == RID_BYTES
              and body["rid"][:1] != b"\x00" and isinstance(body["key"], bytes) and len(body["key"]) == KEY_BYTES)
        if not ok:
            raise ProtocolError(peer, "malformed sealed-link offer (fields, types or lengths)")
        if body["sid"] != session:
            raise ProtocolError(peer, f"sealed-link offer for another session {body['sid']!r} (expected {session!r})")
        return cls(session, body["port"], body["rid"], body["key"])


def is_offer(parts: list) -> bool:
    """A message [OFFER, body] rather than a frame."""
    return len(parts) == 2 and len(parts[0]) == len(OFFER) and parts[0].bytes == OFFER


class Sealer:
    """Seals the payloads one node sends to one peer (that peer's offered key)."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, seq: int, header: bytes, payload: memoryview):
        """The sealed pieces of one frame's payload (bytes), each a fresh uint8 array
        (ciphertext then tag), in order."""
        for i, lo, hi in piece_bounds(len(payload)):
            out = np.empty(hi - lo + TAG_BYTES, np.uint8)
            self._aead.encrypt_into(nonce(seq, i), payload[lo:hi], header, out)
            yield out


class Opener:
    """Opens the pieces one peer seals for this node (under the key this node offered)."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def open_into(self, seq: int, piece: int, header: bytes, sealed, dest: np.ndarray, peer: str) -> None:
        """Check and decrypt one sealed piece into `dest` (uint8, the piece's exact size);
        ProtocolError naming `peer` on any failure (nothing of dest may be used then)."""
        n = memoryview(sealed).nbytes
        if n != dest.nbytes + TAG_BYTES:
            raise ProtocolError(peer, f"sealed piece {piece} of frame #{seq} is {n} bytes, expected "
                                      f"{dest.nbytes + TAG_BYTES} (truncated, padded or out of order)")
        try:
            self._aead.decrypt_into(nonce(seq, piece), sealed, header, dest)
        except InvalidTag:
            raise ProtocolError(peer, f"sealed piece {piece} of frame #{seq} failed authentication (tampered, "
                                      "replayed, reordered or sealed under another key)") from None

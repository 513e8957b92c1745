"""The settings every party of a session must share, compared when it connects.

Each party chooses its protocols from its own settings: the comparison protocol and its cost
model (MPCRT_COMPARISON, MPCRT_NETWORK, MPCRT_FSS_BITS), chunking, the lookahead's size cap,
split openings, weights masked once or per call, and the fixed-point precision. A party set
differently would take other branches than its peers (other openings, other dealer requests:
a stalled or desynchronised session) or read shares at another scale (wrong values). So at
connect every party sends party 0 its settings and party 0 sends each party its own (one
msgpack frame of fixed size, no pickle); a difference is a ConfigError on both sides that
names each differing setting with both values.
"""
from __future__ import annotations

import msgpack
import numpy as np

from mpcrt import config
from mpcrt.errors import ConfigError, ProtocolError

FRAME = 1024  # bytes of the settings frame: a 2-byte length, the msgpack map, zero padding
NAMES = ("precision", "comparison", "network", "fss_bits", "chunk_elements", "lookahead_mb", "split_open_bytes",
         "fixed_masks")
ENV = {"precision": "the precision (MPCRT_PRECISION, the cluster file's, or init(precision=))",
       "comparison": "MPCRT_COMPARISON", "network": "MPCRT_NETWORK", "fss_bits": "MPCRT_FSS_BITS",
       "chunk_elements": "MPCRT_CHUNK_ELEMENTS", "lookahead_mb": "MPCRT_LOOKAHEAD_MB",
       "split_open_bytes": "MPCRT_SPLIT_OPEN_BYTES", "fixed_masks": "MPCRT_FIXED_MASKS"}


def settings(rt) -> dict:
    """This party's protocol-choosing settings (NAMES)."""
    cfg = config.current()
    return {"precision": int(rt.precision), **{k: getattr(cfg, k) for k in NAMES[1:]}}


def frame(values: dict) -> np.ndarray:
    """The settings as one fixed-size uint8 frame."""
    body = msgpack.packb(values, use_bin_type=True)
    if len(body) > FRAME - 2:
        raise ConfigError(f"settings take {len(body)} bytes, more than the {FRAME - 2} a frame holds: shorten them")
    out = np.zeros(FRAME, np.uint8)
    out[0], out[1] = len(body) & 0xFF, len(body) >> 8
    out[2:2 + len(body)] = np.frombuffer(body, np.uint8)
    return out


def read(peer: str, arr: np.ndarray) -> dict:
    """A peer's settings frame as a dict; ProtocolError naming the peer when it is malformed."""
    n = int(arr[0]) | int(arr[1]) << 8
    if n > FRAME - 2:
        raise ProtocolError(peer, f"settings frame claims {n} bytes of {FRAME - 2}")
    try:
        values = msgpack.unpackb(arr[2:2 + n].tobytes(), raw=False, strict_map_key=True, max_str_len=FRAME,
                                 max_bin_len=0, max_array_len=16, max_map_len=len(NAMES) + 8, max_ext_len=0)
    except (ValueError, msgpack.UnpackException) as e:
        raise ProtocolError(peer, f"settings frame is not a msgpack map: {e}") from None
    if not isinstance(values, dict):
        raise ProtocolError(peer, "settings frame is not a msgpack map")
    return values


def check(rt) -> None:
    """Exchange the settings with party 0 (every party with it, it with every party) and raise
    a ConfigError on any difference, on both sides of it."""
    mine = settings(rt)
    peers = list(range(1, rt.world_size)) if rt.rank == 0 else [0]
    for j in peers:
        rt.node.send(j, "settings", frame(mine))
    for j in peers:
        theirs = read(f"party {j}", rt.node.recv(j, "settings", dtype=np.uint8, shape=(FRAME,)))
        diff = [k for k in NAMES if theirs.get(k) != mine[k]]
        if diff:
            what = "; ".join(f"{ENV[k]} is {theirs.get(k)!r} on party {j}, {mine[k]!r} here" for k in diff)
            raise ConfigError(f"party {rt.rank}'s settings differ from party {j}'s ({what}): every party must "
                              "use the same values, or they take different protocol steps")

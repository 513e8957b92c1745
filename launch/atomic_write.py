"""Files written whole or not at all: a temporary file in the same folder, fsync, then a rename.

Used for what a party writes as a result (`mpcrt infer --output`, the service's outputs and
figures): the name holds the whole result or is left as it was; a crash leaves at most the
hidden `.NAME.partial-PID`, removed on any error we see.
"""
from __future__ import annotations

import os

import numpy as np


def write_atomically(path: str, out: np.ndarray | bytes) -> None:
    """Write `out` (an array, as .npy without pickle; or bytes as they are) at `path`, atomically."""
    d, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(d, f".{name}.partial-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:  # np.save(path) would append .npy to other names
            if isinstance(out, (bytes, bytearray)):
                fh.write(out)
            else:
                np.save(fh, out, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

"""`mpcrt keygen`: CurveZMQ key pairs for cluster deployments."""
from __future__ import annotations

import os

from mpcrt.cluster import write_public_key, write_secret_key
from mpcrt.errors import ConfigError
from mpcrt.zmq_transport import generate_keypair


def _check_name(name: str) -> None:
    """NAME becomes NAME.key and NAME.key_secret inside the directory: a plain file name only."""
    seps = [s for s in (os.sep, os.altsep) if s]
    if (not isinstance(name, str) or not name or name in (".", "..") or len(name) > 200
            or any(s in name for s in seps) or "\0" in name):
        raise ConfigError(f"key name {name!r} must be a plain file name (no path separators); "
                          "choose the directory with --dir")


def keygen(name: str, directory: str = ".") -> tuple[str, str, str]:
    """Write NAME.key (public) and NAME.key_secret (private, mode 600). Returns (public z85, paths...)."""
    _check_name(name)
    public, secret = generate_keypair()
    pub_path = os.path.join(directory, f"{name}.key")
    sec_path = os.path.join(directory, f"{name}.key_secret")
    try:
        os.makedirs(directory, exist_ok=True)
        write_public_key(pub_path, public)
        write_secret_key(sec_path, public, secret)
    except (OSError, ValueError) as e:  # (ValueError: a NUL in the directory)
        raise ConfigError(f"cannot write the keys {name!r} into {directory!r}: {e}") from None
    return public.decode(), pub_path, sec_path

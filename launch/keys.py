"""`mpcrt keygen`: CurveZMQ key pairs for cluster deployments."""
from __future__ import annotations

import os

from mpcrt.cluster import write_public_key, write_secret_key
from mpcrt.zmq_transport import generate_keypair


def keygen(name: str, directory: str = ".") -> tuple[str, str, str]:
    """Write NAME.key (public) and NAME.key_secret (private, mode 600). Returns (public z85, paths...)."""
    os.makedirs(directory, exist_ok=True)
    public, secret = generate_keypair()
    pub_path = os.path.join(directory, f"{name}.key")
    sec_path = os.path.join(directory, f"{name}.key_secret")
    write_public_key(pub_path, public)
    write_secret_key(sec_path, public, secret)
    return public.decode(), pub_path, sec_path

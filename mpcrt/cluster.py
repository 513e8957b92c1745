"""Cluster files: who the parties and the dealer are, where they listen, their public keys.

TOML, one table per node:

    session = "demo-2026-11-23"      # any string all nodes agree on
    precision = 16                   # optional, fractional bits (default 16)

    [dealer]
    address = "tcp://10.0.0.10:7000"
    public_key = "<40-char z85 CurveZMQ public key, from `mpcrt keygen`>"

    [[party]]
    rank = 0
    address = "tcp://10.0.0.11:7001"
    public_key = "..."

    [[party]]
    rank = 1
    ...

Ranks must be 0..N-1, each once; addresses `tcp://HOST:PORT`; keys 40 z85 chars.
A node may add `bind = "tcp://0.0.0.0:7001"` when it must listen on another address
than the one the others dial (NAT, a relay, a container).
Secret keys never go in this file: each host keeps its own (`mpcrt keygen`).
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mpcrt.errors import ConfigError

_ADDR = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")
_Z85 = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


@dataclasses.dataclass
class Cluster:
    session: str
    endpoints: dict[int, str]  # 0..N-1 parties, N the dealer
    public_keys: dict[int, bytes]
    precision: int = 16
    binds: dict[int, str] = dataclasses.field(default_factory=dict)  # where a node listens, if not its address

    @property
    def world_size(self) -> int:
        return len(self.endpoints) - 1

    @property
    def names(self) -> dict[int, str]:
        n = self.world_size
        return {**{i: f"party {i}" for i in range(n)}, n: "dealer"}

    def bind_endpoint(self, i: int) -> str:
        return self.binds.get(i, self.endpoints[i])


def parse_cluster(text: str, source: str = "cluster file") -> Cluster:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    errors: list[str] = []
    session = doc.get("session")
    if not isinstance(session, str) or not session:
        errors.append("missing `session = \"...\"` (a string every node agrees on)")
    precision = doc.get("precision", 16)
    if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 40:
        errors.append(f"`precision` must be an integer in [0, 40], got {precision!r}")
    parties = doc.get("party")
    if not isinstance(parties, list) or len(parties) < 2:
        errors.append("needs at least two [[party]] tables")
        parties = parties if isinstance(parties, list) else []
    dealer = doc.get("dealer")
    if not isinstance(dealer, dict):
        errors.append("missing the [dealer] table")
        dealer = {}
    endpoints: dict[int, str] = {}
    keys: dict[int, bytes] = {}
    binds: dict[int, str] = {}

    def node(tbl, what) -> tuple[str | None, bytes | None]:
        addr, key = tbl.get("address"), tbl.get("public_key")
        if not isinstance(addr, str) or not _ADDR.match(addr):
            errors.append(f"{what}: `address` must look like tcp://HOST:PORT, got {addr!r}")
            addr = None
        elif not 0 < int(_ADDR.match(addr).group(2)) < 65536:
            errors.append(f"{what}: port out of range in {addr!r}")
        if not isinstance(key, str) or not _Z85.match(key):
            errors.append(f"{what}: `public_key` must be a 40-character z85 key (from `mpcrt keygen`), got {key!r}")
            key = None
        b = tbl.get("bind")
        if b is not None and (not isinstance(b, str) or not _ADDR.match(b)):
            errors.append(f"{what}: `bind` must look like tcp://HOST:PORT, got {b!r}")
        unknown = set(tbl) - {"address", "public_key", "rank", "bind"}
        if unknown:
            errors.append(f"{what}: unknown keys {sorted(unknown)}")
        return addr, (key.encode() if key else None)

    ranks = []
    for i, p in enumerate(parties):
        if not isinstance(p, dict):
            errors.append(f"[[party]] #{i} is not a table")
            continue
        r = p.get("rank")
        if not isinstance(r, int) or isinstance(r, bool):
            errors.append(f"[[party]] #{i}: missing integer `rank`")
            continue
        ranks.append(r)
        a, k = node(p, f"party rank {r}")
        endpoints[r], keys[r] = a, k
        if isinstance(p.get("bind"), str):
            binds[r] = p["bind"]
    n = len(parties)
    if sorted(ranks) != list(range(n)) and ranks:
        errors.append(f"party ranks must be 0..{n - 1}, each once; got {sorted(ranks)}")
    a, k = node(dealer, "[dealer]")
    endpoints[n], keys[n] = a, k
    if isinstance(dealer.get("bind"), str):
        binds[n] = dealer["bind"]
    addrs = [e for e in endpoints.values() if e]
    if len(set(addrs)) != len(addrs):
        errors.append("two nodes share an address")
    unknown = set(doc) - {"session", "precision", "party", "dealer"}
    if unknown:
        errors.append(f"unknown top-level keys {sorted(unknown)}")
    if errors:
        raise ConfigError(f"{source} has errors:\n  - " + "\n  - ".join(errors))
    return Cluster(session, endpoints, keys, precision, binds)


def load_cluster(path: str) -> Cluster:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise ConfigError(f"cannot read cluster file {path!r}: {e.strerror}") from None
    return parse_cluster(text, path)


def format_cluster(c: Cluster) -> str:
    n = c.world_size
    def bind(i):
        return [f'bind = "{c.binds[i]}"'] if i in c.binds else []

    lines = [f'session = "{c.session}"', f"precision = {c.precision}", "", "[dealer]",
             f'address = "{c.endpoints[n]}"', f'public_key = "{c.public_keys[n].decode()}"'] + bind(n)
    for r in range(n):
        lines += ["", "[[party]]", f"rank = {r}", f'address = "{c.endpoints[r]}"',
                  f'public_key = "{c.public_keys[r].decode()}"'] + bind(r)
    return "\n".join(lines) + "\n"


def write_secret_key(path: str, public: bytes, secret: bytes) -> None:
    """Write a key pair file readable by its owner only (ZeroMQ certificate format)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# mpcrt CurveZMQ secret key: keep private\nmetadata\ncurve\n")
        fh.write(f'    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n')


def write_public_key(path: str, public: bytes) -> None:
    with open(path, "w") as fh:
        fh.write("# mpcrt CurveZMQ public key: goes into the cluster file\nmetadata\ncurve\n")
        fh.write(f'    public-key = "{public.decode()}"\n')


def load_secret_key(path: str) -> bytes:
    """The secret key from a `mpcrt keygen` secret file."""
    if not path:
        raise ConfigError("no secret key: pass --key FILE (made by `mpcrt keygen`) or set MPCRT_SECRET_KEY")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise ConfigError(f"cannot read secret key file {path!r}: {e.strerror}") from None
    m = re.search(r'secret-key\s*=\s*"([^"]{40})"', text)
    if not m:
        raise ConfigError(f"{path!r} holds no secret key: use the `.key_secret` file that `mpcrt keygen` wrote")
    return m.group(1).encode()

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

MAX_FILE_BYTES = 1 << 20  # a cluster or key file is a few kB; refuse to read a huge one whole

_ADDR = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d{1,5})$")
_Z85_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85 = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def is_z85_key(s: object) -> bool:
    """True if `s` is a 40-character z85 string that decodes to a 32-byte key (every group
    of 5 characters encodes a value below 2^32: libzmq refuses the others)."""
    if not isinstance(s, str) or not _Z85.match(s):
        return False
    for i in range(0, 40, 5):
        v = 0
        for ch in s[i : i + 5]:
            v = v * 85 + _Z85_CHARS.index(ch)
        if v >= 1 << 32:
            return False
    return True


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
        if not is_z85_key(key):
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
    pubs = [k for k in keys.values() if k]
    if len(set(pubs)) != len(pubs):  # a node's key is how the others tell which rank it is
        errors.append("two nodes share a public key (run `mpcrt keygen` once per node)")
    unknown = set(doc) - {"session", "precision", "party", "dealer"}
    if unknown:
        errors.append(f"unknown top-level keys {sorted(unknown)}")
    if errors:
        raise ConfigError(f"{source} has errors:\n  - " + "\n  - ".join(errors))
    return Cluster(session, endpoints, keys, precision, binds)


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path!r} is not UTF-8 text (byte {e.start}): is it the right file?") from None


def load_cluster(path: str) -> Cluster:
    text = _read_text(path, "cluster file")
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"cluster file {path!r} is larger than {MAX_FILE_BYTES} characters: is it the right file?")
    return parse_cluster(text, path)


def _toml_str(s: str) -> str:
    """s as a TOML basic string (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def format_cluster(c: Cluster) -> str:
    n = c.world_size
    def bind(i):
        return [f'bind = "{c.binds[i]}"'] if i in c.binds else []

    lines = [f"session = {_toml_str(c.session)}", f"precision = {c.precision}", "", "[dealer]",
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
    text = _read_text(path, "secret key file")
    m = re.search(r'secret-key\s*=\s*"([^"]{40})"', text)
    if not m:
        raise ConfigError(f"{path!r} holds no secret key: use the `.key_secret` file that `mpcrt keygen` wrote")
    if not is_z85_key(m.group(1)):
        raise ConfigError(f"{path!r}: its secret key is not a valid z85 key (damaged file?): run `mpcrt keygen` "
                          "again and put the new public key in the cluster file")
    return m.group(1).encode()

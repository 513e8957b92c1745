"""`mpcrt bench`'s arguments: sizes, ops, networks, party counts, and the jobs they make."""
from __future__ import annotations

import dataclasses
import re

from mpcrt.launch.workloads import WORKLOADS

_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9}


def parse_size(tok: str) -> int:
    """'1000', '1e6', '100k', '1M', '2^20' -> int (> 0)."""
    t = tok.strip().lower()
    try:
        if "^" in t:
            b, e = t.split("^", 1)
            v = int(b) ** int(e)
        elif t and t[-1] in _SUFFIX:
            v = float(t[:-1]) * _SUFFIX[t[-1]]
        else:
            v = float(t)
    except ValueError:
        raise ValueError(f"not a size: {tok!r} (use e.g. 1000, 1e6, 100k, 2^20)") from None
    if v != int(v) or v < 1:
        raise ValueError(f"a size must be a positive integer, got {tok!r}")
    return int(v)


def parse_ops(spec: str) -> list[str]:
    ops = [o.strip() for o in spec.split(",") if o.strip()]
    for o in ops:
        if o not in WORKLOADS:
            raise ValueError(f"unknown op {o!r}; known: {', '.join(WORKLOADS)}")
    if not ops:
        raise ValueError("--ops is empty")
    return list(dict.fromkeys(ops))


def parse_sizes(spec: str | None, ops: list[str]) -> dict[str, list[int]]:
    """Sizes per op. Comma-separated items; `OP=S1:S2` sets OP's sizes, a bare `S1:S2` (or
    bare items) the sizes of every element-wise op. matmul's size is n of n x n and is
    only set by `matmul=...` (unless matmul-like ops are the only ones selected).
    Ops without a size get their default (`mpcrt bench --list`)."""
    own: dict[str, list[int]] = {}
    bare: list[int] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" in item:
            op, vals = (s.strip() for s in item.split("=", 1))
            if op not in WORKLOADS:
                raise ValueError(f"--sizes names unknown op {op!r}; known: {', '.join(WORKLOADS)}")
            own.setdefault(op, []).extend(parse_size(v) for v in vals.split(":") if v.strip())
        else:
            bare.extend(parse_size(v) for v in item.split(":") if v.strip())
    only_dims = all(WORKLOADS[o].unit == "dim" for o in ops)
    out = {}
    for o in ops:
        w = WORKLOADS[o]
        if o in own:
            out[o] = own[o]
        elif bare and (w.unit == "elements" or only_dims):
            out[o] = bare
        else:
            out[o] = [w.default_size]
        out[o] = list(dict.fromkeys(out[o]))
    return out


@dataclasses.dataclass(frozen=True)
class Network:
    name: str  # "loopback", "lan", "wan" or "D:R"
    delay_ms: float | None = None  # one way
    rate_mbit: float | None = None  # None/0: unshaped

    @property
    def simulated(self) -> bool:
        return self.delay_ms is not None

    def describe(self) -> str:
        if not self.simulated:
            return "loopback (no simulation)"
        rate = f"{self.rate_mbit:g} Mbit/s" if self.rate_mbit else "unshaped"
        return f"{self.name}: {self.delay_ms:g} ms one way (RTT {2 * self.delay_ms:g} ms), {rate}"


def parse_networks(spec: str) -> list[Network]:
    from mpcrt.launch.netsim import PRESETS

    out = []
    for item in (spec or "none").split(","):
        t = item.strip().lower()
        if not t:
            continue
        if t in ("none", "loopback", "lo"):
            out.append(Network("loopback"))
        elif t in PRESETS:
            d, r = PRESETS[t]
            out.append(Network(t, d, r))
        elif re.fullmatch(r"[0-9.]+(ms)?:[0-9.]+(mbit)?", t):
            d, r = t.split(":")
            d, r = float(d.removesuffix("ms")), float(r.removesuffix("mbit"))
            out.append(Network(f"{d:g}:{r:g}", d, r or None))
        else:
            raise ValueError(f"--network {item!r}: use none, lan, wan or DELAY_MS:RATE_MBIT (e.g. 25:100)")
    return list(dict.fromkeys(out))


def parse_parties(spec: str) -> list[int]:
    out = []
    for t in spec.split(","):
        t = t.strip()
        if not t:
            continue
        if "-" in t:  # 2-8
            a, b = t.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(t))
    if not out or any(n < 2 for n in out):
        raise ValueError(f"--parties needs party counts >= 2, got {spec!r}")
    return list(dict.fromkeys(out))


def make_jobs(sizes: dict[str, list[int]]) -> list[tuple[str, int]]:
    return [(op, s) for op, ss in sizes.items() for s in ss]


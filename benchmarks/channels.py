"""Secure channels against plaintext ones, end to end on loopback (issue 19, point 3).

    .venv/bin/python benchmarks/channels.py [--rounds 3] [--repeats 5] [--warmup 2]
                                            [--sizes 1e6,matmul=1024] [--parties 2] [--out FILE.json]

Each round launches the same jobs (mul 1M and matmul 1024 at N = 2 by default) twice through
`mpcrt launch` on loopback, once with CurveZMQ + AES-256-GCM sealed payloads (the default
channels) and once with `--insecure-plaintext`, in alternating order, so that load from other
processes falls on both alike. Prints, per job, the median and the best of all timed calls
(end to end: the dealer on line; online: dealer material fetched ahead) for each kind of
channel and their ratio secure / plaintext (target: at most 1.15), and the CPU model.
On a shared machine the best times are the steadier figure; both are printed. Beside them:
the CPU seconds (user + system) all processes of a launch used (parties, dealer, launcher:
`getrusage(RUSAGE_CHILDREN)`), median over the rounds, and the difference secure - plaintext
per protocol call (each launch makes the same calls, so start-up costs cancel). That figure
holds up under load from other processes, where wall times do not.

`--exchange`: instead, two Nodes in this process swap one 8 MB array each way, 20 times per
kind of channel, and the best and median wall time and the process CPU per swap are printed
(the channel alone, no protocol). `OPENSSL_ia32cap=":~0xC0030000"` in the environment hides
AVX-512 from OpenSSL (AES-GCM then takes its AES-NI/AVX path, as on a CPU without AVX-512).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

from mpcrt.launch import bench_run, harness
from mpcrt.launch.bench_args import make_jobs, parse_sizes


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name":
                    return val.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args) -> dict:
    jobs = make_jobs(parse_sizes(args.sizes, ["mul", "matmul"]))
    times: dict[tuple, dict[str, list[float]]] = {}
    cpu: dict[str, list[float]] = {}
    for rnd in range(args.rounds):
        order = ("curve", "plaintext") if rnd % 2 == 0 else ("plaintext", "curve")
        for ch in order:
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = bench_run.run_local(args.parties, jobs, args.repeats, args.warmup, insecure=ch == "plaintext",
                                      timeout=args.timeout)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.setdefault(ch, []).append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
            if res.get("error"):
                raise SystemExit(f"channels.py: the {ch} run failed: {res['error']}")
            for r in res["results"]:
                d = times.setdefault((r["op"], r["size"]), {})
                d.setdefault(f"{ch}_e2e", []).extend(r["e2e"])
                d.setdefault(f"{ch}_online", []).extend(r["online"])
            print(f"round {rnd + 1}/{args.rounds}: {ch} done (load {harness.loadavg_1m()})", flush=True)
    rows = []
    for (op, size), d in times.items():
        row = {"op": op, "size": size}
        for phase in ("e2e", "online"):
            for ch in ("curve", "plaintext"):
                xs = d[f"{ch}_{phase}"]
                row[f"{ch}_{phase}_median_s"] = statistics.median(xs)
                row[f"{ch}_{phase}_best_s"] = min(xs)
                row[f"{ch}_{phase}_all_s"] = xs
            for stat in ("median", "best"):
                row[f"{phase}_ratio_{stat}"] = row[f"curve_{phase}_{stat}_s"] / row[f"plaintext_{phase}_{stat}_s"]
        rows.append(row)
    # per launch, every job makes warmup + 2 * repeats protocol calls (e2e, online) and repeats preprocesses
    calls = len(jobs) * (args.warmup + 2 * args.repeats)
    cpu_s = {ch: statistics.median(xs) for ch, xs in cpu.items()}
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "parties": args.parties, "rounds": args.rounds,
            "repeats": args.repeats, "warmup": args.warmup, "rows": rows, "cpu_s_per_launch": cpu_s,
            "cpu_s_per_launch_all": cpu, "calls_per_launch": calls,
            "extra_cpu_ms_per_call": (cpu_s["curve"] - cpu_s["plaintext"]) / calls * 1e3}


def exchange(nbytes: int, insecure: bool, iters: int = 20) -> dict:
    """Two Nodes (parties 0 and 1 of a session, in this process) swap an nbytes array each way."""
    import warnings

    import numpy as np

    from mpcrt.kernels import allocator
    from mpcrt.launch.local import free_ports
    from mpcrt.zmq_transport import Node, generate_keypair

    allocator.tune()  # as the runtime and the dealer do
    keys = {i: generate_keypair() for i in range(2)}
    ep = {i: f"tcp://127.0.0.1:{p}" for i, p in enumerate(free_ports(2))}
    pub = None if insecure else {i: k[0] for i, k in keys.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes = [Node(i, {0: "party 0", 1: "party 1"}, ep, pub, None if insecure else keys[i][1], "exchange",
                      connect_to=[1 - i], timeout=30, insecure=insecure) for i in range(2)]
    x = np.arange(nbytes // 8, dtype=np.int64)
    walls = []
    try:
        for it in range(iters + 3):  # 3 to warm up (and to bring the sealed links up)
            c0, t0 = os.times(), time.perf_counter()
            nodes[0].send(1, "x", x)
            nodes[1].send(0, "x", x)
            nodes[1].recv(0, "x")
            nodes[0].recv(1, "x")
            if it == 3:
                cpu0 = c0
            if it >= 3:
                walls.append(time.perf_counter() - t0)
        c1 = os.times()
    finally:
        for n in nodes:
            n.close(barrier=False)
    cpu = (c1.user - cpu0.user + c1.system - cpu0.system) / iters
    return {"best_s": min(walls), "median_s": statistics.median(walls), "cpu_s": cpu}


def print_exchange(nbytes: int) -> None:
    print(f"two Nodes swap {nbytes >> 20} MiB each way; {cpu_model()}; "
          f"OPENSSL_ia32cap={os.environ.get('OPENSSL_ia32cap', '(unset)')}")
    print("| channels | best s | median s | CPU s per swap |\n|---|---|---|---|")
    for insecure in (True, False, True, False):
        r = exchange(nbytes, insecure)
        print(f"| {'plaintext' if insecure else 'secure'} | {r['best_s']:.4f} | {r['median_s']:.4f} | "
              f"{r['cpu_s']:.4f} |")


def print_table(rep: dict) -> None:
    print(f"\n{rep['parties']} parties + dealer on loopback; {rep['cpu']} ({rep['cpus']} CPUs); "
          f"{rep['rounds']} rounds x {rep['repeats']} timed calls per kind of channel")
    print("| job | phase | secure median s | plain median s | ratio | secure best s | plain best s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rep["rows"]:
        job = f"{r['op']} {r['size']}" + ("^2" if r["op"] == "matmul" else "")
        for phase in ("e2e", "online"):
            print(f"| {job} | {phase} | {r[f'curve_{phase}_median_s']:.4f} | {r[f'plaintext_{phase}_median_s']:.4f} | "
                  f"{r[f'{phase}_ratio_median']:.2f} | {r[f'curve_{phase}_best_s']:.4f} | "
                  f"{r[f'plaintext_{phase}_best_s']:.4f} | {r[f'{phase}_ratio_best']:.2f} |")
    c = rep["cpu_s_per_launch"]
    print(f"\nCPU seconds per launch, all processes (median of {rep['rounds']}): secure {c['curve']:.2f}, "
          f"plaintext {c['plaintext']:.2f}; secure costs {rep['extra_cpu_ms_per_call']:.1f} ms more CPU per "
          f"protocol call ({rep['calls_per_launch']} calls per launch, all jobs)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="launches per kind of channel, alternating")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per job per launch")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per job per launch")
    p.add_argument("--sizes", default="1e6,matmul=1024", help="as mpcrt bench --sizes")
    p.add_argument("--parties", type=int, default=2)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one launch may take")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--exchange", action="store_true", help="time the channels alone (two Nodes, one process)")
    a = p.parse_args(argv)
    if a.exchange:
        print_exchange(8 << 20)
        return 0
    rep = run(a)
    print_table(rep)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

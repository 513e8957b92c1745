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
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys

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
    a = p.parse_args(argv)
    rep = run(a)
    print_table(rep)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

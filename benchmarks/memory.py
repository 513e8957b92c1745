"""Peak memory of real party and dealer processes on large elementwise work (issue 20, point 2).

    .venv/bin/python benchmarks/memory.py                      # mul, relu (2e7), agg (3 x 1e8), mul 1e8
    .venv/bin/python benchmarks/memory.py --cases mul,relu --size 2e7
    .venv/bin/python benchmarks/memory.py --cases mul --size 1e6 --env MPCRT_CHUNK_ELEMENTS=0

Each case starts the dealer and N parties as processes on this host (`mpcrt launch`'s
cluster files and keys: CurveZMQ channels, the default), samples every process's RSS
from /proc every --every-ms (20 ms), and prints the peak RSS of each party and of the
dealer, the op's time (the slowest party's), the whole run's wall time and CPU seconds
(the busiest party's / the dealer's, whole run: steadier than times on a loaded host). Cases:

- mul:   2 parties, x (party 0's) * y (party 1's), real product with its truncation;
- relu:  2 parties, relu(x);
- agg:   3 parties, each shares its own float vector; the sum is revealed to everyone
         (secure aggregation); the op's time covers sharing, summing and the reveal;
- mul8:  mul at --big elements (1e8).

Each party checks a slice of its result against the plaintext. A run whose processes
together pass --limit-gb is stopped (reported as "over limit") so a shared host never swaps.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

CHECK = 4096  # elements of each result checked against the plaintext
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ the party side
def _inputs(rt, n: int, src: int):
    """A shared float vector of n elements from party `src` (its plaintext dropped at once)."""
    v = np.random.default_rng(100 + src).standard_normal(n) if rt.rank == src else None
    return rt.share(v, src=src)


def _plain(n: int, src: int, k: int) -> np.ndarray:
    """The first k elements of party src's vector (every party can recompute them: a benchmark)."""
    return np.random.default_rng(100 + src).standard_normal(min(n, k))  # the first k of n are the first k drawn


def worker(case: str, n: int) -> None:
    import mpcrt

    rt = mpcrt.init()
    if case in ("mul", "relu", "mul8"):
        x = _inputs(rt, n, 0)
        y = _inputs(rt, n, 1) if case != "relu" else None
        t0 = time.perf_counter()
        z = x * y if y is not None else x.relu()
        dt = time.perf_counter() - t0
        got = z[:CHECK].reveal()
        a = _plain(n, 0, CHECK)
        want = a * _plain(n, 1, CHECK) if y is not None else np.maximum(a, 0)
    else:  # agg
        t0 = time.perf_counter()
        s = _inputs(rt, n, 0)
        for i in range(1, rt.world_size):
            s = s + _inputs(rt, n, i)
        total = s.reveal()
        dt = time.perf_counter() - t0
        got = total[:CHECK]
        want = sum(_plain(n, i, CHECK) for i in range(rt.world_size))
    err = float(np.max(np.abs(got - want)))
    ok = err < 1e-3
    print(f"RESULT rank={rt.rank} seconds={dt:.3f} max_err={err:.2e} ok={ok}", flush=True)
    if not ok:
        raise SystemExit(1)


# ------------------------------------------------------------- the launcher side
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def run_case(case: str, n: int, parties: int, every: float, limit: float, env_extra: dict) -> dict:
    from mpcrt.launch.local import make_local_cluster, node_env, stop_all

    workdir = tempfile.mkdtemp(prefix="mpcrt-mem-")
    os.chmod(workdir, 0o700)
    procs: dict[str, subprocess.Popen] = {}
    peak: dict[str, int] = {}
    cpu: dict[str, float] = {}
    outs: dict[str, list[str]] = {}
    stop = threading.Event()
    over = []
    try:
        cluster, keys = make_local_cluster(parties, workdir)
        base = dict(os.environ, **env_extra)
        names = ["dealer"] + [f"party {i}" for i in range(parties)]
        t0 = time.perf_counter()
        for i, name in zip([parties] + list(range(parties)), names):
            env = node_env(base, parties, i, cluster, keys[i], 16, False)
            argv = [sys.executable, "-m", "mpcrt.parties.dealer"] if name == "dealer" else \
                [sys.executable, "-m", "mpcrt.parties.party", os.path.abspath(__file__), "--worker", case, str(n)]
            procs[name] = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           start_new_session=True, text=True)
            outs[name] = []
            threading.Thread(target=lambda p=procs[name], o=outs[name]: o.extend(p.stdout), daemon=True).start()

        def sample():
            while not stop.is_set():
                total = 0
                for name, p in procs.items():
                    r = _rss(p.pid)
                    peak[name] = max(peak.get(name, 0), r)
                    cpu[name] = max(cpu.get(name, 0.0), _cpu_s(p.pid))
                    total += r
                if total > limit:
                    over.append(total)
                    stop_all(procs)
                    return
                time.sleep(every)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        codes = {name: p.wait() for name, p in procs.items()}
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
    finally:
        stop_all(procs)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = [float(w.split("=")[1]) for o in outs.values() for line in o if line.startswith("RESULT")
               for w in line.split() if w.startswith("seconds=")]
    ok = not over and all(c == 0 for c in codes.values()) and len(seconds) == parties
    if not ok:
        for name, o in outs.items():
            for line in o[-15:]:
                print(f"  [{name}] {line.rstrip()}")
    return {"case": case, "n": n, "parties": parties, "ok": ok, "over_limit": bool(over),
            "op_s": max(seconds) if seconds else float("nan"), "wall_s": wall,
            "peak_gb": {k: v / 1e9 for k, v in peak.items()}, "cpu_s": cpu}


def _size(s: str) -> int:
    return int(float(s))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="mul,relu,agg,mul8")
    ap.add_argument("--size", type=_size, default=20_000_000, help="elements of mul and relu (2e7)")
    ap.add_argument("--big", type=_size, default=100_000_000, help="elements of agg and mul8 (1e8)")
    ap.add_argument("--every-ms", type=float, default=20.0)
    ap.add_argument("--limit-gb", type=float, default=19.0, help="stop a run whose processes pass this together")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for every node (repeatable)")
    a = ap.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in a.env)
    print(f"# cpu: {_cpu()}; env: {env or '-'}")
    print(f"{'case':6} {'N':>2} {'elements':>11} {'op s':>7} {'wall s':>7} {'cpu s':>11}  "
          "peak RSS GB: parties | dealer")
    bad = 0
    for case in a.cases.split(","):
        n = a.big if case in ("agg", "mul8") else a.size
        parties = 3 if case == "agg" else 2
        r = run_case(case, n, parties, a.every_ms / 1e3, a.limit_gb * 1e9, env)
        ps = " ".join(f"{r['peak_gb'].get(f'party {i}', 0):.2f}" for i in range(parties))
        state = "" if r["ok"] else ("  OVER LIMIT" if r["over_limit"] else "  FAILED")
        cpu = f"{max(r['cpu_s'].get(f'party {i}', 0) for i in range(parties)):.1f}/{r['cpu_s'].get('dealer', 0):.1f}"
        print(f"{case:6} {parties:>2} {n:>11.3g} {r['op_s']:>7.2f} {r['wall_s']:>7.1f} {cpu:>11}  {ps} | "
              f"{r['peak_gb'].get('dealer', 0):.2f}{state}", flush=True)
        bad += not r["ok"]
    return 1 if bad else 0


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        model = "?"
    return f"{model}, {os.cpu_count()} cores"


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())

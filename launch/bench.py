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
same workloads through benchmarks/crypten_side.py (where CrypTen is importable) in
the same invocation and prints the ratios mpcrt/CrypTen.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from mpcrt.launch.workloads import WORKLOADS

PARTY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_party.py")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRYPTEN_SIDE = os.environ.get("MPCRT_CRYPTEN_SIDE", os.path.join(REPO_ROOT, "benchmarks", "crypten_side.py"))
# Untimed calls of each job before the timed ones, for CrypTen alike: 3 measure the steady
# state. (The first 2-4 calls after another job used to run slow on 2 cores, matmul 256 at
# N = 3 in 15-40 ms instead of 7: numpy's OpenBLAS workers spinning after the job's float64
# reference; launch.local.blas_thread_env now caps them.)
WARMUP = 3
CRYPTEN_NOT_IMPORTABLE = 3  # crypten_side.py's exit status when `import crypten` fails
DEFAULT_OPS = "mul,matmul,ltz,relu"
RECV_TIMEOUT = 120.0  # seconds a party waits for one message before PeerFailure
LOAD_WARN = 1.5


# ----------------------------------------------------------------- parsing
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


# ----------------------------------------------------------------- running
def _tail(text: str, k: int = 4000) -> str:
    return text[-k:]


def run_local(n: int, jobs, repeats: int = 3, warmup: int = WARMUP, insecure: bool = False, *, timeout: float = 1200.0,
              verbose: bool = False) -> dict:
    """Run the jobs on n parties + the dealer on loopback (`mpcrt launch` in a subprocess,
    stopped with SIGINT, then SIGKILL, after `timeout` seconds). Returns bench_party's JSON,
    with "error" set if the run failed (what was measured before the failure is kept)."""
    cfg = json.dumps({"jobs": jobs, "repeats": repeats, "warmup": warmup})
    with tempfile.TemporaryDirectory(prefix="mpcrt-bench-") as d:
        out = os.path.join(d, "result.json")
        log = os.path.join(d, "log.txt")
        argv = [sys.executable, "-m", "mpcrt", "launch", "-n", str(n), "--timeout", str(RECV_TIMEOUT)]
        argv += ["--insecure-plaintext"] if insecure else []
        argv += [PARTY_SCRIPT, cfg, out]
        with open(log, "wb") as lf:
            p = subprocess.Popen(argv, stdout=None if verbose else lf, stderr=subprocess.STDOUT if not verbose else None,
                                 start_new_session=True, cwd=REPO_ROOT)
            err, timed_out = None, False
            try:
                rc = p.wait(timeout=timeout)
                if rc != 0:
                    err = f"mpcrt launch exited {rc}"
            except subprocess.TimeoutExpired:
                err = f"timed out after {timeout:.0f} s"
                _stop_launcher(p)
                timed_out = True
            except KeyboardInterrupt:
                _stop_launcher(p)
                raise
        res = _collect(out, err, lambda: open(log, errors="replace").read(), n)
        if timed_out:
            res["kind"] = "timeout"
        return res


def _stop_launcher(p: subprocess.Popen) -> None:
    """SIGINT lets `mpcrt launch` stop its parties and dealer; SIGKILL if it does not go."""
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGINT)
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def why(err: str) -> str:
    """The first line of a run's error and the first line that names an exception."""
    lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
    if not lines:
        return "?"
    exc = next((ln for ln in lines[1:] if re.search(r"(Error|Failure|Exception|Traceback)\b", ln)), None)
    return lines[0] + (f" | {exc}" if exc else "")


def _collect(out: str, err: str | None, log, n: int) -> dict:
    res = {"parties": n, "results": [], "complete": False}
    if os.path.exists(out):
        with open(out) as fh:
            res = json.load(fh)
    if err is None and not res.get("complete"):
        err = "the parties exited without writing all results"
    if err:
        res["error"] = f"{n} parties: {err}\n{_tail(log())}"
    return res


def run_netsim(n: int, jobs, net: Network, repeats: int = 3, warmup: int = WARMUP, insecure: bool = False, *,
               timeout: float = 1200.0, verbose: bool = False, validate_seconds: float = 1.0) -> tuple[dict, dict]:
    """Run the jobs with each party and the dealer in its own network namespace (NetSim with
    n + 1 nodes, torn down on return or on any error). Validates the network first.
    Returns (bench_party's JSON, the validation)."""
    from mpcrt.launch.netsim import NetSim

    cfg = json.dumps({"jobs": jobs, "repeats": repeats, "warmup": warmup})
    with tempfile.TemporaryDirectory(prefix="mpcrt-bench-") as d, NetSim(n + 1, net.delay_ms, net.rate_mbit or 0) as ns:
        out = os.path.join(d, "result.json")
        v = ns.validate(seconds=validate_seconds)
        if not v["ok"]:  # a busy machine can upset one measurement: measure again before complaining
            v = ns.validate(seconds=validate_seconds)
        v["calibration"] = ns.calibration
        print(f"  network {net.describe()}, {n} parties + dealer: {format_validation(v)}", flush=True)
        ns.write_cluster(insecure=insecure)
        r = ns.run_mpc(PARTY_SCRIPT, [cfg, out], timeout=timeout, env_extra={"MPCRT_TIMEOUT": str(RECV_TIMEOUT)})
        v["relay_cpu_s"] = _relay_cpu_s(ns)  # since the NetSim started: all inside the measured window
        if verbose:
            for k, text in r.outputs.items():
                for line in text.splitlines():
                    print(f"[{k}] {line}")
        err = None
        if r.timed_out:
            err = f"timed out after {timeout:.0f} s"
        elif not r.ok:
            err = "failed: " + ", ".join(f"{k} exit {c}" for k, c in r.returncodes.items() if c != 0)
        log = lambda: "\n".join(f"--- {k}\n{_tail(t, 1500)}" for k, t in r.outputs.items())  # noqa: E731
        res = _collect(out, err, log, n)
        if r.timed_out:
            res["kind"] = "timeout"
        return res, v


def _proc_cpu_s(pid: int) -> tuple[float, float]:
    """(utime + stime + cutime + cstime of a live process, the same summed over its live descendants)."""
    tck = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    own = sum(int(x) for x in f[11:15]) / tck
    kids_s = 0.0
    try:
        kids = set()
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.update(int(k) for k in fh.read().split())
        for k in kids:
            try:
                kids_s += sum(_proc_cpu_s(k))
            except OSError:
                pass
    except OSError:
        pass
    return own, kids_s


def _relay_cpu_s(ns) -> dict | None:
    """CPU seconds used so far by the netsim relays (our children, reaped at teardown, so they
    count as ours then) and by their bind watchers (their children, never reaped by us)."""
    out = {"relays": 0.0, "watchers": 0.0}
    try:
        for c in ns._relays:
            own, kids = _proc_cpu_s(c.p.pid)
            out["relays"] += own
            out["watchers"] += kids
    except (OSError, AttributeError, ValueError, IndexError):
        return None
    return out


def format_validation(v: dict) -> str:
    s = f"measured RTT {v['rtt_ms']:.2f} ms (configured {v['rtt_expected_ms']:g} ms"
    s += f", {100 * v['rtt_error']:+.1f}%)" if v.get("rtt_error") is not None else ")"
    if v.get("measured_rate_mbit"):
        s += f", rate {v['measured_rate_mbit']:.1f} Mbit/s (configured {v['rate_mbit']:g}, {100 * v['rate_error']:+.1f}%)"
    else:
        s += ", rate unshaped"
    s += "" if v["ok"] else "  WARNING: off by more than 10%: results are not at the configured network"
    return s


# ----------------------------------------------------------------- results
def lower_bound(rounds: int, link_bytes: float, delay_ms: float | None, rate_mbit: float | None) -> dict:
    """Network lower bound of one op: rounds x one-way delay + link bytes / rate (seconds)."""
    lat = rounds * (delay_ms or 0.0) / 1e3
    xfer = link_bytes * 8 / (rate_mbit * 1e6) if rate_mbit else 0.0
    return {"latency_s": lat, "transfer_s": xfer, "bound_s": lat + xfer}


def _spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


def summarize(res: dict, net: Network, channels: str) -> list[dict]:
    rows = []
    for r in res.get("results", []):
        pp = r["per_party"]
        sent = max(p["bytes_sent"] for p in pp)
        recv = max(p["bytes_received"] for p in pp)
        link = max(max(p["bytes_sent"], p["bytes_received"]) for p in pp)
        link_e2e = max(max(p["bytes_sent"] + p["dealer_bytes_sent"], p["bytes_received"] + p["dealer_bytes_received"])
                       for p in pp)
        e2e, on, off = _spread(r["e2e"]), _spread(r["online"]), _spread(r["offline"])
        w = WORKLOADS[r["op"]]
        row = {
            "op": r["op"], "size": r["size"], "unit": w.unit, "parties": res["parties"], "network": net.name,
            "channels": channels,
            "e2e_s": e2e["median"], "e2e_min_s": e2e["min"], "e2e_max_s": e2e["max"], "e2e_all_s": e2e["all"],
            "online_s": on["median"], "online_min_s": on["min"], "online_max_s": on["max"], "online_all_s": on["all"],
            "offline_s": off["median"], "offline_min_s": off["min"], "offline_max_s": off["max"],
            "offline_all_s": off["all"],
            "rounds": r["rounds"],
            "bytes_sent_per_party": sent, "bytes_received_per_party": recv, "link_bytes_per_party": link,
            "mb_sent_per_party": sent / 1e6,
            "dealer_bytes": sum(p["dealer_bytes_received"] for p in pp),  # to all parties (to whichever is corrected)
            "online_dealer_bytes": max(p["online_dealer_bytes_received"] for p in pp),
            "max_abs_err": r["max_abs_err"],
            "stats_varied": any(p.get("stats_varied") for p in pp),
        }
        if net.simulated:
            b = lower_bound(r["rounds"], link, net.delay_ms, net.rate_mbit)
            be = lower_bound(r["rounds"], link_e2e, net.delay_ms, net.rate_mbit)
            row.update(delay_ms=net.delay_ms, rate_mbit=net.rate_mbit, bound_latency_s=b["latency_s"],
                       bound_transfer_s=b["transfer_s"], bound_online_s=b["bound_s"], bound_e2e_s=be["bound_s"],
                       online_over_bound=row["online_s"] / b["bound_s"] if b["bound_s"] else None,
                       e2e_over_bound=row["e2e_s"] / be["bound_s"] if be["bound_s"] else None)
        rows.append(row)
    return rows


def _pm(r: dict, k: str) -> float:
    return (r[f"{k}_max_s"] - r[f"{k}_min_s"]) / 2


def print_table(rows: list[dict], out=None) -> None:
    out = out or sys.stdout
    hdr = (f"{'op':<11}{'size':>9}{'N':>3} {'network':<9}{'chan':<6}{'e2e s':>9}{'±':>8}{'online s':>10}{'±':>8}"
           f"{'offline s':>10}{'rounds':>7}{'MB/party':>10}{'MB dlr':>9}{'max err':>10}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        print(f"{r['op']:<11}{_size(r):>9}{r['parties']:>3} {r['network']:<9}{r['channels'][:5]:<6}"
              f"{r['e2e_s']:>9.4f}{_pm(r, 'e2e'):>8.4f}{r['online_s']:>10.4f}{_pm(r, 'online'):>8.4f}"
              f"{r['offline_s']:>10.4f}{r['rounds']:>7}{r['mb_sent_per_party']:>10.2f}{r['dealer_bytes'] / 1e6:>9.2f}"
              f"{r['max_abs_err']:>10.2e}", file=out)
    print("e2e: dealer on line; online: dealer material fetched ahead (offline = that fetch); median of the "
          "repeats, ± half their range; MB/party: most any party sent; MB dlr: dealer to the parties, all together (e2e)", file=out)


def print_bounds(rows: list[dict], out=None) -> None:
    rows = [r for r in rows if "bound_online_s" in r]
    if not rows:
        return
    out = out or sys.stdout
    print("\nDistance to the network limit: bound = rounds x one-way + bytes/party x 8 / rate", file=out)
    hdr = (f"{'op':<11}{'size':>9}{'N':>3} {'network':<9}{'rounds':>7}{'MB link':>9}{'rnd x d':>9}{'B/rate':>9}"
           f"{'bound s':>9}{'online s':>10}{'x bound':>8}{'e2e bnd':>9}{'e2e s':>9}{'x bound':>8}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        print(f"{r['op']:<11}{_size(r):>9}{r['parties']:>3} {r['network']:<9}{r['rounds']:>7}"
              f"{r['link_bytes_per_party'] / 1e6:>9.2f}{r['bound_latency_s']:>9.4f}{r['bound_transfer_s']:>9.4f}"
              f"{r['bound_online_s']:>9.4f}{r['online_s']:>10.4f}{_ratio(r['online_over_bound']):>8}"
              f"{r['bound_e2e_s']:>9.4f}{r['e2e_s']:>9.4f}{_ratio(r['e2e_over_bound']):>8}", file=out)
    print("MB link: the busiest party's larger direction (sent or received); the e2e bound adds the dealer's "
          "bytes on party 0's link", file=out)


def _pct(x) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def _size(r: dict) -> str:
    return f"{r['size']}^2" if r.get("unit") == "dim" else str(r["size"])


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}"


# ----------------------------------------------------------------- CrypTen
def run_crypten(parties: list[int], sizes: dict[str, list[int]], repeats: int, warmup: int, *,
                timeout: float = 600.0, script: str | None = None, wait_idle: float = 0.0) -> dict:
    """The comparable workloads through benchmarks/crypten_side.py, one subprocess per
    (N, element count). Returns {"available", "reason", "version", "results": {N: {cname: res}}}."""
    script = script or CRYPTEN_SIDE
    rep = {"available": False, "reason": None, "version": None, "script": script, "results": {}, "errors": []}
    if not os.path.isfile(script):
        rep["reason"] = f"{script} does not exist (the CrypTen side-by-side runner is not in this checkout)"
        return rep
    by_n: dict[int, list[str]] = {}  # element count -> CrypTen workload names
    dims: list[str] = []
    for op, ss in sizes.items():
        w = WORKLOADS[op]
        for s in ss:
            c = w.crypten_name(s)
            if c is None:
                continue
            if w.unit == "dim":
                dims.append(c)
            else:
                by_n.setdefault(s, []).append(c)
    calls = [(n, names) for n, names in by_n.items()]
    if dims:
        if calls:
            calls[0] = (calls[0][0], calls[0][1] + dims)
        else:
            calls.append((1000, dims))
    if not calls:
        rep["reason"] = "none of the selected workloads has a CrypTen counterpart in crypten_side.py"
        return rep
    for n_parties in parties:
        for n, names in calls:
            with tempfile.TemporaryDirectory(prefix="mpcrt-crypten-") as d:
                path = os.path.join(d, "c.json")
                argv = [sys.executable, script, "--parties", str(n_parties), "--ops", ",".join(names), "--n", str(n),
                        "--repeats", str(repeats), "--warmup", str(warmup), "--timeout", str(timeout), "--json", path]
                argv += ["--wait-idle", str(wait_idle)] if wait_idle > 0 else []
                print(f"  CrypTen: {shlex.join(argv[1:])}", flush=True)
                try:
                    p = subprocess.run(argv, capture_output=True, text=True, timeout=(timeout + wait_idle) * len(names) + 120,
                                       start_new_session=True)
                except subprocess.TimeoutExpired:
                    rep["errors"].append(f"{n_parties} parties, {names}: crypten_side.py timed out")
                    continue
                if p.returncode == CRYPTEN_NOT_IMPORTABLE:
                    rep["reason"] = "CrypTen is not importable here: " + (p.stderr.strip().splitlines() or ["?"])[-1]
                    return rep
                if not os.path.exists(path):
                    rep["errors"].append(f"{n_parties} parties, {names}: exit {p.returncode}: {_tail(p.stderr, 1500)}")
                    continue
                with open(path) as fh:
                    doc = json.load(fh)
                rep["available"] = True
                rep["version"] = doc.get("version")
                rep["config"] = doc.get("config")
                for name, r in doc.get("results", {}).items():
                    if r.get("error"):
                        rep["errors"].append(f"{n_parties} parties, {name}: {r['error'].splitlines()[0]}")
                    key = f"{name}@{n}" if name in by_n.get(n, []) else name
                    rep["results"].setdefault(str(n_parties), {})[key] = r
    return rep


def crypten_key(op: str, size: int) -> str | None:
    w = WORKLOADS[op]
    c = w.crypten_name(size)
    if c is None:
        return None
    return c if w.unit == "dim" else f"{c}@{size}"


def compare_crypten(rows: list[dict], rep: dict) -> list[dict]:
    """One line per loopback (op, size, N) with a CrypTen result: mpcrt e2e / CrypTen time, per channel kind."""
    out = {}
    for r in rows:
        if r["network"] != "loopback":
            continue
        key = crypten_key(r["op"], r["size"])
        c = rep.get("results", {}).get(str(r["parties"]), {}).get(key) if key else None
        if not c or c.get("error") or c.get("time_s") is None:
            continue
        k = (r["op"], r["size"], r["parties"])
        o = out.setdefault(k, {"op": r["op"], "size": r["size"], "unit": r["unit"], "parties": r["parties"],
                               "crypten_s": c["time_s"], "crypten_rounds": c["rounds"],
                               "crypten_bytes_per_party": c["bytes_per_party"], "crypten_max_abs_err": c["max_abs_err"]})
        ch = r["channels"]
        o[f"mpcrt_{ch}_e2e_s"] = r["e2e_s"]
        o[f"mpcrt_{ch}_online_s"] = r["online_s"]
        o[f"ratio_{ch}"] = r["e2e_s"] / c["time_s"]
        o["mpcrt_rounds"] = r["rounds"]
        o["mpcrt_bytes_sent_plus_received"] = r["bytes_sent_per_party"] + r["bytes_received_per_party"]
        o["mpcrt_max_abs_err"] = r["max_abs_err"]
    return list(out.values())


def print_crypten(cmp: list[dict], rep: dict, out=None) -> None:
    out = out or sys.stdout
    if not rep.get("available"):
        print(f"\nCrypTen side by side: not run: {rep.get('reason') or 'no result'}", file=out)
        for e in rep.get("errors", []):
            print(f"  {e}", file=out)
        return
    print(f"\nmpcrt vs CrypTen {rep.get('version')} (TTP provider, gloo on loopback, 1 thread per process); "
          "times: median, mpcrt end to end (dealer on line, as CrypTen's TTP)", file=out)
    hdr = (f"{'op':<11}{'size':>9}{'N':>3}{'CrypTen s':>11}{'mpcrt plain':>12}{'ratio':>7}{'mpcrt curve':>12}{'ratio':>7}"
           f"{'rounds C/m':>12}{'MB C/m (sent+recv)':>21}{'err C/m':>20}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for o in cmp:
        def col(ch):
            s = o.get(f"mpcrt_{ch}_e2e_s")
            return (f"{s:>12.4f}{o[f'ratio_{ch}']:>7.2f}") if s is not None else f"{'-':>12}{'-':>7}"

        print(f"{o['op']:<11}{_size(o):>9}{o['parties']:>3}{o['crypten_s']:>11.4f}{col('plaintext')}{col('curve')}"
              f"{o['crypten_rounds']:>6}/{o['mpcrt_rounds']:<5}"
              f"{o['crypten_bytes_per_party'] / 1e6:>10.1f}/{o['mpcrt_bytes_sent_plus_received'] / 1e6:<10.1f}"
              f"{o['crypten_max_abs_err']:>10.1e}/{o['mpcrt_max_abs_err']:<9.1e}", file=out)
    print("ratio = mpcrt / CrypTen (< 1: mpcrt faster). CrypTen's channels are plaintext: compare the plain column; "
          "curve = mpcrt with CurveZMQ encryption", file=out)
    for e in rep.get("errors", []):
        print(f"  CrypTen error: {e}", file=out)


# ----------------------------------------------------------------- markdown
def _fmt_t(r: dict, k: str) -> str:
    return f"{r[f'{k}_s']:.4g} ({r[f'{k}_min_s']:.3g}-{r[f'{k}_max_s']:.3g})"


def to_markdown(doc: dict) -> str:
    """The tables of one bench JSON document as Markdown (for benchmarks/README.md)."""
    m = doc["meta"]
    mach = m.get("machine", {})
    lines = [f"Run {m['when']}: `{m['command']}`; {mach.get('cpu_count')} CPUs ({mach.get('cpu', '?')}), "
             f"GEMMs on {mach.get('device', 'cpu')}, git {mach.get('git', '?')}, load {m['loadavg_1m_before']} before, {m['repeats']} repeats after "
             f"{m['warmup']} warm-up; times: median (min-max) in seconds.", ""]
    rows = doc["rows"]
    lines += ["| op | size | N | network | channels | e2e s | online s | offline s | rounds | MB sent/party "
              "| MB dealer->P0 | max abs err | other CPU use |",
              "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['op']} | {_size(r)} | {r['parties']} | {r['network']} | {r['channels']} | {_fmt_t(r, 'e2e')} "
                     f"| {_fmt_t(r, 'online')} | {_fmt_t(r, 'offline')} | {r['rounds']} | {r['mb_sent_per_party']:.2f} "
                     f"| {r['dealer_bytes'] / 1e6:.2f} | {r['max_abs_err']:.2g} | {_pct(r.get('others_cpu_share'))} |")
    b = [r for r in rows if "bound_online_s" in r]
    if b:
        lines += ["", "| op | size | N | network | rounds | MB link/party | rounds x d | bytes/rate | bound s "
                  "| online s | online/bound | e2e bound s | e2e s | e2e/bound |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in b:
            lines.append(f"| {r['op']} | {_size(r)} | {r['parties']} | {r['network']} | {r['rounds']} "
                         f"| {r['link_bytes_per_party'] / 1e6:.2f} | {r['bound_latency_s']:.4f} | {r['bound_transfer_s']:.4f} "
                         f"| {r['bound_online_s']:.4f} | {r['online_s']:.4f} | {_ratio(r['online_over_bound'])} "
                         f"| {r['bound_e2e_s']:.4f} | {r['e2e_s']:.4f} | {_ratio(r['e2e_over_bound'])} |")
    if m.get("validation"):
        lines += ["", "| network/N | configured RTT ms | measured RTT ms | configured Mbit/s | measured Mbit/s | ok |",
                  "|---|---:|---:|---:|---:|---|"]
        for k, v in m["validation"].items():
            rate = f"{v['measured_rate_mbit']:.1f}" if v.get("measured_rate_mbit") else "-"
            lines.append(f"| {k} | {v['rtt_expected_ms']:g} | {v['rtt_ms']:.2f} | {v['rate_mbit'] or '-'} | {rate} "
                         f"| {v['ok']} |")
    if doc.get("failed_jobs"):
        lines += ["", "Failed:", ""]
        for f in doc["failed_jobs"]:
            lines.append(f"- {f['op']} {f['size']}, N={f['parties']}, {f['network']}, {f['channels']}: "
                         f"`{why(f['error'])}`")
    cmp = doc.get("crypten_comparison")
    if cmp:
        rep = doc.get("crypten", {})
        lines += ["", f"CrypTen {rep.get('version')}: ratio = mpcrt e2e / CrypTen time (< 1: mpcrt faster).", "",
                  "| op | size | N | CrypTen s | mpcrt plaintext s | ratio | mpcrt curve s | ratio | rounds CrypTen/mpcrt "
                  "| MB sent+recv CrypTen/mpcrt | max err CrypTen/mpcrt |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for o in cmp:
            def col(ch):
                s = o.get(f"mpcrt_{ch}_e2e_s")
                return f"{s:.4f} | {o[f'ratio_{ch}']:.2f}" if s is not None else "- | -"

            lines.append(f"| {o['op']} | {_size(o)} | {o['parties']} | {o['crypten_s']:.4f} | {col('plaintext')} "
                         f"| {col('curve')} | {o['crypten_rounds']}/{o['mpcrt_rounds']} "
                         f"| {o['crypten_bytes_per_party'] / 1e6:.1f}/{o['mpcrt_bytes_sent_plus_received'] / 1e6:.1f} "
                         f"| {o['crypten_max_abs_err']:.2g}/{o['mpcrt_max_abs_err']:.2g} |")
    elif "crypten" in doc and not doc["crypten"].get("available"):
        lines += ["", f"CrypTen: not run: {doc['crypten'].get('reason')}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- meta
def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    info["mem_gb"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    for mod in ("numpy", "torch", "zmq", "mpcrt"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            pass
    info["device"] = os.environ.get("MPCRT_DEVICE") or "cpu"  # where large GEMMs ran (--device / MPCRT_DEVICE)
    try:
        r = subprocess.run(["git", "-C", REPO_ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True,
                           timeout=5)
        if r.returncode == 0:
            info["git"] = r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def cpu_busy(sample_s: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over `sample_s` (from /proc/stat); None where unknown."""
    def read():
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)

    try:
        t0, i0 = read()
        time.sleep(sample_s)
        t1, i1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def _machine_busy_s() -> float | None:
    """CPU-seconds processes on the machine have used since boot, plus time stolen by the
    hypervisor (from /proc/stat: user + nice + system + steal). Interrupt and softirq time
    (our own network traffic, on loopback or through the simulated links) is left out."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        return (vals[0] + vals[1] + vals[2] + (vals[7] if len(vals) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Contention:
    """How much CPU other processes used while we ran: (machine busy - our own and our
    children's CPU time) / (wall time x CPUs). Our children count once they have exited."""

    def __init__(self):
        self.m0, self.t0, self.w0 = _machine_busy_s(), self._own(), time.monotonic()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def share(self, also_ours_s: float = 0.0) -> float | None:
        """also_ours_s: CPU time of processes of ours that we never reap (the netsim relays' watchers)."""
        m1 = _machine_busy_s()
        if m1 is None or self.m0 is None:
            return None
        wall = time.monotonic() - self.w0
        other = (m1 - self.m0) - (self._own() - self.t0) - also_ours_s
        return max(0.0, other / max(1e-9, wall * (os.cpu_count() or 1)))


def wait_idle(max_wait: float, busy_below: float = 0.25) -> float | None:
    """Wait (at most max_wait s) until the CPUs are less than `busy_below` busy; return the last sample."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy(1.0)
    while busy is not None and busy >= busy_below and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


# ----------------------------------------------------------------- main
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
    os.environ["MPCRT_DEVICE"] = a.device  # the launched parties and dealer inherit it
    from mpcrt.errors import ConfigError
    from mpcrt.kernels import gemm

    try:
        gemm.check_device()
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
    load0 = _load()
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
        busy = wait_idle(a.wait_idle) if a.wait_idle > 0 else cpu_busy(0.5)
        load = _load()
        print(f"running {n} parties on {net.name}, {ch} (load {load}, CPUs {_pct(busy)} busy) ...", flush=True)
        t = time.monotonic()
        cont = Contention()
        relays_s = watchers_s = 0.0
        try:
            if net.simulated:
                res, v = run_netsim(n, job_list, net, a.repeats, a.warmup, insecure, timeout=a.timeout,
                                    verbose=a.verbose)
                validations[f"{net.name}/{n}"] = v
                rc = v.get("relay_cpu_s") or {}
                relays_s, watchers_s = rc.get("relays", 0.0), rc.get("watchers", 0.0)
            else:
                res = run_local(n, job_list, a.repeats, a.warmup, insecure, timeout=a.timeout, verbose=a.verbose)
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
              f"{_pct(others)} of the CPUs meanwhile" + (f", the simulation's relays {_pct(sim_share)}" if sim_share
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
            crypten_rep = run_crypten(parties, csizes, a.repeats, a.warmup, timeout=a.timeout, wait_idle=a.wait_idle)
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
            "loadavg_1m_before": load0, "loadavg_1m_after": _load(), "seconds": round(time.time() - t0, 1),
            "machine": machine_info(),
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
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json")
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
            made = plots.make_plots(rows, a.out, stem=os.path.basename(path)[: -len(".json")])
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
    p.add_argument("--warmup", type=int, default=WARMUP,
                   help=f"untimed warm-up calls of each job, CrypTen's too (default {WARMUP})")
    p.add_argument("--insecure-plaintext", action="store_true", help="plaintext channels (as CrypTen uses)")
    from mpcrt.cli import add_device_argument

    add_device_argument(p)
    p.add_argument("--out", default="bench-results", help="folder for the JSON results and plots (default bench-results)")
    p.add_argument("--plots", action="store_true", help="also write PNG plots (needs matplotlib)")
    p.add_argument("--crypten", action="store_true",
                   help="also run the workloads through CrypTen (benchmarks/crypten_side.py) and print ratios")
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

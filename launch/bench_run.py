"""`mpcrt bench`'s runs: the jobs on N parties + the dealer, on loopback (`mpcrt launch`) or
each node in its own network namespace (launch/netsim.py), and CrypTen's runs of the same
workloads (launch/crypten_side.py, in its own process)."""
from __future__ import annotations

import json
import os
import tempfile

from mpcrt.launch import harness
from mpcrt.launch.bench_args import Network
from mpcrt.launch.bench_report import format_validation
from mpcrt.launch.workloads import WORKLOADS

PARTY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_party.py")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Untimed calls of each job before the timed ones, for CrypTen alike: 3 measure the steady
# state. (The first 2-4 calls after another job used to run slow on 2 cores, matmul 256 at
# N = 3 in 15-40 ms instead of 7: numpy's OpenBLAS workers spinning after the job's float64
# reference; launch.local.blas_thread_env now caps them.)
WARMUP = 3
RECV_TIMEOUT = 120.0  # seconds a party waits for one message before PeerFailure


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
        s = harness.launch_session(n, PARTY_SCRIPT, [cfg, out], timeout=timeout, recv_timeout=RECV_TIMEOUT,
                                   insecure=insecure, verbose=verbose, cwd=REPO_ROOT)
        res = _collect(out, s.error, lambda: s.log, n)
        if s.timed_out:
            res["kind"] = "timeout"
        return res


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
        # the links, for the protocols' cost model (FSS comparisons, splines), unless set: as a
        # deployment over this network would configure them (benchmarks/models.py does the same)
        link = os.environ.get("MPCRT_NETWORK") or f"{net.delay_ms:g}:{net.rate_mbit or 0:g}"
        r = ns.run_mpc(PARTY_SCRIPT, [cfg, out], timeout=timeout,
                       env_extra={"MPCRT_TIMEOUT": str(RECV_TIMEOUT), "MPCRT_NETWORK": link})
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


def _relay_cpu_s(ns) -> dict | None:
    """CPU seconds used so far by the netsim relays (our children, reaped at teardown, so they
    count as ours then) and by their bind watchers (their children, never reaped by us)."""
    out = {"relays": 0.0, "watchers": 0.0}
    try:
        for c in ns._relays:
            own, kids = harness.proc_cpu_s(c.p.pid)
            out["relays"] += own
            out["watchers"] += kids
    except (OSError, AttributeError, ValueError, IndexError):
        return None
    return out


def run_crypten(parties: list[int], sizes: dict[str, list[int]], repeats: int, warmup: int, *,
                timeout: float = 600.0, script: str | None = None, wait_idle: float = 0.0) -> dict:
    """The comparable workloads through launch/crypten_side.py, one subprocess per
    (N, element count). Returns {"available", "reason", "version", "results": {N: {cname: res}}}."""
    script = script or harness.crypten_side_script()
    rep = {"available": False, "reason": None, "version": None, "script": script, "results": {}, "errors": []}
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
            c = harness.run_crypten_side(n_parties, names, n=n, repeats=repeats, warmup=warmup, timeout=timeout,
                                         wait_idle=wait_idle, script=script, echo=lambda s: print(s, flush=True))
            if c.unavailable:
                rep["reason"] = c.unavailable
                return rep
            if c.doc is None:
                rep["errors"].append(f"{n_parties} parties, {names}: {c.error}")
                continue
            rep["available"] = True
            rep["version"] = c.doc.get("version")
            rep["config"] = c.doc.get("config")
            for name, r in c.doc.get("results", {}).items():
                if r.get("error"):
                    rep["errors"].append(f"{n_parties} parties, {name}: {r['error'].splitlines()[0]}")
                key = f"{name}@{n}" if name in by_n.get(n, []) else name
                rep["results"].setdefault(str(n_parties), {})[key] = r
    return rep

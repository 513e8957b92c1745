"""`mpcrt launch`: the dealer and N parties as processes on this host.

Free loopback ports, fresh CurveZMQ keys in a private temporary folder, every output
line prefixed with its node's name, exit status 0 only if every node succeeded: every
party and the dealer exited 0 (a dealer that does not leave by itself once the parties
are done fails the run too). On a node's failure the others get a short grace period
to report (PeerFailure), then are stopped; no process is left behind, also on Ctrl-C.

A cut fault (MPCRT_FAULT=NODE:cut:..., mpcrt.faults) routes every link of that node
through relays in this process (launch/relay.py's CutRelay): each node gets its own
cluster file, in which the addresses it dials to or from the cut node are the relays'.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from mpcrt import faults
from mpcrt.cluster import Cluster, format_cluster, load_cluster, write_secret_key
from mpcrt.config import Config
from mpcrt.launch.relay import CutRelay
from mpcrt.kernels import gemm
from mpcrt.zmq_transport import generate_keypair

DEALER_REPORT_SECONDS = 5.0  # the dealer's time to report once every party has exited
GRACE_SECONDS = 8.0  # after a node's failure, the others' time to report theirs (at least: report_grace)
DEALER_EXIT_SECONDS = 5.0  # after every party succeeded, the dealer's time to leave


def _ephemeral_start() -> int:
    """Where the kernel's range for outgoing connections' source ports starts (Linux: 32768 by default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; macOS and Windows hand out 49152-65535


def free_ports(k: int, host: str = "127.0.0.1") -> list[int]:
    """k distinct ports free on host now, taken below the ephemeral range where it leaves room: a port the
    kernel hands out (bind to 0) may be given, before our node binds it, to another node's outgoing
    connection as its source port, and the node then fails with "address already in use"."""
    top = min(_ephemeral_start(), 32768)
    pool = range(20000, top) if top - 20000 >= 1000 else range(0)
    pick = secrets.SystemRandom()
    socks: list[socket.socket] = []
    ports: list[int] = []
    tries = 0
    while len(ports) < k:
        s = socket.socket()
        tries += 1
        try:
            s.bind((host, pick.choice(pool) if pool and tries <= 50 * k else 0))
        except OSError:
            s.close()
            continue
        socks.append(s)  # held open until all k are found, so no port comes twice
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def loopback_cluster(n: int, precision: int = 16, prefix: str = "local") -> tuple[Cluster, dict[int, bytes]]:
    """A cluster of n parties and a dealer on free loopback ports with fresh CurveZMQ keys;
    returns (cluster, {node id: secret key})."""
    ports = free_ports(n + 1)
    keys = {i: generate_keypair() for i in range(n + 1)}
    c = Cluster(
        session=f"{prefix}-{secrets.token_hex(8)}",
        endpoints={i: f"tcp://127.0.0.1:{ports[i]}" for i in range(n + 1)},
        public_keys={i: keys[i][0] for i in range(n + 1)},
        precision=precision,
    )
    return c, {i: keys[i][1] for i in range(n + 1)}


def make_local_cluster(n: int, workdir: str, precision: int = 16) -> tuple[str, dict[int, str]]:
    """Write a cluster file and per-node secret key files; return (cluster path, {id: key path})."""
    c, secret = loopback_cluster(n, precision)
    path = os.path.join(workdir, "cluster.toml")
    with open(path, "w") as fh:
        fh.write(format_cluster(c))
    key_paths = {}
    for i, sec in secret.items():
        key_paths[i] = os.path.join(workdir, f"node{i}.key_secret")
        write_secret_key(key_paths[i], c.public_keys[i], sec)
    return path, key_paths


def cut_views(path: str, victim: int, workdir: str) -> tuple[CutRelay, dict[int, str]]:
    """Relays for every link to and from node `victim` of the cluster file `path`, and each
    node's own cluster file dialling them; returns (relays, {node id: cluster file})."""
    c = load_cluster(path)
    ids = sorted(c.endpoints)
    port = {i: int(c.endpoints[i].rsplit(":", 1)[1]) for i in ids}
    others = [j for j in ids if j != victim]
    # targets: victim -> j for each j, then j -> victim for each j
    relay = CutRelay([port[j] for j in others] + [port[victim]] * len(others))
    via = {(victim, j): relay.ports[k] for k, j in enumerate(others)}
    via.update({(j, victim): relay.ports[len(others) + k] for k, j in enumerate(others)})
    paths = {}
    for i in ids:
        eps = {j: f"tcp://127.0.0.1:{via[(i, j)]}" if (i, j) in via else c.endpoints[j] for j in ids}
        paths[i] = os.path.join(workdir, f"cluster-{i}.toml")
        with open(paths[i], "w") as fh:
            fh.write(format_cluster(Cluster(c.session, eps, c.public_keys, c.precision, c.binds)))
    return relay.start(), paths


def _cut_victim(env: dict, n: int) -> int | None:
    """The node id a cut fault in env's MPCRT_FAULT names, or None."""
    spec = Config.from_env(env).fault
    f = faults.parse(spec) if spec else None
    if f is None or f.action != "cut":
        return None
    names = {f"party {i}": i for i in range(n)} | {"dealer": n}
    return names.get(f.node)


def _pump(stream, prefix: str, out, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        with lock:
            out.write(f"[{prefix}] {line}\n")
            out.flush()
    stream.close()


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_thread_env(n: int, env: dict) -> dict:
    """BLAS/OpenMP thread caps for n parties and the dealer sharing this host (those the
    user set are kept): MPCRT_THREADS if set, else cpu_count // (n + 1), at least 1.

    numpy's OpenBLAS starts a worker per core, and after each float matmul (a script's own
    reference, an import's self-check) the idle workers spin for tens of milliseconds: on 2
    cores that took 15-30 ms of CPU from the protocol in each of the next 2-3 calls (a
    256 x 256 secret matmul at N = 3: 20-40 ms instead of 7)."""
    t = str(gemm.cpu_share(n, env.get("MPCRT_THREADS")))
    return {v: t for v in BLAS_THREAD_VARS if v not in env}


def node_env(base: dict, n: int, rank: int, cluster: str, key: str | None, precision: int, insecure: bool,
             timeout: float | None = None) -> dict:
    """The environment of node `rank` (n: the dealer) of an n-party session on this host:
    base's configuration (mpcrt.config) with this node's cluster file, rank, key,
    precision and security mode, and the BLAS thread caps."""
    env = dict(base)
    env.update(blas_thread_env(n, env))
    env["PYTHONUNBUFFERED"] = "1"
    cfg = Config.from_env(env).replace(cluster=cluster, rank=rank, precision=precision,
                                       insecure=insecure, secret_key=None if insecure else key, timeout=timeout)
    return cfg.apply(env)


def launch(
    n: int,
    script: str,
    args: list[str] | None = None,
    precision: int = 16,
    insecure: bool = False,
    timeout: float | None = None,
    env_extra: dict | None = None,
    out=None,
) -> int:
    """Run `script` on n parties plus a dealer; return 0 iff every party exited 0."""
    out = out or sys.stdout
    if n < 2:
        print("mpcrt launch: need at least 2 parties (-n 2)", file=sys.stderr)
        return 2
    if not os.path.isfile(script):
        print(f"mpcrt launch: no such script {script!r}", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="mpcrt-")
    os.chmod(workdir, 0o700)
    procs: dict[str, subprocess.Popen] = {}
    threads = []
    lock = threading.Lock()
    relay = None
    try:
        cluster, key_paths = make_local_cluster(n, workdir, precision)
        clusters = {i: cluster for i in range(n + 1)}
        base = dict(os.environ)
        base.update(env_extra or {})
        victim = _cut_victim(base, n)
        if victim is not None:
            relay, clusters = cut_views(cluster, victim, workdir)
            base["MPCRT_FAULT_CUT"] = os.path.join(workdir, "cut")
            relay.watch(base["MPCRT_FAULT_CUT"])
        if insecure:
            print("mpcrt launch: WARNING --insecure-plaintext: channels are NOT encrypted or authenticated "
                  "(local benchmarking only)", file=sys.stderr)

        def start(name, argv, i):
            env = node_env(base, n, i, clusters[i], key_paths[i], precision, insecure, timeout)
            p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            procs[name] = p
            t = threading.Thread(target=_pump, args=(p.stdout, name, out, lock), daemon=True)
            t.start()
            threads.append(t)

        start("dealer", [sys.executable, "-m", "mpcrt.parties.dealer"], n)
        for i in range(n):
            start(f"party {i}", [sys.executable, "-m", "mpcrt.parties.party", script, *(args or [])], i)
        return _supervise(procs, n, out, lock, report_grace(base, timeout))
    except KeyboardInterrupt:
        print("mpcrt launch: interrupted; stopping all nodes", file=sys.stderr)
        return 130
    finally:
        stop_all(procs)
        if relay is not None:
            relay.close()
        for t in threads:
            t.join(timeout=2)
        shutil.rmtree(workdir, ignore_errors=True)


def report_grace(env: dict, timeout: float | None) -> float:
    """How long, after a node's failure, the others get to report theirs: GRACE_SECONDS, or
    where a receive timeout was set (--timeout, MPCRT_TIMEOUT) that timeout + 2 s if longer. A
    node lost before its links came up (start-up) is found by the receive timeout alone."""
    if timeout is None and env.get("MPCRT_TIMEOUT"):
        timeout = Config.from_env(env).timeout
    return GRACE_SECONDS if timeout is None else max(GRACE_SECONDS, timeout + 2.0)


def _supervise(procs: dict[str, subprocess.Popen], n: int, out, lock, grace: float = GRACE_SECONDS) -> int:
    parties = [f"party {i}" for i in range(n)]
    failed_at = None
    while True:
        codes = {name: p.poll() for name, p in procs.items()}
        bad = [nm for nm in procs if codes[nm] not in (None, 0)]
        if bad and failed_at is None:
            failed_at = time.monotonic()
        if all(codes[nm] is not None for nm in parties):
            break
        if failed_at is not None and all(codes[nm] is not None or _stopped(procs[nm].pid) for nm in procs):
            break  # the nodes still there are stopped (SIGSTOP): none of them will report anything
        if failed_at is not None and time.monotonic() - failed_at > grace:
            break
        time.sleep(0.05)
    # the dealer leaves by itself once all parties said goodbye (or reports a party's failure); once
    # every party has exited it has no one left to serve, and its report comes within seconds
    codes = {name: p.poll() for name, p in procs.items()}
    left = grace if failed_at is not None else DEALER_EXIT_SECONDS
    if all(codes[nm] is not None for nm in parties):
        left = min(left, max(DEALER_EXIT_SECONDS, DEALER_REPORT_SECONDS))
    deadline = time.monotonic() + left
    while procs["dealer"].poll() is None and time.monotonic() < deadline and not _stopped(procs["dealer"].pid):
        time.sleep(0.05)
    codes = {name: p.poll() for name, p in procs.items()}
    nodes = parties + ["dealer"]
    failures = [f"{nm} (exit {codes[nm]})" for nm in nodes if codes[nm] not in (None, 0)]
    stuck = [nm for nm in nodes if codes[nm] is None]
    if failures or stuck:
        with lock:
            msg = "mpcrt launch: failed: " + ", ".join(failures)
            if stuck:
                msg += ("; " if failures else "") + "stopped: " + ", ".join(stuck)
            print(msg, file=sys.stderr)
        return 1
    return 0


def _stopped(pid: int) -> bool:
    """True if process `pid` is stopped (SIGSTOP; state T in /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return False


def stop_all(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM (and SIGCONT) every live process group, SIGKILL what is still up 3 s later."""
    for p in procs.values():
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                os.killpg(p.pid, signal.SIGCONT)  # a stopped process takes its SIGTERM now
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 3
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

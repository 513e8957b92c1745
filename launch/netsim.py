"""Simulated LAN/WAN for benchmarks: one Linux network namespace per node.

    from mpcrt.launch.netsim import NetSim

    with NetSim(3, preset="wan") as net:            # 2 parties + the dealer
        print(net.validate())                         # measured RTT and rate vs configured
        res = net.run_mpc("script.py", timeout=120)   # dealer + parties inside the namespaces
        # or by hand:
        net.write_cluster()                           # cluster file + fresh keys (private temp dir)
        p = net.popen(0, [sys.executable, "-m", "mpcrt.parties.party", "s.py"], env=net.env(0))

Topology. Node i (0..n-1; with mpcrt the last node is the dealer) gets its own network
namespace `mpcrt-<pid>-<k>-<i>` with one veth `eth0`, address 10.77.0.(i+1)/24; the
other end of every veth sits in a hub namespace `mpcrt-<pid>-<k>-hub` on a bridge.
The host's own namespace is never touched: the veths are created directly inside
the namespaces, no address outside 10.77.0.0/24 exists there, and no route leads out.

Rate. `tc tbf` on both ends of each node's veth: every node has a full-duplex link of
`rate_mbit` to the switch (upload and download each limited; a node talking to two
peers at once shares its link, as a real host would). The rate counts whole frames,
so TCP goodput is about 1448/1514 = 95.6% of it at the default MTU of 1500.

Latency. This kernel has no `netem`, so a userspace delay line (launch/relay.py), one
process per node inside its namespace, listens on the node's public `address`
(10.77.0.(i+1):base_port) and forwards to the node's `bind` (127.0.0.1:base_port+1,
the node's own loopback, so nothing can bypass it). A connection from node j to
node i crosses exactly one relay, node i's, and sees `delay_ms` each way. The relay
buffers (delay line, not stop-and-wait) so throughput is preserved, and runs at
real-time priority (SCHED_FIFO 1; MPCRT_NETSIM_REALTIME=0 turns that off) so other
load on the machine does not stretch the delay. The path's own processing time (tens
of microseconds per hop; up to ~0.3 ms after a 25 ms idle wait on a VM, whose idle
vCPUs wake slowly) is measured at start (calibration, 25th percentile of ping-pongs,
at most 40% of the delay) and subtracted, so a ping-pong between two nodes takes
2 x delay_ms. `validate()` measures RTT and rate through the same path mpcrt uses.

Teardown. Namespaces, veths, the bridge, relays and every process started with
`popen` or `run_mpc` go away on normal exit, on an exception, on Ctrl-C (SIGINT) and on
SIGTERM/SIGHUP (handled while a NetSim is open, when it was opened in the main
thread). If the owner is killed with SIGKILL, the relays exit by themselves (their
stdin closes), and the next NetSim removes namespaces whose creating process is gone.

Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2 (`ip`, `tc`):
`apt-get install -y iproute2`. `NetSimUnavailable` says what is missing.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from mpcrt.launch import relay as _relay
from mpcrt.launch.local import node_env, stop_all
from mpcrt.launch.netns import (
    _CMD_TIMEOUT,
    NS_PREFIX,
    SUBNET,
    NetSimError,
    NetSimUnavailable,
    _Child,
    _kill_ns_pids,
    check_available,
    cleanup_stale,
    list_namespaces,
    unavailable_reason,
)

SEALED_OFFSET = 10  # the sealed-payload port sits this far above a node's port (clear of the probe ports)
PRESETS: dict[str, tuple[float, float]] = {
    "lan": (0.25, 10_000.0),  # one-way delay in ms, rate in Mbit/s
    "wan": (25.0, 100.0),
}
_RELAY_PATH = os.path.abspath(_relay.__file__)

__all__ = ["NetSim", "MpcRun", "NetSimError", "NetSimUnavailable", "PRESETS", "check_available",
           "unavailable_reason", "list_namespaces", "cleanup_stale"]

_counter = 0
_counter_lock = threading.Lock()
_live: set["NetSim"] = set()


@dataclasses.dataclass
class MpcRun:
    """What `NetSim.run_mpc` returns."""

    returncodes: dict[str, int | None]  # "party 0", ..., "dealer"; None = still running when stopped
    outputs: dict[str, str]  # stdout + stderr of each node
    elapsed: float  # seconds from the start of the first process to the end of the last party
    timed_out: bool

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(c == 0 for c in self.returncodes.values())


class NetSim:
    """n_nodes simulated hosts joined by a switch: each link delay_ms one way, rate_mbit each direction.

    `preset="lan"` (0.25 ms, 10 Gbit/s) or `"wan"` (25 ms, 100 Mbit/s) fill in what is not given
    (`NetSim(3, "wan")` works too).
    rate_mbit=None (without a preset) or 0 leaves the links unshaped; delay_ms=0 adds no delay.
    With mpcrt, node n_nodes-1 is the dealer and nodes 0..n_nodes-2 are the parties.
    """

    def __init__(self, n_nodes: int, delay_ms: float | str | None = None, rate_mbit: float | None = None, *,
                 preset: str | None = None, base_port: int = 7000, mtu: int = 1500, calibrate: bool = True):
        if isinstance(delay_ms, str):  # NetSim(3, "wan")
            preset, delay_ms = delay_ms, None
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown network preset {preset!r}; choose one of {sorted(PRESETS)}")
            d, r = PRESETS[preset]
            delay_ms = d if delay_ms is None else delay_ms
            rate_mbit = r if rate_mbit is None else rate_mbit
        if delay_ms is None:
            raise ValueError("give delay_ms (and rate_mbit) or preset='lan'/'wan'")
        if not 2 <= int(n_nodes) <= 250:
            raise ValueError(f"n_nodes must be in 2..250, got {n_nodes}")
        if delay_ms < 0 or (rate_mbit is not None and rate_mbit < 0):
            raise ValueError("delay_ms and rate_mbit must be >= 0")
        if not 1 <= base_port <= 65532:
            raise ValueError("base_port out of range")
        self.n = int(n_nodes)
        self.delay_ms = float(delay_ms)
        self.rate_mbit = float(rate_mbit) if rate_mbit else None
        self.preset = preset
        self.base_port = base_port
        self.mtu = int(mtu)
        self.calibrate = calibrate
        self.ips = [f"{SUBNET}.{i + 1}" for i in range(self.n)]
        self.addresses = [f"tcp://{ip}:{base_port}" for ip in self.ips]
        self.binds = [f"tcp://127.0.0.1:{base_port + 1}" for _ in range(self.n)]
        self._probe_port = base_port + 2
        self._probe_bind = base_port + 3
        self.relay_delay_s = self.delay_ms / 1000.0  # what the relays add, after calibration
        self.calibration: dict = {}
        self.namespaces: list[str] = []
        self.hub: str | None = None
        self._made: list[str] = []  # namespaces that exist now, to delete
        self._relays: list[_Child] = []
        self._procs: list[subprocess.Popen] = []
        self._workdir: str | None = None
        self.cluster_path: str | None = None
        self.key_paths: dict[int, str] = {}
        self.precision = 16
        self.insecure = False
        self._old_handlers: dict = {}
        self._started = self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "NetSim":
        self.start()
        return self

    def __exit__(self, et, ev, tb) -> None:
        self.close()

    def start(self) -> "NetSim":
        """Build the namespaces, links, shaping and relays; calibrate the relays' delay."""
        if self._started:
            raise NetSimError("this NetSim was already started")
        check_available()
        self._started = True
        global _counter
        with _counter_lock:
            _counter += 1
            prefix = f"{NS_PREFIX}{os.getpid()}-{_counter}"
        self.namespaces = [f"{prefix}-{i}" for i in range(self.n)]
        self.hub = f"{prefix}-hub"
        _live.add(self)
        self._install_signal_handlers()
        try:
            cleanup_stale()
            self._workdir = tempfile.mkdtemp(prefix="mpcrt-netsim-")
            os.chmod(self._workdir, 0o700)
            self._build()
            self._start_relays()
            if self.calibrate and self.delay_ms > 0:
                self._calibrate()
        except BaseException:
            self.close()
            raise
        return self

    def _ip(self, *args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["ip"] + (["-n", ns] if ns else []) + list(args)
        return self._run(argv, check)

    def _tc(self, ns: str, *args: str) -> subprocess.CompletedProcess:
        return self._run(["tc", "-n", ns] + list(args), True)

    @staticmethod
    def _run(argv: list[str], check: bool) -> subprocess.CompletedProcess:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT)
        if check and r.returncode != 0:
            hint = ""
            err = r.stderr.strip()
            if "qdisc kind is unknown" in err:
                hint = " (this kernel lacks the qdisc: sch_tbf)"
            elif "Unknown device type" in err or "Not supported" in err:
                hint = " (this kernel lacks veth or bridge support)"
            raise NetSimError(f"`{' '.join(argv)}` failed: {err}{hint}")
        return r

    def _build(self) -> None:
        self._made.append(self.hub)  # listed first: an interrupt right after the add leaks nothing
        self._ip("netns", "add", self.hub)
        self._ip("link", "set", "lo", "up", ns=self.hub)
        self._ip("link", "add", "br0", "type", "bridge", ns=self.hub)
        self._ip("link", "set", "br0", "up", ns=self.hub)
        for i, ns in enumerate(self.namespaces):
            self._made.append(ns)
            self._ip("netns", "add", ns)
            v = f"v{i}"
            self._ip("link", "add", v, "mtu", str(self.mtu), "type", "veth", "peer", "name", "eth0",
                     "mtu", str(self.mtu), "netns", ns, ns=self.hub)
            self._ip("link", "set", v, "master", "br0", "up", ns=self.hub)
            self._ip("link", "set", "lo", "up", ns=ns)
            self._ip("addr", "add", f"{self.ips[i]}/24", "dev", "eth0", ns=ns)
            self._ip("link", "set", "eth0", "up", ns=ns)
            if self.rate_mbit:
                for where, dev in ((ns, "eth0"), (self.hub, v)):
                    self._tc(where, "qdisc", "replace", "dev", dev, "root", "tbf", *self._tbf_args())

    def _tbf_args(self) -> list[str]:
        rate_bps = self.rate_mbit * 1e6
        byte_rate = rate_bps / 8
        # burst: >= one GSO super-packet (64 KiB) and >= 1 ms at the rate (timer granularity);
        # queue: 5 ms at the rate (a shallow switch buffer), at least a few bursts
        burst = int(max(byte_rate * 0.001, 80 * 1024))
        limit = int(max(byte_rate * 0.005, 3 * burst))
        return ["rate", f"{int(rate_bps)}bit", "burst", str(burst), "limit", str(limit)]

    def _start_relays(self) -> None:
        for i, ns in enumerate(self.namespaces):
            spec = {"delay": self.relay_delay_s, "maps": [
                [self.ips[i], self.base_port, "127.0.0.1", self.base_port + 1],
                [self.ips[i], self._probe_port, "127.0.0.1", self._probe_bind],
                # the sealed-payload port (mpcrt.sealed_links), MPCRT_SEALED_PORT_OFFSET above the CURVE port
                [self.ips[i], self.base_port + SEALED_OFFSET, "127.0.0.1", self.base_port + 1 + SEALED_OFFSET],
            ]}
            c = _Child(["ip", "netns", "exec", ns, sys.executable, "-s", _RELAY_PATH, "relay", json.dumps(spec)],
                       f"relay of node {i}", os.path.join(self._workdir, f"relay{i}.err"))
            self._relays.append(c)
        for c in self._relays:
            line = c.readline(_CMD_TIMEOUT)
            if line != "ready":
                raise NetSimError(f"{c.what} said {line!r} instead of ready")

    def _set_relay_delay(self, seconds: float) -> None:
        self.relay_delay_s = max(0.0, seconds)
        for c in self._relays:
            c.send(f"delay {self.relay_delay_s!r}")
        for c in self._relays:
            if c.readline(5.0) != "ok":
                raise NetSimError(f"{c.what} did not take the new delay")

    def _pings_for(self, seconds: float, lo: int, hi: int) -> int:
        return int(min(hi, max(lo, seconds / max(2 * self.delay_ms / 1000, 1e-4))))

    def _calibrate(self, a: int = 0, b: int = 1) -> None:
        """Subtract the relay path's own processing time so a ping-pong takes 2 x delay.

        The overhead (tens of microseconds per hop, more after a long idle wait on a VM) is
        taken from the 25th percentile of the RTTs, so that a busy machine during the
        calibration does not make it subtract its scheduling delays; it is capped at 40% of
        the delay. Two rounds: measure at the configured delay, correct, measure, correct.
        """
        target = 2 * self.delay_ms / 1000
        steps = []
        with self._probe(a, b) as probe:
            probe.ping(3)  # warm up
            for _ in range(2):
                rtts = sorted(probe.ping(self._pings_for(0.12, 8, 200)))
                rtt = rtts[len(rtts) // 4]
                steps.append({"relay_delay_ms": self.relay_delay_s * 1e3, "rtt_p25_ms": rtt * 1e3})
                new = self.relay_delay_s - (rtt - target) / 2
                self._set_relay_delay(min(target / 2, max(0.6 * target / 2, new)))
        self.calibration = {"steps": steps, "relay_delay_ms": self.relay_delay_s * 1e3,
                            "overhead_one_way_ms": self.delay_ms - self.relay_delay_s * 1e3}

    def close(self) -> None:
        """Tear everything down; safe to call twice, and Ctrl-C during it is deferred."""
        with self._lock:
            if self._closed or not self._started:
                self._closed = True
                return
            self._closed = True
        blocked = False
        if threading.current_thread() is threading.main_thread():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
            blocked = True
        errors = []
        try:
            self._stop_procs()
            for c in self._relays:
                c.stop()
            self._relays.clear()
            existing = set(list_namespaces())
            for ns in self._made:
                if ns in existing:
                    _kill_ns_pids(ns)
            for ns in list(self._made):
                r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=_CMD_TIMEOUT)
                if r.returncode == 0 or ns not in existing:
                    self._made.remove(ns)
                else:
                    errors.append(f"{ns}: {r.stderr.strip()}")
            if self._workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
        finally:
            _live.discard(self)
            self._restore_signal_handlers()
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        if errors:
            raise NetSimError("could not delete network namespaces: " + "; ".join(errors))

    def _stop_procs(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    p.terminate()
        deadline = time.monotonic() + 3
        for p in self._procs:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    p.kill()
                try:
                    p.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
        self._procs.clear()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum, frame):
            raise SystemExit(128 + signum)  # unwinds through `with NetSim(...)`, which tears down

        for s in (signal.SIGTERM, signal.SIGHUP):
            try:
                self._old_handlers[s] = signal.signal(s, on_signal)
            except (ValueError, OSError):
                pass

    def _restore_signal_handlers(self) -> None:
        for s, h in self._old_handlers.items():
            try:
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        self._old_handlers.clear()

    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise NetSimError("the NetSim is not running (use `with NetSim(...) as net:`)")

    # ------------------------------------------------------------ processes
    def popen(self, i: int, argv: list[str], **kwargs) -> subprocess.Popen:
        """subprocess.Popen of argv inside node i's namespace (`ip netns exec`); stopped at close.

        Runs in a new session (kill the group with os.killpg) unless start_new_session=False.
        """
        self._check_open()
        if not 0 <= i < self.n:
            raise IndexError(f"node {i} is not in 0..{self.n - 1}")
        kwargs.setdefault("start_new_session", True)
        p = subprocess.Popen(["ip", "netns", "exec", self.namespaces[i], *argv], **kwargs)
        self._procs.append(p)
        return p

    def run(self, i: int, argv: list[str], timeout: float = 60.0, **kwargs) -> subprocess.CompletedProcess:
        """Run argv to completion inside node i's namespace (subprocess.run with a timeout)."""
        self._check_open()
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.namespaces[i], *argv], timeout=timeout, **kwargs)

    # ------------------------------------------------------------ mpcrt
    def write_cluster(self, precision: int = 16, session: str | None = None, insecure: bool = False) -> str:
        """Write a cluster file for the simulated hosts (node n-1 = dealer) and fresh key pairs
        in a private temporary folder (removed at close); return the cluster file's path."""
        from mpcrt.cluster import Cluster, format_cluster, write_secret_key
        from mpcrt.zmq_transport import generate_keypair

        self._check_open()
        n = self.n - 1
        if n < 2:
            raise NetSimError(f"an mpcrt cluster needs at least 2 parties and the dealer: NetSim({n + 2}, ...), "
                              f"not NetSim({self.n}, ...)")
        keys = {i: generate_keypair() for i in range(self.n)}
        c = Cluster(
            session=session or f"netsim-{secrets.token_hex(8)}",
            endpoints={i: self.addresses[i] for i in range(self.n)},
            public_keys={i: keys[i][0] for i in range(self.n)},
            precision=precision,
            binds={i: self.binds[i] for i in range(self.n)},
        )
        assert c.world_size == n
        path = os.path.join(self._workdir, "cluster.toml")
        with open(path, "w") as fh:
            fh.write(format_cluster(c))
        self.key_paths = {}
        for i, (pub, sec) in keys.items():
            self.key_paths[i] = os.path.join(self._workdir, f"node{i}.key_secret")
            write_secret_key(self.key_paths[i], pub, sec)
        self.cluster_path, self.precision, self.insecure = path, precision, insecure
        return path

    def env(self, i: int, base: dict | None = None) -> dict:
        """The environment node i's mpcrt process needs (as launch/local.py sets it)."""
        if self.cluster_path is None:
            self.write_cluster()
        env = node_env(dict(os.environ if base is None else base), self.n - 1, i, self.cluster_path,
                       self.key_paths[i], self.precision, self.insecure)
        env.setdefault("MPCRT_SEALED_PORT_OFFSET", str(SEALED_OFFSET))  # the relays forward that port too
        return env

    def run_mpc(self, script: str, args: list[str] | tuple = (), *, timeout: float = 120.0,
                env_extra: dict | None = None, grace: float = 5.0) -> MpcRun:
        """Run `script` on n-1 parties and the dealer, each in its own namespace; wait at most timeout s.

        On a party's failure the others get `grace` seconds, then everything is stopped.
        """
        self._check_open()
        if self.cluster_path is None:
            self.write_cluster()
        base = dict(os.environ)
        base.update(env_extra or {})
        n = self.n - 1
        names = {**{i: f"party {i}" for i in range(n)}, n: "dealer"}
        procs: dict[str, subprocess.Popen] = {}
        outputs: dict[str, list[bytes]] = {}
        pumps = []
        t0 = time.monotonic()
        try:
            for i in [n] + list(range(n)):
                argv = [sys.executable, "-m", "mpcrt.parties.dealer"] if i == n else \
                       [sys.executable, "-m", "mpcrt.parties.party", script, *args]
                p = self.popen(i, argv, env=self.env(i, base), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                procs[names[i]] = p
                outputs[names[i]] = []
                t = threading.Thread(target=lambda s, o: o.extend(iter(s.readline, b"")),
                                     args=(p.stdout, outputs[names[i]]), daemon=True)
                t.start()
                pumps.append(t)
            parties = [names[i] for i in range(n)]
            deadline, failed_at, timed_out, end = t0 + timeout, None, False, None
            while True:
                codes = {k: p.poll() for k, p in procs.items()}
                if all(codes[k] is not None for k in parties):
                    end = time.monotonic()
                    break
                if failed_at is None and any(c not in (None, 0) for c in codes.values()):
                    failed_at = time.monotonic()
                now = time.monotonic()
                if now > deadline:
                    timed_out = True
                    break
                if failed_at is not None and now - failed_at > grace:
                    break
                time.sleep(0.01)
            end = end or time.monotonic()
            try:  # the dealer leaves by itself after every party's goodbye
                procs["dealer"].wait(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            codes = {k: p.poll() for k, p in procs.items()}
        finally:
            stop_all(procs)
            for t in pumps:
                t.join(timeout=2)
            self._procs = [p for p in self._procs if p not in procs.values()]
        texts = {k: b"".join(v).decode("utf-8", "replace") for k, v in outputs.items()}
        return MpcRun({k: codes[k] for k in procs}, texts, end - t0, timed_out)

    # ------------------------------------------------------------ validation
    class _Probe:
        def __init__(self, net: "NetSim", a: int, b: int):
            self.net, self.a, self.b = net, a, b
            self.server = self.client = None

        def __enter__(self):
            net, a, b = self.net, self.a, self.b
            wd = net._workdir
            self.server = _Child(["ip", "netns", "exec", net.namespaces[b], sys.executable, "-s", _RELAY_PATH, "echo",
                                  "127.0.0.1", str(net._probe_bind)], f"probe server on node {b}",
                                 os.path.join(wd, "echo.err"))
            try:
                if self.server.readline(_CMD_TIMEOUT) != "ready":
                    raise NetSimError("probe server did not start")
                self.client = _Child(["ip", "netns", "exec", net.namespaces[a], sys.executable, "-s", _RELAY_PATH,
                                      "probe", net.ips[b], str(net._probe_port)], f"probe client on node {a}",
                                     os.path.join(wd, "probe.err"))
                if self.client.readline(_CMD_TIMEOUT + 4 * net.delay_ms / 1000) != "ready":
                    raise NetSimError("probe client did not connect")
            except BaseException:
                self.__exit__(None, None, None)
                raise
            return self

        def ping(self, k: int) -> list[float]:
            self.client.send(f"ping {k}")
            return json.loads(self.client.readline(10 + k * 4 * self.net.delay_ms / 1000))["rtts"]

        def bulk(self, nbytes: int) -> dict:
            self.client.send(f"bulk {nbytes}")
            return json.loads(self.client.readline(60))

        def __exit__(self, *exc):
            for c in (self.client, self.server):
                if c is not None:
                    if c is self.client and c.p.poll() is None:
                        try:
                            c.send("quit")
                        except OSError:
                            pass
                    c.stop()

    def _probe(self, a: int, b: int) -> "NetSim._Probe":
        if a == b or not (0 <= a < self.n and 0 <= b < self.n):
            raise ValueError(f"need two different nodes in 0..{self.n - 1}, got {a}, {b}")
        return NetSim._Probe(self, a, b)

    def validate(self, a: int = 0, b: int = 1, *, seconds: float = 1.0, tolerance: float = 0.10,
                 strict: bool = False) -> dict:
        """Measure node a <-> node b through the same path mpcrt uses (a dials b's address,
        through b's relay and both links' shaping, to a server on b's loopback).

        RTT: median of small ping-pongs, vs 2 x delay_ms. Rate: one bulk transfer a -> b of
        about `seconds`/2 at the configured rate; the steady-state TCP goodput, and the link
        rate it implies (goodput x frame/payload bytes), vs rate_mbit. `ok` is True when both
        are within `tolerance`; strict=True raises NetSimError otherwise. Takes ~`seconds`.
        """
        self._check_open()
        out: dict = {"nodes": (a, b), "delay_ms": self.delay_ms, "rate_mbit": self.rate_mbit,
                     "rtt_expected_ms": 2 * self.delay_ms, "relay_delay_ms": self.relay_delay_s * 1e3}
        with self._probe(a, b) as probe:
            probe.ping(3)
            rtts = sorted(probe.ping(self._pings_for(seconds / 2, 5, 500)))
            rtt = statistics.median(rtts)
            out.update(rtt_ms=rtt * 1e3, rtt_min_ms=rtts[0] * 1e3, rtt_p90_ms=rtts[int(0.9 * (len(rtts) - 1))] * 1e3,
                       pings=len(rtts))
            expect = 2 * self.delay_ms / 1000
            out["rtt_error"] = (rtt - expect) / expect if expect > 0 else None
            if self.rate_mbit:
                nbytes = int(min(max(self.rate_mbit * 1e6 / 8 * seconds / 2, 1 << 20), 512 << 20))
                r = probe.bulk(nbytes)
                goodput = r["steady_Bps"] * 8 / 1e6
                payload = self.mtu - 52  # IPv4 20 + TCP 20 + timestamps 12
                wire = goodput * (payload + 14 + 52) / payload
                out.update(bulk_bytes=nbytes, bulk_seconds=r["elapsed"], goodput_mbit=goodput,
                           measured_rate_mbit=wire, rate_error=(wire - self.rate_mbit) / self.rate_mbit)
            else:
                out.update(measured_rate_mbit=None, rate_error=None)
        errs = [e for e in (out["rtt_error"], out["rate_error"]) if e is not None]
        out["ok"] = all(abs(e) <= tolerance for e in errs)
        if strict and not out["ok"]:
            raise NetSimError(f"simulated network is off by more than {tolerance:.0%}: {out}")
        return out

    def describe(self) -> str:
        rate = f"{self.rate_mbit:g} Mbit/s" if self.rate_mbit else "unshaped"
        name = f"{self.preset}: " if self.preset else ""
        return f"{name}{self.n} nodes, {self.delay_ms:g} ms one way (RTT {2 * self.delay_ms:g} ms), {rate}"


@atexit.register
def _close_all() -> None:
    for net in list(_live):
        try:
            net.close()
        except Exception:
            pass


def main(argv: list[str] | None = None) -> int:
    """python -m mpcrt.launch.netsim [--preset lan|wan] [--delay-ms D --rate-mbit R] [-n NODES]: validate."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mpcrt.launch.netsim",
                                 description="build and validate a simulated network")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--delay-ms", type=float)
    ap.add_argument("--rate-mbit", type=float)
    ap.add_argument("-n", "--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args(argv)
    if a.preset is None and a.delay_ms is None:
        a.preset = "lan"
    try:
        with NetSim(a.nodes, a.delay_ms, a.rate_mbit, preset=a.preset) as net:
            print(net.describe())
            print("calibration:", json.dumps(net.calibration))
            res = net.validate(seconds=a.seconds)
            print(json.dumps(res, indent=1))
            return 0 if res["ok"] else 1
    except NetSimUnavailable as e:
        print(f"netsim: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

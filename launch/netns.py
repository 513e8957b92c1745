"""Network namespaces for `mpcrt.launch.netsim`: whether this host can make them, the ones
a NetSim left behind, the helper processes (relays, probes) that run inside them, and the
switch that cuts a node's link for a cut fault (`cut_on_request`).

Namespaces are named `mpcrt-<pid>-<k>-<i>` (node i) and `mpcrt-<pid>-<k>-hub` (the
switch), so `cleanup_stale` can tell those whose creating process is gone.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

SUBNET = "10.77.0"
NS_PREFIX = "mpcrt-"
_NS_RE = re.compile(r"^mpcrt-(\d+)-(\d+)-(hub|\d+)$")
_CMD_TIMEOUT = 15.0


class NetSimError(RuntimeError):
    """The simulated network could not be built, torn down or validated."""


class NetSimUnavailable(NetSimError):
    """This machine cannot run the simulation (not root, no iproute2, kernel lacks a feature)."""


def check_available() -> None:
    """Raise NetSimUnavailable saying what is missing; return if a NetSim can run here."""
    if not sys.platform.startswith("linux"):
        raise NetSimUnavailable("network simulation needs Linux network namespaces")
    if os.geteuid() != 0:
        raise NetSimUnavailable(
            "network simulation needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN to create network "
            "namespaces, veths and tc qdiscs): run as root or with sudo")
    missing = [c for c in ("ip", "tc") if shutil.which(c) is None]
    if missing:
        raise NetSimUnavailable(
            f"network simulation needs iproute2 (missing: {', '.join(missing)}): apt-get install -y iproute2")
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    if r.returncode != 0:
        raise NetSimUnavailable(f"`ip netns list` failed: {r.stderr.strip()} (network namespaces unsupported?)")


def unavailable_reason() -> str | None:
    """None if a NetSim can run here, else why not (for pytest.skip)."""
    try:
        check_available()
    except NetSimUnavailable as e:
        return str(e)
    except (OSError, subprocess.SubprocessError) as e:
        return f"network simulation unavailable: {e}"
    return None


def list_namespaces() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    return sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete namespaces left by NetSims whose process died (SIGKILL); returns their names."""
    gone = []
    for ns in list_namespaces():
        m = _NS_RE.match(ns)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            _kill_ns_pids(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=_CMD_TIMEOUT)
            gone.append(ns)
    return gone


def _kill_ns_pids(ns: str) -> None:
    """SIGKILL what still runs inside one of our namespaces (our own children and theirs)."""
    try:
        r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return
    for tok in r.stdout.split():
        if tok.isdigit() and int(tok) != os.getpid():
            try:
                os.kill(int(tok), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class _Child:
    """A helper process (relay or probe) spoken to by lines on stdin/stdout."""

    def __init__(self, argv: list[str], what: str, errfile: str):
        self.what = what
        self.errfile = errfile
        with open(errfile, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                      start_new_session=True)
        self._buf = b""

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetSimError(f"{self.what}: no answer within {timeout:.0f} s{self._stderr()}")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise NetSimError(f"{self.what} exited (status {self.p.poll()}){self._stderr()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def _stderr(self) -> str:
        try:
            text = open(self.errfile, errors="replace").read().strip()
        except OSError:
            return ""
        return f": {text[-800:]}" if text else ""

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.close()  # relays and probes leave when stdin closes
            except OSError:
                pass
            try:
                self.p.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.p.wait(timeout=3.0)
                except subprocess.TimeoutExpired:
                    pass
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass


def cut_on_request(ns: str, switch: str, dev: str = "eth0", poll: float = 0.002) -> threading.Thread:
    """A cut fault inside a NetSim (mpcrt.faults, MPCRT_FAULT=NODE:cut:...): a thread that waits
    for the node to create `switch` (its MPCRT_FAULT_CUT), then takes the node's link down
    (`ip -n NS link set eth0 down`: from then on nothing crosses it, in either direction, and
    nothing is closed) and removes the file, which lets the node go on. Ends with the file's
    folder (or when the link is down)."""
    def run():
        while os.path.isdir(os.path.dirname(switch) or "."):
            if os.path.exists(switch):
                subprocess.run(["ip", "-n", ns, "link", "set", dev, "down"], capture_output=True,
                               timeout=_CMD_TIMEOUT)
                os.remove(switch)
                return
            time.sleep(poll)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t

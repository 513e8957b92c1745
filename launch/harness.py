"""What every benchmark driver does around its measurements, in one place: launch an
`mpcrt launch` session and stop it (its whole process group, always), run the CrypTen
side-by-side runner, measure how busy the machine is, wait for it to be idle, describe it,
and name the result files.

Standard library only: launch/crypten_side.py (run by its path, in CrypTen's process)
imports this file too.

Two CPU measurements, for two questions:

- `cpu_busy(sample_s)`: the fraction of all CPUs not idle over the next `sample_s`
  seconds (/proc/stat, idle + iowait counted idle): "is the machine busy now?", what
  `wait_idle` polls before a run.
- `Contention`: the CPU time *other* processes used while we ran, as a share of the
  machine (machine busy CPU-seconds from `machine_busy_cpu_s`, minus our own and our
  reaped children's): "did something else compete with the run?", reported after it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
CRYPTEN_SIDE = os.path.join(HERE, "crypten_side.py")
EXIT_NO_CRYPTEN = 3  # crypten_side.py's exit status when `import crypten` fails
DEFAULT_OUT = "bench-results"  # where the drivers write their results unless told (--out)


# ----------------------------------------------------------------- processes
def stop(p: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Stop `p` (started with start_new_session=True) and everything in its process group.

    SIGINT to `p` first (`mpcrt launch` then stops its parties and dealer itself), SIGKILL
    to the group after `grace_s`, and in any case SIGKILL to whatever of the group is still
    there once `p` has gone: nothing it started outlives the call."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGINT)
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


@dataclasses.dataclass
class Session:
    """How an `mpcrt launch` session ended."""

    error: str | None  # None: it exited 0
    timed_out: bool
    wall_s: float
    log: str  # the last `tail` characters of its output (empty with verbose: the output went to the terminal)


def launch_session(n: int, script: str, args: list[str], *, timeout: float, recv_timeout: float,
                   insecure: bool = False, verbose: bool = False, env: dict | None = None, cwd: str | None = None,
                   tail: int = 4000) -> Session:
    """Run `python -m mpcrt launch -n N --timeout recv_timeout [--insecure-plaintext] script args...`
    (N parties + the dealer) in its own process group; stopped (`stop`) after `timeout` seconds,
    on Ctrl-C (re-raised) and on the way out."""
    argv = [sys.executable, "-m", "mpcrt", "launch", "-n", str(n), "--timeout", str(recv_timeout)]
    argv += ["--insecure-plaintext"] if insecure else []
    argv += [script, *args]
    err, timed_out = None, False
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(argv, stdout=None if verbose else log, stderr=None if verbose else subprocess.STDOUT,
                             env=env, cwd=cwd, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
            if rc != 0:
                err = f"mpcrt launch exited {rc}"
        except subprocess.TimeoutExpired:
            err, timed_out = f"timed out after {timeout:.0f} s", True
        finally:
            stop(p)
        wall = time.monotonic() - t0
        log.seek(0)
        text = log.read().decode("utf-8", "replace")[-tail:]
    return Session(err, timed_out, wall, text)


@dataclasses.dataclass
class CryptenRun:
    """What one run of crypten_side.py gave."""

    doc: dict | None  # its JSON (None: it wrote none)
    unavailable: str | None  # why CrypTen could not run at all (the runner is missing, crypten not importable)
    error: str | None  # a timeout or a non-zero exit, with the end of its error output
    argv: list[str]


def crypten_side_script() -> str:
    """The runner: launch/crypten_side.py, or the file MPCRT_CRYPTEN_SIDE names."""
    return os.environ.get("MPCRT_CRYPTEN_SIDE") or CRYPTEN_SIDE


def crypten_python() -> str:
    """The interpreter that runs the CrypTen side: MPCRT_CRYPTEN_PYTHON (a virtualenv where CrypTen is
    installed; CrypTen pins old torch and ONNX internals), else this one."""
    return os.environ.get("MPCRT_CRYPTEN_PYTHON") or sys.executable


def run_crypten_side(parties: int, ops: list[str], *, repeats: int, timeout: float, warmup: int | None = None,
                     n: int | None = None, wait_idle: float = 0.0, script: str | None = None,
                     echo: Callable[[str], None] | None = None) -> CryptenRun:
    """`python crypten_side.py --parties N --ops OPS ...` in its own process group (a separate
    process: CrypTen and mpcrt do not share one). `timeout` is per workload."""
    script = script or crypten_side_script()
    if not os.path.isfile(script):
        return CryptenRun(None, f"{script} does not exist (the CrypTen side-by-side runner is missing)", None, [])
    with tempfile.TemporaryDirectory(prefix="mpcrt-crypten-") as d:
        path = os.path.join(d, "crypten.json")
        argv = [crypten_python(), script, "--parties", str(parties), "--ops", ",".join(ops)]
        argv += ["--n", str(n)] if n is not None else []
        argv += ["--repeats", str(repeats)] + (["--warmup", str(warmup)] if warmup is not None else [])
        argv += ["--timeout", str(timeout), "--json", path]
        argv += ["--wait-idle", str(wait_idle)] if wait_idle > 0 else []
        if echo:
            echo(f"  CrypTen: {shlex.join(argv[1:])}")
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                             start_new_session=True)
        err = None
        try:
            _, stderr = p.communicate(timeout=(timeout + wait_idle) * len(ops) + 120)
        except subprocess.TimeoutExpired:
            stop(p, grace_s=5.0)
            _, stderr = p.communicate()
            err = "crypten_side.py timed out"
        finally:
            stop(p, grace_s=5.0)  # also on Ctrl-C; after a normal exit it only sweeps the group
        if p.returncode == EXIT_NO_CRYPTEN:
            last = (stderr.strip().splitlines() or ["?"])[-1]
            return CryptenRun(None, f"CrypTen is not importable here: {last}", None, argv)
        doc = None
        if os.path.exists(path):
            with open(path) as fh:
                doc = json.load(fh)
        if err is None and p.returncode != 0:
            err = f"crypten_side.py exited {p.returncode}"
        if err:
            err += f": {stderr[-1500:]}"
        return CryptenRun(doc, None, err, argv)


# ----------------------------------------------------------------- the machine
def _proc_stat() -> list[int]:
    with open("/proc/stat") as fh:
        return [int(v) for v in fh.readline().split()[1:]]


def cpu_busy(sample_s: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next `sample_s` seconds (from /proc/stat; idle and
    iowait count as idle); None where unknown."""
    def read():
        vals = _proc_stat()
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0)

    try:
        t0, i0 = read()
        time.sleep(sample_s)
        t1, i1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_idle(max_wait: float, busy_below: float = 0.25, sample_s: float = 1.0) -> float | None:
    """Wait (at most max_wait s) until the CPUs are less than `busy_below` busy; return the last sample."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy(sample_s)
    while busy is not None and busy >= busy_below and time.monotonic() < deadline:
        busy = cpu_busy(sample_s)
    return busy


def machine_busy_cpu_s() -> float | None:
    """CPU-seconds processes on the machine have used since boot, plus time stolen by the
    hypervisor (from /proc/stat: user + nice + system + steal). Interrupt and softirq time
    (our own network traffic, on loopback or through the simulated links) is left out."""
    try:
        vals = _proc_stat()
        return (vals[0] + vals[1] + vals[2] + (vals[7] if len(vals) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Contention:
    """How much CPU other processes used while we ran: (machine busy - our own and our
    children's CPU time) / (wall time x CPUs). Our children count once they have been reaped."""

    def __init__(self):
        self.m0, self.t0, self.w0 = machine_busy_cpu_s(), self._own(), time.monotonic()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def share(self, also_ours_s: float = 0.0) -> float | None:
        """also_ours_s: CPU time of processes of ours that we never reap (the netsim relays' watchers)."""
        m1 = machine_busy_cpu_s()
        if m1 is None or self.m0 is None:
            return None
        wall = time.monotonic() - self.w0
        other = (m1 - self.m0) - (self._own() - self.t0) - also_ours_s
        return max(0.0, other / max(1e-9, wall * (os.cpu_count() or 1)))


def proc_cpu_s(pid: int) -> tuple[float, float]:
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
                kids_s += sum(proc_cpu_s(k))
            except OSError:
                pass
    except OSError:
        pass
    return own, kids_s


def loadavg_1m() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def uptime() -> str:
    """`uptime`'s line (or the load averages where it cannot run)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        la = os.getloadavg()
        return f"load average: {la[0]:.2f}, {la[1]:.2f}, {la[2]:.2f}"


def machine_info(repo_root: str | None = None) -> dict:
    """Platform, CPUs, memory, library versions, MPCRT_DEVICE and (in a checkout) `git describe`."""
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
    if repo_root:
        try:
            r = subprocess.run(["git", "-C", repo_root, "describe", "--always", "--dirty"], capture_output=True,
                               text=True, timeout=5)
            if r.returncode == 0:
                info["git"] = r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


# ----------------------------------------------------------------- result files
def result_path(out: str, prefix: str) -> str:
    """Where a driver writes its JSON: `out` itself if it names a .json file, else
    OUT/PREFIX-DATE-TIME-PID.json; the folder is created."""
    if out.endswith(".json"):
        path = out
    else:
        path = os.path.join(out, f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return path


def write_json(path: str, doc: dict, indent: int = 1) -> None:
    """Write `doc` to `path` through a temporary file (a reader never sees half a file)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=indent)
    os.replace(tmp, path)

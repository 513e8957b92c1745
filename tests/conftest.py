"""Shared fixtures of the core-runtime test suite.

* `cli`: runs `python -m mpcrt ...` in a subprocess, always bounded in time. Every
  process it starts (the launcher, and the dealer and parties the launcher spawns)
  carries a unique marker in its environment; after the command ends, or on a
  timeout, the fixture finds any process still carrying the marker by scanning
  /proc and kills it by PID, so no test leaves a process behind. `CliResult.left`
  lists the marked processes that were still alive when the command returned (the
  launcher must have stopped them all).
* `write_script`: writes a party script into tmp_path.
* `party_lines`: groups `[party i] ...` output lines by party.

In-process sessions open shares in one round (`direct_openings`, autouse); the split
openings of mpcrt.allreduce have their own tests.

In-process protocol tests use `mpcrt.launch.inprocess.run_parties` directly (parties
as threads over the in-memory transport; transport="zmq" for real ZeroMQ/CURVE sockets
on loopback), see the test modules. `fresh_config` (autouse) makes each test read
mpcrt.config from the environment afresh.

Reproducible randomness (so that a CI failure reruns the same way here):
* hypothesis: profile "ci" (derandomize: the same examples every run, chosen from each
  test's name; no example database; print_blob: a failure prints the @reproduce_failure
  line; no deadline, as CI machines stall) is loaded when CI=true; "dev" (random examples,
  even where hypothesis itself sees a CI variable; print_blob; no deadline) otherwise.
  HYPOTHESIS_PROFILE=ci|dev picks one explicitly. A test's own @settings(...) overrides
  only the fields it names.
* the global generators a test may draw from without a seed of its own (torch's, numpy's
  legacy np.random.*, Python's random) are seeded before each test from the test's id
  (`seed_of_test`), so a test draws the same inputs whatever runs before it, alone or in the
  suite; TEST_SEED=K shifts every seed by K to try other draws. A failing test's report
  prints its seed and the line that reruns it. Tests that make their own generators
  (np.random.default_rng(12), torch.Generator().manual_seed(9)) are unaffected.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zlib

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
hypothesis_settings.register_profile("dev", derandomize=False, print_blob=True, deadline=None)
# launched parties skip the start-up warm-up (parties/warmup.py) unless a test asks: it costs each process
# the kernel loads up front, which most multi-process tests never use; test_warmup.py checks it
os.environ.setdefault("MPCRT_WARMUP", "0")

HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true"
                                                               else "dev")
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)

MARKER_VAR = "MPCRT_TEST_MARKER"


def marked_pids(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose environment holds MARKER_VAR=marker."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{d}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        if needle not in env.split(b"\0"):
            continue
        state = stat.rsplit(b")", 1)[-1].split()[0]
        if state != b"Z":
            found.append(int(d))
    return found


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def kill_marked(marker: str) -> list[int]:
    """Kill (by PID) every process this test started that is still alive."""
    pids = marked_pids(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while pids and marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    left: list  # marked processes still alive right after the command returned

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Cli:
    """Runs `python -m mpcrt ARGS` (or any argv) with a timeout and full cleanup."""

    def __init__(self):
        self.markers: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def _env(self, env: dict | None, marker: str) -> dict:
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("MPCRT_"):
                del e[k]
        e.update(env or {})
        e[MARKER_VAR] = marker
        e.setdefault("PYTHONUNBUFFERED", "1")
        e.setdefault("MPCRT_THREADS", "1")
        e.setdefault("MPCRT_WARMUP", "0")  # tests/test_warmup.py turns it on where it is the subject
        return e

    def run(self, args: list[str], timeout: float = 60, env: dict | None = None, cwd=None) -> CliResult:
        """Run `python -m mpcrt *args`; wait at most `timeout` s (pytest.fail on expiry)."""
        return self.run_argv([sys.executable, "-m", "mpcrt", *map(str, args)], timeout=timeout, env=env, cwd=cwd)

    def run_argv(self, argv: list[str], timeout: float = 60, env: dict | None = None, cwd=None) -> CliResult:
        marker = uuid.uuid4().hex
        self.markers.append(marker)
        t0 = time.monotonic()
        p = subprocess.Popen(argv, env=self._env(env, marker), cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            kill_marked(marker)
            pytest.fail(f"`{' '.join(argv)}` still running after {timeout} s (killed):\n{out}\n{err}")
        elapsed = time.monotonic() - t0
        left = marked_pids(marker)
        return CliResult(p.returncode, out, err, elapsed, left)

    def start(self, args: list[str], env: dict | None = None, cwd=None) -> tuple[subprocess.Popen, str]:
        """Start `python -m mpcrt *args` in the background; returns (Popen, marker)."""
        marker = uuid.uuid4().hex
        self.markers.append(marker)
        p = subprocess.Popen([sys.executable, "-m", "mpcrt", *map(str, args)], env=self._env(env, marker), cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p, marker

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.communicate(timeout=5)
                except Exception:
                    pass
        for m in self.markers:
            kill_marked(m)


def seed_of_test(nodeid: str) -> int:
    """The seed of a test's global generators: crc32 of its id, plus TEST_SEED if set."""
    return (zlib.crc32(nodeid.encode()) + int(os.environ.get("TEST_SEED", "0"))) % 2**32


@pytest.fixture(autouse=True)
def seeded_globals(request):
    """Seeds torch's, numpy's legacy and Python's global generators from the test's id."""
    seed = seed_of_test(request.node.nodeid)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:  # a test module that draws from torch imported it at collection
        sys.modules["torch"].manual_seed(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report names its seed (and the profile hypothesis ran under)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seed = seed_of_test(item.nodeid)
        shift = os.environ.get("TEST_SEED", "0")
        report.sections.append(("seeds", f"global generators seeded with {seed} (crc32 of the test id + TEST_SEED="
                                         f"{shift}), hypothesis profile {HYPOTHESIS_PROFILE!r}; rerun: "
                                         f"TEST_SEED={shift} HYPOTHESIS_PROFILE={HYPOTHESIS_PROFILE} pytest "
                                         f"'{item.nodeid}'"))


@pytest.fixture(autouse=True)
def direct_openings(monkeypatch):
    """In-process sessions open in one round (as the round counts the tests assert
    assume); tests/test_allreduce.py turns the two-step split openings on itself."""
    from mpcrt import allreduce

    monkeypatch.setattr(allreduce, "SPLIT_BYTES", -1)


@pytest.fixture(autouse=True)
def fresh_config(monkeypatch):
    """mpcrt.config reads the environment once per process: each test reads it afresh
    (after its own monkeypatch.setenv), and a configuration a test installs ends with it."""
    from mpcrt import config

    monkeypatch.setattr(config, "_current", None)


@pytest.fixture
def cli():
    c = Cli()
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def write_script(tmp_path):
    """write_script(body, name='prog.py') -> path of a dedented script in tmp_path."""

    def write(body: str, name: str = "prog.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return str(path)

    return write


_LINE = re.compile(r"^\[(party \d+|dealer)\] (.*)$")


def party_lines(output: str) -> dict[str, list[str]]:
    """{'party 0': [lines...], 'dealer': [...]} from launcher output; other lines under ''."""
    out: dict[str, list[str]] = {}
    for line in output.splitlines():
        m = _LINE.match(line)
        key, text = (m.group(1), m.group(2)) if m else ("", line)
        out.setdefault(key, []).append(text)
    return out


@pytest.fixture
def parse_lines():
    return party_lines

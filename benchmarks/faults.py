"""Faults at every step: kill (SIGKILL), stop (SIGSTOP) or cut the network of a party or the
dealer at each phase of a real `mpcrt launch` session (and of `mpcrt infer`), and check what
the survivors and the launcher do.

    .venv/bin/python benchmarks/faults.py [--actions kill,stop,cut] [--only party|dealer]
                                          [--infer] [--heartbeat 2] [--timeout 15] [--json FILE]

The fault is injected by the node itself at an exact frame (MPCRT_FAULT, mpcrt.faults): the
phases are the frames of SESSION below, and a comparison's rounds are found by tracing the same
session in-process first (which 'open' frame starts each round of the ReLU). Each case runs the
launcher with every stream piped to this process, which stamps every line as it arrives: the
detection time of a survivor is the time from the victim's `mpcrt fault:` line to the
survivor's failure line. After the launcher exits, every process the case started (found by an
environment marker in /proc) must be gone. Prints a Markdown table: fault, phase, culprit, each
survivor's detection time (and whether its line names the culprit), the launcher's exit code,
leftover processes, and for `mpcrt infer` whether an output file was written.

tests/test_faults_phases.py imports this file and runs a part of the matrix in CI.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

SESSION = '''
import numpy as np
import mpcrt


def session(rt):
    x = rt.share(np.linspace(-2, 2, 8) if rt.rank == 0 else None, src=0)
    y = rt.share(np.linspace(-1.5, 1, 8) if rt.rank == 1 else None, src=1)
    return (x + y).relu().reveal()


if __name__ == "__main__":
    print("RESULT", session(mpcrt.init()).tolist())
'''
N = 2
ACTIONS = ("kill", "stop", "cut")
MARKER_VAR = "FAULTS_BENCH_MARKER"  # (not MPCRT_: the config table lists those)
_FAILURE = re.compile(r"^\[(party \d+|dealer)\] (?:dealer: )?(PeerFailure|MpcError|ProtocolError|DealerError)\b")


@dataclasses.dataclass
class Case:
    action: str
    phase: str
    culprit: str  # "party 1", "dealer"
    when: str  # DIR:TAG[@K] (mpcrt.faults)
    infer: bool = False

    @property
    def spec(self) -> str:
        node = "dealer" if self.culprit == "dealer" else self.culprit.replace(" ", "")
        return f"{node}:{self.action}:{self.when}"

    @property
    def links_up(self) -> bool:
        """False where the fault comes before the victim's links may have finished their
        handshake: a node lost then is found by the receive timeout (a link that never came up
        carries neither a close nor a heartbeat that counts)."""
        return self.phase != "start-up"


@dataclasses.dataclass
class Result:
    case: Case
    rc: int | None
    detect: dict  # survivor -> seconds from the fault to its failure line (None: no line)
    named: dict  # survivor -> its failure line names the culprit
    leftovers: list
    output_written: bool | None
    elapsed: float
    lines: list

    def row(self) -> list[str]:
        c = self.case
        det = ", ".join(f"{s}: finished (nothing left to ask)" if exempt(c, s) and t is None else
                        f"{s}: {'-' if t is None else f'{t:.2f} s'}{'' if self.named.get(s) else ' (other)'}"
                        for s, t in sorted(self.detect.items()))
        out = "" if self.output_written is None else (" written" if self.output_written else " none")
        return [c.action, ("infer: " if c.infer else "") + c.phase, c.culprit, det, str(self.rc),
                str(len(self.leftovers)) + out]


# ---------------------------------------------------------------- the phases
def trace() -> dict:
    """The frames each node of SESSION sends and receives, in order, from an in-process run
    over the memory transport: {node id: [(direction, tag, rounds so far), ...]}."""
    import collections

    from mpcrt import memory_transport
    from mpcrt.launch.inprocess import run_parties

    ns: dict = {}
    exec(compile(SESSION, "session", "exec"), ns)
    log = collections.defaultdict(list)
    runtimes = {}
    send, recv = memory_transport.MemoryTransport.send, memory_transport.MemoryTransport.recv

    def rounds(node):
        rt = runtimes.get(node.id)
        return rt._rounds if rt is not None else -1

    def traced_send(self, peer, tag, array, donate=False):
        log[self.id].append(("send", tag, rounds(self)))
        return send(self, peer, tag, array, donate)

    def traced_recv(self, peer, tag, dtype=None, shape=None):
        out = recv(self, peer, tag, dtype, shape)
        log[self.id].append(("recv", tag, rounds(self)))
        return out

    def body(rt):
        runtimes[rt.rank] = rt
        return ns["session"](rt)

    memory_transport.MemoryTransport.send, memory_transport.MemoryTransport.recv = traced_send, traced_recv
    try:
        run_parties(body, N, timeout=30)
    finally:
        memory_transport.MemoryTransport.send, memory_transport.MemoryTransport.recv = send, recv
    return dict(log)


def relu_rounds(frames: list) -> list[int]:
    """For each round of the comparison, which of the node's 'open' frames (1-based) starts it."""
    starts, last, k = [], None, 0
    for direction, tag, r in frames:
        if direction == "send" and tag == "open":
            k += 1
            if r != last:
                starts.append(k)
                last = r
    return starts


def cases(actions=ACTIONS, only: str | None = None) -> list[Case]:
    """The whole matrix for SESSION: every action x every phase x {a party, the dealer}."""
    log = trace()
    party, dealer = [], []
    party.append(("start-up", "party 1", "send:hello"))
    party.append(("sharing", "party 1", "send:share"))
    party.append(("dealer request", "party 0", "send:req"))  # only party 0 sends requests
    for k, m in enumerate(relu_rounds(log[1]), 1):
        party.append((f"ReLU round {k}", "party 1", f"send:open@{m}"))
    party.append(("reveal", "party 1", "send:reveal"))
    party.append(("shutdown", "party 1", "send:bye"))
    dealer.append(("start-up", "dealer", "send:seed"))
    dealer.append(("dealer request", "dealer", "recv:req"))
    replies = sum(1 for d, tag, _ in log[N] if d == "send" and tag.startswith("corr"))
    for k in range(1, replies + 1):
        dealer.append((f"ReLU reply frame {k}", "dealer", f"send:corr*@{k}"))
    dealer.append(("shutdown", "dealer", "recv:bye"))
    rows = (party if only != "dealer" else []) + (dealer if only != "party" else [])
    return [Case(a, ph, who, when) for ph, who, when in rows for a in actions]


def infer_cases(actions=ACTIONS) -> list[Case]:
    """`mpcrt infer` (model owner party 0, data owner party 1): the data owner lost with the
    outputs in hand, the model owner lost at shutdown, the dealer lost at a request."""
    rows = [("reveal received", "party 1", "recv:reveal"), ("shutdown", "party 0", "send:bye"),
            ("dealer request", "dealer", "recv:req")]
    return [Case(a, ph, who, when, infer=True) for ph, who, when in rows for a in actions]


# ---------------------------------------------------------------- running one
def marked_pids(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries MARKER_VAR=marker."""
    needle, found = f"{MARKER_VAR}={marker}".encode(), []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{d}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in env and state != b"Z":
            found.append(int(d))
    return found


def infer_files(folder: str) -> dict:
    """A tiny model archive and inputs for `mpcrt infer` in `folder`."""
    import numpy as np
    import torch

    import mpcrt.nn as mnn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).eval()
    files = {"model": os.path.join(folder, "model.npz"), "x": os.path.join(folder, "x.npy"),
             "out": os.path.join(folder, "preds.npy")}
    mnn.save(model, torch.zeros(1, 4), files["model"])
    np.save(files["x"], np.linspace(-1, 1, 12).reshape(3, 4))
    return files


def run_case(case: Case, workdir: str, heartbeat: float = 2.0, timeout: float = 15.0, limit: float = 120.0,
             files: dict | None = None) -> Result:
    """Run one case under `mpcrt launch` (or `mpcrt infer -n 2`) and collect what happened."""
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPCRT_")}
    env.update({MARKER_VAR: marker, "PYTHONUNBUFFERED": "1", "MPCRT_THREADS": "1", "MPCRT_WARMUP": "0",
                "MPCRT_FAULT": case.spec,
                "MPCRT_HEARTBEAT_TIMEOUT": str(heartbeat), "MPCRT_TIMEOUT": str(timeout)})
    if case.infer:
        files = files or infer_files(workdir)
        if os.path.exists(files["out"]):
            os.remove(files["out"])
        argv = ["infer", "-n", str(N), "--model", files["model"], "--input", files["x"], "--output", files["out"],
                "--batch-size", "2"]
    else:
        script = os.path.join(workdir, "session.py")
        with open(script, "w") as fh:
            fh.write(SESSION)
        argv = ["launch", "-n", str(N), script]
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "mpcrt", *argv], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []
    echo = bool(os.environ.get("FAULTS_ECHO"))  # show the session's lines as they come

    def pump():
        for line in p.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))
            if echo:
                print(f"{time.monotonic() - t0:6.2f} {line.rstrip()}", file=sys.stderr)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = p.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = None
    reader.join(5)
    elapsed = time.monotonic() - t0
    left = marked_pids(marker)
    for pid in left:  # a leftover is a failure of the case (reported), and must not outlive it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    t_fault = next((t for t, s in lines if "mpcrt fault:" in s), None)
    detect, named = {}, {}
    for who in [f"party {i}" for i in range(N)] + ["dealer"]:
        if who == case.culprit:
            continue
        hit = next(((t, s) for t, s in lines if (m := _FAILURE.match(s)) and m.group(1) == who), None)
        detect[who] = None if hit is None or t_fault is None else hit[0] - t_fault
        named[who] = hit is not None and names(hit[1], case.culprit)
    written = None
    if case.infer:
        folder = os.path.dirname(files["out"])
        written = os.path.exists(files["out"]) or any(".partial-" in f for f in os.listdir(folder))
    return Result(case, rc, detect, named, left, written, elapsed, [s for _, s in lines])


def names(line: str, culprit: str) -> bool:
    """Whether a failure line names the culprit ("party 1", or the dealer's "parties [1]")."""
    if culprit in line:
        return True
    m = re.search(r"parties \[([\d, ]*)\]", line)
    return culprit.startswith("party ") and m is not None and culprit[6:] in m.group(1).replace(" ", "").split(",")


def bound(case: Case, heartbeat: float, timeout: float) -> float:
    """The stated detection bound (seconds after the fault) for every survivor.

    A killed node: its kernel closes its connections at once; a survivor waiting on it sees
    the close (under a second), lets what it sent before drain (DRAIN_S, 1 s); the dealer
    waits GOODBYE_GRACE (1 s) more. A stopped or cut node: the heartbeat timeout plus one
    heartbeat interval (1 s), then the same. A survivor that waits on another survivor
    rather than the culprit fails when that one's exit reaches it (one more kill-like
    step). Before the links are up (start-up) only the receive timeout can tell, whatever
    the fault. 3 s of slack for a loaded machine."""
    if not case.links_up:
        return timeout + 2.0 + 2.0 + 3.0
    first = 1.0 if case.action == "kill" else heartbeat + 1.0
    return first + 2.0 + 2.0 + 3.0


def problems(r: Result, heartbeat: float, timeout: float, peers_only_dealer: bool = False) -> list[str]:
    """What a result violates: a survivor without a failure line naming the culprit within the
    bound, a launcher exit of 0, a process left behind, an inference output written."""
    out = []
    b = bound(r.case, heartbeat, timeout)
    expected = [s for s in r.detect if not exempt(r.case, s)]
    for s in expected:
        t = r.detect[s]
        if t is None:
            out.append(f"{s} printed no failure line")
        elif t > b:
            out.append(f"{s} took {t:.2f} s > {b:.1f} s")
        if not r.named[s]:
            out.append(f"{s}'s failure line does not name {r.case.culprit}")
    if r.rc is None or (r.rc == 0 and not finished_before(r)):
        out.append(f"launcher exit {r.rc}")
    if r.leftovers:
        out.append(f"processes left: {r.leftovers}")
    if r.output_written:
        out.append("an output file was written")
    return out


def finished_before(r: Result) -> bool:
    """A dealer cut as it reads the goodbyes may have every goodbye in hand before the cut takes:
    the session has then finished, nobody fails, and exit 0 is the right answer."""
    c = r.case
    return (c.culprit == "dealer" and c.phase == "shutdown" and c.action == "cut"
            and all(t is None for t in r.detect.values()) and not any("Failure" in t for t in r.lines))


def exempt(case: Case, survivor: str) -> bool:
    """Survivors that by design have nothing to detect: parties once the dealer has every party's
    goodbye (nothing more is asked of it), so only the launcher reports the dealer's loss."""
    return case.culprit == "dealer" and case.phase == "shutdown" and survivor != "dealer"


# ---------------------------------------------------------------- the table
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(results: list[Result]) -> str:
    head = ["fault", "phase", "culprit", "detection after the fault (per survivor)", "launcher exit",
            "leftovers / output"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows += ["| " + " | ".join(r.row()) + " |" for r in results]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actions", default=",".join(ACTIONS))
    ap.add_argument("--only", choices=("party", "dealer"))
    ap.add_argument("--infer", action="store_true", help="also the `mpcrt infer` cases")
    ap.add_argument("--heartbeat", type=float, default=2.0, help="MPCRT_HEARTBEAT_TIMEOUT of the nodes")
    ap.add_argument("--timeout", type=float, default=15.0, help="MPCRT_TIMEOUT of the nodes")
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)
    actions = tuple(a.actions.split(","))
    todo = cases(actions, a.only) + (infer_cases(actions) if a.infer else [])
    print(f"{len(todo)} cases on {cpu_name()} ({os.cpu_count()} CPUs), heartbeat {a.heartbeat} s, "
          f"receive timeout {a.timeout} s", file=sys.stderr)
    results, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="mpcrt-faults-") as work:
        files = infer_files(work) if a.infer else None
        for c in todo:
            r = run_case(c, work, a.heartbeat, a.timeout, files=files)
            issues = problems(r, a.heartbeat, a.timeout)
            bad += bool(issues)
            results.append(r)
            print(f"{c.spec:34s} {r.elapsed:5.1f} s  {' | '.join(r.row()[3:])}"
                  + (f"  PROBLEMS: {issues}" if issues else ""), file=sys.stderr)
    print(table(results))
    print(f"\n{len(results)} faults, {bad} with problems; CPU: {cpu_name()}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump([dataclasses.asdict(r) for r in results], fh, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fault injection for tests and benchmarks: a node kills, stops or cuts itself at an exact frame.

`MPCRT_FAULT=NODE:ACTION:DIR:TAG[@K]` (mpcrt.config) names one node and one moment:

* NODE: `party<I>` or `dealer`; every other node ignores the setting, so one value can be
  given to a whole `mpcrt launch` session;
* ACTION: `kill` (SIGKILL to itself), `stop` (SIGSTOP to itself: a hung process that keeps
  its connections open), `cut` (its network goes silent: `mpcrt launch` routes every link of
  that node through relays that stop forwarding without closing anything, launch/relay.py);
* DIR:TAG@K: `send:TAG` right before the node sends its K-th frame tagged TAG (K = 1 when
  left out), `recv:TAG` right after it received its K-th such frame. A TAG ending in `*`
  matches by prefix (`corr*`: any dealer reply).

Why frames and not a clock or an outside watcher: every phase of a session is a frame a node
sends or receives (start-up `hello`/`seed`, sharing `share`, a dealer request `req` and its
reply `corr<n>`, each comparison round's `open`, a reveal `reveal`, shutdown `bye`), and a
party's sequence of frames is fixed by its program (protocols never branch on values), so the
K-th frame of a tag is the same moment in every run, on any machine load. An outside process
that watches for markers and then sends a signal races the node it watches. The hook is read
once per process (mpcrt.config) and checked in the ZeroMQ transport's send and receive paths
(mpcrt.zmq_transport.Node), which cost one attribute test per frame when no fault is set.

Before acting, the node writes one line to stderr, `mpcrt fault: ACTION NODE ...`, so a
harness knows when the fault happened. A cut needs the relays of `mpcrt launch`: the node asks
for it by creating the switch file named by MPCRT_FAULT_CUT and waits until the launcher has
cut every relay (it removes the file), then goes on into the silence.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import time

from mpcrt.errors import ConfigError

ACTIONS = ("kill", "stop", "cut")
SPEC_HELP = "NODE:ACTION:DIR:TAG[@K] with NODE party<I> or dealer, ACTION kill|stop|cut, DIR send|recv"
_SPEC = re.compile(r"^(party\d+|dealer):(kill|stop|cut):(send|recv):([A-Za-z0-9_.]+\*?)(?:@(\d+))?$")
CUT_ACK_S = 5.0  # how long a node waits for the launcher to cut its relays


@dataclasses.dataclass
class Fault:
    """One node's fault: `node` ("party 1", "dealer"), what, and at which frame."""

    node: str
    action: str
    direction: str
    tag: str
    k: int = 1
    cut_file: str | None = None
    seen: int = 0

    def matches(self, tag: str) -> bool:
        return tag.startswith(self.tag[:-1]) if self.tag.endswith("*") else tag == self.tag

    def before_send(self, tag: str) -> None:
        """The node is about to send a frame tagged `tag`."""
        if self.direction == "send":
            self._count(tag)

    def after_recv(self, tag: str) -> None:
        """The node has just received a frame tagged `tag`."""
        if self.direction == "recv":
            self._count(tag)

    def _count(self, tag: str) -> None:
        if self.matches(tag):
            self.seen += 1
            if self.seen == self.k:
                self.fire()

    def describe(self) -> str:
        where = "before sending" if self.direction == "send" else "after receiving"
        return f"{self.action} {self.node} {where} frame {self.tag!r} #{self.k}"

    def fire(self) -> None:
        """Do it now (a kill or a stop does not return until the process is continued)."""
        print(f"mpcrt fault: {self.describe()} at {time.time():.6f}", file=sys.stderr, flush=True)
        if self.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        else:
            self._cut()

    def _cut(self) -> None:
        if not self.cut_file:
            raise ConfigError("MPCRT_FAULT ...:cut:... needs the relays of `mpcrt launch` (it sets MPCRT_FAULT_CUT); "
                              "use kill or stop with `mpcrt party` / `mpcrt dealer`")
        with open(self.cut_file, "w") as fh:
            fh.write(self.node)
        deadline = time.monotonic() + CUT_ACK_S
        while os.path.exists(self.cut_file):
            if time.monotonic() > deadline:
                raise ConfigError(f"the launcher did not cut {self.node}'s links within {CUT_ACK_S:.0f} s "
                                  f"(switch file {self.cut_file} still there)")
            time.sleep(0.005)


def parse(spec: str) -> Fault:
    """The Fault a MPCRT_FAULT value describes; ValueError if it is malformed."""
    m = _SPEC.match(spec.strip())
    if not m or (m.group(5) is not None and int(m.group(5)) < 1):
        raise ValueError(f"{spec!r} is not {SPEC_HELP}")
    node, action, direction, tag, k = m.groups()
    name = "dealer" if node == "dealer" else f"party {int(node[5:])}"
    return Fault(name, action, direction, tag, int(k or 1))


def check(spec: str) -> str:
    """mpcrt.config's parser: the value, once parse() accepts it."""
    parse(spec)
    return spec.strip()


def hook(node_name: str, spec: str | None, cut_file: str | None = None) -> Fault | None:
    """The Fault node `node_name` ("party 1", "dealer") must inject, or None (no fault, or
    one meant for another node)."""
    if not spec:
        return None
    f = parse(spec)
    if f.node != node_name:
        return None
    f.cut_file = cut_file
    return f

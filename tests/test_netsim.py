"""The simulated network (launch/netsim.py): namespaces come and go, delay and rate are
what was asked, and a real 2-party mpcrt run works across the namespaces.

Needs root and iproute2; skipped otherwise. Each test takes a few seconds.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from mpcrt.launch import netsim
from mpcrt.launch.netsim import NetSim, NetSimError, list_namespaces

_reason = netsim.unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

_OURS = re.compile(rf"^mpcrt-{os.getpid()}-")


def _others(names):
    """Namespaces other test runs may create meanwhile (other pids) do not count."""
    return {n for n in names if not (re.match(r"^mpcrt-\d+-\d+-", n) and not _OURS.match(n))}


_ECHO_ONCE = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
"""
_HELLO = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5); s.settimeout(5)
s.sendall(b"hello"); print(s.recv(100).decode())
"""


def test_namespaces_removed_after_normal_exit():
    before = list_namespaces()
    with NetSim(3, delay_ms=1, rate_mbit=100, calibrate=False) as net:
        during = list_namespaces()
        assert set(net.namespaces) | {net.hub} <= set(during)
        # each node has its own address on its own link, reachable from the others through the relay
        r = net.run(0, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"], timeout=10)
        assert net.ips[0] in r.stdout
        # a server at node 0's bind (its own loopback) is reached from node 1 through node 0's address
        port = int(net.binds[0].rsplit(":", 1)[1])
        server = net.popen(0, [sys.executable, "-c", _ECHO_ONCE, str(port)], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        r = net.run(1, [sys.executable, "-c", _HELLO, net.ips[0], str(net.base_port)], timeout=15)
        assert r.returncode == 0 and r.stdout.strip() == "hello", r.stderr
        server.wait(timeout=10)
    after = list_namespaces()
    assert _others(after) == _others(before)
    assert not any(_OURS.match(n) for n in after)


def test_namespaces_removed_after_exception():
    before = list_namespaces()
    with pytest.raises(RuntimeError, match="boom"):
        with NetSim(2, delay_ms=2, rate_mbit=50, calibrate=False) as net:
            p = net.popen(0, [sys.executable, "-c", "import time; time.sleep(60)"])
            raise RuntimeError("boom")
    assert p.poll() is not None  # processes started inside were stopped
    after = list_namespaces()
    assert _others(after) == _others(before)
    assert not any(_OURS.match(n) for n in after)


def test_sigterm_tears_down(tmp_path):
    """A process holding a NetSim that gets SIGTERM (or Ctrl-C) leaves nothing behind."""
    for sig in ("SIGTERM", "SIGINT"):
        flag = tmp_path / f"up-{sig}"
        code = textwrap.dedent(f"""
            import sys, time
            from mpcrt.launch.netsim import NetSim
            with NetSim(2, delay_ms=1, rate_mbit=100, calibrate=False) as net:
                print(" ".join(net.namespaces + [net.hub]), flush=True)
                open({str(flag)!r}, "w").close()
                time.sleep(60)
        """)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not flag.exists() and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert flag.exists(), p.stderr.read() if p.poll() is not None else "NetSim did not start in 30 s"
            names = p.stdout.readline().split()
            assert set(names) <= set(list_namespaces())
            p.send_signal(getattr(__import__("signal"), sig))
            p.wait(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        left = set(names) & set(list_namespaces())
        assert not left, f"{sig} left namespaces {left}"


def test_validate_custom_config_within_10_percent():
    with NetSim(3, delay_ms=5, rate_mbit=200) as net:
        res = net.validate(0, 1, seconds=1.0)
        # the same holds for another pair (the dealer's node), as mpcrt uses it
        res2 = net.validate(2, 0, seconds=0.6)
    for r in (res, res2):
        assert abs(r["rtt_ms"] - 10.0) <= 1.0, r
        assert abs(r["measured_rate_mbit"] - 200.0) <= 20.0, r
        assert r["ok"], r


def test_presets_and_errors():
    assert netsim.PRESETS["lan"] == (0.25, 10_000.0) and netsim.PRESETS["wan"] == (25.0, 100.0)
    net = NetSim(3, preset="wan")
    assert (net.delay_ms, net.rate_mbit) == (25.0, 100.0)
    assert net.addresses[0] != net.binds[0]
    with pytest.raises(ValueError):
        NetSim(3, preset="moon")
    with pytest.raises(ValueError):
        NetSim(3)
    with pytest.raises(NetSimError):
        net.popen(0, ["true"])  # not started


_SCRIPT = """
import time
import numpy as np
import mpcrt

rt = mpcrt.init()
a = np.array([[1.5, -2.0, 3.25], [0.5, 4.0, -1.0]])
b = np.array([[2.0, 0.5, -1.0], [3.0, -0.25, 2.0]])
t0 = time.monotonic()
x = rt.share(a if rt.rank == 0 else None, src=0)
y = rt.share(b if rt.rank == 1 else None, src=1)
z = (x * y).reveal()
elapsed = time.monotonic() - t0
st = rt.stats()
print("RESULT", repr(z.tolist()), "ROUNDS", st["rounds"], "ELAPSED", elapsed, flush=True)
"""


def test_two_party_mpcrt_run_across_namespaces(tmp_path):
    script = tmp_path / "mul.py"
    script.write_text(_SCRIPT)
    delay_ms = 10.0
    with NetSim(3, delay_ms=delay_ms, rate_mbit=100) as net:
        assert net.binds[0] != net.addresses[0]
        res = net.run_mpc(str(script), timeout=90, env_extra={"MPCRT_TIMEOUT": "30"})
    assert res.ok, res
    expect = [[3.0, -1.0, -3.25], [1.5, -1.0, -2.0]]
    for rank in (0, 1):
        out = res.outputs[f"party {rank}"]
        m = re.search(r"RESULT (.*) ROUNDS (\d+) ELAPSED ([0-9.e-]+)", out)
        assert m, out
        got = ast.literal_eval(m.group(1))
        assert all(abs(g - e) < 1e-3 for gr, er in zip(got, expect) for g, e in zip(gr, er)), got
        rounds, elapsed = int(m.group(2)), float(m.group(3))
        assert rounds >= 2  # at least the multiplication's opening and the reveal
        # Every round waits for a message that crossed the simulated network. Both parties
        # send at once, so their messages are in flight together: per party, two
        # consecutive rounds take at least one RTT (receive k needs the peer's send k,
        # which came after the peer's receive k-1, which needed our send k-1), i.e. at
        # least one one-way delay per round. That is the bound the network must impose.
        assert elapsed >= rounds * delay_ms / 1000, (rounds, elapsed)
    # and the whole run (connection setup, dealer round trips, rounds) took longer than the rounds' RTTs
    assert res.elapsed >= rounds * 2 * delay_ms / 1000

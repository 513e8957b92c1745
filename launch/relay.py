"""Userspace delay line for `mpcrt.launch.netsim`, plus its measuring probes.

This kernel has no `netem` qdisc, so latency is added here, in user space: a TCP
relay runs inside each simulated node's network namespace, listens on the node's
public `address` and forwards every connection to the node's `bind` (on the node's
own loopback). Bytes read from one side wait in a delay line (a FIFO of
(deadline, bytes)) until `arrival + delay`, then go out the other side. The reader
never waits for the writer, so the line holds a whole bandwidth-delay product and
throughput is preserved (a delay line, not stop-and-wait). A connection from node j
to node i crosses exactly one relay (node i's), so it sees `delay` each way.

The rate limit is not done here: `tc ... tbf` on the nodes' links shapes the traffic.

Modes (this file runs as a script, stdlib only, so it starts in a few milliseconds):

    relay.py relay JSON   JSON = {"delay": s, "maps": [[lhost, lport, thost, tport], ...]}
                          prints "ready"; stdin lines "delay S" set the delay (answers
                          "ok"); exits when stdin closes (its owner is gone) or on SIGTERM
    relay.py echo HOST PORT    probe server: echoes pings, times bulk transfers
    relay.py probe HOST PORT   probe client: stdin "ping K" / "bulk BYTES" / "quit",
                               answers one JSON line each

Known differences from a real link: the TCP handshake (SYN, SYN-ACK) is not delayed
(the relay accepts at once; the ZeroMQ/CURVE handshake, which is data, is), and each
hop's TCP sees a short RTT, so a sender never suffers slow start over the long RTT
(like a split-TCP accelerator). Both matter for connection setup, not steady state.
"""
from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

CHUNK = 1 << 18
QUEUE_CAP = 64 << 20  # bytes a delay line may hold before its reader stops reading (back-pressure)
PING_SIZE = 64

_EOF = object()
_ERR = object()


def precise_timers() -> None:
    """Let this thread's sleeps end on time (timer slack 1 ns instead of 50 us)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))  # PR_SET_TIMERSLACK
    except Exception:  # pragma: no cover - best effort
        pass


def _tune(s: socket.socket) -> None:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Conn:
    """One relayed TCP connection: two delay lines, four threads."""

    def __init__(self, a: socket.socket, b: socket.socket, relay: "Relay"):
        self.socks = (a, b)
        self.relay = relay
        self.lock = threading.Lock()
        self.aborted = False
        self.alive = 4
        for src, dst in ((a, b), (b, a)):
            line = _Line(self, src, dst)
            threading.Thread(target=line.reader, daemon=True).start()
            threading.Thread(target=line.writer, daemon=True).start()

    def abort(self) -> None:
        """Reset both sides (a peer vanished): wake every thread, close with RST."""
        with self.lock:
            if self.aborted:
                return
            self.aborted = True
        for s in self.socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def done(self) -> None:
        with self.lock:
            self.alive -= 1
            last = self.alive == 0
        if last:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


class _Line:
    """Bytes from src to dst, each chunk released `delay` after it was read."""

    def __init__(self, conn: _Conn, src: socket.socket, dst: socket.socket):
        self.conn, self.src, self.dst = conn, src, dst
        self.q: collections.deque = collections.deque()
        self.cv = threading.Condition()
        self.queued = 0

    def _push(self, item) -> None:
        with self.cv:
            self.q.append(item)
            if isinstance(item[1], bytes):
                self.queued += len(item[1])
            self.cv.notify_all()

    def reader(self) -> None:
        buf = bytearray(CHUNK)
        mv = memoryview(buf)
        try:
            while True:
                with self.cv:
                    while self.queued > QUEUE_CAP and not self.conn.aborted:
                        self.cv.wait(0.1)
                if self.conn.aborted:
                    self._push((0.0, _ERR))
                    return
                try:
                    n = self.src.recv_into(buf)
                except OSError:
                    self._push((time.monotonic() + self.conn.relay.delay, _ERR))
                    return
                t = time.monotonic() + self.conn.relay.delay
                if n == 0:
                    self._push((t, _ERR if self.conn.aborted else _EOF))
                    return
                self._push((t, bytes(mv[:n])))
        finally:
            self.conn.done()

    def writer(self) -> None:
        precise_timers()
        try:
            while True:
                with self.cv:
                    while not self.q:
                        self.cv.wait()
                    deadline = self.q[0][0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                now = time.monotonic()
                data, tail = [], None
                with self.cv:
                    while self.q and self.q[0][0] <= now:
                        _, item = self.q.popleft()
                        if isinstance(item, bytes):
                            data.append(item)
                            self.queued -= len(item)
                        else:
                            tail = item
                            break
                    self.cv.notify_all()
                if data:
                    try:
                        self.dst.sendall(data[0] if len(data) == 1 else b"".join(data))
                    except OSError:
                        self.conn.abort()
                        return
                if tail is _EOF:
                    try:
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if tail is _ERR:
                    self.conn.abort()
                    return
        finally:
            self.conn.done()


class Relay:
    def __init__(self, delay: float, maps: list):
        self.delay = float(delay)
        self.listeners = []
        for lhost, lport, thost, tport in maps:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((lhost, int(lport)))
            ls.listen(128)
            self.listeners.append((ls, (thost, int(tport))))

    def start(self) -> None:
        for ls, target in self.listeners:
            threading.Thread(target=self._accept, args=(ls, target), daemon=True).start()

    def _accept(self, ls: socket.socket, target) -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(c, target), daemon=True).start()

    def _open(self, c: socket.socket, target) -> None:
        try:
            t = socket.create_connection(target, timeout=5)
            t.settimeout(None)
        except OSError:
            # nobody listens at the bind yet: refuse like a closed port would (the dialler retries)
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            except OSError:
                pass
            return
        _tune(c)
        _tune(t)
        _Conn(c, t, self)


def _relay_main(spec: str) -> int:
    cfg = json.loads(spec)
    relay = Relay(cfg["delay"], cfg["maps"])
    relay.start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner decides when we stop
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "delay":
            relay.delay = max(0.0, float(parts[1]))
            print("ok", flush=True)
    os._exit(0)  # stdin closed: the owner is gone or done


# ------------------------------------------------------------------- probes
def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    mv = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(mv[got:])
        if k == 0:
            raise ConnectionError("probe peer closed the connection")
        got += k
    return bytes(buf)


def _echo_conn(c: socket.socket) -> None:
    _tune(c)
    buf = bytearray(CHUNK)
    try:
        while True:
            kind = c.recv(1)
            if not kind:
                return
            if kind == b"P":
                c.sendall(b"P" + _recv_exact(c, PING_SIZE - 1))
            elif kind == b"B":
                (total,) = struct.unpack("!Q", _recv_exact(c, 8))
                marks = []  # (time, cumulative bytes) after each read
                got = 0
                while got < total:
                    k = c.recv_into(buf, min(CHUNK, total - got))
                    if k == 0:
                        raise ConnectionError("probe client closed mid-transfer")
                    got += k
                    marks.append((time.monotonic(), got))
                # steady-state rate: from the read that passed 20% to the end (skips the
                # token bucket's initial burst and the connection's start)
                t0, b0 = next(m for m in marks if m[1] >= total * 0.2)
                t1 = marks[-1][0]
                rate = (total - b0) / (t1 - t0) if t1 > t0 else float("inf")
                c.sendall(json.dumps({"bytes": total, "t_first": marks[0][0], "t_last": t1,
                                      "steady_Bps": rate}).encode() + b"\n")
            else:
                return
    except OSError:
        return
    finally:
        c.close()


def _echo_main(host: str, port: int) -> int:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(16)
    print("ready", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    while True:
        c, _ = ls.accept()
        threading.Thread(target=_echo_conn, args=(c,), daemon=True).start()


def _probe_main(host: str, port: int) -> int:
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    s.settimeout(30)
    _tune(s)
    # the connection is accepted at once by the relay; wait until the far end answers
    s.sendall(b"P" + bytes(PING_SIZE - 1))
    _recv_exact(s, PING_SIZE)
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "ping":
            rtts = []
            msg = b"P" + os.urandom(PING_SIZE - 1)
            for _ in range(int(parts[1])):
                t = time.perf_counter()
                s.sendall(msg)
                _recv_exact(s, PING_SIZE)
                rtts.append(time.perf_counter() - t)
            print(json.dumps({"rtts": rtts}), flush=True)
        elif parts[0] == "bulk":
            total = int(parts[1])
            block = bytes(min(total, 1 << 20))
            t = time.monotonic()
            s.sendall(b"B" + struct.pack("!Q", total))
            left = total
            while left:
                k = min(left, len(block))
                s.sendall(block if k == len(block) else block[:k])
                left -= k
            reply = b""
            while not reply.endswith(b"\n"):
                part = s.recv(4096)
                if not part:
                    raise ConnectionError("probe server closed")
                reply += part
            r = json.loads(reply)
            r["elapsed"] = time.monotonic() - t
            r["t_start"] = t
            print(json.dumps(r), flush=True)
        elif parts[0] == "quit":
            break
    s.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "relay":
        return _relay_main(argv[1])
    if len(argv) == 3 and argv[0] == "echo":
        return _echo_main(argv[1], int(argv[2]))
    if len(argv) == 3 and argv[0] == "probe":
        return _probe_main(argv[1], int(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

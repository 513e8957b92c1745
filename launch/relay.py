"""Userspace delay line for `mpcrt.launch.netsim`, plus its measuring probes.

This kernel has no `netem` qdisc, so latency is added here, in user space: a TCP
relay runs inside each simulated node's network namespace, listens on the node's
public `address` and forwards every connection to the node's `bind` (on the node's
own loopback). Bytes read from one side wait in a delay line (a FIFO of
(deadline, bytes)) until `arrival + delay`, then go out the other side. Reading never
waits for writing, so the line holds a whole bandwidth-delay product and throughput
is preserved (a delay line, not stop-and-wait). A connection from node j to node i
crosses exactly one relay (node i's), so it sees `delay` each way.

The rate limit is not done here: `tc ... tbf` on the nodes' links shapes the traffic.

How it stays on time: one thread per connection serves both directions with
`select` (microsecond timeouts, timer slack 1 ns), so no hand-off between threads;
the process runs at SCHED_FIFO priority 1 when allowed (root), so a busy machine
delays its wake-ups by microseconds rather than milliseconds; and nothing else in
the process wants the GIL (the bind watcher below is a separate process). What is
left (tens of microseconds a hop) is measured and subtracted by NetSim.

The relay listens on an address only while something listens at its bind (a forked
watcher polls /proc/net/tcp every 20 ms): a dial before the node is up is refused, and
the dialler retries, as on a real network. (Accepting and then dropping such a dial
would look to ZeroMQ like a failed CURVE handshake.)

Modes (this file runs as a script, stdlib only, so it starts in a few milliseconds):

    relay.py relay JSON   JSON = {"delay": s, "maps": [[lhost, lport, thost, tport], ...]}
                          prints "ready"; stdin lines "delay S" set the delay (answers
                          "ok"); exits when stdin closes (its owner is gone) or on SIGTERM
    relay.py echo HOST PORT    probe server: echoes pings, times bulk transfers
    relay.py probe HOST PORT   probe client: stdin "ping K" / "bulk BYTES" / "quit",
                               answers one JSON line each

`CutRelay` (imported by `mpcrt launch`, threads in its process) is the other relay here: it
forwards loopback connections as they are until a cut fault makes it silent (mpcrt.faults).

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
import select
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


def precise_timers() -> None:
    """Let this thread's sleeps end on time (timer slack 1 ns instead of 50 us)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))  # PR_SET_TIMERSLACK
    except Exception:  # pragma: no cover - best effort
        pass


def realtime() -> None:
    """Run this process (and the threads it starts later) at real-time priority SCHED_FIFO 1,
    when allowed: a busy machine then delays our wake-ups by microseconds, not milliseconds.
    The kernel's RT throttling (95% of a period by default) keeps the rest of the machine alive;
    the relay only runs when it has bytes to move. MPCRT_NETSIM_REALTIME=0 turns it off."""
    if os.environ.get("MPCRT_NETSIM_REALTIME", "1") == "0":
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):
        pass


def _tune(s: socket.socket) -> None:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Dir:
    """One direction of a connection: a FIFO of [deadline, bytes] between src and dst."""

    __slots__ = ("src", "dst", "q", "queued", "eof_read", "done")

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.src, self.dst = src, dst
        self.q: collections.deque = collections.deque()
        self.queued = 0
        self.eof_read = False  # src sent FIN (an _EOF item is queued)
        self.done = False  # FIN passed on to dst


class _Conn:
    """One relayed TCP connection, both directions served by one thread (select with
    microsecond timeouts: no hand-off between threads, so the relay adds little jitter)."""

    def __init__(self, a: socket.socket, b: socket.socket, relay: "Relay"):
        self.relay = relay
        self.socks = (a, b)
        for s in self.socks:
            s.setblocking(False)
        self.dirs = (_Dir(a, b), _Dir(b, a))
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        precise_timers()
        try:
            self._loop()
        except OSError:
            self._abort()
        finally:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    def _abort(self) -> None:
        """A side vanished (reset): reset the other side too, as a real path would."""
        for s in self.socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass

    def _loop(self) -> None:
        dirs = self.dirs
        while not (dirs[0].done and dirs[1].done):
            now = time.monotonic()
            timeout = None
            rlist, wlist = [], []
            for d in dirs:
                q = d.q
                # release what is due, in one gathering send
                due = []
                for deadline, item in q:
                    if deadline > now or item is _EOF or len(due) == 256:
                        break
                    due.append(item)
                if due:
                    try:
                        k = d.dst.sendmsg(due)
                    except BlockingIOError:
                        k = 0
                    d.queued -= k
                    while k:
                        head = q[0]
                        size = len(head[1])
                        if k >= size:
                            q.popleft()
                            k -= size
                        else:
                            head[1] = memoryview(head[1])[k:]
                            k = 0
                if q:
                    deadline, item = q[0]
                    if deadline > now:
                        timeout = deadline - now if timeout is None else min(timeout, deadline - now)
                    elif item is _EOF:
                        q.popleft()
                        d.dst.shutdown(socket.SHUT_WR)
                        d.done = True
                    else:
                        wlist.append(d.dst)  # due but the socket is full: wait until writable
                if not d.eof_read and d.queued < QUEUE_CAP:
                    rlist.append(d.src)
            if not rlist and not wlist and timeout is None:
                if dirs[0].done and dirs[1].done:
                    break
                timeout = 0.05
            r, _, _ = select.select(rlist, wlist, [], timeout)
            if r:
                t = time.monotonic() + self.relay.delay
                for d in dirs:
                    if d.src in r:
                        for _ in range(16):  # drain what arrived, a few chunks at most
                            try:
                                data = d.src.recv(CHUNK)
                            except BlockingIOError:
                                break
                            if not data:
                                d.eof_read = True
                                d.q.append([t, _EOF])
                                break
                            d.q.append([t, data])
                            d.queued += len(data)
                            if len(data) < CHUNK // 4:
                                break


def listening_ports() -> set[int]:
    """TCP ports something listens on in this network namespace (from /proc/net/tcp{,6})."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as fh:
                next(fh, None)
                for line in fh:
                    f = line.split()
                    if len(f) > 3 and f[3] == "0A":  # TCP_LISTEN
                        ports.add(int(f[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


class _Map:
    """address -> bind. Listens on the address only while something listens at the bind, so
    a dial before the node is up is refused (the dialler retries), as on a real network,
    instead of being accepted and then dropped (which ZeroMQ would take for a failed handshake)."""

    def __init__(self, relay: "Relay", lhost: str, lport: int, thost: str, tport: int):
        self.relay, self.laddr, self.target = relay, (lhost, int(lport)), (thost, int(tport))
        self.sock = self._bound()  # bound, not listening: dials get a reset (connection refused)
        self.listening = False

    def _bound(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.laddr)
        return s

    def update(self, target_up: bool) -> None:
        if target_up and not self.listening:
            self.sock.listen(128)
            self.listening = True
            threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()
        elif not target_up and self.listening:
            old, self.sock, self.listening = self.sock, None, False
            try:
                old.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
            except OSError:
                pass
            old.close()
            self.sock = self._bound()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(c,), daemon=True).start()

    def _open(self, c: socket.socket) -> None:
        try:
            t = socket.create_connection(self.target, timeout=5)
            t.settimeout(None)
        except OSError:
            try:  # the node went away between two checks: reset
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            except OSError:
                pass
            return
        _tune(c)
        _tune(t)
        _Conn(c, t, self.relay)


class Relay:
    def __init__(self, delay: float, maps: list):
        self.delay = float(delay)
        self.maps = [_Map(self, *m) for m in maps]

    def start(self) -> None:
        """Fork the bind watcher (before any thread exists), then follow its reports.

        The watcher is a separate process on purpose: polling /proc/net/tcp from a thread
        here would hold this process's GIL now and then, and a connection thread waking
        for a due delivery would wait up to the 5 ms GIL switch interval for it."""
        ports = sorted({m.target[1] for m in self.maps})
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the watcher
            try:
                os.close(r)
                _watch_binds(ports, w)
            finally:
                os._exit(0)
        os.close(w)
        threading.Thread(target=self._follow, args=(r,), daemon=True).start()

    def _follow(self, r: int) -> None:
        with os.fdopen(r, "rb", buffering=0) as fh:
            for line in iter(fh.readline, b""):
                port, up = (int(x) for x in line.split())
                for m in self.maps:
                    if m.target[1] == port:
                        m.update(bool(up))


def _watch_binds(ports: list[int], w: int) -> None:
    """The watcher process: report "PORT 1|0" when something starts/stops listening there."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: go when the relay goes
    if os.getppid() == 1:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # polling needs no priority
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    state = {p: False for p in ports}
    while True:
        up = listening_ports()
        for p in ports:
            if (p in up) != state[p]:
                state[p] = p in up
                os.write(w, f"{p} {int(state[p])}\n".encode())
        time.sleep(0.02)


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


class CutRelay:
    """`mpcrt launch`'s relays for a cut fault (mpcrt.faults), as threads of the launcher.

    Each target port gets a listener on a free loopback port (`ports`, in the targets' order)
    that forwards every connection to the target, retrying while the target is not up yet
    (the dialler's connection is held meanwhile: dropping it would look like a failed
    handshake). `cut()` makes every relay silent at once, both ways and for good, as on a lost
    path: what arrives is read and dropped, nothing is closed or reset (no FIN, no RST), and a
    later connection is accepted and held silent. `watch(path)` cuts when that file appears,
    then removes it (the node that asked waits for that). Before a cut, a side that closes
    closes the other too. `close()` ends everything."""

    CONNECT_WAIT_S = 60.0

    def __init__(self, targets: list[int], host: str = "127.0.0.1"):
        self.host = host
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listeners = []
        for t in targets:
            ls = self._keep(socket.socket())
            ls.bind((host, 0))
            ls.listen(64)
            self._listeners.append((ls, t))
        self.ports = [ls.getsockname()[1] for ls, _ in self._listeners]

    def _keep(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.append(s)
        return s

    def start(self) -> "CutRelay":
        for ls, t in self._listeners:
            threading.Thread(target=self._accept, args=(ls, t), daemon=True).start()
        return self

    def cut(self) -> None:
        self._cut.set()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def watch(self, path: str, poll: float = 0.002) -> None:
        """Cut as soon as `path` exists, then remove it (a thread)."""
        def run():
            while not self._stop.is_set():
                if os.path.exists(path):
                    self.cut()
                    os.remove(path)
                    return
                time.sleep(poll)
        threading.Thread(target=run, daemon=True).start()

    def _accept(self, ls: socket.socket, target: int) -> None:
        while not self._stop.is_set():
            try:
                c, _ = ls.accept()
            except OSError:
                return
            self._keep(c)
            threading.Thread(target=self._open, args=(c, target), daemon=True).start()

    def _open(self, c: socket.socket, target: int) -> None:
        deadline = time.monotonic() + self.CONNECT_WAIT_S
        while not (self._stop.is_set() or self._cut.is_set()):
            try:
                d = self._keep(socket.create_connection((self.host, target), timeout=1))
                break
            except OSError:
                if time.monotonic() > deadline:
                    c.close()
                    return
                time.sleep(0.05)
        else:
            self._drop(c)  # cut (or closing) before the target answered: silence
            return
        d.settimeout(None)
        for s in (c, d):
            _tune(s)
        threading.Thread(target=self._pipe, args=(d, c), daemon=True).start()
        self._pipe(c, d)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = b""
            if self._cut.is_set():
                if not data:
                    return  # after a cut nothing is passed on, not even a close
                continue
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            try:
                dst.sendall(data)
            except OSError:
                pass

    def _drop(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                if not s.recv(CHUNK):
                    return
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def main(argv: list[str]) -> int:
    realtime()
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

"""Run a function on N parties inside this process: one thread per party and one for the
dealer, over the in-memory transport (default) or real ZeroMQ (CurveZMQ by default) on
loopback.

For tests, notebooks and quick experiments; `mpcrt launch` runs real processes.

    from mpcrt.launch.inprocess import run_parties
    outs = run_parties(lambda rt: rt.share([1.0, 2.0], src=0).reveal(), n=3)
"""
from __future__ import annotations

import secrets
import threading
from typing import Any, Callable

from mpcrt.cluster import Cluster
from mpcrt.errors import ConfigError, MpcError, PeerFailure
from mpcrt.launch.local import loopback_cluster
from mpcrt.memory_transport import MemoryNetwork
from mpcrt.parties.dealer import Dealer
from mpcrt.runtime import Runtime

TRANSPORTS = ("memory", "zmq")


def local_cluster(n: int, precision: int = 16) -> tuple[Cluster, dict[int, bytes]]:
    """Loopback cluster with fresh keys for an in-process session: (cluster, {id: secret key})."""
    return loopback_cluster(n, precision, prefix="inproc")


def run_parties(
    fn: Callable[..., Any],
    n: int = 2,
    *args,
    precision: int = 16,
    insecure: bool = False,
    timeout: float = 30.0,
    join_timeout: float = 300.0,
    transport: str = "memory",
) -> list[Any]:
    """Call fn(rt, *args) on every party; return the list of results by rank.

    transport: "memory" (threads and queues, mpcrt.memory_transport: no sockets, the same
    frame checks and byte counts) or "zmq" (ZeroMQ sockets on loopback, CurveZMQ unless
    `insecure`). If any party raises, the first exception (by rank) that is not a
    PeerFailure (the cause, where the others only saw a peer go) is re-raised after all
    threads end, else the first one; the dealer's error comes after the parties'.
    """
    if transport not in TRANSPORTS:
        raise ConfigError(f"transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    if transport == "memory":
        net = MemoryNetwork(n, session=f"memory-{secrets.token_hex(8)}")

        def make_dealer() -> Dealer:
            return Dealer(net.node(n, timeout=timeout))

        def make_party(r: int) -> Runtime:
            return Runtime(net.node(r, timeout=timeout), precision)
    else:
        cluster, secrets_ = local_cluster(n, precision)

        def make_dealer() -> Dealer:
            return Dealer.connect(cluster, None if insecure else secrets_[n], insecure=insecure, timeout=timeout)

        def make_party(r: int) -> Runtime:
            return Runtime.connect(cluster, r, None if insecure else secrets_[r], timeout=timeout, insecure=insecure)

    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n
    dealer_err: list[BaseException] = []

    def dealer_main():
        try:
            d = make_dealer()
        except BaseException as e:  # pragma: no cover
            dealer_err.append(e)
            return
        try:
            d.serve(idle_timeout=join_timeout)
        except BaseException as e:
            dealer_err.append(e)
        finally:
            d.close()

    def party_main(r):
        rt = None
        try:
            rt = make_party(r)
            results[r] = fn(rt, *args)
            rt.close()
        except BaseException as e:
            errors[r] = e
            if rt is not None:
                rt.abort()

    threads = [threading.Thread(target=dealer_main, daemon=True)]
    threads += [threading.Thread(target=party_main, args=(r,), daemon=True) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(join_timeout)
    threads[0].join(10)
    if any(t.is_alive() for t in threads[1:]):
        raise MpcError(f"parties still running after {join_timeout} s")
    raised = [e for e in errors if e is not None] + dealer_err
    for e in raised:
        if not isinstance(e, PeerFailure):
            raise e
    if raised:
        raise raised[0]
    return results

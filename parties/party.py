"""A party process: runs the user's script as __main__ with this party's settings.

The script calls `mpcrt.init()`. If it raises, the party aborts its channels (no
goodbye), prints the error and exits 1, so the launcher stops the others. A PeerFailure's
line also names every other node this party found gone (a party that failed because the
dealer vanished is then not taken for the culprit), and such a party waits FAILURE_HOLD_S
before it leaves, so that the others too see the first loss before its own. When the
script ends, the party says goodbye to the dealer and its peers and waits for theirs
(`close_checked`): a peer that left without its goodbye fails this party too (PeerFailure
naming it, exit 1), so a run counts as a success only where every party finished.
"""
from __future__ import annotations

import logging
import os
import runpy
import sys
import time
import traceback

import numpy as np

from mpcrt import config
from mpcrt.cluster import load_cluster
from mpcrt.errors import ConfigError, MpcError, PeerFailure
from mpcrt.parties.dealer import Dealer
from mpcrt.parties.warmup import maybe_rehearse

# A party that fails because a peer is gone keeps its links up this long before it leaves, so
# the other nodes find the first loss (the culprit) before they find this party's exit.
FAILURE_HOLD_S = 1.5


def run_cluster_party(prog: str, cluster: str, rank: int | None, key: str | None, insecure: bool,
                      timeout: float | None, script: str, args: list[str]) -> int:
    """Run `script` as party `rank` of a cluster file's session (multi-host `mpcrt party`
    and `mpcrt infer --cluster`): check the file and the rank, install the configuration
    that mpcrt.init() reads (mpcrt.config), run. Exit status 2 on a configuration error."""
    try:
        c = load_cluster(cluster)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if rank is None or not 0 <= rank < c.world_size:
        print(f"{prog}: --rank {rank} is not in 0..{c.world_size - 1} of {cluster}", file=sys.stderr)
        return 2
    config.install(config.current().replace(cluster=cluster, rank=rank, precision=c.precision,
                                            insecure=True if insecure else None,
                                            secret_key=None if insecure else key, timeout=timeout or None))
    return run_script(script, args)


def run_script(script: str, args: list[str]) -> int:
    try:
        logging.basicConfig(level=config.current().loglevel, format="%(name)s: %(message)s")
    except ConfigError as e:  # a bad MPCRT_* variable
        print(f"mpcrt: {e}", file=sys.stderr)
        return 2
    if not os.path.isfile(script):
        print(f"mpcrt: no such script {script!r}", file=sys.stderr)
        return 2
    sys.argv = [script] + list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    import mpcrt.runtime as runtime

    maybe_rehearse(Dealer)  # the one-time loads, before the session's clock (and the peers') starts
    try:
        runpy.run_path(script, run_name="__main__")
        if runtime._current is not None:
            close_checked(runtime._current)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code and runtime._current is not None:
            runtime._current.abort()
        return code
    except MpcError as e:
        print(failure_line(e, runtime._current), file=sys.stderr)
        if runtime._current is not None:
            if isinstance(e, PeerFailure):
                runtime._current.node.tell_gone(e)
                time.sleep(FAILURE_HOLD_S)
            runtime._current.abort()
        return 1
    except BaseException:
        traceback.print_exc()
        if runtime._current is not None:
            runtime._current.abort()
        return 1
    return 0


def close_checked(rt) -> None:
    """Close a party's session as Runtime.close does (goodbye to the dealer, then a goodbye
    barrier with the peers), except that a peer gone before its goodbye raises PeerFailure
    naming it instead of being let go. The channels are released either way."""
    import mpcrt.runtime as runtime

    bye = np.zeros(0, np.int64)
    try:
        rt.node.send(rt.dealer_id, "bye", bye)
        for j in rt.peers:
            rt.node.send(j, "bye", bye)
        for j in rt.peers:
            rt.node.recv(j, "bye", dtype=np.int64, shape=(0,))
    finally:
        rt.abort()  # the barrier is over (or failed): release without another
        if runtime._current is rt:
            runtime._current = None


def failure_line(e: MpcError, rt) -> str:
    """The line a failed party prints: the error, and for a PeerFailure the other nodes
    this party found gone (their own authenticated links told it)."""
    line = f"{type(e).__name__}: {e}"
    if isinstance(e, PeerFailure) and rt is not None:
        gone = [(rt.node.names[j], rt.node.peer_dead(j)) for j in sorted(rt.node.names) if j != rt.rank]
        also = [f"{name} ({why})" for name, why in gone if why and name != e.peer]
        if also:
            line += "; also gone: " + ", ".join(also)
    return line


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m mpcrt.parties.party SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    return run_script(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

"""A party process: runs the user's script as __main__ with this party's settings.

The script calls `mpcrt.init()`. If it raises, the party aborts its channels (no
goodbye), prints the error and exits 1, so the launcher stops the others.
"""
from __future__ import annotations

import logging
import os
import runpy
import sys
import traceback

from mpcrt import config
from mpcrt.cluster import load_cluster
from mpcrt.errors import ConfigError, MpcError
from mpcrt.parties.dealer import Dealer
from mpcrt.parties.warmup import maybe_rehearse


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
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code and runtime._current is not None:
            runtime._current.abort()
        return code
    except MpcError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        if runtime._current is not None:
            runtime._current.abort()
        return 1
    except BaseException:
        traceback.print_exc()
        if runtime._current is not None:
            runtime._current.abort()
        return 1
    if runtime._current is not None:
        try:
            runtime._current.close()
        except MpcError as e:
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
            runtime._current.abort()
            return 1
    return 0


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m mpcrt.parties.party SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    return run_script(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

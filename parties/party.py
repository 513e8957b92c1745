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

from mpcrt.errors import MpcError


def run_script(script: str, args: list[str]) -> int:
    logging.basicConfig(level=os.environ.get("MPCRT_LOGLEVEL", "WARNING"), format="%(name)s: %(message)s")
    if not os.path.isfile(script):
        print(f"mpcrt: no such script {script!r}", file=sys.stderr)
        return 2
    sys.argv = [script] + list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    import mpcrt.runtime as runtime

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

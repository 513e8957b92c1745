"""The "where to run" arguments that `mpcrt infer` and `mpcrt train` share (-n, or --cluster/--rank/--key)."""
from __future__ import annotations

import argparse

from mpcrt.config import add_device_argument


def add_where_arguments(p: argparse.ArgumentParser, precision: int, precision_help: str) -> None:
    """-n N (dealer and N parties here) or --cluster/--rank/--key (one party of a cluster), the channel
    and timeout settings, and --device; `precision`: -n's default fractional bits."""
    w = p.add_argument_group("where to run (pick one; inside `mpcrt launch`/`mpcrt party` neither is needed)")
    w.add_argument("-n", type=int, dest="local_n", metavar="N", help="spawn the dealer and N parties on this host")
    w.add_argument("--cluster", metavar="FILE", help="cluster file (TOML): run one party of it")
    w.add_argument("--rank", type=int, metavar="I", help="with --cluster: this party's rank")
    w.add_argument("--key", metavar="FILE", help="with --cluster: this party's secret key file (from `mpcrt keygen`)")
    w.add_argument("--precision", type=int, default=precision, metavar="F", help=f"with -n: {precision_help}")
    w.add_argument("--insecure-plaintext", action="store_true", help="NO encryption/authentication (benchmarks only)")
    w.add_argument("--timeout", type=float, default=None, metavar="S", help="receive timeout in seconds")
    add_device_argument(w)

"""The `mpcrt` command: launch, party, dealer, keygen, bench, infer, train.

Every command builds this process's configuration (mpcrt.config) from the environment
and its flags (flags win), installs it, and so passes it on to the processes it starts.
"""
from __future__ import annotations

import argparse
import sys

from mpcrt import config
from mpcrt.config import add_device_argument
from mpcrt.errors import ConfigError

PRECISION_HELP = ("fractional bits f of the fixed-point encoding (default 16; products need |x*y| < 2^(62-2f): "
                  "1e9 at 16, 4e6 at 20, 16384 at 24)")


def _launch(a) -> int:
    from mpcrt.launch.local import launch

    config.install(config.current().replace(device=a.device, timeout=a.timeout))
    return launch(a.n, a.script, a.args, precision=a.precision, insecure=a.insecure_plaintext, timeout=a.timeout)


def _party(a) -> int:
    from mpcrt.parties.party import run_cluster_party

    config.install(config.current().replace(device=a.device))
    return run_cluster_party("mpcrt party", a.cluster, a.rank, a.key, a.insecure_plaintext, a.timeout, a.script, a.args)


def _dealer(a) -> int:
    from mpcrt.parties.dealer import main

    insecure = a.insecure_plaintext
    config.install(config.current().replace(device=a.device, cluster=a.cluster, timeout=a.timeout or None,
                                            insecure=True if insecure else None,
                                            secret_key=None if insecure else a.key))
    return main()


def _keygen(a) -> int:
    from mpcrt.launch.keys import keygen

    pub, pub_path, sec_path = keygen(a.name, a.dir)
    print(f"public key  {pub}\nwrote       {pub_path} (share it: goes into the cluster file)\n"
          f"wrote       {sec_path} (keep it on this host, mode 600)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mpcrt", description="Secure multi-party computation on tensors.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("launch", help="run a script on N local parties and a dealer")
    p.add_argument("-n", type=int, default=2, help="number of parties (>= 2)")
    p.add_argument("--precision", type=int, default=16, help=PRECISION_HELP)
    p.add_argument("--insecure-plaintext", action="store_true", help="NO encryption/authentication (benchmarks only)")
    p.add_argument("--timeout", type=float, default=None, help="receive timeout in seconds (default 60)")
    add_device_argument(p)
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_launch)

    for name, fn, help_ in (("party", _party, "run one party of a cluster"),
                            ("dealer", _dealer, "run the dealer of a cluster")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--cluster", required=True, help="cluster file (TOML)")
        p.add_argument("--key", help="this node's secret key file (from `mpcrt keygen`)")
        p.add_argument("--insecure-plaintext", action="store_true", help="NO encryption/authentication")
        p.add_argument("--timeout", type=float, default=None)
        add_device_argument(p)
        if name == "party":
            p.add_argument("--rank", type=int, required=True)
            p.add_argument("script")
            p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(fn=fn)

    from mpcrt.launch import bench, infer, train

    bench.add_parser(sub)
    infer.add_parser(sub)
    train.add_parser(sub)

    p = sub.add_parser("keygen", help="write a CurveZMQ key pair for a cluster node")
    p.add_argument("name", help="file name stem, e.g. party0 or dealer")
    p.add_argument("--dir", default=".", help="output folder")
    p.set_defaults(fn=_keygen)
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        a = build_parser().parse_args(argv)
        return a.fn(a)
    except ConfigError as e:  # a bad MPCRT_* variable or flag value
        print(f"mpcrt: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

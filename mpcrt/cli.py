"""The `mpcrt` command: launch, party, dealer, keygen."""
from __future__ import annotations

import argparse
import os
import sys


def _launch(a) -> int:
    from mpcrt.launch.local import launch

    return launch(a.n, a.script, a.args, precision=a.precision, insecure=a.insecure_plaintext, timeout=a.timeout,
                  env_extra={"MPCRT_DEVICE": a.device})


def _node_env(a) -> None:
    os.environ["MPCRT_CLUSTER"] = a.cluster
    if a.insecure_plaintext:
        os.environ["MPCRT_INSECURE"] = "1"
    elif a.key:
        os.environ["MPCRT_SECRET_KEY"] = a.key
    if a.timeout:
        os.environ["MPCRT_TIMEOUT"] = str(a.timeout)


def _party(a) -> int:
    from mpcrt.parties.party import run_cluster_party

    os.environ["MPCRT_DEVICE"] = a.device
    return run_cluster_party("mpcrt party", a.cluster, a.rank, a.key, a.insecure_plaintext, a.timeout, a.script, a.args)


def _dealer(a) -> int:
    from mpcrt.parties.dealer import main

    _node_env(a)
    os.environ["MPCRT_DEVICE"] = a.device
    return main()


def _keygen(a) -> int:
    from mpcrt.launch.keys import keygen

    pub, pub_path, sec_path = keygen(a.name, a.dir)
    print(f"public key  {pub}\nwrote       {pub_path} (share it: goes into the cluster file)\n"
          f"wrote       {sec_path} (keep it on this host, mode 600)")
    return 0


def add_device_argument(p) -> None:
    """--device cpu|cuda (default: MPCRT_DEVICE, else cpu); the command sets MPCRT_DEVICE from it."""
    p.add_argument("--device", choices=("cpu", "cuda"), default=os.environ.get("MPCRT_DEVICE", "cpu"),
                   help="where large ring matmuls and convolutions run: cpu (default) or cuda "
                        "(needs CuPy and a GPU: pip install 'mpcrt[gpu]')")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mpcrt", description="Secure multi-party computation on tensors.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("launch", help="run a script on N local parties and a dealer")
    p.add_argument("-n", type=int, default=2, help="number of parties (>= 2)")
    p.add_argument("--precision", type=int, default=16, help="fractional bits f of the fixed-point encoding (default 16; products need |x*y| < 2^(62-2f): 1e9 at 16, 4e6 at 20, 16384 at 24)")
    p.add_argument("--insecure-plaintext", action="store_true", help="NO encryption/authentication (benchmarks only)")
    p.add_argument("--timeout", type=float, default=None, help="receive timeout in seconds (default 60)")
    add_device_argument(p)
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_launch)

    for name, fn, help_ in (("party", _party, "run one party of a cluster"), ("dealer", _dealer, "run the dealer of a cluster")):
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

    from mpcrt.launch import bench

    bench.add_parser(sub)
    from mpcrt import infer

    infer.add_parser(sub)

    p = sub.add_parser("keygen", help="write a CurveZMQ key pair for a cluster node")
    p.add_argument("name", help="file name stem, e.g. party0 or dealer")
    p.add_argument("--dir", default=".", help="output folder")
    p.set_defaults(fn=_keygen)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())

"""Secure aggregation: every party contributes vectors, only their sum (or mean) is revealed.

    python3 -m mpcrt launch -n 3 examples/secure_aggregation.py
    python3 -m mpcrt launch -n 4 examples/secure_aggregation.py --dim 1000 --vectors 5 --mean --to 0

Each party holds one or more private vectors (think: model updates of federated
clients, or per-site counts). Each party secret-shares its vectors (one small
message: the shares come from pairwise PRGs, the values never leave the party),
the parties add their shares locally, and open the total: to everyone, or to one
aggregator (--to). Nobody learns another party's vectors, only the aggregate.

What is public: the number of vectors each party contributes and their length.
Rounds: one shape message per contributing party, then one opening (plus one
truncation round for --mean).

The demo check at the end regenerates the vectors from their seeds (which a real
deployment of course could not) and compares the revealed aggregate with float64.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import mpcrt


def local_vectors(rank: int, k: int, dim: int) -> np.ndarray:
    """Party `rank`'s private vectors (k of them), e.g. its clients' model updates."""
    return np.random.default_rng(1000 + rank).normal(0.0, 1.0, size=(k, dim))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=8, help="length of each vector")
    ap.add_argument("--vectors", type=int, default=2, help="vectors per party (party i contributes this + i)")
    ap.add_argument("--mean", action="store_true", help="reveal the mean instead of the sum")
    ap.add_argument("--to", type=int, default=None, help="reveal only to this party (default: everyone)")
    a = ap.parse_args()

    rt = mpcrt.init()
    if a.to is not None and not 0 <= a.to < rt.world_size:
        raise SystemExit(f"--to must be a party rank in 0..{rt.world_size - 1}")
    mine = local_vectors(rt.rank, a.vectors + rt.rank, a.dim)

    t0 = time.perf_counter()
    total, count = None, 0
    for src in range(rt.world_size):  # every party runs the same sequence of share() calls
        x = rt.share(mine if rt.rank == src else None, src=src)  # shape (k_src, dim) is public
        s = x.sum(dim=0)
        total = s if total is None else total + s
        count += x.shape[0]
    agg = total * (1.0 / count) if a.mean else total
    result = agg.reveal(to=a.to)
    seconds = time.perf_counter() - t0
    st = rt.stats()

    what = "mean" if a.mean else "sum"
    if result is None:
        print(f"party {rt.rank}: contributed {len(mine)} vectors; learned nothing ({st['rounds']} rounds, "
              f"{st['bytes_sent']} bytes sent)")
        return
    print(f"party {rt.rank}: {what} of {count} vectors from {rt.world_size} parties = {np.round(result[:8], 4)}"
          f"{' ...' if a.dim > 8 else ''}")
    # demo check only: regenerate every party's vectors from their seeds
    allv = np.concatenate([local_vectors(r, a.vectors + r, a.dim) for r in range(rt.world_size)])
    expect = allv.mean(0) if a.mean else allv.sum(0)
    print(f"party {rt.rank}: max |error| vs float64 {float(np.abs(result - expect).max()):.2e}; "
          f"{seconds * 1e3:.1f} ms, {st['rounds']} rounds, {st['bytes_sent']} bytes sent")


if __name__ == "__main__":
    main()

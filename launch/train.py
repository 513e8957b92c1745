"""`mpcrt train`: train a network on data that several parties hold, without pooling it.

The demo data set is scikit-learn's digits (1797 8x8 images, 10 classes): a public split
into train and test rows (--test-fraction, --seed), then each party keeps only its own
slice of both (rows i::N of each, as hospitals each holding their own patients), with the
labels. Party 0 owns the initial model (a fresh torch network, seeded); at the end the
trained weights are revealed to party 0 only (--out writes them there as .npz).

    mpcrt train -n 3 --model cnn --epochs 10                # 3 local parties and a dealer
    mpcrt train -n 3 --model mlp --compare-plaintext        # also train in float on party 0 (the check)
    mpcrt train --cluster cluster.toml --rank I --key partyI.key_secret --model cnn

What the parties learn: the architecture, every party's row count, the public batch
schedule (which joint row indices share a batch), the mean training loss and the test
accuracy per epoch (one number each). Not the rows, labels, gradients or weights.

--compare-plaintext (demo only: it needs the whole data set on party 0, as the public
digits set is): party 0 also trains the same network from the same weights, with the same
batches, in float64 torch, and prints the accuracy difference and the weights' distance.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np

from mpcrt import config
from mpcrt.launch.where_args import add_where_arguments

from mpcrt.launch.train_nets import MODELS, build_net  # noqa: F401  (torch only: the CrypTen side reads it too)


def digits(shape: tuple, test_fraction: float, seed: int):
    """(x_train, y_train, x_test, y_test) of scikit-learn's digits, scaled to [0, 1]; for a
    28x28 model each 8x8 image is padded to 28x28 (centred)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float64)[:, None]
    if shape[-1] == 28:
        x = np.pad(x, ((0, 0), (0, 0), (10, 10), (10, 10)))
    order = np.random.default_rng(seed).permutation(len(x))
    k = int(round(len(x) * test_fraction))
    te, tr = order[:k], order[k:]
    return x[tr], d.target[tr], x[te], d.target[te]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("training (the same on every party)")
    t.add_argument("--model", choices=MODELS, default="cnn", help="network (default cnn)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--seed", type=int, default=0, help="public seed: data split, initial weights, batch order")
    t.add_argument("--test-fraction", type=float, default=0.2)
    t.add_argument("--limit", type=int, default=None, metavar="ROWS", help="use only the first ROWS training rows")
    t.add_argument("--out", metavar="FILE.npz", help="party 0 writes the trained weights here")
    t.add_argument("--compare-plaintext", action="store_true", help="party 0 also trains in float (demo check)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--dp-noise", type=float, default=None, metavar="SIGMA",
                   help="DP-SGD (mpcrt.dp) with this noise multiplier; epsilon per epoch (needs dp-accounting)")
    t.add_argument("--dp-clip", type=float, default=1.0, metavar="C", help="DP-SGD per-example clipping norm")
    t.add_argument("--dp-delta", type=float, default=1e-5, metavar="DELTA", help="DP-SGD delta")
    t.add_argument("--bench", type=int, default=0, metavar="K",
                   help="instead of training: time K iterations (after one warm-up) on a random batch and print "
                        "seconds, rounds and bytes per iteration and the epoch time they imply")
    add_where_arguments(p, 20, "fractional bits (default 20: SGD steps of 1e-4 need them)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `train` sub-command to the `mpcrt` command line (its fn is `run`)."""
    p = subparsers.add_parser("train", help="train a network on data the parties hold (rows split among them)",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
    _add_arguments(p)
    p.set_defaults(fn=run)
    return p


def _party_argv(a) -> list[str]:
    out = ["--model", a.model, "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--optimizer",
           a.optimizer, "--lr", repr(a.lr), "--momentum", repr(a.momentum), "--seed", str(a.seed),
           "--test-fraction", repr(a.test_fraction)]
    for flag, v in (("--limit", a.limit), ("--out", a.out), ("--bench", a.bench or None), ("--dp-noise", a.dp_noise),
                    ("--dp-clip", a.dp_clip), ("--dp-delta", a.dp_delta)):
        if v is not None:
            out += [flag, str(v)]
    out += [f for f, on in (("--compare-plaintext", a.compare_plaintext), ("--no-progress", a.no_progress)) if on]
    return out


def run(a) -> int:
    """The `mpcrt train` command: local launch, one cluster party, or this party (script mode)."""
    if a.local_n is not None and a.cluster:
        print("mpcrt train: pass either -n N or --cluster/--rank, not both", file=sys.stderr)
        return 2
    cfg = config.install(config.current().replace(device=a.device))
    if a.local_n is not None:
        from mpcrt.launch.local import launch

        return launch(a.local_n, os.path.abspath(__file__), _party_argv(a), precision=a.precision,
                      insecure=a.insecure_plaintext, timeout=a.timeout)
    if a.cluster:
        from mpcrt.parties.party import run_cluster_party

        return run_cluster_party("mpcrt train", a.cluster, a.rank, a.key, a.insecure_plaintext, a.timeout,
                                 os.path.abspath(__file__), _party_argv(a))
    if cfg.cluster is not None and cfg.rank is not None:
        import mpcrt

        (bench_party if a.bench else train_party)(mpcrt.init(), a)
        return 0
    print("mpcrt train: pass -n N (dealer and N parties here) or --cluster FILE --rank I", file=sys.stderr)
    return 2


def train_party(rt, a) -> dict:
    """This party's part: its slice of the data, the shared model, fit(), the reveal to party 0."""
    import torch

    import mpcrt.nn as mnn
    import mpcrt.optim as optim
    from mpcrt.nn import train_data

    n, me = rt.world_size, rt.rank
    net, shape = build_net(a.model, a.seed)
    xtr, ytr, xte, yte = digits(shape, a.test_fraction, a.seed)
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    # each party keeps only its own rows (in a deployment: reads only its own file)
    x, y = train_data.horizontal(rt, xtr[me::n], ytr[me::n], 10)
    xt, yt = train_data.horizontal(rt, xte[me::n], yte[me::n], 10)
    init = copy.deepcopy(net) if me == 0 else None
    model = mnn.from_torch(net if me == 0 else None, torch.zeros(shape) if me == 0 else None, src=0, train=True,
                           rt=rt)
    opt = (optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum) if a.optimizer == "sgd"
           else optim.Adam(model.parameters(), lr=a.lr))
    if me == 0:
        print(f"mpcrt train: {a.model}, {n} parties, {x.shape[0]} training rows ({[len(ytr[i::n]) for i in range(n)]} "
              f"per party), {xt.shape[0]} test rows, {a.epochs} epochs, batch {a.batch_size}, "
              f"{rt.precision} fractional bits", flush=True)
    dp = None
    if a.dp_noise is not None:
        from mpcrt.dp import DPSGD

        dp = DPSGD(model, opt, a.dp_clip, a.dp_noise, x.shape[0], a.batch_size)
    hist = train_data.fit(model, opt, x, y, a.epochs, a.batch_size, a.seed, test=(xt, yt),
                          progress=not a.no_progress, dp=dp, dp_delta=a.dp_delta)
    state = model.reveal_state_dict(to=0)
    result = {"history": hist}
    if me == 0:
        last = hist[-1]
        eps = f", (epsilon, delta) = ({last['epsilon']:.2f}, {a.dp_delta:g})" if "epsilon" in last else ""
        print(f"trained: final loss {last['loss']:.4f}, test accuracy {100 * last['test_acc']:.2f}%{eps}", flush=True)
        if a.out:
            np.savez(a.out, **state)
            print(f"wrote the trained weights to {a.out} (party 0 only)")
        if a.compare_plaintext:
            result["plain"] = _compare(init, state, xtr, ytr, xte, yte, a, hist, n)
    return result


EPOCH_ROWS = {"cnn": 1438, "mlp": 1438, "lenet": 60000}  # digits' training rows; MNIST's for LeNet


def bench_party(rt, a) -> dict:
    """Time a.bench training iterations (forward, loss, backward, SGD step) on a random batch of
    a.batch_size; party 0 prints per-iteration seconds, rounds and bytes sent (this party, to
    peers and the dealer) and the epoch time they imply (EPOCH_ROWS / batch iterations)."""
    import time

    import torch

    import mpcrt.nn as mnn
    import mpcrt.optim as optim
    from mpcrt.nn import functional as F

    net, shape = build_net(a.model, a.seed)
    rng = np.random.default_rng(a.seed)
    x = rt.share(rng.random((a.batch_size,) + tuple(shape[1:])) if rt.rank == 0 else None, src=0)
    y = rt.share(np.eye(10)[rng.integers(0, 10, a.batch_size)] if rt.rank == 1 else None, src=1)
    model = mnn.from_torch(net if rt.rank == 0 else None, torch.zeros(shape) if rt.rank == 0 else None, src=0,
                           train=True, rt=rt)
    opt = optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, check_range=False)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    s0, t0 = rt.stats(), time.perf_counter()
    for _ in range(a.bench):
        step()
    sec = (time.perf_counter() - t0) / a.bench
    s1 = rt.stats()
    per = {k: (s1[k] - s0[k]) / a.bench for k in ("rounds", "bytes_sent", "dealer_bytes_received")}
    iters = -(-EPOCH_ROWS[a.model] // a.batch_size)
    row = {"model": a.model, "parties": rt.world_size, "batch": a.batch_size, "s_per_iter": sec, **per,
           "iters_per_epoch": iters, "epoch_s": sec * iters}
    if rt.rank == 0:
        print(f"bench {a.model} N={rt.world_size} batch {a.batch_size}: {sec:.3f} s/iteration, "
              f"{per['rounds']:.0f} rounds, {per['bytes_sent'] / 1e6:.2f} MB sent by party 0, "
              f"{per['dealer_bytes_received'] / 1e6:.2f} MB from the dealer; epoch ({iters} iterations) "
              f"{sec * iters:.1f} s", flush=True)
    return row


def _plain_batches(n_rows: int, parts: int, a) -> tuple[np.ndarray, list]:
    """The joint row order (party 0's rows, then party 1's, ...) and fit()'s schedule."""
    from mpcrt.nn import train_data

    order = np.concatenate([np.arange(n_rows)[i::parts] for i in range(parts)])
    return order, [train_data.schedule(n_rows, a.batch_size, ep, a.seed) for ep in range(a.epochs)]


def _compare(net, state, xtr, ytr, xte, yte, a, hist, parts: int) -> dict:
    """Train `net` in float64 torch with the same batches; print and return the comparison."""
    import torch
    import torch.nn.functional as F

    net = net.double()
    order, sched = _plain_batches(len(xtr), parts, a)
    x, y = torch.tensor(xtr[order]), torch.tensor(ytr[order])
    opt = (torch.optim.SGD(net.parameters(), lr=a.lr, momentum=a.momentum) if a.optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=a.lr))
    for batches in sched:
        net.train()
        for idx in batches:
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    teo = np.concatenate([np.arange(len(xte))[i::parts] for i in range(parts)])
    with torch.no_grad():
        acc = float((net(torch.tensor(xte[teo])).argmax(1).numpy() == yte[teo]).mean())
    sd = net.state_dict()
    dist = max(float(np.abs(state[k] - sd[k].numpy()).max()) for k in state)
    rel = float(np.sqrt(sum(((state[k] - sd[k].numpy()) ** 2).sum() for k in state)) /
                np.sqrt(sum((sd[k].numpy() ** 2).sum() for k in state)))
    mpc = hist[-1]["test_acc"]
    print(f"plaintext float64: test accuracy {100 * acc:.2f}%; MPC {100 * mpc:.2f}% (difference "
          f"{100 * (mpc - acc):+.2f} points); weights: max |diff| {dist:.3g}, relative L2 {rel:.3g}")
    return {"test_acc": acc, "max_abs_diff": dist, "rel_l2": rel}


def main(argv: list[str] | None = None) -> int:
    """`python -m mpcrt.launch.train ...` (and script mode under mpcrt launch / mpcrt party)."""
    p = argparse.ArgumentParser(prog="mpcrt train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    _add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    _rc = main()
    if _rc:
        sys.exit(_rc)

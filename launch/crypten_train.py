#!/usr/bin/env python3
"""CrypTen 0.4.1's training of the `mpcrt train` networks, timed per iteration, for the comparison.

    /work/crypten-venv/bin/python launch/crypten_train.py --model mlp --parties 2 --repeats 3
    (CrypTen's own interpreter: benchmarks/CRYPTEN.md)

One iteration, as `mpcrt train --bench`: forward of a batch (64 random inputs of the
model's shape, encrypted by party 0; one-hot labels), crypten.nn.CrossEntropyLoss,
backward, crypten.optim.SGD(lr 0.1, momentum 0.9).step(), on a model made by
crypten.nn.from_pytorch from launch/train_nets.py's network (the same weights, seed 0).
It runs through launch/crypten_side.py's harness (its processes, the TTP tuple
provider, gloo on loopback, one thread per process, its torch >= 2.9 shim), adding
the training workloads to its table at run time: time is the slowest party's median
over --repeats after one warm-up; rounds and bytes are CrypTen's own counts, party to
party (TTP traffic apart).
"""
from __future__ import annotations

import argparse
import json
import sys

if __package__:
    from . import crypten_side
    from .train_nets import build_net
else:  # run by its path with CrypTen's interpreter: this folder is sys.path[0]
    import crypten_side
    from train_nets import build_net

BATCH = 64


def _training(model_name: str):
    def setup(crypten, torch, world, n):
        net, shape = build_net(model_name, 0)
        net = net.float().train()
        torch.manual_seed(1234)
        x = torch.rand((n,) + tuple(shape[1:]))
        y = torch.nn.functional.one_hot(torch.randint(0, 10, (n,)), 10).float()
        cmodel = crypten.nn.from_pytorch(net, torch.empty((1,) + tuple(shape[1:])))
        cmodel.encrypt(src=0)
        cmodel.train()
        xe, ye = crypten.cryptensor(x, src=0), crypten.cryptensor(y, src=0)
        loss_fn = crypten.nn.CrossEntropyLoss()
        opt = crypten.optim.SGD(cmodel.parameters(), lr=0.1, momentum=0.9)

        def run():
            opt.zero_grad()
            loss = loss_fn(cmodel(xe), ye)
            loss.backward()
            opt.step()
            return loss

        def finish(out):
            return None, None, 0  # no reference: the time, rounds and bytes are what is compared

        return run, finish, {"input_shape": [n] + list(shape[1:]), "workload": f"train_{model_name}"}

    return setup


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("mlp", "cnn", "lenet"), default="mlp")
    ap.add_argument("--parties", type=int, default=2)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)
    name = f"train_{a.model}"
    crypten_side.WORKLOADS[name] = _training(a.model)  # the forked parties look it up there
    res = crypten_side.run_workload(name, a.parties, a.batch, 1, a.repeats, a.timeout, 0)
    res.update(model=a.model, parties=a.parties, batch=a.batch)
    print(json.dumps({k: v for k, v in res.items() if k not in ("times",)}, default=str))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0 if res.get("error") is None else 1


if __name__ == "__main__":
    sys.exit(main())

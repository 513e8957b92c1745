"""Three hospitals train one CNN on all their records without pooling them.

    python3 -m mpcrt launch -n 3 --precision 20 examples/train_digits.py
    python3 -m mpcrt launch -n 3 --precision 20 examples/train_digits.py --epochs 3 --model mlp

scikit-learn's digits stand in for the records: a public 80/20 split, then hospital i
keeps rows i, i+3, i+6, ... of each part, with their labels, and reads nothing else.
Party 0 also owns the initial (random, seeded) network. Everything below runs on every
party (SPMD); no hospital ever holds another's rows, labels, gradients or the weights:

    X, Y = horizontal(rt, my_rows, my_labels)       # each party shares its own rows
    model = from_torch(net, ..., train=True)         # the weights, secret-shared
    for each batch of the public schedule:
        loss = cross_entropy(model(X[idx]), Y[idx]); loss.backward(); opt.step()
    state = model.reveal_state_dict(to=0)            # only party 0 learns the model

What is revealed during training: every party's row count, the batch schedule (public
indices), and per epoch the mean training loss and the test accuracy (one number each,
shown in the progress bar on party 0). The trained weights go to party 0 only, which
saves them (--out) and checks them in plaintext on its own test rows.

Needs the `examples` extra: pip install scikit-learn tqdm
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import mpcrt
import mpcrt.nn as mnn
import mpcrt.nn.functional as F
from mpcrt import optim
from mpcrt.launch.train import build_net, digits
from mpcrt.nn.train_data import fit, horizontal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--out", default=None, help="party 0 saves the trained weights here (.npz)")
    a = ap.parse_args()

    rt = mpcrt.init()
    n, me = rt.world_size, rt.rank
    net, shape = build_net(a.model, seed=0)
    x_train, y_train, x_test, y_test = digits(shape, test_fraction=0.2, seed=0)
    mine = (x_train[me::n], y_train[me::n]), (x_test[me::n], y_test[me::n])  # this hospital's records only
    del x_train, y_train, x_test, y_test

    X, Y = horizontal(rt, *mine[0], num_classes=10)
    Xt, Yt = horizontal(rt, *mine[1], num_classes=10)
    model = mnn.from_torch(net if me == 0 else None, torch.zeros(shape) if me == 0 else None, src=0, train=True)
    opt = optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    fit(model, opt, X, Y, a.epochs, a.batch_size, seed=0, loss=F.cross_entropy, test=(Xt, Yt), progress=True)

    trained = model.to_torch()  # party 0: its own module with the trained weights; None elsewhere
    if me == 0:
        with torch.no_grad():
            xt, yt = mine[1]
            acc = (trained.double()(torch.tensor(xt)).argmax(1).numpy() == yt).mean()
        print(f"party 0 (sees the model): plaintext accuracy on its own {len(yt)} test rows {100 * acc:.1f}%")
        if a.out:
            np.savez(a.out, **{k: v.detach().numpy() for k, v in trained.state_dict().items()})
            print(f"saved {a.out}")


if __name__ == "__main__":
    main()

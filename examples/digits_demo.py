"""Private inference on handwritten digits: a model owner and a data owner.

    python3 -m mpcrt launch -n 3 examples/digits_demo.py              # MLP
    python3 -m mpcrt launch -n 2 examples/digits_demo.py --model cnn  # CNN with a residual block

Party 0 (the model owner) trains a small network on scikit-learn's 8x8 digits
(1437 training images, fixed seed, a few seconds). Party 1 (the data owner) holds
the 360 held-out test images. Every party receives the network's architecture
(public) and a secret share of its weights; the test images are secret-shared by
party 1; the logits of every batch are revealed to party 1 only. Party 0 never
sees an image or a prediction; party 2 (with -n 3) is a helper that sees nothing.

Party 1 prints the private accuracy, the plaintext accuracy and how many of the
360 predictions agree, with the time, rounds and bytes of every party.

For the comparison only, party 0 also runs the network in the clear on its own
copy of the (public) test split and sends party 1 those 360 plaintext labels after
the private run: a demo check, not part of the protocol.

Needs the `examples` extra: pip install scikit-learn tqdm
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mpcrt
import mpcrt.nn

MODEL_OWNER, DATA_OWNER = 0, 1


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class CNN(nn.Module):
    """Conv-BN-ReLU, a residual block, 2x2 max pooling, a linear classifier."""

    def __init__(self, c=16):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.block = ResidualBlock(c)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(c * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.pool(self.block(x))
        return self.fc(x.view(x.size(0), -1))


def digits(split: str, cnn: bool):
    """The scikit-learn digits, scaled to [0, 1], 80/20 split (random_state=0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(d.data / 16.0, d.target, test_size=0.2, random_state=0)
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    x = x.astype(np.float32)
    return (x.reshape(-1, 1, 8, 8) if cnn else x), y.astype(np.int64)


def train(kind: str, epochs: int | None = None, seed: int = 0) -> nn.Module:
    """Train the model owner's network (a few seconds on one core)."""
    torch.manual_seed(seed)
    cnn = kind == "cnn"
    x, y = digits("train", cnn)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    net = CNN() if cnn else MLP()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2 if not cnn else 5e-3)
    g = torch.Generator().manual_seed(seed)
    epochs = epochs or (60 if not cnn else 12)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--batch-size", type=int, default=90, help="test images per MPC batch")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()

    try:  # every party checks, so that none waits for another that cannot start
        import sklearn  # noqa: F401
    except ImportError:
        sys.exit("digits_demo needs scikit-learn (and tqdm for the progress bar): pip install 'mpcrt[examples]'")
    rt = mpcrt.init()
    if rt.world_size < 2:
        sys.exit("run with at least 2 parties: python3 -m mpcrt launch -n 3 examples/digits_demo.py")
    torch.set_num_threads(int(os.environ.get("MPCRT_THREADS", "1")))
    cnn = a.model == "cnn"
    me = {MODEL_OWNER: "model owner", DATA_OWNER: "data owner"}.get(rt.rank, "helper")

    # --- the model owner trains its network; the data owner loads its images
    net, images, labels = None, None, None
    if rt.rank == MODEL_OWNER:
        t0 = time.perf_counter()
        net = train(a.model)
        print(f"party {rt.rank} (model owner): trained the {a.model.upper()} in {time.perf_counter() - t0:.1f} s")
    if rt.rank == DATA_OWNER:
        images, labels = digits("test", cnn)

    # --- import: public architecture to all, weights secret-shared by the model owner
    example = torch.zeros((1, 1, 8, 8) if cnn else (1, 64)) if rt.rank == MODEL_OWNER else None
    model = mpcrt.nn.from_torch(net, example, src=MODEL_OWNER)
    if rt.rank == DATA_OWNER:
        print(f"party {rt.rank} (data owner): received {model}")

    # one-image warm-up (first use of the back ends), not counted
    model(rt.share(np.zeros(model.input_shape) if rt.rank == DATA_OWNER else None, src=DATA_OWNER))

    # --- private inference of the 360 test images, revealed to the data owner only
    rt.reset_stats()
    t0 = time.perf_counter()
    logits = model.infer(images, data_owner=DATA_OWNER, batch_size=a.batch_size,
                         progress=not a.no_progress)
    seconds = time.perf_counter() - t0
    st = rt.stats()

    # --- demo-only bookkeeping: stats of every party and the plaintext reference to the data owner
    mine = np.array([st["rounds"], st["bytes_sent"], st["bytes_received"],
                     st.get("dealer_bytes_received", 0), int(seconds * 1e6)], np.int64)
    others = [j for j in rt.peers if j != DATA_OWNER]
    if rt.rank != DATA_OWNER:
        send = {DATA_OWNER: mine}
        if rt.rank == MODEL_OWNER:
            x_ref, _ = digits("test", cnn)  # the public split's copy on the model owner: demo check only
            with torch.no_grad():
                ref_labels = net(torch.from_numpy(x_ref)).argmax(1).numpy().astype(np.int64)
        rt.exchange(send, {}, "demo.stats")
        if rt.rank == MODEL_OWNER:
            rt.exchange({DATA_OWNER: ref_labels}, {}, "demo.reference")
        print(f"party {rt.rank} ({me}): done; learned no image and no prediction")
        return
    got = rt.exchange({}, {j: (5,) for j in others}, "demo.stats")
    got[DATA_OWNER] = mine
    (ref_labels,) = rt.exchange({}, {MODEL_OWNER: (len(labels),)}, "demo.reference").values()

    pred = logits.argmax(1)
    n = len(labels)
    agree = int((pred == ref_labels).sum())
    print(f"private inference of {n} test images ({a.model.upper()}, {rt.world_size} parties, "
          f"batches of {a.batch_size}):")
    print(f"  private accuracy    {(pred == labels).mean() * 100:6.2f} %  ({int((pred == labels).sum())}/{n})")
    ref_right = int((ref_labels == labels).sum())
    print(f"  plaintext accuracy  {(ref_labels == labels).mean() * 100:6.2f} %  ({ref_right}/{n})")
    print(f"  agreement           {agree}/{n} predictions equal to the plaintext model's")
    print(f"  time                {seconds:.2f} s  ({seconds / n * 1e3:.1f} ms per image)")
    print("  party  rounds   MB sent   MB received   (dealer MB received)")
    for j in sorted(got):
        r, s, rcv, dlr, _ = (int(v) for v in got[j])
        role = {MODEL_OWNER: "model owner", DATA_OWNER: "data owner"}.get(j, "helper")
        print(f"  {j:>5}  {r:>6}  {s / 1e6:8.2f}  {rcv / 1e6:12.2f}   ({dlr / 1e6:.2f})   {role}")


if __name__ == "__main__":
    main()

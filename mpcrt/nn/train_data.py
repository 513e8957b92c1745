"""Training data held by several parties, the batch schedule, and the training loop.

Splits (every party calls the same function with its own part; None where it has none):

* horizontal(rt, rows, labels, num_classes): party i holds rows_i (and their labels).
  X = cat(share(rows_i, src=i)) along dim 0, Y likewise (one-hot, shared by the label's
  owner). Each party learns the others' row counts (the shapes), nothing else.
* vertical(rt, columns, labels, num_classes, label_owner): party i holds feature columns
  of the same rows (the same row order everywhere: an agreed id list); labels on one
  party. X = cat(share(cols_i, src=i)) along dim 1.

Batches: `schedule(n, batch_size, epoch, seed)` is a public permutation of the joint row
indices 0..n-1 (numpy's PCG64 from a public seed and the epoch), cut into batches. What it
reveals: which joint indices share a batch, so each party knows how many of its own rows
(and which of them) each batch holds; no value of any row, label or gradient. Hiding even
that would need an oblivious shuffle of the shared rows before training (not done here).

`fit` runs epochs of zero_grad / loss / backward / step over the schedule; per epoch it
reveals to every party only the mean training loss (one number) and, with a test set,
the number of correct test predictions (one number: the argmax one-hot of the logits
times the one-hot labels, summed under MPC).

Rounds, bytes, error: those of the model's layers, the loss and the optimiser.
Reference: docs/design.md, 'Training'.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from mpcrt.autograd import no_grad
from mpcrt.errors import ShapeError
from mpcrt.nn import functional as F
from mpcrt.protocols import ordering
from mpcrt.tensor import SharedTensor, cat

__all__ = ["horizontal", "vertical", "schedule", "fit", "correct_count"]


def _one_hot(labels, num_classes: int) -> np.ndarray | None:
    if labels is None:
        return None
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer) or (lab.size and (lab.min() < 0 or
                                                                                   lab.max() >= num_classes)):
        raise ShapeError(f"labels must be 1-d integers in 0..{num_classes - 1}")
    return np.eye(num_classes)[lab]


def horizontal(rt, rows, labels, num_classes: int) -> tuple[SharedTensor, SharedTensor]:
    """(X, Y) from every party's own rows and labels, stacked in rank order (Y one-hot)."""
    if (rows is None) != (labels is None) or (rows is not None and len(rows) != len(labels)):
        raise ShapeError(f"party {rt.rank}: pass rows and their labels together (the same number of each)")
    xs = [rt.share(np.asarray(rows, np.float64) if rt.rank == i else None, src=i) for i in range(rt.world_size)]
    ys = [rt.share(_one_hot(labels, num_classes) if rt.rank == i else None, src=i) for i in range(rt.world_size)]
    return cat(xs, dim=0), cat(ys, dim=0)


def vertical(rt, columns, labels, num_classes: int, label_owner: int = 0) -> tuple[SharedTensor, SharedTensor]:
    """(X, Y) from every party's own feature columns of the same rows; labels on `label_owner`."""
    if columns is None:
        raise ShapeError(f"party {rt.rank}: a vertical split needs this party's columns (an (n, k) array)")
    xs = [rt.share(np.asarray(columns, np.float64) if rt.rank == i else None, src=i) for i in range(rt.world_size)]
    if len({x.shape[0] for x in xs}) != 1:
        raise ShapeError(f"vertical split: the parties hold different row counts {[x.shape[0] for x in xs]}")
    y = rt.share(_one_hot(labels, num_classes) if rt.rank == label_owner else None, src=label_owner)
    return cat(xs, dim=1), y


def schedule(n: int, batch_size: int, epoch: int, seed: int = 0, drop_last: bool = False) -> list[np.ndarray]:
    """The public batch indices of one epoch: a permutation of 0..n-1 from (seed, epoch), cut in batches."""
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    cuts = range(0, n, batch_size)
    out = [order[i:i + batch_size] for i in cuts]
    return [b for b in out if len(b) == batch_size] if drop_last else out


def correct_count(model, x: SharedTensor, y: SharedTensor, batch_size: int = 256) -> int:
    """How many rows the model classifies right (argmax of the logits = the one-hot label),
    computed under MPC: only the count is revealed, to every party."""
    total = None
    was = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    with no_grad():
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i:i + batch_size])
            logits = SharedTensor(logits.rt, logits.share, logits.fbits).to_precision()
            pred = ordering.argmax(logits, dim=1, one_hot=True)  # 0/1, fractional bits 0
            hit = (pred * y[i:i + batch_size]).sum()
            total = hit if total is None else total + hit
    if hasattr(model, "train"):
        model.train(was)
    return int(round(float(total.reveal())))


def fit(model, opt, x: SharedTensor, y: SharedTensor, epochs: int, batch_size: int = 64, seed: int = 0,
        loss: Callable = F.cross_entropy, test: tuple | None = None, progress: bool = False,
        on_epoch: Callable[[dict], None] | None = None, show: int = 0, dp=None, dp_delta: float = 1e-5) -> list[dict]:
    """Train for `epochs` over the public schedule; return one dict per epoch (epoch, loss,
    test_acc or None, seconds, and epsilon with `dp`). progress: a tqdm bar on party `show`
    (plain lines without tqdm). dp: an mpcrt.dp.DPSGD wrapping `opt` (its steps replace
    the plain ones; loss is then summed per example)."""
    rt = x.rt
    history = []
    for ep in range(epochs):
        t0 = time.perf_counter()
        batches = schedule(x.shape[0], batch_size, ep, seed)
        bar = _bar(len(batches), f"epoch {ep + 1}/{epochs}") if progress and rt.rank == show else None
        total = None
        for idx in batches:
            if dp is not None:
                out = dp.step(lambda o, t: loss(o, t, reduction="sum"), x[idx], y[idx])
            else:
                opt.zero_grad()
                out = loss(model(x[idx]), y[idx])
                out.backward()
                opt.step()
            part = SharedTensor(rt, out.share, out.fbits) * float(len(idx))
            total = part if total is None else total + part
            if bar is not None:
                bar.update(1)
        row = {"epoch": ep + 1, "loss": float(total.reveal()) / x.shape[0], "test_acc": None}
        if test is not None:
            row["test_acc"] = correct_count(model, test[0], test[1]) / test[0].shape[0]
        if dp is not None:
            row["epsilon"] = dp.epsilon(dp_delta)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if bar is not None:
            extra = {} if row["test_acc"] is None else {"test_acc": f"{100 * row['test_acc']:.1f}%"}
            extra.update({"eps": f"{row['epsilon']:.2f}"} if "epsilon" in row else {})
            bar.set_postfix(loss=f"{row['loss']:.4f}", **extra)
            bar.close()
        elif progress and rt.rank == show:
            acc = "" if row["test_acc"] is None else f"  test accuracy {100 * row['test_acc']:.2f}%"
            acc += f"  epsilon {row['epsilon']:.2f}" if "epsilon" in row else ""
            print(f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}{acc}  ({row['seconds']:.1f} s)", flush=True)
        if on_epoch is not None:
            on_epoch(row)
    return history


class _Lines:
    """The tqdm subset fit() uses, as plain lines (no tqdm installed)."""

    def __init__(self, total: int, desc: str):
        self.desc = desc

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        print(self.desc, " ".join(f"{k} {v}" for k, v in kw.items()), flush=True)

    def close(self) -> None:
        pass


def _bar(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return _Lines(total, desc)
    return tqdm(total=total, desc=desc, unit="batch", leave=True)

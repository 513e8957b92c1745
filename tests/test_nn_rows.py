"""Batched inference cuts the input along dim 0 only where dim 0 is a batch (mpcrt.nn.rows).

A sequence-first transformer (batch_first=False: dim 0 is the sequence) or a model that
normalizes over dim 0 must run its whole input in one call; cut into batches it gave wrong
numbers and the wrong number of rows, silently. Also: `mpcrt infer --reveal label` on a
model without class scores is a clear error, not a numpy one.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn as tnn

import mpcrt.nn as mnn
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn.rows import ROWS_KEY, batch_rows, rows_independent


class SeqFirst(tnn.Module):
    """nn.TransformerEncoderLayer's default layout (seq, batch, feature), pooled over the sequence."""

    def __init__(self):
        super().__init__()
        self.enc = tnn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
        self.head = tnn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.enc(x).mean(dim=0))


class CenterRows(tnn.Module):
    def forward(self, x):
        return x - x.mean(dim=0, keepdim=True)


class FixedBatch(tnn.Module):
    def forward(self, x):
        return x.reshape(6) * 2  # runs on its 1-row example only


class Flattens(tnn.Module):
    def forward(self, x):
        return x.reshape(1, -1) * 2  # all rows into one: torch's answer is one row


def _trace(model, x):
    torch.manual_seed(0)
    return mnn.trace(model.eval(), x)


def test_rows_independent_tells_batch_from_sequence():
    mlp = tnn.Sequential(tnn.Linear(5, 7), tnn.ReLU(), tnn.BatchNorm1d(7), tnn.Linear(7, 2))
    torch.manual_seed(0)
    cases = {"mlp": (mlp, torch.rand(4, 5)), "seq": (SeqFirst(), torch.rand(6, 2, 8)),
             "center": (CenterRows(), torch.rand(3, 4)), "fixed": (FixedBatch(), torch.rand(1, 6)),
             "flat": (Flattens(), torch.rand(1, 6))}
    got = {k: rows_independent(*_trace(m, x)) for k, (m, x) in cases.items()}
    assert got == {"mlp": True, "seq": False, "center": False, "fixed": None, "flat": False}


def test_batch_rows_reads_the_public_mark():
    graph, arrays = _trace(CenterRows(), torch.rand(3, 4))
    assert batch_rows(graph, 2, 9) == 2  # unmarked (old archives): batches as before
    graph.meta[ROWS_KEY] = 0
    assert batch_rows(graph, 2, 9) == 9
    graph.meta[ROWS_KEY] = 1
    assert batch_rows(graph, 2, 9) == 2


def test_sequence_first_model_infers_like_torch_with_a_small_batch_size():
    """T = 7 > batch_size = 3: before, infer ran the sequence in cuts of 3 (three outputs of 2 rows)."""
    torch.manual_seed(3)
    model = SeqFirst().eval()
    x = torch.rand(7, 2, 8) * 2 - 1
    with torch.no_grad():
        ref = model(x).double().numpy()

    def prog(rt):
        pm = mnn.from_torch(model if rt.rank == 0 else None, x if rt.rank == 0 else None, src=0, rt=rt)
        return pm.graph.meta.get(ROWS_KEY), pm.infer(x.numpy() if rt.rank == 1 else None, data_owner=1, batch_size=3)

    (mark0, out0), (mark1, out1) = run_parties(prog, 2, timeout=60)
    assert mark0 == mark1 == 0  # the owner's finding reached the other party with the graph
    assert out0 is None and out1.shape == ref.shape == (2, 3)
    assert float(np.abs(out1 - ref).max()) < 5e-3


def test_reveal_label_needs_class_scores(cli, tmp_path):
    """A regression model (output (B,)) with --reveal label: a ShapeError that says what to use."""
    net = tnn.Sequential(tnn.Linear(4, 1), tnn.Flatten(0))
    mnn.save(net.eval(), torch.zeros(2, 4), str(tmp_path / "m.npz"))
    np.save(str(tmp_path / "x.npy"), np.random.default_rng(0).uniform(-1, 1, (5, 4)))
    r = cli.run_argv([sys.executable, "-m", "mpcrt.launch.infer", "-n", "2", "--model", str(tmp_path / "m.npz"),
                      "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npy"), "--reveal", "label"],
                     timeout=120)
    assert r.returncode != 0
    assert "--reveal label takes class scores along a dim after the batch" in r.output
    assert "use --reveal logits" in r.output and "dealer (exit" not in r.output
    assert "zero-dimensional" not in r.output and not (tmp_path / "o.npy").exists()


def test_tuple_output_refused_at_load(cli, tmp_path):
    """A model returning two tensors stops every party right after the import, before any inference round."""
    class Two(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(x)
            return y, y * 2

    mnn.save(Two().eval(), torch.zeros(2, 4), str(tmp_path / "m.npz"))
    np.save(str(tmp_path / "x.npy"), np.zeros((3, 4)))
    r = cli.run_argv([sys.executable, "-m", "mpcrt.launch.infer", "-n", "2", "--model", str(tmp_path / "m.npz"),
                      "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npy")], timeout=120)
    assert r.returncode != 0
    assert r.output.count("this one returns 2 values") >= 2  # both parties, from the public graph
    assert not (tmp_path / "o.npy").exists()

"""nn.Embedding on the model's input (mpcrt/nn/embedding.py): the data owner shares its token ids
one-hot, the lookup is a Linear with weight W^T.

Checked against torch: an Embedding + mean + Linear text classifier within the linear layers'
1e-3, an Embedding + LSTM one within the approximations' 2e-2, through the Python API
(encode_input + share, and infer) and `mpcrt infer`; bad ids are refused on the data owner
with the reason kept there; other Embedding uses are refused with what to do instead.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

import mpcrt.nn as mnn
from mpcrt.errors import ShapeError
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn import Graph, ModelImportError, UnsupportedLayerError
from mpcrt.nn.embedding import one_hot

VOCAB = 40


class BagOfWords(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 8, padding_idx=0)
        self.fc = nn.Linear(8, 3)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(1))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 6)
        self.rnn = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, ids):
        return self.fc(self.rnn(self.emb(ids.long()))[0][:, -1])


def _ids(n=3, t=7, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, VOCAB, size=(n, t)))


def test_graph_reads_one_hot_ids():
    graph, arrays = mnn.trace(BagOfWords(), _ids()[:1])
    assert graph.input_shape == [1, 7, VOCAB] and graph.meta["input_one_hot"] == VOCAB
    assert graph.op_counts()["linear"] == 2 and arrays[0].shape == (8, VOCAB)  # W^T
    d = graph.to_dict()
    d["meta"]["input_one_hot"] = VOCAB + 1  # a forged graph: V not the input's last dim
    with pytest.raises(ModelImportError, match="input_one_hot"):
        Graph.from_dict(d)


def _api(rt, model, ids):
    pm = mnn.from_torch(model if rt.rank == 0 else None, ids[:1] if rt.rank == 0 else None, src=0, rt=rt)
    x = rt.share(pm.encode_input(ids) if rt.rank == 1 else None, src=1)
    once = pm(x).reveal(to=1)
    whole = pm.infer(ids if rt.rank == 1 else None, data_owner=1, batch_size=2)
    return once, whole


@pytest.mark.parametrize("build,tol,n", [(BagOfWords, 1e-3, 2), (Recurrent, 2e-2, 3)])
def test_token_models_under_mpc_match_torch(build, tol, n):
    torch.manual_seed(1)
    model, ids = build().eval(), _ids()
    with torch.no_grad():
        ref = model(ids).double().numpy()
    once, whole = run_parties(_api, n, model, ids, timeout=180)[1]
    assert once.shape == ref.shape and whole.shape == ref.shape
    assert float(np.abs(once - ref).max()) <= tol and float(np.abs(whole - ref).max()) <= tol


def test_one_hot_refuses_ids_that_do_not_fit():
    assert one_hot(np.array([[0, 2]]), 3).tolist() == [[[1, 0, 0], [0, 0, 1]]]
    assert one_hot(np.array([1.0]), 2).tolist() == [[0, 1]]  # whole floats (a .npy of floats) are ids too
    for bad, match in ((np.array([3]), r"\[0, 3\)"), (np.array([-1]), r"\[0, 3\)"), (np.array([0.5]), "whole"),
                       (np.array(["a"]), "integers"), (np.array([np.nan]), "whole")):
        with pytest.raises(ShapeError, match=match):
            one_hot(bad, 3)
    with pytest.raises(ShapeError, match="fewer rows"):
        one_hot(np.zeros((1 << 14, 1 << 5), np.int64), 1 << 10)


class _Masked(nn.Module):  # the ids also make a mask: not only the embedding's
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 4)

    def forward(self, ids):
        return (self.emb(ids) * (ids != 0).unsqueeze(-1)).sum(1)


class _Late(nn.Module):  # the embedding is not on the model's input
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 4)

    def forward(self, ids):
        return self.emb(ids + 1)


def test_other_embedding_uses_say_what_to_do():
    for model in (_Masked(), _Late()):
        with pytest.raises(UnsupportedLayerError, match=r"first layer, on the model's input.*nn\.Linear\(40, 4"):
            mnn.trace(model, _ids()[:1])
    with pytest.raises(UnsupportedLayerError, match="max_norm"):
        mnn.trace(nn.Sequential(nn.Embedding(VOCAB, 4, max_norm=1.0)), _ids()[:1])


def test_mpcrt_infer_one_hot_on_the_data_owner(cli, tmp_path):
    torch.manual_seed(2)
    model, ids = BagOfWords().eval(), _ids(5, 6, seed=3)
    mnn.save(model, ids[:1], str(tmp_path / "m.npz"))
    np.save(tmp_path / "ids.npy", ids.numpy())
    with torch.no_grad():
        ref = model(ids).double().numpy()
    argv = [sys.executable, "-m", "mpcrt.launch.infer", "-n", 2, "--model", tmp_path / "m.npz", "--input"]
    r = cli.run_argv([*map(str, argv), str(tmp_path / "ids.npy"), "--output", str(tmp_path / "o.npy")], timeout=120)
    assert r.returncode == 0, r.output
    assert float(np.abs(np.load(tmp_path / "o.npy") - ref).max()) <= 1e-3
    np.save(tmp_path / "bad.npy", ids.numpy() + VOCAB)  # ids past the vocabulary
    r = cli.run_argv([*map(str, argv), str(tmp_path / "bad.npy"), "--output", str(tmp_path / "o2.npy")], timeout=120)
    assert r.returncode != 0 and not r.left
    owner = "\n".join(ln for ln in r.output.splitlines() if ln.startswith("[party 1]"))
    other = "\n".join(ln for ln in r.output.splitlines() if ln.startswith("[party 0]"))
    assert f"[0, {VOCAB})" in owner and f"[0, {VOCAB})" not in other
    assert "token ids do not fit" in other

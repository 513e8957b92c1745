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
APPROX_TOL = 2e-2


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
    with pytest.raises(UnsupportedLayerError, match=r"token ids .* also read at fx node 'ne'.*only their sizes"):
        mnn.trace(_Masked(), _ids()[:1])
    with pytest.raises(UnsupportedLayerError, match=r"first layer, on the model's input.*nn\.Linear\(40, 4"):
        mnn.trace(_Late(), _ids()[:1])
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


class _Block(nn.Module):
    """nanoGPT's causal self-attention block (mask buffer sliced by T), at toy size."""

    def __init__(self, d: int, t: int):
        super().__init__()
        self.ln1, self.qkv, self.proj, self.ln2 = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d)
        self.mlp, self.h = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)), 2
        self.register_buffer("bias", torch.tril(torch.ones(t, t)).view(1, 1, t, t))

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (q.view(b, t, self.h, c // self.h).transpose(1, 2), k.view(b, t, self.h, c // self.h).transpose(1, 2),
                   v.view(b, t, self.h, c // self.h).transpose(1, 2))
        att = (q @ k.transpose(-2, -1)) * (1.0 / k.size(-1) ** 0.5)
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Token and learned position embeddings (wpe(arange(t))), as nanoGPT; the last position's logits."""

    def __init__(self, t: int = 8, d: int = 16):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, d), nn.Embedding(t, d)
        self.block, self.ln, self.head = _Block(d, t), nn.LayerNorm(d), nn.Linear(d, VOCAB, bias=False)

    def forward(self, idx):
        b, t = idx.size()
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long))
        return self.head(self.ln(self.block(x)))[:, idx.size(-1) - 1, :]  # size(-1): the ids', not the one-hot's


class TinyBert(nn.Module):
    """Hugging Face's layout: positions from a position_ids buffer, the first token's output."""

    def __init__(self, t: int = 16, d: int = 8):
        super().__init__()
        self.word, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(t, d)
        self.register_buffer("position_ids", torch.arange(t).expand((1, -1)))
        self.enc, self.cls = nn.TransformerEncoderLayer(d, 2, 16, batch_first=True), nn.Linear(d, 2)

    def forward(self, ids):
        x = self.word(ids) + self.pos(self.position_ids[:, :ids.shape[1]])
        return self.cls(self.enc(x)[:, 0])


def _whole(rt, model, ids):
    pm = mnn.from_torch(model if rt.rank == 0 else None, ids[:1] if rt.rank == 0 else None, src=0, rt=rt)
    return pm.infer(ids if rt.rank == 1 else None, data_owner=1)


@pytest.mark.parametrize("build", [TinyGPT, TinyBert])
def test_position_embeddings_at_constant_positions_fold_into_parameters(build):
    torch.manual_seed(4)
    model, ids = build().eval(), _ids(3, 6, seed=5)
    graph, arrays = mnn.trace(model, ids[:1])
    assert graph.meta["input_one_hot"] == VOCAB
    consts = [p for p in graph.params if p["name"].endswith(":const")]  # the position rows, looked up at import
    assert len(consts) == 1 and consts[0]["shape"][-2:] == [6, model.pos.embedding_dim if build is TinyBert else 16]
    with torch.no_grad():
        ref = model(ids).double().numpy()
    got = run_parties(_whole, 2, model, ids, timeout=300)[1]
    assert float(np.abs(got - ref).max()) <= APPROX_TOL


class _Offsets(nn.Module):
    def forward(self, x):  # a float model: the offsets depend on a fixed size (dim 1), not on the values
        return x + torch.arange(0, x.size(1)).float() * 0.5


def test_input_free_tensors_fold_and_batch_sized_ones_do_not():
    graph, arrays = mnn.trace(_Offsets(), torch.zeros(1, 5))
    assert graph.op_counts().get("add") == 1 and arrays[0].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]

    class PerRow(nn.Module):
        def forward(self, x):  # depends on the batch size: not a constant
            return x + torch.arange(0, x.size(0)).float().unsqueeze(1)

    with pytest.raises(UnsupportedLayerError, match="arange"):
        mnn.trace(PerRow(), torch.zeros(2, 3))


def test_one_hot_sets_are_shared_a_batch_at_a_time(monkeypatch):
    """7 rows whose one-hot set is over the encoding cap run in batches of 2 under it."""
    import mpcrt.nn.embedding as emb

    torch.manual_seed(6)
    model, ids = BagOfWords().eval(), _ids(7, 5, seed=7)
    monkeypatch.setattr(emb, "MAX_ONE_HOT", 2 * 5 * VOCAB)  # two rows' one-hot, not seven
    with pytest.raises(ShapeError, match="fewer rows"):
        one_hot(ids.numpy(), VOCAB)
    with torch.no_grad():
        ref = model(ids).double().numpy()

    def run(rt):
        pm = mnn.from_torch(model if rt.rank == 0 else None, ids[:1] if rt.rank == 0 else None, src=0, rt=rt)
        return pm.infer(ids if rt.rank == 1 else None, data_owner=1, batch_size=2)

    got = run_parties(run, 2, timeout=120)[1]
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) <= 1e-3


class _PositionsOnly(nn.Module):
    """A vision model whose only embedding is positional: an integer (pixel) example is not token ids."""

    def __init__(self):
        super().__init__()
        self.conv, self.pos = nn.Conv2d(3, 4, 2, 2), nn.Embedding(4, 4)

    def forward(self, x):
        y = self.conv(x).flatten(2).transpose(1, 2)
        return y + self.pos(torch.arange(0, y.size(1)))


def test_integer_pixels_for_a_model_with_positional_embeddings_only():
    torch.manual_seed(8)
    model, x = _PositionsOnly().eval(), torch.randint(0, 255, (2, 3, 4, 4))
    graph, arrays = mnn.trace(model, x[:1])
    assert "input_one_hot" not in graph.meta and graph.input_shape == [1, 3, 4, 4]
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        ref = model(x.float()).double()
    assert got.shape == (2, 4, 4) and float((got - ref).abs().max()) < 1e-3

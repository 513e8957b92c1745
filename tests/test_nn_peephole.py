"""mpcrt/nn/peephole.py: the IR rewrites after tracing.

A hand-written RMSNorm (LLaMA's, T5's, x / sqrt(...)) imports as the rms_norm op: at |x| ~ 1e3
the written-out rsqrt loses precision (measured 3-4e-3 relative error under MPC), the fused op
keeps 6e-5; reductions over the batch dim or a non-trailing dim stay as written. Nodes no
output needs are dropped and references renumbered.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import mpcrt.nn as mnn
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn.peephole import drop_dead


class _RMS(nn.Module):
    def __init__(self, d: int, form: str):
        super().__init__()
        self.w, self.form = nn.Parameter(torch.rand(d) + 0.5), form

    def forward(self, x):
        if self.form == "llama":
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w
        if self.form == "hf":  # Hugging Face LlamaRMSNorm / T5LayerNorm
            v = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
            return self.w * (x * torch.rsqrt(v + 1e-6)).type_as(x)
        if self.form == "div":
            return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + 1e-5)
        if self.form == "square_left":
            return torch.rsqrt(torch.square(x).mean(-1, keepdim=True)) * x
        if self.form == "batch":  # the mean over the batch dim too: not a per-row norm
            return x * torch.rsqrt(x.pow(2).mean((-2, -1), keepdim=True))
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm over NCHW channels


class _Net(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.fc, self.norm, self.out = nn.Linear(16, 16), _RMS(16, form), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.norm(self.fc(x)))


def _infer(rt, model, x):
    pm = mnn.from_torch(model if rt.rank == 0 else None, x[:1] if rt.rank == 0 else None, src=0, rt=rt)
    xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
    return pm(xs).reveal(to=1)


@pytest.mark.parametrize("form,fused", [("llama", True), ("hf", True), ("div", True), ("square_left", True),
                                        ("batch", False)])
def test_hand_written_rms_norm_is_fused_and_precise_at_large_scale(form, fused):
    torch.manual_seed(0)
    model = _Net(form).eval()
    x = torch.randn(3, 16) * 1e3
    graph, _ = mnn.trace(model, x[:1])
    ops = graph.op_counts()
    assert ("rms_norm" in ops) == fused
    if fused:  # the written-out chain is gone, not computed beside the fused op
        assert not {"rsqrt", "sqrt", "pow", "mean"} & set(ops)
        with torch.no_grad():
            ref = model(x).double().numpy()
        got = run_parties(_infer, 2, model, x, timeout=120)[1]
        assert float(np.abs(got - ref).max() / np.abs(ref).max()) < 1e-3


def test_pixel_norm_over_channels_stays_as_written():
    graph, _ = mnn.trace(nn.Sequential(nn.Conv2d(3, 4, 1), _RMS(1, "pixel")), torch.randn(1, 3, 4, 4))
    assert "rms_norm" not in graph.op_counts() and graph.op_counts()["rsqrt"] == 1


def test_unused_tuple_parts_are_dropped():
    class Last(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    graph, _ = mnn.trace(Last(), torch.randn(1, 3, 3))
    names = [n["name"] for n in graph.nodes]
    assert not any(k.endswith(("h_n", "c_n")) for k in names)  # the final-state stacks no output reads


def test_drop_dead_renumbers_refs_in_lists_and_slices():
    nodes = [{"op": "input", "args": {}, "name": "x"},
             {"op": "neg", "args": {"input": {"ref": 0}}, "name": "dead"},
             {"op": "size", "args": {"input": {"ref": 0}, "dim": 1}, "name": "n"},
             {"op": "getitem", "args": {"input": {"ref": 0}, "index": [{"slice": [None, {"ref": 2}, None]}]},
              "name": "cut"},
             {"op": "cat", "args": {"tensors": [{"ref": 3}, {"ref": 3}], "dim": 0}, "name": "both"}]
    kept, out = drop_dead(nodes, {"ref": 4}, lambda n: n["op"] == "input")
    assert [n["name"] for n in kept] == ["x", "n", "cut", "both"] and out == {"ref": 3}
    assert kept[2]["args"]["index"] == [{"slice": [None, {"ref": 1}, None]}]
    assert kept[3]["args"]["tensors"] == [{"ref": 2}, {"ref": 2}]


class _ReadAfterInPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        h.add_(x)  # imported as h + x: the read below would see h before the change
        return h * 2


class _Noise(nn.Module):
    def forward(self, x):  # fresh on each call: not a constant to fold
        return x + 1e-5 * torch.rand(x.size(1))


def test_mutations_and_fresh_randomness_are_refused_not_frozen():
    with pytest.raises(mnn.UnsupportedLayerError, match=r"in-place \.add_\(\).*read again.*out of place"):
        mnn.trace(_ReadAfterInPlace(), torch.zeros(1, 4))  # a zero example would pass the self-check
    with pytest.raises(mnn.UnsupportedLayerError, match="torch.rand"):
        mnn.trace(_Noise(), torch.zeros(1, 3))


class _TextCnn(nn.Module):
    """Kim's CNN: a global max pool written with the sequence length, and a (logits, None) return."""

    def __init__(self):
        super().__init__()
        self.emb, self.conv, self.fc = nn.Embedding(30, 6), nn.Conv1d(6, 5, 3), nn.Linear(5, 2)

    def forward(self, ids):
        c = torch.relu(self.conv(self.emb(ids).permute(0, 2, 1)))
        mask = torch.triu(torch.ones((c.size(2), c.size(2))), 1).bool()  # a folded mask made boolean
        c = c + c.unsqueeze(2).masked_fill(mask, 0.0).sum(2) * 0.0
        return self.fc(nn.functional.max_pool1d(c, c.size(2)).squeeze(2)), None


def test_text_cnn_with_size_kernel_bool_mask_and_none_output():
    from mpcrt.nn.embedding import one_hot

    model = _TextCnn().eval()
    ids = torch.randint(0, 30, (3, 9))
    graph, arrays = mnn.trace(model, ids[:1])
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], torch.from_numpy(one_hot(ids.numpy(), 30)),
                            mnn.TorchOps())
        ref = model(ids)[0].double()
    assert got[1] is None and float((got[0] - ref).abs().max()) < 1e-5


class _ListIndex(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):  # nanoGPT's x[:, [-1], :]: literal positions, public
        y = self.fc(x)
        return y[:, [-1], :] + y[:, [0, 2], :].sum(1, keepdim=True)


def test_literal_list_indexing_imports_and_tensor_indexing_does_not():
    model, x = _ListIndex().eval(), torch.randn(2, 5, 4)
    graph, arrays = mnn.trace(model, x[:1])
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        ref = model(x).double()
    assert got.shape == (2, 1, 3) and float((got - ref).abs().max()) < 1e-5

    class ByTensor(nn.Module):
        def forward(self, x):
            return x[:, x[0, :, 0].argmax()]

    with pytest.raises(mnn.UnsupportedLayerError, match="advanced"):
        mnn.trace(ByTensor(), torch.randn(1, 5, 4))

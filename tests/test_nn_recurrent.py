"""nn.LSTM / nn.GRU / nn.RNN import (mpcrt/nn/recurrent.py), unrolled over the example's length.

The graph's plaintext replay (float64) must equal torch to float32 rounding for every
layer count, direction, layout, bias and output hypothesis draws (outputs, h_n, c_n);
under MPC the sigmoid/tanh approximations set the tolerance (2e-2, as for Sigmoid/Tanh
layers; measured 1.4e-4 .. 3.9e-4 on these models), and each weight is masked once
however many steps use it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import mpcrt.nn as mnn
from mpcrt.launch.inprocess import run_parties
from mpcrt.errors import ShapeError
from mpcrt.nn import UnsupportedLayerError

APPROX_TOL = 2e-2


class _Take(nn.Module):
    """The recurrent layer's output, or its final h (or the LSTM's c)."""

    def __init__(self, rnn: nn.Module, which: str):
        super().__init__()
        self.rnn, self.which = rnn, which

    def forward(self, x):
        out, state = self.rnn(x)
        if self.which == "out":
            return out
        if isinstance(self.rnn, nn.LSTM):
            return state[0] if self.which == "h" else state[1]
        return state


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]), layers=st.integers(1, 2), bidir=st.booleans(),
       batch_first=st.booleans(), bias=st.booleans(), which=st.sampled_from(["out", "h", "c"]), unbatched=st.booleans(),
       steps=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_recurrent_replay_equals_torch(kind, layers, bidir, batch_first, bias, which, unbatched, steps, seed):
    torch.manual_seed(seed)
    cls = nn.RNN if kind.startswith("RNN") else getattr(nn, kind)
    extra = {"nonlinearity": kind[4:].lower()} if cls is nn.RNN else {}
    rnn = cls(3, 4, num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias, **extra)
    which = "h" if which == "c" and kind != "LSTM" else which
    model = _Take(rnn, which).eval()
    if unbatched:
        x = torch.randn(steps, 3)
        example = x
    else:
        x = torch.randn(2, steps, 3) if batch_first else torch.randn(steps, 2, 3)
        example = x[:1] if batch_first else x[:, :1]
    graph, arrays = mnn.trace(model, example)
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        ref = model(x).double()
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-5
    # per layer (its directions side by side): W_ih, W_hh, the input-side bias, and the GRU's b_hn
    assert len(arrays) == layers * (2 + bias + (bias and kind == "GRU"))


class _Classifier(nn.Module):
    def __init__(self, kind: str, bidir: bool, **kw):
        super().__init__()
        self.rnn = getattr(nn, kind)(5, 8, num_layers=2, batch_first=True, bidirectional=bidir, **kw)
        self.fc = nn.Linear(8 * (2 if bidir else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _infer(rt, model, x):
    pm = mnn.from_torch(model if rt.rank == 0 else None, x[:1] if rt.rank == 0 else None, src=0, rt=rt)
    xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
    r0 = rt.stats()["rounds"]
    y = pm(xs).reveal(to=1)
    return y, pm.mask_weights(), rt.stats()["rounds"] - r0


@pytest.mark.parametrize("kind,bidir,n,kw", [("LSTM", True, 2, {}), ("GRU", False, 3, {}),
                                             ("RNN", False, 2, {"nonlinearity": "relu"})])
def test_recurrent_classifiers_under_mpc_match_torch(kind, bidir, n, kw):
    torch.manual_seed(7)
    model = _Classifier(kind, bidir, **kw).eval()
    x = torch.randn(3, 6, 5)
    with torch.no_grad():
        ref = model(x).double().numpy()
    got, masked, rounds = run_parties(_infer, n, model, x, timeout=300)[1]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= APPROX_TOL
    # one mask per weight tensor (W_ih, W_hh of each layer, both directions in one, and fc), not per step
    assert masked == 2 * 2 + 1


def test_a_bidirectional_layer_costs_one_directions_rounds():
    torch.manual_seed(8)
    x = torch.randn(2, 5, 5)
    rounds = [run_parties(_infer, 2, _Classifier("GRU", bidir).eval(), x, timeout=300)[1][2] for bidir in (False, True)]
    assert rounds[1] == rounds[0], rounds


class _WithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.register_buffer("h0", torch.zeros(1, 1, 4))

    def forward(self, x):
        return self.rnn(x, self.h0)[0]


@pytest.mark.filterwarnings("ignore:LSTM with projections")  # torch's own, from the example run
def test_recurrent_limits_say_what_to_write():
    with pytest.raises(UnsupportedLayerError, match=r"GRU.*initial state.*input only"):
        mnn.trace(_WithState(), torch.zeros(1, 2, 3))
    with pytest.raises(UnsupportedLayerError, match=r"proj_size=2"):
        mnn.trace(_Take(nn.LSTM(3, 4, proj_size=2, batch_first=True), "out"), torch.zeros(1, 2, 3))
    with pytest.raises(UnsupportedLayerError, match=r"LSTMCell.*nn\.LSTM"):
        mnn.trace(nn.Sequential(nn.LSTMCell(3, 4)), torch.zeros(1, 3))


class _SeqFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru, self.fc = nn.GRU(4, 8), nn.Linear(8, 2)

    def forward(self, x):  # x: (T, N, F)
        return self.fc(self.gru(x)[1][0])


def _call(rt, model, example, x):
    pm = mnn.from_torch(model if rt.rank == 0 else None, example if rt.rank == 0 else None, src=0, rt=rt)
    xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
    try:
        return pm(xs).reveal(to=1)
    except ShapeError as e:
        return str(e)


def test_time_along_the_input_dim_0_fixes_the_input_shape():
    """A sequence-first (or unbatched) model unrolls over the input's dim 0: that dim is no batch size.
    Traced on x[:1] (one step) it refuses a 6-step input instead of answering for 1 step."""
    torch.manual_seed(3)
    model, x = _SeqFirst().eval(), torch.randn(6, 2, 4)
    with torch.no_grad():
        ref = model(x).double().numpy()
    msg = run_parties(_call, 2, model, x[:1], x, timeout=120)[1]
    assert isinstance(msg, str) and "exactly the example's shape (1, 2, 4)" in msg and "batch_first" in msg
    got = run_parties(_call, 2, model, x, x, timeout=120)[1]
    assert float(np.abs(got - ref).max()) <= APPROX_TOL
    graph, _ = mnn.trace(_Take(nn.LSTM(3, 4), "out"), torch.randn(5, 3))  # unbatched (T, F)
    assert graph.meta.get("input_fixed")
    graph, _ = mnn.trace(_Take(nn.LSTM(3, 4, batch_first=True), "out"), torch.randn(1, 5, 3))
    assert "input_fixed" not in graph.meta  # batch first: dim 0 stays free


class _ZeroState(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.lstm, self.gru = nn.LSTM(3, 8, 2, batch_first=True), nn.GRU(3, 8, batch_first=True)

    def forward(self, x):
        if self.form == "zeros":  # the tutorials' idiom
            h0 = torch.zeros(2, x.size(0), 8).to(x.device)
            c0 = torch.zeros(2, x.size(0), 8)
            return self.lstm(x, (h0, c0))[0][:, -1]
        if self.form == "none":
            return self.gru(x, None)[0]
        return self.gru(input=x)[1]


@pytest.mark.parametrize("form", ["zeros", "none", "keyword"])
def test_zero_initial_states_import_as_no_state(form):
    model, x = _ZeroState(form).eval(), torch.randn(2, 4, 3)
    graph, arrays = mnn.trace(model, x[:1])
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        ref = model(x).double()
    assert float((got - ref).abs().max()) < 1e-5
    assert "size" not in graph.op_counts()  # x.size(0) fed only the zeros: nothing of it is left


def test_packed_sequences_and_bare_layers():
    from torch.nn.utils.rnn import pack_padded_sequence

    x = torch.randn(1, 4, 3)
    with pytest.raises(UnsupportedLayerError, match="Packed sequences .* pass the padded batch"):
        mnn.trace(nn.Sequential(nn.Identity()), pack_padded_sequence(x, torch.tensor([4]), batch_first=True))
    graph, _ = mnn.trace(nn.LSTM(3, 4, batch_first=True), x)  # the layer itself as the model
    assert isinstance(graph.output, list) and len(graph.output) == 2


def _infer_batched(rt, model, x):
    pm = mnn.from_torch(model if rt.rank == 0 else None, x if rt.rank == 0 else None, src=0, rt=rt)
    return pm.infer(x if rt.rank == 1 else None, data_owner=1, batch_size=2)


def test_infer_never_cuts_a_fixed_input_along_time():
    """A sequence-first model's dim 0 is time: infer() runs it whole whatever batch_size says."""
    torch.manual_seed(5)
    model, x = _SeqFirst().eval(), torch.randn(7, 2, 4)
    with torch.no_grad():
        ref = model(x).double().numpy()
    got = run_parties(_infer_batched, 2, model, x, timeout=120)[1]
    assert float(np.abs(got - ref).max()) <= APPROX_TOL

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
    directions = 2 if bidir else 1
    # per layer and direction: W_ih, W_hh, the input-side bias, and the GRU's b_hn
    assert len(arrays) == layers * directions * (2 + bias + (bias and kind == "GRU"))


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
    return pm(xs).reveal(to=1), pm.mask_weights()


@pytest.mark.parametrize("kind,bidir,n,kw", [("LSTM", True, 2, {}), ("GRU", False, 3, {}),
                                             ("RNN", False, 2, {"nonlinearity": "relu"})])
def test_recurrent_classifiers_under_mpc_match_torch(kind, bidir, n, kw):
    torch.manual_seed(7)
    model = _Classifier(kind, bidir, **kw).eval()
    x = torch.randn(3, 6, 5)
    with torch.no_grad():
        ref = model(x).double().numpy()
    got, masked = run_parties(_infer, n, model, x, timeout=300)[1]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= APPROX_TOL
    # one mask per weight tensor (W_ih, W_hh of each layer and direction, and fc), not per step
    assert masked == 2 * 2 * (2 if bidir else 1) + 1


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

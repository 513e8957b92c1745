"""nn.ConvTranspose1d/2d import (mpcrt/nn/conv_transpose.py): one ordinary conv2d of the
unexpanded input and a pixel shuffle, against torch.

The graph's plaintext replay (float64) must equal torch to float32 rounding for every
stride, padding, output_padding, kernel size and group count hypothesis draws; under MPC
(2 and 3 parties) a DCGAN-style generator and a 1-d decoder stay within the linear
layers' 1e-3 (measured 2e-5 .. 3e-4).
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
from mpcrt.nn.conv_transpose import stacked_weight

LINEAR_TOL = 1e-3


def _replay(model, x):
    graph, arrays = mnn.trace(model, x[:1])
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        ref = model(x).double()
    return graph, arrays, got, ref


@settings(max_examples=80, deadline=None)
@given(groups=st.integers(1, 3), cin_g=st.integers(1, 2), cout_g=st.integers(1, 3), kh=st.integers(1, 5),
       kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       oph=st.integers(0, 2), opw=st.integers(0, 2), h=st.integers(1, 5), w=st.integers(1, 5), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_conv_transpose2d_replay_equals_torch(groups, cin_g, cout_g, kh, kw, sh, sw, ph, pw, oph, opw, h, w, bias,
                                               seed):
    oph, opw = oph % sh, opw % sw  # torch: output_padding < stride
    outs = [(i - 1) * s - 2 * p + k + op for i, s, p, k, op in ((h, sh, ph, kh, oph), (w, sw, pw, kw, opw))]
    if min(outs) <= 0:
        return  # torch refuses these shapes too
    torch.manual_seed(seed)
    model = nn.Sequential(nn.ConvTranspose2d(groups * cin_g, groups * cout_g, (kh, kw), (sh, sw), (ph, pw), (oph, opw),
                                             groups=groups, bias=bias))
    graph, arrays, got, ref = _replay(model, torch.randn(2, groups * cin_g, h, w))
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-5
    counts = graph.op_counts()
    assert counts["conv2d"] == 1 and counts["param"] == 1 + bias
    jh, jw = -(-kh // sh), -(-kw // sw)  # the stacked weight: s_h s_w phases of ceil(k / s) taps
    assert arrays[0].shape == (sh * sw * groups * cout_g, cin_g, jh, jw)


@pytest.mark.parametrize("k,s,p,op,g", [(3, 2, 1, 1, 1), (4, 2, 1, 0, 2), (5, 3, 2, 2, 1), (1, 1, 0, 0, 2)])
def test_conv_transpose1d_replay_equals_torch(k, s, p, op, g):
    torch.manual_seed(k)
    model = nn.Sequential(nn.ConvTranspose1d(2 * g, 3 * g, k, stride=s, padding=p, output_padding=op, groups=g))
    for length in (1, 4, 7):
        _, _, got, ref = _replay(model, torch.randn(2, 2 * g, length))
        assert got.shape == ref.shape
        assert float((got - ref).abs().max()) < 1e-5


def test_stacked_weight_holds_each_phase_flipped():
    """Phase (rh, rw), tap (m_h, m_w) of the conv2d weight is w[ci, co, rh + (J_h - 1 - m_h) s_h, ...]."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 5, 3))  # C_in 4, C_out / g 3, groups 2
    v, b, (jh, jw) = stacked_weight(w, np.arange(6.0), (2, 3), 2)
    assert (jh, jw) == (3, 1) and v.shape == (2 * 2 * 3 * 3, 2, 3, 1)
    for gi in range(2):
        for rh in range(2):
            for rw in range(3):
                for co in range(3):
                    row = ((gi * 2 + rh) * 3 + rw) * 3 + co
                    assert b[row] == gi * 3 + co
                    for ci in range(2):
                        for mh in range(jh):
                            th, tw = rh + (jh - 1 - mh) * 2, rw
                            want = w[gi * 2 + ci, co, th, tw] if th < 5 and tw < 3 else 0.0
                            assert v[row, ci, mh, 0] == want


def test_batchnorm_after_conv_transpose_folds_into_it():
    torch.manual_seed(3)
    for groups in (1, 2):
        model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=groups),
                              nn.BatchNorm2d(6), nn.ReLU()).eval()
        bn = model[1]
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.3, 3), bn.weight.data.uniform_(0.5, 2)
        graph, _, got, ref = _replay(model, torch.randn(2, 4, 5, 3))
        assert "affine" not in graph.op_counts()
        assert float((got - ref).abs().max()) < 1e-5


def test_dilated_conv_transpose_is_refused_with_a_replacement():
    with pytest.raises(UnsupportedLayerError, match=r"ConvTranspose2d.*dilation=\(2, 2\).*nn\.Upsample"):
        mnn.trace(nn.Sequential(nn.ConvTranspose2d(2, 2, 3, dilation=2)), torch.zeros(1, 2, 4, 4))


class _FunctionalTransposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, 3, 2, 2))

    def forward(self, x):
        return torch.nn.functional.conv_transpose2d(x, self.w, stride=2)


def test_functional_conv_transpose_names_the_module():
    with pytest.raises(UnsupportedLayerError, match=r"conv_transpose2d.*use nn\.ConvTranspose2d"):
        mnn.trace(_FunctionalTransposed(), torch.zeros(1, 2, 4, 4))


def _generator():
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=False), nn.Tanh()).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2)
    return net


def _decoder_1d():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(),
                         nn.ConvTranspose1d(4, 4, 5, stride=3, padding=2, output_padding=1, groups=2)).eval()


def _infer(rt, model, x):
    pm = mnn.from_torch(model if rt.rank == 0 else None, x[:1] if rt.rank == 0 else None, src=0, rt=rt)
    xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
    return pm(xs).reveal(to=1)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("build,x,tol", [(_generator, torch.randn(2, 8, 1, 1), 2e-2),
                                         (_decoder_1d, torch.randn(2, 3, 9), LINEAR_TOL)])
def test_conv_transpose_models_under_mpc_match_torch(n, build, x, tol):
    model = build()
    with torch.no_grad():
        ref = model(x).double().numpy()
    got = run_parties(_infer, n, model, x, timeout=120)[1]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= tol


class _Sized(nn.Module):
    """The UNet idiom for odd sizes: the up-convolution told the size to produce."""

    def __init__(self, one_d: bool):
        super().__init__()
        conv, up = (nn.Conv1d, nn.ConvTranspose1d) if one_d else (nn.Conv2d, nn.ConvTranspose2d)
        self.one_d, self.down, self.up = one_d, conv(3, 4, 3, 2, 1), up(4, 3, 3, 2, 1)

    def forward(self, x):
        return self.up(self.down(x), [x.shape[-1]]) if self.one_d else self.up(self.down(x), output_size=x.size())


_DECODERS = [(_Sized(False), torch.randn(2, 3, 8, 7)), (_Sized(True), torch.randn(2, 3, 10)),
             (nn.ConvTranspose2d(3, 2, 4, 2, 1), torch.randn(2, 3, 4, 4)),
             (nn.Sequential(nn.Conv2d(3, 12, 1), nn.PixelShuffle(2)), torch.randn(2, 3, 4, 5)),
             (nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, 2, 1)), torch.randn(2, 3, 4, 6)),
             (nn.Sequential(nn.Linear(4, 24), nn.Unflatten(-1, (2, -1, 3))), torch.randn(3, 4))]


@pytest.mark.parametrize("model,x", _DECODERS)
def test_decoder_layers_replay_equal_torch(model, x):
    """output_size= (the output_padding it implies), a bare layer as the model, PixelShuffle/Unshuffle, Unflatten."""
    _, _, got, ref = _replay(model.eval(), x)
    assert got.shape == ref.shape and float((got - ref).abs().max()) < 1e-5

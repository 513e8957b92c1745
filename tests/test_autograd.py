"""Gradients of every trainable layer and loss under MPC against torch autograd.

Random inputs and shapes (hypothesis, small), 2 parties over the in-memory transport, at 16
and 20 fractional bits. Each check computes y = layer(inputs), backpropagates a random
public upstream gradient g (as sum(y * g)) and compares the forward value and every
input's gradient with torch (float64).

Stated bounds (absolute, inputs ~ N(0, 1)): ulp = 2^-f.
* linear, conv2d (any stride/padding/dilation/groups), pooling, relu, reshape/add/mul:
  256 ulp (1/256 at f = 16, 2.4e-4 at f = 20): products truncate once per backward
  product and sums of up to ~50 terms carry that.
* sigmoid, tanh: 1.5e-3 (the approximations' 4e-4 times |g| <= 3); batch_norm 4e-3
  (rsqrt's relative 1e-3 times |xhat g| sums).
* cross_entropy, bce: value 1e-2 (log's 3.5e-4 plus the rest), gradient 2e-3 + 256 ulp; mse: value relative
  1e-4 (the public 1/n keeps 13 significant bits), gradient 2e-3 + 256 ulp.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import mpcrt.nn.functional as F
from mpcrt.autograd import NoBackwardError, Variable, no_grad
from mpcrt.launch.inprocess import run_parties

PRECISIONS = [16, 20]
FAST = settings(max_examples=4, deadline=None)


def _check(prec: int, mpc_fn, torch_fn, arrays, tol_fwd: float, tol_grad: float, n: int = 2):
    rng = np.random.default_rng(len(arrays) + sum(a.size for a in arrays))
    out_shape = tuple(torch_fn(*[torch.tensor(a) for a in arrays]).shape)
    g = rng.normal(size=out_shape)

    def party(rt):
        vs = [Variable(rt.share(a if rt.rank == 0 else None, src=0), requires_grad=True) for a in arrays]
        y = mpc_fn(*vs)
        (y * g).sum().backward()
        return y.reveal(), [v.grad.reveal() for v in vs]

    y, grads = run_parties(party, n, precision=prec)[0]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = torch_fn(*ts)
    (yt * torch.tensor(g)).sum().backward()
    assert np.abs(y - yt.detach().numpy()).max() <= tol_fwd
    for i, (gm, t) in enumerate(zip(grads, ts)):
        err = np.abs(gm - t.grad.numpy()).max()
        assert err <= tol_grad, f"input {i}: gradient error {err:.3g} > {tol_grad:.3g}"


def _ulps(prec: int, k: int = 256) -> float:
    return k * 2.0 ** -prec


def _normal(seed: int, *shape) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("prec", PRECISIONS)
@FAST
@given(b=st.integers(1, 4), i=st.integers(1, 6), o=st.integers(1, 5), seed=st.integers(0, 99))
def test_linear(prec, b, i, o, seed):
    arrays = [_normal(seed, b, i), _normal(seed + 1, o, i), _normal(seed + 2, o)]
    _check(prec, F.linear, TF.linear, arrays, _ulps(prec), _ulps(prec))


@pytest.mark.parametrize("prec", PRECISIONS)
@FAST
@given(cin=st.sampled_from([1, 2, 4]), k=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 2),
       dil=st.integers(1, 2), groups=st.sampled_from([1, 2]), h=st.integers(5, 8), seed=st.integers(0, 99))
def test_conv2d(prec, cin, k, stride, pad, dil, groups, h, seed):
    groups = groups if cin % groups == 0 else 1
    cout = 2 * groups
    arrays = [_normal(seed, 2, cin, h, h + 1), _normal(seed + 1, cout, cin // groups, k, k), _normal(seed + 2, cout)]

    def mpc(x, w, b):
        return F.conv2d(x, w, b, stride, pad, dil, groups)

    def ref(x, w, b):
        return TF.conv2d(x, w, b, stride, pad, dil, groups)

    _check(prec, mpc, ref, arrays, _ulps(prec), _ulps(prec))


@pytest.mark.parametrize("prec", PRECISIONS)
@FAST
@given(k=st.integers(2, 3), stride=st.integers(1, 2), pad=st.integers(0, 1), ceil=st.booleans(),
       seed=st.integers(0, 99))
def test_max_pool2d(prec, k, stride, pad, ceil, seed):
    x = _normal(seed, 2, 2, 6, 7)
    x[0, 0, :2, :2] = 0.0  # ties (as after a relu): the gradient goes to the first, as torch's
    _check(prec, lambda v: F.max_pool2d(v, k, stride, pad, 1, ceil),
           lambda v: TF.max_pool2d(v, k, stride, pad, 1, ceil), [x], _ulps(prec, 4), _ulps(prec, 4))


@pytest.mark.parametrize("prec", PRECISIONS)
@FAST
@given(k=st.integers(2, 3), stride=st.integers(1, 2), pad=st.integers(0, 1), include=st.booleans(),
       seed=st.integers(0, 99))
def test_avg_pool2d(prec, k, stride, pad, include, seed):
    _check(prec, lambda v: F.avg_pool2d(v, k, stride, pad, False, include),
           lambda v: TF.avg_pool2d(v, k, stride, pad, False, include), [_normal(seed, 2, 2, 6, 7)],
           _ulps(prec), _ulps(prec))


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("size", [1, (2, 3), (3, 2)])
def test_adaptive_avg_pool2d(prec, size):
    _check(prec, lambda v: F.adaptive_avg_pool2d(v, size), lambda v: TF.adaptive_avg_pool2d(v, size),
           [_normal(3, 2, 2, 7, 6)], _ulps(prec), _ulps(prec))


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_elementwise(prec, name):
    x = _normal(5, 40) * 3
    tol = _ulps(prec, 4) if name == "relu" else 1.5e-3
    _check(prec, getattr(F, name), getattr(torch, name), [x], tol, tol)


@pytest.mark.parametrize("prec", PRECISIONS)
def test_shape_ops_and_residual(prec):
    """flatten, reshape, transpose, indexing, cat, a residual add and a product of two shared tensors."""
    from mpcrt.autograd import cat

    def mpc(a, b):
        h = a.relu() + a  # residual
        z = cat([h.flatten(1), (a * b).reshape(2, -1)], dim=1)
        return z.transpose(0, 1)[1:5] * 0.5 - b.sum()

    def ref(a, b):
        h = a.relu() + a
        z = torch.cat([h.flatten(1), (a * b).reshape(2, -1)], dim=1)
        return z.transpose(0, 1)[1:5] * 0.5 - b.sum()

    _check(prec, mpc, ref, [_normal(1, 2, 3, 2), _normal(2, 2, 3, 2)], _ulps(prec), _ulps(prec))


@pytest.mark.parametrize("prec", PRECISIONS)
def test_batch_norm_training(prec):
    arrays = [_normal(4, 4, 3, 3, 3) * 2 + 1, _normal(5, 3), _normal(6, 3)]
    _check(prec, lambda x, w, b: F.batch_norm(x, w, b), lambda x, w, b: TF.batch_norm(x, None, None, w, b, True),
           arrays, 4e-3, 4e-3)


def _loss_check(prec, kind):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 5)) * 4
    x[0, 1] = 60.0  # a large logit: softmax subtracts the max
    lab = rng.integers(0, 5, 6)
    y01 = np.round(rng.random((6, 5)))
    p = rng.random((6, 5)) * 0.9 + 0.05

    def party(rt):
        v = Variable(rt.share((p if kind == "bce" else x) if rt.rank == 0 else None, src=0), requires_grad=True)
        if kind == "ce_indices":
            out = F.cross_entropy(v, rt.share(lab if rt.rank == 1 else None, src=1, precision=0))
        elif kind == "ce_onehot":
            out = F.cross_entropy(v, rt.share(np.eye(5)[lab] if rt.rank == 1 else None, src=1))
        elif kind == "ce_public":
            out = F.cross_entropy(v, lab)
        elif kind == "mse":
            out = F.mse_loss(v, rt.share(y01 if rt.rank == 1 else None, src=1))
        elif kind == "bce":
            out = F.binary_cross_entropy(v, rt.share(y01 if rt.rank == 1 else None, src=1))
        else:
            out = F.binary_cross_entropy_with_logits(v, rt.share(y01 if rt.rank == 1 else None, src=1))
        out.backward()
        return out.reveal(), v.grad.reveal()

    val, grad = run_parties(party, 2, precision=prec)[0]
    t = torch.tensor(p if kind == "bce" else x, requires_grad=True)
    ref = {"mse": lambda: TF.mse_loss(t, torch.tensor(y01)),
           "bce": lambda: TF.binary_cross_entropy(t, torch.tensor(y01)),
           "bcel": lambda: TF.binary_cross_entropy_with_logits(t, torch.tensor(y01))}.get(
        kind, lambda: TF.cross_entropy(t, torch.tensor(lab)))()
    ref.backward()
    return abs(val - ref.item()) / max(1.0, abs(ref.item())), np.abs(grad - t.grad.numpy()).max()


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("kind", ["ce_indices", "ce_onehot", "ce_public", "mse", "bce", "bcel"])
def test_losses(prec, kind):
    dv, dg = _loss_check(prec, kind)  # dv relative to max(1, |loss|)
    assert dv <= (1e-2 if kind != "mse" else 1e-4)  # log's 3.5e-4 and the rest; mse: 1/n keeps 13 significant bits
    assert dg <= 2e-3 + _ulps(prec)


def test_relu_backward_reuses_the_forward_bit():
    """relu's backward is one Beaver product: no comparison (no ltz scope) after the forward."""
    def party(rt):
        x = Variable(rt.share(_normal(0, 64) if rt.rank == 0 else None, src=0), requires_grad=True)
        y = x.relu()
        before = rt.stats()
        y.sum().backward()
        after = rt.stats()
        return before, after

    before, after = run_parties(party, 2)[0]
    rounds = after["rounds"] - before["rounds"]
    assert rounds <= 1, f"relu backward took {rounds} rounds"


def test_no_backward_refuses_clearly():
    def party(rt):
        x = Variable(rt.share(np.ones(3) if rt.rank == 0 else None, src=0), requires_grad=True)
        with pytest.raises(NoBackwardError, match="softmax"):
            x.softmax(0)
        with no_grad():
            x.softmax(0)  # fine without the tape
        with pytest.raises(NoBackwardError, match="does not require"):
            Variable(x.detach()[:1]).backward()
        return True

    assert all(run_parties(party, 2))


def test_dropout_mask_is_random_and_backward_uses_it():
    def party(rt):
        x = Variable(rt.share(np.ones((50, 40)) if rt.rank == 0 else None, src=0), requires_grad=True)
        y = F.dropout(x, 0.25)
        y.sum().backward()
        return y.reveal(), x.grad.reveal()

    y, g = run_parties(party, 3)[0]
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85  # 1 - p = 0.75, 2000 draws
    np.testing.assert_allclose(y[kept], 1 / 0.75, atol=1e-4)
    np.testing.assert_array_equal(g != 0, kept)

"""Private training end to end: models, optimisers, data splits, failures, the `mpcrt train` command.

Stated distances (20 fractional bits, float64 torch from the same initial weights and
batches): SGD variants after 3 steps within 1e-4; Adam within 2e-3 (rsqrt's 1e-3 relative
on steps of lr). Networks with ReLUs: a ReLU input within the fixed-point error (~1e-5)
of 0 can take the other branch, and then its whole gradient passes where torch's is 0 (or
the reverse): after BatchNorm, whose outputs crowd around 0, about one run in five
flips one such element in 3 steps (5 runs of 25, measured), moving a channel's weights
by ~5e-3 (L2 1e-2). So: each tensor within L2 2e-2 |w| + 1e-3 of torch's and max abs
2e-2; an MLP after 2 epochs of SGD with momentum within 1e-2 max abs.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as TF

import mpcrt.nn as mnn
import mpcrt.nn.functional as F
from mpcrt import optim
from mpcrt.autograd import Variable
from mpcrt.errors import PeerFailure
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn import train_data
from mpcrt.nn.ir import UnsupportedLayerError
from mpcrt.optim import RangeOverflowError


def _digits(rows: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:rows] / 16.0)[:, None], d.target[:rows]


def _torch_train(net, x, y, sched, make_opt, loss=TF.cross_entropy):
    net = net.double()
    opt = make_opt(net.parameters())
    for batches in sched:
        for idx in batches:
            opt.zero_grad()
            loss(net(torch.tensor(x[idx])), torch.tensor(y[idx])).backward()
            opt.step()
    return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def test_mlp_training_matches_plaintext_float():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    x, y = _digits(96)
    n, epochs, bs = 3, 2, 32

    def party(rt):
        me = rt.rank
        X, Y = train_data.horizontal(rt, x[me::n], y[me::n], 10)
        model = mnn.from_torch(copy.deepcopy(net) if me == 0 else None, torch.zeros(1, 1, 8, 8), src=0, train=True,
                               rt=rt)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        hist = train_data.fit(model, opt, X, Y, epochs, bs, seed=3)
        return hist, model.reveal_state_dict(to=0)

    outs = run_parties(party, n, precision=20)
    hist, state = outs[0]
    assert all(o[1] is None for o in outs[1:])  # revealed to party 0 only
    order = np.concatenate([np.arange(len(x))[i::n] for i in range(n)])
    sched = [train_data.schedule(len(x), bs, ep, 3) for ep in range(epochs)]
    ref = _torch_train(copy.deepcopy(net), x[order], y[order], sched,
                       lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    assert set(state) == set(ref)
    dist = max(np.abs(state[k] - ref[k]).max() for k in ref)
    assert dist < 1e-2, dist
    assert hist[-1]["loss"] < hist[0]["loss"]


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov_wd", "adam"])
def test_optimisers_match_torch(kind):
    rng = np.random.default_rng(1)
    w0, x, y = rng.normal(size=(3, 4)) * 0.5, rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    make = {
        "sgd": (lambda p: optim.SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
        "momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1)),
        "nesterov_wd": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
        "adam": (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    }[kind]

    def party(rt):
        w = Variable(rt.share(w0 if rt.rank == 0 else None, src=0), requires_grad=True)
        X, Y = rt.share(x if rt.rank == 1 else None, src=1), rt.share(y if rt.rank == 1 else None, src=1)
        opt = make[0]([w])
        for _ in range(3):
            opt.zero_grad()
            F.mse_loss(X @ w.T, Y).backward()
            opt.step()
        return w.reveal()

    got = run_parties(party, 2, precision=20)[0]
    wt = torch.tensor(w0, requires_grad=True)
    opt = make[1]([wt])
    for _ in range(3):
        opt.zero_grad()
        TF.mse_loss(torch.tensor(x) @ wt.T, torch.tensor(y)).backward()
        opt.step()
    assert np.abs(got - wt.detach().numpy()).max() < (2e-3 if kind == "adam" else 1e-4)


class _ConvBN(nn.Module):
    def __init__(self, drop: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1)))


def test_batchnorm_net_trains_like_torch_and_round_trips():
    torch.manual_seed(1)
    net = _ConvBN()
    with torch.no_grad():
        net.bn.running_mean.fill_(0.5)  # the real running statistics travel with the weights
    x, y = _digits(24)
    sched = [[np.arange(i, i + 8) for i in range(0, 24, 8)]]

    def party(rt):
        X = rt.share(x if rt.rank == 0 else None, src=0)
        model = mnn.from_torch(copy.deepcopy(net) if rt.rank == 0 else None, torch.zeros(1, 1, 8, 8), src=0,
                               train=True, rt=rt)
        opt = optim.SGD(model.parameters(), lr=0.1)
        for idx in sched[0]:
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        evals = model(X[:4]).reveal()
        return model.reveal_state_dict(to=0), evals, model.to_torch(), [n for n, _ in model.named_parameters()]

    state, evals, back, names = run_parties(party, 2, precision=20)[0]
    ref_net = copy.deepcopy(net).double()
    ref = _torch_train(ref_net, x, y, sched, lambda p: torch.optim.SGD(p, lr=0.1))
    assert "bn.weight" in names and "bn.running_var" in state
    for k in ref:
        if k.endswith("num_batches_tracked"):
            continue
        assert np.abs(state[k] - ref[k]).max() < 2e-2, k
        assert np.linalg.norm(state[k] - ref[k]) <= 2e-2 * np.linalg.norm(ref[k]) + 1e-3, k
    ref_net.eval()
    assert np.abs(evals - ref_net(torch.tensor(x[:4])).detach().numpy()).max() < 5e-3
    assert np.abs(back.fc.weight.detach().double().numpy() - state["fc.weight"]).max() < 1e-6


def test_dropout_trains_and_is_identity_in_eval():
    torch.manual_seed(2)
    x, y = _digits(16)

    def party(rt):
        X = rt.share(x if rt.rank == 0 else None, src=0)
        model = mnn.from_torch(_ConvBN(0.5) if rt.rank == 0 else None, torch.zeros(1, 1, 8, 8), src=0, train=True,
                               rt=rt)
        opt = optim.SGD(model.parameters(), lr=0.05)
        F.cross_entropy(model(X), y).backward()
        opt.step()
        model.eval()
        a, b = model(X[:2]).reveal(), model(X[:2]).reveal()
        return a, b

    a, b = run_parties(party, 2, precision=20)[0]
    assert np.abs(a - b).max() < 1e-3  # no dropout in eval mode: the same outputs


def test_a_layer_without_backward_is_named_on_every_party():
    net = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))

    def party(rt):
        try:
            mnn.from_torch(net if rt.rank == 0 else None, torch.zeros(1, 4), src=0, train=True, rt=rt)
        except (UnsupportedLayerError, mnn.ModelImportError) as e:
            return str(e)
        return "imported"

    for msg in run_parties(party, 3):
        assert "gelu" in msg and "no backward" in msg and "'1'" in msg


def test_learning_rate_overflow_is_detected():
    def party(rt, lr):
        w = Variable(rt.share(np.full((4, 4), 0.5) if rt.rank == 0 else None, src=0), requires_grad=True)
        x = rt.share(np.ones((2, 4)) if rt.rank == 0 else None, src=0)
        opt = optim.SGD([w], lr=lr)
        (x @ w).sum().backward()
        opt.step()
        return "stepped"

    with pytest.raises(RangeOverflowError, match="lower the learning rate"):
        run_parties(party, 2, 2.0 ** 30, precision=20)  # refused before any step: lr * grad cannot fit
    with pytest.raises(RangeOverflowError, match="step 1: 16 parameter"):
        run_parties(party, 2, 1e5, precision=20)  # the step sends every weight to ~2e5
    assert run_parties(party, 2, 0.1, precision=20) == ["stepped", "stepped"]


def test_a_party_dying_mid_epoch_is_peer_failure_without_hang():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    x, y = _digits(48)

    def party(rt):
        X, Y = train_data.horizontal(rt, x[rt.rank::3], y[rt.rank::3], 10)
        model = mnn.from_torch(net if rt.rank == 0 else None, torch.zeros(1, 1, 8, 8), src=0, train=True, rt=rt)
        opt = optim.SGD(model.parameters(), lr=0.1)
        t0 = time.monotonic()
        try:
            for i, idx in enumerate(train_data.schedule(48, 16, 0)):
                if rt.rank == 2 and i == 1:
                    rt.node.close()  # party 2 dies mid-epoch
                    return "died"
                opt.zero_grad()
                F.cross_entropy(model(X[idx]), Y[idx]).backward()
                opt.step()
        except PeerFailure as e:
            return ("peer failure", str(e), time.monotonic() - t0)
        return "finished"

    outs = run_parties(party, 3, timeout=5.0)
    assert outs[2] == "died"
    for o in outs[:2]:
        assert o[0] == "peer failure" and o[2] < 30, o


def test_horizontal_and_vertical_splits_and_schedule():
    x = np.arange(24, dtype=np.float64).reshape(6, 4)
    lab = np.array([0, 1, 2, 0, 1, 2])

    def party(rt):
        me = rt.rank
        hx, hy = train_data.horizontal(rt, x[me::2], lab[me::2], 3)
        vx, vy = train_data.vertical(rt, x[:, 2 * me:2 * me + 2], lab if me == 1 else None, 3, label_owner=1)
        return hx.reveal(), hy.reveal(), vx.reveal(), vy.reveal()

    hx, hy, vx, vy = run_parties(party, 2)[0]
    order = np.concatenate([np.arange(6)[0::2], np.arange(6)[1::2]])
    np.testing.assert_allclose(hx, x[order])
    np.testing.assert_allclose(hy, np.eye(3)[lab[order]])
    np.testing.assert_allclose(vx, x)
    np.testing.assert_allclose(vy, np.eye(3)[lab])
    s = train_data.schedule(10, 4, 1, seed=5)
    assert [len(b) for b in s] == [4, 4, 2] and sorted(np.concatenate(s)) == list(range(10))
    assert all((a == b).all() for a, b in zip(s, train_data.schedule(10, 4, 1, seed=5)))


def test_mpcrt_train_command_runs_and_reveals_to_party_0(cli, tmp_path):
    out = tmp_path / "w.npz"
    r = cli.run(["train", "-n", "2", "--model", "mlp", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                 "--no-progress", "--out", str(out), "--compare-plaintext"], timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "plaintext float64: test accuracy" in r.stdout
    with np.load(out, allow_pickle=False) as z:
        assert z["1.weight"].shape == (128, 64)


def test_dp_sgd_clips_like_torch_and_adds_joint_noise():
    pytest.importorskip("dp_accounting")
    from mpcrt import dp

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 1, 1, 4)) * 3, rng.integers(0, 3, 6)

    def party(rt, sigma):
        X = rt.share(x if rt.rank == 0 else None, src=0)
        model = mnn.from_torch(copy.deepcopy(net) if rt.rank == 0 else None, torch.zeros(1, 1, 1, 4), src=0,
                               train=True, rt=rt)
        opt = optim.SGD(model.parameters(), lr=1.0)
        d = dp.DPSGD(model, opt, max_grad_norm=0.5, noise_multiplier=sigma, n_rows=600, batch_size=6)
        d.step(lambda o, t: F.cross_entropy(o, t, reduction="sum"), X, y)
        return model.reveal_state_dict(to=0), d.epsilon(1e-5)

    ref = copy.deepcopy(net).double()
    ps = list(ref.parameters())
    total = [torch.zeros_like(p) for p in ps]
    for i in range(6):  # per-example clipping in float
        ref.zero_grad()
        TF.cross_entropy(ref(torch.tensor(x[i:i + 1])), torch.tensor(y[i:i + 1]), reduction="sum").backward()
        norm = float(torch.sqrt(sum((p.grad ** 2).sum() for p in ps)))
        for t, p in zip(total, ps):
            t += p.grad * min(1.0, 0.5 / norm)
    with torch.no_grad():
        for t, p in zip(total, ps):
            p -= t / 6
    want = {k: v.numpy() for k, v in ref.state_dict().items()}
    state, _ = run_parties(party, 2, 0.0, precision=20)[0]
    assert max(np.abs(state[k] - want[k]).max() for k in want) < 1e-4
    state, eps = run_parties(party, 3, 1.0, precision=20)[0]
    noise = np.concatenate([(state[k] - want[k]).ravel() for k in want])
    assert 0.02 < noise.std() < 0.5  # each of 3 parties adds N(0, (sigma C / B)^2): std 0.144 in all
    assert 0 < eps < dp.epsilon(1, 6 / 600, 0.5, 1e-5)  # more noise, smaller epsilon

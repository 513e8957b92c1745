"""mpcrt.nn: model import (torch.fx -> msgpack graph), layers under MPC vs torch, errors.

Tolerances (fixed point with 16 fractional bits, weights and inputs of magnitude ~1):
* linear layers (Linear, Conv2d, folded/unfolded BatchNorm, Avg/AdaptiveAvgPool,
  shape ops, residual adds): max |MPC - torch| <= 1e-3 (measured ~1e-4: each
  truncation errs by at most 2^-16 per output, products add rounding of weights);
* ReLU / MaxPool (exact comparisons): the same 1e-3;
* Sigmoid / Tanh / Softmax (approximations): 2e-2;
* ResNet-18 logits (random weights, 1x3x32x32): 2e-2 relative to max |logit|;
* the digits models: >= 357/360 (99 %) test predictions equal to the plaintext model's.

Parties run as threads (mpcrt.launch.inprocess.run_parties) over real ZeroMQ.
"""
from __future__ import annotations

import importlib.util
import pathlib

import msgpack
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mpcrt.nn as mnn
from mpcrt.errors import MpcError, ShapeError
from mpcrt.launch.model_zoo import ResNet18  # torchvision layout; the one zoo benchmarks and CrypTen use
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn import Graph, ModelImportError, UnsupportedLayerError
from mpcrt.tensor import SharedTensor

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINEAR_TOL = 1e-3
APPROX_TOL = 2e-2

HAVE_CMP = all(hasattr(SharedTensor, m) for m in ("relu", "maxpool2d"))
needs_cmp = pytest.mark.skipif(not HAVE_CMP, reason="SharedTensor.relu/maxpool2d not available yet")


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


# ------------------------------------------------------------ small models
class LinearBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(12, 16)
        self.bn = nn.BatchNorm1d(16)  # folded into a
        self.b = nn.Linear(16, 5, bias=False)

    def forward(self, x):
        return self.b(self.bn(self.a(x)) * 0.5) - 1


class ConvStridePad(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)  # folded
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False)
        self.c3 = nn.Conv2d(8, 4, (1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x):
        return self.c3(self.c2(self.bn1(self.c1(x))))


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.p1 = nn.AvgPool2d(2)
        self.p2 = nn.AvgPool2d(3, stride=2, padding=1)
        self.p3 = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)
        self.a1 = nn.AdaptiveAvgPool2d((3, 2))
        self.a2 = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):  # x: N, 2, 10, 14
        y1 = self.p1(x).flatten(1)
        y2 = self.p2(x).flatten(1)
        y3 = self.p3(x).flatten(1)
        y4 = self.a1(x[:, :, :5, :7]).flatten(1)
        y5 = torch.flatten(self.a2(x), 1)
        y6 = F.avg_pool2d(x, (2, 7)).view(x.size(0), -1)
        y7 = F.adaptive_avg_pool2d(x, (5, 7)).reshape(x.shape[0], -1)
        return torch.cat([y1, y2, y3, y4, y5, y6, y7], dim=1)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding="same")
        self.bn2 = nn.BatchNorm2d(4)  # after an add: not foldable, an affine layer
        self.drop = nn.Dropout(0.3)
        self.ident = nn.Identity()
        self.fc = nn.Linear(4 * 6 * 6, 3)
        self.register_buffer("shift", torch.linspace(-1, 1, 4).reshape(1, 4, 1, 1))

    def forward(self, x):
        y = self.bn1(self.c1(x))
        y = self.c2(y) + x
        y = self.bn2(y) + self.shift
        y = self.drop(y).permute(0, 1, 3, 2).contiguous()
        y = -y.mean(dim=3, keepdim=True) + y
        return self.fc(self.ident(y).view(y.size(0), -1))


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 10) * 0.3)
        self.b = nn.Parameter(torch.randn(6) * 0.3)
        self.cw = nn.Parameter(torch.randn(2, 1, 3, 3) * 0.3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):  # x: N, 10
        y = F.linear(x, self.w, self.b)
        z = F.conv2d(y.reshape(-1, 1, 2, 3), self.cw, padding=1)  # N, 2, 2, 3
        t = self.bn(torch.transpose(z.reshape(z.shape[0], 2, 6)[:, :, 1:4], 1, 2))  # BN1d on N, 3, 2
        return torch.cat((z.sum(dim=(2, 3)), t.flatten(1), y @ self.w[:, :2]), 1) / 2


LINEAR_MODELS = [
    ("linear_bn", LinearBN, (4, 12)),
    ("conv", ConvStridePad, (2, 3, 9, 9)),
    ("pools", lambda: nn.Sequential(Pools()), (2, 2, 10, 14)),
    ("residual", Residual, (2, 4, 6, 6)),
    ("functional", Functional, (3, 10)),
]


def _build(factory, seed):
    torch.manual_seed(seed)
    return _randomize_bn(factory(), seed)


def _run_models(rt, models, inputs, owner=0, data=1):
    """On every party: import each model from `owner`, run it on `data`'s input, reveal to `data`."""
    out = []
    for m, x in zip(models, inputs):
        pm = mnn.from_torch(m if rt.rank == owner else None, x[:1] if rt.rank == owner else None, src=owner, rt=rt)
        xs = rt.share(x.numpy() if rt.rank == data else None, src=data)
        out.append(pm(xs).reveal(to=data))
    return out


def _matches_torch(model, x, ops=(), timeout=60, trace_x=None):
    """Import `model` (traced on x[:1], or trace_x), check its graph uses `ops`, run it on x
    under MPC (2 parties) and compare with torch: same shape, within APPROX_TOL."""
    with torch.no_grad():
        ref = model(x).double().numpy()
    g, _ = mnn.trace(model, x[:1] if trace_x is None else trace_x)
    got_ops = {n["op"] for n in g.nodes}
    assert set(ops) <= got_ops, got_ops
    (got,) = run_parties(_run_models, 2, [model], [x], 0, 1, timeout=timeout)[1]
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= APPROX_TOL, float(np.abs(got - ref).max())


# ---------------------------------------------------------------- graph
def test_graph_roundtrip_msgpack_and_plaintext_replay():
    model = _build(Residual, 1)
    x = torch.rand(2, 4, 6, 6) - 0.5
    graph, arrays = mnn.trace(model, x)
    raw = graph.to_bytes()
    d = msgpack.unpackb(raw, raw=False)  # plain msgpack: maps, lists, numbers, strings
    assert d["format"] == "mpcrt-nn" and d["version"] == mnn.VERSION
    g2 = Graph.from_bytes(raw)
    assert g2.to_dict() == graph.to_dict()
    assert [tuple(p["shape"]) for p in g2.params] == [a.shape for a in arrays]
    assert g2.op_counts()["conv2d"] == 2 and g2.op_counts()["affine"] == 1  # bn1 folded, bn2 not
    with torch.no_grad():
        got = mnn.run_graph(g2, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        ref = model(x).double()
    assert float((got - ref).abs().max()) < 1e-5
    assert "conv2d" in graph.summary()


def test_save_load_archive(tmp_path):
    model = _build(LinearBN, 2)
    path = str(tmp_path / "m.npz")
    mnn.save(model, torch.zeros(1, 12), path)
    graph, arrays = mnn.load(path)
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        assert mnn.ARCHIVE_GRAPH_KEY in z.files
    x = torch.randn(3, 12)
    with torch.no_grad():
        got = mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps())
        assert float((got - model(x)).abs().max()) < 1e-5
    np.savez(str(tmp_path / "sd.npz"), **{k: v.numpy() for k, v in model.state_dict().items()})
    with pytest.raises(mnn.ModelFileError, match="without an mpcrt graph"):
        mnn.load(str(tmp_path / "sd.npz"))
    torch.save(model.state_dict(), str(tmp_path / "w.pt"))
    with pytest.raises(mnn.ModelFileError, match="torch.save"):
        mnn.load(str(tmp_path / "w.pt"))
    with pytest.raises(mnn.ModelFileError, match="does not exist"):
        mnn.load(str(tmp_path / "nope.npz"))


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(version=99), "version"),
    (lambda d: d["nodes"].append({"op": "eval", "args": {}, "name": "x", "target": "x"}), "unknown op"),
    (lambda d: d["nodes"][-1]["args"].update(input={"ref": 10_000}), "earlier node"),
    (lambda d: d["nodes"][-1]["args"].update(bogus=1), "arguments"),
    (lambda d: d["nodes"].append({"op": "getattr", "args": {"input": {"ref": 0}, "name": "__class__"},
                                  "name": "g", "target": "g"}), "attribute"),
    (lambda d: d["params"][0].update(shape=[-1]), "parameter"),
    (lambda d: d.update(output={"ref": 10_000}), "earlier node"),
    # a model owner must not make the peers allocate without bound
    (lambda d: d["nodes"].append({"op": "repeat", "args": {"input": {"ref": 0}, "sizes": [1 << 12, 1 << 12]},
                                  "name": "r", "target": "r"}), "repeat"),
    (lambda d: d["nodes"].append({"op": "expand", "args": {"input": {"ref": 0}, "sizes": [1 << 30, 1 << 30]},
                                  "name": "e", "target": "e"}), "expand"),
    (lambda d: d["nodes"].append({"op": "pow", "args": {"input": {"ref": 0}, "exponent": 1 << 40},
                                  "name": "p", "target": "p"}), "power"),
])
def test_malformed_graph_is_refused(mutate, match):
    graph, _ = mnn.trace(_build(LinearBN, 0), torch.zeros(1, 12))
    d = msgpack.unpackb(graph.to_bytes(), raw=False)
    mutate(d)
    with pytest.raises(ModelImportError, match=match):
        Graph.from_bytes(msgpack.packb(d, use_bin_type=True))


def test_garbage_graph_bytes():
    with pytest.raises(ModelImportError, match="malformed|msgpack"):
        Graph.from_bytes(b"\x80\x04\x95 not msgpack at all")
    with pytest.raises(ModelImportError):
        Graph.from_bytes(msgpack.packb([1, 2, 3]))


# --------------------------------------------------------- errors at import
class WithSoftshrink(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.Softshrink()

    def forward(self, x):
        return self.act(self.fc(x))


class WithSort(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=1).values


class WithBranch(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_unsupported_layer_names_op_and_node():
    with pytest.raises(UnsupportedLayerError, match=r"Softshrink.*module 'act'.*fx node 'act'"):
        mnn.trace(WithSoftshrink(), torch.zeros(1, 4))
    with pytest.raises(UnsupportedLayerError, match=r"torch\.sort.*fx node 'sort'"):
        mnn.trace(WithSort(), torch.zeros(1, 4))
    with pytest.raises(ModelImportError, match="torch.fx could not trace WithBranch"):
        mnn.trace(WithBranch(), torch.zeros(1, 4))
    with pytest.raises(ShapeError, match="does not fit"):
        mnn.trace(LinearBN(), torch.zeros(1, 7))
    # a token lookup past the first layer: named (with the one-hot Linear that replaces it)
    with pytest.raises(UnsupportedLayerError,
                       match=r"Embedding \(module '1'\).*one-hot.*nn\.Linear\(10, 4, bias=False\)"):
        mnn.trace(nn.Sequential(nn.Identity(), nn.Embedding(10, 4), nn.Linear(4, 2)), torch.tensor([[1, 2]]))
    # layers and calls users bring that have no MPC form: the message says what to write instead
    with pytest.raises(UnsupportedLayerError, match=r"GRUCell.*nn\.LSTM / nn\.GRU"):
        mnn.trace(nn.Sequential(nn.GRUCell(4, 4)), torch.zeros(1, 4))
    with pytest.raises(UnsupportedLayerError, match=r"torch\.erf.*F\.gelu"):
        mnn.trace(_Erf(), torch.zeros(1, 4))
    with pytest.raises(UnsupportedLayerError, match=r"AdaptiveMaxPool2d.*does not divide.*nn\.MaxPool2d"):
        mnn.trace(nn.Sequential(nn.AdaptiveMaxPool2d(3)), torch.zeros(1, 2, 8, 8))


class _Erf(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.erf(x / 1.4142135))


@pytest.mark.parametrize("size,shape", [(1, (2, 3, 8, 8)), ((2, 4), (2, 3, 8, 8)), ((None, 2), (2, 3, 6, 4))])
def test_adaptive_max_pool_imports_as_a_max_pool(size, shape):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveMaxPool2d(size), nn.Flatten())
    _matches_torch(model, torch.randn(*shape), ops=("max_pool2d",))


def _catch(fn):
    def wrapped(rt, *a):
        try:
            return fn(rt, *a)
        except MpcError as e:
            return e
    return wrapped


def test_unsupported_layer_fails_on_every_party():
    def prog(rt):
        return mnn.from_torch(WithSoftshrink() if rt.rank == 0 else None, torch.zeros(1, 4) if rt.rank == 0 else None,
                              src=0, rt=rt)

    errs = run_parties(_catch(prog), 3, timeout=20)
    assert isinstance(errs[0], UnsupportedLayerError) and "Softshrink" in str(errs[0])
    for e in errs[1:]:  # the others hear it from the owner instead of waiting for weights
        assert isinstance(e, ModelImportError) and "party 0" in str(e) and "Softshrink" in str(e)


def test_wrong_input_shape_is_a_clear_error_everywhere():
    model = _build(ConvStridePad, 3)

    def prog(rt):
        pm = mnn.from_torch(model if rt.rank == 0 else None, torch.zeros(1, 3, 9, 9) if rt.rank == 0 else None,
                            src=0, rt=rt)
        x = rt.share(np.zeros((2, 3, 8, 9)) if rt.rank == 1 else None, src=1)
        return pm(x)

    errs = run_parties(_catch(prog), 2, timeout=20)
    for e in errs:
        assert isinstance(e, ShapeError)
        assert "expects input of shape (batch, 3, 9, 9)" in str(e) and "(2, 3, 8, 9)" in str(e)


class _OptionalMask(nn.Module):
    """forward(x, mask=None, scale=2.0): the optional arguments are never passed to a shared model."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 4)

    def forward(self, x, mask=None, scale=2.0):
        y = self.a(x)
        if mask is not None:
            y = y.masked_fill(mask, 0.0)
        return torch.relu(y) * scale


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(3, 4)

    def forward(self, x, meta):
        return self.a(x) + self.b(meta)


def test_optional_forward_arguments_trace_at_their_defaults_and_two_inputs_are_named():
    torch.manual_seed(0)
    g, _ = mnn.trace(_OptionalMask(), torch.zeros(1, 8))
    assert [n["op"] for n in g.nodes].count("input") == 1 and "masked_fill" not in str(g.nodes)
    _matches_torch(_OptionalMask(), torch.randn(5, 8))
    for ex in [(torch.zeros(1, 8), torch.zeros(1, 3)), [torch.zeros(1, 8), np.zeros((1, 3))]]:
        with pytest.raises(UnsupportedLayerError, match="of 2 tensors: only models with one input.*torch.split"):
            mnn.trace(_TwoInputs(), ex)
    with pytest.raises(UnsupportedLayerError, match="second model input 'meta'"):
        mnn.trace(_TwoInputs(), torch.zeros(1, 8))  # a required second argument: fx sees two inputs
    g, _ = mnn.trace(nn.Linear(2, 1), [[1.0, 2.0]])  # a nested list of numbers is one input
    assert g.input_shape == [1, 2]


def test_forged_graph_header_is_refused():
    """A graph length over the limit (or a bad status) is refused before anything else is received."""
    def prog(rt):
        if rt.rank == 0:
            rt.exchange({1: np.array([0, mnn.MAX_GRAPH_BYTES + 1], np.int64)}, {}, "nn.graph.len")
            return None
        return mnn.from_torch(None, src=0, rt=rt)

    errs = run_parties(_catch(prog), 2, timeout=20)
    assert "malformed or too large" in str(errs[1])


def test_weights_outside_fixed_point_range_fail_everywhere():
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight[0, 0] = 1e15

    def prog(rt):
        return mnn.from_torch(model if rt.rank == 0 else None, torch.zeros(1, 3) if rt.rank == 0 else None,
                              src=0, rt=rt)

    errs = run_parties(_catch(prog), 2, timeout=20)
    for e in errs:
        assert isinstance(e, ModelImportError) and "fixed-point range" in str(e)


def test_faint_input_columns_warn_at_import():
    """Weights fitted on unscaled features (2e-5: 1.3 ulps at 16 bits) lose their inputs' precision:
    the model owner is warned at import, naming the parameter and column; a model whose columns all
    keep 4 significant bits, or are zero, is imported quietly (checked at 16 and 24 bits)."""
    import warnings

    from mpcrt.errors import PrecisionWarning
    from mpcrt.nn.model import _check_range, _warn_faint_columns
    from mpcrt.nn.tracer import trace

    lin = np.array([[0.03, 2.1e-5, -1.3e-5, 0.08, 0.0, 0.4]])
    with pytest.warns(PrecisionWarning, match=r"fc.weight: 2 of 6 input columns .* \(column 1: max 2.1e-05\)"):
        _warn_faint_columns("fc.weight", lin, 16)
    conv = np.full((4, 3, 3, 3), 0.2)
    conv[:, 2] = 1e-6  # one input channel all faint
    with pytest.warns(PrecisionWarning, match="conv.weight: 1 of 3 input columns"):
        _warn_faint_columns("conv.weight", conv, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_faint_columns("fc.weight", lin, 24)  # 2.1e-5 is 352 ulps at 24 bits
        _warn_faint_columns("ok.weight", np.array([[0.03, 3e-4, 0.0, -0.5]]), 16)
        _warn_faint_columns("bias", np.array([1e-6, 0.0]), 16)  # 1-d: no input columns
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.ReLU(), nn.Linear(144, 10))
        _check_range(*trace(model, torch.zeros(1, 1, 8, 8)), 16)  # the owner's check before sending


# ------------------------------------------------------- layers under MPC
@pytest.mark.parametrize("n", [2, 3])
def test_linear_layers_match_torch(n):
    models = [_build(f, i) for i, (_, f, _) in enumerate(LINEAR_MODELS)]
    g = torch.Generator().manual_seed(n)
    inputs = [torch.rand(s, generator=g) * 2 - 1 for (_, _, s) in LINEAR_MODELS]
    with torch.no_grad():
        refs = [m(x).double().numpy() for m, x in zip(models, inputs)]
    outs = run_parties(_run_models, n, models, inputs, 0, n - 1, timeout=30)
    for (name, _, _), ref, got, other in zip(LINEAR_MODELS, refs, outs[n - 1], outs[0]):
        assert other is None  # revealed to the data owner only
        assert got.shape == ref.shape, name
        err = float(np.abs(got - ref).max())
        assert err <= LINEAR_TOL, f"{name}: max |MPC - torch| = {err:.2e}"


@pytest.mark.parametrize("name", ["residual", "pools"])
def test_layer_by_layer(name):
    """Every node's value under MPC (revealed) against the same node in plaintext float64."""
    i, factory, shape = next((i, f, s) for i, (nm, f, s) in enumerate(LINEAR_MODELS) if nm == name)
    model = _build(factory, i)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(9)) * 2 - 1
    graph, arrays = mnn.trace(model, x)
    plain: dict = {}
    with torch.no_grad():
        mnn.run_graph(graph, [torch.from_numpy(a) for a in arrays], x.double(), mnn.TorchOps(), collect=plain)

    def prog(rt):
        pm = mnn.from_torch(model if rt.rank == 0 else None, x if rt.rank == 0 else None, src=0, rt=rt)
        vals = pm.intermediates(rt.share(x.numpy() if rt.rank == 1 else None, src=1))
        return {k: v.reveal() for k, v in vals.items() if isinstance(v, SharedTensor)}

    got = run_parties(prog, 2, timeout=30)[1]
    layers = [n["name"] for n in graph.nodes if n["op"] not in ("param", "input") and n["name"] in got]
    assert len(layers) >= 8
    for k in layers:
        err = float(np.abs(got[k] - plain[k].numpy()).max())
        assert err <= LINEAR_TOL, f"{name}: layer {k} off by {err:.2e}"


def test_weights_are_shared_not_sent():
    """The graph carries no weight values; parties other than the owner hold random-looking shares."""
    model = _build(LinearBN, 5)
    graph, arrays = mnn.trace(model, torch.zeros(1, 12))
    raw = graph.to_bytes()
    w = np.asarray(arrays[0], np.float64).ravel()
    assert np.frombuffer(w.tobytes()[:64], np.uint8).tobytes() not in raw

    def prog(rt):
        pm = mnn.from_torch(model if rt.rank == 0 else None, torch.zeros(1, 12) if rt.rank == 0 else None, src=0, rt=rt)
        return pm.params[0].share.copy(), pm.graph.to_dict()

    outs = run_parties(prog, 2)
    total = (outs[0][0] + outs[1][0]).astype(np.float64) / 2**16
    assert np.abs(total - arrays[0]).max() < 1e-4
    assert np.abs(outs[1][0].astype(np.float64) / 2**16 - arrays[0]).max() > 1e3  # a share is noise
    assert outs[0][1] == outs[1][1]


# --------------------------------------------------- nonlinear (comparison)
class Nonlinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 3 * 3, 6)
        self.lr = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2, padding=1)
        self.dpool = nn.MaxPool2d(2, stride=1, dilation=2)

    def forward(self, x):  # N, 2, 7, 7
        r = F.relu(self.c(x))
        y = F.max_pool2d(r, 3, stride=2) + self.pool(r)[:, :, :3, :3]
        y = y + self.dpool(r)[:, :, 1:4, 2:5]
        y = self.lr(y.flatten(1) - 0.2)
        return torch.relu(self.fc(y)) + y[:, :6].relu()


@needs_cmp
def test_relu_maxpool_match_torch():
    model = _build(Nonlinear, 7)
    x = torch.rand(3, 2, 7, 7) * 2 - 1
    with torch.no_grad():
        ref = model(x).double().numpy()
    (got,) = run_parties(_run_models, 2, [model], [x], 0, 1, timeout=30)[1]
    assert float(np.abs(got - ref).max()) <= LINEAR_TOL


@pytest.mark.skipif(not all(hasattr(SharedTensor, m) for m in ("sigmoid", "tanh", "softmax")),
                    reason="SharedTensor.sigmoid/tanh/softmax not available yet")
def test_sigmoid_tanh_softmax_match_torch():
    model = nn.Sequential(nn.Linear(5, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4), nn.Softmax(dim=1))
    torch.manual_seed(0)
    x = torch.randn(6, 5)
    with torch.no_grad():
        ref = model(x).double().numpy()
    (got,) = run_parties(_run_models, 2, [model], [x], 0, 1, timeout=30)[1]
    assert float(np.abs(got - ref).max()) <= APPROX_TOL


class TransformerBlock(nn.Module):
    """Attention, LayerNorm, GELU/SiLU/ReLU6/Hardtanh and LogSoftmax: a transformer-style model."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(6, 16)
        self.ln1, self.ln2 = nn.LayerNorm(16), nn.LayerNorm(16, elementwise_affine=False)
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.ff = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.silu, self.r6, self.ht = nn.SiLU(), nn.ReLU6(), nn.Hardtanh(-2.0, 2.0)
        self.head = nn.Linear(16, 5)
        self.out = nn.LogSoftmax(dim=-1)

    def forward(self, x):  # B, T = 4, 6
        h = self.ln1(self.emb(x))
        att = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) / 4.0, dim=-1)
        h = h + att @ self.v(h)
        h = h + self.ff(self.ln2(h))
        h = self.silu(h) + self.r6(h * 4) + self.ht(h) + F.gelu(h, approximate="tanh") + F.relu6(h - 1)
        h = F.layer_norm(F.silu(h), (16,), eps=1e-3)
        return self.out(self.head(h.mean(dim=1)))


def test_transformer_style_layers_match_torch():
    _matches_torch(_build(TransformerBlock, 3), torch.randn(3, 4, 6),
                   {"gelu", "silu", "hardtanh", "layer_norm", "log_softmax"})


class MobileStyle(nn.Module):
    """Hardswish/Hardsigmoid (MobileNetV3), clamps, integer powers, abs and the
    approximations called as torch functions and tensor methods, a hand-written RMSNorm (fused: rms_norm)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.hs, self.hsig = nn.Hardswish(), nn.Hardsigmoid()
        self.fc = nn.Linear(4, 6)

    def forward(self, x):
        y = self.hs(self.conv(x))
        y = F.hardswish(self.dw(y)) * self.hsig(y) + F.hardsigmoid(y).clamp(max=0.8)
        v = y.mean([2, 3])
        v = (torch.clamp(self.fc(v), -2.0, 2.0) + v.abs().sum(1, keepdim=True)
             + torch.clamp_min(v, 0.1).sum(1, keepdim=True))
        v = v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-3) + x.abs().mean() ** 2
        w = v.abs() + 0.5
        return v + torch.sqrt(w) + w.reciprocal() + torch.log(w) + w.square() * 0.1 + v ** 3 * 0.01


def test_mobile_style_ops_match_torch():
    _matches_torch(_build(MobileStyle, 4), torch.randn(3, 2, 6, 6) * 2,
                   {"hardswish", "hardsigmoid", "clamp", "abs", "pow", "rms_norm", "sqrt", "reciprocal", "log"})


class Audio1d(nn.Module):
    """Conv1d (stride, padding='same', dilation, groups) with folded BatchNorm1d, 1-d pools."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv1d(2, 6, 5, stride=2, padding=2), nn.BatchNorm1d(6)
        self.c2 = nn.Conv1d(6, 6, 3, padding="same", dilation=2, groups=3, bias=False)
        self.bn2, self.pool = nn.BatchNorm1d(6), nn.MaxPool1d(3, 2, padding=1)
        self.avg, self.ada, self.fc = nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(3), nn.Linear(18, 4)

    def forward(self, x):
        y = self.pool(F.relu(self.bn(self.c1(x))))
        y = self.avg(F.relu(self.bn2(self.c2(y)) + y))
        return self.fc(self.ada(y).flatten(1))


class CeilPools(nn.Module):
    """max pooling with ceil_mode=True (GoogLeNet, SqueezeNet): partial last windows."""

    def __init__(self):
        super().__init__()
        self.c, self.p = nn.Conv2d(2, 3, 3), nn.MaxPool2d(3, 2, ceil_mode=True)
        self.p1 = nn.MaxPool1d(2, ceil_mode=True)

    def forward(self, x):  # 10x10 -> conv 8x8 -> pool 4x4 (floor: 3x3)
        y = F.max_pool2d(self.p(F.relu(self.c(x))), 3, 2, ceil_mode=True)  # 4x4 -> 2x2 (floor: 1x1)
        return self.p1(y.flatten(2)).flatten(1)  # 4 -> 2


def test_ceil_mode_max_pools_match_torch():
    model = _build(CeilPools, 6)
    x = torch.randn(2, 2, 10, 10)
    with torch.no_grad():
        ref = model(x).double().numpy()
    (got,) = run_parties(_run_models, 2, [model], [x], 0, 1, timeout=60)[1]
    assert got.shape == ref.shape == (2, 6)
    assert float(np.abs(got - ref).max()) <= 1e-3, float(np.abs(got - ref).max())


class Functional1d(nn.Module):
    """F.conv1d with a parameter weight (padding='same', groups), F.max_pool1d (ceil_mode),
    F.avg_pool1d and F.adaptive_avg_pool1d."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 1, 3) * 0.5)
        self.b = nn.Parameter(torch.randn(4) * 0.1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):  # (N, 2, 21)
        y = F.conv1d(x, self.w, self.b, padding="same", groups=2)
        y = F.max_pool1d(F.relu(y), 2, ceil_mode=True) + F.avg_pool1d(y, 3, 2, 1)[..., :11]
        return self.fc(F.adaptive_avg_pool1d(y, 2).flatten(1))


@pytest.mark.parametrize("n", [2, 3])
def test_conv1d_and_1d_pools_match_torch(n):
    model = _build(Audio1d, 5)
    x = torch.randn(3, 2, 40)
    with torch.no_grad():
        ref = model(x).double().numpy()
    g, _ = mnn.trace(model, x[:1])
    ops = g.op_counts()
    assert ops.get("conv2d") == 2 and "affine" not in ops  # both BatchNorm1d folded into their Conv1d
    fmodel = _build(Functional1d, 6)
    fx = torch.randn(3, 2, 21)
    with torch.no_grad():
        fref = fmodel(fx).double().numpy()
    got, fgot = run_parties(_run_models, n, [model, fmodel], [x, fx], 0, 1, timeout=60)[1]
    assert got.shape == ref.shape and fgot.shape == fref.shape
    assert float(np.abs(got - ref).max()) <= 1e-3, float(np.abs(got - ref).max())
    assert float(np.abs(fgot - fref).max()) <= 1e-3, float(np.abs(fgot - fref).max())


class SmoothActs(nn.Module):
    """ELU, SELU, CELU and Softplus as modules and functions."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(6, 12), nn.Linear(12, 4)
        self.elu, self.selu, self.celu, self.sp = nn.ELU(0.7), nn.SELU(), nn.CELU(1.5), nn.Softplus(beta=2.0)

    def forward(self, x):
        h = self.l1(x) * 3
        h = self.elu(h) + self.selu(h) * 0.5 + self.celu(h) + F.elu(h) - F.softplus(h) + self.sp(h) + F.celu(h)
        return self.l2(h)


def test_elu_selu_celu_softplus_match_torch():
    _matches_torch(_build(SmoothActs, 7), torch.randn(5, 6), {"elu", "selu", "celu", "softplus"})


class NormsAndGates(nn.Module):
    """GroupNorm, InstanceNorm2d (instance statistics, and running statistics), PReLU
    (per channel and single), Mish, their functional forms, repeat and expand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn, self.inorm = nn.GroupNorm(4, 8), nn.InstanceNorm2d(8, affine=True)
        self.irun = nn.InstanceNorm2d(8, track_running_stats=True)
        self.pr, self.pr1, self.mish = nn.PReLU(8, 0.1), nn.PReLU(), nn.Mish()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = self.pr(self.gn(self.conv(x))) + self.mish(self.inorm(x.repeat(1, 3, 1, 1)[:, :8] * 2))
        y = self.pr1(y) + self.irun(y) * 0.5 + F.group_norm(y, 2) + F.instance_norm(y) + F.mish(y) * 0.1
        y = y + y.mean((2, 3), keepdim=True).expand(-1, -1, 5, 5) * 0.5
        return self.fc(y.mean((2, 3)))


def test_group_instance_norm_prelu_mish_match_torch():
    model = _build(NormsAndGates, 8)
    with torch.no_grad():
        model.irun.running_mean.uniform_(-1, 1)
        model.irun.running_var.uniform_(0.5, 2.0)
        model.inorm.weight.uniform_(0.5, 1.5)
        model.inorm.bias.uniform_(-0.5, 0.5)
    _matches_torch(model, torch.randn(2, 3, 5, 5), {"group_norm", "prelu", "mish", "affine"}, timeout=90)


@pytest.mark.filterwarnings("ignore:input's size at dim=1 does not match num_features")  # torch's, on purpose
def test_instance_norm_channels_celu_alpha_softplus_threshold_on_import():
    """InstanceNorm2d(affine=False) normalizes each of the input's channels whatever its
    num_features (torch only warns); CELU with a negative alpha is named as unsupported;
    Softplus(threshold=1) takes x beyond the threshold, as torch does."""
    inorm = nn.Sequential(nn.Conv2d(2, 8, 1), nn.InstanceNorm2d(4))
    soft = nn.Sequential(nn.Linear(3, 6), nn.Softplus(beta=2.0, threshold=1.0), nn.Linear(6, 2))
    torch.manual_seed(9)
    xs = [torch.randn(2, 2, 5, 5), torch.randn(4, 3) * 2]
    with torch.no_grad():
        refs = [inorm(xs[0]).double().numpy(), soft(xs[1]).double().numpy()]
    with pytest.raises(UnsupportedLayerError, match="alpha"):
        mnn.trace(nn.Sequential(nn.CELU(-1.0)), torch.zeros(1, 3))
    got = run_parties(_run_models, 2, [inorm, soft], xs, 0, 1, timeout=60)[1]
    for g, r in zip(got, refs):
        assert g.shape == r.shape
        assert float(np.abs(g - r).max()) <= 5e-3, float(np.abs(g - r).max())


class TensorOps(nn.Module):
    """chunk/split/stack/bmm/t, F.pad, comparisons with where and float(), maximum and
    max(dim).values, amax, var/std/norm, F.normalize, F.interpolate (nearest, bilinear at a
    fractional scale) and nn.Upsample (bilinear, align_corners)."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(8, 8)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.head = nn.Linear(8 + 8 + 4 + 1 + 1 + 3, 4)

    def forward(self, x):  # (B, 8)
        y = self.l(x)
        a, b = torch.chunk(y, 2, dim=-1)
        c = torch.stack(y.split(4, dim=-1), 1).sum(1) + torch.bmm(a.unsqueeze(2), b.unsqueeze(1)).sum(-1)
        g = torch.where(y > 0.1, y, y * 0.1) + (y <= -0.5).float() * 2 + torch.maximum(y, -y * 0.5)
        stats = torch.cat([y.var(-1, keepdim=True) + torch.std(y, dim=-1, keepdim=True),
                           y.norm(dim=-1, keepdim=True)], -1)
        img = F.pad(c.reshape(-1, 1, 2, 2), (1, 1, 0, 1))  # (B, 1, 3, 4)
        u = F.interpolate(img, scale_factor=1.5, mode="bilinear") .mean((2, 3)) + self.up(img).amax(-1).mean(-1)
        v = F.interpolate(img, size=(5, 7), mode="nearest").flatten(1)[:, :3]
        z = torch.cat([F.normalize(g, dim=-1), torch.max(g, dim=-1, keepdim=True).values.expand(-1, 8), a.t().t() * b,
                       u.reshape(-1, 1), stats[:, :1] * 0.01, v], -1)
        return self.head(z)


def test_tensor_ops_match_torch():
    model = _build(TensorOps, 10)
    x = torch.randn(4, 8)
    _matches_torch(model, x, {"chunk", "split", "stack", "compare", "cast", "where", "maximum", "max", "amax", "var",
                              "std", "norm", "normalize", "pad", "resize"}, timeout=90, trace_x=x)


class PowBy(nn.Module):
    def __init__(self, e):
        super().__init__()
        self.e = e

    def forward(self, x):
        return x ** self.e


class ClampByTensor(nn.Module):
    def forward(self, x):
        return torch.clamp(x, min=x.mean())


def test_unsupported_powers_and_clamps_are_named():
    with pytest.raises(UnsupportedLayerError, match=r"exponent 0\.5 .*public integer"):
        mnn.trace(PowBy(0.5), torch.ones(1, 3))
    with pytest.raises(UnsupportedLayerError, match=r"exponent -1 "):
        mnn.trace(PowBy(-1), torch.ones(1, 3))
    with pytest.raises(UnsupportedLayerError, match="clamp by tensor bounds"):
        mnn.trace(ClampByTensor(), torch.ones(1, 3))
    g, _ = mnn.trace(PowBy(2.0), torch.ones(1, 3))  # an integral float exponent is an integer power
    assert [n["args"].get("exponent") for n in g.nodes if n["op"] == "pow"] == [2]


# --------------------------------------------------------------- digits
def _demo():
    spec = importlib.util.spec_from_file_location("digits_demo", ROOT / "examples" / "digits_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    demo = _demo()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nets = {k: demo.train(k) for k in ("mlp", "cnn")}
    finally:
        torch.set_num_threads(threads)
    data = {k: demo.digits("test", k == "cnn") for k in ("mlp", "cnn")}
    return nets, data


@needs_cmp
@pytest.mark.parametrize("kind, n", [("mlp", 2), ("mlp", 3), ("cnn", 2), ("cnn", 3)])
def test_digits_private_matches_plaintext(digits, kind, n):
    nets, data = digits
    net, (x, y) = nets[kind], data[kind]
    with torch.no_grad():
        plain = net(torch.from_numpy(x)).argmax(1).numpy()

    def prog(rt):
        pm = mnn.from_torch(net if rt.rank == 0 else None, torch.from_numpy(x[:1]) if rt.rank == 0 else None,
                            src=0, rt=rt)
        return pm.infer(x if rt.rank == 1 else None, data_owner=1, batch_size=120)

    logits = run_parties(prog, n, timeout=60)[1]
    agree = int((logits.argmax(1) == plain).sum())
    print(f"\ndigits {kind} N={n}: agreement {agree}/360, private accuracy "
          f"{int((logits.argmax(1) == y).sum())}/360, plaintext {int((plain == y).sum())}/360")
    assert logits.shape == (360, 10)
    assert agree >= 357


# ------------------------------------------------------------- ResNet-18

def test_resnet18_graph():
    torch.manual_seed(0)
    model = _randomize_bn(ResNet18())
    graph, arrays = mnn.trace(model, torch.zeros(1, 3, 32, 32))
    ops = graph.op_counts()
    assert ops["conv2d"] == 20 and ops["linear"] == 1 and "affine" not in ops  # every BN folded
    assert ops["relu"] == 17 and ops["add"] == 8 and ops["max_pool2d"] == 1
    # torchvision's 11,689,512 parameters, less each BatchNorm's (gamma, beta), plus the folded conv biases
    assert graph.param_count == sum(a.size for a in arrays) == 11_689_512 - 4800


@needs_cmp
def test_resnet18_matches_plaintext():
    torch.manual_seed(0)
    model = _randomize_bn(ResNet18())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = model(x).double().numpy()
    (got,) = run_parties(_run_models, 2, [model], [x], 0, 1, timeout=60)[1]
    err = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    print(f"\nResNet-18 1x3x32x32: max |MPC - torch| = {err:.2e} (max |logit| {scale:.2f})")
    assert err <= APPROX_TOL * max(1.0, scale)


def test_mpcrt_nn_is_reachable_as_an_attribute():
    """`import mpcrt` then `mpcrt.nn.from_torch` (as the README writes it) works in a fresh interpreter."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "import mpcrt; print(mpcrt.nn.from_torch.__name__)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "from_torch", r.stderr


# ------------------------------------------------- generated from the op registry
class _Calls(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, v):
        return self.fn(v)


@pytest.mark.parametrize("name", sorted(mnn.ops.ELEMENTWISE))
def test_every_registry_activation_imports_as_its_op(name):
    """Each elementwise activation of the registry imports as its IR op from every torch form it
    names (torch.X, F.X, Tensor.X, nn.X) and replays torch in plaintext (the tracer's self-check)."""
    op = mnn.ops.ELEMENTWISE[name]
    x = torch.rand(2, 5) * 3 + 0.5  # positive: sqrt/log/reciprocal
    forms = []
    for t in op.method.torch:
        forms += [_Calls(getattr(ns, t)) for ns in (torch, F) if hasattr(ns, t)]
        forms += [_Calls(lambda v, t=t: getattr(v, t)())] if hasattr(torch.Tensor, t) else []
        forms += [cls() for n, cls in mnn.ops.module_classes(nn) if n == name]
    assert forms, f"{name}: no torch form"
    for model in forms:
        g, _ = mnn.trace(model, x)
        assert [n["op"] for n in g.nodes] == ["input", name], model
        assert list(g.nodes[1]["args"]) == ["input", *op.method.params]


def test_a_method_record_is_one_registry_entry():
    """The consumption of Method records (mpcrt.tensor.METHODS after issue 18): an activation with torch
    names becomes an IR op with the protocol function's defaults; names written by hand keep their entry."""
    def softsign(x, scale=1.0):
        return x

    ops = mnn.ops.elementwise_ops({"softsign": mnn.ops.Method(softsign, ("softsign",), ("scale",)),
                                   "softmax": mnn.ops.Method(softsign, ("softmax",), ("dim",)),
                                   "ltz": mnn.ops.Method(softsign)})
    assert list(ops) == ["softsign"]
    assert str(ops["softsign"].sig) == "(input, scale=1.0)" and ops["softsign"].method.fn is softsign
    assert "Softsign" not in mnn.SUPPORTED["modules"] and "GELU" in mnn.SUPPORTED["modules"]


def test_nn_modules_import_one_way():
    """No import cycle among mpcrt.nn's modules, function-local imports included."""
    import ast

    pkg = ROOT / "mpcrt" / "nn"
    deps = {}
    for p in pkg.glob("*.py"):
        tree = ast.parse(p.read_text())
        deps[p.stem] = {n.module.rsplit(".", 1)[-1] for n in ast.walk(tree)
                        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mpcrt.nn.")}
    order: list[str] = []

    def visit(m, path):
        assert m not in path, f"import cycle: {' -> '.join(path + [m])}"
        if m not in order:
            for d in sorted(deps.get(m, ())):
                visit(d, path + [m])
            order.append(m)

    for m in sorted(deps):
        visit(m, [])

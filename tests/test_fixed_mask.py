"""Weights masked once (protocols.fixedmask): the dealer's fixed-mask tuples against exact
integers, W - B opened once per model and never per call (counted), a call's bytes down
to its activations' openings (from the transport's counts), and Linear, Conv2d and
attention results against float64 torch at N = 2 and 3.

Tolerances: as tests/test_nn.py (linear layers 1e-3) and tests/test_nn_attention.py
(softmax, layer norm: 5e-3).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import mpcrt.nn as mnn
from mpcrt import correlations
from mpcrt.errors import DealerError
from mpcrt.kernels import ring
from mpcrt.kernels.prg import PRG
from mpcrt.launch.inprocess import run_parties
from mpcrt.protocols import fixedmask
from mpcrt.protocols.beaver import ProductSpec
from mpcrt.protocols.dealt import split

LINEAR_TOL = 1e-3
ATTENTION_TOL = 5e-3
HEADER_MAX = 128  # bytes of one frame's header (the transports count them in bytes_sent)


# ------------------------------------------------------ the dealer's tuples
def _deal(prgs, stream: int, kind: str, p: dict) -> dict[str, np.ndarray]:
    """Every party's arrays of request `stream` ({name: [share of party i]}), the
    corrected party's corrections from correlations.deal."""
    private = PRG(b"\x07" * 16)
    corr = correlations.deal(prgs, lambda s, shape: private.ring(s, [shape])[0], stream, kind, p)
    shares = [correlations.expand_party(prg, stream, kind, p, corrected=i == 0) for i, prg in enumerate(prgs)]
    shares[0] = {**shares[0], **split(corr, correlations.kind(kind).corrected(p))}
    return {k: [s[k] for s in shares] for k in shares[0]}


def _sum(parts: list, how: str = "a") -> np.ndarray:
    out = np.array(parts[0], np.int64)
    for s in parts[1:]:
        out = out + np.asarray(s, np.int64)
    return out.astype(np.uint32).astype(np.int64) if how == "a32" else out


def _ints(draw, shape) -> np.ndarray:
    n = int(np.prod(shape))
    vals = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    return np.array(vals, np.int64).reshape(shape)


products = st.one_of(
    st.tuples(st.just("matmul"), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    st.tuples(st.just("conv2d"), st.integers(1, 2), st.sampled_from([1, 2]), st.integers(0, 1)),
)


@settings(max_examples=25, deadline=None)
@given(prod=products, n=st.sampled_from([2, 3]), f=st.sampled_from([0, 16, 40]), data=st.data())
def test_fixed_mask_tuples_are_exact(prod, n, f, data):
    """[c] + d [B] + [x] E sums to op(x, W) exactly (mod 2^64) for the dealer's tuple of a
    fixed mask B dealt requests earlier; truncating kinds: c + r, r >> f, msb r."""
    if prod[0] == "matmul":
        _, m, k, o = prod
        spec = ProductSpec("matmul", (m, k), (k, o), f)
        op = np.matmul
    else:
        _, b, groups, pad = prod
        spec = ProductSpec("conv2d", (b, 2 * groups, 4, 4), (2 * groups, 2, 2, 2), f, (1, 1), (pad, pad), (1, 1),
                           groups)
        op = lambda u, v: ring.conv2d(u, v, spec.stride, spec.padding, spec.dilation, spec.groups)  # noqa: E731
    prgs = [PRG(bytes([i + 1]) * 16) for i in range(n)]
    mstream = data.draw(st.integers(0, 5))
    stream = mstream + data.draw(st.integers(1, 5))
    assert _deal(prgs, mstream, "wmask", {"shape": list(spec.b)}) == {}  # the dealer does nothing at load
    bshares = [prg.words(mstream, int(np.prod(spec.b))).reshape(spec.b).copy() for prg in prgs]  # as `mask`
    B = _sum(bshares)
    W, x = _ints(data.draw, spec.b), _ints(data.draw, spec.a)
    E = W - B  # opened once
    t = _deal(prgs, stream, fixedmask.PREFIX + spec.kind, {**spec.to_wire(), "mask": mstream})
    A = _sum(t["a"])
    xs = [_ints(data.draw, spec.a) for _ in range(n - 1)]
    xs = [x - _sum(xs)] + xs if xs else [x]  # [x]: random shares
    d = x - A  # the only opening of a call
    c_name = "cr" if f else "c"
    z = sum(op(d, bshares[i]) + op(xs[i], E) + t[c_name][i] for i in range(n))
    if not f:
        assert np.array_equal(z, op(x, W))
        return
    r = z - op(x, W)  # c + r - c
    assert np.array_equal(_sum(t["r_hi"]), ring.lshr(r, f))
    how = "a32" if f <= 32 else "a"
    assert np.array_equal(_sum(t["r_msb"], how), ring.msb(r).astype(np.uint32).astype(np.int64) if how == "a32"
                          else ring.msb(r))


def test_the_dealer_refuses_a_mask_that_does_not_come_first():
    prgs = [PRG(b"\1" * 16), PRG(b"\2" * 16)]
    p = {**ProductSpec("matmul", (2, 3), (3, 4)).to_wire(), "mask": 5}
    with pytest.raises(DealerError, match="a mask comes first"):
        _deal(prgs, 5, "fm_matmul", p)
    with pytest.raises(DealerError, match="fixed-mask product"):
        correlations.kind("fm_matmul").own({**p, "mask": -1})
    with pytest.raises(DealerError, match="more than"):
        correlations.kind("wmask").own({"shape": [2**40]})
    with pytest.raises(DealerError, match="weight mask"):
        correlations.kind("wmask").corrected({"shape": "x"})


# ----------------------------------------------------------- whole models
def _session(rt, net, x, calls: int, mask: bool | None, preprocess: bool = False):
    opens: list[str] = []
    real_open = rt.open

    def counting_open(shares, tag="open", donate=False):
        opens.append(tag)
        return real_open(shares, tag, donate)

    rt.open = counting_open
    pm = mnn.from_torch(net if rt.rank == 0 else None, x if rt.rank == 0 else None, src=0, rt=rt, mask_weights=mask)
    xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
    at_load = opens.count("wmask")
    outs, sent = [], []
    for _ in range(calls):
        if preprocess:
            rt.preprocess(lambda: pm(xs))
        s0 = rt.stats()["bytes_sent"]
        y = pm(xs)
        sent.append(rt.stats()["bytes_sent"] - s0)
        outs.append(y.reveal())
    scope = rt.stats()["by_op"].get("nn.mask_weights", {})
    return {"outs": outs, "sent": sent, "at_load": at_load, "wmask_opens": opens.count("wmask"),
            "mask_openings": pm.mask_openings, "scope_calls": scope.get("calls")}


def _ref(net, x) -> np.ndarray:
    with torch.no_grad():
        return net(x).double().numpy()


class Convs(nn.Module):
    """Conv2d as today's ConvTriple supports it (stride, padding, dilation, groups), a
    weight used twice, and a Linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False)
        self.fc = nn.Linear(8 * 4 * 4, 6)

    def forward(self, x):
        y = self.c2(self.c1(x))
        y = self.c2(y)  # the same weight: one mask
        return self.fc(y.flatten(1))


@pytest.mark.parametrize("n", [2, 3])
def test_conv_and_linear_match_float64_and_mask_once(n):
    torch.manual_seed(3)
    net, x = Convs().double().eval(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    res = run_parties(_session, n, net, x, 3, True)
    ref = _ref(net, x)
    for r in res:
        assert r["at_load"] == r["wmask_opens"] == 1  # W - B opened once per model, never per call
        assert r["mask_openings"] == r["scope_calls"] == 1
        for out in r["outs"]:
            assert float(np.abs(out - ref).max()) <= LINEAR_TOL
    assert len(set(res[0]["sent"])) == 1  # every call sends the same


def test_masking_can_be_turned_off():
    torch.manual_seed(4)
    net, x = Convs().double().eval(), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    on, off = run_parties(_session, 2, net, x, 1, True)[0], run_parties(_session, 2, net, x, 1, False)[0]
    assert off["wmask_opens"] == off["mask_openings"] == 0 and off["scope_calls"] is None
    weights = net.c1.weight.numel() + 2 * net.c2.weight.numel() + net.fc.weight.numel()  # c2 used twice
    # the per-call weight openings are gone (as many messages; their headers may differ by a few bytes)
    assert abs(off["sent"][0] - on["sent"][0] - 8 * weights) <= 64
    for r in (on, off):
        assert float(np.abs(r["outs"][0] - _ref(net, x)).max()) <= LINEAR_TOL


@pytest.mark.parametrize("n", [2, 3])
def test_a_call_sends_only_its_activations(n):
    """A Linear layer: the input's masked opening and the output's reveal, no weight bytes."""
    torch.manual_seed(5)
    net, x = nn.Linear(40, 30, bias=False).double().eval(), torch.randn(4, 40, dtype=torch.float64)
    res = run_parties(_session, n, net, x, 2, None)  # None: the default, masked
    for r in res:
        for sent in r["sent"]:  # X - A only (the reveal comes after), and one frame header per peer
            assert 0 <= sent - 8 * (n - 1) * x.numel() <= HEADER_MAX * (n - 1)
        assert r["wmask_opens"] == 1
        assert float(np.abs(r["outs"][-1] - _ref(net, x)).max()) <= LINEAR_TOL


def test_preprocessed_calls_use_the_fixed_masks():
    torch.manual_seed(6)
    net, x = Convs().double().eval(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    r = run_parties(_session, 2, net, x, 2, True, True)[0]
    assert r["wmask_opens"] == 1
    for out in r["outs"]:
        assert float(np.abs(out - _ref(net, x)).max()) <= LINEAR_TOL


@pytest.mark.parametrize("n", [2, 3])
def test_attention_projections_are_masked_once(n):
    torch.manual_seed(7)
    net = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    res = run_parties(_session, n, net, x, 2, True, timeout=120)
    g, _ = mnn.trace(net, x[:1])
    linears = sum(1 for nd in g.nodes if nd["op"] == "linear")
    assert linears >= 4  # q/k/v (fused or not), out, and the feed-forward pair
    for r in res:
        assert r["wmask_opens"] == 1
        for out in r["outs"]:
            assert float(np.abs(out - _ref(net, x)).max()) <= ATTENTION_TOL


def test_mask_weights_twice_opens_nothing_more():
    torch.manual_seed(8)
    net, x = nn.Linear(6, 3).double().eval(), torch.randn(2, 6, dtype=torch.float64)

    def fn(rt):
        pm = mnn.from_torch(net if rt.rank == 0 else None, x if rt.rank == 0 else None, src=0, rt=rt)
        first = pm.mask_weights()
        masks = [o["weight"] for o in pm._masked.values()]
        return first, pm.mask_openings, {m.stream for m in masks}

    for first, openings, streams in run_parties(fn, 2):
        assert first == 1 and openings == 1 and len(streams) == 1


@pytest.mark.parametrize("n", [2, 3])
def test_truncated_fixed_mask_products(n):
    """fixedmask.matmul / conv2d with the fused truncation (fm_*_trunc), on a mask made by
    fixedmask.mask: within an ulp or two of float64, one opening of W - B for both weights."""
    rng = np.random.default_rng(9)
    w1, x1 = rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, (4, 5))
    w2, x2 = rng.uniform(-1, 1, (4, 2, 3, 3)), rng.uniform(-1, 1, (1, 4, 6, 6))

    def fn(rt):
        ws = [rt.share(w if rt.rank == 0 else None, src=0) for w in (w1, w2)]
        xs = [rt.share(x if rt.rank == 1 else None, src=1) for x in (x1, x2)]
        m1, m2 = fixedmask.mask(rt, [w.share for w in ws], rt.precision)
        f = rt.precision
        y1 = fixedmask.matmul(rt, xs[0].share, m1, shift=f)
        y2 = fixedmask.conv2d(rt, xs[1].share, m2, 2, 1, 1, 2, shift=f)
        return [xs[0]._new(y, f).reveal() for y in (y1, y2)], m1.stream != m2.stream

    ref2 = torch.nn.functional.conv2d(torch.tensor(x2), torch.tensor(w2), None, 2, 1, 1, 2).numpy()
    for (y1, y2), distinct in run_parties(fn, n):
        assert distinct
        assert float(np.abs(y1 - x1 @ w1).max()) <= LINEAR_TOL
        assert float(np.abs(y2 - ref2).max()) <= LINEAR_TOL

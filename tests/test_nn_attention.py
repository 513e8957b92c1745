"""Attention under MPC: F.scaled_dot_product_attention (plain, causal, scaled, additive
mask), nn.MultiheadAttention (self and cross attention, batch_first or not, fused or
separate projections, with or without biases), nn.TransformerEncoderLayer (post- and
pre-norm, relu and gelu) and nn.TransformerEncoder, and hand-written attention with
public arithmetic on sizes (head_dim ** -0.5, minGPT's 1 / math.sqrt(k.size(-1)) with a softmax
written out as exp / sum), against torch in float64.

Tolerance: softmax, layer norm and GELU are approximations (mpcrt.protocols: exp, normalize, activations):
outputs of magnitude ~1 within 5e-3 (measured 5e-5 to 3e-4)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mpcrt.nn as mnn
from mpcrt.launch.inprocess import run_parties
from mpcrt.nn import UnsupportedLayerError

TOL = 5e-3


def _private(rt, model, x):
    pm = mnn.from_torch(model if rt.rank == 0 else None, x[:1] if rt.rank == 0 else None, src=0, rt=rt)
    xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
    return pm(xs).reveal(to=1)


def _check(model, x, n=2):
    model.eval()
    with torch.no_grad():
        ref = model(x).double().numpy()
    got = run_parties(_private, n, model, x, insecure=True, timeout=60)[1]
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err <= TOL, err
    return err


class HandWritten(nn.Module):
    """A GPT-style block written out: fused qkv, heads by view/transpose, scores scaled by
    a size-derived public number, causal mask by SDPA, residuals and LayerNorm."""

    def __init__(self, d=16, h=4, causal=False):
        super().__init__()
        self.h, self.causal = h, causal
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
        q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        if self.causal == "mingpt":  # minGPT's scale and a softmax written out (a shared quotient)
            e = ((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))).exp()
            y = (e / e.sum(dim=-1, keepdim=True)) @ v
        elif self.causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            a = (q @ k.transpose(-2, -1)) * (k.size(-1) ** -0.5)
            y = a.softmax(dim=-1) @ v
        return x + self.o(y.transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("causal", [False, True, "mingpt"])
def test_hand_written_attention(causal):
    torch.manual_seed(1)
    g, _ = mnn.trace(HandWritten(causal=causal), torch.randn(1, 6, 16))
    assert ("attention" in {n["op"] for n in g.nodes}) == (causal is True)
    _check(HandWritten(causal=causal), torch.randn(2, 6, 16))


class Sdpa(nn.Module):
    def __init__(self, scale=None, masked=False):
        super().__init__()
        self.l, self.scale, self.masked = nn.Linear(8, 24), scale, masked
        self.bias = nn.Parameter(torch.randn(5, 7))

    def forward(self, x):
        q, k, v = self.l(x).chunk(3, -1)
        k, v = k[:, :7], v[:, :7]  # 5 queries against 7 keys
        mask = self.bias if self.masked else None
        return F.scaled_dot_product_attention(q[:, :5], k, v, attn_mask=mask, scale=self.scale)


@pytest.mark.parametrize("scale, masked", [(None, False), (0.7, False), (None, True)])
def test_scaled_dot_product_attention(scale, masked):
    torch.manual_seed(2)
    _check(Sdpa(scale, masked), torch.randn(3, 9, 8))


class Mha(nn.Module):
    def __init__(self, batch_first=True, cross=False, bias=True, kdim=None):
        super().__init__()
        self.cross = cross
        self.kv = nn.Linear(12, kdim or 12)
        self.m = nn.MultiheadAttention(12, 3, batch_first=batch_first, bias=bias, kdim=kdim, vdim=kdim)

    def forward(self, x):
        if self.cross:
            kv = torch.tanh(self.kv(x))
            return self.m(x, kv, kv, need_weights=False)[0]
        out, _ = self.m(x, x, x)
        return out


@pytest.mark.parametrize("batch_first, cross, bias, kdim", [
    (True, False, True, None), (False, False, True, None), (True, True, False, None), (False, True, True, 6)])
def test_multihead_attention(batch_first, cross, bias, kdim):
    torch.manual_seed(3)
    x = torch.randn(2, 5, 12) if batch_first else torch.randn(5, 2, 12)
    _check(Mha(batch_first, cross, bias, kdim), x)


@pytest.mark.parametrize("norm_first, activation, n", [(False, "relu", 2), (True, "gelu", 2), (False, "gelu", 3)])
def test_transformer_encoder_layer(norm_first, activation, n):
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1, activation=activation,
                                       batch_first=True, norm_first=norm_first)
    _check(layer, torch.randn(2, 6, 16), n)


def test_transformer_encoder_stack_in_a_model():
    torch.manual_seed(5)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 16)
            layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=24, dropout=0.0)  # sequence first
            self.enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False)
            self.head = nn.Linear(16, 3)

        def forward(self, x):  # x: (T, B, 4)
            return self.head(self.enc(self.embed(x)).mean(0))

    g, _ = mnn.trace(Classifier().eval(), torch.randn(7, 1, 4))
    assert sum(n["op"] == "attention" for n in g.nodes) == 2
    _check(Classifier(), torch.randn(7, 2, 4))


def test_minus_infinity_causal_mask_buffer():
    """The standard causal mask (a buffer of -inf above the diagonal) imports as -1e9 and gives torch's output;
    a NaN weight, a boolean mask and a padding mask are still refused, each saying what to do instead."""
    class Causal(nn.Module):
        def __init__(self, t=5, fill=float("nan")):
            super().__init__()
            self.qkv = nn.Linear(8, 24)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(t))
            self.register_buffer("bad", torch.tensor([fill]))

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, -1)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask) + self.bad

    torch.manual_seed(4)
    model = Causal(fill=0.0)
    assert torch.isinf(model.mask).any()
    graph, arrays = mnn.trace(model.eval(), torch.randn(1, 5, 8))
    mask = arrays[[p["name"] for p in graph.params].index("mask")]
    assert mask.min() == -1e9 and np.isfinite(mask).all()
    _check(model, torch.randn(2, 5, 8))
    with pytest.raises(mnn.ModelImportError, match=r"NaN or \+infinity"):
        mnn.trace(Causal().eval(), torch.randn(1, 5, 8))

    class BoolMask(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, attn_mask=x[..., :5] > 0)

    with pytest.raises(UnsupportedLayerError, match="pass an additive float mask"):
        mnn.trace(BoolMask(), torch.randn(1, 5, 8))


def test_unsupported_attention_variants_are_named():
    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            out, w = self.m(x, x, x)
            return out + w.sum()

    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

        def forward(self, x):
            return self.layer(x, src_key_padding_mask=x[..., 0] > 0)

    x = torch.randn(1, 4, 8)
    with pytest.raises(UnsupportedLayerError, match="attention weights"):
        mnn.trace(Weights(), x)
    with pytest.raises(UnsupportedLayerError, match="masks are not supported"):
        mnn.trace(Padded().eval(), x)
    with pytest.raises(UnsupportedLayerError, match=r"exponent 0\.5 .*public integer"):
        mnn.trace(type("P", (nn.Module,), {"forward": lambda self, x: x ** 0.5})(), x)
    from mpcrt.nn.layers import TorchOps

    with pytest.raises(UnsupportedLayerError, match="integers 0..64"):  # a forged graph's fractional power of a tensor
        TorchOps().pow(torch.ones(3, dtype=torch.float64), 0.5)


def test_sizes_stay_integers_and_scale_from_sizes():
    """An integer power of a size is still an integer (a slice bound); a scale computed
    from sizes reaches scaled_dot_product_attention; a tanh GELU stays tanh."""

    class Sizes(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(4, 12)

        def forward(self, x):
            q, k, v = self.l(x).chunk(3, -1)
            y = F.scaled_dot_product_attention(q, k, v, scale=q.size(-1) ** -0.5 * 2)
            return y.flatten(1)[:, : x.shape[1] ** 2]

    torch.manual_seed(6)
    _check(Sizes(), torch.randn(2, 3, 4))
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation=nn.GELU(approximate="tanh"), batch_first=True)
    g, _ = mnn.trace(layer.eval(), torch.randn(1, 3, 8))
    assert [n["args"]["approximate"] for n in g.nodes if n["op"] == "gelu"] == ["tanh"]


def stochastic_depth(input, p, mode, training=True):
    """Stands in for torchvision.ops.stochastic_depth (the identity in eval mode)."""
    return input


stochastic_depth.__module__ = "torchvision.ops.stochastic_depth"
torch.fx.wrap("stochastic_depth")


class TinyViT(nn.Module):
    """torchvision's VisionTransformer pattern: size asserts, patches by a strided conv, a
    class token expanded to the batch, learned positions, MultiheadAttention blocks,
    stochastic depth (identity in eval), the class token's logits."""

    def __init__(self, d=16, classes=5):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 5, d) * 0.1)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        n, c, h, w = x.shape
        torch._assert(h == 8, "height")
        torch._assert(w == 8, "width")
        x = self.patch(x).reshape(n, -1, 4).permute(0, 2, 1)
        x = torch.cat([self.cls.expand(n, -1, -1), x], dim=1) + self.pos
        y = self.ln1(x)
        x = x + stochastic_depth(self.attn(y, y, y, need_weights=False)[0], 0.1, "row", self.training)
        x = x + self.mlp(self.ln2(x))
        return self.head(x[:, 0])


def test_vision_transformer_pattern():
    torch.manual_seed(7)
    g, _ = mnn.trace(TinyViT().eval(), torch.randn(1, 3, 8, 8))
    assert any(n["op"] == "expand" and isinstance(n["args"]["sizes"][0], dict) for n in g.nodes)  # the batch
    _check(TinyViT().train(), torch.randn(3, 3, 8, 8))  # import traces in eval mode: stochastic depth is the identity


class _Sdpa(nn.Module):
    def __init__(self, d, causal, scale):
        super().__init__()
        self.l, self.d, self.causal, self.scale = nn.Linear(d, 3 * d), d, causal, scale

    def forward(self, x):
        q, k, v = self.l(x).chunk(3, -1)
        return F.scaled_dot_product_attention(q, k[:, 1:], v[:, 1:], is_causal=self.causal, scale=self.scale)


@settings(max_examples=8, deadline=None)
@given(B=st.integers(1, 3), L=st.integers(2, 12), d=st.sampled_from([2, 4, 8]), causal=st.booleans(),
       scale=st.sampled_from([None, 0.25, 2.0]), spread=st.sampled_from([0.1, 1.0, 4.0]), seed=st.integers(0, 2**16))
def test_attention_property(B, L, d, causal, scale, spread, seed):
    """Random batch, query length L against L - 1 keys (causal masks top-left aligned, as
    torch), head sizes, scales and score spreads: within TOL of torch in float64."""
    torch.manual_seed(seed)
    _check(_Sdpa(d, causal, scale), torch.randn(B, L, d) * spread)


class RmsBlock(nn.Module):
    """A LLaMA-style pre-norm MLP: nn.RMSNorm (eps None: float32's epsilon; a learned weight), F.rms_norm
    with eps, SiLU gating."""

    def __init__(self, d=16):
        super().__init__()
        self.norm = nn.RMSNorm(d)
        self.up, self.gate, self.down = nn.Linear(d, 32), nn.Linear(d, 32), nn.Linear(32, d)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        h = self.norm(x)
        h = self.down(F.silu(self.gate(h)) * self.up(h))
        return F.rms_norm(x + h, (x.shape[-1],), eps=1e-6)


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="nn.RMSNorm needs torch >= 2.4")
def test_rms_norm_module_and_function():
    torch.manual_seed(3)
    g, _ = mnn.trace(RmsBlock(), torch.randn(1, 5, 16))
    assert [n["op"] for n in g.nodes].count("rms_norm") == 2
    x = torch.randn(2, 5, 16) * torch.tensor([0.05, 1.0, 30.0, 300.0, 3.0]).reshape(1, 5, 1)  # rows of all scales
    _check(RmsBlock(), x)


class NanoGptAttention(nn.Module):
    """nanoGPT's CausalSelfAttention as written there: B, T, C = x.size(), split, the minGPT scale, and
    the causal mask as a buffer sliced to T and applied with masked_fill(... == 0, -inf)."""

    def __init__(self, n_embd=16, n_head=4, block_size=8):
        super().__init__()
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


def test_nanogpt_causal_attention_with_its_sliced_mask_buffer():
    torch.manual_seed(5)
    g, _ = mnn.trace(NanoGptAttention(), torch.randn(1, 6, 16))
    assert "where" in {n["op"] for n in g.nodes}
    _check(NanoGptAttention(), torch.randn(2, 6, 16))

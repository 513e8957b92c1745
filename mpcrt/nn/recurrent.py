"""nn.LSTM, nn.GRU and nn.RNN imported as their steps, unrolled over the example's length.

Each layer and direction first projects every step's input at once (one Linear over
(N, T, I): one Beaver matmul), then runs T steps of ordinary IR ops, the recurrent weight
W_hh shared by all of them (masked once, so each step opens only h's mask):
- LSTM: gates = x_t W_ih^T + h W_hh^T + b; one sigmoid over all four gates, the cell
  gate's rows scaled by 2 at import so that tanh(g) = 2 sigmoid(2g) - 1 comes from the
  same call; c = f c + i tanh(g) as one elementwise product of [f, i] and [c, tanh(g)];
  h = o tanh(c).
- GRU: r, z = sigmoid(x_t W_i^T + h W_h^T + b) (one call), n = tanh(x_n + b_in + r (h W_hn^T
  + b_hn)), h = n + z (h - n).
- RNN: h = tanh or relu(x_t W_ih^T + b_ih + h W_hh^T + b_hh).
A bidirectional layer runs its two directions in the same steps (the backward one on the
reversed sequence, gates side by side, block-diagonal weights): no more rounds than one.
Per step and layer: the products (1 round each: h W_hh^T, then one elementwise product,
two for the LSTM) and the sigmoid/tanh rounds of mpcrt.protocols.exp; T steps cost T
times that, so the rounds grow with the sequence (a model for long sequences is better
as a Conv1d stack or a TransformerEncoder). Error: the sigmoid/tanh approximations'
(protocols/exp.py), carried through the steps (an LSTM/GRU state is a convex mix of
bounded values, so it does not grow).

Limits: eval mode, no initial state argument (zeros, as torch uses without one), no
proj_size; the sequence length is the example's (a different length needs a new import).
Where the time axis is the model input's dim 0 (sequence-first or unbatched input), the
graph's input shape is fixed (meta "input_fixed"): dim 0 is then not a free batch size.
Outputs as torch gives them: (output, (h_n, c_n)) for the LSTM, (output, h_n) otherwise.
"""
from __future__ import annotations

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.nn.fx_args import as_f64, only_feeding
from mpcrt.nn.ir import UnsupportedLayerError

_WHOLE = {"slice": [None, None, None]}


def _cols(lo: int, hi: int) -> list:
    """An index of the last dim's columns lo:hi of an (N, C) value."""
    return [_WHOLE, {"slice": [lo, hi, None]}]


class _Steps:
    """Emits the IR of one recurrent layer's steps (names: the fx node's, then layer, direction, step)."""

    def __init__(self, tr, n, what: str):
        self.tr, self.n, self.what = tr, n, what

    def op(self, op: str, tag: str, **args) -> dict:
        return self.tr.emit(op, args, f"{self.n.name}:{tag}", self.what)

    def part(self, x: dict, lo: int, hi: int, tag: str) -> dict:
        return self.op("getitem", tag, input=x, index=_cols(lo, hi))

    def product(self, a: dict, b: dict, tag: str) -> dict:
        return self.op("mul", tag, input=a, other=b)


class _ZeroState:
    """What the tracer makes of a zeros tensor used only as a recurrent state (never part of the IR)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ZERO_STATE"


ZERO_STATE = _ZeroState()
_ZERO_MAKERS = ("zeros", "zeros_like", "new_zeros")
_SAME_VALUE = ("to", "type_as", "float", "double", "detach", "contiguous")


def zero_states(gm, modules: dict) -> set:
    """The fx nodes that make zeros used only as the initial state of recurrent layers (torch.zeros(L, N, H),
    .to(x.device), ...): the import reads them as no state, which is what torch does with zeros."""
    import torch.nn as tnn

    def makes_zeros(n) -> bool:
        name = getattr(n.target, "__name__", n.target) if n.op in ("call_function", "call_method") else None
        return name in _ZERO_MAKERS or (n.op == "call_method" and name in _SAME_VALUE and bool(n.args)
                                        and getattr(n.args[0], "op", "") != "placeholder" and makes_zeros(n.args[0]))

    def state_only(n) -> bool:
        for u in n.users:
            rnn = u.op == "call_module" and isinstance(modules.get(u.target), tnn.RNNBase)
            if not ((rnn and (not u.args or u.args[0] is not n)) or (makes_zeros(u) and state_only(u))):
                return False
        return bool(n.users)

    zeros = {n for n in gm.graph.nodes if makes_zeros(n) and state_only(n)}
    # what only they read (x.size(0), x.device): not imported either
    return zeros | only_feeding(list(gm.graph.nodes), zeros, lambda n: n.op != "placeholder")


def _no_state(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_no_state(e) for e in v)
    return v is None or v is ZERO_STATE


def import_recurrent(tr, n, mod, t: str, what: str) -> list:
    """The IR value of an nn.LSTM / nn.GRU / nn.RNN call at fx node n: [output, [h_n, c_n]] or [output, h_n]."""
    args = list(n.args) + [n.kwargs[k] for k in ("input", "hx") if k in n.kwargs]
    if set(n.kwargs) - {"input", "hx"} or not args or len(args) > 2 or not _no_state(
            [tr.enc(v, n) for v in args[1:]]):
        raise UnsupportedLayerError(f"{what} at fx node '{n.name}' called with an initial state: call it with the "
                                    "input only, or with zeros (the state then starts at zero, as in torch)")
    n_input = args[0]
    if getattr(mod, "proj_size", 0):
        raise UnsupportedLayerError(f"{what} with proj_size={mod.proj_size} at fx node '{n.name}' (0 only)")
    tm = getattr(n_input, "meta", {}).get("tensor_meta")
    shape = tuple(tm.shape) if hasattr(tm, "shape") else None
    if shape is None or len(shape) not in (2, 3):
        got = "an input of unknown shape" if shape is None else f"a {len(shape)}-d input"
        raise ShapeError(f"{what} needs a (batch, seq, feature) or (seq, feature) input at fx node '{n.name}', "
                         f"got {got}")
    s = _Steps(tr, n, what)
    x = tr.enc(n_input, n)
    unbatched, bf = len(shape) == 2, bool(mod.batch_first)
    if unbatched:  # (T, I): one sequence, its own batch of 1
        x = s.op("unsqueeze", "batch", input=x, dim=0)
    elif not bf:
        x = s.op("transpose", "batch_first", input=x, dim0=0, dim1=1)
    steps = int(shape[0] if unbatched or not bf else shape[1])
    alt = tr.alt_shapes.get(n_input)  # the shapes with the model input's dim 0 one longer
    if alt is not None and len(alt) == len(shape) and alt[0 if unbatched or not bf else 1] != steps:
        tr.fixed_input = f"{what} at fx node '{n.name}' unrolls {steps} steps along the model input's dim 0"
    finals_h, finals_c = [], []
    for layer in range(mod.num_layers):
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        dirs = [[as_f64(getattr(mod, f"{p}_l{layer}{r}", None)) for p in names]
                for r in ("", "_reverse")[: 2 if mod.bidirectional else 1]]
        x, hs, cs = _layer(s, mod.mode, x, steps, int(mod.hidden_size), dirs, f"{t}.l{layer}", f"l{layer}")
        finals_h += hs
        finals_c += cs
    if unbatched:  # back to (T, H) and (layers x directions, H)
        out = tr.emit("squeeze", {"input": x, "dim": 0}, n.name, what)
        finals_h, finals_c = ([s.op("squeeze", f"{k}{i}", input=v, dim=0) for i, v in enumerate(vs)] if vs[0] else vs
                              for k, vs in (("h", finals_h), ("c", finals_c)))
    elif bf:
        out = tr.emit("identity", {"input": x}, n.name, what)
    else:
        out = tr.emit("transpose", {"input": x, "dim0": 0, "dim1": 1}, n.name, what)
    h_n = s.op("stack", "h_n", tensors=finals_h, dim=0)
    if mod.mode != "LSTM":
        return [out, h_n]
    return [out, [h_n, s.op("stack", "c_n", tensors=finals_c, dim=0)]]


def _weights(mode: str, ws: list, hid: int) -> tuple:
    """(W_ih, W_hh, the input side's bias or None, b_hn or None) of one direction; the LSTM's cell
    gate rows doubled (sigmoid(2 g) gives tanh(g)), the GRU's b_hn kept for r * (h W_hn^T + b_hn)."""
    w_ih, w_hh, b_ih, b_hh = ws
    bias = b_ih is not None
    b_x, b_hn = ((b_ih + b_hh) if bias else None), None
    if mode == "LSTM":
        scale = np.ones(4 * hid)
        scale[2 * hid: 3 * hid] = 2.0
        w_ih, w_hh = w_ih * scale[:, None], w_hh * scale[:, None]
        b_x = b_x * scale if bias else None
    elif mode == "GRU" and bias:
        b_x, b_hn = b_ih + np.concatenate([b_hh[: 2 * hid], np.zeros(hid)]), b_hh[2 * hid:]
    return w_ih, w_hh, b_x, b_hn


def _side_by_side(mats: list, gates: int, hid: int) -> np.ndarray:
    """Rows of each direction's (gates H, ...) matrix, gate by gate: [gate g: direction 0's H rows | 1's | ...]."""
    return np.concatenate([m.reshape(gates, hid, *m.shape[1:]) for m in mats], axis=1).reshape(
        gates * len(mats) * hid, *mats[0].shape[1:])


def _block(w: np.ndarray, d: int, n_dirs: int) -> np.ndarray:
    """w (rows, K) as the columns [d K, (d + 1) K) of a (rows, n_dirs K) matrix, zeros elsewhere."""
    out = np.zeros((w.shape[0], n_dirs * w.shape[1]))
    out[:, d * w.shape[1]: (d + 1) * w.shape[1]] = w
    return out


def _layer(s: _Steps, mode: str, x: dict, steps: int, hid: int, dirs: list, pname: str, tag: str) -> tuple:
    """(the (N, T, D H) outputs, [last h of each direction], [last c of each] or Nones) of one layer.

    Its D directions run together: step k runs the forward direction at time k and the backward
    one at time T - 1 - k, their gates side by side ([gate g: forward H | backward H]), with
    block-diagonal weights over [x_t | x_(T-1-t)] and [h_forward | h_backward]; so a bidirectional
    layer costs one direction's rounds (and twice its multiply-adds in the recurrent product)."""
    n_dirs, gates = len(dirs), {"LSTM": 4, "GRU": 3}.get(mode, 1)
    parts = [_weights(mode, ws, hid) for ws in dirs]
    tr = s.tr
    if n_dirs == 2:  # the backward direction reads the sequence from its end: x reversed along time, beside x
        rev = [s.op("getitem", f"{tag}:x_rev{i}", input=x, index=[_WHOLE, steps - 1 - i]) for i in range(steps)]
        x = s.op("cat", f"{tag}:x_both", tensors=[x, s.op("stack", f"{tag}:x_rev", tensors=rev, dim=1)], dim=-1)
    w_ih = _side_by_side([_block(p[0], d, n_dirs) for d, p in enumerate(parts)], gates, hid)
    w_hh = _side_by_side([_block(p[1], d, n_dirs) for d, p in enumerate(parts)], gates, hid)
    b_x = None if parts[0][2] is None else _side_by_side([p[2] for p in parts], gates, hid)
    xs = s.op("linear", f"{tag}:x", input=x, weight=tr.param(w_ih, pname + ".weight_ih"),
              bias=None if b_x is None else tr.param(b_x, pname + ".bias"))
    whh = tr.param(w_hh, pname + ".weight_hh")
    b_hn = None if parts[0][3] is None else tr.param(np.concatenate([p[3] for p in parts]), pname + ".bias_hn")
    width = n_dirs * hid  # each gate's block: every direction's H
    h = c = None
    outs: list = [[None] * steps for _ in range(n_dirs)]
    for k in range(steps):
        st = f"{tag}t{k}"
        xt = s.op("getitem", f"{st}:x", input=xs, index=[_WHOLE, k])
        gh = None if h is None else s.op("linear", f"{st}:h", input=h, weight=whh)
        if mode == "LSTM":
            h, c = _lstm_step(s, xt, gh, c, width, st)
        elif mode == "GRU":
            h = _gru_step(s, xt, gh, h, b_hn, width, st)
        else:
            pre = xt if gh is None else s.op("add", f"{st}:pre", input=xt, other=gh)
            h = s.op("tanh" if mode == "RNN_TANH" else "relu", f"{st}:h_new", input=pre)
        if n_dirs == 1:
            outs[0][k] = h
        else:
            outs[0][k] = s.part(h, 0, hid, f"{st}:h_fwd")
            outs[1][steps - 1 - k] = s.part(h, hid, 2 * hid, f"{st}:h_bwd")
    seqs = [s.op("stack", f"{tag}:seq{d}", tensors=o, dim=1) for d, o in enumerate(outs)]
    seq = seqs[0] if n_dirs == 1 else s.op("cat", f"{tag}:seq", tensors=seqs, dim=-1)
    if n_dirs == 1:
        return seq, [h], [c]
    finals = [[None if v is None else s.part(v, d * hid, (d + 1) * hid, f"{tag}:{nm}{d}") for d in range(2)]
              for v, nm in ((h, "h"), (c, "c"))]
    return seq, finals[0], finals[1]


def _lstm_step(s: _Steps, xt: dict, gh, c, hid: int, st: str) -> tuple:
    pre = xt if gh is None else s.op("add", f"{st}:gates", input=xt, other=gh)
    act = s.op("sigmoid", f"{st}:sig", input=pre)  # i, f, sigmoid(2 g), o
    i, f, o = (s.part(act, k * hid, (k + 1) * hid, f"{st}:{nm}") for k, nm in ((0, "i"), (1, "f"), (3, "o")))
    g2 = s.part(act, 2 * hid, 3 * hid, f"{st}:g2")
    g = s.op("sub", f"{st}:g", input=s.op("mul", f"{st}:2g2", input=g2, other=2.0), other=1.0)  # tanh(g)
    if c is None:
        c = s.product(i, g, f"{st}:c")
    else:  # f c + i g: both products in one
        fi = s.op("cat", f"{st}:fi", tensors=[f, i], dim=-1)
        cg = s.op("cat", f"{st}:cg", tensors=[c, g], dim=-1)
        both = s.product(fi, cg, f"{st}:fc_ig")
        c = s.op("add", f"{st}:c", input=s.part(both, 0, hid, f"{st}:fc"), other=s.part(both, hid, 2 * hid, f"{st}:ig"))
    h = s.product(o, s.op("tanh", f"{st}:tanh_c", input=c), f"{st}:h_new")
    return h, c


def _gru_step(s: _Steps, xt: dict, gh, h, b_hn, hid: int, st: str) -> dict:
    x_rz, x_n = s.part(xt, 0, 2 * hid, f"{st}:x_rz"), s.part(xt, 2 * hid, 3 * hid, f"{st}:x_n")
    if gh is None:  # h = 0
        rz, hn = s.op("sigmoid", f"{st}:rz", input=x_rz), b_hn
    else:
        pre = s.op("add", f"{st}:pre_rz", input=x_rz, other=s.part(gh, 0, 2 * hid, f"{st}:h_rz"))
        rz = s.op("sigmoid", f"{st}:rz", input=pre)
        hn = s.part(gh, 2 * hid, 3 * hid, f"{st}:h_n")
        hn = hn if b_hn is None else s.op("add", f"{st}:h_nb", input=hn, other=b_hn)
    r, z = s.part(rz, 0, hid, f"{st}:r"), s.part(rz, hid, 2 * hid, f"{st}:z")
    pre_n = x_n if hn is None else s.op("add", f"{st}:pre_n", input=x_n, other=s.product(r, hn, f"{st}:r_hn"))
    nn_ = s.op("tanh", f"{st}:n", input=pre_n)
    if h is None:  # h' = (1 - z) n
        return s.op("sub", f"{st}:h_new", input=nn_, other=s.product(z, nn_, f"{st}:zn"))
    diff = s.op("sub", f"{st}:h_minus_n", input=h, other=nn_)
    return s.op("add", f"{st}:h_new", input=nn_, other=s.product(z, diff, f"{st}:z_diff"))

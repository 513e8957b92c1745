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
from mpcrt.nn.fx_args import as_f64
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


ZERO_STATE = {"zero_state": True}  # what the tracer makes of a zeros tensor used only as a recurrent state
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
    for n in reversed(list(gm.graph.nodes)):  # what only they read (x.size(0), x.device): not imported either
        if n.op != "placeholder" and n.users and all(u in zeros for u in n.users):
            zeros.add(n)
    return zeros


def _no_state(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_no_state(e) for e in v)
    return v is None or v == ZERO_STATE


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
        outs = []
        for d in range(2 if mod.bidirectional else 1):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            ws = [as_f64(getattr(mod, p + sfx, None)) for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            seq, h, c = _direction(s, mod.mode, x, steps, int(mod.hidden_size), ws, bool(d), t + "." + sfx[1:],
                                   f"l{layer}{'r' if d else ''}")
            outs.append(seq)
            finals_h.append(h)
            finals_c.append(c)
        x = outs[0] if len(outs) == 1 else s.op("cat", f"l{layer}:out", tensors=outs, dim=2)
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


def _direction(s: _Steps, mode: str, x: dict, steps: int, hid: int, ws: list, reverse: bool, pname: str,
               tag: str) -> tuple:
    """(the (N, T, H) outputs, the last h, the last c or None) of one layer in one direction."""
    w_ih, w_hh, b_ih, b_hh = ws
    bias = b_ih is not None
    b_x = (b_ih + b_hh) if bias else None
    if mode == "LSTM":  # the cell gate's rows doubled: sigmoid(2 g) gives tanh(g)
        scale = np.ones(4 * hid)
        scale[2 * hid: 3 * hid] = 2.0
        w_ih, w_hh = w_ih * scale[:, None], w_hh * scale[:, None]
        b_x = b_x * scale if bias else None
    elif mode == "GRU" and bias:  # b_hn stays inside r * (h W_hn^T + b_hn)
        b_x = b_ih + np.concatenate([b_hh[: 2 * hid], np.zeros(hid)])
    tr = s.tr
    xs = s.op("linear", f"{tag}:x", input=x, weight=tr.param(w_ih, pname + ".weight_ih"),
              bias=None if b_x is None else tr.param(b_x, pname + ".bias"))
    whh = tr.param(w_hh, pname + ".weight_hh")
    b_hn = tr.param(b_hh[2 * hid:], pname + ".bias_hn") if mode == "GRU" and bias else None
    h = c = None
    hs: list = [None] * steps
    for i in reversed(range(steps)) if reverse else range(steps):
        st = f"{tag}t{i}"
        xt = s.op("getitem", f"{st}:x", input=xs, index=[_WHOLE, i])
        gh = None if h is None else s.op("linear", f"{st}:h", input=h, weight=whh)
        if mode == "LSTM":
            h, c = _lstm_step(s, xt, gh, c, hid, st)
        elif mode == "GRU":
            h = _gru_step(s, xt, gh, h, b_hn, hid, st)
        else:
            pre = xt if gh is None else s.op("add", f"{st}:pre", input=xt, other=gh)
            h = s.op("tanh" if mode == "RNN_TANH" else "relu", f"{st}:h_new", input=pre)
        hs[i] = h
    return s.op("stack", f"{tag}:seq", tensors=hs, dim=1), h, c


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

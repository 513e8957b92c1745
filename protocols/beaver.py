"""Beaver multiplication of additive shares: elementwise, matmul and conv2d.

Computes [x * y] (or [x @ y], [conv(x, w)]) from a dealer triple ([a], [b], [c = ab]):
open d = x - a and e = y - b together (1 round), then
    [z] = [c] + d * [b] + [x] * e,
which sums to ab + (x - a)b + x(y - b) = xy. This form needs no public term and only
two local products per party (the textbook form needs three).
Rounds: 1 (+1 if `shift` asks for the truncation of protocols.truncation).
Bytes sent per party: 8 (|x| + |y|)(N - 1), plus 8 |z| (N - 1) for the truncation.
The product carries the sum of the operands' fractional bits; `shift` truncates it.
A product with truncation uses one fused tuple ([a], [b], [ab + r], [r >> f], [msb r];
correlations.Truncated): the share of z is opened as z + r directly. Dealer requests go
out before the first round, so the dealer computes while the parties exchange;
the corrected party reads its corrections last for the same reason.
Reference: D. Beaver, "Efficient multiparty protocols using circuit randomization",
CRYPTO 1991.
"""
from __future__ import annotations

import numpy as np

from mpcrt.kernels import beaver as fb
from mpcrt.kernels import ring
from mpcrt.protocols import truncation
from mpcrt.protocols.rounds import Open


def _beaver(rt, x: np.ndarray, y: np.ndarray, kind: str, op, out_shape: tuple, shift: int, op2=None,
            **params) -> np.ndarray:
    """op(x, y) of shares by a dealer triple; op2(a1, b1, a2, b2) = op(a1, b1) + op(a2, b2) in
    one call where the kernels fuse them (matmul, conv: one GPU round trip)."""
    if shift:  # one dealer tuple serves the product and its truncation (correlations.Truncated)
        kind, params["f"] = kind + "_trunc", shift
    mat = rt.dealer.request(kind, a=x.shape, b=y.shape, **params)
    if getattr(rt, "_dry", False):  # shape-only planning run: skip the local products
        return np.zeros(out_shape, np.int64)
    own = mat.own()
    masked = np.empty(x.size + y.size, np.int64)  # both openings in one buffer: no concatenation copy
    np.subtract(x, own["a"], out=masked[: x.size].reshape(x.shape))
    np.subtract(y, own["b"], out=masked[x.size :].reshape(y.shape))
    (de,) = rt.open([masked], "beaver", donate=True)
    d, e = de[: x.size].reshape(x.shape), de[x.size :].reshape(y.shape)
    offset = truncation.OFFSET if rt.rank == 0 else np.int64(0)
    if shift and op is np.multiply and x.shape == y.shape:  # the masked product in one pass (kernels.beaver)
        z = np.empty(out_shape, np.int64)
        fb.product_masked(d.reshape(-1), own["b"].reshape(-1), x.reshape(-1), e.reshape(-1),
                          mat.get()["cr"].reshape(-1), offset, z.reshape(-1))
    else:
        if op2 is not None:  # both products in one call: the second adds in place (on the GPU: one download)
            z = op2(d, own["b"], x, e)
        else:
            z = op(d, own["b"])
            z += op(x, e)
        if not shift:
            z += mat.get()["c"]
            return z
        z += mat.get()["cr"]  # the product masked by the dealer's r: opened as the truncation's c
        z += offset
    (c,) = rt.open([z], "trunc", donate=True)
    return truncation.finish(rt, c, shift, mat)


def mul(rt, x: np.ndarray, y: np.ndarray, shift: int = 0) -> np.ndarray:
    """[x * y] elementwise (numpy broadcasting), then >> shift."""
    return _beaver(rt, x, y, "triple", np.multiply, tuple(np.broadcast_shapes(x.shape, y.shape)), shift)


def matmul(rt, x: np.ndarray, y: np.ndarray, shift: int = 0) -> np.ndarray:
    """[x @ y] with torch.matmul semantics (2-D, batched, broadcast), then >> shift."""
    return _beaver(rt, x, y, "matmul", ring.matmul, ring.matmul_shape(x.shape, y.shape), shift, ring.matmul2)


def conv2d(rt, x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1, shift: int = 0) -> np.ndarray:
    """[conv2d(x, w)] for NCHW input and OIHW weight, then >> shift."""
    s, p, d = list(ring._pair(stride)), list(ring._pair(padding)), list(ring._pair(dilation))
    out = ring.conv2d_shape(x.shape, w.shape, s, p, d)
    return _beaver(
        rt, x, w, "conv2d", lambda u, v: ring.conv2d(u, v, s, p, d, groups), out, shift,
        lambda u1, v1, u2, v2: ring.conv2d2(u1, v1, u2, v2, s, p, d, groups),
        stride=s, padding=p, dilation=d, groups=groups,
    )


def request(rt, kind: str, a: tuple, b: tuple):
    """Ask the dealer for a product tuple ('triple', 'matmul') ahead of use."""
    return rt.dealer.request(kind, a=tuple(a), b=tuple(b))


def mul_steps(rt, x: np.ndarray, y: np.ndarray, mat=None):
    """Generator (1 round, for protocols run in lockstep, protocols.rounds): [x * y]
    elementwise, no truncation (`mat`: a triple requested ahead with `request`)."""
    mat = mat if mat is not None else request(rt, "triple", x.shape, y.shape)
    own = mat.own()
    (d, e), _ = yield Open(add=[x - own["a"], y - own["b"]], fresh=True)
    z = d * own["b"]
    z += x * e
    z += mat.get()["c"]
    return z

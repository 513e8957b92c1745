"""Beaver multiplication of additive shares: elementwise, matmul and conv2d, both halves.

Computes [x * y] (or [x @ y], [conv(x, w)]) from a dealer triple ([a], [b], [c = ab]):
open d = x - a and e = y - b together (1 round), then
    [z] = [c] + d * [b] + [x] * e,
which sums to ab + (x - a)b + x(y - b) = xy. This form needs no public term and only
two local products per party (the textbook form needs three).
The product carries the sum of the operands' fractional bits; `shift` truncates it.
A product with truncation uses one fused tuple ([a], [b], [ab + r], [r >> f], [msb r];
`Truncated`): the share of z is opened as z + r directly. Dealer requests go out
before the first round, so the dealer computes while the parties exchange; the
corrected party reads its corrections last for the same reason.

Rounds: 1 (+1 if `shift` asks for the truncation of protocols.truncation).
Bytes per element per peer: 8 (|x| + |y|) per product, + 8 |z| for the truncation, the
  same for every N (a party sends this to each of its N - 1 peers).
Dealer words per element: 3 per triple element (|a| + |b| + |c|: 2 of them expanded by
  every party from its seed, |c| sent to the corrected party), + 2 per output element
  for the truncation (1.5 when f <= 32); independent of N.
Error: none for the product; the truncation's 0 or +1 ulp.
Reference: docs/design.md, 'Protocols' (Beaver products); D. Beaver, "Efficient
  multiparty protocols using circuit randomization", CRYPTO 1991.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mpcrt.kernels import ring
from mpcrt.protocols import truncation
from mpcrt.protocols.dealt import Kind, Shape, from_wire, msb_how, pad_odd_a32, split, wire_int, wire_ints, wire_shape
from mpcrt.protocols.rounds import Open

OPS = ("triple", "matmul", "conv2d")


@dataclass(frozen=True)
class ProductSpec:
    """One Beaver product tuple as the parties request it and the dealer deals it: `op`
    'triple' (elementwise, broadcasting), 'matmul' (torch.matmul semantics) or 'conv2d'
    (NCHW input, OIHW weight, with its stride, padding, dilation and groups), operand
    shapes a and b, and f > 0 for a fused truncation by f bits (kind op + '_trunc')."""

    op: str
    a: Shape
    b: Shape
    f: int = 0
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"product op must be one of {OPS}, got {self.op!r}")
        if not 0 <= self.f < 64:
            raise ValueError(f"truncation bits f={self.f} out of range [0, 63]")
        if self.op == "conv2d":
            if len(self.a) != 4 or len(self.b) != 4 or self.groups < 1 or min(self.stride + self.dilation) < 1 \
                    or min(self.padding) < 0 or self.b[1] * self.groups != self.a[1] or self.b[0] % self.groups:
                raise ValueError(f"conv2d tuple needs 4-d operands whose channels fit groups={self.groups}, "
                                 f"stride and dilation >= 1, padding >= 0; got a={self.a} b={self.b}")
        if min(self.out_shape, default=1) < 0:
            raise ValueError(f"operands {self.a} and {self.b} give no output")

    @property
    def kind(self) -> str:
        """The dealer kind: op, or op + '_trunc' with a fused truncation."""
        return self.op + "_trunc" if self.f else self.op

    @cached_property
    def out_shape(self) -> Shape:
        if self.op == "triple":
            return tuple(np.broadcast_shapes(self.a, self.b))
        if self.op == "matmul":
            return ring.matmul_shape(self.a, self.b)
        return ring.conv2d_shape(self.a, self.b, self.stride, self.padding, self.dilation)

    def to_wire(self) -> dict:
        p = {"a": list(self.a), "b": list(self.b)}
        if self.op == "conv2d":
            p.update(stride=list(self.stride), padding=list(self.padding), dilation=list(self.dilation),
                     groups=self.groups)
        if self.f:
            p["f"] = self.f
        return p

    @classmethod
    def from_wire(cls, p: dict, op: str, truncated: bool) -> "ProductSpec":
        conv = {}
        if op == "conv2d":
            conv = dict(stride=wire_ints(p, "stride", 2), padding=wire_ints(p, "padding", 2),
                        dilation=wire_ints(p, "dilation", 2), groups=wire_int(p, "groups", lo=1))
        f = wire_int(p, "f", lo=1, hi=63) if truncated else 0
        return cls(op, wire_shape(p, "a"), wire_shape(p, "b"), f, **conv)


# ------------------------------------------------------------ the dealer's half
class Product(Kind):
    """A Beaver product tuple: own [a], [b]; corrected [c = op(a, b)]."""

    op = ""

    def spec(self, p: dict, truncated: bool = False) -> ProductSpec:
        what = f"{self.op} product" + (" with truncation" if truncated else "")  # one parser per name
        return from_wire(lambda q: ProductSpec.from_wire(q, self.op, truncated), p, what)

    def own(self, p):
        s = self.spec(p)
        return [("a", s.a), ("b", s.b)]

    def corrected(self, p):
        return [("c", self.spec(p).out_shape, "a")]


class Triple(Product):
    """Elementwise Beaver triple: c = a * b (broadcasting)."""

    op = "triple"

    def deal(self, p, own, private, ops):
        return {"c": own["a"] * own["b"]}

    def deal_two(self, p, s0, s1, out, private, ops) -> bool:
        if tuple(p["a"]) != tuple(p["b"]):
            return False  # broadcasting: the generic path
        ops.beaver.deal_triple(s0["a"].reshape(-1), s1["a"].reshape(-1), s0["b"].reshape(-1), s1["b"].reshape(-1),
                       s1["c"].reshape(-1), out)
        return True


class MatmulTriple(Product):
    """Matrix Beaver triple: c = a @ b with torch.matmul semantics (batched, broadcast)."""

    op = "matmul"

    def deal(self, p, own, private, ops):
        return {"c": ops.matmul(own["a"], own["b"])}


class ConvTriple(Product):
    """Convolution Beaver triple: c = conv2d(a, b) (NCHW, OIHW)."""

    op = "conv2d"

    def deal(self, p, own, private, ops):
        s = self.spec(p)
        return {"c": ops.conv2d(own["a"], own["b"], s.stride, s.padding, s.dilation, s.groups)}


class Truncated(Kind):
    """A Beaver product kind (elementwise, matmul, conv2d) fused with a truncation tuple:
    [c + r] in place of [c] (r the dealer's private randomness, so [r] needs no shares of
    its own: the parties open their product's share + [c + r] + 2^62 directly), [r >> f],
    [msb r] as protocols.truncation's TruncPair; params: the base kind's and f. One request
    and one masked opening of the product instead of a triple and a pair, and 8 bytes less
    PRG output per element per party and per dealer share."""

    def __init__(self, base: Product):
        self.base = base

    def own(self, p):
        return self.base.own(p)

    def corrected(self, p):
        s = self.base.spec(p, truncated=True)
        return [("cr", s.out_shape, "a"), ("r_hi", s.out_shape, "a"), ("r_msb", s.out_shape, msb_how(s.f))]

    def deal(self, p, own, private, ops):
        f = self.base.spec(p, truncated=True).f
        c = self.base.deal(p, own, private, ops)["c"]
        r = private(c.shape)
        return {"cr": c + r, "r_hi": ring.lshr(r, f), "r_msb": ring.msb(r)}


class TripleTrunc(Truncated):
    """Truncated elementwise triple, with one fused dealer pass when a and b have the same shape."""

    def __init__(self):
        super().__init__(Triple())

    def deal_two(self, p, s0, s1, out, private, ops) -> bool:
        s = self.base.spec(p, truncated=True)
        if s.a != s.b:
            return False  # broadcasting: the generic path
        corr = self.corrected(p)
        pad_odd_a32(out, corr)
        v = split(out, corr)
        r = private(s.a).reshape(-1)
        flat = lambda d, nm: d[nm].reshape(-1)  # noqa: E731
        ops.beaver.deal_triple_trunc(flat(s0, "a"), flat(s1, "a"), flat(s0, "b"), flat(s1, "b"), r, np.int64(s.f),
                             ring.const((1 << (64 - s.f)) - 1), flat(s1, "cr"), flat(s1, "r_hi"), flat(s1, "r_msb"),
                             flat(v, "cr"), flat(v, "r_hi"), flat(v, "r_msb"))
        return True


KINDS: dict[str, Kind] = {
    "triple": Triple(),
    "matmul": MatmulTriple(),
    "conv2d": ConvTriple(),
    "triple_trunc": TripleTrunc(),
    "matmul_trunc": Truncated(MatmulTriple()),
    "conv2d_trunc": Truncated(ConvTriple()),
}


# ------------------------------------------------------------ the parties' half
def request(rt, spec: ProductSpec):
    """Ask the dealer for a product tuple ahead of use."""
    return rt.dealer.request(spec.kind, **spec.to_wire())


def _beaver(rt, x: np.ndarray, y: np.ndarray, spec: ProductSpec, op, op2=None) -> np.ndarray:
    """op(x, y) of shares by a dealer triple, then >> spec.f; op2(a1, b1, a2, b2) =
    op(a1, b1) + op(a2, b2) in one call where the kernels fuse them (matmul, conv: one GPU
    round trip). With spec.f one dealer tuple serves the product and its truncation."""
    mat = request(rt, spec)
    if getattr(rt, "_dry", False):  # shape-only planning run: skip the local products
        return np.zeros(spec.out_shape, np.int64)
    own = mat.own()
    masked = np.empty(x.size + y.size, np.int64)  # both openings in one buffer: no concatenation copy
    np.subtract(x, own["a"], out=masked[: x.size].reshape(x.shape))
    np.subtract(y, own["b"], out=masked[x.size :].reshape(y.shape))
    (de,) = rt.open([masked], "beaver", donate=True)
    d, e = de[: x.size].reshape(x.shape), de[x.size :].reshape(y.shape)
    return finish(rt, x, d, own["b"], e, spec, mat, op, op2)


def finish(rt, x: np.ndarray, d: np.ndarray, b: np.ndarray, e: np.ndarray, spec: ProductSpec, mat, op,
           op2=None) -> np.ndarray:
    """[op(x, y)] (>> spec.f) from the opened d = x - a and e = y - b, this party's [b]
    and the tuple `mat` ([c], or the truncation's [c + r], [r >> f], [msb r]):
    [c] + op(d, [b]) + op([x], e), then (spec.f) opened masked by r and truncated."""
    shift = spec.f
    offset = truncation.OFFSET if rt.rank == 0 else np.int64(0)
    if shift and op is np.multiply and x.shape == b.shape:  # the masked product in one pass (kernels.beaver)
        z = np.empty(spec.out_shape, np.int64)
        rt.backend.beaver.product_masked(d.reshape(-1), b.reshape(-1), x.reshape(-1), e.reshape(-1),
                          mat.get()["cr"].reshape(-1), offset, z.reshape(-1))
    else:
        if op2 is not None:  # both products in one call: the second adds in place (on the GPU: one download)
            z = op2(d, b, x, e)
        else:
            z = op(d, b)
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
    return _beaver(rt, x, y, ProductSpec("triple", x.shape, y.shape, shift), np.multiply)


def matmul(rt, x: np.ndarray, y: np.ndarray, shift: int = 0) -> np.ndarray:
    """[x @ y] with torch.matmul semantics (2-D, batched, broadcast), then >> shift."""
    spec = ProductSpec("matmul", x.shape, y.shape, shift)
    return _beaver(rt, x, y, spec, rt.backend.matmul, rt.backend.matmul2)


def conv2d(rt, x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
           shift: int = 0) -> np.ndarray:
    """[conv2d(x, w)] for NCHW input and OIHW weight, then >> shift."""
    spec = conv_spec(x.shape, w.shape, stride, padding, dilation, groups, shift)
    return _beaver(rt, x, w, spec, *conv_ops(rt, spec))


def conv_spec(xshape: Shape, wshape: Shape, stride, padding, dilation, groups: int, shift: int) -> ProductSpec:
    """The conv2d ProductSpec of an input and a weight shape (int or pair parameters)."""
    s, p, d = ring._pair(stride), ring._pair(padding), ring._pair(dilation)
    return ProductSpec("conv2d", xshape, wshape, shift, s, p, d, groups)


def conv_ops(rt, spec: ProductSpec) -> tuple:
    """(op, op2) of `finish` for a conv2d spec: the back end's conv, and two convs summed."""
    s, p, d, g = spec.stride, spec.padding, spec.dilation, spec.groups
    return (lambda u, v: rt.backend.conv2d(u, v, s, p, d, g),
            lambda u1, v1, u2, v2: rt.backend.conv2d2(u1, v1, u2, v2, s, p, d, g))


def mul_steps(rt, x: np.ndarray, y: np.ndarray, mat=None):
    """Generator (1 round, for protocols run in lockstep, protocols.rounds): [x * y]
    elementwise, no truncation (`mat`: a triple requested ahead with `request`)."""
    mat = mat if mat is not None else request(rt, ProductSpec("triple", x.shape, y.shape))
    own = mat.own()
    (d, e), _ = yield Open(add=[x - own["a"], y - own["b"]], fresh=True)
    z = d * own["b"]
    z += x * e
    z += mat.get()["c"]
    return z

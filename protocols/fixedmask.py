"""Products with a weight masked once: [x @ W] and [conv2d(x, W)] for a shared W that many calls reuse.

A model's shared weight W (a Linear's, a Conv2d's, an attention projection's) is masked
once, when the model is loaded (`mask`): one dealer request 'wmask' per weight tensor
fixes a uniform mask B (every party expands its share [B] from the request's stream m
of its PRG; the dealer computes and sends nothing), and the parties open E = W - B, all of a model's
weights in one round. Each party keeps E and [B]. Every later product with W takes a
tuple ([A], [C = op(A, B)]) with a fresh A (kinds 'fm_matmul', 'fm_conv2d', and with a
fused truncation 'fm_matmul_trunc', 'fm_conv2d_trunc': [C + R], [R >> f], [msb R] as
protocols.beaver's Truncated), and opens only D = X - A:

    [Z] = [C] + op(D, [B]) + op([X], E)  sums to  AB + (X - A)B + X(W - B) = op(X, W),

protocols.beaver's formula with e = W - B opened once instead of per call. The dealer
keeps nothing per weight: it re-derives B from stream m of every party's PRG (the
request names m, `mask`), as it did for a per-call triple's b.

Security. B is the sum of the parties' PRG words of stream m, uniform and unknown to
any coalition of fewer than all parties; it masks one W only: a mask is made for one
tensor by `mask` together with that tensor's opening (a FixedMask holds its W's E, and
nothing opens another tensor against its B), and request numbers never repeat (the
dealer refuses a number that does not grow), so no two tensors share a B. E = W - B is
then a one-time pad of W (uniform, independent of W). Each call opens D = X - A with a
fresh uniform A, independent of E and of every other opening, so the openings of any
number of calls are uniform and independent of X and W, as with per-call triples; the
dealer sees only request shapes and stream numbers, as before, and is trusted for
correctness anyway. What must never happen: one B for two tensors W1 and W2, since
E1 - E2 = W1 - W2 would be public. A changed W (training) takes a new mask.

Rounds: 1 per product (+1 with the truncation); 1 once per model for all its masks.
Bytes per element per peer: 8 |x| per product (+ 8 |z| truncating), no weight bytes;
  8 |W| once per model (the opening of W - B); the same for every N.
Dealer words per element: |a| + |c| per product (2 of them expanded by every party, |c| sent
  to the corrected party), + 2 per output element with the truncation (1.5 when f <= 32);
  the mask none (no corrections); the dealer expands N |W| PRG words per product to
  re-derive B, as many as a per-call triple's b.
Error: none for the product; the truncation's 0 or +1 ulp.
Reference: docs/design.md, 'Weights masked once'; D. Beaver, "Efficient multiparty
  protocols using circuit randomization", CRYPTO 1991 (a triple's b reused with a fixed
  operand: e.g. SecureML, Mohassel and Zhang, S&P 2017, section IV-B).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpcrt.errors import DealerError, MpcError
from mpcrt.protocols import beaver
from mpcrt.protocols.beaver import ConvTriple, MatmulTriple, Product, ProductSpec, Truncated
from mpcrt.protocols.dealt import Kind, count, from_wire, wire_int, wire_shape

PREFIX = "fm_"  # a fixed-mask product's kind: PREFIX + its ProductSpec's kind


# ------------------------------------------------------------ the dealer's half
class WeightMask(Kind):
    """The mask B of one weight tensor ('wmask', params {'shape'}): B is the sum of the first
    |B| words of every party's stream of this request, which each party expands itself
    (`mask`) and the dealer re-derives for each product (FixedProduct.borrowed). The kind
    lists no arrays, so the dealer does no work for it (and sends an empty reply)."""

    @staticmethod
    def shape(p: dict) -> tuple:
        return from_wire(lambda q: wire_shape(q, "shape"), p, "weight mask")

    def own(self, p):
        self.shape(p)
        return []

    def corrected(self, p):
        self.shape(p)
        return []

    def deal(self, p, own, private, ops):
        return {}


def _mask_stream(p: dict) -> int:
    return from_wire(lambda q: wire_int(q, "mask", lo=0, hi=(1 << 63) - 1), p, "fixed-mask product")


class FixedProduct(Kind):
    """A product tuple with the fixed mask B of request p['mask'] as its b: own [a]; B
    re-derived from that stream of every party's PRG (`borrowed`); corrected [c = op(a, B)]."""

    def __init__(self, base: Product):
        self.base = base

    def spec(self, p: dict, truncated: bool = False) -> ProductSpec:
        _mask_stream(p)
        return self.base.spec(p, truncated)

    def own(self, p):
        return [("a", self.spec(p).a)]

    def corrected(self, p):
        return self.base.corrected(p)

    def borrowed(self, prgs: list, stream: int, p: dict) -> dict[str, np.ndarray]:
        """B, summed from the first |b| words of every party's stream p['mask']."""
        s, m = self.spec(p), _mask_stream(p)
        if not m < stream:
            raise DealerError(f"fixed-mask product request {stream} names mask request {m}: a mask comes first")
        n = count(s.b)
        b = prgs[0].words(m, n)
        for prg in prgs[1:]:
            b += prg.words(m, n)
        return {"b": b.reshape(s.b)}

    def deal(self, p, own, private, ops):
        return self.base.deal(p, own, private, ops)


class FixedTruncated(Truncated):
    """A fixed-mask product fused with its truncation (protocols.beaver.Truncated)."""

    def borrowed(self, prgs: list, stream: int, p: dict) -> dict[str, np.ndarray]:
        return self.base.borrowed(prgs, stream, p)


KINDS: dict[str, Kind] = {
    "wmask": WeightMask(),
    PREFIX + "matmul": FixedProduct(MatmulTriple()),
    PREFIX + "conv2d": FixedProduct(ConvTriple()),
    PREFIX + "matmul_trunc": FixedTruncated(FixedProduct(MatmulTriple())),
    PREFIX + "conv2d_trunc": FixedTruncated(FixedProduct(ConvTriple())),
}


# ------------------------------------------------------------ the parties' half
@dataclass(frozen=True, eq=False)
class FixedMask:
    """A shared weight masked once: `e` = W - B (public to the parties), `b` this party's
    share of B, `stream` the mask's request number (how the dealer finds B), `fbits` W's
    fractional bits. Made only by `mask`, with its W's opening: one mask, one tensor."""

    e: np.ndarray
    b: np.ndarray
    stream: int
    fbits: int

    @property
    def shape(self) -> tuple:
        return tuple(self.e.shape)


def mask(rt, weights: list[np.ndarray], fbits: int) -> list[FixedMask]:
    """Mask each weight share once: one 'wmask' request per tensor, then one round opening
    every W - B together. Every party calls it with its shares of the same tensors."""
    if getattr(rt, "_dry", False):
        raise MpcError("weights are masked when a model is loaded, not inside rt.plan()/rt.preprocess()")
    mats, streams = [], []
    for w in weights:
        mats.append(rt.dealer.request("wmask", shape=tuple(w.shape)))
        streams.append(rt.dealer.counter - 1)  # the number this request took
    bs = [rt.dealer.prg.words(s, w.size).reshape(w.shape).copy() for s, w in zip(streams, weights)]  # [B]
    opened = rt.open([w - b for w, b in zip(weights, bs)], "wmask") if weights else []
    for m in mats:
        m.get()  # the corrected party reads the dealer's empty reply: none is left waiting
    return [FixedMask(e, b, s, fbits) for e, b, s in zip(opened, bs, streams)]


def _product(rt, x: np.ndarray, m: FixedMask, spec: ProductSpec, op, op2) -> np.ndarray:
    mat = rt.dealer.request(PREFIX + spec.kind, mask=m.stream, **spec.to_wire())
    if getattr(rt, "_dry", False):  # shape-only planning run
        return np.zeros(spec.out_shape, np.int64)
    (d,) = rt.open([x - mat.own()["a"]], "fixedmask", donate=True)
    return beaver.finish(rt, x, d, m.b, m.e, spec, mat, op, op2)


def matmul(rt, x: np.ndarray, m: FixedMask, shift: int = 0) -> np.ndarray:
    """[x @ W] (torch.matmul semantics) for W masked once as `m`, then >> shift."""
    return _product(rt, x, m, ProductSpec("matmul", x.shape, m.shape, shift), rt.backend.matmul, rt.backend.matmul2)


def conv2d(rt, x: np.ndarray, m: FixedMask, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
           shift: int = 0) -> np.ndarray:
    """[conv2d(x, W)] (NCHW input, OIHW weight) for W masked once as `m`, then >> shift."""
    spec = beaver.conv_spec(x.shape, m.shape, stride, padding, dilation, groups, shift)
    return _product(rt, x, m, spec, *beaver.conv_ops(rt, spec))

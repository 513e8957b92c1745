"""One-round comparisons for two parties by function secret sharing: [x < t] and [b x].

The dealer gives the two parties a mask r (additive shares) and DCF keys
(kernels.dcf) for alpha = r mod 2^L with payload beta = (1 - 2m) (and (1 - 2m) r with
`prod`), m = bit L of r, plus shares of m (and m r). The parties open z = x + r (the
only round) and, for each public threshold t (x - t is opened as z - t), evaluate their
key at (z - t) mod 2^L, getting shares of W1 = (1 - 2m) w (and W2 = (1 - 2m) r w),
w = [(z - t) mod 2^L < r mod 2^L]. Bit L of x - t is a xor m xor w, a = bit L of
z - t public: s = m xor w = [m] + W1, b = a + (1 - 2a) s; with `prod` also
s r = [m r] + W2, b r = a [r] + (1 - 2a) [s r] and b x = b z - b r (x = z - r): a
ReLU x - b x, a max b + relu(a - b) or a clamp costs that one opening.

ReLU of a truncation (`relu_trunc_steps`, the ReLU after a convolution): c = z + 2^62 is
also the opening protocols.truncation makes, so t = x >> k = (c >> k) - [r >> k] +
[msb r] (1 - msb c) 2^(64 - k) - 2^(62 - k) is local, and b t needs b (r >> k) and
b msb r = b m: a third payload word (1 - 2m)(r >> k) in place of (1 - 2m) r, a fourth
-m (as s m = m - m w), and [r >> k]: relu(t) = t - b t in the same single round.

Which protocol runs (`use_fss`): MPCRT_COMPARISON exact or fss, or auto: a cost model
(`costs`) of the links (MPCRT_NETWORK) and of whether the dealer's material was fetched
ahead: FSS sends 8 bytes instead of about 31 and saves 6 rounds, but costs each party a
DCF evaluation (0.4-0.6 us per element in kernels/dcfeval.c, 0.7-1.1 us on numba) and, with
the dealer on line, ~2 KB of keys per element and the dealer's key generation: FSS on a WAN
with material fetched ahead, the exact protocol on loopback, on a LAN for large tensors, and
for large tensors when the dealer is on line over a slow link.

With L = 63 (the default) bit L is the sign bit of x - t for every ring element (exact);
a smaller L (MPCRT_FSS_BITS = L + 1) is exact where |x - t| < 2^L and shrinks the keys.

Rounds: 1 (the opening of x + r; every threshold row shares it and the key).
Bytes per element per peer: 8, whatever the number of rows.
Dealer words per element: sent to each party, L (2 + P) + P + L / 32 with P = 1 (the bit)
  or 2 (`prod`) or 3 (the fused truncation, or `sq`: (1 - 2m) r^2 for protocols.spline), plus
  1 to 4 words of corrections (dm; dmy with prod; dh with trunc; dr2, dmr2 with sq): 1544 bytes (P = 1),
  2064 (P = 2), 2584 (fused truncation) and 2592 (sq) per element
  per party at L = 63, 1322 for a product at 41 bits (key_bytes); every party also
  expands r, its 128-bit root seed and the corrections' masks from its PRG stream.
Error: none for L = 63 (every ring element); for L < 63 none where |x - t| < 2^L; the
  fused truncation 0 or +1 ulp for |x| < 2^62 (protocols.truncation).
Reference: Boyle et al., "Function Secret Sharing for Mixed-Mode and Fixed-Point Secure
  Computation" (Eurocrypt 2021) for the DCF and the sign from it; Ryffel et al., AriaNN
  (PETS 2022) and Agrawal et al., Orca (S&P 2024) for the one-round comparison and ReLU.
  Security: z is x masked by the uniform r; each key alone is pseudorandom (the DCF
  proof); the corrections dm = m - U, dmy = m y - V, dh = (r >> k) - H (with sq also
  dr2 = r^2 - W, dmr2 = m r^2 - G) are masked by the parties' summed PRG words U, V, H (W, G),
  of which each party knows only its own half, so both parties may see them.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from mpcrt.errors import DealerError, ProtocolError
from mpcrt.kernels import dcf
from mpcrt.protocols.dealt import Kind, copy_tag, from_wire, split, wire_int
from mpcrt.protocols.rounds import Open
from mpcrt.protocols.truncation import OFFSET

PAD = 64  # elements are padded to whole words of packed control bits
EXACT_BITS = 64


@dataclass(frozen=True)
class FssSpec:
    """One FSS comparison's keys ('fss'): n elements (a multiple of PAD), the ring bits
    the comparison looks at (`bits` = L + 1, 2..64: 64 is exact), whether the keys also
    carry the product terms of b x (`prod`), and for a ReLU of a truncation x >> k fused
    into the same opening, k (`trunc`, 1..62, needs bits = 64 and prod); `sq`: the keys also
    carry the terms of b x^2 (needs prod, not trunc: protocols.spline)."""

    n: int
    bits: int = EXACT_BITS
    prod: bool = False
    trunc: int = 0
    sq: bool = False

    def __post_init__(self) -> None:
        if self.n <= 0 or self.n % PAD:
            raise ValueError(f"FSS keys for n={self.n} elements: n must be a positive multiple of {PAD}")
        if not 2 <= self.bits <= 64:
            raise ValueError(f"FSS comparison bits must be 2..64, got {self.bits}")
        if self.trunc and not (0 < self.trunc < 63 and self.prod and self.bits == EXACT_BITS):
            raise ValueError(f"a fused truncation (tk={self.trunc}) needs 0 < tk < 63, prod and 64 bits")
        if self.sq and not (self.prod and not self.trunc):
            raise ValueError("FSS keys with the square's terms (sq) need prod and no fused truncation")

    @classmethod
    def of(cls, size: int, bits: int = EXACT_BITS, prod: bool = False, trunc: int = 0, sq: bool = False) -> "FssSpec":
        return cls(-(-max(int(size), 1) // PAD) * PAD, int(bits), bool(prod), int(trunc), bool(sq))

    @property
    def levels(self) -> int:
        """L: the DCF's input bits."""
        return self.bits - 1

    @property
    def payload(self) -> int:
        """Payload words: (1 - 2m); with prod (1 - 2m) r, with sq also (1 - 2m) r^2, or with trunc
        (1 - 2m)(r >> k) and -m."""
        return 3 if self.trunc or self.sq else 2 if self.prod else 1

    @property
    def corrections(self) -> int:
        """Correction words per element: dm, and dmy (prod), dh (trunc), dr2 and dmr2 (sq)."""
        return 1 + self.prod + bool(self.trunc) + 2 * self.sq

    def to_wire(self) -> dict:
        p = {"n": self.n, "bits": self.bits, "pr": int(self.prod)}
        if self.trunc:
            p["tk"] = self.trunc
        if self.sq:
            p["sq"] = 1
        return p

    @classmethod
    def from_wire(cls, p: dict) -> "FssSpec":
        return cls(wire_int(p, "n"), wire_int(p, "bits", EXACT_BITS), bool(wire_int(p, "pr", 0, 0, 1)),
                   wire_int(p, "tk", 0), bool(wire_int(p, "sq", 0, 0, 1)))


def key_bytes(spec: FssSpec) -> float:
    """Dealer bytes per element sent to each party: the DCF key's correction words and the
    corrections of [m] and [m y] (prod; y = r, or r >> k with trunc) and, with trunc, [r >> k]
    (with sq, [r^2] and [m r^2])."""
    return dcf.key_bytes(spec.levels, spec.payload) + 8 * spec.corrections


# ------------------------------------------------------------ the dealer's half
class FssKeys(Kind):
    """DCF keys of alpha = r mod 2^L, payload (1 - 2m[, (1 - 2m) y]) with y = r (prod)
    or, with trunc k, y = r >> k and a third word -m (= (1 - 2m) msb r, as m = msb r at
    L = 63); own: r, the root seeds `k` (each party's own: paired), the masks u, v, h of
    the corrections dm = m - U, dmy = m y - V and, with trunc, dh = (r >> k) - H. With sq a
    third word (1 - 2m) r^2, and the masks w, g of dr2 = r^2 - W and dmr2 = m r^2 - G.
    `to_all`: the corrected entries (common correction words, masked corrections) go
    whole to both parties (dealt.Kind.to_all)."""

    to_all = True

    @staticmethod
    def spec(p: dict) -> FssSpec:
        return from_wire(FssSpec.from_wire, p, "fss")

    def paired(self, p):
        return {"k"}

    def own(self, p):
        s = self.spec(p)
        out = [("r", (s.n,), "a"), ("k", (s.n, 2), "x"), ("u", (s.n,), "a")]
        return out + [(nm, (s.n,), "a") for nm in ("v", "h", "w", "g") if self._has(s, nm)]

    @staticmethod
    def _has(s: FssSpec, name: str) -> bool:
        """Whether spec s has the mask (own) or correction (corrected) `name`."""
        return {"u": True, "dm": True, "v": s.prod, "dmy": s.prod, "h": bool(s.trunc), "dh": bool(s.trunc),
                "w": s.sq, "dr2": s.sq, "g": s.sq, "dmr2": s.sq}[name]

    def corrected(self, p):
        s = self.spec(p)
        L, P, n = s.levels, s.payload, s.n
        out = [(nm, (n,), "a") for nm in ("dm", "dmy", "dh", "dr2", "dmr2") if self._has(s, nm)]
        return out + [("sc", (L, n, 2), "x"), ("vc", (L, P, n), "a"), ("tl", (L, n // 64), "x"),
                      ("tr", (L, n // 64), "x"), ("fc", (P, n), "a")]

    def deal_into(self, p, own, private, out, sub, ops, parallel=None) -> None:
        """The true corrections straight into `out` (nothing subtracted: both parties get them)."""
        s = self.spec(p)
        L = s.levels
        if not isinstance(own["k"], tuple):
            raise DealerError("FSS keys are for two parties only")
        r = own["r"]
        m = _bit(r, L)
        views = split(out, self.corrected(p))
        y = _lshr(r, s.trunc) if s.trunc else r
        beta = [1 - 2 * m] + ([(1 - 2 * m) * y] if s.prod else []) + ([-m] if s.trunc else [])
        np.subtract(m, own["u"], out=views["dm"])
        if s.prod:
            np.subtract(m * y, own["v"], out=views["dmy"])
        if s.trunc:
            np.subtract(y, own["h"], out=views["dh"])
        if s.sq:
            r2 = r * r
            beta.append((1 - 2 * m) * r2)
            np.subtract(r2, own["w"], out=views["dr2"])
            np.subtract(m * r2, own["g"], out=views["dmr2"])
        k0, k1 = own["k"]
        dcf.gen(_low(r, L), np.stack(beta), dcf.clear_seeds(k0), dcf.clear_seeds(k1), L,
                {name: views[name] for name in ("sc", "vc", "tl", "tr", "fc")})


KINDS: dict[str, Kind] = {"fss": FssKeys()}


def _bit(v: np.ndarray, i: int) -> np.ndarray:
    return (v.view(np.uint64) >> np.uint64(i)).view(np.int64) & 1


def _lshr(v: np.ndarray, k: int) -> np.ndarray:
    return (v.view(np.uint64) >> np.uint64(k)).view(np.int64)


def _low(v: np.ndarray, L: int) -> np.ndarray:
    return v if L == 64 else v & np.int64((1 << L) - 1)


# ------------------------------------------------------------ the parties' half
class _Copies:
    """A party other than 0 reads its copies of 'to_all' replies itself (the dealer sends
    them as one frame tagged dealt.copy_tag(n), in request order); `expect` lists the
    request numbers whose copies will come, in order, so that one read out of order, or
    one of an announced request the run abandoned, is kept aside rather than misread."""

    def __init__(self):
        self.due: list[tuple[int, int]] = []  # (request number, its copy's words)
        self.got: dict[int, np.ndarray] = {}

    def expect(self, n: int, p: dict) -> None:
        """Copy n (of the request with wire dict p) will come, after those expected before."""
        if n in self.got or any(m == n for m, _ in self.due):
            return
        if self.due and n < self.due[-1][0]:
            raise ProtocolError("local program", f"FSS key copy {n} expected after {self.due[-1][0]}")
        self.due.append((n, copy_words(p)))

    def fetch(self, rt, n: int) -> None:
        """Receive copies up to n and keep them, each with its expected size (a larger claim is
        refused unallocated): rt.preprocess reads a plan's copies here, so the online run reads none."""
        while n not in self.got:
            if not self.due:
                raise ProtocolError("dealer", f"FSS key copy {n} was never requested")
            m, words = self.due.pop(0)
            self.got[m] = rt.node.recv(rt.dealer_id, copy_tag(m), dtype=np.int64, shape=(words,))

    def read(self, rt, n: int) -> np.ndarray:
        """Copy n (received now unless fetched ahead); it is handed out once."""
        self.fetch(rt, n)
        return self.got.pop(n)


def copy_words(p: dict) -> int:
    """Words of one FSS request's key copy (its corrected entries, dealt whole to every party)."""
    return sum(int(np.prod(s)) for _, s, _ in KINDS["fss"].corrected(p))


_copies: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def copies(rt) -> _Copies:
    """The runtime's reader of 'to_all' copies (made on first use)."""
    rt = getattr(rt, "_rt", rt)  # a chunk's view (mpcrt.chunked) shares its runtime's copies
    c = _copies.get(rt)
    if c is None:
        c = _copies[rt] = _Copies()
    return c


class Keys:
    """One FSS comparison's material: `own()` at once, `get()` with the keys."""

    def __init__(self, rt, spec: FssSpec):
        self.rt, self.spec = rt, spec
        p = spec.to_wire()
        self.mat = rt.dealer.request("fss", **p)
        self.n = None if rt.dealer.recording is not None else rt.dealer.counter - 1
        if self.n is not None and rt.rank != 0:
            copies(rt).expect(self.n, p)

    def own(self) -> dict:
        return self.mat.own()

    def get(self) -> dict:
        if self.n is None or self.rt.rank == 0:
            return self.mat.get()
        corr = KINDS["fss"].corrected(self.spec.to_wire())
        flat = copies(self.rt).read(self.rt, self.n)
        out = dict(self.mat.own())
        out.update(split(flat, corr))
        return out


def request(rt, spec: FssSpec) -> Keys:
    """Ask the dealer for one FSS comparison's keys ahead of use."""
    return Keys(rt, spec)


# the cost model's per-element CPU figures (AMD EPYC, 2 cores, numba kernels; docs/design.md). Every party
# must choose alike, so they do not depend on this machine's kernels (dcfeval.c runs 3.2-3.7 ns per block)
EVAL_S_PER_BLOCK = 10e-9  # a party's DCF evaluation, per AES block (1 + q per level)
GEN_S_PER_BLOCK = 7e-9  # the dealer's key generation, per AES block (2 (2 + 2q) per level)
EXACT_S = 0.4e-6  # a party's local work of one exact comparison row
EXACT_BYTES, EXACT_DEALER_BYTES = 23.4, 32.0  # per element per row (protocols.comparison), + 8 / 16 per product


def deciding(rt, n: int) -> tuple[int, bool]:
    """(elements, whether the dealer is on line) as a size-dependent protocol choice should see
    them: a dry run (rt.plan, for rt.preprocess) decides as its prefetched online run will; the
    one-element guess of protocols.lookahead as the call it stands for (`plan_scale` elements,
    the dealer on line unless material was prefetched: `plan_online`), so its plan is kept."""
    online = rt.dealer.prefetched == 0 and rt.dealer.recording is None
    plan_online = getattr(rt, "plan_online", None)
    if plan_online is not None:
        return n * int(getattr(rt, "plan_scale", 1)), plan_online
    return n, online


def costs(rt, n: int, rows: int = 1, prod: bool = False, trunc: int = 0,
          bits: int | None = None) -> tuple[float, float]:
    """(exact, FSS) seconds the cost model gives one comparison of n elements against
    `rows` thresholds over rt.network (one-way delay s, bytes/s of every link; MPCRT_NETWORK),
    the dealer's part counted unless its material was fetched ahead (rt.preprocess)."""
    delay, rate = rt.network
    n, online = deciding(rt, n)
    spec = FssSpec.of(n, bits or bits_of(rt), prod or bool(trunc), trunc)
    exact = 7 * delay + n * rows * ((EXACT_BYTES + 8 * prod) / rate + EXACT_S)
    exact += online * n * rows * (EXACT_DEALER_BYTES + 16 * prod) / rate
    return exact, delay + 8 * n / rate + key_seconds(spec, n, rows, online, rate)


def key_seconds(spec: FssSpec, n: int, rows: int, online: bool, rate: float) -> float:
    """The cost model's seconds for the keys of n elements evaluated at `rows` points each: the
    parties' DCF evaluations and, with the dealer on line, its key generation and both parties'
    keys through its one link (rate bytes/s). Shared by `costs` and protocols.spline."""
    q = -(-spec.payload // 2)
    evals = n * rows * spec.levels * (1 + q) * EVAL_S_PER_BLOCK
    return evals + online * n * (2 * key_bytes(spec) / rate + spec.levels * 2 * (2 + 2 * q) * GEN_S_PER_BLOCK)


def use_fss(rt, n: int = 1, rows: int = 1, prod: bool = False, trunc: int = 0, bits: int | None = None) -> bool:
    """Whether a comparison of n elements runs by FSS: never for N != 2; MPCRT_COMPARISON
    exact: never, fss: always; auto: where the cost model (`costs`) says it is faster over
    MPCRT_NETWORK (unset: loopback, where the exact protocol's cheaper local work wins).
    `bits`: the keys' bits where the caller fixes them (else MPCRT_FSS_BITS), for the model.
    Every party decides alike (settings, sizes and the prefetched count are common)."""
    return decide(rt, lambda: costs(rt, n, rows, prod, trunc, bits))


def decide(rt, model) -> bool:
    """The choice every two-party FSS protocol makes (comparisons here, protocols.spline): never
    for N != 2 or MPCRT_COMPARISON exact, always for fss; auto: where model() = (exact seconds,
    FSS seconds) over MPCRT_NETWORK says FSS is faster (unset: loopback, the exact protocol)."""
    mode = getattr(rt, "comparison", "auto")
    if rt.world_size != 2 or mode == "exact":
        return False
    if mode == "fss":
        return True
    if getattr(rt, "network", None) is None:
        return False
    exact, fss = model()
    return fss < exact


def bits_of(rt) -> int:
    return int(getattr(rt, "fss_bits", EXACT_BITS))


def ltz_steps(rt, x: np.ndarray, thresholds=None, prod: bool = False, mat: Keys | None = None,
              spec: FssSpec | None = None):
    """Generator, one round: [x - t < 0] for each public threshold t (default [0]: the
    result has x's shape; with thresholds, rows stacked on a new first axis) as int64
    shares of 0/1, and with `prod` [b x] for each row's bit b (else None)."""
    shape, n = np.shape(x), int(np.size(x))
    spec = spec if spec is not None else FssSpec.of(n, bits_of(rt), prod)
    if spec.prod != prod or spec.trunc or spec.sq:
        raise ValueError(f"FSS spec (prod {spec.prod}, trunc {spec.trunc}) does not fit a comparison (prod {prod})")
    z, keys, r, sm, smy = yield from open_masked(rt, x, spec, mat)
    ts = [0] if thresholds is None else list(thresholds)
    first = rt.rank == 0
    bits, prods = [], []
    for t in ts:
        zt = z - np.int64(t)
        a, W = eval_at(rt, spec, keys, zt)
        s = sm + W[0]
        b = (1 - 2 * a) * s
        if first:
            b += a
        bits.append(b)
        if prod:  # b r = a r + (1 - 2a) s r, s r = m r + (1 - 2m) r w; b x = b z - b r
            prods.append(b * z - (a * r + (1 - 2 * a) * (smy + W[1])))
    if thresholds is None:
        return bits[0].reshape(shape), (prods[0].reshape(shape) if prod else None)
    out = np.stack(bits).reshape((len(ts),) + tuple(shape))
    return out, (np.stack(prods).reshape(out.shape) if prod else None)


def relu_trunc_steps(rt, x: np.ndarray, k: int, mat: Keys | None = None):
    """Generator, one round: relu(x >> k) for |x| < 2^62 (the truncation of
    protocols.truncation, 0 or +1 ulp, computed from the same opening: c = z + 2^62)."""
    shape, n = np.shape(x), int(np.size(x))
    spec = FssSpec.of(n, EXACT_BITS, True, k)
    z, keys, r, sm, smy = yield from open_masked(rt, x, spec, mat)
    first = rt.rank == 0
    h = keys["h"][:n] + (keys["dh"][:n] if first else 0)
    c = z + OFFSET
    a, W = eval_at(rt, spec, keys, z)
    up = (1 - _bit(c, 63)) << np.int64(64 - k)  # the wrap's weight: [msb r] (1 - msb c) 2^(64 - k)
    t = up * sm - h  # [x >> k] (protocols.truncation), public part below
    pub = _lshr(c, k) - np.int64(1 << (62 - k))
    if first:
        t += pub
    s = sm + W[0]
    b = (1 - 2 * a) * s
    if first:
        b += a
    by = a * h + (1 - 2 * a) * (smy + W[1])  # b (r >> k)
    bm = a * sm + (1 - 2 * a) * (sm + W[2])  # b m, s m = m - m w
    return (t - (b * pub - by + up * bm)).reshape(shape)


def open_masked(rt, x: np.ndarray, spec: FssSpec, mat: Keys | None):
    """Generator: open z = x + r (the round); returns (z, keys, [r], [m], [m y] or None)."""
    n = int(np.size(x))
    if spec.n != -(-max(n, 1) // PAD) * PAD:
        raise ValueError(f"FSS spec for {spec.n} elements does not fit {n} elements")
    mat = mat if mat is not None else request(rt, spec)
    own = mat.own()
    r = own["r"][:n]
    z = np.add(np.reshape(x, -1), r, dtype=np.int64)
    (z,), _ = yield Open(add=[z], fresh=True)
    keys = mat.get()
    first = rt.rank == 0
    sm = keys["u"][:n] + (keys["dm"][:n] if first else 0)
    smy = keys["v"][:n] + (keys["dmy"][:n] if first else 0) if spec.prod else None
    keys = dict(keys, seeds=dcf.clear_seeds(own["k"]))
    return z, keys, r, sm, smy


def eval_at(rt, spec: FssSpec, keys: dict, zt: np.ndarray):
    """(a = bit L of zt, this party's DCF shares (P, n)) at zt mod 2^L."""
    n, L = zt.size, spec.levels
    zp = np.zeros(spec.n, np.int64)
    zp[:n] = _low(zt, L)
    W = dcf.eval_(rt.rank, keys["seeds"], {k: keys[k] for k in ("sc", "vc", "tl", "tr", "fc")}, zp, L)
    return _bit(zt, L), W[:, :n]

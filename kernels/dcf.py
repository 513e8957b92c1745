"""Distributed comparison functions (DCF), vectorised over many keys with numpy.

Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee, "Function Secret Sharing for
Mixed-Mode and Fixed-Point Secure Computation" (Eurocrypt 2021), Fig. 1: two keys
k_0, k_1 for f(z) = beta [z < alpha] (z, alpha L-bit unsigned, beta in Z_2^64^P) with
Eval(0, k_0, z) + Eval(1, k_1, z) = f(z) mod 2^64, each key alone pseudorandom.

Key of party b: its root seed (128 bits, from its PRG stream: never sent) and the common
correction words: per level a seed word sc (128 bits), P value words vc and two bits
tl, tr; after the last level P words fc. Bytes per key: L (16 + 8 P + 1/4) + 8 P.

The PRG is fixed-key AES in Matyas-Meyer-Oseas mode, G_j(s) = AES_K(s ^ j) ^ s ^ j (the
tweak j in the seed's second word), one 16-byte block per output: j = 0, 1 the left and
right child seeds (their least significant bit is the child's control bit t, then
cleared), j = 2 .. 2 + q - 1 the left values, 2 + q .. 2 + 2q - 1 the right ones
(q = ceil(P / 2) blocks, two words each). A party's evaluation hashes two blocks per
level (its path's child seed and values) for P <= 2; one ECB pass through
`cryptography` over a chunk of elements per level, no per-element Python loop.
"""
from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_KEY = bytes.fromhex("6d70637274206663732064636620676b")  # fixed and public ("mpcrt fss dcf gk")
CHUNK = 1 << 14  # elements per pass: a chunk's seeds and values stay in cache across the levels
LOW = np.int64(-2)  # clears the control bit of a seed's first word


def key_words(bits: int, payload: int) -> int:
    """Correction words (int64) per key per element: sc, vc, packed tl and tr, fc (bits <= 64 * 64)."""
    return bits * (2 + payload) + payload + 2 * bits / 64


def key_bytes(bits: int, payload: int) -> float:
    """Bytes the dealer sends each party per element: L (16 + 8 P + 1/4) + 8 P."""
    return 8 * key_words(bits, payload)


class _Hash:
    """G_j over (k, 2) int64 seed blocks: one ECB encryptor, reused within a thread."""

    def __init__(self):
        self.enc = Cipher(algorithms.AES(AES_KEY), modes.ECB()).encryptor()

    def __call__(self, seeds: np.ndarray, tweak) -> np.ndarray:
        """AES(s ^ j) ^ s ^ j for seeds (k, 2) and tweak j (an int or a (k,) array)."""
        inp = seeds.copy()
        inp[:, 1] ^= tweak
        out = np.empty(inp.size + 2, np.int64)  # update_into wants a block of slack
        self.enc.update_into(inp.view(np.uint8).reshape(-1), out.view(np.uint8))
        out = out[: inp.size].reshape(inp.shape)
        out ^= inp
        return out


def _values(h: _Hash, seeds: np.ndarray, first, payload: int) -> np.ndarray:
    """(P, k) value words from blocks first, first + 1, ... (first: int or (k,) array)."""
    q = -(-payload // 2)
    blocks = [h(seeds, first + j) for j in range(q)]
    return np.stack([blocks[p // 2][:, p % 2] for p in range(payload)])


def _split_seed(blk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seed with its control bit cleared, control bit 0/1) of hashed blocks."""
    t = blk[:, 0] & 1
    blk[:, 0] &= LOW
    return blk, t


def _bit(v: np.ndarray, i: int) -> np.ndarray:
    return (v >> np.int64(i)) & 1 if i < 63 else (v.view(np.uint64) >> np.uint64(63)).view(np.int64)


def clear_seeds(seeds: np.ndarray) -> np.ndarray:
    """Root seeds (m, 2) with their control bit cleared, as the construction wants them."""
    out = np.array(seeds, np.int64).reshape(-1, 2)
    out[:, 0] &= LOW
    return out


def gen(alpha: np.ndarray, beta: np.ndarray, s0: np.ndarray, s1: np.ndarray, bits: int) -> dict[str, np.ndarray]:
    """The common correction words of m DCF keys (dealer side).

    alpha (m,) int64: the thresholds (their low `bits` bits); beta (P, m) int64: the
    payloads; s0, s1 (m, 2) int64: the two parties' root seeds (clear_seeds). m must be a
    multiple of 64. Returns sc (L, m, 2), vc (L, P, m), tl, tr (L, m / 64: bits packed
    little-endian), fc (P, m)."""
    m, P, L = alpha.size, beta.shape[0], bits
    if m % 64 or not 0 < L <= 64:
        raise ValueError(f"DCF keys need a multiple of 64 elements and 1..64 bits, got {m}, {L}")
    out = {"sc": np.empty((L, m, 2), np.int64), "vc": np.empty((L, P, m), np.int64),
           "tl": np.empty((L, m // 64), np.int64), "tr": np.empty((L, m // 64), np.int64),
           "fc": np.empty((P, m), np.int64)}
    h = _Hash()
    q = -(-P // 2)
    for lo in range(0, m, CHUNK):
        hi = min(m, lo + CHUNK)
        _gen_chunk(h, q, alpha[lo:hi], beta[:, lo:hi], s0[lo:hi], s1[lo:hi], L, out, lo, hi)
    return out


def _gen_chunk(h, q, alpha, beta, s0, s1, L, out, lo, hi) -> None:
    P, k = beta.shape
    S = [s0.copy(), s1.copy()]
    T = [np.zeros(k, np.int64), np.ones(k, np.int64)]
    Va = np.zeros((P, k), np.int64)
    for i in range(L):
        a = _bit(alpha, L - 1 - i)
        sel = a.astype(bool)  # alpha_i = 1: keep right, lose left
        ch = []
        for b in (0, 1):
            sl, tl = _split_seed(h(S[b], 0))
            sr, tr = _split_seed(h(S[b], 1))
            vl, vr = _values(h, S[b], 2, P), _values(h, S[b], 2 + q, P)
            ch.append((sl, tl, sr, tr, vl, vr))
        (sl0, tl0, sr0, tr0, vl0, vr0), (sl1, tl1, sr1, tr1, vl1, vr1) = ch
        scw = np.where(sel[:, None], sl0 ^ sl1, sr0 ^ sr1)
        sign1 = 1 - 2 * T[1]
        v0lose, v1lose = np.where(sel, vl0, vr0), np.where(sel, vl1, vr1)
        v0keep, v1keep = np.where(sel, vr0, vl0), np.where(sel, vr1, vl1)
        vcw = sign1 * (v1lose - v0lose - Va + beta * a)
        Va = Va - v1keep + v0keep + sign1 * vcw
        tcwl, tcwr = tl0 ^ tl1 ^ a ^ 1, tr0 ^ tr1 ^ a
        tkeep = np.where(sel, tcwr, tcwl)
        for b, (sl, tl, sr, tr, _, _) in enumerate(ch):
            skeep = np.where(sel[:, None], sr, sl)
            skeep ^= scw & (-T[b])[:, None]
            S[b] = skeep
            T[b] = np.where(sel, tr, tl) ^ (T[b] & tkeep)
        out["sc"][i, lo:hi] = scw
        out["vc"][i, :, lo:hi] = vcw
        out["tl"][i, lo // 64 : hi // 64] = _pack(tcwl)
        out["tr"][i, lo // 64 : hi // 64] = _pack(tcwr)
    sign1 = 1 - 2 * T[1]
    out["fc"][:, lo:hi] = sign1 * (_values(h, S[1], 2, P) - _values(h, S[0], 2, P) - Va)


def _pack(bits01: np.ndarray) -> np.ndarray:
    return np.packbits(bits01.astype(np.uint8), bitorder="little").view(np.int64)


def _unpack(words: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) int64 0/1 from (rows, k / 64) packed words."""
    w = np.ascontiguousarray(words)
    return np.unpackbits(w.view(np.uint8).reshape(w.shape[0], -1), axis=1, bitorder="little")[:, :k].astype(np.int64)


def eval_(b: int, seed: np.ndarray, keys: dict[str, np.ndarray], z: np.ndarray, bits: int) -> np.ndarray:
    """Party b's shares (P, m) of beta [z < alpha] for public z (m,) int64 (its low `bits`
    bits), its root seeds (m, 2) and the common correction words (gen's dict)."""
    m, L = z.size, bits
    P = keys["fc"].shape[0]
    out = np.empty((P, m), np.int64)
    h = _Hash()
    for lo in range(0, m, CHUNK):
        hi = min(m, lo + CHUNK)
        out[:, lo:hi] = _eval_chunk(h, b, seed[lo:hi], keys, z[lo:hi], L, lo, hi)
    return out


def _eval_chunk(h, b, seed, keys, z, L, lo, hi) -> np.ndarray:
    P = keys["fc"].shape[0]
    q = -(-P // 2)
    k = hi - lo
    S = seed.copy()
    T = np.full(k, b, np.int64)
    U = np.zeros((P, k), np.int64)
    tl = _unpack(keys["tl"][:, lo // 64 : -(-hi // 64)], 64 * (-(-hi // 64) - lo // 64))
    tr = _unpack(keys["tr"][:, lo // 64 : -(-hi // 64)], 64 * (-(-hi // 64) - lo // 64))
    sh = lo % 64
    for i in range(L):
        d = _bit(z, L - 1 - i)
        mask = -T
        sn, tn = _split_seed(h(S, d))
        sn ^= keys["sc"][i, lo:hi] & mask[:, None]
        tn ^= T & np.where(d.astype(bool), tr[i, sh : sh + k], tl[i, sh : sh + k])
        U += _values(h, S, 2 + q * d, P)
        U += keys["vc"][i, :, lo:hi] & mask
        S, T = sn, tn
    U += _values(h, S, 2, P)
    U += keys["fc"][:, lo:hi] & -T
    return U if b == 0 else np.negative(U)

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
level (its path's child seed and values) for P <= 2, the dealer 2 (2 + 2q) per key: per
level, one ECB pass through `cryptography` over a chunk of elements' blocks, then one
fused numba pass (the MMO xor, the control bits, the corrections), no Python loop over
elements. A party's evaluation runs in kernels/dcfeval.c instead where it is built and the
CPU has AES-NI: all levels for 64 elements at a time, the same words.
"""
from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpcrt.kernels.jit import njit

try:  # kernels/dcfeval.c: all levels in one native pass on AES-NI (the same words; optional build)
    from mpcrt.kernels import _dcfeval
    NATIVE = bool(_dcfeval.available())
except ImportError:  # not built (no compiler, or not x86-64): the numba levels below
    _dcfeval, NATIVE = None, False

AES_KEY = bytes.fromhex("6d70637274206663732064636620676b")  # fixed and public ("mpcrt fss dcf gk")
CHUNK = 8192  # elements per pass: a chunk's seeds, blocks and values stay in cache across the levels
LOW = np.int64(-2)  # clears the control bit of a seed's first word


def key_words(bits: int, payload: int) -> int:
    """Correction words (int64) per key per element: sc, vc, packed tl and tr, fc (bits <= 64 * 64)."""
    return bits * (2 + payload) + payload + 2 * bits / 64


def key_bytes(bits: int, payload: int) -> float:
    """Bytes the dealer sends each party per element: L (16 + 8 P + 1/4) + 8 P."""
    return 8 * key_words(bits, payload)



def _aes(enc, inp: np.ndarray) -> np.ndarray:
    """AES_K of every 16-byte block of inp (int64, last axis 2), same shape (the MMO xor is the callers')."""
    out = np.empty(inp.size + 2, np.int64)  # update_into wants a block of slack
    enc.update_into(inp.view(np.uint8).reshape(-1), out.view(np.uint8))
    return out[: inp.size].reshape(inp.shape)


def _encryptor():
    return Cipher(algorithms.AES(AES_KEY), modes.ECB()).encryptor()


def clear_seeds(seeds: np.ndarray) -> np.ndarray:
    """Root seeds (m, 2) with their control bit cleared, as the construction wants them."""
    out = np.array(seeds, np.int64).reshape(-1, 2)
    out[:, 0] &= LOW
    return out


@njit
def _tweaked(S, first, stride, zbits, pos, nb, inp):
    """inp[j, e] = S[e] ^ (0, first + stride z_e + j) for j < nb (z_e: bit pos of zbits[e],
    or 0 where stride is 0); S (k, 2), inp (nb, k, 2)."""
    for e in range(S.shape[0]):
        d = (zbits[e] >> pos) & 1 if stride else 0
        for j in range(nb):
            inp[j, e, 0] = S[e, 0]
            inp[j, e, 1] = S[e, 1] ^ (first + stride * d + j)


@njit
def _gen_level(aes, S, T, Va, alpha, pos, beta, q, sc, vc, tlw, trw):
    """One level of Gen for k elements: aes (2 + 2q, 2, k, 2) = AES of (S_b ^ (0, j));
    updates S (2, k, 2), T (2, k), Va (P, k); writes sc (k, 2), vc (P, k), tlw, trw (k / 64)."""
    P, k = beta.shape
    for w in range(k // 64):
        tla = np.int64(0)
        tra = np.int64(0)
        for e in range(w * 64, w * 64 + 64):
            a = (alpha[e] >> pos) & 1
            l00 = aes[0, 0, e, 0] ^ S[0, e, 0]
            l01 = aes[0, 0, e, 1] ^ S[0, e, 1]
            l10 = aes[0, 1, e, 0] ^ S[1, e, 0]
            l11 = aes[0, 1, e, 1] ^ S[1, e, 1]
            r00 = aes[1, 0, e, 0] ^ S[0, e, 0]
            r01 = aes[1, 0, e, 1] ^ S[0, e, 1] ^ 1
            r10 = aes[1, 1, e, 0] ^ S[1, e, 0]
            r11 = aes[1, 1, e, 1] ^ S[1, e, 1] ^ 1
            tl0, tl1, tr0, tr1 = l00 & 1, l10 & 1, r00 & 1, r10 & 1
            l00 &= -2
            l10 &= -2
            r00 &= -2
            r10 &= -2
            sign1 = 1 - 2 * T[1, e]
            for p in range(P):
                wd = p % 2
                jl = 2 + p // 2
                jr = 2 + q + p // 2
                vl0 = aes[jl, 0, e, wd] ^ S[0, e, wd] ^ (jl * wd)
                vl1 = aes[jl, 1, e, wd] ^ S[1, e, wd] ^ (jl * wd)
                vr0 = aes[jr, 0, e, wd] ^ S[0, e, wd] ^ (jr * wd)
                vr1 = aes[jr, 1, e, wd] ^ S[1, e, wd] ^ (jr * wd)
                if a:  # keep right, lose left: left inputs are below alpha
                    vcw = sign1 * (vl1 - vl0 - Va[p, e] + beta[p, e])
                    Va[p, e] = Va[p, e] - vr1 + vr0 + sign1 * vcw
                else:
                    vcw = sign1 * (vr1 - vr0 - Va[p, e])
                    Va[p, e] = Va[p, e] - vl1 + vl0 + sign1 * vcw
                vc[p, e] = vcw
            tcl = tl0 ^ tl1 ^ a ^ 1
            tcr = tr0 ^ tr1 ^ a
            t0, t1 = T[0, e], T[1, e]
            if a:
                c0, c1 = l00 ^ l10, l01 ^ l11
                S[0, e, 0], S[0, e, 1] = r00 ^ (c0 & -t0), r01 ^ (c1 & -t0)
                S[1, e, 0], S[1, e, 1] = r10 ^ (c0 & -t1), r11 ^ (c1 & -t1)
                T[0, e], T[1, e] = tr0 ^ (t0 & tcr), tr1 ^ (t1 & tcr)
            else:
                c0, c1 = r00 ^ r10, r01 ^ r11
                S[0, e, 0], S[0, e, 1] = l00 ^ (c0 & -t0), l01 ^ (c1 & -t0)
                S[1, e, 0], S[1, e, 1] = l10 ^ (c0 & -t1), l11 ^ (c1 & -t1)
                T[0, e], T[1, e] = tl0 ^ (t0 & tcl), tl1 ^ (t1 & tcl)
            sc[e, 0], sc[e, 1] = c0, c1
            tla |= tcl << (e - w * 64)
            tra |= tcr << (e - w * 64)
        tlw[w] = tla
        trw[w] = tra


@njit
def _gen_final(aes, S, T, Va, fc):
    """fc = (-1)^t1 (Convert(s1) - Convert(s0) - Va): aes (q, 2, k, 2) = AES of (S_b ^ (0, 2 + j))."""
    P, k = Va.shape
    for e in range(k):
        sign1 = 1 - 2 * T[1, e]
        for p in range(P):
            wd = p % 2
            j = p // 2
            c0 = aes[j, 0, e, wd] ^ S[0, e, wd] ^ ((2 + j) * wd)
            c1 = aes[j, 1, e, wd] ^ S[1, e, wd] ^ ((2 + j) * wd)
            fc[p, e] = sign1 * (c1 - c0 - Va[p, e])


@njit
def _eval_level(aes, inp, S, T, U, z, pos, q, sc, vc, tlw, trw):
    """One level of Eval: aes (1 + q, k, 2) = AES of inp = S ^ (0, d), S ^ (0, 2 + q d + j);
    adds the level's values into U (P, k), steps S (k, 2) and T (k) down z's path and
    writes the next level's inputs into inp (after the last level: S ^ (0, 2 + j) in
    inp[1:], for the final values). Branch-free, the values one stream per payload word
    (9-20% faster than one loop with a branch per element)."""
    P, k = U.shape
    for p in range(P):  # the level's values, read before inp is overwritten below
        jp = 1 + p // 2
        wd = p % 2
        a = aes[jp, :, wd]
        x = inp[jp, :, wd]
        v = vc[p]
        u = U[p]
        for e in range(k):
            u[e] += (a[e] ^ x[e]) + (v[e] & -T[e])
    nxt = pos - 1 if pos else 0
    for e in range(k):
        d = (z[e] >> pos) & 1
        tb = -T[e]
        s0 = aes[0, e, 0] ^ inp[0, e, 0]
        s1 = aes[0, e, 1] ^ inp[0, e, 1]
        t = s0 & 1
        s0 = (s0 & -2) ^ (sc[e, 0] & tb)
        s1 ^= sc[e, 1] & tb
        S[e, 0] = s0
        S[e, 1] = s1
        wl = tlw[e >> 6]
        w = wl ^ ((wl ^ trw[e >> 6]) & -d)  # tr's word where d, else tl's
        T[e] = t ^ (tb & ((w >> (e & 63)) & 1))
        nd = ((z[e] >> nxt) & 1) if pos else 0
        inp[0, e, 0] = s0
        inp[0, e, 1] = s1 ^ nd
        base = 2 + q * nd if pos else 2
        for j in range(q):
            inp[1 + j, e, 0] = s0
            inp[1 + j, e, 1] = s1 ^ (base + j)


@njit
def _eval_final(aes, S, T, U, fc, neg):
    """U += Convert(s) + t fc, negated for party 1: aes (q, k, 2) = AES of S ^ (0, 2 + j)."""
    P, k = U.shape
    for e in range(k):
        for p in range(P):
            wd = p % 2
            j = p // 2
            u = U[p, e] + (aes[j, e, wd] ^ S[e, wd] ^ ((2 + j) * wd)) + (fc[p, e] & -T[e])
            U[p, e] = -u if neg else u


def gen(alpha: np.ndarray, beta: np.ndarray, s0: np.ndarray, s1: np.ndarray, bits: int,
        out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The common correction words of m DCF keys (dealer side).

    alpha (m,) int64: the thresholds (their low `bits` bits, bits <= 63); beta (P, m)
    int64: the payloads; s0, s1 (m, 2) int64: the two parties' root seeds (clear_seeds).
    m must be a multiple of 64. Returns sc (L, m, 2), vc (L, P, m), tl, tr (L, m / 64:
    bits packed little-endian), fc (P, m), written into `out`'s arrays if given (the
    reply buffer's views: no copy)."""
    m, P, L = alpha.size, beta.shape[0], bits
    if m % 64 or not 0 < L <= 63:
        raise ValueError(f"DCF keys need a multiple of 64 elements and 1..63 bits, got {m}, {L}")
    shapes = {"sc": (L, m, 2), "vc": (L, P, m), "tl": (L, m // 64), "tr": (L, m // 64), "fc": (P, m)}
    out = {k: np.empty(s, np.int64) for k, s in shapes.items()} if out is None else out
    if any(out[k].shape != s for k, s in shapes.items()):
        raise ValueError("DCF key arrays of the wrong shape")
    enc, q = _encryptor(), -(-P // 2)
    nb = 2 + 2 * q
    for lo in range(0, m, CHUNK):
        hi = min(m, lo + CHUNK)
        k = hi - lo
        S = np.stack([s0[lo:hi], s1[lo:hi]])
        T = np.zeros((2, k), np.int64)
        T[1] = 1
        Va = np.zeros((P, k), np.int64)
        a, bt = np.ascontiguousarray(alpha[lo:hi]), np.ascontiguousarray(beta[:, lo:hi])
        inp = np.empty((nb, 2, k, 2), np.int64)
        for i in range(L):
            for b in range(2):
                _tweaked(S[b], 0, 0, a, 0, nb, inp[:, b])
            sc, vc = np.empty((k, 2), np.int64), np.empty((P, k), np.int64)
            _gen_level(_aes(enc, inp), S, T, Va, a, L - 1 - i, bt, q, sc, vc,
                       out["tl"][i, lo // 64 : hi // 64], out["tr"][i, lo // 64 : hi // 64])
            out["sc"][i, lo:hi], out["vc"][i, :, lo:hi] = sc, vc
        fin = np.empty((q, 2, k, 2), np.int64)
        for b in range(2):
            _tweaked(S[b], 2, 0, a, 0, q, fin[:, b])
        fc = np.empty((P, k), np.int64)
        _gen_final(_aes(enc, fin), S, T, Va, fc)
        out["fc"][:, lo:hi] = fc
    return out


def eval_(b: int, seed: np.ndarray, keys: dict[str, np.ndarray], z: np.ndarray, bits: int,
          native: bool | None = None) -> np.ndarray:
    """Party b's shares (P, m) of beta [z < alpha] for public z (m,) int64 (its low `bits`
    bits, bits <= 63), its root seeds (m, 2) and the common correction words (gen's dict).
    native: kernels/dcfeval.c (None: where built and the CPU has AES-NI), else numpy and numba."""
    m, L = z.size, bits
    P = keys["fc"].shape[0]
    q = -(-P // 2)
    out = np.empty((P, m), np.int64)
    if native and not NATIVE:
        raise RuntimeError("kernels/dcfeval.c is not built here or this CPU lacks AES-NI: use native=None")
    if (NATIVE if native is None else native) and m and m % 64 == 0 and P <= 4:
        def c(a):  # int64, C-contiguous and aligned, as the C side reads them (no copy when they are)
            return np.require(a, np.int64, "CA")

        _dcfeval.eval(b, c(seed), c(keys["sc"]), c(keys["vc"]), c(keys["tl"]), c(keys["tr"]), c(keys["fc"]), c(z),
                      L, out)
        return out
    enc = _encryptor()
    for lo in range(0, m, CHUNK):
        hi = min(m, lo + CHUNK)
        k = hi - lo
        S = np.array(seed[lo:hi], np.int64)
        T = np.full(k, b, np.int64)
        U = np.zeros((P, k), np.int64)
        zc = np.ascontiguousarray(z[lo:hi])
        inp = np.empty((1 + q, k, 2), np.int64)
        _tweaked(S, 0, 1, zc, L - 1, 1, inp[:1])
        _tweaked(S, 2, q, zc, L - 1, q, inp[1:])
        for i in range(L):
            _eval_level(_aes(enc, inp), inp, S, T, U, zc, L - 1 - i, q, keys["sc"][i, lo:hi], keys["vc"][i, :, lo:hi],
                        keys["tl"][i, lo // 64 :], keys["tr"][i, lo // 64 :])
        _eval_final(_aes(enc, inp[1:]), S, T, U, keys["fc"][:, lo:hi], b == 1)
        out[:, lo:hi] = U
    return out

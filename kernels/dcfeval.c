/* DCF evaluation (kernels/dcf.py's eval_) in one native pass: the same keys, the same
 * outputs, word for word, as the numpy/numba path it replaces where the CPU has AES-NI.
 *
 * Why: a party's FSS comparison walks L = 63 levels per element, hashing 1 + q blocks
 * (q = ceil(P / 2)) with fixed-key AES in Matyas-Meyer-Oseas mode, G(x) = AES_K(x) ^ x.
 * The numpy path makes one ECB call through `cryptography` and one numba pass per level
 * over 8192 elements, so the elements' state goes through memory 2 x 63 times and each
 * level pays Python's call overheads: 16.7 ns per element and level at P = 3 on a Zen 4.
 * Here 64 elements (one packed word of control-bit corrections) go through all levels
 * with their seeds, bits and sums in L1, their AES blocks 8 in flight on AES-NI.
 *
 * eval(b, seed, sc, vc, tl, tr, fc, z, bits, out) -> None, all int64 C-contiguous buffers:
 * seed (m, 2), sc (L, m, 2), vc (L, P, m), tl and tr (L, m / 64), fc (P, m), z (m,),
 * out (P, m) written; m a multiple of 64, 1 <= L = bits <= 63, 1 <= P <= 4; the buffers are
 * read as aligned int64 words (dcf.eval_ passes them so). The GIL is released. available() says whether this
 * CPU has AES-NI (else dcf.py keeps numpy's path).
 * Keys are public correction words and z is public, so branches on them leak nothing; the
 * seeds, control bits and sums (secret shares) take no data-dependent branches or indices.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "aes128.h"

#define TGT __attribute__((target("aes,sse4.1")))
#define GROUP 64 /* elements walked together: one word of tl / tr */
#define MAXP 4
#define MAXB 3 /* blocks per element and level: 1 + ceil(P / 2) */

static const uint8_t AES_KEY[16] = {0x6d, 0x70, 0x63, 0x72, 0x74, 0x20, 0x66, 0x63,
                                    0x73, 0x20, 0x64, 0x63, 0x66, 0x20, 0x67, 0x6b}; /* dcf.AES_KEY */

TGT static void key_schedule(__m128i rk[11]) {
    rk[0] = _mm_loadu_si128((const __m128i *)AES_KEY);
    AES128_SCHEDULE(rk);
}

/* Blocks i < n of w (two words each, 16-byte aligned) become AES_K(x) ^ x, eight in flight. */
TGT static void mmo(uint64_t *w, int n, const __m128i rk[11]) {
    __m128i *b = (__m128i *)w;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i y[8]; /* 8 states and a round key in registers; the inputs are reread from L1 */
        for (int k = 0; k < 8; k++) y[k] = _mm_xor_si128(_mm_load_si128(b + i + k), rk[0]);
        for (int r = 1; r < 10; r++) {
            const __m128i key = rk[r];
            for (int k = 0; k < 8; k++) y[k] = _mm_aesenc_si128(y[k], key);
        }
        for (int k = 0; k < 8; k++)
            _mm_store_si128(b + i + k, _mm_xor_si128(_mm_aesenclast_si128(y[k], rk[10]), _mm_load_si128(b + i + k)));
    }
    for (; i < n; i++) {
        __m128i y = _mm_xor_si128(_mm_load_si128(b + i), rk[0]);
        for (int r = 1; r < 10; r++) y = _mm_aesenc_si128(y, rk[r]);
        _mm_store_si128(b + i, _mm_xor_si128(_mm_aesenclast_si128(y, rk[10]), _mm_load_si128(b + i)));
    }
}

/* Elements e0 .. e0 + GROUP - 1 (e0 a multiple of 64) through all L levels and the final values;
 * inlined once per payload width P (eval_all's switch), so its loops have constant bounds. */
#define INLINE __attribute__((always_inline)) inline
TGT static INLINE void walk(int b, int64_t e0, int64_t m, int L, const int P, const uint64_t *seed,
                            const uint64_t *sc, const uint64_t *vc, const uint64_t *tl, const uint64_t *tr,
                            const uint64_t *fc, const uint64_t *z, uint64_t *out, const __m128i rk[11]) {
    const int q = (P + 1) / 2, nb = 1 + q, kb = nb > 2 ? 4 : 8; /* 16 blocks in flight for P <= 2, 12 above */
    uint64_t s0[GROUP], s1[GROUP], t[GROUP], u[MAXP][GROUP];
    uint64_t blk[2 * GROUP * MAXB] __attribute__((aligned(16))); /* element e's block j: blk[2 (nb e + j)] */
    for (int e = 0; e < GROUP; e++) {
        s0[e] = seed[2 * (e0 + e)];
        s1[e] = seed[2 * (e0 + e) + 1];
        t[e] = (uint64_t)b;
        for (int p = 0; p < P; p++) u[p][e] = 0;
    }
    for (int i = 0; i < L; i++) {
        const int pos = L - 1 - i;
        const uint64_t *sci = sc + 2 * ((int64_t)i * m + e0), *vci = vc + (int64_t)i * P * m + e0;
        const uint64_t wl = tl[(int64_t)i * (m / 64) + e0 / 64], wr = tr[(int64_t)i * (m / 64) + e0 / 64];
        for (int e8 = 0; e8 < GROUP; e8 += kb) { /* kb elements: their kb nb blocks hashed, then combined */
            __m128i x[8 * MAXB], y[8 * MAXB];
            for (int k = 0; k < kb; k++) { /* the child seed on z's side and its values: S ^ (0, tweak) */
                const int e = e8 + k;
                const uint64_t d = (z[e0 + e] >> pos) & 1;
                x[nb * k] = _mm_set_epi64x((long long)(s1[e] ^ d), (long long)s0[e]);
                for (int j = 0; j < q; j++)
                    x[nb * k + 1 + j] =
                        _mm_set_epi64x((long long)(s1[e] ^ (2 + q * d + (uint64_t)j)), (long long)s0[e]);
            }
            for (int k = 0; k < kb * nb; k++) y[k] = _mm_xor_si128(x[k], rk[0]);
            for (int r = 1; r < 10; r++) {
                const __m128i key = rk[r];
                for (int k = 0; k < kb * nb; k++) y[k] = _mm_aesenc_si128(y[k], key);
            }
            for (int k = 0; k < kb * nb; k++) y[k] = _mm_xor_si128(_mm_aesenclast_si128(y[k], rk[10]), x[k]);
            for (int k = 0; k < kb; k++) {
                const int e = e8 + k;
                const uint64_t d = (z[e0 + e] >> pos) & 1, tb = (uint64_t)0 - t[e];
                const __m128i sd = y[nb * k];
                const uint64_t o0 = (uint64_t)_mm_cvtsi128_si64(sd), o1 = (uint64_t)_mm_extract_epi64(sd, 1);
                for (int p = 0; p < P; p++) {
                    const __m128i vb = y[nb * k + 1 + p / 2];
                    const uint64_t v = (uint64_t)(p % 2 ? _mm_extract_epi64(vb, 1) : _mm_cvtsi128_si64(vb));
                    u[p][e] += v + (vci[(int64_t)p * m + e] & tb);
                }
                const uint64_t w = d ? wr : wl; /* public: which correction word of this level */
                s0[e] = (o0 & ~(uint64_t)1) ^ (sci[2 * e] & tb);
                s1[e] = o1 ^ (sci[2 * e + 1] & tb);
                t[e] = (o0 & 1) ^ (t[e] & ((w >> e) & 1));
            }
        }
    }
    for (int e = 0; e < GROUP; e++)
        for (int j = 0; j < q; j++) {
            blk[2 * (q * e + j)] = s0[e];
            blk[2 * (q * e + j) + 1] = s1[e] ^ (2 + (uint64_t)j);
        }
    mmo(blk, GROUP * q, rk);
    for (int e = 0; e < GROUP; e++) {
        const uint64_t tb = (uint64_t)0 - t[e];
        for (int p = 0; p < P; p++) {
            const uint64_t v = u[p][e] + blk[2 * q * e + p] + (fc[(int64_t)p * m + e0 + e] & tb);
            out[(int64_t)p * m + e0 + e] = b ? (uint64_t)0 - v : v;
        }
    }
}

TGT static void eval_all(int b, int64_t m, int L, int P, const uint64_t *seed, const uint64_t *sc,
                         const uint64_t *vc, const uint64_t *tl, const uint64_t *tr, const uint64_t *fc,
                         const uint64_t *z, uint64_t *out) {
    __m128i rk[11];
    key_schedule(rk);
    for (int64_t e0 = 0; e0 < m; e0 += GROUP) switch (P) {
        case 1: walk(b, e0, m, L, 1, seed, sc, vc, tl, tr, fc, z, out, rk); break;
        case 2: walk(b, e0, m, L, 2, seed, sc, vc, tl, tr, fc, z, out, rk); break;
        case 3: walk(b, e0, m, L, 3, seed, sc, vc, tl, tr, fc, z, out, rk); break;
        default: walk(b, e0, m, L, 4, seed, sc, vc, tl, tr, fc, z, out, rk); break;
        }
}

static int has_aes(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1");
}

static int sized(Py_buffer *v, Py_ssize_t words, const char *name) {
    if (v->len == words * 8) return 1;
    PyErr_Format(PyExc_ValueError, "dcf eval: %s has %zd bytes, expected %zd", name, v->len, words * 8);
    return 0;
}

static PyObject *py_eval(PyObject *self, PyObject *args) {
    int b, bits;
    Py_buffer v[7], out;
    if (!PyArg_ParseTuple(args, "iy*y*y*y*y*y*y*iw*", &b, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &bits,
                          &out))
        return NULL;
    const Py_ssize_t m = v[6].len / 8, L = bits;
    const Py_ssize_t P = m ? v[5].len / 8 / m : 0;
    int ok = 1;
    if (v[6].len % 8 || (m && v[5].len % (8 * m))) {
        PyErr_SetString(PyExc_ValueError, "dcf eval: z must be whole int64 words and fc (P, m) int64");
        ok = 0;
    } else if (!has_aes()) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU lacks AES-NI: use dcf.py's numpy path");
        ok = 0;
    } else if (m <= 0 || m % 64 || L < 1 || L > 63 || P < 1 || P > MAXP || (b != 0 && b != 1)) {
        PyErr_Format(PyExc_ValueError, "dcf eval: m=%zd (a positive multiple of 64), bits=%zd (1..63), "
                     "P=%zd (1..%d), b=%d (0 or 1)", m, L, P, MAXP, b);
        ok = 0;
    } else {
        ok = sized(&v[0], 2 * m, "seed") && sized(&v[1], 2 * L * m, "sc") && sized(&v[2], L * P * m, "vc") &&
             sized(&v[3], L * (m / 64), "tl") && sized(&v[4], L * (m / 64), "tr") && sized(&v[5], P * m, "fc") &&
             sized(&out, P * m, "out");
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        eval_all(b, (int64_t)m, (int)L, (int)P, v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, v[5].buf,
                 v[6].buf, out.buf);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 7; i++) PyBuffer_Release(&v[i]);
    PyBuffer_Release(&out);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_available(PyObject *self, PyObject *args) { return PyBool_FromLong(has_aes()); }

static PyMethodDef methods[] = {
    {"eval", py_eval, METH_VARARGS, "eval(b, seed, sc, vc, tl, tr, fc, z, bits, out): party b's DCF outputs"},
    {"available", py_available, METH_NOARGS, "whether this CPU runs eval (AES-NI and SSE4.1)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dcfeval", NULL, -1, methods};

PyMODINIT_FUNC PyInit__dcfeval(void) { return PyModule_Create(&module); }

/* AES-128 in counter mode with the CPU's AES instructions: the keystream of
 * kernels/prg.py, byte for byte the same as `cryptography`'s AES-128-CTR encrypting
 * zeros with the initial counter block (stream id, 8 bytes big-endian || 0, 8 bytes).
 *
 * Why: the dealer and the parties expand hundreds of MB of shares per large op, and
 * OpenSSL's CTR mode runs 4 blocks per AES-NI instruction stream (about 8 GB/s
 * here). With VAES (AVX-512) this file runs 16 blocks in flight on 512-bit registers;
 * on CPUs with VAES and AVX2 but no AVX-512 (AMD Zen 3) the same 16 blocks on 256-bit
 * registers (ctr256; keystream's force256 argument runs it anywhere it can, for tests).
 * It is standard AES-128: round keys from AESKEYGENASSIST (FIPS-197), blocks encrypted
 * with AESENC/AESENCLAST, whose timing does not depend on the key or the data.
 *
 * keystream(key: 16 bytes, stream_id: int, out: writable buffer[, first_block: int])
 * -> None fills `out` with keystream bytes from block first_block (default 0; the GIL
 * is released); vaes() says whether the CPU can run it, on either path (kernels/prg.py
 * falls back to `cryptography` where it cannot).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "aes128.h"

#define TARGET __attribute__((target("aes,sse4.1,avx512f,avx512bw,vaes")))

/* The scalar helpers, once per target (a 512-bit path's helpers may not run on an AVX2-only CPU). */
#define HELPERS(TGT, SFX)                                                                           \
    TGT static void key_schedule##SFX(const uint8_t *key, __m128i rk[11]) {                         \
        rk[0] = _mm_loadu_si128((const __m128i *)key);                                              \
        AES128_SCHEDULE(rk);                                                                        \
    }                                                                                               \
    /* One counter block: stream id and block index, both big-endian. */                            \
    TGT static __m128i counter_block##SFX(uint64_t sid, uint64_t idx) {                             \
        return _mm_set_epi64x((long long)__builtin_bswap64(idx), (long long)__builtin_bswap64(sid)); \
    }                                                                                               \
    TGT static __m128i encrypt1##SFX(__m128i b, const __m128i rk[11]) {                             \
        b = _mm_xor_si128(b, rk[0]);                                                                \
        for (int r = 1; r < 10; r++) b = _mm_aesenc_si128(b, rk[r]);                                \
        return _mm_aesenclast_si128(b, rk[10]);                                                     \
    }                                                                                               \
    /* Blocks i.. of the nbytes one block at a time, the last one cut to what is left. */           \
    TGT static void tail##SFX(const __m128i rk[11], uint64_t sid, uint64_t first, size_t i, uint8_t *out, \
                              size_t nbytes) {                                                      \
        size_t nblocks = nbytes / 16, rest = nbytes - 16 * nblocks;                                 \
        for (; i < nblocks; i++)                                                                    \
            _mm_storeu_si128((__m128i *)(out + 16 * i), encrypt1##SFX(counter_block##SFX(sid, first + i), rk)); \
        if (rest) {                                                                                 \
            uint8_t last[16];                                                                       \
            _mm_storeu_si128((__m128i *)last, encrypt1##SFX(counter_block##SFX(sid, first + nblocks), rk)); \
            memcpy(out + 16 * nblocks, last, rest);                                                 \
        }                                                                                           \
    }

#define TARGET256 __attribute__((target("aes,sse4.1,avx2,vaes")))

HELPERS(TARGET, )
HELPERS(TARGET256, 256)

TARGET static void ctr(const uint8_t *key, uint64_t sid, uint64_t first, uint8_t *out, size_t nbytes) {
    __m128i rk[11];
    key_schedule(key, rk);
    __m512i k[11];
    for (int r = 0; r < 11; r++) k[r] = _mm512_broadcast_i32x4(rk[r]);
    /* lanes: even 64-bit lanes hold the big-endian stream id, odd ones the block index
     * (native); the shuffle byte-swaps the odd lanes into big-endian before encrypting */
    const __m512i swap = _mm512_set_epi8(
        8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0,
        8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0,
        8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0,
        8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0);
    const long long be = (long long)__builtin_bswap64(sid);  /* even lanes: final already (identity bytes) */
    __m512i c0 = _mm512_set_epi64((long long)(first + 3), be, (long long)(first + 2), be, (long long)(first + 1), be,
                                  (long long)first, be);
    const __m512i step4 = _mm512_set_epi64(4, 0, 4, 0, 4, 0, 4, 0);
    __m512i c1 = _mm512_add_epi64(c0, step4), c2 = _mm512_add_epi64(c1, step4), c3 = _mm512_add_epi64(c2, step4);
    const __m512i step16 = _mm512_set_epi64(16, 0, 16, 0, 16, 0, 16, 0);
    size_t nblocks = nbytes / 16, i = 0;
    for (; i + 16 <= nblocks; i += 16) {
        __m512i b0 = _mm512_xor_si512(_mm512_shuffle_epi8(c0, swap), k[0]);
        __m512i b1 = _mm512_xor_si512(_mm512_shuffle_epi8(c1, swap), k[0]);
        __m512i b2 = _mm512_xor_si512(_mm512_shuffle_epi8(c2, swap), k[0]);
        __m512i b3 = _mm512_xor_si512(_mm512_shuffle_epi8(c3, swap), k[0]);
        for (int r = 1; r < 10; r++) {
            b0 = _mm512_aesenc_epi128(b0, k[r]);
            b1 = _mm512_aesenc_epi128(b1, k[r]);
            b2 = _mm512_aesenc_epi128(b2, k[r]);
            b3 = _mm512_aesenc_epi128(b3, k[r]);
        }
        b0 = _mm512_aesenclast_epi128(b0, k[10]);
        b1 = _mm512_aesenclast_epi128(b1, k[10]);
        b2 = _mm512_aesenclast_epi128(b2, k[10]);
        b3 = _mm512_aesenclast_epi128(b3, k[10]);
        _mm512_storeu_si512((void *)(out + 16 * i), b0);
        _mm512_storeu_si512((void *)(out + 16 * i + 64), b1);
        _mm512_storeu_si512((void *)(out + 16 * i + 128), b2);
        _mm512_storeu_si512((void *)(out + 16 * i + 192), b3);
        c0 = _mm512_add_epi64(c0, step16);
        c1 = _mm512_add_epi64(c1, step16);
        c2 = _mm512_add_epi64(c2, step16);
        c3 = _mm512_add_epi64(c3, step16);
    }
    tail(rk, sid, first, i, out, nbytes);
}

/* ctr on 256-bit registers (AVX2 + VAES, no AVX-512): 8 registers of 2 blocks in flight. */
TARGET256 static void ctr256(const uint8_t *key, uint64_t sid, uint64_t first, uint8_t *out, size_t nbytes) {
    __m128i rk[11];
    key_schedule256(key, rk);
    __m256i k[11];
    for (int r = 0; r < 11; r++) k[r] = _mm256_broadcastsi128_si256(rk[r]);
    const __m256i swap = _mm256_set_epi8(8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0,
                                         8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0);
    const long long be = (long long)__builtin_bswap64(sid);
    __m256i c[8];
    c[0] = _mm256_set_epi64x((long long)(first + 1), be, (long long)first, be);
    for (int j = 1; j < 8; j++) c[j] = _mm256_add_epi64(c[j - 1], _mm256_set_epi64x(2, 0, 2, 0));
    const __m256i step16 = _mm256_set_epi64x(16, 0, 16, 0);
    size_t nblocks = nbytes / 16, i = 0;
    for (; i + 16 <= nblocks; i += 16) {
        __m256i b[8];
        for (int j = 0; j < 8; j++) b[j] = _mm256_xor_si256(_mm256_shuffle_epi8(c[j], swap), k[0]);
        for (int r = 1; r < 10; r++)
            for (int j = 0; j < 8; j++) b[j] = _mm256_aesenc_epi128(b[j], k[r]);
        for (int j = 0; j < 8; j++) {
            b[j] = _mm256_aesenclast_epi128(b[j], k[10]);
            _mm256_storeu_si256((__m256i *)(out + 16 * i + 32 * j), b[j]);
            c[j] = _mm256_add_epi64(c[j], step16);
        }
    }
    tail256(rk, sid, first, i, out, nbytes);
}

static int has_vaes512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("vaes");
}

static int has_vaes256(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vaes");
}

static int has_vaes(void) { return has_vaes512() || has_vaes256(); }

static PyObject *py_keystream(PyObject *self, PyObject *args) {
    Py_buffer key, out;
    unsigned long long sid, first = 0;
    int force256 = 0;
    if (!PyArg_ParseTuple(args, "y*Kw*|Kp", &key, &sid, &out, &first, &force256)) return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "AES-128 key must be 16 bytes");
        return NULL;
    }
    int wide = has_vaes512() && !force256;
    if (!wide && !has_vaes256()) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_RuntimeError,
                        "this CPU lacks VAES (with AVX2 or AVX-512): use the cryptography fallback");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (wide) ctr((const uint8_t *)key.buf, (uint64_t)sid, (uint64_t)first, (uint8_t *)out.buf, (size_t)out.len);
    else ctr256((const uint8_t *)key.buf, (uint64_t)sid, (uint64_t)first, (uint8_t *)out.buf, (size_t)out.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&key);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *py_vaes(PyObject *self, PyObject *args) { return PyBool_FromLong(has_vaes()); }

static PyObject *py_vaes512(PyObject *self, PyObject *args) { return PyBool_FromLong(has_vaes512()); }

static PyMethodDef methods[] = {
    {"keystream", py_keystream, METH_VARARGS,
     "keystream(key, stream_id, out[, first_block[, force256]]): AES-128-CTR keystream into out"},
    {"vaes", py_vaes, METH_NOARGS, "whether the CPU runs keystream (AES-NI and VAES, with AVX-512F/BW or AVX2)"},
    {"vaes512", py_vaes512, METH_NOARGS, "whether keystream runs its 512-bit path here (else the 256-bit one)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_aesctr", NULL, -1, methods};

PyMODINIT_FUNC PyInit__aesctr(void) { return PyModule_Create(&module); }

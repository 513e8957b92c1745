/* AES-128 round keys with AES-NI (FIPS-197's expansion through AESKEYGENASSIST), shared by
 * kernels/aesctr.c and kernels/dcfeval.c: AES128_EXPAND(rk, i, rcon) sets rk[i] from rk[i - 1],
 * AES128_SCHEDULE(rk) all of rk[1..10] from rk[0]. Macros, so that each caller compiles them under
 * its own target attribute. */
#ifndef MPCRT_AES128_H
#define MPCRT_AES128_H
#include <immintrin.h>

#define AES128_EXPAND(rk, i, rcon)                                               \
    do {                                                                         \
        __m128i t = _mm_aeskeygenassist_si128(rk[i - 1], rcon);                  \
        __m128i k = rk[i - 1];                                                   \
        t = _mm_shuffle_epi32(t, 0xff);                                          \
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                              \
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                              \
        k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                              \
        rk[i] = _mm_xor_si128(k, t);                                             \
    } while (0)

#define AES128_SCHEDULE(rk)                                                                              \
    do {                                                                                                 \
        AES128_EXPAND(rk, 1, 0x01); AES128_EXPAND(rk, 2, 0x02); AES128_EXPAND(rk, 3, 0x04);             \
        AES128_EXPAND(rk, 4, 0x08); AES128_EXPAND(rk, 5, 0x10); AES128_EXPAND(rk, 6, 0x20);             \
        AES128_EXPAND(rk, 7, 0x40); AES128_EXPAND(rk, 8, 0x80); AES128_EXPAND(rk, 9, 0x1b);             \
        AES128_EXPAND(rk, 10, 0x36);                                                                     \
    } while (0)
#endif

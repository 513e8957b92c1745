/* Ring GEMM over Z_2^64: C (+)= A @ B for row-major int64 matrices, wrapping mod 2^64.
 *
 * Why: torch's int64 matmul (the fallback) is a generic kernel; on an AVX-512 CPU this
 * packed, register-blocked kernel (Goto/BLIS loop order, 6x16 micro-tile of vpmullq +
 * vpaddq) runs a 1024^3 product in ~53 ms where torch takes ~72 ms on one core
 * (measured on the 2-vCPU AMD EPYC of benchmarks/README.md). It is one thread; the
 * Python side (kernels/gemm.py) splits rows across threads, with the GIL released here.
 *
 * The AVX2 path (CPUs without AVX-512: AMD Zen 2/3, Intel client cores) has no 64-bit
 * multiply, so it splits each product: a*b = a_lo*b_lo + 2^32 (a_lo*b_hi + a_hi*b_lo) mod 2^64.
 * vpmuludq gives a_lo*b_lo (64-bit lanes); with B packed beside its 32-bit rotation, one vpmulld
 * gives both cross terms mod 2^32 (the two dwords of a lane), accumulated as dwords and folded
 * into the high half once per micro-tile. Two multiplies and two adds per four MACs, a 2x8 tile.
 * 1024^3 on one Zen 4 core (CPU time): 0.127 s; tiles 3x8 0.17 s, 4x4 0.15 s, 5x4 0.146 s, 6x4
 * 0.18 s, 4x8 0.19 s; A packed with its rotation instead (two broadcasts a row) 0.133 s; the
 * AVX-512 kernel 0.057 s. On Intel client cores vpmulld is two uops, so the multiplies bound it.
 * On Zen 4 (measured, ymm, independent chains) vpmuludq and vpmulld each issue 2 a cycle, vpaddq 4,
 * vfmadd231pd 1.9; but the adds share the multiplies' ports: 4 vpmuludq + 4 vpmulld + 8 adds (one
 * k-step of the 2x8 tile) take 5.3 cycles, not 4, which puts this tile's floor at 0.098 s at 3.6 GHz
 * against 0.107-0.112 s measured (best of 12). Tried on 2026-12-07 and not kept: B pinned in
 * registers and the k loop unrolled by 4 (tiles 2x8, 3x4, 4x4: 0.106-0.111 s, within the noise);
 * Strassen one and two levels deep over Z_2^64 (sums of blocks formed while packing, each of the 7
 * or 49 products added into up to four blocks of C): 0.945x and 0.97x of this kernel at 1024^3,
 * 1.01-1.17x at 512^3 and 1.08-1.28x for a 128x1152x784 convolution GEMM, the 12.5% (23%) fewer
 * multiplies spent on the summed packing and the extra passes over C. Also tried (2026-12-07, not kept):
 * a hybrid tile, 2x8 in vectors plus 2x1..2x4 columns by scalar imul (the scalar multiplier sits idle):
 * 0.120-0.126 s against 0.109-0.112 s for this kernel in the same run; the extra loads and adds cost more.
 *
 * Compiled without -march flags: each kernel carries its own target attribute, so the same
 * binary loads on any x86-64 CPU, and the AVX2 kernel uses no AVX-512 instruction even where
 * the CPU has them (so it measures what an AVX2-only CPU runs). gemm.py asks avx512() / avx2().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

#define MR 6    /* rows of a micro-tile: 6 x 2 accumulators + 2 B vectors + 1 broadcast < 32 zmm */
#define NR 16   /* columns of a micro-tile: two 8-lane vectors */
#define KC 256  /* depth of a packed block: a B micro-panel (KC x NR, 32 KB) stays in L1 */
#define MC 120  /* rows of a packed A block (MC x KC, 240 KB) stay in L2 */
#ifndef MR2
#define MR2 2   /* the AVX2 micro-tile: 2 rows x NV2 vectors x 2 accumulators + 2 NV2 B + 1 broadcast */
#endif
#ifndef NV2
#define NV2 2   /* vectors of 4 words per row of the AVX2 tile */
#endif
#define NR2 (4 * NV2)
#define KIND_AVX512 0
#define KIND_AVX2 1

#if HAVE_X86
__attribute__((target("avx512f,avx512dq")))
static void micro_kernel(int kc, const int64_t *ap, const int64_t *bp, int64_t *c, Py_ssize_t ldc, int add)
{
    __m512i acc[MR][2];
    for (int r = 0; r < MR; r++) {
        acc[r][0] = _mm512_setzero_si512();
        acc[r][1] = _mm512_setzero_si512();
    }
    for (int kk = 0; kk < kc; kk++) {
        __m512i b0 = _mm512_load_si512(bp + kk * NR), b1 = _mm512_load_si512(bp + kk * NR + 8);
        for (int r = 0; r < MR; r++) {
            __m512i a = _mm512_set1_epi64(ap[kk * MR + r]);
            acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_mullo_epi64(a, b0));
            acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_mullo_epi64(a, b1));
        }
    }
    for (int r = 0; r < MR; r++) {
        int64_t *row = c + r * ldc;
        if (add) {
            acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_loadu_si512(row));
            acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_loadu_si512(row + 8));
        }
        _mm512_storeu_si512(row, acc[r][0]);
        _mm512_storeu_si512(row + 8, acc[r][1]);
    }
}

/* ap: [kk][MR2]; bp: [kk][NR2 words][the same NR2 words, each rotated by 32 bits]. */
__attribute__((target("avx2")))
static void micro_kernel_avx2(int kc, const int64_t *ap, const int64_t *bp, int64_t *c, Py_ssize_t ldc, int add)
{
    __m256i lo[MR2][NV2], x[MR2][NV2];
    for (int r = 0; r < MR2; r++)
        for (int v = 0; v < NV2; v++) lo[r][v] = x[r][v] = _mm256_setzero_si256();
    for (int kk = 0; kk < kc; kk++) {
        __m256i b[NV2], br[NV2];
        for (int v = 0; v < NV2; v++) {
            b[v] = _mm256_load_si256((const __m256i *)(bp + kk * 2 * NR2 + 4 * v));
            br[v] = _mm256_load_si256((const __m256i *)(bp + kk * 2 * NR2 + NR2 + 4 * v));
        }
        for (int r = 0; r < MR2; r++) {
            __m256i a = _mm256_set1_epi64x(ap[kk * MR2 + r]);
            for (int v = 0; v < NV2; v++) {
                lo[r][v] = _mm256_add_epi64(lo[r][v], _mm256_mul_epu32(a, b[v]));      /* a_lo b_lo */
                x[r][v] = _mm256_add_epi32(x[r][v], _mm256_mullo_epi32(a, br[v]));     /* a_lo b_hi | a_hi b_lo */
            }
        }
    }
    for (int r = 0; r < MR2; r++) {
        int64_t *row = c + r * ldc;
        for (int v = 0; v < NV2; v++) {
            __m256i t = _mm256_add_epi32(x[r][v], _mm256_srli_epi64(x[r][v], 32));  /* cross sum, low dword */
            __m256i z = _mm256_add_epi64(lo[r][v], _mm256_slli_epi64(t, 32));
            if (add) z = _mm256_add_epi64(z, _mm256_loadu_si256((const __m256i *)(row + 4 * v)));
            _mm256_storeu_si256((__m256i *)(row + 4 * v), z);
        }
    }
}

/* B rows k0..k0+kc, all m columns, as nr-wide panels [panel][kk][nr], zero-padded; with rot, each
 * row of nr words is followed by the same words rotated by 32 bits (the AVX2 kernel's cross terms). */
static void pack_b(const int64_t *b, Py_ssize_t m, int k0, int kc, int nr, int rot, int64_t *bp)
{
    Py_ssize_t panels = (m + nr - 1) / nr;
    int ld = nr * (rot + 1);
    for (Py_ssize_t p = 0; p < panels; p++) {
        Py_ssize_t j0 = p * nr, w = m - j0 < nr ? m - j0 : nr;
        int64_t *dst = bp + p * (Py_ssize_t)kc * ld;
        for (int kk = 0; kk < kc; kk++) {
            const int64_t *src = b + (Py_ssize_t)(k0 + kk) * m + j0;
            int64_t *row = dst + kk * ld;
            memcpy(row, src, w * 8);
            if (w < nr) memset(row + w, 0, (nr - w) * 8);
            if (rot)
                for (int j = 0; j < nr; j++) {
                    uint64_t v = (uint64_t)row[j];
                    row[nr + j] = (int64_t)((v >> 32) | (v << 32));
                }
        }
    }
}

/* A rows i0..i0+mc, columns k0..k0+kc, as mr-row tiles [tile][kk][mr], zero-padded. */
static void pack_a(const int64_t *a, Py_ssize_t k, Py_ssize_t i0, int mc, int k0, int kc, int mr, int64_t *ap)
{
    for (int t = 0; t < mc; t += mr) {
        int64_t *dst = ap + (Py_ssize_t)t * kc;
        for (int r = 0; r < mr; r++) {
            if (t + r < mc) {
                const int64_t *src = a + (i0 + t + r) * k + k0;
                for (int kk = 0; kk < kc; kk++) dst[kk * mr + r] = src[kk];
            } else {
                for (int kk = 0; kk < kc; kk++) dst[kk * mr + r] = 0;
            }
        }
    }
}

/* out[n x m] (+)= a[n x k] @ b[k x m] with the kernel `kind`; returns 0, or -1 when out of memory. */
static int gemm(const int64_t *a, const int64_t *b, int64_t *out, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m,
                int accumulate, int kind)
{
    int mr = kind == KIND_AVX2 ? MR2 : MR, nr = kind == KIND_AVX2 ? NR2 : NR, rot = kind == KIND_AVX2;
    Py_ssize_t panels = (m + nr - 1) / nr;
    int64_t *bp = aligned_alloc(64, (size_t)panels * KC * nr * 8 * (rot + 1));
    int64_t *ap = aligned_alloc(64, (size_t)(MC + MR) * KC * 8);
    if (!bp || !ap) {
        free(bp);
        free(ap);
        return -1;
    }
    int64_t edge[MR * NR] __attribute__((aligned(64)));
    if (k == 0 && !accumulate) memset(out, 0, (size_t)n * m * 8);
    for (Py_ssize_t k0 = 0; k0 < k; k0 += KC) {
        int kc = (int)(k - k0 < KC ? k - k0 : KC);
        int add = accumulate || k0 > 0;
        pack_b(b, m, (int)k0, kc, nr, rot, bp);
        for (Py_ssize_t i0 = 0; i0 < n; i0 += MC) {
            int mc = (int)(n - i0 < MC ? n - i0 : MC);
            pack_a(a, k, i0, mc, (int)k0, kc, mr, ap);
            for (Py_ssize_t p = 0; p < panels; p++) {
                Py_ssize_t j0 = p * nr;
                int w = (int)(m - j0 < nr ? m - j0 : nr);
                const int64_t *bpp = bp + p * (Py_ssize_t)kc * nr * (rot + 1);
                for (int t = 0; t < mc; t += mr) {
                    int h = mc - t < mr ? mc - t : mr;
                    int64_t *c = out + (i0 + t) * m + j0;
                    const int64_t *app = ap + (Py_ssize_t)t * kc;
                    int full = h == mr && w == nr;
                    int64_t *dst = full ? c : edge;  /* edge tile: into a scratch tile, copy the valid part */
                    Py_ssize_t ld = full ? m : nr;
                    if (kind == KIND_AVX2) micro_kernel_avx2(kc, app, bpp, dst, ld, full && add);
                    else micro_kernel(kc, app, bpp, dst, ld, full && add);
                    if (!full)
                        for (int r = 0; r < h; r++)
                            for (int j = 0; j < w; j++)
                                c[r * m + j] = (int64_t)((uint64_t)edge[r * nr + j]
                                                         + (add ? (uint64_t)c[r * m + j] : 0));
                }
            }
        }
    }
    free(bp);
    free(ap);
    return 0;
}
#endif

static int cpu_ok(int kind)
{
#if HAVE_X86
    __builtin_cpu_init();
    if (kind == KIND_AVX2) return __builtin_cpu_supports("avx2");
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    (void)kind;
    return 0;
#endif
}

static PyObject *py_avx512(PyObject *self, PyObject *args)
{
    return PyBool_FromLong(cpu_ok(KIND_AVX512));
}

static PyObject *py_avx2(PyObject *self, PyObject *args)
{
    return PyBool_FromLong(cpu_ok(KIND_AVX2));
}

/* matmul(a, b, out, n, k, m, accumulate[, kind]): buffers of C-contiguous int64; kind 0 AVX-512, 1 AVX2. */
static PyObject *py_matmul(PyObject *self, PyObject *args)
{
    Py_buffer a, b, out;
    Py_ssize_t n, k, m;
    int accumulate, kind = KIND_AVX512;
    if (!PyArg_ParseTuple(args, "y*y*w*nnnp|i", &a, &b, &out, &n, &k, &m, &accumulate, &kind)) return NULL;
    PyObject *ret = NULL;
    if (kind != KIND_AVX512 && kind != KIND_AVX2) {
        PyErr_SetString(PyExc_ValueError, "kind must be 0 (AVX-512) or 1 (AVX2)");
    } else if (!cpu_ok(kind)) {
        PyErr_SetString(PyExc_RuntimeError, kind == KIND_AVX2 ? "this CPU lacks AVX2; use the limb GEMM"
                                                             : "this CPU lacks AVX-512F/DQ; use the AVX2 or limb GEMM");
    } else if (n < 0 || k < 0 || m < 0 || a.len < n * k * 8 || b.len < k * m * 8 || out.len < n * m * 8) {
        PyErr_SetString(PyExc_ValueError, "buffers smaller than the shapes (n, k, m) say");
    } else {
#if HAVE_X86
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = gemm((const int64_t *)a.buf, (const int64_t *)b.buf, (int64_t *)out.buf, n, k, m, accumulate, kind);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory();
        else ret = Py_NewRef(Py_None);
#endif
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    return ret;
}

static PyMethodDef methods[] = {
    {"avx512", py_avx512, METH_NOARGS, "True when this CPU runs the AVX-512 kernel."},
    {"avx2", py_avx2, METH_NOARGS, "True when this CPU runs the AVX2 kernel."},
    {"matmul", py_matmul, METH_VARARGS,
     "matmul(a, b, out, n, k, m, accumulate, kind=0): out (+)= a @ b mod 2^64; kind 0 AVX-512, 1 AVX2."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gemm64", "Ring GEMM over Z_2^64 (AVX-512, AVX2).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__gemm64(void) { return PyModule_Create(&module); }

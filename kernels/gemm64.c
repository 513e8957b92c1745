/* Ring GEMM over Z_2^64: C (+)= A @ B for row-major int64 matrices, wrapping mod 2^64.
 *
 * Why: torch's int64 matmul (the fallback) is a generic kernel; on an AVX-512 CPU this
 * packed, register-blocked kernel (Goto/BLIS loop order, 6x16 micro-tile of vpmullq +
 * vpaddq) runs a 1024^3 product in ~53 ms where torch takes ~72 ms on one core
 * (measured on the 2-vCPU AMD EPYC of benchmarks/README.md). It is one thread; the
 * Python side (kernels/gemm.py) splits rows across threads, with the GIL released here.
 *
 * Only the AVX-512F+DQ path exists; gemm.py asks avx512() and otherwise uses torch.
 * Compiled without -march flags: the kernel carries its own target attribute, so the
 * same binary loads on any x86-64 CPU.
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

/* B rows k0..k0+kc, all m columns, as NR-wide panels [panel][kk][NR], zero-padded. */
static void pack_b(const int64_t *b, Py_ssize_t m, int k0, int kc, int64_t *bp)
{
    Py_ssize_t panels = (m + NR - 1) / NR;
    for (Py_ssize_t p = 0; p < panels; p++) {
        Py_ssize_t j0 = p * NR, w = m - j0 < NR ? m - j0 : NR;
        int64_t *dst = bp + p * (Py_ssize_t)kc * NR;
        for (int kk = 0; kk < kc; kk++) {
            const int64_t *src = b + (Py_ssize_t)(k0 + kk) * m + j0;
            memcpy(dst + kk * NR, src, w * 8);
            if (w < NR) memset(dst + kk * NR + w, 0, (NR - w) * 8);
        }
    }
}

/* A rows i0..i0+mc, columns k0..k0+kc, as MR-row tiles [tile][kk][MR], zero-padded. */
static void pack_a(const int64_t *a, Py_ssize_t k, Py_ssize_t i0, int mc, int k0, int kc, int64_t *ap)
{
    for (int t = 0; t < mc; t += MR) {
        int64_t *dst = ap + (Py_ssize_t)t * kc;
        for (int r = 0; r < MR; r++) {
            if (t + r < mc) {
                const int64_t *src = a + (i0 + t + r) * k + k0;
                for (int kk = 0; kk < kc; kk++) dst[kk * MR + r] = src[kk];
            } else {
                for (int kk = 0; kk < kc; kk++) dst[kk * MR + r] = 0;
            }
        }
    }
}

/* out[n x m] (+)= a[n x k] @ b[k x m]; returns 0, or -1 when out of memory. */
static int gemm(const int64_t *a, const int64_t *b, int64_t *out, Py_ssize_t n, Py_ssize_t k, Py_ssize_t m, int accumulate)
{
    Py_ssize_t panels = (m + NR - 1) / NR;
    int64_t *bp = aligned_alloc(64, (size_t)panels * KC * NR * 8);
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
        pack_b(b, m, (int)k0, kc, bp);
        for (Py_ssize_t i0 = 0; i0 < n; i0 += MC) {
            int mc = (int)(n - i0 < MC ? n - i0 : MC);
            pack_a(a, k, i0, mc, (int)k0, kc, ap);
            for (Py_ssize_t p = 0; p < panels; p++) {
                Py_ssize_t j0 = p * NR;
                int w = (int)(m - j0 < NR ? m - j0 : NR);
                for (int t = 0; t < mc; t += MR) {
                    int h = mc - t < MR ? mc - t : MR;
                    int64_t *c = out + (i0 + t) * m + j0;
                    if (h == MR && w == NR) {
                        micro_kernel(kc, ap + (Py_ssize_t)t * kc, bp + p * (Py_ssize_t)kc * NR, c, m, add);
                    } else {  /* edge tile: compute into a scratch tile, copy the valid part */
                        micro_kernel(kc, ap + (Py_ssize_t)t * kc, bp + p * (Py_ssize_t)kc * NR, edge, NR, 0);
                        for (int r = 0; r < h; r++)
                            for (int j = 0; j < w; j++)
                                c[r * m + j] = (int64_t)((uint64_t)edge[r * NR + j] + (add ? (uint64_t)c[r * m + j] : 0));
                    }
                }
            }
        }
    }
    free(bp);
    free(ap);
    return 0;
}
#endif

static int cpu_ok(void)
{
#if HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

static PyObject *py_avx512(PyObject *self, PyObject *args)
{
    return PyBool_FromLong(cpu_ok());
}

/* matmul(a, b, out, n, k, m, accumulate): buffers of C-contiguous int64. */
static PyObject *py_matmul(PyObject *self, PyObject *args)
{
    Py_buffer a, b, out;
    Py_ssize_t n, k, m;
    int accumulate;
    if (!PyArg_ParseTuple(args, "y*y*w*nnnp", &a, &b, &out, &n, &k, &m, &accumulate)) return NULL;
    PyObject *ret = NULL;
    if (!cpu_ok()) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU lacks AVX-512F/DQ; use the torch GEMM");
    } else if (n < 0 || k < 0 || m < 0 || a.len < n * k * 8 || b.len < k * m * 8 || out.len < n * m * 8) {
        PyErr_SetString(PyExc_ValueError, "buffers smaller than the shapes (n, k, m) say");
    } else {
#if HAVE_X86
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = gemm((const int64_t *)a.buf, (const int64_t *)b.buf, (int64_t *)out.buf, n, k, m, accumulate);
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
    {"matmul", py_matmul, METH_VARARGS, "matmul(a, b, out, n, k, m, accumulate): out (+)= a @ b mod 2^64."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gemm64", "Ring GEMM over Z_2^64 (AVX-512).", -1, methods};

PyMODINIT_FUNC PyInit__gemm64(void) { return PyModule_Create(&module); }

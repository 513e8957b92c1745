"""Every exact ring GEMM kernel this CPU runs (kernels.gemm: avx512, avx2, blas limbs, torch) against
one float64 matmul (numpy's BLAS DGEMM) of the same size, and the Beaver matmul's two-product sum.

    .venv/bin/python benchmarks/gemm_paths.py [--sizes 512,1024] [--threads 1] [--repeats 3]
                                               [--no-torch] [--out FILE.json]

Runs are interleaved (each repeat times every path in turn) and the best wall time of each is
kept, with its process CPU time beside it (steadier on a shared machine). Every result is checked
against the picked kernel's, bit for bit. Prints a Markdown table: path, size, seconds, ratio to
the DGEMM, and the CPU (model name, the flags that decide the pick, BLAS's core type).

To see what a CPU without AVX-512 runs, force BLAS's and torch's AVX2 kernels for the whole
process (gemm64.c's AVX2 kernel never uses AVX-512 instructions anyway):
    OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/gemm_paths.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from mpcrt.kernels import gemm, limbgemm


def cpu_model() -> dict:
    """Model name, the pick-deciding flags, and BLAS's kernel (threadpoolctl), for the table."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name":
                    model = val.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(val.split())
    except OSError:
        pass
    blas = "?"
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i.get('internal_api')} {i.get('architecture', '')}" for i in threadpool_info()
                         if i.get("user_api") == "blas")
    except ImportError:
        pass
    return {"model": model, "flags": sorted(flags & {"avx2", "avx512f", "avx512dq", "vaes", "fma", "asimd"}),
            "blas": blas, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", ""),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY", ""), "picked": gemm.KIND}


def _timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    r = fn()
    return time.perf_counter() - w, time.process_time() - c, r


def bench(n: int, threads: int, repeats: int, torch_too: bool) -> list[dict]:
    rng = np.random.default_rng(n)
    a1, b1, a2, b2 = (rng.integers(-(2**63), 2**63 - 1, (n, n), dtype=np.int64, endpoint=True) for _ in range(4))
    fa, fb = a1.astype(np.float64), b1.astype(np.float64)
    limbgemm.blas_threads(threads)
    gemm.torch(threads)
    kinds = [k for k in gemm.KINDS if gemm.available(k) and (torch_too or k != "torch")]
    paths = {"float64 DGEMM": lambda: np.matmul(fa, fb)}
    for k in kinds:
        paths[f"{k} matmul"] = lambda k=k: gemm.matmul(a1, b1, threads=threads, kind=k)
        paths[f"{k} matmul2"] = lambda k=k: gemm.matmul2(a1, b1, a2, b2, threads=threads, kind=k)
    want = {"matmul": gemm.matmul(a1, b1, threads=threads), "matmul2": gemm.matmul2(a1, b1, a2, b2, threads=threads)}
    best = {p: (float("inf"), float("inf")) for p in paths}
    for name, fn in paths.items():  # warm up (numba's first call, BLAS buffers)
        fn()
    for _ in range(repeats):
        for name, fn in paths.items():
            if name.startswith("torch") and best[name][0] > 5 and _ > 0:
                continue  # seconds per call (torch on a CPU without AVX-512): once is enough
            w, c, r = _timed(fn)
            if name != "float64 DGEMM" and not (r == want[name.split()[-1]]).all():
                raise AssertionError(f"{name} differs from the {gemm.KIND} kernel at n={n}")
            best[name] = (min(best[name][0], w), min(best[name][1], c))
    base_w, base_c = best["float64 DGEMM"]
    return [{"path": p, "n": n, "threads": threads, "seconds": w, "cpu_seconds": c,
             "x_dgemm": w / base_w, "x_dgemm_cpu": c / base_c} for p, (w, c) in best.items()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1024", help="comma-separated n of the n^3 products")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true", help="skip torch's int64 matmul")
    ap.add_argument("--out", help="also write the rows and the CPU as JSON here")
    args = ap.parse_args(argv)
    cpu = cpu_model()
    rows = [r for n in map(int, args.sizes.split(",")) for r in bench(n, args.threads, args.repeats, not args.no_torch)]
    print(f"CPU: {cpu['model']}; flags {' '.join(cpu['flags'])}; BLAS {cpu['blas']}; OPENBLAS_CORETYPE="
          f"{cpu['OPENBLAS_CORETYPE'] or '(unset)'}; ATEN_CPU_CAPABILITY={cpu['ATEN_CPU_CAPABILITY'] or '(unset)'}; "
          f"picked: {cpu['picked']}")
    print("\n| path | n | threads | seconds | x DGEMM | CPU seconds | x DGEMM (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['path']} | {r['n']} | {r['threads']} | {r['seconds']:.4f} | {r['x_dgemm']:.1f} | "
              f"{r['cpu_seconds']:.4f} | {r['x_dgemm_cpu']:.1f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": cpu, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

"""Ring GEMM (Z_2^64) on the CPU against the GPU kernels of kernels/cuda_gemm.py.

    python3 benchmarks/gpu_gemm.py [--sizes 256,1024,4096] [--out DIR | --out FILE.json]

For each product: the CPU GEMM (kernels.gemm: AVX-512 kernel or torch; MPCRT_THREADS
threads, default all cores), each GPU kernel on operands already on the GPU (CUDA
events), and the host-to-host call the runtime makes (upload, product, download).
Every GPU result is checked against the CPU's, bit for bit. Prints a Markdown table and writes
the rows to --out (default ./bench-results/gpu_gemm-DATE-PID.json; '' writes none).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

os.environ.setdefault("MPCRT_THREADS", str(os.cpu_count() or 1))
from mpcrt.kernels import cuda_gemm, gemm  # noqa: E402
from mpcrt.launch import harness  # noqa: E402


def _best(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def _gpu_best(cp, fn, repeats: int) -> float:
    fn()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    ts = []
    for _ in range(repeats):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ts.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return min(ts)


def shapes(sizes: list[int]) -> list[tuple[str, tuple, tuple]]:
    out = [(f"{s}^3", (s, s), (s, s)) for s in sizes]
    # a ResNet-18 layer-2 conv as im2col GEMM: batch 8, 128 out channels, 3x3x128 taps, 28x28 outputs
    out.append(("conv 8x(128x1152 @ 1152x784)", (1, 128, 1152), (8, 1152, 784)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024,2048,4096", help="square sizes (comma list)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=harness.DEFAULT_OUT,
                    help=f"folder (or .json file) for the rows (default {harness.DEFAULT_OUT}; '' writes none)")
    a = ap.parse_args(argv)
    if not cuda_gemm.available():
        print("gpu_gemm: no CuPy or no CUDA GPU here; nothing to measure", file=sys.stderr)
        return 2
    cp = cuda_gemm.cupy()
    props = cp.cuda.runtime.getDeviceProperties(0)
    gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    rng = np.random.default_rng(1)
    rows = []
    for name, sa, sb in shapes([int(s) for s in a.sizes.split(",")]):
        A = rng.integers(-(2**63), 2**63 - 1, size=sa, dtype=np.int64, endpoint=True)
        B = rng.integers(-(2**63), 2**63 - 1, size=sb, dtype=np.int64, endpoint=True)
        macs = int(np.prod(np.broadcast_shapes(sa[:-2], sb[:-2]))) * sa[-2] * sa[-1] * sb[-1]
        want = gemm.matmul(A, B)
        row = {"shape": name, "macs": macs, "cpu_s": _best(lambda: gemm.matmul(A, B), a.repeats)}
        dA, dB = cp.asarray(A), cp.asarray(B)
        for kernel, dev in (("int64", lambda: cuda_gemm.matmul_int64_dev(dA, dB)),
                            ("fp64", lambda: cuda_gemm.matmul_fp64_dev(dA, dB))):
            got = cuda_gemm.matmul(A, B, kernel)
            if not (got == want).all():
                print(f"gpu_gemm: {kernel} kernel WRONG on {name}", file=sys.stderr)
                return 1
            row[f"{kernel}_device_s"] = _gpu_best(cp, dev, a.repeats)
            row[f"{kernel}_host_s"] = _best(lambda: cuda_gemm.matmul(A, B, kernel), a.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nRing GEMM mod 2^64, {os.cpu_count()} CPU threads ({platform.processor() or platform.machine()}) vs "
          f"{gpu_name}; best of {a.repeats}; every GPU result equal to the CPU's.\n")
    print("| product | CPU s | int64 kernel on GPU s | fp64 limbs on GPU s | int64 host-to-host s "
          "| fp64 host-to-host s | int64 TMAC/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['cpu_s']:.4g} | {r['int64_device_s']:.3g} | {r['fp64_device_s']:.3g} | "
              f"{r['int64_host_s']:.3g} | {r['fp64_host_s']:.3g} | {r['macs'] / r['int64_device_s'] / 1e12:.2f} |")
    if a.out:
        path = harness.result_path(a.out, "gpu_gemm")
        harness.write_json(path, {"gpu": gpu_name, "cpu_threads": os.cpu_count(), "rows": rows})
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

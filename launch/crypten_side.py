#!/usr/bin/env python3
"""CrypTen 0.4.1 side-by-side runner: the same workloads as mpcrt's benchmarks,
run through CrypTen so the two can be compared on the same machine.

    python launch/crypten_side.py --parties 2 --ops mul,matmul256,relu --json out.json
    python -m mpcrt.launch.crypten_side ...      (the same, where mpcrt is installed)

Setup (see benchmarks/CRYPTEN.md): CrypTen with the TTP tuple provider, gloo on
loopback, one process per party plus the TTP process, torch.set_num_threads(1)
in each. For each workload a fresh set of processes is started; each party
runs one warm-up and --repeats timed repeats. A repeat's time is the slowest
party's wall time for the operation on already-encrypted inputs up to the
encrypted output (triples come from the TTP on line, so its work is included);
the reported time is the median over the repeats. Rounds and bytes are
CrypTen's own communication statistics (crypten.comm.get().get_communication_stats(),
reset after the start barrier, read right after the operation), party-to-party
only: what party 0 exchanges with the TTP inside tuple requests is reported apart.
max_abs_err is max |revealed output / 2**16 - float64 reference|.

It imports torch, CrypTen and two files beside it, model_zoo.py (the networks) and
harness.py (CPU load), never the mpcrt runtime: mpcrt's drivers (`mpcrt bench --crypten`,
benchmarks/models.py) run it by its path in a separate process.

Exit codes: 0 all workloads ran; 1 some workload failed or timed out (the JSON
still says which, with "error"); 3 CrypTen is not importable (nothing is run).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import functools
import inspect
import os
import queue as queue_mod
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import warnings

if __package__:  # imported as mpcrt.launch.crypten_side
    from . import harness, model_zoo
else:  # run by its path, as the drivers run it (python launch/crypten_side.py): this folder is sys.path[0]
    import harness
    import model_zoo

EXIT_NO_CRYPTEN = harness.EXIT_NO_CRYPTEN
ELEMENTWISE_N = 1_000_000
# outputs off by more than this are counted as gross failures (e.g. the rare
# wrap-around failures of CrypTen's probabilistic truncation)
GROSS_ERROR = 1000.0

# --------------------------------------------------------------------------
# torch >= 2.9 shim for CrypTen 0.4.1 (runtime monkeypatching only; no CrypTen
# code is copied). CrypTen's crypten/nn/onnx_converter.py
#   1. imports `torch.onnx._internal.registration`, which moved to
#      `torch.onnx._internal.torchscript_exporter.registration`, and
#   2. calls torch.onnx.export without `dynamo=`, whose default became True
#      (the torch.export-based exporter needs onnxscript and does not use the
#      symbolics CrypTen registers); CrypTen needs the TorchScript exporter.
# --------------------------------------------------------------------------


def _install_torch_onnx_shim():
    """Alias the moved registration module before `import crypten`."""
    import importlib

    import torch.onnx  # noqa: F401

    for old in ("torch.onnx.symbolic_registry", "torch.onnx._internal.registration"):
        try:
            importlib.import_module(old)
            return  # an older torch that CrypTen handles by itself
        except ImportError:
            pass
    from torch.onnx._internal.torchscript_exporter import registration

    sys.modules["torch.onnx._internal.registration"] = registration
    import torch.onnx._internal as internal

    internal.registration = registration


@contextlib.contextmanager
def _torchscript_onnx_export():
    """Within the block, torch.onnx.export defaults to dynamo=False."""
    import torch.onnx

    orig = torch.onnx.export
    params = inspect.signature(orig).parameters
    if "dynamo" not in params:
        yield
        return

    @functools.wraps(orig)
    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return orig(*args, **kwargs)

    torch.onnx.export = export
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript exporter deprecation notices
            yield
    finally:
        torch.onnx.export = orig


def _patch_crypten_exporter(crypten):
    conv = crypten.nn.onnx_converter
    if getattr(conv._export_pytorch_model, "_crypten_side_shim", False):
        return
    orig = conv._export_pytorch_model

    @functools.wraps(orig)
    def _export_pytorch_model(*args, **kwargs):
        with _torchscript_onnx_export():
            return orig(*args, **kwargs)

    _export_pytorch_model._crypten_side_shim = True
    conv._export_pytorch_model = _export_pytorch_model


def import_crypten():
    """Returns (crypten module, None) or (None, reason)."""
    try:
        _install_torch_onnx_shim()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypten
        _patch_crypten_exporter(crypten)
    except Exception as exc:  # ImportError, or a CrypTen/torch mismatch at import
        return None, f"{type(exc).__name__}: {exc}"
    return crypten, None


def _digits_inputs(n, image):
    """The last n samples of scikit-learn's bundled digits set (pixels / 16, float64)."""
    import torch

    try:
        x = torch.tensor(model_zoo.last_digits(n, image), dtype=torch.float64)
    except Exception:  # scikit-learn missing: same shape, uniform [0, 1]
        x = torch.rand(n, 64, dtype=torch.float64)
        x = x.reshape(n, 1, 8, 8) if image else x
    return x


# --------------------------------------------------------------------------
# workloads: setup(crypten, torch, world) -> (run, finish)
#   run():       the timed operation on encrypted inputs, returns a CrypTensor
#   finish(out): decrypts (all parties) and returns max abs error vs float64
# --------------------------------------------------------------------------


def _uniform(torch, shape, lo, hi):
    return torch.rand(*shape, dtype=torch.float64) * (hi - lo) + lo


def _on_grid(crypten, x):
    """Rounds plaintext inputs to the fixed-point grid (2**-precision_bits).

    Inputs are then encoded exactly, so max_abs_err measures the protocols and
    not input quantization (CrypTen's encoder truncates toward zero: an input in
    (-2**-16, 0) would encode as 0 and flip x < 0 against the reference).
    """
    scale = 2.0 ** int(crypten.cfg.encoder.precision_bits)
    return (x * scale).round() / scale


def _decrypt_errors(out, ref):
    """Decrypts `out` once (all parties): (exact, crypten) max abs errors, gross count.

    exact: the revealed ring elements divided by 2**precision in float64, i.e. the
    protocol's own error. crypten: CrypTen's get_plain_text decode (float32, and in
    0.4.1 it divides negative values by scale - 1 before flooring, which is off by
    up to 1.0 for a fraction of the negative outputs), reported alongside.
    """
    raw = out.reveal()
    scale = out.encoder.scale
    exact = raw.double() / scale
    crypten_decoded = out.encoder.decode(raw)
    ref = ref.double()
    err = (exact - ref).abs()
    return (float(err.max().item()),
            float((crypten_decoded.double() - ref).abs().max().item()),
            int((err > GROSS_ERROR).sum().item()))


def _unary(method, lo, hi, ref_fn):
    def setup(crypten, torch, world, n):
        x = _on_grid(crypten, _uniform(torch, (n,), lo, hi))
        xe = crypten.cryptensor(x, src=0)
        ref = ref_fn(torch, x)

        def run():
            return method(xe)

        def finish(out):
            return _decrypt_errors(out, ref)

        return run, finish, {"n": n, "input_range": [lo, hi]}

    return setup


def _mul_setup(crypten, torch, world, n):
    x = _on_grid(crypten, _uniform(torch, (n,), -10, 10))
    y = _on_grid(crypten, _uniform(torch, (n,), -10, 10))
    xe = crypten.cryptensor(x, src=0)
    ye = crypten.cryptensor(y, src=1 % world)
    ref = x * y

    def run():
        return xe * ye

    def finish(out):
        return _decrypt_errors(out, ref)

    return run, finish, {"n": n, "input_range": [-10, 10]}


def _matmul(dim):
    def setup(crypten, torch, world, n):
        a = _on_grid(crypten, _uniform(torch, (dim, dim), -1, 1))
        b = _on_grid(crypten, _uniform(torch, (dim, dim), -1, 1))
        ae = crypten.cryptensor(a, src=0)
        be = crypten.cryptensor(b, src=1 % world)
        ref = a @ b

        def run():
            return ae.matmul(be)

        def finish(out):
            return _decrypt_errors(out, ref)

        return run, finish, {"shape": [dim, dim], "input_range": [-1, 1]}

    return setup


def _model(name, input_fn):
    def setup(crypten, torch, world, n):
        torch.manual_seed(1234)  # same random weights in every party
        model = model_zoo.randomize_batchnorm(model_zoo.MODELS[name]()).eval()
        x = _on_grid(crypten, input_fn(torch))
        ref = copy.deepcopy(model).double()(x.double()).detach()
        dummy = torch.empty(x.shape, dtype=torch.float32)
        cmodel = crypten.nn.from_pytorch(model, dummy)
        cmodel.encrypt(src=0)
        cmodel.eval()
        xe = crypten.cryptensor(x, src=0)

        def run():
            with crypten.no_grad():
                return cmodel(xe)

        def finish(out):
            return _decrypt_errors(out, ref)

        return run, finish, {"input_shape": list(x.shape)}

    return setup


def _exp_ref(torch, x):
    return torch.exp(x)


WORKLOADS = {
    "mul": _mul_setup,
    "matmul256": _matmul(256),
    "matmul1024": _matmul(1024),
    "relu": _unary(lambda x: x.relu(), -10, 10, lambda t, x: x.clamp(min=0)),
    "ltz": _unary(lambda x: x < 0, -10, 10, lambda t, x: (x < 0).double()),
    "sigmoid": _unary(lambda x: x.sigmoid(), -10, 10, lambda t, x: t.sigmoid(x)),
    "exp": _unary(lambda x: x.exp(), -10, 5, _exp_ref),
    "reciprocal": _unary(lambda x: x.reciprocal(), 1, 100, lambda t, x: 1.0 / x),
    "digits_mlp": _model("digits_mlp", lambda t: _digits_inputs(360, image=False)),
    "digits_cnn": _model("digits_cnn", lambda t: _digits_inputs(360, image=True)),
    "lenet5": _model("lenet5", lambda t: t.rand(64, 1, 28, 28, dtype=t.float64)),
    "resnet18": _model("resnet18", lambda t: t.randn(1, 3, 32, 32, dtype=t.float64)),
}
GROUPS = {
    "elementwise": ["mul", "relu", "ltz", "sigmoid", "exp", "reciprocal"],
    "matmul": ["matmul256", "matmul1024"],
    "models": ["digits_mlp", "digits_cnn", "lenet5", "resnet18"],
}
DEFAULT_OPS = "mul,matmul256,matmul1024,relu,ltz,sigmoid,exp,reciprocal"


# --------------------------------------------------------------------------
# party processes
# --------------------------------------------------------------------------


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _count_ttp_traffic(crypten, c):
    """Tallies, separately, the communication CrypTen logs inside TTP requests.

    With the TTP provider, party 0 asks the TTP for each tuple batch (send_obj,
    recv_obj, broadcast: 3 logged "rounds") and the other parties expand theirs
    from a seed. That traffic is dealer traffic, not party-to-party rounds; it is
    kept apart so "rounds"/"bytes_per_party" count only the parties' exchanges.
    """
    tally = {"rounds": 0, "bytes": 0}
    client_cls = crypten.mpc.provider.ttp_provider.TTPClient
    try:
        client = client_cls.get()
    except RuntimeError:
        return tally
    orig = client.ttp_request

    @functools.wraps(orig)
    def ttp_request(*args, **kwargs):
        before = c.get_communication_stats()
        try:
            return orig(*args, **kwargs)
        finally:
            after = c.get_communication_stats()
            tally["rounds"] += after["rounds"] - before["rounds"]
            tally["bytes"] += after["bytes"] - before["bytes"]

    client.ttp_request = ttp_request
    return tally


def _party(rank, world, rendezvous, name, n, warmup, repeats, seed, out_q):
    _die_with_parent()
    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        RENDEZVOUS=rendezvous,
        DISTRIBUTED_BACKEND="gloo",
        GLOO_SOCKET_IFNAME="lo",
    )
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        crypten, why = import_crypten()
        if crypten is None:
            raise RuntimeError(why)
        warnings.filterwarnings("ignore")
        crypten.cfg.mpc.provider = "TTP"
        crypten.cfg.communicator.verbose = True  # CrypTen counts only when verbose

        if rank == world:  # the trusted third party: serves requests until rank 0 uninits
            # TTPServer draws the parties' seeds from torch's global RNG, which a
            # forked child inherits from the runner: give it fresh entropy.
            torch.manual_seed(int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1))
            crypten.init()
            crypten.mpc.provider.TTPServer()
            crypten.uninit()
            out_q.put(("ok", rank, None))
            return

        crypten.init()
        torch.manual_seed(seed)  # identical plaintext inputs and references everywhere
        c = crypten.comm.get()
        ttp = _count_ttp_traffic(crypten, c)
        run, finish, meta = WORKLOADS[name](crypten, torch, world, n)

        def barrier():  # straight to torch.distributed: not counted as a round
            dist.barrier(group=c.main_group)

        times, stats = [], []
        out = None
        for i in range(warmup + repeats):
            out = None
            barrier()
            c.reset_communication_stats()
            ttp.update(rounds=0, bytes=0)
            t0 = time.perf_counter()
            out = run()
            t1 = time.perf_counter()
            s = c.get_communication_stats()
            barrier()
            if i >= warmup:
                times.append(t1 - t0)
                stats.append((int(s["rounds"]), int(round(s["bytes"])),
                              int(ttp["rounds"]), int(round(ttp["bytes"]))))
        err = finish(out)
        crypten.uninit()
        out_q.put(("ok", rank, {"times": times, "stats": stats, "err": err, "meta": meta}))
    except BaseException:
        out_q.put(("err", rank, traceback.format_exc()))
        raise SystemExit(1)


def _kill_all(procs):
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=10)


def run_workload(name, parties, n, warmup, repeats, timeout, seed):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out_q = ctx.Queue()
    tmpdir = tempfile.mkdtemp(prefix="crypten-side-")
    rendezvous = "file://" + os.path.join(tmpdir, "rendezvous")
    procs = [
        ctx.Process(
            target=_party,
            args=(rank, parties, rendezvous, name, n, warmup, repeats, seed, out_q),
            name=f"crypten-{name}-{rank}",
        )
        for rank in range(parties + 1)  # rank == parties is the TTP
    ]
    deadline = time.monotonic() + timeout
    replies, error = {}, None
    contention = harness.Contention()
    try:
        for p in procs:
            p.start()
        while len(replies) < len(procs):
            left = deadline - time.monotonic()
            if left <= 0:
                error = f"timed out after {timeout:.0f} s"
                break
            try:
                status, rank, payload = out_q.get(timeout=min(left, 1.0))
            except queue_mod.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and not any(s == "err" for s, _ in replies.values()):
                    # a party died without reporting (e.g. killed for memory)
                    time.sleep(1.0)
                    if len(replies) < len(procs) and out_q.empty():
                        error = f"{dead[0].name} exited with code {dead[0].exitcode}"
                        break
                continue
            replies[rank] = (status, payload)
            if status == "err":
                error = f"party {rank} failed:\n{payload}"
                break
        if error is None:
            for p in procs:
                p.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        _kill_all(procs)
        out_q.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    # CPU time other processes took while this workload ran (ours: this process and
    # its reaped children), as a fraction of the machine: a hint of contention.
    other_frac = contention.share()

    if error is not None:
        return {"time_s": None, "times": [], "rounds": None, "bytes_per_party": None,
                "max_abs_err": None, "error": error}
    contention = {"other_cpu_frac": None if other_frac is None else round(other_frac, 3)}

    party = [replies[r][1] for r in range(parties)]
    times = [max(p["times"][i] for p in party) for i in range(repeats)]
    # (rounds, bytes, ttp_rounds, ttp_bytes) of the last repeat, per rank
    last = [p["stats"][-1] for p in party]
    online_rounds = [r - tr for r, _, tr, _ in last]
    online_bytes = [b - tb for _, b, _, tb in last]
    err_exact, err_crypten, gross = party[0]["err"]
    return {
        "time_s": statistics.median(times),
        "times": times,
        "time_min_s": min(times),
        "rounds": max(online_rounds),
        "bytes_per_party": max(online_bytes),
        "max_abs_err": err_exact,
        "max_abs_err_get_plain_text": err_crypten,
        "gross_errors": gross,
        "rounds_by_rank": online_rounds,
        "bytes_by_rank": online_bytes,
        "ttp_rounds_rank0": last[0][2],
        "ttp_bytes_rank0": last[0][3],
        "stats_varied": any(len({tuple(st) for st in p["stats"]}) > 1 for p in party),
        **party[0]["meta"],
        **contention,
    }


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def _parse_ops(spec):
    names = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "all":
            names += list(WORKLOADS)
        elif item in GROUPS:
            names += GROUPS[item]
        elif item in WORKLOADS:
            names.append(item)
        else:
            raise SystemExit(
                f"unknown workload {item!r}; known: {', '.join(WORKLOADS)} "
                f"or groups {', '.join(GROUPS)}, all"
            )
    return list(dict.fromkeys(names))


def _fmt_bytes(b):
    if b is None:
        return "-"
    return f"{b / 1e9:.2f} GB" if b >= 1e9 else f"{b / 1e6:.1f} MB"


def print_table(doc, file=sys.stdout):
    print(f"CrypTen {doc['version']}, {doc['parties']} parties + TTP, gloo loopback, "
          f"1 thread/process, median of {doc['config']['repeats']}", file=file)
    head = f"{'workload':<12} {'time_s':>9} {'rounds':>7} {'bytes/party':>12} {'max_abs_err':>12}"
    print(head, file=file)
    print("-" * len(head), file=file)
    for name, r in doc["results"].items():
        if r.get("error"):
            print(f"{name:<12} {'FAILED':>9}  {r['error'].splitlines()[0]}", file=file)
            continue
        print(f"{name:<12} {r['time_s']:>9.3f} {r['rounds']:>7d} {_fmt_bytes(r['bytes_per_party']):>12}"
              f" {r['max_abs_err']:>12.3g}", file=file)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=2, help="number of computing parties (TTP extra)")
    ap.add_argument("--ops", default=DEFAULT_OPS,
                    help=f"comma list of workloads or groups ({', '.join(GROUPS)}, all); "
                         f"default {DEFAULT_OPS}")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--n", type=int, default=ELEMENTWISE_N,
                    help="elements for the elementwise workloads (default 1,000,000)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per workload")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before each workload, wait up to this long for the CPUs to be "
                         "< 25%% busy with other work (shared machines); default 0")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--list", action="store_true", help="list workloads and exit")
    args = ap.parse_args(argv)

    if args.list:
        for k, v in GROUPS.items():
            print(f"{k}: {', '.join(v)}")
        return 0
    ops = _parse_ops(args.ops)
    if args.parties < 2:
        ap.error("--parties must be at least 2")
    if args.repeats < 1 or args.warmup < 0:
        ap.error("--repeats >= 1 and --warmup >= 0")

    crypten, why = import_crypten()
    if crypten is None:
        print(f"crypten is not importable ({why}); see benchmarks/CRYPTEN.md", file=sys.stderr)
        return EXIT_NO_CRYPTEN
    import torch

    doc = {
        "framework": "crypten",
        "version": getattr(crypten, "__version__", "unknown"),
        "parties": args.parties,
        "config": {
            "provider": "TTP", "backend": "gloo", "threads_per_process": 1,
            "warmup": args.warmup, "repeats": args.repeats, "torch": torch.__version__,
            "precision_bits": int(crypten.cfg.encoder.precision_bits),
            "time": "median over repeats of the slowest party's op time (TTP on line)",
            "rounds": "max over parties of CrypTen comm_rounds, TTP requests excluded "
                      "(those are ttp_rounds_rank0)",
            "bytes_per_party": "max over parties of CrypTen comm_bytes, TTP traffic excluded "
                               "(ttp_bytes_rank0); CrypTen's count, about sent + received",
            "max_abs_err": "revealed ring values / 2**precision_bits in float64 vs a float64 "
                           "reference; max_abs_err_get_plain_text uses CrypTen's own decode",
        },
        "results": {},
    }
    failed = False
    for name in ops:
        t0 = time.monotonic()
        busy = harness.wait_idle(args.wait_idle) if args.wait_idle > 0 else harness.cpu_busy(0.5)
        load_before = os.getloadavg()[0]
        res = run_workload(name, args.parties, args.n, args.warmup, args.repeats,
                           args.timeout, args.seed)
        res["loadavg_1m_before"] = round(load_before, 2)
        res["cpu_busy_before"] = None if busy is None else round(busy, 2)
        failed |= bool(res.get("error"))
        doc["results"][name] = res
        status = "FAILED" if res.get("error") else f"{res['time_s']:.3f} s"
        print(f"[{name}] {status} ({time.monotonic() - t0:.0f} s wall)", file=sys.stderr, flush=True)
        if res.get("error"):
            print(res["error"], file=sys.stderr)
        if args.json:  # written after each workload, so a long run keeps what it has
            harness.write_json(args.json, doc, indent=2)
    print_table(doc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

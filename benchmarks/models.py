#!/usr/bin/env python3
"""Model benchmark: private inference of whole networks with real launched sessions.

    python benchmarks/models.py [--parties 2,3] [--models digits_mlp,digits_cnn,lenet5,resnet18_b1]
                                [--network none|lan|wan|DELAY_MS:RATE_MBIT[,...]]
                                [--channels curve,plaintext | --insecure-plaintext] [--repeats R]
                                [--no-crypten] [--wait-idle S] [--profile] [--out DIR] [--timeout S]
    python benchmarks/models.py --list

For each model, each N and each kind of channel, one session of `python -m mpcrt
launch -n N` (N parties + the dealer, each its own process, CurveZMQ or, with
--insecure-plaintext, plaintext sockets) runs this file as the party script (the
launcher passes MPCRT_MODELS_PARTY=1). In the session:

1. party 0 (model owner) builds the network (digits: trained exactly as
   examples/digits_demo.py trains it, by importing that file; the others: random
   weights from --seed) and imports it with `mpcrt.nn.from_torch(net, example, src=0)`;
   party 1 (data owner) secret-shares the input batch (`rt.share(x, src=1)`).
   Neither is timed (CrypTen's runner does not time its encryption either).
2. warm-up: one untimed forward pass over the whole batch (imports, torch's lazy
   initialisation, allocator), dealer on line.
3. end to end, R times: barrier, t0, `logits = model(x)` (dealer on line: party 0
   asks for material while the protocol runs), t1, barrier. The time of a repeat is
   the slowest party's t1 - t0; rounds and bytes are rt.stats() deltas between t0
   and t1, per party.
4. offline + online, R times: barrier, `rt.preprocess(lambda: model(x))` (a
   shape-only dry run that records the dealer requests, then fetches and expands all
   material) timed as offline; barrier; `model(x)` timed as online.
5. check (untimed): the last logits are revealed to party 0, which holds the
   plaintext model and (public split / seeded synthetic) inputs: argmax agreement
   with the plaintext model (digits: of the 360 test images) and max |error| of the
   logits against float64. A benchmark check only, not the demo's roles.

Party 0 gathers every party's figures and writes them to a JSON file the driver
reads. The timed call is the forward pass to shared logits (no reveal: one more
round), over the whole batch in one call (digits: all 360 test images in one batch,
not the demo's batches of 90).

Models (`--list`):
  digits_mlp      examples/digits_demo.py's MLP (64-64-32-10), trained, 360 test images
  digits_cnn      examples/digits_demo.py's CNN (conv-BN-ReLU, residual block, maxpool, FC), trained, 360
  lenet5          LeNet-5 (conv 6@5x5 pad 2, ReLU, maxpool 2, conv 16@5x5, ReLU, maxpool 2,
                  FC 120, ReLU, FC 84, ReLU, FC 10), random weights, batch 64 of 1x28x28
  resnet18_b1     torchvision-style ResNet-18 (launch/model_zoo.py), random weights, eval, 1x3x32x32
  resnet18_b32    the same, batch 32 (a few seconds per pass here; in the default set)
  ct_digits_mlp   launch/crypten_side.py's digits MLP (64-128-10), random weights, 360 digits
  ct_digits_cnn   crypten_side.py's 2-conv digits CNN (conv 16, ReLU, conv 32, ReLU, FC 2048-10), 360
  resnet18_cifar  ResNet-18 in the CIFAR layout (3x3 stem, no maxpool, FC 10), 1x3x32x32 (not by default)
  vgg16_cifar     VGG-16 with BatchNorm, CIFAR layout (FC 512-10), 1x3x32x32 (not by default)
The ct_ models exist so that the CrypTen comparison is like for like: crypten_side.py's
digits workloads are not the demo's networks (they are the ones the issue quotes).

Networks: --network lan|wan|DELAY_MS:RATE_MBIT runs each session with every party and the
dealer in its own network namespace (launch/netsim.py; root), the dealer on its own node of
the same network, the network validated first; the report then adds, per model, the lower
bound rounds x one-way delay + the busiest link direction's bytes / rate (online: material
fetched ahead; e2e: dealer on line, its bytes counted), the dealer's MB per inference, and
CrypTen's rounds and bytes with the bound they give on the same network (measured here on
loopback when CrypTen is installed, else the figures the issue quotes, marked *).

CrypTen: unless --no-crypten, the models crypten_side.py has (ct_digits_mlp ->
digits_mlp, ct_digits_cnn -> digits_cnn, lenet5, resnet18_b1 -> resnet18) are run
through `launch/crypten_side.py --parties N` (a subprocess, exit 3 = CrypTen not
importable: skipped) and the ratio mpcrt / CrypTen is printed against mpcrt with
plaintext channels (CrypTen's gloo channels are plaintext too). CrypTen's time is
end to end (TTP on line), its bytes are its own count (about sent + received).

Output: a table on the terminal, and a JSON file in --out (default ./bench-results:
models-DATE-PID.json, rewritten after each session; --json PATH names the file instead)
with every figure (per party, per repeat),
the machine's load average before/after each session and the CrypTen results.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

from mpcrt.launch import harness
from mpcrt.launch.bench_args import Network, parse_networks
from mpcrt.launch.party_timing import barrier, gather, slowest, timed

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_table import _agree, print_crypten, print_network, print_table, summarize  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
THIS = os.path.abspath(__file__)
DEMO = os.path.join(REPO_ROOT, "examples", "digits_demo.py")
PARTY_FLAG = "MPCRT_MODELS_PARTY"
RECV_TIMEOUT = 600.0  # seconds a party waits for one message (big layers on a loaded 2-core host)

MODEL_INFO = {
    # name: (description, input shape, default repeats, crypten_side workload or None)
    "digits_mlp": ("digits_demo MLP 64-64-32-10, trained, 360 test images", (360, 64), 3, None),
    "digits_cnn": ("digits_demo CNN (conv-BN-ReLU, residual block, maxpool, FC), trained, 360 test images",
                   (360, 1, 8, 8), 3, None),
    "lenet5": ("LeNet-5, random weights, batch 64 of 1x28x28", (64, 1, 28, 28), 3, "lenet5"),
    "resnet18_b1": ("ResNet-18 (torchvision-style), random weights, 1x3x32x32", (1, 3, 32, 32), 3, "resnet18"),
    "resnet18_b32": ("ResNet-18 (torchvision-style), random weights, batch 32 of 3x32x32", (32, 3, 32, 32), 3, None),
    "ct_digits_mlp": ("crypten_side.py digits MLP 64-128-10, random weights, 360 digits", (360, 64), 3, "digits_mlp"),
    "ct_digits_cnn": ("crypten_side.py 2-conv digits CNN, random weights, 360 digits", (360, 1, 8, 8), 3, "digits_cnn"),
    "resnet18_cifar": ("ResNet-18, CIFAR layout (3x3 stem, no maxpool, FC 10), random weights, 1x3x32x32",
                       (1, 3, 32, 32), 3, None),
    "vgg16_cifar": ("VGG-16 with BatchNorm, CIFAR layout (FC 512-10), random weights, 1x3x32x32", (1, 3, 32, 32),
                    3, None),
    "lstm_b1": ("2-layer LSTM (16 features, hidden 64), 24 steps, last step to 5 classes, random weights",
                (1, 24, 16), 3, None),
    "encoder_b1": ("transformer encoder layer (d 64, 4 heads, ff 256, GELU), 32 tokens, mean-pooled to 5 classes, "
                   "random weights", (1, 32, 64), 3, None),
}
ZOO_NAME = {"resnet18_b1": "resnet18", "resnet18_b32": "resnet18", "vgg16_cifar": "vgg16", "lstm_b1": "lstm",
            "encoder_b1": "encoder"}  # else: less "ct_"
DEFAULT_MODELS = "digits_mlp,digits_cnn,lenet5,resnet18_b1,resnet18_b32,ct_digits_mlp,ct_digits_cnn"
DIGITS = ("digits_mlp", "digits_cnn", "ct_digits_mlp", "ct_digits_cnn")

def _demo():
    """examples/digits_demo.py as a module (its models, train() and digits())."""
    import importlib.util

    if "mpcrt_digits_demo" in sys.modules:
        return sys.modules["mpcrt_digits_demo"]
    spec = importlib.util.spec_from_file_location("mpcrt_digits_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mpcrt_digits_demo"] = mod
    spec.loader.exec_module(mod)
    return mod


def _digits_test(image: bool):
    """The demo's test split (360 images, train_test_split(test_size=0.2, random_state=0))."""
    x, y = _demo().digits("test", image)
    return x, y


def build_model(name: str, seed: int, cache_dir: str | None):
    """The model owner's network (eval mode)."""
    import numpy as np
    import torch

    from mpcrt.launch import model_zoo

    if name in ("digits_mlp", "digits_cnn"):
        demo = _demo()
        kind = "mlp" if name == "digits_mlp" else "cnn"
        net = demo.CNN() if kind == "cnn" else demo.MLP()
        path = os.path.join(cache_dir, f"{name}_seed{seed}.npz") if cache_dir else None
        if path and os.path.exists(path):  # trained by an earlier session of this run: same weights
            with np.load(path, allow_pickle=False) as z:
                net.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
        else:
            net = demo.train(kind, seed=seed)
            if path:
                tmp = path + f".{os.getpid()}.tmp"
                with open(tmp, "wb") as fh:
                    np.savez(fh, **{k: v.detach().numpy() for k, v in net.state_dict().items()})
                os.replace(tmp, path)
        return net.eval()
    torch.manual_seed(seed)
    zoo_name = ZOO_NAME.get(name, name.removeprefix("ct_"))
    return model_zoo.randomize_batchnorm(model_zoo.MODELS[zoo_name]()).eval()  # (no BatchNorm: no draw)


def model_input(name: str, seed: int):
    """The data owner's input batch (numpy float32)."""
    import numpy as np

    from mpcrt.launch import model_zoo

    if name in ("digits_mlp", "digits_cnn"):
        return _digits_test(name == "digits_cnn")[0]
    if name in ("ct_digits_mlp", "ct_digits_cnn"):
        return model_zoo.last_digits(360, name == "ct_digits_cnn").astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    shape = MODEL_INFO[name][1]
    if name == "lenet5":
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


# =====================================================================================
# party side (run by `mpcrt launch` with MPCRT_MODELS_PARTY=1)
# =====================================================================================
def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _profile_start():
    import cProfile

    pr = cProfile.Profile()
    pr.enable()
    return pr


def _profile_stop(pr, title: str) -> str:
    import io
    import pstats

    pr.disable()
    s = io.StringIO()
    s.write(f"===== {title}\n")
    ps = pstats.Stats(pr, stream=s)
    ps.sort_stats("tottime").print_stats(25)
    ps.sort_stats("cumulative").print_stats(35)
    return s.getvalue()


def party_main(cfg: dict, out_path: str) -> None:
    import numpy as np
    import torch

    import mpcrt
    import mpcrt.nn

    t_start = time.perf_counter()
    rt = mpcrt.init()
    torch.set_num_threads(int(os.environ.get("MPCRT_THREADS", "1")))
    name, seed, repeats = cfg["model"], cfg["seed"], cfg["repeats"]
    OWNER, DATA = 0, 1

    # ---- setup (untimed): model owner builds its net, data owner its inputs
    net = example = data = None
    t0 = time.perf_counter()
    if rt.rank == OWNER:
        net = build_model(name, seed, cfg.get("cache_dir"))
        example = torch.zeros((1,) + tuple(MODEL_INFO[name][1][1:]))
    build_s = time.perf_counter() - t0
    if rt.rank == DATA:
        data = model_input(name, seed)
    t0 = time.perf_counter()
    model = mpcrt.nn.from_torch(net, example, src=OWNER)
    x = rt.share(data, src=DATA)
    import_s = time.perf_counter() - t0

    def fn():
        return model(x)

    # ---- warm-up (untimed, dealer on line)
    t0 = time.perf_counter()
    wx = x if not cfg.get("warmup_batch") else x[: cfg["warmup_batch"]]
    for _ in range(cfg.get("warmup", 1)):
        model(wx)
    warmup_s = time.perf_counter() - t0

    # ---- end to end (dealer on line)
    e2e, e2e_stats = [], []
    for _ in range(repeats):
        t, out, st = timed(rt, fn, by_op=True)
        e2e.append(t)
        e2e_stats.append(st)
    # ---- offline (preprocess) + online
    online, offline, online_stats, plan_sizes = [], [], [], []
    prof_text = None
    for i in range(repeats):
        prof = cfg.get("profile") and i == repeats - 1
        barrier(rt)
        if prof:
            prof_text = ""
            pr = _profile_start()
        t0 = time.perf_counter()
        plan_sizes.append(rt.preprocess(fn))
        offline.append(time.perf_counter() - t0)
        if prof:
            prof_text += _profile_stop(pr, f"OFFLINE (rt.preprocess), party {rt.rank}")
            pr = _profile_start()
        t, out, st = timed(rt, fn, by_op=True)
        if prof:
            prof_text += _profile_stop(pr, f"ONLINE (model(x), material prefetched), party {rt.rank}")
        online.append(t)
        online_stats.append(st)

    # ---- check (untimed): reveal the last logits to the model owner
    got = out.reveal(to=OWNER)
    check = None
    if rt.rank == OWNER:
        xin = model_input(name, seed)
        with torch.no_grad():
            pred_plain = net(torch.from_numpy(xin)).argmax(1).numpy()
            ref = net.double()(torch.from_numpy(xin).double()).numpy()
        pred = got.argmax(1)
        check = {"agree": int((pred == pred_plain).sum()), "of": int(len(pred)),
                 "max_abs_err": float(np.max(np.abs(got - ref))), "logit_absmax": float(np.max(np.abs(ref)))}
        if name in ("digits_mlp", "digits_cnn"):
            labels = _digits_test(name == "digits_cnn")[1]
            check["private_correct"] = int((pred == labels).sum())
            check["plaintext_correct"] = int((pred_plain == labels).sum())

    mine = {
        "rank": rt.rank, "e2e": e2e, "online": online, "offline": offline,
        "e2e_stats": e2e_stats, "online_stats": online_stats, "plan_requests": plan_sizes,
        "build_s": build_s, "import_s": import_s, "warmup_s": warmup_s,
        "setup_to_measure_s": time.perf_counter() - t_start,
        "maxrss_mb": _maxrss_mb(), "threads": torch.get_num_threads(),
        "stats_varied": any({k: v for k, v in s.items() if k != "by_op"}
                            != {k: v for k, v in e2e_stats[0].items() if k != "by_op"} for s in e2e_stats),
        "profile": prof_text,
    }
    allp = gather(rt, mine)
    if rt.rank != 0:
        return
    res = {"model": name, "parties": rt.world_size, "channels": cfg["channels"], "repeats": repeats,
           "input_shape": list(MODEL_INFO[name][1]), "check": check, "per_party": allp,
           "weights": int(model.graph.param_count), "graph_nodes": len(model.graph.nodes)}
    for k in ("e2e", "online", "offline"):  # per repeat: the slowest party
        res[k] = slowest(allp, k)
    harness.write_json(out_path, res, indent=None)


# =====================================================================================
# driver
# =====================================================================================
def run_session(model: str, n: int, channels: str, repeats: int, seed: int, *, timeout: float, cache_dir: str,
                warmup: int = 1, warmup_batch: int | None = None, profile: bool = False,
                verbose: bool = False) -> dict:
    """One `mpcrt launch -n N` session running this file as every party's script."""
    cfg = {"model": model, "seed": seed, "repeats": repeats, "channels": channels, "cache_dir": cache_dir,
           "warmup": warmup, "warmup_batch": warmup_batch, "profile": profile}
    with tempfile.TemporaryDirectory(prefix="mpcrt-models-") as d:
        out = os.path.join(d, "result.json")
        load0 = os.getloadavg()
        s = harness.launch_session(n, THIS, [json.dumps(cfg), out], timeout=timeout, recv_timeout=RECV_TIMEOUT,
                                   insecure=channels == "plaintext", verbose=verbose,
                                   env=dict(os.environ, **{PARTY_FLAG: "1"}), cwd=REPO_ROOT)
        err = s.error
        res = {"model": model, "parties": n, "channels": channels}
        if os.path.exists(out):
            with open(out) as fh:
                res = json.load(fh)
        elif err is None:
            err = "the parties exited without writing a result"
        if err:
            res["error"] = f"{err}\n{s.log}"
        res["session_wall_s"] = s.wall_s
        res["loadavg_before"] = [round(v, 2) for v in load0]
        res["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        return res


def run_session_netsim(model: str, n: int, channels: str, repeats: int, seed: int, net: Network, *,
                       timeout: float, cache_dir: str, warmup: int = 1, warmup_batch: int | None = None,
                       verbose: bool = False) -> dict:
    """The same session with each party and the dealer in its own network namespace (launch/netsim.py,
    n + 1 nodes: the dealer on its own node of the same network); the network is validated first."""
    from mpcrt.launch.netsim import NetSim

    cfg = {"model": model, "seed": seed, "repeats": repeats, "channels": channels, "cache_dir": cache_dir,
           "warmup": warmup, "warmup_batch": warmup_batch, "profile": False}
    with tempfile.TemporaryDirectory(prefix="mpcrt-models-") as d, \
            NetSim(n + 1, net.delay_ms, net.rate_mbit or 0) as ns:
        out = os.path.join(d, "result.json")
        v = ns.validate(seconds=1.0)
        if not v["ok"]:  # a busy machine can upset one measurement
            v = ns.validate(seconds=1.0)
        ns.write_cluster(insecure=channels == "plaintext")
        t0 = time.monotonic()
        r = ns.run_mpc(THIS, [json.dumps(cfg), out], timeout=timeout,
                       env_extra={PARTY_FLAG: "1", "MPCRT_TIMEOUT": str(RECV_TIMEOUT), "PYTHONPATH": REPO_ROOT,
                                  # the links, for the comparison protocol's cost model (unless set)
                                  "MPCRT_NETWORK": os.environ.get("MPCRT_NETWORK")
                                  or f"{net.delay_ms:g}:{net.rate_mbit or 0:g}"})
        res = {"model": model, "parties": n, "channels": channels}
        if os.path.exists(out):
            with open(out) as fh:
                res = json.load(fh)
        err = None
        if r.timed_out:
            err = f"timed out after {timeout:.0f} s"
        elif not r.ok:
            err = "failed: " + ", ".join(f"{k} exit {c}" for k, c in r.returncodes.items() if c != 0)
        elif "per_party" not in res:
            err = "the parties exited without writing a result"
        if err:
            res["error"] = err + "\n" + "\n".join(f"--- {k}\n{o[-1500:]}" for k, o in r.outputs.items())
        if verbose:
            for k, o in r.outputs.items():
                print(f"--- {k}\n{o}", file=sys.stderr)
        res["session_wall_s"] = time.monotonic() - t0
        res["network"] = {"name": net.name, "delay_ms": net.delay_ms, "rate_mbit": net.rate_mbit, "validation": v}
        res["loadavg_before"] = res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        return res


def run_crypten(n: int, workloads: list[str], repeats: int, *, timeout: float, wait_idle: float = 0.0) -> dict:
    """crypten_side.py --parties n --ops workloads; {"available", "reason", "results": {workload: res}}."""
    rep = {"available": False, "reason": None, "results": {}, "version": None}
    if not workloads:
        rep["reason"] = "no model with a CrypTen counterpart selected"
        return rep
    c = harness.run_crypten_side(n, workloads, repeats=repeats, timeout=timeout, wait_idle=wait_idle)
    if c.unavailable:
        rep["reason"] = c.unavailable
        return rep
    if c.doc is not None:
        rep.update(available=True, version=c.doc.get("version"), results=c.doc.get("results", {}),
                   config=c.doc.get("config"))
    else:
        rep["reason"] = c.error
    if c.error:
        rep["log_tail"] = c.error
    return rep


def _parse_list(spec: str, known, what: str) -> list:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    for s in items:
        if s not in known:
            raise SystemExit(f"unknown {what} {s!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(items))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", default="2,3", help="party counts, comma separated (default 2,3)")
    ap.add_argument("--models", default=DEFAULT_MODELS,
                    help=f"comma list, or 'all' (default {DEFAULT_MODELS})")
    ap.add_argument("--network", default="none",
                    help="none (loopback), lan (0.25 ms, 10 Gbit/s), wan (25 ms, 100 Mbit/s) or DELAY_MS:RATE_MBIT, "
                         "comma separated; simulated ones run each node in its own network namespace (root)")
    ap.add_argument("--no-fixed-masks", action="store_true",
                    help="weights re-masked on every call (MPCRT_FIXED_MASKS=0), as before issue 19")
    ap.add_argument("--channels", default="curve", help="curve, plaintext or curve,plaintext (default curve)")
    ap.add_argument("--insecure-plaintext", action="store_true",
                    help="plaintext channels only (same as --channels plaintext; local benchmarking only)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats of each of e2e and offline+online (default 3)")
    ap.add_argument("--warmup-batch", type=int, default=None,
                    help="warm up on the first K inputs instead of the whole batch")
    ap.add_argument("--seed", type=int, default=0, help="training / random weight / input seed (default 0)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per launched session (default 1200)")
    ap.add_argument("--no-crypten", action="store_true", help="do not run launch/crypten_side.py")
    ap.add_argument("--crypten-repeats", type=int, default=3, help="crypten_side.py --repeats (default 3)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before each session (and each CrypTen workload), wait up to this long for the CPUs "
                         "to be < 25%% busy with other work (shared machines); default 0")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile every party's last online run; the text goes to the JSON (and --profile-dir)")
    ap.add_argument("--profile-dir", default=None, help="also write the profiles here, one file per party")
    ap.add_argument("--out", default=harness.DEFAULT_OUT,
                    help=f"folder for the JSON results (default {harness.DEFAULT_OUT}; '' writes none)")
    ap.add_argument("--json", default=None,
                    help="write all results to this file instead (rewritten after each session)")
    ap.add_argument("--verbose", action="store_true", help="show the parties' output")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    a = ap.parse_args(argv)

    if a.list:
        for k, (desc, shape, _, ct) in MODEL_INFO.items():
            print(f"{k:<14} {desc}; input {shape}" + (f"; CrypTen: crypten_side.py {ct}" if ct else ""))
        return 0
    models = list(MODEL_INFO) if a.models.strip() == "all" else _parse_list(a.models, MODEL_INFO, "model")
    try:
        parties = [int(t) for t in a.parties.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--parties {a.parties!r}: use e.g. 2,3")
    if not parties or any(n < 2 for n in parties):
        ap.error("--parties needs party counts >= 2")
    if a.no_fixed_masks:
        os.environ["MPCRT_FIXED_MASKS"] = "0"  # the sessions' processes inherit it
    try:
        networks = parse_networks(a.network)
    except ValueError as e:
        ap.error(str(e))
    chans = ["plaintext"] if a.insecure_plaintext else _parse_list(a.channels, ("curve", "plaintext"), "channel kind")
    if any(m in DIGITS for m in models):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            ap.error("the digits models need scikit-learn: pip install 'mpcrt[examples]'")

    doc = {
        "benchmark": "models", "argv": sys.argv[1:] if argv is None else argv,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "uptime_before": harness.uptime()},
        "config": {"parties": parties, "models": models, "channels": chans, "networks": [x.name for x in networks],
                   "seed": a.seed,
                   "recv_timeout_s": RECV_TIMEOUT, "precision": 16,
                   "time": "median over repeats of the slowest party's forward time (model(x) to shared logits)"},
        "sessions": [], "rows": [], "crypten": {},
    }

    path = a.json or (harness.result_path(a.out, "models") if a.out else None)

    def dump():
        if path:
            harness.write_json(path, doc)

    rows = []
    with tempfile.TemporaryDirectory(prefix="mpcrt-models-cache-") as cache:
        for m in models:
            reps = a.repeats or MODEL_INFO[m][2]
            for n, ch, net in ((n, ch, net) for net in networks for n in parties for ch in chans):
                busy = harness.wait_idle(a.wait_idle) if a.wait_idle > 0 else harness.cpu_busy(0.5)
                print(f"[{m}, {n} parties, {ch}, {net.name}] ...", end=" ", file=sys.stderr, flush=True)
                if net.simulated:
                    res = run_session_netsim(m, n, ch, reps, a.seed, net, timeout=a.timeout, cache_dir=cache,
                                             warmup_batch=a.warmup_batch, verbose=a.verbose)
                else:
                    res = run_session(m, n, ch, reps, a.seed, timeout=a.timeout, cache_dir=cache,
                                      warmup_batch=a.warmup_batch, profile=a.profile, verbose=a.verbose)
                res["cpu_busy_before"] = None if busy is None else round(busy, 2)
                row = summarize(res, net, MODEL_INFO[m][3])
                row["cpu_busy_before"] = res["cpu_busy_before"]
                rows.append(row)
                doc["sessions"].append(res)
                doc["rows"] = rows
                dump()
                if row.get("error"):
                    print(f"FAILED ({res['session_wall_s']:.0f} s): {res['error'][:3000]}", file=sys.stderr)
                else:
                    print(f"e2e {row['e2e_s']:.3f} s, online {row['online_s']:.3f} s, offline "
                          f"{row['offline_s']:.3f} s, {row['rounds']} rounds, agree {_agree(row)} "
                          f"({res['session_wall_s']:.0f} s wall, load {res['loadavg_before'][0]:.1f}, "
                          f"CPUs busy before {'?' if busy is None else f'{100 * busy:.0f}%'})",
                          file=sys.stderr, flush=True)
                if a.profile and a.profile_dir and "per_party" in res:
                    os.makedirs(a.profile_dir, exist_ok=True)
                    for p in res["per_party"]:
                        if p.get("profile"):
                            with open(os.path.join(a.profile_dir, f"{m}_N{n}_{ch}_p{p['rank']}.txt"), "w") as fh:
                                fh.write(p["profile"])

    crypten: dict = {}
    if not a.no_crypten:
        workloads = list(dict.fromkeys(MODEL_INFO[m][3] for m in models if MODEL_INFO[m][3]))
        for n in parties:
            print(f"[CrypTen, {n} parties: {', '.join(workloads) or '-'}] ...", file=sys.stderr, flush=True)
            crypten[n] = run_crypten(n, workloads, a.crypten_repeats, timeout=min(a.timeout, 900.0),
                                     wait_idle=a.wait_idle)
            doc["crypten"][str(n)] = crypten[n]
            dump()
            if not crypten[n]["available"]:
                break  # the reason holds for every N
    doc["machine"]["uptime_after"] = harness.uptime()
    dump()
    print(f"\nmpcrt model benchmark, {os.cpu_count()} CPUs, {doc['machine']['uptime_before']}", flush=True)
    print_table([r for r in rows if r.get("network", "loopback") == "loopback"], crypten)
    print_crypten(rows, crypten)
    print_network(rows, crypten)
    if path:
        print(f"\nwrote {path}")
    fails = [r for r in rows if r.get("error")]
    return 1 if fails else 0


if __name__ == "__main__":
    if os.environ.get(PARTY_FLAG) == "1" and "MPCRT_RANK" in os.environ:
        if len(sys.argv) != 3:
            sys.exit("models.py party side: argv CONFIG_JSON OUT_PATH")
        party_main(json.loads(sys.argv[1]), sys.argv[2])
    else:
        sys.exit(main())

"""The `mpcrt bench` machinery: parsing, the lower bound, a tiny real run (N=2, loopback),
the JSON and the table, plots, the CrypTen and netsim paths. Fast (< 60 s in all)."""
from __future__ import annotations

import json
import math
import os

import pytest

from mpcrt.launch import cli
from mpcrt.launch import bench_args, bench_report, bench_run, harness, plots
from mpcrt.launch.workloads import WORKLOADS


# ------------------------------------------------------------------ parsing
def test_parse_size():
    assert bench_args.parse_size("1000") == 1000
    assert bench_args.parse_size("1e6") == 1_000_000
    assert bench_args.parse_size("100k") == 100_000
    assert bench_args.parse_size("2M") == 2_000_000
    assert bench_args.parse_size("2^10") == 1024
    for bad in ("0", "-5", "1.5", "abc", ""):
        with pytest.raises(ValueError):
            bench_args.parse_size(bad)


def test_parse_sizes_per_op():
    ops = ["mul", "matmul", "ltz"]
    # bare sizes go to the element-wise ops only; matmul keeps its default
    s = bench_args.parse_sizes("1e4", ops)
    assert s == {"mul": [10_000], "matmul": [WORKLOADS["matmul"].default_size], "ltz": [10_000]}
    s = bench_args.parse_sizes("1e3:1e4,matmul=256:1024,ltz=5", ops)
    assert s == {"mul": [1000, 10_000], "matmul": [256, 1024], "ltz": [5]}
    s = bench_args.parse_sizes("100,200", ["mul"])
    assert s == {"mul": [100, 200]}
    # only matmul selected: a bare size is its n
    assert bench_args.parse_sizes("64", ["matmul"]) == {"matmul": [64]}
    assert bench_args.parse_sizes(None, ["mul"]) == {"mul": [WORKLOADS["mul"].default_size]}
    with pytest.raises(ValueError, match="unknown op"):
        bench_args.parse_sizes("nope=5", ops)
    with pytest.raises(ValueError, match="unknown op"):
        bench_args.parse_ops("mul,nope")


def test_parse_networks_and_parties():
    assert bench_args.parse_networks("none") == [bench_args.Network("loopback")]
    lan, wan = bench_args.parse_networks("lan,wan")
    assert (lan.delay_ms, lan.rate_mbit) == (0.25, 10_000.0)
    assert (wan.delay_ms, wan.rate_mbit) == (25.0, 100.0)
    (d,) = bench_args.parse_networks("10:50")
    assert (d.delay_ms, d.rate_mbit, d.simulated) == (10.0, 50.0, True)
    (u,) = bench_args.parse_networks("5:0")
    assert u.rate_mbit is None
    with pytest.raises(ValueError):
        bench_args.parse_networks("moon")
    assert bench_args.parse_parties("2,3") == [2, 3]
    assert bench_args.parse_parties("2-5") == [2, 3, 4, 5]
    with pytest.raises(ValueError):
        bench_args.parse_parties("1,2")


def test_lower_bound():
    b = bench_report.lower_bound(rounds=7, link_bytes=12.5e6, delay_ms=25.0, rate_mbit=100.0)
    assert math.isclose(b["latency_s"], 0.175)
    assert math.isclose(b["transfer_s"], 1.0)
    assert math.isclose(b["bound_s"], 1.175)
    assert bench_report.lower_bound(3, 1e9, 1.0, None)["transfer_s"] == 0.0


# ------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli.main(["bench", "--parties", "2", "--ops", "mul,ltz,matmul", "--sizes", "64,matmul=8",
                       "--repeats", "2", "--warmup", "1", "--out", str(out), "--timeout", "120"])
    return rc, buf.getvalue(), out


def test_bench_runs_and_writes_json(tiny_run):
    rc, text, out = tiny_run
    assert rc == 0, text
    files = [f for f in os.listdir(out) if f.endswith(".json")]
    assert len(files) == 1
    doc = json.load(open(out / files[0]))
    assert doc["failures"] == []
    assert doc["meta"]["channels"] == "curve"
    assert doc["meta"]["machine"]["cpu_count"] == os.cpu_count()
    rows = {(r["op"], r["size"]): r for r in doc["rows"]}
    assert set(rows) == {("mul", 64), ("ltz", 64), ("matmul", 8)}
    for r in rows.values():
        assert r["parties"] == 2 and r["network"] == "loopback"
        for k in ("e2e", "online", "offline"):
            assert len(r[f"{k}_all_s"]) == 2
            assert r[f"{k}_min_s"] <= r[f"{k}_s"] <= r[f"{k}_max_s"]
            assert r[f"{k}_s"] > 0
        assert r["online_dealer_bytes"] == 0  # material was prefetched
        assert r["max_abs_err"] < 1e-3
        assert "bound_online_s" not in r
    assert rows[("mul", 64)]["rounds"] == 2  # open d, e + truncation
    assert rows[("matmul", 8)]["rounds"] == 2
    assert rows[("ltz", 64)]["rounds"] >= 5
    # mul at N=2: d and e (64 int64 each) and the truncation opening, plus frame headers
    assert 3 * 64 * 8 <= rows[("mul", 64)]["bytes_sent_per_party"] < 3 * 64 * 8 + 2000
    assert rows[("ltz", 64)]["max_abs_err"] == 0.0


def test_bench_prints_table(tiny_run):
    rc, text, out = tiny_run
    assert "online s" in text and "rounds" in text and "max err" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(("mul ", "ltz ", "matmul "))]
    assert len(lines) == 3
    assert any("8^2" in ln for ln in lines)
    assert "wrote " in text


def test_table_and_bounds_from_rows(capsys):
    res = {"parties": 3, "results": [{
        "op": "mul", "size": 1000, "e2e": [0.3, 0.2, 0.4], "online": [0.2, 0.1, 0.3], "offline": [0.1, 0.1, 0.1],
        "max_abs_err": 1e-5, "rounds": 2,
        "per_party": [{"bytes_sent": 2e6, "bytes_received": 2.5e6, "dealer_bytes_sent": 100,
                       "dealer_bytes_received": 1e6, "rounds": 2, "online_dealer_bytes_received": 0,
                       "stats_varied": False}] * 3}]}
    rows = bench_report.summarize(res, bench_args.Network("wan", 25.0, 100.0), "curve")
    (r,) = rows
    assert r["e2e_s"] == 0.3 and r["e2e_min_s"] == 0.2 and r["e2e_max_s"] == 0.4
    assert r["link_bytes_per_party"] == 2.5e6
    assert math.isclose(r["bound_online_s"], 2 * 0.025 + 2.5e6 * 8 / 100e6)
    assert math.isclose(r["bound_e2e_s"], 2 * 0.025 + 3.5e6 * 8 / 100e6)
    assert math.isclose(r["online_over_bound"], 0.2 / r["bound_online_s"])
    bench_report.print_table(rows)
    bench_report.print_bounds(rows)
    text = capsys.readouterr().out
    assert "Distance to the network limit" in text and "wan" in text


# ------------------------------------------------------------------ plots
@pytest.mark.skipif(not plots.available(), reason="matplotlib is not installed")
def test_plots(tmp_path):
    def row(op, size, n, net, t, bound=None):
        r = {"op": op, "size": size, "unit": "elements", "parties": n, "network": net, "channels": "curve",
             "online_s": t, "online_min_s": t * 0.9, "online_max_s": t * 1.1,
             "e2e_s": 2 * t, "e2e_min_s": 1.8 * t, "e2e_max_s": 2.2 * t}
        if bound:
            r["bound_online_s"] = bound
        return r

    rows = [row("mul", s, n, net, 1e-6 * s * n * (10 if net == "wan" else 1), 1e-6 * s if net == "wan" else None)
            for s in (1000, 10000) for n in (2, 3) for net in ("loopback", "wan")]
    made = plots.make_plots(rows, str(tmp_path), stem="t")
    assert sorted(os.path.basename(p) for p in made) == ["t-network.png", "t-time_vs_parties.png",
                                                         "t-time_vs_size.png"]
    for p in made:
        assert open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert plots.make_plots(rows[:1], str(tmp_path / "one"), stem="t") == []


# ------------------------------------------------------------------ CrypTen, netsim
def test_crypten_missing_runner_is_reported(tmp_path, capsys):
    rep = bench_run.run_crypten([2], {"mul": [100]}, 1, 0, script=str(tmp_path / "no_such_runner.py"))
    assert rep["available"] is False and "does not exist" in rep["reason"]
    bench_report.print_crypten([], rep)
    assert "not run" in capsys.readouterr().out


def test_crypten_not_importable_is_reported(tmp_path):
    fake = tmp_path / "fake_side.py"
    fake.write_text("import sys\nprint('crypten is not importable (ModuleNotFoundError)', file=sys.stderr)\n"
                    "sys.exit(3)\n")
    rep = bench_run.run_crypten([2], {"mul": [100], "trunc": [100]}, 1, 0, script=str(fake), timeout=30)
    assert rep["available"] is False and "not importable" in rep["reason"]
    rep = bench_run.run_crypten([2], {"trunc": [100]}, 1, 0, script=str(fake), timeout=30)
    assert "CrypTen counterpart" in rep["reason"]


def test_crypten_comparison_ratios():
    rows = [{"op": "mul", "size": 100, "unit": "elements", "parties": 2, "network": "loopback", "channels": ch,
             "e2e_s": t, "online_s": t / 2, "rounds": 2, "bytes_sent_per_party": 10, "bytes_received_per_party": 10,
             "max_abs_err": 0.0} for ch, t in (("curve", 0.4), ("plaintext", 0.2))]
    rep = {"available": True, "results": {"2": {"mul@100": {"time_s": 0.8, "rounds": 1, "bytes_per_party": 30,
                                                            "max_abs_err": 0.0}}}}
    (c,) = bench_report.compare_crypten(rows, rep)
    assert math.isclose(c["ratio_plaintext"], 0.25) and math.isclose(c["ratio_curve"], 0.5)


def test_network_unavailable_is_a_clear_error(monkeypatch, capsys):
    from mpcrt.launch import netsim

    def no(*a, **k):
        raise netsim.NetSimUnavailable("network simulation needs root (test)")

    monkeypatch.setattr(netsim, "check_available", no)
    rc = cli.main(["bench", "--parties", "2", "--ops", "mul", "--sizes", "10", "--network", "wan", "--out", ""])
    assert rc != 0
    err = capsys.readouterr().err
    assert "needs root (test)" in err and "iproute2" in err


def test_bad_arguments_exit_2(capsys):
    assert cli.main(["bench", "--ops", "nope"]) == 2
    assert cli.main(["bench", "--network", "moon"]) == 2
    assert "unknown op" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_on_netsim(tmp_path, capsys):
    from mpcrt.launch import netsim

    why = netsim.unavailable_reason()
    if why:
        pytest.skip(why)
    rc = cli.main(["bench", "--parties", "2", "--ops", "mul", "--sizes", "1000", "--repeats", "1", "--warmup", "0",
                   "--network", "5:100", "--out", str(tmp_path), "--timeout", "60"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "measured RTT" in text and "Distance to the network limit" in text
    (f,) = [f for f in os.listdir(tmp_path) if f.endswith(".json")]
    doc = json.load(open(tmp_path / f))
    (r,) = doc["rows"]
    assert r["network"] == "5:100" and r["rounds"] == 2
    # two rounds of 5 ms each way at least (up to the token bucket's burst, the bytes are small)
    assert r["online_s"] >= 0.9 * r["bound_latency_s"]
    assert doc["meta"]["validation"]["5:100/2"]["rtt_ms"] > 5
    assert not [ns for ns in netsim.list_namespaces() if ns.startswith(f"mpcrt-{os.getpid()}-")]


def test_a_failed_job_does_not_lose_the_others(monkeypatch, tmp_path, capsys):
    """The parties fail in the 2nd of 3 jobs: the 1st is kept, the 3rd runs in a new launch."""
    calls = []

    def fake_run_local(n, jobs, repeats, warmup, insecure, *, timeout, verbose):
        calls.append(list(jobs))
        one = lambda op, size: {"op": op, "size": size, "e2e": [0.2], "online": [0.1], "offline": [0.1],  # noqa: E731
                                "max_abs_err": 0.0, "rounds": 2,
                                "per_party": [{"bytes_sent": 10, "bytes_received": 10, "dealer_bytes_sent": 0,
                                               "dealer_bytes_received": 5, "rounds": 2,
                                               "online_dealer_bytes_received": 0, "stats_varied": False}] * n}
        if len(calls) == 1:
            return {"parties": n, "results": [one(*jobs[0])], "error": f"{n} parties: failed\nPeerFailure: boom",
                    "kind": "party failure"}
        return {"parties": n, "results": [one(*j) for j in jobs], "complete": True}

    monkeypatch.setattr(bench_run, "run_local", fake_run_local)
    rc = cli.main(["bench", "--parties", "2", "--ops", "mul", "--sizes", "10:20:30", "--out", str(tmp_path)])
    assert rc == 1
    assert calls == [[("mul", 10), ("mul", 20), ("mul", 30)], [("mul", 30)]]
    (f,) = [f for f in os.listdir(tmp_path) if f.endswith(".json")]
    doc = json.load(open(tmp_path / f))
    assert [r["size"] for r in doc["rows"]] == [10, 30]
    assert [(j["op"], j["size"]) for j in doc["failed_jobs"]] == [("mul", 20)]
    assert "PeerFailure: boom" in capsys.readouterr().err


# ------------------------------------------------------------------ harness, model zoo, CrypTen's runner
def _gone(pid: int, within_s: float = 5.0) -> bool:
    """The process has exited (a zombie counts as gone) within `within_s`."""
    import time

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("script", [
    "sleep 300 & echo $!; wait",  # sh dies of SIGINT; its background child ignores SIGINT and stays
    "trap 'exit 0' INT; sleep 300 & echo $!; while :; do sleep 0.1; done",  # sh leaves on SIGINT, the child stays
    "trap '' INT; sleep 300 & echo $!; wait",  # sh ignores SIGINT: SIGKILL to the group after the grace time
])
def test_harness_stop_ends_the_whole_group(script):
    import subprocess

    p = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(p.stdout.readline())
    harness.stop(p, grace_s=1.0)
    assert p.returncode is not None
    assert _gone(child), "a process of the group outlived stop()"


def test_harness_launch_session_reports_failure(tmp_path):
    bad = tmp_path / "fails.py"
    bad.write_text("import sys\nprint('party output')\nsys.exit(4)\n")
    s = harness.launch_session(2, str(bad), [], timeout=120, recv_timeout=30)
    assert s.error and "exited" in s.error and not s.timed_out
    assert "party output" in s.log


def test_harness_cpu_measures_and_paths(tmp_path):
    busy = harness.cpu_busy(0.05)
    assert busy is None or 0.0 <= busy <= 1.0
    c = harness.Contention()
    share = c.share()
    assert share is None or share >= 0.0
    p = harness.result_path(str(tmp_path / "d"), "bench")
    assert os.path.dirname(p) == str(tmp_path / "d") and os.path.basename(p).startswith("bench-")
    assert harness.result_path(str(tmp_path / "e" / "x.json"), "bench") == str(tmp_path / "e" / "x.json")
    harness.write_json(p, {"a": 1})
    assert json.load(open(p)) == {"a": 1} and os.listdir(tmp_path / "d") == [os.path.basename(p)]


LAUNCH_DIR = os.path.dirname(harness.__file__)


def test_model_zoo_and_harness_need_no_mpcrt_runtime():
    """CrypTen's process imports them as plain files beside crypten_side.py."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import model_zoo, harness; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('mpcrt', 'numba', 'zmq')]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code, LAUNCH_DIR], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_model_zoo_models():
    torch = pytest.importorskip("torch")
    from mpcrt.launch import model_zoo

    shapes = {"lenet5": (2, 1, 28, 28), "resnet18": (1, 3, 32, 32), "digits_mlp": (3, 64), "digits_cnn": (3, 1, 8, 8),
              "resnet18_cifar": (1, 3, 32, 32), "vgg16": (1, 3, 32, 32), "lstm": (2, 24, 16), "encoder": (2, 32, 64)}
    classes = {"resnet18": 1000, "lstm": 5, "encoder": 5}
    assert set(shapes) == set(model_zoo.MODELS)
    for name, shape in shapes.items():
        torch.manual_seed(0)
        net = model_zoo.randomize_batchnorm(model_zoo.MODELS[name]()).eval()
        with torch.no_grad():
            assert net(torch.randn(shape)).shape == (shape[0], classes.get(name, 10))
    # torchvision.models.resnet18's parameter count; the CIFAR layouts' (pytorch-cifar's ResNet18 and VGG16)
    count = {"resnet18": 11_689_512, "resnet18_cifar": 11_173_962, "vgg16": 14_728_266}
    for name, n in count.items():
        assert sum(p.numel() for p in model_zoo.MODELS[name]().parameters()) == n, name
    torch.manual_seed(0)
    a = model_zoo.randomize_batchnorm(model_zoo.ResNet18())
    torch.manual_seed(0)
    b = model_zoo.randomize_batchnorm(model_zoo.ResNet18())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    layer = model_zoo.encoder_layer(16, 2, 32)
    assert not layer.training and layer(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def _crypten_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("crypten") is not None


def test_crypten_side_runs_by_its_path(tmp_path):
    """The real runner, as the drivers start it: by its path, in its own process."""
    import subprocess
    import sys

    side = os.path.join(LAUNCH_DIR, "crypten_side.py")
    r = subprocess.run([sys.executable, side, "--list"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "models: digits_mlp, digits_cnn, lenet5, resnet18" in r.stdout, r.stderr
    if _crypten_importable():
        pytest.skip("CrypTen is installed here: the not-importable path cannot be shown")
    rep = bench_run.run_crypten([2], {"mul": [100]}, 1, 0, timeout=60)
    assert rep["available"] is False and "not importable" in rep["reason"], rep


def test_models_network_rows_carry_the_lower_bound():
    """benchmarks/models_table.py: the bound is rounds x delay + busiest link direction / rate, per call kind."""
    import io
    import sys as _sys

    _sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import models_table
    from mpcrt.launch.bench_args import parse_networks

    def st(sent, recv, dsent, drecv, rounds):
        return {"rounds": rounds, "bytes_sent": sent, "bytes_received": recv, "dealer_bytes_sent": dsent,
                "dealer_bytes_received": drecv}

    pp = [{"e2e_stats": [st(4e6, 3e6, 1e3, 2e6, 20)], "online_stats": [st(4e6, 3e6, 0, 0, 18)], "maxrss_mb": 100},
          {"e2e_stats": [st(3e6, 4e6, 1e3, 0, 20)], "online_stats": [st(3e6, 4e6, 0, 0, 18)], "maxrss_mb": 100}]
    res = {"model": "ct_digits_mlp", "parties": 2, "channels": "curve", "per_party": pp,
           "e2e": [1.0], "online": [0.6], "offline": [0.2]}
    net = parse_networks("wan")[0]
    row = models_table.summarize(res, net, "digits_mlp")
    assert row["bound_online_s"] == pytest.approx(18 * 0.025 + 4e6 * 8 / 100e6)
    assert row["bound_e2e_s"] == pytest.approx(20 * 0.025 + 5e6 * 8 / 100e6)  # 3e6 received + 2e6 from the dealer
    out = io.StringIO()
    models_table.print_network([row], {}, out)
    text = out.getvalue()
    assert "ct_digits_mlp" in text and "0.77" in text and "*" in text  # 18 x 25 ms + 0.32 s; CrypTen quoted
    loop = models_table.summarize(res, parse_networks("none")[0], None)
    assert "bound_online_s" not in loop and loop["network"] == "loopback"

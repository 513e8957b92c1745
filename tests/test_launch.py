"""Real processes: `python -m mpcrt launch`, `mpcrt party` / `mpcrt dealer`, `mpcrt keygen`.

Every command runs under a timeout through the `cli` fixture (conftest.py), which also
finds any process the command left behind (by an environment marker) and kills it.
"""
from __future__ import annotations

import json
import os
import re
import stat

import numpy as np
import pytest
import zmq

import mpcrt
import mpcrt.runtime
from mpcrt import ConfigError
from mpcrt.cluster import Cluster, format_cluster, load_secret_key
from mpcrt.launch.local import free_ports

pytestmark = pytest.mark.slow

RESULT_SCRIPT = """
import json, sys
import numpy as np
import mpcrt

rt = mpcrt.init()
n = rt.world_size
rng = np.random.default_rng(1234)
a = rng.uniform(-3, 3, size=(3, 4))
b = rng.uniform(-3, 3, size=(3, 4))
x = rt.share(a if rt.rank == 0 else None, src=0)
y = rt.share(b if rt.rank == n - 1 else None, src=n - 1)
r0 = rt.stats()["rounds"]
prod = x * y
r1 = rt.stats()["rounds"]
mm = x @ y.T
lin = (x + y - 2.5 * x).sum(dim=0)
out = {
    "rank": rt.rank, "n": n, "precision": rt.precision, "mul_rounds": r1 - r0,
    "prod": prod.reveal().tolist(), "mm": mm.reveal().tolist(),
}
only1 = lin.reveal(to=1)
out["lin"] = None if only1 is None else only1.tolist()
print("RESULT " + json.dumps(out))
"""


def reference():
    rng = np.random.default_rng(1234)
    a = rng.uniform(-3, 3, size=(3, 4))
    b = rng.uniform(-3, 3, size=(3, 4))
    return {"prod": a * b, "mm": a @ b.T, "lin": (a + b - 2.5 * a).sum(axis=0)}


def results(output, parse_lines):
    lines = parse_lines(output)
    got = {}
    for who, texts in lines.items():
        for t in texts:
            if t.startswith("RESULT "):
                got[who] = json.loads(t[len("RESULT "):])
    return got, lines


# ------------------------------------------------------------------ successful launches
@pytest.mark.parametrize("n,precision", [(2, 16), (3, 12), (5, 20)])
def test_launch_results_match_float64(cli, write_script, parse_lines, n, precision):
    script = write_script(RESULT_SCRIPT)
    r = cli.run(["launch", "-n", n, "--precision", precision, script], timeout=120)
    assert r.returncode == 0, r.output
    assert r.left == [], "processes left behind"
    got, lines = results(r.stdout, parse_lines)
    # every output line carries its node's name
    assert "" not in lines, f"unprefixed lines: {lines.get('')}"
    assert sorted(got) == [f"party {i}" for i in range(n)], r.output
    ref = reference()
    f = precision
    for i in range(n):
        g = got[f"party {i}"]
        assert (g["rank"], g["n"], g["precision"], g["mul_rounds"]) == (i, n, precision, 2)
        assert np.max(np.abs(np.array(g["prod"]) - ref["prod"])) <= 20 * 2.0**-f
        assert np.max(np.abs(np.array(g["mm"]) - ref["mm"])) <= 60 * 2.0**-f
        if i == 1:
            assert np.max(np.abs(np.array(g["lin"]) - ref["lin"])) <= 20 * 2.0**-f
        else:
            assert g["lin"] is None  # revealed to party 1 only


def test_launch_plaintext_mode_warns(cli, write_script, parse_lines):
    script = write_script("""
        import numpy as np, mpcrt
        rt = mpcrt.init()
        x = rt.share(np.array([1.5, -2.0]) if rt.rank == 0 else None, src=0)
        print("PROD", (x * x).reveal().tolist())
    """)
    r = cli.run(["launch", "-n", 2, "--insecure-plaintext", script], timeout=90)
    assert r.returncode == 0, r.output
    assert "insecure" in r.stderr.lower() and "NOT encrypted" in r.stderr
    lines = parse_lines(r.stdout)
    assert "PROD [2.25, 4.0]" in lines["party 0"] and "PROD [2.25, 4.0]" in lines["party 1"]


def test_launch_passes_script_arguments(cli, write_script, parse_lines):
    script = write_script("""
        import sys, mpcrt
        rt = mpcrt.init()
        print("ARGS", rt.rank, sys.argv[1:])
    """)
    r = cli.run(["launch", "-n", 2, script, "alpha", "--beta", "3"], timeout=60)
    assert r.returncode == 0, r.output
    lines = parse_lines(r.stdout)
    for i in range(2):
        assert f"ARGS {i} ['alpha', '--beta', '3']" in lines[f"party {i}"]


# ------------------------------------------------------------------ failures
def test_launch_bad_script_path_and_bad_n(cli, tmp_path, write_script):
    r = cli.run(["launch", "-n", 2, tmp_path / "missing.py"], timeout=30)
    assert r.returncode == 2
    assert "no such script" in r.stderr and "missing.py" in r.stderr
    r = cli.run(["launch", "-n", 1, write_script("pass\n")], timeout=30)
    assert r.returncode == 2 and "at least 2" in r.stderr


def test_launch_script_raising_on_one_party(cli, write_script, parse_lines):
    script = write_script("""
        import os, time
        import numpy as np
        import mpcrt
        rt = mpcrt.init()
        print("PID", os.getpid(), flush=True)
        x = rt.share(np.ones(3) if rt.rank == 0 else None, src=0)
        (x * x).reveal()
        if rt.rank == 1:
            raise ValueError("bad input on party 1")
        t0 = time.monotonic()
        try:
            (x * x).reveal()
        except mpcrt.PeerFailure as e:
            print(f"PEERFAIL {time.monotonic() - t0:.2f} {e}", flush=True)
            raise
        print("UNREACHABLE")
    """)
    r = cli.run(["launch", "-n", 3, script], timeout=90)
    assert r.returncode != 0
    assert r.left == [], "processes left behind"
    lines = parse_lines(r.stdout)
    assert any("ValueError: bad input on party 1" in t for t in lines["party 1"]), r.output
    assert "UNREACHABLE" not in r.stdout
    for i in (0, 2):
        fails = [t for t in lines[f"party {i}"] if t.startswith("PEERFAIL")]
        assert fails and "party 1" in fails[0], r.output
        assert float(fails[0].split()[1]) < 20
    assert "failed" in r.stderr and "party 1" in r.stderr
    pids = [int(t.split()[1]) for who in lines for t in lines[who] if t.startswith("PID ")]
    assert len(pids) == 3 and not any(_alive(p) for p in pids)


def test_party_dying_mid_protocol_in_real_processes(cli, write_script, parse_lines):
    script = write_script("""
        import os, time
        import numpy as np
        import mpcrt
        rt = mpcrt.init()
        print("PID", os.getpid(), flush=True)
        x = rt.share(np.arange(4.0) if rt.rank == 0 else None, src=0)
        t0 = time.monotonic()
        try:
            y = (x * x).reveal()         # one whole multiply: everybody has talked to everybody
            if rt.rank == 1:
                os._exit(3)              # dies without a word (its last frames may be lost too)
            (x * x * x).reveal()
        except mpcrt.PeerFailure as e:
            print(f"PEERFAIL {time.monotonic() - t0:.2f} {e}", flush=True)
            raise
        print("UNREACHABLE")
    """)
    r = cli.run(["launch", "-n", 3, script], timeout=90)
    assert r.returncode != 0
    assert r.left == [], "processes left behind"
    lines = parse_lines(r.stdout)
    for i in (0, 2):
        fails = [t for t in lines.get(f"party {i}", []) if t.startswith("PEERFAIL")]
        assert fails, f"party {i} did not raise PeerFailure:\n{r.output}"
        elapsed, msg = float(fails[0].split()[1]), fails[0]
        assert "party 1" in msg
        assert elapsed < 20, f"party {i} needed {elapsed} s"
    assert "party 1 (exit 3)" in r.stderr
    pids = [int(t.split()[1]) for who in lines for t in lines[who] if t.startswith("PID ")]
    assert len(pids) == 3 and not any(_alive(p) for p in pids)


def test_launcher_stops_parties_that_do_not_stop_by_themselves(cli, write_script, parse_lines):
    script = write_script("""
        import os, time
        import mpcrt
        rt = mpcrt.init()
        print("PID", os.getpid(), flush=True)
        if rt.rank == 1:
            raise SystemExit(4)
        time.sleep(120)                  # never notices anything
    """)
    r = cli.run(["launch", "-n", 2, script], timeout=60)
    assert r.returncode != 0
    assert r.elapsed < 40
    assert r.left == [], "processes left behind"
    assert "party 1 (exit 4)" in r.stderr and "stopped: party 0" in r.stderr
    pids = [int(t.split()[1]) for who, ts in parse_lines(r.stdout).items() for t in ts if t.startswith("PID ")]
    assert len(pids) == 2 and not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


# ------------------------------------------------------------------ init()
def test_init_without_launch_environment_raises_config_error(monkeypatch):
    for k in list(os.environ):
        if k.startswith("MPCRT_"):
            monkeypatch.delenv(k)
    monkeypatch.setattr(mpcrt.runtime, "_current", None)
    with pytest.raises(ConfigError, match="mpcrt launch"):
        mpcrt.init()


def test_init_with_broken_cluster_file_raises_config_error(monkeypatch, tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('session = "x"\n')
    monkeypatch.setattr(mpcrt.runtime, "_current", None)
    monkeypatch.setenv("MPCRT_CLUSTER", str(bad))
    monkeypatch.setenv("MPCRT_RANK", "0")
    with pytest.raises(ConfigError, match="dealer"):
        mpcrt.init()


# ------------------------------------------------------------------ keygen and clusters
def test_keygen_writes_key_pair(cli, tmp_path):
    d = tmp_path / "keys"
    r = cli.run(["keygen", "party0", "--dir", d], timeout=30)
    assert r.returncode == 0, r.output
    pub_file, sec_file = d / "party0.key", d / "party0.key_secret"
    assert pub_file.exists() and sec_file.exists()
    assert stat.S_IMODE(os.stat(sec_file).st_mode) == 0o600
    pub = re.search(r'public-key = "(.{40})"', pub_file.read_text()).group(1)
    assert pub in r.stdout
    secret = load_secret_key(str(sec_file))
    assert zmq.curve_public(secret).decode() == pub  # a matching CurveZMQ pair
    assert secret.decode() not in pub_file.read_text()
    r2 = cli.run(["keygen", "party1", "--dir", d], timeout=30)
    assert r2.returncode == 0
    assert re.search(r'public-key = "(.{40})"', (d / "party1.key").read_text()).group(1) != pub


def _keygen_cluster(cli, tmp_path, names=("party0", "party1", "dealer")):
    keys = {}
    for nm in names:
        r = cli.run(["keygen", nm, "--dir", tmp_path / "keys"], timeout=30)
        assert r.returncode == 0, r.output
        keys[nm] = re.search(r'public-key = "(.{40})"', (tmp_path / "keys" / f"{nm}.key").read_text()).group(1)
    ports = free_ports(3)
    c = Cluster(
        session="keygen-test",
        endpoints={i: f"tcp://127.0.0.1:{ports[i]}" for i in range(3)},
        public_keys={0: keys["party0"].encode(), 1: keys["party1"].encode(), 2: keys["dealer"].encode()},
        precision=16,
    )
    path = tmp_path / "cluster.toml"
    path.write_text(format_cluster(c))
    return path


def test_keygen_cluster_runs_with_party_and_dealer_commands(cli, tmp_path, write_script):
    cluster = _keygen_cluster(cli, tmp_path)
    script = write_script(RESULT_SCRIPT)
    kd = tmp_path / "keys"
    dealer, _ = cli.start(["dealer", "--cluster", cluster, "--key", kd / "dealer.key_secret", "--timeout", "20"])
    parties = [cli.start(["party", "--cluster", cluster, "--rank", i, "--key", kd / f"party{i}.key_secret",
                          "--timeout", "20", script])[0] for i in range(2)]
    outs = []
    for p in parties + [dealer]:
        try:
            out, err = p.communicate(timeout=60)
        except Exception:
            pytest.fail("a node of the keygen cluster did not finish in 60 s")
        outs.append((p.returncode, out, err))
    assert [o[0] for o in outs] == [0, 0, 0], outs
    ref = reference()
    for i in range(2):
        line = [t for t in outs[i][1].splitlines() if t.startswith("RESULT ")]
        g = json.loads(line[0][len("RESULT "):])
        assert g["rank"] == i and g["n"] == 2
        assert np.max(np.abs(np.array(g["prod"]) - ref["prod"])) <= 20 * 2.0**-16
        assert np.max(np.abs(np.array(g["mm"]) - ref["mm"])) <= 60 * 2.0**-16


def test_party_with_a_key_not_in_the_cluster_fails_cleanly(cli, tmp_path, write_script):
    """Party 1 runs with a key pair that is not the cluster's: both parties fail with
    PeerFailure within their timeouts, and the dealer, left with a party that never arrived
    and one that vanished, stops too instead of serving forever."""
    cluster = _keygen_cluster(cli, tmp_path, names=("party0", "party1", "dealer", "intruder"))
    script = write_script(RESULT_SCRIPT)
    kd = tmp_path / "keys"
    dealer, _ = cli.start(["dealer", "--cluster", cluster, "--key", kd / "dealer.key_secret", "--timeout", "3"])
    p0, _ = cli.start(["party", "--cluster", cluster, "--rank", 0, "--key", kd / "party0.key_secret", "--timeout", "3",
                       script])
    p1, _ = cli.start(["party", "--cluster", cluster, "--rank", 1, "--key", kd / "intruder.key_secret",
                       "--timeout", "3", script])
    res = []
    for p in (p0, p1):
        try:
            out, err = p.communicate(timeout=60)
        except Exception:
            pytest.fail("a party did not give up within 60 s")
        res.append((p.returncode, out, err))
    assert res[0][0] != 0 and res[1][0] != 0, res
    assert "PeerFailure" in res[0][2] and "PeerFailure" in res[1][2], res
    assert not any("RESULT" in r[1] for r in res)
    try:
        dealer.communicate(timeout=15)
    except Exception:
        pytest.fail("the dealer still runs 15 s after both parties exited (it never gives up on a "
                    "party that never said hello)")
    assert dealer.returncode != 0


def test_blas_threads_are_capped_per_process():
    """Parties and the dealer sharing a host get OPENBLAS/OMP/MKL thread caps (OpenBLAS's idle
    workers spin after each float matmul and take cores from the protocol); a user's own
    setting wins."""
    from mpcrt.launch.local import BLAS_THREAD_VARS, blas_thread_env

    got = blas_thread_env(3, {})
    assert set(got) == set(BLAS_THREAD_VARS) and all(int(v) >= 1 for v in got.values())
    assert blas_thread_env(2, {"MPCRT_THREADS": "4"})["OMP_NUM_THREADS"] == "4"
    assert "OPENBLAS_NUM_THREADS" not in blas_thread_env(2, {"OPENBLAS_NUM_THREADS": "8"})

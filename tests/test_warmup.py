"""The start-up warm-up (parties/warmup.py): it loads what the first call would, and never stops a session."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

PROBE = r"""
import json, sys
import numba
from mpcrt.kernels import beaver, bitlt, powers
from mpcrt.parties.dealer import Dealer
from mpcrt.parties.warmup import rehearse

def loaded():
    out = {}
    for mod in (beaver, bitlt, powers):
        for name, f in vars(mod).items():
            if isinstance(f, numba.core.registry.CPUDispatcher):
                out[f"{mod.__name__}.{name}"] = len(f.signatures)
    return out

before = loaded()
torch_before = "torch" in sys.modules
seconds = rehearse(Dealer)
print(json.dumps({"before": before, "after": loaded(), "torch_before": torch_before,
                  "torch_after": "torch" in sys.modules, "seconds": seconds}))
"""


def test_rehearsal_loads_the_kernels_and_torch_in_a_fresh_process():
    env = dict(os.environ, MPCRT_THREADS="1")
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert not doc["torch_before"] and doc["torch_after"]  # small products use torch's int64 GEMM
    assert sum(doc["before"].values()) == 0
    used = [k for k, v in doc["after"].items() if v]
    assert len(used) >= 5, doc["after"]  # the Beaver, comparison and power kernels the protocols call
    assert "warm-up did not complete" not in r.stderr


def test_rehearsal_problems_never_stop_a_session(caplog):
    from mpcrt.parties import warmup

    def broken_dealer(node):
        raise RuntimeError("no dealer here")

    warmup.maybe_rehearse(broken_dealer)  # swallowed: the real start reports real errors

    class SilentDealer:  # parties that never get their material: the rehearsal times out, and says so
        def __init__(self, node):
            self.node = node

        def serve(self):
            pass

    with caplog.at_level("WARNING", logger="mpcrt.warmup"):
        warmup.rehearse(SilentDealer, timeout=2.0)
    assert "warm-up did not complete" in caplog.text


def test_warm_launched_session_gives_the_same_result(cli, write_script, parse_lines):
    """With MPCRT_WARMUP=1 a launched session runs the rehearsal first and still computes correctly."""
    script = write_script(
        """
        import json, numpy as np, mpcrt
        rt = mpcrt.init()
        x = rt.share(np.array([-1.5, 0.25, 2.0]) if rt.rank == 0 else None, src=0)
        print("RESULT " + json.dumps([float(v) for v in (x.relu() * 2.0).reveal()]))
        """
    )
    r = cli.run(["launch", "-n", "2", script], timeout=240, env={"MPCRT_WARMUP": "1", "MPCRT_LOGLEVEL": "debug"})
    assert r.returncode == 0, r.output
    lines = parse_lines(r.output)
    for who in ("party 0", "party 1"):
        got = [json.loads(s[len("RESULT "):]) for s in lines.get(who, []) if s.startswith("RESULT ")]
        assert len(got) == 1, r.output
        np.testing.assert_allclose(got[0], [0.0, 0.5, 4.0], atol=1e-3)
    assert r.output.count("warm-up took") == 3, r.output  # both parties and the dealer rehearsed

"""Secrets stay out of logs (issue 20, point 5): a real `mpcrt launch -n 2` session (CurveZMQ,
MPCRT_LOGLEVEL=debug) shares inputs, computes, reveals to one party; no share, seed or secret
key may appear in any output (every node's stdout and stderr, log records included: logging
goes to stderr, which the launcher prefixes and forwards, and the launcher's own streams).

The party script itself writes what it holds secret to a private folder outside the logs:
its seeds (with the dealer, with its peer: the PRG keys), some share words (inputs, a
product, a comparison's and a truncation's results), and the CurveZMQ secret keys of every
node, read from the key files the launcher writes beside the party's own (MPCRT_SECRET_KEY).
The test looks for each in the forms a log line could take: hex (both cases, either byte
order for a word), decimal (signed and unsigned, either byte order for a seed), base64
(standard and url-safe) and z85, Python's bytes repr, and the raw z85 text of a key.
"""
from __future__ import annotations

import base64
import json
import re

import pytest
import zmq.utils.z85 as z85

pytestmark = pytest.mark.slow

SCRIPT = """
import glob, json, os, sys
import numpy as np
import mpcrt
from mpcrt import config
from mpcrt.cluster import load_secret_key

rt = mpcrt.init()
# distinctive inputs: nothing in a log should look like them by chance
a = np.array([[1234.5678, -2718.28125, 314.159265], [-0.000123, 27182.8182, -16180.339887]])
b = np.array([[-577.215664, 1414.21356, -1732.05081], [2236.06798, -0.5772156, 6931.47181]])
x = rt.share(a if rt.rank == 0 else None, src=0)
y = rt.share(b if rt.rank == 1 else None, src=1)
prod = x * y
lt = x < y
cut = x * 0.3333
top = (x @ y.T).relu()
got = prod.reveal(to=1)
done = top.reveal()
keydir = os.path.dirname(os.path.abspath(config.current().secret_key))
secret = {
    "keys": sorted(load_secret_key(p).decode() for p in glob.glob(os.path.join(keydir, "*.key_secret"))),
    "seeds": [rt.dealer.prg._key.hex()] + [p._key.hex() for p in rt._pair.values()],
    "words": [int(w) for s in (x, y, prod, lt, cut, top) for w in np.asarray(s.share).reshape(-1)],
}
with open(os.path.join(sys.argv[1], f"secret{rt.rank}.json"), "w") as fh:
    json.dump(secret, fh)
print("DONE", rt.rank, got is not None, done.shape)
"""


def byte_forms(raw: bytes) -> set[str]:
    """How a log line could show `raw` (a seed, a raw key, 8 share bytes)."""
    forms = {raw.hex(), raw.hex().upper(), repr(raw)[2:-1],
             base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    if len(raw) % 4 == 0:
        forms.add(z85.encode(raw).decode())
    if len(raw) >= 8:
        forms |= {str(int.from_bytes(raw, "big")), str(int.from_bytes(raw, "little"))}
    return {f for f in forms if len(f) >= 8}  # (a short repr of bytes could be anything)


def word_forms(w: int) -> set[str]:
    """How a log line could show one share word (an int64): numpy prints it in decimal."""
    u = w % 2**64
    raw = u.to_bytes(8, "little")
    forms = {str(w), str(u), f"{u:x}", f"{u:X}", f"{u:016x}", raw.hex()} | byte_forms(raw)
    return {f for f in forms if len(f) >= 8}


def secrets_of(tmp) -> dict[str, set[str]]:
    """{what: forms} from the parties' private files."""
    found: dict[str, set[str]] = {}
    for i in range(2):
        s = json.loads((tmp / f"secret{i}.json").read_text())
        for k in s["keys"]:
            found[f"secret key {k[:4]}..."] = {k} | byte_forms(z85.decode(k.encode()))
        for seed in s["seeds"]:
            found[f"party {i} seed {seed[:4]}..."] = byte_forms(bytes.fromhex(seed))
        for j, w in enumerate(s["words"]):
            if abs(w) >= 2**40:  # a random ring word (a 0/1 or small share says nothing)
                found[f"party {i} share word {j}"] = word_forms(w)
    return found


def test_no_share_seed_or_key_in_debug_logs(cli, write_script, tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    script = write_script(SCRIPT)
    r = cli.run(["launch", "-n", 2, script, str(private)], timeout=120, env={"MPCRT_LOGLEVEL": "debug"})
    assert r.returncode == 0, r.output
    assert "DONE 0" in r.stdout and "DONE 1" in r.stdout, r.output
    # debug records did reach the output (runtime's "party i ready in ..." is DEBUG): the check is not vacuous
    assert re.search(r"^\[party 0\] mpcrt: party 0 ready in", r.stdout, re.M), r.output
    found = secrets_of(private)
    kinds = {k.split(" ")[2] if k.startswith("party") else "key" for k in found}
    assert {"key", "seed", "share"} <= kinds and len(found) > 40, sorted(found)
    leaks = sorted(f"{what}: {form!r}" for what, forms in found.items() for form in forms if form in r.output)
    assert not leaks, "secrets in the session's output:\n" + "\n".join(leaks) + "\n--- output ---\n" + r.output

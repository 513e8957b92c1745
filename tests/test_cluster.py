"""Cluster files (mpcrt.cluster): parsing, each kind of error, key files, `mpcrt party/dealer` on bad files."""
from __future__ import annotations

import os
import stat

import pytest

from mpcrt import ConfigError
from mpcrt.cluster import (
    Cluster,
    format_cluster,
    load_cluster,
    load_secret_key,
    parse_cluster,
    write_public_key,
    write_secret_key,
)
from mpcrt.zmq_transport import generate_keypair

KEYS = [generate_keypair()[0].decode() for _ in range(4)]


def cluster_text(n=2, session='"demo-1"', precision=None, dealer=True, parties=None, extra="") -> str:
    lines = [] if session is None else [f"session = {session}"]
    if precision is not None:
        lines.append(f"precision = {precision}")
    lines.append(extra)
    if dealer:
        lines += ["[dealer]", 'address = "tcp://10.0.0.10:7000"', f'public_key = "{KEYS[n]}"', ""]
    for r in range(n) if parties is None else []:
        lines += ["[[party]]", f"rank = {r}", f'address = "tcp://10.0.0.{11 + r}:{7001 + r}"',
                  f'public_key = "{KEYS[r]}"', ""]
    if parties is not None:
        lines.append(parties)
    return "\n".join(lines) + "\n"


def party(rank, address, key, more=""):
    return f'[[party]]\nrank = {rank}\naddress = "{address}"\npublic_key = "{key}"\n{more}\n'


def two(address0, key0=KEYS[0], more0="", address1="tcp://h:2"):
    """A 2-party file whose party 0 is (address0, key0, more0) and party 1 is ordinary."""
    return cluster_text(2, parties=party(0, address0, key0, more0) + party(1, address1, KEYS[1]))


# ----------------------------------------------------------------- valid files
def test_valid_file():
    c = parse_cluster(cluster_text(3, precision=20))
    assert c.session == "demo-1"
    assert c.world_size == 3
    assert c.precision == 20
    assert c.endpoints == {0: "tcp://10.0.0.11:7001", 1: "tcp://10.0.0.12:7002", 2: "tcp://10.0.0.13:7003",
                           3: "tcp://10.0.0.10:7000"}
    assert c.public_keys == {i: KEYS[i].encode() for i in range(4)}
    assert c.names == {0: "party 0", 1: "party 1", 2: "party 2", 3: "dealer"}
    assert c.binds == {}


def test_defaults_order_hostnames_ipv6_and_bind():
    text = (
        'session = "s"\n'
        '[dealer]\naddress = "tcp://dealer.example.org:7000"\n'
        f'public_key = "{KEYS[2]}"\nbind = "tcp://0.0.0.0:7000"\n'
        + party(1, "tcp://[::1]:7002", KEYS[1])  # ranks in any order
        + party(0, "tcp://host-a:7001", KEYS[0])
    )
    c = parse_cluster(text)
    assert c.precision == 16  # default
    assert c.endpoints == {0: "tcp://host-a:7001", 1: "tcp://[::1]:7002", 2: "tcp://dealer.example.org:7000"}
    assert c.binds == {2: "tcp://0.0.0.0:7000"}
    assert c.bind_endpoint(2) == "tcp://0.0.0.0:7000" and c.bind_endpoint(0) == "tcp://host-a:7001"


def test_format_round_trip():
    c = Cluster("round-trip", {0: "tcp://127.0.0.1:5001", 1: "tcp://127.0.0.1:5002", 2: "tcp://127.0.0.1:5000"},
                {i: KEYS[i].encode() for i in range(3)}, precision=12, binds={1: "tcp://0.0.0.0:5002"})
    back = parse_cluster(format_cluster(c))
    assert back == c


def test_load_cluster_from_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(cluster_text(2))
    assert load_cluster(str(p)).world_size == 2
    with pytest.raises(ConfigError, match="cannot read cluster file"):
        load_cluster(str(tmp_path / "missing.toml"))


# ----------------------------------------------------------------- errors
ERROR_CASES = {
    "missing session": (cluster_text(2, session=None), "session"),
    "empty session": (cluster_text(2, session='""'), "session"),
    "session not a string": (cluster_text(2, session="5"), "session"),
    "bad TOML": ("session = \"x\"\n[dealer\naddress = 1\n", "not valid TOML"),
    "bad TOML value": ('session = "unterminated\n', "not valid TOML"),
    "missing dealer": (cluster_text(2, dealer=False), "[dealer]"),
    "one party": (cluster_text(1), "at least two"),
    "no parties": (cluster_text(2, parties=""), "at least two"),
    "duplicate ranks": (two("tcp://h:1").replace("rank = 1", "rank = 0"), "each once"),
    "rank gap": (two("tcp://h:1").replace("rank = 1", "rank = 2"), "each once"),
    "missing rank": (cluster_text(2, parties=party(0, "tcp://h:1", KEYS[0]) + '[[party]]\naddress = "tcp://h:2"\n'
                                   f'public_key = "{KEYS[1]}"\n'), "rank"),
    "bad address scheme": (two("http://h:1"), "address"),
    "address without port": (two("tcp://h"), "address"),
    "address with path": (two("tcp://h:1/x"), "address"),
    "port out of range": (two("tcp://h:70000"), "port"),
    "port zero": (two("tcp://h:0"), "port"),
    "shared address": (two("tcp://h:1", address1="tcp://h:1"), "share an address"),
    "short key": (two("tcp://h:1", KEYS[0][:39]), "public_key"),
    "long key": (two("tcp://h:1", KEYS[0] + "x"), "public_key"),
    "key with bad chars": (two("tcp://h:1", "~" * 40), "public_key"),
    "missing key": (two("tcp://h:1").replace(f'public_key = "{KEYS[0]}"', "", 1), "public_key"),
    "bad bind": (two("tcp://h:1", more0='bind = "0.0.0.0:1"'), "bind"),
    "unknown node key": (two("tcp://h:1", more0="secret_key = 1"), "unknown keys"),
    "unknown top-level key": (cluster_text(2, extra="sesion = \"typo\""), "unknown top-level"),
    "precision out of range": (cluster_text(2, precision=41), "precision"),
    "precision not an int": (cluster_text(2, precision='"16"'), "precision"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_raise_config_error_naming_the_problem(case):
    text, words = ERROR_CASES[case]
    with pytest.raises(ConfigError) as ei:
        parse_cluster(text, "c.toml")
    msg = str(ei.value)
    assert words in msg, msg
    assert "c.toml" in msg  # names the file


def test_all_errors_reported_at_once():
    text = cluster_text(2, session=None, parties=party(0, "bad", KEYS[0]) + party(1, "tcp://h:2", "short"))
    with pytest.raises(ConfigError) as ei:
        parse_cluster(text)
    msg = str(ei.value)
    assert "session" in msg and "address" in msg and "public_key" in msg


@pytest.mark.parametrize("field,value", [("rank", "true"), ("precision", "true")])
def test_booleans_are_not_integers(field, value):
    """TOML `true` is not a rank or a precision (Python's bool is an int subclass)."""
    if field == "rank":
        text = two("tcp://h:1").replace("rank = 1", "rank = true")
    else:
        text = cluster_text(2, precision=value)
    with pytest.raises(ConfigError, match=field):
        parse_cluster(text)


# ----------------------------------------------------------------- key files
def test_secret_key_files(tmp_path):
    pub, sec = generate_keypair()
    p = tmp_path / "n.key_secret"
    write_secret_key(str(p), pub, sec)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert load_secret_key(str(p)) == sec
    q = tmp_path / "n.key"
    write_public_key(str(q), pub)
    assert pub.decode() in q.read_text() and sec.decode() not in q.read_text()
    with pytest.raises(ConfigError, match="no secret key"):
        load_secret_key(str(q))  # the public file holds no secret
    with pytest.raises(ConfigError, match="no secret key"):
        load_secret_key("")
    with pytest.raises(ConfigError, match="cannot read"):
        load_secret_key(str(tmp_path / "missing"))


# ----------------------------------------------------------------- the command line
def test_party_and_dealer_commands_reject_bad_cluster_file(cli, tmp_path, write_script):
    bad = tmp_path / "bad.toml"
    bad.write_text(cluster_text(2, session=None))
    script = write_script("raise SystemExit(0)\n")
    r = cli.run(["party", "--cluster", bad, "--rank", "0", script], timeout=30)
    assert r.returncode != 0
    assert "session" in r.stderr and "bad.toml" in r.stderr
    r = cli.run(["dealer", "--cluster", bad], timeout=30)
    assert r.returncode != 0
    assert "ConfigError" in r.stderr and "session" in r.stderr
    r = cli.run(["party", "--cluster", tmp_path / "nope.toml", "--rank", "0", script], timeout=30)
    assert r.returncode != 0 and "cannot read cluster file" in r.stderr
    bad.write_text("[[[")
    r = cli.run(["party", "--cluster", bad, "--rank", "0", script], timeout=30)
    assert r.returncode != 0 and "not valid TOML" in r.stderr


def test_party_command_rejects_rank_outside_cluster(cli, tmp_path, write_script):
    good = tmp_path / "c.toml"
    good.write_text(cluster_text(2))
    r = cli.run(["party", "--cluster", good, "--rank", "2", write_script("pass\n")], timeout=30)
    assert r.returncode != 0 and "--rank 2" in r.stderr

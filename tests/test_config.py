"""mpcrt.config: every MPCRT_* variable documented in one table, validated, read once,
and passed to child processes through the environment."""
from __future__ import annotations

import os
import pathlib
import re

import pytest

from mpcrt import config
from mpcrt.config import VARIABLES, Config
from mpcrt.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ("mpcrt", "protocols", "kernels", "parties", "launch", "benchmarks")


def test_every_variable_the_code_names_is_in_the_table():
    used = set()
    for d in SOURCES:
        for f in (ROOT / d).rglob("*.py"):
            if f.name == "config.py" and d == "mpcrt":
                continue
            used |= set(re.findall(r"MPCRT_[A-Z_]+[A-Z]", f.read_text(encoding="utf-8")))
    documented = {v.env for v in VARIABLES}
    assert used - documented == set(), "document these in mpcrt/config.py's VARIABLES"
    assert len({v.field for v in VARIABLES}) == len(VARIABLES)
    assert {f.name for f in Config.__dataclass_fields__.values()} == {v.field for v in VARIABLES}


def test_the_docstring_is_the_table_and_defaults_agree():
    assert config.table() in config.__doc__
    for v in VARIABLES:
        assert getattr(Config(), v.field) == v.default, v.env
        assert f"`{v.env}`" in config.table()


def test_defaults_values_and_round_trip():
    assert Config.from_env({}) == Config()
    cfg = Config.from_env({"MPCRT_TIMEOUT": "2.5", "MPCRT_INSECURE": "1", "MPCRT_DEVICE": "CUDA",
                           "MPCRT_SPLIT_OPEN_BYTES": "-1", "MPCRT_LOGLEVEL": "debug", "MPCRT_RANK": "3",
                           "MPCRT_THREADS": "", "MPCRT_NATIVE_AES": "0"})
    assert (cfg.timeout, cfg.insecure, cfg.device, cfg.split_open_bytes, cfg.loglevel, cfg.rank) == \
        (2.5, True, "cuda", -1, "DEBUG", 3)
    assert cfg.threads is None and cfg.native_aes is False
    env = {"MPCRT_LOOKAHEAD_MB": "7", "OTHER": "x"}  # a variable at its default is removed, others kept
    cfg.apply(env)
    assert env["OTHER"] == "x" and "MPCRT_LOOKAHEAD_MB" not in env and env["MPCRT_INSECURE"] == "1"
    assert Config.from_env(env) == cfg


@pytest.mark.parametrize("var,value,allowed", [
    ("MPCRT_TIMEOUT", "0", "seconds > 0"),
    ("MPCRT_TIMEOUT", "soon", "seconds > 0"),
    ("MPCRT_RANK", "-1", "integer >= 0"),
    ("MPCRT_PRECISION", "41", "integer 0..40"),
    ("MPCRT_INSECURE", "maybe", "0 or 1"),
    ("MPCRT_DEVICE", "tpu", "cpu or cuda"),
    ("MPCRT_SPLIT_OPEN_BYTES", "-2", "integer >= -1"),
    ("MPCRT_LOGLEVEL", "loud", "debug, info"),
    ("MPCRT_DEALER_THREADS", "0", "integer >= 1"),
])
def test_a_bad_value_is_a_config_error_saying_what_is_allowed(var, value, allowed):
    with pytest.raises(ConfigError, match=re.escape(f"{var}={value!r} is not allowed: use {allowed}")):
        Config.from_env({var: value})


def test_flags_override_the_environment_and_are_validated():
    cfg = Config.from_env({"MPCRT_TIMEOUT": "9", "MPCRT_DEVICE": "cuda"})
    assert cfg.replace(timeout=None, device="cpu") == Config(timeout=9.0)  # None: the flag was not given
    with pytest.raises(ConfigError, match="MPCRT_TIMEOUT=.*seconds > 0"):
        cfg.replace(timeout=-1)
    with pytest.raises(ConfigError, match="unknown setting"):
        cfg.replace(timout=3)


def test_read_once_and_install_sets_the_environment(monkeypatch):
    monkeypatch.setenv("MPCRT_LOOKAHEAD_MB", "5")
    assert config.current().lookahead_mb == 5
    monkeypatch.setenv("MPCRT_LOOKAHEAD_MB", "6")
    assert config.current().lookahead_mb == 5  # read once
    for v in VARIABLES:  # install writes os.environ: monkeypatch restores it
        monkeypatch.setenv(v.env, os.environ.get(v.env, ""))
    config.install(config.current().replace(device="cuda", timeout=4))
    assert os.environ["MPCRT_DEVICE"] == "cuda" and os.environ["MPCRT_TIMEOUT"] == "4.0"
    assert "MPCRT_LOOKAHEAD_MB" in os.environ and config.current().device == "cuda"
    config.install(Config())
    assert not any(v.env in os.environ for v in VARIABLES)


def test_the_command_line_reports_a_bad_variable(monkeypatch, capsys, tmp_path):
    from mpcrt.launch.cli import main

    monkeypatch.setenv("MPCRT_TIMEOUT", "never")
    assert main(["keygen", "k", "--dir", str(tmp_path)]) == 2
    assert "MPCRT_TIMEOUT='never' is not allowed" in capsys.readouterr().err

"""`mpcrt infer` end to end: real processes (launcher, dealer, parties), bounded in time.

Covers: `python -m mpcrt.launch.infer -n N` (local spawn), the infer script under
`mpcrt launch`, cluster files with `mpcrt party` and `mpcrt infer --cluster`, the
state_dict + --arch path, what the model owner learns (no predictions), and clear
errors (on every party, non-zero exit, no hang) for missing / non-model / pickled
files and wrong input shapes. Every command runs under a timeout (conftest `cli`).
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import mpcrt.launch.infer
import mpcrt.nn as mnn
from mpcrt.launch.local import make_local_cluster
from mpcrt.tensor import SharedTensor

INFER = os.path.abspath(mpcrt.launch.infer.__file__)
TOL = 1e-3  # max |MPC - torch| of the logits (fixed point, 16 fractional bits)
HAVE_RELU = hasattr(SharedTensor, "relu")

ARCH_SRC = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, hidden=16, act=True):
        super().__init__()
        self.fc1 = nn.Linear(20, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.act = nn.ReLU() if act else nn.Identity()
        self.fc2 = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.fc2(self.act(self.bn(self.fc1(x))))
'''


def _net_module(tmp_path: pathlib.Path):
    path = tmp_path / "owner_net.py"
    path.write_text(ARCH_SRC)
    ns: dict = {}
    exec(compile(ARCH_SRC, str(path), "exec"), ns)
    return ns["Net"], str(path)


@pytest.fixture
def files(tmp_path):
    """A model archive, its state_dict .npz, the owner's code, inputs, and float64 reference outputs."""
    Net, code = _net_module(tmp_path)
    torch.manual_seed(0)
    net = Net(act=HAVE_RELU)
    net.bn.running_mean.uniform_(-0.5, 0.5)
    net.bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    mnn.save(net, torch.zeros(1, 20), str(tmp_path / "model.npz"))
    np.savez(str(tmp_path / "state.npz"), **{k: v.numpy() for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).uniform(-1, 1, size=(50, 20))
    np.save(str(tmp_path / "x.npy"), x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x).float()).double().numpy()
    return {"dir": tmp_path, "model": str(tmp_path / "model.npz"), "state": str(tmp_path / "state.npz"),
            "code": code, "x": str(tmp_path / "x.npy"), "ref": ref, "out": str(tmp_path / "out.npy")}


def _lines(output: str, who: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith(f"[{who}]")]


def _infer(cli, *args, timeout=120):
    return cli.run_argv([sys.executable, "-m", "mpcrt.launch.infer", *map(str, args)], timeout=timeout)


def test_local_end_to_end(cli, files):
    r = _infer(cli, "-n", 2, "--model-owner", 0, "--data-owner", 1, "--model", files["model"],
               "--input", files["x"], "--output", files["out"], "--batch-size", 20)
    assert r.returncode == 0, r.output
    got = np.load(files["out"], allow_pickle=False)
    assert got.shape == (50, 4)
    assert float(np.abs(got - files["ref"]).max()) <= TOL
    owner = "\n".join(_lines(r.stdout, "party 0"))
    assert "wrote" not in owner and "model owner" in owner  # the model owner writes and learns no output
    assert "wrote logits (50, 4)" in "\n".join(_lines(r.stdout, "party 1"))
    assert not r.left


@pytest.mark.skipif(not hasattr(SharedTensor, "argmax"), reason="SharedTensor.argmax not available yet")
def test_launch_script_mode_three_parties_labels(cli, files):
    """The same file as a script under `mpcrt launch`, other roles, and only labels revealed."""
    r = cli.run(["launch", "-n", 3, INFER, "--model-owner", 2, "--data-owner", 0, "--model", files["model"],
                 "--input", files["x"], "--output", files["out"], "--reveal", "label"], timeout=120)
    assert r.returncode == 0, r.output
    labels = np.load(files["out"], allow_pickle=False)
    assert labels.dtype == np.int64 and labels.shape == (50,)
    assert int((labels == files["ref"].argmax(1)).sum()) >= 49
    assert "wrote label (50,)" in "\n".join(_lines(r.stdout, "party 0"))
    assert "helper" in "\n".join(_lines(r.stdout, "party 1"))


def test_cluster_parties_with_arch_and_state_dict(cli, files, tmp_path):
    """A cluster file: dealer via `mpcrt dealer`, party 0 via `mpcrt party ... infer.py`, party 1 via
    `python -m mpcrt.launch.infer --cluster`; the model owner uses its own code (--arch) and a state_dict .npz."""
    work = tmp_path / "cluster"
    work.mkdir()
    cluster, keys = make_local_cluster(2, str(work))
    common = ["--model-owner", "0", "--data-owner", "1", "--model", files["state"], "--arch",
              f"{files['code']}:Net", "--arch-kwargs", '{"act": %s}' % ("true" if HAVE_RELU else "false"),
              "--input-shape", "1,20", "--input", files["x"], "--output", files["out"]]
    dealer, _ = cli.start(["dealer", "--cluster", cluster, "--key", keys[2]])
    p0, _ = cli.start(["party", "--cluster", cluster, "--rank", "0", "--key", keys[0], INFER, *common])
    p1 = subprocess.Popen([sys.executable, "-m", "mpcrt.launch.infer", "--cluster", cluster, "--rank", "1",
                           "--key", keys[1], *common], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("MPCRT_")},
                               "MPCRT_THREADS": "1"}, start_new_session=True)
    try:
        out1, _ = p1.communicate(timeout=120)
        out0, err0 = p0.communicate(timeout=30)
        dealer.communicate(timeout=30)
    finally:
        if p1.poll() is None:
            p1.kill()
            p1.communicate()
    assert p1.returncode == 0 and p0.returncode == 0, out1 + out0 + err0
    got = np.load(files["out"], allow_pickle=False)
    assert float(np.abs(got - files["ref"]).max()) <= TOL
    assert "wrote logits (50, 4)" in out1 and "wrote" not in out0


def _fails_everywhere(r, *needles):
    assert r.returncode != 0
    assert not r.left
    for who in ("party 0", "party 1"):
        text = "\n".join(_lines(r.output, who))
        for needle in needles:
            assert needle in text, f"{who} lacks {needle!r}:\n{r.output}"


def _data_owner_only(r, *needles, owner="party 1", others=("party 0",)):
    """The data owner's reasons on the data owner alone; the others hear only that it is not ready."""
    for needle in needles:
        assert needle in "\n".join(_lines(r.output, owner)), f"{owner} lacks {needle!r}:\n{r.output}"
        for who in others:
            assert needle not in "\n".join(_lines(r.output, who)), f"{who} learned {needle!r}:\n{r.output}"
    for who in others:
        assert "its input or output was refused" in "\n".join(_lines(r.output, who)), r.output


def test_missing_files_are_reported_by_every_party(cli, files):
    t0 = time.monotonic()
    r = _infer(cli, "-n", 2, "--model", str(files["dir"] / "nope.npz"), "--input", str(files["dir"] / "nope.npy"),
               "--output", files["out"], timeout=60)
    _fails_everywhere(r, "model file", "nope.npz' does not exist")
    _data_owner_only(r, "input file", "nope.npy' does not exist")
    assert "dealer (exit" not in r.output and "PeerFailure" not in r.output, r.output  # a clean goodbye
    assert time.monotonic() - t0 < 60
    assert not os.path.exists(files["out"])


def test_non_model_files_are_refused(cli, files):
    txt = files["dir"] / "notes.txt"
    txt.write_text("this is not a model\n")
    r = _infer(cli, "-n", 2, "--model", txt, "--input", files["x"], "--output", files["out"], timeout=60)
    _fails_everywhere(r, "not an mpcrt model archive")
    pt = files["dir"] / "weights.pt"
    torch.save({"w": torch.zeros(2)}, str(pt))
    r = _infer(cli, "-n", 2, "--model", pt, "--input", files["x"], "--output", files["out"], timeout=60)
    _fails_everywhere(r, "torch.save", "never unpickles")
    r = _infer(cli, "-n", 2, "--model", files["state"], "--input", files["model"], "--output", files["out"], timeout=60)
    _fails_everywhere(r, "without an mpcrt graph", "--arch")
    _data_owner_only(r, "is an .npz archive")


def test_the_data_owners_input_errors_stay_with_it_and_outputs_are_checked_first(cli, files):
    """A NaN or an out-of-range value says something about the input: the model owner learns only that
    the data owner is not ready. An --output that cannot be written (a folder, a path under /proc, where
    os.access says yes to root) is refused before the inference, not after it."""
    nan = files["dir"] / "nan.npy"
    x = np.load(files["x"])
    x[3, 4] = np.nan
    np.save(str(nan), x)
    r = _infer(cli, "-n", 2, "--model", files["model"], "--input", nan, "--output", files["out"], timeout=60)
    assert r.returncode != 0 and not r.left
    _data_owner_only(r, "NaN", "nan.npy")
    for bad in (files["dir"], "/proc/mpcrt-out.npy"):
        r = _infer(cli, "-n", 2, "--model", files["model"], "--input", files["x"], "--output", bad, timeout=60)
        assert r.returncode != 0 and not r.left
        assert "--output" in "\n".join(_lines(r.output, "party 1")), r.output
        assert "inference" not in "\n".join(_lines(r.output, "party 1")), r.output


def test_wrong_input_shape(cli, files):
    bad = files["dir"] / "bad.npy"
    np.save(str(bad), np.zeros((5, 7)))
    r = _infer(cli, "-n", 2, "--model", files["model"], "--input", bad, "--output", files["out"], timeout=60)
    _fails_everywhere(r, "ShapeError", "expects input of shape (batch, 20)", "(5, 7)")
    assert "dealer (exit" not in r.output and "PeerFailure" not in r.output, r.output


def test_usage_errors(cli, files):
    r = _infer(cli, "--model", files["model"], timeout=30)
    assert r.returncode == 2 and "where should it run" in r.stderr
    r = _infer(cli, "-n", 2, "--serve", files["dir"], "--input", files["x"], "--model", files["model"], timeout=30)
    assert r.returncode == 2 and "drop --input/--output" in r.stderr  # before anything is started
    r = _infer(cli, "-n", 2, "--batch-size", 0, "--model", files["model"], "--input", files["x"], timeout=30)
    assert r.returncode == 2 and "--batch-size must be positive" in r.stderr
    r = _infer(cli, "-n", 2, "--model-owner", 5, "--model", files["model"], "--input", files["x"], "--output",
               files["out"], timeout=60)
    _fails_everywhere(r, "--model-owner 5 is not a party rank")


def test_mpcrt_cli_wiring(cli, files):
    from mpcrt.launch.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    if "infer" not in sub.choices:
        pytest.skip("`mpcrt infer` not wired into launch/cli.py yet")
    r = cli.run(["infer", "-n", 2, "--model", files["model"], "--input", files["x"], "--output", files["out"]],
                timeout=120)
    assert r.returncode == 0, r.output
    assert float(np.abs(np.load(files["out"]) - files["ref"]).max()) <= TOL


def test_inputs_past_the_product_bound_of_the_precision_warn(tmp_path):
    """0..255 pixels at --precision 28 (products must stay below 2^6) wrapped silently in a conv; the data
    owner now gets a warning naming the bound. At 16 bits (2^30) the same file loads quietly."""
    import warnings

    p = tmp_path / "pixels.npy"
    np.save(p, np.linspace(0, 255, 64).reshape(1, 64))
    with pytest.warns(UserWarning, match=r"precision 28.*2\^6"):
        mpcrt.launch.infer._load_inputs(str(p), 28)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = mpcrt.launch.infer._load_inputs(str(p), 16)
    assert x.shape == (1, 64) and x.max() == 255

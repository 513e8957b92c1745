"""`mpcrt infer --serve DIR`: the service stays up, serves requests as files arrive, refuses bad ones,
prepares the next batch's material while idle, and stops on DIR/STOP (real processes, bounded in time)."""
from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np
import pytest
import torch

import mpcrt.nn as mnn
from mpcrt.errors import ShapeError
from mpcrt.launch.inprocess import run_parties

TOL = 1e-3


def _put(folder, name: str, arr: np.ndarray) -> None:
    """Write elsewhere, rename in: the service never reads a half-written request."""
    tmp = os.path.join(folder, "." + name)
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, os.path.join(folder, name))


def _wait_for(path: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < end, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


@contextlib.contextmanager
def _service(cli, args: list, q):
    """`mpcrt infer ... --serve q` running for the with-block, then stopped by q/STOP; yields a dict that
    gets its exit status and output ("rc", "out", "err"). Killed if it outlives the block's failure."""
    p, _ = cli.start(["infer", "-n", "2", *args, "--serve", str(q)])
    done: dict = {}
    try:
        yield done
        (q / "STOP").touch()
        done["out"], done["err"] = p.communicate(timeout=60)
        done["rc"] = p.returncode
    finally:
        if p.poll() is None:
            p.kill()


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    path = str(tmp_path / "model.npz")
    mnn.save(net, torch.zeros(1, 12), path)
    return net, path


def test_service_serves_requests_until_stop(cli, tmp_path, model):
    net, path = model
    q = tmp_path / "q"
    q.mkdir()
    rng = np.random.default_rng(0)
    xs = {"a.npy": rng.uniform(-1, 1, (8, 12)), "b.npy": rng.uniform(-1, 1, (8, 12)),
          "c.npy": rng.uniform(-1, 1, (5, 12))}
    with _service(cli, ["--model", path, "--batch-size", "8", "--serve-ping", "0.5"], q) as run:
        for name in ("a.npy", "b.npy"):  # the same batch shape: b's material is fetched while idle
            _put(str(q), name, xs[name])
            _wait_for(str(q / "out" / name.replace(".npy", ".json")), 120)
        _put(str(q), "bad.npy", rng.uniform(-1, 1, (4, 7)))  # wrong shape: refused, the service goes on
        _put(str(q), "c.npy", xs["c.npy"])  # another shape: the prepared material is dropped alike
        _wait_for(str(q / "out" / "c.json"), 120)
        time.sleep(1.5)  # a few idle keep-alives
    out = run["out"]
    assert run["rc"] == 0, out + run["err"]
    for name, x in xs.items():
        got = np.load(q / "out" / name, allow_pickle=False)
        with torch.no_grad():
            ref = net.double()(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape and float(np.abs(got - ref).max()) <= TOL
        assert (q / "done" / name).exists() and not (q / name).exists()
    figs = {n: json.loads((q / "out" / n.replace(".npy", ".json")).read_text()) for n in xs}
    assert figs["a.npy"]["batches_prepared_ahead"] == 0 and figs["b.npy"]["batches_prepared_ahead"] == 1
    assert figs["a.npy"]["rounds"] == figs["b.npy"]["rounds"]  # each request costs only its own rounds
    assert figs["b.npy"]["bytes_sent"] == figs["a.npy"]["bytes_sent"]
    assert (q / "failed" / "bad.npy").exists() and "expects input" in (q / "failed" / "bad.txt").read_text()
    assert "service stopped after 3 requests" in out
    owner = [ln for ln in out.splitlines() if ln.startswith("[party 0]")]
    assert owner and not any(".npy" in ln for ln in owner)  # the model owner never sees a request's name
    assert not (q / "STOP").exists()


def test_missing_serve_folder_is_a_config_error_on_every_party(cli, tmp_path, model):
    _, path = model
    r = cli.run(["infer", "-n", "2", "--model", path, "--serve", str(tmp_path / "nope")], timeout=120)
    assert r.returncode != 0
    assert "no such folder" in r.output


def test_service_runs_a_sequence_first_model_in_one_call(cli, tmp_path):
    """A request of T = 7 rows for a model whose dim 0 is its sequence (mpcrt.nn.rows), with --batch-size 3:
    one call over all 7, as torch, not three cuts of the sequence (which gave 6 rows)."""
    torch.manual_seed(5)
    enc = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
    net = torch.nn.Sequential(enc, torch.nn.Linear(8, 3)).eval()
    path = str(tmp_path / "seq.npz")
    mnn.save(net, torch.zeros(4, 2, 8), path)
    q = tmp_path / "q"
    q.mkdir()
    x = np.random.default_rng(1).uniform(-1, 1, (7, 2, 8))
    with _service(cli, ["--model", path, "--batch-size", "3"], q) as run:
        _put(str(q), "s.npy", x)
        _wait_for(str(q / "out" / "s.json"), 120)
    assert run["rc"] == 0, run["out"] + run["err"]
    got = np.load(q / "out" / "s.npy", allow_pickle=False)
    with torch.no_grad():
        ref = net.double()(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape == (7, 2, 3)
    assert float(np.abs(got - ref).max()) <= 5e-3


def _forms(rt, y):
    from mpcrt.launch.serve import output_form

    t = rt.share(y if rt.rank == 0 else None, src=0)
    out = {"label2": output_form(t, "label", 2).reveal(), "probs-1": output_form(t, "probs", -1).reveal(),
           "flat": output_form(t.reshape(4, 3), "label").reveal()}
    for kind, dim in (("label", None), ("probs", 3)):
        try:
            output_form(t, kind, dim)
        except ShapeError as e:
            out[f"{kind}{dim}"] = str(e)
    return out


def test_reveal_forms_need_the_class_dim_of_outputs_with_more_dims():
    """A sequence-first model's (T, N, C) output: --reveal label over dim 1 would be silently wrong, so
    outputs of more than 2 dims need --class-dim; a (batch, classes) output keeps dim 1."""
    y = np.random.default_rng(0).normal(size=(4, 1, 3))
    got = run_parties(_forms, 2, y, timeout=30)[0]
    np.testing.assert_array_equal(got["label2"], y.argmax(2))
    np.testing.assert_allclose(got["probs-1"], np.exp(y) / np.exp(y).sum(-1, keepdims=True), atol=2e-3)
    np.testing.assert_array_equal(got["flat"], y.reshape(4, 3).argmax(1))
    assert "--class-dim" in got["labelNone"] and "(4, 1, 3)" in got["labelNone"]
    assert "not a dim" in got["probs3"]


def test_service_takes_token_ids_and_refuses_ids_past_the_vocabulary(cli, tmp_path):
    """A model over token ids: requests hold ids, one-hot a batch at a time on the data owner."""
    torch.manual_seed(4)

    class Bag(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = torch.nn.Embedding(20, 6), torch.nn.Linear(6, 2)

        def forward(self, ids):
            return self.fc(self.emb(ids).mean(1))

    net = Bag().eval()
    path = str(tmp_path / "bag.npz")
    mnn.save(net, torch.zeros(1, 5, dtype=torch.long), path)
    q = tmp_path / "q"
    q.mkdir()
    ids = np.random.default_rng(2).integers(0, 20, (5, 5))
    with _service(cli, ["--model", path, "--batch-size", "2"], q) as run:
        _put(str(q), "bad.npy", ids + 20)
        _put(str(q), "ids.npy", ids)
        _wait_for(str(q / "out" / "ids.json"), 120)
    assert run["rc"] == 0, run["out"] + run["err"]
    with torch.no_grad():
        ref = net(torch.from_numpy(ids)).double().numpy()
    assert float(np.abs(np.load(q / "out" / "ids.npy", allow_pickle=False) - ref).max()) <= TOL
    assert "[0, 20)" in (q / "failed" / "bad.txt").read_text()

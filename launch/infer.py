"""`mpcrt infer`: private inference between two organisations.

One party (the model owner) holds a PyTorch model, another (the data owner) holds
the inputs. The same command line runs on every party; each party reads only the
files its role owns:

    # every host, with its own --rank and key:
    mpcrt infer --cluster cluster.toml --rank I --key partyI.key_secret \\
        --model-owner 0 --data-owner 1 --model model.npz --input x.npy --output preds.npy

    # all parties on this host (a trial run): the dealer and N parties are spawned
    mpcrt infer -n 2 --model-owner 0 --data-owner 1 --model model.npz --input x.npy --output preds.npy

    # inside `mpcrt launch` / `mpcrt party` (script mode): this file is the script
    mpcrt launch -n 3 launch/infer.py --model-owner 0 --data-owner 1 --model ... --input ... --output ...

What each party learns: the architecture (public by design: layer kinds, shapes,
hyper-parameters) and the input's shape. The weights stay secret-shared, the inputs
too; the model's output is revealed to the data owner only and written by it to
--output (.npy, float64, one row per input), once every party has finished (the goodbye
barrier) and atomically (a temporary file renamed): a failed run leaves no output file.
The model owner writes nothing and sees no prediction.

Model file formats (read only on the model owner's host; never pickle):

* an mpcrt model archive (recommended): an .npz written by
  `mpcrt.nn.save(model, example_input, "model.npz")`. It holds the traced
  architecture as msgpack bytes and the (BatchNorm-folded) weights as float64
  arrays, and is read with numpy's allow_pickle=False: loading it executes nothing.
* a state_dict as .npz (`np.savez(f, **{k: v.numpy() for k, v in m.state_dict().items()})`)
  plus `--arch module:Class` (or `path/to/file.py:Class`, and `--arch-kwargs JSON`)
  naming the owner's own model code, and `--input-shape 1,1,8,8`. The code is
  imported and run: use this only with code you trust (your own).

Refused on purpose: torch.save/.pt/.pth files and torch.export .pt2 archives, whose
loaders unpickle (torch.export.load's own documentation warns about this).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time

import numpy as np

from mpcrt import config
from mpcrt.launch.where_args import add_where_arguments
from mpcrt.launch.atomic_write import write_atomically

ROLE_HELP = "the same on every party"


# ---------------------------------------------------------------- arguments
def _add_arguments(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("roles and files (" + ROLE_HELP + "; each party reads only what its role owns)")
    r.add_argument("--model-owner", type=int, default=0, metavar="RANK",
                   help="rank of the party holding the model (default 0)")
    r.add_argument("--data-owner", type=int, default=1, metavar="RANK",
                   help="rank of the party holding the inputs (default 1)")
    r.add_argument("--model", metavar="FILE",
                   help="model owner: mpcrt model archive (.npz from mpcrt.nn.save), or a state_dict .npz with --arch")
    r.add_argument("--arch", metavar="MODULE:CLASS",
                   help="model owner: MODULE:CLASS or FILE.py:CLASS of the model code (with a state_dict .npz)")
    r.add_argument("--arch-kwargs", default="{}", metavar="JSON",
                   help="model owner: JSON keyword arguments for --arch's constructor")
    r.add_argument("--input-shape", metavar="SHAPE",
                   help="model owner, with --arch: one input's shape, batch first, e.g. 1,1,8,8")
    r.add_argument("--input", metavar="FILE",
                   help="data owner: inputs as .npy (batch first), read with allow_pickle=False")
    r.add_argument("--output", metavar="FILE", help="data owner: where to write the revealed outputs (.npy)")
    o = p.add_argument_group("inference")
    o.add_argument("--batch-size", type=int, default=64, metavar="N", help="inputs per MPC batch (default 64)")
    o.add_argument("--reveal", choices=("logits", "probs", "label"), default="logits",
                   help="what the data owner learns: the model's output (default), its softmax "
                        "(computed under MPC), or only the argmax label (computed under MPC)")
    o.add_argument("--class-dim", type=int, default=None, metavar="D",
                   help="with --reveal probs/label: the output dim holding the class scores (default: 1 of a "
                        "(batch, classes) output; say it for outputs with more dims)")
    o.add_argument("--progress", action="store_true", help="progress bar on the data owner")
    o.add_argument("--no-fixed-masks", action="store_true",
                   help="re-mask the weights on every call instead of once at load (MPCRT_FIXED_MASKS=0; comparisons)")
    o.add_argument("--serve", metavar="DIR", help="stay up and serve requests: the data owner watches DIR for .npy "
                   "files (instead of --input/--output; see launch/serve.py); DIR/STOP stops it")
    o.add_argument("--serve-ping", type=float, default=5.0, metavar="S",
                   help="with --serve: seconds between the data owner's keep-alives while idle (default 5)")
    add_where_arguments(p, 16, "fractional bits (a cluster file sets its own)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `infer` sub-command to the `mpcrt` command line (its fn is `run`)."""
    p = subparsers.add_parser(
        "infer",
        help="private inference: a model owner's PyTorch model on a data owner's inputs",
        description=__doc__.split("\n\n")[0] + " Only the data owner learns the outputs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    _add_arguments(p)
    p.set_defaults(fn=run)
    return p


def _party_argv(a) -> list[str]:
    """The role/file/inference flags again, for the party processes."""
    out = ["--model-owner", str(a.model_owner), "--data-owner", str(a.data_owner),
           "--batch-size", str(a.batch_size), "--reveal", a.reveal, "--arch-kwargs", a.arch_kwargs]
    for flag, v in (("--model", a.model), ("--arch", a.arch), ("--input-shape", a.input_shape),
                    ("--input", a.input), ("--output", a.output), ("--serve", a.serve)):
        if v is not None:
            out += [flag, v]
    if a.progress:
        out.append("--progress")
    if a.class_dim is not None:
        out += ["--class-dim", str(a.class_dim)]
    if a.serve:
        out += ["--serve-ping", str(a.serve_ping)]
    return out


# ---------------------------------------------------------------- entry points
def run(a) -> int:
    """The `mpcrt infer` command: dispatch to local launch, cluster party, or in-party run."""
    if a.local_n is not None and a.cluster:
        print("mpcrt infer: pass either -n N (all parties here) or --cluster/--rank (one party), not both",
              file=sys.stderr)
        return 2
    if a.serve and (a.input or a.output):
        print("mpcrt infer: --serve DIR reads its requests from DIR and writes DIR/out; drop --input/--output",
              file=sys.stderr)
        return 2
    if a.batch_size < 1:
        print(f"mpcrt infer: --batch-size must be positive, got {a.batch_size}", file=sys.stderr)
        return 2
    cfg = config.current().replace(device=a.device)
    # installed: the local parties and the dealer inherit it
    cfg = config.install(cfg.replace(fixed_masks=False) if a.no_fixed_masks else cfg)
    if a.local_n is not None:
        from mpcrt.launch.local import launch

        return launch(a.local_n, os.path.abspath(__file__), _party_argv(a), precision=a.precision,
                      insecure=a.insecure_plaintext, timeout=a.timeout)
    if a.cluster:
        return _run_cluster_party(a)
    if cfg.cluster is not None and cfg.rank is not None:
        return party_main(a)
    print("mpcrt infer: where should it run? Pass -n N (dealer and N parties on this host), or "
          "--cluster FILE --rank I [--key FILE] (one party of a cluster), or run this file under "
          "`mpcrt launch`/`mpcrt party`", file=sys.stderr)
    return 2


def _run_cluster_party(a) -> int:
    from mpcrt.parties.party import run_cluster_party

    return run_cluster_party("mpcrt infer", a.cluster, a.rank, a.key, a.insecure_plaintext, a.timeout,
                             os.path.abspath(__file__), _party_argv(a))


# ---------------------------------------------------------------- one party
def party_main(a) -> int:
    """Run this party's share of the inference (inside a launched or cluster party)."""
    import mpcrt
    import mpcrt.nn as mnn
    from mpcrt.errors import ConfigError
    from mpcrt.cluster import load_cluster
    from mpcrt.parties.party import close_checked

    # arguments every party has alike are checked before connecting, so that every party reports
    # them (after connecting, the first to fail would be a lost peer to the others)
    cfg = config.current()
    n = load_cluster(cfg.cluster).world_size
    for name, r in (("--model-owner", a.model_owner), ("--data-owner", a.data_owner)):
        if not 0 <= r < n:
            raise ConfigError(f"{name} {r} is not a party rank in 0..{n - 1}")
    if a.serve and not 0.05 <= a.serve_ping <= cfg.timeout / 2:
        raise ConfigError(f"--serve-ping {a.serve_ping} must be at least 0.05 s and at most half the receive timeout")
    rt = mpcrt.init()
    mo, do = a.model_owner, a.data_owner
    role = " and ".join([w for w, r in (("model owner", mo), ("data owner", do)) if r == rt.rank]) or "helper"

    # 1. every party checks the files its role owns; all learn whether all are ready
    build, inputs, err, stage = None, None, None, "model"
    try:
        if rt.rank == mo:
            build = _model_loader(a)
        stage = "data"
        if rt.rank == do and a.serve:
            _check_serve_folder(a.serve)
        elif rt.rank == do:
            inputs = _load_inputs(a.input, rt.precision)
            _check_output(a.output)
    except ConfigError as e:
        err = f"{type(e).__name__}: {e}" if isinstance(e, mnn.ModelImportError) else str(e)
    except Exception as e:  # told to every party below, so that nobody waits for this one
        err = f"{type(e).__name__}: {e}"
    # the data owner's reasons stay on the data owner: what its input holds (NaN, magnitudes, dtype) is
    # not the others' to learn; they hear that it is not ready
    told = err if err is None or stage == "model" else "its input or output was refused (the reason is shown " \
        "on that party only)"
    _stop_unless_all_ready(rt, err, told, mo, do)

    # 2. the model: public graph to all, weights secret-shared by the model owner
    t0 = time.perf_counter()
    model = mnn.distribute(build, src=mo, rt=rt)
    t_import = time.perf_counter() - t0
    if not isinstance(model.graph.output, dict):  # the graph is public: every party stops here alike
        raise mnn.UnsupportedLayerError("mpcrt infer needs a model with a single tensor output; this one returns "
                                        f"{len(model.graph.output)} values (return one tensor from forward())")
    if a.reveal == "label" and not hasattr(mpcrt.SharedTensor, "argmax"):
        raise ConfigError("--reveal label needs SharedTensor.argmax(), which this mpcrt build lacks")
    if a.reveal == "probs" and not hasattr(mpcrt.SharedTensor, "softmax"):
        raise ConfigError("--reveal probs needs SharedTensor.softmax(), which this mpcrt build lacks")

    if a.serve:  # 3'. a service: requests as they come, until DIR/STOP
        from mpcrt.launch.serve import serve

        serve(rt, model, a.serve, do, a.batch_size, a.reveal, _load_inputs, ping_s=a.serve_ping,
              class_dim=a.class_dim)
        return 0

    if model.one_hot:  # token ids (one-hot on the data owner, a batch at a time); all learn whether they fit, not why
        from mpcrt.nn.embedding import check_ids

        err = None
        if rt.rank == do:
            try:
                model.check_input_shape(model.encoded_shape(np.shape(check_ids(inputs, model.one_hot))))
            except Exception as e:  # noqa: BLE001 - told to the others (as a bare refusal) so nobody waits
                err = f"{type(e).__name__}: {e}"
        _stop_unless_all_ready(rt, err, err and "its token ids do not fit the model's embedding (the reason is "
                               "shown on that party only)", mo, do)

    # 3. private inference, outputs revealed to the data owner only
    rt.reset_stats()
    t0 = time.perf_counter()
    out = _infer(rt, model, inputs, do, a)
    t_inf = time.perf_counter() - t0
    st = rt.stats()
    # 4. the commit point: every party said goodbye (a peer lost before that is a PeerFailure
    # here), and only then does the data owner write, atomically (no partial or stale file)
    close_checked(rt)
    if rt.rank == do:
        write_atomically(a.output, out)
        print(f"party {rt.rank} ({role}): wrote {a.reveal} {out.shape} for {out.shape[0]} inputs to {a.output}")
    count = None if rt.rank != do else out.shape[0]
    print(f"party {rt.rank} ({role}): model import {t_import:.2f} s ({model.graph.param_count} shared weights), "
          f"inference {t_inf:.2f} s{'' if count is None else f' for {count} inputs'}, {st['rounds']} rounds, "
          f"{st['bytes_sent'] / 1e6:.2f} MB sent, {st['bytes_received'] / 1e6:.2f} MB received")
    return 0


def _infer(rt, model, inputs, do: int, a) -> np.ndarray | None:
    # the shape is public: every party fails alike (the others before allocating anything)
    from mpcrt.errors import ShapeError
    from mpcrt.launch.serve import output_form
    from mpcrt.parties.party import close_checked

    bar = None
    try:
        total, step, batches = model.shared_batches(inputs if rt.rank == do else None, do, a.batch_size)
        outs = []
        if a.progress and rt.rank == do:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="input", desc="private inference")
            except ImportError:
                bar = None
        if step != a.batch_size and total > a.batch_size and rt.rank == do:
            print(f"mpcrt infer: the model mixes the rows of its input's dim 0 (a sequence-first model?), so its "
                  f"{total} rows run as one batch, not in batches of {a.batch_size}", file=sys.stderr)
        for s, xb in batches:
            r = output_form(model(xb), a.reveal, a.class_dim).reveal(to=do)  # one tensor: checked
            if r is not None:
                outs.append(r)
            if bar is not None:
                bar.update(min(total, s + step) - bar.n)
    except ShapeError:  # shapes are public (the input's, --reveal's): every party refuses alike; a clean goodbye
        close_checked(rt)
        raise
    finally:
        if bar is not None:
            bar.close()
    if rt.rank != do:
        return None
    out = np.concatenate(outs, axis=0) if outs else np.zeros((0,))
    return out.astype(np.int64) if a.reveal == "label" else out


def _role(r: int, mo: int, do: int) -> str:
    return " and ".join([w for w, q in (("model owner", mo), ("data owner", do)) if q == r]) or "helper"


def _stop_unless_all_ready(rt, err: str | None, told: str | None, mo: int, do: int) -> None:
    """Every party learns who is not ready (`told`: what this one tells the others; its own `err` it shows
    itself) and all stop alike: a clean goodbye, so the dealer reports no lost party, then ConfigError."""
    from mpcrt.errors import ConfigError
    from mpcrt.parties.party import close_checked

    failures = [(r, err if r == rt.rank else m) for r, m in _all_agree(rt, told)]
    if failures:
        close_checked(rt)
        raise ConfigError("; ".join(f"party {r} ({_role(r, mo, do)}): {m}" for r, m in failures))


def _all_agree(rt, err: str | None) -> list[tuple[int, str]]:
    """Everyone tells everyone whether it is ready; returns [(rank, error)] of those that are not."""
    msg = np.frombuffer((err or "").encode("utf-8", "replace")[:4096], np.uint8)
    hdr = np.array([0 if err is None else 1, msg.size], np.int64)
    heads = rt.exchange({j: hdr for j in rt.peers}, {j: (2,) for j in rt.peers}, "infer.ready")
    sizes = {}
    for j, h in heads.items():
        if int(h[0]) not in (0, 1) or not 0 <= int(h[1]) <= 4096:
            from mpcrt.errors import ProtocolError

            raise ProtocolError(f"party {j}", "malformed readiness message")
        sizes[j] = (int(h[1]),)
    texts = rt.exchange({j: msg for j in rt.peers}, sizes, "infer.why", dtype=np.uint8)
    out = [(j, bytes(texts[j]).decode("utf-8", "replace")) for j in sorted(heads) if int(heads[j][0])]
    if err is not None:
        out.append((rt.rank, err))
    return sorted(out)


# ---------------------------------------------------------------- file checks
def _model_loader(a):
    """Check the model owner's files now; return the build() that traces/loads the model."""
    import mpcrt.nn as mnn
    from mpcrt.errors import ConfigError

    path = a.model
    if not path:
        raise ConfigError("the model owner needs --model FILE")
    kind = mnn.sniff(path)  # existence, readability, and what it is, from its first bytes
    if kind in ("torch", "pickle"):
        raise mnn.ModelFileError(
            f"{path!r} is {mnn.KIND_HELP[kind]}: refused, mpcrt never unpickles. Convert it on a trusted "
            "machine: mpcrt.nn.save(model, example_input, 'model.npz')"
        )
    if not a.arch:
        graph, arrays = mnn.load(path)  # fully validated here, before any party commits
        return lambda: (graph, arrays)
    state = _load_state_dict(path)
    model_cls = _import_arch(a.arch)
    try:
        kwargs = json.loads(a.arch_kwargs or "{}")
        assert isinstance(kwargs, dict)
    except (ValueError, AssertionError):
        raise ConfigError(f"--arch-kwargs must be a JSON object, got {a.arch_kwargs!r}") from None
    if not a.input_shape:
        raise ConfigError("--arch needs --input-shape (one input batch's shape, e.g. 1,1,8,8) to trace the model")
    try:
        shape = tuple(int(s) for s in a.input_shape.replace("x", ",").split(",") if s.strip())
        assert shape and all(s > 0 for s in shape)
    except (ValueError, AssertionError):
        raise ConfigError(f"--input-shape must be positive integers like 1,1,8,8, got {a.input_shape!r}") from None
    import torch

    try:
        net = model_cls(**kwargs)
    except Exception as e:
        raise ConfigError(f"--arch {a.arch}(**{kwargs}) failed: {type(e).__name__}: {e}") from None
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(f"--arch {a.arch} did not build a torch.nn.Module (got {type(net).__name__})")
    try:
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        why = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise mnn.ModelFileError(f"{path!r} does not fit {a.arch}: {why[:400]}") from None
    graph, arrays = mnn.trace(net, torch.zeros(shape))  # errors now, on the owner, before sharing
    return lambda: (graph, arrays)


def _load_state_dict(path: str) -> dict:
    import mpcrt.nn as mnn

    kind = mnn.sniff(path)
    if kind != "npz":
        raise mnn.ModelFileError(f"{path!r} is {mnn.KIND_HELP[kind]}; --arch needs a state_dict saved "
                                 "as .npz (np.savez(f, **{k: v.numpy() for k, v in model.state_dict().items()}))")
    try:
        with np.load(path, allow_pickle=False) as z:
            sd = {k: z[k] for k in z.files}
    except Exception as e:
        raise mnn.ModelFileError(f"{path!r} is not a readable .npz state_dict ({type(e).__name__}: {e})") from None
    if mnn.ARCHIVE_GRAPH_KEY in sd:
        raise mnn.ModelFileError(f"{path!r} is an mpcrt model archive (it carries its architecture): drop --arch")
    return sd


def _import_arch(spec: str):
    from mpcrt.errors import ConfigError

    mod_name, sep, attr = spec.rpartition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"--arch must look like package.module:Class or path/to/file.py:Class, got {spec!r}")
    try:
        if mod_name.endswith(".py"):
            if not os.path.isfile(mod_name):
                raise ConfigError(f"--arch: no such file {mod_name!r}")
            s = importlib.util.spec_from_file_location("_mpcrt_arch", mod_name)
            mod = importlib.util.module_from_spec(s)
            s.loader.exec_module(mod)
        else:
            mod = importlib.import_module(mod_name)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--arch: cannot import {mod_name!r}: {type(e).__name__}: {e}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--arch: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _load_inputs(path: str | None, precision: int) -> np.ndarray:
    from mpcrt.protocols import fixedpoint
    from mpcrt.errors import ConfigError

    if not path:
        raise ConfigError("the data owner needs --input FILE.npy")
    if not os.path.isfile(path):
        raise ConfigError(f"input file {path!r} does not exist" if not os.path.exists(path)
                          else f"input {path!r} is not a file")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ConfigError(f"input {path!r} is not a numeric .npy array ({e})") from None
    except Exception as e:
        raise ConfigError(f"input {path!r} is not a .npy array ({type(e).__name__}: {e})") from None
    if not isinstance(x, np.ndarray):
        raise ConfigError(f"input {path!r} is an .npz archive; pass one array as .npy (np.save)")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ConfigError(f"input {path!r} has dtype {x.dtype}; expected floats or integers")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ConfigError(f"input {path!r} has shape {x.shape}; expected a non-empty batch (batch first)")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"input {path!r} contains NaN or infinity")
    lim = fixedpoint.max_value(precision)
    top = float(np.abs(x).max())
    if top >= lim:
        raise ConfigError(f"input {path!r} has values of magnitude >= {lim:g}, outside the fixed-point range")
    bound = 2.0 ** (62 - 2 * precision)  # |x w| of a product at 2f bits, summed, must stay below it
    if top * 16 >= bound:
        import warnings

        warnings.warn(f"input {path!r} has values up to {top:g}: at --precision {precision} a layer's products "
                      f"must stay below 2^{62 - 2 * precision} = {bound:g} and would wrap silently past it; "
                      f"normalize the inputs or lower --precision (16 holds products up to 2^30)", stacklevel=2)
    return x


def _check_serve_folder(path: str) -> None:
    from mpcrt.errors import ConfigError

    if not os.path.isdir(path):
        raise ConfigError(f"--serve {path!r}: no such folder (create it; requests are .npy files put there)")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"--serve {path!r}: the data owner needs to read and write it")


def _check_output(path: str | None) -> None:
    from mpcrt.errors import ConfigError

    if not path:
        raise ConfigError("the data owner needs --output FILE.npy")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ConfigError(f"output folder {d!r} does not exist")
    if not os.access(d, os.W_OK):
        raise ConfigError(f"output folder {d!r} is not writable")
    if os.path.isdir(path):
        raise ConfigError(f"--output {path!r} is a folder: name a file, e.g. {os.path.join(path, 'out.npy')!r}")
    existed = os.path.exists(path)
    try:  # os.access says yes to root everywhere: try it (the file is written only after the inference)
        with open(path, "ab"):
            pass
    except OSError as e:
        raise ConfigError(f"--output {path!r} cannot be written: {e.strerror}") from None
    if not existed:
        os.remove(path)


def main(argv: list[str] | None = None) -> int:
    """`python -m mpcrt.launch.infer ...` (and script mode under mpcrt launch / mpcrt party)."""
    p = argparse.ArgumentParser(prog="mpcrt infer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    _add_arguments(p)
    a = p.parse_args(argv)
    return run(a)


if __name__ == "__main__":
    _rc = main()
    if _rc:  # a plain return keeps the party runner's clean close (SystemExit(0) would skip it)
        sys.exit(_rc)

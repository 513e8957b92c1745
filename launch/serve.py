"""`mpcrt infer --serve DIR`: a private-inference service that stays up.

Every party runs the same `mpcrt infer ... --serve DIR` (over a cluster file, or -n N on
one host). The model is shared once, when the service starts (and, with weights masked
once, preprocessed once); then the data owner watches DIR and serves the requests as they
come:

    DIR/<name>.npy        a request: inputs, batch first, the model's input shape after
                          (write it elsewhere and rename it in: files whose name starts
                          with "." or that do not end in .npy are not read)
    DIR/out/<name>.npy    the revealed outputs (written to a temporary file, then renamed)
    DIR/out/<name>.json   that request's figures: rows, seconds, rounds, bytes, dealer bytes
    DIR/done/<name>.npy   the request, once served
    DIR/failed/<name>.npy a request that was refused (unreadable, wrong shape, out of range),
                          with DIR/failed/<name>.txt saying why; the service goes on
    DIR/STOP              create it to stop the service (all parties exit 0); SIGTERM or
                          Ctrl-C on the data owner does the same after the current request

What each party learns: per request, its row count (the batch shape is public), and the
times at which requests come; the inputs stay secret-shared and the outputs are revealed
to the data owner only. The model owner and any helper party never read DIR.

Each request costs only its own rounds and bytes: the weights were shared (and masked)
once. While idle, the parties fetch the dealer material for one more request of the last
request's batch shape (`rt.preprocess`), so a request of that shape runs online only; one
of another shape drops that material (the same on every party) and fetches its own on
line. While idle the data owner sends a small keep-alive every --serve-ping seconds, so the
other parties' receive timeout never fires on a quiet service; a party that dies is seen
as a PeerFailure (the service stops, non-zero).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any, Callable

import numpy as np

from mpcrt.errors import ConfigError, ProtocolError, ShapeError
from mpcrt.launch.atomic_write import write_atomically
from mpcrt.nn.embedding import check_ids
from mpcrt.nn.rows import batch_rows

log = logging.getLogger("mpcrt.serve")

OP_IDLE, OP_REQUEST, OP_STOP = 0, 1, 2
TAG = "serve.op"


class Service:
    """One party's side of the serving loop (the data owner's also reads DIR)."""

    def __init__(self, rt, model, folder: str, data_owner: int, batch_size: int, reveal: str,
                 load_inputs: Callable[[str, int], np.ndarray], ping_s: float = 5.0, poll_s: float = 0.1,
                 class_dim: int | None = None):
        self.rt, self.model, self.do, self.class_dim = rt, model, data_owner, class_dim
        self.folder = os.path.abspath(folder)
        self.batch_size, self.reveal_kind = batch_size, reveal
        self.load_inputs = load_inputs
        self.ping_s, self.poll_s = ping_s, poll_s
        self.prepared: tuple | None = None  # the batch shape whose material is fetched ahead
        self.served = 0
        self._stop = False
        self._pending: np.ndarray | None = None  # the data owner's next request, read and checked
        self._last_shape: tuple = ()
        if rt.rank == data_owner:
            for sub in ("out", "done", "failed"):
                os.makedirs(os.path.join(self.folder, sub), exist_ok=True)

    # ------------------------------------------------------------ the loop
    def run(self) -> int:
        """Serve until stopped; returns the number of requests served."""
        old = self._install_signals() if self.rt.rank == self.do else {}
        try:
            while True:
                op, rows, name = self._next_op()
                if op == OP_STOP:
                    break
                if op == OP_REQUEST:
                    self._serve(rows, name)
                    self._prepare_ahead()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return self.served

    def _install_signals(self) -> dict:
        def on_signal(signum, frame):
            self._stop = True

        old = {}
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                old[s] = signal.signal(s, on_signal)
            except ValueError:  # not the main thread: STOP files still work
                pass
        return old

    def _next_op(self) -> tuple[int, int, str | None]:
        """The data owner decides (a request, idle, stop) and tells the others; they wait for it."""
        rt = self.rt
        if rt.rank != self.do:
            hdr = rt.exchange({}, {self.do: (2,)}, TAG)[self.do]
            op, rows = int(hdr[0]), int(hdr[1])
            if op not in (OP_IDLE, OP_REQUEST, OP_STOP) or not 0 <= rows <= 1 << 31 or (op == OP_REQUEST) != (rows > 0):
                raise ProtocolError(f"party {self.do}", f"malformed serve message {hdr.tolist()}")
            return op, rows, None
        deadline = time.monotonic() + self.ping_s
        op, rows, name = OP_IDLE, 0, None
        while time.monotonic() < deadline:
            if self._stop or os.path.exists(os.path.join(self.folder, "STOP")):
                op = OP_STOP
                break
            found = self._take_request()
            if found is not None:
                op, rows, name = OP_REQUEST, found[0], found[1]
                break
            time.sleep(self.poll_s)
        rt.exchange({j: np.array([op, rows], np.int64) for j in rt.peers}, {}, TAG)
        if op == OP_STOP:
            try:
                os.remove(os.path.join(self.folder, "STOP"))
            except OSError:
                pass
        return op, rows, name

    def _take_request(self) -> tuple[int, str] | None:
        """The oldest readable request file (refused ones go to failed/); (rows, name) or None."""
        try:
            names = [f for f in os.listdir(self.folder) if f.endswith(".npy") and not f.startswith(".")]
        except OSError as e:
            raise ConfigError(f"the serve folder {self.folder!r} cannot be read: {e}") from None
        names.sort(key=lambda f: (self._mtime(f), f))
        for f in names:
            path = os.path.join(self.folder, f)
            try:
                x = self.load_inputs(path, self.rt.precision)
                if self.model.one_hot:  # token ids: one-hot a batch at a time when shared
                    x = check_ids(x, self.model.one_hot)
                self.model.check_input_shape(self.model.encoded_shape(x.shape))
            except Exception as e:  # ConfigError, ShapeError: the request is refused, the service goes on
                self._refuse(f, f"{type(e).__name__}: {e}")
                continue
            self._pending = x
            return x.shape[0], f
        return None

    def _mtime(self, f: str) -> float:
        try:
            return os.stat(os.path.join(self.folder, f)).st_mtime
        except OSError:
            return 0.0

    def _refuse(self, f: str, why: str) -> None:
        log.warning("request %s refused: %s", f, why)
        stem = os.path.splitext(f)[0]
        try:
            os.replace(os.path.join(self.folder, f), os.path.join(self.folder, "failed", f))
            write_atomically(os.path.join(self.folder, "failed", stem + ".txt"), (why + "\n").encode())
        except OSError as e:
            log.warning("could not move %s to failed/: %s", f, e)

    # ------------------------------------------------------------ one request
    def _call(self, x) -> Any:
        return output_form(self.model(x), self.reveal_kind, self.class_dim)

    def _serve(self, rows: int, name: str | None) -> None:
        rt = self.rt
        t0 = time.perf_counter()
        s0 = rt.stats()
        x_all = self._pending if rt.rank == self.do else None
        self._pending = None
        shape = (rows,) + tuple(self.model.input_shape[1:])
        outs, used_prepared = [], 0
        step = batch_rows(self.model.graph, self.batch_size, rows)  # all rows at once where the model mixes them
        for s in range(0, rows, step):
            part = None if x_all is None else self.model.encode_input(x_all[s:s + step])
            bshape = (min(step, rows - s),) + shape[1:]
            if self.prepared is not None and self.prepared != bshape:
                rt.dealer.discard_prefetched()  # every party alike: they all know the batch shape
            used_prepared += self.prepared == bshape
            self.prepared = None
            x = rt.share(part, src=self.do, shape=bshape)  # checked before anything is allocated
            r = self._call(x).reveal(to=self.do)
            if r is not None:
                outs.append(r)
        s1 = rt.stats()
        seconds = time.perf_counter() - t0
        self.served += 1
        self._last_shape = (min(step, rows),) + shape[1:]
        figures = {"rows": rows, "seconds": round(seconds, 6), "batches_prepared_ahead": int(used_prepared),
                   **{k: s1[k] - s0[k] for k in ("rounds", "bytes_sent", "bytes_received",
                                                 "dealer_bytes_sent", "dealer_bytes_received") if k in s1}}
        if rt.rank == self.do:
            out = np.concatenate(outs, axis=0)
            if self.reveal_kind == "label":
                out = out.astype(np.int64)
            stem = os.path.splitext(name)[0]
            write_atomically(os.path.join(self.folder, "out", stem + ".npy"), out)
            write_atomically(os.path.join(self.folder, "out", stem + ".json"),
                          json.dumps({"request": name, **figures}).encode())
            try:
                os.replace(os.path.join(self.folder, name), os.path.join(self.folder, "done", name))
            except OSError as e:
                log.warning("could not move %s to done/: %s", name, e)
            print(f"party {rt.rank} (data owner): served {name}: {rows} inputs in {seconds:.3f} s, "
                  f"{figures['rounds']} rounds, {figures['bytes_sent'] / 1e6:.2f} MB sent", flush=True)
        else:
            print(f"party {rt.rank}: served request {self.served} ({rows} inputs) in {seconds:.3f} s, "
                  f"{figures['rounds']} rounds, {figures['bytes_sent'] / 1e6:.2f} MB sent", flush=True)

    def _prepare_ahead(self) -> None:
        """Fetch the material of one more batch of the last shape while the service is idle."""
        from mpcrt.protocols.shared import SharedTensor

        shape = self._last_shape
        dummy = SharedTensor(self.rt, np.zeros(shape, np.int64), self.rt.precision)  # dry run: shapes only
        self.rt.preprocess(lambda: self._call(dummy))
        self.prepared = shape


def output_form(y, kind: str, class_dim: int | None = None):
    """A model's output `y` as `--reveal` asks for it: the raw outputs ("logits"), softmax ("probs") or
    argmax ("label") over the class scores in `class_dim` (None: dim 1 of a (batch, classes) output;
    outputs with more dims must say which, as a sequence-first model's (T, N, C) does not follow torch's
    (N, C, ...)). A ShapeError where that dim does not exist or is not said."""
    if kind in ("probs", "label"):
        if y.ndim < 2:
            raise ShapeError(f"--reveal {kind} takes class scores along a dim after the batch, but this model's "
                             f"output has shape {tuple(y.shape)}: use --reveal logits (the raw outputs)")
        if class_dim is None and y.ndim > 2:
            raise ShapeError(f"--reveal {kind}: this model's outputs have shape {tuple(y.shape)}; say which dim "
                             "holds the class scores with --class-dim D (torch's (N, C, ...) layout: 1; a "
                             "sequence-first (T, N, C) output: 2), or use --reveal logits")
        d = 1 if class_dim is None else class_dim
        if not -y.ndim <= d < y.ndim:
            raise ShapeError(f"--class-dim {d} is not a dim of this model's output shape {tuple(y.shape)}")
    if kind == "probs":
        return y.softmax(dim=d)
    if kind == "label":
        return y.argmax(dim=d)
    return y


def serve(rt, model, folder: str, data_owner: int, batch_size: int, reveal: str,
          load_inputs: Callable[[str, int], np.ndarray], ping_s: float = 5.0, class_dim: int | None = None) -> int:
    """Run the service on this party until DIR/STOP (or SIGTERM on the data owner); returns requests served."""
    if rt.rank == data_owner and not os.path.isdir(folder):
        raise ConfigError(f"--serve {folder!r}: no such folder (create it; requests are .npy files put there)")
    svc = Service(rt, model, folder, data_owner, batch_size, reveal, load_inputs, ping_s=ping_s,
                  class_dim=class_dim)
    n = svc.run()
    print(f"party {rt.rank}: service stopped after {n} requests", flush=True)
    return n

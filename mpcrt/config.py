"""mpcrt's settings: one frozen object that reads the environment once.

`current()` is the process's configuration, read from the `MPCRT_*` variables on first
use and validated (a bad value is a ConfigError saying what is allowed). The `mpcrt`
command builds one from the environment and its flags (flags win), `install`s it, and
so passes it to the processes it starts through their environment.

{table}

The kernels (mpcrt.kernels) sit below this module and read no variable: the runtime and
the dealer pass `device`, `threads` and `native_aes` to `kernels.backend.select`, once,
and hand the back end down. launch/relay.py runs as a stdlib-only script inside network
namespaces and reads MPCRT_NETSIM_REALTIME itself; launch/harness.py reads
MPCRT_CRYPTEN_SIDE and MPCRT_CRYPTEN_PYTHON in a process that must not import mpcrt (the CrypTen side).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, MutableMapping

from mpcrt import faults
from mpcrt.errors import ConfigError


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    def parse(s: str) -> int:
        v = int(s)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError
        return v
    return parse


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0 or v == float("inf"):
        raise ValueError
    return v


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _bool(s: str) -> bool:
    if s.lower() in _TRUE:
        return True
    if s.lower() in _FALSE:
        return False
    raise ValueError


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(s: str) -> str:
        if s.lower() not in allowed:
            raise ValueError
        return s.lower()
    return parse


def _network(s: str) -> str:
    delay, rate = (float(v) for v in s.split(":"))
    if not (0 <= delay < float("inf") and 0 < rate < float("inf")):
        raise ValueError
    return s


def network_link(spec: str | None) -> tuple[float, float] | None:
    """MPCRT_NETWORK as (one-way delay in seconds, bytes per second), or None."""
    if spec is None:
        return None
    delay, rate = (float(v) for v in spec.split(":"))
    return delay / 1e3, rate * 1e6 / 8


def _text(s: str) -> str:
    return s


_LEVELS = ("debug", "info", "warning", "error", "critical")


def _level(s: str) -> str:
    return _choice(*_LEVELS)(s).upper()


@dataclasses.dataclass(frozen=True)
class Var:
    """One environment variable: its Config field, default, parser and documentation."""

    env: str
    field: str
    default: Any
    allowed: str  # the values it takes, as the table and errors say them
    parse: Callable[[str], Any]
    doc: str


VARIABLES: tuple[Var, ...] = (
    Var("MPCRT_CLUSTER", "cluster", None, "path", _text,
        "this node's cluster file (set by `mpcrt launch` / `mpcrt party` / `mpcrt dealer`)"),
    Var("MPCRT_RANK", "rank", None, "integer >= 0", _int(0),
        "this party's rank (set by the launcher)"),
    Var("MPCRT_SECRET_KEY", "secret_key", None, "path", _text,
        "this node's secret key file, from `mpcrt keygen` (`--key`)"),
    Var("MPCRT_INSECURE", "insecure", False, "0 or 1", _bool,
        "1: plaintext channels, no encryption or authentication (`--insecure-plaintext`)"),
    Var("MPCRT_PRECISION", "precision", None, "integer 0..40", _int(0, 40),
        "fractional bits of the fixed-point encoding (default: the cluster file's, 16)"),
    Var("MPCRT_TIMEOUT", "timeout", 60.0, "seconds > 0", _positive_float,
        "how long a receive waits before PeerFailure (`--timeout`)"),
    Var("MPCRT_HEARTBEAT_TIMEOUT", "heartbeat_timeout", 10.0, "seconds > 0", _positive_float,
        "ZMTP heartbeat timeout (at least 2): a silent link is closed after it, its peer then fails as gone"),
    Var("MPCRT_SEALED_PORT_OFFSET", "sealed_port_offset", None, "integer 1..1000", _int(1, 1000),
        "the sealed-payload port (AES-256-GCM) is this many ports above each node's CURVE port "
        "(the same on every node; unset: a port the system picks)"),
    Var("MPCRT_IO_THREADS", "io_threads", 1, "integer >= 1", _int(1),
        "ZeroMQ I/O threads per node"),
    Var("MPCRT_LOOKAHEAD_MB", "lookahead_mb", 2048, "integer >= 0", _int(0),
        "largest correction (MB) a lookahead plan asks for at its start (same on every party)"),
    Var("MPCRT_SPLIT_OPEN_BYTES", "split_open_bytes", 1 << 19, "integer >= -1", _int(-1),
        "openings this large go in two steps at N >= 3 (0: all, -1: none; same on every party)"),
    Var("MPCRT_MAX_SHARE_MB", "max_share_mb", None, "integer >= 1", _int(1),
        "largest share() a peer may announce to this party, in MB (default: half this machine's memory, "
        "at most 32768): a larger claim is a ProtocolError before anything is allocated"),
    Var("MPCRT_CHUNK_ELEMENTS", "chunk_elements", 1 << 20, "integer >= 0", _int(0),
        "elementwise ops on larger tensors run in chunks of this many elements (0: never; same on every party)"),
    Var("MPCRT_DEALER_THREADS", "dealer_threads", None, "integer >= 1", _int(1),
        "threads that deal requests (default 2 where cores are spare, else 1)"),
    Var("MPCRT_LOGLEVEL", "loglevel", "WARNING", "debug, info, warning, error, critical", _level,
        "log level of the party and dealer processes"),
    Var("MPCRT_DEVICE", "device", "cpu", "cpu or cuda", _choice("cpu", "cuda"),
        "the back end: where large ring matmuls and convolutions run (`--device`)"),
    Var("MPCRT_THREADS", "threads", None, "integer >= 1", _int(1),
        "threads per process for the back end's GEMM and BLAS (default: cores / (N + 1))"),
    Var("MPCRT_NATIVE_AES", "native_aes", True, "0 or 1", _bool,
        "0: the `cryptography` AES keystream instead of the VAES extension (same bytes)"),
    Var("MPCRT_GEMM", "gemm", "auto", "auto, avx512, avx2, blas, torch",
        _choice("auto", "avx512", "avx2", "blas", "torch"),
        "the CPU's exact ring GEMM kernel (auto: the fastest this CPU runs; the others to compare paths)"),
    Var("MPCRT_FIXED_MASKS", "fixed_masks", True, "0 or 1", _bool,
        "0: shared models re-mask their weights on every call instead of once at load (for comparisons)"),
    Var("MPCRT_WARMUP", "warmup", True, "0 or 1", _bool,
        "0: launched parties and the dealer skip the start-up warm-up (loading kernels before connecting)"),
    Var("MPCRT_COMPARISON", "comparison", "auto", "auto, exact, fss", _choice("auto", "exact", "fss"),
        "2 parties: comparisons, ReLU, max by FSS in 1 round and sigmoid, tanh, gelu, silu, elu, softplus, mish "
        "as 2-round splines (fss), the exact protocols (exact), or as the cost model over MPCRT_NETWORK picks "
        "(auto)"),
    Var("MPCRT_NETWORK", "network", None, "DELAY_MS:MBIT", _network,
        "the links' one-way delay and rate, for auto's cost model (unset: loopback; same on every party)"),
    Var("MPCRT_FSS_BITS", "fss_bits", 64, "integer 2..64", _int(2, 64),
        "bits an FSS comparison looks at (64: exact; fewer: smaller keys, exact where abs(x - y) < 2^(bits-1))"),
    Var("MPCRT_NETSIM_REALTIME", "netsim_realtime", True, "0 or 1", _bool,
        "0: netsim's relays do not ask for real-time priority (read by launch/relay.py)"),
    Var("MPCRT_CRYPTEN_PYTHON", "crypten_python", None, "path", _text,
        "the Python that runs the CrypTen side (a virtualenv with crypten; default: this one)"),
    Var("MPCRT_CRYPTEN_SIDE", "crypten_side", None, "path", _text,
        "`mpcrt bench`: the CrypTen comparison script (default launch/crypten_side.py)"),
    Var("MPCRT_MODELS_PARTY", "models_party", False, "0 or 1", _bool,
        "internal: set by benchmarks/models.py for the party processes it launches"),
    Var("MPCRT_FAULT", "fault", None, "NODE:kill|stop|cut:send|recv:TAG[@K]", faults.check,
        "tests and benchmarks: that node kills, stops or cuts itself at that frame (mpcrt.faults)"),
    Var("MPCRT_FAULT_CUT", "fault_cut", None, "path", _text,
        "internal: set by `mpcrt launch` for a cut fault (the switch file of the relays it cuts)"),
)
_BY_FIELD = {v.field: v for v in VARIABLES}


def table() -> str:
    """The variables as a Markdown table (the README's, and this module's docstring)."""
    rows = ["| Variable | Values | Default | What it sets |", "|---|---|---|---|"]
    for v in VARIABLES:
        d = "-" if v.default is None else (str(int(v.default)) if isinstance(v.default, bool) else str(v.default))
        rows.append(f"| `{v.env}` | {v.allowed} | {d} | {v.doc} |")
    return "\n".join(rows)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of an mpcrt process; see the module's table."""

    cluster: str | None = None
    rank: int | None = None
    secret_key: str | None = None
    insecure: bool = False
    precision: int | None = None
    timeout: float = 60.0
    heartbeat_timeout: float = 10.0
    sealed_port_offset: int | None = None
    io_threads: int = 1
    lookahead_mb: int = 2048
    split_open_bytes: int = 1 << 19
    max_share_mb: int | None = None
    chunk_elements: int = 1 << 20
    dealer_threads: int | None = None
    loglevel: str = "WARNING"
    device: str = "cpu"
    threads: int | None = None
    native_aes: bool = True
    gemm: str = "auto"
    fixed_masks: bool = True
    warmup: bool = True
    comparison: str = "auto"
    network: str | None = None
    fss_bits: int = 64
    netsim_realtime: bool = True
    crypten_python: str | None = None
    crypten_side: str | None = None
    models_party: bool = False
    fault: str | None = None
    fault_cut: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Config":
        """Read and validate every MPCRT_* variable (unset or empty: the default)."""
        env = os.environ if env is None else env
        return cls(**{v.field: _parse(v, env[v.env]) for v in VARIABLES if env.get(v.env, "") != ""})

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed (None leaves a field as it is: an absent flag),
        each value validated as the environment's are."""
        fixed = {}
        for k, val in changes.items():
            if k not in _BY_FIELD:
                raise ConfigError(f"unknown setting {k!r}; the settings are {', '.join(_BY_FIELD)}")
            if val is not None:
                fixed[k] = _parse(_BY_FIELD[k], str(val))
        return dataclasses.replace(self, **fixed)

    def env(self) -> dict[str, str]:
        """The variables that give a child process this configuration (defaults left out)."""
        out = {}
        for v in VARIABLES:
            val = getattr(self, v.field)
            if val is not None and val != v.default:
                out[v.env] = ("1" if val else "0") if isinstance(val, bool) else str(val)
        return out

    def apply(self, env: MutableMapping[str, str]) -> MutableMapping[str, str]:
        """Set env's MPCRT_* variables so that it reads back as this configuration (those at
        their default removed); returns env."""
        given = self.env()
        for v in VARIABLES:
            if v.env in given:
                env[v.env] = given[v.env]
            else:
                env.pop(v.env, None)
        return env


def _parse(v: Var, raw: str) -> Any:
    try:
        return v.parse(raw)
    except ValueError:
        raise ConfigError(f"{v.env}={raw!r} is not allowed: use {v.allowed}. {v.env} sets {v.doc}") from None


_current: Config | None = None


def current() -> Config:
    """This process's configuration: read from the environment on first use."""
    global _current
    if _current is None:
        _current = Config.from_env()
    return _current


def install(cfg: Config) -> Config:
    """Make cfg this process's configuration and put it in os.environ, for the processes
    it starts (they read it back with `current()`)."""
    global _current
    cfg.apply(os.environ)
    _current = cfg
    return cfg


def add_device_argument(p) -> None:
    """--device cpu|cuda (default: MPCRT_DEVICE, else cpu); the command installs it in the config."""
    p.add_argument("--device", choices=("cpu", "cuda"), default=current().device,
                   help="where large ring matmuls and convolutions run: cpu (default, or MPCRT_DEVICE) or cuda "
                        "(needs CuPy and a GPU: pip install 'mpcrt[gpu]')")


__doc__ = __doc__.format(table=table())

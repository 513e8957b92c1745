"""mpcrt: secure multi-party computation on tensors, as easy as PyTorch.

    import mpcrt
    rt = mpcrt.init()               # inside a script started by `mpcrt launch`
    x = rt.share(a, src=0)          # a on party 0, None elsewhere
    y = (x * x).sum()
    print(y.reveal())
"""
from mpcrt.errors import (  # noqa: F401  (errors first: a leaf every layer imports)
    ConfigError,
    DealerError,
    EncodingError,
    MpcError,
    PeerFailure,
    PrecisionWarning,
    ProtocolError,
    ShapeError,
)
from mpcrt.runtime import Runtime, init  # noqa: F401
from mpcrt.tensor import SharedTensor, cat, stack, where  # noqa: F401  (attaches the protocol methods)

__version__ = "0.1.0"


def __getattr__(name: str):
    """`mpcrt.nn` on first use (model import needs torch, which takes a second to import); `mpcrt.optim`,
    `mpcrt.autograd` and `mpcrt.dp` (training) likewise."""
    if name in ("nn", "optim", "autograd", "dp"):
        import importlib

        return importlib.import_module(f"mpcrt.{name}")
    raise AttributeError(f"module 'mpcrt' has no attribute {name!r}")

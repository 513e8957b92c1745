"""Exception classes of mpcrt.

A leaf module: it imports nothing from mpcrt, so every layer (kernels, protocols,
the runtime, the launcher) may raise these. Each message says what happened and
what to do about it.
"""


class MpcError(Exception):
    """Base class of every error mpcrt raises on purpose."""


class EncodingError(MpcError, ValueError):
    """A plaintext cannot be encoded in fixed point (NaN, inf, or out of range)."""


class ShapeError(MpcError, ValueError):
    """Operand shapes do not fit the operation."""


class DimError(ShapeError, IndexError, TypeError):
    """A `dim` argument names no dimension of the tensor, or is no integer (torch raises
    IndexError or TypeError there)."""


class SecretValueError(MpcError, TypeError):
    """Python asked for a plaintext (if, while, bool()) where the value is secret-shared."""


class ConfigError(MpcError):
    """A cluster file, key file, environment or argument is wrong."""


class ProtocolError(MpcError):
    """A frame from a peer failed validation (session, sequence, tag, dtype, shape, length)."""

    def __init__(self, peer: str, what: str):
        self.peer = peer
        super().__init__(f"protocol error from {peer}: {what}")


class PeerFailure(MpcError):
    """A peer died, disconnected or stayed silent past the receive timeout."""

    def __init__(self, peer: str, what: str):
        self.peer = peer
        super().__init__(f"peer failure: {peer} {what}")


class DealerError(MpcError):
    """The dealer refused or failed a request for correlated randomness."""


class PrecisionWarning(UserWarning):
    """A value is representable but keeps few significant bits at this fixed-point precision
    (weights that round to a few ulps, inputs near the product bound); results may be far off."""

"""numba's `njit` with the settings every fused ring kernel uses.

The protocols' local work is a chain of elementwise int64 operations; as numpy
expressions each one is a pass over memory with its own temporary (a 1M-element
truncation-with-cube was ~40 passes). A fused loop does it in one pass. int64
arithmetic in numba wraps modulo 2^64 like numpy's, so kernels compute in the ring
directly; logical shifts are written as arithmetic shifts plus a mask, and no kernel
mixes int64 with uint64 (numba would promote the pair to float64). One caveat:
numba marks int64 add/sub as no-signed-wrap, so LLVM may rewrite the sign of a
difference, (a - b) >> 63, as the comparison a < b, which does not wrap (it did, in
a comparison kernel, for b = -2^63): take differences whose sign matters in numpy.

`cache=True` keeps the compiled code in __pycache__, so a party process pays the
compile (about a second per kernel) once per machine, not once per run.
"""
from __future__ import annotations

try:
    import numba
except ImportError as e:  # pragma: no cover - numba is a hard dependency
    raise ImportError("mpcrt needs numba for its CPU kernels: pip install 'numba>=0.60'") from e


def njit(fn):
    """Compile `fn` without the GIL, cached on disk, with wrapping int64 arithmetic."""
    return numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")(fn)


def njit_inline(fn):
    """A per-element helper of the fused kernels, inlined into its callers at the numba IR
    level (so their loops still vectorize); the same settings as njit."""
    return numba.njit(inline="always", cache=True, nogil=True, boundscheck=False, error_model="numpy")(fn)

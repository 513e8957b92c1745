"""Whether a model treats the rows of its input's dim 0 independently (a batch dimension).

Batched inference (`PrivateModel.infer`, `mpcrt infer`) cuts the input along dim 0 into
batches. That is right only when each output row depends on its own input row alone: not
for a sequence-first model (nn.TransformerEncoder without batch_first, whose dim 0 is the
sequence), nor for one that normalizes or pools over dim 0. Cut there, such a model gives
wrong numbers silently, and rows of the wrong count.

`rows_independent(graph, arrays)` decides it on the model owner's side, in plaintext: the
graph runs (float64, torch) on two random rows together and on each alone, and the rows
must agree (up to rounding) and keep their count. The answer rides in the public graph's
meta (`ROWS_KEY`: 1 or 0; absent where the check could not run), so every party batches
alike; `batch_rows()` reads it. It depends on the architecture, already public, not on the
data.
"""
from __future__ import annotations

import numpy as np

from mpcrt.nn.ir import Graph
from mpcrt.nn.layers import TorchOps, run_graph

ROWS_KEY = "rows_independent"


def _flat(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def rows_independent(graph: Graph, arrays: list) -> bool | None:
    """True when two random input rows give, together, the rows each gives alone; False when
    they do not; None when the graph cannot run on a 2-row input at all (nothing learned)."""
    import torch

    gen = torch.Generator().manual_seed(0x5EED)
    x = torch.rand((2, *[int(s) for s in graph.input_shape[1:]]), generator=gen, dtype=torch.float64)
    params = [torch.from_numpy(np.asarray(a, np.float64)) for a in arrays]
    try:
        with torch.no_grad():
            both = _flat(run_graph(graph, params, x.clone(), TorchOps()))
            alone = [_flat(run_graph(graph, params, x[i:i + 1].clone(), TorchOps())) for i in range(2)]
    except Exception:  # noqa: BLE001 - e.g. a view that fixes the batch size: the run-time checks report it
        return None
    for k, b in enumerate(both):
        if not isinstance(b, torch.Tensor) or b.ndim == 0 or b.shape[0] != 2:
            return False
        for i in range(2):
            a = alone[i][k] if k < len(alone[i]) else None
            if not isinstance(a, torch.Tensor) or tuple(a.shape) != (1, *b.shape[1:]):
                return False
            scale = max(1.0, float(b[i].abs().max())) if b[i].numel() else 1.0
            if b[i].numel() and not bool(torch.allclose(b[i:i + 1], a, rtol=0.0, atol=1e-9 * scale, equal_nan=True)):
                return False
    return True


def mark(graph: Graph, arrays: list) -> None:
    """Record rows_independent(graph, arrays) in graph.meta (the model owner, before sending)."""
    r = rows_independent(graph, arrays)
    if r is not None:
        graph.meta[ROWS_KEY] = int(r)


def batch_rows(graph: Graph, batch_size: int, total: int) -> int:
    """How many rows of dim 0 one call may take: batch_size, or all `total` of them when the
    graph mixes rows (meta says 0) or its input shape is fixed (dim 0 a recurrent layer's time)."""
    whole = graph.meta.get(ROWS_KEY, 1) == 0 or graph.meta.get("input_fixed")
    return max(1, total) if whole else batch_size

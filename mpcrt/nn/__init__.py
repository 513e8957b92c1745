"""mpcrt.nn: private inference of PyTorch models.

The model owner's party traces its torch.nn.Module with torch.fx; the architecture
(a public graph of layers, serialised with msgpack) goes to every party and the
weights are secret-shared. Nobody else needs the model's code.

    import mpcrt, mpcrt.nn
    rt = mpcrt.init()
    model = mpcrt.nn.from_torch(net if rt.rank == 0 else None,
                                torch.zeros(1, 1, 8, 8) if rt.rank == 0 else None, src=0)
    x = rt.share(images if rt.rank == 1 else None, src=1)
    probs = model(x).softmax(dim=1).reveal(to=1)      # only party 1 learns the result

Supported: see SUPPORTED (Linear, Conv1d/2d, BatchNorm folded into the preceding
Conv/Linear or as a per-channel affine layer, LayerNorm, GroupNorm, InstanceNorm, PReLU, Mish, ReLU, LeakyReLU, ReLU6,
Hardtanh, Hardswish, Hardsigmoid, ELU, SELU, CELU, Softplus, GELU, SiLU, Sigmoid, Tanh, Softmax, LogSoftmax,
Max/Avg/AdaptiveAvgPool 1d and 2d (modules and F. functions; F.conv1d too), Flatten, Dropout and Identity, residual additions,
reshape/view/flatten/cat/stack/chunk/split/permute/t, bmm, F.pad, Upsample and
F.interpolate (nearest, bilinear), comparisons and torch.where, max/min/amax/argmax,
var/std/norm, F.normalize, arithmetic with constants, clamp, abs, integer powers,
exp/log/sqrt/rsqrt/reciprocal, sizes and arithmetic on them, attention: F.scaled_dot_product_attention
(causal or with a float mask), nn.MultiheadAttention (its output), TransformerEncoderLayer and
TransformerEncoder without masks; not einsum, not Embedding).
Anything else raises UnsupportedLayerError naming the op and the fx node.

Model files (`save`/`load`): one .npz holding the msgpack graph and the folded
float64 weights, read with numpy's allow_pickle=False: loading runs no code.
"""
from mpcrt.nn.graph import (  # noqa: F401
    FORMAT,
    IR_OPS,
    MAX_GRAPH_BYTES,
    SUPPORTED,
    VERSION,
    Graph,
    ModelFileError,
    ModelImportError,
    UnsupportedLayerError,
    trace,
)
from mpcrt.nn.layers import SharedOps, TorchOps, run_graph  # noqa: F401
from mpcrt.nn.model import (  # noqa: F401
    ARCHIVE_GRAPH_KEY,
    KIND_HELP,
    PrivateModel,
    distribute,
    from_graph,
    from_torch,
    load,
    load_model,
    save,
    save_graph,
    sniff,
)

__all__ = [
    "from_torch", "from_graph", "load_model", "distribute", "PrivateModel", "Graph", "trace", "save", "save_graph",
    "load", "run_graph", "ModelImportError", "UnsupportedLayerError", "ModelFileError", "SUPPORTED",
]

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

Supported: see SUPPORTED (generated from the op registry, mpcrt.nn.ops: layers with
weights, BatchNorm folded into the preceding Conv/Linear, the elementwise activations,
norms, pools, attention blocks, shape and arithmetic ops); `python -m mpcrt.nn`
prints the list. Anything else raises UnsupportedLayerError naming the op and the fx node.

Modules, by job: ops (the op registry), ir (Graph, msgpack form, validation), tracer
(torch.fx -> IR; modules, transformer, fx_table, fx_fixes, fx_args are its parts),
layers (the executor, on SharedTensors and on torch tensors), archive (model files),
model (PrivateModel and the import protocol between parties).

Training: `from_torch(net, example, src=0, train=True)` gives a TrainableModel (mpcrt.nn.train_model)
whose calls record a tape (mpcrt.autograd); losses are in mpcrt.nn.functional.

Model files (`save`/`load`): one .npz holding the msgpack graph and the folded
float64 weights, read with numpy's allow_pickle=False: loading runs no code.
"""
from mpcrt.nn.archive import ARCHIVE_GRAPH_KEY, KIND_HELP, load, save, save_graph, sniff  # noqa: F401
from mpcrt.nn.ir import (  # noqa: F401
    FORMAT,
    MAX_GRAPH_BYTES,
    VERSION,
    Graph,
    ModelFileError,
    ModelImportError,
    UnsupportedLayerError,
)
from mpcrt.nn.layers import SharedOps, TorchOps, run_graph  # noqa: F401
from mpcrt.nn.model import PrivateModel, distribute, from_graph, load_model  # noqa: F401
from mpcrt.nn import functional  # noqa: F401  (training: losses and layers with a backward)
from mpcrt.nn.train_model import TrainableModel, from_torch  # noqa: F401  (from_torch(..., train=True) trains)
from mpcrt.nn.ops import IR_OPS, supported  # noqa: F401
from mpcrt.nn.tracer import trace  # noqa: F401

__all__ = [
    "from_torch", "from_graph", "load_model", "distribute", "PrivateModel", "Graph", "trace", "save", "save_graph",
    "load", "run_graph", "ModelImportError", "UnsupportedLayerError", "ModelFileError", "SUPPORTED",
    "TrainableModel", "functional",
]


def __getattr__(name: str):
    """SUPPORTED, computed on first use (the activations' nn module names need torch)."""
    if name == "SUPPORTED":
        return supported()
    raise AttributeError(f"module 'mpcrt.nn' has no attribute {name!r}")

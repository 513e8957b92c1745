"""nn.Embedding on the model's input: token ids one-hot encoded by the data owner, then a Linear.

A lookup by a secret index has no cheap MPC form, but the ids belong to the data owner,
who knows them in the clear: it shares one_hot(ids) (N, ..., V) instead of the ids, and
the embedding is one_hot @ W, a Linear with weight W^T (masked once, like every Linear
weight; the output is W's rows to within the product's 1-ulp truncation). Nothing about
the ids leaves the data owner but their shared one-hot, and nothing about W leaves the
model owner. The graph records V (`meta["input_one_hot"]`) and an input shape ending in V;
`PrivateModel.encode_input` (and `infer`, `mpcrt infer`) encode on the data owner.

What the others learn: that the ids fit (whole numbers in [0, V)), not why not; the model owner
chooses V, so over many sessions that bit can bound the largest id a data owner sends.

Supported: an nn.Embedding whose input is the model's input (through .long()/.int()/.to()),
the only use of that input; padding_idx as torch (its row is W's row); not max_norm
(it rescales rows on lookup). Cost: V times the shared input's words (ids x V), so batches
of long sequences over large vocabularies are shared a batch at a time (PrivateModel.shared_batches).
"""
from __future__ import annotations

import numpy as np

from mpcrt.errors import ShapeError
from mpcrt.nn.constants import public_metadata
from mpcrt.nn.fx_args import as_f64, describe, size_dim
from mpcrt.nn.ir import MAX_VOCAB, UnsupportedLayerError

MAX_ONE_HOT = 1 << 26  # encoded numbers per share (512 MiB of float64; a hostile V cannot make it more)
_ID_CASTS = ("long", "int", "to", "type_as")


def reads_ids(gm, modules: dict) -> bool:
    """Whether an nn.Embedding looks up values computed from the model's input (not only from its sizes):
    the example is then token ids, kept as integers."""
    import torch.nn as tnn

    def from_input(n, seen: set) -> bool:
        if n in seen or size_dim(n)[0] is not None or public_metadata(n):
            return False  # sizes, device and dtype carry no values
        seen.add(n)
        return n.op == "placeholder" or any(from_input(i, seen) for i in n.all_input_nodes)

    return any(n.op == "call_module" and isinstance(modules.get(n.target), tnn.Embedding) and n.args
               and from_input(n.args[0], set()) for n in gm.graph.nodes)


def token_input(gm, modules: dict, folded: set) -> tuple[int | None, dict]:
    """(V, {cast node: the input node}) when the model's input feeds one nn.Embedding (its only use
    but size queries, through integer casts, which the import reads as the input itself); (None, {})
    when no Embedding reads data (those in `folded`, at constant positions, are parameters);
    UnsupportedLayerError for any other Embedding use."""
    import torch.nn as tnn

    emb = [n for n in gm.graph.nodes if n.op == "call_module" and n not in folded and isinstance(
        modules.get(n.target), (tnn.Embedding, tnn.EmbeddingBag))]
    if not emb:
        return None, {}
    n = emb[0]
    mod = modules[n.target]
    src, casts = (n.args[0] if n.args else None), []
    while getattr(src, "op", None) == "call_method" and src.target in _ID_CASTS and len(src.users) == 1:
        casts.append(src)
        src = src.args[0]
    on_input = getattr(src, "op", None) == "placeholder"
    others = [u for u in (src.users if on_input else ()) if u is not (casts[-1] if casts else n) and u not in folded
              and size_dim(u, src)[0] is None and not public_metadata(u, src)]
    if len(emb) == 1 and isinstance(mod, tnn.Embedding) and on_input and not others and len(n.args) == 1 \
            and not n.kwargs:
        pass
    elif others:
        raise UnsupportedLayerError(
            f"the token ids that {type(mod).__name__} (module '{n.target}') looks up are also read at fx node "
            f"'{others[0].name}' ({describe(others[0])}): only their sizes, x.device and x.dtype may be read "
            "besides the embedding (the ids are shared one-hot, not as numbers)")
    else:
        where = n if len(emb) == 1 else emb[1]
        mod = modules[where.target]
        raise UnsupportedLayerError(
            f"{type(mod).__name__} (module '{where.target}') at fx node '{where.name}': a lookup "
            "by a secret token index is supported only as the first layer, on the model's input (the data owner "
            "then shares the ids one-hot), or at positions that do not depend on the input (they are folded); "
            f"otherwise share one-hot inputs and replace it by nn.Linear({mod.num_embeddings}, {mod.embedding_dim}, "
            "bias=False) with weight = embedding.weight.T")
    if mod.max_norm is not None:
        raise UnsupportedLayerError(f"nn.Embedding with max_norm={mod.max_norm} (module '{n.target}'): rows "
                                    "renormalized on lookup are not supported; renormalize the weight before import")
    if not 2 <= mod.num_embeddings <= MAX_VOCAB:
        raise UnsupportedLayerError(f"nn.Embedding with {mod.num_embeddings} rows (module '{n.target}'): 2 to "
                                    f"{MAX_VOCAB} are supported")
    return int(mod.num_embeddings), {c: src for c in casts}


def id_sizes(tr, n) -> dict:
    """The IR of a size query on the ids (fx node n): the one-hot input's sizes but its last (V)."""
    x = tr.ref_of[n.args[0]]
    d = size_dim(n, n.args[0])[1]
    if d is not None:
        return tr.emit("size", {"input": x, "dim": d - 1 if d < 0 else d}, n.name, "size of the token ids")
    whole = tr.emit("size", {"input": x, "dim": None}, n.name + ":one_hot", "size of the token ids")
    return tr.emit("getitem", {"input": whole, "index": {"slice": [None, -1, None]}}, n.name, "size of the token ids")


def import_embedding(tr, n, mod, x: dict, t: str, what: str) -> dict:
    """The embedding of the (one-hot) model input: a Linear with weight W^T."""
    return tr.emit("linear", {"input": x, "weight": tr.param(as_f64(mod.weight).T, t + ".weight^T"), "bias": None},
                   n.name, what)


def check_ids(ids, vocab: int) -> np.ndarray:
    """The ids as an array, checked to be whole numbers in [0, vocab) (ShapeError, saying which rule fails)."""
    a = np.asarray(ids.detach().cpu().numpy() if hasattr(ids, "detach") else ids)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ShapeError(f"token ids must be integers, got dtype {a.dtype}")
    if a.size and np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a) & (a == np.round(a))):
        raise ShapeError("token ids must be whole numbers (the model's input is an nn.Embedding's index)")
    if a.size and (a.min() < 0 or a.max() >= vocab):
        raise ShapeError(f"token ids must lie in [0, {vocab}) (the embedding's rows), got {a.min():g}..{a.max():g}")
    return a


def one_hot(ids, vocab: int) -> np.ndarray:
    """float64 one-hot of integer token ids (any shape) over `vocab` classes: shape ids.shape + (vocab,).
    ShapeError for ids that are not integers in [0, vocab), or an encoding over MAX_ONE_HOT elements."""
    a = check_ids(ids, vocab)
    if a.size * vocab > MAX_ONE_HOT:
        raise ShapeError(f"{a.size} ids one-hot over {vocab} tokens is {a.size * vocab} numbers (limit "
                         f"{MAX_ONE_HOT}); share fewer rows at a time (infer's batch_size)")
    out = np.zeros(a.shape + (vocab,), np.float64)
    np.put_along_axis(out, a.astype(np.int64)[..., None], 1.0, axis=-1)
    return out

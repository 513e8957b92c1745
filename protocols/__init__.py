"""MPC protocols as functions of (runtime, share arrays).

A protocol sees the runtime only through: `rank`, `world_size`, `peers`, `precision`,
`open(arrays, tag)` (one round, all arrays together), `open_mixed`, `open_to`,
`exchange`, `dealer.request(kind, **params)`, `scope(name)` and `backend` (the ring ops,
GEMMs, fused kernels and PRG of the device chosen at init: kernels.backend). It never touches a socket, and
never branches on a secret or opened value (so a shape-only dry run makes the same
dealer requests as the real run).

Shares are int64 numpy arrays: additive shares mod 2^64, or XOR-shared 64-bit words.

One module per protocol, both halves together: what the parties do, the dealer's kind of
correlated randomness for it (protocols.dealt.Kind) and a frozen request spec both take.
SharedTensor's core is protocols.shared; mpcrt.tensor attaches the protocol methods.
Each module's docstring opens with what it computes and its Rounds, Bytes per element per
peer, Dealer words per element, Error and Reference.
"""

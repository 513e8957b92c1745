"""MPC protocols as functions of (runtime, share arrays).

A protocol sees the runtime only through: `rank`, `world_size`, `precision`,
`open(arrays, tag)` (one round, all arrays together), `open_to`, `exchange`,
`dealer.request(kind, **params)` and `scope(name)`. It never touches a socket, and
never branches on a secret or opened value (so a shape-only dry run makes the same
dealer requests as the real run).

Shares are int64 numpy arrays: additive shares mod 2^64, or XOR-shared 64-bit words.
"""

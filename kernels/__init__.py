"""Array back ends: ring arithmetic over Z_2^64 and the PRG that expands shares.

`backend.select(device, threads, native_aes)` builds the one object a process uses for
all of it (kernels.backend: the interface). Knows nothing of parties, sockets or
protocols, and reads no environment: its settings come in as arguments.
"""

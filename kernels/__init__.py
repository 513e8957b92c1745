"""Array back ends: ring arithmetic over Z_2^64 and the PRG that expands shares.

Knows nothing of parties, sockets or protocols.
"""

"""One transformer encoder layer under MPC: party 0 holds nn.TransformerEncoderLayer(d, heads,
ff, gelu), party 1 the input (B, L, d); prints time, rounds, MB sent and max |error|.

    python3 -m mpcrt launch -n 2 --insecure-plaintext [--device cuda] \
        benchmarks/encoder_layer.py D HEADS FF L B          # BERT-base: 768 12 3072 128 8

(The check regenerates the input on party 0 from the same seed; in real use only party 1
has it.)"""
import sys
import time

import numpy as np
import torch

import mpcrt
import mpcrt.nn
from mpcrt.launch.model_zoo import encoder_layer

rt = mpcrt.init()
d, h, ff, L, B = (int(v) for v in sys.argv[1:6])
torch.manual_seed(0)
x = torch.randn(B, L, d)  # the data owner's (party 0 regenerates it only to check the result)
layer = encoder_layer(d, h, ff) if rt.rank == 0 else None
m = mpcrt.nn.from_torch(layer, x[:1] if rt.rank == 0 else None, src=0)
xs = rt.share(x.numpy() if rt.rank == 1 else None, src=1)
m(xs)  # warm-up
s0 = rt.stats()
t = time.perf_counter()
y = m(xs)
t = time.perf_counter() - t
s1 = rt.stats()
out = y.reveal()
if rt.rank == 0:
    with torch.no_grad():
        ref = layer(x).numpy()
    print(f"encoder d={d} heads={h} ff={ff} L={L} B={B}: {t:.2f} s, {s1['rounds'] - s0['rounds']} rounds, "
          f"{(s1['bytes_sent'] - s0['bytes_sent']) / 1e6:.0f} MB sent, max err {np.abs(out - ref).max():.1e}",
          flush=True)

"""Three parties compute on secret-shared tensors; run with
    python3 -m mpcrt launch -n 3 examples/quickstart.py
"""
import numpy as np

import mpcrt

rt = mpcrt.init()
rng = np.random.default_rng(7)
a = rng.uniform(-2, 2, size=(3, 4))  # party 0's private data
b = rng.uniform(-2, 2, size=(3, 4))  # party 1's private data

x = rt.share(a if rt.rank == 0 else None, src=0)
y = rt.share(b if rt.rank == 1 else None, src=1)
z = x * y
w = x @ y.T
s = (x + y - 2.5 * x).sum(dim=0)

zw = w.reveal()  # every party learns x @ y.T
zs = s.reveal(to=2)  # only party 2 learns this
if rt.rank == 0:
    print("x @ y.T =\n", np.round(zw, 4))
    print("max |error| of x @ y.T vs float64:", float(np.abs(zw - a @ b.T).max()))
if rt.rank == 2:
    print("sum(x + y - 2.5x, dim=0) =", np.round(zs, 4))
    print("max |error| vs float64:", float(np.abs(zs - (a + b - 2.5 * a).sum(0)).max()))
st = rt.stats()
print(f"rounds {st['rounds']}, bytes sent {st['bytes_sent']}, received {st['bytes_received']}")

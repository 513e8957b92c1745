"""PNG plots of `mpcrt bench` results (needs matplotlib: `pip install 'mpcrt[plots]'`).

    mpcrt bench ... --plots                                   # plots of that run, next to its JSON
    python -m mpcrt.launch.plots a.json b.json --out DIR      # plots of several runs together
                                                              # (e.g. a LAN run and a WAN run)

Three figures, each only where the data has something to show:

- `*-time_vs_size.png`: per op with several sizes, time against size (log-log), one
  line per (parties, network, channels); solid online, dashed end to end; bars min..max.
- `*-time_vs_parties.png`: per (op, size) with several party counts, time against N.
- `*-network.png`: per (op, size, N), the online time on each network (log scale),
  with the network lower bound (rounds x one-way + bytes/rate) as a black tick.
"""
from __future__ import annotations

import json
import math
import os
import sys


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, k: int, w: float = 4.2, h: float = 3.3):
    ncols = min(3, k)
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[k:]:
        ax.set_visible(False)
    return fig, flat[:k]


def _label_size(op_rows) -> str:
    return "n (n x n)" if op_rows[0].get("unit") == "dim" else "elements"


def _yerr(rs, k):
    return [[r[f"{k}_s"] - r[f"{k}_min_s"] for r in rs], [r[f"{k}_max_s"] - r[f"{k}_s"] for r in rs]]


def _series_name(r, keys) -> str:
    parts = []
    for k in keys:
        if k == "parties":
            parts.append(f"N={r['parties']}")
        elif k == "network":
            parts.append(r["network"])
        elif k == "channels":
            parts.append(r["channels"])
    return " ".join(parts)


def _varying(rows, keys) -> list[str]:
    return [k for k in keys if len({r[k] for r in rows}) > 1] or keys[:1]


def _save(plt, fig, path: str, title: str | None = None) -> bool:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _each_series(ax, rows, by: tuple[str, ...], x_key: str, keys):
    """Plot each series of `rows` (one per value of the `by` fields) against `x_key`: online
    (solid, circles) and e2e (dashed, squares), medians with min..max bars; yields
    (x, the series' rows, its colour, its name) for anything more to draw."""
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault(tuple(r[k] for k in by), []).append(r)
    for i, (_, rs) in enumerate(sorted(series.items())):
        rs = sorted(rs, key=lambda r: r[x_key])
        x = [r[x_key] for r in rs]
        c = f"C{i % 10}"
        name = _series_name(rs[0], keys)
        ax.errorbar(x, [r["online_s"] for r in rs], yerr=_yerr(rs, "online"), color=c, marker="o", ms=3,
                    capsize=2, label=f"{name} online")
        ax.errorbar(x, [r["e2e_s"] for r in rs], yerr=_yerr(rs, "e2e"), color=c, marker="s", ms=3, ls="--",
                    capsize=2, label=f"{name} e2e")
        yield x, rs, c, name


def plot_time_vs_size(plt, rows, path) -> bool:
    ops = [op for op in dict.fromkeys(r["op"] for r in rows) if len({r["size"] for r in rows if r["op"] == op}) > 1]
    if not ops:
        return False
    fig, axes = _grid(plt, len(ops))
    keys = _varying(rows, ["parties", "network", "channels"])
    for ax, op in zip(axes, ops):
        mine = [r for r in rows if r["op"] == op]
        list(_each_series(ax, mine, ("parties", "network", "channels"), "size", keys))  # draws each series
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(op)
        ax.set_xlabel(_label_size(mine))
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(plt, fig, path, "mpcrt: time vs size (median, bars min..max)")


def plot_time_vs_parties(plt, rows, path) -> bool:
    groups = [g for g in dict.fromkeys((r["op"], r["size"]) for r in rows)
              if len({r["parties"] for r in rows if (r["op"], r["size"]) == g}) > 1]
    if not groups:
        return False
    fig, axes = _grid(plt, len(groups))
    keys = _varying(rows, ["network", "channels"])
    for ax, (op, size) in zip(axes, groups):
        mine = [r for r in rows if (r["op"], r["size"]) == (op, size)]
        for x, rs, c, name in _each_series(ax, mine, ("network", "channels"), "parties", keys):
            if any("bound_online_s" in r for r in rs):
                ax.plot(x, [r.get("bound_online_s", float("nan")) for r in rs], color=c, ls=":", label=f"{name} bound")
        ax.set_title(f"{op} {size}" + ("x" + str(size) if mine[0].get("unit") == "dim" else ""))
        ax.set_xlabel("parties")
        ax.set_ylabel("seconds")
        ax.set_xticks(sorted({r["parties"] for r in mine}))
        ys = [r[k] for r in mine for k in ("online_s", "e2e_s") if r[k] > 0]
        if ys and max(ys) / min(ys) > 20:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _save(plt, fig, path, "mpcrt: time vs number of parties (median, bars min..max)")


def plot_networks(plt, rows, path) -> bool:
    nets = list(dict.fromkeys(r["network"] for r in rows))
    if len(nets) < 2 and not any("bound_online_s" in r for r in rows):
        return False
    chans = list(dict.fromkeys(r["channels"] for r in rows))
    ch = "curve" if "curve" in chans else chans[0]
    rows = [r for r in rows if r["channels"] == ch]
    groups = list(dict.fromkeys((r["op"], r["size"], r["parties"]) for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(nets)) / 2 + 2), 4.2))
    width = 0.8 / len(nets)
    seen: set[str] = set()

    def label(name):
        if name in seen:
            return None
        seen.add(name)
        return name

    for j, net in enumerate(nets):
        for i, g in enumerate(groups):
            r = next((r for r in rows if (r["op"], r["size"], r["parties"]) == g and r["network"] == net), None)
            if r is None:
                continue
            x = i + (j - (len(nets) - 1) / 2) * width
            ax.bar(x, r["online_s"], width * 0.9, color=f"C{j % 10}", label=label(net))
            if "bound_online_s" in r and r["bound_online_s"] > 0:
                ax.plot([x - width * 0.45, x + width * 0.45], [r["bound_online_s"]] * 2, color="black", lw=2,
                        label=label("network bound"))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{op}\n{size}\nN={n}" for op, size, n in groups], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("online seconds (median)")
    ax.set_title(f"mpcrt online time by network ({ch} channels)\nblack: bound = rounds x one-way + bytes/rate",
                 fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def make_plots(rows: list[dict], out_dir: str, stem: str = "bench") -> list[str]:
    """Write the plots that `rows` (the "rows" of bench JSON files) support; return their paths."""
    if not rows:
        return []
    plt = _plt()
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for name, fn in (("time_vs_size", plot_time_vs_size), ("time_vs_parties", plot_time_vs_parties),
                     ("network", plot_networks)):
        path = os.path.join(out_dir, f"{stem}-{name}.png")
        if fn(plt, rows, path):
            made.append(path)
    return made


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mpcrt.launch.plots", description="plots of mpcrt bench JSON files")
    ap.add_argument("json", nargs="+", help="bench-*.json files written by `mpcrt bench`")
    ap.add_argument("--out", default=".", help="output folder")
    ap.add_argument("--stem", default="bench", help="file name prefix")
    a = ap.parse_args(argv)
    if not available():
        print("matplotlib is not installed (pip install 'mpcrt[plots]')", file=sys.stderr)
        return 2
    rows = []
    for p in a.json:
        with open(p) as fh:
            rows += json.load(fh)["rows"]
    made = make_plots(rows, a.out, a.stem)
    for p in made:
        print(f"wrote {p}")
    if not made:
        print("nothing to plot (one size, one N and one network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`mpcrt bench`'s report: table rows from the parties' figures, the network lower bound,
the terminal tables, the CrypTen comparison and the Markdown version of a run."""
from __future__ import annotations

import re
import statistics
import sys

from mpcrt.launch.bench_args import Network
from mpcrt.launch.workloads import WORKLOADS


def why(err: str) -> str:
    """The first line of a run's error and the first line that names an exception."""
    lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
    if not lines:
        return "?"
    exc = next((ln for ln in lines[1:] if re.search(r"(Error|Failure|Exception|Traceback)\b", ln)), None)
    return lines[0] + (f" | {exc}" if exc else "")




def format_validation(v: dict) -> str:
    s = f"measured RTT {v['rtt_ms']:.2f} ms (configured {v['rtt_expected_ms']:g} ms"
    s += f", {100 * v['rtt_error']:+.1f}%)" if v.get("rtt_error") is not None else ")"
    if v.get("measured_rate_mbit"):
        s += (f", rate {v['measured_rate_mbit']:.1f} Mbit/s (configured {v['rate_mbit']:g}, "
              f"{100 * v['rate_error']:+.1f}%)")
    else:
        s += ", rate unshaped"
    s += "" if v["ok"] else "  WARNING: off by more than 10%: results are not at the configured network"
    return s


# ----------------------------------------------------------------- results
def lower_bound(rounds: int, link_bytes: float, delay_ms: float | None, rate_mbit: float | None) -> dict:
    """Network lower bound of one op: rounds x one-way delay + link bytes / rate (seconds)."""
    lat = rounds * (delay_ms or 0.0) / 1e3
    xfer = link_bytes * 8 / (rate_mbit * 1e6) if rate_mbit else 0.0
    return {"latency_s": lat, "transfer_s": xfer, "bound_s": lat + xfer}


def _spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


def summarize(res: dict, net: Network, channels: str) -> list[dict]:
    rows = []
    for r in res.get("results", []):
        pp = r["per_party"]
        sent = max(p["bytes_sent"] for p in pp)
        recv = max(p["bytes_received"] for p in pp)
        link = max(max(p["bytes_sent"], p["bytes_received"]) for p in pp)
        link_e2e = max(max(p["bytes_sent"] + p["dealer_bytes_sent"], p["bytes_received"] + p["dealer_bytes_received"])
                       for p in pp)
        e2e, on, off = _spread(r["e2e"]), _spread(r["online"]), _spread(r["offline"])
        w = WORKLOADS[r["op"]]
        row = {
            "op": r["op"], "size": r["size"], "unit": w.unit, "parties": res["parties"], "network": net.name,
            "channels": channels,
            "e2e_s": e2e["median"], "e2e_min_s": e2e["min"], "e2e_max_s": e2e["max"], "e2e_all_s": e2e["all"],
            "online_s": on["median"], "online_min_s": on["min"], "online_max_s": on["max"], "online_all_s": on["all"],
            "offline_s": off["median"], "offline_min_s": off["min"], "offline_max_s": off["max"],
            "offline_all_s": off["all"],
            "rounds": r["rounds"],
            "bytes_sent_per_party": sent, "bytes_received_per_party": recv, "link_bytes_per_party": link,
            "mb_sent_per_party": sent / 1e6,
            "dealer_bytes": sum(p["dealer_bytes_received"] for p in pp),  # to all parties (to whichever is corrected)
            "online_dealer_bytes": max(p["online_dealer_bytes_received"] for p in pp),
            "max_abs_err": r["max_abs_err"],
            "stats_varied": any(p.get("stats_varied") for p in pp),
        }
        if net.simulated:
            b = lower_bound(r["rounds"], link, net.delay_ms, net.rate_mbit)
            be = lower_bound(r["rounds"], link_e2e, net.delay_ms, net.rate_mbit)
            row.update(delay_ms=net.delay_ms, rate_mbit=net.rate_mbit, bound_latency_s=b["latency_s"],
                       bound_transfer_s=b["transfer_s"], bound_online_s=b["bound_s"], bound_e2e_s=be["bound_s"],
                       online_over_bound=row["online_s"] / b["bound_s"] if b["bound_s"] else None,
                       e2e_over_bound=row["e2e_s"] / be["bound_s"] if be["bound_s"] else None)
        rows.append(row)
    return rows


def _pm(r: dict, k: str) -> float:
    return (r[f"{k}_max_s"] - r[f"{k}_min_s"]) / 2


def print_lines(hdr: str, lines, out=None) -> None:
    """A terminal table: the header, a rule as long as it, then the lines."""
    out = out or sys.stdout
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for line in lines:
        print(line, file=out)


def print_table(rows: list[dict], out=None) -> None:
    out = out or sys.stdout
    hdr = (f"{'op':<11}{'size':>9}{'N':>3} {'network':<9}{'chan':<6}{'e2e s':>9}{'±':>8}{'online s':>10}{'±':>8}"
           f"{'offline s':>10}{'rounds':>7}{'MB/party':>10}{'MB dlr':>9}{'max err':>10}")
    print_lines(hdr, (f"{r['op']:<11}{_size(r):>9}{r['parties']:>3} {r['network']:<9}{r['channels'][:5]:<6}"
                      f"{r['e2e_s']:>9.4f}{_pm(r, 'e2e'):>8.4f}{r['online_s']:>10.4f}{_pm(r, 'online'):>8.4f}"
                      f"{r['offline_s']:>10.4f}{r['rounds']:>7}{r['mb_sent_per_party']:>10.2f}"
                      f"{r['dealer_bytes'] / 1e6:>9.2f}{r['max_abs_err']:>10.2e}" for r in rows), out)
    print("e2e: dealer on line; online: dealer material fetched ahead (offline = that fetch); median of the "
          "repeats, ± half their range; MB/party: most any party sent; MB dlr: dealer to the parties, "
          "all together (e2e)", file=out)


def print_bounds(rows: list[dict], out=None) -> None:
    rows = [r for r in rows if "bound_online_s" in r]
    if not rows:
        return
    out = out or sys.stdout
    print("\nDistance to the network limit: bound = rounds x one-way + bytes/party x 8 / rate", file=out)
    hdr = (f"{'op':<11}{'size':>9}{'N':>3} {'network':<9}{'rounds':>7}{'MB link':>9}{'rnd x d':>9}{'B/rate':>9}"
           f"{'bound s':>9}{'online s':>10}{'x bound':>8}{'e2e bnd':>9}{'e2e s':>9}{'x bound':>8}")
    print_lines(hdr, (f"{r['op']:<11}{_size(r):>9}{r['parties']:>3} {r['network']:<9}{r['rounds']:>7}"
                      f"{r['link_bytes_per_party'] / 1e6:>9.2f}{r['bound_latency_s']:>9.4f}"
                      f"{r['bound_transfer_s']:>9.4f}{r['bound_online_s']:>9.4f}{r['online_s']:>10.4f}"
                      f"{_ratio(r['online_over_bound']):>8}{r['bound_e2e_s']:>9.4f}{r['e2e_s']:>9.4f}"
                      f"{_ratio(r['e2e_over_bound']):>8}" for r in rows), out)
    print("MB link: the busiest party's larger direction (sent or received); the e2e bound adds the dealer's "
          "bytes on party 0's link", file=out)


def pct(x) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def _size(r: dict) -> str:
    return f"{r['size']}^2" if r.get("unit") == "dim" else str(r["size"])


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def crypten_key(op: str, size: int) -> str | None:
    w = WORKLOADS[op]
    c = w.crypten_name(size)
    if c is None:
        return None
    return c if w.unit == "dim" else f"{c}@{size}"


def compare_crypten(rows: list[dict], rep: dict) -> list[dict]:
    """One line per loopback (op, size, N) with a CrypTen result: mpcrt e2e / CrypTen time, per channel kind."""
    out = {}
    for r in rows:
        if r["network"] != "loopback":
            continue
        key = crypten_key(r["op"], r["size"])
        c = rep.get("results", {}).get(str(r["parties"]), {}).get(key) if key else None
        if not c or c.get("error") or c.get("time_s") is None:
            continue
        k = (r["op"], r["size"], r["parties"])
        o = out.setdefault(k, {"op": r["op"], "size": r["size"], "unit": r["unit"], "parties": r["parties"],
                               "crypten_s": c["time_s"], "crypten_rounds": c["rounds"],
                               "crypten_bytes_per_party": c["bytes_per_party"],
                               "crypten_max_abs_err": c["max_abs_err"]})
        ch = r["channels"]
        o[f"mpcrt_{ch}_e2e_s"] = r["e2e_s"]
        o[f"mpcrt_{ch}_online_s"] = r["online_s"]
        o[f"ratio_{ch}"] = r["e2e_s"] / c["time_s"]
        o["mpcrt_rounds"] = r["rounds"]
        o["mpcrt_bytes_sent_plus_received"] = r["bytes_sent_per_party"] + r["bytes_received_per_party"]
        o["mpcrt_max_abs_err"] = r["max_abs_err"]
    return list(out.values())


def print_crypten(cmp: list[dict], rep: dict, out=None) -> None:
    out = out or sys.stdout
    if not rep.get("available"):
        print(f"\nCrypTen side by side: not run: {rep.get('reason') or 'no result'}", file=out)
        for e in rep.get("errors", []):
            print(f"  {e}", file=out)
        return
    print(f"\nmpcrt vs CrypTen {rep.get('version')} (TTP provider, gloo on loopback, 1 thread per process); "
          "times: median, mpcrt end to end (dealer on line, as CrypTen's TTP)", file=out)
    hdr = (f"{'op':<11}{'size':>9}{'N':>3}{'CrypTen s':>11}{'mpcrt plain':>12}{'ratio':>7}{'mpcrt curve':>12}"
           f"{'ratio':>7}{'rounds C/m':>12}{'MB C/m (sent+recv)':>21}{'err C/m':>20}")

    def col(o, ch):
        s = o.get(f"mpcrt_{ch}_e2e_s")
        return (f"{s:>12.4f}{o[f'ratio_{ch}']:>7.2f}") if s is not None else f"{'-':>12}{'-':>7}"

    print_lines(hdr, (f"{o['op']:<11}{_size(o):>9}{o['parties']:>3}{o['crypten_s']:>11.4f}{col(o, 'plaintext')}"
                      f"{col(o, 'curve')}{o['crypten_rounds']:>6}/{o['mpcrt_rounds']:<5}"
                      f"{o['crypten_bytes_per_party'] / 1e6:>10.1f}/{o['mpcrt_bytes_sent_plus_received'] / 1e6:<10.1f}"
                      f"{o['crypten_max_abs_err']:>10.1e}/{o['mpcrt_max_abs_err']:<9.1e}" for o in cmp), out)
    print("ratio = mpcrt / CrypTen (< 1: mpcrt faster). CrypTen's channels are plaintext: compare the plain column; "
          "curve = mpcrt with CurveZMQ encryption", file=out)
    for e in rep.get("errors", []):
        print(f"  CrypTen error: {e}", file=out)


# ----------------------------------------------------------------- markdown
def _fmt_t(r: dict, k: str) -> str:
    return f"{r[f'{k}_s']:.4g} ({r[f'{k}_min_s']:.3g}-{r[f'{k}_max_s']:.3g})"


def to_markdown(doc: dict) -> str:
    """The tables of one bench JSON document as Markdown (for benchmarks/README.md)."""
    m = doc["meta"]
    mach = m.get("machine", {})
    lines = [f"Run {m['when']}: `{m['command']}`; {mach.get('cpu_count')} CPUs ({mach.get('cpu', '?')}), "
             f"GEMMs on {mach.get('device', 'cpu')}, git {mach.get('git', '?')}, load {m['loadavg_1m_before']} before, "
             f"{m['repeats']} repeats after "
             f"{m['warmup']} warm-up; times: median (min-max) in seconds.", ""]
    rows = doc["rows"]
    lines += ["| op | size | N | network | channels | e2e s | online s | offline s | rounds | MB sent/party "
              "| MB dealer->P0 | max abs err | other CPU use |",
              "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['op']} | {_size(r)} | {r['parties']} | {r['network']} | {r['channels']} "
                     f"| {_fmt_t(r, 'e2e')} "
                     f"| {_fmt_t(r, 'online')} | {_fmt_t(r, 'offline')} | {r['rounds']} | {r['mb_sent_per_party']:.2f} "
                     f"| {r['dealer_bytes'] / 1e6:.2f} | {r['max_abs_err']:.2g} | {pct(r.get('others_cpu_share'))} |")
    b = [r for r in rows if "bound_online_s" in r]
    if b:
        lines += ["", "| op | size | N | network | rounds | MB link/party | rounds x d | bytes/rate | bound s "
                  "| online s | online/bound | e2e bound s | e2e s | e2e/bound |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in b:
            lines.append(f"| {r['op']} | {_size(r)} | {r['parties']} | {r['network']} | {r['rounds']} "
                         f"| {r['link_bytes_per_party'] / 1e6:.2f} | {r['bound_latency_s']:.4f} "
                         f"| {r['bound_transfer_s']:.4f} "
                         f"| {r['bound_online_s']:.4f} | {r['online_s']:.4f} | {_ratio(r['online_over_bound'])} "
                         f"| {r['bound_e2e_s']:.4f} | {r['e2e_s']:.4f} | {_ratio(r['e2e_over_bound'])} |")
    if m.get("validation"):
        lines += ["", "| network/N | configured RTT ms | measured RTT ms | configured Mbit/s | measured Mbit/s | ok |",
                  "|---|---:|---:|---:|---:|---|"]
        for k, v in m["validation"].items():
            rate = f"{v['measured_rate_mbit']:.1f}" if v.get("measured_rate_mbit") else "-"
            lines.append(f"| {k} | {v['rtt_expected_ms']:g} | {v['rtt_ms']:.2f} | {v['rate_mbit'] or '-'} | {rate} "
                         f"| {v['ok']} |")
    if doc.get("failed_jobs"):
        lines += ["", "Failed:", ""]
        for f in doc["failed_jobs"]:
            lines.append(f"- {f['op']} {f['size']}, N={f['parties']}, {f['network']}, {f['channels']}: "
                         f"`{why(f['error'])}`")
    cmp = doc.get("crypten_comparison")
    if cmp:
        rep = doc.get("crypten", {})
        lines += ["", f"CrypTen {rep.get('version')}: ratio = mpcrt e2e / CrypTen time (< 1: mpcrt faster).", "",
                  "| op | size | N | CrypTen s | mpcrt plaintext s | ratio | mpcrt curve s | ratio "
                  "| rounds CrypTen/mpcrt "
                  "| MB sent+recv CrypTen/mpcrt | max err CrypTen/mpcrt |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for o in cmp:
            def col(ch):
                s = o.get(f"mpcrt_{ch}_e2e_s")
                return f"{s:.4f} | {o[f'ratio_{ch}']:.2f}" if s is not None else "- | -"

            lines.append(f"| {o['op']} | {_size(o)} | {o['parties']} | {o['crypten_s']:.4f} | {col('plaintext')} "
                         f"| {col('curve')} | {o['crypten_rounds']}/{o['mpcrt_rounds']} "
                         f"| {o['crypten_bytes_per_party'] / 1e6:.1f}/{o['mpcrt_bytes_sent_plus_received'] / 1e6:.1f} "
                         f"| {o['crypten_max_abs_err']:.2g}/{o['mpcrt_max_abs_err']:.2g} |")
    elif "crypten" in doc and not doc["crypten"].get("available"):
        lines += ["", f"CrypTen: not run: {doc['crypten'].get('reason')}"]
    return "\n".join(lines) + "\n"



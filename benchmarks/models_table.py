"""benchmarks/models.py's report: table rows from the sessions' figures, the network lower bound
(rounds x one-way delay + link bytes / rate) and CrypTen's rounds and bytes beside them."""
from __future__ import annotations

import statistics
import sys

from mpcrt.launch.bench_report import lower_bound

# CrypTen 0.4.1 figures quoted in the issue (2 / 3 parties, end to end)
ISSUE_CRYPTEN = {
    "ct_digits_mlp": {2: {"time_s": 0.117, "rounds": 12}, 3: {"time_s": 0.334, "rounds": 25}},
    "ct_digits_cnn": {2: {"time_s": 2.85, "rounds": 114, "bytes": 1.08e9},
                      3: {"time_s": 10.5, "rounds": 205, "bytes": 2.71e9}},
    "lenet5": {2: {"time_s": 1.98}, 3: {"time_s": 6.21}},
    "resnet18_b1": {2: {"time_s": 4.24, "rounds": 555}, 3: {"time_s": 11.2, "rounds": 1218}},
}


def _heading(title: str, hdr: str, out) -> None:
    print(title, file=out)
    print(hdr, file=out)
    print("-" * len(hdr), file=out)


def _med(xs):
    return statistics.median(xs) if xs else float("nan")


def summarize(res: dict, net=None, crypten_workload: str | None = None) -> dict:
    """One table row from a session's result; net: the bench_args.Network it ran on (None: loopback)."""
    row = {"model": res["model"], "parties": res["parties"], "channels": res["channels"],
           "network": net.name if net is not None else "loopback", "crypten_workload": crypten_workload}
    if res.get("error") or "per_party" not in res:
        row["error"] = (res.get("error") or "no result").splitlines()[0]
        return row
    pp = res["per_party"]
    last_e2e = [p["e2e_stats"][-1] for p in pp]
    last_on = [p["online_stats"][-1] for p in pp]
    row.update(
        e2e_s=_med(res["e2e"]), e2e_all_s=res["e2e"], online_s=_med(res["online"]), online_all_s=res["online"],
        offline_s=_med(res["offline"]), offline_all_s=res["offline"],
        rounds=max(s["rounds"] for s in last_e2e),
        rounds_online=max(s["rounds"] for s in last_on),
        rounds_per_party=[s["rounds"] for s in last_e2e],
        bytes_sent_per_party=[s["bytes_sent"] for s in last_e2e],
        bytes_received_per_party=[s["bytes_received"] for s in last_e2e],
        dealer_bytes_received_per_party=[s["dealer_bytes_received"] for s in last_e2e],
        dealer_bytes_sent_per_party=[s["dealer_bytes_sent"] for s in last_e2e],
        online_dealer_bytes_received=max(s["dealer_bytes_received"] for s in last_on),
        max_sent_mb=max(s["bytes_sent"] for s in last_e2e) / 1e6,
        max_sent_plus_received_mb=max(s["bytes_sent"] + s["bytes_received"] for s in last_e2e) / 1e6,
        dealer_mb=sum(s["dealer_bytes_received"] for s in last_e2e) / 1e6,  # to all parties (to whichever is corrected)
        maxrss_mb=[round(p["maxrss_mb"]) for p in pp],
        check=res.get("check"),
        session_wall_s=res.get("session_wall_s"), loadavg_before=res.get("loadavg_before"),
        loadavg_after=res.get("loadavg_after"),
        stats_varied=any(p.get("stats_varied") for p in pp),
        by_op_p0=last_on[0].get("by_op"),
    )
    if net is not None and net.simulated:
        # a node's link is full duplex: the busier direction bounds it; e2e adds the dealer's traffic
        link_on = max(max(s["bytes_sent"], s["bytes_received"]) for s in last_on)
        link_e2e = max(max(s["bytes_sent"] + s["dealer_bytes_sent"], s["bytes_received"] + s["dealer_bytes_received"])
                       for s in last_e2e)
        b_on = lower_bound(row["rounds_online"], link_on, net.delay_ms, net.rate_mbit)
        b_e2e = lower_bound(row["rounds"], link_e2e, net.delay_ms, net.rate_mbit)
        row.update(delay_ms=net.delay_ms, rate_mbit=net.rate_mbit, bound_online_s=b_on["bound_s"],
                   bound_online_latency_s=b_on["latency_s"], bound_online_transfer_s=b_on["transfer_s"],
                   bound_e2e_s=b_e2e["bound_s"], online_mb_sent=max(s["bytes_sent"] for s in last_on) / 1e6,
                   online_dealer_mb=row["online_dealer_bytes_received"] / 1e6)
    return row


def _agree(row) -> str:
    c = row.get("check") or {}
    return f"{c['agree']}/{c['of']}" if c else "-"


def print_table(rows: list[dict], crypten: dict, out=None) -> None:
    out = out or sys.stdout
    if not rows:
        return
    hdr = (f"{'model':<14}{'N':>2} {'chan':<6}{'e2e s':>9}{'(min)':>8}{'online s':>10}{'(min)':>8}{'offline s':>10}"
           f"{'rounds':>7}"
           f"{'MB sent':>9}{'MB s+r':>9}{'MB dlr':>9}{'agree':>9}{'max err':>9}{'CrypTen s':>10}{'x CT':>7}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        if r.get("error"):
            print(f"{r['model']:<14}{r['parties']:>2} {r['channels'][:5]:<6}  FAILED: {r['error'][:90]}", file=out)
            continue
        ct, ratio = "-", "-"
        cr = _crypten_row(crypten, r, r["parties"])
        if cr is not None:
            ct = f"{cr['time_s']:.3f}"
            if r["channels"] == "plaintext":
                ratio = f"{r['e2e_s'] / cr['time_s']:.2f}"
        err = (r.get("check") or {}).get("max_abs_err")
        print(f"{r['model']:<14}{r['parties']:>2} {r['channels'][:5]:<6}{r['e2e_s']:>9.3f}{min(r['e2e_all_s']):>8.3f}"
              f"{r['online_s']:>10.3f}{min(r['online_all_s']):>8.3f}"
              f"{r['offline_s']:>10.3f}{r['rounds']:>7}{r['max_sent_mb']:>9.2f}{r['max_sent_plus_received_mb']:>9.2f}"
              f"{r['dealer_mb']:>9.2f}{_agree(r):>9}{(err if err is not None else float('nan')):>9.1e}"
              f"{ct:>10}{ratio:>7}", file=out)
    print("e2e: dealer on line; online: dealer material fetched ahead by rt.preprocess (offline = that fetch);\n"
          "median (and min) over the repeats of the slowest party; rounds and MB from the e2e run (max over parties);\n"
          "MB sent: most any party sent; MB s+r: most any party sent + received (CrypTen's byte count is\n"
          "about this); MB dlr: dealer to the parties, all together; agree: argmax equal to the plaintext model's;\n"
          "x CT: mpcrt e2e / CrypTen (TTP on line), plaintext channels only (CrypTen's are plaintext).", file=out)


def _crypten_row(crypten: dict, row: dict, n: int):
    w = row.get("crypten_workload")
    if w is None:
        return None
    r = (crypten.get(n) or {}).get("results", {}).get(w)
    if not r or r.get("error") or r.get("time_s") is None:
        return None
    return r


def print_crypten(rows: list[dict], crypten: dict, out=None) -> None:
    """mpcrt (plaintext channels) beside CrypTen measured here and the CrypTen figures the issue quotes."""
    out = out or sys.stdout
    for n, c in sorted(crypten.items()):
        if not c.get("available"):
            print(f"CrypTen, {n} parties: not run here ({c.get('reason')})", file=out)
    sel = [r for r in rows if not r.get("error") and r["channels"] == "plaintext"
           and (_crypten_row(crypten, r, r["parties"]) or ISSUE_CRYPTEN.get(r["model"], {}).get(r["parties"]))]
    if not sel:
        return
    _heading("\nmpcrt (plaintext channels) vs CrypTen 0.4.1 (TTP, gloo), same networks",
             f"{'model':<14}{'N':>2}{'mpcrt e2e':>11}{'online':>9}{'rounds':>8}{'MB s+r':>9}"
             f"{'CT here s':>11}{'e2e x':>7}{'on x':>7}{'CT rnd':>8}{'CT MB':>9}{'issue CT s':>12}{'x issue':>8}", out)
    for r in sel:
        cr = _crypten_row(crypten, r, r["parties"])
        iss = ISSUE_CRYPTEN.get(r["model"], {}).get(r["parties"])
        here = (f"{cr['time_s']:>11.3f}{r['e2e_s'] / cr['time_s']:>7.2f}{r['online_s'] / cr['time_s']:>7.2f}"
                f"{cr['rounds']:>8}{cr['bytes_per_party'] / 1e6:>9.1f}") if cr else \
            f"{'-':>11}{'-':>7}{'-':>7}{'-':>8}{'-':>9}"
        quoted = f"{iss['time_s']:>12.3f}{r['e2e_s'] / iss['time_s']:>8.2f}" if iss else f"{'-':>12}{'-':>8}"
        print(f"{r['model']:<14}{r['parties']:>2}{r['e2e_s']:>11.3f}{r['online_s']:>9.3f}{r['rounds']:>8}"
              f"{r['max_sent_plus_received_mb']:>9.1f}{here}{quoted}", file=out)
    print("CT here: crypten_side.py on this machine in this run (median, TTP on line); e2e x / on x: mpcrt e2e /\n"
          "online over it; issue CT: the CrypTen 0.4.1 figures quoted in the issue (another machine/load).", file=out)
    for n in sorted(crypten):
        for w, r in (crypten[n].get("results") or {}).items():
            if r.get("error"):
                print(f"CrypTen {w}, {n} parties FAILED: {r['error'].splitlines()[0][:120]}", file=out)




def _crypten_figures(crypten: dict, row: dict) -> dict | None:
    """CrypTen's rounds and bytes per party for this row's model: measured here (loopback) or quoted."""
    cr = _crypten_row(crypten, row, row["parties"])
    if cr is not None and cr.get("rounds") is not None:
        return {"rounds": cr["rounds"], "bytes": cr.get("bytes_per_party"), "source": "here"}
    iss = ISSUE_CRYPTEN.get(row["model"], {}).get(row["parties"])
    if iss and iss.get("rounds") is not None:
        return {"rounds": iss["rounds"], "bytes": iss.get("bytes"), "source": "quoted"}
    return None


def print_network(rows: list[dict], crypten: dict, out=None) -> None:
    """Simulated-network rows: time beside the lower bound, and CrypTen's bound from its rounds and bytes."""
    out = out or sys.stdout
    sel = [r for r in rows if not r.get("error") and r.get("delay_ms") is not None]
    if not sel:
        return
    _heading("\nsimulated network: time vs the lower bound rounds x one-way delay + link bytes / rate",
             f"{'model':<14}{'N':>2} {'net':<9}{'chan':<6}{'online s':>9}{'bound':>7}{'rnd':>5}{'MB sent':>8}"
             f"{'dlr MB':>8}{'e2e s':>8}{'bound':>7}{'rnd':>5}{'dlr MB':>8}{'CT rnd':>7}{'CT MB':>8}{'CT bound':>9}",
             out)
    for r in sel:
        ct = _crypten_figures(crypten, r)
        if ct:
            b = lower_bound(ct["rounds"], ct["bytes"] or 0.0, r["delay_ms"], r["rate_mbit"])["bound_s"]
            cts = (f"{ct['rounds']:>7}{(ct['bytes'] or float('nan')) / 1e6:>8.1f}{b:>8.2f}"
                   + ("*" if ct["source"] == "quoted" else " "))
        else:
            cts = f"{'-':>7}{'-':>8}{'-':>9}"
        print(f"{r['model']:<14}{r['parties']:>2} {r['network'][:8]:<9}{r['channels'][:5]:<6}"
              f"{r['online_s']:>9.3f}{r['bound_online_s']:>7.2f}{r['rounds_online']:>5}{r['online_mb_sent']:>8.2f}"
              f"{r['online_dealer_mb']:>8.2f}{r['e2e_s']:>8.3f}{r['bound_e2e_s']:>7.2f}{r['rounds']:>5}"
              f"{r['dealer_mb']:>8.2f}{cts}", file=out)
    print("online: dealer material fetched ahead (rt.preprocess); e2e: dealer on line (its own node of the same\n"
          "network); bound: rounds x one-way delay + the busiest link direction's bytes / rate; dlr MB: dealer\n"
          "to the parties during that call; CT: CrypTen's rounds and bytes per party (measured here on loopback,\n"
          "or * quoted in the issue) and the bound they give on the same network.", file=out)

#!/usr/bin/env python3
"""Turn one bench/run.sh run (bench/results/tmp) into bench/results/report.md,
bench/results/summary.csv and bench/results/throughput.png (gnuplot).

Reads, per run directory tmp/runs/<scenario>/<impl>/<clients>/:
  tx.*            pgbench per-transaction log (one line per cycle)
  pgbench.out/err pgbench summary and client errors
  server.log      the server log written during the run (SQLSTATE per error)
  start, end      wall clock around the pgbench call
  check.csv / invariants   the database checks run.sh made afterwards
"""
import argparse
import csv
import glob
import os
import re
import subprocess
import time
from collections import Counter

IMPLS = ["c", "plpgsql", "orm", "limit"]
SCENARIOS = ["hot", "spread", "scarce", "expiry"]

ap = argparse.ArgumentParser()
ap.add_argument("--tmp", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--started", type=float, required=True)
ap.add_argument("--duration", type=float, required=True)
ap.add_argument("--warmup", type=float, required=True)
ap.add_argument("--expired", type=int, required=True)
ap.add_argument("--scarce-units", type=int, required=True)
ap.add_argument("--sweep-pre", type=float, required=True)
args = ap.parse_args()
bench_dir = os.path.dirname(os.path.abspath(__file__))


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def read_float(path):
    s = read(path).strip()
    return float(s) if s else None


def read_csv_row(path):
    rows = list(csv.reader(read(path).splitlines()))
    rows = [r for r in rows if r and not r[0].startswith("(")]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[1]))


def tx_log(d):
    """[(start, end, latency_us or None, failure or None)] from tx.* files."""
    txs = []
    for path in glob.glob(os.path.join(d, "tx.*")):
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) < 6:
                    continue
                end = int(p[4]) + int(p[5]) / 1e6
                if p[2].isdigit():
                    lat = int(p[2])
                    txs.append((end - lat / 1e6, end, lat, None))
                else:
                    txs.append((end, end, None, p[2]))
    txs.sort(key=lambda t: t[1])
    return txs


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


SQLSTATE_RE = re.compile(r"\] ([0-9A-Z]{5}) (ERROR|FATAL|PANIC):")


def errors(d):
    """SQLSTATE counts from the server log, and pgbench's own client events."""
    states = Counter()
    for line in read(os.path.join(d, "server.log")).splitlines():
        m = SQLSTATE_RE.search(line)
        if m:
            states[m.group(1)] += 1
    err = read(os.path.join(d, "pgbench.err"))
    stops = len(re.findall(r"expected one row, got 0", err))
    aborts = len(re.findall(r"aborted in command", err))
    out = read(os.path.join(d, "pgbench.out"))
    def num(label):
        m = re.search(label + r": (\d+)", out)
        return int(m.group(1)) if m else 0
    return {
        "sqlstates": states,
        "client_stops": stops,
        "client_aborts": aborts,
        "failed": num("number of failed transactions"),
        "deadlock_failures": num("number of deadlock failures"),
        "serialization_failures": num("number of serialization failures"),
        "rc": read(os.path.join(d, "rc")).strip(),
    }


def fmt_states(e):
    parts = ["%s×%d" % (k, v) for k, v in sorted(e["sqlstates"].items())]
    if e["client_stops"]:
        parts.append("client-stop×%d" % e["client_stops"])
    return ", ".join(parts) if parts else "none"


def windowed(txs, lo, hi):
    ok = [t for t in txs if t[2] is not None and lo <= t[1] < hi]
    bad = [t for t in txs if t[2] is None and lo <= t[1] < hi]
    return ok, bad


def fnum(x, nd=0):
    if x is None:
        return "–"
    return ("{:,.%df}" % nd).format(x)


def fms(us):
    return "–" if us is None else "%.1f" % (us / 1000.0)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fratio(r):
    return "–" if r is None else "%.2f" % r


# ---------------------------------------------------------------- collect
runs_root = os.path.join(args.tmp, "runs")
clients_seen = set()
R = {}  # (scenario, impl, clients) -> dict
for sc in SCENARIOS:
    for impl in IMPLS:
        for cdir in glob.glob(os.path.join(runs_root, sc, impl, "*")):
            c = int(os.path.basename(cdir))
            clients_seen.add(c)
            r = {"scenario": sc, "impl": impl, "clients": c}
            if sc in ("hot", "spread"):
                txs = tx_log(cdir)
                e = errors(cdir)
                r["errors"] = e
                if txs:
                    t0 = min(t[0] for t in txs)
                    lo, hi = t0 + args.warmup, t0 + args.warmup + args.duration
                    ok, bad = windowed(txs, lo, hi)
                    lats = [t[2] for t in ok]
                    r.update(cps=len(ok) / args.duration, p50=pct(lats, 50), p99=pct(lats, 99),
                             n=len(ok), failed_in_window=len(bad))
                r["invariants"] = read(os.path.join(cdir, "invariants")).strip()
            elif sc == "scarce":
                txs = tx_log(cdir)
                e = errors(cdir)
                r["errors"] = e
                r["check"] = read_csv_row(os.path.join(cdir, "check.csv"))
                ok = [t for t in txs if t[2] is not None]
                if ok:
                    t0 = min(t[0] for t in ok)
                    t1 = max(t[1] for t in ok)
                    lats = [t[2] for t in ok]
                    r.update(cps=len(ok) / (t1 - t0) if t1 > t0 else None, sellout_s=t1 - t0,
                             p50=pct(lats, 50), p99=pct(lats, 99), n=len(ok))
            else:  # expiry
                load = os.path.join(cdir, "load")
                sweep = os.path.join(cdir, "sweep")
                txs = tx_log(load)
                r["errors"] = errors(load)
                r["sweep_errors"] = errors(sweep)
                r["check"] = read_csv_row(os.path.join(cdir, "check.csv"))
                s0, s1 = read_float(os.path.join(sweep, "start")), read_float(os.path.join(sweep, "end"))
                cleared = int(r["check"].get("cleared", 0) or 0)
                r["cleared"] = cleared
                r["left"] = int(r["check"].get("left_expired", 0) or 0)
                if s0 and s1:
                    r["sweep_s"] = s1 - s0
                    r["sweep_rate"] = cleared / (s1 - s0) if s1 > s0 else None
                btx = tx_log(sweep)
                blat = [t[2] for t in btx if t[2] is not None]
                r["batch_p50"], r["batch_p99"] = pct(blat, 50), pct(blat, 99)
                r["batch_max"] = max(blat) if blat else None
                if txs and s0 and s1:
                    t0 = min(t[0] for t in txs)
                    tend = max(t[1] for t in txs)
                    base_ok, _ = windowed(txs, t0 + args.warmup, s0)
                    dur_ok, _ = windowed(txs, s0, s1)
                    base_s = max(s0 - (t0 + args.warmup), 1e-9)
                    r["base_cps"] = len(base_ok) / base_s
                    r["during_cps"] = len(dur_ok) / (s1 - s0) if s1 > s0 else None
                    r["during_p99"] = pct([t[2] for t in dur_ok], 99)
                    r["base_p99"] = pct([t[2] for t in base_ok], 99)
                    if r["during_cps"] is not None and r["base_cps"]:
                        r["dip"] = 1 - r["during_cps"] / r["base_cps"]
                    r["cps"] = r.get("sweep_rate")
            R[(sc, impl, c)] = r
CLIENTS = sorted(clients_seen)


def get(sc, impl, c, key="cps"):
    return R.get((sc, impl, c), {}).get(key)


# ---------------------------------------------------------------- summary.csv
with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["scenario", "impl", "clients", "rate", "rate_unit", "p50_ms", "p99_ms",
                "sqlstates", "deadlocks", "client_aborts", "extra"])
    for (sc, impl, c), r in sorted(R.items(), key=lambda kv: (SCENARIOS.index(kv[0][0]),
                                                               IMPLS.index(kv[0][1]), kv[0][2])):
        e = r.get("errors", {"sqlstates": Counter(), "client_stops": 0, "client_aborts": 0})
        unit = "orders/s swept" if sc == "expiry" else "cycles/s"
        extra = ""
        if sc == "scarce":
            ch = r.get("check", {})
            extra = "sold=%s oversold=%s consistent=%s" % (ch.get("sold_units"), ch.get("oversold"), ch.get("consistent"))
        if sc == "expiry":
            extra = "cleared=%s base_cps=%.1f during_cps=%s" % (
                r.get("cleared"), r.get("base_cps") or 0, fnum(r.get("during_cps"), 1))
        w.writerow([sc, impl, c, "%.1f" % r["cps"] if r.get("cps") else "", unit,
                    fms(r.get("p50")), fms(r.get("p99")), fmt_states(e),
                    e["sqlstates"].get("40P01", 0), e.get("client_aborts", 0), extra])

# ---------------------------------------------------------------- chart
dat = os.path.join(args.tmp, "chart.dat")
with open(dat, "w") as f:
    for sc in SCENARIOS:
        f.write("# %s\n" % sc)
        for c in CLIENTS:
            f.write("%d %s\n" % (c, " ".join(
                ("%.2f" % get(sc, i, c)) if get(sc, i, c) else "NaN" for i in IMPLS)))
        f.write("\n\n")
png = os.path.join(args.out, "throughput.png")
titles = {
    "hot": "hot: 1 SKU, add→order→paid (cycles/s)",
    "spread": "spread: 10,000 SKUs, 3 lines (cycles/s)",
    "scarce": "scarce: 100 units, sell-out rate (cycles/s)",
    "expiry": "expiry: %d expired orders, sweep rate (orders/s)" % args.expired,
}
gp = ["set terminal pngcairo size 1400,1000 font 'sans,10'" ,
      "set output '%s'" % png,
      "set multiplot layout 2,2 title 'shop benchmark: throughput vs clients (one run, one cluster)'",
      "set logscale x 2", "set xtics (1, 8, 32, 64)", "set xrange [0.8:80]", "set grid",
      "set key top left", "set xlabel 'clients'", "set yrange [0:*]"]
for k, sc in enumerate(SCENARIOS):
    if not any(get(sc, i, c) for i in IMPLS for c in CLIENTS):
        continue  # a partial run (BENCH_SCENARIOS) has nothing to draw here
    gp.append("set title \"%s\"" % titles[sc])
    gp.append("plot " + ", ".join(
        "'%s' index %d using 1:%d with linespoints lw 2 pt 7 title '%s'" % (dat, k, j + 2, i)
        for j, i in enumerate(IMPLS)))
gp.append("unset multiplot")
with open(os.path.join(args.tmp, "chart.gp"), "w") as f:
    f.write("\n".join(gp) + "\n")
subprocess.run(["gnuplot", os.path.join(args.tmp, "chart.gp")], check=True)

# ---------------------------------------------------------------- report
L = []
elapsed = time.time() - args.started
settings = read(os.path.join(args.tmp, "settings.txt")).strip().splitlines()
server = read(os.path.join(args.tmp, "server-settings.txt")).strip().splitlines()
L.append("# shop benchmark report")
L.append("")
L.append("Produced by ONE run of `make bench` (`bash bench/run.sh`) on one fresh cluster; every number below "
         "comes from that run, so machine noise cancels in the ratios. How to read it: `bench/README.md`.")
L.append("")
L.append("```")
L.extend(settings)
L.append("run finished: %s UTC; wall time of the run up to this report: %.0f s (%.1f min)" % (
    time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), elapsed, elapsed / 60))
L.append("")
L.append("server settings (fsync and synchronous_commit ON):")
L.extend("  " + s for s in server)
L.append("```")
L.append("")
L.append("Implementations: **c** = the extension's functions, one round trip per API call (`-M prepared`); "
         "**plpgsql** = `bench/peers/plpgsql.sql`, the same functions and locking in PL/pgSQL (`-M prepared`); "
         "**orm** = the seed's Django statement sequence, one round trip per statement (`-M simple`, like psycopg2); "
         "**limit** = only the writes an order needs, 2 statements/2 transactions per cycle, no cart (`-M prepared`).")
L.append("")
L.append("A cycle: hot/scarce = add 1 unit to the cart → create order → confirm paid (c/plpgsql: 3 calls and "
         "transactions; orm: 23 statements in 3 transactions; limit: 2 statements). spread = 3 adds of 3 random "
         "SKUs → order → paid (c/plpgsql: 5 calls; orm: 43 statements in 5 transactions; limit: 2 statements). "
         "hot/spread: %gs warm-up then %gs measured; cycles/s counts cycles ending in the measured window; "
         "p50/p99 are per-cycle latencies in ms." % (args.warmup, args.duration))
L.append("")

# headline
L.append("## Headline")
L.append("")
L.append("| scenario | clients | c | plpgsql | orm | limit | c/plpgsql | c/orm | c/limit | c p50 / p99 ms | errors (all impls, by SQLSTATE) |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for sc in SCENARIOS:
    for c in CLIENTS:
        if not any((sc, i, c) in R for i in IMPLS):
            continue
        vals = [get(sc, i, c) for i in IMPLS]
        errs = Counter()
        stops = 0
        for i in IMPLS:
            e = R.get((sc, i, c), {}).get("errors")
            if e:
                errs.update(e["sqlstates"])
                stops += e["client_stops"]
            e2 = R.get((sc, i, c), {}).get("sweep_errors")
            if e2:
                errs.update(e2["sqlstates"])
        es = ", ".join("%s×%d" % kv for kv in sorted(errs.items())) or "none"
        unit = " (orders/s swept)" if sc == "expiry" else ""
        L.append("| %s%s | %d | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
            sc, unit, c, *[fnum(v) for v in vals],
            fratio(ratio(vals[0], vals[1])), fratio(ratio(vals[0], vals[2])), fratio(ratio(vals[0], vals[3])),
            fms(get(sc, "c", c, "p50")), fms(get(sc, "c", c, "p99")), es))
L.append("")
L.append("Rates: hot/spread = cycles/s; scarce = cycles/s until sold out (sold units / time from first start "
         "to last sale); expiry = expired orders released per second by one sweeper while a spread load runs. "
         "SH001 in scarce is the expected refusal once stock is gone (each c/plpgsql client stops at its first "
         "refusal; orm/limit clients stop at theirs without a server error: `client-stop` in the tables below).")
L.append("")
L.append("![throughput vs clients](throughput.png)")
L.append("")

# targets
L.append("## Targets")
L.append("")
def at(sc, i, c):
    return get(sc, i, c)
c32 = 32 if 32 in CLIENTS else (CLIENTS[-1] if CLIENTS else None)
r_orm = ratio(at("spread", "c", c32), at("spread", "orm", c32))
r_lim = ratio(at("spread", "c", c32), at("spread", "limit", c32))
L.append("| target | measured | met? |")
L.append("|---|---|---|")
L.append("| spread: c ≥ 5× orm at %s clients | c/orm = %s | %s |" % (
    c32, fratio(r_orm), "yes" if r_orm and r_orm >= 5 else "**no**"))
L.append("| spread: c ≥ 0.6× limit at %s clients | c/limit = %s | %s |" % (
    c32, fratio(r_lim), "yes" if r_lim and r_lim >= 0.6 else "**no**"))
worse = []
for sc in SCENARIOS:
    for c in CLIENTS:
        rr = ratio(at(sc, "c", c), at(sc, "plpgsql", c))
        if rr is not None and rr < 1:
            worse.append("%s@%d: %.2f" % (sc, c, rr))
allr = [ratio(at(sc, "c", c), at(sc, "plpgsql", c)) for sc in SCENARIOS for c in CLIENTS]
allr = [x for x in allr if x is not None]
L.append("| c ≥ plpgsql in every scenario and client count | c/plpgsql from %s to %s; below 1: %s | %s |" % (
    fratio(min(allr)) if allr else "–", fratio(max(allr)) if allr else "–",
    "; ".join(worse) or "none", "yes" if not worse else "**no** (see Profile)"))
over = []
for i in IMPLS:
    for c in CLIENTS:
        ch = R.get(("scarce", i, c), {}).get("check")
        if ch and (ch.get("oversold") != "f" or ch.get("consistent") != "t"):
            over.append("%s@%d" % (i, c))
nsc = sum(1 for k in R if k[0] == "scarce")
L.append("| scarce: zero oversell in every implementation | %d runs checked; oversold or inconsistent: %s | %s |" % (
    nsc, ", ".join(over) or "none", "yes" if nsc and not over else "**no**"))
inv_bad = []
for (sc, i, c), r in R.items():
    v = r.get("invariants") if sc in ("hot", "spread") else r.get("check", {}).get(
        "invariant_violations" if sc == "expiry" else "invariant_violations")
    if v not in ("0", 0):
        inv_bad.append("%s/%s@%d: %s" % (sc, i, c, v))
L.append("| `shop_check_invariants()` empty after every run | %d runs; with violations: %s | %s |" % (
    len(R), ", ".join(sorted(inv_bad)) or "none", "yes" if not inv_bad else "**no**"))
dl = sum(r.get("errors", {}).get("sqlstates", Counter()).get("40P01", 0)
         + r.get("sweep_errors", {}).get("sqlstates", Counter()).get("40P01", 0) for r in R.values())
L.append("| deadlocks (40P01) must be zero | %d in the whole run | %s |" % (dl, "yes" if dl == 0 else "**no**"))
hs = []
for c in (32, 64):
    hs.append("%d clients: hot %s / spread %s = **%s**" % (
        c, fnum(at("hot", "c", c)), fnum(at("spread", "c", c)), fratio(ratio(at("hot", "c", c), at("spread", "c", c)))))
L.append("| hot/spread for c at 32 and 64 clients (report) | %s | reported |" % "; ".join(hs))
L.append("")
L.append("Note that a spread cycle is 5 API calls (3 cart adds) against 3 for hot, so hot/spread in cycles/s "
         "is not a pure lock-contention ratio; per API call hot/spread = (hot cycles/s × 3) / (spread cycles/s × 5): " +
         "; ".join("%d clients: %s" % (c, fratio(ratio((at("hot", "c", c) or 0) * 3, (at("spread", "c", c) or 0) * 5)))
                   for c in (32, 64)) + ".")
L.append("")

# details
L.append("## Details per run")
L.append("")
for sc in ("hot", "spread"):
    L.append("### %s" % sc)
    L.append("")
    L.append("| impl | clients | cycles/s | p50 ms | p99 ms | cycles measured | errors by SQLSTATE | failed tx (deadlock/serialization) | aborted clients | invariant violations after |")
    L.append("|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for i in IMPLS:
        for c in CLIENTS:
            r = R.get((sc, i, c))
            if not r:
                continue
            e = r["errors"]
            L.append("| %s | %d | %s | %s | %s | %s | %s | %d (%d/%d) | %d | %s |" % (
                i, c, fnum(r.get("cps"), 1), fms(r.get("p50")), fms(r.get("p99")), fnum(r.get("n")),
                fmt_states(e), e["failed"], e["deadlock_failures"], e["serialization_failures"],
                e["client_aborts"], r.get("invariants") or "?"))
    L.append("")

L.append("### scarce: %d units of one SKU, every client buys 1 unit per cycle until refused" % args.scarce_units)
L.append("")
L.append("Checked afterwards (`bench.scarce_check`): orders PAID, units on PAID order lines, the SKU's on_hand and "
         "reserved, active and consumed reservation units, `shop.shop_check_invariants()` rows. *oversold* = more "
         "units sold/consumed than existed or a counter out of bounds; *consistent* = on_hand = %d − consumed, "
         "reserved = active reservations, sold = consumed, no invariant violation." % args.scarce_units)
L.append("")
L.append("| impl | clients | sold units | PAID orders | on_hand | reserved | active res. | consumed res. | oversold | consistent | sell-out s | cycles/s | p50 / p99 ms | refusals / errors |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|")
for i in IMPLS:
    for c in CLIENTS:
        r = R.get(("scarce", i, c))
        if not r:
            continue
        ch = r.get("check", {})
        L.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
            i, c, ch.get("sold_units", "?"), ch.get("paid_orders", "?"), ch.get("on_hand", "?"),
            ch.get("reserved", "?"), ch.get("active_units", "?"), ch.get("consumed_units", "?"),
            "no" if ch.get("oversold") == "f" else "**YES**",
            "yes" if ch.get("consistent") == "t" else "**NO**",
            fnum(r.get("sellout_s"), 2), fnum(r.get("cps"), 1), fms(r.get("p50")), fms(r.get("p99")),
            fmt_states(r["errors"])))
L.append("")

L.append("### expiry: %d expired PENDING orders swept by one client while a spread load runs" % args.expired)
L.append("")
L.append("The load (spread cycles of the same implementation) starts %gs before the sweeper; *before* = load "
         "cycles/s from warm-up end to sweep start, *during* = while the sweep runs; dip = 1 − during/before. "
         "c and plpgsql sweep with `shop_expire_pending(1000)` per transaction, limit with one 1000-order "
         "statement per transaction, orm one order per transaction (the seed's per-order statements). "
         "A sweep is capped (BENCH_SWEEP_CAP); *left* > 0 means it did not finish within the cap." % args.sweep_pre)
L.append("")
L.append("| impl | load clients | cleared | left | sweep s | orders/s swept | batch p50 / p99 / max ms | load before cycles/s | load during cycles/s | dip | load p99 before / during ms | errors load / sweep | invariant violations after |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
for i in IMPLS:
    for c in CLIENTS:
        r = R.get(("expiry", i, c))
        if not r:
            continue
        L.append("| %s | %d | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s / %s | %s / %s | %s |" % (
            i, c, fnum(r.get("cleared")), fnum(r.get("left")), fnum(r.get("sweep_s"), 2),
            fnum(r.get("sweep_rate")), fms(r.get("batch_p50")), fms(r.get("batch_p99")), fms(r.get("batch_max")),
            fnum(r.get("base_cps"), 1), fnum(r.get("during_cps"), 1),
            ("%.0f%%" % (100 * r["dip"])) if r.get("dip") is not None else "–",
            fms(r.get("base_p99")), fms(r.get("during_p99")),
            fmt_states(r["errors"]), fmt_states(r["sweep_errors"]),
            r["check"].get("invariant_violations", "?")))
L.append("")

# memory
L.append("## Backend memory over many calls")
L.append("")
L.append("One psql session makes add→order→paid cycles (3 API calls each) and reads "
         "`pg_backend_memory_contexts` (sum of total_bytes / used_bytes, number of contexts) and "
         "`/proc/self/status` (VmHWM = peak RSS including touched shared buffers; RssAnon = private memory).")
L.append("")
L.append("| impl | calls | contexts total bytes | used bytes | contexts | /proc |")
L.append("|---|---:|---:|---:|---:|---|")
for i in ("c", "plpgsql"):
    for line in read(os.path.join(args.tmp, "mem-%s.txt" % i)).splitlines():
        p = line.split(None, 5)
        if len(p) >= 5:
            L.append("| %s | %s | %s | %s | %s | %s |" % (
                i, fnum(int(p[1])), fnum(int(p[2])), fnum(int(p[3])), p[4],
                re.sub(r"\s+", " ", p[5]) if len(p) > 5 else ""))
L.append("")

prof = read(os.path.join(bench_dir, "profile.md")).strip()
if prof:
    L.append(prof)
    L.append("")

with open(os.path.join(args.out, "report.md"), "w") as f:
    f.write("\n".join(L) + "\n")
print("\n".join(L))

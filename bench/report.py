#!/usr/bin/env python3
"""Turn one bench/run.sh run (bench/results/tmp) into bench/results/report.md,
bench/results/summary.csv and bench/results/throughput.png (gnuplot).

Reads, per run directory tmp/runs/<scenario>/<impl>/<clients>/:
  tx.*            pgbench per-transaction log (one line per cycle)
  pgbench.out/err pgbench summary and client errors
  server.log      the server log written during the run (SQLSTATE per error)
  start, end      wall clock around the pgbench call
  check.csv / invariants   the database checks run.sh made afterwards
and for the outbox scenarios tmp/runs/spread-events/<off|write|on>/<clients>/<round>/
and tmp/runs/outbox-delivery/<in flight>/<events>/ also:
  receiver.json   the local receiver's counters (requests, distinct webhook-ids)
  cpu_start/end   the worker's CPU ticks, the machine's busy and total jiffies
  server_cpu_start/end   the server's CPU time in microseconds (spread-events)
  receiver_cpu_start/end the receiver's CPU ticks (spread-events)
  wal_bytes, claim_ms, enabled_at, write_s   see bench/run.sh
"""
import argparse
import csv
import glob
import json
import os
import re
import statistics
import subprocess
import time
from collections import Counter

IMPLS = ["c", "plpgsql", "orm", "limit"]
# c with the SKU in hot-SKU mode (src/hot.c): the hot and scarce scenarios only
HOT_IMPL = "c-hot"
# what the API's shape allows (spread at BENCH_SHAPE_CLIENTS only): c buying
# without a cart (2 calls, the limit peer's shape), and the 5-call cart
# cycle's writes with no logic (the best any implementation of the API does)
SHAPE_IMPLS = ["c-buy", "floor"]
IMPLS_ALL = IMPLS + [HOT_IMPL] + SHAPE_IMPLS
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
    for impl in IMPLS_ALL:
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

# ---------------------------------------------------------------- outbox scenarios
CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_json(path):
    try:
        return json.loads(read(path))
    except ValueError:
        return {}


def to_int(x):
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


def to_float(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def claim(path):
    """bench.claim_ms's result as shown: ms with 1 decimal, or '>10000' (timed out)."""
    v = read(path).strip()
    x = to_float(v)
    return fnum(x, 1) if x is not None else (v.replace(">", "> ") if v else "–")


def cpu_use(d, secs):
    """(worker CPU in cores, machine busy share) between cpu_start and cpu_end."""
    a, b = read(os.path.join(d, "cpu_start")).split(), read(os.path.join(d, "cpu_end")).split()
    if len(a) < 3 or len(b) < 3:
        return None, None
    a, b = [int(x) for x in a], [int(x) for x in b]
    worker = (b[0] - a[0]) / CLK_TCK / secs if a[0] >= 0 and b[0] >= 0 and secs else None
    busy = (b[1] - a[1]) / (b[2] - a[2]) if b[2] > a[2] else None
    return worker, busy


EVS = ["off", "write", "on"]
EV = {}  # (one of EVS, clients, round) -> run
for d in glob.glob(os.path.join(runs_root, "spread-events", "*", "*", "*")):
    ev = os.path.basename(os.path.dirname(os.path.dirname(d)))
    c, rnd = int(os.path.basename(os.path.dirname(d))), int(os.path.basename(d))
    r = {"ev": ev, "clients": c, "round": rnd, "errors": errors(d)}
    txs = tx_log(d)
    if txs:
        t0 = min(t[0] for t in txs)
        ok, bad = windowed(txs, t0 + args.warmup, t0 + args.warmup + args.duration)
        lats = [t[2] for t in ok]
        r.update(cps=len(ok) / args.duration, p50=pct(lats, 50), p99=pct(lats, 99), n=len(ok))
        r["cycles_all"] = sum(1 for t in txs if t[2] is not None)
    r["invariants"] = read(os.path.join(d, "invariants")).strip()
    r["check"] = read_csv_row(os.path.join(d, "check.csv"))
    r["recv"] = read_json(os.path.join(d, "receiver.json"))
    r["claim_ms"] = claim(os.path.join(d, "claim_ms"))
    wal = to_int(read(os.path.join(d, "wal_bytes")).strip())
    r["wal_per_cycle"] = wal / r["cycles_all"] if wal is not None and r.get("cycles_all") else None
    s0, s1 = read_float(os.path.join(d, "start")), read_float(os.path.join(d, "end"))
    r["secs"] = s1 - s0 if s0 and s1 else None
    r["worker_cores"], r["busy"] = cpu_use(d, r["secs"])
    t0, t1 = read_float(os.path.join(d, "receiver_cpu_start")), read_float(os.path.join(d, "receiver_cpu_end"))
    r["receiver_cores"] = ((t1 - t0) / CLK_TCK / r["secs"]
                           if t0 is not None and t1 is not None and t0 >= 0 and t1 >= 0 and r["secs"] else None)
    c0, c1 = read_float(os.path.join(d, "server_cpu_start")), read_float(os.path.join(d, "server_cpu_end"))
    r["server_ms_per_cycle"] = ((c1 - c0) / 1000 / r["cycles_all"]
                                if c0 is not None and c1 is not None and r.get("cycles_all") else None)
    EV[(ev, c, rnd)] = r
EV_CLIENTS = sorted({c for (_, c, _) in EV})
EV_ROUNDS = {c: sorted({k for (_, c2, k) in EV if c2 == c}) for c in EV_CLIENTS}


def ev_run(ev, c, rnd):
    return EV.get((ev, c, rnd), {})


def ev_ratio(ev, c, rnd):
    """cycles/s of variant ev / cycles/s of off, both of the same round."""
    return ratio(ev_run(ev, c, rnd).get("cps"), ev_run("off", c, rnd).get("cps"))


def ev_median(ev, c, ratio_of=None):
    """(median across the rounds of the per-round ev/off ratios, the ratios)."""
    rs = [x for x in ((ratio_of or ev_ratio)(ev, c, k) for k in EV_ROUNDS.get(c, [])) if x is not None]
    return (statistics.median(rs) if rs else None), rs


def ev_cpu_ratio(ev, c, rnd):
    """Cycles per second of server CPU of variant ev / those of off, both of
    the same round: off's server CPU per cycle / ev's."""
    return ratio(ev_run("off", c, rnd).get("server_ms_per_cycle"), ev_run(ev, c, rnd).get("server_ms_per_cycle"))


def ev_median_cps(ev, c):
    v = [ev_run(ev, c, k)["cps"] for k in EV_ROUNDS.get(c, []) if ev_run(ev, c, k).get("cps")]
    return statistics.median(v) if v else None

DL = {}  # (in flight, events) -> run
for d in glob.glob(os.path.join(runs_root, "outbox-delivery", "*", "*")):
    f, n = int(os.path.basename(os.path.dirname(d))), int(os.path.basename(d))
    ch = read_csv_row(os.path.join(d, "check.csv"))
    r = {"in_flight": f, "events": n, "check": ch, "recv": read_json(os.path.join(d, "receiver.json")),
         "errors": errors(d)}
    r["claim_ms"] = claim(os.path.join(d, "claim_ms"))
    r["claim_ms_as_found"] = claim(os.path.join(d, "claim_ms_as_found"))
    r["write_s"] = to_float(read(os.path.join(d, "write_s")).strip())
    enabled = to_float(read(os.path.join(d, "enabled_at")).strip())
    first, last = to_float(ch.get("first_attempt_epoch")), to_float(ch.get("last_delivered_epoch"))
    delivered = to_int(ch.get("delivered")) or 0
    r["delivered"] = delivered
    r["done"] = ch.get("open") == "0" and delivered == to_int(ch.get("events"))
    if enabled and first:
        r["first_ms"] = (first - enabled) * 1000
    if enabled and last and last > enabled:
        r["secs"] = last - enabled
        r["rate"] = delivered / r["secs"]
    s0, s1 = read_float(os.path.join(d, "start")), read_float(os.path.join(d, "end"))
    r["worker_cores"], r["busy"] = cpu_use(d, (s1 - s0) if s0 and s1 else None)
    DL[(f, n)] = r


def get(sc, impl, c, key="cps"):
    return R.get((sc, impl, c), {}).get(key)


# ---------------------------------------------------------------- summary.csv
with open(os.path.join(args.out, "summary.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["scenario", "impl", "clients", "rate", "rate_unit", "p50_ms", "p99_ms",
                "sqlstates", "deadlocks", "client_aborts", "extra"])
    for (sc, impl, c), r in sorted(R.items(), key=lambda kv: (SCENARIOS.index(kv[0][0]),
                                                               IMPLS_ALL.index(kv[0][1]), kv[0][2])):
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

    for (ev, c, rnd), r in sorted(EV.items(), key=lambda kv: (kv[0][1], kv[0][2], EVS.index(kv[0][0]))):
        e = r["errors"]
        ch, rc = r["check"], r["recv"]
        extra = "round=%d events=%s delivered=%s backlog=%s receiver_requests=%s distinct_ids=%s" % (
            rnd, ch.get("events"), ch.get("delivered"), ch.get("open"), rc.get("requests"), rc.get("distinct_ids"))
        if ev != "off":
            extra += " %s/off=%s (same round)" % (ev, fratio(ev_ratio(ev, c, rnd)))
        w.writerow(["spread-events", "c-events-" + ev, c, "%.1f" % r["cps"] if r.get("cps") else "", "cycles/s",
                    fms(r.get("p50")), fms(r.get("p99")), fmt_states(e), e["sqlstates"].get("40P01", 0),
                    e["client_aborts"], extra])
    for (f, n), r in sorted(DL.items()):
        ch, rc = r["check"], r["recv"]
        w.writerow(["outbox-delivery", "c", f, "%.1f" % r["rate"] if r.get("rate") else "", "events/s delivered",
                    "", "", fmt_states(r["errors"]), 0, 0,
                    "in_flight=%d events=%d delivered=%s seconds=%s receiver_requests=%s distinct_ids=%s" % (
                        f, n, ch.get("delivered"), fnum(r.get("secs"), 2), rc.get("requests"),
                        rc.get("distinct_ids"))])

# ---------------------------------------------------------------- chart
dat = os.path.join(args.tmp, "chart.dat")
with open(dat, "w") as f:
    for sc in SCENARIOS:
        f.write("# %s\n" % sc)
        for c in CLIENTS:
            f.write("%d %s\n" % (c, " ".join(
                ("%.2f" % get(sc, i, c)) if get(sc, i, c) else "NaN" for i in IMPLS)))
        f.write("\n\n")
dat_ev = os.path.join(args.tmp, "chart-events.dat")
with open(dat_ev, "w") as f:
    f.write("# spread-events: clients, median cycles/s over the rounds of off write on\n")
    for c in EV_CLIENTS:
        f.write("%d %s\n" % (c, " ".join(("%.2f" % ev_median_cps(ev, c)) if ev_median_cps(ev, c) else "NaN"
                                         for ev in EVS)))
dat_dl = os.path.join(args.tmp, "chart-delivery.dat")
with open(dat_dl, "w") as f:
    f.write("# outbox-delivery: index label events/s\n")
    for k, ((fl, n), r) in enumerate(sorted(DL.items())):
        f.write('%d "%d in flight, %s events" %s\n' % (k, fl, fnum(n), ("%.2f" % r["rate"]) if r.get("rate") else "NaN"))
png = os.path.join(args.out, "throughput.png")
titles = {
    "hot": "hot: 1 SKU, add→order→paid (cycles/s)",
    "spread": "spread: 10,000 SKUs, 3 lines (cycles/s)",
    "scarce": "scarce: 100 units, sell-out rate (cycles/s)",
    "expiry": "expiry: %d expired orders, sweep rate (orders/s)" % args.expired,
}
gp = ["set terminal pngcairo size 2000,1000 font 'sans,10'" ,
      "set output '%s'" % png,
      "set multiplot layout 2,3 title 'shop benchmark: throughput vs clients (one run, one cluster)'",
      "set logscale x 2", "set xtics (1, 8, 32, 64)", "set xrange [0.8:80]", "set grid",
      "set key top left", "set xlabel 'clients'", "set yrange [0:*]"]
for k, sc in enumerate(SCENARIOS):
    if not any(get(sc, i, c) for i in IMPLS for c in CLIENTS):
        continue  # a partial run (BENCH_SCENARIOS) has nothing to draw here
    gp.append("set title \"%s\"" % titles[sc])
    gp.append("plot " + ", ".join(
        "'%s' index %d using 1:%d with linespoints lw 2 pt 7 title '%s'" % (dat, k, j + 2, i)
        for j, i in enumerate(IMPLS)))
if EV:
    gp.append("set title \"spread-events: spread for c, events off / written only / on (cycles/s, median of the rounds)\"")
    gp.append("plot '%s' using 1:2 with linespoints lw 2 pt 7 title 'events off (no endpoint)', "
              "'' using 1:3 with linespoints lw 2 pt 7 title 'events written, endpoint disabled', "
              "'' using 1:4 with linespoints lw 2 pt 7 title 'events on (worker delivering)'" % dat_ev)
if DL:
    gp += ["unset logscale x", "set xrange [-0.6:%f]" % (len(DL) - 0.4), "set xtics rotate by 0",
           "set xlabel ''", "set style fill solid 0.6", "set boxwidth 0.6", "unset key",
           "set title \"outbox-delivery: backlog delivered to the local receiver (events/s)\""]
    gp.append("plot '%s' using 1:3:xtic(2) with boxes" % dat_dl)
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
fl_orm = ratio(at("spread", "floor", c32), at("spread", "orm", c32))
fl_lim = ratio(at("spread", "floor", c32), at("spread", "limit", c32))
FLOOR_NOTE = "; the 5-call cycle's floor (no logic) reaches floor/%s = %s (see \"What the API's shape allows\")"
L.append("| spread: c ≥ 5× orm at %s clients | c/orm = %s%s | %s |" % (
    c32, fratio(r_orm), FLOOR_NOTE % ("orm", fratio(fl_orm)) if fl_orm else "",
    "yes" if r_orm and r_orm >= 5 else "**no**"))
L.append("| spread: c ≥ 0.6× limit at %s clients | c/limit = %s%s | %s |" % (
    c32, fratio(r_lim), FLOOR_NOTE % ("limit", fratio(fl_lim)) if fl_lim else "",
    "yes" if r_lim and r_lim >= 0.6 else "**no**"))
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
for i in IMPLS_ALL:
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
# spread-events: two targets, each judged on the median of the per-round
# ratios (write/off and on/off taken within a round) at every client count
for ev, label in (
        ("write", "cost of writing events: spread c with events written (endpoint subscribed, not delivering) "
                  "≥ 0.85× events off, median of rounds, every client count"),
        ("on", "events written and delivered on the same %d cores ≥ 0.85× off, median of rounds, every client "
               "count (the delivering runs share the cores with the worker and the Node receiver)"
         % (os.cpu_count() or 0))):
    meds = [(c,) + ev_median(ev, c) for c in EV_CLIENTS]
    meds = [m for m in meds if m[1] is not None]
    if not meds:
        continue
    below = [c for c, x, _ in meds if x < 0.85]
    L.append("| %s | %s/off, median (rounds): %s | %s |" % (
        label, ev, "; ".join("%d clients: **%.2f** (%s)" % (c, x, ", ".join("%.2f" % y for y in rs))
                             for c, x, rs in meds),
        "yes" if not below else "**no** (below at %s clients; see Outgoing events)" % ", ".join(map(str, below))))
if DL:
    bad = []
    for (f, n), r in sorted(DL.items()):
        rc = r["recv"]
        if not (r["done"] and rc.get("requests") == n and rc.get("distinct_ids") == n):
            bad.append("%d in flight/%d events" % (f, n))
    L.append("| outbox-delivery: every event delivered, receiver requests = distinct webhook-ids = events | "
             "%d runs; not so: %s | %s |" % (len(DL), ", ".join(bad) or "none", "yes" if not bad else "**no**"))
L.append("")
L.append("Note that a spread cycle is 5 API calls (3 cart adds) against 3 for hot, so hot/spread in cycles/s "
         "is not a pure lock-contention ratio; per API call hot/spread = (hot cycles/s × 3) / (spread cycles/s × 5): " +
         "; ".join("%d clients: %s" % (c, fratio(ratio((at("hot", "c", c) or 0) * 3, (at("spread", "c", c) or 0) * 5)))
                   for c in (32, 64)) + ".")
L.append("")

# spread-money (issue 13): the spread cycle for c without and with a coupon and tax
MONEY = {}  # (variant, clients) -> dict
for cdir in glob.glob(os.path.join(runs_root, "spread-money", "*", "*")):
    v, c = os.path.basename(os.path.dirname(cdir)), int(os.path.basename(cdir))
    txs = tx_log(cdir)
    r = {"errors": errors(cdir)}
    if txs:
        t0 = min(t[0] for t in txs)
        ok, _ = windowed(txs, t0 + args.warmup, t0 + args.warmup + args.duration)
        lats = [t[2] for t in ok]
        r.update(cps=len(ok) / args.duration, p50=pct(lats, 50), p99=pct(lats, 99))
    r["check"] = read(os.path.join(cdir, "check")).strip().split(",")
    MONEY[(v, c)] = r
if MONEY:
    L.append("## The money model's cost: spread with a coupon and tax (issue 13)")
    L.append("")
    L.append("spread for c twice, back to back: *plain* as in the spread scenario; *money* with a 10 % coupon "
             "(`shop_create_order(user, NULL, 'BENCH10')`) and KRW prices including 10 % VAT (`tax_included` "
             "computed per line, the rounding rule of README \"Shipping, tax and fulfilment\"). Checked after: "
             "invariant violations, PAID orders with a discount, with tax included.")
    L.append("")
    L.append("| clients | plain cycles/s | money cycles/s | money/plain | p50 / p99 ms plain | p50 / p99 ms money | errors | violations / discounted / taxed |")
    L.append("|---:|---:|---:|---:|---:|---:|---|---|")
    for c in sorted({k[1] for k in MONEY}):
        a, b = MONEY.get(("plain", c), {}), MONEY.get(("money", c), {})
        L.append("| %d | %s | %s | **%s** | %s / %s | %s / %s | %s | %s |" % (
            c, fnum(a.get("cps")), fnum(b.get("cps")), fratio(ratio(b.get("cps"), a.get("cps"))),
            fms(a.get("p50")), fms(a.get("p99")), fms(b.get("p50")), fms(b.get("p99")),
            fmt_states(b["errors"]) if b.get("errors") else "–", " / ".join(b.get("check", ["?"]))))
    L.append("")

# hot-SKU mode and statements per cycle (issue 12)
STMT = {}  # (scenario, impl) -> (top-level, inside, fk checks) per cycle
for line in read(os.path.join(args.tmp, "statements.csv")).splitlines():
    parts = line.split(",")
    if len(parts) == 5:
        try:
            STMT[(parts[0], parts[1])] = tuple(int(x or 0) / 50.0 for x in parts[2:])
        except ValueError:
            pass
if any(k[1] == HOT_IMPL for k in R) or STMT:
    L.append("## Flash sale: hot-SKU mode and statements per cycle (issue 12)")
    L.append("")
    L.append("**c-hot** is c's script on the hot (or scarce) SKU switched to %s buckets by "
             "`shop.shop_set_sku_mode` before the run (src/hot.c; README, \"Hot-SKU mode\"). The hot limit "
             "peer and c keep the SKU in its own row." % os.environ.get("BENCH_HOT_BUCKETS", "64"))
    L.append("")
    L.append("| target | measured | met? |")
    L.append("|---|---|---|")
    for c in (32, 64):
        rr = ratio(at("hot", HOT_IMPL, c), at("spread", "c", c))
        L.append("| hot (c-hot) ≥ 0.8× spread (c) at %d clients | %s / %s cycles/s = **%s** | %s |" % (
            c, fnum(at("hot", HOT_IMPL, c)), fnum(at("spread", "c", c)), fratio(rr),
            "yes" if rr is not None and rr >= 0.8 else "**no**"))
    rr = ratio(at("hot", HOT_IMPL, 64), at("hot", "limit", 64))
    L.append("| hot at 64 clients: c-hot ≥ 1.5× the hot limit peer | %s / %s cycles/s = **%s** | %s |" % (
        fnum(at("hot", HOT_IMPL, 64)), fnum(at("hot", "limit", 64)), fratio(rr),
        "yes" if rr is not None and rr >= 1.5 else "**no**"))
    hp, sp = get("hot", HOT_IMPL, 64, "p99"), get("spread", "c", 64, "p99")
    rr = ratio(hp, sp)
    L.append("| hot p99 at 64 clients (c-hot) ≤ 2× spread p99 (c) | %s / %s ms = **%s** | %s |" % (
        fms(hp), fms(sp), fratio(rr), "yes" if rr is not None and rr <= 2 else "**no**"))
    r_orm = ratio(at("spread", "c", c32), at("spread", "orm", c32))
    L.append("| spread: c ≥ 6× orm at %s clients | c/orm = %s%s | %s |" % (
        c32, fratio(r_orm), FLOOR_NOTE % ("orm", fratio(fl_orm)) if fl_orm else "",
        "yes" if r_orm and r_orm >= 6 else "**no**"))
    L.append("| spread: c ≥ 0.6× limit at %s clients | c/limit = %s%s | %s |" % (
        c32, fratio(r_lim), FLOOR_NOTE % ("limit", fratio(fl_lim)) if fl_lim else "",
        "yes" if r_lim and r_lim >= 0.6 else "**no**"))
    cb = ratio(at("spread", "c-buy", c32), at("spread", "limit", c32))
    if cb is not None:
        L.append("| (like with like, not the target's cycle) c-buy ≥ 0.6× limit at %s clients: both buy the 3 SKUs "
                 "without a cart in 2 calls | c-buy/limit = %s | %s |" % (
                     c32, fratio(cb), "yes" if cb >= 0.6 else "**no**"))
    st = STMT.get(("spread", "c"))
    L.append("| statements per spread cycle ≤ 12 (c; inside the 5 calls, without PostgreSQL's FK checks) | %s | %s |" % (
        "%.1f (+ %.1f FK checks, %.1f top-level calls)" % (st[1], st[2], st[0]) if st else "not counted",
        ("yes" if st[1] <= 12 else "**no**") if st else "–"))
    bad = []
    nrun = 0
    for i in IMPLS_ALL:
        for c in CLIENTS:
            ch = R.get(("scarce", i, c), {}).get("check")
            if not ch:
                continue
            nrun += 1
            if ch.get("sold_units") != str(args.scarce_units) or ch.get("consistent") != "t":
                bad.append("%s@%d: %s sold" % (i, c, ch.get("sold_units")))
    L.append("| scarce: exactly %d sold in every mode and implementation, books consistent | %d runs; otherwise: %s | %s |" % (
        args.scarce_units, nrun, ", ".join(bad) or "none", "yes" if nrun and not bad else "**no**"))
    L.append("")
    shape = [c for c in CLIENTS if R.get(("spread", "floor", c)) or R.get(("spread", "c-buy", c))]
    if shape:
        L.append("### What the API's shape allows (spread)")
        L.append("")
        L.append("The spread cycle of the API is 5 calls, so 5 transactions: 3 cart adds, create order, confirm. "
                 "The limit peer is 2 statements in 2 transactions with no cart. Two more runs, beside the others "
                 "(the implementations are the innermost loop): **floor** = the 5-call cart cycle with only its "
                 "writes and no logic (`bench/scripts/spread-floor.sql`: the limit peer's 2 statements, plus the "
                 "cart row with the first line, a line per later add, the cart closed by the order; no stock "
                 "check in the adds, no price lookup), the most any implementation of the API can do; **c-buy** "
                 "= c buying the same 3 SKUs without a cart (`shop_buy_now`, then `shop_confirm_paid`: 2 calls, "
                 "the limit peer's shape; `bench/scripts/spread-c-buy.sql`). When floor/limit is below 0.6 (or "
                 "floor/orm below 6), no implementation of the 5-call cycle meets that target; c/floor is how "
                 "close c comes to the floor, c-buy/limit compares like with like.")
        L.append("")
        L.append("| clients | limit (2 calls) | c-buy (2 calls) | floor (5 calls) | c (5 calls) | orm (5 tx) | floor / limit | floor / orm | c / floor | **c-buy / limit** | c-buy / orm | errors c-buy / floor | invariant violations c-buy / floor |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for c in shape:
            L.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | **%s** | %s | %s / %s | %s / %s |" % (
                c, fnum(at("spread", "limit", c)), fnum(at("spread", "c-buy", c)), fnum(at("spread", "floor", c)),
                fnum(at("spread", "c", c)), fnum(at("spread", "orm", c)),
                fratio(ratio(at("spread", "floor", c), at("spread", "limit", c))),
                fratio(ratio(at("spread", "floor", c), at("spread", "orm", c))),
                fratio(ratio(at("spread", "c", c), at("spread", "floor", c))),
                fratio(ratio(at("spread", "c-buy", c), at("spread", "limit", c))),
                fratio(ratio(at("spread", "c-buy", c), at("spread", "orm", c))),
                fmt_states(R.get(("spread", "c-buy", c), {}).get("errors", {"sqlstates": Counter(), "client_stops": 0, "client_aborts": 0})),
                fmt_states(R.get(("spread", "floor", c), {}).get("errors", {"sqlstates": Counter(), "client_stops": 0, "client_aborts": 0})),
                R.get(("spread", "c-buy", c), {}).get("invariants") or "?",
                R.get(("spread", "floor", c), {}).get("invariants") or "?"))
        L.append("")
    L.append("Hot throughput per client count (cycles/s; p99 ms):")
    L.append("")
    L.append("| clients | c (one row) | c-hot (buckets) | limit (one row) | c-hot / c | c-hot / limit | spread c | c-hot / spread c |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in CLIENTS:
        if not R.get(("hot", HOT_IMPL, c)):
            continue
        L.append("| %d | %s (%s) | %s (%s) | %s (%s) | %s | %s | %s | %s |" % (
            c, fnum(at("hot", "c", c)), fms(get("hot", "c", c, "p99")),
            fnum(at("hot", HOT_IMPL, c)), fms(get("hot", HOT_IMPL, c, "p99")),
            fnum(at("hot", "limit", c)), fms(get("hot", "limit", c, "p99")),
            fratio(ratio(at("hot", HOT_IMPL, c), at("hot", "c", c))),
            fratio(ratio(at("hot", HOT_IMPL, c), at("hot", "limit", c))),
            fnum(at("spread", "c", c)), fratio(ratio(at("hot", HOT_IMPL, c), at("spread", "c", c)))))
    L.append("")
    if STMT:
        L.append("Statements per cycle, counted by `pg_stat_statements` (`track = all`) over 50 cycles of one client "
                 "after 10 warm-up cycles, in a restart after the timed runs: *top-level* = what the client sends, "
                 "*inside* = the statements the calls run (the extension's SPI statements, PL/pgSQL's), *FK checks* "
                 "= PostgreSQL's own foreign-key checks, which also run as statements.")
        L.append("")
        L.append("| scenario | impl | top-level | inside | FK checks | all |")
        L.append("|---|---|---:|---:|---:|---:|")
        for (sc, i), (t, n, f) in sorted(STMT.items(), key=lambda kv: (kv[0][0] != "spread", IMPLS_ALL.index(kv[0][1])
                                                                         if kv[0][1] in IMPLS_ALL else 99)):
            L.append("| %s | %s | %.1f | %.1f | %.1f | %.1f |" % (sc, i, t, n, f, t + n + f))
        L.append("")

# outgoing events
if EV or DL:
    L.append("## Outgoing events (outbox and delivery worker)")
    L.append("")
    L.append("The cluster preloads shop (`shared_preload_libraries = 'shop'`, `shop.database_name = 'bench'`, "
             "`shop.outbox_allow_http_loopback = on`), so the delivery worker runs during the whole run. Every "
             "scenario above runs with no endpoint subscribed (events off: the emit statement finds no endpoint "
             "and writes nothing). The receiver is `bench/receiver.js` (Node's http module on 127.0.0.1, 200 to "
             "every POST, keep-alive; it counts requests and distinct `webhook-id` values).")
    L.append("")
if EV:
    nrounds = sorted({len(EV_ROUNDS[c]) for c in EV_CLIENTS})
    L.append("### spread-events: the spread scenario for c, events off vs written vs on, in rounds")
    L.append("")
    L.append("Per client count %s (`BENCH_EVENTS_ROUNDS`); a round is three runs back to back, each "
             "after the usual reset and %g s of warm-up + %g s measured: *off* = no endpoint (as in every other "
             "scenario); *write* = one endpoint subscribed to `*` at the receiver but disabled: the event and "
             "outbox rows are written, the worker sends nothing; *on* = the same endpoint enabled: the worker "
             "delivers while the clients run (`shop.outbox_max_in_flight` = 16, the default). The rounds follow "
             "each other (round 1 off, write, on; round 2 off, write, on; …), so a burst of outside load on this "
             "shared machine hits the runs of one round alike. A spread cycle writes 2 events (order.created, "
             "order.paid): 2 `shop.event` and 2 `shop.outbox` rows. write/off is the cost of writing the events; "
             "on/off adds delivering them on the same %d cores: the worker, its HTTP requests and the Node "
             "receiver take CPU from the server and pgbench during the on run, so on/off measures this machine "
             "doing both jobs, not the cost a separate receiver host would see. "
             "How the figures are computed: *cycles/s* = complete cycles in the measured window / %g s, per run; "
             "*write/off* and *on/off* of a round = that round's write (on) cycles/s ÷ the same round's off "
             "cycles/s; the **median** row = the median of the per-round ratios across the rounds (with an even "
             "number of rounds the mean of the two middle ones), NOT the ratio of median cycles/s; its cycles/s "
             "columns are the median of each variant's runs, for orientation only. The two targets (write/off "
             "≥ 0.85, on/off ≥ 0.85) are judged on the median row at every client count. "
             "After each on run the endpoint is disabled and the requests in flight recorded (1 s) before the "
             "counts are read. *worker CPU* = the worker process's CPU time / run time (1.00 = one of the %d "
             "cores); *receiver CPU* = the same for the Node receiver (CPU a receiver on another host would "
             "not take from the shop); *busy* = the machine's CPU busy share during the run; *WAL/cycle* = WAL bytes / cycles of "
             "the whole run; *claim ms* = one 16-row claim (`shop.outbox_claim`, planning included, rolled back) "
             "at the backlog the run left (the second of two, warm), with the statistics as found: those of the "
             "history analyzed at the reset (`bench/sql/setup.sql`: nearly every outbox row delivered; "
             "autoanalyze waits for 10 %% of the table to change). *server CPU ms/cycle* = the CPU time "
             "the server's processes (postmaster, backends, worker, background processes) used during the "
             "whole run / cycles of the whole run; its *write/off* and *on/off* = off's CPU per cycle ÷ write's "
             "(on's) in the same round, i.e. cycles per second of server CPU relative to off. Outside load that "
             "only takes CPU time away would lower cycles/s but leave the CPU per cycle alone; where the two "
             "ratios move together, the server itself spent more CPU per cycle in that run (at 32 clients on "
             "these cores a cycle's CPU is dominated by contention: about 3 times what one client needs). The "
             "targets are judged on cycles/s." % (
                 " / ".join(map(str, nrounds)) + (" round" if nrounds == [1] else " rounds"), args.warmup, args.duration, os.cpu_count() or 0, args.duration,
                 os.cpu_count() or 0))
    L.append("")
    L.append("| clients | round | off cycles/s | write cycles/s | on cycles/s | write/off | **on/off** | "
             "≥ 0.85? write / on | "
             "p50 / p99 ms off / on | events written (on) | delivered by the end (on) | backlog at the end (on) | "
             "receiver requests / distinct ids (on) | worker CPU write / on | receiver CPU on | busy off / write / on | "
             "WAL/cycle off / write / on | claim ms write / on | server CPU ms/cycle off / write / on | "
             "server CPU: write/off / on/off | errors off / write / on | invariant violations |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    def busy(r):
        return "–" if r.get("busy") is None else "%.0f %%" % (100 * r["busy"])
    def met(x):
        return "–" if x is None else ("yes" if x >= 0.85 else "**no**")
    for c in EV_CLIENTS:
        for k in EV_ROUNDS[c]:
            off, wr, on = (ev_run(ev, c, k) for ev in EVS)
            ch, rc = on.get("check", {}), on.get("recv", {})
            L.append("| %d | %d | %s | %s | %s | %s | %s | | %s / %s ; %s / %s | %s | %s | %s | %s / %s | %s / %s | "
                     "%s | %s / %s / %s | %s / %s / %s | %s / %s | %s / %s / %s | %s / %s | %s | %s |" % (
                c, k, fnum(off.get("cps"), 1), fnum(wr.get("cps"), 1), fnum(on.get("cps"), 1),
                fratio(ev_ratio("write", c, k)), fratio(ev_ratio("on", c, k)),
                fms(off.get("p50")), fms(off.get("p99")), fms(on.get("p50")), fms(on.get("p99")),
                fnum(to_int(ch.get("events"))), fnum(to_int(ch.get("delivered"))), fnum(to_int(ch.get("open"))),
                fnum(rc.get("requests")), fnum(rc.get("distinct_ids")),
                fnum(wr.get("worker_cores"), 2), fnum(on.get("worker_cores"), 2),
                fnum(on.get("receiver_cores"), 2),
                busy(off), busy(wr), busy(on),
                fnum(off.get("wal_per_cycle")), fnum(wr.get("wal_per_cycle")), fnum(on.get("wal_per_cycle")),
                wr.get("claim_ms", "–"), on.get("claim_ms", "–"),
                fnum(off.get("server_ms_per_cycle"), 2), fnum(wr.get("server_ms_per_cycle"), 2),
                fnum(on.get("server_ms_per_cycle"), 2),
                fratio(ev_cpu_ratio("write", c, k)), fratio(ev_cpu_ratio("on", c, k)),
                " / ".join(fmt_states(r["errors"]) if r else "–" for r in (off, wr, on)),
                " / ".join(r.get("invariants", "?") if r else "–" for r in (off, wr, on))))
        (mw, rws), (mo, ros) = ev_median("write", c), ev_median("on", c)
        (cw, _), (co, _) = ev_median("write", c, ev_cpu_ratio), ev_median("on", c, ev_cpu_ratio)
        L.append("| %d | **median of %d** | %s | %s | %s | **%s** | **%s** | %s / %s | | | | | | | | | | | | %s / %s | | |" % (
            c, max(len(ros), len(rws)),
            fnum(ev_median_cps("off", c), 1), fnum(ev_median_cps("write", c), 1), fnum(ev_median_cps("on", c), 1),
            fratio(mw), fratio(mo), met(mw), met(mo), fratio(cw), fratio(co)))
    L.append("")
    offreq = sum((r.get("recv", {}).get("requests") or 0) for (ev, _, _), r in EV.items() if ev in ("off", "write"))
    L.append("In the off and write runs (all rounds) the receiver got %d requests (none expected)." % offreq)
    L.append("")
if DL:
    L.append("### outbox-delivery: a backlog of events delivered to the local receiver")
    L.append("")
    L.append("Per run: after the reset, one endpoint at the receiver is subscribed and disabled, *events* "
             "order.created events are written (`shop_buy_now` on catalog SKUs, one statement), the tables "
             "analyzed and checkpointed, `shop.outbox_max_in_flight` set (ALTER SYSTEM + reload; the worker "
             "rereads it on SIGHUP), then `shop_enable_endpoint` wakes the worker. *time to deliver all* = from "
             "the enable to the last `delivered_at`; *delivered events/s* = events / that time; *claim ms* = one "
             "claim of *in flight* rows at the full backlog (the second of two, warm, rolled back; capped at 10 s for "
             "both), with the statistics as found (before the ANALYZE: those of the history) and after it (the "
             "delivery runs with these); "
             "*most at once* = the most "
             "requests open at the same time in the attempt log (checks the in-flight setting took effect). "
             "Events are written before and delivered afterwards: this is the worker's own rate, with no client "
             "load.")
    L.append("")
    L.append("| in flight | events | write s | claim ms as found / analyzed | first delivery after ms | time to deliver all s | "
             "**delivered events/s** | receiver requests | distinct webhook-ids | duplicates | failed attempts | "
             "most at once | worker CPU | all delivered? |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (f, n), r in sorted(DL.items()):
        ch, rc = r["check"], r["recv"]
        L.append("| %d | %s | %s | %s | %s | %s | **%s** | %s | %s | %s | %s | %s | %s | %s |" % (
            f, fnum(n), fnum(r.get("write_s"), 1), "%s / %s" % (r["claim_ms_as_found"], r["claim_ms"]), fnum(r.get("first_ms")),
            fnum(r.get("secs"), 2), fnum(r.get("rate")), fnum(rc.get("requests")), fnum(rc.get("distinct_ids")),
            fnum(rc.get("duplicates")), fnum(to_int(ch.get("failed_attempts"))),
            fnum(to_int(ch.get("max_concurrent"))), fnum(r.get("worker_cores"), 2),
            "yes" if r["done"] else "**no** (%s of %s; %s open after the cap)" % (
                fnum(r["delivered"]), fnum(n), ch.get("open"))))
    L.append("")

# details
L.append("## Details per run")
L.append("")
for sc in ("hot", "spread"):
    L.append("### %s" % sc)
    L.append("")
    L.append("| impl | clients | cycles/s | p50 ms | p99 ms | cycles measured | errors by SQLSTATE | failed tx (deadlock/serialization) | aborted clients | invariant violations after |")
    L.append("|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for i in IMPLS_ALL:
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
for i in IMPLS_ALL:
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

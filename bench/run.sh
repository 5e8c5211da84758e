#!/usr/bin/env bash
# bench/run.sh: the shop benchmark suite (issue 4).  Run it as `make bench`.
#
# One run on one fresh cluster: every scenario (hot, spread, scarce, expiry)
# for every implementation (c, plpgsql, orm, limit) at every client count,
# then the outbox scenarios (spread-events: spread for c with events off,
# written only and on, in interleaved rounds; outbox-delivery: a backlog of events delivered to the local receiver at
# 1 and 16 in flight), then the per-backend memory check, then
# bench/results/report.md and bench/results/throughput.png.  See
# bench/README.md.
#
# Settings (environment, defaults in brackets):
#   BENCH_PORT [55440]            port of the benchmark cluster
#   BENCH_DURATION [5]            measured seconds per hot/spread run
#   BENCH_WARMUP [1]              seconds run before the measured window
#   BENCH_CLIENTS ["1 8 32 64"]   client counts
#   BENCH_IMPLS ["c plpgsql orm limit c-hot c-buy floor"]  c-hot: c with the SKU in hot-SKU
#                                 mode (hot and scarce scenarios only; src/hot.c); c-buy: c
#                                 buying without a cart (shop_buy_now, then confirm: 2 calls,
#                                 the limit peer's shape); floor: the API's 5-call cart cycle
#                                 with only its writes, no logic (c-buy and floor: spread at
#                                 BENCH_SHAPE_CLIENTS only)
#   BENCH_SHAPE_CLIENTS ["32"]    client counts of the c-buy and floor runs
#   BENCH_HOT_BUCKETS [64]        buckets of the c-hot runs (shop_set_sku_mode; one per client at 64)
#   BENCH_EXPIRY_CLIENTS ["32"]   client counts of the expiry scenario's load
#   BENCH_SCARCE_CLIENTS ["8 32 64"]  client counts of the scarce scenario (1 buyer races no one)
#   BENCH_STATEMENTS [1]          count statements per cycle with pg_stat_statements (a
#                                 restart with it preloaded, after every timed run)
#   BENCH_SCENARIOS ["hot spread scarce expiry spread-money spread-events outbox-delivery http"]
#                                 spread-money: spread for c with a 10 % coupon and 10 % VAT
#                                 included, beside spread for c without (BENCH_MONEY_CLIENTS ["32"])
#   BENCH_EXPIRED [40000]         expired PENDING orders for the expiry scenario (the rate within
#                                 BENCH_SWEEP_CAP is what is measured: a sweep ends at the cap or
#                                 when none is left; c cleared 47,000-48,000 of 60,000 in 6 s)
#   BENCH_SWEEP_CAP [6]           most seconds one expiry sweep may take
#   BENCH_MEMORY_CALLS [6000]     API calls before the memory reading
#   BENCH_HISTORY [100000]        PAID orders (3 lines, from checked-out carts) loaded once
#   BENCH_EVENTS_CLIENTS ["8 32"] client counts of spread-events
#   BENCH_EVENTS_ROUNDS [5]       rounds of spread-events per client count; a round is
#                                 off, write, on back to back (3 runs of 1+5 s), and the
#                                 report takes the median of the per-round ratios
#   BENCH_OUTBOX_RUNS ["1:2000 16:5000"]  outbox-delivery runs, IN_FLIGHT:EVENTS
#   BENCH_OUTBOX_CAP [300]        most seconds one outbox-delivery run may take
#   BENCH_HTTP_CLIENTS [32], BENCH_HTTP_DURATION [10], BENCH_HTTP_PORT [18140]  the http scenario
#                                 (bench/http.sh: POST /rpc/buy_now through shop-httpd vs pgbench)
set -euo pipefail

started=$(date +%s.%N)
root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
out=$bench/results
tmp=$out/tmp

PORT=${BENCH_PORT:-55440}
DUR=${BENCH_DURATION:-5}
WARM=${BENCH_WARMUP:-1}
CLIENTS=${BENCH_CLIENTS:-"1 8 32 64"}
IMPLS=${BENCH_IMPLS:-"c plpgsql orm limit c-hot c-buy floor"}
SHAPE_CLIENTS=${BENCH_SHAPE_CLIENTS:-"32"}
HOT_BUCKETS=${BENCH_HOT_BUCKETS:-64}
EXPIRY_CLIENTS=${BENCH_EXPIRY_CLIENTS:-"32"}
SCARCE_CLIENTS=${BENCH_SCARCE_CLIENTS:-"8 32 64"}
STATEMENTS=${BENCH_STATEMENTS:-1}
SCENARIOS=${BENCH_SCENARIOS:-"hot spread scarce expiry spread-money spread-events outbox-delivery http"}
MONEY_CLIENTS=${BENCH_MONEY_CLIENTS:-"32"}
EXPIRED=${BENCH_EXPIRED:-40000}
SWEEP_CAP=${BENCH_SWEEP_CAP:-6}
SWEEP_PRE=3			# seconds of load before the sweep starts (1 s warm-up + baseline)
SWEEP_POST=1		# seconds of load kept after the sweep cap
MEMORY_CALLS=${BENCH_MEMORY_CALLS:-6000}
HISTORY=${BENCH_HISTORY:-100000}
EVENTS_CLIENTS=${BENCH_EVENTS_CLIENTS:-"8 32"}
EVENTS_ROUNDS=${BENCH_EVENTS_ROUNDS:-5}
case $EVENTS_ROUNDS in '' | *[!0-9]* | 0) echo "BENCH_EVENTS_ROUNDS must be a whole number >= 1, not '$EVENTS_ROUNDS'" >&2; exit 1 ;; esac
OUTBOX_RUNS=${BENCH_OUTBOX_RUNS:-"1:2000 16:5000"}
OUTBOX_CAP=${BENCH_OUTBOX_CAP:-300}
SCARCE_UNITS=100
SCARCE_CAP=20		# a scarce run ends when its clients have stopped; this is a safety cap

log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# --- dependencies (Debian 12; we are root on the benchmark machine)
pkgs=()
command -v pg_config >/dev/null || pkgs+=(postgresql-15 postgresql-server-dev-15)
command -v make >/dev/null && command -v gcc >/dev/null || pkgs+=(build-essential)
command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
command -v python3 >/dev/null || pkgs+=(python3)
command -v bc >/dev/null || pkgs+=(bc)
command -v node >/dev/null || pkgs+=(nodejs)	# the local webhook receiver
if [ ${#pkgs[@]} -gt 0 ]; then
	log "installing ${pkgs[*]}"
	if [ "$(id -u)" != 0 ]; then
		echo "missing packages ${pkgs[*]}; run as root or install them" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
bindir=$(pg_config --bindir)
export PATH="$bindir:$PATH"
command -v pgbench >/dev/null || { echo "pgbench not found in $bindir" >&2; exit 1; }

# --- build and install the extension into the server pg_config names
log "build and install the extension ($(pg_config --version), $(pg_config --pkglibdir))"
make -C "$root" -s -j"$(nproc)" >/dev/null
make -C "$root" -s install >/dev/null

# --- fresh cluster, in /tmp: the server runs as "postgres", which may not be
# able to reach a clone under /root
rm -rf "$tmp"
mkdir -p "$tmp/runs"
clusterdir=$(mktemp -d /tmp/shop-bench.XXXXXX)
chmod 755 "$clusterdir"
cluster=$clusterdir/cluster
receiver_pid=
cleanup() {
	if [ -n "$receiver_pid" ]; then kill "$receiver_pid" 2>/dev/null || true; fi
	bash "$bench/cluster.sh" stop "$cluster"
	rm -rf "$clusterdir"
}
trap cleanup EXIT
# The cluster preloads shop: its outbox delivery worker serves the database
# bench, which cluster.sh creates before the server starts.
log "start cluster in $cluster (port $PORT; shop preloaded, outbox worker for database bench)"
bash "$bench/cluster.sh" start "$cluster" "$PORT" bench
serverlog=$cluster/server.log
export PGHOST=$cluster PGPORT=$PORT PGUSER=postgres
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d bench)

"${PSQL[@]}" -f "$bench/sql/setup.sql" -f "$bench/peers/plpgsql.sql"
log "load $HISTORY history orders and their $((2 * HISTORY)) delivered events (realistic table sizes and statistics)"
"${PSQL[@]}" -c "CALL bench.load_history($HISTORY)" -c "VACUUM ANALYZE"

# The settings the report quotes.
{
	echo "command: make bench (bash bench/run.sh)"
	echo "BENCH_DURATION=$DUR BENCH_WARMUP=$WARM BENCH_CLIENTS=\"$CLIENTS\" BENCH_IMPLS=\"$IMPLS\" BENCH_SHAPE_CLIENTS=\"$SHAPE_CLIENTS\""
	echo "BENCH_SCENARIOS=\"$SCENARIOS\" BENCH_HISTORY=$HISTORY BENCH_EXPIRED=$EXPIRED BENCH_SWEEP_CAP=$SWEEP_CAP BENCH_MEMORY_CALLS=$MEMORY_CALLS BENCH_PORT=$PORT"
	echo "BENCH_EVENTS_CLIENTS=\"$EVENTS_CLIENTS\" BENCH_EVENTS_ROUNDS=$EVENTS_ROUNDS BENCH_OUTBOX_RUNS=\"$OUTBOX_RUNS\" BENCH_OUTBOX_CAP=$OUTBOX_CAP"
	echo "BENCH_HOT_BUCKETS=$HOT_BUCKETS BENCH_EXPIRY_CLIENTS=\"$EXPIRY_CLIENTS\" BENCH_SCARCE_CLIENTS=\"$SCARCE_CLIENTS\" BENCH_STATEMENTS=$STATEMENTS"
	echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (+ uncommitted changes)')"
	echo "machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr)"
	echo "server: $(postgres --version 2>/dev/null || "$bindir/postgres" --version)"
	echo "pgbench: $(pgbench --version)"
} >"$tmp/settings.txt"
"${PSQL[@]}" -At -F ' = ' -c "
	SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings
	 WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'wal_sync_method',
					'shared_buffers', 'wal_buffers', 'max_wal_size', 'checkpoint_timeout', 'jit',
					'max_connections', 'deadlock_timeout', 'autovacuum', 'work_mem',
					'shared_preload_libraries', 'shop.database_name', 'shop.outbox_allow_http_loopback',
					'shop.outbox_max_in_flight', 'shop.outbox_poll_interval')
	 ORDER BY name" >"$tmp/server-settings.txt"
log "settings:"
sed 's/^/    /' "$tmp/settings.txt" "$tmp/server-settings.txt"

query_mode() { if [ "$1" = orm ]; then echo simple; else echo prepared; fi; }
# want SCENARIO: whether this run includes it
want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# the script an implementation runs: c-hot is c's script on a SKU in hot mode
script_impl() { if [ "$1" = c-hot ]; then echo c; else echo "$1"; fi; }
# runs_in SCENARIO IMPL CLIENTS: whether the implementation runs there.
# hot-SKU mode is for one SKU: the hot and scarce scenarios.  c-buy and floor
# ask what the API's shape allows on spread (the targets' client counts).
runs_in() {
	case $2 in
	c-hot) [ "$1" = hot ] || [ "$1" = scarce ] ;;
	c-buy | floor) [ "$1" = spread ] && case " $SHAPE_CLIENTS " in *" $3 "*) true ;; *) false ;; esac ;;
	*) true ;;
	esac
}
# after reset_db: put the run's SKU in hot mode for c-hot
hot_mode() {
	if [ "$1" = c-hot ]; then
		"${PSQL[@]}" -c "SELECT FROM shop.shop_set_sku_mode($2, $HOT_BUCKETS)" -c "CHECKPOINT"
	fi
}

# Reset data and flush dirty pages, so every run starts from the same state
# and no checkpoint of the previous run lands in this one.
# The reset also removes the endpoint a run subscribed (events off) and its
# events.  `reset_db outbox` vacuums and analyzes the outbox tables too
# (only the outbox scenarios write to them): every outbox run starts with
# the statistics of the history (nearly every row delivered), as a running
# shop has them, whatever autoanalyze did during earlier runs.
reset_db() {
	local extra=()
	if [ "${1:-}" = outbox ]; then
		extra=(-c "VACUUM ANALYZE shop.event_endpoint, shop.event_endpoint_secret, shop.event, shop.outbox, shop.outbox_attempt")
	fi
	"${PSQL[@]}" -c "CALL bench.reset()" \
		-c "VACUUM ANALYZE shop.sku, shop.orders, shop.order_item, shop.stock_reservation, shop.cart, shop.cart_item" \
		"${extra[@]}" -c "CHECKPOINT"
}

# run_pgbench DIR SECONDS CLIENTS SCRIPT MODE [pgbench args...]
# Per-transaction log (tx.*), pgbench output, the server log written meanwhile
# (its SQLSTATEs) and the wall-clock start/end go to DIR.
run_pgbench() {
	local dir=$1 secs=$2 clients=$3 script=$4 mode=$5
	shift 5
	local threads=$((clients >= 2 ? 2 : 1))
	local off rc=0
	mkdir -p "$dir"
	off=$(stat -c %s "$serverlog")
	date +%s.%N >"$dir/start"
	(cd "$dir" && pgbench -n -d bench -M "$mode" -c "$clients" -j "$threads" -T "$secs" \
		--failures-detailed -l --log-prefix=tx -D n=0 "$@" -f "$bench/scripts/$script" \
		>pgbench.out 2>pgbench.err) || rc=$?
	date +%s.%N >"$dir/end"
	echo "$rc" >"$dir/rc"
	tail -c +$((off + 1)) "$serverlog" >"$dir/server.log"
}

hot_args=(-D sku=10001 "-D" "pname=Hot item" -D pcode=HOT-001 -D price=10000)
scarce_args=(-D sku=10002 "-D" "pname=Scarce item" -D pcode=SCARCE-001 -D price=10000)

# Implementations are the innermost loop: a burst of outside load on the
# machine then hits the runs of one scenario and client count alike, and
# cancels out in their ratios.
for sc in $SCENARIOS; do
	case $sc in hot | spread | scarce | expiry) ;; *) continue ;; esac
	clients=$CLIENTS
	[ "$sc" = expiry ] && clients=$EXPIRY_CLIENTS
	[ "$sc" = scarce ] && clients=$SCARCE_CLIENTS
	for c in $clients; do
		for impl in $IMPLS; do
			runs_in "$sc" "$impl" "$c" || continue
			mode=$(query_mode "$impl")
			simpl=$(script_impl "$impl")
			dir=$tmp/runs/$sc/$impl/$c
			case $sc in
			hot | spread)
				reset_db
				[ "$sc" = hot ] && hot_mode "$impl" 10001
				log "$sc $impl $c clients: ${WARM}s warm-up + ${DUR}s"
				if [ "$sc" = hot ]; then
					run_pgbench "$dir" $((WARM + DUR)) "$c" "hot-$simpl.sql" "$mode" "${hot_args[@]}"
				else
					run_pgbench "$dir" $((WARM + DUR)) "$c" "spread-$simpl.sql" "$mode"
				fi
				"${PSQL[@]}" -At -c "SELECT count(*) FROM shop.shop_check_invariants()" >"$dir/invariants"
				;;
			scarce)
				reset_db
				hot_mode "$impl" 10002
				log "scarce $impl $c clients: race for $SCARCE_UNITS units"
				run_pgbench "$dir" "$SCARCE_CAP" "$c" "hot-$simpl.sql" "$mode" "${scarce_args[@]}"
				"${PSQL[@]}" -A -F ',' -c "SELECT * FROM bench.scarce_check(10002, $SCARCE_UNITS)" >"$dir/check.csv"
				;;
			expiry)
				reset_db
				# (the tables load_expired wrote; a database-wide VACUUM ANALYZE would
				# also read the unchanged event and outbox history every time)
				"${PSQL[@]}" -c "CALL bench.load_expired($EXPIRED)" \
					-c "VACUUM ANALYZE shop.orders, shop.order_item, shop.stock_reservation, shop.sku" -c "CHECKPOINT"
				log "expiry $impl $c clients: sweep $EXPIRED expired orders (cap ${SWEEP_CAP}s) beside a spread load"
				run_pgbench "$dir/load" $((SWEEP_PRE + SWEEP_CAP + SWEEP_POST)) "$c" "spread-$impl.sql" "$mode" &
				loadpid=$!
				sleep "$SWEEP_PRE"
				run_pgbench "$dir/sweep" "$SWEEP_CAP" 1 "sweep-$impl.sql" "$mode"
				wait "$loadpid"
				"${PSQL[@]}" -A -F ',' -c "
					SELECT count(*) FILTER (WHERE status_reason = 'expired') AS cleared,
						   count(*) FILTER (WHERE status = 'PENDING' AND expires_at <= now()) AS left_expired,
						   (SELECT count(*) FROM shop.shop_check_invariants()) AS invariant_violations
					  FROM shop.orders" >"$dir/check.csv"
				;;
			esac
		done
	done
done

# spread-money: the spread cycle for c without and with a coupon (10 % off,
# applied at checkout) and tax (KRW prices include 10 % VAT, computed per
# line), back to back per client count: what the money model costs.
if want spread-money; then
	for c in $MONEY_CLIENTS; do
		for v in plain money; do
			dir=$tmp/runs/spread-money/$v/$c
			mkdir -p "$dir"
			reset_db
			script=spread-c.sql
			if [ "$v" = money ]; then
				"${PSQL[@]}" -c "SELECT FROM shop.shop_set_coupon('BENCH10', 'percent', 10)" \
					-c "SELECT FROM shop.shop_set_tax_setting('KRW', true, 'KR')" \
					-c "SELECT FROM shop.shop_set_tax_rate('KR', 10)"
				script=spread-c-money.sql
			fi
			log "spread-money $v $c clients: ${WARM}s warm-up + ${DUR}s"
			run_pgbench "$dir" $((WARM + DUR)) "$c" "$script" prepared
			"${PSQL[@]}" -At -F ',' -c "
				SELECT (SELECT count(*) FROM shop.shop_check_invariants()),
					   (SELECT count(*) FROM shop.orders WHERE status = 'PAID' AND discount > 0),
					   (SELECT count(*) FROM shop.orders WHERE status = 'PAID' AND tax_included > 0)" >"$dir/check"
		done
	done
fi

# --- outgoing events: the outbox and its delivery worker (scenarios
# spread-events and outbox-delivery).  The local receiver (bench/receiver.js)
# answers 200 to every POST and counts requests and distinct webhook-ids;
# it stops with this script (trap) or by itself once this script is gone.

# receiver_stats [reset]: the receiver's counters as JSON (then zeroed with reset)
receiver_stats() {
	python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().strip())' \
		"http://127.0.0.1:$receiver_port/stats${1:+?reset=1}"
}

# The worker's CPU time so far (utime + stime, clock ticks), and the
# machine's busy and total jiffies: read before and after a run.
worker_pid() { "${PSQL[@]}" -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'shop outbox worker'"; }
cpu_sample() {
	local pid=$1
	local w=-1
	if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
		w=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
	fi
	awk -v w="$w" '/^cpu / {busy = $2 + $3 + $4 + $7 + $8; total = busy + $5 + $6; print w, busy, total}' /proc/stat
}

# The receiver's CPU time so far (utime + stime, clock ticks; -1 if gone):
# on these shared cores it is CPU the on runs lose that a receiver on
# another host would not take.
receiver_ticks() {
	if [ -n "$receiver_pid" ] && [ -r "/proc/$receiver_pid/stat" ]; then
		sed 's/^.*) //' "/proc/$receiver_pid/stat" | awk '{print $12 + $13}'
	else
		echo -1
	fi
}

# The server's CPU time so far, in microseconds: the postmaster's own, its
# exited children's (cutime + cstime: a finished pgbench run's backends
# once reaped) and its live children's (/proc/PID/schedstat, in ns).  The
# difference of two readings is what the server used in between: a backend
# that starts and exits in between lands in the postmaster's cutime, one
# still running in the live sum.  Read again if a child was reaped while
# the live ones were being read (it would be counted twice or not at all).
server_cpu_us() {
	python3 - "$(head -1 "$cluster/data/postmaster.pid")" <<'PY'
import os, sys
pm = sys.argv[1]
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
def stat(pid):
    return open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
for _ in range(10):
    before = stat(pm)
    live = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if stat(pid)[1] == pm:
                live += int(open("/proc/%s/schedstat" % pid).read().split()[0]) / 1000
        except (OSError, IndexError, ValueError):
            pass
    after = stat(pm)
    if before[13:15] == after[13:15]:
        break
print(round(live + sum(int(x) for x in after[11:15]) * tick_us))
PY
}

# claim_ms FILE ENDPOINT ROWS: one claim of ROWS rows (bench.claim_ms) with
# the endpoint enabled in a transaction that rolls back; at most 10 s.
claim_ms() {
	"${PSQL[@]}" -At -c "BEGIN" -c "UPDATE shop.event_endpoint SET enabled = true WHERE id = $2" \
		-c "SET LOCAL statement_timeout = '10s'" -c "SELECT round(bench.claim_ms($3)::numeric, 1)" \
		-c "ROLLBACK" >"$1" 2>/dev/null || echo ">10000" >"$1"
}

# Set the worker's requests in flight (it rereads its settings on SIGHUP).
set_in_flight() {
	"${PSQL[@]}" -c "ALTER SYSTEM SET shop.outbox_max_in_flight = $1" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1
}

if want spread-events || want outbox-delivery; then
	node "$bench/receiver.js" "$tmp/receiver.port" $$ >"$tmp/receiver.log" 2>&1 &
	receiver_pid=$!
	for _ in $(seq 1 50); do [ -s "$tmp/receiver.port" ] && break; sleep 0.1; done
	receiver_port=$(cat "$tmp/receiver.port")
	receiver_url="http://127.0.0.1:$receiver_port/"
	ready=$("${PSQL[@]}" -At -c "SELECT worker_running FROM shop.outbox_health")
	if [ "$ready" != t ]; then
		echo "the shop outbox worker is not running (shared_preload_libraries?)" >&2
		exit 1
	fi
	log "receiver $receiver_url (pid $receiver_pid); outbox worker pid $(worker_pid)"
fi

# spread-events: the spread scenario for c, per client count in
# BENCH_EVENTS_ROUNDS rounds of three runs each:
#   off    no endpoint, as in every other scenario: nothing is written
#   write  one endpoint subscribed to every event type at the receiver, but
#          disabled: the events and outbox rows are written (the emit
#          statement does not look at enabled), the worker sends nothing
#   on     the same endpoint enabled: the worker delivers during the run, at
#          the default 16 in flight
# A spread cycle writes two events (order.created, order.paid): an event row
# and an outbox row each.  write separates the cost of writing them from the
# cost of delivering them beside the load.
# A round is off, write, on back to back, and the rounds follow each other
# (round 1 off/write/on, round 2 off/write/on, ...): a burst of outside load
# on this noisy machine then hits neighbouring runs alike.  report.py takes
# write/off and on/off within each round and the median across the rounds.
if want spread-events; then
	for c in $EVENTS_CLIENTS; do
		for round in $(seq 1 "$EVENTS_ROUNDS"); do
			for ev in off write on; do
				dir=$tmp/runs/spread-events/$ev/$c/$round
				mkdir -p "$dir"
				reset_db outbox
				if [ "$ev" != off ]; then
					"${PSQL[@]}" -At -c "SELECT bench.subscribe('$receiver_url')" >"$dir/endpoint"
				fi
				if [ "$ev" = write ]; then
					"${PSQL[@]}" -c "UPDATE shop.event_endpoint SET enabled = false WHERE id = $(cat "$dir/endpoint")"
				fi
				receiver_stats reset >/dev/null
				log "spread-events $ev $c clients, round $round of $EVENTS_ROUNDS: ${WARM}s warm-up + ${DUR}s"
				wpid=$(worker_pid)
				"${PSQL[@]}" -At -c "SELECT pg_current_wal_lsn()" >"$dir/wal_start"
				cpu_sample "$wpid" >"$dir/cpu_start"
				server_cpu_us >"$dir/server_cpu_start"
				receiver_ticks >"$dir/receiver_cpu_start"
				run_pgbench "$dir" $((WARM + DUR)) "$c" "spread-c.sql" prepared
				receiver_ticks >"$dir/receiver_cpu_end"
				server_cpu_us >"$dir/server_cpu_end"
				cpu_sample "$wpid" >"$dir/cpu_end"
				"${PSQL[@]}" -At -c "SELECT pg_current_wal_lsn() - '$(cat "$dir/wal_start")'::pg_lsn" >"$dir/wal_bytes"
				if [ "$ev" = on ]; then
					# stop delivering; the requests in flight finish and are recorded
					"${PSQL[@]}" -c "UPDATE shop.event_endpoint SET enabled = false WHERE id = $(cat "$dir/endpoint")"
					sleep 1
				fi
				"${PSQL[@]}" -A -F ',' -c "SELECT * FROM bench.outbox_check()" >"$dir/check.csv"
				receiver_stats >"$dir/receiver.json"
				"${PSQL[@]}" -At -c "SELECT count(*) FROM shop.shop_check_invariants()" >"$dir/invariants"
				if [ "$ev" != off ]; then
					# one claim at the backlog the run left, statistics as found
					claim_ms "$dir/claim_ms" "$(cat "$dir/endpoint")" 16
				fi
			done
		done
	done
fi

# outbox-delivery: per IN_FLIGHT:EVENTS, EVENTS order.created events are
# written (shop_buy_now, one statement) while the receiver's endpoint is
# disabled; one claim is timed with the statistics as found (those of the
# history: nearly every row delivered) and again after the tables are
# analyzed; a checkpoint; then the worker gets shop.outbox_max_in_flight =
# IN_FLIGHT and shop_enable_endpoint wakes it.  Measured: from that commit to
# the last delivery (statistics analyzed, as a shop that ran ANALYZE would
# have them).
if want outbox-delivery; then
	for spec in $OUTBOX_RUNS; do
		f=${spec%%:*}
		n=${spec##*:}
		dir=$tmp/runs/outbox-delivery/$f/$n
		mkdir -p "$dir"
		reset_db outbox
		log "outbox-delivery: write $n events, then deliver them with $f in flight (cap ${OUTBOX_CAP}s)"
		ep=$("${PSQL[@]}" -At -c "SELECT bench.subscribe('$receiver_url')")
		echo "$ep" >"$dir/endpoint"
		"${PSQL[@]}" -c "UPDATE shop.event_endpoint SET enabled = false WHERE id = $ep"
		t0=$(date +%s.%N)
		"${PSQL[@]}" -c "SELECT count(*) FROM (SELECT shop.shop_buy_now('obx' || g,
				jsonb_build_array(jsonb_build_object('sku_id', 1 + g % 10000, 'qty', 1))) FROM generate_series(1, $n) g) s" >/dev/null
		echo "$(date +%s.%N) - $t0" | bc >"$dir/write_s"
		queued=$("${PSQL[@]}" -At -c "SELECT count(*) FROM shop.outbox WHERE endpoint_id = $ep AND state = 'queued'")
		if [ "$queued" != "$n" ]; then
			log "outbox-delivery: $queued queued rows for $n events (are rows still written for a disabled endpoint?)"
		fi
		claim_ms "$dir/claim_ms_as_found" "$ep" "$f"
		"${PSQL[@]}" -c "VACUUM ANALYZE shop.orders, shop.order_item, shop.stock_reservation, shop.sku, shop.event, shop.outbox"
		claim_ms "$dir/claim_ms" "$ep" "$f"
		"${PSQL[@]}" -c "CHECKPOINT"
		set_in_flight "$f"
		receiver_stats reset >/dev/null
		wpid=$(worker_pid)
		off=$(stat -c %s "$serverlog")
		cpu_sample "$wpid" >"$dir/cpu_start"
		date +%s.%N >"$dir/start"
		"${PSQL[@]}" -At -c "SELECT extract(epoch FROM clock_timestamp()) FROM (SELECT shop.shop_enable_endpoint($ep)) s" >"$dir/enabled_at"
		while :; do
			open=$("${PSQL[@]}" -At -c "SELECT count(*) FROM shop.outbox WHERE endpoint_id = $ep AND state IN ('queued', 'in_flight', 'failed')")
			[ "$open" = 0 ] && break
			if [ "$(echo "$(date +%s.%N) - $(cat "$dir/start") > $OUTBOX_CAP" | bc)" = 1 ]; then
				log "outbox-delivery: $open rows still open after ${OUTBOX_CAP}s"
				break
			fi
			sleep 0.5
		done
		date +%s.%N >"$dir/end"
		cpu_sample "$wpid" >"$dir/cpu_end"
		tail -c +$((off + 1)) "$serverlog" >"$dir/server.log"
		"${PSQL[@]}" -c "UPDATE shop.event_endpoint SET enabled = false WHERE id = $ep"
		"${PSQL[@]}" -A -F ',' -c "SELECT *, extract(epoch FROM first_attempt_at) AS first_attempt_epoch,
				extract(epoch FROM last_delivered_at) AS last_delivered_epoch FROM bench.outbox_check()" >"$dir/check.csv"
		receiver_stats >"$dir/receiver.json"
	done
	"${PSQL[@]}" -c "ALTER SYSTEM RESET shop.outbox_max_in_flight" -c "SELECT pg_reload_conf()" >/dev/null
fi

# http: POST /rpc/buy_now through shop-httpd (wrk) vs the same call by
# pgbench, in this run (bench/http.sh; bench/results/http.md)
if want http; then
	bash "$bench/http.sh" "$tmp/runs/http" "$out" || log "http scenario failed (see $tmp/runs/http)"
fi

# --- memory of one backend over many calls (c and plpgsql keep plans per backend)
mem_script() {
	local schema=$1 calls=$2 marks=$3
	local cycles=$(((calls + 2) / 3)) i
	echo "\\set QUIET on"
	for ((i = 1; i <= cycles; i++)); do
		echo "SELECT $schema.shop_cart_add('mem$i', 10001, 1) \\g /dev/null"
		echo "SELECT id AS oid FROM $schema.shop_create_order('mem$i') \\gset"
		echo "SELECT $schema.shop_confirm_paid(:oid, 'tx_mem') \\g /dev/null"
		case " $marks " in *" $i "*)
			echo "SELECT format('MEM %s %s %s %s %s', $((i * 3)), sum(total_bytes), sum(used_bytes), count(*),"
			echo "  (SELECT string_agg(l, ' ') FROM regexp_split_to_table(pg_read_file('/proc/self/status'), E'\\n') l"
			echo "    WHERE l ~ '^(VmHWM|RssAnon):')) FROM pg_backend_memory_contexts;"
			;;
		esac
	done
}
if [ "$MEMORY_CALLS" -gt 0 ]; then
	for impl in c plpgsql; do
		schema=shop
		[ "$impl" = plpgsql ] && schema=shop_plpgsql
		reset_db
		log "memory $impl: $MEMORY_CALLS calls in one backend"
		cycles=$(((MEMORY_CALLS + 2) / 3))
		mem_script "$schema" "$MEMORY_CALLS" "1 $((cycles / 10)) $((cycles / 2)) $cycles" >"$tmp/mem-$impl.sql"
		"${PSQL[@]}" -At -f "$tmp/mem-$impl.sql" | grep '^MEM ' >"$tmp/mem-$impl.txt"
	done
fi

# --- statements per cycle: every statement each implementation runs for one
# cycle (pg_stat_statements with track = all: the top-level calls, the
# statements inside them, and PostgreSQL's own foreign-key checks, which
# run as statements too), after the timed runs so that loading
# pg_stat_statements costs them nothing.  50 cycles by one client after a
# warm-up of 10 in the same backend (plans kept, as in the timed runs).
if [ "$STATEMENTS" = 1 ]; then
	log "statements per cycle (restart with pg_stat_statements)"
	bash "$bench/cluster.sh" count-statements "$cluster"
	"${PSQL[@]}" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
	: >"$tmp/statements.csv"
	for sc in spread hot; do
		for impl in $IMPLS; do
			[ "$impl" = c-hot ] && [ "$sc" != hot ] && continue
			# c-buy's and floor's statements are their scripts' (2 and 5 calls):
			# not counted, to keep the run under 15 minutes
			case $impl in c-buy | floor) continue ;; esac
			simpl=$(script_impl "$impl")
			reset_db
			[ "$sc" = hot ] && hot_mode "$impl" 10001
			args=()
			[ "$sc" = hot ] && args=("${hot_args[@]}")
			# one pgbench backend: 10 cycles, the reset, 50 cycles counted
			# (the reset's own executions are left out below)
			{
				cat "$bench/scripts/$sc-$simpl.sql"
				echo 'SELECT 1 FROM pg_stat_statements_reset() WHERE :n = 10;'
			} >"$tmp/stmt-$sc-$impl.sql"
			(cd "$tmp" && pgbench -n -d bench -M "$(query_mode "$impl")" -c 1 -t 60 -D n=0 "${args[@]}" \
				-f "$tmp/stmt-$sc-$impl.sql" >/dev/null 2>"$tmp/stmt-$sc-$impl.err") ||
				log "statements $sc $impl: pgbench failed (see $tmp/stmt-$sc-$impl.err)"
			"${PSQL[@]}" -At -F ',' -c "
				SELECT '$sc', '$impl',
					   sum(calls) FILTER (WHERE toplevel),
					   sum(calls) FILTER (WHERE NOT toplevel AND query NOT LIKE '%FOR KEY SHARE OF x%'),
					   sum(calls) FILTER (WHERE NOT toplevel AND query LIKE '%FOR KEY SHARE OF x%')
				  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
				 WHERE d.datname = 'bench' AND query NOT LIKE '%pg_stat_statements%'
				   AND query NOT LIKE '%outbox_claim%' AND query NOT LIKE '%outbox_attempt%'" >>"$tmp/statements.csv"
		done
	done
fi

log "report"
BENCH_HOT_BUCKETS=$HOT_BUCKETS python3 "$bench/report.py" --tmp "$tmp" --out "$out" --started "$started" \
	--duration "$DUR" --warmup "$WARM" --expired "$EXPIRED" --scarce-units "$SCARCE_UNITS" \
	--sweep-pre "$SWEEP_PRE"
log "done in $(echo "$(date +%s.%N) - $started" | bc | cut -d. -f1) s: $out/report.md, $out/throughput.png"

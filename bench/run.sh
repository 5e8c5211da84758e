#!/usr/bin/env bash
# bench/run.sh: the shop benchmark suite (issue 4).  Run it as `make bench`.
#
# One run on one fresh cluster: every scenario (hot, spread, scarce, expiry)
# for every implementation (c, plpgsql, orm, limit) at every client count,
# then the per-backend memory check, then bench/results/report.md and
# bench/results/throughput.png.  See bench/README.md.
#
# Settings (environment, defaults in brackets):
#   BENCH_PORT [55440]            port of the benchmark cluster
#   BENCH_DURATION [5]            measured seconds per hot/spread run
#   BENCH_WARMUP [1]              seconds run before the measured window
#   BENCH_CLIENTS ["1 8 32 64"]   client counts
#   BENCH_IMPLS ["c plpgsql orm limit"]
#   BENCH_SCENARIOS ["hot spread scarce expiry"]
#   BENCH_EXPIRED [100000]        expired PENDING orders for the expiry scenario
#   BENCH_SWEEP_CAP [6]           most seconds one expiry sweep may take
#   BENCH_MEMORY_CALLS [10000]    API calls before the memory reading
#   BENCH_HISTORY [100000]        PAID orders (3 lines, from checked-out carts) loaded once
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
IMPLS=${BENCH_IMPLS:-"c plpgsql orm limit"}
SCENARIOS=${BENCH_SCENARIOS:-"hot spread scarce expiry"}
EXPIRED=${BENCH_EXPIRED:-100000}
SWEEP_CAP=${BENCH_SWEEP_CAP:-6}
SWEEP_PRE=3			# seconds of load before the sweep starts (1 s warm-up + baseline)
SWEEP_POST=1		# seconds of load kept after the sweep cap
MEMORY_CALLS=${BENCH_MEMORY_CALLS:-10000}
HISTORY=${BENCH_HISTORY:-100000}
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
make -C "$root" -s >/dev/null
make -C "$root" -s install >/dev/null

# --- fresh cluster, in /tmp: the server runs as "postgres", which may not be
# able to reach a clone under /root
rm -rf "$tmp"
mkdir -p "$tmp/runs"
clusterdir=$(mktemp -d /tmp/shop-bench.XXXXXX)
chmod 755 "$clusterdir"
cluster=$clusterdir/cluster
cleanup() { bash "$bench/cluster.sh" stop "$cluster"; rm -rf "$clusterdir"; }
trap cleanup EXIT
# The cluster preloads shop: its outbox delivery worker serves the database
# bench, which cluster.sh creates before the server starts.
log "start cluster in $cluster (port $PORT; shop preloaded, outbox worker for database bench)"
bash "$bench/cluster.sh" start "$cluster" "$PORT" bench
serverlog=$cluster/server.log
export PGHOST=$cluster PGPORT=$PORT PGUSER=postgres
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d bench)

"${PSQL[@]}" -f "$bench/sql/setup.sql" -f "$bench/peers/plpgsql.sql"
log "load $HISTORY history orders (realistic table sizes and statistics)"
"${PSQL[@]}" -c "CALL bench.load_history($HISTORY)" -c "VACUUM ANALYZE"

# The settings the report quotes.
{
	echo "command: make bench (bash bench/run.sh)"
	echo "BENCH_DURATION=$DUR BENCH_WARMUP=$WARM BENCH_CLIENTS=\"$CLIENTS\" BENCH_IMPLS=\"$IMPLS\""
	echo "BENCH_SCENARIOS=\"$SCENARIOS\" BENCH_HISTORY=$HISTORY BENCH_EXPIRED=$EXPIRED BENCH_SWEEP_CAP=$SWEEP_CAP BENCH_MEMORY_CALLS=$MEMORY_CALLS BENCH_PORT=$PORT"
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

# Reset data and flush dirty pages, so every run starts from the same state
# and no checkpoint of the previous run lands in this one.
reset_db() {
	"${PSQL[@]}" -c "CALL bench.reset()" \
		-c "VACUUM ANALYZE shop.sku, shop.orders, shop.order_item, shop.stock_reservation, shop.cart, shop.cart_item" \
		-c "CHECKPOINT"
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
	for c in $CLIENTS; do
		for impl in $IMPLS; do
			mode=$(query_mode "$impl")
			dir=$tmp/runs/$sc/$impl/$c
			case $sc in
			hot | spread)
				reset_db
				log "$sc $impl $c clients: ${WARM}s warm-up + ${DUR}s"
				if [ "$sc" = hot ]; then
					run_pgbench "$dir" $((WARM + DUR)) "$c" "hot-$impl.sql" "$mode" "${hot_args[@]}"
				else
					run_pgbench "$dir" $((WARM + DUR)) "$c" "spread-$impl.sql" "$mode"
				fi
				"${PSQL[@]}" -At -c "SELECT count(*) FROM shop.shop_check_invariants()" >"$dir/invariants"
				;;
			scarce)
				reset_db
				log "scarce $impl $c clients: race for $SCARCE_UNITS units"
				run_pgbench "$dir" "$SCARCE_CAP" "$c" "hot-$impl.sql" "$mode" "${scarce_args[@]}"
				"${PSQL[@]}" -A -F ',' -c "SELECT * FROM bench.scarce_check(10002, $SCARCE_UNITS)" >"$dir/check.csv"
				;;
			expiry)
				reset_db
				"${PSQL[@]}" -c "CALL bench.load_expired($EXPIRED)" -c "VACUUM ANALYZE" -c "CHECKPOINT"
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

log "report"
python3 "$bench/report.py" --tmp "$tmp" --out "$out" --started "$started" \
	--duration "$DUR" --warmup "$WARM" --expired "$EXPIRED" --scarce-units "$SCARCE_UNITS" \
	--sweep-pre "$SWEEP_PRE"
log "done in $(echo "$(date +%s.%N) - $started" | bc | cut -d. -f1) s: $out/report.md, $out/throughput.png"

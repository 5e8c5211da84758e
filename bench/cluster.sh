#!/usr/bin/env bash
# bench/cluster.sh: the benchmark's own throwaway cluster.
#
#   bash bench/cluster.sh start DIR PORT [DB]   initdb (fresh), create database DB, start
#   bash bench/cluster.sh count-statements DIR   restart with pg_stat_statements (track = all)
#   bash bench/cluster.sh stop DIR
#
# Runs the server as the unprivileged user "postgres" when called as root.
# Durability stays ON (fsync, synchronous_commit, full_page_writes): a shop
# that loses a paid order on power loss is not a shop.  The other settings
# only keep checkpoints and JIT out of the measurements.
#
# shop is preloaded, so its outbox delivery worker runs for database DB
# (default bench; the worker waits until the extension is installed there)
# and may send plain http:// to loopback (the benchmark's local receiver,
# bench/receiver.js).  With no endpoint subscribed it sends nothing.
set -euo pipefail

action=$1
dir=$2
port=${3:-55440}
db=${4:-bench}
bindir=$(pg_config --bindir)

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
	as_pg test ! -e "$dir/data" || { echo "$dir/data exists" >&2; exit 1; }
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
	as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
	# The worker's database exists before the server starts (else the worker's
	# first start fails with "database does not exist" and retries 5 s later).
	echo "CREATE DATABASE $db" | as_pg "$bindir/postgres" --single -D "$dir/data" postgres >"$dir/createdb.log" 2>&1
	cat >>"$dir/data/postgresql.conf" <<CONF
# --- shop benchmark settings (bench/cluster.sh)
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
max_connections = 100
shared_buffers = 1GB
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
wal_buffers = 16MB
max_wal_size = 8GB
checkpoint_timeout = 30min
jit = off
deadlock_timeout = 1s
log_line_prefix = '%m [%p] %e '
log_min_messages = warning
log_min_error_statement = error
log_lock_waits = off
shared_preload_libraries = 'shop'
shop.database_name = '$db'
shop.outbox_allow_http_loopback = on
CONF
	as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	;;
count-statements)
	# a restart with pg_stat_statements preloaded, counting nested statements
	# (bench/run.sh counts statements per cycle after the timed runs)
	cat >>"$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'shop, pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_utility = off
CONF
	as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 restart >/dev/null
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
	;;
*)
	echo "usage: $0 start DIR [PORT [DB]] | count-statements DIR | stop DIR" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# bench/cluster.sh: the benchmark's own throwaway cluster.
#
#   bash bench/cluster.sh start DIR PORT   initdb (fresh) and start; prints the settings
#   bash bench/cluster.sh stop DIR
#
# Runs the server as the unprivileged user "postgres" when called as root.
# Durability stays ON (fsync, synchronous_commit, full_page_writes): a shop
# that loses a paid order on power loss is not a shop.  The other settings
# only keep checkpoints and JIT out of the measurements.
set -euo pipefail

action=$1
dir=$2
port=${3:-55440}
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
CONF
	as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	fi
	;;
*)
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster with pg_cron preloaded.
#
#   test/cluster.sh start DIR PORT    initdb (if needed) and start in DIR
#   test/cluster.sh stop DIR
#
# Runs the server as the unprivileged user "postgres" when called as root
# (PostgreSQL refuses to run as root).  The socket lives in DIR.
set -euo pipefail

action=$1
dir=$2
port=${3:-54329}
bindir=$(pg_config --bindir)

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		mkdir -p "$dir"
		[ "$(id -u)" = 0 ] && chown postgres: "$dir"
		as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
		cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
fsync = on
max_connections = 120
max_prepared_transactions = 10
log_line_prefix = '%m [%p] %q%a '
CONF
	fi
	as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	;;
stop)
	[ -f "$dir/data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
	;;
*)
	echo "usage: $0 start|stop DIR [PORT]" >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# shop-httpd's tests: a throwaway cluster of their own (the restart test
# restarts it), the fixture schema and roles, then node's test runner over
# test/http/*.test.js, one file at a time.  Prints node's TAP summary
# ("# pass N", "# fail N"), which test/run-all.sh counts.
#
#   bash test/http/run.sh            (shop installed, node_modules present)
#   SHOP_HTTP_PGPORT=55431 SHOP_HTTP_PORT=18110 SHOP_HTTPD=path/to/shop-httpd
set -uo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$dir/../.." && pwd)
pgport=${SHOP_HTTP_PGPORT:-55431}
work=$(mktemp -d /tmp/shop-httpd-tests.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
cluster="$work/cluster"
cleanup() { bash "$root/test/cluster.sh" stop "$cluster"; rm -rf "$work"; }
trap cleanup EXIT

if ! bash "$root/test/cluster.sh" start "$cluster" "$pgport"; then
	cat "$cluster/server.log" 2>/dev/null
	echo "# pass 0"
	echo "# fail 1"
	exit 1
fi
export HTTPD_TEST_PGHOST="$cluster" HTTPD_TEST_PGPORT="$pgport" HTTPD_TEST_DATADIR="$cluster/data"
if ! psql -X -q -h "$cluster" -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE EXTENSION IF NOT EXISTS pg_cron" -c "CREATE EXTENSION IF NOT EXISTS shop" \
	-f "$dir/fixture.sql" >"$work/setup.log" 2>&1; then
	cat "$work/setup.log"
	echo "# pass 0"
	echo "# fail 1"
	exit 1
fi
cd "$dir"
node --test --test-concurrency=1 --test-reporter=tap ./*.test.js

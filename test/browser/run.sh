#!/usr/bin/env bash
# The storefront and operator pages (web/) in a real browser: a throwaway
# cluster of their own, shop with the README's roles (and a second
# authenticator whose orders hold for seconds, for the expiry test), the mock
# payment provider and shop-httpd serving web/ are started by each test file
# (lib.js); Debian's Chromium driven by playwright-core.  Prints node's TAP
# summary ("# pass N", "# fail N"), which test/run-all.sh counts.
#
#   bash test/browser/run.sh     (shop installed, node_modules present, chromium)
#   SHOP_BROWSER_PGPORT=55433 SHOP_BROWSER_PORT=18130 SHOP_HTTPD=path/to/shop-httpd
set -uo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$dir/../.." && pwd)
pgport=${SHOP_BROWSER_PGPORT:-55433}
work=$(mktemp -d /tmp/shop-browser-tests.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres: "$work"
cluster="$work/cluster"
cleanup() { bash "$root/test/cluster.sh" stop "$cluster"; rm -rf "$work"; }
trap cleanup EXIT

failed_setup() { cat "$@" 2>/dev/null; echo "# pass 0"; echo "# fail 1"; exit 1; }

bash "$root/test/cluster.sh" start "$cluster" "$pgport" || failed_setup "$cluster/server.log"
# start_payment calls the mock provider over plain http on loopback
echo "shop.outbox_allow_http_loopback = on" >>"$cluster/data/postgresql.conf"
psql=(psql -X -q -h "$cluster" -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -c "SELECT pg_reload_conf()" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
	-c "CREATE EXTENSION IF NOT EXISTS shop" -f "$dir/fixture.sql" >"$work/setup.log" 2>&1 ||
	failed_setup "$work/setup.log"
export BROWSER_TEST_PGHOST="$cluster" BROWSER_TEST_PGPORT="$pgport"
cd "$dir"
node --test --test-concurrency=1 --test-reporter=tap ./*.test.js

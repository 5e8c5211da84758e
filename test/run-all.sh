#!/usr/bin/env bash
# Run every test kind of the shop extension and print "total: N passed, N failed".
#
#   bash test/run-all.sh
#
# Builds with warnings as errors (COPT=-Werror) and installs (root, or a user who may write
# to the server's lib and share dirs), then, as the unprivileged user
# "postgres", starts a throwaway cluster with pg_cron preloaded and runs:
#   pg_regress   sql/*.sql            against expected/*.out
#   isolation    test/specs/*.spec    against test/expected/*.out
#   pgTAP        test/pgtap/*.sql     with pg_prove
#   Perl TAP     test/t/*.pl          with prove (own clusters, PostgreSQL::Test::Cluster)
#   shop-httpd   test/http/*.test.js  node --test (own cluster on SHOP_HTTP_PGPORT, default
#                                     port + 1; daemons on SHOP_HTTP_PORT + 1..9, default 18110)
#   browser      test/browser/*.test.js  node --test: web/ in Debian's Chromium via playwright-core
#                                     (own cluster on SHOP_BROWSER_PGPORT, default port + 2;
#                                     shop-httpd + mock provider on SHOP_BROWSER_PORT + 0..7,
#                                     default 18130)
# It stops the cluster and exits non-zero when anything failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/test/install-deps.sh" || exit 1
# the outbox tests' receiver verifies deliveries with the npm package
# standardwebhooks (installed before the tree is copied for the test user)
bash "$root/test/receiver/install.sh" || exit 1
# shop-httpd's tests use the real PostgREST client, @supabase/postgrest-js
bash "$root/test/http/install.sh" || exit 1
# the storefront's browser tests drive Debian's chromium with playwright-core
bash "$root/test/browser/install.sh" || exit 1
bindir=$(pg_config --bindir)
pgxs_dir=$(dirname "$(pg_config --pgxs)")/..
export PATH="$bindir:$PATH"
port=${SHOP_TEST_PORT:-54329}

passed=0
failed=0
kind=setup
failures=""
# count PASSED FAILED: add to the totals; a kind with failures is named again at the end
count() {
	passed=$((passed + $1)); failed=$((failed + $2))
	if [ "$2" -gt 0 ]; then failures="$failures$kind: $2 failed"$'\n'; fi
}
# section NAME: print the heading and remember which kind is running
section() { kind=$1; echo "== $1"; }

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env PATH="$PATH" "$@"; else "$@"; fi
}

echo "== build and install"
make -C "$root" -s clean >/dev/null
# warnings are errors here (CI), not in the Makefile users build with
if ! make -C "$root" -s COPT=-Werror >/dev/null || ! make -C "$root" -s install >/dev/null; then
	echo "build or install failed"
	echo "total: 0 passed, 1 failed"
	exit 1
fi

# Tests write results next to the sources: run them in a copy the
# unprivileged user owns.
work=$(mktemp -d /tmp/shop-test.XXXXXX)
chmod 755 "$work"
tree="$work/tree"
mkdir "$tree"
(cd "$root" && tar --exclude=.git -cf - .) | tar -C "$tree" -xf -
[ "$(id -u)" = 0 ] && chown -R postgres: "$work"
cluster="$work/cluster"

cleanup() { bash "$root/test/cluster.sh" stop "$cluster"; }
trap cleanup EXIT

echo "== start cluster (port $port)"
if ! bash "$root/test/cluster.sh" start "$cluster" "$port"; then
	cat "$cluster/server.log" 2>/dev/null
	echo "total: 0 passed, 1 failed"
	exit 1
fi
export PGHOST="$cluster" PGPORT="$port" PGUSER=postgres

# Count "... ok" and "... FAILED" lines of pg_regress-style output.
regress_counts() {
	local out=$1
	count "$(grep -cE '\.\.\. +ok|^ok ' "$out")" "$(grep -cE '\.\.\. +FAILED|^not ok ' "$out")"
}

section pg_regress
(cd "$tree" && as_pg make -s installcheck ISOLATION= ) >"$work/regress.out" 2>&1
cat "$work/regress.out"
regress_counts "$work/regress.out"
[ -s "$tree/regression.diffs" ] && cat "$tree/regression.diffs"

section isolation
(cd "$tree" && as_pg make -s installcheck REGRESS= ) >"$work/isolation.out" 2>&1
cat "$work/isolation.out"
regress_counts "$work/isolation.out"
[ -s "$tree/output_iso/regression.diffs" ] && cat "$tree/output_iso/regression.diffs"

# Sum a prove/pg_prove run: Tests=N from the summary, Failed: N per file;
# a run that failed without failed assertions (bad plan, died) counts once.
prove_counts() {
	local out=$1 rc=$2 total bad
	total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$out" | tail -n 1)
	bad=$(grep -oE 'Failed: [0-9]+\)' "$out" | awk '{ n += $2 } END { print n + 0 }')
	total=${total:-0}
	bad=${bad:-0}
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	count $((total - bad > 0 ? total - bad : 0)) "$bad"
}

section pgTAP
psql -X -q -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE EXTENSION IF NOT EXISTS pgtap" \
	-c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
	-c "CREATE EXTENSION IF NOT EXISTS shop"
pgtap_files=$(cd "$tree" && ls test/pgtap/*.sql 2>/dev/null)
if [ -n "$pgtap_files" ]; then
	(cd "$tree" && as_pg pg_prove -d postgres $pgtap_files) >"$work/pgtap.out" 2>&1
	rc=$?
	cat "$work/pgtap.out"
	prove_counts "$work/pgtap.out" "$rc"
fi

section "test receiver (self-test with the reference standardwebhooks signer)"
(cd "$tree/test/receiver" && as_pg node --test selftest.js) >"$work/receiver.out" 2>&1
cat "$work/receiver.out"
rpass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$work/receiver.out" | tail -n 1)
rfail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$work/receiver.out" | tail -n 1)
count "${rpass:-0}" "${rfail:-1}"

section "mock payment provider (self-test, no database)"
(cd "$tree/demo" && as_pg node --test mock_provider.test.js) >"$work/mock.out" 2>&1
cat "$work/mock.out"
mpass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$work/mock.out" | tail -n 1)
mfail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$work/mock.out" | tail -n 1)
count "${mpass:-0}" "${mfail:-1}"

section "shop-httpd (test/http: postgrest-js, HTTP, webhooks, fuzz, database restart)"
(cd "$tree" && as_pg env SHOP_HTTPD="$tree/src/http/shop-httpd" \
	SHOP_HTTP_PGPORT="${SHOP_HTTP_PGPORT:-$((port + 1))}" SHOP_HTTP_PORT="${SHOP_HTTP_PORT:-18110}" \
	bash test/http/run.sh) >"$work/http.out" 2>&1
cat "$work/http.out"
hpass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$work/http.out" | tail -n 1)
hfail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$work/http.out" | tail -n 1)
count "${hpass:-0}" "${hfail:-1}"

section "storefront and operator pages (test/browser: Chromium via playwright-core)"
(cd "$tree" && as_pg env SHOP_HTTPD="$tree/src/http/shop-httpd" \
	SHOP_BROWSER_PGPORT="${SHOP_BROWSER_PGPORT:-$((port + 2))}" SHOP_BROWSER_PORT="${SHOP_BROWSER_PORT:-18130}" \
	bash test/browser/run.sh) >"$work/browser.out" 2>&1
cat "$work/browser.out"
bpass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$work/browser.out" | tail -n 1)
bfail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$work/browser.out" | tail -n 1)
count "${bpass:-0}" "${bfail:-1}"

section "Perl TAP"
tap_files=$(cd "$tree" && ls test/t/*.pl 2>/dev/null)
if [ -n "$tap_files" ]; then
	(cd "$tree" && as_pg env TESTDIR="$tree" PG_REGRESS="$pgxs_dir/test/regress/pg_regress" \
		prove -I "$pgxs_dir/test/perl" $tap_files) >"$work/tap.out" 2>&1
	rc=$?
	cat "$work/tap.out"
	prove_counts "$work/tap.out" "$rc"
	if [ "$rc" -ne 0 ]; then
		# the logs of the failing files only: each failed assertion with what
		# follows it, then the end of the test's log and of its servers' logs
		for t in $(sed -n 's|^\(test/t/[^ ]*\.pl\) .*Wstat.*|\1|p' "$work/tap.out"); do
			name=$(basename "$t" .pl)
			echo "--- $t: failed assertions"
			grep -n -A 12 '^\[[0-9:.]*\]([0-9.]*s) not ok\|^not ok' "$tree/tmp_check/log/regress_log_$name" | head -n 150
			echo "--- $t: end of its log"
			tail -n 40 "$tree/tmp_check/log/regress_log_$name"
			for f in "$tree"/tmp_check/log/"${name}"_*.log; do
				[ -f "$f" ] && { echo "--- $f (end)"; tail -n 30 "$f"; }
			done
		done
	fi
fi

# What failed, last, where a truncated CI log still shows it.
if [ -n "$failures" ]; then
	echo "== failures"
	printf '%s' "$failures"
	for f in "$work"/*.out; do
		grep -HE '^not ok |^ *not ok |\.\.\. +FAILED|Wstat' "$f" | head -n 40
	done
fi
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

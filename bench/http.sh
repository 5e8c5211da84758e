#!/usr/bin/env bash
# bench/http.sh: the HTTP scenario of make bench.  POST /rpc/buy_now through
# shop-httpd (driven by wrk, bench/http/buy_now.lua) against the same
# shop_buy_now call sent by pgbench straight to the server, both at
# BENCH_HTTP_CLIENTS connections, in the same run on the same cluster.
# Called by bench/run.sh (scenario "http") with PGHOST/PGPORT/PGUSER set and
# the bench database loaded; writes DIR/http.txt and bench/results/http.md.
#
#   BENCH_HTTP_CLIENTS [32]  BENCH_HTTP_DURATION [10]  BENCH_HTTP_PORT [18140]
set -euo pipefail

bench=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$bench/.." && pwd)
dir=$1
out=$2
C=${BENCH_HTTP_CLIENTS:-32}
DUR=${BENCH_HTTP_DURATION:-10}
HPORT=${BENCH_HTTP_PORT:-18140}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d bench)
mkdir -p "$dir"
log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
httpd=$(pg_config --bindir)/shop-httpd
[ -x "$httpd" ] || httpd=$root/src/http/shop-httpd

# The API schema: the SQL side's shop_api when the extension has it, else a
# stand-in with the same contract (buy_now(items, idempotency_key) for the
# token's subject), so the benchmark runs either way.
schema=shop_api
if [ "$("${PSQL[@]}" -At -c "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'shop_api' AND p.proname = 'buy_now'")" = 0 ]; then
	schema=bench_api
fi
"${PSQL[@]}" <<SQL
SET client_min_messages = warning;
DO \$\$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_http_auth') THEN
		CREATE ROLE bench_http_auth LOGIN NOINHERIT;
		CREATE ROLE bench_http_anon NOLOGIN;
		CREATE ROLE bench_http_customer NOLOGIN;
		CREATE ROLE bench_http_webhook NOLOGIN;
		GRANT bench_http_anon, bench_http_customer, bench_http_webhook TO bench_http_auth;
	END IF;
END \$\$;
CREATE SCHEMA IF NOT EXISTS bench_api;
CREATE OR REPLACE FUNCTION bench_api.buy_now(items jsonb, idempotency_key text DEFAULT NULL)
	RETURNS shop.order_summary LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS \$f\$SELECT shop.shop_buy_now(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', items, idempotency_key)\$f\$;
REVOKE ALL ON FUNCTION bench_api.buy_now(jsonb, text) FROM PUBLIC;
GRANT USAGE ON SCHEMA bench_api TO bench_http_customer;
GRANT EXECUTE ON FUNCTION bench_api.buy_now(jsonb, text) TO bench_http_customer;
SQL
if [ "$schema" = shop_api ]; then
	"${PSQL[@]}" -c "SELECT shop.shop_api_grant('bench_http_anon', 'bench_http_customer', 'bench_http_webhook')" >/dev/null
fi

secret=$dir/jwt-secret
head -c 48 /dev/urandom | base64 -w0 >"$secret"
chmod 644 "$secret"
# 64 customer tokens signed with the secret (node's crypto, HS256)
node -e '
const crypto = require("crypto"); const fs = require("fs");
const secret = fs.readFileSync(process.argv[1], "utf8").trim();
const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const lines = [];
for (let u = 1; u <= 64; u++) {
	const hp = b({ alg: "HS256", typ: "JWT" }) + "." + b({ sub: "bench-http-" + u, role: "bench_http_customer", exp: Math.floor(Date.now() / 1000) + 86400 });
	lines.push(hp + "." + crypto.createHmac("sha256", secret).update(hp).digest("base64url"));
}
fs.writeFileSync(process.argv[2], lines.join("\n") + "\n");' "$secret" "$dir/tokens.txt"

"$httpd" --db "host=$PGHOST port=$PGPORT dbname=bench user=bench_http_auth" --listen 127.0.0.1:"$HPORT" \
	--jwt-secret-file "$secret" --schema "$schema" --anon-role bench_http_anon --user-role bench_http_customer \
	--webhook-role bench_http_webhook --pool "$C" 2>"$dir/httpd.log" &
httpd_pid=$!
trap 'kill $httpd_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HPORT/health" >/dev/null && break; sleep 0.1; done

reset() { "${PSQL[@]}" -c "CALL bench.reset()" -c "VACUUM ANALYZE shop.sku, shop.orders, shop.order_item, shop.stock_reservation" -c "CHECKPOINT" >/dev/null; }

# the HTTP run (1 s of warm-up requests first, not counted)
reset
log "http: POST /rpc/buy_now through shop-httpd ($schema), wrk $C connections, ${DUR}s"
BENCH_HTTP_TOKENS=$dir/tokens.txt wrk -t 2 -c "$C" -d 1s -s "$bench/http/buy_now.lua" "http://127.0.0.1:$HPORT" >/dev/null
BENCH_HTTP_TOKENS=$dir/tokens.txt wrk -t 2 -c "$C" -d "${DUR}s" --timeout 10s -s "$bench/http/buy_now.lua" \
	"http://127.0.0.1:$HPORT" >"$dir/wrk.out"
http_orders=$("${PSQL[@]}" -At -c "SELECT count(*) FROM shop.orders WHERE user_id LIKE 'bench-http-%'")
http_inv=$("${PSQL[@]}" -At -c "SELECT count(*) FROM shop.shop_check_invariants()")

# the same call by pgbench (prepared statements, as the daemon's)
reset
log "http: shop.shop_buy_now by pgbench, $C clients, ${DUR}s"
(cd "$dir" && pgbench -n -d bench -M prepared -c "$C" -j 2 -T 1 -f "$bench/http/buy_now-direct.sql" >/dev/null 2>&1)
(cd "$dir" && pgbench -n -d bench -M prepared -c "$C" -j 2 -T "$DUR" -l --log-prefix=direct \
	-f "$bench/http/buy_now-direct.sql" >pgbench.out 2>pgbench.err)
kill $httpd_pid 2>/dev/null || true
wait $httpd_pid 2>/dev/null || true

python3 - "$dir" "$out" "$C" "$DUR" "$schema" "$http_orders" "$http_inv" <<'PY'
import glob, re, sys, datetime
d, out, c, dur, schema, http_orders, http_inv = sys.argv[1:]
w = open(d + "/wrk.out").read()
m = dict(re.findall(r"(\w+)=(\d+)", w.split("RESULT", 1)[1]))
http_tps = int(m["requests"]) / (int(m["duration_us"]) / 1e6)
lat = []
for f in glob.glob(d + "/direct*"):
    for line in open(f):
        p = line.split()
        if len(p) >= 3 and p[2].isdigit():
            lat.append(int(p[2]))
lat.sort()
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0
pg = open(d + "/pgbench.out").read()
tps = float(re.search(r"tps = ([0-9.]+)", pg).group(1))
fail = re.search(r"number of failed transactions: (\d+)", pg)
rows = [
    ("POST /rpc/buy_now via shop-httpd (wrk)", http_tps, int(m["p50_us"]) / 1000, int(m["p99_us"]) / 1000,
     int(m["errors_status"]) + int(m["errors_other"])),
    ("shop.shop_buy_now via pgbench", tps, pct(0.50) / 1000, pct(0.99) / 1000, int(fail.group(1)) if fail else 0),
]
text = ["# HTTP scenario (make bench, bench/http.sh)", "",
        f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {c} connections, {dur} s each, same cluster, one after the other; API schema `{schema}`"
        + (" (stand-in for shop_api: same contract)" if schema == "bench_api" else "") + ".", "",
        "| path | calls/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
for name, t, p50, p99, e in rows:
    text.append(f"| {name} | {t:,.0f} | {p50:.2f} | {p99:.2f} | {e} |")
text += ["", f"ratio HTTP / direct: **{http_tps / tps:.2f}**; orders made over HTTP: {http_orders}; invariant violations after the HTTP run: {http_inv}.", "",
         "wrk, shop-httpd and PostgreSQL share the machine's cores in the HTTP run; pgbench and PostgreSQL in the direct one.",
         "Each HTTP call is one pipelined round trip (role and request settings, the call, response settings) in one transaction."]
open(out + "/http.md", "w").write("\n".join(text) + "\n")
open(d + "/http.txt", "w").write("\n".join(text) + "\n")
print("\n".join(text))
PY

#!/usr/bin/env bash
# Set up and run the shop locally: install packages, build and install the
# extension, start a cluster with pg_cron and the outbox delivery worker,
# start a local event receiver, the mock payment provider and the HTTP layer
# (shop-httpd on 127.0.0.1:8080), load demo data, show the flows.
#
#   bash demo/quickstart.sh          (as root on Debian 12)
#
# The cluster, the receiver and the mock payment provider keep running
# afterwards; connect with the psql line printed at the end, stop them with
# the commands printed there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SHOP_DEMO_DIR:-/var/tmp/shop-demo}
port=${SHOP_DEMO_PORT:-5433}
rport=${SHOP_DEMO_RECEIVER_PORT:-18089}

bash "$root/test/install-deps.sh"
bash "$root/test/receiver/install.sh"
export PATH="$(pg_config --bindir):$PATH"
make -C "$root" -s
make -C "$root" -s install

bash "$root/test/cluster.sh" stop "$dir"
bash "$root/test/cluster.sh" start "$dir" "$port"
psql=(psql -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)

# The delivery worker runs when shop is preloaded (it serves the database
# shop.database_name names); the demo receiver is plain http on loopback,
# which only shop.outbox_allow_http_loopback allows.  Written to the
# configuration file (ALTER SYSTEM knows a library's settings only once the
# library is loaded).
if ! grep -q "^shop.database_name" "$dir/data/postgresql.conf"; then
	cat >>"$dir/data/postgresql.conf" <<CONF
# the quick start's delivery worker
shared_preload_libraries = 'pg_cron,shop'
shop.database_name = 'postgres'
shop.outbox_allow_http_loopback = on
CONF
	bash "$root/test/cluster.sh" stop "$dir"
	bash "$root/test/cluster.sh" start "$dir" "$port"
fi

# The merchant's side: a receiver that verifies every event with the
# reference Standard Webhooks library (test/receiver/receiver.js).
[ -f "$dir/receiver.pid" ] && kill "$(cat "$dir/receiver.pid")" 2>/dev/null || true
setsid node "$root/test/receiver/receiver.js" "$rport" --detach --max-lifetime 86400 \
	--log-file "$dir/receiver.log" </dev/null >"$dir/receiver.out" 2>&1 &
echo $! >"$dir/receiver.pid"
for _ in $(seq 50); do grep -q '^port=' "$dir/receiver.out" 2>/dev/null && break; sleep 0.1; done

"${psql[@]}" -c "DROP EXTENSION IF EXISTS shop CASCADE" \
	-c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
	-c "CREATE EXTENSION shop" \
	-f "$root/demo/demo_data.sql"
"${psql[@]}" -c "SELECT shop.shop_schedule_expiry('* * * * *') AS expiry_job"

# Subscribe the receiver to every event; hand it the generated secret.
endpoint="http://127.0.0.1:$rport/ok/demo"
secret=$("${psql[@]}" -At -c "SELECT shop.shop_subscribe('$endpoint', ARRAY['*'],
	description => 'demo receiver') ->> 'secret'" 2>/dev/null)
node -e "fetch('http://127.0.0.1:$rport/_secret', {method: 'POST',
	headers: {'content-type': 'application/json'},
	body: JSON.stringify({path: '/ok/demo', secret: process.argv[1]})})
	.then(r => { if (!r.ok) process.exit(1); })" "$secret"

# The local payment provider (demo/mock_provider.js): Stripe's API shape, a
# hosted pay page, events signed with the demo's mock secret.
mock_secret=whsec_ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLTEyMzQ1Njc4
mport=18090
[ -f "$dir/mock_provider.pid" ] && kill "$(cat "$dir/mock_provider.pid")" 2>/dev/null || true
setsid node "$root/demo/mock_provider.js" --port "$mport" --api-key sk_test_demo_key \
	--webhook-secret "$mock_secret" --detach --max-lifetime 86400 \
	</dev/null >"$dir/mock_provider.out" 2>&1 &
echo $! >"$dir/mock_provider.pid"
for _ in $(seq 50); do grep -q '^port=' "$dir/mock_provider.out" 2>/dev/null && break; sleep 0.1; done

# The shop's HTTP layer (src/http, shop-httpd): shop_api over HTTP in
# PostgREST's dialect, the payment webhook endpoint, guest tokens.  Its
# roles as the README's "Serving with PostgREST" recipe makes them.
hport=${SHOP_DEMO_HTTP_PORT:-8080}
"${psql[@]}" <<'SQL'
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_authenticator') THEN
		CREATE ROLE shop_authenticator LOGIN NOINHERIT;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_anon') THEN
		CREATE ROLE shop_anon NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_customer') THEN
		CREATE ROLE shop_customer NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_webhook') THEN
		CREATE ROLE shop_webhook NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_operator') THEN
		CREATE ROLE shop_operator NOLOGIN;
	END IF;
END
$$;
GRANT shop_anon, shop_customer, shop_webhook, shop_operator TO shop_authenticator;
SELECT shop.shop_api_grant('shop_anon', 'shop_customer', 'shop_webhook', 'shop_operator');
SQL
[ -s "$dir/jwt.secret" ] || (umask 077; head -c 48 /dev/urandom | base64 -w0 >"$dir/jwt.secret")
chown postgres "$dir/jwt.secret"
[ -f "$dir/httpd.pid" ] && kill "$(cat "$dir/httpd.pid")" 2>/dev/null || true
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/$hport) 2>/dev/null || break
	sleep 0.1
done
static=()
[ -d "$root/web" ] && static=(--static-dir "$root/web")
setsid runuser -u postgres -- "$(pg_config --bindir)/shop-httpd" \
	--db "host=$dir port=$port dbname=postgres user=shop_authenticator" \
	--listen "127.0.0.1:$hport" --jwt-secret-file "$dir/jwt.secret" --pool 4 "${static[@]}" \
	</dev/null >>"$dir/httpd.log" 2>&1 &
echo $! >"$dir/httpd.pid"
httpd=http://127.0.0.1:$hport
for _ in $(seq 100); do
	node -e "fetch('$httpd/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && break
	sleep 0.1
done

"${psql[@]}" -f "$root/demo/demo_flow.sql"
bash "$root/demo/payment_flow.sh" "$dir" "$port" "$mport" "$httpd"

echo
echo "== over HTTP (shop-httpd on $httpd): a guest token, then buy_now"
token=$(curl -s -X POST "$httpd/auth/guest" | node -e "let s = ''; process.stdin.on('data', d => s += d)
	.on('end', () => console.log(JSON.parse(s).token))")
cat <<CURL
  token=\$(curl -s -X POST $httpd/auth/guest | sed 's/.*"token":"\([^"]*\)".*/\1/')
  curl -s -X POST $httpd/rpc/buy_now -H "Authorization: Bearer \$token" \\
       -H 'Content-Type: application/json' -d '{"items": [{"sku_id": 3, "qty": 1}], "idempotency_key": "demo-http-1"}'
CURL
echo -n "  -> "
curl -s -X POST "$httpd/rpc/buy_now" -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' -d '{"items": [{"sku_id": 3, "qty": 1}], "idempotency_key": "demo-http-1"}'
echo
echo -n "  GET /rpc/orders -> "
curl -s "$httpd/rpc/orders" -H "Authorization: Bearer $token"
echo

echo
echo "== the worker delivers the events to the receiver (signed, verified there)"
for _ in $(seq 100); do
	left=$("${psql[@]}" -At -c "SELECT count(*) FROM shop.outbox WHERE state <> 'delivered'")
	[ "$left" = 0 ] && break
	sleep 0.1
done
"${psql[@]}" -P footer=off -c "SELECT o.id AS outbox_id, e.type AS event, o.state, o.attempts, o.last_status
	FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id ORDER BY o.id"
node -e "fetch('http://127.0.0.1:$rport/_log').then(r => r.json()).then(log => {
	for (const d of log) console.log(d.webhook_id.padEnd(8), (d.type || '').padEnd(16),
		'order', String(d.order_id ?? '-').padEnd(4), d.verified ? 'signature verified' : 'NOT VERIFIED');
})"

# From here on the mock provider delivers its signed events itself, to
# shop-httpd's POST /webhooks/mock (payment_flow.sh above relayed them by
# hand, to stage a late webhook), so a purchase in the browser completes.
kill "$(cat "$dir/mock_provider.pid")" 2>/dev/null || true
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/$mport) 2>/dev/null || break
	sleep 0.1
done
setsid node "$root/demo/mock_provider.js" --port "$mport" --api-key sk_test_demo_key \
	--webhook-secret "$mock_secret" --webhook-url "$httpd/webhooks/mock" --detach --max-lifetime 86400 \
	</dev/null >"$dir/mock_provider.out" 2>&1 &
echo $! >"$dir/mock_provider.pid"
for _ in $(seq 50); do grep -q '^port=' "$dir/mock_provider.out" 2>/dev/null && break; sleep 0.1; done

# The storefront and operator pages (web/, served by shop-httpd): the
# operator's token goes in the address's fragment, which the browser never
# sends, so no server log holds it.
ops_token=$(node "$root/demo/mint_token.js" --secret-file "$dir/jwt.secret" --role shop_operator \
	--sub demo-operator --ttl 86400)
echo
echo "== storefront and operator pages (web/ on shop-httpd)"
echo "  storefront: $httpd/index.html   (cart.html, orders.html; pay on the mock provider's page)"
echo "  operator:   $httpd/ops.html#token=$ops_token"
echo "              (a JWT with role shop_operator, sub demo-operator, valid 24 h: demo/mint_token.js)"

cat <<MSG

The shop is running: pg_cron releases expired orders every minute, the
outbox worker sends events to the receiver on 127.0.0.1:$rport.
  psql -h $dir -p $port -U postgres -d postgres
  SELECT * FROM shop.outbox_health;  SELECT * FROM shop.event_endpoints;
  receiver log: $dir/receiver.log
  the mock payment provider: http://127.0.0.1:$mport (its pay pages are the checkout URLs)
  the HTTP layer: $httpd  (POST /rpc/<fn> of shop_api, POST /auth/guest, POST /webhooks/<provider>,
    GET /health; log: $dir/httpd.log)
  stop:  kill \$(cat $dir/httpd.pid) \$(cat $dir/receiver.pid) \$(cat $dir/mock_provider.pid); bash $root/test/cluster.sh stop $dir
MSG

#!/usr/bin/env bash
# The seed's payment flow against the local mock payment provider
# (demo/mock_provider.js), run by demo/quickstart.sh:
#   1. an order -> a hosted checkout (session URL) -> the buyer pays -> the
#      provider's signed webhook -> PAID;
#   2. an order whose buyer pays just as it expires and its stock is sold to
#      someone else: the expiry closes the checkout at the provider, finds it
#      paid, and the payment is refunded automatically (the webhook that
#      arrives later is a duplicate).
# The provider's webhooks go to shop-httpd's POST /webhooks/mock when its
# URL is given (the quick start runs it), else to shop.shop_handle_webhook()
# directly.
#
#   bash demo/payment_flow.sh DIR PORT MOCK_PORT [HTTPD_URL]
set -euo pipefail
dir=$1
port=$2
mport=$3
httpd=${4:-}
psql=(psql -X -q -At -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
mock=http://127.0.0.1:$mport

sql() { "${psql[@]}" -c "$1"; }
# POST JSON to the mock's control API
mock_post() { node -e "fetch('$mock$1', {method: 'POST', headers: {'content-type': 'application/json'},
	body: process.argv[1]}).then(r => { if (!r.ok) process.exit(1); })" "$2"; }
# hand the provider's events since seq $1 to the shop: POSTed to shop-httpd's
# webhook endpoint (the provider's exact bytes and headers) when it runs,
# else straight to shop.shop_handle_webhook(), as that endpoint does
relay() {
	node -e "fetch('$mock/_events').then(r => r.json()).then(evs => {
		for (const e of evs) if (e.seq > Number(process.argv[1]))
			console.log(JSON.stringify({seq: e.seq, type: e.type, headers: e.headers, body: e.body}));
	})" "$1" |
	while IFS= read -r ev; do
		if [ -n "$httpd" ]; then
			node -e "const e = JSON.parse(process.argv[1]);
				fetch('$httpd/webhooks/mock', {method: 'POST', headers: e.headers, body: e.body})
				.then(async r => console.log('  ' + e.type + ' -> POST /webhooks/mock: ' + r.status + ' ' +
					((await r.json()).result ?? '')))" "$ev"
		else
			"${psql[@]}" -v ev="$ev" <<'SQL'
SELECT format('  %s -> %s', (:'ev'::jsonb) ->> 'type',
	shop.shop_handle_webhook('mock', (:'ev'::jsonb) -> 'headers', (:'ev'::jsonb) ->> 'body') ->> 'result');
SQL
		fi
	done
}
last_event() { node -e "fetch('$mock/_events').then(r => r.json()).then(evs => console.log(evs.length ? evs[evs.length - 1].seq : 0))"; }
wait_for() { for _ in $(seq 100); do [ "$(sql "$1")" = t ] && return 0; sleep 0.1; done; return 1; }

sql "SELECT shop.shop_set_provider_api_key('mock', 'sk_test_demo_key') IS NOT NULL" >/dev/null

echo
echo "== erin buys two shirts with the WELCOME10 coupon and pays at the provider:"
echo "   order -> checkout session -> pay -> signed webhook -> PAID"
erin=$(sql "SELECT id FROM shop.shop_buy_now('erin', '[{\"sku_id\": 2, \"qty\": 2}]', NULL, 'WELCOME10')")
sql "SELECT format('  order %s: subtotal %s, discount %s, amount %s won (VAT included %s)', id, subtotal, discount,
	amount, tax_included) FROM shop.orders WHERE id = $erin"
session=$(sql "SELECT shop.shop_start_payment($erin, 'mock', 'http://127.0.0.1:18089/ok/thanks', 'http://127.0.0.1:18089/ok/back')")
echo "  order $erin, checkout: $(node -e "console.log(JSON.parse(process.argv[1]).url)" "$session")"
seq=$(last_event)
mock_post /_pay "{\"session_id\": $(node -e "console.log(JSON.stringify(JSON.parse(process.argv[1]).session_id))" "$session")}"
relay "$seq"
echo "  order $erin is $(sql "SELECT status FROM shop.orders WHERE id = $erin")"

echo
echo "== erin sends one shirt back: a partial refund by lines, the shirt restocked"
tees=$(sql "SELECT on_hand FROM shop.sku_stock WHERE sku_id = 2")
refund=$(sql "SELECT shop.shop_refund($erin, reason => 'one shirt returned',
	lines => '[{\"sku_id\": 2, \"qty\": 1, \"restock\": \"restock\"}]') ->> 'refund_id'")
wait_for "SELECT EXISTS (SELECT FROM shop.refund WHERE id = $refund AND state = 'succeeded')" ||
	echo "  (the refund has not been confirmed yet)"
"${psql[@]}" -P footer=off -A -F ' | ' <<SQL
SELECT '  ' || format('refund %s: %s won, %s at the provider (%s)', id, amount, state, provider_refund_id)
  FROM shop.refund WHERE id = $refund;
SELECT '  ' || format('order %s: paid %s, refunded %s: %s', order_id, paid, refunded, state)
  FROM shop.order_refund_status WHERE order_id = $erin;
SELECT '  ' || format('TEE-M on hand: $tees -> %s (the returned shirt is back)', on_hand)
  FROM shop.sku_stock WHERE sku_id = 2;
SQL

echo
echo "== frank pays just as his order expires, and the stock goes to gina: refunded automatically"
frank=$(sql "SELECT id FROM shop.shop_buy_now('frank', '[{\"sku_id\": 1, \"qty\": 2}]')")
fsession=$(sql "SELECT shop.shop_start_payment($frank, 'mock', 'http://127.0.0.1:18089/ok/thanks', 'http://127.0.0.1:18089/ok/back') ->> 'session_id'")
seq=$(last_event)
mock_post /_pay "{\"session_id\": \"$fsession\"}"
echo "  frank paid at the provider; its webhook is late"
"${psql[@]}" <<SQL
BEGIN;
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = $frank;
SELECT format('  the sweep releases %s expired order(s)', shop.shop_expire_pending());
SELECT format('  gina takes the stock: order %s', id) FROM shop.shop_buy_now('gina', '[{"sku_id": 1, "qty": 2}]');
COMMIT;
SQL
echo "  the worker closes frank's checkout at the provider, finds it paid, applies the payment:"
wait_for "SELECT EXISTS (SELECT FROM shop.refund WHERE order_id = $frank AND state = 'succeeded')" ||
	echo "  (the refund has not been confirmed yet)"
"${psql[@]}" -P footer=off -A -F ' | ' <<SQL
SELECT '  ' || format('order %s: %s (%s)', id, status, status_reason) FROM shop.orders WHERE id = $frank;
SELECT '  ' || format('review: %s, %s', reason, coalesce(resolution, 'open')) FROM shop.order_review WHERE order_id = $frank;
SELECT '  ' || format('refund %s: %s %s, %s, provider refund %s', refund_id, amount, currency, state, provider_refund_id)
  FROM shop.refunds WHERE order_id = $frank;
SQL
echo "  the late webhook arrives:"
relay "$seq"
echo "  invariant violations: $(sql "SELECT count(*) FROM shop.shop_check_invariants()")"

-- A walk through the flow: cart -> order (stock reserved) -> paid (consumed),
-- a cancelled order (released), and the last unit that cannot be sold twice.
\pset footer off
\echo '== alice fills her cart'
SELECT * FROM shop.shop_cart_add('alice', 1, 2);
SELECT * FROM shop.shop_cart_add('alice', 2, 1);
SELECT sku_code, product_name, unit_price, qty, line_total, cart_total FROM shop.shop_cart('alice');

\echo '== the preview with parcel shipping to Seoul: 45,000 won of goods + 3,000 shipping, 10 % VAT included'
SELECT sku_code, line_total, line_tax, subtotal, shipping, tax_included, total
  FROM shop.shop_cart_preview('alice', NULL, 'kr-parcel',
	'{"name": "Alice Kim", "line1": "12 Sejong-daero", "city": "Seoul", "postal_code": "04524", "country": "KR"}');

\echo '== she checks out: the stock is reserved, prices are snapshotted, shipping and VAT priced'
SELECT id AS alice_order, status, amount, currency FROM shop.shop_create_order('alice', 'alice-checkout-1', NULL, 'kr-parcel',
	'{"name": "Alice Kim", "line1": "12 Sejong-daero", "city": "Seoul", "postal_code": "04524", "country": "KR"}') \gset
SELECT :alice_order AS order_id, :'status' AS status, :amount AS amount;
SELECT subtotal, discount, shipping, tax, tax_included, amount FROM shop.orders WHERE id = :alice_order;
SELECT code, on_hand, reserved, available FROM shop.sku_stock ORDER BY sku_id;

\echo '== the payment provider sends a signed webhook: the order is paid, the reservation consumed'
-- the demo's local "mock" provider signs like Standard Webhooks (demo secret only)
SELECT shop.shop_set_provider('mock', 'mock', 'whsec_ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLTEyMzQ1Njc4') AS provider;
SELECT format('{"type": "payment.succeeded", "data": {"order_id": "%s", "amount": %s, "currency": "KRW", "payment_id": "pay_demo_1"}}',
			  :alice_order, :amount) AS body \gset
SELECT shop.shop_handle_webhook('mock', shop.shop_sign_mock('mock', 'evt_demo_1', :'body'), :'body') AS webhook;
\echo '== the provider retries the same event: nothing changes'
SELECT shop.shop_handle_webhook('mock', shop.shop_sign_mock('mock', 'evt_demo_1', :'body'), :'body') ->> 'result' AS retry;
\echo '== a forged event (wrong signature) is refused with SH011'
\set ON_ERROR_STOP 0
SELECT shop.shop_handle_webhook('mock', shop.shop_sign_mock('mock', 'evt_forged', :'body'), replace(:'body', :'amount', '1'));
\set ON_ERROR_STOP 1
SELECT code, on_hand, reserved, available FROM shop.sku_stock ORDER BY sku_id;

\echo '== the warehouse ships alice''s paid order, the carrier delivers it'
SELECT order_id, shipping_method, ship_to ->> 'city' AS city, jsonb_array_length(items) AS lines FROM shop.warehouse_queue;
SELECT order_id, fulfilment_status, carrier, tracking_no FROM shop.shop_ship(:alice_order, 'CJ Logistics', '6543-2109-8765');
SELECT order_id, fulfilment_status FROM shop.shop_mark_delivered(:alice_order);

\echo '== bob buys now, then cancels: the reservation is released'
SELECT id AS bob_order FROM shop.shop_buy_now('bob', '[{"sku_id": 3, "qty": 2}]') \gset
SELECT id, status FROM shop.shop_release(:bob_order, 'cancelled');

\echo '== carol takes the last poster; dave is refused (SQLSTATE SH001)'
SELECT id, status FROM shop.shop_buy_now('carol', '[{"sku_id": 4, "qty": 1}]');
\set ON_ERROR_STOP 0
SELECT id, status FROM shop.shop_buy_now('dave', '[{"sku_id": 4, "qty": 1}]');
\set ON_ERROR_STOP 1

\echo '== what a DBA sees'
SELECT order_id, sku_code, qty, expires_at > now() AS holding FROM shop.active_reservations;
SELECT count(*) AS invariant_violations FROM shop.shop_check_invariants();

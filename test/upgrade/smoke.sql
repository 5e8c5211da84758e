-- Smoke flow for test/t/004_upgrade.pl: run on the upgraded database, on a
-- fresh install and on a database restored from pg_dump; the three outputs
-- must be the same.  Prints only states, amounts and counts (no ids, no
-- timestamps), and touches only its own user, SKU and provider, so the data
-- already in the database does not change the output.
--
-- New catalog rows and orders take their ids from the identity sequences:
-- where a sequence lags behind the rows already there (a restore that lost
-- its position), an INSERT fails with a duplicate key.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

INSERT INTO shop.product (name, price) VALUES ('Smoke test mug', 1500) RETURNING id AS p \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p, 'SMOKE-MUG', 10) RETURNING id AS s \gset
SELECT 'provider: ' || shop.shop_set_provider('smoke', 'mock', 'whsec_' || encode(sha256('smoke test secret'), 'base64'))::text;

-- cart -> order (stock reserved)
SELECT 'cart add: qty ' || qty FROM shop.shop_cart_add('smoke-buyer', :s, 3);
SELECT 'cart: ' || sku_code || ' x ' || qty || ' = ' || line_total || ', total ' || cart_total FROM shop.shop_cart('smoke-buyer');
SELECT id AS o1, amount AS a1 FROM shop.shop_create_order('smoke-buyer', 'smoke-checkout-1') \gset
SELECT 'order 1: ' || status || ' ' || amount || ' ' || currency FROM shop.orders WHERE id = :o1;
SELECT 'order 1 again (same key): same order ' || (id = :o1) FROM shop.shop_create_order('smoke-buyer', 'smoke-checkout-1');
SELECT 'stock: on_hand ' || on_hand || ' reserved ' || reserved || ' available ' || available FROM shop.sku_stock WHERE sku_id = :s;

-- signed paid webhook -> PAID (stock consumed); its retry is a duplicate
WITH b(body) AS (SELECT jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
		'order_id', :'o1', 'amount', :a1, 'currency', 'KRW', 'payment_id', 'pay_smoke_1'))::text)
SELECT 'webhook paid: ' || (r->>'result') || ' ' || (r->>'order_status') || coalesce(' review ' || (r->>'review'), '')
  FROM b CROSS JOIN LATERAL shop.shop_handle_webhook('smoke', shop.shop_sign_mock('smoke', 'evt-smoke-1', b.body), b.body) AS r;
WITH b(body) AS (SELECT jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
		'order_id', :'o1', 'amount', :a1, 'currency', 'KRW', 'payment_id', 'pay_smoke_1'))::text)
SELECT 'webhook paid again: ' || (r->>'result') || ' ' || (r->>'order_status')
  FROM b CROSS JOIN LATERAL shop.shop_handle_webhook('smoke', shop.shop_sign_mock('smoke', 'evt-smoke-1', b.body), b.body) AS r;
SELECT 'order 1: ' || status || ' payment ' || external_payment_id FROM shop.orders WHERE id = :o1;
SELECT 'stock: on_hand ' || on_hand || ' reserved ' || reserved || ' available ' || available FROM shop.sku_stock WHERE sku_id = :s;

-- a unit of order 1 returned: refunded by its SKU and restocked (issue 13);
-- the refund is queued for the provider (sent only where the worker runs)
SELECT 'refund by lines: ' || (r->>'state') || ' ' || (r->>'amount') || ' ' || (r->'lines'->0->>'qty') || ' unit restocked ' || (r->'lines'->0->>'restocked')
  FROM shop.shop_refund(:o1, reason => 'smoke return', lines => format('[{"sku_id": %s, "qty": 1}]', :s)::jsonb) AS r;
SELECT 'order 1 refunds: ' || state || ', ' || refunded || ' of ' || paid || ', units ' || units_refunded || ' restocked ' || units_restocked
  FROM shop.order_refund_status WHERE order_id = :o1;
SELECT 'stock: on_hand ' || on_hand || ' reserved ' || reserved || ' available ' || available FROM shop.sku_stock WHERE sku_id = :s;

-- another order, released (default reason)
SELECT id AS o2 FROM shop.shop_buy_now('smoke-buyer', format('[{"sku_id": %s, "qty": 2}]', :s)::jsonb) \gset
SELECT 'order 2: ' || status FROM shop.orders WHERE id = :o2;
SELECT 'order 2 released: ' || status FROM shop.shop_release(:o2);
SELECT 'order 2: ' || status || ' ' || coalesce(status_reason, '-') FROM shop.orders WHERE id = :o2;

-- a third order past its expiry, released by the sweep
SELECT id AS o3 FROM shop.shop_buy_now('smoke-buyer', format('[{"sku_id": %s, "qty": 4}]', :s)::jsonb) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o3;
SELECT 'expired by the sweep: ' || shop.shop_expire_pending();
SELECT 'order 3: ' || status || ' ' || coalesce(status_reason, '-') FROM shop.orders WHERE id = :o3;

-- new ids follow the existing ones
SELECT 'new order ids are the highest: ' || (max(id) = :o3) FROM shop.orders;
SELECT 'stock: on_hand ' || on_hand || ' reserved ' || reserved || ' available ' || available FROM shop.sku_stock WHERE sku_id = :s;
SELECT 'smoke orders: ' || string_agg(status || ' ' || coalesce(status_reason, '-'), ', ' ORDER BY id)
  FROM shop.orders WHERE user_id = 'smoke-buyer';
SELECT 'smoke events logged: ' || count(*) FROM shop.payment_log WHERE provider = 'smoke';
SELECT 'invariant violations: ' || count(*) FROM shop.shop_check_invariants();

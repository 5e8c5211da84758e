--
-- Defects found in 0.1 that could not show while invariants hold, or only
-- at the edges of a type's range; each is pinned here.
-- Hermetic: own SKUs (LD-*), users (ld-*), provider; removed at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES ('ld mug', 500, 'USD') RETURNING id AS ld_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:ld_product, 'LD-MUG', 10) RETURNING id AS ld_sku \gset
SELECT shop.shop_set_provider('mock-ld', 'mock',
	'whsec_' || encode(convert_to('latent defects test secret 32by', 'UTF8'), 'base64')) IS NOT NULL AS registered;

-- 1. A late payment re-reserves a released order's lines with one statement
-- per line that moves the SKU counter only together with the reservation
-- row.  Break the books on purpose: an expired order whose reservation is
-- still active (what a bug elsewhere could leave).  In 0.1 the counter was
-- raised although the upsert wrote nothing, so the books got worse.
SELECT (shop.shop_buy_now('ld-user', jsonb_build_array(jsonb_build_object('sku_id', :ld_sku, 'qty', 2)))).id AS ld_order \gset
UPDATE shop.orders SET status = 'CANCELLED', status_reason = 'expired' WHERE id = :ld_order;
SELECT on_hand, reserved FROM shop.sku WHERE id = :ld_sku;
SELECT shop.shop_handle_webhook('mock-ld', shop.shop_sign_mock('mock-ld', 'ld-1', b.body), b.body)
		- 'order_id' - 'event_id' AS outcome
  FROM (SELECT jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
			'order_id', :ld_order, 'amount', 1000, 'currency', 'USD', 'payment_id', 'pay-ld'))::text AS body) b;
-- unchanged: nothing reserved on top of the stuck reservation
SELECT on_hand, reserved FROM shop.sku WHERE id = :ld_sku;
SELECT state, qty FROM shop.stock_reservation WHERE order_id = :ld_order;
-- mend the books again for the rest of the file
UPDATE shop.stock_reservation SET state = 'released' WHERE order_id = :ld_order;
UPDATE shop.sku SET reserved = reserved - 2 WHERE id = :ld_sku;

-- 2. shop_adjust_stock's refusal message for the smallest integer delta
-- (0.1 negated it in int and printed garbage)
SELECT pg_temp.outcome(format('SELECT on_hand FROM shop.shop_adjust_stock(%s, -2147483648, %L)', :ld_sku, 'write-off'));

-- 3. payment_log has no "processed" column any more (it was true on every
-- committed row)
SELECT count(*) AS processed_columns FROM pg_attribute
 WHERE attrelid = 'shop.payment_log'::regclass AND attname = 'processed' AND NOT attisdropped;

-- 4. shop_sign_mock's time: seconds since 1970 rounded down; before 1970 and
-- after 9999 refused with 22023 (0.1 rounded times just before 1970 to 0 and
-- overflowed near the end of the timestamp range)
SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', '1970-01-01 00:00:00.9+00') ->> 'webhook-timestamp' AS epoch_plus_0_9s;
SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', '1970-01-01 00:00:01+00') ->> 'webhook-timestamp' AS epoch_plus_1s;
SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', '9999-12-31 23:59:59+00') ->> 'webhook-timestamp' AS last_second;
SELECT pg_temp.outcome($$SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', '1969-12-31 23:59:59.5+00')::text$$);
SELECT pg_temp.outcome($$SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', '10000-01-01 00:00:00+00')::text$$);
SELECT pg_temp.outcome($$SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', '294276-12-31')::text$$);
SELECT pg_temp.outcome($$SELECT shop.shop_sign_mock('mock-ld', 'e', '{}', 'infinity')::text$$);

-- 5. An order id sent as a JSON number with a fraction of zero names that
-- order (0.1 read 123.0 as unmatched although numbers were accepted)
SELECT (shop.shop_buy_now('ld-user', jsonb_build_array(jsonb_build_object('sku_id', :ld_sku, 'qty', 1)))).id AS ld_order2 \gset
SELECT r ->> 'result' AS result, r ->> 'order_status' AS order_status, (r ->> 'order_id')::bigint = :ld_order2 AS right_order
  FROM (SELECT shop.shop_handle_webhook('mock-ld', shop.shop_sign_mock('mock-ld', 'ld-2', b.body), b.body) AS r
		  FROM (SELECT format('{"type": "payment.succeeded", "data": {"order_id": %s.0, "amount": 500, "currency": "USD", "payment_id": "pay-ld2"}}',
							  :ld_order2) AS body) b) x;
-- 1.5 is no order id: unmatched
SELECT r ->> 'result' AS result
  FROM (SELECT shop.shop_handle_webhook('mock-ld', shop.shop_sign_mock('mock-ld', 'ld-3', b.body), b.body) AS r
		  FROM (SELECT '{"type": "payment.succeeded", "data": {"order_id": 1.5, "amount": 500, "currency": "USD"}}'::text AS body) b) x;

-- books balance for this file's objects
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN ('sku ' || :ld_sku, 'user ld-user')
	OR subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id = 'ld-user');

-- clean up
DELETE FROM shop.order_review WHERE provider = 'mock-ld';
DELETE FROM shop.payment_log WHERE provider = 'mock-ld';
DELETE FROM shop.stock_reservation WHERE sku_id = :ld_sku;
DELETE FROM shop.order_item WHERE sku_id = :ld_sku;
DELETE FROM shop.orders WHERE user_id = 'ld-user';
DELETE FROM shop.stock_adjustment WHERE sku_id = :ld_sku;
DELETE FROM shop.sku WHERE id = :ld_sku;
DELETE FROM shop.product WHERE id = :ld_product;
DELETE FROM shop.payment_provider WHERE name = 'mock-ld';

-- Hot-SKU mode (issue 12, src/hot.c): a SKU's stock in buckets.
--
-- Hermetic: the file creates its own provider (mock-hot), product, SKUs
-- (HOT-*) and orders (users hot-*), checks the invariants of its own objects
-- only and deletes every row it created at the end.  Ids come from
-- sequences other files use too: captured with \gset, never printed.  Which
-- bucket a backend starts at depends on its backend id, so the output shows
-- totals and counts, never bucket numbers of reservations.
\set VERBOSITY terse
SET client_min_messages = warning;

CREATE TEMP VIEW hot_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject ~ ('^sku (' || (SELECT string_agg(id::text, '|') FROM shop.sku WHERE code LIKE 'HOT-%') || ')( |$)')
		OR subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'hot-%');
CREATE TEMP VIEW hot_stock AS
	SELECT code, on_hand, reserved, available, buckets FROM shop.sku_stock WHERE code LIKE 'HOT-%' ORDER BY code;
CREATE FUNCTION pg_temp.buy(u text, sku bigint, q integer) RETURNS text
LANGUAGE sql AS $$
	SELECT (shop.shop_buy_now(u, jsonb_build_array(jsonb_build_object('sku_id', sku, 'qty', q)))).status
$$;

INSERT INTO shop.product (name, price) VALUES ('Hot sneaker', 99000) RETURNING id AS product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'HOT-SNEAKER-270', 10) RETURNING id AS sku \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'HOT-SNEAKER-280', 5) RETURNING id AS sku2 \gset

-- Bad input: nothing changes
SELECT shop.shop_set_sku_mode(:sku, 65);
SELECT shop.shop_set_sku_mode(:sku, -1);
SELECT shop.shop_set_sku_mode(:sku, NULL);
SELECT shop.shop_set_sku_mode(NULL, 4);
SELECT shop.shop_set_sku_mode(-1, 4);
SELECT * FROM hot_stock;

-- Switching on: the stock is spread evenly over the buckets; the totals
-- (shop.sku_stock, the result) do not move
SELECT on_hand, reserved, available FROM shop.shop_set_sku_mode(:sku, 4);
SELECT * FROM hot_stock;
SELECT bucket, on_hand, reserved, in_use FROM shop.sku_buckets WHERE sku_id = :sku ORDER BY bucket;
SELECT on_hand, reserved FROM shop.sku WHERE id = :sku;   -- the SKU row holds nothing now

-- Selling: each line comes from one bucket and records it
SELECT pg_temp.buy('hot-ann', :sku, 2) AS ann, pg_temp.buy('hot-bob', :sku, 2) AS bob;
SELECT count(*) AS reservations, count(*) FILTER (WHERE bucket BETWEEN 1 AND 4) AS in_buckets
  FROM shop.stock_reservation WHERE sku_id = :sku;
SELECT * FROM hot_stock;
-- more than any one bucket holds: the exact path gathers the units
SELECT pg_temp.buy('hot-cat', :sku, 5) AS cat;
SELECT * FROM hot_stock;
-- one left, two asked: refused with the SKU's real total
SELECT pg_temp.buy('hot-dan', :sku, 2) AS dan;
SELECT pg_temp.buy('hot-dan', :sku, 1) AS dan;
SELECT pg_temp.buy('hot-eve', :sku, 1) AS eve;
SELECT * FROM hot_stock;
SELECT * FROM hot_violations;

-- Confirm and release touch the bucket each reservation came from
SELECT (shop.shop_confirm_paid(id, 'pay-hot-ann')).status FROM shop.orders WHERE user_id = 'hot-ann';
SELECT (shop.shop_release(id)).status FROM shop.orders WHERE user_id = 'hot-bob';
SELECT * FROM hot_stock;
SELECT * FROM hot_violations;

-- Stock adjustments go through the exact path: spread over the buckets,
-- write-offs only from what is not reserved, recorded as always
SELECT on_hand, reserved, available FROM shop.shop_adjust_stock(:sku, 6, 'hot restock');
SELECT count(*) FILTER (WHERE available > 0) AS buckets_with_stock FROM shop.sku_buckets WHERE sku_id = :sku;
SELECT on_hand, reserved, available FROM shop.shop_adjust_stock(:sku, -9, 'too many');
SELECT on_hand, reserved, available FROM shop.shop_adjust_stock(:sku, -8, 'damaged in the rush');
SELECT delta, reason FROM shop.stock_adjustment WHERE sku_id = :sku ORDER BY id;
SELECT * FROM hot_stock;

-- Expiry: the sweep releases into the buckets
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE user_id = 'hot-cat';
SELECT shop.shop_expire_pending() >= 1 AS swept;
SELECT status, status_reason FROM shop.orders WHERE user_id = 'hot-cat';
SELECT * FROM hot_stock;
SELECT * FROM hot_violations;

-- Inline reclaim: an expired order's units are taken by the next buyer
SELECT pg_temp.buy('hot-fay', :sku, 5) AS fay;
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE user_id = 'hot-fay';
SELECT * FROM hot_stock;
SELECT pg_temp.buy('hot-gus', :sku, 5) AS gus;
SELECT status, status_reason FROM shop.orders WHERE user_id = 'hot-fay';
SELECT * FROM hot_stock;
SELECT * FROM hot_violations;

-- A late payment of an expired order re-reserves it from the buckets
SELECT shop.shop_set_provider('mock-hot', 'mock',
	'whsec_' || encode(convert_to('mock-hot secret for the tests', 'UTF8'), 'base64')) IS NOT NULL AS registered;
SELECT pg_temp.buy('hot-hal', :sku2, 2) AS hal;
SELECT on_hand, reserved, available FROM shop.shop_set_sku_mode(:sku2, 2);
SELECT id AS hal_order FROM shop.orders WHERE user_id = 'hot-hal' \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :hal_order;
SELECT shop.shop_expire_pending() >= 1 AS swept;
SELECT jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
	'order_id', :'hal_order', 'amount', 198000, 'currency', 'KRW', 'payment_id', 'pay-hot-hal'))::text AS body \gset
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM shop.shop_handle_webhook('mock-hot', shop.shop_sign_mock('mock-hot', 'evt-hot-hal', :'body'), :'body') r;
SELECT status, status_reason FROM shop.orders WHERE id = :hal_order;
SELECT bucket > 0 AS from_a_bucket, state FROM shop.stock_reservation WHERE order_id = :hal_order;
SELECT * FROM hot_stock;
SELECT * FROM hot_violations;

-- Back to the SKU row: the free units move there; what is reserved in a
-- bucket stays there and settles there
SELECT pg_temp.buy('hot-ida', :sku2, 1) AS ida;
SELECT on_hand, reserved, available FROM shop.shop_set_sku_mode(:sku2, 0);
SELECT bucket, on_hand - reserved AS available, in_use FROM shop.sku_buckets WHERE sku_id = :sku2 ORDER BY bucket;
SELECT (shop.shop_release(id)).status FROM shop.orders WHERE user_id = 'hot-ida';
-- its unit is back in a bucket of a SKU sold from its row: the next buyer
-- of everything still gets it (gathered by the exact path)
SELECT * FROM hot_stock;
SELECT pg_temp.buy('hot-jo', :sku2, 3) AS jo;
SELECT * FROM hot_stock;
SELECT * FROM hot_violations;
-- the same mode again changes nothing
SELECT on_hand, reserved, available FROM shop.shop_set_sku_mode(:sku2, 0);

-- The DBA's view of the products, as the API shows them
SELECT sku_code, available FROM shop_api.products() WHERE sku_code LIKE 'HOT-%' ORDER BY sku_code;

------------------------------------------------------------------------------
-- Clean up: every row this file created; none is left.
------------------------------------------------------------------------------
DELETE FROM shop.payment_log WHERE provider = 'mock-hot';
DELETE FROM shop.order_review WHERE provider = 'mock-hot';
DELETE FROM shop.payment_provider_secret WHERE provider = 'mock-hot';
DELETE FROM shop.payment_provider WHERE name = 'mock-hot';
DELETE FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'hot-%');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'hot-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'hot-%');
DELETE FROM shop.orders WHERE user_id LIKE 'hot-%';
DELETE FROM shop.stock_adjustment WHERE sku_id IN (:sku, :sku2);
DELETE FROM shop.sku_bucket WHERE sku_id IN (:sku, :sku2);
DELETE FROM shop.sku WHERE id IN (:sku, :sku2);
DELETE FROM shop.product WHERE id = :product;
DROP VIEW hot_violations, hot_stock;
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'hot-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'HOT-%')
	 + (SELECT count(*) FROM shop.payment_provider WHERE name = 'mock-hot') AS rows_left;

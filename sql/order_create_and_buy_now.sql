-- Orders: create from cart, buy now, idempotency keys, and every refusal.
--
-- Hermetic: the file creates its own products, SKUs (codes ORDER-*) and
-- users (order-*), checks the invariants of its own objects only and deletes
-- every row it created at the end.  Order and SKU ids come from sequences
-- that other files use too: they are captured with \gset and never printed
-- (an error message shows the id as the psql variable's name).
\set ON_ERROR_STOP 0
-- (no CONTEXT lines: they would name the temporary schema of pg_temp.masked)
\set SHOW_CONTEXT never

-- The code of a SKU id (temporary: gone with the session).
CREATE FUNCTION pg_temp.sku(id bigint) RETURNS text
LANGUAGE sql AS $$ SELECT code FROM shop.sku WHERE id = $1 $$;
-- pg_temp.masked(stmt, id, label): stmt's error with the id shown as label
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all
-- Invariant violations about this file's SKUs, orders and users.
CREATE TEMP VIEW own_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'ORDER-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'order-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'order-%');

INSERT INTO shop.product (name, price) VALUES ('Lamp', 30000) RETURNING id AS lamp_product \gset
INSERT INTO shop.product (name, price) VALUES ('Bulb', 2000) RETURNING id AS bulb_product \gset
INSERT INTO shop.product (name, price) VALUES ('Gone', 100) RETURNING id AS gone_product \gset
INSERT INTO shop.product (name, price) VALUES ('Dollar thing', 500) RETURNING id AS usd_product \gset
UPDATE shop.product SET currency = 'USD' WHERE id = :usd_product;
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:lamp_product, 'ORDER-LAMP-1', 4) RETURNING id AS lamp \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:bulb_product, 'ORDER-BULB-E27', 10) RETURNING id AS bulb \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:gone_product, 'ORDER-GONE-1', 5) RETURNING id AS gone \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:usd_product, 'ORDER-USD-1', 5) RETURNING id AS usd \gset
UPDATE shop.sku SET is_active = false WHERE id = :gone;

-- create_order: reserves every line, snapshots prices, closes the cart
SELECT shop.shop_cart_add('order-erin', :bulb, 3) IS NOT NULL AS added;
SELECT shop.shop_cart_add('order-erin', :lamp, 1) IS NOT NULL AS added;
SELECT (o).id AS erin_order, (o).status, (o).amount, (o).currency, (o).expires_at > now() AS expires_later
  FROM shop.shop_create_order('order-erin', 'erin-key-1') o \gset
\echo :status :amount :currency :expires_later
SELECT code, on_hand, reserved, available FROM shop.sku_stock WHERE sku_id IN (:lamp, :bulb) ORDER BY sku_id;
SELECT product_name, sku_code, unit_price, qty FROM shop.order_item WHERE order_id = :erin_order ORDER BY sku_id;
SELECT pg_temp.sku(sku_id) AS sku, qty, state FROM shop.stock_reservation WHERE order_id = :erin_order ORDER BY sku_id;
SELECT checked_out_at IS NOT NULL AS cart_closed FROM shop.cart WHERE user_id = 'order-erin';
-- the reservation is about 20 minutes (shop.reservation_ttl)
SELECT expires_at - created_at = interval '20 minutes' AS ttl_20min FROM shop.orders WHERE id = :erin_order;

-- the same idempotency key returns the first order, changing nothing
SELECT (o).id = :erin_order AS same_order, (o).status FROM shop.shop_create_order('order-erin', 'erin-key-1') o;
SELECT count(*) AS erin_orders FROM shop.orders WHERE user_id = 'order-erin';
-- without a cart and without a known key: empty cart
SELECT * FROM shop.shop_create_order('order-erin', 'erin-key-2');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_create_order('order-erin');
\echo :LAST_ERROR_SQLSTATE

-- price snapshot: a later price change does not touch the order
UPDATE shop.product SET price = 99999 WHERE id = :lamp_product;
SELECT amount FROM shop.orders WHERE id = :erin_order;
UPDATE shop.product SET price = 30000 WHERE id = :lamp_product;

-- buy_now sums lines of one SKU before the stock check (Medusa #16502)
SELECT (o).status, (o).amount FROM shop.shop_buy_now('order-frank',
	format('[{"sku_id": %s, "qty": 3}, {"sku_id": %s, "qty": 4}]', :bulb, :bulb)::jsonb) o;
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.order_item
 WHERE order_id = (SELECT max(id) FROM shop.orders WHERE user_id = 'order-frank') ORDER BY sku_id;
SELECT on_hand, reserved FROM shop.sku WHERE id = :bulb;
-- one unit free: each line of one unit fits alone, the two together do not
SELECT on_hand FROM shop.shop_adjust_stock(:bulb, 1, 'found one');
SELECT * FROM shop.shop_buy_now('order-frank',
	format('[{"sku_id": %s, "qty": 1}, {"sku_id": %s, "qty": 1}]', :bulb, :bulb)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT on_hand, reserved FROM shop.sku WHERE id = :bulb;

-- all or nothing: the short line (BULB) undoes the lamp reserved before it
SELECT * FROM shop.shop_buy_now('order-gina',
	format('[{"sku_id": %s, "qty": 1}, {"sku_id": %s, "qty": 5}]', :lamp, :bulb)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT code, on_hand, reserved FROM shop.sku_stock WHERE sku_id IN (:lamp, :bulb) ORDER BY sku_id;
SELECT count(*) AS gina_orders FROM shop.orders WHERE user_id = 'order-gina';

-- seed flaw 1: an inactive SKU is refused, not silently dropped
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s, "qty": 1}]', :gone)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT shop.shop_cart_add('order-hank', :lamp, 1) IS NOT NULL AS added;
UPDATE shop.sku SET is_active = false WHERE id = :lamp;
SELECT * FROM shop.shop_create_order('order-hank');
\echo :LAST_ERROR_SQLSTATE
UPDATE shop.sku SET is_active = true WHERE id = :lamp;
SELECT checked_out_at IS NULL AS hank_cart_still_open FROM shop.cart WHERE user_id = 'order-hank';

-- unknown SKU; mixed currencies
SELECT * FROM shop.shop_buy_now('order-gina', '[{"sku_id": 999999, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina',
	format('[{"sku_id": %s, "qty": 1}, {"sku_id": %s, "qty": 1}]', :lamp, :usd)::jsonb);
\echo :LAST_ERROR_SQLSTATE

-- malformed items
SELECT * FROM shop.shop_buy_now('order-gina', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('{"sku_id": %s, "qty": 1}', :lamp)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s}]', :lamp)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": "%s", "qty": 1}]', :lamp)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s, "qty": 1.5}]', :lamp)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s, "qty": 0}]', :lamp)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s, "qty": 1e20}]', :lamp)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', '[17]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.masked(format($$SELECT * FROM shop.shop_buy_now('order-gina', %L)$$,
	format('[{"sku_id": %s, "qty": 2147483647}, {"sku_id": %s, "qty": 1}]', :bulb, :bulb)), :bulb, ':bulb');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s, "qty": 1}]', :lamp)::jsonb, '');
\echo :LAST_ERROR_SQLSTATE

-- amounts are bigint and overflow is an error, never a wrap
INSERT INTO shop.product (name, price) VALUES ('Yacht', 4611686018427387904) RETURNING id AS yacht_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:yacht_product, 'ORDER-YACHT', 10) RETURNING id AS yacht \gset
SELECT * FROM shop.shop_buy_now('order-gina', format('[{"sku_id": %s, "qty": 2}]', :yacht)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS gina_orders FROM shop.orders WHERE user_id = 'order-gina';

-- buy_now idempotency: the key returns the first order
SELECT (o).id AS ivy_order FROM shop.shop_buy_now('order-ivy', format('[{"sku_id": %s, "qty": 1}]', :lamp)::jsonb, 'ivy-1') o \gset
SELECT (o).id = :ivy_order AS same_order
  FROM shop.shop_buy_now('order-ivy', format('[{"sku_id": %s, "qty": 1}]', :lamp)::jsonb, 'ivy-1') o;
SELECT count(*) AS ivy_orders FROM shop.orders WHERE user_id = 'order-ivy';
-- keys are per user: another user's same key is a new order
SELECT (o).id <> :ivy_order AS new_order
  FROM shop.shop_buy_now('order-jack', format('[{"sku_id": %s, "qty": 1}]', :lamp)::jsonb, 'ivy-1') o;

SELECT * FROM own_violations;

-- Clean up: every row this file created, in foreign-key order; none is left.
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'order-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'order-%');
DELETE FROM shop.orders WHERE user_id LIKE 'order-%';
DELETE FROM shop.cart_item WHERE cart_id IN (SELECT id FROM shop.cart WHERE user_id LIKE 'order-%');
DELETE FROM shop.cart WHERE user_id LIKE 'order-%';
DELETE FROM shop.stock_adjustment WHERE sku_id IN (SELECT id FROM shop.sku WHERE code LIKE 'ORDER-%');
DELETE FROM shop.sku WHERE code LIKE 'ORDER-%';
DELETE FROM shop.product
 WHERE id IN (:lamp_product, :bulb_product, :gone_product, :usd_product, :yacht_product);
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'order-%')
	 + (SELECT count(*) FROM shop.cart WHERE user_id LIKE 'order-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'ORDER-%')
	 + (SELECT count(*) FROM shop.product
		 WHERE id IN (:lamp_product, :bulb_product, :gone_product, :usd_product, :yacht_product)) AS rows_left;

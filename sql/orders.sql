-- Orders: create from cart, buy now, idempotency keys, and every refusal.
\set ON_ERROR_STOP 0
INSERT INTO shop.product (id, name, price) VALUES (201, 'Lamp', 30000), (202, 'Bulb', 2000), (203, 'Gone', 100), (204, 'Dollar thing', 500);
UPDATE shop.product SET currency = 'USD' WHERE id = 204;
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(201, 201, 'LAMP-1', 4), (202, 202, 'BULB-E27', 10), (203, 203, 'GONE-1', 5), (204, 204, 'USD-1', 5);
UPDATE shop.sku SET is_active = false WHERE id = 203;

-- create_order: reserves every line, snapshots prices, closes the cart
SELECT shop.shop_cart_add('erin', 202, 3) IS NOT NULL AS added;
SELECT shop.shop_cart_add('erin', 201, 1) IS NOT NULL AS added;
SELECT (o).id AS erin_order, (o).status, (o).amount, (o).currency, (o).expires_at > now() AS expires_later
  FROM shop.shop_create_order('erin', 'erin-key-1') o \gset
\echo :status :amount :currency :expires_later
SELECT sku_id, on_hand, reserved, available FROM shop.sku_stock WHERE sku_id IN (201, 202) ORDER BY sku_id;
SELECT product_name, sku_code, unit_price, qty FROM shop.order_item WHERE order_id = :erin_order ORDER BY sku_id;
SELECT sku_id, qty, state FROM shop.stock_reservation WHERE order_id = :erin_order ORDER BY sku_id;
SELECT checked_out_at IS NOT NULL AS cart_closed FROM shop.cart WHERE user_id = 'erin';
-- the reservation is about 20 minutes (shop.reservation_ttl)
SELECT expires_at - created_at = interval '20 minutes' AS ttl_20min FROM shop.orders WHERE id = :erin_order;

-- the same idempotency key returns the first order, changing nothing
SELECT (o).id = :erin_order AS same_order, (o).status FROM shop.shop_create_order('erin', 'erin-key-1') o;
SELECT count(*) AS erin_orders FROM shop.orders WHERE user_id = 'erin';
-- without a cart and without a known key: empty cart
SELECT * FROM shop.shop_create_order('erin', 'erin-key-2');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_create_order('erin');
\echo :LAST_ERROR_SQLSTATE

-- price snapshot: a later price change does not touch the order
UPDATE shop.product SET price = 99999 WHERE id = 201;
SELECT amount FROM shop.orders WHERE id = :erin_order;
UPDATE shop.product SET price = 30000 WHERE id = 201;

-- buy_now sums lines of one SKU before the stock check (Medusa #16502)
SELECT (o).status, (o).amount FROM shop.shop_buy_now('frank', '[{"sku_id": 202, "qty": 3}, {"sku_id": 202, "qty": 4}]') o;
SELECT sku_id, qty FROM shop.order_item WHERE order_id = (SELECT max(id) FROM shop.orders) ORDER BY sku_id;
SELECT on_hand, reserved FROM shop.sku WHERE id = 202;
-- one unit free: each line of one unit fits alone, the two together do not
SELECT on_hand FROM shop.shop_adjust_stock(202, 1, 'found one');
SELECT * FROM shop.shop_buy_now('frank', '[{"sku_id": 202, "qty": 1}, {"sku_id": 202, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT on_hand, reserved FROM shop.sku WHERE id = 202;

-- all or nothing: the short line (BULB) undoes the lamp reserved before it
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201, "qty": 1}, {"sku_id": 202, "qty": 5}]');
\echo :LAST_ERROR_SQLSTATE
SELECT sku_id, on_hand, reserved FROM shop.sku_stock WHERE sku_id IN (201, 202) ORDER BY sku_id;
SELECT count(*) AS gina_orders FROM shop.orders WHERE user_id = 'gina';

-- seed flaw 1: an inactive SKU is refused, not silently dropped
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 203, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT shop.shop_cart_add('hank', 201, 1) IS NOT NULL AS added;
UPDATE shop.sku SET is_active = false WHERE id = 201;
SELECT * FROM shop.shop_create_order('hank');
\echo :LAST_ERROR_SQLSTATE
UPDATE shop.sku SET is_active = true WHERE id = 201;
SELECT checked_out_at IS NULL AS hank_cart_still_open FROM shop.cart WHERE user_id = 'hank';

-- unknown SKU; mixed currencies
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 999999, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201, "qty": 1}, {"sku_id": 204, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE

-- malformed items
SELECT * FROM shop.shop_buy_now('gina', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '{"sku_id": 201, "qty": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": "201", "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201, "qty": 1.5}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201, "qty": 0}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201, "qty": 1e20}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[17]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 202, "qty": 2147483647}, {"sku_id": 202, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 201, "qty": 1}]', '');
\echo :LAST_ERROR_SQLSTATE

-- amounts are bigint and overflow is an error, never a wrap
INSERT INTO shop.product (id, name, price) VALUES (205, 'Yacht', 4611686018427387904);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (205, 205, 'YACHT', 10);
SELECT * FROM shop.shop_buy_now('gina', '[{"sku_id": 205, "qty": 2}]');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS gina_orders FROM shop.orders WHERE user_id = 'gina';

-- buy_now idempotency: the key returns the first order
SELECT (o).id AS ivy_order FROM shop.shop_buy_now('ivy', '[{"sku_id": 201, "qty": 1}]', 'ivy-1') o \gset
SELECT (o).id = :ivy_order AS same_order FROM shop.shop_buy_now('ivy', '[{"sku_id": 201, "qty": 1}]', 'ivy-1') o;
SELECT count(*) AS ivy_orders FROM shop.orders WHERE user_id = 'ivy';
-- keys are per user: another user's same key is a new order
SELECT (o).id <> :ivy_order AS new_order FROM shop.shop_buy_now('jack', '[{"sku_id": 201, "qty": 1}]', 'ivy-1') o;

SELECT * FROM shop.shop_check_invariants();

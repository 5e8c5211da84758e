-- Stock adjustments and the DBA views.
--
-- Hermetic: the file creates its own product, SKU (STOCK-CHAIR-OAK) and user
-- (stock-sam), checks the invariants of its own objects only and deletes
-- every row it created at the end.  Ids come from sequences that other files
-- use too: they are captured with \gset and never printed (a SKU is shown by
-- its code, also in an invariant's subject).
\set ON_ERROR_STOP 0

-- The code of a SKU id (temporary: gone with the session).
CREATE FUNCTION pg_temp.sku(id bigint) RETURNS text
LANGUAGE sql AS $$ SELECT code FROM shop.sku WHERE id = $1 $$;
-- Invariant violations about this file's SKU, orders and users.
CREATE TEMP VIEW own_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'STOCK-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'stock-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'stock-%');

INSERT INTO shop.product (name, price) VALUES ('Chair', 70000) RETURNING id AS chair_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:chair_product, 'STOCK-CHAIR-OAK', 3) RETURNING id AS chair \gset

SELECT pg_temp.sku(sku_id) AS sku, on_hand, reserved, available FROM shop.shop_adjust_stock(:chair, 7, 'received PO-17');
SELECT (o).status FROM shop.shop_buy_now('stock-sam', format('[{"sku_id": %s, "qty": 6}]', :chair)::jsonb) o;
-- a write-off may take only unreserved stock
SELECT * FROM shop.shop_adjust_stock(:chair, -5, 'damaged');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.sku(sku_id) AS sku, on_hand, reserved, available FROM shop.shop_adjust_stock(:chair, -4, 'damaged');
SELECT * FROM shop.shop_adjust_stock(:chair, -1, 'lost');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.sku(sku_id) AS sku, delta, reason FROM shop.stock_adjustment WHERE sku_id = :chair ORDER BY id;
-- bad input
SELECT * FROM shop.shop_adjust_stock(:chair, 0, 'nothing');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(:chair, 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(:chair, 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(999999, 1, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT on_hand, reserved FROM shop.sku WHERE id = :chair;

-- views
SELECT code, product_name, on_hand, reserved, available, sellable FROM shop.sku_stock WHERE sku_id = :chair;
SELECT sku_code, qty, order_status, age >= interval '0' AS has_age, expired FROM shop.active_reservations WHERE sku_id = :chair;
SELECT user_id, amount, currency, time_left > interval '19 minutes' AS time_left_ok, expired
  FROM shop.expiring_orders WHERE user_id = 'stock-sam';

-- the invariant check finds corruption a DBA might cause by hand
UPDATE shop.sku SET reserved = reserved - 1 WHERE id = :chair;
SELECT check_name, replace(subject, 'sku ' || :chair, 'sku ' || pg_temp.sku(:chair)) AS subject, detail
  FROM own_violations;
UPDATE shop.sku SET reserved = reserved + 1 WHERE id = :chair;
SELECT * FROM own_violations;

-- Clean up: every row this file created, in foreign-key order; none is left.
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'stock-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'stock-%');
DELETE FROM shop.orders WHERE user_id LIKE 'stock-%';
DELETE FROM shop.stock_adjustment WHERE sku_id = :chair;
DELETE FROM shop.sku WHERE code LIKE 'STOCK-%';
DELETE FROM shop.product WHERE id = :chair_product;
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'stock-%')
	 + (SELECT count(*) FROM shop.stock_adjustment WHERE sku_id = :chair)
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'STOCK-%')
	 + (SELECT count(*) FROM shop.product WHERE id = :chair_product) AS rows_left;

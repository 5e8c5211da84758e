-- Settling orders: confirm (consume) and release (give back), both idempotent.
--
-- Hermetic: the file creates its own products, SKUs (codes SETTLE-*) and
-- users (settle-*), checks the invariants of its own objects only and
-- deletes every row it created at the end.  Order and SKU ids come from
-- sequences that other files use too: they are captured with \gset and
-- never printed (error messages show them as the psql variable's name).
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
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'SETTLE-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'settle-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'settle-%');

INSERT INTO shop.product (name, price) VALUES ('Pen', 1500) RETURNING id AS pen_product \gset
INSERT INTO shop.product (name, price) VALUES ('Ink', 800) RETURNING id AS ink_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:pen_product, 'SETTLE-PEN-BLK', 10) RETURNING id AS pen \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:ink_product, 'SETTLE-INK-BLU', 10) RETURNING id AS ink \gset

SELECT (o).id AS o1 FROM shop.shop_buy_now('settle-kim',
	format('[{"sku_id": %s, "qty": 2}, {"sku_id": %s, "qty": 3}]', :pen, :ink)::jsonb) o \gset
SELECT (o).id AS o2 FROM shop.shop_buy_now('settle-lee', format('[{"sku_id": %s, "qty": 1}]', :pen)::jsonb) o \gset
SELECT (o).id AS o3 FROM shop.shop_buy_now('settle-moe', format('[{"sku_id": %s, "qty": 4}]', :ink)::jsonb) o \gset
SELECT code, on_hand, reserved FROM shop.sku WHERE id IN (:pen, :ink) ORDER BY id;

-- confirm consumes: on_hand and reserved drop together
SELECT status, amount, currency FROM shop.shop_confirm_paid(:o1, 'pay_1');
SELECT code, on_hand, reserved FROM shop.sku WHERE id IN (:pen, :ink) ORDER BY id;
SELECT pg_temp.sku(sku_id) AS sku, state FROM shop.stock_reservation WHERE order_id = :o1 ORDER BY sku_id;
SELECT status, external_payment_id FROM shop.orders WHERE id = :o1;
-- confirming again with the same payment returns the PAID order unchanged;
-- another payment is a double payment: refused (SH016), nothing changes
SELECT status FROM shop.shop_confirm_paid(:o1, 'pay_1');
SELECT pg_temp.masked(format('SELECT * FROM shop.shop_confirm_paid(%s, %L)', :o1, 'pay_other'), :o1, ':o1');
\echo :LAST_ERROR_SQLSTATE
SELECT external_payment_id FROM shop.orders WHERE id = :o1;
SELECT code, on_hand, reserved FROM shop.sku WHERE id IN (:pen, :ink) ORDER BY id;
-- a PAID order cannot be released
SELECT pg_temp.masked(format('SELECT * FROM shop.shop_release(%s)', :o1), :o1, ':o1');
\echo :LAST_ERROR_SQLSTATE

-- release gives the stock back (on_hand untouched)
SELECT status FROM shop.shop_release(:o2);
SELECT code, on_hand, reserved FROM shop.sku WHERE id = :pen;
SELECT state FROM shop.stock_reservation WHERE order_id = :o2;
SELECT status, status_reason FROM shop.orders WHERE id = :o2;
-- releasing again is a no-op, also with another reason
SELECT status FROM shop.shop_release(:o2);
SELECT status FROM shop.shop_release(:o2, 'payment_failed');
SELECT code, on_hand, reserved FROM shop.sku WHERE id = :pen;
-- a released order cannot be confirmed later
SELECT pg_temp.masked(format('SELECT * FROM shop.shop_confirm_paid(%s, %L)', :o2, 'late_pay'), :o2, ':o2');
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM shop.orders WHERE id = :o2;

-- reason payment_failed ends FAILED
SELECT status FROM shop.shop_release(:o3, 'payment_failed');
SELECT status, status_reason FROM shop.orders WHERE id = :o3;
SELECT pg_temp.masked(format('SELECT * FROM shop.shop_confirm_paid(%s, %L)', :o3, 'late_pay'), :o3, ':o3');
\echo :LAST_ERROR_SQLSTATE

-- unknown orders and bad arguments
SELECT * FROM shop.shop_confirm_paid(999999, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_release(999999);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_confirm_paid(:o1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_confirm_paid(NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_release(:o1, NULL);
\echo :LAST_ERROR_SQLSTATE

SELECT code, on_hand, reserved FROM shop.sku WHERE id IN (:pen, :ink) ORDER BY id;
SELECT * FROM own_violations;

-- Clean up: every row this file created, in foreign-key order; none is left.
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'settle-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'settle-%');
DELETE FROM shop.orders WHERE user_id LIKE 'settle-%';
DELETE FROM shop.sku WHERE code LIKE 'SETTLE-%';
DELETE FROM shop.product WHERE id IN (:pen_product, :ink_product);
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'settle-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'SETTLE-%')
	 + (SELECT count(*) FROM shop.product WHERE id IN (:pen_product, :ink_product)) AS rows_left;

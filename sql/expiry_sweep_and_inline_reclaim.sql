-- Expiry: the sweep, the inline reclaim that works without pg_cron, and
-- registering the sweep with pg_cron.
--
-- Hermetic: the file creates its own products, SKUs (codes EXP-*) and users
-- (expiry-*), checks the invariants of its own objects only and deletes
-- every row it created at the end.  Order and SKU ids come from sequences
-- that other files use too: they are captured with \gset and never printed
-- (orders are shown by the name of their psql variable).  The sweep
-- (shop_expire_pending) is database-wide: its counts assume that no other
-- test left expired PENDING orders behind, which every file guarantees by
-- deleting its rows.
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
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'EXP-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'expiry-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'expiry-%');

INSERT INTO shop.product (name, price) VALUES ('Ticket', 50000) RETURNING id AS ticket_product \gset
INSERT INTO shop.product (name, price) VALUES ('Badge', 1000) RETURNING id AS badge_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:ticket_product, 'EXP-TICKET-A', 2) RETURNING id AS ticket \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:badge_product, 'EXP-BADGE', 100) RETURNING id AS badge \gset

SELECT (o).id AS t1 FROM shop.shop_buy_now('expiry-nina',
	format('[{"sku_id": %s, "qty": 1}, {"sku_id": %s, "qty": 5}]', :ticket, :badge)::jsonb) o \gset
SELECT (o).id AS t2 FROM shop.shop_buy_now('expiry-omar', format('[{"sku_id": %s, "qty": 1}]', :ticket)::jsonb) o \gset
SELECT code, on_hand, reserved, available FROM shop.sku_stock WHERE sku_id IN (:ticket, :badge) ORDER BY sku_id;
-- nothing has expired yet
SELECT shop.shop_expire_pending();
SELECT CASE order_id WHEN :t1 THEN 't1' WHEN :t2 THEN 't2' END AS order_id, expired
  FROM shop.expiring_orders WHERE order_id IN (:t1, :t2) ORDER BY order_id;

-- sold out, nothing expired: refused
SELECT * FROM shop.shop_buy_now('expiry-pia', format('[{"sku_id": %s, "qty": 1}]', :ticket)::jsonb);
\echo :LAST_ERROR_SQLSTATE

-- nina's order runs out of time; pg_cron is not running the sweep here
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :t1;
SELECT CASE order_id WHEN :t1 THEN 't1' WHEN :t2 THEN 't2' END AS order_id, expired
  FROM shop.expiring_orders WHERE order_id IN (:t1, :t2) ORDER BY order_id;
SELECT CASE order_id WHEN :t1 THEN 't1' END AS order_id, sku_code, qty, expired
  FROM shop.active_reservations WHERE order_id = :t1 ORDER BY sku_id;

-- a buyer who finds too little stock reclaims the expired order inline:
-- all of its lines are released (also BADGE), then the sale goes through
SELECT (o).status FROM shop.shop_buy_now('expiry-pia', format('[{"sku_id": %s, "qty": 1}]', :ticket)::jsonb) o;
SELECT status, status_reason FROM shop.orders WHERE id = :t1;
SELECT pg_temp.sku(sku_id) AS sku, state FROM shop.stock_reservation WHERE order_id = :t1 ORDER BY sku_id;
SELECT code, on_hand, reserved, available FROM shop.sku_stock WHERE sku_id IN (:ticket, :badge) ORDER BY sku_id;
-- the reclaimed order cannot be confirmed any more
SELECT pg_temp.masked(format('SELECT * FROM shop.shop_confirm_paid(%s, %L)', :t1, 'too_late'), :t1, ':t1');
\echo :LAST_ERROR_SQLSTATE

-- an expired order whose reclaim would not make enough room is left alone:
-- the sale fails and the expired order stays for the sweep
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :t2;
SELECT * FROM shop.shop_buy_now('expiry-quin', format('[{"sku_id": %s, "qty": 3}]', :ticket)::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM shop.orders WHERE id = :t2;

-- confirming an order past expires_at that nobody released yet is fine:
-- its stock is still reserved for it
SELECT status FROM shop.shop_confirm_paid(:t2, 'pay_t2');

-- the sweep: releases expired PENDING orders, in batches of max_orders
SELECT count(*) AS made FROM (
	SELECT shop.shop_buy_now('expiry-sweep-' || g, format('[{"sku_id": %s, "qty": 1}]', :badge)::jsonb)
	  FROM generate_series(1, 5) g) s;
UPDATE shop.orders SET expires_at = now() - interval '1 second' WHERE user_id LIKE 'expiry-sweep-%';
SELECT reserved FROM shop.sku WHERE id = :badge;
SELECT shop.shop_expire_pending(2);
SELECT shop.shop_expire_pending();
SELECT shop.shop_expire_pending();
SELECT status, status_reason, count(*) FROM shop.orders WHERE user_id LIKE 'expiry-sweep-%' GROUP BY 1, 2;
SELECT reserved FROM shop.sku WHERE id = :badge;
SELECT shop.shop_expire_pending(0);
\echo :LAST_ERROR_SQLSTATE
SELECT shop.shop_expire_pending(NULL);
\echo :LAST_ERROR_SQLSTATE

-- shop.reservation_ttl sets how long new orders hold stock
SHOW shop.reservation_ttl;
SET shop.reservation_ttl = '90s';
SELECT (o).id AS t3 FROM shop.shop_buy_now('expiry-rita', format('[{"sku_id": %s, "qty": 1}]', :badge)::jsonb) o \gset
SELECT expires_at - created_at AS ttl FROM shop.orders WHERE id = :t3;
RESET shop.reservation_ttl;
SET shop.reservation_ttl = 0;

-- pg_cron cannot schedule from this database: SH007 (the message and hint
-- depend on how the server runs pg_cron, so only the code is compared)
\set VERBOSITY sqlstate
SELECT shop.shop_schedule_expiry();
\set VERBOSITY default

SELECT * FROM own_violations;

-- stock held by an expired order is sellable to a cart too: the add
-- counts it, and checkout reclaims it (pg_cron need not have run)
INSERT INTO shop.product (name, price) VALUES ('Seat', 7000) RETURNING id AS seat_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:seat_product, 'EXP-SEAT-1', 1) RETURNING id AS seat \gset
SELECT (o).id AS t4 FROM shop.shop_buy_now('expiry-sol', format('[{"sku_id": %s, "qty": 1}]', :seat)::jsonb) o \gset
SELECT * FROM shop.shop_cart_add('expiry-tom', :seat, 1);
\echo :LAST_ERROR_SQLSTATE
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :t4;
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_add('expiry-tom', :seat, 1);
SELECT * FROM shop.shop_cart_add('expiry-tom', :seat, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT (o).status FROM shop.shop_create_order('expiry-tom') o;
SELECT status, status_reason FROM shop.orders WHERE id = :t4;
SELECT on_hand, reserved FROM shop.sku WHERE id = :seat;
SELECT * FROM own_violations;

-- the reclaim targets the SKUs that are short: 150 older expired orders
-- holding a plentiful SKU must not hide the one expired order holding the
-- scarce one (each reclaim releases at most 100 orders)
INSERT INTO shop.product (name, price) VALUES ('Plenty', 100) RETURNING id AS plenty_product \gset
INSERT INTO shop.product (name, price) VALUES ('Scarce', 100) RETURNING id AS scarce_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:plenty_product, 'EXP-PLENTY', 1000) RETURNING id AS plenty \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:scarce_product, 'EXP-SCARCE', 1) RETURNING id AS scarce \gset
SELECT count(shop.shop_buy_now('expiry-old-' || g, format('[{"sku_id": %s, "qty": 1}]', :plenty)::jsonb)) AS old_orders
  FROM generate_series(1, 150) g;
SELECT (o).id AS t5 FROM shop.shop_buy_now('expiry-holder', format('[{"sku_id": %s, "qty": 1}]', :scarce)::jsonb) o \gset
-- expired an hour ago, the old orders (lower ids) a second apart before it
UPDATE shop.orders SET expires_at = now() - interval '1 hour' + (id - :t5) * interval '1 second'
 WHERE user_id LIKE 'expiry-old-%' OR id = :t5;
SELECT (o).status FROM shop.shop_buy_now('expiry-both',
	format('[{"sku_id": %s, "qty": 1}, {"sku_id": %s, "qty": 1}]', :plenty, :scarce)::jsonb) o;
SELECT status, status_reason FROM shop.orders WHERE id = :t5;
SELECT count(*) FILTER (WHERE status = 'PENDING') AS old_still_pending FROM shop.orders WHERE user_id LIKE 'expiry-old-%';
SELECT code, on_hand, reserved FROM shop.sku_stock WHERE sku_id IN (:plenty, :scarce) ORDER BY sku_id;
SELECT shop.shop_expire_pending() AS swept;
SELECT * FROM own_violations;

-- Clean up: every row this file created, in foreign-key order; none is left.
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'expiry-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'expiry-%');
DELETE FROM shop.orders WHERE user_id LIKE 'expiry-%';
DELETE FROM shop.cart_item WHERE cart_id IN (SELECT id FROM shop.cart WHERE user_id LIKE 'expiry-%');
DELETE FROM shop.cart WHERE user_id LIKE 'expiry-%';
DELETE FROM shop.sku WHERE code LIKE 'EXP-%';
DELETE FROM shop.product
 WHERE id IN (:ticket_product, :badge_product, :seat_product, :plenty_product, :scarce_product);
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'expiry-%')
	 + (SELECT count(*) FROM shop.cart WHERE user_id LIKE 'expiry-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'EXP-%')
	 + (SELECT count(*) FROM shop.product
		 WHERE id IN (:ticket_product, :badge_product, :seat_product, :plenty_product, :scarce_product)) AS rows_left;

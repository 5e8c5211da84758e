-- Expiry: the sweep, the inline reclaim that works without pg_cron, and
-- registering the sweep with pg_cron.
\set ON_ERROR_STOP 0
INSERT INTO shop.product (id, name, price) VALUES (401, 'Ticket', 50000), (402, 'Badge', 1000);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (401, 401, 'TICKET-A', 2), (402, 402, 'BADGE', 100);

SELECT (o).id AS t1 FROM shop.shop_buy_now('nina', '[{"sku_id": 401, "qty": 1}, {"sku_id": 402, "qty": 5}]') o \gset
SELECT (o).id AS t2 FROM shop.shop_buy_now('omar', '[{"sku_id": 401, "qty": 1}]') o \gset
SELECT sku_id, on_hand, reserved, available FROM shop.sku_stock WHERE sku_id IN (401, 402) ORDER BY sku_id;
-- nothing has expired yet
SELECT shop.shop_expire_pending();
SELECT order_id, expired FROM shop.expiring_orders WHERE order_id IN (:t1, :t2) ORDER BY order_id;

-- sold out, nothing expired: refused
SELECT * FROM shop.shop_buy_now('pia', '[{"sku_id": 401, "qty": 1}]');
\echo :LAST_ERROR_SQLSTATE

-- nina's order runs out of time; pg_cron is not running the sweep here
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :t1;
SELECT order_id, expired FROM shop.expiring_orders WHERE order_id IN (:t1, :t2) ORDER BY order_id;
SELECT order_id, sku_code, qty, expired FROM shop.active_reservations WHERE order_id = :t1 ORDER BY sku_id;

-- a buyer who finds too little stock reclaims the expired order inline:
-- all of its lines are released (also BADGE), then the sale goes through
SELECT (o).status FROM shop.shop_buy_now('pia', '[{"sku_id": 401, "qty": 1}]') o;
SELECT status, status_reason FROM shop.orders WHERE id = :t1;
SELECT sku_id, state FROM shop.stock_reservation WHERE order_id = :t1 ORDER BY sku_id;
SELECT sku_id, on_hand, reserved, available FROM shop.sku_stock WHERE sku_id IN (401, 402) ORDER BY sku_id;
-- the reclaimed order cannot be confirmed any more
SELECT * FROM shop.shop_confirm_paid(:t1, 'too_late');
\echo :LAST_ERROR_SQLSTATE

-- an expired order whose reclaim would not make enough room is left alone:
-- the sale fails and the expired order stays for the sweep
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :t2;
SELECT * FROM shop.shop_buy_now('quin', '[{"sku_id": 401, "qty": 3}]');
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM shop.orders WHERE id = :t2;

-- confirming an order past expires_at that nobody released yet is fine:
-- its stock is still reserved for it
SELECT status FROM shop.shop_confirm_paid(:t2, 'pay_t2');

-- the sweep: releases expired PENDING orders, in batches of max_orders
SELECT count(*) AS made FROM (
	SELECT shop.shop_buy_now('sweep-' || g, '[{"sku_id": 402, "qty": 1}]') FROM generate_series(1, 5) g) s;
UPDATE shop.orders SET expires_at = now() - interval '1 second' WHERE user_id LIKE 'sweep-%';
SELECT reserved FROM shop.sku WHERE id = 402;
SELECT shop.shop_expire_pending(2);
SELECT shop.shop_expire_pending();
SELECT shop.shop_expire_pending();
SELECT status, status_reason, count(*) FROM shop.orders WHERE user_id LIKE 'sweep-%' GROUP BY 1, 2;
SELECT reserved FROM shop.sku WHERE id = 402;
SELECT shop.shop_expire_pending(0);
\echo :LAST_ERROR_SQLSTATE
SELECT shop.shop_expire_pending(NULL);
\echo :LAST_ERROR_SQLSTATE

-- shop.reservation_ttl sets how long new orders hold stock
SHOW shop.reservation_ttl;
SET shop.reservation_ttl = '90s';
SELECT (o).id AS t3 FROM shop.shop_buy_now('rita', '[{"sku_id": 402, "qty": 1}]') o \gset
SELECT expires_at - created_at AS ttl FROM shop.orders WHERE id = :t3;
RESET shop.reservation_ttl;
SET shop.reservation_ttl = 0;

-- pg_cron cannot schedule from this database: SH007 (the message and hint
-- depend on how the server runs pg_cron, so only the code is compared)
\set VERBOSITY sqlstate
SELECT shop.shop_schedule_expiry();
\set VERBOSITY default

SELECT * FROM shop.shop_check_invariants();

-- stock held by an expired order is sellable to a cart too: the add
-- counts it, and checkout reclaims it (pg_cron need not have run)
INSERT INTO shop.product (id, name, price) VALUES (403, 'Seat', 7000);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (403, 403, 'SEAT-1', 1);
SELECT (o).id AS t4 FROM shop.shop_buy_now('sol', '[{"sku_id": 403, "qty": 1}]') o \gset
SELECT * FROM shop.shop_cart_add('tom', 403, 1);
\echo :LAST_ERROR_SQLSTATE
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :t4;
SELECT * FROM shop.shop_cart_add('tom', 403, 1);
SELECT * FROM shop.shop_cart_add('tom', 403, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT (o).status FROM shop.shop_create_order('tom') o;
SELECT status, status_reason FROM shop.orders WHERE id = :t4;
SELECT on_hand, reserved FROM shop.sku WHERE id = 403;
SELECT * FROM shop.shop_check_invariants();

-- the reclaim targets the SKUs that are short: 150 older expired orders
-- holding a plentiful SKU must not hide the one expired order holding the
-- scarce one (each reclaim releases at most 100 orders)
INSERT INTO shop.product (id, name, price) VALUES (404, 'Plenty', 100), (405, 'Scarce', 100);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (404, 404, 'PLENTY', 1000), (405, 405, 'SCARCE', 1);
SELECT count(shop.shop_buy_now('old-' || g, '[{"sku_id": 404, "qty": 1}]')) AS old_orders FROM generate_series(1, 150) g;
SELECT (o).id AS t5 FROM shop.shop_buy_now('holder', '[{"sku_id": 405, "qty": 1}]') o \gset
UPDATE shop.orders SET expires_at = now() - interval '1 hour' + id * interval '1 second'
 WHERE user_id LIKE 'old-%' OR id = :t5;
SELECT (o).status FROM shop.shop_buy_now('both', '[{"sku_id": 404, "qty": 1}, {"sku_id": 405, "qty": 1}]') o;
SELECT status, status_reason FROM shop.orders WHERE id = :t5;
SELECT count(*) FILTER (WHERE status = 'PENDING') AS old_still_pending FROM shop.orders WHERE user_id LIKE 'old-%';
SELECT sku_id, on_hand, reserved FROM shop.sku_stock WHERE sku_id IN (404, 405) ORDER BY sku_id;
SELECT shop.shop_expire_pending() AS swept;
SELECT * FROM shop.shop_check_invariants();

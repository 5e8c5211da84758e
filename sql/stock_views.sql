-- Stock adjustments and the DBA views.
\set ON_ERROR_STOP 0
INSERT INTO shop.product (id, name, price) VALUES (501, 'Chair', 70000);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (501, 501, 'CHAIR-OAK', 3);

SELECT * FROM shop.shop_adjust_stock(501, 7, 'received PO-17');
SELECT (o).status FROM shop.shop_buy_now('sam', '[{"sku_id": 501, "qty": 6}]') o;
-- a write-off may take only unreserved stock
SELECT * FROM shop.shop_adjust_stock(501, -5, 'damaged');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(501, -4, 'damaged');
SELECT * FROM shop.shop_adjust_stock(501, -1, 'lost');
\echo :LAST_ERROR_SQLSTATE
SELECT sku_id, delta, reason FROM shop.stock_adjustment WHERE sku_id = 501 ORDER BY id;
-- bad input
SELECT * FROM shop.shop_adjust_stock(501, 0, 'nothing');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(501, 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(501, 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_adjust_stock(999999, 1, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT on_hand, reserved FROM shop.sku WHERE id = 501;

-- views
SELECT code, product_name, on_hand, reserved, available, sellable FROM shop.sku_stock WHERE sku_id = 501;
SELECT sku_code, qty, order_status, age >= interval '0' AS has_age, expired FROM shop.active_reservations WHERE sku_id = 501;
SELECT user_id, amount, currency, time_left > interval '19 minutes' AS time_left_ok, expired
  FROM shop.expiring_orders WHERE user_id = 'sam';

-- the invariant check finds corruption a DBA might cause by hand
UPDATE shop.sku SET reserved = reserved - 1 WHERE id = 501;
SELECT check_name, subject, detail FROM shop.shop_check_invariants();
UPDATE shop.sku SET reserved = reserved + 1 WHERE id = 501;
SELECT * FROM shop.shop_check_invariants();

-- spread, implementation orm: the seed's Django statement sequence for one
-- catalog cycle (/work/shared/bench/seed-orm-statements.txt, 43 statements in
-- 5 transactions + BEGIN/COMMIT), one round trip per statement, run with
-- -M simple (psycopg2 sends literal SQL), mapped to our schema:
--   shop_cart/shop_cartitem/shop_order/... -> shop.cart/cart_item/orders/...;
--   "released" flag -> state 'active'/'consumed'; cart_item has no id column.
-- The Python-side checks are pgbench \if on the values the SELECTs return.
-- Deviations (no extra round trips): timestamps are now() instead of client
-- literals; the cart check is "available >= qty" (the seed's max(1, ...) let
-- one unit through at zero stock, seed flaw 2); on refusal the client rolls
-- back and stops (a \gset on no row), as c/plpgsql clients stop on SH001.
-- Spread-only: the 3 SKUs come one from each third of the catalog (distinct);
-- the order_item snapshot values (name, code, price are functions of the id,
-- bench/sql/setup.sql) are computed client-side because pgbench cannot keep
-- the 3 rows of the cart query (\gset needs one row); the SKU lock query's
-- rows are checked through \aset, which keeps the last row only.
\set n :n + 1
\set uid :client_id * 1000000000 + :n
\set s1 random(1, 3333)
\set s2 random(3334, 6666)
\set s3 random(6667, 10000)
\set p1 1000 + (:s1 % 90) * 100
\set p2 1000 + (:s2 % 90) * 100
\set p3 1000 + (:s3 % 90) * 100
-- CartService.add x3: 21 statements (3 transactions)
BEGIN;
SELECT id, user_id, created_at, checked_out_at FROM shop.cart WHERE (checked_out_at IS NULL AND user_id = :uid::text) LIMIT 21;
SAVEPOINT s_x1;
INSERT INTO shop.cart (user_id, created_at, checked_out_at) VALUES (:uid::text, now(), NULL) RETURNING id AS cart_id \gset
RELEASE SAVEPOINT s_x1;
SELECT id AS k_id, product_id AS k_product_id, code AS k_code, on_hand AS k_on_hand, reserved AS k_reserved, is_active AS k_is_active FROM shop.sku WHERE id = :s2 LIMIT 21 FOR UPDATE \gset
\if :k_on_hand - :k_reserved < 1
ROLLBACK;
SELECT 'sold out' WHERE false \gset
\endif
SELECT cart_id, sku_id, qty, added_at FROM shop.cart_item WHERE (cart_id = :cart_id AND sku_id = :s2) LIMIT 21;
SAVEPOINT s_x2;
INSERT INTO shop.cart_item (cart_id, sku_id, qty, added_at) VALUES (:cart_id, :s2, 1, now()) RETURNING sku_id;
RELEASE SAVEPOINT s_x2;
COMMIT;
BEGIN;
SELECT id AS cart_id, user_id, created_at, checked_out_at FROM shop.cart WHERE (checked_out_at IS NULL AND user_id = :uid::text) LIMIT 21 \gset
SELECT id AS k_id, product_id AS k_product_id, code AS k_code, on_hand AS k_on_hand, reserved AS k_reserved, is_active AS k_is_active FROM shop.sku WHERE id = :s3 LIMIT 21 FOR UPDATE \gset
\if :k_on_hand - :k_reserved < 1
ROLLBACK;
SELECT 'sold out' WHERE false \gset
\endif
SELECT cart_id, sku_id, qty, added_at FROM shop.cart_item WHERE (cart_id = :cart_id AND sku_id = :s3) LIMIT 21;
SAVEPOINT s_x3;
INSERT INTO shop.cart_item (cart_id, sku_id, qty, added_at) VALUES (:cart_id, :s3, 1, now()) RETURNING sku_id;
RELEASE SAVEPOINT s_x3;
COMMIT;
BEGIN;
SELECT id AS cart_id, user_id, created_at, checked_out_at FROM shop.cart WHERE (checked_out_at IS NULL AND user_id = :uid::text) LIMIT 21 \gset
SELECT id AS k_id, product_id AS k_product_id, code AS k_code, on_hand AS k_on_hand, reserved AS k_reserved, is_active AS k_is_active FROM shop.sku WHERE id = :s1 LIMIT 21 FOR UPDATE \gset
\if :k_on_hand - :k_reserved < 1
ROLLBACK;
SELECT 'sold out' WHERE false \gset
\endif
SELECT cart_id, sku_id, qty, added_at FROM shop.cart_item WHERE (cart_id = :cart_id AND sku_id = :s1) LIMIT 21;
SAVEPOINT s_x4;
INSERT INTO shop.cart_item (cart_id, sku_id, qty, added_at) VALUES (:cart_id, :s1, 1, now()) RETURNING sku_id;
RELEASE SAVEPOINT s_x4;
COMMIT;
-- OrderService.create_from_cart: 15 statements
BEGIN;
SELECT id AS c_id, user_id AS c_user_id, created_at AS c_created_at, checked_out_at AS c_checked_out_at FROM shop.cart WHERE (checked_out_at IS NULL AND user_id = :uid::text) LIMIT 21 FOR UPDATE \gset
SELECT ci.cart_id, ci.sku_id, ci.qty, ci.added_at, s.id, s.product_id, s.code, s.on_hand, s.reserved, s.is_active, p.id, p.name, p.price, p.is_active, p.created_at FROM shop.cart_item ci INNER JOIN shop.sku s ON (ci.sku_id = s.id) INNER JOIN shop.product p ON (s.product_id = p.id) WHERE ci.cart_id = :c_id;
INSERT INTO shop.orders (user_id, status, amount, currency, external_payment_id, created_at, updated_at, expires_at) VALUES (:uid::text, 'PENDING', 0, 'KRW', '', now(), now(), now() + interval '20 minutes') RETURNING id AS o_id \gset
SELECT id AS l_id, product_id AS l_product_id, code AS l_code, on_hand AS l_on_hand, reserved AS l_reserved, is_active AS l_is_active FROM shop.sku WHERE (id IN (:s1, :s2, :s3) AND is_active) FOR UPDATE \aset
\if :l_on_hand - :l_reserved < 1
ROLLBACK;
SELECT 'sold out' WHERE false \gset
\endif
UPDATE shop.sku SET reserved = (reserved + 1) WHERE id = :s1;
UPDATE shop.sku SET reserved = (reserved + 1) WHERE id = :s2;
UPDATE shop.sku SET reserved = (reserved + 1) WHERE id = :s3;
INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) VALUES (:o_id, :s1, 'Product :s1', 'SKU-' || lpad(':s1', 5, '0'), :p1, 1) RETURNING id;
INSERT INTO shop.stock_reservation (order_id, sku_id, qty, created_at, state) VALUES (:o_id, :s1, 1, now(), 'active') RETURNING id AS r1 \gset
INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) VALUES (:o_id, :s2, 'Product :s2', 'SKU-' || lpad(':s2', 5, '0'), :p2, 1) RETURNING id;
INSERT INTO shop.stock_reservation (order_id, sku_id, qty, created_at, state) VALUES (:o_id, :s2, 1, now(), 'active') RETURNING id AS r2 \gset
INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) VALUES (:o_id, :s3, 'Product :s3', 'SKU-' || lpad(':s3', 5, '0'), :p3, 1) RETURNING id;
INSERT INTO shop.stock_reservation (order_id, sku_id, qty, created_at, state) VALUES (:o_id, :s3, 1, now(), 'active') RETURNING id AS r3 \gset
UPDATE shop.orders SET amount = :p1 + :p2 + :p3, subtotal = :p1 + :p2 + :p3 WHERE id = :o_id;
UPDATE shop.cart SET checked_out_at = now() WHERE id = :c_id;
COMMIT;
-- OrderService.confirm_paid: 7 statements
BEGIN;
SELECT id AS q_id, user_id AS q_user_id, status AS q_status, amount AS q_amount, currency AS q_currency, external_payment_id AS q_external_payment_id, created_at AS q_created_at, updated_at AS q_updated_at, expires_at AS q_expires_at FROM shop.orders WHERE id = :o_id LIMIT 21 FOR UPDATE \gset
SELECT id, order_id, sku_id, qty, created_at, state FROM shop.stock_reservation WHERE (order_id = :o_id AND state = 'active') FOR UPDATE;
UPDATE shop.sku SET reserved = (reserved - 1), on_hand = (on_hand - 1) WHERE id = :s1;
UPDATE shop.sku SET reserved = (reserved - 1), on_hand = (on_hand - 1) WHERE id = :s2;
UPDATE shop.sku SET reserved = (reserved - 1), on_hand = (on_hand - 1) WHERE id = :s3;
UPDATE shop.stock_reservation SET state = 'consumed', state_changed_at = now() WHERE id IN (:r1, :r2, :r3);
UPDATE shop.orders SET status = 'PAID', external_payment_id = 'tx_bench' WHERE id = :o_id;
COMMIT;

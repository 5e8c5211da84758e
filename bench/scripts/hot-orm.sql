-- hot / scarce, implementation orm: the seed's Django statement sequence for
-- one cycle (/work/shared/bench/seed-orm-statements.txt, 23 statements in 3
-- transactions + BEGIN/COMMIT), one round trip per statement, run with
-- -M simple (psycopg2 sends literal SQL), mapped to our schema:
--   shop_cart/shop_cartitem/shop_order/... -> shop.cart/cart_item/orders/...;
--   "released" flag -> state 'active'/'consumed'; cart_item has no id column.
-- The Python-side checks are pgbench \if on the values the SELECTs return.
-- Deviations (no extra round trips): timestamps are now() instead of client
-- literals; the cart check is "available >= qty" (the seed's max(1, ...) let
-- one unit through at zero stock, seed flaw 2); on refusal the client rolls
-- back and stops (a \gset on no row), as c/plpgsql clients stop on SH001.
\set n :n + 1
\set uid :client_id * 1000000000 + :n
-- CartService.add: 9 statements
BEGIN;
SELECT id, user_id, created_at, checked_out_at FROM shop.cart WHERE (checked_out_at IS NULL AND user_id = :uid::text) LIMIT 21;
SAVEPOINT s_x1;
INSERT INTO shop.cart (user_id, created_at, checked_out_at) VALUES (:uid::text, now(), NULL) RETURNING id AS cart_id \gset
RELEASE SAVEPOINT s_x1;
SELECT id AS k_id, product_id AS k_product_id, code AS k_code, on_hand AS k_on_hand, reserved AS k_reserved, is_active AS k_is_active FROM shop.sku WHERE id = :sku LIMIT 21 FOR UPDATE \gset
\if :k_on_hand - :k_reserved < 1
ROLLBACK;
SELECT 'sold out' WHERE false \gset
\endif
SELECT cart_id, sku_id, qty, added_at FROM shop.cart_item WHERE (cart_id = :cart_id AND sku_id = :sku) LIMIT 21;
SAVEPOINT s_x2;
INSERT INTO shop.cart_item (cart_id, sku_id, qty, added_at) VALUES (:cart_id, :sku, 1, now()) RETURNING sku_id;
RELEASE SAVEPOINT s_x2;
COMMIT;
-- OrderService.create_from_cart: 9 statements
BEGIN;
SELECT id AS c_id, user_id AS c_user_id, created_at AS c_created_at, checked_out_at AS c_checked_out_at FROM shop.cart WHERE (checked_out_at IS NULL AND user_id = :uid::text) LIMIT 21 FOR UPDATE \gset
SELECT ci.cart_id AS i_cart_id, ci.sku_id AS i_sku_id, ci.qty AS i_qty, ci.added_at AS i_added_at, s.id AS s_id, s.product_id AS s_product_id, s.code AS s_code, s.on_hand AS s_on_hand, s.reserved AS s_reserved, s.is_active AS s_is_active, p.id AS p_id, p.name AS p_name, p.price AS p_price, p.is_active AS p_is_active, p.created_at AS p_created_at FROM shop.cart_item ci INNER JOIN shop.sku s ON (ci.sku_id = s.id) INNER JOIN shop.product p ON (s.product_id = p.id) WHERE ci.cart_id = :c_id \gset
INSERT INTO shop.orders (user_id, status, amount, currency, external_payment_id, created_at, updated_at, expires_at) VALUES (:uid::text, 'PENDING', 0, 'KRW', '', now(), now(), now() + interval '20 minutes') RETURNING id AS o_id \gset
SELECT id AS l_id, product_id AS l_product_id, code AS l_code, on_hand AS l_on_hand, reserved AS l_reserved, is_active AS l_is_active FROM shop.sku WHERE (id IN (:sku) AND is_active) FOR UPDATE \gset
\if :l_on_hand - :l_reserved < :i_qty
ROLLBACK;
SELECT 'sold out' WHERE false \gset
\endif
UPDATE shop.sku SET reserved = (reserved + :i_qty) WHERE id = :sku;
INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) VALUES (:o_id, :sku, ':p_name', ':s_code', :p_price, :i_qty) RETURNING id;
INSERT INTO shop.stock_reservation (order_id, sku_id, qty, created_at, state) VALUES (:o_id, :sku, :i_qty, now(), 'active') RETURNING id AS r_id \gset
UPDATE shop.orders SET amount = :p_price * :i_qty, subtotal = :p_price * :i_qty WHERE id = :o_id;
UPDATE shop.cart SET checked_out_at = now() WHERE id = :c_id;
COMMIT;
-- OrderService.confirm_paid: 5 statements
BEGIN;
SELECT id AS q_id, user_id AS q_user_id, status AS q_status, amount AS q_amount, currency AS q_currency, external_payment_id AS q_external_payment_id, created_at AS q_created_at, updated_at AS q_updated_at, expires_at AS q_expires_at FROM shop.orders WHERE id = :o_id LIMIT 21 FOR UPDATE \gset
SELECT id, order_id, sku_id, qty, created_at, state FROM shop.stock_reservation WHERE (order_id = :o_id AND state = 'active') FOR UPDATE;
UPDATE shop.sku SET reserved = (reserved - :i_qty), on_hand = (on_hand - :i_qty) WHERE id = :sku;
UPDATE shop.stock_reservation SET state = 'consumed', state_changed_at = now() WHERE id IN (:r_id);
UPDATE shop.orders SET status = 'PAID', external_payment_id = 'tx_bench' WHERE id = :o_id;
COMMIT;

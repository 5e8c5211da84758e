-- spread, implementation limit: only the writes one 3-line order needs, no
-- logic, no extra reads, fewest round trips (see hot-limit.sql): one
-- statement reserves the 3 SKUs (one UPDATE, rows locked in index order) and
-- inserts the order, its 3 lines and 3 reservations; one statement confirms.
\set n :n + 1
\set uid :client_id * 1000000000 + :n
\set s1 random(1, 3333)
\set s2 random(3334, 6666)
\set s3 random(6667, 10000)
\set p1 1000 + (:s1 % 90) * 100
\set p2 1000 + (:s2 % 90) * 100
\set p3 1000 + (:s3 % 90) * 100
\set amount :p1 + :p2 + :p3
WITH s AS (UPDATE shop.sku SET reserved = reserved + 1 WHERE id IN (:s1, :s2, :s3) AND on_hand - reserved >= 1 RETURNING id, code),
 o AS (INSERT INTO shop.orders (user_id, status, amount, expires_at) VALUES (:uid::text, 'PENDING', :amount, now() + interval '20 minutes') RETURNING id),
 i AS (INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) SELECT o.id, s.id, 'Product ' || s.id, s.code, 1000 + (s.id % 90) * 100, 1 FROM o, s),
 r AS (INSERT INTO shop.stock_reservation (order_id, sku_id, qty) SELECT o.id, s.id, 1 FROM o, s)
SELECT id AS oid FROM o \gset
WITH s AS (UPDATE shop.sku SET on_hand = on_hand - 1, reserved = reserved - 1 WHERE id IN (:s1, :s2, :s3)),
 r AS (UPDATE shop.stock_reservation SET state = 'consumed', state_changed_at = now() WHERE order_id = :oid AND state = 'active')
UPDATE shop.orders SET status = 'PAID', external_payment_id = 'tx_bench', updated_at = now() WHERE id = :oid;

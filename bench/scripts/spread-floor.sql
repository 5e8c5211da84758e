-- spread, implementation floor: the fewest writes the API's spread cycle can
-- do in its 5 calls (3 cart adds, create order, confirm: 5 transactions),
-- with no logic and no reads: the limit peer's 2 statements (order, lines,
-- reservations, SKU counters; confirm) plus the cart the API keeps (the
-- cart row with the first line, one line per later add, the cart closed by
-- the order).  No stock check in the adds, no price lookup, no events.  What
-- c (or any implementation of the API) could reach at best: the target
-- c >= 0.6x limit is out of reach when this floor is below it (report.md,
-- "What the API's shape allows").
\set n :n + 1
\set uid :client_id * 1000000000 + :n
\set s1 random(1, 3333)
\set s2 random(3334, 6666)
\set s3 random(6667, 10000)
\set p1 1000 + (:s1 % 90) * 100
\set p2 1000 + (:s2 % 90) * 100
\set p3 1000 + (:s3 % 90) * 100
\set amount :p1 + :p2 + :p3
WITH nc AS (INSERT INTO shop.cart (user_id) VALUES (:uid::text) RETURNING id)
INSERT INTO shop.cart_item (cart_id, sku_id, qty) SELECT id, :s2, 1 FROM nc RETURNING cart_id \gset
INSERT INTO shop.cart_item (cart_id, sku_id, qty) VALUES (:cart_id, :s3, 1);
INSERT INTO shop.cart_item (cart_id, sku_id, qty) VALUES (:cart_id, :s1, 1);
WITH s AS (UPDATE shop.sku k SET reserved = k.reserved + 1 FROM (VALUES (:s1::bigint), (:s2::bigint), (:s3::bigint)) v(id)
             WHERE k.id = v.id AND k.on_hand - k.reserved >= 1 RETURNING k.id, k.code),
 o AS (INSERT INTO shop.orders (user_id, status, amount, subtotal, expires_at) VALUES (:uid::text, 'PENDING', :amount, :amount, now() + interval '20 minutes') RETURNING id),
 i AS (INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) SELECT o.id, s.id, 'Product ' || s.id, s.code, 1000 + (s.id % 90) * 100, 1 FROM o, s),
 r AS (INSERT INTO shop.stock_reservation (order_id, sku_id, qty) SELECT o.id, s.id, 1 FROM o, s),
 k AS (UPDATE shop.cart SET checked_out_at = now() WHERE id = :cart_id)
SELECT id AS oid FROM o \gset
WITH s AS (UPDATE shop.sku k SET on_hand = k.on_hand - 1, reserved = k.reserved - 1 FROM (VALUES (:s1::bigint), (:s2::bigint), (:s3::bigint)) v(id)
             WHERE k.id = v.id),
 r AS (UPDATE shop.stock_reservation SET state = 'consumed', state_changed_at = now() WHERE order_id = :oid AND state = 'active')
UPDATE shop.orders SET status = 'PAID', external_payment_id = 'tx_bench', updated_at = now() WHERE id = :oid;

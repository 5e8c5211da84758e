-- hot / scarce, implementation limit: only the writes one order needs, no
-- logic, no extra reads, fewest round trips: transaction 1 = the reserve
-- UPDATE (check in its WHERE) + order, order_item and reservation INSERTs in
-- one statement; transaction 2 = the confirm UPDATEs (sku, reservation,
-- order) in one statement.  No cart (the issue's definition of the ceiling).
-- Snapshot values come in as variables (-D pname, pcode, price).  A refused
-- reservation returns no row and the \gset stops the client (scarce).
\set n :n + 1
\set uid :client_id * 1000000000 + :n
WITH s AS (UPDATE shop.sku SET reserved = reserved + 1 WHERE id = :sku AND on_hand - reserved >= 1 RETURNING id),
 o AS (INSERT INTO shop.orders (user_id, status, amount, subtotal, expires_at) SELECT :uid::text, 'PENDING', :price, :price, now() + interval '20 minutes' FROM s RETURNING id),
 i AS (INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty) SELECT o.id, :sku, :pname::text, :pcode::text, :price, 1 FROM o),
 r AS (INSERT INTO shop.stock_reservation (order_id, sku_id, qty) SELECT o.id, :sku, 1 FROM o)
SELECT id AS oid FROM o \gset
WITH s AS (UPDATE shop.sku SET on_hand = on_hand - 1, reserved = reserved - 1 WHERE id = :sku),
 r AS (UPDATE shop.stock_reservation SET state = 'consumed', state_changed_at = now() WHERE order_id = :oid AND state = 'active')
UPDATE shop.orders SET status = 'PAID', external_payment_id = 'tx_bench', updated_at = now() WHERE id = :oid;

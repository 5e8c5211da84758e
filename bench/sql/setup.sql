-- bench/sql/setup.sql: catalog for every scenario, and the reset between runs.
--
-- SKU ids (= product ids):
--   1 .. 10000   spread catalog, effectively unlimited stock
--   10001        HOT-001, the flash-sale SKU, effectively unlimited stock
--   10002        SCARCE-001, 100 units
-- Prices and names are a function of the id, so client-side peers (orm,
-- limit) can write the same snapshot values the server-side ones read.
CREATE EXTENSION IF NOT EXISTS shop;
CREATE SCHEMA IF NOT EXISTS bench;

INSERT INTO shop.product (id, name, price)
SELECT g, 'Product ' || g, 1000 + (g % 90) * 100 FROM generate_series(1, 10000) g;
INSERT INTO shop.product (id, name, price) VALUES (10001, 'Hot item', 10000), (10002, 'Scarce item', 10000);

INSERT INTO shop.sku (id, product_id, code, on_hand)
SELECT g, g, 'SKU-' || lpad(g::text, 5, '0'), 1000000000 FROM generate_series(1, 10000) g;
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(10001, 10001, 'HOT-001', 1000000000),
	(10002, 10002, 'SCARCE-001', 100);

-- Order history: n PAID orders of 3 catalog lines each (consumed
-- reservations) from n checked-out carts, so that every table the API reads
-- has realistic size and statistics.  Without it the planner sees empty
-- tables after a reset and keeps sequential-scan plans for the whole run,
-- which makes every implementation slow down linearly as the run fills them.
CREATE TABLE bench.watermark (orders bigint NOT NULL, cart bigint NOT NULL);
INSERT INTO bench.watermark VALUES (0, 0);

CREATE PROCEDURE bench.load_history(n int)
LANGUAGE sql AS $$
	INSERT INTO shop.cart (user_id, created_at, checked_out_at)
	SELECT 'hist' || g, now() - interval '2 days', now() - interval '2 days' FROM generate_series(1, n) g;
	INSERT INTO shop.cart_item (cart_id, sku_id, qty)
	SELECT c.id, ((c.id * 3 + k * 3331) % 10000) + 1, 1
	  FROM shop.cart c, generate_series(0, 2) k WHERE c.user_id LIKE 'hist%';
	INSERT INTO shop.orders (user_id, status, amount, external_payment_id, created_at, updated_at, expires_at)
	SELECT 'hist' || g, 'PAID', 0, 'tx_hist' || g, now() - interval '2 days', now() - interval '2 days',
		   now() - interval '2 days' + interval '20 min'
	  FROM generate_series(1, n) g;
	INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty)
	SELECT o.id, ci.sku_id, p.name, s.code, p.price, 1
	  FROM shop.orders o
	  JOIN shop.cart c ON c.user_id = o.user_id
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	 WHERE o.user_id LIKE 'hist%';
	INSERT INTO shop.stock_reservation (order_id, sku_id, qty, state, created_at, state_changed_at)
	SELECT order_id, sku_id, qty, 'consumed', now() - interval '2 days', now() - interval '2 days'
	  FROM shop.order_item;
	UPDATE shop.orders o SET amount = t.total
	  FROM (SELECT order_id, sum(unit_price * qty) AS total FROM shop.order_item GROUP BY order_id) t
	 WHERE o.id = t.order_id;
	DELETE FROM bench.watermark;
	INSERT INTO bench.watermark SELECT (SELECT coalesce(max(id), 0) FROM shop.orders),
									   (SELECT coalesce(max(id), 0) FROM shop.cart);
$$;

-- Back to the loaded state: only the history, full stock.  Rows a run
-- created (ids above the watermark) are deleted; run.sh then vacuums.
CREATE PROCEDURE bench.reset()
LANGUAGE sql AS $$
	DELETE FROM shop.order_item WHERE order_id > (SELECT orders FROM bench.watermark);
	DELETE FROM shop.stock_reservation WHERE order_id > (SELECT orders FROM bench.watermark);
	TRUNCATE shop.order_review, shop.payment_log;
	DELETE FROM shop.orders WHERE id > (SELECT orders FROM bench.watermark);
	DELETE FROM shop.cart_item WHERE cart_id > (SELECT cart FROM bench.watermark);
	DELETE FROM shop.cart WHERE id > (SELECT cart FROM bench.watermark);
	UPDATE shop.sku SET on_hand = CASE id WHEN 10002 THEN 100 ELSE 1000000000 END, reserved = 0
	 WHERE reserved <> 0 OR on_hand <> CASE id WHEN 10002 THEN 100 ELSE 1000000000 END;
$$;

-- The expiry scenario's backlog: n PENDING orders past expires_at, one line
-- each, spread over the 10,000 catalog SKUs (n / 10000 units held per SKU).
CREATE PROCEDURE bench.load_expired(n int)
LANGUAGE sql AS $$
	INSERT INTO shop.orders (user_id, status, amount, expires_at, created_at, updated_at)
	SELECT 'exp' || g, 'PENDING', 0,
		   now() - interval '1 hour', now() - interval '2 hours', now() - interval '2 hours'
	  FROM generate_series(1, n) g;
	INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty)
	SELECT o.id, s.id, p.name, s.code, p.price, 1
	  FROM shop.orders o
	  JOIN shop.sku s ON s.id = (o.id % 10000) + 1
	  JOIN shop.product p ON p.id = s.product_id
	 WHERE o.user_id LIKE 'exp%';
	INSERT INTO shop.stock_reservation (order_id, sku_id, qty, created_at)
	SELECT i.order_id, i.sku_id, i.qty, now() - interval '2 hours'
	  FROM shop.order_item i JOIN shop.orders o ON o.id = i.order_id
	 WHERE o.user_id LIKE 'exp%';
	UPDATE shop.orders o SET amount = i.unit_price * i.qty
	  FROM shop.order_item i
	 WHERE i.order_id = o.id AND o.user_id LIKE 'exp%';
	UPDATE shop.sku s SET reserved = s.reserved + h.qty
	  FROM (SELECT sku_id, sum(qty) AS qty FROM shop.stock_reservation
			 WHERE state = 'active' GROUP BY sku_id) h
	 WHERE s.id = h.sku_id;
$$;

-- What the scarce scenario checks afterwards: PAID orders of the SKU, units sold,
-- the SKU counters, and whether the reservation rows agree with them.
-- oversold: more units left the shelf than there were, or a counter broke.
-- consistent: on_hand = initial - consumed, reserved = active reservations,
-- units on PAID order lines = consumed reservations, no invariant violation.
CREATE FUNCTION bench.scarce_check(p_sku bigint, p_initial bigint,
	OUT paid_orders bigint, OUT sold_units bigint, OUT on_hand bigint, OUT reserved bigint,
	OUT active_units bigint, OUT consumed_units bigint, OUT invariant_violations bigint,
	OUT oversold boolean, OUT consistent boolean)
LANGUAGE sql AS $$
	WITH c AS (
		SELECT (SELECT count(DISTINCT o.id) FROM shop.orders o JOIN shop.order_item i ON i.order_id = o.id
				 WHERE o.status = 'PAID' AND i.sku_id = p_sku) AS paid_orders,
			   (SELECT coalesce(sum(i.qty), 0) FROM shop.order_item i JOIN shop.orders o ON o.id = i.order_id
				 WHERE o.status = 'PAID' AND i.sku_id = p_sku) AS sold_units,
			   s.on_hand, s.reserved,
			   (SELECT coalesce(sum(qty), 0) FROM shop.stock_reservation
				 WHERE sku_id = p_sku AND state = 'active') AS active_units,
			   (SELECT coalesce(sum(qty), 0) FROM shop.stock_reservation
				 WHERE sku_id = p_sku AND state = 'consumed') AS consumed_units,
			   (SELECT count(*) FROM shop.shop_check_invariants()) AS invariant_violations
		  FROM shop.sku s WHERE s.id = p_sku)
	SELECT c.*,
		   c.sold_units > p_initial OR c.consumed_units > p_initial OR c.on_hand < 0
			 OR c.reserved > c.on_hand,
		   c.on_hand = p_initial - c.consumed_units AND c.reserved = c.active_units
			 AND c.sold_units = c.consumed_units AND c.invariant_violations = 0
	  FROM c
$$;

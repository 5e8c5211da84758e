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

-- Back to the loaded state: no carts, orders or reservations, full stock.
CREATE PROCEDURE bench.reset()
LANGUAGE sql AS $$
	TRUNCATE shop.order_item, shop.stock_reservation, shop.payment_log, shop.orders,
			 shop.cart_item, shop.cart RESTART IDENTITY;
	UPDATE shop.sku SET on_hand = CASE id WHEN 10002 THEN 100 ELSE 1000000000 END, reserved = 0
	 WHERE reserved <> 0 OR on_hand <> CASE id WHEN 10002 THEN 100 ELSE 1000000000 END;
$$;

-- The expiry scenario's backlog: n PENDING orders past expires_at, one line
-- each, spread over the 10,000 catalog SKUs (n / 10000 units held per SKU).
CREATE PROCEDURE bench.load_expired(n int)
LANGUAGE sql AS $$
	INSERT INTO shop.orders (user_id, status, amount, expires_at, created_at, updated_at)
	SELECT 'exp' || g, 'PENDING', 1000 + ((g % 10000 + 1) % 90) * 100,
		   now() - interval '1 hour', now() - interval '2 hours', now() - interval '2 hours'
	  FROM generate_series(1, n) g;
	INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty)
	SELECT o.id, s.id, p.name, s.code, p.price, 1
	  FROM shop.orders o
	  JOIN shop.sku s ON s.id = (o.id % 10000) + 1
	  JOIN shop.product p ON p.id = s.product_id
	 WHERE o.user_id LIKE 'exp%';
	INSERT INTO shop.stock_reservation (order_id, sku_id, qty, created_at)
	SELECT order_id, sku_id, qty, now() - interval '2 hours' FROM shop.order_item;
	UPDATE shop.sku s SET reserved = s.reserved + h.qty
	  FROM (SELECT sku_id, sum(qty) AS qty FROM shop.stock_reservation
			 WHERE state = 'active' GROUP BY sku_id) h
	 WHERE s.id = h.sku_id;
$$;

-- What the scarce scenario checks afterwards: units sold by PAID orders,
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
		SELECT (SELECT count(*) FROM shop.orders o WHERE o.status = 'PAID') AS paid_orders,
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

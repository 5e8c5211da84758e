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
CREATE TABLE bench.watermark (orders bigint NOT NULL, cart bigint NOT NULL,
	endpoint bigint NOT NULL DEFAULT 0, event bigint NOT NULL DEFAULT 0,
	outbox bigint NOT NULL DEFAULT 0, attempt bigint NOT NULL DEFAULT 0);
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
	UPDATE shop.orders o SET amount = t.total, subtotal = t.total
	  FROM (SELECT order_id, sum(unit_price * qty) AS total FROM shop.order_item GROUP BY order_id) t
	 WHERE o.id = t.order_id;
	-- Their events, as a shop that has sent webhooks for a while has them:
	-- order.created and order.paid per order, each delivered to an endpoint
	-- unsubscribed since (kept for history, so it gets no new events).
	-- shop.event and shop.outbox then have a realistic size and statistics
	-- (nearly every row delivered), which is what the worker's claim is
	-- planned with.  (The attempt log is left empty: nothing reads it.)
	INSERT INTO shop.event_endpoint (url, event_types, description, created_at, updated_at, removed_at)
	VALUES ('https://merchant.example/webhooks', ARRAY['*'], 'bench history (unsubscribed)',
			now() - interval '3 days', now() - interval '1 day', now() - interval '1 day');
	INSERT INTO shop.event (type, order_id, payload, created_at)
	SELECT t.type, o.id,
		   jsonb_build_object('order', jsonb_build_object(
			   'id', o.id, 'user_id', o.user_id, 'status', t.status, 'status_reason', NULL,
			   'amount', o.amount, 'currency', o.currency,
			   'external_payment_id', CASE WHEN t.status = 'PAID' THEN o.external_payment_id END,
			   'created_at', o.created_at, 'expires_at', o.expires_at)),
		   o.created_at + t.after
	  FROM shop.orders o
	 CROSS JOIN (VALUES ('order.created', 'PENDING', interval '0'),
						('order.paid', 'PAID', interval '1 minute')) t(type, status, after)
	 WHERE o.user_id LIKE 'hist%'
	 ORDER BY o.id, t.after;
	INSERT INTO shop.outbox (endpoint_id, event_id, url, headers, body, idempotency_key, ordering_key,
							 state, attempts, next_attempt_at, last_status, queued_at, created_at,
							 updated_at, delivered_at)
	SELECT e.id, ev.id, e.url, '{"content-type": "application/json"}',
		   jsonb_build_object('id', 'evt_' || ev.id, 'type', ev.type, 'created_at', ev.created_at,
							  'data', ev.payload)::text,
		   'evt_' || ev.id, 'order:' || ev.order_id, 'delivered', 1, ev.created_at, 200,
		   ev.created_at, ev.created_at, ev.created_at + interval '30 ms', ev.created_at + interval '30 ms'
	  FROM shop.event ev
	 CROSS JOIN shop.event_endpoint e
	 WHERE e.description = 'bench history (unsubscribed)'
	 ORDER BY ev.id;
	DELETE FROM bench.watermark;
	INSERT INTO bench.watermark SELECT (SELECT coalesce(max(id), 0) FROM shop.orders),
									   (SELECT coalesce(max(id), 0) FROM shop.cart),
									   (SELECT coalesce(max(id), 0) FROM shop.event_endpoint),
									   (SELECT coalesce(max(id), 0) FROM shop.event),
									   (SELECT coalesce(max(id), 0) FROM shop.outbox),
									   (SELECT coalesce(max(id), 0) FROM shop.outbox_attempt);
$$;

-- Back to the loaded state: only the history, full stock, no subscribed
-- event endpoint (events off), only the history's events.  Rows a run
-- created (ids above the watermark) are deleted; run.sh then vacuums.  The
-- outbox tables go first: their rows reference the orders.
CREATE PROCEDURE bench.reset()
LANGUAGE sql AS $$
	-- the spread-money run's coupon redemptions, coupon and tax settings
	DELETE FROM shop.coupon_redemption;
	DELETE FROM shop.coupon;
	DELETE FROM shop.tax_rate;
	DELETE FROM shop.tax_setting;
	DELETE FROM shop.outbox_attempt WHERE id > (SELECT attempt FROM bench.watermark);
	DELETE FROM shop.outbox WHERE id > (SELECT outbox FROM bench.watermark);
	DELETE FROM shop.event WHERE id > (SELECT event FROM bench.watermark);
	DELETE FROM shop.event_endpoint_secret WHERE endpoint_id > (SELECT endpoint FROM bench.watermark);
	DELETE FROM shop.event_endpoint WHERE id > (SELECT endpoint FROM bench.watermark);
	DELETE FROM shop.order_item WHERE order_id > (SELECT orders FROM bench.watermark);
	DELETE FROM shop.stock_reservation WHERE order_id > (SELECT orders FROM bench.watermark);
	-- (refund and payment_session reference order_review and orders; the bench makes none)
	TRUNCATE shop.refund_line, shop.refund, shop.payment_session, shop.order_review, shop.payment_log;
	DELETE FROM shop.orders WHERE id > (SELECT orders FROM bench.watermark);
	DELETE FROM shop.cart_item WHERE cart_id > (SELECT cart FROM bench.watermark);
	DELETE FROM shop.cart WHERE id > (SELECT cart FROM bench.watermark);
	-- every SKU back in its own row (the c-hot runs put one in buckets)
	DELETE FROM shop.sku_bucket;
	UPDATE shop.sku SET on_hand = CASE id WHEN 10002 THEN 100 ELSE 1000000000 END, reserved = 0, buckets = 0
	 WHERE reserved <> 0 OR on_hand <> CASE id WHEN 10002 THEN 100 ELSE 1000000000 END OR buckets <> 0;
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
	UPDATE shop.orders o SET amount = i.unit_price * i.qty, subtotal = i.unit_price * i.qty
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
			   s.on_hand, s.reserved,	-- totals: a hot SKU's buckets included
			   (SELECT coalesce(sum(qty), 0) FROM shop.stock_reservation
				 WHERE sku_id = p_sku AND state = 'active') AS active_units,
			   (SELECT coalesce(sum(qty), 0) FROM shop.stock_reservation
				 WHERE sku_id = p_sku AND state = 'consumed') AS consumed_units,
			   (SELECT count(*) FROM shop.shop_check_invariants()) AS invariant_violations
		  FROM shop.sku_stock s WHERE s.sku_id = p_sku)
	SELECT c.*,
		   c.sold_units > p_initial OR c.consumed_units > p_initial OR c.on_hand < 0
			 OR c.reserved > c.on_hand,
		   c.on_hand = p_initial - c.consumed_units AND c.reserved = c.active_units
			 AND c.sold_units = c.consumed_units AND c.invariant_violations = 0
	  FROM c
$$;

-- The outbox scenarios (run.sh, spread-events and outbox-delivery).
--
-- The benchmark's endpoint: the local receiver (bench/receiver.js),
-- subscribed to every event type.  Returns its id.
CREATE FUNCTION bench.subscribe(p_url text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT (shop.shop_subscribe(p_url, ARRAY['*'], description => 'bench receiver')->>'endpoint_id')::bigint
$$;

-- Milliseconds one claim of p_rows rows by the delivery worker takes now,
-- planning included (the worker's claim is a SQL function, planned on every
-- call): the second of two claims, the first warms this session's caches
-- (a first claim in a new session takes 3-4 times longer).  run.sh calls it
-- in a transaction that enables the endpoint and rolls back, so the worker
-- never sees the claims nor the enabled endpoint.
CREATE FUNCTION bench.claim_ms(p_rows int) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	n bigint;
BEGIN
	PERFORM count(*) FROM shop.outbox_claim(p_rows, interval '15 s');
	t0 := clock_timestamp();
	SELECT count(*) INTO n FROM shop.outbox_claim(p_rows, interval '15 s');
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;

-- What an outbox run leaves (rows above the watermark): events written,
-- outbox rows by state, attempts (failed ones), and the most requests the
-- attempt log shows open at once.
CREATE FUNCTION bench.outbox_check(
	OUT events bigint, OUT outbox_rows bigint, OUT delivered bigint, OUT open bigint, OUT dead bigint,
	OUT attempts bigint, OUT failed_attempts bigint, OUT max_concurrent bigint,
	OUT first_attempt_at timestamptz, OUT last_delivered_at timestamptz,
	OUT min_event_id bigint, OUT max_event_id bigint, OUT invariant_violations bigint)
LANGUAGE sql AS $$
	WITH w AS (SELECT * FROM bench.watermark),
		 ev AS (SELECT * FROM shop.event WHERE id > (SELECT event FROM w)),
		 o AS (SELECT * FROM shop.outbox WHERE id > (SELECT outbox FROM w)),
		 a AS (SELECT * FROM shop.outbox_attempt WHERE id > (SELECT attempt FROM w))
	SELECT (SELECT count(*) FROM ev),
		   (SELECT count(*) FROM o),
		   (SELECT count(*) FROM o WHERE state = 'delivered'),
		   (SELECT count(*) FROM o WHERE state IN ('queued', 'in_flight', 'failed')),
		   (SELECT count(*) FROM o WHERE state = 'dead'),
		   (SELECT count(*) FROM a),
		   (SELECT count(*) FROM a WHERE NOT succeeded),
		   (SELECT max(open) FROM (
				SELECT sum(d) OVER (ORDER BY t, d, id) AS open
				  FROM (SELECT id, started_at AS t, 1 AS d FROM a
						UNION ALL
						SELECT id, started_at + duration_ms * interval '1 ms', -1 FROM a) x) y),
		   (SELECT min(started_at) FROM a),
		   (SELECT max(delivered_at) FROM o),
		   (SELECT min(id) FROM ev),
		   (SELECT max(id) FROM ev),
		   (SELECT count(*) FROM shop.shop_check_invariants())
$$;

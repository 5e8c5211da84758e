-- core_invariants.sql: after a long mixed random sequence of API calls the
-- stock books still balance (issue #2, "Tests", pgTAP invariant test):
--   * for every SKU, reserved = the sum of its active reservations;
--   * on_hand = initial + sum(stock_adjustment.delta) - sum(consumed qty);
--   * no settled (PAID, CANCELLED, FAILED) order holds an active reservation;
-- and every refusal on the way was one of the documented SQLSTATEs.
--
-- The generator is seeded (setseed) and draws the same number of random
-- values every step, so the sequence of calls is the same on every run.
-- now() is fixed inside this one transaction, so orders expire only when
-- the test forces them (expires_at in the past).  Everything is rolled back.
BEGIN;
SELECT plan(81);

SELECT setseed(0.42);

-- Test data -----------------------------------------------------------------
-- Two KRW products, one USD product (mixing it in an order is SH005), one
-- inactive SKU (SH002); 9402 and 9404 are scarce so buyers run short (SH001)
-- and reclaim expired orders' stock.

INSERT INTO shop.product (id, name, price, currency) VALUES
	(9401, 'invariants tee', 1200, 'KRW'),
	(9402, 'invariants mug', 350, 'KRW'),
	(9403, 'invariants import', 25, 'USD');
INSERT INTO shop.sku (id, product_id, code, on_hand, is_active) VALUES
	(9401, 9401, 'INV-TEE-S', 30, true),
	(9402, 9401, 'INV-TEE-M', 6, true),
	(9403, 9402, 'INV-MUG', 60, true),
	(9404, 9402, 'INV-MUG-GOLD', 2, true),
	(9405, 9403, 'INV-IMPORT', 10, true),
	(9406, 9401, 'INV-TEE-XXL', 10, false);

CREATE TEMP TABLE tap_initial AS
	SELECT id AS sku_id, on_hand FROM shop.sku WHERE id BETWEEN 9401 AND 9406;

-- Hot SKUs mixed in (issue #12): the plentiful tee and the scarce one are
-- sold from buckets, and the run switches modes on the way (set_sku_mode),
-- so every counter below is a SKU's total (shop.sku_stock).
SELECT shop.shop_set_sku_mode(9401, 4);
SELECT shop.shop_set_sku_mode(9402, 3);

-- Bookkeeping of the run ----------------------------------------------------

-- outcome per operation kind: 'ok' or the SQLSTATE of the refusal
CREATE TEMP TABLE tap_ops (op text, outcome text, n integer NOT NULL,
						   PRIMARY KEY (op, outcome));
-- a call that returned something other than the contract says
CREATE TEMP TABLE tap_anomalies (step integer, op text, what text);
-- shop_check_invariants() rows found after any step
CREATE TEMP TABLE tap_violations (step integer, op text, check_name text,
								  subject text, detail text);
-- orders created by the run, and the first order of each (user, key)
CREATE TEMP TABLE tap_orders (id bigint PRIMARY KEY);
CREATE TEMP TABLE tap_keys (user_id text, key text, order_id bigint,
							PRIMARY KEY (user_id, key));
-- how many orders the sweep and the inline reclaim expired
CREATE TEMP TABLE tap_counters (name text PRIMARY KEY, n bigint NOT NULL);
INSERT INTO tap_counters VALUES ('swept', 0), ('reclaimed', 0), ('expired_before', 0), ('steps_with_reserved', 0);
UPDATE tap_counters SET n = (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired')
 WHERE name = 'expired_before';

CREATE FUNCTION pg_temp.note(p_op text, p_outcome text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO tap_ops VALUES (p_op, p_outcome, 1)
	ON CONFLICT (op, outcome) DO UPDATE SET n = tap_ops.n + 1
$$;
CREATE FUNCTION pg_temp.anomaly(p_step integer, p_op text, p_what text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO tap_anomalies VALUES (p_step, p_op, p_what)
$$;
CREATE FUNCTION pg_temp.successes(p_op text) RETURNS integer
LANGUAGE sql AS $$
	SELECT coalesce(sum(n), 0)::integer FROM tap_ops WHERE op = p_op AND outcome = 'ok'
$$;
CREATE FUNCTION pg_temp.outcomes(VARIADIC p_op_like text[]) RETURNS text[]
LANGUAGE sql AS $$
	SELECT coalesce(array_agg(DISTINCT outcome ORDER BY outcome), '{}') FROM tap_ops WHERE op LIKE ANY (p_op_like)
$$;
-- the order at fraction r of the run's orders (by id), optionally only
-- PENDING ones, optionally only those whose time has not run out yet
CREATE FUNCTION pg_temp.pick_order(r float8, pending_only boolean, unexpired_only boolean) RETURNS bigint
LANGUAGE sql AS $$
	WITH c AS (
		SELECT o.id FROM tap_orders t JOIN shop.orders o ON o.id = t.id
		 WHERE (NOT pending_only OR o.status = 'PENDING')
		   AND (NOT unexpired_only OR o.expires_at > now()))
	SELECT id FROM c ORDER BY id OFFSET floor(r * (SELECT count(*) FROM c)) LIMIT 1
$$;
-- counters of the test SKUs, to prove a call changed nothing
CREATE FUNCTION pg_temp.stock_snapshot() RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(sku_id || ':' || on_hand || '/' || reserved, ' ' ORDER BY sku_id)
	  FROM shop.sku_stock WHERE sku_id BETWEEN 9401 AND 9406
$$;

-- The random run --------------------------------------------------------------

DO $run$
DECLARE
	-- weighted: the plentiful SKUs twice, the USD and the inactive one rarely
	skus		bigint[] := ARRAY[9401, 9403, 9402, 9404, 9401, 9403, 9405, 9406];
	users		text[] := ARRAY['inv-u1', 'inv-u2', 'inv-u3', 'inv-u4'];
	reasons		text[] := ARRAY['cancelled', 'payment_failed', 'customer_cancelled', 'shop_cancelled'];
	step		integer;
	r_op		float8;
	r_user		float8;
	r_sku		float8;
	r_qty		float8;
	r_key		float8;
	r_x			float8;
	r_y			float8;
	r_z			float8;
	op			text;
	u			text;
	s			bigint;
	s2			bigint;
	q			integer;
	q2			integer;
	k			text;
	reason		text;
	items		jsonb;
	line		shop.cart_line;
	summary		shop.order_summary;
	level		shop.stock_level;
	the_order	bigint;
	known_id	bigint;
	prior		text;
	prev_qty	integer;
	avail		bigint;
	expected	bigint;
	snap		text;
	removed		boolean;
	swept		integer;
	expired_before bigint;
	expired_after bigint;
BEGIN
	FOR step IN 1..600 LOOP
		-- the same eight draws every step, whatever the branch
		r_op := random(); r_user := random(); r_sku := random(); r_qty := random();
		r_key := random(); r_x := random(); r_y := random(); r_z := random();

		u := users[1 + floor(r_user * 4)::integer];
		s := skus[1 + floor(r_sku * 8)::integer];
		q := 1 + floor(r_qty * 4)::integer;						-- 1..4
		k := CASE WHEN r_key < 0.5 THEN NULL ELSE 'key-' || floor(r_key * 24)::integer END;
		known_id := (SELECT t.order_id FROM tap_keys t WHERE t.user_id = u AND t.key = k);

		IF r_op < 0.14 THEN
			-- add to cart: the whole line must fit the available stock
			op := 'cart_add';
			prev_qty := coalesce((SELECT ci.qty FROM shop.cart c JOIN shop.cart_item ci ON ci.cart_id = c.id
								   WHERE c.user_id = u AND c.checked_out_at IS NULL AND ci.sku_id = s), 0);
			avail := (SELECT available FROM shop.sku_stock WHERE sku_id = s);
			BEGIN
				line := shop.shop_cart_add(u, s, q);
				PERFORM pg_temp.note(op, 'ok');
				IF line.sku_id <> s OR line.qty <> prev_qty + q THEN
					PERFORM pg_temp.anomaly(step, op, format('returned %s, expected (%s,%s)', line, s, prev_qty + q));
				END IF;
				IF line.qty > avail THEN
					PERFORM pg_temp.anomaly(step, op, format('cart line %s exceeds available %s', line.qty, avail));
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSIF r_op < 0.22 THEN
			-- set a cart line; 0 removes it
			op := 'cart_set_qty';
			q := floor(r_qty * 5)::integer;							-- 0..4
			BEGIN
				line := shop.shop_cart_set_qty(u, s, q);
				PERFORM pg_temp.note(op, 'ok');
				IF line.sku_id <> s OR line.qty <> q
				   OR coalesce((SELECT ci.qty FROM shop.cart c JOIN shop.cart_item ci ON ci.cart_id = c.id
								 WHERE c.user_id = u AND c.checked_out_at IS NULL AND ci.sku_id = s), 0) <> q THEN
					PERFORM pg_temp.anomaly(step, op, format('set %s to %s, got %s', s, q, line));
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSIF r_op < 0.26 THEN
			-- remove a cart line: true exactly when there was one
			op := 'cart_remove';
			prev_qty := (SELECT ci.qty FROM shop.cart c JOIN shop.cart_item ci ON ci.cart_id = c.id
						  WHERE c.user_id = u AND c.checked_out_at IS NULL AND ci.sku_id = s);
			BEGIN
				removed := shop.shop_cart_remove(u, s);
				PERFORM pg_temp.note(op, 'ok');
				IF removed IS DISTINCT FROM (prev_qty IS NOT NULL) THEN
					PERFORM pg_temp.anomaly(step, op, format('returned %s, line existed: %s', removed, prev_qty IS NOT NULL));
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSIF r_op < 0.38 THEN
			-- cart -> PENDING order, with or without an idempotency key
			op := CASE WHEN known_id IS NULL THEN 'create_order' ELSE 'create_order/repeat_key' END;
			expected := (SELECT sum(p.price * ci.qty)::bigint
						   FROM shop.cart c JOIN shop.cart_item ci ON ci.cart_id = c.id
						   JOIN shop.sku sk ON sk.id = ci.sku_id JOIN shop.product p ON p.id = sk.product_id
						  WHERE c.user_id = u AND c.checked_out_at IS NULL);
			snap := pg_temp.stock_snapshot();
			expired_before := (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired');
			BEGIN
				summary := shop.shop_create_order(u, k);
				PERFORM pg_temp.note(op, 'ok');
				IF known_id IS NOT NULL THEN
					IF summary.id <> known_id OR pg_temp.stock_snapshot() <> snap THEN
						PERFORM pg_temp.anomaly(step, op, format('key %s: got order %s, first was %s', k, summary.id, known_id));
					END IF;
				ELSE
					IF summary.status <> 'PENDING' OR summary.amount <> expected
					   OR EXISTS (SELECT 1 FROM tap_orders WHERE id = summary.id)
					   OR EXISTS (SELECT 1 FROM shop.cart WHERE user_id = u AND checked_out_at IS NULL) THEN
						PERFORM pg_temp.anomaly(step, op, format('got %s, expected a new PENDING order of %s and a closed cart', summary, expected));
					END IF;
					INSERT INTO tap_orders VALUES (summary.id);
					IF k IS NOT NULL THEN
						INSERT INTO tap_keys VALUES (u, k, summary.id);
					END IF;
					expired_after := (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired');
					UPDATE tap_counters SET n = tap_counters.n + (expired_after - expired_before) WHERE name = 'reclaimed';
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSIF r_op < 0.55 THEN
			-- buy now: 1..3 random lines, or one SKU twice (summed before the check)
			IF r_op < 0.50 THEN
				op := 'buy_now';
				s2 := skus[1 + floor(r_y * 8)::integer];
				q2 := 1 + floor(r_z * 3)::integer;
				items := jsonb_build_array(jsonb_build_object('sku_id', s, 'qty', q));
				IF r_x >= 0.4 THEN
					items := items || jsonb_build_array(jsonb_build_object('sku_id', s2, 'qty', q2));
				END IF;
				IF r_x >= 0.8 THEN
					-- a third line; now and then naming a SKU that does not exist
					items := items || jsonb_build_array(jsonb_build_object(
						'sku_id', CASE WHEN r_z > 0.9 THEN 9499 ELSE skus[1 + floor(r_z * 8)::integer] END,
						'qty', 1));
				END IF;
			ELSE
				op := 'buy_now/dup_lines';
				s := skus[1 + floor(r_sku * 4)::integer];				-- an active KRW SKU
				q2 := 1 + floor(r_z * 3)::integer;
				items := jsonb_build_array(jsonb_build_object('sku_id', s, 'qty', q),
										   jsonb_build_object('sku_id', s, 'qty', q2));
			END IF;
			IF known_id IS NOT NULL THEN
				op := 'buy_now/repeat_key';
			END IF;
			expected := (SELECT sum(p.price * (e->>'qty')::bigint)::bigint
						   FROM jsonb_array_elements(items) e
						   JOIN shop.sku sk ON sk.id = (e->>'sku_id')::bigint
						   JOIN shop.product p ON p.id = sk.product_id);
			snap := pg_temp.stock_snapshot();
			expired_before := (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired');
			BEGIN
				summary := shop.shop_buy_now(u, items, k);
				PERFORM pg_temp.note(op, 'ok');
				IF known_id IS NOT NULL THEN
					IF summary.id <> known_id OR pg_temp.stock_snapshot() <> snap THEN
						PERFORM pg_temp.anomaly(step, op, format('key %s: got order %s, first was %s', k, summary.id, known_id));
					END IF;
				ELSE
					IF summary.status <> 'PENDING' OR summary.amount <> expected
					   OR EXISTS (SELECT 1 FROM tap_orders WHERE id = summary.id) THEN
						PERFORM pg_temp.anomaly(step, op, format('got %s, expected a new PENDING order of %s', summary, expected));
					END IF;
					-- one order line and one reservation per SKU, with the summed qty
					IF EXISTS (
						SELECT 1
						  FROM (SELECT (e->>'sku_id')::bigint AS sku_id, sum((e->>'qty')::integer) AS qty
								  FROM jsonb_array_elements(items) e GROUP BY 1) want
						  FULL JOIN (SELECT oi.sku_id, oi.qty FROM shop.order_item oi WHERE oi.order_id = summary.id) got
							ON got.sku_id = want.sku_id
						  FULL JOIN (SELECT r.sku_id, r.qty FROM shop.stock_reservation r
									  WHERE r.order_id = summary.id AND r.state = 'active') held
							ON held.sku_id = coalesce(want.sku_id, got.sku_id)
						 WHERE want.qty IS DISTINCT FROM got.qty OR want.qty IS DISTINCT FROM held.qty) THEN
						PERFORM pg_temp.anomaly(step, op, format('order %s lines do not match items %s', summary.id, items));
					END IF;
					INSERT INTO tap_orders VALUES (summary.id);
					IF k IS NOT NULL THEN
						INSERT INTO tap_keys VALUES (u, k, summary.id);
					END IF;
					expired_after := (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired');
					UPDATE tap_counters SET n = tap_counters.n + (expired_after - expired_before) WHERE name = 'reclaimed';
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSIF r_op < 0.77 THEN
			-- confirm or release an order: mostly a PENDING one, else any
			the_order := coalesce(pg_temp.pick_order(r_x, r_y < 0.7, false), pg_temp.pick_order(r_x, false, false));
			IF the_order IS NULL THEN
				PERFORM pg_temp.note(CASE WHEN r_op < 0.67 THEN 'confirm_paid' ELSE 'release' END || '/no order', 'skipped');
				CONTINUE;
			END IF;
			prior := (SELECT status FROM shop.orders WHERE id = the_order);
			snap := pg_temp.stock_snapshot();
			IF r_op < 0.67 THEN
				op := 'confirm_paid/' || prior;
				BEGIN
					-- one payment per order: a repeat is the same payment (SH016 is for another)
					summary := shop.shop_confirm_paid(the_order, 'pay-' || the_order);
					PERFORM pg_temp.note(op, 'ok');
					IF summary.status <> 'PAID' OR summary.id <> the_order
					   OR (prior = 'PAID' AND pg_temp.stock_snapshot() <> snap) THEN
						PERFORM pg_temp.anomaly(step, op, format('order %s was %s, got %s', the_order, prior, summary));
					END IF;
				EXCEPTION WHEN OTHERS THEN
					PERFORM pg_temp.note(op, SQLSTATE);
				END;
			ELSE
				op := 'release/' || prior;
				reason := reasons[1 + floor(r_z * 4)::integer];
				BEGIN
					summary := shop.shop_release(the_order, reason);
					PERFORM pg_temp.note(op, 'ok');
					IF summary.id <> the_order
					   OR (prior = 'PENDING' AND summary.status <> CASE reason WHEN 'payment_failed' THEN 'FAILED' ELSE 'CANCELLED' END)
					   OR (prior <> 'PENDING' AND (summary.status <> prior OR pg_temp.stock_snapshot() <> snap)) THEN
						PERFORM pg_temp.anomaly(step, op, format('order %s was %s, released (%s), got %s', the_order, prior, reason, summary));
					END IF;
				EXCEPTION WHEN OTHERS THEN
					PERFORM pg_temp.note(op, SQLSTATE);
				END;
			END IF;

		ELSIF r_op < 0.86 THEN
			-- receive or write off stock
			q := CASE WHEN r_x < 0.5 THEN 1 + floor(r_qty * 6)::integer ELSE -(1 + floor(r_qty * 8)::integer) END;
			op := CASE WHEN q > 0 THEN 'adjust_stock/up' ELSE 'adjust_stock/down' END;
			s := skus[1 + floor(r_sku * 8)::integer];
			avail := (SELECT on_hand FROM shop.sku_stock WHERE sku_id = s);
			IF r_y < 0.2 THEN
				-- switch the SKU's mode on the way: the totals must not move
				op := 'set_sku_mode';
				snap := pg_temp.stock_snapshot();
				BEGIN
					level := shop.shop_set_sku_mode(s, (ARRAY[0, 2, 4, 8])[1 + floor(r_z * 4)::integer]);
					PERFORM pg_temp.note(op, 'ok');
					IF pg_temp.stock_snapshot() <> snap OR level.on_hand <> avail THEN
						PERFORM pg_temp.anomaly(step, op, format('stock moved: %s -> %s', snap, pg_temp.stock_snapshot()));
					END IF;
				EXCEPTION WHEN OTHERS THEN
					PERFORM pg_temp.note(op, SQLSTATE);
				END;
				CONTINUE;
			END IF;
			BEGIN
				level := shop.shop_adjust_stock(s, q, 'invariants step ' || step);
				PERFORM pg_temp.note(op, 'ok');
				IF level.sku_id <> s OR level.on_hand <> avail + q OR level.available <> level.on_hand - level.reserved THEN
					PERFORM pg_temp.anomaly(step, op, format('on_hand %s %s gave %s', avail, q, level));
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSIF r_op < 0.95 THEN
			-- let a PENDING order's time run out; sweep now or leave it for a buyer to reclaim
			op := 'force_expire';
			the_order := pg_temp.pick_order(r_x, true, true);
			IF the_order IS NULL THEN
				PERFORM pg_temp.note(op, 'skipped');
				CONTINUE;
			END IF;
			UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = the_order;
			PERFORM pg_temp.note(op, 'ok');
			IF r_y < 0.3 THEN
				op := 'expire_pending';
				BEGIN
					swept := shop.shop_expire_pending(1 + floor(r_z * 3)::integer);
					PERFORM pg_temp.note(op, 'ok');
					UPDATE tap_counters SET n = tap_counters.n + swept WHERE name = 'swept';
					IF swept < 1 THEN
						PERFORM pg_temp.anomaly(step, op, format('order %s expired but nothing swept', the_order));
					END IF;
				EXCEPTION WHEN OTHERS THEN
					PERFORM pg_temp.note(op, SQLSTATE);
				END;
			ELSIF r_y < 0.6 THEN
				-- a buyer needs one unit more than is available of a SKU the
				-- expired order holds: the buy must reclaim it inline and succeed
				op := 'buy_now/reclaim';
				s := (SELECT min(r.sku_id) FROM shop.stock_reservation r
					   WHERE r.order_id = the_order AND r.state = 'active');
				q := (SELECT available + 1 FROM shop.sku_stock WHERE sku_id = s);
				expired_before := (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired');
				BEGIN
					summary := shop.shop_buy_now(u, jsonb_build_array(jsonb_build_object('sku_id', s, 'qty', q)));
					PERFORM pg_temp.note(op, 'ok');
					INSERT INTO tap_orders VALUES (summary.id);
					expired_after := (SELECT count(*) FROM shop.orders WHERE status_reason = 'expired');
					UPDATE tap_counters SET n = tap_counters.n + (expired_after - expired_before) WHERE name = 'reclaimed';
					IF summary.status <> 'PENDING'
					   OR (SELECT status || '/' || status_reason FROM shop.orders WHERE id = the_order) <> 'CANCELLED/expired' THEN
						PERFORM pg_temp.anomaly(step, op, format('bought %s of sku %s: %s; expired order %s not released', q, s, summary, the_order));
					END IF;
				EXCEPTION WHEN OTHERS THEN
					PERFORM pg_temp.note(op, SQLSTATE);
				END;
			END IF;

		ELSIF r_op < 0.965 THEN
			-- the cron job's sweep: afterwards nothing expired is PENDING
			op := 'expire_pending';
			BEGIN
				swept := shop.shop_expire_pending();
				PERFORM pg_temp.note(op, 'ok');
				UPDATE tap_counters SET n = tap_counters.n + swept WHERE name = 'swept';
				IF EXISTS (SELECT 1 FROM shop.orders WHERE status = 'PENDING' AND expires_at <= now()) THEN
					PERFORM pg_temp.anomaly(step, op, 'an expired order is still PENDING after the sweep');
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;

		ELSE
			-- invalid requests: each must be refused with its documented SQLSTATE
			op := 'bad_input/' || (ARRAY['cart_add qty 0', 'cart_add unknown sku', 'cart_set_qty negative',
										 'buy_now empty items', 'buy_now unknown sku', 'buy_now qty 0',
										 'confirm unknown order', 'release unknown order',
										 'adjust zero delta', 'adjust unknown sku',
										 'expire max 0', 'release reason expired'])[1 + floor(r_x * 12)::integer];
			BEGIN
				CASE op
					WHEN 'bad_input/cart_add qty 0' THEN PERFORM shop.shop_cart_add(u, s, 0);
					WHEN 'bad_input/cart_add unknown sku' THEN PERFORM shop.shop_cart_add(u, 9499, 1);
					WHEN 'bad_input/cart_set_qty negative' THEN PERFORM shop.shop_cart_set_qty(u, s, -1);
					WHEN 'bad_input/buy_now empty items' THEN PERFORM shop.shop_buy_now(u, '[]');
					WHEN 'bad_input/buy_now unknown sku' THEN PERFORM shop.shop_buy_now(u, '[{"sku_id": 9499, "qty": 1}]');
					WHEN 'bad_input/buy_now qty 0' THEN PERFORM shop.shop_buy_now(u, jsonb_build_array(jsonb_build_object('sku_id', s, 'qty', 0)));
					WHEN 'bad_input/confirm unknown order' THEN PERFORM shop.shop_confirm_paid(-step, 'pay-x');
					WHEN 'bad_input/release unknown order' THEN PERFORM shop.shop_release(-step);
					WHEN 'bad_input/adjust zero delta' THEN PERFORM shop.shop_adjust_stock(s, 0, 'nothing');
					WHEN 'bad_input/adjust unknown sku' THEN PERFORM shop.shop_adjust_stock(9499, 1, 'ghost');
					WHEN 'bad_input/expire max 0' THEN PERFORM shop.shop_expire_pending(0);
					-- only the sweep may say expired (a late payment would re-sell it)
					WHEN 'bad_input/release reason expired' THEN PERFORM shop.shop_release(-step, 'expired');
				END CASE;
				PERFORM pg_temp.note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.note(op, SQLSTATE);
			END;
		END IF;

		-- after every step the DBA check must come back empty
		INSERT INTO tap_violations SELECT step, op, v.* FROM shop.shop_check_invariants() v;
		IF EXISTS (SELECT 1 FROM shop.sku_stock WHERE sku_id BETWEEN 9401 AND 9406 AND reserved > 0) THEN
			UPDATE tap_counters SET n = tap_counters.n + 1 WHERE name = 'steps_with_reserved';
		END IF;
	END LOOP;
END
$run$;

-- The books balance -----------------------------------------------------------

SELECT is_empty($$SELECT * FROM shop.shop_check_invariants()$$,
	'shop_check_invariants() is empty after the run');
SELECT is_empty($$SELECT * FROM tap_violations ORDER BY step LIMIT 20$$,
	'shop_check_invariants() was empty after every one of the 600 steps');
SELECT is_empty($$
	SELECT s.sku_id, s.reserved, coalesce(sum(r.qty) FILTER (WHERE r.state = 'active'), 0) AS active
	  FROM shop.sku_stock s LEFT JOIN shop.stock_reservation r ON r.sku_id = s.sku_id
	 WHERE s.sku_id BETWEEN 9401 AND 9406
	 GROUP BY s.sku_id, s.reserved
	HAVING s.reserved <> coalesce(sum(r.qty) FILTER (WHERE r.state = 'active'), 0)$$,
	'for every SKU, reserved (its row and buckets) = sum of its active reservations');
SELECT is_empty($$
	SELECT k.sku_id, k.bucket, k.reserved, coalesce(sum(r.qty) FILTER (WHERE r.state = 'active'), 0) AS active
	  FROM shop.sku_bucket k
	  LEFT JOIN shop.stock_reservation r ON r.sku_id = k.sku_id AND r.bucket = k.bucket
	 WHERE k.sku_id BETWEEN 9401 AND 9406
	 GROUP BY k.sku_id, k.bucket, k.reserved
	HAVING k.reserved <> coalesce(sum(r.qty) FILTER (WHERE r.state = 'active'), 0)$$,
	'for every bucket of a hot SKU, reserved = sum of the active reservations held there');
SELECT cmp_ok((SELECT count(DISTINCT r.order_id) FROM shop.stock_reservation r
				WHERE r.sku_id IN (9401, 9402) AND r.bucket > 0)::integer, '>', 20,
	'many orders were reserved from buckets (the hot SKUs were really sold hot)');
SELECT cmp_ok(pg_temp.successes('set_sku_mode'), '>', 3,
	'the run switched SKU modes several times');
SELECT is_empty($$
	SELECT i.sku_id, s.on_hand, i.on_hand AS initial, a.delta, c.consumed
	  FROM tap_initial i
	  JOIN shop.sku_stock s ON s.sku_id = i.sku_id
	  CROSS JOIN LATERAL (SELECT coalesce(sum(delta), 0) AS delta
							FROM shop.stock_adjustment WHERE sku_id = i.sku_id) a
	  CROSS JOIN LATERAL (SELECT coalesce(sum(qty), 0) AS consumed
							FROM shop.stock_reservation WHERE sku_id = i.sku_id AND state = 'consumed') c
	 WHERE s.on_hand <> i.on_hand + a.delta - c.consumed$$,
	'for every SKU, on_hand = initial + adjustments - consumed');
SELECT is_empty($$
	SELECT o.id, r.sku_id, r.qty FROM shop.orders o JOIN shop.stock_reservation r ON r.order_id = o.id
	 WHERE o.status = 'PAID' AND r.state = 'active'$$,
	'no PAID order has an active reservation');
SELECT is_empty($$
	SELECT o.id, o.status, r.sku_id, r.state FROM shop.orders o JOIN shop.stock_reservation r ON r.order_id = o.id
	 WHERE (o.status IN ('CANCELLED', 'FAILED') AND r.state <> 'released')
		OR (o.status = 'PAID' AND r.state <> 'consumed')
		OR (o.status = 'PENDING' AND r.state <> 'active')$$,
	'reservation states follow their order: PAID consumed, CANCELLED/FAILED released, PENDING active');
SELECT is_empty($$
	SELECT o.id, o.status FROM tap_orders t JOIN shop.orders o ON o.id = t.id
	 WHERE o.status NOT IN ('PENDING', 'PAID', 'CANCELLED', 'FAILED')
		OR NOT EXISTS (SELECT 1 FROM shop.order_item i WHERE i.order_id = o.id)$$,
	'every order of the run has lines and a final or PENDING status (no CREATED leftovers)');
SELECT is_empty($$SELECT o.id, o.status FROM shop.orders o WHERE o.user_id LIKE 'inv-%'
				   AND NOT EXISTS (SELECT 1 FROM tap_orders t WHERE t.id = o.id)$$,
	'refused requests left no order behind');
SELECT is_empty($$
	SELECT s.id FROM shop.sku s
	 WHERE s.id BETWEEN 9401 AND 9406
	   AND (SELECT coalesce(sum(r.qty), 0) FROM shop.stock_reservation r WHERE r.sku_id = s.id AND r.state = 'consumed')
		<> (SELECT coalesce(sum(i.qty), 0) FROM shop.order_item i JOIN shop.orders o ON o.id = i.order_id
			 WHERE i.sku_id = s.id AND o.status = 'PAID')$$,
	'consumed stock per SKU equals the units of its PAID order lines');
SELECT is_empty($$SELECT c.user_id, count(*) FROM shop.cart c WHERE c.user_id LIKE 'inv-%'
				   AND c.checked_out_at IS NULL GROUP BY 1 HAVING count(*) > 1$$,
	'no user ever got a second open cart');
SELECT is((SELECT count(*) FROM shop.orders WHERE status_reason = 'expired')
		  - (SELECT n FROM tap_counters WHERE name = 'expired_before'),
		  (SELECT sum(n) FROM tap_counters WHERE name IN ('swept', 'reclaimed'))::bigint,
	'every expired order was expired by the sweep or by a buyer''s reclaim, and counted');

-- Every call did what the contract says --------------------------------------

SELECT is_empty($$SELECT * FROM tap_anomalies ORDER BY step LIMIT 20$$,
	'no call returned something other than the contract says');
-- refusals: only documented SQLSTATEs, each where it belongs
SELECT is_empty($$
	SELECT op, outcome, n FROM tap_ops
	 WHERE outcome NOT IN ('ok', 'skipped')
	   AND NOT (op, outcome) IN (VALUES
			('cart_add', 'SH001'), ('cart_add', 'SH002'),
			('cart_set_qty', 'SH001'), ('cart_set_qty', 'SH002'),
			('create_order', 'SH001'), ('create_order', 'SH003'), ('create_order', 'SH005'),
			('buy_now', 'SH001'), ('buy_now', 'SH002'), ('buy_now', 'SH005'), ('buy_now', 'P0002'),
			('buy_now/dup_lines', 'SH001'),
			('confirm_paid/CANCELLED', 'SH004'), ('confirm_paid/FAILED', 'SH004'),
			('release/PAID', 'SH004'),
			('adjust_stock/down', 'SH006'))
	   AND op NOT LIKE 'bad_input/%'$$,
	'every refusal was a documented SQLSTATE expected for that call');
SELECT is_empty($$
	SELECT op, outcome FROM tap_ops WHERE op LIKE 'bad_input/%'
	EXCEPT
	SELECT * FROM (VALUES
		('bad_input/cart_add qty 0', '22023'), ('bad_input/cart_add unknown sku', 'P0002'),
		('bad_input/cart_set_qty negative', '22023'), ('bad_input/buy_now empty items', '22023'),
		('bad_input/buy_now unknown sku', 'P0002'), ('bad_input/buy_now qty 0', '22023'),
		('bad_input/confirm unknown order', 'P0002'), ('bad_input/release unknown order', 'P0002'),
		('bad_input/adjust zero delta', '22023'), ('bad_input/adjust unknown sku', 'P0002'),
		('bad_input/expire max 0', '22023'), ('bad_input/release reason expired', '22023')) AS v(op, outcome)$$,
	'invalid requests were refused with 22023 (bad value) or P0002 (not found)');
SELECT set_has($$SELECT outcome FROM tap_ops WHERE outcome NOT IN ('ok', 'skipped')$$,
	$$VALUES ('SH001'), ('SH002'), ('SH003'), ('SH004'), ('SH005'), ('SH006'), ('P0002'), ('22023')$$,
	'the run met every documented refusal (SH001..SH006, P0002, 22023)');

-- idempotent transitions: repeats succeed unchanged, opposite transitions are SH004
SELECT is(pg_temp.outcomes('confirm_paid/PAID'), ARRAY['ok'],
	'confirming a PAID order again always returns it unchanged');
SELECT is(pg_temp.outcomes('confirm_paid/PENDING'), ARRAY['ok'],
	'confirming a PENDING order always succeeds (also once its time has run out)');
SELECT is(pg_temp.outcomes('release/PENDING'), ARRAY['ok'],
	'releasing a PENDING order always succeeds');
SELECT is(pg_temp.outcomes('release/CANCELLED', 'release/FAILED'), ARRAY['ok'],
	'releasing a CANCELLED or FAILED order again always returns it unchanged');
SELECT is(pg_temp.outcomes('confirm_paid/CANCELLED', 'confirm_paid/FAILED'), ARRAY['SH004'],
	'confirming a CANCELLED or FAILED order is always refused with SH004');
SELECT is(pg_temp.outcomes('release/PAID'), ARRAY['SH004'],
	'releasing a PAID order is always refused with SH004');
SELECT is(pg_temp.outcomes('%/repeat_key'), ARRAY['ok'],
	'a repeated idempotency key always returns the first order');

-- The run was not vacuous: every kind of operation succeeded some times --------

SELECT cmp_ok(pg_temp.successes('cart_add'), '>', 0, 'some cart adds succeeded');
SELECT cmp_ok(pg_temp.successes('cart_set_qty'), '>', 0, 'some cart set_qty calls succeeded');
SELECT cmp_ok(pg_temp.successes('cart_remove'), '>', 0, 'some cart removes ran');
SELECT cmp_ok(pg_temp.successes('create_order'), '>', 0, 'some orders were created from carts');
SELECT cmp_ok((SELECT count(*)::integer FROM tap_keys), '>', 0, 'some orders were created with an idempotency key');
SELECT cmp_ok(pg_temp.successes('create_order/repeat_key'), '>', 0, 'some create_order calls repeated a key');
SELECT cmp_ok(pg_temp.successes('buy_now'), '>', 0, 'some buy_now calls succeeded');
SELECT cmp_ok(pg_temp.successes('buy_now/dup_lines'), '>', 0, 'some buy_now calls with one SKU twice succeeded');
SELECT cmp_ok((SELECT n FROM tap_ops WHERE op = 'buy_now/dup_lines' AND outcome = 'SH001'), '>', 0,
	'some buy_now calls with one SKU twice were refused as short (the summed qty was checked)');
SELECT cmp_ok(pg_temp.successes('buy_now/repeat_key'), '>', 0, 'some buy_now calls repeated a key');
SELECT cmp_ok(pg_temp.successes('confirm_paid/PENDING'), '>', 0, 'some orders were confirmed paid');
SELECT cmp_ok(pg_temp.successes('confirm_paid/PAID'), '>', 0, 'some paid orders were confirmed again');
SELECT cmp_ok((SELECT coalesce(sum(n), 0)::integer FROM tap_ops WHERE op IN ('confirm_paid/CANCELLED', 'confirm_paid/FAILED')),
	'>', 0, 'some released orders were (refused to be) confirmed');
SELECT cmp_ok(pg_temp.successes('release/PENDING'), '>', 0, 'some orders were released');
SELECT cmp_ok(pg_temp.successes('release/CANCELLED') + pg_temp.successes('release/FAILED'), '>', 0,
	'some released orders were released again');
SELECT cmp_ok((SELECT coalesce(sum(n), 0)::integer FROM tap_ops WHERE op = 'release/PAID'), '>', 0,
	'some paid orders were (refused to be) released');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.orders WHERE user_id LIKE 'inv-%' AND status = 'FAILED'), '>', 0,
	'some releases ended FAILED (reason payment_failed)');
SELECT cmp_ok(pg_temp.successes('adjust_stock/up'), '>', 0, 'some stock was received');
SELECT cmp_ok(pg_temp.successes('adjust_stock/down'), '>', 0, 'some stock was written off');
SELECT cmp_ok(pg_temp.successes('force_expire'), '>', 0, 'some orders ran out of time');
SELECT cmp_ok(pg_temp.successes('expire_pending'), '>', 0, 'the sweep ran');
SELECT cmp_ok((SELECT n FROM tap_counters WHERE name = 'swept')::integer, '>', 0,
	'the sweep expired some orders');
SELECT cmp_ok((SELECT n FROM tap_counters WHERE name = 'reclaimed')::integer, '>', 0,
	'buyers short of stock reclaimed some expired orders inline');
SELECT is(pg_temp.outcomes('buy_now/reclaim'), ARRAY['ok'],
	'a buy that needs an expired order''s stock always gets it (cron down never blocks a sale)');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.orders o JOIN tap_orders t ON t.id = o.id
				WHERE o.status = 'PAID' AND o.expires_at < now()), '>', 0,
	'some orders were paid after their time ran out but before anyone released them');
SELECT cmp_ok((SELECT n FROM tap_counters WHERE name = 'steps_with_reserved')::integer, '>', 100,
	'stock was reserved after many steps (the per-step reserved checks are not trivially 0 = 0)');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.stock_reservation r JOIN tap_orders t ON t.id = r.order_id
				WHERE r.state = 'consumed'), '>', 0,
	'the run ends with consumed reservations (the on_hand check is not trivially initial + adjustments)');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.stock_adjustment WHERE sku_id BETWEEN 9401 AND 9406), '>', 0,
	'the run ends with recorded adjustments');
SELECT cmp_ok((SELECT count(*)::integer FROM tap_ops WHERE op LIKE 'bad_input/%'), '>=', 8,
	'most kinds of invalid request were tried');

-- Coupons (issue #13): a second seeded run, after the first one's checks (it
-- expires orders of its own), orders with and without coupons, releases,
-- payments, expiries and inline reclaims.  After every step the money model
-- and the coupon counts must hold (shop_check_invariants: amount = subtotal
-- - discount, the lines add up to both, redeemed = active redemption rows,
-- never above max_redemptions nor max_per_user), each discount must be the
-- documented one, and every refusal one of the coupon SQLSTATEs.

SELECT setseed(0.13);
INSERT INTO shop.product (id, name, price, currency) VALUES
	(9411, 'coupon run tee', 1299, 'KRW'), (9412, 'coupon run mug', 333, 'KRW'),
	(9413, 'coupon run pin', 7, 'KRW');
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(9411, 9411, 'INVC-TEE', 12), (9412, 9412, 'INVC-MUG', 8), (9413, 9413, 'INVC-PIN', 40);
SELECT code FROM shop.shop_set_coupon('INVC-PCT', 'percent', 15, max_redemptions => 8, max_per_user => 2) \g /dev/null
SELECT code FROM shop.shop_set_coupon('INVC-FIX', 'fixed', 700, 'KRW', min_subtotal => 1000, max_redemptions => 5) \g /dev/null
SELECT code FROM shop.shop_set_coupon('INVC-ONLY', 'percent', 50, product_ids => ARRAY[9412]::bigint[], max_redemptions => 6) \g /dev/null
SELECT code FROM shop.shop_set_coupon('INVC-OLD', 'percent', 10, valid_to => now() - interval '1 day', valid_from => now() - interval '2 days') \g /dev/null
SELECT code FROM shop.shop_set_coupon('INVC-USD', 'fixed', 100, 'USD') \g /dev/null
CREATE TEMP TABLE tap_c_ops (op text, outcome text, n integer NOT NULL, PRIMARY KEY (op, outcome));
CREATE TEMP TABLE tap_c_anomalies (step integer, op text, what text);
CREATE TEMP TABLE tap_c_violations (step integer, op text, check_name text, subject text, detail text);
CREATE TEMP TABLE tap_c_orders (id bigint PRIMARY KEY, coupon text);
CREATE FUNCTION pg_temp.c_note(p_op text, p_outcome text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO tap_c_ops VALUES (p_op, p_outcome, 1)
	ON CONFLICT (op, outcome) DO UPDATE SET n = tap_c_ops.n + 1
$$;
-- the documented discount of an order's lines (computed here, independently
-- of shop.coupon_quote: the total only, the split is checked by the invariants)
CREATE FUNCTION pg_temp.c_expected_discount(p_order bigint, p_code text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT CASE c.kind
			 WHEN 'percent' THEN round(e.eligible * c.percent / 100)::bigint
			 ELSE least(c.amount, e.eligible)::bigint END
	  FROM shop.coupon c,
		   LATERAL (SELECT coalesce(sum(i.unit_price * i.qty) FILTER (
							WHERE c.product_ids IS NULL OR s.product_id = ANY (c.product_ids)), 0) AS eligible
					  FROM shop.order_item i JOIN shop.sku s ON s.id = i.sku_id
					 WHERE i.order_id = p_order) e
	 WHERE lower(c.code) = lower(p_code)
$$;

DO $crun$
DECLARE
	codes		text[] := ARRAY[NULL, 'INVC-PCT', 'invc-pct', 'INVC-FIX', 'INVC-ONLY', 'INVC-OLD',
							'INVC-NOPE', 'INVC-USD'];
	skus		bigint[] := ARRAY[9411, 9412, 9413];
	users		text[] := ARRAY['invc-u1', 'invc-u2', 'invc-u3'];
	reasons		text[] := ARRAY['cancelled', 'payment_failed', 'customer_cancelled'];
	step		integer;
	r_op		float8;
	r_a			float8;
	r_b			float8;
	r_c			float8;
	r_d			float8;
	op			text;
	u			text;
	code		text;
	items		jsonb;
	summary		shop.order_summary;
	the_order	bigint;
	o			record;
BEGIN
	FOR step IN 1..300 LOOP
		r_op := random(); r_a := random(); r_b := random(); r_c := random(); r_d := random();
		u := users[1 + floor(r_a * 3)::integer];
		code := codes[1 + floor(r_b * 8)::integer];
		IF r_op < 0.55 THEN
			op := CASE WHEN r_op < 0.40 THEN 'buy_now' ELSE 'create_order' END
				  || CASE WHEN code IS NULL THEN '' ELSE '/coupon' END;
			items := jsonb_build_array(jsonb_build_object('sku_id', skus[1 + floor(r_c * 3)::integer],
														  'qty', 1 + floor(r_d * 3)::integer));
			IF r_d > 0.4 THEN
				items := items || jsonb_build_array(jsonb_build_object(
					'sku_id', skus[1 + floor(r_d * 3)::integer], 'qty', 1 + floor(r_c * 4)::integer));
			END IF;
			IF r_c > 0.6 THEN
				items := items || jsonb_build_array(jsonb_build_object('sku_id', 9413, 'qty', 2));
			END IF;
			BEGIN
				IF r_op < 0.40 THEN
					summary := shop.shop_buy_now(u, items, NULL, code);
				ELSE
					PERFORM shop.shop_cart_add(u, (e->>'sku_id')::bigint, (e->>'qty')::integer)
					   FROM jsonb_array_elements(items) e;
					summary := shop.shop_create_order(u, NULL, code);
				END IF;
				PERFORM pg_temp.c_note(op, 'ok');
				INSERT INTO tap_c_orders VALUES (summary.id, code);
				SELECT * INTO o FROM shop.orders WHERE id = summary.id;
				IF o.discount <> coalesce(pg_temp.c_expected_discount(o.id, code), 0)
				   OR summary.amount <> o.subtotal - o.discount
				   OR (code IS NULL) <> NOT EXISTS (SELECT 1 FROM shop.coupon_redemption r
													 WHERE r.order_id = o.id AND r.state = 'active') THEN
					INSERT INTO tap_c_anomalies VALUES (step, op, format('order %s (%s): subtotal %s discount %s amount %s, expected discount %s',
						o.id, code, o.subtotal, o.discount, o.amount, pg_temp.c_expected_discount(o.id, code)));
				END IF;
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.c_note(op, SQLSTATE);
			END;
			-- an order refused from the cart leaves the cart: empty it
			DELETE FROM shop.cart_item ci USING shop.cart c
			 WHERE ci.cart_id = c.id AND c.user_id = u AND c.checked_out_at IS NULL;
		ELSIF r_op < 0.85 THEN
			the_order := (SELECT t.id FROM tap_c_orders t JOIN shop.orders x ON x.id = t.id
						   WHERE x.status = 'PENDING' ORDER BY t.id
						  OFFSET floor(r_c * (SELECT count(*) FROM tap_c_orders t2 JOIN shop.orders x2 ON x2.id = t2.id
											   WHERE x2.status = 'PENDING')) LIMIT 1);
			IF the_order IS NULL THEN
				CONTINUE;
			END IF;
			BEGIN
				IF r_op < 0.65 THEN
					op := 'release';
					PERFORM shop.shop_release(the_order, reasons[1 + floor(r_d * 3)::integer]);
				ELSIF r_op < 0.75 THEN
					op := 'confirm_paid';
					PERFORM shop.shop_confirm_paid(the_order, 'pay-c-' || the_order);
				ELSE
					op := 'expire';
					UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = the_order;
					IF r_d < 0.5 THEN
						PERFORM shop.shop_expire_pending();
					END IF;
				END IF;
				PERFORM pg_temp.c_note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.c_note(op, SQLSTATE);
			END;
		ELSE
			op := 'adjust_stock';
			BEGIN
				PERFORM shop.shop_adjust_stock(skus[1 + floor(r_c * 3)::integer], 1 + floor(r_d * 4)::integer, 'coupon run');
				PERFORM pg_temp.c_note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.c_note(op, SQLSTATE);
			END;
		END IF;
		INSERT INTO tap_c_violations SELECT step, op, v.* FROM shop.shop_check_invariants() v;
	END LOOP;
END
$crun$;

SELECT is_empty($$SELECT * FROM tap_c_violations ORDER BY step LIMIT 20$$,
	'coupon run: shop_check_invariants() (money model, coupon counts) was empty after every one of the 300 steps');
SELECT is_empty($$SELECT * FROM tap_c_anomalies ORDER BY step LIMIT 20$$,
	'coupon run: every order''s discount is the documented one, amount = subtotal - discount, a redemption exactly when a coupon was used');
SELECT is_empty($$
	SELECT op, outcome FROM tap_c_ops
	 WHERE outcome <> 'ok'
	   AND NOT (op LIKE '%/coupon' AND outcome IN ('SH025', 'SH026', 'SH027', 'SH028', 'SH029', 'SH030'))
	   AND NOT ((op LIKE 'buy_now%' OR op LIKE 'create_order%') AND outcome = 'SH001')$$,
	'coupon run: every refusal was a coupon SQLSTATE (SH025-SH030) for a coupon order, or out of stock');
SELECT set_has($$SELECT outcome FROM tap_c_ops$$,
	$$VALUES ('SH025'), ('SH026'), ('SH027'), ('SH028'), ('SH029'), ('SH030')$$,
	'coupon run: met every coupon refusal (SH025-SH030), including a used-up coupon');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.coupon_redemption r JOIN tap_c_orders t ON t.id = r.order_id
				WHERE r.state = 'released'), '>', 0,
	'coupon run: some redemptions were given back by releases and expiries');
SELECT cmp_ok((SELECT count(*)::integer FROM tap_c_orders t JOIN shop.orders x ON x.id = t.id
				WHERE x.discount > 0 AND x.status = 'PAID'), '>', 0,
	'coupon run: some discounted orders were paid');
SELECT is_empty($$
	SELECT c.code, c.redeemed, c.max_redemptions, count(r.*) FILTER (WHERE r.state = 'active') AS active
	  FROM shop.coupon c LEFT JOIN shop.coupon_redemption r ON r.coupon_id = c.id
	 WHERE c.code LIKE 'INVC-%'
	 GROUP BY c.id
	HAVING c.redeemed <> count(r.*) FILTER (WHERE r.state = 'active') OR c.redeemed > c.max_redemptions$$,
	'coupon run: each coupon''s count equals its active redemptions and never exceeds its limit');

-- Refunds (issue #13, second part): a third seeded run of PAID orders (paid
-- through signed mock events, some with a coupon) refunded at random:
-- partial by lines (by order line or by SKU, each line restocked or not),
-- whole (no lines, no amount: every unit left, restock or no_restock),
-- money only, refunds the provider refused or confirmed (the worker's
-- UPDATEs stand in for it), and receipts and write-offs racing nothing but
-- keeping the books.  After every step: shop_check_invariants() (refunded <=
-- paid, refunded and restocked units <= sold, each restock one adjustment),
-- on_hand = initial + adjustments - consumed for the run's SKUs, and each
-- refund's amount and units are the documented ones.

SELECT setseed(0.77);
SELECT shop.shop_set_provider('inv-rf', 'mock',
	'whsec_' || encode(convert_to('invariants refund run provider secret', 'UTF8'), 'base64')) \g /dev/null
INSERT INTO shop.product (id, name, price, currency) VALUES
	(9421, 'refund run tee', 1299, 'KRW'), (9422, 'refund run mug', 333, 'KRW'),
	(9423, 'refund run pin', 7, 'KRW');
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(9421, 9421, 'INVR-TEE', 40), (9422, 9422, 'INVR-MUG', 30), (9423, 9423, 'INVR-PIN', 60);
CREATE TEMP TABLE tap_r_initial AS SELECT id AS sku_id, on_hand FROM shop.sku WHERE id BETWEEN 9421 AND 9423;
SELECT code FROM shop.shop_set_coupon('INVR-PCT', 'percent', 15) \g /dev/null
CREATE TEMP TABLE tap_r_ops (op text, outcome text, n integer NOT NULL, PRIMARY KEY (op, outcome));
CREATE TEMP TABLE tap_r_anomalies (step integer, op text, what text);
CREATE TEMP TABLE tap_r_violations (step integer, op text, check_name text, subject text, detail text);
CREATE TEMP TABLE tap_r_orders (id bigint PRIMARY KEY, coupon boolean);
CREATE FUNCTION pg_temp.r_note(p_op text, p_outcome text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO tap_r_ops VALUES (p_op, p_outcome, 1)
	ON CONFLICT (op, outcome) DO UPDATE SET n = tap_r_ops.n + 1
$$;
CREATE FUNCTION pg_temp.r_successes(p_op text) RETURNS integer
LANGUAGE sql AS $$
	SELECT coalesce(sum(n), 0)::integer FROM tap_r_ops WHERE op LIKE p_op AND outcome = 'ok'
$$;
-- the run's SKUs whose on_hand the books do not explain
CREATE FUNCTION pg_temp.r_books() RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(format('sku %s on_hand %s, books %s', s.id, s.on_hand,
							 i.on_hand + coalesce(a.delta, 0) - coalesce(c.qty, 0)), '; ')
	  FROM shop.sku s JOIN tap_r_initial i ON i.sku_id = s.id
	  LEFT JOIN (SELECT sku_id, sum(delta) AS delta FROM shop.stock_adjustment GROUP BY sku_id) a ON a.sku_id = s.id
	  LEFT JOIN (SELECT sku_id, sum(qty) AS qty FROM shop.stock_reservation WHERE state = 'consumed' GROUP BY sku_id) c
		ON c.sku_id = s.id
	 WHERE s.on_hand <> i.on_hand + coalesce(a.delta, 0) - coalesce(c.qty, 0)
$$;
-- what the next k units of an order line are worth, after done refunded
-- ones: floor(paid * (done + k) / qty) - floor(paid * done / qty)
CREATE FUNCTION pg_temp.r_units_value(p_item bigint, p_done bigint, p_k bigint) RETURNS bigint
LANGUAGE sql AS $$
	SELECT (floor((i.unit_price * i.qty - i.discount)::numeric * (p_done + p_k) / i.qty)
			- floor((i.unit_price * i.qty - i.discount)::numeric * p_done / i.qty))::bigint
	  FROM shop.order_item i WHERE i.id = p_item
$$;

DO $rrun$
DECLARE
	skus		bigint[] := ARRAY[9421, 9422, 9423];
	users		text[] := ARRAY['invr-u1', 'invr-u2', 'invr-u3'];
	step		integer;
	r_op		float8;
	r_a			float8;
	r_b			float8;
	r_c			float8;
	r_d			float8;
	op			text;
	items		jsonb;
	v_lines		jsonb;
	body		text;
	the_order	bigint;
	o			record;
	it			record;
	res			jsonb;
	left_before	bigint;
	expected	bigint;
	want_units	bigint;
	restocked_before bigint;
	v_restock	text;
	summary		shop.order_summary;
BEGIN
	FOR step IN 1..300 LOOP
		r_op := random(); r_a := random(); r_b := random(); r_c := random(); r_d := random();
		IF r_op < 0.25 THEN
			-- a new order, paid at once through a signed event (a third with the coupon)
			op := 'buy_and_pay';
			items := jsonb_build_array(jsonb_build_object('sku_id', skus[1 + floor(r_a * 3)::integer],
														  'qty', 1 + floor(r_b * 3)::integer));
			IF r_c > 0.4 THEN
				items := items || jsonb_build_array(jsonb_build_object('sku_id', skus[1 + floor(r_c * 3)::integer],
																	   'qty', 1 + floor(r_d * 4)::integer));
			END IF;
			BEGIN
				summary := shop.shop_buy_now(users[1 + floor(r_d * 3)::integer], items, NULL,
											 CASE WHEN r_a < 0.33 THEN 'invr-pct' END);
				body := jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
					'order_id', summary.id::text, 'amount', summary.amount, 'currency', 'KRW',
					'payment_id', 'pay-invr-' || summary.id))::text;
				PERFORM shop.shop_handle_webhook('inv-rf', shop.shop_sign_mock('inv-rf', 'ev-invr-' || summary.id, body), body);
				INSERT INTO tap_r_orders VALUES (summary.id, r_a < 0.33);
				PERFORM pg_temp.r_note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.r_note(op, SQLSTATE);
			END;
		ELSIF r_op < 0.80 THEN
			the_order := (SELECT t.id FROM tap_r_orders t ORDER BY t.id
						  OFFSET floor(r_a * (SELECT count(*) FROM tap_r_orders)) LIMIT 1);
			IF the_order IS NULL THEN
				CONTINUE;
			END IF;
			SELECT * INTO o FROM shop.order_refund_status s WHERE s.order_id = the_order;
			left_before := o.paid - o.refunded;
			restocked_before := (SELECT coalesce(sum(on_hand), 0) FROM shop.sku WHERE id BETWEEN 9421 AND 9423);
			v_restock := CASE WHEN r_d < 0.7 THEN 'restock' ELSE 'no_restock' END;
			BEGIN
				IF r_op < 0.55 THEN
					-- by lines: one or two of the order's lines, 1-2 units each,
					-- named by order_item_id or sku_id, each with its own policy
					op := 'refund/lines';
					v_lines := (SELECT jsonb_agg(CASE WHEN r_c < 0.5
								THEN jsonb_build_object('order_item_id', i.id)
								ELSE jsonb_build_object('sku_id', i.sku_id) END
							 || jsonb_build_object('qty', 1 + floor(r_b * 2)::integer,
												   'restock', CASE WHEN (i.id + floor(r_d * 10)::bigint) % 3 = 0
																   THEN 'no_restock' ELSE 'restock' END)
							 ORDER BY i.id)
						FROM (SELECT * FROM shop.order_item WHERE order_id = the_order ORDER BY id
							   LIMIT 1 + floor(r_c * 2)::integer) i);
					-- the documented amount of those units
					expected := (SELECT sum(pg_temp.r_units_value(i.id,
									(SELECT coalesce(sum(l.qty), 0) FROM shop.refund_line l WHERE l.order_item_id = i.id),
									(e->>'qty')::bigint))
								   FROM jsonb_array_elements(v_lines) e
								   JOIN shop.order_item i ON i.order_id = the_order
									AND (i.id = (e->>'order_item_id')::bigint OR i.sku_id = (e->>'sku_id')::bigint));
					want_units := (SELECT sum((e->>'qty')::bigint) FROM jsonb_array_elements(v_lines) e);
					res := shop.shop_refund(the_order, NULL, 'invariants step ' || step, v_lines);
					IF (res->>'amount')::bigint <> expected
					   OR (SELECT sum((l->>'qty')::bigint) FROM jsonb_array_elements(res->'lines') l) <> want_units
					   OR (SELECT sum((l->>'amount')::bigint) FROM jsonb_array_elements(res->'lines') l) <> expected THEN
						INSERT INTO tap_r_anomalies VALUES (step, op, format('order %s lines %s: got %s, expected %s for %s units',
							the_order, v_lines, res, expected, want_units));
					END IF;
				ELSIF r_op < 0.65 THEN
					-- everything that is left (a PAID order cancelled, or the rest)
					op := 'refund/whole ' || v_restock;
					want_units := (SELECT sum(i.qty) - coalesce((SELECT sum(l.qty) FROM shop.refund_line l
											JOIN shop.order_item j ON j.id = l.order_item_id WHERE j.order_id = the_order), 0)
									 FROM shop.order_item i WHERE i.order_id = the_order);
					res := shop.shop_refund(the_order, restock => v_restock);
					IF (res->>'amount')::bigint <> left_before
					   OR coalesce((SELECT sum((l->>'qty')::bigint) FROM jsonb_array_elements(res->'lines') l), 0) <> want_units
					   OR (SELECT coalesce(sum(on_hand), 0) FROM shop.sku WHERE id BETWEEN 9421 AND 9423) - restocked_before
						  <> want_units * (v_restock = 'restock')::integer THEN
						INSERT INTO tap_r_anomalies VALUES (step, op, format('order %s: got %s, %s left and %s units before',
							the_order, res, left_before, want_units));
					END IF;
					IF (SELECT state FROM shop.order_refund_status WHERE order_id = the_order) <> 'refunded'
					   OR EXISTS (SELECT 1 FROM shop.coupon_redemption WHERE order_id = the_order AND state = 'active') THEN
						INSERT INTO tap_r_anomalies VALUES (step, op, format('order %s not refunded, or its coupon kept', the_order));
					END IF;
				ELSE
					-- money only: no units, no stock
					op := 'refund/amount';
					res := shop.shop_refund(the_order, 1 + floor(r_b * 1500)::bigint);
					IF res ? 'lines' OR (SELECT coalesce(sum(on_hand), 0) FROM shop.sku WHERE id BETWEEN 9421 AND 9423) <> restocked_before THEN
						INSERT INTO tap_r_anomalies VALUES (step, op, format('order %s: money only moved units: %s', the_order, res));
					END IF;
				END IF;
				PERFORM pg_temp.r_note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.r_note(op, SQLSTATE);
			END;
		ELSIF r_op < 0.90 THEN
			-- the provider answers a requested refund: refused (failed) or made
			op := CASE WHEN r_b < 0.3 THEN 'provider/failed' ELSE 'provider/succeeded' END;
			UPDATE shop.refund SET state = CASE WHEN r_b < 0.3 THEN 'failed' ELSE 'succeeded' END
			 WHERE id = (SELECT r.id FROM shop.refund r JOIN tap_r_orders t ON t.id = r.order_id
						  WHERE r.state = 'requested' ORDER BY r.id LIMIT 1);
			PERFORM pg_temp.r_note(op, CASE WHEN FOUND THEN 'ok' ELSE 'skipped' END);
		ELSE
			-- receipts and write-offs on the same SKUs
			op := 'adjust_stock';
			BEGIN
				PERFORM shop.shop_adjust_stock(skus[1 + floor(r_a * 3)::integer],
					CASE WHEN r_b < 0.5 THEN 1 + floor(r_c * 4)::integer ELSE -(1 + floor(r_c * 6)::integer) END,
					'refund run ' || step);
				PERFORM pg_temp.r_note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.r_note(op, SQLSTATE);
			END;
		END IF;
		INSERT INTO tap_r_violations SELECT step, op, v.* FROM shop.shop_check_invariants() v;
		IF pg_temp.r_books() IS NOT NULL THEN
			INSERT INTO tap_r_violations VALUES (step, op, 'books', 'skus', pg_temp.r_books());
		END IF;
	END LOOP;
END
$rrun$;

SELECT is_empty($$SELECT * FROM tap_r_violations ORDER BY step LIMIT 20$$,
	'refund run: shop_check_invariants() (refunded <= paid, units <= sold, restocks booked) and on_hand = initial + adjustments - consumed held after every one of the 300 steps');
SELECT is_empty($$SELECT * FROM tap_r_anomalies ORDER BY step LIMIT 20$$,
	'refund run: every refund gave back the documented money and units (lines: their share of the line''s payment; whole: all that was left), restocked exactly the restock units, released the coupon when whole');
SELECT is_empty($$
	SELECT op, outcome FROM tap_r_ops
	 WHERE outcome NOT IN ('ok', 'skipped')
	   AND NOT (op = 'refund/lines' AND outcome IN ('SH041', 'SH042'))
	   AND NOT (op LIKE 'refund/%' AND outcome = '22023')
	   AND NOT (op = 'buy_and_pay' AND outcome = 'SH001')
	   AND NOT (op = 'adjust_stock' AND outcome = 'SH006')$$,
	'refund run: every refusal was documented: SH041 (units left of a line), SH042 (lines worth more than is left), 22023 (amount, or nothing left), SH001, SH006');
SELECT cmp_ok(pg_temp.r_successes('refund/lines'), '>', 10, 'refund run: many partial refunds by lines were made');
SELECT cmp_ok(pg_temp.r_successes('refund/whole restock'), '>', 0, 'refund run: some whole refunds restocked every unit left');
SELECT cmp_ok(pg_temp.r_successes('refund/whole no_restock'), '>', 0, 'refund run: some whole refunds restocked nothing');
SELECT cmp_ok(pg_temp.r_successes('refund/amount'), '>', 0, 'refund run: some refunds were money only');
SELECT set_has($$SELECT outcome FROM tap_r_ops WHERE op LIKE 'refund/%'$$,
	$$VALUES ('SH041'), ('22023')$$,
	'refund run: met a line with no units left (SH041) and an order with nothing left (22023)');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.refund_line l JOIN shop.order_item i ON i.id = l.order_item_id
				WHERE i.sku_id BETWEEN 9421 AND 9423 AND l.restocked), '>', 0,
	'refund run: some units went back to stock, each as a stock adjustment');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.refund_line l JOIN shop.order_item i ON i.id = l.order_item_id
				WHERE i.sku_id BETWEEN 9421 AND 9423 AND NOT l.restocked), '>', 0,
	'refund run: some refunded units were not restocked');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.order_refund_status s JOIN tap_r_orders t ON t.id = s.order_id
				WHERE s.state = 'partially_refunded'), '>', 0, 'refund run: some orders end partially_refunded');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.order_refund_status s JOIN tap_r_orders t ON t.id = s.order_id
				WHERE s.state = 'refunded'), '>', 0, 'refund run: some orders end refunded');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.refund r JOIN tap_r_orders t ON t.id = r.order_id
				WHERE r.state = 'failed'), '>', 0, 'refund run: some refunds were refused by the provider (their money counted no more)');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.coupon_redemption r JOIN tap_r_orders t ON t.id = r.order_id
				WHERE r.state = 'released'), '>', 0, 'refund run: whole refunds gave some coupon redemptions back');

-- Shipping and tax (issue #13): a fourth seeded run with prices exclusive of
-- tax (USD, rates by region and tax class) and inclusive (KRW, 10 % VAT),
-- shipping methods with thresholds and country lists, coupons, and
-- shop_set_shipping, payments, releases, expiries, shop_ship and
-- shop_mark_delivered in random order.  After every step
-- shop_check_invariants must be empty (amount = subtotal - discount +
-- shipping + tax, the lines' tax adds up to tax + tax_included, an included
-- share never above its line, shipment only of PAID orders); each order's
-- shipping and tax must be what the README's rules give, computed here
-- independently; and every refusal one of the documented SQLSTATEs.

SELECT setseed(0.71);
INSERT INTO shop.product (id, name, price, currency, tax_class) VALUES
	(9441, 'ship run shirt', 2499, 'USD', 'standard'), (9442, 'ship run book', 1333, 'USD', 'books'),
	(9443, 'ship run sock', 7, 'USD', 'standard'), (9444, 'ship run bowl', 15900, 'KRW', 'standard'),
	(9445, 'ship run cup', 3333, 'KRW', 'standard');
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(9441, 9441, 'INVS-SHIRT', 15), (9442, 9442, 'INVS-BOOK', 15), (9443, 9443, 'INVS-SOCK', 60),
	(9444, 9444, 'INVS-BOWL', 15), (9445, 9445, 'INVS-CUP', 25);
SELECT currency FROM shop.shop_set_tax_setting('USD', false, 'US') \g /dev/null
SELECT currency FROM shop.shop_set_tax_setting('KRW', true, 'KR') \g /dev/null
SELECT country FROM shop.shop_set_tax_rate('US', 6.25) \g /dev/null
SELECT country FROM shop.shop_set_tax_rate('US', 8.875, 'standard', 'NY') \g /dev/null
SELECT country FROM shop.shop_set_tax_rate('US', 2.5, 'books') \g /dev/null
SELECT country FROM shop.shop_set_tax_rate('CA', 13, 'standard', 'ON') \g /dev/null
SELECT country FROM shop.shop_set_tax_rate('KR', 10) \g /dev/null
SELECT code FROM shop.shop_set_shipping_method('invs-us', 'US ground', 'USD', 799, 5000, ARRAY['US']) \g /dev/null
SELECT code FROM shop.shop_set_shipping_method('invs-intl', 'International', 'USD', 2500, NULL, ARRAY['CA', 'MX', 'KR']) \g /dev/null
SELECT code FROM shop.shop_set_shipping_method('invs-kr', 'Korea parcel', 'KRW', 3000, 50000, ARRAY['KR']) \g /dev/null
SELECT code FROM shop.shop_set_shipping_method('invs-off', 'Retired', 'USD', 1, active => false) \g /dev/null
SELECT code FROM shop.shop_set_coupon('INVS-PCT', 'percent', 12) \g /dev/null
CREATE TEMP TABLE tap_s_ops (op text, outcome text, n integer NOT NULL, PRIMARY KEY (op, outcome));
CREATE TEMP TABLE tap_s_anomalies (step integer, op text, what text);
CREATE TEMP TABLE tap_s_violations (step integer, op text, check_name text, subject text, detail text);
CREATE TEMP TABLE tap_s_orders (id bigint PRIMARY KEY);
CREATE FUNCTION pg_temp.s_note(p_op text, p_outcome text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO tap_s_ops VALUES (p_op, p_outcome, 1)
	ON CONFLICT (op, outcome) DO UPDATE SET n = tap_s_ops.n + 1
$$;
-- what the README's rules give for an order's shipping and tax (computed
-- here, independently of shop.shipping_tax_quote: totals only, the split is
-- checked by the invariants)
CREATE FUNCTION pg_temp.s_expected(p_order bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	o		shop.orders;
	m		shop.shipping_method;
	st		shop.tax_setting;
	ship	bigint := 0;
	total	numeric := 0;
	g		record;
BEGIN
	SELECT * INTO o FROM shop.orders WHERE id = p_order;
	IF o.shipping_method IS NOT NULL THEN
		SELECT * INTO m FROM shop.shipping_method WHERE code = o.shipping_method;
		ship := CASE WHEN m.free_over IS NOT NULL AND o.subtotal - o.discount >= m.free_over THEN 0 ELSE m.cost END;
	END IF;
	SELECT * INTO st FROM shop.tax_setting WHERE currency = o.currency;
	IF FOUND THEN
		FOR g IN
			SELECT l.rate, sum(l.net) AS net
			  FROM (SELECT i.unit_price * i.qty - i.discount AS net,
						   (SELECT r.rate FROM shop.tax_rate r
							 WHERE r.country = coalesce(o.ship_to ->> 'country', st.default_country)
							   AND r.tax_class = p.tax_class
							   AND (r.region IS NULL OR r.region = o.ship_to ->> 'region')
							 ORDER BY r.region IS NULL LIMIT 1) AS rate
					  FROM shop.order_item i JOIN shop.sku s ON s.id = i.sku_id
					  JOIN shop.product p ON p.id = s.product_id
					 WHERE i.order_id = p_order) l
			 WHERE l.rate > 0
			 GROUP BY l.rate
		LOOP
			total := total + round(g.net * g.rate / CASE WHEN st.prices_include_tax THEN 100 + g.rate ELSE 100 END);
		END LOOP;
	END IF;
	RETURN format('shipping %s tax %s included %s', ship,
				  CASE WHEN st.prices_include_tax THEN 0 ELSE total END,
				  CASE WHEN st.prices_include_tax THEN total ELSE 0 END);
END
$$;

DO $srun$
DECLARE
	methods		text[] := ARRAY[NULL, 'invs-us', 'invs-intl', 'invs-kr', 'invs-off', 'invs-nope'];
	addrs		jsonb[] := ARRAY[NULL,
		'{"name": "A", "line1": "1 Main", "city": "NYC", "postal_code": "10001", "country": "US", "region": "NY"}',
		'{"name": "B", "line1": "2 Elm", "city": "Austin", "postal_code": "73301", "country": "US", "region": "TX"}',
		'{"name": "C", "line1": "3 King", "city": "Toronto", "postal_code": "M5H", "country": "CA", "region": "ON"}',
		'{"name": "D", "line1": "4 Gangnam-daero", "city": "Seoul", "postal_code": "06000", "country": "KR"}',
		'{"name": "E", "line1": "5 Rue", "city": "Paris", "postal_code": "75001", "country": "FR"}',
		'{"name": "F", "city": "Nowhere", "postal_code": "0", "country": "US"}']::jsonb[];
	usd			bigint[] := ARRAY[9441, 9442, 9443];
	krw			bigint[] := ARRAY[9444, 9445];
	users		text[] := ARRAY['invs-u1', 'invs-u2', 'invs-u3'];
	step		integer;
	r_op		float8;
	r_a			float8;
	r_b			float8;
	r_c			float8;
	r_d			float8;
	op			text;
	u			text;
	method		text;
	addr		jsonb;
	items		jsonb;
	skus		bigint[];
	summary		shop.order_summary;
	the_order	bigint;
	o			record;
BEGIN
	FOR step IN 1..300 LOOP
		r_op := random(); r_a := random(); r_b := random(); r_c := random(); r_d := random();
		u := users[1 + floor(r_a * 3)::integer];
		method := methods[1 + floor(r_b * 6)::integer];
		addr := addrs[1 + floor(r_c * 7)::integer];
		skus := CASE WHEN r_d < 0.6 THEN usd ELSE krw END;
		IF r_op < 0.45 THEN
			op := CASE WHEN r_op < 0.33 THEN 'buy_now' ELSE 'create_order' END;
			items := jsonb_build_array(jsonb_build_object('sku_id', skus[1 + floor(r_c * cardinality(skus))::integer],
														  'qty', 1 + floor(r_a * 3)::integer));
			IF r_b > 0.3 THEN
				items := items || jsonb_build_array(jsonb_build_object(
					'sku_id', skus[1 + floor(r_b * cardinality(skus))::integer], 'qty', 1 + floor(r_d * 4)::integer));
			END IF;
			BEGIN
				IF r_op < 0.33 THEN
					summary := shop.shop_buy_now(u, items, NULL, CASE WHEN r_d > 0.8 THEN 'INVS-PCT' END, method, addr);
				ELSE
					PERFORM shop.shop_cart_add(u, (e->>'sku_id')::bigint, (e->>'qty')::integer)
					   FROM jsonb_array_elements(items) e;
					summary := shop.shop_create_order(u, NULL, CASE WHEN r_d > 0.8 THEN 'INVS-PCT' END, method, addr);
				END IF;
				PERFORM pg_temp.s_note(op, 'ok');
				INSERT INTO tap_s_orders VALUES (summary.id);
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.s_note(op, SQLSTATE);
			END;
			DELETE FROM shop.cart_item ci USING shop.cart c
			 WHERE ci.cart_id = c.id AND c.user_id = u AND c.checked_out_at IS NULL;
		ELSE
			the_order := (SELECT t.id FROM tap_s_orders t ORDER BY t.id
						  OFFSET floor(r_a * (SELECT count(*) FROM tap_s_orders)) LIMIT 1);
			IF the_order IS NULL THEN
				CONTINUE;
			END IF;
			BEGIN
				IF r_op < 0.60 THEN
					op := 'set_shipping';
					PERFORM shop.shop_set_shipping(the_order, coalesce(method, 'invs-us'), coalesce(addr, addrs[2]));
				ELSIF r_op < 0.72 THEN
					op := 'confirm_paid';
					PERFORM shop.shop_confirm_paid(the_order, 'pay-s-' || the_order);
				ELSIF r_op < 0.78 THEN
					op := 'release';
					PERFORM shop.shop_release(the_order);
				ELSIF r_op < 0.82 THEN
					op := 'expire';
					UPDATE shop.orders SET expires_at = now() - interval '1 minute'
					 WHERE id = the_order AND status = 'PENDING';
					PERFORM shop.shop_expire_pending();
				ELSIF r_op < 0.93 THEN
					op := 'ship';
					PERFORM shop.shop_ship(the_order, 'UPS', CASE WHEN r_d < 0.8 THEN 'T-' || the_order ELSE 'X-' || step END);
				ELSE
					op := 'deliver';
					PERFORM shop.shop_mark_delivered(the_order);
				END IF;
				PERFORM pg_temp.s_note(op, 'ok');
			EXCEPTION WHEN OTHERS THEN
				PERFORM pg_temp.s_note(op, SQLSTATE);
			END;
		END IF;
		INSERT INTO tap_s_violations SELECT step, op, v.* FROM shop.shop_check_invariants() v;
		-- the order this step made or touched
		FOR o IN SELECT x.* FROM shop.orders x
				  WHERE x.id IN (summary.id, the_order) AND x.status = 'PENDING' LOOP
			IF format('shipping %s tax %s included %s', o.shipping, o.tax, o.tax_included) <> pg_temp.s_expected(o.id)
			   OR o.amount <> o.subtotal - o.discount + o.shipping + o.tax THEN
				INSERT INTO tap_s_anomalies VALUES (step, op, format('order %s: subtotal %s discount %s shipping %s tax %s included %s amount %s; expected %s',
					o.id, o.subtotal, o.discount, o.shipping, o.tax, o.tax_included, o.amount, pg_temp.s_expected(o.id)));
			END IF;
		END LOOP;
	END LOOP;
END
$srun$;

SELECT is_empty($$SELECT * FROM tap_s_violations ORDER BY step LIMIT 20$$,
	'shipping run: shop_check_invariants() (amount = subtotal - discount + shipping + tax, lines'' tax) was empty after every one of the 300 steps');
SELECT is_empty($$SELECT * FROM tap_s_anomalies ORDER BY step LIMIT 20$$,
	'shipping run: the shipping and tax of every order a step made or re-priced were the documented ones');
SELECT is_empty($$
	SELECT op, outcome FROM tap_s_ops
	 WHERE outcome <> 'ok'
	   AND NOT (op IN ('buy_now', 'create_order', 'set_shipping') AND outcome IN ('SH031', 'SH032', 'SH033'))
	   AND NOT (op IN ('buy_now', 'create_order') AND outcome IN ('SH001', 'SH005'))
	   AND NOT (op IN ('set_shipping', 'confirm_paid', 'release') AND outcome = 'SH004')
	   AND NOT (op IN ('ship', 'deliver') AND outcome IN ('SH035', 'SH036'))$$,
	'shipping run: every refusal was a documented SQLSTATE for its call');
SELECT set_has($$SELECT outcome FROM tap_s_ops$$,
	$$VALUES ('ok'), ('SH031'), ('SH032'), ('SH033'), ('SH004'), ('SH035'), ('SH036')$$,
	'shipping run: met every shipping refusal (SH031-SH033, SH035, SH036) and a late set_shipping (SH004)');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.orders x JOIN tap_s_orders t ON t.id = x.id
				WHERE x.tax > 0 AND x.status = 'PAID'), '>', 0,
	'shipping run: some orders with tax added were paid');
SELECT cmp_ok((SELECT count(*)::integer FROM shop.orders x JOIN tap_s_orders t ON t.id = x.id
				WHERE x.tax_included > 0 AND x.fulfilment_status = 'DELIVERED'), '>', 0,
	'shipping run: some orders with tax included were shipped and delivered');

SELECT * FROM finish();
ROLLBACK;

-- Webhook invariants after a random (seeded) sequence of orders, paid,
-- failed, repeated and unmatched events, expiries and restocks: no order is
-- PAID without its reservations consumed, every recorded event has exactly
-- one log row, repeats are duplicates, a mismatched amount never confirms,
-- and the stock counters still add up.
BEGIN;
SELECT plan(15);
SET LOCAL client_min_messages = warning;

DO $$
BEGIN
	PERFORM shop.shop_set_provider('tap-mock', 'mock',
		'whsec_' || encode(convert_to('pgtap webhook invariant secret', 'UTF8'), 'base64'));
END
$$;

-- Three SKUs with little stock so that late payments sometimes find it gone.
INSERT INTO shop.product (name, price, currency) VALUES ('tap webhook item', 300, 'KRW');
INSERT INTO shop.sku (product_id, code, on_hand)
	SELECT p.id, 'TAP-WH-' || n, 3 FROM shop.product p, generate_series(1, 3) n
	 WHERE p.name = 'tap webhook item';
CREATE TEMP TABLE tap_initial AS
	SELECT id AS sku_id, on_hand FROM shop.sku WHERE code LIKE 'TAP-WH-%';

-- Every event sent: its id, body, whether it repeats an earlier one, answer.
CREATE TEMP TABLE tap_sent (
	seq			serial,
	event_id	text,
	body		text,
	resend		boolean,
	order_id	bigint,
	wrong_amount boolean,
	result		text,
	review		text
);

DO $$
DECLARE
	step	int;
	r		float8;
	o		record;
	ev		record;
	payload	text;
	answer	jsonb;
	skus	bigint[] := ARRAY(SELECT sku_id FROM tap_initial ORDER BY sku_id);
	n		int := 0;
	wrong	boolean;
BEGIN
	-- seeded: the same sequence on every run
	PERFORM setseed(0.25);
	FOR step IN 1..300 LOOP
		r := random();
		IF r < 0.18 THEN
			-- a new order for one or two SKUs; too little stock is fine
			BEGIN
				PERFORM shop.shop_buy_now('tap-wh-' || step, jsonb_build_array(
					jsonb_build_object('sku_id', skus[1 + floor(random() * 3)::int], 'qty', 1 + floor(random() * 2)::int),
					jsonb_build_object('sku_id', skus[1 + floor(random() * 3)::int], 'qty', 1)));
			EXCEPTION WHEN SQLSTATE 'SH001' THEN
				NULL;
			END;
		ELSIF r < 0.26 THEN
			-- an order runs out of time and the sweep releases it
			UPDATE shop.orders SET expires_at = now() - interval '1 second'
			 WHERE id = (SELECT id FROM shop.orders WHERE user_id LIKE 'tap-wh-%' AND status = 'PENDING'
						  ORDER BY random() LIMIT 1);
			PERFORM shop.shop_expire_pending();
		ELSIF r < 0.32 THEN
			-- restock a SKU
			PERFORM shop.shop_adjust_stock(skus[1 + floor(random() * 3)::int],
										   1 + floor(random() * 3)::int, 'tap restock');
		ELSIF r < 0.82 THEN
			-- a paid (60 %) or failed event for a random order (mostly a
			-- pending one), sometimes with the wrong amount, sometimes for an
			-- order that does not exist; mostly the order's one payment id,
			-- sometimes a second payment
			SELECT id, amount, currency INTO o FROM shop.orders
			 WHERE user_id LIKE 'tap-wh-%'
			 ORDER BY (status = 'PENDING' AND random() < 0.7) DESC, random() LIMIT 1;
			CONTINUE WHEN NOT FOUND;
			n := n + 1;
			wrong := random() < 0.15;
			payload := jsonb_build_object(
				'type', CASE WHEN random() < 0.6 THEN 'payment.succeeded' ELSE 'payment.failed' END,
				'data', jsonb_build_object(
					'order_id', CASE WHEN random() < 0.05 THEN 'no-such-order' ELSE o.id::text END,
					'amount', CASE WHEN wrong THEN o.amount + 1 ELSE o.amount END,
					'currency', lower(o.currency),
					'payment_id', CASE WHEN random() < 0.85 THEN 'tap-pay-o' || o.id
									   ELSE 'tap-pay-' || n END))::text;
			answer := shop.shop_handle_webhook('tap-mock',
				shop.shop_sign_mock('tap-mock', 'tap-ev-' || n, payload), payload);
			INSERT INTO tap_sent (event_id, body, resend, order_id, wrong_amount, result, review)
				VALUES ('tap-ev-' || n, payload, false, (answer->>'order_id')::bigint, wrong,
						answer->>'result', answer->>'review');
		ELSE
			-- the provider delivers an earlier event again
			SELECT event_id, body INTO ev FROM tap_sent WHERE NOT resend ORDER BY random() LIMIT 1;
			CONTINUE WHEN NOT FOUND;
			answer := shop.shop_handle_webhook('tap-mock',
				shop.shop_sign_mock('tap-mock', ev.event_id, ev.body), ev.body);
			INSERT INTO tap_sent (event_id, body, resend, order_id, result, review)
				VALUES (ev.event_id, ev.body, true, (answer->>'order_id')::bigint,
						answer->>'result', answer->>'review');
		END IF;
	END LOOP;
END
$$;

-- The sequence exercised what it is meant to.
SELECT ok((SELECT count(*) FROM tap_sent WHERE result = 'processed' AND review IS NULL) > 10,
	'events were applied');
SELECT ok((SELECT count(*) FROM tap_sent WHERE resend) > 10, 'events were delivered again');
SELECT ok((SELECT count(*) FROM shop.orders WHERE user_id LIKE 'tap-wh-%' AND status_reason = 'paid_after_release') > 0
	   AND (SELECT count(*) FROM tap_sent WHERE review = 'refund_required') > 0,
	'late payments were both re-reserved and refused for lack of stock');
SELECT ok((SELECT count(*) FROM tap_sent WHERE review = 'amount_mismatch') > 0
	   AND (SELECT count(*) FROM tap_sent WHERE result = 'unmatched') > 0
	   AND (SELECT count(*) FROM tap_sent WHERE result = 'ignored') > 0,
	'mismatches, unmatched and ignored events occurred');

-- Invariants.
SELECT is_empty('SELECT * FROM shop.shop_check_invariants()', 'shop_check_invariants finds nothing');
SELECT is_empty($$
	SELECT o.id FROM shop.orders o JOIN shop.order_item i ON i.order_id = o.id
	  LEFT JOIN shop.stock_reservation r ON r.order_id = o.id AND r.sku_id = i.sku_id
	 WHERE o.user_id LIKE 'tap-wh-%' AND o.status = 'PAID'
	   AND (r.state IS DISTINCT FROM 'consumed' OR r.qty <> i.qty)$$,
	'no order is PAID without every line''s reservation consumed');
SELECT is_empty($$
	SELECT event_id FROM tap_sent WHERE result <> 'duplicate'
	EXCEPT
	SELECT event_id FROM shop.payment_log WHERE provider = 'tap-mock'$$,
	'every recorded event has a log row');
SELECT is((SELECT count(*) FROM shop.payment_log WHERE provider = 'tap-mock'),
		  (SELECT count(DISTINCT event_id) FROM tap_sent),
	'exactly one log row per distinct event, however often it was delivered');
SELECT is_empty($$SELECT seq FROM tap_sent WHERE resend AND result <> 'duplicate'$$,
	'every repeated delivery answered duplicate');
SELECT is_empty($$SELECT seq FROM tap_sent WHERE NOT resend AND result = 'duplicate'$$,
	'no first delivery answered duplicate');
SELECT is_empty($$SELECT id FROM shop.payment_log WHERE provider = 'tap-mock'
				   AND result IS NULL$$,
	'every log row carries its result');
SELECT is_empty($$
	SELECT l.event_id FROM shop.payment_log l JOIN shop.orders o ON o.id = l.order_id
	 WHERE l.provider = 'tap-mock' AND l.kind = 'paid' AND l.result = 'processed'
	   AND l.review IS NULL AND (l.amount <> o.amount OR upper(l.currency) <> o.currency)$$,
	'no event of the wrong amount or currency confirmed an order');
SELECT is_empty($$
	SELECT o.id FROM shop.orders o
	 WHERE o.user_id LIKE 'tap-wh-%' AND o.status = 'PAID'
	   AND NOT EXISTS (SELECT 1 FROM shop.payment_log l
					    WHERE l.provider = 'tap-mock' AND l.order_id = o.id
						  AND l.kind = 'paid' AND l.result = 'processed' AND l.review IS NULL
						  AND l.amount = o.amount AND upper(l.currency) = o.currency
						  AND l.payment_id = o.external_payment_id)$$,
	'every PAID order was paid by one event of exactly its amount and currency');
SELECT is_empty($$
	SELECT l.event_id FROM shop.payment_log l
	  LEFT JOIN shop.order_review r ON r.provider = l.provider AND r.event_id = l.event_id
	 WHERE l.provider = 'tap-mock' AND l.review IS DISTINCT FROM r.reason$$,
	'every flagged event has its review row and no other event has one');
SELECT is_empty($$
	SELECT s.id FROM shop.sku s JOIN tap_initial t ON t.sku_id = s.id
	 WHERE s.on_hand <> t.on_hand
		+ coalesce((SELECT sum(delta) FROM shop.stock_adjustment a WHERE a.sku_id = s.id), 0)
		- coalesce((SELECT sum(qty) FROM shop.stock_reservation r
					 WHERE r.sku_id = s.id AND r.state = 'consumed'), 0)$$,
	'on_hand = initial + adjustments - consumed for every SKU');

SELECT * FROM finish();
ROLLBACK;

--
-- Webhook processing rules (issue 3, rules 2-8) with signed mock events,
-- one order per scenario.  Ids come from sequences other tests also use,
-- so they are captured with \gset and only compared, never printed.
--
-- Hermetic: the file creates its own providers (mock-rules, stripe-rules),
-- product, SKUs (WH-RULES-*) and orders (users wh-rules-*), checks the
-- invariants of its own objects only and deletes every row and object it
-- created at the end.  Only the Stripe vector's order has a fixed id
-- (900000001, signed into the body); no other file uses that id.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- Invariant violations about this file's SKUs, orders and users (the
-- database is shared with other tests).
CREATE TEMP VIEW wh_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'WH-RULES-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'wh-rules-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'wh-rules-%');

SELECT shop.shop_set_provider('mock-rules', 'mock',
	'whsec_' || encode(convert_to('mock-rules secret for the tests', 'UTF8'), 'base64')) IS NOT NULL AS registered;

-- Send one signed mock event; order_ref, amount, currency, payment_id may be
-- NULL (left out of the body).
CREATE FUNCTION wh_mock(event_id text, type text, order_ref text, amount bigint,
						currency text, payment_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	body text := jsonb_build_object('type', type, 'data', jsonb_strip_nulls(
		jsonb_build_object('order_id', order_ref, 'amount', amount,
						   'currency', currency, 'payment_id', payment_id)))::text;
BEGIN
	RETURN shop.shop_handle_webhook('mock-rules',
		shop.shop_sign_mock('mock-rules', event_id, body), body);
END
$$;

-- An order's state: status, reason, payment id, reservations per SKU.
CREATE FUNCTION wh_order(oid bigint) RETURNS TABLE (status text, status_reason text,
	external_payment_id text, reservations text)
LANGUAGE sql AS $$
	SELECT o.status, o.status_reason, o.external_payment_id,
		   (SELECT string_agg(r.state || ' ' || r.qty, ', ' ORDER BY r.sku_id)
			  FROM shop.stock_reservation r WHERE r.order_id = o.id)
	  FROM shop.orders o WHERE o.id = oid
$$;

-- One product at 500 KRW with two SKUs: A (10 on hand) and B (3 on hand).
INSERT INTO shop.product (name, price, currency) VALUES ('webhook rules mug', 500, 'KRW')
RETURNING id AS product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'WH-RULES-A', 10)
RETURNING id AS sku_a \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'WH-RULES-B', 3)
RETURNING id AS sku_b \gset
CREATE TEMP VIEW wh_stock AS
	SELECT code, on_hand, reserved FROM shop.sku WHERE code LIKE 'WH-RULES-%' ORDER BY code;

------------------------------------------------------------------------------
-- Happy path: a paid event for the exact amount confirms (currency in any
-- case), consuming the reservation.
------------------------------------------------------------------------------
SELECT id AS o1 FROM shop.shop_buy_now('wh-rules-u1', jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 2))) \gset
SELECT * FROM wh_stock;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review,
	   (r->>'order_id')::bigint = :o1 AS same_order, r->>'event_id' AS event_id
  FROM wh_mock('ev-1', 'payment.succeeded', :'o1', 1000, 'krw', 'pay-1') r;
SELECT * FROM wh_order(:o1);
SELECT * FROM wh_stock;

-- Rule 2: the same event again is a duplicate and changes nothing
SELECT r->>'result' AS result, r->>'order_status' AS status, (r->>'order_id')::bigint = :o1 AS same_order
  FROM wh_mock('ev-1', 'payment.succeeded', :'o1', 1000, 'krw', 'pay-1') r;
SELECT count(*) AS log_rows FROM shop.payment_log WHERE provider = 'mock-rules' AND event_id = 'ev-1';
SELECT * FROM wh_stock;

-- Rule 7: another event type for the same payment (payment id pay-1) is
-- ignored; a failure after PAID changes nothing and is logged (rule 5)
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-1b', 'payment.succeeded', :'o1', 1000, 'KRW', 'pay-1') r;
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-2', 'payment.failed', :'o1', NULL, NULL, 'pay-1') r;
SELECT event_id, kind, result, order_status, note FROM shop.webhook_events
 WHERE provider = 'mock-rules' AND order_id = :o1 ORDER BY id;
-- a second, different payment for the PAID order: refund_required
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-3', 'payment.succeeded', :'o1', 1000, 'KRW', 'pay-other') r;
SELECT * FROM wh_order(:o1);

------------------------------------------------------------------------------
-- Rule 3: amount or currency mismatch records the event, flags the order,
-- never confirms; the order keeps its reservation.
------------------------------------------------------------------------------
SELECT id AS o2 FROM shop.shop_buy_now('wh-rules-u2', jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 1))) \gset
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-10', 'payment.succeeded', :'o2', 499, 'KRW', 'pay-10') r;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-11', 'payment.succeeded', :'o2', 500, 'USD', 'pay-11') r;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-12', 'payment.succeeded', :'o2', NULL, NULL, 'pay-12') r;
SELECT * FROM wh_order(:o2);
SELECT reason, detail, order_status, order_amount, order_currency, paid_amount,
	   paid_currency, payment_id, event_id
  FROM shop.orders_needing_review WHERE order_id = :o2 ORDER BY review_id;
-- the right payment still confirms it afterwards
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-13', 'payment.succeeded', :'o2', 500, 'KRW', 'pay-13') r;
SELECT * FROM wh_stock;

------------------------------------------------------------------------------
-- Rule 5: a failed event releases a pending order (FAILED), idempotently.
-- Rule 4: a paid event for the FAILED order reserves the lines again and
-- sells them when the stock is there.
------------------------------------------------------------------------------
SELECT id AS o3 FROM shop.shop_buy_now('wh-rules-u3', jsonb_build_array(
	jsonb_build_object('sku_id', :sku_a, 'qty', 1), jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
SELECT * FROM wh_stock;
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-20', 'payment.failed', :'o3', NULL, NULL, 'pay-20') r;
SELECT * FROM wh_order(:o3);
SELECT * FROM wh_stock;
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-21', 'payment.cancelled', :'o3', NULL, NULL, 'pay-20') r;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-22', 'payment.succeeded', :'o3', 1000, 'KRW', 'pay-22') r;
SELECT * FROM wh_order(:o3);
SELECT * FROM wh_stock;

------------------------------------------------------------------------------
-- Rule 4: paid after expiry.  Stock still there: PAID.  Stock gone: the
-- order stays CANCELLED, nothing is reserved (all or nothing, even when the
-- first line could be), and it is listed as refund_required.
------------------------------------------------------------------------------
SELECT id AS o4 FROM shop.shop_buy_now('wh-rules-u4', jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 1))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o4;
SELECT shop.shop_expire_pending() >= 1 AS expired;
SELECT * FROM wh_order(:o4);
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-30', 'payment.succeeded', :'o4', 500, 'KRW', 'pay-30') r;
SELECT * FROM wh_order(:o4);
SELECT * FROM wh_stock;

SELECT id AS o5 FROM shop.shop_buy_now('wh-rules-u5', jsonb_build_array(
	jsonb_build_object('sku_id', :sku_a, 'qty', 1), jsonb_build_object('sku_id', :sku_b, 'qty', 2))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o5;
SELECT shop.shop_expire_pending() >= 1 AS expired;
-- someone else buys and pays for the last two units of B meanwhile
SELECT id AS o6 FROM shop.shop_buy_now('wh-rules-u6', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 2))) \gset
SELECT status FROM shop.shop_confirm_paid(:o6, 'pay-o6');
SELECT * FROM wh_stock;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-31', 'payment.succeeded', :'o5', 1500, 'KRW', 'pay-31') r;
SELECT * FROM wh_order(:o5);
SELECT * FROM wh_stock;
SELECT reason, order_status, paid_amount, payment_id,
	   detail LIKE 'payment arrived after the order was CANCELLED and SKU % is no longer available' AS detail_ok
  FROM shop.orders_needing_review WHERE order_id = :o5;
-- the provider retrying that event gets duplicate, not a loop of errors
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-31', 'payment.succeeded', :'o5', 1500, 'KRW', 'pay-31') r;
-- a paid event with the wrong amount for a released order is a mismatch:
-- nothing is reserved
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-32', 'payment.succeeded', :'o5', 1, 'KRW', 'pay-32') r;
SELECT * FROM wh_stock;

-- The stock is held by another order that has expired but was not swept
-- yet (pg_cron late or down): that order is released first, as the core's
-- inline reclaim does, and the late payment sells.
SELECT on_hand, reserved FROM shop.shop_adjust_stock(:sku_b, 1, 'webhook rules restock');
SELECT id AS o9 FROM shop.shop_buy_now('wh-rules-u9', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o9;
SELECT shop.shop_expire_pending() >= 1 AS expired;
SELECT id AS o10 FROM shop.shop_buy_now('wh-rules-u10', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o10;
SELECT * FROM wh_stock;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-34', 'payment.succeeded', :'o9', 500, 'KRW', 'pay-34') r;
SELECT * FROM wh_order(:o9);
SELECT * FROM wh_order(:o10);
SELECT * FROM wh_stock;
-- not expired: the other order keeps its stock, the payment is refunded
SELECT on_hand, reserved FROM shop.shop_adjust_stock(:sku_b, 1, 'webhook rules restock');
SELECT id AS o11 FROM shop.shop_buy_now('wh-rules-u11', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o11;
SELECT shop.shop_expire_pending() >= 1 AS expired;
SELECT id AS o12 FROM shop.shop_buy_now('wh-rules-u12', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-35', 'payment.succeeded', :'o11', 500, 'KRW', 'pay-35') r;
SELECT * FROM wh_order(:o11);
SELECT * FROM wh_order(:o12);
SELECT * FROM wh_stock;

-- Reclaiming is not enough: the first line (A) was reserved in that pass
-- and is given back, the expired order stays released (all or nothing).
SELECT on_hand, reserved FROM shop.shop_adjust_stock(:sku_b, 2, 'webhook rules restock');
SELECT id AS o13 FROM shop.shop_buy_now('wh-rules-u13', jsonb_build_array(
	jsonb_build_object('sku_id', :sku_a, 'qty', 1), jsonb_build_object('sku_id', :sku_b, 'qty', 2))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o13;
SELECT shop.shop_expire_pending() >= 1 AS expired;
SELECT id AS o14 FROM shop.shop_buy_now('wh-rules-u14', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o14;
SELECT id AS o15 FROM shop.shop_buy_now('wh-rules-u15', jsonb_build_array(jsonb_build_object('sku_id', :sku_b, 'qty', 1))) \gset
SELECT * FROM wh_stock;
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-36', 'payment.succeeded', :'o13', 1500, 'KRW', 'pay-36') r;
SELECT * FROM wh_order(:o13);
SELECT * FROM wh_order(:o14);
SELECT * FROM wh_order(:o15);
SELECT * FROM wh_stock;
SELECT * FROM wh_violations;

-- An order cancelled on purpose (by the customer or the shop, not by
-- expiry or a failed payment) is never sold behind their back: refund.
SELECT id AS o8 FROM shop.shop_buy_now('wh-rules-u8', jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 1))) \gset
SELECT status FROM shop.shop_release(:o8, 'customer_cancelled');
SELECT r->>'result' AS result, r->>'order_status' AS status, r->>'review' AS review
  FROM wh_mock('ev-33', 'payment.succeeded', :'o8', 500, 'KRW', 'pay-33') r;
SELECT * FROM wh_order(:o8);
SELECT reason, detail FROM shop.orders_needing_review WHERE order_id = :o8;
SELECT * FROM wh_stock;

------------------------------------------------------------------------------
-- Rule 6: events for orders that do not exist are accepted as unmatched.
------------------------------------------------------------------------------
SELECT r->>'result' AS result, r->>'order_id' AS order_id, r->>'order_status' AS status
  FROM wh_mock('ev-40', 'payment.succeeded', '999999999999', 500, 'KRW', 'pay-40') r;
SELECT r->>'result' AS result FROM wh_mock('ev-41', 'payment.failed', 'ORD-7', NULL, NULL, NULL) r;
SELECT r->>'result' AS result FROM wh_mock('ev-42', 'payment.succeeded', NULL, 500, 'KRW', 'pay-42') r;
SELECT event_id, event_type, kind, order_ref, amount, currency, payment_id, note
  FROM shop.unmatched_payments WHERE provider = 'mock-rules' AND event_id <> 'ev-44' ORDER BY event_id;
-- an order reference too long to be an id is recorded as unmatched (the
-- payload keeps it), not refused: a refusal would be retried forever
SELECT r->>'result' AS result FROM wh_mock('ev-44', 'payment.succeeded', repeat('9', 300), 500, 'KRW', 'pay-44') r;
SELECT order_ref IS NULL AS ref_dropped, length(payload #>> '{data,order_id}') AS ref_in_payload
  FROM shop.payment_log WHERE provider = 'mock-rules' AND event_id = 'ev-44';
-- and an event type nobody handles is recorded and ignored
SELECT r->>'result' AS result FROM wh_mock('ev-43', 'payment.refunded', :'o1', 1000, 'KRW', 'pay-1') r;

------------------------------------------------------------------------------
-- Rule 8: an error while applying (here a serialization failure raised by
-- a test trigger when the order is updated) propagates and records
-- nothing; the provider's retry then succeeds exactly once.
------------------------------------------------------------------------------
SELECT id AS o7 FROM shop.shop_buy_now('wh-rules-u7', jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 1))) \gset
CREATE FUNCTION wh_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';
END
$$;
CREATE TRIGGER wh_fail BEFORE UPDATE ON shop.orders
	FOR EACH ROW WHEN (NEW.user_id = 'wh-rules-u7') EXECUTE FUNCTION wh_fail();
SELECT wh_mock('ev-50', 'payment.succeeded', :'o7', 500, 'KRW', 'pay-50');
SELECT count(*) AS log_rows FROM shop.payment_log WHERE provider = 'mock-rules' AND event_id = 'ev-50';
SELECT * FROM wh_order(:o7);
DROP TRIGGER wh_fail ON shop.orders;
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-50', 'payment.succeeded', :'o7', 500, 'KRW', 'pay-50') r;
SELECT r->>'result' AS result, r->>'order_status' AS status
  FROM wh_mock('ev-50', 'payment.succeeded', :'o7', 500, 'KRW', 'pay-50') r;
SELECT count(*) AS log_rows FROM shop.payment_log WHERE provider = 'mock-rules' AND event_id = 'ev-50';
SELECT * FROM wh_order(:o7);

------------------------------------------------------------------------------
-- Stripe events apply the same rules: a paid event (fixed vector, see
-- webhook_signature_verification.sql for how it was computed) for order
-- 900000001 with lowercase currency.  The order is made by hand with that
-- id, holding its reservation like shop_buy_now would.
------------------------------------------------------------------------------
SELECT shop.shop_set_provider('stripe-rules', 'stripe',
	'whsec_shoptestvectorsecret0001', '{"tolerance_seconds": 1000000000}') IS NOT NULL AS registered;
INSERT INTO shop.orders (id, user_id, status, amount, subtotal, currency, expires_at)
	OVERRIDING SYSTEM VALUE
	VALUES (900000001, 'wh-rules-stripe', 'PENDING', 1500, 1500, 'KRW', now() + interval '1 hour');
INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty)
	VALUES (900000001, :sku_a, 'webhook rules mug', 'WH-RULES-A', 500, 3);
INSERT INTO shop.stock_reservation (order_id, sku_id, qty) VALUES (900000001, :sku_a, 3);
UPDATE shop.sku SET reserved = reserved + 3 WHERE id = :sku_a;
SELECT * FROM wh_stock;
SELECT shop.shop_handle_webhook('stripe-rules',
	'{"Stripe-Signature": "t=1700000000,v1=6d8ea10c561b2a0e83bb8b5c6459d8d61ce5ae40fe2908bc9521594d69c8b65a"}',
	'{"id":"evt_shop_vector_1","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_shop_vector_1","object":"payment_intent","amount":1500,"amount_received":1500,"currency":"krw","metadata":{"order_id":"900000001"}}}}');
SELECT * FROM wh_order(900000001);
SELECT * FROM wh_stock;

------------------------------------------------------------------------------
-- Every scenario leaves the stock invariants intact.
------------------------------------------------------------------------------
SELECT * FROM wh_violations;
SELECT result, review, count(*) FROM shop.payment_log
 WHERE provider IN ('mock-rules', 'stripe-rules') GROUP BY 1, 2 ORDER BY 1, 2;

------------------------------------------------------------------------------
-- Clean up: every row this file created, in foreign-key order, and its
-- functions; none is left.
------------------------------------------------------------------------------
DELETE FROM shop.order_review WHERE provider IN ('mock-rules', 'stripe-rules');
DELETE FROM shop.payment_log WHERE provider IN ('mock-rules', 'stripe-rules');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'wh-rules-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'wh-rules-%');
DELETE FROM shop.orders WHERE user_id LIKE 'wh-rules-%';
DELETE FROM shop.stock_adjustment WHERE sku_id IN (:sku_a, :sku_b);
DELETE FROM shop.sku WHERE code LIKE 'WH-RULES-%';
DELETE FROM shop.product WHERE id = :product;
DELETE FROM shop.payment_provider_secret WHERE provider IN ('mock-rules', 'stripe-rules');
DELETE FROM shop.payment_provider WHERE name IN ('mock-rules', 'stripe-rules');
DROP VIEW wh_violations, wh_stock;
DROP FUNCTION wh_mock(text, text, text, bigint, text, text), wh_order(bigint), wh_fail();
SELECT (SELECT count(*) FROM shop.order_review WHERE provider IN ('mock-rules', 'stripe-rules'))
	 + (SELECT count(*) FROM shop.payment_log WHERE provider IN ('mock-rules', 'stripe-rules'))
	 + (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'wh-rules-%')
	 + (SELECT count(*) FROM shop.stock_adjustment WHERE sku_id IN (:sku_a, :sku_b))
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'WH-RULES-%')
	 + (SELECT count(*) FROM shop.product WHERE id = :product)
	 + (SELECT count(*) FROM shop.payment_provider WHERE name IN ('mock-rules', 'stripe-rules')) AS rows_left;

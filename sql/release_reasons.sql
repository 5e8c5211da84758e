--
-- Release reasons are a fixed vocabulary (0.2): shop_release accepts only
-- the reasons a caller may give, never "expired" (which a late payment may
-- re-sell), and a late payment acts on the reason.  One rule for a payment
-- reported for an order that is already PAID, on every confirm path.
-- Hermetic: own SKUs (RR-*), users (rr-*), provider; removed at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES ('rr mug', 1000, 'USD') RETURNING id AS rr_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:rr_product, 'RR-MUG', 10) RETURNING id AS rr_sku \gset
SELECT shop.shop_set_provider('mock-rr', 'mock',
	'whsec_' || encode(convert_to('release reasons test secret 32b', 'UTF8'), 'base64')) IS NOT NULL AS registered;

CREATE FUNCTION rr_order(key text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT (shop.shop_buy_now('rr-user', jsonb_build_array(jsonb_build_object('sku_id', s.id, 'qty', 1)), key)).id
	  FROM shop.sku s WHERE s.code = 'RR-MUG'
$$;
CREATE FUNCTION rr_paid(event_id text, order_id bigint, payment_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	body text := jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
		'order_id', order_id::text, 'amount', 1000, 'currency', 'USD', 'payment_id', payment_id))::text;
BEGIN
	RETURN shop.shop_handle_webhook('mock-rr', shop.shop_sign_mock('mock-rr', event_id, body), body)
		- 'order_id' - 'event_id';
END
$$;

-- every reason a caller may give, and the status it ends in
SELECT rr_order('k-cancelled') AS o_cancelled, rr_order('k-customer') AS o_customer,
	   rr_order('k-shop') AS o_shop, rr_order('k-failed') AS o_failed,
	   rr_order('k-default') AS o_default \gset
SELECT status FROM shop.shop_release(:o_cancelled, 'cancelled');
SELECT status FROM shop.shop_release(:o_customer, 'customer_cancelled');
SELECT status FROM shop.shop_release(:o_shop, 'shop_cancelled');
SELECT status FROM shop.shop_release(:o_failed, 'payment_failed');
SELECT status FROM shop.shop_release(:o_default);
SELECT id = :o_cancelled AS cancelled, id = :o_customer AS customer, id = :o_shop AS shop,
	   id = :o_failed AS failed, status, status_reason, status_note
  FROM shop.orders WHERE user_id = 'rr-user' ORDER BY id;

-- refused, 22023, nothing changes: reasons the shop sets itself, free text,
-- wrong case, NULL
SELECT rr_order('k-refused') AS o_refused \gset
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_release(%s, %L)', :o_refused, 'expired'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_release(%s, %L)', :o_refused, 'paid_after_release'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_release(%s, %L)', :o_refused, 'changed my mind'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_release(%s, %L)', :o_refused, 'Cancelled'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_release(%s, NULL)', :o_refused));
SELECT status, status_reason FROM shop.orders WHERE id = :o_refused;
SELECT on_hand, reserved FROM shop.sku WHERE id = :rr_sku;
-- the table refuses a reason outside the vocabulary too
SELECT pg_temp.outcome(format('UPDATE shop.orders SET status_reason = %L WHERE id = %s RETURNING id', 'oops', :o_refused));

-- a late payment re-sells what failed or expired, never what was cancelled
-- on purpose (by the customer, the shop, or without saying who)
SELECT rr_paid('rr-late-failed', :o_failed, 'pay-f');
SELECT rr_paid('rr-late-customer', :o_customer, 'pay-c');
SELECT rr_paid('rr-late-shop', :o_shop, 'pay-s');
SELECT rr_paid('rr-late-cancelled', :o_cancelled, 'pay-x');
SELECT order_id = :o_failed AS failed_order, reason, order_status
  FROM shop.orders_needing_review WHERE order_id IN (:o_failed, :o_customer, :o_shop, :o_cancelled)
 ORDER BY order_id;
SELECT status, status_reason FROM shop.orders WHERE id = :o_failed;

------------------------------------------------------------------------------
-- One rule for a payment reported for a PAID order, on every path: the same
-- payment changes nothing; another payment is a double payment to refund
-- (SQL: SH016, nothing changes; webhook: flagged refund_required, 200).
------------------------------------------------------------------------------
SELECT rr_order('k-paid') AS o_paid \gset
SELECT status FROM shop.shop_confirm_paid(:o_paid, 'pay-1');
SELECT status FROM shop.shop_confirm_paid(:o_paid, 'pay-1');
SELECT status FROM shop.shop_confirm_paid(:o_paid, 'pay-1', 1000, 'USD');
-- the same payment with another amount: still the same payment, unchanged
SELECT status FROM shop.shop_confirm_paid(:o_paid, 'pay-1', 1, 'USD');
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_confirm_paid(%s, %L)', :o_paid, 'pay-2'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, 1000, %L)', :o_paid, 'pay-2', 'USD'));
SELECT status, external_payment_id FROM shop.orders WHERE id = :o_paid;
SELECT rr_paid('rr-same', :o_paid, 'pay-1');
SELECT rr_paid('rr-other', :o_paid, 'pay-2');
SELECT reason FROM shop.orders_needing_review WHERE order_id = :o_paid;

-- books balance for this file's objects
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN ('sku ' || :rr_sku, 'user rr-user')
	OR subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id = 'rr-user');

-- clean up
DELETE FROM shop.order_review WHERE provider = 'mock-rr';
DELETE FROM shop.payment_log WHERE provider = 'mock-rr';
DELETE FROM shop.stock_reservation WHERE sku_id = :rr_sku;
DELETE FROM shop.order_item WHERE sku_id = :rr_sku;
DELETE FROM shop.orders WHERE user_id = 'rr-user';
DELETE FROM shop.sku WHERE id = :rr_sku;
DELETE FROM shop.product WHERE id = :rr_product;
DELETE FROM shop.payment_provider WHERE name = 'mock-rr';
DROP FUNCTION rr_order(text), rr_paid(text, bigint, text);

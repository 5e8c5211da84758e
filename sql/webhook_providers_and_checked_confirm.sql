--
-- Webhook API around the handler: provider registration and its checks,
-- secret rotation, field mapping of the standard kind, the mock signer's
-- limits, and the amount-checked shop_confirm_paid overload.
--
-- Hermetic: the file creates its own providers (rot, portone-like), product,
-- SKU (WH-API-*) and orders (users wh-api-*), checks the invariants of its
-- own objects only and deletes every row and object it created at the end.
-- The PortOne-like event is signed for order reference 900000003, an id no
-- file creates, so it stays unmatched.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- Run a statement, show its result or its SQLSTATE and message.
CREATE FUNCTION wh_do(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	EXECUTE stmt INTO result;
	RETURN result;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- Invariant violations about this file's SKUs, orders and users (the
-- database is shared with other tests).
CREATE TEMP VIEW wh_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'WH-API-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'wh-api-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'wh-api-%');

------------------------------------------------------------------------------
-- shop_set_provider refuses what it cannot use (22023), naming the problem.
------------------------------------------------------------------------------
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'paypal', 'whsec_x')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'standard', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'standard', 'whsec_c2hvcnQ=')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'standard', 'whsec_not*base64!')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'sk_test_0123456789')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', NULL)$$);
SELECT wh_do($$SELECT shop.shop_set_provider('', 'stripe', 'whsec_0123456789')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_0123456789', '{"tolerance": 60}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_0123456789', '{"tolerance_seconds": 0}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_0123456789', '{"tolerance_seconds": 1.5}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_0123456789', '{"tolerance_seconds": "60"}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_0123456789', '{"rotation_grace_seconds": -1}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'stripe', 'whsec_0123456789', '[]')$$);
-- field mapping belongs to the standard kind only; paths are key arrays
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'mock', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '{"order_id_path": ["id"]}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'standard', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '{"order_id_path": "data.order_id"}')$$);
SELECT wh_do($$SELECT shop.shop_set_provider('p', 'standard', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '{"paid_types": ["ok", ""]}')$$);
SELECT count(*) AS providers_named_p FROM shop.payment_provider WHERE name = 'p';

------------------------------------------------------------------------------
-- Secret rotation.  The newest secret signs (mock) and verifies; an older
-- one keeps verifying for rotation_grace_seconds (default one day) so events
-- in flight during the switch are not lost; grace 0 drops the others now.
------------------------------------------------------------------------------
SELECT shop.shop_set_provider('rot', 'mock', 'whsec_' || encode(convert_to('rotation secret number one ....', 'UTF8'), 'base64'));
SELECT shop.shop_sign_mock('rot', 'rot-1', '{}') AS h1 \gset
SELECT shop.shop_set_provider('rot', 'mock', 'whsec_' || encode(convert_to('rotation secret number two ....', 'UTF8'), 'base64'));
SELECT shop.shop_sign_mock('rot', 'rot-2', '{}') AS h2 \gset
-- new secret signs differently, both verify
SELECT (:'h1'::jsonb)->'webhook-signature' <> (:'h2'::jsonb)->'webhook-signature' AS new_key_signs;
SELECT shop.shop_handle_webhook('rot', :'h1', '{}')->>'result' AS old_secret;
SELECT shop.shop_handle_webhook('rot', :'h2', '{}')->>'result' AS new_secret;
SELECT secrets, next_secret_retires_at > now() + interval '23 hours' AS retires_in_a_day
  FROM shop.payment_providers WHERE name = 'rot';
-- the same secret given again only updates options; nothing else retires sooner
SELECT shop.shop_set_provider('rot', 'mock', 'whsec_' || encode(convert_to('rotation secret number two ....', 'UTF8'), 'base64'),
	'{"tolerance_seconds": 600}')->'active_secrets' AS secrets;
-- third secret with no grace: the first two stop verifying at once
SELECT shop.shop_set_provider('rot', 'mock', 'whsec_' || encode(convert_to('rotation secret number three ..', 'UTF8'), 'base64'),
	'{"rotation_grace_seconds": 0}')->'active_secrets' AS secrets;
SELECT wh_do(format('SELECT shop.shop_handle_webhook(%L, %L, %L)', 'rot',
	(:'h1'::jsonb) || '{"webhook-id": "rot-1b"}', '{}'));
SELECT wh_do(format('SELECT shop.shop_handle_webhook(%L, %L, %L)', 'rot', :'h2', '{}'));
SELECT shop.shop_handle_webhook('rot', shop.shop_sign_mock('rot', 'rot-3', '{}'), '{}')->>'result' AS third_secret;
-- the secrets never show in the views or results
SELECT name, kind, options, secrets FROM shop.payment_providers WHERE name = 'rot';

-- Changing a provider's kind drops its secrets (they belong to another
-- scheme); the new one is the only one.
SELECT shop.shop_set_provider('rot', 'stripe', 'whsec_0123456789abcdef');
SELECT wh_do(format('SELECT shop.shop_sign_mock(%L, %L, %L)', 'rot', 'x', '{}'));

------------------------------------------------------------------------------
-- The standard kind reads the fields where the provider puts them.  A
-- PortOne-like event: type "Transaction.Paid", order in data.orderRef,
-- amount in data.amount.total.  Signature computed independently with
-- python hmac / openssl under the published Standard Webhooks test key.
------------------------------------------------------------------------------
SELECT shop.shop_set_provider('portone-like', 'standard', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
	'{"tolerance_seconds": 1000000000, "paid_types": ["Transaction.Paid"],
	  "failed_types": ["Transaction.Failed", "Transaction.Cancelled"],
	  "order_id_path": ["data", "orderRef"], "amount_path": ["data", "amount", "total"],
	  "currency_path": ["data", "currency"], "payment_id_path": ["data", "paymentId"]}')->'kind' AS kind;
SELECT shop.shop_handle_webhook('portone-like',
	'{"webhook-id": "msg_shop_portone_1", "webhook-timestamp": "1700000000",
	  "webhook-signature": "v1,Pki0G1joiwRvdOkVuZs6Op86SU6ly8bqo9AnH6NKuTU="}',
	'{"type":"Transaction.Paid","timestamp":"2024-01-01T00:00:00Z","data":{"storeId":"store-1","paymentId":"pay-900000003","orderRef":"900000003","amount":{"total":1000},"currency":"KRW"}}');
SELECT event_id, event_type, kind, result, order_ref, amount, currency, payment_id
  FROM shop.webhook_events WHERE provider = 'portone-like';

------------------------------------------------------------------------------
-- shop_sign_mock signs only for mock providers: EXECUTE on it can never
-- forge a real provider's event.
------------------------------------------------------------------------------
SELECT wh_do($$SELECT shop.shop_sign_mock('portone-like', 'x', '{}')$$);
SELECT wh_do($$SELECT shop.shop_sign_mock('nobody', 'x', '{}')$$);
SELECT wh_do($$SELECT shop.shop_sign_mock('rot', 'x', NULL)$$);

------------------------------------------------------------------------------
-- shop_confirm_paid(order_id, external_payment_id, amount, currency)
------------------------------------------------------------------------------
INSERT INTO shop.product (name, price, currency) VALUES ('webhook api lamp', 1250, 'USD')
RETURNING id AS product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'WH-API-LAMP', 5)
RETURNING id AS sku \gset
SELECT id AS o1 FROM shop.shop_buy_now('wh-api-1', jsonb_build_array(jsonb_build_object('sku_id', :sku, 'qty', 2))) \gset
-- wrong amount, wrong currency: SH015, nothing changes
SELECT wh_do(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, %s, %L)', :o1, 'pay-a', 2499, 'USD'))
	LIKE 'SH015: payment does not match order %' AS refused_amount;
SELECT wh_do(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, %s, %L)', :o1, 'pay-a', 2500, 'EUR'))
	LIKE 'SH015: payment does not match order %' AS refused_currency;
SELECT status, external_payment_id FROM shop.orders WHERE id = :o1;
SELECT on_hand, reserved FROM shop.sku WHERE id = :sku;
-- exact amount, currency in lower case: confirmed
SELECT status, amount, currency FROM shop.shop_confirm_paid(:o1, 'pay-a', 2500, 'usd');
SELECT on_hand, reserved FROM shop.sku WHERE id = :sku;
-- again: returned unchanged, also with another amount (the same payment,
-- the one rule for PAID orders); another payment id is refused (SH016)
SELECT status FROM shop.shop_confirm_paid(:o1, 'pay-a', 2500, 'USD');
SELECT wh_do(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, %s, %L)', :o1, 'pay-a', 1, 'USD'))
	AS same_payment_other_amount;
SELECT wh_do(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, %s, %L)', :o1, 'pay-b', 2500, 'USD'))
	LIKE 'SH016: %' AS refused_second_payment;
-- a released order cannot be confirmed (SH004), a missing one is P0002
SELECT id AS o2 FROM shop.shop_buy_now('wh-api-2', jsonb_build_array(jsonb_build_object('sku_id', :sku, 'qty', 1))) \gset
SELECT status FROM shop.shop_release(:o2);
SELECT wh_do(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, %s, %L)', :o2, 'pay-b', 1250, 'USD'))
	LIKE 'SH004: order % is CANCELLED and cannot be confirmed' AS refused_cancelled;
SELECT wh_do($$SELECT status FROM shop.shop_confirm_paid(-1, 'pay-c', 1, 'USD')$$);
SELECT wh_do(format('SELECT status FROM shop.shop_confirm_paid(%s, %L, %s, %L)', :o2, 'pay-b', 1250, NULL));
-- the core two-argument form is still there
SELECT id AS o3 FROM shop.shop_buy_now('wh-api-3', jsonb_build_array(jsonb_build_object('sku_id', :sku, 'qty', 1))) \gset
SELECT status FROM shop.shop_confirm_paid(:o3, 'pay-d');

SELECT * FROM wh_violations;

------------------------------------------------------------------------------
-- Clean up: every row this file created, in foreign-key order, and its
-- function; none is left.  (Provider p was refused every time.)
------------------------------------------------------------------------------
DELETE FROM shop.order_review WHERE provider IN ('rot', 'portone-like')
	OR order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'wh-api-%');
DELETE FROM shop.payment_log WHERE provider IN ('rot', 'portone-like');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'wh-api-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'wh-api-%');
DELETE FROM shop.orders WHERE user_id LIKE 'wh-api-%';
DELETE FROM shop.sku WHERE code LIKE 'WH-API-%';
DELETE FROM shop.product WHERE id = :product;
DELETE FROM shop.payment_provider_secret WHERE provider IN ('p', 'rot', 'portone-like');
DELETE FROM shop.payment_provider WHERE name IN ('p', 'rot', 'portone-like');
DROP VIEW wh_violations;
DROP FUNCTION wh_do(text);
SELECT (SELECT count(*) FROM shop.payment_log WHERE provider IN ('rot', 'portone-like'))
	 + (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'wh-api-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'WH-API-%')
	 + (SELECT count(*) FROM shop.product WHERE id = :product)
	 + (SELECT count(*) FROM shop.payment_provider WHERE name IN ('p', 'rot', 'portone-like')) AS rows_left;

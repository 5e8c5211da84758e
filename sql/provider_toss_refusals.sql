--
-- The confirm-style provider kind toss (Toss Payments) without a network:
-- registering one (the secret is only a label; a Toss API key is refused as
-- a secret), shop_confirm_payment's argument checks and the refusals made
-- before any call (unknown provider SH010, a kind that is not confirmed by
-- the shop SH023, another amount SH015, an order that is not PENDING or has
-- expired SH004, no API key SH023), shop_start_payment refusing a kind with
-- no hosted checkout, and webhooks of the toss kind as triggers only: they
-- queue a fetch through the outbox and are never applied (nothing is sent:
-- no worker runs here).
--
-- Hermetic: its own providers (toss-rg, stripe-rg), product, SKU (TOSS-RG-*)
-- and orders (users toss-rg-*); everything is deleted at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

CREATE FUNCTION toss_do(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	EXECUTE stmt INTO result;
	RETURN result;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\m(order) [0-9]+\M', '\1 N', 'g');
END
$$;

INSERT INTO shop.product (name, price) VALUES ('Toss RG mug', 10000) RETURNING id AS product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'TOSS-RG-1', 10) RETURNING id AS sku \gset

-- registering: the secret verifies nothing (Toss signs no webhook), so a
-- Toss secret key given as the secret is refused
SELECT toss_do($$SELECT shop.shop_set_provider('toss-rg', 'toss', 'test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R')$$);
SELECT shop.shop_set_provider('toss-rg', 'toss', 'unsigned') - 'options';
SELECT toss_do($$SELECT shop.shop_set_provider('toss-rg', 'toss', 'unsigned', '{"paid_types": ["DONE"]}')$$);
SELECT shop.shop_set_provider('stripe-rg', 'stripe', 'whsec_regress_only_0123') ->> 'kind' AS stripe_kind;
SELECT kind, options FROM shop.payment_providers WHERE name = 'toss-rg';

SELECT id AS o1 FROM shop.shop_buy_now('toss-rg-1', jsonb_build_array(jsonb_build_object('sku_id', :sku, 'qty', 1))) \gset

-- arguments
SELECT toss_do(format('SELECT shop.shop_confirm_payment(NULL, %s, %L, 10000)', :o1, 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, NULL, %L, 10000)', 'toss-rg', 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, NULL, 10000)', 'toss-rg', :o1));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, NULL)', 'toss-rg', :o1, 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o1, 'has space'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o1, repeat('k', 201)));
-- refusals before any call
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'no-such-provider', :o1, 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'stripe-rg', :o1, 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', -1, 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 9999)', 'toss-rg', :o1, 'tgen_1'));
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 0)', 'toss-rg', :o1, 'tgen_1'));
-- the pre-checks pass; the call needs the API key first
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o1, 'tgen_1'));
-- an order past its expires_at (not swept yet) still holds its stock: the
-- pre-checks pass (and the call needs the API key); one cancelled on purpose
-- is refused
UPDATE shop.orders SET expires_at = now() - interval '1 second' WHERE id = :o1;
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o1, 'tgen_1'));
SELECT status FROM shop.shop_release(:o1);
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o1, 'tgen_1'));
-- released by the expiry: confirmed (after the API key) while its stock is
-- there, refused once it is gone
SELECT id AS o3 FROM shop.shop_buy_now('toss-rg-3', jsonb_build_array(jsonb_build_object('sku_id', :sku, 'qty', 1))) \gset
UPDATE shop.orders SET expires_at = now() - interval '1 second' WHERE id = :o3;
SELECT shop.shop_expire_pending(100) >= 1 AS swept;
SELECT status, status_reason FROM shop.orders WHERE id = :o3;
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o3, 'tgen_3'));
SELECT (shop.shop_adjust_stock(:sku, -(SELECT (on_hand - reserved)::int FROM shop.sku WHERE id = :sku), 'rg: sold elsewhere')).available;
SELECT toss_do(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 10000)', 'toss-rg', :o3, 'tgen_3')) LIKE 'SH004: order N was released at % and its stock is gone' AS stock_gone_refused;
SELECT (shop.shop_adjust_stock(:sku, 5, 'rg: restock')).available;
SELECT toss_do(format('SELECT shop.shop_start_payment(%s, %L, %L, %L)', :o1, 'toss-rg', 'https://shop.example/ok', 'https://shop.example/fail'));
-- nothing was written by any of these
SELECT count(*) AS sessions FROM shop.payment_session WHERE provider = 'toss-rg';
SELECT count(*) AS calls FROM shop.outbox WHERE provider = 'toss-rg';

-- webhooks are triggers: never applied, only a fetch queued
SELECT id AS o2 FROM shop.shop_buy_now('toss-rg-2', jsonb_build_array(jsonb_build_object('sku_id', :sku, 'qty', 1))) \gset
SELECT shop.shop_handle_webhook('toss-rg', '{}',
	format('{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-01T00:00:00.000", "data": {"paymentKey": "tgen_forged", "orderId": "shop-order-%s", "status": "DONE", "totalAmount": 10000, "currency": "KRW"}}', :o2))
	- 'order_id' AS forged_done;
SELECT status FROM shop.orders WHERE id = :o2;
SELECT operation, method, regexp_replace(url, '^https://api.tosspayments.com', '{api_base}') AS url, body IS NULL AS no_body,
	   headers ->> 'content-type' AS content_type, idempotency_key LIKE 'payment-tgen_forged-fetch-%' AS key_names_payment
  FROM shop.outbox WHERE provider = 'toss-rg';
SELECT session_id, state, regexp_replace(url, '^https://api.tosspayments.com', '{api_base}') AS url
  FROM shop.payment_session WHERE provider = 'toss-rg';
SELECT count(*) AS logged FROM shop.payment_log WHERE provider = 'toss-rg';
-- another key named for the same order is fetched too, but never replaces
-- the order's open payment (an unsigned request proves nothing)
SELECT shop.shop_handle_webhook('toss-rg', '{}',
	format('{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"paymentKey": "tgen_other", "orderId": "shop-order-%s"}}', :o2)) ->> 'result' AS other_key;
SELECT session_id, state FROM shop.payment_session WHERE provider = 'toss-rg';
SELECT regexp_replace(o.url, '^https://api.tosspayments.com', '{api_base}') AS url, o.subject_id = s.id AS about_the_open_payment
  FROM shop.outbox o JOIN shop.payment_session s ON s.provider = o.provider WHERE o.provider = 'toss-rg' ORDER BY o.id;
SELECT shop.shop_handle_webhook('toss-rg', '{}', '{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"paymentKey": "tgen_x", "orderId": "someone-elses-42"}}');
SELECT shop.shop_handle_webhook('toss-rg', '{}', '{"eventType": "DEPOSIT_CALLBACK", "orderId": "shop-order-1", "status": "DONE", "secret": "x"}');
SELECT toss_do($$SELECT shop.shop_handle_webhook('toss-rg', '{}', 'not json')$$);
-- the API key makes the kind's calls possible; it is never shown
SELECT shop.shop_set_provider_api_key('toss-rg', 'test_sk_regress') - 'api_base';
SELECT api_key_set FROM shop.payment_providers WHERE name = 'toss-rg';

------------------------------------------------------------------------------
-- Clean up
------------------------------------------------------------------------------
DELETE FROM shop.outbox WHERE provider IN ('toss-rg', 'stripe-rg');
DELETE FROM shop.payment_session WHERE provider IN ('toss-rg', 'stripe-rg');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'toss-rg-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'toss-rg-%');
DELETE FROM shop.orders WHERE user_id LIKE 'toss-rg-%';
DELETE FROM shop.stock_adjustment WHERE sku_id = :sku;
DELETE FROM shop.sku WHERE code LIKE 'TOSS-RG-%';
DELETE FROM shop.product WHERE id = :product;
DELETE FROM shop.payment_provider WHERE name IN ('toss-rg', 'stripe-rg');
DROP FUNCTION toss_do(text);
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'toss-rg-%')
	 + (SELECT count(*) FROM shop.payment_provider WHERE name IN ('toss-rg', 'stripe-rg')) AS rows_left;

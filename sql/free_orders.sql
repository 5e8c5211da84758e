--
-- Free orders (0.2): an order with nothing to pay (amount 0: items priced
-- 0, or a coupon that covers everything) is sold by shop_confirm_free
-- without a payment provider.  No provider takes a payment of 0, so the
-- provider calls refuse such an order (SH018) before sending anything;
-- shop_confirm_free refuses an order with an amount (SH017) and a released
-- one (SH004), and changes nothing then.  Hermetic: own products (fo *),
-- SKUs (FO-*), users (fo-*), coupon FO-ALL, providers fo-stripe, fo-toss.
--
\set VERBOSITY terse
SET client_min_messages = warning;

\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES ('fo sample', 0, 'EUR'), ('fo book', 1500, 'EUR');
INSERT INTO shop.sku (product_id, code, on_hand)
SELECT id, CASE name WHEN 'fo sample' THEN 'FO-SAMPLE' ELSE 'FO-BOOK' END, 10
  FROM shop.product WHERE name LIKE 'fo %';
SELECT id AS s_sample FROM shop.sku WHERE code = 'FO-SAMPLE' \gset
SELECT id AS s_book FROM shop.sku WHERE code = 'FO-BOOK' \gset
CREATE FUNCTION fo_stock() RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(format('%s on_hand %s reserved %s', code, on_hand, reserved), '; ' ORDER BY code)
	  FROM shop.sku WHERE code LIKE 'FO-%'
$$;
SELECT code FROM shop.shop_set_coupon('FO-ALL', 'percent', 100);
SELECT shop.shop_set_provider('fo-stripe', 'stripe', 'whsec_regress_only_fo01') ->> 'kind' AS stripe;
SELECT shop.shop_set_provider_api_key('fo-stripe', 'sk_test_regress_only') IS NOT NULL AS key_set;
SELECT shop.shop_set_provider('fo-toss', 'toss', 'unsigned') ->> 'kind' AS toss;

------------------------------------------------------------------------------
-- A free sample: amount 0 without a coupon
------------------------------------------------------------------------------
SELECT id AS o1 FROM shop.shop_buy_now('fo-1', jsonb_build_array(jsonb_build_object('sku_id', :s_sample, 'qty', 2))) \gset
SELECT status, subtotal, amount FROM shop.orders WHERE id = :o1;
SELECT fo_stock();

-- no provider call is started for it: nothing queued, no session
SELECT pg_temp.outcome(format('SELECT shop.shop_start_payment(%s, %L, %L, %L)', :o1, 'fo-stripe',
	'https://shop.example/ok', 'https://shop.example/cancel'));
SELECT pg_temp.outcome(format('SELECT shop.shop_confirm_payment(%L, %s, %L, 0)', 'fo-toss', :o1, 'tgen_fo_1'));
SELECT (SELECT count(*) FROM shop.outbox WHERE provider IN ('fo-stripe', 'fo-toss')) AS provider_calls,
	   (SELECT count(*) FROM shop.payment_session WHERE order_id = :o1) AS sessions;

-- sold without a payment: PAID, no payment id, the reservation consumed
SELECT status, amount FROM shop.shop_confirm_free(:o1);
SELECT status, status_reason, external_payment_id IS NULL AS no_payment_id FROM shop.orders WHERE id = :o1;
SELECT state, qty FROM shop.stock_reservation WHERE order_id = :o1;
SELECT fo_stock();
-- the same call again returns it unchanged and sells nothing twice
SELECT status, amount FROM shop.shop_confirm_free(:o1);
SELECT fo_stock();

------------------------------------------------------------------------------
-- A coupon that covers everything
------------------------------------------------------------------------------
SELECT id AS o2 FROM shop.shop_buy_now('fo-2', jsonb_build_array(jsonb_build_object('sku_id', :s_book, 'qty', 2)),
	NULL, 'FO-ALL') \gset
SELECT status, subtotal, discount, amount FROM shop.orders WHERE id = :o2;
SELECT status, amount FROM shop.shop_confirm_free(:o2);
SELECT fo_stock();

------------------------------------------------------------------------------
-- Refusals: nothing changes
------------------------------------------------------------------------------
-- an order with an amount to pay (SH017), PENDING or PAID
SELECT id AS o3 FROM shop.shop_buy_now('fo-3', jsonb_build_array(jsonb_build_object('sku_id', :s_book, 'qty', 1))) \gset
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_confirm_free(%s)', :o3));
SELECT status, amount FROM shop.orders WHERE id = :o3;
SELECT fo_stock();
SELECT status FROM shop.shop_confirm_paid(:o3, 'pay-fo-3');
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_confirm_free(%s)', :o3));
SELECT status, external_payment_id FROM shop.orders WHERE id = :o3;

-- a released order (SH004): its stock was given back
SELECT id AS o4 FROM shop.shop_buy_now('fo-4', jsonb_build_array(jsonb_build_object('sku_id', :s_sample, 'qty', 1))) \gset
SELECT status FROM shop.shop_release(:o4, 'customer_cancelled');
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_confirm_free(%s)', :o4));
SELECT status FROM shop.orders WHERE id = :o4;
SELECT fo_stock();

-- no such order (P0002), no order id (22004)
SELECT pg_temp.outcome('SELECT status FROM shop.shop_confirm_free(-1)');
SELECT pg_temp.outcome('SELECT status FROM shop.shop_confirm_free(NULL)');

-- the books hold
SELECT count(*) AS invariant_violations FROM shop.shop_check_invariants();

-- clean up
DELETE FROM shop.coupon_redemption WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'fo-%');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'fo-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'fo-%');
DELETE FROM shop.stock_adjustment WHERE sku_id IN (SELECT id FROM shop.sku WHERE code LIKE 'FO-%');
DELETE FROM shop.orders WHERE user_id LIKE 'fo-%';
DELETE FROM shop.sku WHERE code LIKE 'FO-%';
DELETE FROM shop.product WHERE name LIKE 'fo %';
DELETE FROM shop.coupon WHERE code = 'FO-ALL';
DELETE FROM shop.payment_provider_api_key WHERE provider = 'fo-stripe';
DELETE FROM shop.payment_provider WHERE name IN ('fo-stripe', 'fo-toss');
DROP FUNCTION fo_stock();

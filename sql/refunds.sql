--
-- Refunds by lines with a restock policy (issue 13, second part): refunds
-- by order_item_id or sku_id, restock and no_restock per line, the money of
-- a line's units, a whole refund (a PAID order cancelled: every unit back),
-- the coupon given back by a full refund and kept by a partial one, a
-- refund the provider refused (its units stay restocked), every refusal
-- (SH040-SH042, 22023, 22004, SH004, SH023, P0002), shop.order_refund_status
-- and the refund rules of shop_check_invariants.  Refunds are queued in
-- shop.outbox; no worker runs here, so nothing is sent.  Hermetic: own
-- provider (mock-rf), products (rf *), SKUs (RF-*), users (rf-*), coupon
-- RF-TEN; everything is deleted at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

SELECT shop.shop_set_provider('mock-rf', 'mock',
	'whsec_' || encode(convert_to('mock-rf secret for the refund tests', 'UTF8'), 'base64')) IS NOT NULL AS registered;
INSERT INTO shop.product (name, price, currency) VALUES ('rf tee', 1000, 'KRW'), ('rf mug', 300, 'KRW');
SELECT id AS p_tee FROM shop.product WHERE name = 'rf tee' \gset
SELECT id AS p_mug FROM shop.product WHERE name = 'rf mug' \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_tee, 'RF-TEE', 20), (:p_mug, 'RF-MUG', 10);
SELECT id AS s_tee FROM shop.sku WHERE code = 'RF-TEE' \gset
SELECT id AS s_mug FROM shop.sku WHERE code = 'RF-MUG' \gset
SELECT code FROM shop.shop_set_coupon('RF-TEN', 'percent', 10, max_redemptions => 5);

-- Pay an order through a signed mock event for its whole amount.
CREATE FUNCTION rf_pay(order_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	body text := jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
		'order_id', order_id::text, 'amount', (SELECT amount FROM shop.orders WHERE id = order_id),
		'currency', 'KRW', 'payment_id', 'pay-rf-' || order_id))::text;
BEGIN
	RETURN shop.shop_handle_webhook('mock-rf', shop.shop_sign_mock('mock-rf', 'ev-rf-' || order_id, body), body)
		->> 'order_status';
END
$$;
-- A refund's result without its ids: amount, state, and each line as
-- sku qty amount restocked|not.
CREATE FUNCTION rf(order_id bigint, amount bigint DEFAULT NULL, lines jsonb DEFAULT NULL,
				   restock text DEFAULT 'restock') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	r jsonb := shop.shop_refund(order_id, amount, 'rf test', lines, restock);
BEGIN
	RETURN format('%s %s %s%s', r->>'state', r->>'amount', r->>'currency',
		coalesce(' lines: ' || (SELECT string_agg(format('%s x%s = %s %s',
				CASE (l->>'sku_id')::bigint WHEN (SELECT id FROM shop.sku WHERE code = 'RF-TEE') THEN 'tee' ELSE 'mug' END,
				l->>'qty', l->>'amount', CASE WHEN (l->>'restocked')::boolean THEN 'restocked' ELSE 'not restocked' END), ', ')
			FROM jsonb_array_elements(r->'lines') l), ''));
END
$$;
-- The SQLSTATE and message of a call that must fail, ids masked.
CREATE FUNCTION rf_err(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM,
		'\m(order|line|SKU|order_item_id|sku_id) [0-9]+', '\1 N', 'g');
END
$$;
CREATE FUNCTION rf_status(order_id bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT format('%s paid %s refunded %s (succeeded %s, failed %s), units %s restocked %s',
				  state, paid, refunded, succeeded, failed, units_refunded, units_restocked)
	  FROM shop.order_refund_status WHERE order_refund_status.order_id = rf_status.order_id
$$;
CREATE VIEW rf_stock AS
	SELECT code, on_hand, reserved FROM shop.sku WHERE code LIKE 'RF-%' ORDER BY code;
CREATE VIEW rf_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'RF-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'rf-%');

------------------------------------------------------------------------------
-- After delivery (a return): a PAID order of 3 tees and 2 mugs (3600)
-- refunded by lines, by order_item_id or by sku_id, restocked or not.
------------------------------------------------------------------------------
SELECT id AS o1 FROM shop.shop_buy_now('rf-u1', jsonb_build_array(
	jsonb_build_object('sku_id', :s_tee, 'qty', 3), jsonb_build_object('sku_id', :s_mug, 'qty', 2))) \gset
SELECT rf_pay(:o1);
SELECT * FROM rf_stock;
SELECT rf_status(:o1);
SELECT id AS o1_tee FROM shop.order_item WHERE order_id = :o1 AND sku_id = :s_tee \gset
-- one tee, by its order line, back to stock (the default policy)
SELECT rf(:o1, lines => jsonb_build_array(jsonb_build_object('order_item_id', :o1_tee, 'qty', 1)));
SELECT * FROM rf_stock;
SELECT rf_status(:o1);
-- one mug, by its SKU, not restocked (broken in transit)
SELECT rf(:o1, lines => jsonb_build_array(jsonb_build_object('sku_id', :s_mug, 'qty', 1)), restock => 'no_restock');
SELECT * FROM rf_stock;
-- two tees in one refund: one back to stock, one damaged (per-line policy)
SELECT rf(:o1, lines => jsonb_build_array(
	jsonb_build_object('sku_id', :s_tee, 'qty', 1),
	jsonb_build_object('sku_id', :s_tee, 'qty', 1, 'restock', 'no_restock')));
SELECT * FROM rf_stock;
SELECT rf_status(:o1);
-- the books: each restocked unit is one stock adjustment of its SKU
SELECT s.code, a.delta, a.reason ~ '^refund [0-9]+ of order [0-9]+$' AS reason_names_refund
  FROM shop.stock_adjustment a JOIN shop.sku s ON s.id = a.sku_id
 WHERE s.code LIKE 'RF-%' ORDER BY a.id;
SELECT r.state, r.amount, count(l.*) AS lines, sum(l.qty) AS units,
	   o.operation, o.idempotency_key = 'refund-' || r.id AS key_is_refund_id
  FROM shop.refund r
  LEFT JOIN shop.refund_line l ON l.refund_id = r.id
  JOIN shop.outbox o ON o.provider = r.provider AND o.subject_id = r.id AND o.operation = 'refund'
 WHERE r.order_id = :o1
 GROUP BY r.id, o.operation, o.idempotency_key ORDER BY r.id;

-- Refusals: nothing changes.
-- all 3 tees are refunded: a 4th unit is over the line's qty
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, jsonb_build_array(jsonb_build_object('sku_id', :s_tee, 'qty', 1))));
-- 1 mug is left: 2 are too many, also when asked for in two lines
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, jsonb_build_array(jsonb_build_object('sku_id', :s_mug, 'qty', 2))));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, jsonb_build_array(
	jsonb_build_object('sku_id', :s_mug, 'qty', 1), jsonb_build_object('sku_id', :s_mug, 'qty', 1, 'restock', 'no_restock'))));
-- a SKU or an order line that is not the order's
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, '[{"sku_id": 999999999, "qty": 1}]'));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, '[{"order_item_id": 999999999, "qty": 1}]'));
-- malformed lines and policies
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, '{"sku_id": 1, "qty": 1}'));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, '[]'));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, '[5]'));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, format('[{"sku_id": %s, "qty": 0}]', :s_mug)));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, format('[{"sku_id": %s}]', :s_mug)));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, format('[{"sku_id": %s, "qty": 1.5}]', :s_mug)));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, format('[{"sku_id": %s, "order_item_id": %s, "qty": 1}]', :s_mug, :o1_tee)));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, format('[{"sku_id": %s, "qty": 1, "restock": "maybe"}]', :s_mug)));
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o1, format('[{"sku_id": %s, "qty": 1, "restock": true}]', :s_mug)));
SELECT rf_err(format('SELECT shop.shop_refund(%s, restock => %L)', :o1, 'keep'));
SELECT rf_err(format('SELECT shop.shop_refund(%s, restock => NULL)', :o1));
-- money: more than is left (300), or nothing
SELECT rf_err(format('SELECT shop.shop_refund(%s, 301)', :o1));
SELECT rf_err(format('SELECT shop.shop_refund(%s, 0, lines => %L)', :o1, format('[{"sku_id": %s, "qty": 1}]', :s_mug)));
SELECT * FROM rf_stock;
SELECT rf_status(:o1);

-- The rest: no lines, no amount is everything that is left, the last mug
-- back to stock and the last 300.
SELECT rf(:o1);
SELECT * FROM rf_stock;
SELECT rf_status(:o1);
SELECT rf_err(format('SELECT shop.shop_refund(%s)', :o1));
SELECT rf_err(format('SELECT shop.shop_refund(%s, 1)', :o1));

------------------------------------------------------------------------------
-- Before shipping: a PAID order cancelled is refunded whole, every unit
-- back to stock; the order stays PAID (its money and goods are back).
------------------------------------------------------------------------------
SELECT id AS o2 FROM shop.shop_buy_now('rf-u2', jsonb_build_array(jsonb_build_object('sku_id', :s_tee, 'qty', 4))) \gset
SELECT rf_pay(:o2);
SELECT * FROM rf_stock;
SELECT rf(:o2);
SELECT * FROM rf_stock;
SELECT rf_status(:o2), (SELECT status FROM shop.orders WHERE id = :o2);
-- the same with no_restock (e.g. perishable goods): money back, stock unchanged
SELECT id AS o3 FROM shop.shop_buy_now('rf-u3', jsonb_build_array(jsonb_build_object('sku_id', :s_mug, 'qty', 2))) \gset
SELECT rf_pay(:o3);
SELECT rf(:o3, restock => 'no_restock');
SELECT * FROM rf_stock;
SELECT rf_status(:o3);

------------------------------------------------------------------------------
-- Coupons: a partial refund keeps the redemption, the refund that gives
-- back the whole payment releases it.  2 tees + 1 mug = 2300, 10 % off:
-- 2070; the tee line paid 1800 (900 a unit), the mug line 270.
------------------------------------------------------------------------------
SELECT id AS o4 FROM shop.shop_buy_now('rf-u4', jsonb_build_array(
	jsonb_build_object('sku_id', :s_tee, 'qty', 2), jsonb_build_object('sku_id', :s_mug, 'qty', 1)),
	NULL, 'rf-ten') \gset
SELECT rf_pay(:o4);
SELECT amount, discount FROM shop.orders WHERE id = :o4;
SELECT rf(:o4, lines => jsonb_build_array(jsonb_build_object('sku_id', :s_tee, 'qty', 1)));
SELECT r.state, c.redeemed FROM shop.coupon_redemption r JOIN shop.coupon c ON c.id = r.coupon_id WHERE r.order_id = :o4;
-- money only (a goodwill refund): no units
SELECT rf(:o4, 1000);
SELECT rf_status(:o4);
-- the mug line is worth 270 but only 170 is left: SH042; with the amount it is taken
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o4, format('[{"sku_id": %s, "qty": 1}]', :s_mug)));
SELECT rf(:o4, 170, jsonb_build_array(jsonb_build_object('sku_id', :s_mug, 'qty', 1)));
SELECT rf_status(:o4);
SELECT r.state, c.redeemed FROM shop.coupon_redemption r JOIN shop.coupon c ON c.id = r.coupon_id WHERE r.order_id = :o4;
-- nothing left of the payment: the last tee's lines are worth more than 0
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o4, format('[{"sku_id": %s, "qty": 1}]', :s_tee)));

------------------------------------------------------------------------------
-- The provider refuses a refund: the refund is failed, its money counts no
-- more (it can be refunded again, as money), its units stay where the
-- decision put them (restocked, refunded once).  The worker records the
-- refusal; here the same UPDATE stands in for it.
------------------------------------------------------------------------------
SELECT id AS o5 FROM shop.shop_buy_now('rf-u5', jsonb_build_array(jsonb_build_object('sku_id', :s_tee, 'qty', 2))) \gset
SELECT rf_pay(:o5);
SELECT shop.shop_refund(:o5, lines => jsonb_build_array(jsonb_build_object('sku_id', :s_tee, 'qty', 2)))->>'refund_id' AS r5 \gset
UPDATE shop.refund SET state = 'failed', last_error = 'card expired' WHERE id = :r5;
SELECT * FROM rf_stock;
SELECT rf_status(:o5);
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o5, format('[{"sku_id": %s, "qty": 1}]', :s_tee)));
SELECT rf(:o5);
SELECT rf_status(:o5);

------------------------------------------------------------------------------
-- Orders that cannot be refunded.
------------------------------------------------------------------------------
SELECT id AS o6 FROM shop.shop_buy_now('rf-u6', jsonb_build_array(jsonb_build_object('sku_id', :s_mug, 'qty', 1))) \gset
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o6, format('[{"sku_id": %s, "qty": 1}]', :s_mug)));
SELECT status FROM shop.shop_confirm_paid(:o6, 'direct-rf');
SELECT rf_err(format('SELECT shop.shop_refund(%s, lines => %L)', :o6, format('[{"sku_id": %s, "qty": 1}]', :s_mug)));
SELECT rf_err('SELECT shop.shop_refund(-1)');
SELECT rf_err('SELECT shop.shop_refund(NULL)');
SELECT rf_status(:o6);

------------------------------------------------------------------------------
-- The invariants hold; and they see a refund over the payment, a line
-- refunded twice and a restock without its adjustment (rolled back).
------------------------------------------------------------------------------
SELECT * FROM rf_violations;
BEGIN;
UPDATE shop.refund SET amount = amount + 1 WHERE id = (SELECT max(id) FROM shop.refund WHERE order_id = :o2);
UPDATE shop.refund_line SET qty = qty + 5
 WHERE refund_id = (SELECT max(id) FROM shop.refund WHERE order_id = :o3);
UPDATE shop.stock_adjustment SET delta = delta + 1
 WHERE id = (SELECT l.adjustment_id FROM shop.refund_line l JOIN shop.refund r ON r.id = l.refund_id
			  WHERE r.order_id = :o2);
SELECT check_name, regexp_replace(detail, '(line|sku|adjustment) [0-9]+', '\1 N', 'g') AS detail FROM rf_violations ORDER BY 1;
ROLLBACK;
SELECT * FROM rf_violations;

------------------------------------------------------------------------------
-- Clean up: every row this file created, in foreign-key order.
------------------------------------------------------------------------------
DELETE FROM shop.outbox WHERE provider = 'mock-rf';
DELETE FROM shop.refund_line WHERE refund_id IN (SELECT id FROM shop.refund WHERE provider = 'mock-rf');
DELETE FROM shop.refund WHERE provider = 'mock-rf';
DELETE FROM shop.payment_log WHERE provider = 'mock-rf';
DELETE FROM shop.order_review WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'rf-%');
DELETE FROM shop.coupon_redemption WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'rf-%');
DELETE FROM shop.coupon WHERE code = 'RF-TEN';
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'rf-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'rf-%');
DELETE FROM shop.orders WHERE user_id LIKE 'rf-%';
DELETE FROM shop.stock_adjustment WHERE sku_id IN (:s_tee, :s_mug);
DELETE FROM shop.sku WHERE code LIKE 'RF-%';
DELETE FROM shop.product WHERE id IN (:p_tee, :p_mug);
DELETE FROM shop.payment_provider_secret WHERE provider = 'mock-rf';
DELETE FROM shop.payment_provider WHERE name = 'mock-rf';
DROP VIEW rf_violations, rf_stock;
DROP FUNCTION rf_pay(bigint), rf(bigint, bigint, jsonb, text), rf_err(text), rf_status(bigint);
SELECT (SELECT count(*) FROM shop.refund WHERE provider = 'mock-rf')
	 + (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'rf-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'RF-%') AS rows_left;

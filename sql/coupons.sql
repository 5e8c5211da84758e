--
-- The money model and coupons (0.2, issue 13): amount = subtotal - discount,
-- the rounding rule, every refusal (SH025-SH030), the preview, limits, and
-- the redemption given back on every release and taken again by a late
-- payment.  Hermetic: own products (cp *), SKUs (CP-*), users (cp-*),
-- coupons (CP-*), provider mock-cp.
--
\set VERBOSITY terse
SET client_min_messages = warning;

\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES
	('cp big', 1000, 'EUR'), ('cp small a', 333, 'EUR'), ('cp small b', 333, 'EUR'),
	('cp other', 500, 'EUR'), ('cp won', 10000, 'KRW');
SELECT id AS p_big FROM shop.product WHERE name = 'cp big' \gset
SELECT id AS p_a FROM shop.product WHERE name = 'cp small a' \gset
SELECT id AS p_b FROM shop.product WHERE name = 'cp small b' \gset
SELECT id AS p_other FROM shop.product WHERE name = 'cp other' \gset
SELECT id AS p_won FROM shop.product WHERE name = 'cp won' \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES
	(:p_big, 'CP-BIG', 50), (:p_a, 'CP-A', 50), (:p_b, 'CP-B', 50),
	(:p_other, 'CP-OTHER', 50), (:p_won, 'CP-WON', 50);
SELECT id AS s_big FROM shop.sku WHERE code = 'CP-BIG' \gset
SELECT id AS s_a FROM shop.sku WHERE code = 'CP-A' \gset
SELECT id AS s_b FROM shop.sku WHERE code = 'CP-B' \gset
SELECT id AS s_other FROM shop.sku WHERE code = 'CP-OTHER' \gset
SELECT id AS s_won FROM shop.sku WHERE code = 'CP-WON' \gset

CREATE FUNCTION cp_items(VARIADIC pairs bigint[]) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_agg(jsonb_build_object('sku_id', pairs[i], 'qty', pairs[i + 1]) ORDER BY i)
	  FROM generate_series(1, cardinality(pairs), 2) i
$$;
CREATE FUNCTION cp_money(order_id bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT format('%s subtotal %s discount %s amount %s', o.status, o.subtotal, o.discount, o.amount)
	  FROM shop.orders o WHERE o.id = order_id
$$;
CREATE FUNCTION cp_lines(order_id bigint) RETURNS TABLE (sku text, line_total bigint, discount bigint)
LANGUAGE sql AS $$
	SELECT sku_code, unit_price * qty, discount FROM shop.order_item
	 WHERE order_item.order_id = cp_lines.order_id ORDER BY sku_id
$$;
CREATE FUNCTION cp_count(code text) RETURNS text
LANGUAGE sql AS $$
	SELECT format('redeemed %s, active rows %s', c.redeemed,
				  (SELECT count(*) FROM shop.coupon_redemption r WHERE r.coupon_id = c.id AND r.state = 'active'))
	  FROM shop.coupon c WHERE lower(c.code) = lower(cp_count.code)
$$;

------------------------------------------------------------------------------
-- shop_set_coupon: create, update by code in any case, and the table's rules
------------------------------------------------------------------------------
SELECT code, kind, percent, amount, currency, min_subtotal, max_redemptions, max_per_user, is_active, redeemed
  FROM shop.shop_set_coupon('CP-Ten', 'percent', 10);
SELECT code, kind, percent, amount, currency FROM shop.shop_set_coupon('CP-FIVE-EUR', 'fixed', 500, 'eur');
SELECT code, kind, percent, amount, currency FROM shop.shop_set_coupon('CP-BIGFIX', 'fixed', 100000, 'EUR');
SELECT code, kind, percent FROM shop.shop_set_coupon('cp-ten', 'percent', 12);  -- same coupon, updated
SELECT code, kind, percent FROM shop.shop_set_coupon('CP-TEN', 'percent', 10);
SELECT count(*) FROM shop.coupon WHERE lower(code) = 'cp-ten';
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_coupon('CP-BAD', 'percent', 101)$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_coupon('CP-BAD', 'percent', 0)$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_coupon('CP-BAD', 'fixed', 100)$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_coupon('CP-BAD', 'free', 1)$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_coupon('CP-BAD', 'percent', 10, valid_from => now(), valid_to => now() - interval '1 day')$$);

------------------------------------------------------------------------------
-- No coupon: nothing changes (subtotal = amount, discount 0)
------------------------------------------------------------------------------
SELECT id AS o_plain FROM shop.shop_buy_now('cp-u1', cp_items(:s_big, 1, :s_a, 1)) \gset
SELECT cp_money(:o_plain);
SELECT * FROM cp_lines(:o_plain);
SELECT status FROM shop.shop_release(:o_plain);

------------------------------------------------------------------------------
-- The rounding rule.  10% of 1666 = 166.6, rounded half up: 167.  Split in
-- proportion, rounded down: 1000 -> 100, 333 -> 33, 333 -> 33 (166); the
-- remainder 1 goes to the largest line.
------------------------------------------------------------------------------
SELECT status, amount FROM shop.shop_buy_now('cp-u1', cp_items(:s_b, 1, :s_big, 1, :s_a, 1), NULL, 'cp-ten') \gset o_
SELECT id AS o_round FROM shop.orders WHERE user_id = 'cp-u1' ORDER BY id DESC LIMIT 1 \gset
SELECT cp_money(:o_round);
SELECT * FROM cp_lines(:o_round);
-- ties: 666 + 666 + 500: 10% of 1832 = 183.2 -> 183; 66 + 66 + 49 = 181,
-- the remainder 2 to the largest line with the lowest sku_id (CP-A)
SELECT amount FROM shop.shop_buy_now('cp-u1', cp_items(:s_b, 2, :s_a, 2, :s_other, 1), NULL, 'CP-TEN');
SELECT id AS o_tie FROM shop.orders WHERE user_id = 'cp-u1' ORDER BY id DESC LIMIT 1 \gset
SELECT cp_money(:o_tie);
SELECT * FROM cp_lines(:o_tie);
-- half up: 5% of 10 = 0.5 -> 1
SELECT code FROM shop.shop_set_coupon('CP-FIVEPCT', 'percent', 5);
INSERT INTO shop.product (name, price, currency) VALUES ('cp tiny', 5, 'EUR') RETURNING id AS p_tiny \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_tiny, 'CP-TINY', 50) RETURNING id AS s_tiny \gset
SELECT amount FROM shop.shop_buy_now('cp-u1', cp_items(:s_tiny, 2), NULL, 'CP-FIVEPCT');
SELECT cp_money(max(id)) FROM shop.orders WHERE user_id = 'cp-u1';
-- a fixed coupon larger than the subtotal is capped at it: amount 0
SELECT amount FROM shop.shop_buy_now('cp-u1', cp_items(:s_big, 1, :s_a, 1), NULL, 'CP-BIGFIX');
SELECT id AS o_capped FROM shop.orders WHERE user_id = 'cp-u1' ORDER BY id DESC LIMIT 1 \gset
SELECT cp_money(:o_capped);
SELECT * FROM cp_lines(:o_capped);
-- a fixed coupon: 500 over 1000 + 333 + 333: 300, 99, 99, remainder 2 to the largest
SELECT amount FROM shop.shop_buy_now('cp-u1', cp_items(:s_big, 1, :s_a, 1, :s_b, 1), NULL, 'cp-five-eur');
SELECT * FROM cp_lines((SELECT max(id) FROM shop.orders WHERE user_id = 'cp-u1'));
-- the lines' shares never exceed their totals: 1+1+1 with 2 off
SELECT code FROM shop.shop_set_coupon('CP-TWO', 'fixed', 2, 'EUR');
INSERT INTO shop.product (name, price, currency) VALUES ('cp one a', 1, 'EUR'), ('cp one b', 1, 'EUR'), ('cp one c', 1, 'EUR');
INSERT INTO shop.sku (product_id, code, on_hand)
	SELECT id, 'CP-ONE-' || right(name, 1), 5 FROM shop.product WHERE name LIKE 'cp one _';
SELECT amount FROM shop.shop_buy_now('cp-u1',
	(SELECT jsonb_agg(jsonb_build_object('sku_id', id, 'qty', 1)) FROM shop.sku WHERE code LIKE 'CP-ONE-%'), NULL, 'CP-TWO');
SELECT * FROM cp_lines((SELECT max(id) FROM shop.orders WHERE user_id = 'cp-u1'));

------------------------------------------------------------------------------
-- Refusals: each its own SQLSTATE, and nothing is created or held
------------------------------------------------------------------------------
SELECT code FROM shop.shop_set_coupon('CP-OLD', 'percent', 10, valid_from => '2020-01-01', valid_to => '2020-02-01');
SELECT code FROM shop.shop_set_coupon('CP-LATER', 'percent', 10, valid_from => now() + interval '1 day');
SELECT code FROM shop.shop_set_coupon('CP-OFF', 'percent', 10, is_active => false);
SELECT code FROM shop.shop_set_coupon('CP-MIN', 'percent', 10, min_subtotal => 5000);
SELECT code FROM shop.shop_set_coupon('CP-ONLY-OTHER', 'percent', 50, product_ids => ARRAY[:p_other]::bigint[]);
SELECT code FROM shop.shop_set_coupon('CP-WON-FIX', 'fixed', 1000, 'KRW');
SELECT code FROM shop.shop_set_coupon('CP-ONCE', 'percent', 10, max_redemptions => 1);
SELECT sum(reserved) AS reserved_before FROM shop.sku WHERE code LIKE 'CP-%' \gset
SELECT count(*) AS orders_before FROM shop.orders WHERE user_id LIKE 'cp-%' \gset
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-NOPE'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-OLD'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-LATER'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-OFF'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-MIN'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-ONLY-OTHER'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_big, 1), 'CP-WON-FIX'));
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u2', cp_items(:s_won, 1), 'CP-FIVE-EUR'));
SELECT sum(reserved) = :reserved_before AS nothing_reserved FROM shop.sku WHERE code LIKE 'CP-%';
SELECT count(*) = :orders_before AS no_order FROM shop.orders WHERE user_id LIKE 'cp-%';
-- a fixed coupon in the order's currency is fine
SELECT amount FROM shop.shop_buy_now('cp-u2', cp_items(:s_won, 1), NULL, 'cp-won-fix');
-- restricted to products: only those lines are discounted (50% of 500)
SELECT amount FROM shop.shop_buy_now('cp-u2', cp_items(:s_big, 1, :s_other, 1), NULL, 'CP-ONLY-OTHER');
SELECT * FROM cp_lines((SELECT max(id) FROM shop.orders WHERE user_id = 'cp-u2'));
-- exhausted in total: the one redemption is taken, the next is refused
SELECT amount FROM shop.shop_buy_now('cp-u2', cp_items(:s_big, 1), NULL, 'CP-ONCE');
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u3', cp_items(:s_big, 1), 'CP-ONCE'));
SELECT cp_count('CP-ONCE');

------------------------------------------------------------------------------
-- Per user: at most max_per_user active redemptions per user
------------------------------------------------------------------------------
SELECT code FROM shop.shop_set_coupon('CP-PERUSER', 'percent', 10, max_per_user => 1, max_redemptions => 10);
SELECT id AS o_pu1 FROM shop.shop_buy_now('cp-u4', cp_items(:s_big, 1), NULL, 'CP-PERUSER') \gset
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u4', cp_items(:s_a, 1), 'CP-PERUSER'));
SELECT amount FROM shop.shop_buy_now('cp-u5', cp_items(:s_big, 1), NULL, 'CP-PERUSER');
SELECT cp_count('CP-PERUSER');
-- released: the user may use it again
SELECT status FROM shop.shop_release(:o_pu1, 'customer_cancelled');
SELECT cp_count('CP-PERUSER');
SELECT amount FROM shop.shop_buy_now('cp-u4', cp_items(:s_a, 1), NULL, 'CP-PERUSER');
SELECT cp_count('CP-PERUSER');

------------------------------------------------------------------------------
-- shop_create_order with a coupon; the idempotency key returns the first
-- order (the coupon is taken once)
------------------------------------------------------------------------------
SELECT code FROM shop.shop_set_coupon('CP-CART', 'percent', 20, max_redemptions => 5);
SELECT (shop.shop_cart_add('cp-u6', :s_big, 2)).qty, (shop.shop_cart_add('cp-u6', :s_a, 1)).qty;
-- the preview: each line's share, subtotal, discount, total; nothing taken
SELECT sku_code, line_total, line_discount, subtotal, discount, total FROM shop.shop_cart_preview('cp-u6', 'cp-cart');
SELECT sku_code, line_total, line_discount, subtotal, discount, total FROM shop.shop_cart_preview('cp-u6', NULL);
SELECT pg_temp.outcome($$SELECT count(*) FROM shop.shop_cart_preview('cp-u6', 'CP-NOPE')$$);
SELECT pg_temp.outcome($$SELECT count(*) FROM shop.shop_cart_preview('cp-u6', 'CP-ONCE')$$);
SELECT count(*) FROM shop.shop_cart_preview('cp-nobody', 'CP-CART');
SELECT cp_count('CP-CART');
SELECT status, amount FROM shop.shop_create_order('cp-u6', 'cp-k1', 'CP-CART');
SELECT status, amount FROM shop.shop_create_order('cp-u6', 'cp-k1', 'CP-CART');
SELECT cp_count('CP-CART');
SELECT cp_money(max(id)) FROM shop.orders WHERE user_id = 'cp-u6';
-- old argument lists still work
SELECT (shop.shop_cart_add('cp-u6', :s_a, 1)).qty;
SELECT status, amount FROM shop.shop_create_order('cp-u6', 'cp-k2');
SELECT status, amount FROM shop.shop_buy_now('cp-u6', cp_items(:s_a, 1), 'cp-k3');
SELECT status, amount FROM shop.shop_buy_now('cp-u6', cp_items(:s_a, 1));

------------------------------------------------------------------------------
-- Every release gives the redemption back in its transaction: shop_release,
-- a failed payment, the expiry sweep
------------------------------------------------------------------------------
SELECT code FROM shop.shop_set_coupon('CP-BACK', 'percent', 10, max_redemptions => 3);
SELECT shop.shop_set_provider('mock-cp', 'mock',
	'whsec_' || encode(convert_to('coupons test secret 32 bytes ok', 'UTF8'), 'base64')) IS NOT NULL AS registered;
CREATE FUNCTION cp_event(event_type text, event_id text, order_id bigint, amount bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	body text := jsonb_build_object('type', event_type, 'data', jsonb_build_object(
		'order_id', order_id::text, 'amount', amount, 'currency', 'EUR', 'payment_id', 'pay-' || event_id))::text;
BEGIN
	RETURN shop.shop_handle_webhook('mock-cp', shop.shop_sign_mock('mock-cp', event_id, body), body)
		- 'order_id' - 'event_id';
END
$$;
SELECT id AS o_r1 FROM shop.shop_buy_now('cp-u7', cp_items(:s_big, 1), NULL, 'CP-BACK') \gset
SELECT id AS o_r2 FROM shop.shop_buy_now('cp-u8', cp_items(:s_big, 1), NULL, 'CP-BACK') \gset
SELECT id AS o_r3 FROM shop.shop_buy_now('cp-u9', cp_items(:s_big, 1), NULL, 'CP-BACK') \gset
SELECT cp_count('CP-BACK');
SELECT status FROM shop.shop_release(:o_r1);
SELECT cp_count('CP-BACK');
SELECT cp_event('payment.failed', 'cp-f1', :o_r2, 900) ->> 'result' AS result;
SELECT cp_money(:o_r2), cp_count('CP-BACK');
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o_r3;
SELECT shop.shop_expire_pending() >= 1 AS swept;
SELECT cp_money(:o_r3), cp_count('CP-BACK');
SELECT order_id = :o_r1 AS r1, order_id = :o_r2 AS r2, order_id = :o_r3 AS r3, state
  FROM shop.coupon_redemption WHERE order_id IN (:o_r1, :o_r2, :o_r3) ORDER BY order_id;

------------------------------------------------------------------------------
-- A late payment re-reserves a released order and takes its coupon again;
-- if the coupon is used up meanwhile, the order goes to review and keeps no
-- stock: never over the limit
------------------------------------------------------------------------------
-- r3 expired; its coupon is free: sold, redemption active again
SELECT cp_event('payment.succeeded', 'cp-late-1', :o_r3, 900) ->> 'result' AS result;
SELECT cp_money(:o_r3), cp_count('CP-BACK');
-- the inline reclaim gives back the coupon of the order it releases
SELECT code FROM shop.shop_set_coupon('CP-SOLO', 'percent', 10, max_redemptions => 1);
INSERT INTO shop.product (name, price, currency) VALUES ('cp last', 100, 'EUR') RETURNING id AS p_last \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_last, 'CP-LAST', 1) RETURNING id AS s_last \gset
SELECT id AS o_l1 FROM shop.shop_buy_now('cp-u10', cp_items(:s_last, 1), NULL, 'CP-SOLO') \gset
UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = :o_l1;
SELECT id AS o_l2, amount FROM shop.shop_buy_now('cp-u11', cp_items(:s_last, 1), NULL, 'CP-SOLO') \gset
SELECT cp_money(:o_l1), cp_money(:o_l2), cp_count('CP-SOLO');
-- l1 paid late: its stock is gone (l2 holds it): review
SELECT cp_event('payment.succeeded', 'cp-late-2', :o_l1, 90) ->> 'review' AS review;
-- stock there again but the coupon is used up (l2 holds it): review, and the
-- re-reserved stock is given back
SELECT status FROM shop.shop_release(:o_l2);
SELECT id AS o_l3 FROM shop.shop_buy_now('cp-u12', cp_items(:s_big, 1), NULL, 'CP-SOLO') \gset
SELECT cp_event('payment.succeeded', 'cp-late-3', :o_l1, 90) - 'note' AS outcome;
SELECT cp_money(:o_l1), cp_count('CP-SOLO');
SELECT on_hand, reserved FROM shop.sku WHERE id = :s_last;
SELECT order_id = :o_l1 AS l1, reason, regexp_replace(detail, 'SKU [0-9]+', 'SKU CP-LAST') AS detail FROM shop.orders_needing_review WHERE order_id = :o_l1 ORDER BY review_id;

------------------------------------------------------------------------------
-- Overflow is an error with a SQLSTATE
------------------------------------------------------------------------------
INSERT INTO shop.product (name, price, currency) VALUES ('cp huge', 4611686018427387904, 'EUR') RETURNING id AS p_huge \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_huge, 'CP-HUGE', 5) RETURNING id AS s_huge \gset
SELECT pg_temp.outcome(format('SELECT amount FROM shop.shop_buy_now(%L, %L, NULL, %L)', 'cp-u13', cp_items(:s_huge, 2), 'CP-TEN'));

-- leave no stock held
SELECT count(*) >= 0 AS released FROM (
	SELECT shop.shop_release(id) FROM shop.orders WHERE user_id LIKE 'cp-%' AND status = 'PENDING' ORDER BY id) r;

-- the money model and the coupon counts hold for this file's objects
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'cp-%')
	OR subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'CP-%')
	OR subject IN (SELECT 'coupon ' || id FROM shop.coupon WHERE code ILIKE 'CP-%')
	OR subject LIKE 'user cp-%';
SELECT count(*) AS coupons, sum(redeemed) AS redeemed,
	   (SELECT count(*) FROM shop.coupon_redemption r JOIN shop.coupon c ON c.id = r.coupon_id
		 WHERE c.code ILIKE 'CP-%' AND r.state = 'active') AS active_redemptions
  FROM shop.coupon WHERE code ILIKE 'CP-%';

-- clean up
DELETE FROM shop.order_review WHERE provider = 'mock-cp';
DELETE FROM shop.payment_log WHERE provider = 'mock-cp';
DELETE FROM shop.coupon_redemption WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'cp-%');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'cp-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'cp-%');
DELETE FROM shop.orders WHERE user_id LIKE 'cp-%';
DELETE FROM shop.cart WHERE user_id LIKE 'cp-%';
DELETE FROM shop.sku WHERE code LIKE 'CP-%';
DELETE FROM shop.product WHERE name LIKE 'cp %';
DELETE FROM shop.coupon WHERE code ILIKE 'CP-%';
DELETE FROM shop.payment_provider WHERE name = 'mock-cp';
DROP FUNCTION cp_items(bigint[]), cp_money(bigint), cp_lines(bigint), cp_count(text),
	cp_event(text, text, bigint, bigint);

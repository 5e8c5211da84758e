-- Realistic shop history, made through the SQL API (plus the DBA's own
-- UPDATE closing a review flag, and see "free text" below), on a database
-- created with CREATE EXTENSION shop VERSION '0.1'.  Used by
-- test/t/004_upgrade.pl before ALTER EXTENSION shop UPDATE.
--
-- It leaves: products and SKUs (one product inactive, stock adjusted both
-- ways), open and checked-out carts, and orders in every state: PENDING
-- holding stock (one of them flagged amount_mismatch), PAID (by webhook,
-- by direct confirm, and paid_after_release), CANCELLED cancelled,
-- customer_cancelled, expired and the free text 'changed my mind' (0.1
-- accepted any reason), FAILED payment_failed (by webhook and by release);
-- webhook providers with a rotated secret; payment_log rows processed,
-- ignored and unmatched; review flags amount_mismatch and refund_required
-- (one resolved).
--
-- Output: one line per webhook call and per expiry sweep, no ids or
-- timestamps, so the test can compare it as a whole.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- One signed mock event: body built from its parts (NULLs left out), signed
-- with the provider's newest secret, handed to the webhook entry point.
CREATE FUNCTION pg_temp.wh(provider text, event_id text, type text, order_ref text,
						   amount bigint, currency text, payment_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	body text := jsonb_build_object('type', type, 'data', jsonb_strip_nulls(
		jsonb_build_object('order_id', order_ref, 'amount', amount,
						   'currency', currency, 'payment_id', payment_id)))::text;
BEGIN
	RETURN shop.shop_handle_webhook(provider, shop.shop_sign_mock(provider, event_id, body), body);
END
$$;
CREATE FUNCTION pg_temp.show(label text, r jsonb) RETURNS text
LANGUAGE sql AS $$
	SELECT format('webhook %s: %s %s%s', label, r->>'result', coalesce(r->>'order_status', '-'),
				  coalesce(' review ' || (r->>'review'), ''))
$$;

-- Catalog: ids come from the identity sequences (as a shop's admin UI
-- would), so a restore that loses the sequences' values is caught later.
INSERT INTO shop.product (name, price) VALUES ('Mug', 10000) RETURNING id AS p_mug \gset
INSERT INTO shop.product (name, price) VALUES ('T-shirt', 25000) RETURNING id AS p_tee \gset
INSERT INTO shop.product (name, price, currency) VALUES ('Sticker', 300, 'USD') RETURNING id AS p_sticker \gset
INSERT INTO shop.product (name, price, is_active) VALUES ('Old poster', 5000, false) RETURNING id AS p_poster \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_mug, 'MUG-S', 50) RETURNING id AS mug_s \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_mug, 'MUG-L', 30) RETURNING id AS mug_l \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_tee, 'TEE-M', 20) RETURNING id AS tee_m \gset
INSERT INTO shop.sku (product_id, code, on_hand, is_active) VALUES (:p_tee, 'TEE-XXL', 2, false) RETURNING id AS tee_xxl \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_sticker, 'STICKER', 100) RETURNING id AS sticker \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_poster, 'POSTER', 3) RETURNING id AS poster \gset

-- Stock adjustments: a delivery and a write-off.
SELECT 'adjust' AS step, on_hand, reserved, available FROM shop.shop_adjust_stock(:mug_s, 10, 'delivery 2024-05-02') \g /dev/null
SELECT 'adjust' AS step, on_hand, reserved, available FROM shop.shop_adjust_stock(:tee_m, -2, 'damaged in the warehouse') \g /dev/null

-- Webhook providers: a mock one with a rotated secret ('whsec_' + base64 of
-- 32 bytes), a stripe one that never sends anything here.
SELECT shop.shop_set_provider('mock', 'mock', 'whsec_' || encode(sha256('shop upgrade test, first secret'), 'base64')) \g /dev/null
SELECT shop.shop_set_provider('mock', 'mock', 'whsec_' || encode(sha256('shop upgrade test, second secret'), 'base64')) \g /dev/null
SELECT shop.shop_set_provider('stripe', 'stripe', 'whsec_' || encode(sha256('shop upgrade test, stripe'), 'hex'),
							  '{"tolerance_seconds": 600}') \g /dev/null

-- Open carts (never checked out), one of them edited.
SELECT shop.shop_cart_add('carol', :mug_s, 2) \g /dev/null
SELECT shop.shop_cart_add('carol', :tee_m, 1) \g /dev/null
SELECT shop.shop_cart_set_qty('carol', :tee_m, 3) \g /dev/null
SELECT shop.shop_cart_add('carol', :mug_l, 1) \g /dev/null
SELECT shop.shop_cart_remove('carol', :mug_l) \g /dev/null
SELECT shop.shop_cart_add('dave', :sticker, 5) \g /dev/null

-- PENDING, holding stock: a checked-out cart, with an idempotency key
-- (the retry returns the same order).
SELECT shop.shop_cart_add('alice', :mug_s, 2) \g /dev/null
SELECT shop.shop_cart_add('alice', :tee_m, 1) \g /dev/null
SELECT id AS o_alice FROM shop.shop_create_order('alice', 'alice-checkout-1') \gset
SELECT 'idempotent retry: ' || (id = :o_alice) FROM shop.shop_create_order('alice', 'alice-checkout-1');

-- PAID by webhook (checked-out cart); the retry is a duplicate, a failure
-- after payment is ignored, a second payment id is refund_required.
SELECT shop.shop_cart_add('bob', :mug_l, 1) \g /dev/null
SELECT id AS o_bob, amount AS a_bob FROM shop.shop_create_order('bob', 'bob-checkout-1') \gset
SELECT pg_temp.show('bob paid', pg_temp.wh('mock', 'evt-bob-1', 'payment.succeeded', :'o_bob', :a_bob, 'KRW', 'pay_bob'));
SELECT pg_temp.show('bob paid again', pg_temp.wh('mock', 'evt-bob-1', 'payment.succeeded', :'o_bob', :a_bob, 'KRW', 'pay_bob'));
SELECT pg_temp.show('bob failed late', pg_temp.wh('mock', 'evt-bob-2', 'payment.failed', :'o_bob', NULL, NULL, 'pay_bob'));
SELECT pg_temp.show('bob paid twice', pg_temp.wh('mock', 'evt-bob-3', 'payment.succeeded', :'o_bob', :a_bob, 'KRW', 'pay_bob_2'));

-- PAID by a direct confirm, several lines (one SKU given twice).
SELECT id AS o_erin FROM shop.shop_buy_now('erin',
	format('[{"sku_id": %s, "qty": 1}, {"sku_id": %s, "qty": 2}, {"sku_id": %s, "qty": 1}]', :mug_s, :tee_m, :mug_s)::jsonb) \gset
SELECT 'erin: ' || status FROM shop.shop_confirm_paid(:o_erin, 'pay_erin');

-- CANCELLED 'cancelled' (default reason); its late payment is refund_required.
SELECT id AS o_frank, amount AS a_frank FROM shop.shop_buy_now('frank', format('[{"sku_id": %s, "qty": 3}]', :mug_l)::jsonb) \gset
SELECT 'frank: ' || status FROM shop.shop_release(:o_frank);
SELECT pg_temp.show('frank paid after cancel', pg_temp.wh('mock', 'evt-frank-1', 'payment.succeeded', :'o_frank', :a_frank, 'KRW', 'pay_frank'));

-- CANCELLED with a free-text reason (0.1 stored any text) and with one of
-- 0.2's words.
-- The 0.2 shop.so, which serves a 0.1 database between make install and
-- ALTER EXTENSION UPDATE, may accept only 0.2's reasons: then the order is
-- released as 'cancelled' and given the text by UPDATE, as the 0.1 shop.so
-- stored it (a WARNING says so).
CREATE FUNCTION pg_temp.release_free_text(o bigint, reason text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN (shop.shop_release(o, reason)).status;
EXCEPTION WHEN invalid_parameter_value THEN
	PERFORM shop.shop_release(o, 'cancelled');
	UPDATE shop.orders SET status_reason = reason WHERE id = o;
	RAISE WARNING 'this shop.so refuses the release reason %; stored by UPDATE as the 0.1 shop.so did', quote_literal(reason);
	RETURN (SELECT status FROM shop.orders WHERE id = o);
END
$$;
SELECT id AS o_grace FROM shop.shop_buy_now('grace', format('[{"sku_id": %s, "qty": 1}]', :tee_m)::jsonb) \gset
SELECT 'grace: ' || pg_temp.release_free_text(:o_grace, 'changed my mind');
SELECT id AS o_heidi FROM shop.shop_buy_now('heidi', format('[{"sku_id": %s, "qty": 4}]', :sticker)::jsonb) \gset
SELECT 'heidi: ' || status FROM shop.shop_release(:o_heidi, 'customer_cancelled');

-- FAILED payment_failed: by a failed webhook event and by a direct release.
SELECT id AS o_ivan FROM shop.shop_buy_now('ivan', format('[{"sku_id": %s, "qty": 1}]', :mug_s)::jsonb) \gset
SELECT pg_temp.show('ivan failed', pg_temp.wh('mock', 'evt-ivan-1', 'payment.failed', :'o_ivan', NULL, NULL, 'pay_ivan'));
SELECT id AS o_judy FROM shop.shop_buy_now('judy', format('[{"sku_id": %s, "qty": 2}]', :mug_l)::jsonb) \gset
SELECT 'judy: ' || status FROM shop.shop_release(:o_judy, 'payment_failed');

-- PENDING flagged amount_mismatch: paid too little; it keeps its stock.
SELECT id AS o_mallory, amount AS a_mallory FROM shop.shop_buy_now('mallory', format('[{"sku_id": %s, "qty": 2}]', :tee_m)::jsonb) \gset
SELECT pg_temp.show('mallory underpaid', pg_temp.wh('mock', 'evt-mallory-1', 'payment.succeeded', :'o_mallory', :a_mallory - 1, 'KRW', 'pay_mallory'));

-- CANCELLED 'expired' by the sweep after a short reservation_ttl; one of
-- the two expired orders is then paid late and sells again
-- (paid_after_release).
SET shop.reservation_ttl = '1s';
SELECT id AS o_ken FROM shop.shop_buy_now('ken', format('[{"sku_id": %s, "qty": 1}]', :mug_l)::jsonb) \gset
SELECT id AS o_leo, amount AS a_leo FROM shop.shop_buy_now('leo', format('[{"sku_id": %s, "qty": 2}]', :sticker)::jsonb) \gset
RESET shop.reservation_ttl;
SELECT pg_sleep(1.2) \g /dev/null
SELECT 'expired by the sweep: ' || shop.shop_expire_pending();
SELECT pg_temp.show('leo paid late', pg_temp.wh('mock', 'evt-leo-1', 'payment.succeeded', :'o_leo', :a_leo, 'USD', 'pay_leo'));

-- Unmatched (no such order; no order id at all) and ignored (other type).
SELECT pg_temp.show('unknown order', pg_temp.wh('mock', 'evt-x-1', 'payment.succeeded', '999999999', 100, 'KRW', 'pay_x'));
SELECT pg_temp.show('no order id', pg_temp.wh('mock', 'evt-x-2', 'payment.succeeded', NULL, 100, 'KRW', 'pay_y'));
SELECT pg_temp.show('other event type', pg_temp.wh('mock', 'evt-x-3', 'customer.updated', :'o_alice', NULL, NULL, NULL));

-- The DBA refunds Frank and closes that flag.
UPDATE shop.order_review SET resolved_at = now(), resolution = 'refunded by hand'
 WHERE order_id = :o_frank;

--
-- Schema shop_api, the shopper's side (issue 10): the user is the "sub" claim
-- of request.jwt.claims, never an argument; every wrapper reaches the core
-- for that user only; another user's order is indistinguishable from a
-- missing one; guest carts merge into the signed-in user's cart under the
-- cart-add stock rules, all or nothing.
-- Hermetic: own products and SKUs (API-*), users (api-*, guest:api-*),
-- provider; all removed at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES ('api mug', 1000, 'USD') RETURNING id AS p_mug \gset
INSERT INTO shop.product (name, price, currency) VALUES ('api cup', 250, 'USD') RETURNING id AS p_cup \gset
INSERT INTO shop.product (name, price, currency, is_active) VALUES ('api retired', 99, 'USD', false) RETURNING id AS p_old \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_mug, 'API-MUG', 10) RETURNING id AS s_mug \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_cup, 'API-CUP', 2) RETURNING id AS s_cup \gset
INSERT INTO shop.sku (product_id, code, on_hand, is_active) VALUES (:p_cup, 'API-CUP-OLD', 9, false) RETURNING id AS s_cup_old \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_old, 'API-RETIRED', 9) RETURNING id AS s_old \gset

-- Identity ---------------------------------------------------------------------

-- no claims at all, empty claims (what a session reads after PostgREST's
-- transaction ended), claims without sub, sub not a string, empty sub
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS set;
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
SELECT set_config('request.jwt.claims', '{"role": "api_customer"}', false) IS NOT NULL AS set;
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
SELECT set_config('request.jwt.claims', '{"sub": 42}', false) IS NOT NULL AS set;
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
SELECT set_config('request.jwt.claims', '{"sub": ""}', false) IS NOT NULL AS set;
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
SELECT set_config('request.jwt.claims', '["sub", "alice"]', false) IS NOT NULL AS set;
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
-- 200 bytes is the longest sub; 201 is refused
SELECT set_config('request.jwt.claims', jsonb_build_object('sub', repeat('x', 200))::text, false) IS NOT NULL AS set;
SELECT length(shop_api.current_user_id());
SELECT set_config('request.jwt.claims', jsonb_build_object('sub', repeat('é', 101))::text, false) IS NOT NULL AS set;
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
-- the full error a client sees without a user
\set VERBOSITY default
\set SHOW_CONTEXT never
RESET request.jwt.claims;
SELECT * FROM shop_api.cart();
\set VERBOSITY terse
-- every shopper function needs the user, also when it has nothing to show
SELECT pg_temp.outcome('SELECT count(*) FROM shop_api.cart()');
SELECT pg_temp.outcome(format('SELECT qty FROM shop_api.cart_add(%s, 1)', :s_mug));
SELECT pg_temp.outcome(format('SELECT qty FROM shop_api.cart_set_qty(%s, 1)', :s_mug));
SELECT pg_temp.outcome(format('SELECT shop_api.cart_remove(%s)', :s_mug));
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''guest:api-x'')');
SELECT pg_temp.outcome('SELECT status FROM shop_api.create_order()');
SELECT pg_temp.outcome(format('SELECT status FROM shop_api.buy_now(''[{"sku_id": %s, "qty": 1}]'')', :s_mug));
SELECT pg_temp.outcome('SELECT count(*) FROM shop_api.orders()');
SELECT pg_temp.outcome('SELECT shop_api."order"(1)');
SELECT pg_temp.outcome('SELECT status FROM shop_api.cancel_order(1)');
SELECT pg_temp.outcome('SELECT shop_api.start_payment(1, ''x'', ''https://a.example/'', ''https://b.example/'')');
SELECT pg_temp.outcome('SELECT shop_api.confirm_payment(1, ''x'', ''pk_1'', 100)');
-- nothing was written for anyone
SELECT count(*) AS carts FROM shop.cart WHERE user_id LIKE 'api-%' OR user_id LIKE 'guest:api-%' OR user_id = '';
SELECT count(*) AS orders FROM shop.orders WHERE user_id LIKE 'api-%';

-- Catalog: no user needed; active products and SKUs only -----------------------

SELECT product_name, sku_code, price, currency, available, product_id = :p_mug OR product_id = :p_cup AS known
  FROM shop_api.products() WHERE sku_code LIKE 'API-%';
SELECT count(*) FILTER (WHERE sku_id IN (:s_cup_old, :s_old)) AS inactive_listed
  FROM shop_api.products();
-- ordered by product_id, sku_id
SELECT bool_and(ordered) AS ordered FROM (
	SELECT (product_id, sku_id) >= lag((product_id, sku_id)) OVER () IS NOT FALSE AS ordered
	  FROM shop_api.products()) o;

-- Cart ---------------------------------------------------------------------------

SET request.jwt.claims = '{"sub": "api-alice", "role": "api_customer"}';
SELECT shop_api.current_user_id();
SELECT sku_id = :s_mug AS its_sku, qty FROM shop_api.cart_add(:s_mug, 2);
SELECT qty FROM shop_api.cart_add(sku_id => :s_cup, qty => 1);
SELECT qty FROM shop_api.cart_add(:s_mug, 1);
SELECT sku_code, product_name, unit_price, currency, qty, line_total, cart_total FROM shop_api.cart();
SELECT qty FROM shop_api.cart_set_qty(:s_cup, 2);
SELECT qty FROM shop_api.cart_set_qty(:s_cup, 0);
SELECT shop_api.cart_remove(:s_cup) AS removed_again;
SELECT shop_api.cart_remove(:s_mug) AS removed;
SELECT count(*) AS lines FROM shop_api.cart();
-- the core's refusals reach the caller unchanged
SELECT pg_temp.outcome(format('SELECT qty FROM shop_api.cart_add(%s, 11)', :s_mug));
SELECT pg_temp.outcome(format('SELECT qty FROM shop_api.cart_add(%s, 1)', :s_cup_old));
SELECT pg_temp.outcome(format('SELECT qty FROM shop_api.cart_add(%s, 0)', :s_mug));
SELECT pg_temp.outcome('SELECT qty FROM shop_api.cart_add(-1, 1)');
SELECT pg_temp.outcome('SELECT qty FROM shop_api.cart_add(NULL, 1)');
-- the wrappers act for the sub only: the core saw "api-alice"
SELECT qty FROM shop_api.cart_add(:s_mug, 1);
SELECT c.user_id, i.qty FROM shop.cart c JOIN shop.cart_item i ON i.cart_id = c.id
 WHERE i.sku_id = :s_mug AND c.checked_out_at IS NULL;
-- bob, in a transaction of his own (set_config local), sees his empty cart
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "api-bob"}', true) IS NOT NULL AS set;
SELECT count(*) AS bob_lines FROM shop_api.cart();
COMMIT;
SELECT count(*) AS alice_lines FROM shop_api.cart();

-- Guest carts ----------------------------------------------------------------------

-- a guest fills a cart
SET request.jwt.claims = '{"sub": "guest:api-g1"}';
SELECT qty FROM shop_api.cart_add(:s_mug, 2);
SELECT qty FROM shop_api.cart_add(:s_cup, 2);
-- a guest may not merge, not even another guest's cart
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''guest:api-g2'')');
SET request.jwt.claims = '{"sub": "api-alice"}';
-- only guest subs can be merged from
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''api-bob'')');
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''guest:'')');
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''Guest:api-g1'')');
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(NULL)');
SELECT pg_temp.outcome(format('SELECT shop_api.cart_merge(%L)', 'guest:' || repeat('x', 195)));
-- alice holds 1 mug: 1 + 2 mugs and 2 cups fit (10 mugs, 2 cups on hand)
SELECT shop_api.cart_merge('guest:api-g1') AS merged;
SELECT sku_code, qty FROM shop_api.cart();
-- the guest's cart is empty; merging again, or an unknown guest, is 0
SELECT count(*) AS guest_lines FROM shop.cart c JOIN shop.cart_item i ON i.cart_id = c.id
 WHERE c.user_id = 'guest:api-g1';
SELECT shop_api.cart_merge('guest:api-g1') AS merged_again;
SELECT shop_api.cart_merge('guest:api-nobody') AS merged_unknown;
-- all or nothing: the guest's lines fit alone, but the summed mugs do not
-- (alice 3 + guest 8 > 10): SH001, and neither cart changes
SET request.jwt.claims = '{"sub": "guest:api-g2"}';
SELECT qty FROM shop_api.cart_add(:s_cup, 1);
SELECT qty FROM shop_api.cart_add(:s_mug, 8);
SET request.jwt.claims = '{"sub": "api-alice"}';
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''guest:api-g2'')');
SELECT c.user_id, s.code, i.qty FROM shop.cart c
  JOIN shop.cart_item i ON i.cart_id = c.id JOIN shop.sku s ON s.id = i.sku_id
 WHERE c.user_id IN ('api-alice', 'guest:api-g2') AND c.checked_out_at IS NULL
 ORDER BY 1, 2;
-- the mugs fit now (3 + 1), but the guest's cup was deactivated after the
-- add: SH002, and the mugs merged before it are rolled back too
UPDATE shop.sku SET is_active = false WHERE id = :s_cup;
SET request.jwt.claims = '{"sub": "guest:api-g2"}';
SELECT qty FROM shop_api.cart_set_qty(:s_mug, 1);
SET request.jwt.claims = '{"sub": "api-alice"}';
SELECT pg_temp.outcome('SELECT shop_api.cart_merge(''guest:api-g2'')');
UPDATE shop.sku SET is_active = true WHERE id = :s_cup;
-- alice drops her 2 cups (2 on hand), and then both guest lines fit
SELECT qty FROM shop_api.cart_set_qty(:s_cup, 0);
SELECT shop_api.cart_merge('guest:api-g2') AS merged;
SELECT sku_code, qty FROM shop_api.cart();

-- Orders ----------------------------------------------------------------------------

SELECT status, amount, currency FROM shop_api.create_order('api-k1');
SELECT id AS o1 FROM shop.orders WHERE user_id = 'api-alice' AND idempotency_key = 'api-k1' \gset
SELECT id = :o1 AS same_order, status FROM shop_api.create_order(idempotency_key => 'api-k1');
SELECT pg_temp.outcome('SELECT status FROM shop_api.create_order()');
SELECT status, amount FROM shop_api.buy_now(format('[{"sku_id": %s, "qty": 1}]', :s_mug)::jsonb, 'api-k2');
SELECT id AS o2 FROM shop.orders WHERE user_id = 'api-alice' AND idempotency_key = 'api-k2' \gset
SELECT status, amount FROM shop_api.buy_now(items => format('[{"sku_id": %s, "qty": 1}]', :s_mug)::jsonb);
SELECT id AS o3 FROM shop.orders WHERE user_id = 'api-alice' AND idempotency_key IS NULL \gset
SELECT pg_temp.outcome(format('SELECT status FROM shop_api.buy_now(''[{"sku_id": %s, "qty": 9}]'')', :s_mug));
-- bob has an order of his own
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "api-bob"}', true) IS NOT NULL AS set;
SELECT status FROM shop_api.buy_now(format('[{"sku_id": %s, "qty": 1}]', :s_mug)::jsonb);
COMMIT;
SELECT id AS o_bob FROM shop.orders WHERE user_id = 'api-bob' \gset
-- alice's orders, newest first, none of bob's
SELECT order_id = :o3 AS o3, order_id = :o2 AS o2, order_id = :o1 AS o1, status, status_reason,
	   amount, currency, created_at IS NOT NULL AS created, expires_at > now() AS holds_stock
  FROM shop_api.orders();
-- one order with its lines
SELECT shop_api."order"(:o1) - 'order_id' - 'created_at' - 'expires_at' - 'items' AS o1,
	   (shop_api."order"(:o1) ->> 'order_id')::bigint = :o1 AS its_id,
	   (shop_api."order"(:o1) ->> 'created_at')::timestamptz = o.created_at AS created_at,
	   (shop_api."order"(:o1) ->> 'expires_at')::timestamptz = o.expires_at AS expires_at
  FROM shop.orders o WHERE o.id = :o1;
SELECT i - 'sku_id' AS line, (i ->> 'sku_id')::bigint IN (:s_mug, :s_cup) AS its_sku
  FROM jsonb_array_elements(shop_api."order"(:o1) -> 'items') i;
-- bob's order and a missing one: the same error, word for word
SELECT max(id) + 1000 AS o_missing FROM shop.orders \gset
SELECT pg_temp.outcome(format('SELECT shop_api."order"(%s)', :o_bob))
	 = pg_temp.outcome(format('SELECT shop_api."order"(%s)', :o_missing)) AS same_answer;
SELECT pg_temp.outcome(format('SELECT shop_api."order"(%s)', :o_bob));
SELECT pg_temp.outcome('SELECT shop_api."order"(NULL)');
-- cancel: only her own; reason customer_cancelled; stock back
SELECT pg_temp.outcome(format('SELECT status FROM shop_api.cancel_order(%s)', :o_bob));
SELECT status FROM shop.orders WHERE id = :o_bob;
SELECT reserved AS mug_reserved_before FROM shop.sku WHERE id = :s_mug;
SELECT status, amount FROM shop_api.cancel_order(:o2);
SELECT status, status_reason FROM shop.orders WHERE id = :o2;
SELECT reserved AS mug_reserved_after FROM shop.sku WHERE id = :s_mug;
SELECT status FROM shop_api.cancel_order(order_id => :o2);
SELECT pg_temp.outcome('SELECT status FROM shop_api.cancel_order(-7)');
-- a PAID order cannot be cancelled (the core's SH004)
SELECT status FROM shop.shop_confirm_paid(:o3, 'api-pay-3');
SELECT pg_temp.outcome(format('SELECT status FROM shop_api.cancel_order(%s)', :o3));

-- Payment: own order only; a stored session is returned without a provider call
SELECT shop.shop_set_provider('mock-api-shopper', 'mock',
	'whsec_' || encode(convert_to('api shopper test secret, 32 bytes', 'UTF8'), 'base64')) IS NOT NULL AS registered;
INSERT INTO shop.payment_session (order_id, provider, session_id, url)
VALUES (:o1, 'mock-api-shopper', 'cs_api_1', 'https://pay.example/cs_api_1');
SELECT pg_temp.outcome(format('SELECT shop_api.start_payment(%s, ''mock-api-shopper'', ''https://a.example/ok'', ''https://a.example/no'')', :o_bob));
SELECT r - 'order_id' - 'expires_at' AS session, (r ->> 'order_id')::bigint = :o1 AS its_order
  FROM shop_api.start_payment(:o1, 'mock-api-shopper', 'https://a.example/ok', 'https://a.example/no') r;
SELECT (shop_api."order"(:o1) -> 'payment_sessions' -> 0) - 'created_at' AS session_in_order;
-- the core's refusal for a non-PENDING order reaches the caller
SELECT pg_temp.outcome(format('SELECT shop_api.start_payment(%s, ''mock-api-shopper'', ''https://a.example/ok'', ''https://a.example/no'')', :o2));
-- confirm_payment (confirm-style providers): own order only, as start_payment;
-- the core's refusals reach the caller (a mock provider has no confirm call)
SELECT pg_temp.outcome(format('SELECT shop_api.confirm_payment(%s, ''mock-api-shopper'', ''pk_api'', 100)', :o_bob));
SELECT pg_temp.outcome(format('SELECT shop_api.confirm_payment(%s, ''mock-api-shopper'', ''pk_api'', 100)', :o1));
SELECT pg_temp.outcome(format('SELECT shop_api.confirm_payment(%s, ''mock-api-shopper'', ''pk_api'', 4250)', :o1));
SELECT pg_temp.outcome('SELECT shop_api.confirm_payment(NULL, ''mock-api-shopper'', ''pk_api'', 100)');

-- books balance for this file's objects
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN ('sku ' || :s_mug, 'sku ' || :s_cup, 'user api-alice', 'user api-bob')
	OR subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'api-%');

-- clean up
RESET request.jwt.claims;
DELETE FROM shop.payment_session WHERE provider = 'mock-api-shopper';
DELETE FROM shop.payment_provider WHERE name = 'mock-api-shopper';
DELETE FROM shop.stock_reservation WHERE sku_id IN (:s_mug, :s_cup);
DELETE FROM shop.order_item WHERE sku_id IN (:s_mug, :s_cup);
DELETE FROM shop.orders WHERE user_id LIKE 'api-%';
DELETE FROM shop.cart WHERE user_id LIKE 'api-%' OR user_id LIKE 'guest:api-%';
DELETE FROM shop.sku WHERE id IN (:s_mug, :s_cup, :s_cup_old, :s_old);
DELETE FROM shop.product WHERE id IN (:p_mug, :p_cup, :p_old);

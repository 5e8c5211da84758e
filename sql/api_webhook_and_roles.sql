--
-- Schema shop_api, the webhook endpoints and the API roles (issue 10).
-- shop_api.webhook(json) is PostgREST's endpoint: the raw body as its single
-- unnamed json argument (kept byte for byte), headers from request.headers,
-- the provider from x-shop-provider or the signature header; a refused
-- event answers {"error", "message"} with response.status 400 and records
-- nothing.  shop.shop_api_grant() gives three roles exactly their functions,
-- and the roles can do exactly that.
-- Hermetic: own product, SKU (APIW-*), users (apiw-*), provider, roles
-- (api_t_*); all removed at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES ('apiw mug', 700, 'EUR') RETURNING id AS p_mug \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:p_mug, 'APIW-MUG', 4) RETURNING id AS s_mug \gset
SELECT shop.shop_set_provider('mock-apiw', 'mock',
	'whsec_' || encode(convert_to('api webhook test secret, 32 bytes', 'UTF8'), 'base64')) IS NOT NULL AS registered;
SELECT id AS o1 FROM shop.shop_buy_now('apiw-alice', format('[{"sku_id": %s, "qty": 1}]', :s_mug)::jsonb) \gset
SELECT id AS o2 FROM shop.shop_buy_now('apiw-alice', format('[{"sku_id": %s, "qty": 1}]', :s_mug)::jsonb) \gset

-- A paid event for o1: body as the provider sends it (its own spacing),
-- headers signed over exactly these bytes.
SELECT format('{"type":"payment.succeeded",  "data":{"order_id":"%s","amount":700,"currency":"EUR","payment_id":"pay_apiw_1"}}', :o1) AS body1 \gset
SELECT shop.shop_sign_mock('mock-apiw', 'evt-apiw-1', :'body1') AS sig1 \gset

-- webhook(json): the provider named by x-shop-provider (as PostgREST
-- lowercases header names); the body reaches the core byte for byte
BEGIN;
SELECT set_config('request.headers',
	(:'sig1'::jsonb || '{"x-shop-provider": "mock-apiw", "content-type": "application/json"}')::text, true) IS NOT NULL AS set;
SELECT r - 'order_id' AS result, (r ->> 'order_id')::bigint = :o1 AS its_order
  FROM shop_api.webhook(:'body1'::json) r;
SELECT coalesce(current_setting('response.status', true), '') AS response_status;
COMMIT;
SELECT status, external_payment_id FROM shop.orders WHERE id = :o1;
-- the same event again: duplicate (200)
BEGIN;
SELECT set_config('request.headers', (:'sig1'::jsonb || '{"x-shop-provider": "mock-apiw"}')::text, true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body1'::json) ->> 'result' AS again;
COMMIT;

-- Forged: the same event for o2 re-serialised, a tampered body, a wrong
-- secret's signature.  Each answers 400 with the error, records nothing and
-- changes no order.
SELECT format('{"type":"payment.succeeded","data":{"order_id":"%s","amount":700,"currency":"EUR","payment_id":"pay_apiw_2"}}', :o2) AS body2 \gset
SELECT shop.shop_sign_mock('mock-apiw', 'evt-apiw-2', :'body2') AS sig2 \gset
SELECT count(*) AS logged_before FROM shop.payment_log WHERE provider = 'mock-apiw' \gset
BEGIN;
SELECT set_config('request.headers', (:'sig2'::jsonb || '{"x-shop-provider": "mock-apiw"}')::text, true) IS NOT NULL AS set;
-- jsonb would re-serialise the body: the signature no longer matches
SELECT shop_api.webhook((:'body2'::jsonb)::json) AS reserialised;
SELECT current_setting('response.status', true) AS response_status;
SELECT shop_api.webhook(replace(:'body2', '700', '1')::json) AS tampered;
COMMIT;
SELECT shop.shop_set_provider('mock-apiw-other', 'mock',
	'whsec_' || encode(convert_to('another provider''s secret, 32 b', 'UTF8'), 'base64')) IS NOT NULL AS registered;
SELECT shop.shop_sign_mock('mock-apiw-other', 'evt-apiw-2', :'body2') AS sig_other \gset
DELETE FROM shop.payment_provider WHERE name = 'mock-apiw-other';
BEGIN;
SELECT set_config('request.headers', (:'sig_other'::jsonb || '{"x-shop-provider": "mock-apiw"}')::text, true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS wrong_secret;
SELECT current_setting('response.status', true) AS response_status;
COMMIT;
SELECT count(*) - :logged_before AS logged_after_forgeries FROM shop.payment_log WHERE provider = 'mock-apiw';
SELECT status FROM shop.orders WHERE id = :o2;
-- stale (a signature of yesterday): SH012
SELECT shop.shop_sign_mock('mock-apiw', 'evt-apiw-2', :'body2', now() - interval '1 day') AS sig_stale \gset
BEGIN;
SELECT set_config('request.headers', (:'sig_stale'::jsonb || '{"x-shop-provider": "mock-apiw"}')::text, true) IS NOT NULL AS set;
SELECT r ->> 'error' AS stale, r ->> 'message' LIKE 'webhook timestamp is %' AS why FROM shop_api.webhook(:'body2'::json) r;
COMMIT;
-- unknown provider, empty provider, no signature header, no headers at all
BEGIN;
SELECT set_config('request.headers', (:'sig2'::jsonb || '{"x-shop-provider": "no-such-provider"}')::text, true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS unknown_provider;
SELECT set_config('request.headers', (:'sig2'::jsonb || '{"x-shop-provider": ""}')::text, true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS empty_provider;
SELECT set_config('request.headers', '{"content-type": "application/json"}', true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS no_signature;
SELECT set_config('request.headers', '', true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS no_headers;
SELECT set_config('request.headers', (:'sig2'::jsonb || '{"stripe-signature": "t=1,v1=00"}')::text, true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS both_signature_headers;
SELECT set_config('request.headers', '{"stripe-signature": "t=1,v1=00"}', true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS no_stripe_provider;
SELECT current_setting('response.status', true) AS response_status;
COMMIT;
SELECT count(*) - :logged_before AS logged_after_refusals FROM shop.payment_log WHERE provider = 'mock-apiw';

-- Without x-shop-provider: the one provider whose kind signs with
-- webhook-signature (standard or mock) is chosen ...
BEGIN;
SELECT set_config('request.headers', :'sig2', true) IS NOT NULL AS set;
SELECT count(*) AS standard_or_mock_providers FROM shop.payment_provider WHERE kind IN ('standard', 'mock');
SELECT r ->> 'result' AS result, r ->> 'order_status' AS order_status FROM shop_api.webhook(:'body2'::json) r;
ROLLBACK;
-- ... and with two such providers the request is refused (a proxy must name it)
SELECT shop.shop_set_provider('mock-apiw-b', 'standard',
	'whsec_' || encode(convert_to('api webhook test secret, second', 'UTF8'), 'base64')) IS NOT NULL AS registered;
BEGIN;
SELECT set_config('request.headers', :'sig2', true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body2'::json) AS two_providers;
COMMIT;
DELETE FROM shop.payment_provider WHERE name = 'mock-apiw-b';

-- handle_webhook: the core handler for the HTTP daemon; errors propagate as
-- they are (the daemon maps them)
SELECT r ->> 'result' AS result, r ->> 'order_status' AS order_status
  FROM shop_api.handle_webhook('mock-apiw', :'sig2', :'body2') r;
SELECT pg_temp.outcome(format('SELECT shop_api.handle_webhook(%L, %L, %L)', 'mock-apiw', :'sig2', replace(:'body2', '700', '1')));
SELECT pg_temp.outcome(format('SELECT shop_api.handle_webhook(%L, %L, %L)', 'nope', :'sig2', :'body2'));
SELECT status FROM shop.orders WHERE id = :o2;

-- Roles -----------------------------------------------------------------------------

CREATE ROLE api_t_anon NOLOGIN;
CREATE ROLE api_t_customer NOLOGIN;
CREATE ROLE api_t_webhook NOLOGIN;
CREATE ROLE api_t_login LOGIN;
-- refused: unknown roles (PUBLIC is no role), NULL
SELECT pg_temp.outcome('SELECT shop.shop_api_grant(''api_t_anon'', ''api_t_nobody'', ''api_t_webhook'')');
SELECT pg_temp.outcome('SELECT shop.shop_api_grant(''public'', ''api_t_customer'', ''api_t_webhook'')');
SELECT pg_temp.outcome('SELECT shop.shop_api_grant(''api_t_anon'', ''api_t_customer'', NULL)');
-- a stale extra right the grant takes away (exact rights, not just more)
GRANT USAGE ON SCHEMA shop_api TO api_t_anon;
GRANT EXECUTE ON FUNCTION shop_api.cart() TO api_t_anon;
SELECT shop.shop_api_grant('api_t_anon', 'api_t_customer', 'api_t_webhook');
-- idempotent: the second call leaves the same rights
SELECT shop.shop_api_grant('api_t_anon', 'api_t_customer', 'api_t_webhook');
SELECT r.rolname AS role, string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text) AS may_execute
  FROM pg_roles r CROSS JOIN pg_proc p
 WHERE r.rolname IN ('api_t_anon', 'api_t_customer', 'api_t_webhook')
   AND p.pronamespace IN ('shop'::regnamespace, 'shop_api'::regnamespace)
   AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
 GROUP BY r.rolname ORDER BY r.rolname;
SELECT r.rolname AS role, has_schema_privilege(r.oid, 'shop_api', 'USAGE') AS api_usage,
	   has_schema_privilege(r.oid, 'shop_api', 'CREATE') AS api_create,
	   has_schema_privilege(r.oid, 'shop', 'USAGE') AS shop_usage
  FROM pg_roles r WHERE r.rolname IN ('api_t_anon', 'api_t_customer', 'api_t_webhook') ORDER BY 1;
-- a user role that can log in could set its own claims: warned.  A role
-- no longer named keeps what it was given (revoke that by hand).
SELECT shop.shop_api_grant('api_t_anon', 'api_t_login', 'api_t_webhook');
SELECT shop.shop_api_grant('api_t_anon', 'api_t_customer', 'api_t_webhook');
SELECT has_function_privilege('api_t_login', 'shop_api.cart()', 'EXECUTE') AS login_role_keeps_its_rights;
SELECT shop.shop_api_grant('api_t_login', 'api_t_customer', 'api_t_webhook');
SELECT shop.shop_api_grant('api_t_anon', 'api_t_customer', 'api_t_webhook');
SELECT has_function_privilege('api_t_login', 'shop_api.products()', 'EXECUTE') AS login_role_still_anon;

-- anon: the catalog and PostgREST's webhook endpoint; nothing of a shopper's
SET ROLE api_t_anon;
SELECT count(*) > 0 AS sees_products FROM shop_api.products() WHERE sku_code = 'APIW-MUG';
SELECT pg_temp.outcome(format('SELECT qty FROM shop_api.cart_add(%s, 1)', :s_mug));
SELECT pg_temp.outcome('SELECT count(*) FROM shop_api.cart()');
SELECT pg_temp.outcome('SELECT count(*) FROM shop_api.orders()');
SELECT pg_temp.outcome('SELECT shop_api.current_user_id()');
SELECT pg_temp.outcome(format('SELECT shop_api.handle_webhook(%L, %L, %L)', 'mock-apiw', :'sig1', :'body1'));
SELECT pg_temp.outcome('SELECT count(*) FROM shop.sku');
SELECT pg_temp.outcome('SELECT count(*) FROM shop.shop_cart(''apiw-alice'')');
BEGIN;
SELECT set_config('request.headers', (:'sig1'::jsonb || '{"x-shop-provider": "mock-apiw"}')::text, true) IS NOT NULL AS set;
SELECT shop_api.webhook(:'body1'::json) ->> 'result' AS anon_webhook;
COMMIT;
RESET ROLE;

-- customer: everything a shopper does, for the sub only; not the webhook
-- handler, not the core
SET ROLE api_t_customer;
SET request.jwt.claims = '{"sub": "apiw-alice", "role": "api_t_customer"}';
SELECT shop_api.current_user_id();
SELECT qty FROM shop_api.cart_add(:s_mug, 1);
SELECT sku_code, qty FROM shop_api.cart();
SELECT status, amount, currency FROM shop_api.create_order();
SELECT status, status_reason, amount FROM shop_api.orders();
SELECT pg_temp.outcome(format('SELECT shop_api.handle_webhook(%L, %L, %L)', 'mock-apiw', :'sig1', :'body1'));
SELECT pg_temp.outcome('SELECT count(*) FROM shop.orders');
SELECT pg_temp.outcome('SELECT count(*) FROM shop.shop_cart(''apiw-alice'')');
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_confirm_paid(%s, ''pay-forged'')', :o2));
SELECT pg_temp.outcome('SELECT shop.shop_api_grant(''api_t_anon'', ''api_t_customer'', ''api_t_webhook'')');
RESET request.jwt.claims;
RESET ROLE;

-- webhook role: the two handlers only
SET ROLE api_t_webhook;
SELECT pg_temp.outcome(format('SELECT shop_api.handle_webhook(%L, %L, %L) ->> ''result''', 'mock-apiw', :'sig1', :'body1'));
SELECT pg_temp.outcome('SELECT count(*) FROM shop_api.products()');
SELECT pg_temp.outcome('SELECT count(*) FROM shop_api.cart()');
SELECT pg_temp.outcome('SELECT count(*) FROM shop.payment_log');
SELECT pg_temp.outcome(format('SELECT shop.shop_sign_mock(%L, %L, %L)', 'mock-apiw', 'evt-forged', :'body2'));
RESET ROLE;

-- books balance for this file's objects
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN ('sku ' || :s_mug, 'user apiw-alice')
	OR subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'apiw-%');

-- clean up
DROP OWNED BY api_t_anon, api_t_customer, api_t_webhook, api_t_login;
DROP ROLE api_t_anon, api_t_customer, api_t_webhook, api_t_login;
DELETE FROM shop.order_review WHERE provider = 'mock-apiw';
DELETE FROM shop.payment_log WHERE provider = 'mock-apiw';
DELETE FROM shop.payment_provider WHERE name = 'mock-apiw';
DELETE FROM shop.stock_reservation WHERE sku_id = :s_mug;
DELETE FROM shop.order_item WHERE sku_id = :s_mug;
DELETE FROM shop.orders WHERE user_id LIKE 'apiw-%';
DELETE FROM shop.cart WHERE user_id LIKE 'apiw-%';
DELETE FROM shop.sku WHERE id = :s_mug;
DELETE FROM shop.product WHERE id = :p_mug;

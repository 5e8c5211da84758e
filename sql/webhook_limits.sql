--
-- What a webhook body may cost: a size limit checked before any HMAC or
-- parsing (shop.webhook_max_body_bytes), and bodies that are authentic but
-- unreadable (too deeply nested) are the body's fault, SH014, never a
-- transient error the provider would retry forever.  Nothing is recorded.
-- Hermetic: own provider, removed at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all
CREATE FUNCTION wl_send(body text) RETURNS text
LANGUAGE sql AS $$
	SELECT pg_temp.outcome(format('SELECT shop.shop_handle_webhook(%L, %L, %L) ->> %L', 'mock-wl',
						shop.shop_sign_mock('mock-wl', 'wl-' || md5(body), body), body, 'result'))
$$;

SELECT shop.shop_set_provider('mock-wl', 'mock',
	'whsec_' || encode(convert_to('webhook limits test secret 32by', 'UTF8'), 'base64')) IS NOT NULL AS registered;

SHOW shop.webhook_max_body_bytes;
-- a small readable event goes through (control)
SELECT wl_send('{"type": "payment.other"}');
-- just under and over a lowered limit
SET shop.webhook_max_body_bytes = 2048;
SELECT wl_send(format('{"type": "payment.other", "pad": "%s"}', repeat('x', 2000)));
SELECT wl_send(format('{"type": "payment.other", "pad": "%s"}', repeat('x', 2100)));
-- over the limit, the signature is not even looked at
SELECT pg_temp.outcome(format('SELECT shop.shop_handle_webhook(%L, %L, %L)::text', 'mock-wl', '{}', repeat('y', 4096)));
RESET shop.webhook_max_body_bytes;
-- authentic, 100,000 levels deep: too deep for the parser's stack (54001 inside)
SELECT wl_send(repeat('[', 100000) || repeat(']', 100000));
SELECT wl_send('{"a": ' || repeat('{"a": ', 100000) || '1' || repeat('}', 100000) || '}');
-- the limit's bounds, and it is a superuser setting
SELECT pg_temp.outcome($$SELECT set_config('shop.webhook_max_body_bytes', '100', false)$$);
SELECT setting, unit, context FROM pg_settings WHERE name = 'shop.webhook_max_body_bytes';
-- only the readable ones were recorded
SELECT event_type, result FROM shop.payment_log WHERE provider = 'mock-wl' ORDER BY id;

DELETE FROM shop.payment_log WHERE provider = 'mock-wl';
DELETE FROM shop.payment_provider WHERE name = 'mock-wl';
DROP FUNCTION wl_send(text);

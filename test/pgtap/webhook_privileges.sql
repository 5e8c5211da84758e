-- Webhook objects are closed to PUBLIC; functions are SECURITY DEFINER with
-- a pinned search_path; an application role granted only EXECUTE on the
-- handler can process events but cannot read secrets or sign mock events.
BEGIN;
SELECT plan(16);

SELECT ok(NOT has_function_privilege('public', 'shop.shop_handle_webhook(text, jsonb, text)', 'EXECUTE'),
	'PUBLIC cannot execute shop_handle_webhook');
SELECT ok(NOT has_function_privilege('public', 'shop.shop_set_provider(text, text, text, jsonb)', 'EXECUTE'),
	'PUBLIC cannot execute shop_set_provider');
SELECT ok(NOT has_function_privilege('public', 'shop.shop_sign_mock(text, text, text, timestamptz)', 'EXECUTE'),
	'PUBLIC cannot execute shop_sign_mock');
SELECT ok(NOT has_function_privilege('public', 'shop.shop_confirm_paid(bigint, text, bigint, text)', 'EXECUTE'),
	'PUBLIC cannot execute the checked shop_confirm_paid');
SELECT is_empty($$
	SELECT c.relname FROM pg_class c
	 WHERE c.relnamespace = 'shop'::regnamespace
	   AND c.relname IN ('payment_provider', 'payment_provider_secret', 'order_review',
						 'webhook_events', 'unmatched_payments', 'orders_needing_review',
						 'payment_providers', 'payment_log')
	   AND (has_table_privilege('public', c.oid, 'SELECT')
			OR has_table_privilege('public', c.oid, 'INSERT')
			OR has_table_privilege('public', c.oid, 'UPDATE')
			OR has_table_privilege('public', c.oid, 'DELETE'))$$,
	'PUBLIC cannot read or write the webhook tables and views');
SELECT is_empty($$
	SELECT c.relname FROM (SELECT oid, relname FROM pg_class
							 WHERE relnamespace = 'shop'::regnamespace AND relkind = 'S'
							OFFSET 0) c
	 WHERE has_sequence_privilege('public', c.oid, 'USAGE')$$,
	'PUBLIC cannot use the sequences');
SELECT is_empty($$
	SELECT p.oid::regprocedure FROM pg_proc p
	 WHERE p.pronamespace = 'shop'::regnamespace
	   AND p.proname IN ('shop_handle_webhook', 'shop_set_provider', 'shop_sign_mock', 'shop_confirm_paid')
	   AND NOT (p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'])$$,
	'webhook functions are SECURITY DEFINER with search_path pinned');

-- An application role with only USAGE on the schema and EXECUTE on the handler.
SET LOCAL client_min_messages = warning;
DO $$
BEGIN
	PERFORM shop.shop_set_provider('tap-priv', 'mock',
		'whsec_' || encode(convert_to('pgtap privilege test secret', 'UTF8'), 'base64'));
END
$$;
CREATE TEMP TABLE tap_headers AS
	SELECT shop.shop_sign_mock('tap-priv', 'priv-1', '{"type": "payment.succeeded"}') AS h;
GRANT SELECT ON tap_headers TO PUBLIC;
CREATE ROLE tap_wh_app;
GRANT USAGE ON SCHEMA shop TO tap_wh_app;
GRANT EXECUTE ON FUNCTION shop.shop_handle_webhook(text, jsonb, text) TO tap_wh_app;
SET LOCAL ROLE tap_wh_app;

SELECT is((SELECT shop.shop_handle_webhook('tap-priv', h, '{"type": "payment.succeeded"}')->>'result' FROM tap_headers),
	'unmatched', 'the application role processes an event without any table privilege');
SELECT throws_ok($$SELECT * FROM shop.payment_provider_secret$$, '42501', NULL,
	'the application role cannot read the secrets');
SELECT throws_ok($$SELECT * FROM shop.payment_log$$, '42501', NULL,
	'the application role cannot read the payment log');
SELECT throws_ok($$SELECT * FROM shop.orders_needing_review$$, '42501', NULL,
	'the application role cannot read the review view');
SELECT throws_ok($$SELECT shop.shop_sign_mock('tap-priv', 'x', '{}')$$, '42501', NULL,
	'the application role cannot sign mock events');
SELECT throws_ok($$SELECT shop.shop_set_provider('tap-priv', 'mock', 'whsec_x')$$, '42501', NULL,
	'the application role cannot change providers');
SELECT throws_ok($$SELECT shop.shop_confirm_paid(1, 'x', 1, 'KRW')$$, '42501', NULL,
	'the application role cannot confirm payments without a grant');
RESET ROLE;

SELECT is((SELECT count(*)::int FROM shop.payment_log WHERE provider = 'tap-priv'), 1,
	'the event was recorded once');
-- GRANT to the extension's objects does not leak secrets through a view
SELECT is_empty($$
	SELECT attname FROM pg_attribute
	 WHERE attrelid IN ('shop.payment_providers'::regclass, 'shop.webhook_events'::regclass,
						'shop.unmatched_payments'::regclass, 'shop.orders_needing_review'::regclass)
	   AND attname LIKE '%secret' AND attnum > 0$$,
	'no DBA view has a secret column');

SELECT * FROM finish();
ROLLBACK;

-- api_schema.sql: schema shop_api as issue #10 specifies it.
--
-- The schema and exactly its functions with their documented signatures
-- (PostgREST calls them with named arguments, so names are the contract),
-- volatility (PostgREST runs STABLE ones in read-only transactions and
-- allows them on GET), single results where PostgREST must answer a JSON
-- object, the single unnamed json parameter of the webhook endpoint, every
-- function SECURITY DEFINER with the pinned search_path and a comment,
-- nothing for PUBLIC, nothing but functions in the schema, and the exact
-- rights shop.shop_api_grant() leaves three roles with.
-- Runs in one transaction that is rolled back: nothing persists.
BEGIN;
SELECT plan(43);

SELECT has_schema('shop_api', 'the extension creates schema shop_api');
SELECT is((SELECT count(*) FROM pg_catalog.pg_depend d
			WHERE d.classid = 'pg_namespace'::regclass AND d.objid = 'shop_api'::regnamespace
			  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
			  AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'shop')),
	1::bigint, 'schema shop_api belongs to extension shop (DROP EXTENSION removes it)');
SELECT isnt(obj_description('shop_api'::regnamespace, 'pg_namespace'), NULL,
	'schema shop_api has a comment');

-- Functions ---------------------------------------------------------------------

SELECT functions_are('shop_api',
	ARRAY['current_user_id', 'products', 'health', 'cart', 'cart_add', 'cart_set_qty', 'cart_remove',
		  'cart_merge', 'create_order', 'buy_now', 'orders', 'order', 'cancel_order',
		  'start_payment', 'confirm_payment', 'handle_webhook', 'webhook',
		  -- the operator page (issue 11)
		  'ops_stock', 'ops_adjust_stock', 'ops_reservations', 'ops_expire_now', 'ops_payments',
		  'ops_outbox', 'ops_redeliver', 'ops_health', 'ops_orders_per_minute',
		  -- refunds by lines (issue 13)
		  'ops_refund',
		  -- shipping and fulfilment (issue 13)
		  'shipping_methods', 'set_shipping', 'ops_warehouse_queue', 'ops_ship', 'ops_mark_delivered',
		  -- free orders (0.2)
		  'confirm_free'],
	'schema shop_api has exactly the functions of issues #10 (and confirm_payment for confirm-style providers), #11 and #13 (ops_refund; shipping and fulfilment), and confirm_free');
SELECT is((SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = 'shop_api'::regnamespace),
	33::bigint, 'schema shop_api has 33 functions, no overloads (the checks below are not vacuous)');
SELECT set_eq($$
	SELECT p.proname::text, pg_catalog.pg_get_function_arguments(p.oid),
		   pg_catalog.pg_get_function_result(p.oid)
	  FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace$$,
	$$VALUES
	('current_user_id', '', 'text'),
	('products', '', 'TABLE(product_id bigint, product_name text, sku_id bigint, sku_code text, price bigint, currency text, available bigint)'),
	('health', '', 'jsonb'),
	('cart', '', 'TABLE(sku_id bigint, sku_code text, product_name text, unit_price bigint, currency text, qty integer, line_total bigint, cart_total bigint)'),
	('cart_add', 'sku_id bigint, qty integer', 'shop.cart_line'),
	('cart_set_qty', 'sku_id bigint, qty integer', 'shop.cart_line'),
	('cart_remove', 'sku_id bigint', 'boolean'),
	('cart_merge', 'guest_sub text', 'integer'),
	('create_order', 'idempotency_key text DEFAULT NULL::text', 'shop.order_summary'),
	('buy_now', 'items jsonb, idempotency_key text DEFAULT NULL::text', 'shop.order_summary'),
	('orders', '', 'TABLE(order_id bigint, status text, status_reason text, amount bigint, currency text, created_at timestamp with time zone, expires_at timestamp with time zone)'),
	('order', 'order_id bigint', 'jsonb'),
	('cancel_order', 'order_id bigint', 'shop.order_summary'),
	('start_payment', 'order_id bigint, provider text, success_url text, cancel_url text', 'jsonb'),
	('confirm_payment', 'order_id bigint, provider text, payment_key text, amount bigint', 'jsonb'),
	('confirm_free', 'order_id bigint', 'shop.order_summary'),
	('handle_webhook', 'provider text, headers jsonb, body text', 'jsonb'),
	('webhook', 'json', 'jsonb'),
	('ops_stock', '', 'SETOF shop.sku_stock'),
	('ops_adjust_stock', 'sku_id bigint, delta integer, reason text', 'shop.stock_level'),
	('ops_reservations', '', 'SETOF shop.expiring_orders'),
	('ops_expire_now', '', 'integer'),
	('ops_payments', '', 'jsonb'),
	('ops_outbox', '', 'jsonb'),
	('ops_redeliver', 'outbox_id bigint', 'boolean'),
	('ops_health', '', 'SETOF shop.invariant_violation'),
	('ops_orders_per_minute', '', 'TABLE(minute timestamp with time zone, created bigint, paid bigint)'),
	('ops_refund', 'order_id bigint, reason text, lines jsonb DEFAULT NULL::jsonb, restock text DEFAULT ''restock''::text, amount bigint DEFAULT NULL::bigint', 'jsonb'),
	('shipping_methods', '', 'TABLE(code text, name text, currency text, cost bigint, free_over bigint, countries text[])'),
	('set_shipping', 'order_id bigint, method text, address jsonb', 'shop.order_summary'),
	('ops_warehouse_queue', '', 'SETOF shop.warehouse_queue'),
	('ops_ship', 'order_id bigint, carrier text, tracking text', 'shop.fulfilment_summary'),
	('ops_mark_delivered', 'order_id bigint', 'shop.fulfilment_summary')
	$$,
	'every shop_api function has the documented argument names, defaults and result');
-- PostgREST passes the raw body only to a function with one unnamed json
-- parameter (Plan.hs, hasSingleUnnamedParam)
SELECT is((SELECT pronargs::int || ' ' || format_type(proargtypes[0], NULL) || ' names ' || coalesce(proargnames::text, 'none')
			 FROM pg_catalog.pg_proc WHERE oid = 'shop_api.webhook(json)'::regprocedure),
	'1 json names none', 'shop_api.webhook has a single unnamed json parameter');
-- a single composite is a JSON object in PostgREST, a set an array
SELECT is_empty($$
	SELECT p.proname FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace
	   AND p.proretset IS DISTINCT FROM (p.proname IN ('products', 'cart', 'orders', 'ops_stock',
												   'ops_reservations', 'ops_health', 'ops_orders_per_minute',
												   'shipping_methods', 'ops_warehouse_queue'))$$,
	'only products, cart, orders, ops_stock, ops_reservations, ops_health, ops_orders_per_minute, shipping_methods and ops_warehouse_queue return sets; every other function one value');
SELECT set_eq($$
	SELECT p.proname::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace AND p.provolatile = 's'$$,
	ARRAY['current_user_id', 'products', 'health', 'cart', 'orders', 'order', 'ops_stock', 'ops_reservations',
		  'ops_payments', 'ops_outbox', 'ops_health', 'ops_orders_per_minute',
		  'shipping_methods', 'ops_warehouse_queue'],
	'the reads are STABLE (GET under PostgREST, read-only transaction)');
SELECT set_eq($$
	SELECT p.proname::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace AND p.provolatile = 'v'$$,
	ARRAY['cart_add', 'cart_set_qty', 'cart_remove', 'cart_merge', 'create_order', 'buy_now',
		  'cancel_order', 'start_payment', 'confirm_payment', 'confirm_free', 'handle_webhook', 'webhook',
		  'ops_adjust_stock', 'ops_expire_now', 'ops_redeliver', 'ops_refund',
		  'set_shipping', 'ops_ship', 'ops_mark_delivered'],
	'every function that writes is VOLATILE (POST under PostgREST, read-write transaction)');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace AND NOT p.prosecdef$$,
	'every function in schema shop_api is SECURITY DEFINER');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text, p.proconfig::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace
	   AND p.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']
	   AND NOT (p.proname IN ('handle_webhook', 'webhook')
				AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp',
										'log_min_error_statement=panic'])$$,
	'every function in schema shop_api has exactly SET search_path = pg_catalog, pg_temp (and log_min_error_statement = panic where it sees a raw body)');
SELECT is((SELECT proconfig FROM pg_catalog.pg_proc WHERE oid = 'shop_api.webhook(json)'::regprocedure),
	ARRAY['search_path=pg_catalog, pg_temp', 'log_min_error_statement=panic'],
	'shop_api.webhook keeps a failing statement (the raw body) out of the server log');
SELECT is_definer('shop_api', 'cart_merge', ARRAY['text'], 'cart_merge is SECURITY DEFINER');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop_api'::regnamespace
	   AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''$$,
	'every function in schema shop_api has a comment');
-- no function takes the user: no argument is named like one
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p, unnest(p.proargnames) a(name)
	 WHERE p.pronamespace = 'shop_api'::regnamespace
	   AND a.name IN ('user_id', 'user', 'sub', 'username')$$,
	'no shop_api function takes the user as an argument');

-- Nothing but functions: PostgREST would publish any table, view or
-- sequence of the schema
SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
	 WHERE c.relnamespace = 'shop_api'::regnamespace$$,
	'schema shop_api has no tables, views, sequences or composite types');

-- PUBLIC has nothing ------------------------------------------------------------

SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_catalog.pg_proc p,
		   aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
	 WHERE p.pronamespace = 'shop_api'::regnamespace AND a.grantee = 0$$,
	'PUBLIC has no EXECUTE on any shop_api function');
SELECT is_empty($$
	SELECT a.privilege_type
	  FROM pg_catalog.pg_namespace n,
		   aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
	 WHERE n.nspname = 'shop_api' AND a.grantee = 0$$,
	'PUBLIC has no USAGE (nor CREATE) on schema shop_api');
SELECT ok(NOT has_function_privilege('public', 'shop.shop_api_grant(name, name, name)', 'EXECUTE'),
	'PUBLIC cannot call shop.shop_api_grant');
SELECT ok(NOT has_function_privilege('public', 'shop.shop_api_grant(name, name, name, name)', 'EXECUTE'),
	'PUBLIC cannot call shop.shop_api_grant with an operator role');

-- shop.shop_api_grant(): exactly these rights ------------------------------------

CREATE ROLE tap_api_anon NOLOGIN;
CREATE ROLE tap_api_customer NOLOGIN;
CREATE ROLE tap_api_webhook NOLOGIN;
SELECT lives_ok($$SELECT shop.shop_api_grant('tap_api_anon', 'tap_api_customer', 'tap_api_webhook')$$,
	'shop_api_grant runs for three existing roles');
SELECT lives_ok($$SELECT shop.shop_api_grant('tap_api_anon', 'tap_api_customer', 'tap_api_webhook')$$,
	'shop_api_grant runs again (idempotent)');
SELECT set_eq($$
	SELECT r.rolname::text, p.oid::regprocedure::text
	  FROM pg_catalog.pg_roles r, pg_catalog.pg_proc p
	 WHERE r.rolname IN ('tap_api_anon', 'tap_api_customer', 'tap_api_webhook')
	   AND p.pronamespace IN ('shop'::regnamespace, 'shop_api'::regnamespace)
	   AND has_function_privilege(r.oid, p.oid, 'EXECUTE')$$,
	$$VALUES
	('tap_api_anon', 'shop_api.products()'),
	('tap_api_anon', 'shop_api.health()'),
	('tap_api_anon', 'shop_api.webhook(json)'),
	('tap_api_anon', 'shop_api.shipping_methods()'),
	('tap_api_customer', 'shop_api.current_user_id()'),
	('tap_api_customer', 'shop_api.products()'),
	('tap_api_customer', 'shop_api.cart()'),
	('tap_api_customer', 'shop_api.cart_add(bigint,integer)'),
	('tap_api_customer', 'shop_api.cart_set_qty(bigint,integer)'),
	('tap_api_customer', 'shop_api.cart_remove(bigint)'),
	('tap_api_customer', 'shop_api.cart_merge(text)'),
	('tap_api_customer', 'shop_api.create_order(text)'),
	('tap_api_customer', 'shop_api.buy_now(jsonb,text)'),
	('tap_api_customer', 'shop_api.orders()'),
	('tap_api_customer', 'shop_api."order"(bigint)'),
	('tap_api_customer', 'shop_api.cancel_order(bigint)'),
	('tap_api_customer', 'shop_api.start_payment(bigint,text,text,text)'),
	('tap_api_customer', 'shop_api.confirm_payment(bigint,text,text,bigint)'),
	('tap_api_customer', 'shop_api.confirm_free(bigint)'),
	('tap_api_customer', 'shop_api.shipping_methods()'),
	('tap_api_customer', 'shop_api.set_shipping(bigint,text,jsonb)'),
	('tap_api_webhook', 'shop_api.handle_webhook(text,jsonb,text)'),
	('tap_api_webhook', 'shop_api.webhook(json)')
	$$,
	'after shop_api_grant the roles may execute exactly their functions, none of schema shop');
SELECT set_eq($$
	SELECT r.rolname::text, s.nsp, p.priv
	  FROM pg_catalog.pg_roles r, unnest(ARRAY['shop', 'shop_api']) s(nsp), unnest(ARRAY['USAGE', 'CREATE']) p(priv)
	 WHERE r.rolname IN ('tap_api_anon', 'tap_api_customer', 'tap_api_webhook')
	   AND has_schema_privilege(r.oid, s.nsp, p.priv)$$,
	$$VALUES ('tap_api_anon', 'shop_api', 'USAGE'), ('tap_api_customer', 'shop_api', 'USAGE'),
			 ('tap_api_webhook', 'shop_api', 'USAGE')$$,
	'the roles get USAGE on shop_api only: nothing on schema shop, no CREATE');
SELECT is_empty($$
	SELECT r.rolname, c.oid::regclass
	  FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
	 WHERE r.rolname IN ('tap_api_anon', 'tap_api_customer', 'tap_api_webhook')
	   AND c.relnamespace IN ('shop'::regnamespace, 'shop_api'::regnamespace)
	   AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
	   AND (has_table_privilege(r.oid, c.oid, 'SELECT') OR has_table_privilege(r.oid, c.oid, 'INSERT')
			OR has_table_privilege(r.oid, c.oid, 'UPDATE') OR has_table_privilege(r.oid, c.oid, 'DELETE'))$$,
	'the roles get no table or view privilege');
-- what the grant says is what the server does: a customer with a sub shops,
-- the anonymous role cannot
INSERT INTO shop.product (id, name, price) VALUES (9301, 'api-tap product', 300);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (9301, 9301, 'APITAP-9301', 2);
SET LOCAL ROLE tap_api_customer;
DO $$BEGIN PERFORM set_config('request.jwt.claims', '{"sub": "api-tap-u1"}', true); END$$;
SELECT results_eq($$SELECT sku_id, qty FROM shop_api.cart_add(9301, 2)$$,
	$$VALUES (9301::bigint, 2)$$, 'the customer role adds to its cart through shop_api');
RESET ROLE;
SET LOCAL ROLE tap_api_anon;
SELECT throws_ok($$SELECT shop_api.cart_add(9301, 1)$$, '42501', NULL,
	'the anonymous role cannot call cart_add (permission denied)');
RESET ROLE;
SELECT throws_ok($$SELECT shop.shop_api_grant('tap_api_anon', 'tap_api_nobody', 'tap_api_webhook')$$,
	'42704', NULL, 'shop_api_grant refuses a role that does not exist (the extension creates none)');

-- the operator role (issue 11): the 4-argument overload
CREATE ROLE tap_api_operator NOLOGIN;
SELECT lives_ok($$SELECT shop.shop_api_grant('tap_api_anon', 'tap_api_customer', 'tap_api_webhook', 'tap_api_operator')$$,
	'shop_api_grant with an operator role runs');
SELECT set_eq($$
	SELECT r.rolname::text, p.oid::regprocedure::text
	  FROM pg_catalog.pg_roles r, pg_catalog.pg_proc p
	 WHERE r.rolname IN ('tap_api_anon', 'tap_api_customer', 'tap_api_webhook', 'tap_api_operator')
	   AND p.pronamespace IN ('shop'::regnamespace, 'shop_api'::regnamespace)
	   AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
	   AND (r.rolname = 'tap_api_operator' OR p.proname LIKE 'ops\_%')$$,
	$$VALUES
	('tap_api_operator', 'shop_api.ops_stock()'),
	('tap_api_operator', 'shop_api.ops_adjust_stock(bigint,integer,text)'),
	('tap_api_operator', 'shop_api.ops_reservations()'),
	('tap_api_operator', 'shop_api.ops_expire_now()'),
	('tap_api_operator', 'shop_api.ops_payments()'),
	('tap_api_operator', 'shop_api.ops_outbox()'),
	('tap_api_operator', 'shop_api.ops_redeliver(bigint)'),
	('tap_api_operator', 'shop_api.ops_health()'),
	('tap_api_operator', 'shop_api.ops_orders_per_minute()'),
	('tap_api_operator', 'shop_api.ops_refund(bigint,text,jsonb,text,bigint)'),
	('tap_api_operator', 'shop_api.ops_warehouse_queue()'),
	('tap_api_operator', 'shop_api.ops_ship(bigint,text,text)'),
	('tap_api_operator', 'shop_api.ops_mark_delivered(bigint)')
	$$,
	'the operator role may execute exactly the ops_* functions, and no other role any of them');
SET LOCAL ROLE tap_api_operator;
DO $$BEGIN PERFORM set_config('request.jwt.claims', '{"sub": "tap-operator"}', true); END$$;
SELECT results_eq($$SELECT on_hand, reserved FROM shop_api.ops_stock() WHERE sku_id = 9301$$,
	$$VALUES (2::bigint, 0::bigint)$$, 'the operator reads the stock through shop_api');
SELECT throws_ok($$SELECT shop_api.cart_add(9301, 1)$$, '42501', NULL,
	'the operator role cannot shop');
DO $$BEGIN PERFORM set_config('request.jwt.claims', '', true); END$$;
SELECT throws_ok($$SELECT count(*) FROM shop_api.ops_stock()$$, 'PT401', NULL,
	'an operator token without a sub is refused (PT401)');
RESET ROLE;
-- the operator refunds a returned unit by its SKU, back to stock (issue 13):
-- an order of both units of 9301, paid through a signed mock event
SELECT shop.shop_set_provider('tap-api-rf', 'mock', 'whsec_' || encode(convert_to('api tap refund provider secret', 'UTF8'), 'base64')) \g /dev/null
DO $$
DECLARE
	o bigint := (shop.shop_buy_now('api-tap-rf', '[{"sku_id": 9301, "qty": 2}]')).id;
	body text := jsonb_build_object('type', 'payment.succeeded', 'data', jsonb_build_object(
		'order_id', o::text, 'amount', 600, 'currency', 'KRW', 'payment_id', 'pay-api-tap-rf'))::text;
BEGIN
	PERFORM shop.shop_handle_webhook('tap-api-rf', shop.shop_sign_mock('tap-api-rf', 'ev-api-tap-rf', body), body);
END
$$;
SELECT max(id) AS api_rf_order FROM shop.orders WHERE user_id = 'api-tap-rf' \gset
SET LOCAL ROLE tap_api_operator;
DO $$BEGIN PERFORM set_config('request.jwt.claims', '{"sub": "tap-operator"}', true); END$$;
SELECT throws_ok(format('SELECT shop_api.ops_refund(%s, %L, %L)', :api_rf_order, ' ', '[{"sku_id": 9301, "qty": 1}]'),
	'22023', 'a refund needs a reason', 'ops_refund refuses a refund without a reason');
SELECT is((SELECT r->>'state' || ' ' || (r->>'amount') || ' ' || (r->'lines'->0->>'qty') || ' ' || (r->'lines'->0->>'restocked')
			 FROM shop_api.ops_refund(:api_rf_order, 'returned unopened', '[{"sku_id": 9301, "qty": 1}]') r),
	'requested 300 1 true', 'the operator refunds one unit by its SKU with restock: 300 requested');
RESET ROLE;
SELECT results_eq($$SELECT (SELECT on_hand FROM shop.sku WHERE id = 9301),
						   (SELECT reason FROM shop.refund WHERE order_id = (SELECT max(id) FROM shop.orders WHERE user_id = 'api-tap-rf')),
						   (SELECT state FROM shop.order_refund_status WHERE order_id = (SELECT max(id) FROM shop.orders WHERE user_id = 'api-tap-rf'))$$,
	$$VALUES (1::bigint, 'returned unopened (operator tap-operator)', 'partially_refunded')$$,
	'... the unit is back on hand, the refund names the operator, the order is partially_refunded');
-- shipping (issue 13): the customer chooses it for its own order only; the
-- operator ships from the warehouse queue
SELECT code FROM shop.shop_set_shipping_method('tap-std', 'Standard', 'KRW', 3000);
UPDATE shop.sku SET on_hand = 5 WHERE id = 9301;
SELECT id AS tap_other_order FROM shop.shop_buy_now('api-tap-u2', '[{"sku_id": 9301, "qty": 1}]') \gset
SET LOCAL ROLE tap_api_customer;
DO $$BEGIN PERFORM set_config('request.jwt.claims', '{"sub": "api-tap-u1"}', true); END$$;
SELECT results_eq($$SELECT code, cost FROM shop_api.shipping_methods() WHERE code = 'tap-std'$$,
	$$VALUES ('tap-std'::text, 3000::bigint)$$, 'the customer lists the shipping methods');
SELECT results_eq($$SELECT s.status, s.amount FROM shop_api.create_order('tap-k1') o,
		shop_api.set_shipping(o.id, 'tap-std', '{"name": "Kim", "line1": "1 Road", "city": "Seoul",
												  "postal_code": "04524", "country": "KR"}') s$$,
	$$VALUES ('PENDING'::text, 3600::bigint)$$,
	'the customer chooses shipping for its own order: 2 x 300 + 3000');
SELECT throws_ok(format($$SELECT shop_api.set_shipping(%s, 'tap-std', '{"name": "Kim", "line1": "1 Road",
		"city": "Seoul", "postal_code": "04524", "country": "KR"}')$$, :tap_other_order),
	'PT404', NULL, 'another user''s order is PT404, as a missing one');
RESET ROLE;
SELECT id AS tap_order FROM shop.orders WHERE user_id = 'api-tap-u1' AND idempotency_key = 'tap-k1' \gset
SELECT status FROM shop.shop_confirm_paid(:tap_order, 'tap-pay');
SET LOCAL ROLE tap_api_operator;
DO $$BEGIN PERFORM set_config('request.jwt.claims', '{"sub": "tap-operator"}', true); END$$;
SELECT results_eq($$SELECT w.user_id, f.fulfilment_status, f.tracking_no
		FROM shop_api.ops_warehouse_queue() w, shop_api.ops_ship(w.order_id, 'CJ', 'TAP1') f
	   WHERE w.user_id = 'api-tap-u1'$$,
	$$VALUES ('api-tap-u1'::text, 'SHIPPED'::text, 'TAP1'::text)$$,
	'the operator ships an order of the warehouse queue');
SELECT results_eq(format($$SELECT fulfilment_status FROM shop_api.ops_mark_delivered(%s)$$, :tap_order),
	$$VALUES ('DELIVERED'::text)$$, 'the operator marks it delivered');
RESET ROLE;
SELECT throws_ok($$SELECT shop.shop_api_grant('tap_api_anon', 'tap_api_customer', 'tap_api_webhook', 'tap_api_customer')$$,
	'22023', NULL, 'shop_api_grant refuses an operator role that is also the user role');

SELECT * FROM finish();
ROLLBACK;

-- outbox_schema.sql: the outbox and outgoing events as README ("Outgoing
-- events") and src/sql/50_outbox.sql define them.
--
-- Tables, columns and types, defaults, keys, CHECK constraints (and that
-- they really refuse bad rows: states, methods, the lease rule), the
-- indexes the claim and the ordering rule rely on (with their partial
-- predicates), the config-dumped tables and sequences, the views and their
-- columns, every function's signature, SECURITY DEFINER with a pinned
-- search_path, the settings, and privileges: PUBLIC has nothing, the
-- endpoint secrets are readable by their owner only (no view shows them),
-- and the worker's claim is granted to no one.
-- Runs in one transaction that is rolled back: nothing persists.
BEGIN;
SELECT plan(150);
SET LOCAL client_min_messages = error;

-- Helpers (temporary, gone with the transaction) --------------------------

-- Columns of a table or view: name, type, NOT NULL.
CREATE FUNCTION pg_temp.cols(rel regclass)
RETURNS TABLE (col text, typ text, not_null boolean)
LANGUAGE sql STABLE AS $$
	SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- Predicates of the indexes on rel whose key columns are exactly cols (in
-- that order) and whose uniqueness is uniq; '-' stands for "no predicate".
-- NULL when there is no such index.
CREATE FUNCTION pg_temp.index_predicates(rel regclass, cols text[], uniq boolean)
RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT string_agg(coalesce(pg_catalog.pg_get_expr(i.indpred, i.indrelid), '-'), ' | '
					  ORDER BY 1)
	  FROM pg_catalog.pg_index i
	 WHERE i.indrelid = rel
	   AND i.indisunique = uniq
	   AND i.indisvalid
	   AND ARRAY(SELECT a.attname::text
				   FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
				   JOIN pg_catalog.pg_attribute a
					 ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				  WHERE k.ord <= i.indnkeyatts
				  ORDER BY k.ord) = cols
$$;

-- Tables -------------------------------------------------------------------

SELECT has_table('shop', 'event_endpoint', 'table shop.event_endpoint exists');
SELECT has_table('shop', 'event_endpoint_secret', 'table shop.event_endpoint_secret exists');
SELECT has_table('shop', 'event', 'table shop.event exists');
SELECT has_table('shop', 'outbox', 'table shop.outbox exists');
SELECT has_table('shop', 'outbox_attempt', 'table shop.outbox_attempt exists');

SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.event_endpoint')$$,
	$$VALUES ('id', 'bigint', true), ('url', 'text', true), ('event_types', 'text[]', true),
			 ('description', 'text', false), ('enabled', 'boolean', true),
			 ('disabled_reason', 'text', false), ('consecutive_failures', 'integer', true),
			 ('created_at', 'timestamp with time zone', true),
			 ('updated_at', 'timestamp with time zone', true),
			 ('removed_at', 'timestamp with time zone', false)$$,
	'shop.event_endpoint columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.event_endpoint_secret')$$,
	$$VALUES ('id', 'bigint', true), ('endpoint_id', 'bigint', true), ('secret', 'text', true),
			 ('added_at', 'timestamp with time zone', true),
			 ('retires_at', 'timestamp with time zone', false)$$,
	'shop.event_endpoint_secret columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.event')$$,
	$$VALUES ('id', 'bigint', true), ('type', 'text', true), ('order_id', 'bigint', false),
			 ('sku_id', 'bigint', false), ('payload', 'jsonb', true),
			 ('created_at', 'timestamp with time zone', true)$$,
	'shop.event columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.outbox')$$,
	$$VALUES ('id', 'bigint', true), ('endpoint_id', 'bigint', false), ('event_id', 'bigint', false),
			 ('url', 'text', true), ('method', 'text', true), ('headers', 'jsonb', true),
			 ('body', 'text', false), ('idempotency_key', 'text', true),
			 ('ordering_key', 'text', false), ('state', 'text', true),
			 ('attempts', 'integer', true),
			 ('next_attempt_at', 'timestamp with time zone', true),
			 ('claimed_by', 'integer', false),
			 ('lease_until', 'timestamp with time zone', false),
			 ('last_status', 'integer', false), ('last_error', 'text', false),
			 ('queued_at', 'timestamp with time zone', true),
			 ('created_at', 'timestamp with time zone', true),
			 ('updated_at', 'timestamp with time zone', true),
			 ('delivered_at', 'timestamp with time zone', false),
			 -- provider calls (issue #9)
			 ('provider', 'text', false), ('operation', 'text', true),
			 ('subject_id', 'bigint', false)$$,
	'shop.outbox columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.outbox_attempt')$$,
	$$VALUES ('id', 'bigint', true), ('outbox_id', 'bigint', true), ('attempt', 'integer', true),
			 ('started_at', 'timestamp with time zone', true), ('duration_ms', 'integer', true),
			 ('http_status', 'integer', false), ('succeeded', 'boolean', true),
			 ('error', 'text', false), ('response_excerpt', 'text', false)$$,
	'shop.outbox_attempt columns and types');
-- the per-SKU threshold of stock.low: NULL = the setting
SELECT is((SELECT ROW(typ, not_null)::text FROM pg_temp.cols('shop.sku') WHERE col = 'low_stock_threshold'),
	'(integer,f)', 'shop.sku.low_stock_threshold is a nullable integer');
SELECT col_hasnt_default('shop', 'sku', 'low_stock_threshold',
	'shop.sku.low_stock_threshold has no default (NULL: use shop.low_stock_threshold)');

-- Defaults the functions and the worker rely on.
SELECT col_default_is('shop', 'outbox', 'state', 'queued'::text, 'a new outbox row is queued');
SELECT col_default_is('shop', 'outbox', 'method', 'POST'::text, 'the default method is POST');
SELECT col_default_is('shop', 'outbox', 'attempts', 0, 'a new outbox row has no attempts');
SELECT col_default_is('shop', 'outbox', 'next_attempt_at', 'now()', 'a new outbox row is due at once');
SELECT col_default_is('shop', 'event_endpoint', 'enabled', true, 'a new endpoint is enabled');
SELECT col_default_is('shop', 'event_endpoint', 'consecutive_failures', 0, 'a new endpoint has no failures');

-- Keys -------------------------------------------------------------------------

SELECT col_is_pk('shop', 'event_endpoint', 'id', 'shop.event_endpoint primary key is id');
SELECT col_is_pk('shop', 'event_endpoint_secret', 'id', 'shop.event_endpoint_secret primary key is id');
SELECT col_is_pk('shop', 'event', 'id', 'shop.event primary key is id');
SELECT col_is_pk('shop', 'outbox', 'id', 'shop.outbox primary key is id');
SELECT col_is_pk('shop', 'outbox_attempt', 'id', 'shop.outbox_attempt primary key is id');
SELECT fk_ok('shop', 'event_endpoint_secret', 'endpoint_id', 'shop', 'event_endpoint', 'id');
-- event.order_id has no foreign key (one more query in each buyer's
-- transaction that writes an event: src/sql/50_outbox.sql); a trigger
-- refuses what the key refused (the DELETE tests at the end)
SELECT col_isnt_fk('shop', 'event', 'order_id', 'shop.event.order_id has no foreign key');
SELECT fk_ok('shop', 'event', 'sku_id', 'shop', 'sku', 'id');
-- outbox.endpoint_id has no foreign key (its KEY SHARE lock on the one
-- endpoint row made buyers' transactions contend: src/sql/50_outbox.sql);
-- a trigger refuses what the key refused (the DELETE tests at the end)
SELECT col_isnt_fk('shop', 'outbox', 'endpoint_id', 'shop.outbox.endpoint_id has no foreign key');
SELECT trigger_is('shop', 'event_endpoint', 'event_endpoint_delete_guard', 'shop', 'event_endpoint_delete_guard',
	'deleting an endpoint runs shop.event_endpoint_delete_guard()');
SELECT is((SELECT tgtype::int FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'shop.event_endpoint'::regclass AND tgname = 'event_endpoint_delete_guard'),
	1 | 2 | 8, 'event_endpoint_delete_guard runs BEFORE each row a DELETE removes');
SELECT trigger_is('shop', 'event_endpoint', 'event_endpoint_delete_lock', 'shop', 'event_endpoint_delete_guard',
	'a DELETE of endpoints first runs shop.event_endpoint_delete_guard() once (its lock)');
SELECT is((SELECT tgtype::int FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'shop.event_endpoint'::regclass AND tgname = 'event_endpoint_delete_lock'),
	2 | 8, 'event_endpoint_delete_lock runs BEFORE each DELETE statement');
SELECT trigger_is('shop', 'event_endpoint', 'event_endpoint_changed', 'shop', 'event_endpoint_changed',
	'writing endpoints runs shop.event_endpoint_changed()');
SELECT is((SELECT tgtype::int FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'shop.event_endpoint'::regclass AND tgname = 'event_endpoint_changed'),
	4 | 8 | 16 | 32, 'event_endpoint_changed runs AFTER each INSERT, DELETE, UPDATE and TRUNCATE statement');
SELECT is((SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_catalog.pg_trigger t
			 JOIN pg_catalog.pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr)
			WHERE t.tgrelid = 'shop.event_endpoint'::regclass AND t.tgname = 'event_endpoint_changed'),
	ARRAY['event_types', 'removed_at']::name[],
	'event_endpoint_changed runs for UPDATEs of event_types and removed_at (what decides who gets an event)');
SELECT col_isnt_fk('shop', 'outbox', 'event_id', 'shop.outbox.event_id has no foreign key (written with its event)');
SELECT trigger_is('shop', 'event', 'event_delete_guard', 'shop', 'event_delete_guard',
	'deleting events runs shop.event_delete_guard()');
SELECT is((SELECT tgtype::int FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'shop.event'::regclass AND tgname = 'event_delete_guard'),
	8, 'event_delete_guard runs AFTER each DELETE statement');
SELECT trigger_is('shop', 'orders', 'order_event_delete_guard', 'shop', 'event_delete_guard',
	'deleting orders runs shop.event_delete_guard()');
SELECT is((SELECT tgtype::int FROM pg_catalog.pg_trigger
			WHERE tgrelid = 'shop.orders'::regclass AND tgname = 'order_event_delete_guard'),
	8, 'order_event_delete_guard runs AFTER each DELETE statement');
SELECT fk_ok('shop', 'outbox_attempt', 'outbox_id', 'shop', 'outbox', 'id');
-- the ids are generated, never given (GENERATED ALWAYS)
SELECT is_empty($$
	SELECT a.attrelid::regclass::text FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid IN ('shop.event_endpoint'::regclass, 'shop.event_endpoint_secret'::regclass,
						  'shop.event'::regclass, 'shop.outbox'::regclass, 'shop.outbox_attempt'::regclass)
	   AND a.attname = 'id' AND a.attidentity <> 'a'$$,
	'every new table''s id is GENERATED ALWAYS AS IDENTITY');

-- Test rows (ids captured in a temporary table; nothing outlives the
-- transaction).
CREATE TEMP TABLE t (name text PRIMARY KEY, id bigint);
WITH e AS (INSERT INTO shop.event_endpoint (url, event_types)
		   VALUES ('https://schema.example.test/hook', ARRAY['*']) RETURNING id)
INSERT INTO t SELECT 'endpoint', id FROM e;
WITH e AS (INSERT INTO shop.event (type, payload) VALUES ('order.created', '{}') RETURNING id)
INSERT INTO t SELECT 'event', id FROM e;

-- CHECK constraints really refuse bad rows ------------------------------------

SELECT col_has_check('shop', 'outbox', 'state', 'shop.outbox.state has a CHECK');
SELECT col_has_check('shop', 'outbox', 'method', 'shop.outbox.method has a CHECK');
SELECT col_has_check('shop', 'event', 'type', 'shop.event.type has a CHECK');
-- the value lists are one text[] constant each: PostgreSQL reads these
-- CHECKs again in every statement that writes the tables, and an IN list
-- would be an array built again from one node per value each time
SELECT is((SELECT pg_catalog.count(*)::int FROM pg_catalog.pg_constraint
			WHERE conrelid IN ('shop.event'::regclass, 'shop.outbox'::regclass) AND contype = 'c'
			  AND conbin::text LIKE '%{ARRAYEXPR %'), 0,
	'no CHECK of shop.event or shop.outbox builds an array from a list of values');
SELECT set_eq($$SELECT conname::text FROM pg_catalog.pg_constraint
				WHERE conrelid IN ('shop.event'::regclass, 'shop.outbox'::regclass) AND contype = 'c'
				  AND conbin::text LIKE '%:consttype 1009 %'$$,
	ARRAY['event_type_check', 'outbox_method_check', 'outbox_state_check', 'outbox_operation_check'],
	'the type, method, state and operation CHECKs compare with one text[] constant');
SELECT lives_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, state, lease_until)
	SELECT (SELECT id FROM t WHERE name = 'endpoint'), 'https://schema.example.test/hook',
		   'schema-state-' || s, s, CASE WHEN s = 'in_flight' THEN now() + interval '1 minute' END
	  FROM unnest(ARRAY['queued', 'in_flight', 'delivered', 'failed', 'dead']) s$$,
	'the five documented outbox states are accepted');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, state)
	SELECT id, 'https://schema.example.test/hook', 'schema-bad-state', 'sent' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'an unknown outbox state is refused');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, state)
	SELECT id, 'https://schema.example.test/hook', 'schema-bad-state', 'QUEUED' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'outbox states are case-sensitive (QUEUED is not queued)');
SELECT lives_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, method)
	SELECT (SELECT id FROM t WHERE name = 'endpoint'), 'https://schema.example.test/hook',
		   'schema-method-' || m, m
	  FROM unnest(ARRAY['GET', 'POST', 'PUT', 'PATCH', 'DELETE']) m$$,
	'the five documented methods are accepted');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, method)
	SELECT id, 'https://schema.example.test/hook', 'schema-bad-method', 'HEAD' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'an undocumented method is refused (HEAD)');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, method)
	SELECT id, 'https://schema.example.test/hook', 'schema-bad-method', 'post' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'methods are upper case (post is refused)');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, state)
	SELECT id, 'https://schema.example.test/hook', 'schema-no-lease', 'in_flight' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'an in_flight row without a lease is refused');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, state, lease_until)
	SELECT id, 'https://schema.example.test/hook', 'schema-stray-lease', 'queued', now() FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'a lease on a row that is not in flight is refused');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, attempts)
	SELECT id, 'https://schema.example.test/hook', 'schema-neg-attempts', -1 FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'negative attempts are refused');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key, headers)
	SELECT id, 'https://schema.example.test/hook', 'schema-headers', '[]' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'headers that are not a JSON object are refused');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key)
	SELECT id, 'https://schema.example.test/hook', '' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'an empty idempotency key is refused');
SELECT throws_ok($$INSERT INTO shop.outbox (endpoint_id, url, idempotency_key)
	SELECT id, 'https://schema.example.test/hook', 'schema-state-queued' FROM t WHERE name = 'endpoint'$$,
	'23505', NULL, 'an idempotency key is unique per endpoint');
SELECT lives_ok($$INSERT INTO shop.event (type, payload)
	SELECT ty, '{}' FROM unnest(ARRAY['order.created', 'order.paid', 'order.cancelled', 'order.failed',
									  'order.expired', 'order.needs_review', 'stock.low',
									  'order.shipped', 'order.delivered', 'order.refunded',
									  'order.refund_failed']) ty$$,
	'the eleven catalogue event types are accepted (order.shipped, order.delivered, order.refunded and order.refund_failed: issue 13)');
SELECT throws_ok($$INSERT INTO shop.event (type, payload) VALUES ('order.teleported', '{}')$$,
	'23514', NULL, 'an event type outside the catalogue is refused');
SELECT throws_ok($$INSERT INTO shop.event_endpoint (url, event_types) VALUES ('', ARRAY['*'])$$,
	'23514', NULL, 'an empty endpoint URL is refused');
SELECT throws_ok($$INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://schema.example.test/none', '{}')$$,
	'23514', NULL, 'an endpoint without event types is refused');
SELECT throws_ok($$INSERT INTO shop.event_endpoint_secret (endpoint_id, secret)
	SELECT id, '' FROM t WHERE name = 'endpoint'$$,
	'23514', NULL, 'an empty secret is refused');
SELECT throws_ok($$INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at, duration_ms, succeeded)
	SELECT id, 0, now(), 1, true FROM shop.outbox WHERE idempotency_key = 'schema-state-queued'$$,
	'23514', NULL, 'attempt numbers start at 1');
SELECT throws_ok($$INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at, duration_ms, succeeded)
	SELECT id, 1, now(), -1, true FROM shop.outbox WHERE idempotency_key = 'schema-state-queued'$$,
	'23514', NULL, 'a negative duration is refused');

-- Unique and partial indexes ----------------------------------------------------

-- One live endpoint per URL; removed ones are kept for history.
SELECT is(pg_temp.index_predicates('shop.event_endpoint', '{url}', true), '(removed_at IS NULL)',
	'unique index on event_endpoint(url) WHERE removed_at IS NULL');
SELECT throws_ok($$INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://schema.example.test/hook', ARRAY['order.paid'])$$,
	'23505', NULL, 'a second live endpoint with the same URL is refused');
UPDATE shop.event_endpoint SET removed_at = now() WHERE url = 'https://schema.example.test/hook';
SELECT lives_ok($$INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://schema.example.test/hook', ARRAY['order.paid'])$$,
	'the URL of a removed endpoint can be subscribed again');
SELECT is(pg_temp.index_predicates('shop.event_endpoint_secret', '{endpoint_id,secret}', true), '-',
	'unique (endpoint_id, secret): a secret is stored once per endpoint');
SELECT is(pg_temp.index_predicates('shop.outbox', '{endpoint_id,idempotency_key}', true), '-',
	'unique (endpoint_id, idempotency_key): an event is queued once per endpoint');
-- what the claim scans: due rows and expired leases
SELECT has_index('shop', 'outbox', 'outbox_due_idx', ARRAY['next_attempt_at', 'id'],
	'outbox_due_idx on (next_attempt_at, id)');
SELECT is(pg_temp.index_predicates('shop.outbox', '{next_attempt_at,id}', false),
	'(state = ANY (ARRAY[''queued''::text, ''failed''::text]))',
	'outbox_due_idx is partial: WHERE state IN (queued, failed)');
SELECT has_index('shop', 'outbox', 'outbox_lease_idx', ARRAY['lease_until'],
	'outbox_lease_idx on (lease_until)');
SELECT is(pg_temp.index_predicates('shop.outbox', '{lease_until}', false),
	'(state = ''in_flight''::text)',
	'outbox_lease_idx is partial: WHERE state = in_flight');
-- what the per-key ordering rule looks up: older open rows of a key
SELECT has_index('shop', 'outbox', 'outbox_open_key_idx', ARRAY['ordering_key', 'id'],
	'outbox_open_key_idx on (ordering_key, id): the claim''s probe for an older open row of the same key');
SELECT is(pg_temp.index_predicates('shop.outbox', '{ordering_key,id}', false),
	'(state = ANY (ARRAY[''queued''::text, ''in_flight''::text, ''failed''::text]))',
	'outbox_open_key_idx is partial: WHERE state IN (queued, in_flight, failed)');
SELECT is_indexed('shop', 'outbox', ARRAY['endpoint_id', 'state'], 'outbox rows by endpoint and state are indexed (views, unsubscribe)');
SELECT has_index('shop', 'outbox', 'outbox_dead_idx', ARRAY['endpoint_id'],
	'outbox_dead_idx on (endpoint_id): dead rows, for outbox_health and the dead counts');
SELECT is(pg_temp.index_predicates('shop.outbox', '{endpoint_id}', false),
	'(state = ''dead''::text)',
	'outbox_dead_idx is partial: WHERE state = dead (outbox_health reads open and dead rows, not the history)');
SELECT is_indexed('shop', 'outbox', 'event_id', 'outbox rows by event are indexed');
SELECT has_index('shop', 'outbox', 'outbox_delivered_idx', ARRAY['delivered_at'],
	'outbox_delivered_idx on (delivered_at): retention finds the oldest deliveries');
SELECT is(pg_temp.index_predicates('shop.outbox', '{delivered_at}', false),
	'((state = ''delivered''::text) AND (operation = ''event''::text))',
	'outbox_delivered_idx is partial: delivered event deliveries only (provider calls are kept)');
SELECT is_indexed('shop', 'outbox_attempt', 'outbox_id', 'attempts by outbox row are indexed');
SELECT is_indexed('shop', 'event', 'order_id', 'events by order are indexed');
SELECT is(pg_temp.index_predicates('shop.event', '{order_id}', false), '(order_id IS NOT NULL)',
	'events by order: only the events of an order have an entry');
SELECT is_indexed('shop', 'event', 'sku_id', 'events by SKU are indexed');
SELECT is(pg_temp.index_predicates('shop.event', '{sku_id}', false), '(sku_id IS NOT NULL)',
	'events by SKU: only the events of a SKU have an entry');

-- pg_dump keeps the rows and the id sequences ----------------------------------

SELECT set_has($$SELECT c::regclass::text FROM pg_catalog.pg_extension x, unnest(x.extconfig) c
				  WHERE x.extname = 'shop'$$,
	$$VALUES ('shop.event_endpoint'), ('shop.event_endpoint_secret'), ('shop.event'),
			 ('shop.outbox'), ('shop.outbox_attempt'),
			 ('shop.event_endpoint_id_seq'), ('shop.event_endpoint_secret_id_seq'),
			 ('shop.event_id_seq'), ('shop.outbox_id_seq'), ('shop.outbox_attempt_id_seq')$$,
	'the five outbox tables and their five id sequences are config-dumped');
SELECT is_empty($$
	SELECT c::regclass::text, w
	  FROM pg_catalog.pg_extension x, unnest(x.extconfig, x.extcondition) AS u(c, w)
	 WHERE x.extname = 'shop'
	   AND c::regclass::text ~ '^shop\.(event|outbox)'
	   AND w <> ''$$,
	'they are dumped whole (no filter condition)');
SELECT is_empty($$
	SELECT s.oid::regclass::text FROM pg_catalog.pg_class s
	  JOIN pg_catalog.pg_depend d ON d.objid = s.oid AND d.deptype = 'i'
	 WHERE s.relkind = 'S' AND s.relnamespace = 'shop'::regnamespace
	   AND d.refobjid IN ('shop.event_endpoint'::regclass, 'shop.event_endpoint_secret'::regclass,
						  'shop.event'::regclass, 'shop.outbox'::regclass, 'shop.outbox_attempt'::regclass)
	   AND s.oid NOT IN (SELECT unnest(extconfig) FROM pg_catalog.pg_extension WHERE extname = 'shop')$$,
	'no identity sequence of the new tables is left out of the dump');

-- Views ------------------------------------------------------------------------

SELECT has_view('shop', 'outbox_pending', 'view shop.outbox_pending exists');
SELECT has_view('shop', 'outbox_dead', 'view shop.outbox_dead exists');
SELECT has_view('shop', 'outbox_attempts', 'view shop.outbox_attempts exists');
SELECT has_view('shop', 'event_endpoints', 'view shop.event_endpoints exists');
SELECT has_view('shop', 'outbox_health', 'view shop.outbox_health exists');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.outbox_pending')$$,
	$$VALUES ('outbox_id', 'bigint'), ('endpoint_id', 'bigint'), ('url', 'text'),
			 ('event_type', 'text'), ('event_id', 'bigint'), ('state', 'text'),
			 ('attempts', 'integer'), ('next_attempt_at', 'timestamp with time zone'),
			 ('lease_until', 'timestamp with time zone'), ('last_status', 'integer'),
			 ('last_error', 'text'), ('queued_at', 'timestamp with time zone'),
			 ('age', 'interval'), ('provider', 'text'), ('operation', 'text')$$,
	'shop.outbox_pending columns (endpoint, URL, event type, attempts, next attempt, last status and error)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.outbox_dead')$$,
	$$VALUES ('outbox_id', 'bigint'), ('endpoint_id', 'bigint'), ('url', 'text'),
			 ('event_type', 'text'), ('event_id', 'bigint'), ('attempts', 'integer'),
			 ('last_status', 'integer'), ('last_error', 'text'),
			 ('queued_at', 'timestamp with time zone'), ('died_at', 'timestamp with time zone'),
			 ('provider', 'text'), ('operation', 'text')$$,
	'shop.outbox_dead columns (last status and error)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.outbox_attempts')$$,
	$$VALUES ('attempt_id', 'bigint'), ('outbox_id', 'bigint'), ('endpoint_id', 'bigint'),
			 ('url', 'text'), ('attempt', 'integer'), ('started_at', 'timestamp with time zone'),
			 ('duration_ms', 'integer'), ('http_status', 'integer'), ('succeeded', 'boolean'),
			 ('error', 'text'), ('response_excerpt', 'text')$$,
	'shop.outbox_attempts columns (status, duration, error, start of the response)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.event_endpoints')$$,
	$$VALUES ('endpoint_id', 'bigint'), ('url', 'text'), ('event_types', 'text[]'),
			 ('description', 'text'), ('enabled', 'boolean'), ('disabled_reason', 'text'),
			 ('consecutive_failures', 'integer'), ('delivered', 'bigint'), ('backlog', 'bigint'),
			 ('dead', 'bigint'), ('success_rate_24h', 'numeric'),
			 ('last_success_at', 'timestamp with time zone'),
			 ('last_failure_at', 'timestamp with time zone'),
			 ('created_at', 'timestamp with time zone'), ('removed_at', 'timestamp with time zone')$$,
	'shop.event_endpoints columns (health per endpoint, no secret)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.outbox_health')$$,
	$$VALUES ('worker_running', 'boolean'), ('queued', 'bigint'), ('in_flight', 'bigint'),
			 ('failed', 'bigint'), ('dead', 'bigint'), ('oldest_due_age', 'interval')$$,
	'shop.outbox_health columns');
SELECT is((SELECT count(*) FROM shop.outbox_health), 1::bigint, 'shop.outbox_health is one row');
-- no view reads the secrets
SELECT is_empty($$
	SELECT DISTINCT r.ev_class::regclass::text
	  FROM pg_catalog.pg_rewrite r
	  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
	 WHERE d.refobjid = 'shop.event_endpoint_secret'::regclass
	   AND r.ev_class <> 'shop.event_endpoint_secret'::regclass$$,
	'no view is built on shop.event_endpoint_secret');
SELECT is_empty($$
	SELECT c.relname, a.attname FROM pg_catalog.pg_attribute a
	  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
	 WHERE c.oid IN ('shop.outbox_pending'::regclass, 'shop.outbox_dead'::regclass,
					 'shop.outbox_attempts'::regclass, 'shop.event_endpoints'::regclass,
					 'shop.outbox_health'::regclass)
	   AND a.attname LIKE '%secret%' AND a.attnum > 0$$,
	'no outbox view has a secret column');

-- Functions: documented signatures ------------------------------------------

SELECT has_function('shop', 'shop_subscribe', ARRAY['text', 'text[]', 'text', 'text', 'integer']);
SELECT has_function('shop', 'shop_unsubscribe', ARRAY['bigint']);
SELECT has_function('shop', 'shop_enable_endpoint', ARRAY['bigint']);
SELECT has_function('shop', 'shop_redeliver', ARRAY['bigint']);
SELECT has_function('shop', 'shop_redeliver_dead', ARRAY['bigint']);
SELECT has_function('shop', 'outbox_claim', ARRAY['integer', 'interval']);
SELECT has_function('shop', 'outbox_prune', ARRAY['interval', 'integer']);
SELECT set_eq($$
	SELECT p.proname::text, pg_catalog.pg_get_function_arguments(p.oid),
		   pg_catalog.pg_get_function_result(p.oid)
	  FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop'::regnamespace
	   AND p.proname IN ('shop_subscribe', 'shop_unsubscribe', 'shop_enable_endpoint',
						 'shop_redeliver', 'shop_redeliver_dead', 'outbox_claim', 'outbox_prune')$$,
	$$VALUES
	('shop_subscribe', 'url text, event_types text[], secret text DEFAULT NULL::text, description text DEFAULT NULL::text, rotation_grace_seconds integer DEFAULT 86400', 'jsonb'),
	('shop_unsubscribe', 'endpoint_id bigint', 'boolean'),
	('shop_enable_endpoint', 'endpoint_id bigint', 'boolean'),
	('shop_redeliver', 'outbox_id bigint', 'boolean'),
	('shop_redeliver_dead', 'endpoint_id bigint DEFAULT NULL::bigint', 'integer'),
	('outbox_claim', 'max_rows integer, lease interval', 'SETOF shop.outbox'),
	('outbox_prune', 'older_than interval, max_rows integer DEFAULT 1000, OUT deliveries integer, OUT attempts integer, OUT events integer', 'record')
	$$,
	'the outbox functions have the documented arguments, defaults and results (one of each)');
SELECT volatility_is('shop', 'outbox_claim', ARRAY['integer', 'interval'], 'volatile',
	'outbox_claim is VOLATILE');
SELECT function_lang_is('shop', 'outbox_claim', ARRAY['integer', 'interval'], 'plpgsql',
	'outbox_claim is PL/pgSQL (one statement, readable as it runs, planned once per session)');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop'::regnamespace
	   AND p.proname IN ('shop_subscribe', 'shop_unsubscribe', 'shop_enable_endpoint',
						 'shop_redeliver', 'shop_redeliver_dead', 'outbox_claim', 'outbox_prune')
	   AND NOT p.prosecdef$$,
	'the outbox functions are SECURITY DEFINER');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text, p.proconfig::text FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop'::regnamespace
	   AND p.proname IN ('shop_unsubscribe', 'shop_enable_endpoint',
						 'shop_redeliver', 'shop_redeliver_dead')
	   AND p.proconfig IS DISTINCT FROM ARRAY['search_path=pg_catalog, pg_temp']$$,
	'the outbox functions have exactly SET search_path = pg_catalog, pg_temp');
SELECT is((SELECT proconfig FROM pg_catalog.pg_proc
			WHERE oid = to_regprocedure('shop.outbox_claim(integer, interval)')),
	ARRAY['search_path=pg_catalog, pg_temp', 'enable_sort=off', 'enable_bitmapscan=off', 'jit=off',
		  'plan_cache_mode=force_generic_plan'],
	'outbox_claim pins search_path and its plan: the due index walked in order, whatever the statistics (sql/outbox_claim.sql shows why), no JIT, and planned once per session (a generic plan)');
SELECT is((SELECT proconfig FROM pg_catalog.pg_proc
			WHERE oid = to_regprocedure('shop.outbox_prune(interval, integer)')),
	ARRAY['search_path=pg_catalog, pg_temp', 'enable_sort=off', 'enable_bitmapscan=off', 'jit=off'],
	'outbox_prune pins search_path and its plan as the claim does (outbox_delivered_idx walked in order)');
SELECT is((SELECT proconfig FROM pg_catalog.pg_proc
			WHERE oid = to_regprocedure('shop.shop_subscribe(text, text[], text, text, integer)')),
	ARRAY['search_path=pg_catalog, pg_temp', 'log_min_error_statement=panic'],
	'shop_subscribe (it takes a secret) pins search_path and keeps a failing statement out of the log');

-- Settings -------------------------------------------------------------------

-- (shop.database_name exists only when shop is preloaded: it is the
-- worker's, and no worker runs here)
LOAD 'shop';
SELECT set_eq($$SELECT name, context FROM pg_catalog.pg_settings
				 WHERE name IN ('shop.outbox_max_in_flight', 'shop.outbox_timeout',
								'shop.outbox_max_response_bytes', 'shop.outbox_retry_base',
								'shop.outbox_retry_max', 'shop.outbox_max_attempts', 'shop.outbox_max_age',
								'shop.outbox_poll_interval', 'shop.endpoint_max_failures', 'shop.outbox_retention',
								'shop.outbox_batch_delay',
								'shop.outbox_allow_http_loopback', 'shop.low_stock_threshold')$$,
	$$VALUES ('shop.outbox_max_in_flight', 'sighup'),
			 ('shop.outbox_timeout', 'sighup'), ('shop.outbox_max_response_bytes', 'sighup'),
			 ('shop.outbox_retry_base', 'sighup'), ('shop.outbox_retry_max', 'sighup'),
			 ('shop.outbox_max_attempts', 'sighup'), ('shop.outbox_max_age', 'sighup'),
			 ('shop.outbox_poll_interval', 'sighup'), ('shop.endpoint_max_failures', 'sighup'),
			 ('shop.outbox_retention', 'sighup'), ('shop.outbox_batch_delay', 'sighup'),
			 ('shop.outbox_allow_http_loopback', 'sighup'), ('shop.low_stock_threshold', 'superuser')$$,
	'the outbox settings exist with the documented contexts');
SELECT set_eq($$SELECT name, current_setting(name) FROM pg_catalog.pg_settings
				 WHERE name IN ('shop.outbox_max_in_flight', 'shop.outbox_timeout',
								'shop.outbox_max_response_bytes', 'shop.outbox_retry_base',
								'shop.outbox_retry_max', 'shop.outbox_max_attempts', 'shop.outbox_max_age',
								'shop.outbox_poll_interval', 'shop.endpoint_max_failures', 'shop.outbox_retention',
								'shop.outbox_batch_delay',
								'shop.outbox_allow_http_loopback', 'shop.low_stock_threshold')$$,
	$$VALUES ('shop.outbox_max_in_flight', '16'),
			 ('shop.outbox_timeout', '10s'), ('shop.outbox_max_response_bytes', '64kB'),
			 ('shop.outbox_retry_base', '1s'), ('shop.outbox_retry_max', '1h'),
			 ('shop.outbox_max_attempts', '12'), ('shop.outbox_max_age', '3d'),
			 ('shop.outbox_poll_interval', '1s'), ('shop.endpoint_max_failures', '20'),
			 ('shop.outbox_retention', '30d'), ('shop.outbox_batch_delay', '20ms'),
			 ('shop.outbox_allow_http_loopback', 'off'), ('shop.low_stock_threshold', '0')$$,
	'the outbox settings have the documented defaults');
SELECT is((SELECT min_val || '..' || max_val FROM pg_catalog.pg_settings WHERE name = 'shop.outbox_max_in_flight'),
	'1..1000', 'shop.outbox_max_in_flight is 1..1000');
SELECT is((SELECT min_val || '..' || max_val || ' ' || unit FROM pg_catalog.pg_settings WHERE name = 'shop.outbox_batch_delay'),
	'0..1000 ms', 'shop.outbox_batch_delay is 0..1000 ms');
SELECT throws_ok($$SET LOCAL shop.outbox_allow_http_loopback = on$$, '55P02', NULL,
	'shop.outbox_allow_http_loopback cannot be turned on by a session (sighup)');

-- Privileges: PUBLIC has nothing ---------------------------------------------

SELECT is_empty($$
	SELECT c.oid::regclass::text, a.privilege_type
	  FROM pg_catalog.pg_class c,
		   aclexplode(coalesce(c.relacl,
				acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
	 WHERE c.oid IN ('shop.event_endpoint'::regclass, 'shop.event_endpoint_secret'::regclass,
					 'shop.event'::regclass, 'shop.outbox'::regclass, 'shop.outbox_attempt'::regclass,
					 'shop.event_endpoint_id_seq'::regclass, 'shop.event_endpoint_secret_id_seq'::regclass,
					 'shop.event_id_seq'::regclass, 'shop.outbox_id_seq'::regclass,
					 'shop.outbox_attempt_id_seq'::regclass,
					 'shop.outbox_pending'::regclass, 'shop.outbox_dead'::regclass,
					 'shop.outbox_attempts'::regclass, 'shop.event_endpoints'::regclass,
					 'shop.outbox_health'::regclass)
	   AND a.grantee = 0$$,
	'PUBLIC has no privilege on the outbox tables, sequences and views');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_catalog.pg_proc p,
		   aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
	 WHERE p.pronamespace = 'shop'::regnamespace
	   AND p.proname IN ('shop_subscribe', 'shop_unsubscribe', 'shop_enable_endpoint',
						 'shop_redeliver', 'shop_redeliver_dead', 'outbox_claim')
	   AND a.grantee = 0$$,
	'PUBLIC cannot execute any outbox function');
SELECT ok(NOT has_table_privilege('public', 'shop.outbox', 'SELECT')
		  AND NOT has_table_privilege('public', 'shop.event_endpoint_secret', 'SELECT')
		  AND NOT has_function_privilege('public', to_regprocedure('shop.shop_subscribe(text, text[], text, text, integer)'), 'EXECUTE'),
	'the server agrees: public may not read the outbox or the secrets, nor subscribe');
-- The secrets: only their owner has any privilege, on the table and its columns.
SELECT is_empty($$
	SELECT a.grantee::regrole::text, a.privilege_type
	  FROM pg_catalog.pg_class c,
		   aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
	 WHERE c.oid = 'shop.event_endpoint_secret'::regclass AND a.grantee <> c.relowner$$,
	'shop.event_endpoint_secret grants nothing to anyone but its owner');
SELECT is_empty($$
	SELECT at.attname FROM pg_catalog.pg_attribute at
	 WHERE at.attrelid = 'shop.event_endpoint_secret'::regclass AND at.attacl IS NOT NULL$$,
	'and no column of it is granted either');
-- The claim: only its owner (the worker runs it as the extension's owner).
SELECT is_empty($$
	SELECT a.grantee, a.privilege_type
	  FROM pg_catalog.pg_proc p,
		   aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
	 WHERE p.oid = 'shop.outbox_claim(integer, interval)'::regprocedure AND a.grantee <> p.proowner$$,
	'shop.outbox_claim is granted to no one');

-- A role with what an operator and a DBA get: it can subscribe and sees the
-- generated secret once, reads the views, but never the secrets table, the
-- claim or another function.
CREATE ROLE tap_outbox_ops NOLOGIN;
GRANT USAGE ON SCHEMA shop TO tap_outbox_ops;
GRANT EXECUTE ON FUNCTION shop.shop_subscribe(text, text[], text, text, integer),
	shop.shop_unsubscribe(bigint) TO tap_outbox_ops;
GRANT SELECT ON shop.event_endpoints, shop.outbox_pending, shop.outbox_dead,
	shop.outbox_attempts, shop.outbox_health TO tap_outbox_ops;
SET LOCAL ROLE tap_outbox_ops;
SELECT ok((SELECT shop.shop_subscribe('https://schema.example.test/ops', ARRAY['order.paid'])->>'secret') LIKE 'whsec_%',
	'the operator role subscribes an endpoint and gets its generated secret');
SELECT is((SELECT count(*) FROM shop.event_endpoints WHERE url = 'https://schema.example.test/ops'), 1::bigint,
	'the operator role sees the endpoint in shop.event_endpoints');
SELECT throws_ok($$SELECT * FROM shop.event_endpoint_secret$$, '42501', NULL,
	'the operator role cannot read the secrets');
SELECT throws_ok($$SELECT * FROM shop.event_endpoint$$, '42501', NULL,
	'the operator role cannot read the endpoint table behind the view');
SELECT throws_ok($$SELECT * FROM shop.outbox$$, '42501', NULL,
	'the operator role cannot read the outbox table (bodies) behind the views');
SELECT throws_ok($$SELECT * FROM shop.outbox_claim(1, interval '1 minute')$$, '42501', NULL,
	'the operator role cannot claim rows');
SELECT throws_ok($$SELECT shop.shop_redeliver_dead()$$, '42501', NULL,
	'the operator role cannot call an outbox function it was not granted');
RESET ROLE;

-- Deleting endpoints: refused while deliveries refer to it, as the foreign
-- key refused it; allowed for an endpoint without deliveries.
SELECT ok(EXISTS (SELECT FROM shop.outbox WHERE endpoint_id = (SELECT id FROM t WHERE name = 'endpoint')),
	'the test endpoint has deliveries');
SELECT throws_ok($$DELETE FROM shop.event_endpoint WHERE id = (SELECT id FROM t WHERE name = 'endpoint')$$,
	'23503', (SELECT format('endpoint %s still has deliveries in shop.outbox', id) FROM t WHERE name = 'endpoint'),
	'deleting an endpoint that has deliveries is refused (23503)');
SELECT ok(EXISTS (SELECT FROM shop.event_endpoint WHERE id = (SELECT id FROM t WHERE name = 'endpoint')),
	'the refused DELETE left the endpoint');
SELECT lives_ok($$DELETE FROM shop.event_endpoint WHERE url = 'https://schema.example.test/ops'$$,
	'an endpoint without deliveries can be deleted');
SELECT is((SELECT count(*) FROM shop.event_endpoint WHERE url = 'https://schema.example.test/ops'), 0::bigint,
	'the endpoint without deliveries is gone');

-- Deleting events and orders: refused while deliveries refer to the event
-- or events to the order, as the foreign keys refused it (one check per
-- statement, over every row it deleted); allowed without them.
INSERT INTO shop.orders (user_id) VALUES ('tap-outbox-guard');
WITH e AS (INSERT INTO shop.event (type, order_id, payload)
		   SELECT 'order.created', id, '{}' FROM shop.orders WHERE user_id = 'tap-outbox-guard'
		   RETURNING id)
INSERT INTO t SELECT 'order event', id FROM e;
INSERT INTO shop.outbox (endpoint_id, event_id, url, idempotency_key)
	SELECT (SELECT id FROM t WHERE name = 'endpoint'), id, 'https://schema.example.test/hook', 'evt_' || id
	  FROM t WHERE name = 'order event';
SELECT throws_ok($$DELETE FROM shop.event WHERE id IN (SELECT id FROM t WHERE name IN ('event', 'order event'))$$,
	'23503', (SELECT format('event %s still has deliveries in shop.outbox', id) FROM t WHERE name = 'order event'),
	'deleting events one of which has deliveries is refused (23503), naming that one');
SELECT is((SELECT count(*) FROM shop.event WHERE id IN (SELECT id FROM t WHERE name IN ('event', 'order event'))),
	2::bigint, 'the refused DELETE left both events');
SELECT throws_ok($$DELETE FROM shop.orders WHERE user_id = 'tap-outbox-guard'$$,
	'23503', (SELECT format('order %s still has events in shop.event', id) FROM shop.orders WHERE user_id = 'tap-outbox-guard'),
	'deleting an order that has events is refused (23503)');
SELECT is((SELECT count(*) FROM shop.orders WHERE user_id = 'tap-outbox-guard'), 1::bigint,
	'the refused DELETE left the order');
SELECT lives_ok($$DELETE FROM shop.event WHERE id = (SELECT id FROM t WHERE name = 'event')$$,
	'an event without deliveries can be deleted');
SELECT lives_ok($$DELETE FROM shop.outbox WHERE event_id = (SELECT id FROM t WHERE name = 'order event')$$,
	'its deliveries can be deleted');
SELECT lives_ok($$DELETE FROM shop.event WHERE id = (SELECT id FROM t WHERE name = 'order event')$$,
	'then the event can be deleted');
SELECT lives_ok($$DELETE FROM shop.orders WHERE user_id = 'tap-outbox-guard'$$,
	'then the order can be deleted');
SELECT is((SELECT count(*) FROM shop.event WHERE id IN (SELECT id FROM t WHERE name IN ('event', 'order event')))
		  + (SELECT count(*) FROM shop.orders WHERE user_id = 'tap-outbox-guard'),
	0::bigint, 'the events and the order are gone');

SELECT * FROM finish();
ROLLBACK;

-- shop upgrade script 0.1 -> 0.2.
--
-- Every schema change of 0.2 is made here AND in the install parts in
-- src/sql/; test/t/004_upgrade.pl proves that an upgraded 0.1 database and a
-- fresh 0.2 install have the same catalog contents.

\echo Use "ALTER EXTENSION shop UPDATE TO '0.2'" to load this file. \quit

-- 0.2 refuses a schema shop that a non-superuser owns, may create in, or has
-- objects in (src/sql/00_preamble.sql explains why); an existing installation
-- in such a schema is not upgraded until a person has looked at it.
DO $$
DECLARE
	who text;
BEGIN
	-- the schema's owner
	SELECT r.rolname INTO who
	  FROM pg_catalog.pg_namespace n
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop' AND NOT r.rolsuper;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" is owned by non-superuser role "%"', who
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Drop or rename that schema (or give it to a superuser) after checking what it contains, then try again.';
	END IF;
	-- anyone else who may create objects in it (PUBLIC included)
	SELECT coalesce(r.rolname, 'PUBLIC') INTO who
	  FROM pg_catalog.pg_namespace n,
		   LATERAL pg_catalog.aclexplode(n.nspacl) a
	  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop'
	   AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
	   AND NOT coalesce(r.rolsuper, false)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'non-superuser role "%" may create objects in schema "shop"', who
			USING ERRCODE = '42501',
				  DETAIL = 'An object it creates there (say, a look-alike overload of an API function) would be trusted like the extension''s own.',
				  HINT = 'REVOKE CREATE ON SCHEMA shop from that role after checking what it created, then try again.';
	END IF;
	-- objects someone else left there
	SELECT r.rolname INTO who
	  FROM (SELECT relowner AS owner FROM pg_catalog.pg_class
			 WHERE relnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT proowner FROM pg_catalog.pg_proc
			 WHERE pronamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT typowner FROM pg_catalog.pg_type
			 WHERE typnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT oprowner FROM pg_catalog.pg_operator
			 WHERE oprnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace) o
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
	 WHERE NOT r.rolsuper
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" holds objects owned by non-superuser role "%"', who
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Move or drop them after checking what they are, then try again.';
	END IF;
END
$$;

-- Order vocabulary.  A release reason decides what a late payment may do,
-- so it is a checked set (src/order_status.c) instead of free text.  0.1
-- accepted any text: such reasons move to the new status_note column, and
-- the order counts as cancelled on purpose, the one reason a late payment
-- never acts on (as the 0.2 code also reads unknown reasons).
ALTER TABLE shop.orders ADD COLUMN status_note text;
UPDATE shop.orders
   SET status_note = status_reason, status_reason = 'cancelled'
 WHERE status_reason NOT IN ('cancelled', 'customer_cancelled', 'shop_cancelled',
							 'payment_failed', 'expired', 'paid_after_release');
ALTER TABLE shop.orders ADD CONSTRAINT orders_status_reason_check CHECK (status_reason IN
		('cancelled', 'customer_cancelled', 'shop_cancelled', 'payment_failed',
		 'expired', 'paid_after_release'));

-- payment_log.processed was true on every committed row: it said nothing.
ALTER TABLE shop.payment_log DROP COLUMN processed;

-- Views order nothing (callers do); same columns as in 0.1.
CREATE OR REPLACE VIEW shop.webhook_events AS
SELECT l.id,
	   l.received_at,
	   l.provider,
	   l.event_id,
	   l.event_type,
	   l.kind,
	   l.result,
	   l.review,
	   l.order_id,
	   o.status AS order_status,
	   l.order_ref,
	   l.amount,
	   l.currency,
	   l.payment_id,
	   l.note
  FROM shop.payment_log l
  LEFT JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) l.order_id
;
COMMENT ON VIEW shop.webhook_events IS 'payment provider events with what processing did (ORDER BY received_at DESC for newest first)';

CREATE OR REPLACE VIEW shop.unmatched_payments AS
SELECT l.id,
	   l.received_at,
	   l.provider,
	   l.event_id,
	   l.event_type,
	   l.kind,
	   l.order_ref,
	   l.amount,
	   l.currency,
	   l.payment_id,
	   l.note,
	   l.payload
  FROM shop.payment_log l
 WHERE l.result OPERATOR(pg_catalog.=) 'unmatched'
;
COMMENT ON VIEW shop.unmatched_payments IS 'dead letters: events naming no known order, accepted so the provider stops retrying';

CREATE OR REPLACE VIEW shop.orders_needing_review AS
SELECT r.id AS review_id,
	   r.order_id,
	   r.reason,
	   r.detail,
	   o.status AS order_status,
	   o.amount AS order_amount,
	   o.currency AS order_currency,
	   l.amount AS paid_amount,
	   l.currency AS paid_currency,
	   l.payment_id,
	   r.provider,
	   r.event_id,
	   r.created_at
  FROM shop.order_review r
  JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) r.order_id
  JOIN shop.payment_log l ON l.provider OPERATOR(pg_catalog.=) r.provider
						 AND l.event_id OPERATOR(pg_catalog.=) r.event_id
 WHERE r.resolved_at IS NULL
;
COMMENT ON VIEW shop.orders_needing_review IS 'open review flags: amount_mismatch (never confirmed) and refund_required (paid but not sellable)';

COMMENT ON VIEW shop.webhook_events IS 'payment provider events with what processing did (ORDER BY received_at DESC for newest first)';

-- pg_dump keeps the id sequences' values with the rows (restored databases
-- must not hand out ids their rows already have).
SELECT pg_catalog.pg_extension_config_dump('shop.product_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.sku_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.stock_adjustment_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.cart_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.orders_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_item_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.stock_reservation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider_secret_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_review_id_seq', '');

-- Function behaviour changed in C (same signatures): comments say how.
COMMENT ON FUNCTION shop.shop_confirm_paid(bigint, text) IS
	'mark a PENDING order PAID and consume its reservations; a PAID order is returned unchanged for the same payment id, refused (SH016) for another';
COMMENT ON FUNCTION shop.shop_release(bigint, text) IS
	'cancel a PENDING order and give its reserved stock back; reason is cancelled, customer_cancelled, shop_cancelled or payment_failed (status FAILED); a CANCELLED or FAILED order is returned unchanged';
COMMENT ON FUNCTION shop.shop_confirm_paid(bigint, text, bigint, text) IS
	'shop_confirm_paid that refuses (SH015) when amount or currency (case-insensitive) differ from the order''s snapshot; a PAID order is returned unchanged for the same payment id, refused (SH016) for another';

-- stock.low threshold per SKU (NULL: the setting shop.low_stock_threshold).
ALTER TABLE shop.sku ADD COLUMN low_stock_threshold integer
	CONSTRAINT sku_low_stock_threshold_check CHECK (low_stock_threshold >= 0);

-- API keys of providers' outbound calls (src/sql/40_webhooks.sql), and the
-- providers view gains whether one is set.
-- API keys for providers' outbound calls (provider_api.c).  Readable only
-- by the extension owner; shop.payment_providers says only whether one is set.
CREATE TABLE shop.payment_provider_api_key (
	provider	text PRIMARY KEY REFERENCES shop.payment_provider (name) ON DELETE CASCADE,
	api_key		text NOT NULL CHECK (api_key <> ''),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider_api_key', '');
CREATE OR REPLACE VIEW shop.payment_providers AS
SELECT p.name,
	   p.kind,
	   p.options,
	   (SELECT pg_catalog.count(*) FROM shop.payment_provider_secret s
		 WHERE s.provider OPERATOR(pg_catalog.=) p.name) AS secrets,
	   (SELECT pg_catalog.min(s.retires_at) FROM shop.payment_provider_secret s
		 WHERE s.provider OPERATOR(pg_catalog.=) p.name) AS next_secret_retires_at,
	   p.updated_at,
	   EXISTS (SELECT FROM shop.payment_provider_api_key k
				WHERE k.provider OPERATOR(pg_catalog.=) p.name) AS api_key_set
  FROM shop.payment_provider p;

-- The transactional outbox and outgoing events (src/sql/50_outbox.sql, as
-- written there), then the provider calls (src/sql/60_provider_calls.sql).
-- All objects are new: privileges below revoke on them alone.
-- A merchant endpoint that receives events.  Kept after shop_unsubscribe
-- (removed_at) so its deliveries keep their history.
CREATE TABLE shop.event_endpoint (
	id						bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	url						text NOT NULL CHECK (url <> ''),
	event_types				text[] NOT NULL CHECK (pg_catalog.cardinality(event_types) > 0),
	description				text,
	enabled					boolean NOT NULL DEFAULT true,
	disabled_reason			text,
	consecutive_failures	integer NOT NULL DEFAULT 0,
	created_at				timestamptz NOT NULL DEFAULT now(),
	updated_at				timestamptz NOT NULL DEFAULT now(),
	removed_at				timestamptz
);
CREATE UNIQUE INDEX event_endpoint_url_idx ON shop.event_endpoint (url)
	WHERE removed_at IS NULL;

-- Signing secrets of an endpoint, as for payment providers: the newest has
-- retires_at NULL, older ones keep signing until retires_at.  Owner only.
CREATE TABLE shop.event_endpoint_secret (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	endpoint_id	bigint NOT NULL REFERENCES shop.event_endpoint (id) ON DELETE CASCADE,
	secret		text NOT NULL CHECK (secret <> ''),
	added_at	timestamptz NOT NULL DEFAULT now(),
	retires_at	timestamptz,
	UNIQUE (endpoint_id, secret)
);

-- One row per event that happened and that some endpoint subscribes to.
-- order_id has no foreign key on purpose: its check was one more query
-- in each buyer's transaction that writes an event (with the check of
-- shop.outbox.event_id, 12 % of the emit statement's CPU at 32 clients).
-- event_delete_guard() refuses the DELETE of an order that has events, as
-- the key did.
CREATE TABLE shop.event (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	type		text NOT NULL CHECK (type IN ('order.created', 'order.paid', 'order.cancelled',
											  'order.failed', 'order.expired', 'order.needs_review',
											  'stock.low')),
	order_id	bigint,
	sku_id		bigint REFERENCES shop.sku (id),
	payload		jsonb NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
-- an event is about an order or about a SKU: each index has the rows it
-- can find, not a NULL entry for every other event
CREATE INDEX event_order_idx ON shop.event (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX event_sku_idx ON shop.event (sku_id) WHERE sku_id IS NOT NULL;

-- One row per outbound request.  body is fixed when the row is written, so
-- every attempt sends the same bytes; signature headers are added when sent.
-- ordering_key: rows of one endpoint with the same key are sent one at a
-- time, oldest first (per order, per SKU).
-- endpoint_id has no foreign key on purpose: the key's check takes a KEY
-- SHARE lock on the endpoint's row in every buyer's transaction that
-- writes an event, and with many buyers at once each lock on that one row
-- makes a new multixact (a checkout with events written ran 6-14 % slower
-- at 32 clients with it, in three back-to-back pairs of runs).  Endpoints
-- are never deleted by the API (shop_unsubscribe sets removed_at), and
-- event_endpoint_delete_guard() refuses the DELETE of an endpoint that has
-- deliveries, as the key did.
-- event_id has no foreign key either: an event's deliveries are written in
-- the statement that writes the event (src/events.c), so no delivery can
-- name an event that is not there, and event_delete_guard() refuses the
-- DELETE of an event that has deliveries.
-- The CHECKs that list values compare with one array constant, not an IN
-- list: see src/sql/50_outbox.sql.
CREATE TABLE shop.outbox (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	endpoint_id		bigint,
	event_id		bigint,
	url				text NOT NULL,
	method			text NOT NULL DEFAULT 'POST'
		CHECK (method = ANY ('{GET, POST, PUT, PATCH, DELETE}'::text[])),
	headers			jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
	body			text,
	idempotency_key	text NOT NULL CHECK (idempotency_key <> ''),
	ordering_key	text,
	state			text NOT NULL DEFAULT 'queued'
		CHECK (state = ANY ('{queued, in_flight, delivered, failed, dead}'::text[])),
	attempts		integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	next_attempt_at	timestamptz NOT NULL DEFAULT now(),
	claimed_by		integer,
	lease_until		timestamptz,
	last_status		integer,
	last_error		text,
	queued_at		timestamptz NOT NULL DEFAULT now(),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	delivered_at	timestamptz,
	-- a provider call (provider_api.c): whom it calls, what it does, and the
	-- row it is about (a refund); its API key is added when it is sent
	provider		text REFERENCES shop.payment_provider (name),
	operation		text NOT NULL DEFAULT 'event'
		CHECK (operation = ANY ('{event, refund, expire_checkout, fetch_payment}'::text[])),
	subject_id		bigint,
	CONSTRAINT outbox_in_flight_has_lease CHECK ((state = 'in_flight') = (lease_until IS NOT NULL)),
	CONSTRAINT outbox_target CHECK (CASE operation WHEN 'event' THEN endpoint_id IS NOT NULL AND provider IS NULL
												   ELSE provider IS NOT NULL AND endpoint_id IS NULL END),
	UNIQUE (endpoint_id, idempotency_key)
);
-- a provider call is made once per idempotency key
CREATE UNIQUE INDEX outbox_provider_key_idx ON shop.outbox (provider, idempotency_key)
	WHERE provider IS NOT NULL;
-- what the worker claims: due rows, and in-flight rows whose lease ran out
CREATE INDEX outbox_due_idx ON shop.outbox (next_attempt_at, id)
	WHERE state IN ('queued', 'failed');
CREATE INDEX outbox_lease_idx ON shop.outbox (lease_until)
	WHERE state = 'in_flight';
-- the per-key ordering rule looks for an older open row of the same key
CREATE INDEX outbox_open_key_idx ON shop.outbox (ordering_key, id)
	WHERE state IN ('queued', 'in_flight', 'failed');
CREATE INDEX outbox_endpoint_state_idx ON shop.outbox (endpoint_id, state);
-- dead rows, few and never on a buyer's or a delivery's path: what
-- outbox_health, outbox_dead and the per-endpoint dead counts read, instead
-- of the whole history.  (A partial index that any open row's query could
-- use, such as (endpoint_id, state) WHERE state <> 'delivered', looks empty
-- to the planner whenever the statistics predate a backlog, and it then
-- chose it over outbox_open_key_idx for the claim's per-key probe.)
CREATE INDEX outbox_dead_idx ON shop.outbox (endpoint_id) WHERE state = 'dead';
CREATE INDEX outbox_event_idx ON shop.outbox (event_id);
-- retention (shop.outbox_prune) finds the oldest delivered event deliveries
CREATE INDEX outbox_delivered_idx ON shop.outbox (delivered_at)
	WHERE state = 'delivered' AND operation = 'event';

-- One row per HTTP attempt.
CREATE TABLE shop.outbox_attempt (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	outbox_id			bigint NOT NULL REFERENCES shop.outbox (id),
	attempt				integer NOT NULL CHECK (attempt > 0),
	started_at			timestamptz NOT NULL,
	duration_ms			integer NOT NULL CHECK (duration_ms >= 0),
	http_status			integer,
	succeeded			boolean NOT NULL,
	error				text,
	response_excerpt	text
);
CREATE INDEX outbox_attempt_outbox_idx ON shop.outbox_attempt (outbox_id);
CREATE INDEX outbox_attempt_started_idx ON shop.outbox_attempt (started_at);

-- A DELETE of an endpoint that still has deliveries is refused (23503), as
-- the foreign key shop.outbox has not would refuse it.  The statement first
-- takes a SHARE lock on shop.outbox: it waits for the transactions writing
-- outbox rows and holds new ones back, so no delivery of the endpoint can
-- be committed beside the check; taken before the DELETE locks any
-- endpoint row, so that the worker (which writes outbox rows, then the
-- endpoint's failure count) cannot deadlock with it.  (TRUNCATE is not
-- guarded: truncate shop.outbox with shop.event_endpoint.)
CREATE FUNCTION shop.event_endpoint_delete_guard()
	RETURNS trigger
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN
		LOCK TABLE shop.outbox IN SHARE MODE;
		RETURN NULL;
	END IF;
	IF EXISTS (SELECT FROM shop.outbox WHERE endpoint_id = OLD.id) THEN
		RAISE EXCEPTION 'endpoint % still has deliveries in shop.outbox', OLD.id
			USING ERRCODE = 'foreign_key_violation',
				  DETAIL = 'Deleting it would leave deliveries of no endpoint.',
				  HINT = 'Use shop.shop_unsubscribe(), or delete its shop.outbox rows (and their attempts) first.';
	END IF;
	RETURN OLD;
END
$$;
COMMENT ON FUNCTION shop.event_endpoint_delete_guard() IS
	'trigger: refuses deleting an endpoint that still has outbox rows (shop.outbox.endpoint_id has no foreign key)';
CREATE TRIGGER event_endpoint_delete_lock BEFORE DELETE ON shop.event_endpoint
	FOR EACH STATEMENT EXECUTE FUNCTION shop.event_endpoint_delete_guard();
CREATE TRIGGER event_endpoint_delete_guard BEFORE DELETE ON shop.event_endpoint
	FOR EACH ROW EXECUTE FUNCTION shop.event_endpoint_delete_guard();

-- A DELETE of an event that has deliveries, or of an order that has
-- events, is refused (23503), as the foreign keys shop.outbox.event_id and
-- shop.event.order_id have not would refuse it.  One check per statement,
-- over the rows it deleted.  No lock is needed: deliveries are written
-- only with their event, in one statement, and an order's events only by a
-- transaction that holds a row lock the order's removal must wait for (it
-- changed the order, or wrote the refund or the review that refers to it);
-- the check then reads the events that transaction committed.
-- (TRUNCATE is not guarded, as for endpoints.)
CREATE FUNCTION shop.event_delete_guard()
	RETURNS trigger
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_id bigint;
BEGIN
	IF TG_TABLE_NAME = 'event' THEN
		SELECT g.id INTO found_id FROM gone g
		 WHERE EXISTS (SELECT FROM shop.outbox o WHERE o.event_id = g.id) LIMIT 1;
		IF found_id IS NOT NULL THEN
			RAISE EXCEPTION 'event % still has deliveries in shop.outbox', found_id
				USING ERRCODE = 'foreign_key_violation',
					  DETAIL = 'Deleting it would leave deliveries of no event.',
					  HINT = 'Delete its shop.outbox rows (and their attempts) first.';
		END IF;
	ELSE
		SELECT g.id INTO found_id FROM gone g
		 WHERE EXISTS (SELECT FROM shop.event e WHERE e.order_id = g.id) LIMIT 1;
		IF found_id IS NOT NULL THEN
			RAISE EXCEPTION 'order % still has events in shop.event', found_id
				USING ERRCODE = 'foreign_key_violation',
					  DETAIL = 'Deleting it would leave events of no order.',
					  HINT = 'Delete its shop.event rows (and their deliveries) first.';
		END IF;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION shop.event_delete_guard() IS
	'trigger: refuses deleting an event that has outbox rows, or an order that has events (shop.outbox.event_id and shop.event.order_id have no foreign key)';
CREATE TRIGGER event_delete_guard AFTER DELETE ON shop.event
	REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION shop.event_delete_guard();
CREATE TRIGGER order_event_delete_guard AFTER DELETE ON shop.orders
	REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION shop.event_delete_guard();

-- Every write of the endpoints that may change who subscribes to what
-- tells the emitting backends to look again (src/events_gate.c: a backend
-- skips the emit statement of an event type no endpoint subscribes to).
CREATE FUNCTION shop.event_endpoint_changed()
	RETURNS trigger
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'shop_event_endpoint_changed';
COMMENT ON FUNCTION shop.event_endpoint_changed() IS
	'trigger: endpoints changed; backends that skip the emit statement of an unsubscribed event type look again after this commit';
CREATE TRIGGER event_endpoint_changed
	AFTER INSERT OR UPDATE OF event_types, removed_at OR DELETE OR TRUNCATE ON shop.event_endpoint
	FOR EACH STATEMENT EXECUTE FUNCTION shop.event_endpoint_changed();

SELECT pg_catalog.pg_extension_config_dump('shop.event_endpoint', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event_endpoint_secret', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event', '');
SELECT pg_catalog.pg_extension_config_dump('shop.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('shop.outbox_attempt', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event_endpoint_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event_endpoint_secret_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.outbox_attempt_id_seq', '');

-- The worker's claim, in SQL so that it can be read, and raced in the
-- isolation tests, as it runs: up to max_rows due rows (queued or failed
-- whose time has come, or in flight with an expired lease), only of enabled
-- endpoints (provider calls have none), never a row while an older open row
-- of the same endpoint and ordering key exists, locked with SKIP LOCKED (a
-- row someone else is claiming is theirs), marked in_flight with a lease,
-- attempts counted.
-- Granted to no one: the worker runs it as the extension's owner.
CREATE FUNCTION shop.outbox_claim(max_rows integer, lease interval)
	RETURNS SETOF shop.outbox
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_sort = off
	SET enable_bitmapscan = off
	SET jit = off
	SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	-- PL/pgSQL rather than SQL only so that the statement is planned once
	-- per session and kept (a SQL function with SET clauses is planned on
	-- every call: several milliseconds of the worker's CPU per claim).
	-- Kept only with plan_cache_mode = force_generic_plan: left to choose,
	-- the plan cache compared costs inflated by the settings below and
	-- made a custom plan for every call (a third of the worker's CPU in a
	-- perf profile of a spread run at 8 clients).
	--
	-- The two planner settings above make the due rows come from walking
	-- outbox_due_idx in order, the one way to get them in (next_attempt_at,
	-- id) order without a sort, and stop at max_rows.  Left to the
	-- statistics, the planner chose a bitmap scan of every open row and a
	-- sort whenever the statistics predate a backlog (a running shop's
	-- after an outage: autoanalyze waits for 10 % of the table to change):
	-- 0.7 s per 16-row claim at 120,000 open rows instead of 1 ms, and
	-- 40 ms per poll for rows of a disabled endpoint that no claim takes.
	-- The sorts that remain (a few rows each) still run; they only cost
	-- more in the planner's arithmetic, and that arithmetic (10^10 per
	-- disabled step) would start JIT compiling every claim (0.4-0.5 s
	-- each), hence jit = off: a claim touches a few dozen rows.
	RETURN QUERY
	WITH due AS (
		-- rows whose time has come, in the due index's order: a claim reads
		-- about as many rows as it takes, whatever the backlog
		SELECT o.id, o.next_attempt_at AS at
		  FROM shop.outbox o
		  LEFT JOIN shop.event_endpoint e ON e.id = o.endpoint_id
		 WHERE o.state IN ('queued', 'failed') AND o.next_attempt_at <= now()
		   AND (o.endpoint_id IS NULL OR (e.enabled AND e.removed_at IS NULL))
		   -- OFFSET 0 keeps this a probe per candidate (an index lookup by
		   -- key): flattened into an anti-join, its plan followed the table's
		   -- statistics, and with those of a mostly delivered history a
		   -- claim read every open row once per open row (seconds per claim)
		   AND NOT EXISTS (SELECT FROM shop.outbox p
							WHERE p.ordering_key = o.ordering_key
							  AND p.id < o.id
							  AND p.state IN ('queued', 'in_flight', 'failed')
							  AND (p.endpoint_id = o.endpoint_id OR p.provider = o.provider)
						   OFFSET 0)
		 ORDER BY o.next_attempt_at, o.id
		 LIMIT max_rows
		   FOR UPDATE OF o SKIP LOCKED),
	stale AS (
		-- rows in flight whose claimant's lease ran out (a crash, a hang)
		SELECT o.id, o.lease_until AS at
		  FROM shop.outbox o
		  LEFT JOIN shop.event_endpoint e ON e.id = o.endpoint_id
		 WHERE o.state = 'in_flight' AND o.lease_until < now()
		   AND (o.endpoint_id IS NULL OR (e.enabled AND e.removed_at IS NULL))
		 ORDER BY o.lease_until, o.id
		 LIMIT max_rows
		   FOR UPDATE OF o SKIP LOCKED),
	picked AS (
		SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM stale) c
		 ORDER BY at, id
		 LIMIT max_rows)
	UPDATE shop.outbox o
	   SET state = 'in_flight', attempts = o.attempts + 1, claimed_by = pg_backend_pid(),
		   lease_until = now() + lease, updated_at = now()
	  FROM picked
	 WHERE o.id = picked.id
	RETURNING o.*;
END
$$;
COMMENT ON FUNCTION shop.outbox_claim(integer, interval) IS
	'the delivery worker''s claim: up to max_rows due rows, per-key order kept, SKIP LOCKED, marked in_flight with a lease';

-- Retention (pg_net keeps its responses for pg_net.ttl the same way): the
-- delivery worker calls this every minute with shop.outbox_retention, so
-- the outbox, its attempt log and the event log do not grow forever.  It
-- deletes delivered event deliveries older than older_than (by
-- delivered_at), with their attempts, then each of their events that has
-- no delivery left.  Kept: every delivery not delivered (queued, in
-- flight, failed, dead: dead ones wait for shop_redeliver or a DBA), and
-- provider calls, which are the record of money moved.  At most max_rows
-- deliveries per call, oldest first, walking outbox_delivered_idx: a call
-- reads what it deletes.  Rows someone holds are skipped (SKIP LOCKED:
-- the next call takes them).  The plan is pinned as the claim's is.
CREATE FUNCTION shop.outbox_prune(older_than interval, max_rows integer DEFAULT 1000,
								  OUT deliveries integer, OUT attempts integer, OUT events integer)
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET enable_sort = off
	SET enable_bitmapscan = off
	SET jit = off
AS $$
DECLARE
	gone bigint[];
	their_events bigint[];
BEGIN
	IF older_than IS NULL OR older_than < interval '0' THEN
		RAISE EXCEPTION 'older_than must be an interval of 0 or more, not %', coalesce(older_than::text, 'NULL')
			USING ERRCODE = '22023';
	END IF;
	IF max_rows IS NULL OR max_rows < 1 THEN
		RAISE EXCEPTION 'max_rows must be 1 or more, not %', coalesce(max_rows::text, 'NULL')
			USING ERRCODE = '22023';
	END IF;
	SELECT coalesce(array_agg(d.id), '{}'), coalesce(array_agg(DISTINCT d.event_id), '{}')
	  INTO gone, their_events
	  FROM (SELECT o.id, o.event_id FROM shop.outbox o
			 WHERE o.state = 'delivered' AND o.operation = 'event'
			   AND o.delivered_at < now() - older_than
			 ORDER BY o.delivered_at
			 LIMIT max_rows
			   FOR UPDATE OF o SKIP LOCKED) d;
	DELETE FROM shop.outbox_attempt a WHERE a.outbox_id = ANY (gone);
	GET DIAGNOSTICS attempts = ROW_COUNT;
	DELETE FROM shop.outbox o WHERE o.id = ANY (gone);
	GET DIAGNOSTICS deliveries = ROW_COUNT;
	-- an event's deliveries are all written with it, so one with none left
	-- never gets another (event_delete_guard checks it again)
	DELETE FROM shop.event e
	 WHERE e.id = ANY (their_events)
	   AND NOT EXISTS (SELECT FROM shop.outbox o WHERE o.event_id = e.id);
	GET DIAGNOSTICS events = ROW_COUNT;
END
$$;
COMMENT ON FUNCTION shop.outbox_prune(interval, integer) IS
	'retention: delete up to max_rows delivered event deliveries older than older_than, their attempts, and events left with none; the worker runs it with shop.outbox_retention';

-- API: Outgoing events

CREATE FUNCTION shop.shop_subscribe(url text, event_types text[], secret text DEFAULT NULL,
									description text DEFAULT NULL,
									rotation_grace_seconds integer DEFAULT 86400)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_subscribe'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic;
COMMENT ON FUNCTION shop.shop_subscribe(text, text[], text, text, integer) IS
	'register or update the event endpoint at url for event_types (or *); returns it, with the generated signing secret when a new endpoint got none';

CREATE FUNCTION shop.shop_unsubscribe(endpoint_id bigint)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'shop_unsubscribe'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_unsubscribe(bigint) IS
	'remove an event endpoint (kept for history); its undelivered rows become dead';

CREATE FUNCTION shop.shop_enable_endpoint(endpoint_id bigint)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'shop_enable_endpoint'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_enable_endpoint(bigint) IS
	're-enable an endpoint disabled after too many failures; resets its failure count';

CREATE FUNCTION shop.shop_redeliver(outbox_id bigint)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'shop_redeliver'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_redeliver(bigint) IS
	'queue a dead outbox row again (attempts and age start over); false when it is not dead';

CREATE FUNCTION shop.shop_redeliver_dead(endpoint_id bigint DEFAULT NULL)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'shop_redeliver_dead'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_redeliver_dead(bigint) IS
	'queue every dead outbox row (of one endpoint) again; returns how many';

-- Views for DBAs (outbox)

CREATE VIEW shop.outbox_pending AS
SELECT o.id AS outbox_id,
	   o.endpoint_id,
	   o.url,
	   ev.type AS event_type,
	   o.event_id,
	   o.state,
	   o.attempts,
	   o.next_attempt_at,
	   o.lease_until,
	   o.last_status,
	   o.last_error,
	   o.queued_at,
	   pg_catalog.now() OPERATOR(pg_catalog.-) o.queued_at AS age,
	   o.provider,
	   o.operation
  FROM shop.outbox o
  LEFT JOIN shop.event ev ON ev.id OPERATOR(pg_catalog.=) o.event_id
 WHERE o.state IN ('queued', 'in_flight', 'failed');
COMMENT ON VIEW shop.outbox_pending IS 'outbound requests not yet delivered or given up, with their last error';

CREATE VIEW shop.outbox_dead AS
SELECT o.id AS outbox_id,
	   o.endpoint_id,
	   o.url,
	   ev.type AS event_type,
	   o.event_id,
	   o.attempts,
	   o.last_status,
	   o.last_error,
	   o.queued_at,
	   o.updated_at AS died_at,
	   o.provider,
	   o.operation
  FROM shop.outbox o
  LEFT JOIN shop.event ev ON ev.id OPERATOR(pg_catalog.=) o.event_id
 WHERE o.state OPERATOR(pg_catalog.=) 'dead';
COMMENT ON VIEW shop.outbox_dead IS 'outbound requests given up; shop_redeliver() queues one again';

CREATE VIEW shop.outbox_attempts AS
SELECT a.id AS attempt_id,
	   a.outbox_id,
	   o.endpoint_id,
	   o.url,
	   a.attempt,
	   a.started_at,
	   a.duration_ms,
	   a.http_status,
	   a.succeeded,
	   a.error,
	   a.response_excerpt
  FROM shop.outbox_attempt a
  JOIN shop.outbox o ON o.id OPERATOR(pg_catalog.=) a.outbox_id;
COMMENT ON VIEW shop.outbox_attempts IS 'one row per HTTP attempt of the delivery worker';

CREATE VIEW shop.event_endpoints AS
SELECT e.id AS endpoint_id,
	   e.url,
	   e.event_types,
	   e.description,
	   e.enabled,
	   e.disabled_reason,
	   e.consecutive_failures,
	   (SELECT pg_catalog.count(*) FROM shop.outbox o
		 WHERE o.endpoint_id OPERATOR(pg_catalog.=) e.id AND o.state OPERATOR(pg_catalog.=) 'delivered') AS delivered,
	   (SELECT pg_catalog.count(*) FROM shop.outbox o
		 WHERE o.endpoint_id OPERATOR(pg_catalog.=) e.id
		   AND o.state IN ('queued', 'in_flight', 'failed')) AS backlog,
	   (SELECT pg_catalog.count(*) FROM shop.outbox o
		 WHERE o.endpoint_id OPERATOR(pg_catalog.=) e.id AND o.state OPERATOR(pg_catalog.=) 'dead') AS dead,
	   s.success_rate_24h,
	   s.last_success_at,
	   s.last_failure_at,
	   e.created_at,
	   e.removed_at
  FROM shop.event_endpoint e
  LEFT JOIN LATERAL (
	SELECT pg_catalog.round(pg_catalog.avg(CASE WHEN a.succeeded THEN 1.0 ELSE 0.0 END), 3) AS success_rate_24h,
		   pg_catalog.max(a.started_at) FILTER (WHERE a.succeeded) AS last_success_at,
		   pg_catalog.max(a.started_at) FILTER (WHERE NOT a.succeeded) AS last_failure_at
	  FROM shop.outbox_attempt a
	  JOIN shop.outbox o ON o.id OPERATOR(pg_catalog.=) a.outbox_id
	 WHERE o.endpoint_id OPERATOR(pg_catalog.=) e.id
	   AND a.started_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '24 hours')) s ON true;
COMMENT ON VIEW shop.event_endpoints IS 'event endpoints with their health (never a secret)';

CREATE VIEW shop.outbox_health AS
SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity
				WHERE backend_type OPERATOR(pg_catalog.=) 'shop outbox worker'
				  AND datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) AS worker_running,
	   o.queued,
	   o.in_flight,
	   o.failed,
	   (SELECT pg_catalog.count(*) FROM shop.outbox d
		 WHERE d.state OPERATOR(pg_catalog.=) 'dead') AS dead,
	   o.oldest_due_age
  -- open rows only (outbox_open_key_idx) and dead ones (outbox_dead_idx):
  -- never the delivered history, however long it is kept
  FROM (SELECT pg_catalog.count(*) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'queued') AS queued,
			   pg_catalog.count(*) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'in_flight') AS in_flight,
			   pg_catalog.count(*) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'failed') AS failed,
			   pg_catalog.now() OPERATOR(pg_catalog.-)
				   (pg_catalog.min(r.next_attempt_at) FILTER (WHERE r.state IN ('queued', 'failed')
															  AND r.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()))
				   AS oldest_due_age
		  FROM shop.outbox r
		 WHERE r.state IN ('queued', 'in_flight', 'failed')) o;
COMMENT ON VIEW shop.outbox_health IS 'is the delivery worker running, and how large is the backlog';

-- One hosted checkout per order and provider, as the provider answered.
CREATE TABLE shop.payment_session (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id	bigint NOT NULL REFERENCES shop.orders (id),
	provider	text NOT NULL REFERENCES shop.payment_provider (name),
	session_id	text NOT NULL CHECK (session_id <> ''),
	url			text NOT NULL CHECK (url <> ''),
	expires_at	timestamptz,
	state		text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completed', 'expired')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (order_id, provider),
	UNIQUE (provider, session_id)
);

-- One row per refund; review_id is the flag an automatic refund resolves
-- (at most one refund per flag: the webhook queues exactly one).
CREATE TABLE shop.refund (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id			bigint NOT NULL REFERENCES shop.orders (id),
	provider			text NOT NULL REFERENCES shop.payment_provider (name),
	payment_id			text NOT NULL CHECK (payment_id <> ''),
	amount				bigint NOT NULL CHECK (amount > 0),
	currency			char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
	reason				text,
	state				text NOT NULL DEFAULT 'requested'
		CHECK (state IN ('requested', 'succeeded', 'failed')),
	provider_refund_id	text,
	review_id			bigint REFERENCES shop.order_review (id),
	last_error			text,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_order_idx ON shop.refund (order_id);
CREATE UNIQUE INDEX refund_review_idx ON shop.refund (review_id) WHERE review_id IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('shop.payment_session', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_session_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund_id_seq', '');

-- API: Provider calls
--
-- The functions that take an API key keep a failing statement out of the
-- server log, like the webhook functions.

CREATE FUNCTION shop.shop_set_provider_api_key(name text, api_key text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_set_provider_api_key'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic;
COMMENT ON FUNCTION shop.shop_set_provider_api_key(text, text) IS
	'store the API key of a provider''s outbound calls (never shown again)';

CREATE FUNCTION shop.shop_start_payment(order_id bigint, provider text,
										success_url text, cancel_url text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_start_payment'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_start_payment(bigint, text, text, text) IS
	'start the provider''s hosted checkout for a PENDING order (one call, idempotent); returns the session and its URL; the same order and provider return the stored session';

CREATE FUNCTION shop.shop_refund(order_id bigint, amount bigint DEFAULT NULL,
								 reason text DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_refund'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_refund(bigint, bigint, text) IS
	'queue a refund of a PAID order''s payment through the outbox (all that is left by default)';

CREATE FUNCTION shop.shop_reconcile_payments(older_than interval DEFAULT '10 minutes',
											 max_orders integer DEFAULT 100)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'shop_reconcile_payments'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_reconcile_payments(interval, integer) IS
	'ask the providers about PENDING orders whose checkout has been open for older_than without a payment event; returns how many fetches were queued';

CREATE VIEW shop.refunds AS
SELECT r.id AS refund_id,
	   r.order_id,
	   o.status AS order_status,
	   r.provider,
	   r.payment_id,
	   r.amount,
	   r.currency,
	   r.reason,
	   r.state,
	   r.provider_refund_id,
	   r.review_id,
	   r.last_error,
	   r.created_at,
	   r.updated_at
  FROM shop.refund r
  JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) r.order_id;
COMMENT ON VIEW shop.refunds IS 'refunds with their order and state (ORDER BY refund_id DESC for newest first)';

REVOKE ALL ON TABLE shop.payment_provider_api_key, shop.event_endpoint,
	shop.event_endpoint_secret, shop.event, shop.outbox, shop.outbox_attempt,
	shop.outbox_pending, shop.outbox_dead, shop.outbox_attempts, shop.event_endpoints,
	shop.outbox_health, shop.payment_session, shop.refund, shop.refunds FROM PUBLIC;
REVOKE ALL ON SEQUENCE shop.event_endpoint_id_seq, shop.event_endpoint_secret_id_seq,
	shop.event_id_seq, shop.outbox_id_seq, shop.outbox_attempt_id_seq,
	shop.payment_session_id_seq, shop.refund_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION shop.outbox_claim(integer, interval), shop.outbox_prune(interval, integer),
	shop.shop_subscribe(text, text[], text, text, integer), shop.shop_unsubscribe(bigint),
	shop.shop_enable_endpoint(bigint), shop.shop_redeliver(bigint),
	shop.shop_redeliver_dead(bigint), shop.shop_set_provider_api_key(text, text),
	shop.shop_start_payment(bigint, text, text, text),
	shop.shop_refund(bigint, bigint, text), shop.shop_reconcile_payments(interval, integer),
	shop.event_endpoint_delete_guard(), shop.event_endpoint_changed(), shop.event_delete_guard()
	FROM PUBLIC;

-- Privileges: CREATE OR REPLACE VIEW keeps the views' grants, and the only
-- REVOKEs are the ones above, on objects this upgrade creates.  A
-- schema-wide REVOKE here would copy the operator's own grants on older
-- objects into pg_init_privs, after which pg_dump would no longer dump them.

-- ---------------------------------------------------------------------------
-- Schema shop_api (issue 10): the API PostgREST or the shop's HTTP daemon
-- exposes, as written in src/sql/70_api.sql, and shop.shop_api_grant().
-- All objects are new: the REVOKEs at the end name each of them.
-- ---------------------------------------------------------------------------

-- shop install script, part 7: schema shop_api, the API that PostgREST (or
-- the shop's own HTTP daemon) exposes to shoppers and payment providers.
--
-- The core functions in schema shop take the user as an argument and trust
-- it.  The wrappers here take the user from the request's verified JWT
-- instead: PostgREST verifies the token, puts its claims in the
-- transaction setting request.jwt.claims (docs/references/transactions.rst,
-- "Request Headers, Cookies and JWT claims") and switches to the role the
-- token names; shop_api.current_user_id() reads the "sub" claim.  A user is
-- never an argument of any shop_api function.
--
-- Anyone who can set request.jwt.claims can act as any user, and every
-- session may set it: grant the shopper's functions only to NOLOGIN roles
-- that PostgREST's authenticator switches to (shop.shop_api_grant warns
-- about a login role; README, "Serving with PostgREST").
--
-- Every function is PL/pgSQL (its plans are kept for the session; a SQL
-- function with SET clauses is planned again on every call, 4x slower for
-- products() as measured) and SECURITY DEFINER with a pinned search_path and
-- schema-qualified names, like the core, so the API roles need no right on
-- schema shop at all.  Nothing is granted to PUBLIC (part 9);
-- shop.shop_api_grant() grants each API role exactly its functions.  PostgREST
-- publishes every function of schema shop_api, so nothing private lives here.
--
-- Errors keep the core's SQLSTATEs.  PostgREST answers a PTnnn SQLSTATE
-- with HTTP status nnn (src/library/PostgREST/Error.hs, mapSQLtoHTTP), so
-- a call without a user raises PT401.

CREATE SCHEMA shop_api;
COMMENT ON SCHEMA shop_api IS
	'the shopper-facing API (PostgREST db-schemas): the user is the JWT "sub" claim, never an argument';

-- API: Public (identity)

-- The user of this request: the "sub" claim of request.jwt.claims.
-- PostgREST sets the claims as a JSON object; after a transaction that set
-- them, a session reads '' instead of NULL (docs/references/transactions.rst),
-- so both mean "no claims".
CREATE FUNCTION shop_api.current_user_id()
	RETURNS text
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims text := current_setting('request.jwt.claims', true);
	sub jsonb;
	uid text;
BEGIN
	IF claims IS NOT NULL AND claims <> '' THEN
		sub := claims::jsonb -> 'sub';
	END IF;
	IF sub IS NOT NULL AND jsonb_typeof(sub) = 'string' THEN
		uid := sub #>> '{}';
	END IF;
	IF uid IS NULL OR uid = '' THEN
		RAISE EXCEPTION 'this call needs a signed-in user'
			USING ERRCODE = 'PT401',
				  DETAIL = 'The request has no JWT claims, or no "sub" claim that is a non-empty string.',
				  HINT = 'Send a JWT whose "sub" claim names the user (guests get a token with "sub": "guest:<random>" from the HTTP layer).';
	END IF;
	IF octet_length(uid) > 200 THEN
		RAISE EXCEPTION 'the "sub" claim is longer than 200 bytes'
			USING ERRCODE = '22023';
	END IF;
	RETURN uid;
END
$$;
COMMENT ON FUNCTION shop_api.current_user_id() IS
	'the signed-in user: the "sub" claim of request.jwt.claims (PT401 when there is none, 22023 when longer than 200 bytes)';

-- API: Public (catalog)

-- available is on_hand - reserved, as in shop.sku_stock (stock still held by
-- expired, not yet swept orders is not counted here; a cart add counts it).
CREATE FUNCTION shop_api.products()
	RETURNS TABLE (product_id bigint, product_name text, sku_id bigint, sku_code text,
				   price bigint, currency text, available bigint)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT p.id, p.name, s.sku_id, s.code, p.price, p.currency::text, s.available
	  FROM shop.product p
	  JOIN shop.sku_stock s ON s.product_id = p.id
	 WHERE s.sellable
	 ORDER BY p.id, s.sku_id;
END
$$;
COMMENT ON FUNCTION shop_api.products() IS
	'active products and their active SKUs with price and available stock, by product_id, sku_id; needs no user';

-- For GET /health of an HTTP layer: whether the outbox delivery worker
-- runs.  SECURITY DEFINER because only the owner (or pg_read_all_stats)
-- sees another backend's type in pg_stat_activity; it tells nothing else.
CREATE FUNCTION shop_api.health()
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN jsonb_build_object('worker',
		EXISTS (SELECT FROM pg_catalog.pg_stat_activity
				 WHERE backend_type = 'shop outbox worker'
				   AND datname = pg_catalog.current_database()));
END
$$;
COMMENT ON FUNCTION shop_api.health() IS
	'{"worker": true|false}: whether the outbox delivery worker runs for this database (for an HTTP layer''s health check; anon may call it)';

-- API: Public (cart)

CREATE FUNCTION shop_api.cart()
	RETURNS TABLE (sku_id bigint, sku_code text, product_name text, unit_price bigint,
				   currency text, qty integer, line_total bigint, cart_total bigint)
	LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT c.sku_id, c.sku_code, c.product_name, c.unit_price, c.currency::text, c.qty,
		   c.line_total, c.cart_total
	  FROM shop.shop_cart(shop_api.current_user_id()) c
	 ORDER BY c.sku_id;
END
$$;
COMMENT ON FUNCTION shop_api.cart() IS
	'the caller''s open cart at current prices (shop.shop_cart)';

CREATE FUNCTION shop_api.cart_add(sku_id bigint, qty integer)
	RETURNS shop.cart_line
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_cart_add(shop_api.current_user_id(), $1, $2);
END
$$;
COMMENT ON FUNCTION shop_api.cart_add(bigint, integer) IS
	'add qty of a SKU to the caller''s open cart (shop.shop_cart_add); returns the line (sku_id, qty)';

CREATE FUNCTION shop_api.cart_set_qty(sku_id bigint, qty integer)
	RETURNS shop.cart_line
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_cart_set_qty(shop_api.current_user_id(), $1, $2);
END
$$;
COMMENT ON FUNCTION shop_api.cart_set_qty(bigint, integer) IS
	'set a line of the caller''s open cart to qty, 0 removes it (shop.shop_cart_set_qty); returns the line (sku_id, qty)';

CREATE FUNCTION shop_api.cart_remove(sku_id bigint)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_cart_remove(shop_api.current_user_id(), $1);
END
$$;
COMMENT ON FUNCTION shop_api.cart_remove(bigint) IS
	'remove a SKU from the caller''s open cart; true when there was such a line';

-- A guest (sub "guest:<random>", issued by the HTTP layer) who signs in
-- brings the guest cart along.  Lock order: the guest's open cart first,
-- then the caller's (inside shop_cart_add); only signed-in users are ever
-- merged into and only guests merged from, so two merges never wait for
-- each other in a cycle, and every other cart function locks one cart.
-- Each line goes through shop.shop_cart_add, so the summed line must fit
-- the available stock exactly as for an add (SH001/SH002/P0002 otherwise,
-- and then nothing changes: the error aborts the whole call).  The guest
-- cart's lock makes a concurrent second merge of the same guest wait and
-- then find the cart empty (0), and a guest's concurrent add land before
-- the merge (merged) or after it (left in the guest cart).
CREATE FUNCTION shop_api.cart_merge(guest_sub text)
	RETURNS integer
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	guest_cart bigint;
	line record;
	merged integer := 0;
BEGIN
	IF guest_sub IS NULL THEN
		RAISE EXCEPTION 'guest_sub must not be null' USING ERRCODE = '22004';
	END IF;
	IF starts_with(uid, 'guest:') THEN
		RAISE EXCEPTION 'a guest cannot merge carts'
			USING ERRCODE = '42501',
				  HINT = 'Sign in first; the signed-in user merges the guest''s cart.';
	END IF;
	IF NOT starts_with(guest_sub, 'guest:') OR guest_sub = 'guest:' THEN
		RAISE EXCEPTION 'only a guest''s cart can be merged'
			USING ERRCODE = '42501',
				  DETAIL = 'guest_sub must be the "sub" of a guest token: "guest:<random>".';
	END IF;
	IF octet_length(guest_sub) > 200 THEN
		RAISE EXCEPTION 'guest_sub is longer than 200 bytes' USING ERRCODE = '22023';
	END IF;

	SELECT c.id INTO guest_cart
	  FROM shop.cart c
	 WHERE c.user_id = guest_sub AND c.checked_out_at IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	FOR line IN SELECT i.sku_id, i.qty FROM shop.cart_item i
				 WHERE i.cart_id = guest_cart ORDER BY i.sku_id
	LOOP
		PERFORM shop.shop_cart_add(uid, line.sku_id, line.qty);
		merged := merged + 1;
	END LOOP;
	DELETE FROM shop.cart_item i WHERE i.cart_id = guest_cart;
	RETURN merged;
END
$$;
COMMENT ON FUNCTION shop_api.cart_merge(text) IS
	'move the open cart lines of guest_sub ("guest:<random>") into the caller''s open cart, each as a cart add (all or nothing); empties the guest cart; returns the number of lines merged (0 when there is nothing to merge)';

-- API: Public (orders)

CREATE FUNCTION shop_api.create_order(idempotency_key text DEFAULT NULL)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_create_order(shop_api.current_user_id(), $1);
END
$$;
COMMENT ON FUNCTION shop_api.create_order(text) IS
	'turn the caller''s open cart into a PENDING order (shop.shop_create_order); a repeated idempotency_key returns the first order';

CREATE FUNCTION shop_api.buy_now(items jsonb, idempotency_key text DEFAULT NULL)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_buy_now(shop_api.current_user_id(), $1, $2);
END
$$;
COMMENT ON FUNCTION shop_api.buy_now(jsonb, text) IS
	'a PENDING order for the caller from [{"sku_id": N, "qty": N}, ...] without a cart (shop.shop_buy_now)';

-- The user is looked up before the query runs, so a call without one is
-- PT401 even when there are no orders to scan.
CREATE FUNCTION shop_api.orders()
	RETURNS TABLE (order_id bigint, status text, status_reason text, amount bigint,
				   currency text, created_at timestamptz, expires_at timestamptz)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	RETURN QUERY
	SELECT o.id, o.status, o.status_reason, o.amount, o.currency::text, o.created_at, o.expires_at
	  FROM shop.orders o
	 WHERE o.user_id = uid AND o.status <> 'CREATED'
	 ORDER BY o.created_at DESC, o.id DESC;
END
$$;
COMMENT ON FUNCTION shop_api.orders() IS
	'the caller''s orders, newest first';

-- Another user's order answers exactly as a missing one (PT404, the same
-- message): no way to learn which order ids exist.  PT404 rather than the
-- core's P0002: PostgREST answers PTnnn with HTTP nnn but every P0 code
-- except P0001 with 500.
CREATE FUNCTION shop_api."order"(order_id bigint)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result jsonb;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	SELECT jsonb_build_object(
			'order_id', o.id, 'status', o.status, 'status_reason', o.status_reason,
			'amount', o.amount, 'currency', o.currency::text,
			'created_at', o.created_at, 'expires_at', o.expires_at,
			'items', coalesce((
				SELECT jsonb_agg(jsonb_build_object(
						'sku_id', i.sku_id, 'sku_code', i.sku_code, 'product_name', i.product_name,
						'unit_price', i.unit_price, 'qty', i.qty, 'line_total', i.unit_price * i.qty)
						ORDER BY i.sku_id)
				  FROM shop.order_item i WHERE i.order_id = o.id), '[]'::jsonb),
			'payment_sessions', coalesce((
				SELECT jsonb_agg(jsonb_build_object(
						'provider', s.provider, 'session_id', s.session_id, 'url', s.url,
						'state', s.state, 'expires_at', s.expires_at, 'created_at', s.created_at)
						ORDER BY s.id)
				  FROM shop.payment_session s WHERE s.order_id = o.id), '[]'::jsonb))
	  INTO result
	  FROM shop.orders o
	 WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF result IS NULL THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api."order"(bigint) IS
	'one of the caller''s orders with its lines and checkout sessions (PT404 for another user''s order, as for a missing one)';

CREATE FUNCTION shop_api.cancel_order(order_id bigint)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result shop.order_summary;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	-- an order's user never changes: no lock needed to check it
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	SELECT * INTO result FROM shop.shop_release($1, 'customer_cancelled');
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api.cancel_order(bigint) IS
	'cancel the caller''s PENDING order (reason customer_cancelled), giving its stock back; a CANCELLED or FAILED order is returned unchanged, a PAID one refused (SH004)';

CREATE FUNCTION shop_api.start_payment(order_id bigint, provider text,
									   success_url text, cancel_url text)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN shop.shop_start_payment($1, $2, $3, $4);
END
$$;
COMMENT ON FUNCTION shop_api.start_payment(bigint, text, text, text) IS
	'start the provider''s hosted checkout for the caller''s PENDING order (shop.shop_start_payment); returns the session and its URL';

CREATE FUNCTION shop_api.confirm_payment(order_id bigint, provider text, payment_key text,
										 amount bigint)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN shop.shop_confirm_payment($2, $1, $3, $4);
END
$$;
COMMENT ON FUNCTION shop_api.confirm_payment(bigint, text, text, bigint) IS
	'confirm-style providers (toss): the success page''s call for the caller''s order with the paymentKey and amount the provider gave (shop.shop_confirm_payment)';

-- API: Payment webhooks

-- For the shop's HTTP daemon: the core handler as it is (errors propagate
-- unchanged; the daemon maps SH010-SH014 to 400).  Keeps a failing
-- statement, which holds the raw body, out of the server log.
CREATE FUNCTION shop_api.handle_webhook(provider text, headers jsonb, body text)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic
AS $$
BEGIN
	RETURN shop.shop_handle_webhook($1, $2, $3);
END
$$;
COMMENT ON FUNCTION shop_api.handle_webhook(text, jsonb, text) IS
	'the payment webhook handler for the HTTP layer: shop.shop_handle_webhook(provider, headers, raw body); SH010-SH014 mean HTTP 400';

-- For PostgREST: POST /rpc/webhook with the provider's raw body.
--
-- A function with a single unnamed json parameter receives the whole
-- request body of a POST with Content-Type application/json
-- (docs/references/api/functions.rst, "Functions with a single unnamed JSON
-- parameter").  The bytes are passed through untouched: PostgREST keeps the
-- raw body (ApiRequest/Payload.hs: an object body becomes ProcessedJSON
-- with the raw bytes; it is only parsed to check it) and sends it as one
-- parameter of unknown type cast to the parameter's type
-- (Query/SqlFragment.hs, singleParameter: "$1::json").  The json type
-- stores an exact copy of its input text (PostgreSQL, "JSON Types"), so
-- $1::text is the body exactly as the provider signed it; jsonb would
-- re-serialise it and break every signature.  (text would keep the bytes
-- too, but PostgREST passes a text parameter only for Content-Type
-- text/plain, which providers do not send.)
--
-- The headers come from request.headers (names lowercased by PostgREST);
-- the provider from the header x-shop-provider (set by a reverse proxy per
-- provider URL), else the one registered provider whose kind signs with the
-- signature header present.  A refused event (SH010-SH014: nothing was
-- recorded) sets response.status 400 (docs/references/transactions.rst,
-- "Response Status Code") and returns {"error": SQLSTATE, "message": ...};
-- any other error propagates, rolls back, and the provider retries.
CREATE FUNCTION shop_api.webhook(json)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic
AS $$
DECLARE
	raw text := current_setting('request.headers', true);
	headers jsonb := '{}';
	provider text;
	kinds text[];
	candidates text[];
	code text;
	msg text;
BEGIN
	IF raw IS NOT NULL AND raw <> '' THEN
		headers := raw::jsonb;
	END IF;
	BEGIN
		IF jsonb_typeof(headers) <> 'object' THEN
			RAISE EXCEPTION 'request.headers is not a JSON object' USING ERRCODE = 'SH013';
		END IF;
		IF $1 IS NULL THEN
			RAISE EXCEPTION 'webhook body is empty' USING ERRCODE = 'SH014';
		END IF;
		SELECT h.value INTO provider
		  FROM jsonb_each_text(headers) h WHERE lower(h.key) = 'x-shop-provider';
		IF provider = '' THEN
			RAISE EXCEPTION 'the header x-shop-provider is empty' USING ERRCODE = 'SH010';
		ELSIF provider IS NULL THEN
			SELECT CASE WHEN bool_or(lower(h.key) = 'stripe-signature')
							 AND bool_or(lower(h.key) = 'webhook-signature') THEN NULL
						WHEN bool_or(lower(h.key) = 'stripe-signature') THEN ARRAY['stripe']
						WHEN bool_or(lower(h.key) = 'webhook-signature') THEN ARRAY['standard', 'mock']
				   END
			  INTO kinds
			  FROM jsonb_object_keys(headers) h(key);
			IF kinds IS NULL THEN
				RAISE EXCEPTION 'cannot tell the payment provider of this webhook'
					USING ERRCODE = 'SH013',
						  DETAIL = 'There is no x-shop-provider header and not exactly one of the headers stripe-signature and webhook-signature.';
			END IF;
			SELECT array_agg(p.name ORDER BY p.name) INTO candidates
			  FROM shop.payment_provider p WHERE p.kind = ANY (kinds);
			IF coalesce(array_length(candidates, 1), 0) <> 1 THEN
				RAISE EXCEPTION 'cannot tell the payment provider of this webhook'
					USING ERRCODE = 'SH010',
						  DETAIL = format('%s providers of kind %s are registered.',
										  coalesce(array_length(candidates, 1), 0),
										  array_to_string(kinds, ' or ')),
						  HINT = 'Have the reverse proxy set the header x-shop-provider for each provider''s webhook URL.';
			END IF;
			provider := candidates[1];
		END IF;
		RETURN shop.shop_handle_webhook(provider, headers, $1::text);
	EXCEPTION
		WHEN SQLSTATE 'SH010' OR SQLSTATE 'SH011' OR SQLSTATE 'SH012'
			 OR SQLSTATE 'SH013' OR SQLSTATE 'SH014' THEN
			GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			PERFORM set_config('response.status', '400', true);
			RETURN jsonb_build_object('error', code, 'message', msg);
	END;
END
$$;
COMMENT ON FUNCTION shop_api.webhook(json) IS
	'PostgREST''s payment webhook endpoint: the raw body as the single unnamed json argument, headers from request.headers, provider from x-shop-provider or the signature header; a refused event sets response.status 400 and returns {"error", "message"}';

-- Operator: the API roles' rights (in schema shop, which no API role may use)

-- The extension creates no roles; the operator creates them (README,
-- "Serving with PostgREST") and calls this once, and again after each
-- upgrade.  Each role ends with exactly its functions of schema shop_api:
-- whatever else the three roles held there is revoked first.  Nothing on
-- schema shop: the wrappers are SECURITY DEFINER.  Role names go into the
-- GRANTs through format('%I'); each must be an existing role (so "public"
-- cannot be named).
CREATE FUNCTION shop.shop_api_grant(anon_role name, user_role name, webhook_role name)
	RETURNS void
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r name;
BEGIN
	FOREACH r IN ARRAY ARRAY[anon_role, user_role, webhook_role]
	LOOP
		IF r IS NULL THEN
			RAISE EXCEPTION 'anon_role, user_role and webhook_role must not be null'
				USING ERRCODE = '22004';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			RAISE EXCEPTION 'role "%" does not exist', r
				USING ERRCODE = '42704',
					  HINT = 'Create the roles first (README, "Serving with PostgREST"); the extension creates none.';
		END IF;
	END LOOP;
	FOREACH r IN ARRAY ARRAY[anon_role, user_role, webhook_role]
	LOOP
		EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM %I', r);
		EXECUTE format('REVOKE ALL ON SCHEMA shop_api FROM %I', r);
	END LOOP;
	EXECUTE format('GRANT USAGE ON SCHEMA shop_api TO %I, %I, %I', anon_role, user_role, webhook_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.products(), shop_api.health(), shop_api.webhook(json) TO %I',
				   anon_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.current_user_id(), shop_api.products(),'
				   ' shop_api.cart(), shop_api.cart_add(bigint, integer),'
				   ' shop_api.cart_set_qty(bigint, integer), shop_api.cart_remove(bigint),'
				   ' shop_api.cart_merge(text), shop_api.create_order(text),'
				   ' shop_api.buy_now(jsonb, text), shop_api.orders(), shop_api."order"(bigint),'
				   ' shop_api.cancel_order(bigint), shop_api.start_payment(bigint, text, text, text),'
				   ' shop_api.confirm_payment(bigint, text, text, bigint)'
				   ' TO %I', user_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.handle_webhook(text, jsonb, text),'
				   ' shop_api.webhook(json) TO %I', webhook_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = user_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any user', user_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it (README, "Serving with PostgREST").';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name) IS
	'grant the PostgREST roles exactly their shop_api functions: anon_role the catalog and the webhook, user_role the shopper''s functions, webhook_role the webhook handlers (revokes anything else they held in shop_api)';

REVOKE ALL ON SCHEMA shop_api FROM PUBLIC;
REVOKE ALL ON FUNCTION shop_api.current_user_id(), shop_api.products(), shop_api.health(), shop_api.cart(),
	shop_api.cart_add(bigint, integer), shop_api.cart_set_qty(bigint, integer),
	shop_api.cart_remove(bigint), shop_api.cart_merge(text), shop_api.create_order(text),
	shop_api.buy_now(jsonb, text), shop_api.orders(), shop_api."order"(bigint),
	shop_api.cancel_order(bigint), shop_api.start_payment(bigint, text, text, text),
	shop_api.confirm_payment(bigint, text, text, bigint),
	shop_api.handle_webhook(text, jsonb, text), shop_api.webhook(json),
	shop.shop_api_grant(name, name, name)
	FROM PUBLIC;

-- Toss Payments, a confirm-style provider (src/provider_toss.c,
-- src/confirm.c): the provider kind toss (the same CHECK as in
-- src/sql/40_webhooks.sql) and shop_confirm_payment (as in
-- src/sql/60_provider_calls.sql).  The REVOKE is on the new function alone.
ALTER TABLE shop.payment_provider DROP CONSTRAINT payment_provider_kind_check;
ALTER TABLE shop.payment_provider ADD CONSTRAINT payment_provider_kind_check
	CHECK (kind IN ('stripe', 'standard', 'mock', 'toss'));
COMMENT ON FUNCTION shop.shop_set_provider(text, text, text, jsonb) IS
	'register or update a payment provider (kind stripe, standard, mock or toss); secret becomes the newest, older secrets stay valid for options.rotation_grace_seconds (default 86400)';

CREATE FUNCTION shop.shop_confirm_payment(provider text, order_id bigint,
										  payment_key text, amount bigint)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_confirm_payment'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_confirm_payment(text, bigint, text, bigint) IS
	'capture a confirm-style provider''s (toss) payment for a PENDING, unexpired order of that exact amount (one idempotent call, no lock held during it); returns {result, order_id, order_status, payment_key}';
REVOKE ALL ON FUNCTION shop.shop_confirm_payment(text, bigint, text, bigint) FROM PUBLIC;

-- Operator functions in schema shop_api (issue 11, the operator page
-- web/ops.html) and the 4-argument shop.shop_api_grant overload that grants
-- them to an operator role, as in src/sql/70_api.sql.  The REVOKEs are on
-- the new functions alone.
CREATE FUNCTION shop_api.ops_stock()
	RETURNS SETOF shop.sku_stock
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.sku_stock s ORDER BY s.product_id, s.sku_id;
END
$$;
COMMENT ON FUNCTION shop_api.ops_stock() IS
	'operator: every SKU''s stock (shop.sku_stock rows: on_hand, reserved, available, sellable), by product_id, sku_id';

CREATE FUNCTION shop_api.ops_adjust_stock(sku_id bigint, delta integer, reason text)
	RETURNS shop.stock_level
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	who text := shop_api.current_user_id();
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a stock adjustment needs a reason'
			USING ERRCODE = '22023', HINT = 'Say why, e.g. "received 10 from supplier".';
	END IF;
	RETURN shop.shop_adjust_stock(sku_id, delta, format('%s (operator %s)', reason, who));
END
$$;
COMMENT ON FUNCTION shop_api.ops_adjust_stock(bigint, integer, text) IS
	'operator: shop_adjust_stock with the operator (JWT sub) recorded in the reason; SH006 when on_hand would fall below reserved';

CREATE FUNCTION shop_api.ops_reservations()
	RETURNS SETOF shop.expiring_orders
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.expiring_orders e ORDER BY e.expires_at, e.order_id;
END
$$;
COMMENT ON FUNCTION shop_api.ops_reservations() IS
	'operator: PENDING orders holding stock with their expiry and time left (shop.expiring_orders), soonest first';

CREATE FUNCTION shop_api.ops_expire_now()
	RETURNS integer
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_expire_pending();
END
$$;
COMMENT ON FUNCTION shop_api.ops_expire_now() IS
	'operator: run the expiry sweep now (shop_expire_pending); returns how many orders were released';

CREATE FUNCTION shop_api.ops_payments()
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN jsonb_build_object(
		'events', coalesce((SELECT jsonb_agg(jsonb_build_object(
				'id', l.id, 'provider', l.provider, 'event_id', l.event_id, 'event_type', l.event_type,
				'order_id', l.order_id, 'amount', l.amount, 'currency', l.currency,
				'result', l.result, 'review', l.review, 'note', l.note, 'received_at', l.received_at)
				ORDER BY l.id DESC)
			FROM (SELECT * FROM shop.payment_log ORDER BY id DESC LIMIT 50) l), '[]'::jsonb),
		'reviews', coalesce((SELECT jsonb_agg(jsonb_build_object(
				'id', r.id, 'order_id', r.order_id, 'reason', r.reason, 'provider', r.provider,
				'event_id', r.event_id, 'detail', r.detail, 'created_at', r.created_at)
				ORDER BY r.id)
			FROM shop.order_review r WHERE r.resolved_at IS NULL), '[]'::jsonb));
END
$$;
COMMENT ON FUNCTION shop_api.ops_payments() IS
	'operator: {events: the 50 newest webhook events with their results, reviews: open orders needing review}';

CREATE FUNCTION shop_api.ops_outbox()
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN jsonb_build_object(
		'health', (SELECT to_jsonb(h) FROM shop.outbox_health h),
		'dead', coalesce((SELECT jsonb_agg(to_jsonb(d) ORDER BY d.outbox_id DESC)
			FROM (SELECT * FROM shop.outbox_dead ORDER BY outbox_id DESC LIMIT 100) d), '[]'::jsonb));
END
$$;
COMMENT ON FUNCTION shop_api.ops_outbox() IS
	'operator: {health: shop.outbox_health, dead: the 100 newest shop.outbox_dead rows}';

CREATE FUNCTION shop_api.ops_redeliver(outbox_id bigint)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_redeliver(outbox_id);
END
$$;
COMMENT ON FUNCTION shop_api.ops_redeliver(bigint) IS
	'operator: queue a dead outbox row again (shop_redeliver); true when it was dead';

CREATE FUNCTION shop_api.ops_health()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.shop_check_invariants();
END
$$;
COMMENT ON FUNCTION shop_api.ops_health() IS
	'operator: shop_check_invariants() rows (check_name, subject, detail); empty when all is well';

CREATE FUNCTION shop_api.ops_orders_per_minute()
	RETURNS TABLE (minute timestamptz, created bigint, paid bigint)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY
		SELECT m.minute,
			   count(o.id) FILTER (WHERE o.id IS NOT NULL),
			   count(o.id) FILTER (WHERE o.status = 'PAID')
		  FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
							   date_trunc('minute', now()), interval '1 minute') AS m(minute)
		  LEFT JOIN shop.orders o
			ON o.created_at >= m.minute AND o.created_at < m.minute + interval '1 minute'
		 GROUP BY m.minute
		 ORDER BY m.minute;
END
$$;
COMMENT ON FUNCTION shop_api.ops_orders_per_minute() IS
	'operator: orders created per minute over the last hour (60 rows, oldest first) and how many of them are PAID';

-- shop_api_grant with an operator role: the 3-argument form as before, then
-- exactly the ops_* functions (and USAGE on shop_api) for operator_role.  An
-- overload, so the 3-argument calls stay as they were; operator_role NULL
-- is the 3-argument form.
CREATE FUNCTION shop.shop_api_grant(anon_role name, user_role name, webhook_role name, operator_role name)
	RETURNS void
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF operator_role IS NOT NULL THEN
		IF operator_role IN (anon_role, user_role, webhook_role) THEN
			RAISE EXCEPTION 'operator_role must be a role of its own, not "%"', operator_role
				USING ERRCODE = '22023',
					  HINT = 'Create a NOLOGIN role for operators (README, "Storefront and operator pages").';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role) THEN
			RAISE EXCEPTION 'role "%" does not exist', operator_role
				USING ERRCODE = '42704',
					  HINT = 'Create the roles first (README, "Storefront and operator pages"); the extension creates none.';
		END IF;
	END IF;
	PERFORM shop.shop_api_grant(anon_role, user_role, webhook_role);
	IF operator_role IS NULL THEN
		RETURN;
	END IF;
	EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM %I', operator_role);
	EXECUTE format('REVOKE ALL ON SCHEMA shop_api FROM %I', operator_role);
	EXECUTE format('GRANT USAGE ON SCHEMA shop_api TO %I', operator_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.ops_stock(), shop_api.ops_adjust_stock(bigint, integer, text),'
				   ' shop_api.ops_reservations(), shop_api.ops_expire_now(), shop_api.ops_payments(),'
				   ' shop_api.ops_outbox(), shop_api.ops_redeliver(bigint), shop_api.ops_health(),'
				   ' shop_api.ops_orders_per_minute() TO %I', operator_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any operator', operator_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it.';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name, name) IS
	'shop_api_grant(anon_role, user_role, webhook_role) and then operator_role exactly the shop_api.ops_* functions (NULL: none); operator_role must differ from the other three';
REVOKE ALL ON FUNCTION shop_api.ops_stock(), shop_api.ops_adjust_stock(bigint, integer, text),
	shop_api.ops_reservations(), shop_api.ops_expire_now(), shop_api.ops_payments(),
	shop_api.ops_outbox(), shop_api.ops_redeliver(bigint), shop_api.ops_health(),
	shop_api.ops_orders_per_minute(), shop.shop_api_grant(name, name, name, name)
	FROM PUBLIC;

-- Money model and coupons (issue 13, first part; src/sql/10_tables.sql,
-- 20_functions.sql, 25_coupons.sql, 30_views.sql; src/coupon.c).
--   * orders: subtotal and discount (DEFAULT 0), existing orders backfilled
--     subtotal = amount, and the CHECK orders_amount_total
--     (amount = subtotal - discount; replaced when shipping and tax land);
--     order_item: discount (the line's share);
--   * tables coupon and coupon_redemption;
--   * shop_create_order and shop_buy_now gain a trailing coupon_code
--     argument (DEFAULT NULL, so calls with the old argument lists keep
--     working).  A defaulted argument added beside the old function would
--     make those calls ambiguous, so the new function replaces the old one:
--     created, given the old one's EXECUTE grants, then the old one dropped;
--   * shop_set_coupon, shop_cart_preview and the internal coupon_quote,
--     coupon_redeem, coupon_retake; shop_check_invariants checks the money
--     model and the coupon counts.
-- REVOKEs are on the new functions alone.
ALTER TABLE shop.orders
	ADD COLUMN subtotal bigint NOT NULL DEFAULT 0 CONSTRAINT orders_subtotal_nonnegative CHECK (subtotal >= 0),
	ADD COLUMN discount bigint NOT NULL DEFAULT 0 CONSTRAINT orders_discount_nonnegative CHECK (discount >= 0);
UPDATE shop.orders SET subtotal = amount;
ALTER TABLE shop.orders ADD CONSTRAINT orders_amount_total CHECK (amount = subtotal - discount);
ALTER TABLE shop.order_item
	ADD COLUMN discount bigint NOT NULL DEFAULT 0 CONSTRAINT order_item_discount_nonnegative CHECK (discount >= 0);

-- Coupons (README, "Coupons").  code is matched case-insensitively.
-- redeemed counts the active redemptions; it is what the total limit is
-- checked against, in the same statement that takes one.
CREATE TABLE shop.coupon (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	code			text NOT NULL CHECK (code <> ''),
	kind			text NOT NULL CHECK (kind IN ('percent', 'fixed')),
	percent			integer CHECK (percent BETWEEN 1 AND 100),
	amount			bigint CHECK (amount > 0),
	currency		char(3) CHECK (currency ~ '^[A-Z]{3}$'),
	min_subtotal	bigint NOT NULL DEFAULT 0 CHECK (min_subtotal >= 0),
	valid_from		timestamptz,
	valid_to		timestamptz,
	max_redemptions	integer CHECK (max_redemptions > 0),
	max_per_user	integer CHECK (max_per_user > 0),
	is_active		boolean NOT NULL DEFAULT true,
	product_ids		bigint[],
	redeemed		integer NOT NULL DEFAULT 0 CHECK (redeemed >= 0),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT coupon_kind_fields CHECK (CASE kind
		WHEN 'percent' THEN percent IS NOT NULL AND amount IS NULL AND currency IS NULL
		ELSE percent IS NULL AND amount IS NOT NULL AND currency IS NOT NULL END),
	CONSTRAINT coupon_valid_range CHECK (valid_from < valid_to),
	CONSTRAINT coupon_redeemed_within_limit CHECK (redeemed <= max_redemptions),
	CONSTRAINT coupon_products_not_empty CHECK (cardinality(product_ids) > 0)
);
CREATE UNIQUE INDEX coupon_code_lower ON shop.coupon (lower(code));

-- One row per order that used a coupon; released when the order is
-- released (and active again when a late payment takes it back).
CREATE TABLE shop.coupon_redemption (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	coupon_id			bigint NOT NULL REFERENCES shop.coupon (id),
	order_id			bigint NOT NULL UNIQUE REFERENCES shop.orders (id),
	user_id				text NOT NULL,
	state				text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'released')),
	created_at			timestamptz NOT NULL DEFAULT now(),
	state_changed_at	timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX coupon_redemption_user_idx ON shop.coupon_redemption (coupon_id, user_id)
	WHERE state = 'active';

SELECT pg_catalog.pg_extension_config_dump('shop.coupon', '');
SELECT pg_catalog.pg_extension_config_dump('shop.coupon_redemption', '');
SELECT pg_catalog.pg_extension_config_dump('shop.coupon_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.coupon_redemption_id_seq', '');
REVOKE ALL ON TABLE shop.coupon, shop.coupon_redemption FROM PUBLIC;
REVOKE ALL ON SEQUENCE shop.coupon_id_seq, shop.coupon_redemption_id_seq FROM PUBLIC;

CREATE FUNCTION shop.shop_create_order(user_id text, idempotency_key text DEFAULT NULL,
										coupon_code text DEFAULT NULL)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_create_order'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_create_order(text, text, text) IS
	'turn the open cart into a PENDING order: reserve every line (all or nothing), snapshot prices, apply the coupon if any, close the cart; a repeated (user_id, idempotency_key) returns the first order';

CREATE FUNCTION shop.shop_buy_now(user_id text, items jsonb, idempotency_key text DEFAULT NULL,
								  coupon_code text DEFAULT NULL)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_buy_now'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_buy_now(text, jsonb, text, text) IS
	'create a PENDING order from [{"sku_id": N, "qty": N}, ...] without a cart, with the coupon if any; lines of the same SKU are summed';

REVOKE ALL ON FUNCTION shop.shop_create_order(text, text, text),
	shop.shop_buy_now(text, jsonb, text, text) FROM PUBLIC;
-- The operator's EXECUTE grants on the old signatures carry over.  A GRANT
-- run inside an extension script is recorded in pg_init_privs as the
-- extension's own initial privilege, which pg_dump then leaves out (a
-- restored database would lose the operator's grants, and the catalog would
-- differ from a fresh install granted by the operator).  So the initial
-- privileges of the two new functions are set back to what the script
-- itself gave them (the owner's EXECUTE, PUBLIC revoked above): the carried
-- grants stay the operator's, as they were on the old functions.
DO $$
DECLARE
	g			record;
	-- the new functions' initial privileges as the script left them
	init_order	aclitem[] := (SELECT initprivs FROM pg_catalog.pg_init_privs
							   WHERE objoid = 'shop.shop_create_order(text, text, text)'::regprocedure
								 AND classoid = 'pg_catalog.pg_proc'::regclass AND objsubid = 0);
	init_buy	aclitem[] := (SELECT initprivs FROM pg_catalog.pg_init_privs
							   WHERE objoid = 'shop.shop_buy_now(text, jsonb, text, text)'::regprocedure
								 AND classoid = 'pg_catalog.pg_proc'::regclass AND objsubid = 0);
BEGIN
	FOR g IN
		SELECT n.new_sig, a.grantee::regrole AS grantee, a.is_grantable
		  FROM (VALUES ('shop.shop_create_order(text, text)'::regprocedure,
						'shop.shop_create_order(text, text, text)'),
					   ('shop.shop_buy_now(text, jsonb, text)'::regprocedure,
						'shop.shop_buy_now(text, jsonb, text, text)')) AS n(old_fn, new_sig)
		  JOIN pg_catalog.pg_proc p ON p.oid = n.old_fn
		 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
		 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
		 ORDER BY 1, 2
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', g.new_sig, g.grantee::text,
					   CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
	UPDATE pg_catalog.pg_init_privs SET initprivs = init_order
	 WHERE objoid = 'shop.shop_create_order(text, text, text)'::regprocedure
	   AND classoid = 'pg_catalog.pg_proc'::regclass AND objsubid = 0 AND init_order IS NOT NULL;
	UPDATE pg_catalog.pg_init_privs SET initprivs = init_buy
	 WHERE objoid = 'shop.shop_buy_now(text, jsonb, text, text)'::regprocedure
	   AND classoid = 'pg_catalog.pg_proc'::regclass AND objsubid = 0 AND init_buy IS NOT NULL;
END
$$;
DROP FUNCTION shop.shop_create_order(text, text);
DROP FUNCTION shop.shop_buy_now(text, jsonb, text);

CREATE TYPE shop.cart_preview_row AS (
	sku_id			bigint,
	sku_code		text,
	product_name	text,
	unit_price		bigint,
	currency		char(3),
	qty				integer,
	line_total		bigint,
	line_discount	bigint,
	subtotal		bigint,
	discount		bigint,
	total			bigint
);

-- Check coupon p_code for lines (ascending sku_id: p_skus, their products
-- and line totals) of user p_user in p_currency, and split its discount.
-- With p_lock the coupon row is locked (FOR UPDATE) first, so the limits
-- read here hold until the caller's transaction ends.
--
-- The rounding rule: a percent discount is computed on the eligible
-- subtotal (all lines, or the lines of the coupon's products), rounded half
-- up to the minor unit; a fixed discount is capped at the eligible
-- subtotal.  It is split over the eligible lines in proportion to their
-- line totals, rounded down per line; the remainder goes to the largest
-- line (ties: lowest sku_id), and only if that line is full to the next
-- largest, so the lines add up exactly to the discount and no line is
-- discounted below 0.
CREATE FUNCTION shop.coupon_quote(p_code text, p_user text, p_currency text,
								  p_skus bigint[], p_products bigint[], p_totals bigint[],
								  p_lock boolean,
								  OUT coupon_id bigint, OUT discount bigint,
								  OUT line_discounts bigint[])
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c			shop.coupon;
	n			integer := coalesce(cardinality(p_skus), 0);
	subtotal	numeric := 0;
	eligible	numeric := 0;
	used		integer;
	d			bigint;
	rest		bigint;
	share		bigint;
	i			integer;
	idx			integer;
BEGIN
	IF p_code IS NULL THEN
		RAISE EXCEPTION 'coupon_code must not be null' USING ERRCODE = '22004';
	END IF;
	IF p_lock THEN
		SELECT * INTO c FROM shop.coupon k WHERE lower(k.code) = lower(p_code) FOR UPDATE;
	ELSE
		SELECT * INTO c FROM shop.coupon k WHERE lower(k.code) = lower(p_code);
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coupon "%" does not exist', p_code
			USING ERRCODE = 'SH025', HINT = 'Check the code; codes are not case-sensitive.';
	END IF;
	IF NOT c.is_active OR now() < c.valid_from OR now() >= c.valid_to THEN
		RAISE EXCEPTION 'coupon "%" is not valid now', c.code
			USING ERRCODE = 'SH026',
				  DETAIL = format('active %s, valid from %s to %s', c.is_active,
								  coalesce(c.valid_from::text, '-'), coalesce(c.valid_to::text, '-'));
	END IF;
	IF c.kind = 'fixed' AND c.currency <> p_currency THEN
		RAISE EXCEPTION 'coupon "%" is in %, the order in %', c.code, c.currency, p_currency
			USING ERRCODE = 'SH030';
	END IF;
	FOR i IN 1 .. n LOOP
		subtotal := subtotal + p_totals[i];
		IF c.product_ids IS NULL OR p_products[i] = ANY (c.product_ids) THEN
			eligible := eligible + p_totals[i];
		END IF;
	END LOOP;
	IF subtotal < c.min_subtotal THEN
		RAISE EXCEPTION 'subtotal % is below the minimum % of coupon "%"', subtotal, c.min_subtotal, c.code
			USING ERRCODE = 'SH028';
	END IF;
	IF c.product_ids IS NOT NULL AND NOT EXISTS
		(SELECT FROM unnest(p_products) p WHERE p = ANY (c.product_ids)) THEN
		RAISE EXCEPTION 'coupon "%" is not for these items', c.code
			USING ERRCODE = 'SH029',
				  DETAIL = format('It applies to products %s only.', c.product_ids);
	END IF;
	IF c.max_redemptions IS NOT NULL AND c.redeemed >= c.max_redemptions THEN
		RAISE EXCEPTION 'coupon "%" is used up', c.code
			USING ERRCODE = 'SH027', DETAIL = format('All %s redemptions are taken.', c.max_redemptions);
	END IF;
	IF c.max_per_user IS NOT NULL THEN
		SELECT count(*) INTO used FROM shop.coupon_redemption r
		 WHERE r.coupon_id = c.id AND r.user_id = p_user AND r.state = 'active';
		IF used >= c.max_per_user THEN
			RAISE EXCEPTION 'coupon "%" is used up for user "%"', c.code, p_user
				USING ERRCODE = 'SH027', DETAIL = format('At most %s per user.', c.max_per_user);
		END IF;
	END IF;

	IF c.kind = 'percent' THEN
		d := round(eligible * c.percent / 100);		-- numeric round: half up for >= 0
	ELSE
		d := least(c.amount::numeric, eligible);
	END IF;

	line_discounts := array_fill(0::bigint, ARRAY[n]);
	rest := d;
	IF eligible > 0 THEN
		FOR i IN 1 .. n LOOP
			IF c.product_ids IS NULL OR p_products[i] = ANY (c.product_ids) THEN
				share := floor(d::numeric * p_totals[i] / eligible);
				line_discounts[i] := share;
				rest := rest - share;
			END IF;
		END LOOP;
		-- the remainder: largest line first (ties: lowest sku_id), capped at
		-- each line's total
		FOR idx IN
			SELECT t.i FROM unnest(p_totals, p_skus, p_products) WITH ORDINALITY AS t(total, sku, product, i)
			 WHERE c.product_ids IS NULL OR t.product = ANY (c.product_ids)
			 ORDER BY t.total DESC, t.sku
		LOOP
			EXIT WHEN rest = 0;
			share := least(rest, p_totals[idx] - line_discounts[idx]);
			line_discounts[idx] := line_discounts[idx] + share;
			rest := rest - share;
		END LOOP;
	END IF;
	coupon_id := c.id;
	discount := d;
END
$$;
COMMENT ON FUNCTION shop.coupon_quote(text, text, text, bigint[], bigint[], bigint[], boolean) IS
	'internal: check a coupon against order lines and split its discount over them (the rounding rule); raises SH025-SH030';

-- Apply coupon p_code to order p_order (its lines reserved, amount not yet
-- set): take a redemption and write each line's share.  Called by order.c
-- after every SKU lock of the order is held.  Returns the discount.
CREATE FUNCTION shop.coupon_redeem(p_order bigint, p_user text, p_code text, p_currency text)
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	totals		bigint[];
	q			record;
BEGIN
	SELECT array_agg(i.sku_id ORDER BY i.sku_id), array_agg(s.product_id ORDER BY i.sku_id),
		   array_agg(i.unit_price * i.qty ORDER BY i.sku_id)
	  INTO skus, products, totals
	  FROM shop.order_item i JOIN shop.sku s ON s.id = i.sku_id
	 WHERE i.order_id = p_order;
	-- locks the coupon row: the limits checked stay true until commit
	q := shop.coupon_quote(p_code, p_user, p_currency, skus, products, totals, true);
	-- the total limit, checked and counted in one statement
	UPDATE shop.coupon SET redeemed = redeemed + 1
	 WHERE id = q.coupon_id AND (max_redemptions IS NULL OR redeemed < max_redemptions);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coupon "%" is used up', p_code USING ERRCODE = 'SH027';
	END IF;
	INSERT INTO shop.coupon_redemption (coupon_id, order_id, user_id)
	VALUES (q.coupon_id, p_order, p_user);
	UPDATE shop.order_item i SET discount = d.x
	  FROM unnest(skus, q.line_discounts) AS d(sku, x)
	 WHERE i.order_id = p_order AND i.sku_id = d.sku AND d.x <> 0;
	RETURN q.discount;
END
$$;
COMMENT ON FUNCTION shop.coupon_redeem(bigint, text, text, text) IS
	'internal (shop_create_order, shop_buy_now): redeem a coupon for an order whose lines are reserved; returns the discount';

-- A late payment re-reserved released order p_order: take its released
-- redemption again if the limits allow.  false: they do not (the caller
-- gives the stock back and sends the order to review).  Called after every
-- SKU lock of the order is held.
CREATE FUNCTION shop.coupon_retake(p_order bigint)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r		shop.coupon_redemption;
	c		shop.coupon;
	used	integer;
BEGIN
	SELECT * INTO r FROM shop.coupon_redemption WHERE order_id = p_order;
	IF NOT FOUND OR r.state = 'active' THEN
		RETURN true;
	END IF;
	SELECT * INTO c FROM shop.coupon WHERE id = r.coupon_id FOR UPDATE;
	IF c.max_redemptions IS NOT NULL AND c.redeemed >= c.max_redemptions THEN
		RETURN false;
	END IF;
	IF c.max_per_user IS NOT NULL THEN
		SELECT count(*) INTO used FROM shop.coupon_redemption x
		 WHERE x.coupon_id = c.id AND x.user_id = r.user_id AND x.state = 'active';
		IF used >= c.max_per_user THEN
			RETURN false;
		END IF;
	END IF;
	UPDATE shop.coupon SET redeemed = redeemed + 1 WHERE id = c.id;
	UPDATE shop.coupon_redemption SET state = 'active', state_changed_at = now()
	 WHERE id = r.id;
	RETURN true;
END
$$;
COMMENT ON FUNCTION shop.coupon_retake(bigint) IS
	'internal (payment webhook): take a re-reserved order''s released coupon redemption again; false when the coupon''s limits no longer allow it';

-- API: Operator

CREATE FUNCTION shop.shop_set_coupon(code text, kind text, value bigint,
									 currency text DEFAULT NULL,
									 min_subtotal bigint DEFAULT 0,
									 valid_from timestamptz DEFAULT NULL,
									 valid_to timestamptz DEFAULT NULL,
									 max_redemptions integer DEFAULT NULL,
									 max_per_user integer DEFAULT NULL,
									 is_active boolean DEFAULT true,
									 product_ids bigint[] DEFAULT NULL)
	RETURNS shop.coupon
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.coupon AS k (code, kind, percent, amount, currency, min_subtotal,
								  valid_from, valid_to, max_redemptions, max_per_user,
								  is_active, product_ids)
	VALUES ($1, $2,
			CASE WHEN $2 = 'percent' THEN $3::integer END,
			CASE WHEN $2 = 'fixed' THEN $3 END,
			CASE WHEN $2 = 'fixed' THEN upper($4) END,
			$5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT ((lower(code))) DO UPDATE
	   SET kind = excluded.kind, percent = excluded.percent, amount = excluded.amount,
		   currency = excluded.currency, min_subtotal = excluded.min_subtotal,
		   valid_from = excluded.valid_from, valid_to = excluded.valid_to,
		   max_redemptions = excluded.max_redemptions, max_per_user = excluded.max_per_user,
		   is_active = excluded.is_active, product_ids = excluded.product_ids,
		   updated_at = now()
	RETURNING k.*
$$;
COMMENT ON FUNCTION shop.shop_set_coupon(text, text, bigint, text, bigint, timestamptz, timestamptz, integer, integer, boolean, bigint[]) IS
	'create or update (matched case-insensitively by code) a coupon: kind percent (value 1-100) or fixed (value in minor units of currency); the redemption count is kept';

-- API: Public (cart)

CREATE FUNCTION shop.shop_cart_preview(user_id text, coupon_code text)
	RETURNS SETOF shop.cart_preview_row
	LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	totals		bigint[];
	cur			text;
	q			record;
	disc		bigint := 0;
	shares		bigint[];
BEGIN
	SELECT array_agg(ci.sku_id ORDER BY ci.sku_id), array_agg(s.product_id ORDER BY ci.sku_id),
		   array_agg(p.price * ci.qty ORDER BY ci.sku_id), min(p.currency)
	  INTO skus, products, totals, cur
	  FROM shop.cart c
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	 WHERE c.user_id = $1 AND c.checked_out_at IS NULL;
	IF skus IS NULL THEN
		RETURN;
	END IF;
	IF $2 IS NULL THEN
		shares := array_fill(0::bigint, ARRAY[cardinality(skus)]);
	ELSE
		q := shop.coupon_quote($2, $1, cur, skus, products, totals, false);
		disc := q.discount;
		shares := q.line_discounts;
	END IF;
	RETURN QUERY
	SELECT ci.sku_id, s.code, p.name, p.price, p.currency, ci.qty,
		   p.price * ci.qty, d.x,
		   (sum(p.price * ci.qty) OVER ())::bigint, disc,
		   (sum(p.price * ci.qty) OVER ())::bigint - disc
	  FROM shop.cart c
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	  JOIN unnest(skus, shares) AS d(sku, x) ON d.sku = ci.sku_id
	 WHERE c.user_id = $1 AND c.checked_out_at IS NULL
	 ORDER BY ci.sku_id;
END
$$;
COMMENT ON FUNCTION shop.shop_cart_preview(text, text) IS
	'the open cart''s lines with current prices and each line''s share of the coupon''s discount, with subtotal, discount and total; refuses a coupon that would be refused at checkout (SH025-SH030), without taking it';
REVOKE ALL ON FUNCTION
	shop.coupon_quote(text, text, text, bigint[], bigint[], bigint[], boolean),
	shop.coupon_redeem(bigint, text, text, text), shop.coupon_retake(bigint),
	shop.shop_set_coupon(text, text, bigint, text, bigint, timestamptz, timestamptz, integer, integer, boolean, bigint[]),
	shop.shop_cart_preview(text, text)
	FROM PUBLIC;

-- (shop_check_invariants is replaced once, at the end of this script)

-- ---------------------------------------------------------------------------
-- Hot-SKU mode (issue 12; src/hot.c, src/sql/10_tables.sql, 20_functions.sql,
-- 30_views.sql).
--   * sku.buckets (0: sold from the SKU row, as before), table sku_bucket,
--     stock_reservation.bucket (0: held in the SKU row; every existing
--     reservation is);
--   * shop_set_sku_mode(sku_id, buckets);
--   * views sku_stock (totals with the buckets; column buckets added at the
--     end) and sku_buckets; shop_check_invariants checks every bucket.
-- REVOKEs are on the new objects alone.
-- ---------------------------------------------------------------------------
ALTER TABLE shop.sku
	ADD COLUMN buckets smallint NOT NULL DEFAULT 0 CONSTRAINT sku_buckets_range CHECK (buckets BETWEEN 0 AND 64);

-- A hot SKU's stock split into buckets, so that concurrent buyers lock
-- different rows (src/hot.c).  Each bucket has the SKU's CHECKs; a
-- reservation records its bucket and settles there.  The SKU's totals are
-- its own row plus its buckets.  Buckets are never deleted: a bucket left
-- over from a larger N keeps the reservations it holds.
CREATE TABLE shop.sku_bucket (
	sku_id		bigint NOT NULL REFERENCES shop.sku (id),
	bucket		smallint NOT NULL CONSTRAINT sku_bucket_bucket_range CHECK (bucket BETWEEN 1 AND 64),
	on_hand		bigint NOT NULL DEFAULT 0,
	reserved	bigint NOT NULL DEFAULT 0,
	CONSTRAINT sku_bucket_on_hand_nonnegative CHECK (on_hand >= 0),
	CONSTRAINT sku_bucket_reserved_nonnegative CHECK (reserved >= 0),
	CONSTRAINT sku_bucket_reserved_within_on_hand CHECK (reserved <= on_hand),
	PRIMARY KEY (sku_id, bucket)
);

ALTER TABLE shop.stock_reservation
	ADD COLUMN bucket smallint NOT NULL DEFAULT 0
		CONSTRAINT stock_reservation_bucket_range CHECK (bucket BETWEEN 0 AND 64);

CREATE OR REPLACE VIEW shop.sku_stock AS
SELECT s.id AS sku_id,
	   s.code,
	   s.product_id,
	   p.name AS product_name,
	   s.on_hand OPERATOR(pg_catalog.+) COALESCE(b.on_hand, 0) AS on_hand,
	   s.reserved OPERATOR(pg_catalog.+) COALESCE(b.reserved, 0) AS reserved,
	   s.on_hand OPERATOR(pg_catalog.-) s.reserved
		   OPERATOR(pg_catalog.+) COALESCE(b.available, 0) AS available,
	   s.is_active AND p.is_active AS sellable,
	   s.buckets
  FROM shop.sku s
  JOIN shop.product p ON p.id OPERATOR(pg_catalog.=) s.product_id
  -- a hot SKU's buckets (src/hot.c) count with its own row
  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(k.on_hand)::bigint AS on_hand,
			   pg_catalog.sum(k.reserved)::bigint AS reserved,
			   pg_catalog.sum(k.on_hand OPERATOR(pg_catalog.-) k.reserved)::bigint AS available
		  FROM shop.sku_bucket k
		 WHERE k.sku_id OPERATOR(pg_catalog.=) s.id) b ON true;
COMMENT ON VIEW shop.sku_stock IS 'on_hand, reserved and available (on_hand - reserved) per SKU, a hot SKU''s buckets included; buckets is its mode (0: sold from its own row)';

-- A hot SKU's buckets one by one (src/hot.c): where its stock is held.
CREATE VIEW shop.sku_buckets AS
SELECT k.sku_id,
	   s.code,
	   k.bucket,
	   k.on_hand,
	   k.reserved,
	   k.on_hand OPERATOR(pg_catalog.-) k.reserved AS available,
	   k.bucket OPERATOR(pg_catalog.<=) s.buckets AS in_use
  FROM shop.sku_bucket k
  JOIN shop.sku s ON s.id OPERATOR(pg_catalog.=) k.sku_id;
COMMENT ON VIEW shop.sku_buckets IS 'the stock buckets of hot SKUs; in_use is false for a bucket beyond the SKU''s current mode, which only settles what it still holds';

CREATE FUNCTION shop.shop_set_sku_mode(sku_id bigint, buckets integer)
	RETURNS shop.stock_level
	AS 'MODULE_PATHNAME', 'shop_set_sku_mode'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_set_sku_mode(bigint, integer) IS
	'hot-SKU mode: sell the SKU from buckets (1-64) so that concurrent buyers do not wait on one row lock, or from its own row again (0); safe on a live SKU; returns its totals';

SELECT pg_catalog.pg_extension_config_dump('shop.sku_bucket', '');
REVOKE ALL ON TABLE shop.sku_bucket, shop.sku_buckets FROM PUBLIC;
REVOKE ALL ON FUNCTION shop.shop_set_sku_mode(bigint, integer) FROM PUBLIC;

-- Refunds by lines with a restock policy (issue 13, second part): the table
-- shop.refund_line, shop_refund's new trailing arguments lines and restock,
-- the view shop.order_refund_status, the refund rules of
-- shop_check_invariants (shop.refund_invariants), and shop_api.ops_refund
-- (granted to the operator role by shop_api_grant).  As written in
-- src/sql/30_views.sql, 60_provider_calls.sql and 70_api.sql.
-- ---------------------------------------------------------------------------

-- The units a refund returns (issue 13): qty units of one order line, worth
-- amount (their share of what the line was paid), back in stock or not.  A
-- restocked line names the stock adjustment that booked its units; one line
-- per refund, order line and policy.  Units are refunded once: the lines of
-- every refund, whatever its state, count against the order line's qty.
CREATE TABLE shop.refund_line (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	refund_id		bigint NOT NULL REFERENCES shop.refund (id),
	order_item_id	bigint NOT NULL REFERENCES shop.order_item (id),
	qty				integer NOT NULL CHECK (qty > 0),
	amount			bigint NOT NULL CHECK (amount >= 0),
	restocked		boolean NOT NULL,
	adjustment_id	bigint REFERENCES shop.stock_adjustment (id),
	CONSTRAINT refund_line_restock_booked CHECK (restocked = (adjustment_id IS NOT NULL)),
	UNIQUE (refund_id, order_item_id, restocked)
);
CREATE INDEX refund_line_item_idx ON shop.refund_line (order_item_id);
CREATE UNIQUE INDEX refund_line_adjustment_idx ON shop.refund_line (adjustment_id)
	WHERE adjustment_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('shop.refund_line', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund_line_id_seq', '');

-- A new signature: the 3-argument function is dropped and the 5-argument
-- one created (calls with the old argument lists work unchanged).  It was
-- created by this same upgrade and granted to no one; the REVOKE below is
-- the one it had.
DROP FUNCTION shop.shop_refund(bigint, bigint, text);
CREATE FUNCTION shop.shop_refund(order_id bigint, amount bigint DEFAULT NULL,
								 reason text DEFAULT NULL, lines jsonb DEFAULT NULL,
								 restock text DEFAULT 'restock')
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_refund'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_refund(bigint, bigint, text, jsonb, text) IS
	'queue a refund of a PAID order''s payment through the outbox: all that is left (every unit not refunded yet, restocked or not) by default, lines [{order_item_id|sku_id, qty, restock}] or an amount';

-- Each order's refunds against its payment (issue 13): paid is the order's
-- amount once it is PAID; refunded counts the refunds requested or made
-- (not the failed ones) of that payment; state is none, partially_refunded
-- or refunded.  Refunds of another payment (a double payment's automatic
-- refund) are not the order's and are not counted.
CREATE VIEW shop.order_refund_status AS
SELECT o.id AS order_id,
	   o.status AS order_status,
	   o.currency,
	   CASE WHEN o.status OPERATOR(pg_catalog.=) 'PAID' THEN o.amount ELSE 0 END AS paid,
	   COALESCE(r.refunded, 0) AS refunded,
	   COALESCE(r.succeeded, 0) AS succeeded,
	   COALESCE(r.failed, 0) AS failed,
	   COALESCE(u.units, 0) AS units_refunded,
	   COALESCE(u.restocked, 0) AS units_restocked,
	   CASE WHEN COALESCE(r.refunded, 0) OPERATOR(pg_catalog.=) 0 THEN 'none'
			WHEN r.refunded OPERATOR(pg_catalog.>=) o.amount THEN 'refunded'
			ELSE 'partially_refunded' END AS state
  FROM shop.orders o
  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(x.amount) FILTER (WHERE x.state OPERATOR(pg_catalog.<>) 'failed')::bigint AS refunded,
			   pg_catalog.sum(x.amount) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'succeeded')::bigint AS succeeded,
			   pg_catalog.sum(x.amount) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'failed')::bigint AS failed
		  FROM shop.refund x
		 WHERE x.order_id OPERATOR(pg_catalog.=) o.id
		   AND x.payment_id OPERATOR(pg_catalog.=) o.external_payment_id) r ON true
  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(l.qty)::bigint AS units,
			   pg_catalog.sum(l.qty) FILTER (WHERE l.restocked)::bigint AS restocked
		  FROM shop.order_item i
		  JOIN shop.refund_line l ON l.order_item_id OPERATOR(pg_catalog.=) i.id
		 WHERE i.order_id OPERATOR(pg_catalog.=) o.id) u ON true;
COMMENT ON VIEW shop.order_refund_status IS
	'each order''s paid amount, what its refunds give back (refunded = requested + succeeded, failed apart), units refunded and restocked, and state none | partially_refunded | refunded';

-- The refund rules (issue 13), read by shop_check_invariants().  PL/pgSQL
-- because the refund tables are created by a later part of the install
-- script (src/sql/60_provider_calls.sql): its queries are planned when it
-- first runs.  Granted to no one; shop_check_invariants() reports its rows.
CREATE FUNCTION shop.refund_invariants()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	-- refunds requested or made never exceed what the order's payment paid
	SELECT 'refunded_within_paid'::text, 'order ' || o.id,
		   format('%s refunded (requested or succeeded) of a payment of %s', r.refunded, o.amount)
	  FROM shop.orders o
	  JOIN (SELECT x.order_id, x.payment_id, sum(x.amount) AS refunded
			  FROM shop.refund x WHERE x.state <> 'failed'
			 GROUP BY x.order_id, x.payment_id) r
		ON r.order_id = o.id AND r.payment_id = o.external_payment_id
	 WHERE r.refunded > o.amount
	UNION ALL
	-- a line's units are refunded, and restocked, at most once
	SELECT 'refunded_units_within_sold', 'order ' || i.order_id,
		   format('line %s (sku %s) sold %s units; refunds returned %s, restocked %s',
				  i.id, i.sku_id, i.qty, l.units, l.restocked)
	  FROM shop.order_item i
	  JOIN (SELECT order_item_id, sum(qty) AS units,
				   coalesce(sum(qty) FILTER (WHERE restocked), 0) AS restocked
			  FROM shop.refund_line GROUP BY order_item_id) l ON l.order_item_id = i.id
	 WHERE l.units > i.qty OR l.restocked > i.qty
	UNION ALL
	-- a refund returns lines of its own order only
	SELECT 'refund_line_of_its_order', 'order ' || r.order_id,
		   format('refund %s has refund line %s of order %s', r.id, l.id, i.order_id)
	  FROM shop.refund_line l
	  JOIN shop.order_item i ON i.id = l.order_item_id
	  JOIN shop.refund r ON r.id = l.refund_id
	 WHERE r.order_id <> i.order_id
	UNION ALL
	-- the books: every restocked unit is one stock adjustment of its SKU
	-- (so initial + adjustments - consumed still explains on_hand)
	SELECT 'restock_booked_as_adjustment', 'sku ' || i.sku_id,
		   format('refund line %s restocked %s units; its adjustment %s is %s',
				  l.id, l.qty, l.adjustment_id,
				  coalesce(format('%s units of sku %s', a.delta, a.sku_id), 'missing'))
	  FROM shop.refund_line l
	  JOIN shop.order_item i ON i.id = l.order_item_id
	  LEFT JOIN shop.stock_adjustment a ON a.id = l.adjustment_id
	 WHERE l.restocked
	   AND (a.id IS NULL OR a.sku_id <> i.sku_id OR a.delta <> l.qty);
END
$$;
COMMENT ON FUNCTION shop.refund_invariants() IS
	'the refund rows of shop_check_invariants(): refunds within the paid amount, refunded and restocked units within the sold ones, every restock booked as its stock adjustment';

-- (shop_check_invariants is replaced once, at the end of this script)

CREATE FUNCTION shop_api.ops_refund(order_id bigint, reason text, lines jsonb DEFAULT NULL,
									restock text DEFAULT 'restock', amount bigint DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	who text := shop_api.current_user_id();
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a refund needs a reason'
			USING ERRCODE = '22023', HINT = 'Say why, e.g. "returned, box damaged".';
	END IF;
	RETURN shop.shop_refund(order_id, amount, format('%s (operator %s)', reason, who), lines, restock);
END
$$;
COMMENT ON FUNCTION shop_api.ops_refund(bigint, text, jsonb, text, bigint) IS
	'operator: shop_refund with the operator (JWT sub) recorded in the reason: lines [{order_item_id|sku_id, qty, restock}] with restock or no_restock, an amount, or (neither) all that is left with every unit restocked';

-- (the operator's shop_api_grant is replaced once, at the end of this script)

REVOKE ALL ON TABLE shop.refund_line, shop.order_refund_status FROM PUBLIC;
REVOKE ALL ON SEQUENCE shop.refund_line_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION shop.shop_refund(bigint, bigint, text, jsonb, text),
	shop.refund_invariants() FROM PUBLIC;
REVOKE ALL ON FUNCTION shop_api.ops_refund(bigint, text, jsonb, text, bigint) FROM PUBLIC;

-- Shipping, tax and fulfilment (issue 13, second part; src/sql/10_tables.sql,
-- 20_functions.sql, 27_shipping_tax.sql, 30_views.sql, 50_outbox.sql,
-- 70_api.sql; src/shipping.c).
--   * product: tax_class (DEFAULT 'standard');
--   * orders: shipping, tax, tax_included (DEFAULT 0), shipping_method,
--     ship_to, carrier, tracking_no, shipped_at, delivered_at and the
--     generated fulfilment_status; the CHECK orders_amount_total is
--     replaced by one of the same name reading
--     amount = subtotal - discount + shipping + tax (every existing order
--     has shipping = tax = 0, so it holds); order_item: tax (0);
--   * tables shipping_method, tax_setting, tax_rate;
--   * event types order.shipped and order.delivered (the CHECK of
--     shop.event is replaced by the longer list, same name);
--   * type cart_preview_row gains line_tax, shipping, tax, tax_included;
--   * shop_create_order, shop_buy_now and shop_cart_preview gain trailing
--     arguments with defaults: each new function replaces the old one
--     (created, given the old one's EXECUTE grants, then the old one
--     dropped), as the coupon section above does;
--   * new functions (shipping and tax rules, operator setters,
--     shop_set_shipping, shop_ship, shop_mark_delivered), the view
--     warehouse_queue, shop_check_invariants checks the extended money
--     model; shop_api: shipping_methods, set_shipping, ops_warehouse_queue,
--     ops_ship, ops_mark_delivered, "order" shows shipping and tax, and both
--     shop_api_grant forms grant the new wrappers.
-- REVOKEs are on the new objects alone.
ALTER TABLE shop.product
	ADD COLUMN tax_class text NOT NULL DEFAULT 'standard' CONSTRAINT product_tax_class_not_empty CHECK (tax_class <> '');
ALTER TABLE shop.orders
	ADD COLUMN shipping bigint NOT NULL DEFAULT 0 CONSTRAINT orders_shipping_nonnegative CHECK (shipping >= 0),
	ADD COLUMN tax bigint NOT NULL DEFAULT 0 CONSTRAINT orders_tax_nonnegative CHECK (tax >= 0),
	ADD COLUMN tax_included bigint NOT NULL DEFAULT 0 CONSTRAINT orders_tax_included_nonnegative CHECK (tax_included >= 0),
	ADD COLUMN shipping_method text,
	ADD COLUMN ship_to jsonb CONSTRAINT orders_ship_to_object CHECK (jsonb_typeof(ship_to) = 'object'),
	ADD COLUMN carrier text CONSTRAINT orders_carrier_not_empty CHECK (carrier <> ''),
	ADD COLUMN tracking_no text CONSTRAINT orders_tracking_no_not_empty CHECK (tracking_no <> ''),
	ADD COLUMN shipped_at timestamptz,
	ADD COLUMN delivered_at timestamptz,
	ADD COLUMN fulfilment_status text GENERATED ALWAYS AS (CASE
		WHEN delivered_at IS NOT NULL THEN 'DELIVERED'
		WHEN shipped_at IS NOT NULL THEN 'SHIPPED'
		WHEN status = 'PAID' AND ship_to IS NOT NULL THEN 'READY' END) STORED,
	DROP CONSTRAINT orders_amount_total,
	ADD CONSTRAINT orders_amount_total CHECK (amount = subtotal - discount + shipping + tax),
	ADD CONSTRAINT orders_tax_one_kind CHECK (tax = 0 OR tax_included = 0),
	ADD CONSTRAINT orders_shipment_fields CHECK ((shipped_at IS NULL) = (carrier IS NULL)
		AND (shipped_at IS NULL) = (tracking_no IS NULL)
		AND (delivered_at IS NULL OR shipped_at IS NOT NULL));
-- The warehouse queue (view shop.warehouse_queue) reads only READY orders.
CREATE INDEX orders_ready_idx ON shop.orders (created_at, id)
	WHERE fulfilment_status = 'READY';
ALTER TABLE shop.order_item
	ADD COLUMN tax bigint NOT NULL DEFAULT 0 CONSTRAINT order_item_tax_nonnegative CHECK (tax >= 0);

-- Shipping methods (README, "Shipping"): a flat cost in one currency, free
-- when the goods (subtotal - discount) reach free_over, for the countries
-- listed (ISO 3166 alpha-2; NULL: everywhere).
CREATE TABLE shop.shipping_method (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	code		text NOT NULL UNIQUE CONSTRAINT shipping_method_code_check CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
	name		text NOT NULL CONSTRAINT shipping_method_name_check CHECK (name <> ''),
	currency	char(3) NOT NULL CONSTRAINT shipping_method_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
	cost		bigint NOT NULL CONSTRAINT shipping_method_cost_check CHECK (cost >= 0),
	free_over	bigint CONSTRAINT shipping_method_free_over_check CHECK (free_over >= 0),
	countries	text[] CONSTRAINT shipping_method_countries_check CHECK (cardinality(countries) > 0
		AND array_position(countries, NULL) IS NULL
		AND array_to_string(countries, ',') ~ '^[A-Z]{2}(,[A-Z]{2})*$'),
	active		boolean NOT NULL DEFAULT true,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- Tax settings per currency (README, "Tax"): whether prices in it include
-- tax, and the country whose rates apply when an order has no address.  A
-- currency without a row has no tax.
CREATE TABLE shop.tax_setting (
	currency			char(3) PRIMARY KEY CONSTRAINT tax_setting_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
	prices_include_tax	boolean NOT NULL,
	default_country		char(2) CONSTRAINT tax_setting_default_country_check CHECK (default_country ~ '^[A-Z]{2}$'),
	updated_at			timestamptz NOT NULL DEFAULT now()
);

-- Tax rates in percent by country, optionally region (the address's
-- "region"), and the product's tax_class.  A region's own rate wins over
-- the country's (region NULL).
CREATE TABLE shop.tax_rate (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	country		char(2) NOT NULL CONSTRAINT tax_rate_country_check CHECK (country ~ '^[A-Z]{2}$'),
	region		text CONSTRAINT tax_rate_region_check CHECK (region <> ''),
	tax_class	text NOT NULL DEFAULT 'standard' CONSTRAINT tax_rate_tax_class_check CHECK (tax_class <> ''),
	rate		numeric(7,4) NOT NULL CONSTRAINT tax_rate_rate_check CHECK (rate >= 0 AND rate <= 100),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tax_rate_key ON shop.tax_rate (country, (coalesce(region, '')), tax_class);

SELECT pg_catalog.pg_extension_config_dump('shop.shipping_method', '');
SELECT pg_catalog.pg_extension_config_dump('shop.tax_setting', '');
SELECT pg_catalog.pg_extension_config_dump('shop.tax_rate', '');
SELECT pg_catalog.pg_extension_config_dump('shop.shipping_method_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.tax_rate_id_seq', '');
REVOKE ALL ON TABLE shop.shipping_method, shop.tax_setting, shop.tax_rate FROM PUBLIC;
REVOKE ALL ON SEQUENCE shop.shipping_method_id_seq, shop.tax_rate_id_seq FROM PUBLIC;

ALTER TABLE shop.event DROP CONSTRAINT event_type_check,
	ADD CONSTRAINT event_type_check CHECK (type IN ('order.created', 'order.paid', 'order.cancelled',
												  'order.failed', 'order.expired', 'order.needs_review',
												  'stock.low', 'order.shipped', 'order.delivered'));

ALTER TYPE shop.cart_preview_row
	ADD ATTRIBUTE line_tax bigint,
	ADD ATTRIBUTE shipping bigint,
	ADD ATTRIBUTE tax bigint,
	ADD ATTRIBUTE tax_included bigint;

-- Every officially assigned ISO 3166-1 alpha-2 code (249, as in tzdata's
-- iso3166.tab).
CREATE FUNCTION shop.iso_country(p_code text)
	RETURNS boolean
	LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT $1 = ANY ('{AD,AE,AF,AG,AI,AL,AM,AO,AQ,AR,AS,AT,AU,AW,AX,AZ,BA,BB,BD,BE,BF,BG,BH,BI,BJ,BL,BM,BN,BO,BQ,BR,BS,BT,BV,BW,BY,BZ,CA,CC,CD,CF,CG,CH,CI,CK,CL,CM,CN,CO,CR,CU,CV,CW,CX,CY,CZ,DE,DJ,DK,DM,DO,DZ,EC,EE,EG,EH,ER,ES,ET,FI,FJ,FK,FM,FO,FR,GA,GB,GD,GE,GF,GG,GH,GI,GL,GM,GN,GP,GQ,GR,GS,GT,GU,GW,GY,HK,HM,HN,HR,HT,HU,ID,IE,IL,IM,IN,IO,IQ,IR,IS,IT,JE,JM,JO,JP,KE,KG,KH,KI,KM,KN,KP,KR,KW,KY,KZ,LA,LB,LC,LI,LK,LR,LS,LT,LU,LV,LY,MA,MC,MD,ME,MF,MG,MH,MK,ML,MM,MN,MO,MP,MQ,MR,MS,MT,MU,MV,MW,MX,MY,MZ,NA,NC,NE,NF,NG,NI,NL,NO,NP,NR,NU,NZ,OM,PA,PE,PF,PG,PH,PK,PL,PM,PN,PR,PS,PT,PW,PY,QA,RE,RO,RS,RU,RW,SA,SB,SC,SD,SE,SG,SH,SI,SJ,SK,SL,SM,SN,SO,SR,SS,ST,SV,SX,SY,SZ,TC,TD,TF,TG,TH,TJ,TK,TL,TM,TN,TO,TR,TT,TV,TW,TZ,UA,UG,UM,US,UY,UZ,VA,VC,VE,VG,VI,VN,VU,WF,WS,YE,YT,ZA,ZM,ZW}'::text[])
$$;
COMMENT ON FUNCTION shop.iso_country(text) IS
	'internal: whether the text is an assigned ISO 3166-1 alpha-2 country code (upper case)';

-- Validate a shipping address and return it normalised: the known fields
-- only, each trimmed, country in upper case.  Required: name, line1, city,
-- postal_code, country; optional: line2, region, phone.  SH031 otherwise.
CREATE FUNCTION shop.ship_to_check(p_address jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k		text;
	v		jsonb;
	val		text;
	result	jsonb := '{}';
BEGIN
	IF p_address IS NULL OR jsonb_typeof(p_address) <> 'object' THEN
		RAISE EXCEPTION 'the shipping address must be a JSON object'
			USING ERRCODE = 'SH031',
				  HINT = 'Pass {"name", "line1", "city", "postal_code", "country"} (line2, region, phone optional).';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(p_address) LOOP
		IF k NOT IN ('name', 'line1', 'line2', 'city', 'region', 'postal_code', 'country', 'phone') THEN
			RAISE EXCEPTION 'the shipping address has an unknown field "%"', left(k, 64)
				USING ERRCODE = 'SH031',
					  HINT = 'Fields are name, line1, line2, city, region, postal_code, country, phone.';
		END IF;
		IF jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'the shipping address field "%" must be a string', k
				USING ERRCODE = 'SH031';
		END IF;
		val := btrim(v #>> '{}');
		IF octet_length(val) > 200 THEN
			RAISE EXCEPTION 'the shipping address field "%" is longer than 200 bytes', k
				USING ERRCODE = 'SH031';
		END IF;
		IF val <> '' THEN
			result := result || jsonb_build_object(k, CASE k WHEN 'country' THEN upper(val) ELSE val END);
		END IF;
	END LOOP;
	FOREACH k IN ARRAY ARRAY['name', 'line1', 'city', 'postal_code', 'country'] LOOP
		IF NOT result ? k THEN
			RAISE EXCEPTION 'the shipping address has no "%"', k
				USING ERRCODE = 'SH031',
					  DETAIL = 'name, line1, city, postal_code and country are required and must not be blank.';
		END IF;
	END LOOP;
	IF NOT shop.iso_country(result ->> 'country') THEN
		RAISE EXCEPTION 'the shipping address country "%" is not an ISO 3166 alpha-2 code', result ->> 'country'
			USING ERRCODE = 'SH031', HINT = 'Use two letters, e.g. KR, US, DE.';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop.ship_to_check(jsonb) IS
	'internal: validate a shipping address (SH031) and return it normalised (known fields, trimmed, country upper case)';

-- Shipping and tax for lines (ascending sku_id: p_skus, their products,
-- their nets = line total - the line's discount) of an order in
-- p_currency, with shipping method p_method (NULL: none) to address
-- p_ship_to (NULL: none; required with a method).
--
-- Shipping: the method's cost, 0 when the goods (the sum of the nets,
-- i.e. subtotal - discount) reach its free_over.
--
-- The tax rounding rule (README, "Tax"): the currency's tax setting says
-- whether prices include tax; the country is the address's, else the
-- setting's default_country; each line's rate is the tax_rate of that
-- country, the address's region if it has its own, and the product's
-- tax_class (no rate: no tax).  Per rate, the tax of the lines at that rate
-- is computed once on their summed nets, rounded half up to the minor unit:
-- net x rate / 100 when prices exclude tax (added on top), net x rate /
-- (100 + rate) when they include it (the share contained).  It is split
-- over those lines in proportion to their nets, rounded down per line; the
-- remainder goes to the largest net (ties: lowest sku_id), and, when prices
-- include tax, never beyond a line's net (the rest to the next largest),
-- so the lines add up exactly to the order's tax.
CREATE FUNCTION shop.shipping_tax_quote(p_currency text, p_skus bigint[], p_products bigint[],
										p_nets bigint[], p_method text, p_ship_to jsonb,
										OUT shipping bigint, OUT tax bigint, OUT tax_included bigint,
										OUT line_taxes bigint[], OUT ship_to jsonb)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n			integer := coalesce(cardinality(p_skus), 0);
	goods		numeric := 0;
	m			shop.shipping_method;
	st			shop.tax_setting;
	v_country	text;
	v_region	text;
	rates		numeric[];
	g			numeric;
	group_net	numeric;
	t			bigint;
	rest		bigint;
	share		bigint;
	total_tax	bigint := 0;
	i			integer;
	idx			integer;
BEGIN
	shipping := 0;
	tax := 0;
	tax_included := 0;
	line_taxes := array_fill(0::bigint, ARRAY[n]);
	IF p_ship_to IS NOT NULL THEN
		ship_to := shop.ship_to_check(p_ship_to);
	END IF;
	FOR i IN 1 .. n LOOP
		goods := goods + p_nets[i];
	END LOOP;

	IF p_method IS NOT NULL THEN
		IF ship_to IS NULL THEN
			RAISE EXCEPTION 'shipping method "%" needs a shipping address', p_method
				USING ERRCODE = 'SH031', HINT = 'Pass ship_to with the method.';
		END IF;
		SELECT * INTO m FROM shop.shipping_method sm WHERE sm.code = p_method;
		IF NOT FOUND OR NOT m.active THEN
			RAISE EXCEPTION 'shipping method "%" does not exist or is not active', p_method
				USING ERRCODE = 'SH032';
		END IF;
		IF m.currency <> p_currency THEN
			RAISE EXCEPTION 'shipping method "%" is in %, the order in %', m.code, m.currency, p_currency
				USING ERRCODE = 'SH033';
		END IF;
		IF m.countries IS NOT NULL AND NOT (ship_to ->> 'country') = ANY (m.countries) THEN
			RAISE EXCEPTION 'shipping method "%" does not ship to %', m.code, ship_to ->> 'country'
				USING ERRCODE = 'SH033',
					  DETAIL = format('It ships to %s.', array_to_string(m.countries, ', '));
		END IF;
		shipping := CASE WHEN m.free_over IS NOT NULL AND goods >= m.free_over THEN 0 ELSE m.cost END;
	END IF;

	SELECT * INTO st FROM shop.tax_setting s WHERE s.currency = p_currency;
	IF NOT FOUND OR n = 0 THEN
		RETURN;
	END IF;
	v_country := coalesce(ship_to ->> 'country', st.default_country);
	v_region := ship_to ->> 'region';
	IF v_country IS NULL THEN
		RETURN;
	END IF;
	-- each line's rate: the region's own, else the country's; none: no tax
	SELECT array_agg((SELECT r.rate FROM shop.tax_rate r
					   WHERE r.country = v_country AND r.tax_class = p.tax_class
						 AND (r.region IS NULL OR r.region = v_region)
					   ORDER BY r.region IS NULL LIMIT 1) ORDER BY l.i)
	  INTO rates
	  FROM unnest(p_products) WITH ORDINALITY AS l(product, i)
	  JOIN shop.product p ON p.id = l.product;
	FOR g IN SELECT DISTINCT x FROM unnest(rates) x WHERE x > 0 ORDER BY 1 LOOP
		group_net := 0;
		FOR i IN 1 .. n LOOP
			IF rates[i] = g THEN
				group_net := group_net + p_nets[i];
			END IF;
		END LOOP;
		CONTINUE WHEN group_net = 0;
		IF st.prices_include_tax THEN
			t := round(group_net * g / (100 + g));		-- numeric round: half up for >= 0
		ELSE
			t := round(group_net * g / 100);
		END IF;
		rest := t;
		FOR i IN 1 .. n LOOP
			IF rates[i] = g THEN
				share := floor(t::numeric * p_nets[i] / group_net);
				line_taxes[i] := share;
				rest := rest - share;
			END IF;
		END LOOP;
		FOR idx IN
			SELECT l.i FROM unnest(p_nets, p_skus, rates) WITH ORDINALITY AS l(net, sku, rate, i)
			 WHERE l.rate = g
			 ORDER BY l.net DESC, l.sku
		LOOP
			EXIT WHEN rest = 0;
			share := CASE WHEN st.prices_include_tax
						  THEN least(rest, p_nets[idx] - line_taxes[idx]) ELSE rest END;
			line_taxes[idx] := line_taxes[idx] + share;
			rest := rest - share;
		END LOOP;
		total_tax := total_tax + t;
	END LOOP;
	IF st.prices_include_tax THEN
		tax_included := total_tax;
	ELSE
		tax := total_tax;
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shipping_tax_quote(text, bigint[], bigint[], bigint[], text, jsonb) IS
	'internal: shipping cost and tax (the rounding rule) for order lines; raises SH031-SH033';

-- Price shipping and tax of order p_order (its lines and coupon settled,
-- the order row locked or just created by this transaction): write each
-- line's tax, the order's shipping, tax, method and address, and amount =
-- subtotal - discount + shipping + tax.  Returns the order summary.
CREATE FUNCTION shop.order_reprice(p_order bigint, p_method text, p_ship_to jsonb)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	nets		bigint[];
	cur			text;
	q			record;
	result		shop.order_summary;
BEGIN
	SELECT array_agg(i.sku_id ORDER BY i.sku_id), array_agg(s.product_id ORDER BY i.sku_id),
		   array_agg(i.unit_price * i.qty - i.discount ORDER BY i.sku_id)
	  INTO skus, products, nets
	  FROM shop.order_item i JOIN shop.sku s ON s.id = i.sku_id
	 WHERE i.order_id = p_order;
	SELECT o.currency INTO cur FROM shop.orders o WHERE o.id = p_order;
	q := shop.shipping_tax_quote(cur, skus, products, nets, p_method, p_ship_to);
	UPDATE shop.order_item i SET tax = d.x
	  FROM unnest(skus, q.line_taxes) AS d(sku, x)
	 WHERE i.order_id = p_order AND i.sku_id = d.sku AND i.tax <> d.x;
	UPDATE shop.orders o
	   SET shipping = q.shipping, tax = q.tax, tax_included = q.tax_included,
		   shipping_method = p_method, ship_to = q.ship_to,
		   amount = o.subtotal - o.discount + q.shipping + q.tax, updated_at = now()
	 WHERE o.id = p_order
	RETURNING o.id, o.status, o.amount, o.currency, o.expires_at INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop.order_reprice(bigint, text, jsonb) IS
	'internal (shop_create_order, shop_buy_now, shop_set_shipping): price an order''s shipping and tax and set its amount';

-- API: Operator (shipping methods and tax)

CREATE FUNCTION shop.shop_set_shipping_method(code text, name text, currency text, cost bigint,
											  free_over bigint DEFAULT NULL,
											  countries text[] DEFAULT NULL,
											  active boolean DEFAULT true)
	RETURNS shop.shipping_method
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.shipping_method AS m (code, name, currency, cost, free_over, countries, active)
	VALUES ($1, $2, upper($3), $4, $5,
			CASE WHEN $6 IS NOT NULL THEN (SELECT coalesce(array_agg(upper(c) ORDER BY o), '{}')
											 FROM unnest($6) WITH ORDINALITY AS x(c, o)) END, $7)
	ON CONFLICT (code) DO UPDATE
	   SET name = excluded.name, currency = excluded.currency, cost = excluded.cost,
		   free_over = excluded.free_over, countries = excluded.countries,
		   active = excluded.active, updated_at = now()
	RETURNING m.*
$$;
COMMENT ON FUNCTION shop.shop_set_shipping_method(text, text, text, bigint, bigint, text[], boolean) IS
	'create or update (by code) a shipping method: flat cost in currency, free when the goods reach free_over, for countries (NULL: everywhere)';

CREATE FUNCTION shop.shop_set_tax_setting(currency text, prices_include_tax boolean,
										  default_country text DEFAULT NULL)
	RETURNS shop.tax_setting
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.tax_setting AS t (currency, prices_include_tax, default_country)
	VALUES (upper($1), $2, upper($3))
	ON CONFLICT (currency) DO UPDATE
	   SET prices_include_tax = excluded.prices_include_tax,
		   default_country = excluded.default_country, updated_at = now()
	RETURNING t.*
$$;
COMMENT ON FUNCTION shop.shop_set_tax_setting(text, boolean, text) IS
	'set whether prices in currency include tax, and the country whose rates apply to orders without an address';

CREATE FUNCTION shop.shop_set_tax_rate(country text, rate numeric,
									   tax_class text DEFAULT 'standard',
									   region text DEFAULT NULL)
	RETURNS shop.tax_rate
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.tax_rate AS r (country, rate, tax_class, region)
	VALUES (upper($1), $2, $3, $4)
	ON CONFLICT (country, (coalesce(region, '')), tax_class) DO UPDATE
	   SET rate = excluded.rate, updated_at = now()
	RETURNING r.*
$$;
COMMENT ON FUNCTION shop.shop_set_tax_rate(text, numeric, text, text) IS
	'create or update the tax rate (percent) of a country, tax class and optional region';

-- API: Public (cart)

CREATE FUNCTION shop.shop_cart_preview(user_id text, coupon_code text,
									   shipping_method text DEFAULT NULL,
									   ship_to jsonb DEFAULT NULL)
	RETURNS SETOF shop.cart_preview_row
	LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	totals		bigint[];
	nets		bigint[];
	cur			text;
	q			record;
	st			record;
	disc		bigint := 0;
	shares		bigint[];
BEGIN
	SELECT array_agg(ci.sku_id ORDER BY ci.sku_id), array_agg(s.product_id ORDER BY ci.sku_id),
		   array_agg(p.price * ci.qty ORDER BY ci.sku_id), min(p.currency)
	  INTO skus, products, totals, cur
	  FROM shop.cart c
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	 WHERE c.user_id = $1 AND c.checked_out_at IS NULL;
	IF skus IS NULL THEN
		RETURN;
	END IF;
	IF $2 IS NULL THEN
		shares := array_fill(0::bigint, ARRAY[cardinality(skus)]);
	ELSE
		q := shop.coupon_quote($2, $1, cur, skus, products, totals, false);
		disc := q.discount;
		shares := q.line_discounts;
	END IF;
	SELECT array_agg(t.total - t.share ORDER BY t.i) INTO nets
	  FROM unnest(totals, shares) WITH ORDINALITY AS t(total, share, i);
	st := shop.shipping_tax_quote(cur, skus, products, nets, $3, $4);
	RETURN QUERY
	SELECT ci.sku_id, s.code, p.name, p.price, p.currency, ci.qty,
		   p.price * ci.qty, d.x,
		   (sum(p.price * ci.qty) OVER ())::bigint, disc,
		   (sum(p.price * ci.qty) OVER ())::bigint - disc + st.shipping + st.tax,
		   d.t, st.shipping, st.tax, st.tax_included
	  FROM shop.cart c
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	  JOIN unnest(skus, shares, st.line_taxes) AS d(sku, x, t) ON d.sku = ci.sku_id
	 WHERE c.user_id = $1 AND c.checked_out_at IS NULL
	 ORDER BY ci.sku_id;
END
$$;
COMMENT ON FUNCTION shop.shop_cart_preview(text, text, text, jsonb) IS
	'the open cart''s lines with current prices, each line''s share of the coupon''s discount and its tax, with subtotal, discount, shipping, tax and total; refuses what checkout would refuse (SH025-SH030, SH031-SH033), without taking anything';

-- API: Public (shipping) and Operator (fulfilment): C, src/shipping.c

CREATE TYPE shop.fulfilment_summary AS (
	order_id			bigint,
	status				text,
	fulfilment_status	text,
	carrier				text,
	tracking_no			text,
	shipped_at			timestamptz,
	delivered_at		timestamptz
);

CREATE FUNCTION shop.shop_set_shipping(order_id bigint, method text, address jsonb)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_set_shipping'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_set_shipping(bigint, text, jsonb) IS
	'choose the shipping method and address of a PENDING order, re-pricing shipping, tax and amount; refused (SH034) once a checkout was started at a provider';

CREATE FUNCTION shop.shop_ship(order_id bigint, carrier text, tracking text)
	RETURNS shop.fulfilment_summary
	AS 'MODULE_PATHNAME', 'shop_ship'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_ship(bigint, text, text) IS
	'mark a READY (PAID, with an address) order SHIPPED with carrier and tracking number (event order.shipped); the same call again returns it unchanged';

CREATE FUNCTION shop.shop_mark_delivered(order_id bigint)
	RETURNS shop.fulfilment_summary
	AS 'MODULE_PATHNAME', 'shop_mark_delivered'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_mark_delivered(bigint) IS
	'mark a SHIPPED order DELIVERED (event order.delivered); a DELIVERED order is returned unchanged';

-- The warehouse's work list: orders paid and not shipped yet, oldest first.
CREATE VIEW shop.warehouse_queue AS
SELECT o.id AS order_id,
	   o.user_id,
	   o.created_at,
	   pg_catalog.now() OPERATOR(pg_catalog.-) o.created_at AS age,
	   o.shipping_method,
	   o.ship_to,
	   (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('sku_id', i.sku_id,
				'sku_code', i.sku_code, 'product_name', i.product_name, 'qty', i.qty)
				ORDER BY i.sku_id)
		  FROM shop.order_item i WHERE i.order_id OPERATOR(pg_catalog.=) o.id) AS items,
	   o.amount,
	   o.currency
  FROM shop.orders o
 WHERE o.fulfilment_status OPERATOR(pg_catalog.=) 'READY'
 ORDER BY o.created_at, o.id;
COMMENT ON VIEW shop.warehouse_queue IS 'PAID orders with an address that are not shipped yet (fulfilment READY), oldest first';

CREATE FUNCTION shop.shop_create_order(user_id text, idempotency_key text DEFAULT NULL,
										coupon_code text DEFAULT NULL,
										shipping_method text DEFAULT NULL,
										ship_to jsonb DEFAULT NULL)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_create_order'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_create_order(text, text, text, text, jsonb) IS
	'turn the open cart into a PENDING order: reserve every line (all or nothing), snapshot prices, apply the coupon if any, price shipping and tax, close the cart; a repeated (user_id, idempotency_key) returns the first order';

CREATE FUNCTION shop.shop_buy_now(user_id text, items jsonb, idempotency_key text DEFAULT NULL,
								  coupon_code text DEFAULT NULL,
								  shipping_method text DEFAULT NULL,
								  ship_to jsonb DEFAULT NULL)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_buy_now'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_buy_now(text, jsonb, text, text, text, jsonb) IS
	'create a PENDING order from [{"sku_id": N, "qty": N}, ...] without a cart, with the coupon, shipping and tax if any; lines of the same SKU are summed';

REVOKE ALL ON FUNCTION shop.iso_country(text), shop.ship_to_check(jsonb),
	shop.shipping_tax_quote(text, bigint[], bigint[], bigint[], text, jsonb),
	shop.order_reprice(bigint, text, jsonb),
	shop.shop_set_shipping_method(text, text, text, bigint, bigint, text[], boolean),
	shop.shop_set_tax_setting(text, boolean, text), shop.shop_set_tax_rate(text, numeric, text, text),
	shop.shop_cart_preview(text, text, text, jsonb), shop.shop_set_shipping(bigint, text, jsonb),
	shop.shop_ship(bigint, text, text), shop.shop_mark_delivered(bigint),
	shop.shop_create_order(text, text, text, text, jsonb),
	shop.shop_buy_now(text, jsonb, text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON TABLE shop.warehouse_queue FROM PUBLIC;
-- The operator's EXECUTE grants on the replaced signatures carry over, and
-- the new functions' initial privileges stay what the script gave them
-- (see the coupon section above for why).
DO $$
DECLARE
	g		record;
	f		record;
BEGIN
	FOR g IN
		SELECT n.new_sig, a.grantee::regrole AS grantee, a.is_grantable
		  FROM (VALUES ('shop.shop_create_order(text, text, text)'::regprocedure,
						'shop.shop_create_order(text, text, text, text, jsonb)'),
					   ('shop.shop_buy_now(text, jsonb, text, text)'::regprocedure,
						'shop.shop_buy_now(text, jsonb, text, text, text, jsonb)'),
					   ('shop.shop_cart_preview(text, text)'::regprocedure,
						'shop.shop_cart_preview(text, text, text, jsonb)')) AS n(old_fn, new_sig)
		  JOIN pg_catalog.pg_proc p ON p.oid = n.old_fn
		 CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
		 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
		 ORDER BY 1, 2
	LOOP
		FOR f IN
			SELECT i.objoid, i.initprivs FROM pg_catalog.pg_init_privs i
			 WHERE i.objoid = g.new_sig::regprocedure
			   AND i.classoid = 'pg_catalog.pg_proc'::regclass AND i.objsubid = 0
		LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', g.new_sig, g.grantee::text,
						   CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
			UPDATE pg_catalog.pg_init_privs SET initprivs = f.initprivs
			 WHERE objoid = f.objoid AND classoid = 'pg_catalog.pg_proc'::regclass AND objsubid = 0;
		END LOOP;
	END LOOP;
END
$$;
DROP FUNCTION shop.shop_create_order(text, text, text);
DROP FUNCTION shop.shop_buy_now(text, jsonb, text, text);
DROP FUNCTION shop.shop_cart_preview(text, text);

-- A pure read-only report, so plain SQL: one query that states each rule.
-- (shop_check_invariants is replaced once, at the end of this script)

CREATE OR REPLACE FUNCTION shop_api."order"(order_id bigint)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result jsonb;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	SELECT jsonb_build_object(
			'order_id', o.id, 'status', o.status, 'status_reason', o.status_reason,
			'amount', o.amount, 'currency', o.currency::text,
			'created_at', o.created_at, 'expires_at', o.expires_at)
		-- shipping, tax and fulfilment only when the order has them
		|| CASE WHEN o.ship_to IS NULL AND o.shipping = 0 AND o.tax = 0 AND o.tax_included = 0
				THEN '{}'::jsonb
				ELSE jsonb_build_object('subtotal', o.subtotal, 'discount', o.discount,
					'shipping', o.shipping, 'tax', o.tax, 'tax_included', o.tax_included,
					'shipping_method', o.shipping_method, 'ship_to', o.ship_to,
					'fulfilment_status', o.fulfilment_status, 'carrier', o.carrier,
					'tracking_no', o.tracking_no, 'shipped_at', o.shipped_at,
					'delivered_at', o.delivered_at) END
		|| jsonb_build_object(
			'items', coalesce((
				SELECT jsonb_agg(jsonb_build_object(
						'sku_id', i.sku_id, 'sku_code', i.sku_code, 'product_name', i.product_name,
						'unit_price', i.unit_price, 'qty', i.qty, 'line_total', i.unit_price * i.qty)
						ORDER BY i.sku_id)
				  FROM shop.order_item i WHERE i.order_id = o.id), '[]'::jsonb),
			'payment_sessions', coalesce((
				SELECT jsonb_agg(jsonb_build_object(
						'provider', s.provider, 'session_id', s.session_id, 'url', s.url,
						'state', s.state, 'expires_at', s.expires_at, 'created_at', s.created_at)
						ORDER BY s.id)
				  FROM shop.payment_session s WHERE s.order_id = o.id), '[]'::jsonb))
	  INTO result
	  FROM shop.orders o
	 WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF result IS NULL THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api."order"(bigint) IS
	'one of the caller''s orders with its lines and checkout sessions (PT404 for another user''s order, as for a missing one)';

-- API: Public (shipping; issue 13)

CREATE FUNCTION shop_api.shipping_methods()
	RETURNS TABLE (code text, name text, currency text, cost bigint, free_over bigint,
				   countries text[])
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT m.code, m.name, m.currency::text, m.cost, m.free_over, m.countries
	  FROM shop.shipping_method m
	 WHERE m.active
	 ORDER BY m.currency, m.cost, m.code;
END
$$;
COMMENT ON FUNCTION shop_api.shipping_methods() IS
	'the active shipping methods (code, name, currency, cost, free_over, countries: NULL for everywhere); needs no user';

CREATE FUNCTION shop_api.set_shipping(order_id bigint, method text, address jsonb)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result shop.order_summary;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	-- an order's user never changes: no lock needed to check it
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	SELECT * INTO result FROM shop.shop_set_shipping($1, $2, $3);
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api.set_shipping(bigint, text, jsonb) IS
	'choose the shipping method and address of the caller''s PENDING order (shop.shop_set_shipping), re-pricing shipping, tax and amount; PT404 for another user''s order';

-- Fulfilment (issue 13): the warehouse's queue, shipping and delivery.

CREATE FUNCTION shop_api.ops_warehouse_queue()
	RETURNS SETOF shop.warehouse_queue
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.warehouse_queue w ORDER BY w.created_at, w.order_id;
END
$$;
COMMENT ON FUNCTION shop_api.ops_warehouse_queue() IS
	'operator: PAID orders with an address not shipped yet (shop.warehouse_queue), oldest first';

CREATE FUNCTION shop_api.ops_ship(order_id bigint, carrier text, tracking text)
	RETURNS shop.fulfilment_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_ship($1, $2, $3);
END
$$;
COMMENT ON FUNCTION shop_api.ops_ship(bigint, text, text) IS
	'operator: mark a READY order SHIPPED with carrier and tracking number (shop_ship; the same call again returns it unchanged)';

CREATE FUNCTION shop_api.ops_mark_delivered(order_id bigint)
	RETURNS shop.fulfilment_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_mark_delivered($1);
END
$$;
COMMENT ON FUNCTION shop_api.ops_mark_delivered(bigint) IS
	'operator: mark a SHIPPED order DELIVERED (shop_mark_delivered; a DELIVERED order is returned unchanged)';

-- (shop_api_grant's 3-argument form is replaced once, at the end of this script)

-- (the operator's shop_api_grant is replaced once, at the end of this script)

REVOKE ALL ON FUNCTION shop_api.shipping_methods(), shop_api.set_shipping(bigint, text, jsonb),
	shop_api.ops_warehouse_queue(), shop_api.ops_ship(bigint, text, text),
	shop_api.ops_mark_delivered(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Refund events (issue 13): order.refunded when the provider confirms a
-- refund, order.refund_failed when it is given up.  The CHECK of
-- shop.event is replaced by the longer list (same name), as in
-- src/sql/50_outbox.sql: one array constant, not an IN list (see there).
-- ---------------------------------------------------------------------------
ALTER TABLE shop.event DROP CONSTRAINT event_type_check,
	ADD CONSTRAINT event_type_check CHECK (type = ANY ('{order.created, order.paid, order.cancelled,
													   order.failed, order.expired, order.needs_review,
													   stock.low, order.shipped, order.delivered,
													   order.refunded, order.refund_failed}'::text[]));

-- ---------------------------------------------------------------------------
-- Free orders: an order with nothing to pay (amount 0: a coupon covered
-- everything, or free items) is confirmed without a payment provider
-- (src/sql/20_functions.sql, 70_api.sql; src/order_state.c).  New:
-- shop.shop_confirm_free and shop_api.confirm_free (granted to the user
-- role by shop_api_grant, replaced at the end of this script).
-- ---------------------------------------------------------------------------
CREATE FUNCTION shop.shop_confirm_free(order_id bigint)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_confirm_free'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_confirm_free(bigint) IS
	'mark a PENDING order with nothing to pay (amount 0) PAID without a payment; a PAID order of amount 0 is returned unchanged, an order with an amount refused (SH017)';

CREATE FUNCTION shop_api.confirm_free(order_id bigint)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN shop.shop_confirm_free($1);
END
$$;
COMMENT ON FUNCTION shop_api.confirm_free(bigint) IS
	'the caller''s PENDING order with nothing to pay (amount 0) becomes PAID without a provider (shop.shop_confirm_free); SH017 when it has an amount';

REVOKE ALL ON FUNCTION shop.shop_confirm_free(bigint), shop_api.confirm_free(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Objects that several sections above change, replaced here once with
-- their final text, as in the fresh install (src/sql/30_views.sql,
-- src/sql/70_api.sql): shop_check_invariants (the money model, coupons,
-- hot-SKU buckets, refunds, shipping and tax), shop_api_grant's 3-argument
-- form (shipping and free orders) and the operator's shop_api_grant
-- (ops_refund and the fulfilment functions).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION shop.shop_check_invariants()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	WITH held AS (
		SELECT sku_id, bucket, sum(qty) AS qty
		  FROM shop.stock_reservation
		 WHERE state = 'active'
		 GROUP BY sku_id, bucket
	)
	-- every stock row (a SKU's own row is bucket 0) holds exactly what its
	-- active reservations say
	SELECT 'reserved_matches_active_reservations', 'sku ' || s.id,
		   format('reserved is %s but active reservations hold %s', s.reserved, coalesce(h.qty, 0))
	  FROM shop.sku s LEFT JOIN held h ON h.sku_id = s.id AND h.bucket = 0
	 WHERE s.reserved <> coalesce(h.qty, 0)
	UNION ALL
	SELECT 'reserved_matches_active_reservations', 'sku ' || k.sku_id || ' bucket ' || k.bucket,
		   format('reserved is %s but active reservations hold %s', k.reserved, coalesce(h.qty, 0))
	  FROM shop.sku_bucket k LEFT JOIN held h ON h.sku_id = k.sku_id AND h.bucket = k.bucket
	 WHERE k.reserved <> coalesce(h.qty, 0)
	UNION ALL
	SELECT 'reservation_in_existing_bucket', 'sku ' || h.sku_id || ' bucket ' || h.bucket,
		   format('active reservations hold %s units in a bucket that does not exist', h.qty)
	  FROM held h
	 WHERE h.bucket > 0
	   AND NOT EXISTS (SELECT FROM shop.sku_bucket k WHERE k.sku_id = h.sku_id AND k.bucket = h.bucket)
	UNION ALL
	SELECT 'stock_within_bounds', 'sku ' || s.id,
		   format('on_hand %s, reserved %s', s.on_hand, s.reserved)
	  FROM shop.sku s
	 WHERE s.on_hand < 0 OR s.reserved < 0 OR s.reserved > s.on_hand
	UNION ALL
	SELECT 'stock_within_bounds', 'sku ' || k.sku_id || ' bucket ' || k.bucket,
		   format('on_hand %s, reserved %s', k.on_hand, k.reserved)
	  FROM shop.sku_bucket k
	 WHERE k.on_hand < 0 OR k.reserved < 0 OR k.reserved > k.on_hand
	UNION ALL
	-- a hot SKU sells from buckets 1..N: each of them exists
	SELECT 'hot_sku_has_its_buckets', 'sku ' || s.id,
		   format('mode is %s buckets but %s of them exist', s.buckets,
				  (SELECT count(*) FROM shop.sku_bucket k WHERE k.sku_id = s.id AND k.bucket <= s.buckets))
	  FROM shop.sku s
	 WHERE s.buckets > 0
	   AND (SELECT count(*) FROM shop.sku_bucket k WHERE k.sku_id = s.id AND k.bucket <= s.buckets) <> s.buckets
	UNION ALL
	SELECT 'settled_order_holds_no_stock', 'order ' || o.id,
		   format('%s order has an active reservation of %s units of sku %s', o.status, r.qty, r.sku_id)
	  FROM shop.orders o JOIN shop.stock_reservation r ON r.order_id = o.id
	 WHERE o.status IN ('PAID', 'CANCELLED', 'FAILED') AND r.state = 'active'
	UNION ALL
	SELECT 'paid_order_consumed_its_lines', 'order ' || o.id,
		   format('PAID order line for sku %s has reservation state %s', i.sku_id, coalesce(r.state, 'missing'))
	  FROM shop.orders o
	  JOIN shop.order_item i ON i.order_id = o.id
	  LEFT JOIN shop.stock_reservation r ON r.order_id = o.id AND r.sku_id = i.sku_id
	 WHERE o.status = 'PAID' AND (r.state IS DISTINCT FROM 'consumed' OR r.qty <> i.qty)
	UNION ALL
	SELECT 'pending_order_holds_its_lines', 'order ' || o.id,
		   format('PENDING order line for sku %s has reservation state %s', i.sku_id, coalesce(r.state, 'missing'))
	  FROM shop.orders o
	  JOIN shop.order_item i ON i.order_id = o.id
	  LEFT JOIN shop.stock_reservation r ON r.order_id = o.id AND r.sku_id = i.sku_id
	 WHERE o.status = 'PENDING' AND (r.state IS DISTINCT FROM 'active' OR r.qty <> i.qty)
	UNION ALL
	SELECT 'amount_matches_lines', 'order ' || o.id,
		   format('amount %s, lines sum to %s', o.amount, l.total - l.discount + o.shipping + o.tax)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED' AND o.amount <> l.total - l.discount + o.shipping + o.tax
	UNION ALL
	-- the money model: amount = subtotal - discount + shipping + tax (also
	-- a CHECK), the lines' totals are the subtotal, their shares the
	-- discount, their taxes the order's tax (added or included)
	SELECT 'subtotal_and_discount_match_lines', 'order ' || o.id,
		   format('subtotal %s, discount %s, shipping %s, tax %s, amount %s; lines: total %s, discount %s',
				  o.subtotal, o.discount, o.shipping, o.tax, o.amount, l.total, l.discount)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED'
	   AND (o.subtotal <> l.total OR o.discount <> l.discount
			OR o.amount <> o.subtotal - o.discount + o.shipping + o.tax)
	UNION ALL
	SELECT 'tax_matches_lines', 'order ' || o.id,
		   format('tax %s, tax included %s; lines'' tax sums to %s', o.tax, o.tax_included, l.tax)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(tax) AS tax FROM shop.order_item GROUP BY order_id) l
		ON l.order_id = o.id
	 WHERE o.status <> 'CREATED'
	   AND (o.tax + o.tax_included <> l.tax OR (o.tax <> 0 AND o.tax_included <> 0))
	UNION ALL
	SELECT 'included_tax_within_lines', 'order ' || i.order_id,
		   format('line of sku %s includes tax %s of its net %s', i.sku_id, i.tax,
				  i.unit_price::numeric * i.qty - i.discount)
	  FROM shop.orders o JOIN shop.order_item i ON i.order_id = o.id
	 WHERE o.tax_included > 0 AND i.tax > i.unit_price::numeric * i.qty - i.discount
	UNION ALL
	SELECT 'fulfilment_only_when_paid', 'order ' || o.id,
		   format('%s order has fulfilment %s', o.status, o.fulfilment_status)
	  FROM shop.orders o
	 WHERE o.shipped_at IS NOT NULL AND o.status <> 'PAID'
	UNION ALL
	SELECT 'coupon_redeemed_matches_redemptions', 'coupon ' || c.id,
		   format('redeemed is %s but %s redemptions are active, limit %s',
				  c.redeemed, coalesce(r.n, 0), coalesce(c.max_redemptions::text, 'none'))
	  FROM shop.coupon c
	  LEFT JOIN (SELECT coupon_id, count(*) AS n FROM shop.coupon_redemption
				  WHERE state = 'active' GROUP BY coupon_id) r ON r.coupon_id = c.id
	 WHERE c.redeemed <> coalesce(r.n, 0) OR c.redeemed > c.max_redemptions
	UNION ALL
	SELECT 'coupon_within_user_limit', 'coupon ' || c.id,
		   format('user %s holds %s active redemptions, limit %s', r.user_id, r.n, c.max_per_user)
	  FROM shop.coupon c
	  JOIN (SELECT coupon_id, user_id, count(*) AS n FROM shop.coupon_redemption
			 WHERE state = 'active' GROUP BY coupon_id, user_id) r ON r.coupon_id = c.id
	 WHERE r.n > c.max_per_user
	UNION ALL
	SELECT 'released_order_holds_no_coupon', 'order ' || o.id,
		   format('%s order holds an active redemption of coupon %s', o.status, r.coupon_id)
	  FROM shop.orders o JOIN shop.coupon_redemption r ON r.order_id = o.id
	 WHERE o.status IN ('CANCELLED', 'FAILED') AND r.state = 'active'
	UNION ALL
	SELECT 'one_open_cart_per_user', 'user ' || c.user_id,
		   format('%s open carts', count(*))
	  FROM shop.cart c
	 WHERE c.checked_out_at IS NULL
	 GROUP BY c.user_id
	HAVING count(*) > 1
	UNION ALL
	SELECT * FROM shop.refund_invariants()
$$;
COMMENT ON FUNCTION shop.shop_check_invariants() IS
	'one row per broken stock or order invariant; empty when all is well';

CREATE OR REPLACE FUNCTION shop.shop_api_grant(anon_role name, user_role name, webhook_role name, operator_role name)
	RETURNS void
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF operator_role IS NOT NULL THEN
		IF operator_role IN (anon_role, user_role, webhook_role) THEN
			RAISE EXCEPTION 'operator_role must be a role of its own, not "%"', operator_role
				USING ERRCODE = '22023',
					  HINT = 'Create a NOLOGIN role for operators (README, "Storefront and operator pages").';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role) THEN
			RAISE EXCEPTION 'role "%" does not exist', operator_role
				USING ERRCODE = '42704',
					  HINT = 'Create the roles first (README, "Storefront and operator pages"); the extension creates none.';
		END IF;
	END IF;
	PERFORM shop.shop_api_grant(anon_role, user_role, webhook_role);
	IF operator_role IS NULL THEN
		RETURN;
	END IF;
	EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM %I', operator_role);
	EXECUTE format('REVOKE ALL ON SCHEMA shop_api FROM %I', operator_role);
	EXECUTE format('GRANT USAGE ON SCHEMA shop_api TO %I', operator_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.ops_stock(), shop_api.ops_adjust_stock(bigint, integer, text),'
				   ' shop_api.ops_reservations(), shop_api.ops_expire_now(), shop_api.ops_payments(),'
				   ' shop_api.ops_outbox(), shop_api.ops_redeliver(bigint), shop_api.ops_health(),'
				   ' shop_api.ops_orders_per_minute(), shop_api.ops_warehouse_queue(),'
				   ' shop_api.ops_ship(bigint, text, text), shop_api.ops_mark_delivered(bigint),'
				   ' shop_api.ops_refund(bigint, text, jsonb, text, bigint) TO %I',
				   operator_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any operator', operator_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it.';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name, name) IS
	'shop_api_grant(anon_role, user_role, webhook_role) and then operator_role exactly the shop_api.ops_* functions (NULL: none); operator_role must differ from the other three';

CREATE OR REPLACE FUNCTION shop.shop_api_grant(anon_role name, user_role name, webhook_role name)
	RETURNS void
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r name;
BEGIN
	FOREACH r IN ARRAY ARRAY[anon_role, user_role, webhook_role]
	LOOP
		IF r IS NULL THEN
			RAISE EXCEPTION 'anon_role, user_role and webhook_role must not be null'
				USING ERRCODE = '22004';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			RAISE EXCEPTION 'role "%" does not exist', r
				USING ERRCODE = '42704',
					  HINT = 'Create the roles first (README, "Serving with PostgREST"); the extension creates none.';
		END IF;
	END LOOP;
	FOREACH r IN ARRAY ARRAY[anon_role, user_role, webhook_role]
	LOOP
		EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM %I', r);
		EXECUTE format('REVOKE ALL ON SCHEMA shop_api FROM %I', r);
	END LOOP;
	EXECUTE format('GRANT USAGE ON SCHEMA shop_api TO %I, %I, %I', anon_role, user_role, webhook_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.products(), shop_api.health(), shop_api.webhook(json),'
				   ' shop_api.shipping_methods() TO %I', anon_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.current_user_id(), shop_api.products(),'
				   ' shop_api.cart(), shop_api.cart_add(bigint, integer),'
				   ' shop_api.cart_set_qty(bigint, integer), shop_api.cart_remove(bigint),'
				   ' shop_api.cart_merge(text), shop_api.create_order(text),'
				   ' shop_api.buy_now(jsonb, text), shop_api.orders(), shop_api."order"(bigint),'
				   ' shop_api.cancel_order(bigint), shop_api.start_payment(bigint, text, text, text),'
				   ' shop_api.confirm_payment(bigint, text, text, bigint), shop_api.confirm_free(bigint),'
				   ' shop_api.shipping_methods(), shop_api.set_shipping(bigint, text, jsonb)'
				   ' TO %I', user_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.handle_webhook(text, jsonb, text),'
				   ' shop_api.webhook(json) TO %I', webhook_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = user_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any user', user_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it (README, "Serving with PostgREST").';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name) IS
	'grant the PostgREST roles exactly their shop_api functions: anon_role the catalog and the webhook, user_role the shopper''s functions, webhook_role the webhook handlers (revokes anything else they held in shop_api)';

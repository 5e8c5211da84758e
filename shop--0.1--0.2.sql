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
CREATE TABLE shop.event (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	type		text NOT NULL CHECK (type IN ('order.created', 'order.paid', 'order.cancelled',
											  'order.failed', 'order.expired', 'order.needs_review',
											  'stock.low')),
	order_id	bigint REFERENCES shop.orders (id),
	sku_id		bigint REFERENCES shop.sku (id),
	payload		jsonb NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_order_idx ON shop.event (order_id);
CREATE INDEX event_sku_idx ON shop.event (sku_id);

-- One row per outbound request.  body is fixed when the row is written, so
-- every attempt sends the same bytes; signature headers are added when sent.
-- ordering_key: rows of one endpoint with the same key are sent one at a
-- time, oldest first (per order, per SKU).
CREATE TABLE shop.outbox (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	endpoint_id		bigint REFERENCES shop.event_endpoint (id),
	event_id		bigint REFERENCES shop.event (id),
	url				text NOT NULL,
	method			text NOT NULL DEFAULT 'POST'
		CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
	headers			jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
	body			text,
	idempotency_key	text NOT NULL CHECK (idempotency_key <> ''),
	ordering_key	text,
	state			text NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed', 'dead')),
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
		CHECK (operation IN ('event', 'refund', 'expire_checkout', 'fetch_payment')),
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
CREATE INDEX outbox_event_idx ON shop.outbox (event_id);

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
AS $$
BEGIN
	-- PL/pgSQL rather than SQL only so that the statement is planned once
	-- per session and kept (a SQL function with SET clauses is planned on
	-- every call: several milliseconds of the worker's CPU per claim)
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
				WHERE backend_type OPERATOR(pg_catalog.=) 'shop outbox worker') AS worker_running,
	   pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'queued') AS queued,
	   pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'in_flight') AS in_flight,
	   pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'failed') AS failed,
	   pg_catalog.count(*) FILTER (WHERE o.state OPERATOR(pg_catalog.=) 'dead') AS dead,
	   pg_catalog.now() OPERATOR(pg_catalog.-)
		   (pg_catalog.min(o.next_attempt_at) FILTER (WHERE o.state IN ('queued', 'failed')
													  AND o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()))
		   AS oldest_due_age
  FROM shop.outbox o;
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
REVOKE ALL ON FUNCTION shop.outbox_claim(integer, interval),
	shop.shop_subscribe(text, text[], text, text, integer), shop.shop_unsubscribe(bigint),
	shop.shop_enable_endpoint(bigint), shop.shop_redeliver(bigint),
	shop.shop_redeliver_dead(bigint), shop.shop_set_provider_api_key(text, text),
	shop.shop_start_payment(bigint, text, text, text),
	shop.shop_refund(bigint, bigint, text), shop.shop_reconcile_payments(interval, integer)
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
				 WHERE backend_type = 'shop outbox worker'));
END
$$;
COMMENT ON FUNCTION shop_api.health() IS
	'{"worker": true|false}: whether the outbox delivery worker runs (for an HTTP layer''s health check; anon may call it)';

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

CREATE OR REPLACE FUNCTION shop.shop_check_invariants()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	WITH held AS (
		SELECT sku_id, sum(qty) AS qty
		  FROM shop.stock_reservation
		 WHERE state = 'active'
		 GROUP BY sku_id
	)
	SELECT 'reserved_matches_active_reservations', 'sku ' || s.id,
		   format('reserved is %s but active reservations hold %s', s.reserved, coalesce(h.qty, 0))
	  FROM shop.sku s LEFT JOIN held h ON h.sku_id = s.id
	 WHERE s.reserved <> coalesce(h.qty, 0)
	UNION ALL
	SELECT 'stock_within_bounds', 'sku ' || s.id,
		   format('on_hand %s, reserved %s', s.on_hand, s.reserved)
	  FROM shop.sku s
	 WHERE s.on_hand < 0 OR s.reserved < 0 OR s.reserved > s.on_hand
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
		   format('amount %s, lines sum to %s', o.amount, l.total - l.discount)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED' AND o.amount <> l.total - l.discount
	UNION ALL
	-- the money model: amount = subtotal - discount (also a CHECK), the
	-- lines' totals are the subtotal and their shares the discount
	SELECT 'subtotal_and_discount_match_lines', 'order ' || o.id,
		   format('subtotal %s, discount %s, amount %s; lines: total %s, discount %s',
				  o.subtotal, o.discount, o.amount, l.total, l.discount)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED'
	   AND (o.subtotal <> l.total OR o.discount <> l.discount OR o.amount <> o.subtotal - o.discount)
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
$$;

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
		   format('amount %s, lines sum to %s', o.amount, l.total - l.discount)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED' AND o.amount <> l.total - l.discount
	UNION ALL
	-- the money model: amount = subtotal - discount (also a CHECK), the
	-- lines' totals are the subtotal and their shares the discount
	SELECT 'subtotal_and_discount_match_lines', 'order ' || o.id,
		   format('subtotal %s, discount %s, amount %s; lines: total %s, discount %s',
				  o.subtotal, o.discount, o.amount, l.total, l.discount)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED'
	   AND (o.subtotal <> l.total OR o.discount <> l.discount OR o.amount <> o.subtotal - o.discount)
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
				   ' shop_api.ops_orders_per_minute(),'
				   ' shop_api.ops_refund(bigint, text, jsonb, text, bigint) TO %I', operator_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any operator', operator_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it.';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name, name) IS
	'shop_api_grant(anon_role, user_role, webhook_role) and then operator_role exactly the shop_api.ops_* functions (NULL: none); operator_role must differ from the other three';

REVOKE ALL ON TABLE shop.refund_line, shop.order_refund_status FROM PUBLIC;
REVOKE ALL ON SEQUENCE shop.refund_line_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION shop.shop_refund(bigint, bigint, text, jsonb, text),
	shop.refund_invariants() FROM PUBLIC;
REVOKE ALL ON FUNCTION shop_api.ops_refund(bigint, text, jsonb, text, bigint) FROM PUBLIC;

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
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
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
	RETURNING o.*
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

-- shop install script, part 5: the transactional outbox and outgoing events.
--
-- A state change that must be told to the outside world writes its request
-- as a row of shop.outbox in its own transaction; the delivery worker
-- (src/outbox_worker.c) sends committed rows.  The first users are event
-- webhooks to the merchant's endpoints (src/events.c, src/endpoint.c).

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

-- The CHECKs of shop.event and shop.outbox that list values compare with
-- one array constant, = ANY ('{...}'::text[]), not IN (...): PostgreSQL
-- reads a table's CHECK expressions again in every statement that writes
-- the table, and an IN list is stored as one node per value, folded into
-- an array again each time.  These two tables are written by every buyer's
-- statement that emits an event and by every claim and record of the
-- delivery worker (the array form cut the emit's share of a checkout's CPU
-- from 17.0 % to 16.1 %, five alternating pairs; bench/profile.md).

-- One row per event that happened and that some endpoint subscribes to.
-- order_id has no foreign key on purpose: its check was one more query
-- in each buyer's transaction that writes an event (with the check of
-- shop.outbox.event_id, 12 % of the emit statement's CPU at 32 clients).
-- event_delete_guard() refuses the DELETE of an order that has events, as
-- the key did.
CREATE TABLE shop.event (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	type		text NOT NULL CHECK (type = ANY ('{order.created, order.paid, order.cancelled,
												 order.failed, order.expired, order.needs_review,
												 stock.low, order.shipped, order.delivered,
												 order.refunded, order.refund_failed}'::text[])),
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

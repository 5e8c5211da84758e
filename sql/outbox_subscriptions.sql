--
-- Event endpoints (README, "Outgoing events"): shop_subscribe registers an
-- endpoint (a generated whsec_ secret is returned once), updates the one
-- with the same URL, rotates its signing secret; every refusal with its
-- SQLSTATE; shop_unsubscribe (undelivered rows become dead) and
-- shop_enable_endpoint; what shop.event_endpoints shows, never a secret.
-- No worker runs here (shared_preload_libraries has no shop).
--
-- Hermetic: endpoints https://subs.example.test/*, product "subs mug",
-- SKU SUBS-A, users subs-*; every row is deleted at the end.  Endpoint and
-- order ids come from sequences other tests use too: they are captured
-- with \gset and never printed; secrets are captured and compared, never
-- printed.
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

-- A well-formed secret: whsec_ + base64 of 24 to 64 bytes.
CREATE FUNCTION pg_temp.secret_ok(s text) RETURNS boolean
LANGUAGE sql AS $$
	SELECT CASE WHEN s ~ '^whsec_[A-Za-z0-9+/]+={0,2}$' AND length(s) % 4 = 2
				THEN length(decode(substr(s, 7), 'base64')) BETWEEN 24 AND 64
				ELSE false END
$$;
-- The SQLSTATE of stmt, which must fail, and whether its message or
-- detail contains secret (it must not): for refusals of a secret.
CREATE FUNCTION pg_temp.refusal(stmt text, secret text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	msg text;
	det text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN SQLSTATE || CASE WHEN length(secret) > 6
							 AND (strpos(msg || coalesce(det, ''), secret) > 0
								  OR strpos(msg || coalesce(det, ''), substr(secret, 7)) > 0)
						   THEN ' (the message shows the secret!)' ELSE '' END;
END
$$;
-- Subscribe url (for order.paid) and undo it: "SQLSTATE: message" when it
-- is refused, "accepted" when it is not (the endpoint is then rolled back,
-- so the file stays hermetic whatever the outcome).
CREATE FUNCTION pg_temp.try_url(url text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM shop.shop_subscribe(url, ARRAY['order.paid']);
	RAISE EXCEPTION USING ERRCODE = 'SHT99', MESSAGE = 'accepted';
EXCEPTION WHEN OTHERS THEN
	RETURN CASE WHEN SQLSTATE = 'SHT99' THEN 'accepted' ELSE SQLSTATE || ': ' || SQLERRM END;
END
$$;
-- A secret made from a seed: whsec_ + base64 of n bytes (n <= 128; deterministic).
CREATE FUNCTION pg_temp.mksecret(seed text, n int) RETURNS text
LANGUAGE sql AS $$
	SELECT 'whsec_' || replace(encode(substr(decode(repeat(md5(seed), 8), 'hex'), 1, n), 'base64'), E'\n', '')
$$;
SELECT pg_temp.secret_ok(pg_temp.mksecret('x', 24)) AS ok24, pg_temp.secret_ok(pg_temp.mksecret('x', 64)) AS ok64,
	   pg_temp.secret_ok(pg_temp.mksecret('x', 23)) AS ok23, pg_temp.secret_ok(pg_temp.mksecret('x', 65)) AS ok65;

-- Every shop_subscribe result of this file, by name.
CREATE TEMP TABLE subs (name text PRIMARY KEY, r jsonb);
-- An endpoint's active secrets (those that still sign): each by the name
-- it has in known_secret ('generated' for the one shop_subscribe made),
-- whether it is the newest, and in how many seconds from now() it retires.
CREATE TEMP TABLE known_secret (name text PRIMARY KEY, secret text);
CREATE FUNCTION pg_temp.secrets(ep bigint) RETURNS TABLE (secret text, newest boolean, retires text)
LANGUAGE sql AS $$
	SELECT coalesce((SELECT k.name FROM known_secret k WHERE k.secret = s.secret), 'generated'),
		   s.retires_at IS NULL,
		   'in ' || extract(epoch FROM s.retires_at - now())::bigint || ' s'
	  FROM shop.event_endpoint_secret s
	 WHERE s.endpoint_id = ep AND (s.retires_at IS NULL OR s.retires_at > now())
	 ORDER BY s.retires_at DESC NULLS FIRST, s.added_at DESC
$$;
-- This file's endpoints as shop.event_endpoints shows them (ids as letters).
CREATE TEMP TABLE ep_name (id bigint PRIMARY KEY, name text);
CREATE TEMP VIEW subs_endpoints AS
	SELECT n.name, v.url, v.event_types, v.description, v.enabled, v.disabled_reason,
		   v.consecutive_failures AS failures, v.delivered, v.backlog, v.dead,
		   v.removed_at IS NOT NULL AS removed
	  FROM shop.event_endpoints v JOIN ep_name n ON n.id = v.endpoint_id
	 ORDER BY n.name;

------------------------------------------------------------------------------
-- A new endpoint without a secret gets a generated one, returned once.
------------------------------------------------------------------------------
INSERT INTO subs SELECT 'a', shop.shop_subscribe('https://subs.example.test/a',
	ARRAY['order.created', 'order.paid'], description => 'shop A');
SELECT (r->>'endpoint_id')::bigint AS ep_a FROM subs WHERE name = 'a' \gset
INSERT INTO ep_name VALUES (:ep_a, 'a');
SELECT ARRAY(SELECT jsonb_object_keys(r) ORDER BY 1) AS keys, r->>'url' AS url, r->'event_types' AS event_types,
	   r->'enabled' AS enabled, pg_temp.secret_ok(r->>'secret') AS secret_ok
  FROM subs WHERE name = 'a';
-- the secret returned is the one stored, the endpoint's only and newest one
SELECT count(*) AS secrets, bool_and(s.secret = subs.r->>'secret') AS returned_is_stored,
	   bool_and(s.retires_at IS NULL) AS newest
  FROM shop.event_endpoint_secret s, subs WHERE s.endpoint_id = :ep_a AND subs.name = 'a';
INSERT INTO subs SELECT 'b', shop.shop_subscribe('https://subs.example.test/b', ARRAY['*']);
SELECT (r->>'endpoint_id')::bigint AS ep_b FROM subs WHERE name = 'b' \gset
INSERT INTO ep_name VALUES (:ep_b, 'b');
SELECT r->>'url' AS url, r->'event_types' AS event_types, pg_temp.secret_ok(r->>'secret') AS secret_ok,
	   r->>'secret' <> (SELECT r->>'secret' FROM subs WHERE name = 'a') AS differs_from_a,
	   (r->>'endpoint_id')::bigint <> :ep_a AS new_endpoint
  FROM subs WHERE name = 'b';
SELECT * FROM subs_endpoints;

------------------------------------------------------------------------------
-- The same URL again updates that endpoint (event types, description) and
-- re-enables it; no new endpoint, no secret in the result, the secret stays.
------------------------------------------------------------------------------
UPDATE shop.event_endpoint SET enabled = false, disabled_reason = 'test: 20 failures in a row',
	   consecutive_failures = 20
 WHERE id = :ep_a;
INSERT INTO subs SELECT 'a-again', shop.shop_subscribe('https://subs.example.test/a',
	ARRAY['order.cancelled', 'order.failed', 'order.expired'], description => 'shop A, cancellations');
SELECT (r->>'endpoint_id')::bigint = :ep_a AS same_endpoint, r ? 'secret' AS has_secret,
	   r->'event_types' AS event_types, r->'enabled' AS enabled
  FROM subs WHERE name = 'a-again';
SELECT * FROM subs_endpoints WHERE name = 'a';
SELECT count(*) AS endpoints_with_this_url FROM shop.event_endpoint WHERE url = 'https://subs.example.test/a';
SELECT count(*) AS secrets, bool_and(s.secret = subs.r->>'secret') AS unchanged
  FROM shop.event_endpoint_secret s, subs WHERE s.endpoint_id = :ep_a AND subs.name = 'a';

------------------------------------------------------------------------------
-- Secret rotation: a given secret becomes the newest (not returned); the
-- older ones keep signing for rotation_grace_seconds (default 86400); 0
-- retires them at once.  Shown inside one transaction, so now() is the
-- time of the call.
------------------------------------------------------------------------------
INSERT INTO known_secret VALUES ('s2', pg_temp.mksecret('subs s2', 32)), ('s3', pg_temp.mksecret('subs s3', 24)),
	('s4', pg_temp.mksecret('subs s4', 64)), ('s5', pg_temp.mksecret('subs s5', 40));
BEGIN;
INSERT INTO subs SELECT 'a-s2', shop.shop_subscribe('https://subs.example.test/a',
	ARRAY['order.cancelled', 'order.failed', 'order.expired'], (SELECT secret FROM known_secret WHERE name = 's2'),
	'shop A, cancellations', 3600);
SELECT (r->>'endpoint_id')::bigint = :ep_a AS same_endpoint, r ? 'secret' AS has_secret FROM subs WHERE name = 'a-s2';
SELECT * FROM pg_temp.secrets(:ep_a);
COMMIT;
BEGIN;
INSERT INTO subs SELECT 'a-s3', shop.shop_subscribe('https://subs.example.test/a',
	ARRAY['order.cancelled', 'order.failed', 'order.expired'], (SELECT secret FROM known_secret WHERE name = 's3'),
	'shop A, cancellations');
SELECT r ? 'secret' AS has_secret FROM subs WHERE name = 'a-s3';
SELECT * FROM pg_temp.secrets(:ep_a);
COMMIT;
-- a leaked secret: rotate with grace 0, every other secret retires now
BEGIN;
INSERT INTO subs SELECT 'a-s4', shop.shop_subscribe('https://subs.example.test/a',
	ARRAY['order.cancelled', 'order.failed', 'order.expired'], (SELECT secret FROM known_secret WHERE name = 's4'),
	'shop A, cancellations', 0);
SELECT * FROM pg_temp.secrets(:ep_a);
COMMIT;
SELECT count(*) FILTER (WHERE retires_at IS NULL OR retires_at > now()) AS active_secrets
  FROM shop.event_endpoint_secret WHERE endpoint_id = :ep_a;
-- the newest secret given again: nothing to rotate, it stays the only one
BEGIN;
INSERT INTO subs SELECT 'a-s4-again', shop.shop_subscribe('https://subs.example.test/a',
	ARRAY['order.cancelled', 'order.failed', 'order.expired'], (SELECT secret FROM known_secret WHERE name = 's4'),
	'shop A, cancellations');
SELECT r ? 'secret' AS has_secret FROM subs WHERE name = 'a-s4-again';
SELECT * FROM pg_temp.secrets(:ep_a);
COMMIT;
-- a new endpoint with a given secret: that one is stored, none returned
INSERT INTO subs SELECT 'c', shop.shop_subscribe('https://subs.example.test/c', ARRAY['order.paid'],
	(SELECT secret FROM known_secret WHERE name = 's5'));
SELECT (r->>'endpoint_id')::bigint AS ep_c FROM subs WHERE name = 'c' \gset
INSERT INTO ep_name VALUES (:ep_c, 'c');
SELECT ARRAY(SELECT jsonb_object_keys(r) ORDER BY 1) AS keys FROM subs WHERE name = 'c';
SELECT * FROM pg_temp.secrets(:ep_c);

------------------------------------------------------------------------------
-- Refusals: each with its SQLSTATE; none changes anything.
------------------------------------------------------------------------------
SELECT count(*) AS endpoints_before FROM shop.event_endpoint WHERE url LIKE 'https://subs.example.test/%';
-- 22023: not https://; plain http is refused also for loopback while
-- shop.outbox_allow_http_loopback is off (the default; a sighup setting a
-- session cannot change)
SHOW shop.outbox_allow_http_loopback;
SELECT pg_temp.outcome($$SELECT set_config('shop.outbox_allow_http_loopback', 'on', false)$$);
SELECT u AS url, pg_temp.try_url(u) AS outcome
  FROM unnest(ARRAY['http://127.0.0.1:8080/hook', 'http://localhost:8080/hook', 'http://[::1]:8080/hook',
					'http://127.255.0.9/hook',
					-- DNS names that only look like loopback are plain http to anywhere
					'http://127.0.0.1.subs.example.test/hook', 'http://127.subs.example.test/hook',
					'http://localhost.subs.example.test/hook', 'http://128.0.0.1/hook',
					'http://subs.example.test/plain', 'ftp://subs.example.test/hook',
					'HTTP://subs.example.test/upper']) WITH ORDINALITY AS t(u, n)
 ORDER BY n;
-- 22023: credentials in the URL
SELECT u AS url, pg_temp.try_url(u) AS outcome
  FROM unnest(ARRAY['https://user:password@subs.example.test/hook', 'https://user@subs.example.test/hook',
					'https://:password@subs.example.test/hook']) WITH ORDINALITY AS t(u, n)
 ORDER BY n;
-- 22023: malformed URLs
SELECT u AS url, pg_temp.try_url(u) AS outcome
  FROM unnest(ARRAY['', 'not a url', 'https://', 'https:///hook', 'https://subs example.test/hook',
					'https://subs.example.test:99999/hook', 'subs.example.test/hook']) WITH ORDINALITY AS t(u, n)
 ORDER BY n;
-- 22023: an unknown event type (names are exact), an empty list
SELECT pg_temp.outcome($$SELECT shop.shop_subscribe('https://subs.example.test/d', ARRAY['order.teleported'])$$);
SELECT pg_temp.outcome($$SELECT shop.shop_subscribe('https://subs.example.test/d', ARRAY['order.paid', 'Order.Created'])$$);
SELECT pg_temp.outcome($$SELECT shop.shop_subscribe('https://subs.example.test/d', ARRAY['order'])$$);
SELECT pg_temp.outcome($$SELECT shop.shop_subscribe('https://subs.example.test/d', ARRAY[]::text[])$$);
-- 22023: malformed secrets (the message never shows the secret)
SELECT s AS secret, pg_temp.refusal(format('SELECT shop.shop_subscribe(%L, ARRAY[''order.paid''], %L)',
										   'https://subs.example.test/d', v), v) AS refusal
  FROM (VALUES ('23 bytes', pg_temp.mksecret('subs short', 23)),
			   ('65 bytes', pg_temp.mksecret('subs long', 65)),
			   ('no whsec_ prefix', substr(pg_temp.mksecret('subs nop', 32), 7)),
			   ('not base64', 'whsec_' || repeat('!', 44)),
			   ('empty', ''),
			   ('whsec_ only', 'whsec_')) AS t(s, v);
-- 22023: a negative grace period
SELECT pg_temp.outcome(format('SELECT shop.shop_subscribe(%L, ARRAY[''order.paid''], %L, NULL, -1)',
							  'https://subs.example.test/a', pg_temp.mksecret('subs s6', 32)));
-- 22004: required arguments
SELECT pg_temp.outcome($$SELECT shop.shop_subscribe(NULL, ARRAY['order.paid'])$$);
SELECT pg_temp.outcome($$SELECT shop.shop_subscribe('https://subs.example.test/d', NULL)$$);
SELECT pg_temp.outcome($$SELECT shop.shop_unsubscribe(NULL)::text$$);
SELECT pg_temp.outcome($$SELECT shop.shop_enable_endpoint(NULL)::text$$);
-- P0002: unknown endpoints
SELECT pg_temp.outcome($$SELECT shop.shop_unsubscribe(-1)::text$$);
SELECT pg_temp.outcome($$SELECT shop.shop_enable_endpoint(-1)::text$$);
-- nothing changed
SELECT count(*) AS endpoints_after FROM shop.event_endpoint WHERE url LIKE 'https://subs.example.test/%';
SELECT * FROM pg_temp.secrets(:ep_a);
SELECT * FROM subs_endpoints;

------------------------------------------------------------------------------
-- shop_enable_endpoint: a disabled endpoint (the worker does this after
-- shop.endpoint_max_failures failures in a row) is enabled again, its
-- failure count reset.
------------------------------------------------------------------------------
UPDATE shop.event_endpoint SET enabled = false, disabled_reason = 'test: 20 failures in a row (HTTP 503)',
	   consecutive_failures = 20
 WHERE id = :ep_b;
SELECT * FROM subs_endpoints WHERE name = 'b';
SELECT shop.shop_enable_endpoint(:ep_b) AS enabled_again;
SELECT * FROM subs_endpoints WHERE name = 'b';
-- an endpoint that is enabled already: nothing to do
SELECT shop.shop_enable_endpoint(:ep_b) AS enabled_again;
SELECT * FROM subs_endpoints WHERE name = 'b';

------------------------------------------------------------------------------
-- shop_unsubscribe: the endpoint is removed but kept; its queued, failed
-- and in-flight rows become dead ("endpoint unsubscribed": a request on the
-- wire finishes, its result is only logged), delivered and dead rows keep
-- their state and error.
-- It gets no new rows; its URL can be subscribed again (a new endpoint).
------------------------------------------------------------------------------
INSERT INTO subs SELECT 'd', shop.shop_subscribe('https://subs.example.test/d', ARRAY['order.created'],
	description => 'to be removed');
SELECT (r->>'endpoint_id')::bigint AS ep_d FROM subs WHERE name = 'd' \gset
INSERT INTO ep_name VALUES (:ep_d, 'd');
INSERT INTO shop.product (name, price, currency) VALUES ('subs mug', 500, 'KRW') RETURNING id AS product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'SUBS-A', 100) RETURNING id AS sku_a \gset
SELECT count(*) AS orders FROM (
	SELECT shop.shop_buy_now('subs-u' || g, jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 1)))
	  FROM generate_series(1, 5) g) o;
-- one order.created row each for d (and b, which takes every type)
SELECT n.name AS endpoint, o.state, count(*)
  FROM shop.outbox o JOIN ep_name n ON n.id = o.endpoint_id GROUP BY 1, 2 ORDER BY 1, 2;
-- d's rows in every state: queued, failed, in_flight, delivered, dead
CREATE TEMP TABLE d_rows AS
	SELECT o.id, (ARRAY['queued', 'failed', 'in_flight', 'delivered', 'dead'])[row_number() OVER (ORDER BY o.id)] AS was
	  FROM shop.outbox o WHERE o.endpoint_id = :ep_d;
UPDATE shop.outbox o SET state = 'failed', attempts = 2, last_status = 503, last_error = 'HTTP 503',
	   next_attempt_at = now() + interval '1 minute'
  FROM d_rows d WHERE d.id = o.id AND d.was = 'failed';
UPDATE shop.outbox o SET state = 'in_flight', attempts = 1, lease_until = now() + interval '15 seconds'
  FROM d_rows d WHERE d.id = o.id AND d.was = 'in_flight';
UPDATE shop.outbox o SET state = 'delivered', attempts = 1, last_status = 200, delivered_at = now()
  FROM d_rows d WHERE d.id = o.id AND d.was = 'delivered';
UPDATE shop.outbox o SET state = 'dead', attempts = 12, last_status = 410, last_error = 'HTTP 410'
  FROM d_rows d WHERE d.id = o.id AND d.was = 'dead';
SELECT * FROM subs_endpoints WHERE name = 'd';
SELECT shop.shop_unsubscribe(:ep_d) AS unsubscribed;
SELECT d.was, o.state, o.attempts, o.last_status, o.last_error
  FROM shop.outbox o JOIN d_rows d ON d.id = o.id ORDER BY o.id;
SELECT * FROM subs_endpoints WHERE name = 'd';
SELECT was AS dead_row_was, v.last_error FROM shop.outbox_dead v JOIN d_rows d ON d.id = v.outbox_id ORDER BY v.outbox_id;
-- again: already removed, nothing changes
SELECT shop.shop_unsubscribe(:ep_d) AS unsubscribed;
SELECT replace(pg_temp.outcome(format('SELECT shop.shop_enable_endpoint(%s)::text', :ep_d)), :'ep_d', 'd') AS enable_removed;
SELECT * FROM subs_endpoints WHERE name = 'd';
-- no new rows for it: the next order goes to b only
SELECT (shop.shop_buy_now('subs-u6', jsonb_build_array(jsonb_build_object('sku_id', :sku_a, 'qty', 1)))).status;
SELECT n.name AS endpoint, count(*) AS rows
  FROM shop.outbox o JOIN ep_name n ON n.id = o.endpoint_id GROUP BY 1 ORDER BY 1;
-- the same URL subscribed again is a new endpoint with a new secret
INSERT INTO subs SELECT 'd2', shop.shop_subscribe('https://subs.example.test/d', ARRAY['order.created']);
SELECT (r->>'endpoint_id')::bigint AS ep_d2 FROM subs WHERE name = 'd2' \gset
INSERT INTO ep_name VALUES (:ep_d2, 'd2');
SELECT :ep_d2 <> :ep_d AS new_endpoint, pg_temp.secret_ok(r->>'secret') AS secret_ok,
	   NOT EXISTS (SELECT FROM shop.event_endpoint_secret s WHERE s.endpoint_id = :ep_d AND s.secret = r->>'secret') AS new_secret
  FROM subs WHERE name = 'd2';
SELECT * FROM subs_endpoints WHERE name IN ('d', 'd2');

------------------------------------------------------------------------------
-- shop.event_endpoints: per endpoint its URL, types, state, counts and the
-- success rate of the last 24 h of attempts (attempts written by hand
-- here, as the worker would); never a secret.
------------------------------------------------------------------------------
INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at, duration_ms, http_status, succeeded, error)
SELECT o.id, 1, now() - interval '1 minute', 20, a.status, a.ok, a.err
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM shop.outbox WHERE endpoint_id = :ep_b) o
  JOIN (VALUES (1, 200, true, NULL), (2, 200, true, NULL), (3, 503, false, 'HTTP 503')) AS a(n, status, ok, err)
	ON a.n = o.n;
-- one more, older than 24 h: not in the rate
INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at, duration_ms, http_status, succeeded, error)
SELECT min(id), 2, now() - interval '25 hours', 20, 500, false, 'HTTP 500' FROM shop.outbox WHERE endpoint_id = :ep_b;
SELECT n.name, v.success_rate_24h, v.last_success_at IS NOT NULL AS has_last_success,
	   v.last_failure_at IS NOT NULL AS has_last_failure,
	   v.last_failure_at > now() - interval '24 hours' AS failure_within_24h
  FROM shop.event_endpoints v JOIN ep_name n ON n.id = v.endpoint_id ORDER BY n.name;
SELECT * FROM subs_endpoints;
-- no row of the view holds any of the secrets, generated or given
SELECT count(*) AS rows_showing_a_secret
  FROM shop.event_endpoints v, shop.event_endpoint_secret s
 WHERE strpos(row_to_json(v)::text, substr(s.secret, 7)) > 0;
SELECT count(*) AS results_showing_a_secret FROM subs, shop.event_endpoint_secret s
 WHERE NOT (subs.r ? 'secret') AND strpos(subs.r::text, substr(s.secret, 7)) > 0;

------------------------------------------------------------------------------
-- Clean up: every row this file created, in foreign-key order.
------------------------------------------------------------------------------
DELETE FROM shop.outbox_attempt WHERE outbox_id IN (SELECT id FROM shop.outbox WHERE endpoint_id IN (SELECT id FROM ep_name));
DELETE FROM shop.outbox WHERE endpoint_id IN (SELECT id FROM ep_name);
DELETE FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'subs-%')
	OR sku_id = :sku_a;
DELETE FROM shop.event_endpoint_secret WHERE endpoint_id IN (SELECT id FROM ep_name);
DELETE FROM shop.event_endpoint WHERE id IN (SELECT id FROM ep_name);
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'subs-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'subs-%');
DELETE FROM shop.orders WHERE user_id LIKE 'subs-%';
DELETE FROM shop.sku WHERE id = :sku_a;
DELETE FROM shop.product WHERE id = :product;
SELECT (SELECT count(*) FROM shop.event_endpoint WHERE url LIKE 'https://subs.example.test/%')
	 + (SELECT count(*) FROM shop.outbox WHERE url LIKE 'https://subs.example.test/%')
	 + (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'subs-%')
	 + (SELECT count(*) FROM shop.sku WHERE code = 'SUBS-A') AS rows_left;

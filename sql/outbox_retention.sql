--
-- Retention: shop.outbox_prune(older_than, max_rows) deletes delivered
-- event deliveries older than older_than (by delivered_at) with their
-- attempts, and then each of their events that has no delivery left.  The
-- delivery worker runs it with shop.outbox_retention (test/t/010_outbox_
-- delivery.pl); here it is called directly, as superuser (it is granted to
-- no one).  Kept: deliveries not delivered (queued, failed, dead), provider
-- calls, recent deliveries, and an event while any delivery of it is left.
--
-- Hermetic: endpoints https://retention.example.test/*, a provider named
-- retention-test, events and outbox rows written by hand with idempotency
-- keys ret-*; all deleted at the end.  Rows are shown by their keys.
--
\set VERBOSITY terse
SET client_min_messages = warning;
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://retention.example.test/a', '{*}')
RETURNING id AS ep_a \gset
INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://retention.example.test/b', '{*}')
RETURNING id AS ep_b \gset
INSERT INTO shop.payment_provider (name, kind) VALUES ('retention-test', 'mock');

-- An event created `age` ago; returns its id.
CREATE FUNCTION pg_temp.event(age interval) RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO shop.event (type, payload, created_at)
	VALUES ('order.created', '{"order": {}}', now() - age)
	RETURNING id
$$;
-- A delivery of event ev to endpoint ep with key, in state st, delivered
-- `ago` ago when st is delivered, with `tries` attempts logged.
CREATE PROCEDURE pg_temp.put(ep bigint, ev bigint, key text, st text, ago interval,
							 tries int DEFAULT 1)
LANGUAGE plpgsql AS $$
DECLARE
	oid_ bigint;
BEGIN
	INSERT INTO shop.outbox (endpoint_id, event_id, url, body, idempotency_key, state, attempts,
							 queued_at, next_attempt_at, delivered_at)
	SELECT ep, ev, e.url, '{}', key, st, tries, now() - ago - interval '1 minute', now() - ago,
		   CASE WHEN st = 'delivered' THEN now() - ago END
	  FROM shop.event_endpoint e WHERE e.id = ep
	RETURNING id INTO oid_;
	INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at, duration_ms, http_status, succeeded)
	SELECT oid_, g, now() - ago, 5, CASE WHEN g = tries AND st = 'delivered' THEN 200 ELSE 500 END,
		   g = tries AND st = 'delivered'
	  FROM generate_series(1, tries) g;
END
$$;

-- This file's rows.
CREATE TEMP VIEW ret_rows AS
	SELECT o.idempotency_key AS key, o.state,
		   (SELECT count(*) FROM shop.outbox_attempt a WHERE a.outbox_id = o.id) AS attempts_logged,
		   EXISTS (SELECT FROM shop.event e WHERE e.id = o.event_id) AS event_kept
	  FROM shop.outbox o
	 WHERE o.idempotency_key LIKE 'ret-%'
	 ORDER BY o.idempotency_key;

------------------------------------------------------------------------------
-- What goes and what stays, at older_than = 30 days.
------------------------------------------------------------------------------
SELECT pg_temp.event('40 days') AS e_old \gset
SELECT pg_temp.event('40 days') AS e_mixed \gset
SELECT pg_temp.event('2 days') AS e_recent \gset
SELECT pg_temp.event('40 days') AS e_failing \gset
SELECT pg_temp.event('40 days') AS e_dead \gset
-- delivered 35 days ago after 3 attempts: goes, with its attempts and event
CALL pg_temp.put(:ep_a, :e_old, 'ret-old-a', 'delivered', '35 days', 3);
-- delivered long ago to a, dead for b: a's delivery goes, the event stays
CALL pg_temp.put(:ep_a, :e_mixed, 'ret-mixed-a', 'delivered', '35 days');
CALL pg_temp.put(:ep_b, :e_mixed, 'ret-mixed-b', 'dead', '35 days', 12);
-- delivered yesterday: stays
CALL pg_temp.put(:ep_a, :e_recent, 'ret-recent-a', 'delivered', '1 day');
-- still failing, and dead: stay
CALL pg_temp.put(:ep_a, :e_failing, 'ret-failing-a', 'failed', '35 days', 4);
CALL pg_temp.put(:ep_a, :e_dead, 'ret-dead-a', 'dead', '35 days', 12);
-- a provider call delivered long ago: the record of money moved, stays
INSERT INTO shop.outbox (provider, operation, subject_id, url, body, idempotency_key, state,
						 attempts, delivered_at)
VALUES ('retention-test', 'refund', 1, 'https://retention.example.test/pay', '{}', 'ret-provider',
		'delivered', 1, now() - interval '90 days');
SELECT * FROM ret_rows;
SELECT * FROM shop.outbox_prune(interval '30 days');
SELECT * FROM ret_rows;
SELECT id = :e_old AS old_event_gone_only FROM (
	SELECT unnest(ARRAY[:e_old, :e_mixed, :e_recent, :e_failing, :e_dead]) AS id
	EXCEPT SELECT id FROM shop.event) g;
-- nothing more to do: a second call deletes nothing
SELECT * FROM shop.outbox_prune(interval '30 days');
-- once b's dead delivery is delivered after all (a redelivery) and old
-- enough, the mixed event goes too
UPDATE shop.outbox SET state = 'delivered', delivered_at = now() - interval '31 days'
 WHERE idempotency_key = 'ret-mixed-b';
SELECT * FROM shop.outbox_prune(interval '30 days');
SELECT count(*) AS mixed_event_left FROM shop.event WHERE id = :e_mixed;
-- older_than 0: everything delivered goes, also yesterday's
SELECT * FROM shop.outbox_prune(interval '0');
SELECT * FROM ret_rows;

------------------------------------------------------------------------------
-- max_rows: at most that many deliveries per call, oldest delivered first.
------------------------------------------------------------------------------
SELECT pg_temp.event('10 days') AS e1 \gset
SELECT pg_temp.event('10 days') AS e2 \gset
SELECT pg_temp.event('10 days') AS e3 \gset
CALL pg_temp.put(:ep_a, :e1, 'ret-batch-1', 'delivered', '7 days');
CALL pg_temp.put(:ep_a, :e2, 'ret-batch-2', 'delivered', '9 days');
CALL pg_temp.put(:ep_a, :e3, 'ret-batch-3', 'delivered', '8 days');
SELECT * FROM shop.outbox_prune(interval '1 day', 2);
SELECT key FROM ret_rows;
SELECT * FROM shop.outbox_prune(interval '1 day', 2);
SELECT count(*) AS batch_rows_left FROM ret_rows WHERE key LIKE 'ret-batch-%';

------------------------------------------------------------------------------
-- Bad arguments: 22023, and nothing is deleted.
------------------------------------------------------------------------------
SELECT * FROM shop.outbox_prune(NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM shop.outbox_prune(interval '-1 day');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM shop.outbox_prune(interval '1 day', 0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM shop.outbox_prune(interval '1 day', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT key FROM ret_rows;

------------------------------------------------------------------------------
-- shop.outbox_health counts what is not delivered, so it reads that and
-- not the history: with 20,000 delivered rows it reads a handful.
-- Counted: rows and index entries of shop.outbox this transaction read
-- (pg_temp.outbox_rows_read, sql/include/helpers.sql).
------------------------------------------------------------------------------
INSERT INTO shop.outbox (endpoint_id, url, body, idempotency_key, state, attempts, delivered_at)
SELECT :ep_a, 'https://retention.example.test/a', '{}', 'ret-hist-' || g, 'delivered', 1, now()
  FROM generate_series(1, 20000) g;
ANALYZE shop.outbox;
BEGIN;
SELECT pg_temp.outbox_rows_read() AS before \gset
-- (its columns are read: count(*) of the one-row view would not scan at all)
SELECT queued >= 0 AND in_flight >= 0 AND failed >= 0 AND dead >= 0 AS health_counted
  FROM shop.outbox_health;
SELECT pg_temp.outbox_rows_read() - :before < 200 AS health_reads_few_rows;
ROLLBACK;

-- Clean up
DELETE FROM shop.outbox_attempt WHERE outbox_id IN
	(SELECT id FROM shop.outbox WHERE idempotency_key LIKE 'ret-%');
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'ret-%';
DELETE FROM shop.event e WHERE e.type = 'order.created' AND e.payload = '{"order": {}}';
DELETE FROM shop.event_endpoint WHERE url LIKE 'https://retention.example.test/%';
DELETE FROM shop.payment_provider WHERE name = 'retention-test';
DROP VIEW ret_rows;

--
-- The delivery worker's claim, shop.outbox_claim(max_rows, lease), called
-- directly as superuser (the worker runs it as the extension's owner; it is
-- granted to no one).  No worker runs here: endpoints and outbox rows are
-- written by hand, their states set by UPDATE, one rule per section:
--   due rows only (queued / failed whose next_attempt_at has come),
--   never a row of a disabled or removed endpoint,
--   per (endpoint, ordering_key) only the oldest open row,
--   an in-flight row whose lease ran out is claimed again (attempts + 1),
--   at most max_rows rows, the longest-due first.
--
-- Hermetic: endpoints https://claim.example.test/*, outbox rows with
-- idempotency keys claim-*, all deleted at the end.  Rows are shown by
-- their idempotency key, endpoints by a letter; no id, pid or time is
-- printed.  The claim is database-wide: its results assume that no other
-- file left open outbox rows behind, which every file guarantees by
-- deleting its rows (checked first).
--
\set VERBOSITY terse
SET client_min_messages = warning;
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

-- nothing open from elsewhere
SELECT count(*) AS foreign_open_rows FROM shop.outbox WHERE state IN ('queued', 'in_flight', 'failed');

INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://claim.example.test/a', '{*}')
RETURNING id AS ep_a \gset
INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://claim.example.test/b', '{*}')
RETURNING id AS ep_b \gset
INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://claim.example.test/c', '{*}')
RETURNING id AS ep_c \gset
INSERT INTO shop.event_endpoint (url, event_types) VALUES ('https://claim.example.test/d', '{*}')
RETURNING id AS ep_d \gset

-- One outbox row: endpoint, key, ordering key, state, due in (negative:
-- overdue), attempts.  An in_flight row gets a lease ending at now() + due.
CREATE PROCEDURE pg_temp.put(ep bigint, key text, okey text, st text DEFAULT 'queued',
							 due interval DEFAULT '-1 minute', tries int DEFAULT 0)
LANGUAGE sql AS $$
	INSERT INTO shop.outbox (endpoint_id, url, body, idempotency_key, ordering_key, state,
							 attempts, next_attempt_at, lease_until)
	SELECT ep, e.url, '{}', key, okey, st, tries,
		   CASE WHEN st = 'in_flight' THEN now() ELSE now() + due END,
		   CASE WHEN st = 'in_flight' THEN now() + due END
	  FROM shop.event_endpoint e WHERE e.id = ep
$$;

-- Claim; the keys of the claimed rows, sorted ('-' for none).
CREATE FUNCTION pg_temp.claim(max_rows int, lease interval DEFAULT '30 seconds') RETURNS text
LANGUAGE sql AS $$
	SELECT coalesce(string_agg(idempotency_key, ' ' ORDER BY idempotency_key), '-')
	  FROM shop.outbox_claim(max_rows, lease)
$$;

-- This file's rows, endpoints by letter.
CREATE TEMP VIEW claim_rows AS
	SELECT o.idempotency_key AS key,
		   CASE o.endpoint_id WHEN :ep_a THEN 'a' WHEN :ep_b THEN 'b' WHEN :ep_c THEN 'c' WHEN :ep_d THEN 'd' END AS ep,
		   o.ordering_key, o.state, o.attempts,
		   o.claimed_by = pg_backend_pid() AS claimed_by_me,
		   o.lease_until > now() AS leased
	  FROM shop.outbox o
	 WHERE o.idempotency_key LIKE 'claim-%'
	 ORDER BY o.id;

------------------------------------------------------------------------------
-- Due rows only.  Queued and failed rows whose next_attempt_at has come
-- are claimed; later ones, delivered and dead rows and in-flight rows with
-- a running lease are not.  Each row has its own ordering key, so the
-- per-key rule plays no part here.
------------------------------------------------------------------------------
CALL pg_temp.put(:ep_a, 'claim-queued-due', 'k1');
CALL pg_temp.put(:ep_a, 'claim-failed-due', 'k2', 'failed', '-5 seconds', 2);
CALL pg_temp.put(:ep_a, 'claim-queued-later', 'k3', 'queued', '1 hour');
CALL pg_temp.put(:ep_a, 'claim-failed-later', 'k4', 'failed', '1 minute', 3);
CALL pg_temp.put(:ep_a, 'claim-delivered', 'k5', 'delivered', '-1 hour', 1);
CALL pg_temp.put(:ep_a, 'claim-dead', 'k6', 'dead', '-1 hour', 12);
CALL pg_temp.put(:ep_a, 'claim-leased', 'k7', 'in_flight', '30 seconds', 1);
SELECT * FROM claim_rows;
BEGIN;
SELECT pg_temp.claim(100);
-- claimed rows: in_flight, attempts + 1, this backend, lease = now() + lease
SELECT idempotency_key AS key, state, attempts, claimed_by = pg_backend_pid() AS claimed_by_me,
	   lease_until = now() + interval '30 seconds' AS lease_exact,
	   updated_at = now() AS updated_now
  FROM shop.outbox WHERE idempotency_key IN ('claim-queued-due', 'claim-failed-due') ORDER BY id;
COMMIT;
SELECT * FROM claim_rows;
-- nothing else is due: a second claim gets nothing
SELECT pg_temp.claim(100);
-- a queued row is due at exactly next_attempt_at
UPDATE shop.outbox SET next_attempt_at = now() WHERE idempotency_key = 'claim-queued-later';
SELECT pg_temp.claim(100);
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';

------------------------------------------------------------------------------
-- Disabled and removed endpoints: their rows are not claimed, also not an
-- in-flight row whose lease ran out; re-enabled, they are.
------------------------------------------------------------------------------
CALL pg_temp.put(:ep_a, 'claim-a-1', 'k1');
CALL pg_temp.put(:ep_c, 'claim-c-1', 'k1');
CALL pg_temp.put(:ep_c, 'claim-c-2', 'k2', 'in_flight', '-1 second', 1);
CALL pg_temp.put(:ep_d, 'claim-d-1', 'k1');
CALL pg_temp.put(:ep_d, 'claim-d-2', 'k2', 'failed', '-1 second', 1);
UPDATE shop.event_endpoint SET enabled = false, disabled_reason = 'test: disabled'
 WHERE id = :ep_c;
UPDATE shop.event_endpoint SET removed_at = now() WHERE id = :ep_d;
SELECT pg_temp.claim(100);
SELECT * FROM claim_rows;
-- disabled but not removed, or removed but still flagged enabled: neither
UPDATE shop.event_endpoint SET enabled = true, disabled_reason = NULL, removed_at = now()
 WHERE id = :ep_c;
UPDATE shop.event_endpoint SET enabled = false, removed_at = NULL WHERE id = :ep_d;
SELECT pg_temp.claim(100);
-- enabled and not removed again: claimed
UPDATE shop.event_endpoint SET removed_at = NULL WHERE id = :ep_c;
SELECT pg_temp.claim(100);
UPDATE shop.event_endpoint SET enabled = true WHERE id = :ep_d;
SELECT pg_temp.claim(100);
SELECT * FROM claim_rows;
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';

------------------------------------------------------------------------------
-- Order per (endpoint, ordering_key): only the oldest open row (queued, in
-- flight or failed) of a key is claimable; later rows wait until it is
-- delivered or dead, also while it waits for a retry.  Other endpoints and
-- other keys are independent; rows without an ordering key are not ordered.
------------------------------------------------------------------------------
CALL pg_temp.put(:ep_a, 'claim-a-k1-1', 'order:1');
CALL pg_temp.put(:ep_a, 'claim-a-k1-2', 'order:1');
CALL pg_temp.put(:ep_a, 'claim-a-k1-3', 'order:1');
CALL pg_temp.put(:ep_b, 'claim-b-k1-1', 'order:1');
CALL pg_temp.put(:ep_b, 'claim-b-k1-2', 'order:1');
CALL pg_temp.put(:ep_a, 'claim-a-k2-1', 'order:2');
CALL pg_temp.put(:ep_a, 'claim-a-nokey-1', NULL);
CALL pg_temp.put(:ep_a, 'claim-a-nokey-2', NULL);
SELECT pg_temp.claim(100);
-- the first of each key is in flight: the others wait
SELECT pg_temp.claim(100);
-- the first row failed and waits for its retry: the second still waits,
-- although it is due
UPDATE shop.outbox SET state = 'failed', lease_until = NULL, last_status = 503,
	   next_attempt_at = now() + interval '1 minute'
 WHERE idempotency_key = 'claim-a-k1-1';
SELECT pg_temp.claim(100);
-- its lease ran out while in flight again: it is claimed again, never the second
UPDATE shop.outbox SET state = 'in_flight', lease_until = now() - interval '1 second'
 WHERE idempotency_key = 'claim-a-k1-1';
SELECT pg_temp.claim(100);
-- delivered: the second goes (not the third); b's first delivered too
UPDATE shop.outbox SET state = 'delivered', lease_until = NULL, delivered_at = now()
 WHERE idempotency_key IN ('claim-a-k1-1', 'claim-b-k1-1');
SELECT pg_temp.claim(100);
-- the second is given up (dead): the third goes
UPDATE shop.outbox SET state = 'dead', lease_until = NULL
 WHERE idempotency_key = 'claim-a-k1-2';
SELECT pg_temp.claim(100);
SELECT * FROM claim_rows;
-- a later row of a key is not claimed before an older one that is not yet
-- due, even when the later one was due earlier
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';
CALL pg_temp.put(:ep_a, 'claim-a-k3-1', 'sku:3', 'queued', '10 minutes');
CALL pg_temp.put(:ep_a, 'claim-a-k3-2', 'sku:3', 'queued', '-10 minutes');
SELECT pg_temp.claim(100);
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';

------------------------------------------------------------------------------
-- Lease expiry: an in-flight row whose claimant died (its lease ran out)
-- is claimed again, attempts + 1, with a new lease; one whose lease still
-- runs is not.
------------------------------------------------------------------------------
CALL pg_temp.put(:ep_a, 'claim-expired', 'k1', 'in_flight', '-1 second', 1);
CALL pg_temp.put(:ep_a, 'claim-running', 'k2', 'in_flight', '1 minute', 4);
UPDATE shop.outbox SET claimed_by = -1 WHERE idempotency_key LIKE 'claim-%';
SELECT key, state, attempts, claimed_by_me, leased FROM claim_rows;
BEGIN;
SELECT pg_temp.claim(100, '45 seconds');
SELECT idempotency_key AS key, state, attempts, claimed_by = pg_backend_pid() AS claimed_by_me,
	   lease_until = now() + interval '45 seconds' AS lease_exact
  FROM shop.outbox WHERE idempotency_key LIKE 'claim-%' ORDER BY id;
COMMIT;
-- and once more when the new lease runs out too
UPDATE shop.outbox SET lease_until = now() - interval '1 second' WHERE idempotency_key = 'claim-expired';
SELECT pg_temp.claim(100);
SELECT key, state, attempts FROM claim_rows;
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';

------------------------------------------------------------------------------
-- max_rows: at most that many rows per claim, longest due first (by
-- next_attempt_at, then id); the rest stay for the next claim.
------------------------------------------------------------------------------
CALL pg_temp.put(:ep_a, 'claim-m1', 'm1', 'queued', '-1 minute');
CALL pg_temp.put(:ep_a, 'claim-m2', 'm2', 'failed', '-3 minutes', 1);
CALL pg_temp.put(:ep_a, 'claim-m3', 'm3', 'queued', '-2 minutes');
CALL pg_temp.put(:ep_b, 'claim-m4', 'm4', 'queued', '-4 minutes');
CALL pg_temp.put(:ep_b, 'claim-m5', 'm5', 'queued', '-1 minute');
SELECT pg_temp.claim(0);
SELECT pg_temp.claim(2);
SELECT pg_temp.claim(2);
SELECT pg_temp.claim(2);
SELECT pg_temp.claim(2);
SELECT key, ep, state, attempts FROM claim_rows;
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';
-- rows that wait for an older row of their key do not use up max_rows:
-- the most overdue row here waits, the next one is claimed in its place
CALL pg_temp.put(:ep_a, 'claim-w1', 'w', 'queued', '-1 minute');
CALL pg_temp.put(:ep_a, 'claim-w2', 'w', 'queued', '-10 minutes');
CALL pg_temp.put(:ep_a, 'claim-x1', 'x', 'queued', '-2 minutes');
SELECT pg_temp.claim(1);
SELECT pg_temp.claim(1);
SELECT pg_temp.claim(1);
SELECT key, state, attempts FROM claim_rows;
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';

------------------------------------------------------------------------------
-- A backlog (an outage, a disabled endpoint re-enabled): a claim reads
-- about as many rows as it claims, whatever the backlog and whatever the
-- table's statistics say.  Here they are those of a table with no open
-- row, analyzed before the backlog came, as a running shop's are after an
-- outage (autoanalyze waits for 10 % of the table to change).  With them
-- the claim was planned as a bitmap scan of every open row and a sort: a
-- 16-row claim read all 20,000 rows here, and 0.7 s per claim at 120,000.
-- Counted: rows and index entries of shop.outbox this transaction read
-- (pg_temp.outbox_rows_read, sql/include/helpers.sql).  The claim
-- always runs its generic plan (plan_cache_mode in its SET clauses: the
-- worker plans it once); a session that asks for custom plans gets the
-- same.  Rows at infinity (an endpoint disabled while rows came in) are
-- not read at all.
------------------------------------------------------------------------------
INSERT INTO shop.outbox (endpoint_id, url, body, idempotency_key, ordering_key, state,
						 next_attempt_at, delivered_at)
SELECT :ep_c, 'https://claim.example.test/c', '{}', 'claim-history-' || g, 'h' || g, 'delivered',
	   now() - interval '1 day', now() - interval '1 day'
  FROM generate_series(1, 20000) g;
ANALYZE shop.outbox;
-- rows at infinity only: a claim finds nothing and reads next to nothing
INSERT INTO shop.outbox (endpoint_id, url, body, idempotency_key, ordering_key, next_attempt_at)
SELECT :ep_b, 'https://claim.example.test/b', '{}', 'claim-waiting-' || g, 'w' || g, 'infinity'
  FROM generate_series(1, 20000) g;
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT pg_temp.outbox_rows_read() AS before \gset
SELECT pg_temp.claim(16);
SELECT pg_temp.outbox_rows_read() - :before < 200 AS waiting_rows_not_read;
ROLLBACK;
-- and 20,000 due rows: the claim reads the 16 it takes (and their indexes)
INSERT INTO shop.outbox (endpoint_id, url, body, idempotency_key, ordering_key, next_attempt_at)
SELECT :ep_a, 'https://claim.example.test/a', '{}', 'claim-backlog-' || g, 'b' || g,
	   now() - interval '1 hour' + g * interval '1 millisecond'
  FROM generate_series(1, 20000) g;
BEGIN;
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT pg_temp.outbox_rows_read() AS before \gset
SELECT pg_temp.claim(16);
SELECT pg_temp.outbox_rows_read() - :before < 200 AS generic_plan_reads_few_rows;
ROLLBACK;
BEGIN;
SET LOCAL plan_cache_mode = force_custom_plan;
SELECT pg_temp.outbox_rows_read() AS before \gset
SELECT pg_temp.claim(16);
SELECT pg_temp.outbox_rows_read() - :before < 200 AS session_custom_plan_mode_reads_few_rows;
ROLLBACK;
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';
ANALYZE shop.outbox;

-- Clean up
DELETE FROM shop.outbox WHERE idempotency_key LIKE 'claim-%';
DELETE FROM shop.event_endpoint WHERE url LIKE 'https://claim.example.test/%';
DROP VIEW claim_rows;
SELECT count(*) AS open_rows_left FROM shop.outbox WHERE state IN ('queued', 'in_flight', 'failed');

--
-- shop_reconcile_payments: which checkouts it asks the provider about, and
-- what it reads to find them.  The worker runs it every
-- shop.reconcile_interval, so it must cost the same however many checkouts
-- the shop has ever started: the session of a paid order stays 'open' (its
-- provider closes it, we do not), so "open" alone is most of the history.
-- It reads the PENDING orders and their sessions, not every session.
-- Hermetic: everything below runs in one transaction that is rolled back;
-- provider rc-stripe, users rc-*.
--
\set VERBOSITY terse
SET client_min_messages = warning;

\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

-- Rows and index entries read, per table it looks at, since before
-- (a jsonb of the counts pg_temp.reconcile_reads() returned then): each
-- below 100, or the count
CREATE FUNCTION pg_temp.reconcile_reads(before jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT CASE WHEN before IS NULL THEN jsonb_object_agg(t, pg_temp.rows_read(t::regclass))
				ELSE jsonb_object_agg(t, CASE WHEN pg_temp.rows_read(t::regclass) - (before ->> t)::bigint < 100
											 THEN to_jsonb('few'::text)
											 ELSE to_jsonb(pg_temp.rows_read(t::regclass) - (before ->> t)::bigint) END) END
	  FROM unnest(ARRAY['shop.orders', 'shop.payment_session', 'shop.payment_log', 'shop.outbox']) t
$$;

BEGIN;
SELECT shop.shop_set_provider('rc-stripe', 'stripe', 'whsec_regress_only_rc01') ->> 'kind' AS stripe;
SELECT shop.shop_set_provider_api_key('rc-stripe', 'sk_test_regress_only') IS NOT NULL AS key_set;

-- statistics from before the history: what a young shop's tables have
ANALYZE shop.orders;
ANALYZE shop.payment_session;

-- the history: 20,000 paid orders whose checkout sessions are still
-- 'open', each with its payment event; and a backlog of 20,000 event
-- deliveries queued for an endpoint that is down
INSERT INTO shop.orders (user_id, status)
SELECT 'rc-history', 'PAID' FROM generate_series(1, 20000);
INSERT INTO shop.payment_session (order_id, provider, session_id, url, created_at)
SELECT id, 'rc-stripe', 'cs_rc_history_' || id, 'https://checkout.example/' || id,
	   now() - interval '2 days'
  FROM shop.orders WHERE user_id = 'rc-history';
INSERT INTO shop.payment_log (provider, event_id, order_id, kind, payload)
SELECT 'rc-stripe', 'evt_rc_history_' || id, id, 'paid', '{}'
  FROM shop.orders WHERE user_id = 'rc-history';
SELECT shop.shop_subscribe('https://rc-receiver.example/hook', ARRAY['*']) ->> 'endpoint_id' AS ep \gset
INSERT INTO shop.outbox (endpoint_id, url, body, idempotency_key, ordering_key)
SELECT :ep, 'https://rc-receiver.example/hook', '{}', 'rc-backlog-' || i, 'order:' || i
  FROM generate_series(1, 20000) i;

-- PENDING orders: a checkout open for an hour (asked about), one opened a
-- minute ago (not yet), one whose payment event came (not asked), and one
-- without a checkout
INSERT INTO shop.orders (user_id, status)
VALUES ('rc-due', 'PENDING'), ('rc-recent', 'PENDING'), ('rc-paid-event', 'PENDING'),
	   ('rc-no-session', 'PENDING');
INSERT INTO shop.payment_session (order_id, provider, session_id, url, created_at)
SELECT id, 'rc-stripe', 'cs_' || user_id, 'https://checkout.example/' || user_id,
	   CASE user_id WHEN 'rc-recent' THEN now() - interval '1 minute' ELSE now() - interval '1 hour' END
  FROM shop.orders WHERE user_id IN ('rc-due', 'rc-recent', 'rc-paid-event');
INSERT INTO shop.payment_log (provider, event_id, order_id, kind, payload)
SELECT 'rc-stripe', 'evt_rc_paid', id, 'paid', '{}' FROM shop.orders WHERE user_id = 'rc-paid-event';

------------------------------------------------------------------------------
-- What it asks about, statistics as found
------------------------------------------------------------------------------
SELECT pg_temp.reconcile_reads() AS r0 \gset
SELECT shop.shop_reconcile_payments('10 minutes', 100) AS queued;
SELECT pg_temp.reconcile_reads(:'r0');
-- one fetch, of the old open checkout of the PENDING order
SELECT x.operation, s.session_id, x.state, x.url LIKE '%/v1/checkout/sessions/cs_rc-due' AS fetches_the_session
  FROM shop.outbox x JOIN shop.payment_session s ON s.id = x.subject_id
 WHERE x.provider = 'rc-stripe' ORDER BY x.id;

-- not again while that fetch is open; the recent one once it is old enough
SELECT shop.shop_reconcile_payments('10 minutes', 100) AS queued_again;
SELECT shop.shop_reconcile_payments('30 seconds', 100) AS queued_recent;
SELECT s.session_id FROM shop.outbox x JOIN shop.payment_session s ON s.id = x.subject_id
 WHERE x.provider = 'rc-stripe' ORDER BY x.id;

------------------------------------------------------------------------------
-- The same with the statistics analyzed, and with the plan cached generic
------------------------------------------------------------------------------
ANALYZE shop.orders;
ANALYZE shop.payment_session;
-- the fetches so far are gone (a fetch of the same session in the same
-- minute has the same idempotency key and is not queued again: its
-- answer is that minute's)
DELETE FROM shop.outbox WHERE provider = 'rc-stripe';
SELECT pg_temp.reconcile_reads() AS r0 \gset
SELECT shop.shop_reconcile_payments('30 seconds', 1) AS queued_oldest_first;
SELECT pg_temp.reconcile_reads(:'r0');
SELECT s.session_id FROM shop.outbox x JOIN shop.payment_session s ON s.id = x.subject_id
 WHERE x.provider = 'rc-stripe' ORDER BY x.id;
-- the cached plan goes generic after five calls: the first of these
-- queues the other session, the rest find both fetches open
SELECT shop.shop_reconcile_payments('30 seconds', 100) AS n1,
	   shop.shop_reconcile_payments('30 seconds', 100) AS n2,
	   shop.shop_reconcile_payments('30 seconds', 100) AS n3,
	   shop.shop_reconcile_payments('30 seconds', 100) AS n4,
	   shop.shop_reconcile_payments('30 seconds', 100) AS n5,
	   shop.shop_reconcile_payments('30 seconds', 100) AS n6;
DELETE FROM shop.outbox WHERE provider = 'rc-stripe';
SELECT pg_temp.reconcile_reads() AS r0 \gset
SELECT shop.shop_reconcile_payments('30 seconds', 100) AS queued_generic;
SELECT pg_temp.reconcile_reads(:'r0');

-- a released order's checkout is not asked about (its expiry is: session.c)
DELETE FROM shop.outbox WHERE provider = 'rc-stripe';
UPDATE shop.orders SET status = 'CANCELLED', status_reason = 'cancelled' WHERE user_id IN ('rc-due', 'rc-recent');
SELECT shop.shop_reconcile_payments('0 seconds', 100) AS queued_after_release;

------------------------------------------------------------------------------
-- Bad arguments: a clear error, nothing queued
------------------------------------------------------------------------------
SELECT pg_temp.outcome('SELECT shop.shop_reconcile_payments(NULL, 100)');
SELECT pg_temp.outcome('SELECT shop.shop_reconcile_payments(''1 minute'', 0)');
ROLLBACK;

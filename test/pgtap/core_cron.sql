-- core_cron.sql: shop.shop_schedule_expiry() registers exactly one pg_cron job
-- that runs shop.shop_expire_pending() in this database, updates it when
-- called again, and refuses clearly (SH007 with a hint) without pg_cron; and
-- with the job gone, buyers still get stock held by expired orders (inline
-- reclaim), so expiry never depends on the cron job alone.
-- Runs in one transaction that is rolled back: no job is left behind.
BEGIN;
SELECT plan(34);

-- The job as pg_cron stores it (cron.job is row-level secured by username;
-- this file runs as a superuser, which sees every row).
CREATE FUNCTION pg_temp.shop_jobs()
RETURNS TABLE (jobid bigint, schedule text, command text, database text, active boolean)
LANGUAGE sql STABLE AS $$
	SELECT j.jobid, j.schedule, j.command, j.database, j.active
	  FROM cron.job j WHERE j.jobname = 'shop-expire-pending'
$$;

CREATE TEMP TABLE tap_job_ids (call text PRIMARY KEY, jobid bigint);

-- pg_cron is there --------------------------------------------------------

SELECT has_extension('pg_cron', 'pg_cron is installed in this database');
SELECT is(current_setting('cron.database_name'), current_database()::text,
	'pg_cron runs its jobs from this database');

-- First call: one job, default schedule every minute ----------------------

INSERT INTO tap_job_ids SELECT 'first', shop.shop_schedule_expiry();
SELECT isnt((SELECT jobid FROM tap_job_ids WHERE call = 'first'), NULL,
	'shop_schedule_expiry() returns a job id');
SELECT is((SELECT count(*) FROM pg_temp.shop_jobs()), 1::bigint,
	'exactly one job named shop-expire-pending exists');
SELECT results_eq($$SELECT jobid, schedule, command, active FROM pg_temp.shop_jobs()$$,
	$$SELECT jobid, '* * * * *'::text, 'SELECT shop.shop_expire_pending()'::text, true
		FROM tap_job_ids WHERE call = 'first'$$,
	'the job has the returned id, runs SELECT shop.shop_expire_pending() every minute, and is active');
SELECT is((SELECT database FROM pg_temp.shop_jobs()), current_database()::text,
	'the job runs in this database');
SELECT is((SELECT count(*) FROM cron.job WHERE command = 'SELECT shop.shop_expire_pending()'),
	1::bigint, 'no other job runs the expiry command');

-- Second call with the same schedule: still one job -------------------------

INSERT INTO tap_job_ids SELECT 'again', shop.shop_schedule_expiry();
SELECT is((SELECT count(*) FROM pg_temp.shop_jobs()), 1::bigint,
	'calling twice leaves exactly one job');
SELECT is((SELECT jobid FROM tap_job_ids WHERE call = 'again'),
	(SELECT jobid FROM pg_temp.shop_jobs()), 'the second call returns the id of that one job');
SELECT is((SELECT schedule FROM pg_temp.shop_jobs()), '* * * * *',
	'the schedule is unchanged');

-- Third call with another schedule: still one job, with the new schedule ---

INSERT INTO tap_job_ids SELECT 'every5', shop.shop_schedule_expiry('*/5 * * * *');
SELECT is((SELECT count(*) FROM pg_temp.shop_jobs()), 1::bigint,
	'calling with another schedule leaves exactly one job');
SELECT results_eq($$SELECT jobid, schedule, command FROM pg_temp.shop_jobs()$$,
	$$SELECT jobid, '*/5 * * * *'::text, 'SELECT shop.shop_expire_pending()'::text
		FROM tap_job_ids WHERE call = 'every5'$$,
	'that job now has the new schedule and the returned id');
SELECT is((SELECT count(*) FROM cron.job WHERE command = 'SELECT shop.shop_expire_pending()'),
	1::bigint, 'still no second job with the expiry command');

-- Named-argument call (the argument name is part of the API).
SELECT is(shop.shop_schedule_expiry(schedule => '0 * * * *'),
	(SELECT jobid FROM pg_temp.shop_jobs()), 'shop_schedule_expiry(schedule => ...) updates the same job');
SELECT is((SELECT schedule FROM pg_temp.shop_jobs()), '0 * * * *', 'to the hourly schedule');

-- A bad schedule is refused and leaves the job as it was.
SELECT throws_like($$SELECT shop.shop_schedule_expiry('not a schedule')$$,
	'%schedule%', 'an invalid schedule is refused');
SELECT results_eq($$SELECT count(*), min(schedule) FROM pg_temp.shop_jobs()$$,
	$$VALUES (1::bigint, '0 * * * *'::text)$$,
	'after the refused call the one job keeps its schedule');

-- The job's command does the housekeeping ----------------------------------
-- run the stored command text as pg_cron would, on an expired order

INSERT INTO shop.product (id, name, price) VALUES (9301, 'cron-test product', 100);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (9301, 9301, 'CRON-9301', 4);
CREATE TEMP TABLE tap_cron_order AS
	SELECT id FROM shop.shop_buy_now('cron-u1', '[{"sku_id": 9301, "qty": 3}]');
UPDATE shop.orders SET expires_at = now() - interval '1 minute'
 WHERE id = (SELECT id FROM tap_cron_order);
CREATE FUNCTION pg_temp.run_job_command() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	EXECUTE (SELECT command FROM pg_temp.shop_jobs()) INTO n;
	RETURN n;
END $$;
SELECT cmp_ok(pg_temp.run_job_command(), '>=', 1, 'the job''s command expires at least the one expired order');
SELECT results_eq($$SELECT o.status, o.status_reason, s.reserved
					 FROM shop.orders o, shop.sku s
					WHERE o.id = (SELECT id FROM tap_cron_order) AND s.id = 9301$$,
	$$VALUES ('CANCELLED'::text, 'expired'::text, 0::bigint)$$,
	'the expired order is CANCELLED (expired) and its 3 units are no longer reserved');

-- Without pg_cron: SH007 with a hint, and nothing changes -------------------
-- pg_cron is dropped inside a subtransaction that is always rolled back.

CREATE FUNCTION pg_temp.schedule_without_cron() RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	hint text;
BEGIN
	BEGIN
		DROP EXTENSION pg_cron;
		PERFORM shop.shop_schedule_expiry();
		RAISE EXCEPTION 'no error' USING ERRCODE = 'XX000';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
		RETURN ARRAY[st, msg, hint];
	END;
END $$;
CREATE TEMP TABLE tap_no_cron AS SELECT pg_temp.schedule_without_cron() AS e;
SELECT is((SELECT e[1] FROM tap_no_cron), 'SH007',
	'without pg_cron in this database shop_schedule_expiry raises SH007');
SELECT is((SELECT e[2] FROM tap_no_cron), format('pg_cron is not installed in database "%s"', current_database()),
	'the message names the database');
SELECT matches((SELECT e[3] FROM tap_no_cron), 'CREATE EXTENSION pg_cron',
	'the hint says to run CREATE EXTENSION pg_cron');
SELECT is((SELECT count(*) FROM pg_temp.shop_jobs()), 1::bigint,
	'pg_cron and the one job are back after the rolled-back drop');

-- Expiry does not depend on the cron job ------------------------------------
-- With the job gone and no sweep called, a buyer who needs stock held by an
-- expired PENDING order gets it: the order is released inline (reclaim).

SELECT is(cron.unschedule('shop-expire-pending'), true, 'the expiry job is removed with cron.unschedule');
SELECT is_empty($$SELECT * FROM pg_temp.shop_jobs()$$, 'no expiry job exists: from here on nothing sweeps');
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(9302, 9301, 'CRON-9302', 1), (9303, 9301, 'CRON-9303', 1);

-- buy_now reclaims: A holds the last unit of 9302 and runs out of time, B buys it
CREATE TEMP TABLE tap_reclaim (who text PRIMARY KEY, order_id bigint);
INSERT INTO tap_reclaim SELECT 'A', id FROM shop.shop_buy_now('cron-a', '[{"sku_id": 9302, "qty": 1}]');
UPDATE shop.orders SET expires_at = now() - interval '1 minute'
 WHERE id = (SELECT order_id FROM tap_reclaim WHERE who = 'A');
SELECT lives_ok($$INSERT INTO tap_reclaim SELECT 'B', id FROM shop.shop_buy_now('cron-b', '[{"sku_id": 9302, "qty": 1}]')$$,
	'without the cron job, buy_now of stock held by an expired order succeeds');
SELECT results_eq($$SELECT r.who, o.status, coalesce(o.status_reason, '') FROM tap_reclaim r
					 JOIN shop.orders o ON o.id = r.order_id ORDER BY r.who$$,
	$$VALUES ('A'::text, 'CANCELLED'::text, 'expired'::text), ('B', 'PENDING', '')$$,
	'the expired order A was released inline (CANCELLED, expired) and B holds the unit');

-- create_order reclaims: C's cart line of 9303 becomes an order although D's
-- expired order holds the only unit
SELECT is((shop.shop_cart_add('cron-c', 9303, 1)).qty, 1, 'C puts the last unit of 9303 in the cart');
INSERT INTO tap_reclaim SELECT 'D', id FROM shop.shop_buy_now('cron-d', '[{"sku_id": 9303, "qty": 1}]');
UPDATE shop.orders SET expires_at = now() - interval '1 minute'
 WHERE id = (SELECT order_id FROM tap_reclaim WHERE who = 'D');
SELECT lives_ok($$INSERT INTO tap_reclaim SELECT 'C', id FROM shop.shop_create_order('cron-c')$$,
	'without the cron job, create_order of stock held by an expired order succeeds');
SELECT results_eq($$SELECT r.who, o.status, coalesce(o.status_reason, '') FROM tap_reclaim r
					 JOIN shop.orders o ON o.id = r.order_id WHERE r.who IN ('C', 'D') ORDER BY r.who$$,
	$$VALUES ('C'::text, 'PENDING'::text, ''::text), ('D', 'CANCELLED', 'expired')$$,
	'the expired order D was released inline and C''s order holds the unit');
SELECT is_empty($$SELECT * FROM shop.shop_check_invariants()$$, 'the books balance after the reclaims');

-- cart_add with the cron job down: B's order now runs out of time too, and
-- E wants the unit it holds in a cart.  A cart reserves nothing, so it does
-- not reclaim, but it counts stock held by expired orders as available
-- ("a stopped pg_cron may delay housekeeping, never a sale"); the checkout
-- that follows reclaims it.
UPDATE shop.orders SET expires_at = now() - interval '1 minute'
 WHERE id = (SELECT order_id FROM tap_reclaim WHERE who = 'B');
SELECT lives_ok($$SELECT shop.shop_cart_add('cron-e', 9302, 1)$$,
	'without the cron job, cart_add of stock held only by an expired order succeeds');
SELECT results_eq($$SELECT s.reserved, (SELECT count(*) FROM shop.orders o WHERE o.status = 'PENDING' AND o.expires_at <= now()
					   AND o.id IN (SELECT order_id FROM tap_reclaim))
					 FROM shop.sku s WHERE s.id = 9302$$,
	$$VALUES (1::bigint, 1::bigint)$$,
	'B''s expired order still holds its unit until a sweep or a buy reclaims it');
SELECT is((SELECT status FROM shop.shop_buy_now('cron-f', '[{"sku_id": 9302, "qty": 1}]')), 'PENDING',
	'while a buy of that unit reclaims it right away');

SELECT * FROM finish();
ROLLBACK;

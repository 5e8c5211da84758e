--
-- Outgoing events (README, "Event catalogue"): which transition writes
-- which event, one shop.event row and one shop.outbox row per enabled
-- endpoint subscribed to its type, in the transaction that causes it (a
-- rollback or an error leaves neither); nothing when nobody subscribes.
-- The body of each type, the idempotency key evt_<event id> shared by all
-- endpoints, the ordering key per order / per SKU, the views
-- shop.outbox_pending, outbox_dead and outbox_health (no worker runs here:
-- shared_preload_libraries has no shop), and shop_redeliver /
-- shop_redeliver_dead on rows made dead by hand.
--
-- Hermetic: endpoints https://events.example.test/*, product "events mug",
-- SKUs EVT-*, users evt-*, provider mock-events; every row is deleted at
-- the end.  Ids of orders, SKUs, endpoints and events come from sequences
-- other tests use too: they are captured with \gset and shown by name
-- (orders o0, o1, ...); bodies are shown parsed, with ids compared and
-- timestamps checked for their format, never printed.  Events are listed
-- as they appear: the file assumes no other session writes events while
-- it runs (every file deletes its endpoints, so no one else does).
--
\set VERBOSITY terse
SET client_min_messages = warning;

-- pg_temp.outcome(stmt): its result or "SQLSTATE: message"
\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

-- Names for ids: orders, SKUs, endpoints.
CREATE TEMP TABLE name_of (kind text, id bigint, name text, PRIMARY KEY (kind, id));
CREATE FUNCTION pg_temp.n(k text, i bigint) RETURNS text
LANGUAGE sql AS $$ SELECT CASE WHEN i IS NOT NULL THEN coalesce((SELECT name FROM name_of WHERE kind = k AND id = i), '?') END $$;

-- The events written since the last call: type, order or SKU, and the
-- endpoints that got an outbox row (by name, sorted).
CREATE TEMP TABLE seen (id bigint);
INSERT INTO seen SELECT coalesce(max(id), 0) FROM shop.event;
CREATE FUNCTION pg_temp.new_events() RETURNS TABLE (type text, subject text, sent_to text)
LANGUAGE plpgsql AS $$
DECLARE
	last_seen bigint := (SELECT id FROM seen);
BEGIN
	RETURN QUERY
		SELECT e.type, CASE WHEN e.type = 'stock.low' THEN pg_temp.n('sku', e.sku_id) ELSE pg_temp.n('order', e.order_id) END,
			   (SELECT string_agg(pg_temp.n('endpoint', o.endpoint_id), ' ' ORDER BY pg_temp.n('endpoint', o.endpoint_id))
				  FROM shop.outbox o WHERE o.event_id = e.id)
		  FROM shop.event e WHERE e.id > last_seen ORDER BY e.id;
	UPDATE seen SET id = greatest(last_seen, (SELECT max(id) FROM shop.event));
END
$$;

-- Buy qty of one SKU for user; the order id.
CREATE FUNCTION pg_temp.buy(u text, sku bigint, qty int) RETURNS bigint
LANGUAGE sql AS $$
	SELECT (shop.shop_buy_now(u, jsonb_build_array(jsonb_build_object('sku_id', sku, 'qty', qty)))).id
$$;

-- A signed mock payment event (as in webhook_event_processing_rules.sql);
-- the result and review flag.
CREATE FUNCTION pg_temp.pay(event_id text, type text, order_id bigint, amount bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	body text := jsonb_build_object('type', type, 'data', jsonb_build_object(
		'order_id', order_id::text, 'amount', amount, 'currency', 'KRW', 'payment_id', 'pay-' || event_id))::text;
	r jsonb;
BEGIN
	r := shop.shop_handle_webhook('mock-events', shop.shop_sign_mock('mock-events', event_id, body), body);
	RETURN (r->>'result') || ' ' || (r->>'order_status') || coalesce(' ' || (r->>'review'), '');
END
$$;
SELECT shop.shop_set_provider('mock-events', 'mock',
	'whsec_' || encode(convert_to('mock-events secret for the tests', 'UTF8'), 'base64')) IS NOT NULL AS registered;

INSERT INTO shop.product (name, price, currency) VALUES ('events mug', 500, 'KRW') RETURNING id AS product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'EVT-A', 100) RETURNING id AS sku_a \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'EVT-R', 1) RETURNING id AS sku_r \gset
INSERT INTO name_of VALUES ('sku', :sku_a, 'EVT-A'), ('sku', :sku_r, 'EVT-R');

------------------------------------------------------------------------------
-- Nobody subscribes: nothing is written.
------------------------------------------------------------------------------
SELECT count(*) AS live_endpoints FROM shop.event_endpoint WHERE removed_at IS NULL;
SELECT pg_temp.buy('evt-u0', :sku_a, 1) AS o0 \gset
INSERT INTO name_of VALUES ('order', :o0, 'o0');
SELECT status FROM shop.shop_confirm_paid(:o0, 'pay-o0');
SELECT * FROM pg_temp.new_events();
SELECT count(*) AS outbox_rows FROM shop.outbox;

------------------------------------------------------------------------------
-- One endpoint for order.created only: order.created is written, with one
-- row for it; order.paid is not (nobody subscribes to it).
------------------------------------------------------------------------------
SELECT (shop.shop_subscribe('https://events.example.test/created', ARRAY['order.created'])->>'endpoint_id')::bigint AS ep_created \gset
INSERT INTO name_of VALUES ('endpoint', :ep_created, 'created');
SELECT pg_temp.buy('evt-u1', :sku_a, 1) AS o1 \gset
INSERT INTO name_of VALUES ('order', :o1, 'o1');
SELECT * FROM pg_temp.new_events();
SELECT status FROM shop.shop_confirm_paid(:o1, 'pay-o1');
SELECT * FROM pg_temp.new_events();

------------------------------------------------------------------------------
-- More endpoints: one for every type (*), one for order.paid and
-- order.cancelled, one for stock.low.  Each transition writes its event.
------------------------------------------------------------------------------
SELECT (shop.shop_subscribe('https://events.example.test/all', ARRAY['*'])->>'endpoint_id')::bigint AS ep_all \gset
SELECT (shop.shop_subscribe('https://events.example.test/paid', ARRAY['order.paid', 'order.cancelled'])->>'endpoint_id')::bigint AS ep_paid \gset
SELECT (shop.shop_subscribe('https://events.example.test/stock', ARRAY['stock.low'])->>'endpoint_id')::bigint AS ep_stock \gset
INSERT INTO name_of VALUES ('endpoint', :ep_all, 'all'), ('endpoint', :ep_paid, 'paid'), ('endpoint', :ep_stock, 'stock');

-- order.created by shop_buy_now and by shop_create_order (cart)
SELECT pg_temp.buy('evt-u2', :sku_a, 2) AS o2 \gset
INSERT INTO name_of VALUES ('order', :o2, 'o2');
SELECT shop.shop_cart_add('evt-u3', :sku_a, 3) IS NOT NULL AS added;
SELECT id AS o3 FROM shop.shop_create_order('evt-u3', 'evt-key-3') \gset
INSERT INTO name_of VALUES ('order', :o3, 'o3');
SELECT * FROM pg_temp.new_events();
-- a repeated create with the same idempotency key returns the order: no event
SELECT id = :o3 AS same_order FROM shop.shop_create_order('evt-u3', 'evt-key-3');
SELECT * FROM pg_temp.new_events();

-- order.paid by shop_confirm_paid; repeating it (same payment) writes nothing
SELECT status FROM shop.shop_confirm_paid(:o2, 'pay-o2');
SELECT status FROM shop.shop_confirm_paid(:o2, 'pay-o2');
SELECT * FROM pg_temp.new_events();

-- order.cancelled and order.failed by shop_release; a repeat writes nothing
SELECT pg_temp.buy('evt-u4', :sku_a, 1) AS o4 \gset
SELECT pg_temp.buy('evt-u5', :sku_a, 1) AS o5 \gset
SELECT pg_temp.buy('evt-u6', :sku_a, 1) AS o6 \gset
INSERT INTO name_of VALUES ('order', :o4, 'o4'), ('order', :o5, 'o5'), ('order', :o6, 'o6');
SELECT * FROM pg_temp.new_events();
SELECT status FROM shop.shop_release(:o3, 'cancelled');
SELECT status FROM shop.shop_release(:o4, 'customer_cancelled');
SELECT status FROM shop.shop_release(:o5, 'shop_cancelled');
SELECT status FROM shop.shop_release(:o6, 'payment_failed');
SELECT status FROM shop.shop_release(:o6, 'payment_failed');
SELECT * FROM pg_temp.new_events();

-- order.expired by the sweep, once expires_at has passed
SELECT pg_temp.buy('evt-u7', :sku_a, 1) AS o7 \gset
INSERT INTO name_of VALUES ('order', :o7, 'o7');
-- (created_at - 1 minute: in the past, and the same distance for every run)
UPDATE shop.orders SET expires_at = created_at - interval '1 minute' WHERE id = :o7;
SELECT shop.shop_expire_pending() AS expired;
SELECT status, status_reason FROM shop.orders WHERE id = :o7;
SELECT * FROM pg_temp.new_events();

-- order.expired by the inline reclaim: the last unit of EVT-R is held by
-- an expired order; the next buyer releases it and buys
SELECT pg_temp.buy('evt-u8', :sku_r, 1) AS o8 \gset
INSERT INTO name_of VALUES ('order', :o8, 'o8');
UPDATE shop.orders SET expires_at = created_at - interval '1 minute' WHERE id = :o8;
SELECT pg_temp.buy('evt-u9', :sku_r, 1) AS o9 \gset
INSERT INTO name_of VALUES ('order', :o9, 'o9');
SELECT * FROM pg_temp.new_events();

-- payment webhooks: a wrong amount flags the order (order.needs_review);
-- the right one pays it (order.paid); a failed payment (order.failed); a
-- late payment re-sells an expired order (order.paid); money for an order
-- cancelled on purpose is a refund (order.needs_review)
SELECT pg_temp.buy('evt-u10', :sku_a, 1) AS o10 \gset
SELECT pg_temp.buy('evt-u11', :sku_a, 1) AS o11 \gset
INSERT INTO name_of VALUES ('order', :o10, 'o10'), ('order', :o11, 'o11');
SELECT * FROM pg_temp.new_events();
SELECT pg_temp.pay('evt-wh-1', 'payment.succeeded', :o10, 499);
SELECT * FROM pg_temp.new_events();
SELECT pg_temp.pay('evt-wh-2', 'payment.succeeded', :o10, 500);
SELECT pg_temp.pay('evt-wh-3', 'payment.failed', :o11, NULL);
SELECT pg_temp.pay('evt-wh-4', 'payment.succeeded', :o7, 500);
SELECT pg_temp.pay('evt-wh-5', 'payment.succeeded', :o4, 500);
SELECT * FROM pg_temp.new_events();
-- a duplicate delivery changes nothing and writes nothing
SELECT pg_temp.pay('evt-wh-2', 'payment.succeeded', :o10, 500);
SELECT * FROM pg_temp.new_events();

------------------------------------------------------------------------------
-- Errors and rollbacks write nothing.
------------------------------------------------------------------------------
SELECT count(*) AS events_before FROM shop.event \gset
SELECT count(*) AS rows_before FROM shop.outbox \gset
-- refused calls: too little stock, confirming a cancelled order
SELECT pg_temp.masked(format('SELECT status FROM shop.shop_buy_now(%L, %L)', 'evt-u12',
	jsonb_build_array(jsonb_build_object('sku_id', :sku_r, 'qty', 5))), :sku_r, 'EVT-R');
SELECT pg_temp.masked(format('SELECT status FROM shop.shop_confirm_paid(%s, %L)', :o5, 'pay-late'), :o5, 'o5');
-- a transaction that is rolled back: its order, its events, its rows vanish
BEGIN;
SELECT pg_temp.buy('evt-u13', :sku_a, 1) AS o13 \gset
SELECT status FROM shop.shop_confirm_paid(:o13, 'pay-o13');
SELECT count(*) AS events_inside FROM shop.event WHERE order_id = :o13;
ROLLBACK;
-- a savepoint rolled back inside a committed transaction
BEGIN;
SAVEPOINT s;
SELECT pg_temp.buy('evt-u14', :sku_a, 1) IS NOT NULL AS bought;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) - :events_before AS new_events, (SELECT count(*) FROM shop.outbox) - :rows_before AS new_rows
  FROM shop.event;
SELECT count(*) AS orders_left FROM shop.orders WHERE user_id IN ('evt-u12', 'evt-u13', 'evt-u14');
SELECT * FROM pg_temp.new_events();

------------------------------------------------------------------------------
-- A disabled endpoint gets its rows too: they wait (next_attempt_at
-- infinity) until it is enabled again, so nothing that happened meanwhile
-- is lost; enabled again, it gets the next ones as before.  (Its own
-- endpoint, removed at the end of the section, so the counts below do not
-- depend on it.)
------------------------------------------------------------------------------
SELECT (shop.shop_subscribe('https://events.example.test/off', ARRAY['order.created'])->>'endpoint_id')::bigint AS ep_off \gset
INSERT INTO name_of VALUES ('endpoint', :ep_off, 'off');
UPDATE shop.event_endpoint SET enabled = false, disabled_reason = 'test: disabled' WHERE id = :ep_off;
SELECT pg_temp.buy('evt-u15', :sku_a, 1) AS o15 \gset
INSERT INTO name_of VALUES ('order', :o15, 'o15');
SELECT * FROM pg_temp.new_events();
SELECT state, next_attempt_at = 'infinity' AS waits FROM shop.outbox WHERE endpoint_id = :ep_off;
SELECT shop.shop_enable_endpoint(:ep_off) AS enabled;
SELECT state, next_attempt_at <= now() AS due FROM shop.outbox WHERE endpoint_id = :ep_off;
SELECT pg_temp.buy('evt-u16', :sku_a, 1) AS o16 \gset
INSERT INTO name_of VALUES ('order', :o16, 'o16');
SELECT * FROM pg_temp.new_events();
DELETE FROM shop.outbox WHERE endpoint_id = :ep_off;
DELETE FROM shop.event_endpoint_secret WHERE endpoint_id = :ep_off;
DELETE FROM shop.event_endpoint WHERE id = :ep_off;
DELETE FROM name_of WHERE kind = 'endpoint' AND id = :ep_off;

------------------------------------------------------------------------------
-- stock.low: when a reservation takes a SKU's available stock below its
-- threshold: shop.sku.low_stock_threshold, else the setting
-- shop.low_stock_threshold (superuser; 0 = off).  Only when it goes below,
-- not again for every later reservation while it stays below; a release
-- that lifts it above arms it again.
------------------------------------------------------------------------------
SHOW shop.low_stock_threshold;
INSERT INTO shop.sku (product_id, code, on_hand, low_stock_threshold) VALUES (:product, 'EVT-LOW', 10, 3)
RETURNING id AS sku_low \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:product, 'EVT-SET', 10) RETURNING id AS sku_set \gset
INSERT INTO shop.sku (product_id, code, on_hand, low_stock_threshold) VALUES (:product, 'EVT-OFF', 10, 0)
RETURNING id AS sku_off \gset
INSERT INTO name_of VALUES ('sku', :sku_low, 'EVT-LOW'), ('sku', :sku_set, 'EVT-SET'), ('sku', :sku_off, 'EVT-OFF');
-- per SKU (threshold 3): available 10 -> 3 is not below 3; 3 -> 2 is
SELECT pg_temp.buy('evt-s1', :sku_low, 7) AS s1 \gset
INSERT INTO name_of VALUES ('order', :s1, 's1');
SELECT * FROM pg_temp.new_events();
SELECT pg_temp.buy('evt-s2', :sku_low, 1) AS s2 \gset
INSERT INTO name_of VALUES ('order', :s2, 's2');
SELECT * FROM pg_temp.new_events();
-- still below: 2 -> 1, no second stock.low
SELECT pg_temp.buy('evt-s3', :sku_low, 1) AS s3 \gset
INSERT INTO name_of VALUES ('order', :s3, 's3');
SELECT * FROM pg_temp.new_events();
-- a release lifts it to 8; going below again is told again (via the cart)
SELECT status FROM shop.shop_release(:s1, 'cancelled');
SELECT shop.shop_cart_add('evt-s4', :sku_low, 7) IS NOT NULL AS added;
SELECT * FROM pg_temp.new_events();
SELECT id AS s4 FROM shop.shop_create_order('evt-s4') \gset
INSERT INTO name_of VALUES ('order', :s4, 's4');
SELECT * FROM pg_temp.new_events();
-- a write-off is not a reservation: no stock.low
SELECT status FROM shop.shop_release(:s4, 'cancelled');
SELECT available FROM shop.shop_adjust_stock(:sku_low, -7, 'events test write-off');
SELECT * FROM pg_temp.new_events();
-- the setting, for SKUs without their own threshold; 0 on the SKU is off
SET shop.low_stock_threshold = 5;
SELECT pg_temp.buy('evt-s5', :sku_set, 6) AS s5 \gset
SELECT pg_temp.buy('evt-s6', :sku_off, 9) AS s6 \gset
INSERT INTO name_of VALUES ('order', :s5, 's5'), ('order', :s6, 's6');
SELECT * FROM pg_temp.new_events();
RESET shop.low_stock_threshold;
-- off by default: EVT-SET goes lower without a stock.low
SELECT pg_temp.buy('evt-s7', :sku_set, 3) AS s7 \gset
INSERT INTO name_of VALUES ('order', :s7, 's7');
SELECT * FROM pg_temp.new_events();
-- a cart holds no stock: no stock.low
SELECT shop.shop_cart_add('evt-s8', :sku_set, 1) IS NOT NULL AS added;
SELECT * FROM pg_temp.new_events();
SELECT pg_temp.outcome($$SELECT set_config('shop.low_stock_threshold', '-1', false)$$);

------------------------------------------------------------------------------
-- The body of each type, as the "all" endpoint got it: the envelope (id =
-- evt_<event id>, type, created_at in ISO 8601 with an offset), data.order
-- with the order as it is after the change, data.review for
-- order.needs_review, data.sku for stock.low.
------------------------------------------------------------------------------
CREATE TEMP VIEW bodies AS
	SELECT o.id AS outbox_id, o.endpoint_id, e.id AS event_id, e.type AS event_type,
		   e.order_id, e.sku_id, o.body::jsonb AS b
	  FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
	 WHERE o.endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint');
CREATE TEMP VIEW keys AS
	SELECT b.event_type, CASE WHEN b.event_type = 'stock.low' THEN 'sku ' || b.sku_id ELSE 'order ' || b.order_id END AS subject,
		   o.endpoint_id, o.ordering_key
	  FROM bodies b JOIN shop.outbox o ON o.id = b.outbox_id;
-- envelope
SELECT DISTINCT ARRAY(SELECT jsonb_object_keys(b) ORDER BY 1) AS envelope_keys FROM bodies;
SELECT bool_and(b->>'id' = 'evt_' || event_id) AS id_is_evt_event_id,
	   bool_and(b->>'type' = event_type) AS type_matches,
	   bool_and(b->>'created_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$') AS created_at_iso,
	   bool_and((b->>'created_at')::timestamptz BETWEEN now() - interval '1 hour' AND now()) AS created_at_recent
  FROM bodies;
-- data, one line per event type
SELECT DISTINCT ON (event_type) event_type,
	   ARRAY(SELECT jsonb_object_keys(b->'data') ORDER BY 1) AS data_keys,
	   ARRAY(SELECT jsonb_object_keys(coalesce(b#>'{data,order}', b#>'{data,sku}')) ORDER BY 1) AS object_keys
  FROM bodies ORDER BY event_type, outbox_id;
-- the orders: status and reason after the change, amount, currency, user,
-- payment id; the id is the order's, times in ISO 8601; expires_at is 20 min
-- (shop.reservation_ttl) after created_at, or where this file moved it
SELECT pg_temp.n('order', order_id) AS "order", event_type,
	   b#>>'{data,order,status}' AS status, b#>>'{data,order,status_reason}' AS reason,
	   b#>'{data,order,amount}' AS amount, b#>>'{data,order,currency}' AS currency,
	   b#>>'{data,order,user_id}' AS user_id, b#>>'{data,order,external_payment_id}' AS payment_id,
	   (b#>>'{data,order,id}')::bigint = order_id AND jsonb_typeof(b#>'{data,order,id}') = 'number' AS id_ok,
	   b#>>'{data,order,created_at}' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' AS created_iso,
	   coalesce(b#>>'{data,order,expires_at}' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$', true) AS expires_iso,
	   (b#>>'{data,order,expires_at}')::timestamptz - (b#>>'{data,order,created_at}')::timestamptz AS expires_after
  FROM bodies
 WHERE endpoint_id = :ep_all AND order_id IS NOT NULL
 ORDER BY outbox_id;
-- order.needs_review: the review's reason and a detail
SELECT pg_temp.n('order', order_id) AS "order", ARRAY(SELECT jsonb_object_keys(b#>'{data,review}') ORDER BY 1) AS review_keys,
	   b#>>'{data,review,reason}' AS reason, length(b#>>'{data,review,detail}') > 0 AS has_detail
  FROM bodies WHERE endpoint_id = :ep_all AND event_type = 'order.needs_review' ORDER BY outbox_id;
-- stock.low: the SKU's counters at that moment and the threshold that applied
SELECT pg_temp.n('sku', sku_id) AS sku, (b#>>'{data,sku,id}')::bigint = sku_id AS id_ok,
	   b#>>'{data,sku,code}' AS code, b#>'{data,sku,on_hand}' AS on_hand, b#>'{data,sku,reserved}' AS reserved,
	   b#>'{data,sku,available}' AS available, b#>'{data,sku,threshold}' AS threshold
  FROM bodies WHERE endpoint_id = :ep_all AND event_type = 'stock.low' ORDER BY outbox_id;

------------------------------------------------------------------------------
-- One event, one webhook-id: every endpoint's row of an event has the
-- idempotency key evt_<event id> and the same body; each row carries its
-- endpoint's URL and is queued, due now, POST, untried.
------------------------------------------------------------------------------
SELECT count(DISTINCT o.event_id) AS events, count(*) AS rows,
	   bool_and(o.idempotency_key = 'evt_' || o.event_id) AS key_is_evt_event_id,
	   bool_and(o.url = e.url) AS url_is_endpoints,
	   bool_and(o.method = 'POST') AS post,
	   bool_and(o.state = 'queued' AND o.attempts = 0 AND o.next_attempt_at <= now()) AS queued_due_untried
  FROM shop.outbox o JOIN shop.event_endpoint e ON e.id = o.endpoint_id
 WHERE o.endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint');
SELECT count(*) AS events_sent_to_several_endpoints,
	   bool_and(keys = 1) AS one_key_each, bool_and(bodies = 1) AS one_body_each
  FROM (SELECT event_id, count(*) AS n, count(DISTINCT idempotency_key) AS keys, count(DISTINCT body) AS bodies
		  FROM shop.outbox WHERE endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint')
		 GROUP BY event_id HAVING count(*) > 1) x;
-- no secret in any row (headers are signed when sent)
SELECT count(*) AS rows_with_a_secret
  FROM shop.outbox o, shop.event_endpoint_secret s
 WHERE o.endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint')
   AND (strpos(o.headers::text, substr(s.secret, 7)) > 0 OR strpos(coalesce(o.body, ''), substr(s.secret, 7)) > 0);

------------------------------------------------------------------------------
-- Ordering keys: one per order (the same on every endpoint), one per SKU
-- for stock.low, all different.
------------------------------------------------------------------------------
SELECT count(*) FILTER (WHERE subject LIKE 'order %') AS orders,
	   count(*) FILTER (WHERE subject LIKE 'sku %') AS skus,
	   bool_and(keys = 1) AS one_key_each_on_every_endpoint,
	   count(DISTINCT key) = count(*) AS no_key_shared
  FROM (SELECT subject, count(DISTINCT ordering_key) AS keys, min(ordering_key) AS key
		  FROM keys WHERE ordering_key IS NOT NULL GROUP BY subject) x;
SELECT count(*) AS rows_without_ordering_key FROM keys WHERE ordering_key IS NULL;
-- o2's events in order on the "all" endpoint: created, then paid
SELECT event_type FROM bodies WHERE endpoint_id = :ep_all AND order_id = :o2 ORDER BY outbox_id;

------------------------------------------------------------------------------
-- Views: shop.outbox_pending lists what waits; rows made dead by hand
-- (as the worker does after outbox_max_attempts) show in shop.outbox_dead;
-- shop.outbox_health counts them, with worker_running false here.
------------------------------------------------------------------------------
SELECT pg_temp.n('endpoint', endpoint_id) AS endpoint, event_type, state, attempts, last_status, last_error,
	   next_attempt_at <= now() AS due, age >= interval '0' AS age_ok
  FROM shop.outbox_pending WHERE endpoint_id = :ep_paid ORDER BY outbox_id;
SELECT pg_temp.n('endpoint', endpoint_id) AS endpoint, count(*) AS pending
  FROM shop.outbox_pending WHERE endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint')
 GROUP BY 1 ORDER BY 1;
SELECT worker_running, queued, in_flight, failed, dead, oldest_due_age > interval '0' AS has_due_rows
  FROM shop.outbox_health;
-- the paid endpoint's rows: one failed and waiting, the others dead
CREATE TEMP TABLE paid_rows AS
	SELECT o.id, row_number() OVER (ORDER BY o.id) AS n FROM shop.outbox o WHERE o.endpoint_id = :ep_paid;
UPDATE shop.outbox o SET state = 'failed', attempts = 3, last_status = 503, last_error = 'HTTP 503',
	   next_attempt_at = now() + interval '1 hour'
  FROM paid_rows p WHERE p.id = o.id AND p.n = 1;
UPDATE shop.outbox o SET state = 'dead', attempts = 12, last_status = 500, last_error = 'HTTP 500',
	   queued_at = now() - interval '4 days', updated_at = now() - interval '1 hour'
  FROM paid_rows p WHERE p.id = o.id AND p.n > 1;
-- and one row of the "all" endpoint dead after a timeout, one in flight
UPDATE shop.outbox SET state = 'dead', attempts = 12, last_status = NULL, last_error = 'timeout after 10 s'
 WHERE id = (SELECT min(id) FROM shop.outbox WHERE endpoint_id = :ep_all);
UPDATE shop.outbox SET state = 'in_flight', attempts = 1, lease_until = now() + interval '15 seconds'
 WHERE id = (SELECT max(id) FROM shop.outbox WHERE endpoint_id = :ep_all);
SELECT pg_temp.n('endpoint', endpoint_id) AS endpoint, event_type, state, attempts, last_status, last_error,
	   next_attempt_at > now() AS waiting
  FROM shop.outbox_pending WHERE endpoint_id = :ep_paid ORDER BY outbox_id;
SELECT pg_temp.n('endpoint', endpoint_id) AS endpoint, event_type, attempts, last_status, last_error,
	   died_at < now() AS died_earlier, url = 'https://events.example.test/' || pg_temp.n('endpoint', endpoint_id) AS url_ok
  FROM shop.outbox_dead ORDER BY outbox_id;
SELECT worker_running, queued, in_flight, failed, dead, oldest_due_age > interval '0' AS has_due_rows
  FROM shop.outbox_health;

------------------------------------------------------------------------------
-- shop_redeliver: a dead row is queued again, its attempts and age start
-- over; any other row is left alone (false); unknown rows are P0002.
------------------------------------------------------------------------------
SELECT min(id) AS dead_row FROM shop.outbox WHERE endpoint_id = :ep_paid AND state = 'dead' \gset
SELECT shop.shop_redeliver(:dead_row) AS redelivered;
-- (its queued_at was 4 days ago)
SELECT state, attempts, next_attempt_at <= now() AS due, queued_at > now() - interval '1 day' AS age_restarted,
	   lease_until IS NULL AS no_lease
  FROM shop.outbox WHERE id = :dead_row;
SELECT shop.shop_redeliver(:dead_row) AS again;
SELECT shop.shop_redeliver(id) AS failed_row FROM shop.outbox WHERE endpoint_id = :ep_paid AND state = 'failed';
SELECT shop.shop_redeliver(id) AS in_flight_row FROM shop.outbox WHERE endpoint_id = :ep_all AND state = 'in_flight';
SELECT pg_temp.outcome('SELECT shop.shop_redeliver(-1)::text');
SELECT pg_temp.outcome('SELECT shop.shop_redeliver(NULL)::text');
-- shop_redeliver_dead: every dead row of one endpoint, then of all
SELECT count(*) AS dead_rows_of_paid FROM shop.outbox WHERE endpoint_id = :ep_paid AND state = 'dead';
SELECT shop.shop_redeliver_dead(:ep_paid) AS redelivered;
SELECT shop.shop_redeliver_dead(:ep_paid) AS redelivered_again;
SELECT pg_temp.outcome('SELECT shop.shop_redeliver_dead(-1)::text');
SELECT count(*) AS dead_rows FROM shop.outbox_dead;
SELECT shop.shop_redeliver_dead() AS redelivered_all;
SELECT count(*) AS dead_rows FROM shop.outbox_dead;
-- (no row is older than a day now: the redelivered ones were 4 days old)
SELECT state, count(*), bool_and(attempts = 0) AS untried, bool_and(queued_at > now() - interval '1 day') AS age_restarted
  FROM shop.outbox WHERE endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint')
 GROUP BY state ORDER BY state;
SELECT worker_running, queued, in_flight, failed, dead FROM shop.outbox_health;

------------------------------------------------------------------------------
-- Clean up: every row this file created, in foreign-key order.
------------------------------------------------------------------------------
DELETE FROM shop.outbox_attempt WHERE outbox_id IN (SELECT id FROM shop.outbox
	WHERE endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint'));
DELETE FROM shop.outbox WHERE endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint');
DELETE FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'evt-%')
	OR sku_id IN (SELECT id FROM name_of WHERE kind = 'sku');
DELETE FROM shop.event_endpoint_secret WHERE endpoint_id IN (SELECT id FROM name_of WHERE kind = 'endpoint');
DELETE FROM shop.event_endpoint WHERE id IN (SELECT id FROM name_of WHERE kind = 'endpoint');
DELETE FROM shop.order_review WHERE provider = 'mock-events';
DELETE FROM shop.payment_log WHERE provider = 'mock-events';
DELETE FROM shop.payment_provider_secret WHERE provider = 'mock-events';
DELETE FROM shop.payment_provider WHERE name = 'mock-events';
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'evt-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'evt-%');
DELETE FROM shop.orders WHERE user_id LIKE 'evt-%';
DELETE FROM shop.cart_item WHERE cart_id IN (SELECT id FROM shop.cart WHERE user_id LIKE 'evt-%');
DELETE FROM shop.cart WHERE user_id LIKE 'evt-%';
DELETE FROM shop.stock_adjustment WHERE sku_id IN (SELECT id FROM name_of WHERE kind = 'sku');
DELETE FROM shop.sku WHERE id IN (SELECT id FROM name_of WHERE kind = 'sku');
DELETE FROM shop.product WHERE id = :product;
SELECT (SELECT count(*) FROM shop.event_endpoint WHERE url LIKE 'https://events.example.test/%')
	 + (SELECT count(*) FROM shop.outbox WHERE url LIKE 'https://events.example.test/%')
	 + (SELECT count(*) FROM shop.event)
	 + (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'evt-%')
	 + (SELECT count(*) FROM shop.cart WHERE user_id LIKE 'evt-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'EVT-%')
	 + (SELECT count(*) FROM shop.payment_provider WHERE name = 'mock-events') AS rows_left;

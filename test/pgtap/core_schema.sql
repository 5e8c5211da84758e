-- core_schema.sql: the shop schema as issue #2 specifies it.
--
-- Tables, columns and their types, keys, CHECK constraints (and that they
-- really refuse bad rows), the unique / partial indexes the functions rely
-- on, the DBA views, the composite result types, every API function with its
-- documented signature, and the shop.reservation_ttl setting.
-- Runs in one transaction that is rolled back: nothing persists.
BEGIN;
SELECT plan(162);

-- Helpers (temporary, gone with the transaction) --------------------------

-- Columns of a table, view or composite type: name, type, NOT NULL.
CREATE FUNCTION pg_temp.cols(rel regclass)
RETURNS TABLE (col text, typ text, not_null boolean)
LANGUAGE sql STABLE AS $$
	SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
	  FROM pg_catalog.pg_attribute a
	 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- Predicates of the indexes on rel whose key columns are exactly cols (in
-- that order) and whose uniqueness is uniq; '-' stands for "no predicate".
-- NULL when there is no such index.
CREATE FUNCTION pg_temp.index_predicates(rel regclass, cols text[], uniq boolean)
RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT string_agg(coalesce(pg_catalog.pg_get_expr(i.indpred, i.indrelid), '-'), ' | '
					  ORDER BY 1)
	  FROM pg_catalog.pg_index i
	 WHERE i.indrelid = rel
	   AND i.indisunique = uniq
	   AND i.indisvalid
	   AND ARRAY(SELECT a.attname::text
				   FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
				   JOIN pg_catalog.pg_attribute a
					 ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				  WHERE k.ord <= i.indnkeyatts
				  ORDER BY k.ord) = cols
$$;

-- Test data with high explicit ids so nothing clashes with other data.
INSERT INTO shop.product (id, name, price) VALUES (9001, 'schema-test product', 1500);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (9001, 9001, 'SCHEMA-9001', 5);

-- Schema and tables --------------------------------------------------------

SELECT has_schema('shop', 'the extension creates schema shop');
SELECT tables_are('shop',
	ARRAY['product', 'sku', 'stock_adjustment', 'cart', 'cart_item', 'orders',
		  'order_item', 'stock_reservation', 'payment_log',
		  -- payment webhooks (issue #3)
		  'payment_provider', 'payment_provider_secret', 'order_review',
		  -- the outbox and outgoing events (issue #8)
		  'event_endpoint', 'event_endpoint_secret', 'event', 'outbox', 'outbox_attempt',
		  -- provider calls (issue #9)
		  'payment_provider_api_key', 'payment_session', 'refund',
		  -- coupons (issue #13)
		  'coupon', 'coupon_redemption',
		  -- hot-SKU mode (issue #12)
		  'sku_bucket',
		  -- refunds by lines (issue #13, second part)
		  'refund_line',
		  -- shipping and tax (issue #13)
		  'shipping_method', 'tax_setting', 'tax_rate'],
	'schema shop has exactly the tables of issues #2, #3, #8, #9, #12 and #13');

-- Columns and types: money is bigint minor units, currency char(3),
-- user ids opaque text, times timestamptz.  set_eq: order does not matter.
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.product')$$,
	$$VALUES ('id', 'bigint', true), ('name', 'text', true), ('price', 'bigint', true),
			 ('currency', 'character(3)', true), ('is_active', 'boolean', true),
			 ('created_at', 'timestamp with time zone', true),
			 -- which tax rate applies (issue #13)
			 ('tax_class', 'text', true)$$,
	'shop.product columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.sku')$$,
	$$VALUES ('id', 'bigint', true), ('product_id', 'bigint', true), ('code', 'text', true),
			 ('on_hand', 'bigint', true), ('reserved', 'bigint', true),
			 ('is_active', 'boolean', true),
			 -- stock.low (issue #8)
			 ('low_stock_threshold', 'integer', false),
			 -- hot-SKU mode (issue #12)
			 ('buckets', 'smallint', true)$$,
	'shop.sku columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.sku_bucket')$$,
	$$VALUES ('sku_id', 'bigint', true), ('bucket', 'smallint', true),
			 ('on_hand', 'bigint', true), ('reserved', 'bigint', true)$$,
	'shop.sku_bucket columns and types (a bucket has the SKU''s counters)');
SELECT col_is_pk('shop', 'sku_bucket', ARRAY['sku_id', 'bucket'], 'a bucket is (sku_id, bucket)');
SELECT col_is_fk('shop', 'sku_bucket', 'sku_id', 'a bucket belongs to a SKU');
-- available is derived (view shop.sku_stock), never stored
SELECT hasnt_column('shop', 'sku', 'available', 'shop.sku does not store available');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.stock_adjustment')$$,
	$$VALUES ('id', 'bigint', true), ('sku_id', 'bigint', true), ('delta', 'integer', true),
			 ('reason', 'text', true), ('created_at', 'timestamp with time zone', true)$$,
	'shop.stock_adjustment columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.cart')$$,
	$$VALUES ('id', 'bigint', true), ('user_id', 'text', true),
			 ('created_at', 'timestamp with time zone', true),
			 ('checked_out_at', 'timestamp with time zone', false)$$,
	'shop.cart columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.cart_item')$$,
	$$VALUES ('cart_id', 'bigint', true), ('sku_id', 'bigint', true), ('qty', 'integer', true),
			 ('added_at', 'timestamp with time zone', true)$$,
	'shop.cart_item columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.orders')$$,
	$$VALUES ('id', 'bigint', true), ('user_id', 'text', true), ('status', 'text', true),
			 ('amount', 'bigint', true), ('currency', 'character(3)', true),
			 ('external_payment_id', 'text', false), ('idempotency_key', 'text', false),
			 ('status_reason', 'text', false),
			 ('created_at', 'timestamp with time zone', true),
			 ('updated_at', 'timestamp with time zone', true),
			 ('expires_at', 'timestamp with time zone', false),
			 -- 0.2: free text that is not a reason (upgraded 0.1 reasons)
			 ('status_note', 'text', false),
			 -- the money model (issue #13): amount = subtotal - discount
			 ('subtotal', 'bigint', true), ('discount', 'bigint', true),
			 -- shipping, tax and fulfilment (issue #13)
			 ('shipping', 'bigint', true), ('tax', 'bigint', true), ('tax_included', 'bigint', true),
			 ('shipping_method', 'text', false), ('ship_to', 'jsonb', false),
			 ('carrier', 'text', false), ('tracking_no', 'text', false),
			 ('shipped_at', 'timestamp with time zone', false),
			 ('delivered_at', 'timestamp with time zone', false),
			 ('fulfilment_status', 'text', false)$$,
	'shop.orders columns and types');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.order_item')$$,
	$$VALUES ('id', 'bigint', true), ('order_id', 'bigint', true), ('sku_id', 'bigint', true),
			 ('product_name', 'text', true), ('sku_code', 'text', true),
			 ('unit_price', 'bigint', true), ('qty', 'integer', true),
			 -- the line's share of the order's discount (issue #13)
			 ('discount', 'bigint', true),
			 -- the line's tax (issue #13)
			 ('tax', 'bigint', true)$$,
	'shop.order_item columns and types (a snapshot of name, code and price)');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.coupon')$$,
	$$VALUES ('id', 'bigint', true), ('code', 'text', true), ('kind', 'text', true),
			 ('percent', 'integer', false), ('amount', 'bigint', false),
			 ('currency', 'character(3)', false), ('min_subtotal', 'bigint', true),
			 ('valid_from', 'timestamp with time zone', false),
			 ('valid_to', 'timestamp with time zone', false),
			 ('max_redemptions', 'integer', false), ('max_per_user', 'integer', false),
			 ('is_active', 'boolean', true), ('product_ids', 'bigint[]', false),
			 ('redeemed', 'integer', true),
			 ('created_at', 'timestamp with time zone', true),
			 ('updated_at', 'timestamp with time zone', true)$$,
	'shop.coupon columns and types (issue #13)');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.coupon_redemption')$$,
	$$VALUES ('id', 'bigint', true), ('coupon_id', 'bigint', true), ('order_id', 'bigint', true),
			 ('user_id', 'text', true), ('state', 'text', true),
			 ('created_at', 'timestamp with time zone', true),
			 ('state_changed_at', 'timestamp with time zone', true)$$,
	'shop.coupon_redemption columns and types (issue #13)');
SELECT col_is_unique('shop', 'coupon_redemption', 'order_id', 'one redemption per order');
SELECT throws_ok($$INSERT INTO shop.orders (user_id, amount, subtotal, discount) VALUES ('schema-money', 5, 10, 4)$$,
	'23514', NULL, 'amount must be subtotal - discount (CHECK orders_amount_total)');
-- shipping and tax (issue #13): amount = subtotal - discount + shipping + tax
SELECT throws_ok($$INSERT INTO shop.orders (user_id, amount, subtotal, discount, shipping, tax) VALUES ('schema-money', 10, 10, 4, 3, 2)$$,
	'23514', NULL, 'amount must be subtotal - discount + shipping + tax (CHECK orders_amount_total)');
SELECT lives_ok($$INSERT INTO shop.orders (user_id, amount, subtotal, discount, shipping, tax) VALUES ('schema-money', 11, 10, 4, 3, 2)$$,
	'amount = subtotal - discount + shipping + tax is accepted');
SELECT throws_ok($$INSERT INTO shop.orders (user_id, amount, subtotal, tax, tax_included) VALUES ('schema-money', 11, 10, 1, 1)$$,
	'23514', NULL, 'tax is added or included, never both (CHECK orders_tax_one_kind)');
INSERT INTO shop.orders (user_id, status, ship_to) VALUES ('schema-ship', 'PAID', '{"country": "DE"}'),
	('schema-ship', 'PENDING', '{"country": "DE"}'), ('schema-ship', 'PAID', NULL);
SELECT is((SELECT array_agg(coalesce(fulfilment_status, '-') ORDER BY status, ship_to IS NULL)
			 FROM shop.orders WHERE user_id = 'schema-ship'), ARRAY['READY', '-', '-'],
	'fulfilment_status is derived: READY for a PAID order with an address, else NULL');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.shipping_method')$$,
	$$VALUES ('id', 'bigint', true), ('code', 'text', true), ('name', 'text', true),
			 ('currency', 'character(3)', true), ('cost', 'bigint', true), ('free_over', 'bigint', false),
			 ('countries', 'text[]', false), ('active', 'boolean', true),
			 ('created_at', 'timestamp with time zone', true), ('updated_at', 'timestamp with time zone', true)$$,
	'shop.shipping_method columns and types (issue #13)');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.tax_setting')$$,
	$$VALUES ('currency', 'character(3)', true), ('prices_include_tax', 'boolean', true),
			 ('default_country', 'character(2)', false), ('updated_at', 'timestamp with time zone', true)$$,
	'shop.tax_setting columns and types (issue #13)');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.tax_rate')$$,
	$$VALUES ('id', 'bigint', true), ('country', 'character(2)', true), ('region', 'text', false),
			 ('tax_class', 'text', true), ('rate', 'numeric(7,4)', true),
			 ('updated_at', 'timestamp with time zone', true)$$,
	'shop.tax_rate columns and types (issue #13)');
SELECT is(pg_temp.index_predicates('shop.orders', '{created_at,id}', false), '(fulfilment_status = ''READY''::text)',
	'READY orders by created_at (the warehouse queue): partial index');
SELECT lives_ok($$INSERT INTO shop.coupon (code, kind, percent) VALUES ('Schema-Case', 'percent', 5)$$,
	'a coupon is created');
SELECT throws_ok($$INSERT INTO shop.coupon (code, kind, percent) VALUES ('SCHEMA-CASE', 'percent', 5)$$,
	'23505', NULL, 'coupon codes are unique case-insensitively');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.stock_reservation')$$,
	$$VALUES ('id', 'bigint', true), ('order_id', 'bigint', true), ('sku_id', 'bigint', true),
			 ('qty', 'integer', true), ('state', 'text', true),
			 ('created_at', 'timestamp with time zone', true),
			 ('state_changed_at', 'timestamp with time zone', true),
			 -- where it is held (issue #12): 0 the SKU row, else a bucket
			 ('bucket', 'smallint', true)$$,
	'shop.stock_reservation columns and types (a state, not a released flag)');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.payment_log')$$,
	$$VALUES ('id', 'bigint', true), ('provider', 'text', true), ('event_id', 'text', true),
			 ('order_id', 'bigint', false), ('kind', 'text', true), ('payload', 'jsonb', true),
			 ('received_at', 'timestamp with time zone', true),
			 -- the normalised event and its outcome (issue #3)
			 ('event_type', 'text', false), ('order_ref', 'text', false), ('amount', 'bigint', false),
			 ('currency', 'text', false), ('payment_id', 'text', false), ('result', 'text', false),
			 ('review', 'text', false), ('note', 'text', false)$$,
	'shop.payment_log columns and types (0.2: no "processed", it was always true)');

-- Column defaults the functions rely on.
SELECT col_default_is('shop', 'product', 'currency', 'KRW'::bpchar, 'product currency defaults to KRW');
SELECT col_default_is('shop', 'sku', 'reserved', 0::bigint, 'a new SKU has nothing reserved');
SELECT col_default_is('shop', 'stock_reservation', 'state', 'active'::text, 'a new reservation is active');
SELECT col_default_is('shop', 'payment_log', 'received_at', 'now()', 'a logged payment event is stamped with its arrival');

-- Primary keys -------------------------------------------------------------

SELECT col_is_pk('shop', 'product', 'id', 'shop.product primary key is id');
SELECT col_is_pk('shop', 'sku', 'id', 'shop.sku primary key is id');
SELECT col_is_pk('shop', 'stock_adjustment', 'id', 'shop.stock_adjustment primary key is id');
SELECT col_is_pk('shop', 'cart', 'id', 'shop.cart primary key is id');
SELECT col_is_pk('shop', 'cart_item', ARRAY['cart_id', 'sku_id'], 'shop.cart_item primary key is (cart_id, sku_id)');
SELECT col_is_pk('shop', 'orders', 'id', 'shop.orders primary key is id');
SELECT col_is_pk('shop', 'order_item', 'id', 'shop.order_item primary key is id');
SELECT col_is_pk('shop', 'stock_reservation', 'id', 'shop.stock_reservation primary key is id');
SELECT col_is_pk('shop', 'payment_log', 'id', 'shop.payment_log primary key is id');

-- Foreign keys -------------------------------------------------------------

SELECT fk_ok('shop', 'sku', 'product_id', 'shop', 'product', 'id');
SELECT fk_ok('shop', 'stock_adjustment', 'sku_id', 'shop', 'sku', 'id');
SELECT fk_ok('shop', 'cart_item', 'cart_id', 'shop', 'cart', 'id');
SELECT fk_ok('shop', 'cart_item', 'sku_id', 'shop', 'sku', 'id');
SELECT fk_ok('shop', 'order_item', 'order_id', 'shop', 'orders', 'id');
SELECT fk_ok('shop', 'order_item', 'sku_id', 'shop', 'sku', 'id');
SELECT fk_ok('shop', 'stock_reservation', 'order_id', 'shop', 'orders', 'id');
SELECT fk_ok('shop', 'stock_reservation', 'sku_id', 'shop', 'sku', 'id');
SELECT fk_ok('shop', 'payment_log', 'order_id', 'shop', 'orders', 'id');
SELECT throws_ok($$INSERT INTO shop.sku (product_id, code) VALUES (-1, 'SCHEMA-NO-PRODUCT')$$,
	'23503', NULL, 'a SKU of a missing product is refused (foreign key)');

-- CHECK constraints on the stock counters really refuse bad rows ----------
-- (each UPDATE breaks exactly one of on_hand >= 0, reserved >= 0,
-- reserved <= on_hand, except the first which also breaks the third)

SELECT col_has_check('shop', 'sku', 'on_hand', 'shop.sku.on_hand has a CHECK');
SELECT col_has_check('shop', 'sku', 'reserved', 'shop.sku.reserved has a CHECK');
SELECT throws_ok($$UPDATE shop.sku SET on_hand = -1 WHERE id = 9001$$,
	'23514', NULL, 'on_hand < 0 is refused');
SELECT throws_ok($$UPDATE shop.sku SET reserved = -1 WHERE id = 9001$$,
	'23514', NULL, 'reserved < 0 is refused');
SELECT throws_ok($$UPDATE shop.sku SET reserved = 6 WHERE id = 9001$$,
	'23514', NULL, 'reserved > on_hand is refused (no oversell at the row level)');
SELECT throws_ok($$UPDATE shop.sku SET on_hand = 2, reserved = 3 WHERE id = 9001$$,
	'23514', NULL, 'lowering on_hand under reserved is refused');
SELECT lives_ok($$UPDATE shop.sku SET reserved = 5 WHERE id = 9001$$,
	'reserved = on_hand is allowed (all stock held)');
SELECT is((SELECT available FROM shop.sku_stock WHERE sku_id = 9001), 0::bigint,
	'sku_stock.available = on_hand - reserved (5 - 5)');
UPDATE shop.sku SET reserved = 0 WHERE id = 9001;
SELECT is((SELECT available FROM shop.sku_stock WHERE sku_id = 9001), 5::bigint,
	'sku_stock.available follows the counters (5 - 0)');

-- Other CHECKs: positive quantities, known status / state values, no
-- negative money.
INSERT INTO shop.cart (user_id) VALUES ('schema-u1');
INSERT INTO shop.orders (user_id) VALUES ('schema-u1');
SELECT throws_ok($$INSERT INTO shop.cart_item (cart_id, sku_id, qty)
	SELECT id, 9001, 0 FROM shop.cart WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'cart_item qty 0 is refused');
SELECT throws_ok($$INSERT INTO shop.cart_item (cart_id, sku_id, qty)
	SELECT id, 9001, -2 FROM shop.cart WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'cart_item negative qty is refused');
SELECT throws_ok($$INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty)
	SELECT id, 9001, 'p', 'c', 100, 0 FROM shop.orders WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'order_item qty 0 is refused');
SELECT throws_ok($$INSERT INTO shop.stock_reservation (order_id, sku_id, qty)
	SELECT id, 9001, 0 FROM shop.orders WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'stock_reservation qty 0 is refused');
SELECT throws_ok($$UPDATE shop.orders SET status = 'SHIPPED' WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'an unknown order status is refused');
SELECT throws_ok($$UPDATE shop.orders SET status = 'paid' WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'order status is case-sensitive (paid is not PAID)');
SELECT lives_ok($$INSERT INTO shop.orders (user_id, status)
	VALUES ('schema-u2', 'CREATED'), ('schema-u2', 'PENDING'), ('schema-u2', 'PAID'),
		   ('schema-u2', 'CANCELLED'), ('schema-u2', 'FAILED')$$,
	'the five documented order statuses are accepted');
SELECT lives_ok($$INSERT INTO shop.orders (user_id, status, status_reason)
	VALUES ('schema-u2', 'CANCELLED', 'cancelled'), ('schema-u2', 'CANCELLED', 'customer_cancelled'),
		   ('schema-u2', 'CANCELLED', 'shop_cancelled'), ('schema-u2', 'FAILED', 'payment_failed'),
		   ('schema-u2', 'CANCELLED', 'expired'), ('schema-u2', 'PAID', 'paid_after_release')$$,
	'the six documented status reasons are accepted');
SELECT throws_ok($$UPDATE shop.orders SET status_reason = 'changed my mind' WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'a status reason outside the vocabulary is refused (0.2)');
SELECT throws_ok($$UPDATE shop.orders SET status_reason = 'Expired' WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'status reasons are case-sensitive');
SELECT throws_ok($$UPDATE shop.orders SET amount = -1 WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'a negative order amount is refused');
SELECT throws_ok($$INSERT INTO shop.stock_reservation (order_id, sku_id, qty, state)
	SELECT id, 9001, 1, 'gone' FROM shop.orders WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'an unknown reservation state is refused');
SELECT throws_ok($$INSERT INTO shop.stock_reservation (order_id, sku_id, qty, state)
	SELECT id, 9001, 1, 'ACTIVE' FROM shop.orders WHERE user_id = 'schema-u1'$$,
	'23514', NULL, 'reservation state is case-sensitive (ACTIVE is not active)');
SELECT lives_ok($$INSERT INTO shop.stock_reservation (order_id, sku_id, qty, state)
	SELECT o.id, 9001, 1, s.state
	  FROM shop.orders o
	  JOIN (VALUES ('CREATED', 'active'), ('PENDING', 'consumed'), ('PAID', 'released')) AS s(status, state)
		ON s.status = o.status
	 WHERE o.user_id = 'schema-u2'$$,
	'the three documented reservation states are accepted');
SELECT throws_ok($$UPDATE shop.product SET price = -1 WHERE id = 9001$$,
	'23514', NULL, 'a negative price is refused');
SELECT throws_ok($$INSERT INTO shop.stock_adjustment (sku_id, delta, reason) VALUES (9001, 0, 'noop')$$,
	'23514', NULL, 'a zero stock adjustment is refused');

-- Unique and partial indexes -----------------------------------------------

-- One open cart per user: a unique index on cart(user_id) only over open carts.
SELECT is(pg_temp.index_predicates('shop.cart', '{user_id}', true), '(checked_out_at IS NULL)',
	'unique index on cart(user_id) WHERE checked_out_at IS NULL');
SELECT throws_ok($$INSERT INTO shop.cart (user_id) VALUES ('schema-u1')$$,
	'23505', NULL, 'a second open cart for a user is refused');
UPDATE shop.cart SET checked_out_at = now() WHERE user_id = 'schema-u1';
SELECT lives_ok($$INSERT INTO shop.cart (user_id) VALUES ('schema-u1')$$,
	'a new open cart is allowed once the old one is checked out');
SELECT is((SELECT count(*) FROM shop.cart WHERE user_id = 'schema-u1'), 2::bigint,
	'the user now has one closed and one open cart');
SELECT throws_ok($$INSERT INTO shop.cart_item (cart_id, sku_id, qty)
	SELECT id, 9001, 1 FROM shop.cart WHERE user_id = 'schema-u1' AND checked_out_at IS NULL
	UNION ALL
	SELECT id, 9001, 2 FROM shop.cart WHERE user_id = 'schema-u1' AND checked_out_at IS NULL$$,
	'23505', NULL, 'a SKU appears at most once per cart');

-- Idempotency: (user_id, idempotency_key) unique where a key is given.
SELECT is(pg_temp.index_predicates('shop.orders', '{user_id,idempotency_key}', true),
	'(idempotency_key IS NOT NULL)',
	'unique index on orders(user_id, idempotency_key) WHERE idempotency_key IS NOT NULL');
INSERT INTO shop.orders (user_id, idempotency_key) VALUES ('schema-u3', 'k1');
SELECT throws_ok($$INSERT INTO shop.orders (user_id, idempotency_key) VALUES ('schema-u3', 'k1')$$,
	'23505', NULL, 'a repeated (user_id, idempotency_key) is refused');
SELECT lives_ok($$INSERT INTO shop.orders (user_id, idempotency_key) VALUES ('schema-u4', 'k1')$$,
	'the same key for another user is a different request');
SELECT lives_ok($$INSERT INTO shop.orders (user_id) VALUES ('schema-u3'), ('schema-u3')$$,
	'orders without a key are never considered duplicates');
SELECT throws_ok($$INSERT INTO shop.orders (user_id, idempotency_key) VALUES ('schema-u3', '')$$,
	'23514', NULL, 'an empty idempotency key is refused');

-- Payment events: one row per (provider, event_id).
SELECT is(pg_temp.index_predicates('shop.payment_log', '{provider,event_id}', true), '-',
	'unique index on payment_log(provider, event_id), not partial');
INSERT INTO shop.payment_log (provider, event_id, kind, payload) VALUES ('psp', 'ev-1', 'paid', '{}');
SELECT throws_ok($$INSERT INTO shop.payment_log (provider, event_id, kind, payload)
	VALUES ('psp', 'ev-1', 'paid', '{"again": true}')$$,
	'23505', NULL, 'a repeated (provider, event_id) is refused');
SELECT lives_ok($$INSERT INTO shop.payment_log (provider, event_id, kind, payload)
	VALUES ('other-psp', 'ev-1', 'paid', '{}')$$,
	'the same event id from another provider is accepted');

-- Other uniqueness: SKU codes, one snapshot line and one reservation per
-- (order, SKU).
SELECT col_is_unique('shop', 'sku', 'code', 'SKU codes are unique');
SELECT throws_ok($$INSERT INTO shop.sku (product_id, code) VALUES (9001, 'SCHEMA-9001')$$,
	'23505', NULL, 'a duplicate SKU code is refused');
SELECT col_is_unique('shop', 'order_item', ARRAY['order_id', 'sku_id'], 'one order line per (order, sku)');
SELECT col_is_unique('shop', 'stock_reservation', ARRAY['order_id', 'sku_id'], 'one reservation per (order, sku)');

-- Indexes for every lookup the functions do.
SELECT is(pg_temp.index_predicates('shop.orders', '{expires_at,id}', false), '(status = ''PENDING''::text)',
	'pending orders by expires_at: partial index WHERE status = PENDING');
SELECT is(pg_temp.index_predicates('shop.stock_reservation', '{sku_id,order_id}', false), '(state = ''active''::text)',
	'active reservations by SKU: partial index WHERE state = active');
SELECT is_indexed('shop', 'stock_reservation', ARRAY['order_id', 'sku_id'], 'reservations by order are indexed');
SELECT is_indexed('shop', 'order_item', ARRAY['order_id', 'sku_id'], 'order lines by order are indexed');
SELECT is_indexed('shop', 'orders', 'user_id', 'orders by user are indexed');
SELECT is_indexed('shop', 'sku', 'product_id', 'SKUs by product are indexed');
SELECT is_indexed('shop', 'cart_item', 'sku_id', 'cart lines by SKU are indexed');

-- Views for DBAs -----------------------------------------------------------

SELECT views_are('shop', ARRAY['sku_stock', 'active_reservations', 'expiring_orders',
		  -- payment webhooks (issue #3)
		  'webhook_events', 'unmatched_payments', 'orders_needing_review', 'payment_providers',
		  -- the outbox (issue #8)
		  'outbox_pending', 'outbox_dead', 'outbox_attempts', 'event_endpoints', 'outbox_health',
		  -- provider calls (issue #9)
		  'refunds',
		  -- hot-SKU mode (issue #12)
		  'sku_buckets',
		  -- refunds by lines (issue #13)
		  'order_refund_status',
		  -- fulfilment (issue #13)
		  'warehouse_queue'],
	'schema shop has exactly the DBA views of issues #2, #3, #8, #9, #12 and #13');
SELECT set_eq($$SELECT * FROM pg_temp.cols('shop.refund_line')$$,
	$$VALUES ('id', 'bigint', true), ('refund_id', 'bigint', true), ('order_item_id', 'bigint', true),
			 ('qty', 'integer', true), ('amount', 'bigint', true), ('restocked', 'boolean', true),
			 ('adjustment_id', 'bigint', false)$$,
	'shop.refund_line columns: the units of an order line a refund returns, restocked through a stock adjustment or not');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.order_refund_status')$$,
	$$VALUES ('order_id', 'bigint'), ('order_status', 'text'), ('currency', 'character(3)'),
			 ('paid', 'bigint'), ('refunded', 'bigint'), ('succeeded', 'bigint'), ('failed', 'bigint'),
			 ('units_refunded', 'bigint'), ('units_restocked', 'bigint'), ('state', 'text')$$,
	'shop.order_refund_status columns (paid, refunded, state none | partially_refunded | refunded)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.warehouse_queue')$$,
	$$VALUES ('order_id', 'bigint'), ('user_id', 'text'), ('created_at', 'timestamp with time zone'),
			 ('age', 'interval'), ('shipping_method', 'text'), ('ship_to', 'jsonb'), ('items', 'jsonb'),
			 ('amount', 'bigint'), ('currency', 'character(3)')$$,
	'shop.warehouse_queue columns (issue #13)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.sku_stock')$$,
	$$VALUES ('sku_id', 'bigint'), ('code', 'text'), ('product_id', 'bigint'),
			 ('product_name', 'text'), ('on_hand', 'bigint'), ('reserved', 'bigint'),
			 ('available', 'bigint'), ('sellable', 'boolean'),
			 -- hot-SKU mode (issue #12)
			 ('buckets', 'smallint')$$,
	'shop.sku_stock columns (on_hand, reserved, available per SKU)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.sku_buckets')$$,
	$$VALUES ('sku_id', 'bigint'), ('code', 'text'), ('bucket', 'smallint'),
			 ('on_hand', 'bigint'), ('reserved', 'bigint'), ('available', 'bigint'),
			 ('in_use', 'boolean')$$,
	'shop.sku_buckets columns (each bucket of a hot SKU)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.active_reservations')$$,
	$$VALUES ('reservation_id', 'bigint'), ('order_id', 'bigint'), ('sku_id', 'bigint'),
			 ('sku_code', 'text'), ('qty', 'integer'),
			 ('created_at', 'timestamp with time zone'), ('age', 'interval'),
			 ('order_status', 'text'), ('expires_at', 'timestamp with time zone'),
			 ('expired', 'boolean')$$,
	'shop.active_reservations columns (with age and the order''s expires_at)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.expiring_orders')$$,
	$$VALUES ('order_id', 'bigint'), ('user_id', 'text'), ('amount', 'bigint'),
			 ('currency', 'character(3)'), ('created_at', 'timestamp with time zone'),
			 ('expires_at', 'timestamp with time zone'), ('time_left', 'interval'),
			 ('expired', 'boolean')$$,
	'shop.expiring_orders columns');
-- The views show only what their names say: active reservations, PENDING orders.
SELECT is((SELECT array_agg(DISTINCT r.sku_id) FROM shop.active_reservations r
			JOIN shop.orders o ON o.id = r.order_id WHERE o.user_id = 'schema-u2'),
	ARRAY[9001::bigint], 'active_reservations lists the active reservation');
SELECT is((SELECT count(*) FROM shop.active_reservations r
			JOIN shop.orders o ON o.id = r.order_id WHERE o.user_id = 'schema-u2'),
	1::bigint, 'active_reservations hides consumed and released reservations');
SELECT is((SELECT count(*) FROM shop.expiring_orders WHERE user_id = 'schema-u2'), 1::bigint,
	'expiring_orders lists only PENDING orders');

-- Composite result types ---------------------------------------------------

SELECT has_composite('shop', 'cart_line', 'type shop.cart_line exists');
SELECT has_composite('shop', 'cart_row', 'type shop.cart_row exists');
SELECT has_composite('shop', 'order_summary', 'type shop.order_summary exists');
SELECT has_composite('shop', 'stock_level', 'type shop.stock_level exists');
SELECT has_composite('shop', 'invariant_violation', 'type shop.invariant_violation exists');
SELECT has_composite('shop', 'cart_preview_row', 'type shop.cart_preview_row exists');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.cart_preview_row')$$,
	$$VALUES ('sku_id', 'bigint'), ('sku_code', 'text'), ('product_name', 'text'),
			 ('unit_price', 'bigint'), ('currency', 'character(3)'), ('qty', 'integer'),
			 ('line_total', 'bigint'), ('line_discount', 'bigint'), ('subtotal', 'bigint'),
			 ('discount', 'bigint'), ('total', 'bigint'),
			 -- shipping and tax (issue #13)
			 ('line_tax', 'bigint'), ('shipping', 'bigint'), ('tax', 'bigint'), ('tax_included', 'bigint')$$,
	'shop.cart_preview_row is a cart line with its discount share and tax, and the totals');
SELECT has_composite('shop', 'fulfilment_summary', 'type shop.fulfilment_summary exists');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.fulfilment_summary')$$,
	$$VALUES ('order_id', 'bigint'), ('status', 'text'), ('fulfilment_status', 'text'),
			 ('carrier', 'text'), ('tracking_no', 'text'), ('shipped_at', 'timestamp with time zone'),
			 ('delivered_at', 'timestamp with time zone')$$,
	'shop.fulfilment_summary is (order_id, status, fulfilment_status, carrier, tracking_no, shipped_at, delivered_at)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.cart_line')$$,
	$$VALUES ('sku_id', 'bigint'), ('qty', 'integer')$$,
	'shop.cart_line is (sku_id, qty)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.cart_row')$$,
	$$VALUES ('sku_id', 'bigint'), ('sku_code', 'text'), ('product_name', 'text'),
			 ('unit_price', 'bigint'), ('currency', 'character(3)'), ('qty', 'integer'),
			 ('line_total', 'bigint'), ('cart_total', 'bigint')$$,
	'shop.cart_row has product name, sku code, unit price, line total and cart total');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.order_summary')$$,
	$$VALUES ('id', 'bigint'), ('status', 'text'), ('amount', 'bigint'),
			 ('currency', 'character(3)'), ('expires_at', 'timestamp with time zone')$$,
	'shop.order_summary is (id, status, amount, currency, expires_at)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.stock_level')$$,
	$$VALUES ('sku_id', 'bigint'), ('on_hand', 'bigint'), ('reserved', 'bigint'),
			 ('available', 'bigint')$$,
	'shop.stock_level is (sku_id, on_hand, reserved, available)');
SELECT set_eq($$SELECT col, typ FROM pg_temp.cols('shop.invariant_violation')$$,
	$$VALUES ('check_name', 'text'), ('subject', 'text'), ('detail', 'text')$$,
	'shop.invariant_violation is (check_name, subject, detail)');

-- API functions: names, argument names and types, defaults, results -------

SELECT functions_are('shop',
	ARRAY['shop_cart_add', 'shop_cart_set_qty', 'shop_cart_remove', 'shop_cart',
		  'shop_create_order', 'shop_buy_now', 'shop_confirm_paid', 'shop_release',
		  'shop_expire_pending', 'shop_adjust_stock', 'shop_check_invariants',
		  'shop_schedule_expiry',
		  -- payment webhooks (issue #3)
		  'shop_handle_webhook', 'shop_set_provider', 'shop_sign_mock',
		  -- the outbox and outgoing events (issue #8); outbox_claim and
		  -- outbox_prune are the worker's, granted to no one
		  'shop_subscribe', 'shop_unsubscribe', 'shop_enable_endpoint', 'shop_redeliver',
		  'shop_redeliver_dead', 'outbox_claim', 'outbox_prune',
		  -- the endpoint table's triggers (issues #8 and #12), and the guard of
		  -- the keys shop.event and shop.outbox have not; granted to no one
		  'event_endpoint_delete_guard', 'event_endpoint_changed', 'event_delete_guard',
		  -- provider calls (issue #9)
		  'shop_set_provider_api_key', 'shop_start_payment', 'shop_refund',
		  'shop_reconcile_payments',
		  -- confirm-style providers (issue #9, Toss Payments)
		  'shop_confirm_payment',
		  -- the API roles' grants (issue #10; schema shop_api: api_schema.sql)
		  'shop_api_grant',
		  -- coupons (issue #13); coupon_* are internal, granted to no one
		  'shop_set_coupon', 'shop_cart_preview', 'coupon_quote', 'coupon_redeem', 'coupon_retake',
		  -- hot-SKU mode (issue #12)
		  'shop_set_sku_mode',
		  -- refunds by lines (issue #13): shop_check_invariants' refund rules, granted to no one
		  'refund_invariants',
		  -- shipping, tax and fulfilment (issue #13); iso_country, ship_to_check,
		  -- shipping_tax_quote and order_reprice are internal
		  'shop_set_shipping_method', 'shop_set_tax_setting', 'shop_set_tax_rate',
		  'shop_set_shipping', 'shop_ship', 'shop_mark_delivered',
		  'iso_country', 'ship_to_check', 'shipping_tax_quote', 'order_reprice',
		  -- free orders (0.2): an order with nothing to pay, sold without a provider
		  'shop_confirm_free'],
	'schema shop has exactly the functions of issues #2, #3, #8, #9, #10, #12 and #13, and shop_confirm_free');
SELECT has_function('shop', 'shop_cart_add', ARRAY['text', 'bigint', 'integer']);
SELECT has_function('shop', 'shop_cart_set_qty', ARRAY['text', 'bigint', 'integer']);
SELECT has_function('shop', 'shop_cart_remove', ARRAY['text', 'bigint']);
SELECT has_function('shop', 'shop_cart', ARRAY['text']);
SELECT has_function('shop', 'shop_create_order', ARRAY['text', 'text', 'text', 'text', 'jsonb']);
SELECT has_function('shop', 'shop_buy_now', ARRAY['text', 'jsonb', 'text', 'text', 'text', 'jsonb']);
SELECT hasnt_function('shop', 'shop_create_order', ARRAY['text', 'text', 'text'],
	'the coupon-era shop_create_order(text, text, text) is replaced, not kept beside');
SELECT hasnt_function('shop', 'shop_buy_now', ARRAY['text', 'jsonb', 'text', 'text'],
	'the coupon-era shop_buy_now(text, jsonb, text, text) is replaced, not kept beside');
SELECT hasnt_function('shop', 'shop_cart_preview', ARRAY['text', 'text'],
	'shop_cart_preview(text, text) is replaced by the form with shipping and tax');
SELECT has_function('shop', 'shop_set_shipping', ARRAY['bigint', 'text', 'jsonb']);
SELECT has_function('shop', 'shop_ship', ARRAY['bigint', 'text', 'text']);
SELECT has_function('shop', 'shop_mark_delivered', ARRAY['bigint']);
SELECT hasnt_function('shop', 'shop_create_order', ARRAY['text', 'text'],
	'the 0.1 shop_create_order(text, text) is replaced, not kept beside (calls would be ambiguous)');
SELECT hasnt_function('shop', 'shop_buy_now', ARRAY['text', 'jsonb', 'text'],
	'the 0.1 shop_buy_now(text, jsonb, text) is replaced, not kept beside');
SELECT has_function('shop', 'shop_set_coupon', ARRAY['text', 'text', 'bigint', 'text', 'bigint',
	'timestamp with time zone', 'timestamp with time zone', 'integer', 'integer', 'boolean', 'bigint[]']);
SELECT has_function('shop', 'shop_cart_preview', ARRAY['text', 'text', 'text', 'jsonb']);
SELECT has_function('shop', 'shop_confirm_paid', ARRAY['bigint', 'text']);
SELECT has_function('shop', 'shop_release', ARRAY['bigint', 'text']);
SELECT has_function('shop', 'shop_expire_pending', ARRAY['integer']);
SELECT has_function('shop', 'shop_adjust_stock', ARRAY['bigint', 'integer', 'text']);
SELECT has_function('shop', 'shop_check_invariants', ARRAY[]::name[]);
SELECT has_function('shop', 'shop_schedule_expiry', ARRAY['text']);
SELECT has_function('shop', 'shop_refund', ARRAY['bigint', 'bigint', 'text', 'jsonb', 'text']);
SELECT hasnt_function('shop', 'shop_refund', ARRAY['bigint', 'bigint', 'text'],
	'the 3-argument shop_refund is replaced by the 5-argument one, not kept beside (calls would be ambiguous)');
-- The full signature as callers see it: argument names (named notation is
-- part of the contract), defaults and result types, in one comparison.
SELECT set_eq($$
	SELECT p.proname::text, pg_catalog.pg_get_function_arguments(p.oid),
		   pg_catalog.pg_get_function_result(p.oid)
	  FROM pg_catalog.pg_proc p
	 WHERE p.pronamespace = 'shop'::regnamespace$$,
	$$VALUES
	('shop_cart_add', 'user_id text, sku_id bigint, qty integer', 'shop.cart_line'),
	('shop_cart_set_qty', 'user_id text, sku_id bigint, qty integer', 'shop.cart_line'),
	('shop_cart_remove', 'user_id text, sku_id bigint', 'boolean'),
	('shop_cart', 'user_id text', 'SETOF shop.cart_row'),
	('shop_create_order', 'user_id text, idempotency_key text DEFAULT NULL::text, coupon_code text DEFAULT NULL::text, shipping_method text DEFAULT NULL::text, ship_to jsonb DEFAULT NULL::jsonb', 'shop.order_summary'),
	('shop_buy_now', 'user_id text, items jsonb, idempotency_key text DEFAULT NULL::text, coupon_code text DEFAULT NULL::text, shipping_method text DEFAULT NULL::text, ship_to jsonb DEFAULT NULL::jsonb', 'shop.order_summary'),
	('shop_confirm_paid', 'order_id bigint, external_payment_id text', 'shop.order_summary'),
	('shop_release', 'order_id bigint, reason text DEFAULT ''cancelled''::text', 'shop.order_summary'),
	('shop_confirm_free', 'order_id bigint', 'shop.order_summary'),
	('shop_expire_pending', 'max_orders integer DEFAULT 1000', 'integer'),
	('shop_adjust_stock', 'sku_id bigint, delta integer, reason text', 'shop.stock_level'),
	('shop_check_invariants', '', 'SETOF shop.invariant_violation'),
	('shop_schedule_expiry', 'schedule text DEFAULT ''* * * * *''::text', 'bigint'),
	-- payment webhooks (issue #3)
	('shop_confirm_paid', 'order_id bigint, external_payment_id text, amount bigint, currency text', 'shop.order_summary'),
	('shop_handle_webhook', 'provider text, headers jsonb, body text', 'jsonb'),
	('shop_set_provider', 'name text, kind text, secret text, options jsonb DEFAULT ''{}''::jsonb', 'jsonb'),
	('shop_sign_mock', 'provider text, event_id text, body text, at timestamp with time zone DEFAULT NULL::timestamp with time zone', 'jsonb'),
	-- the outbox and outgoing events (issue #8)
	('shop_subscribe', 'url text, event_types text[], secret text DEFAULT NULL::text, description text DEFAULT NULL::text, rotation_grace_seconds integer DEFAULT 86400', 'jsonb'),
	('shop_unsubscribe', 'endpoint_id bigint', 'boolean'),
	('shop_enable_endpoint', 'endpoint_id bigint', 'boolean'),
	('shop_redeliver', 'outbox_id bigint', 'boolean'),
	('shop_redeliver_dead', 'endpoint_id bigint DEFAULT NULL::bigint', 'integer'),
	('outbox_claim', 'max_rows integer, lease interval', 'SETOF shop.outbox'),
	('outbox_prune', 'older_than interval, max_rows integer DEFAULT 1000, OUT deliveries integer, OUT attempts integer, OUT events integer', 'record'),
	('event_endpoint_delete_guard', '', 'trigger'),
	('event_endpoint_changed', '', 'trigger'),
	('event_delete_guard', '', 'trigger'),
	-- provider calls (issue #9)
	('shop_set_provider_api_key', 'name text, api_key text', 'jsonb'),
	('shop_start_payment', 'order_id bigint, provider text, success_url text, cancel_url text', 'jsonb'),
	-- refunds by lines (issue #13): lines and restock added at the end
	('shop_refund', 'order_id bigint, amount bigint DEFAULT NULL::bigint, reason text DEFAULT NULL::text, lines jsonb DEFAULT NULL::jsonb, restock text DEFAULT ''restock''::text', 'jsonb'),
	('shop_reconcile_payments', 'older_than interval DEFAULT ''00:10:00''::interval, max_orders integer DEFAULT 100', 'integer'),
	-- confirm-style providers (issue #9, Toss Payments)
	('shop_confirm_payment', 'provider text, order_id bigint, payment_key text, amount bigint', 'jsonb'),
	-- the API roles' grants (issue #10)
	('shop_api_grant', 'anon_role name, user_role name, webhook_role name', 'void'),
	-- the operator role's grant (issue 11), an overload
	('shop_api_grant', 'anon_role name, user_role name, webhook_role name, operator_role name', 'void'),
	-- coupons (issue #13)
	('shop_set_coupon', 'code text, kind text, value bigint, currency text DEFAULT NULL::text, min_subtotal bigint DEFAULT 0, valid_from timestamp with time zone DEFAULT NULL::timestamp with time zone, valid_to timestamp with time zone DEFAULT NULL::timestamp with time zone, max_redemptions integer DEFAULT NULL::integer, max_per_user integer DEFAULT NULL::integer, is_active boolean DEFAULT true, product_ids bigint[] DEFAULT NULL::bigint[]', 'shop.coupon'),
	('shop_cart_preview', 'user_id text, coupon_code text, shipping_method text DEFAULT NULL::text, ship_to jsonb DEFAULT NULL::jsonb', 'SETOF shop.cart_preview_row'),
	('coupon_quote', 'p_code text, p_user text, p_currency text, p_skus bigint[], p_products bigint[], p_totals bigint[], p_lock boolean, OUT coupon_id bigint, OUT discount bigint, OUT line_discounts bigint[]', 'record'),
	('coupon_redeem', 'p_order bigint, p_user text, p_code text, p_currency text', 'bigint'),
	('coupon_retake', 'p_order bigint', 'boolean'),
	-- shipping, tax and fulfilment (issue #13)
	('shop_set_shipping_method', 'code text, name text, currency text, cost bigint, free_over bigint DEFAULT NULL::bigint, countries text[] DEFAULT NULL::text[], active boolean DEFAULT true', 'shop.shipping_method'),
	('shop_set_tax_setting', 'currency text, prices_include_tax boolean, default_country text DEFAULT NULL::text', 'shop.tax_setting'),
	('shop_set_tax_rate', 'country text, rate numeric, tax_class text DEFAULT ''standard''::text, region text DEFAULT NULL::text', 'shop.tax_rate'),
	('shop_set_shipping', 'order_id bigint, method text, address jsonb', 'shop.order_summary'),
	('shop_ship', 'order_id bigint, carrier text, tracking text', 'shop.fulfilment_summary'),
	('shop_mark_delivered', 'order_id bigint', 'shop.fulfilment_summary'),
	('iso_country', 'p_code text', 'boolean'),
	('ship_to_check', 'p_address jsonb', 'jsonb'),
	('shipping_tax_quote', 'p_currency text, p_skus bigint[], p_products bigint[], p_nets bigint[], p_method text, p_ship_to jsonb, OUT shipping bigint, OUT tax bigint, OUT tax_included bigint, OUT line_taxes bigint[], OUT ship_to jsonb', 'record'),
	('order_reprice', 'p_order bigint, p_method text, p_ship_to jsonb', 'shop.order_summary'),
	-- hot-SKU mode (issue #12)
	('shop_set_sku_mode', 'sku_id bigint, buckets integer', 'shop.stock_level'),
	('refund_invariants', '', 'SETOF shop.invariant_violation')
	$$,
	'every API function has the documented arguments, defaults and result');
-- Defaults work: the short forms resolve to the documented functions.
SELECT is((shop.shop_buy_now('schema-u5', '[{"sku_id": 9001, "qty": 1}]')).status, 'PENDING',
	'shop_buy_now(user_id, items) works without an idempotency key');
SELECT is((shop.shop_release((SELECT max(id) FROM shop.orders WHERE user_id = 'schema-u5'))).status,
	'CANCELLED', 'shop_release(order_id) defaults to reason cancelled');
SELECT is((shop.shop_buy_now('schema-u5', '[{"sku_id": 9001, "qty": 1}]', 'schema-k5')).status, 'PENDING',
	'shop_buy_now(user_id, items, idempotency_key): the 0.1 argument list still works');
SELECT is((SELECT subtotal || ' - ' || discount || ' = ' || amount FROM shop.orders
			WHERE user_id = 'schema-u5' AND idempotency_key = 'schema-k5'), '1500 - 0 = 1500',
	'without a coupon: subtotal = amount, discount 0');

-- shop.reservation_ttl -----------------------------------------------------

SELECT is(current_setting('shop.reservation_ttl'), '20min',
	'SHOW shop.reservation_ttl is 20min by default');
SELECT is((SELECT boot_val::int * 1 FROM pg_catalog.pg_settings WHERE name = 'shop.reservation_ttl')
		  * CASE (SELECT unit FROM pg_catalog.pg_settings WHERE name = 'shop.reservation_ttl')
				WHEN 's' THEN interval '1 second' WHEN 'min' THEN interval '1 minute'
				WHEN 'ms' THEN interval '1 millisecond' END,
	interval '20 minutes', 'the built-in default of shop.reservation_ttl is 20 minutes');
-- A new order expires reservation_ttl after now().
SELECT is((shop.shop_buy_now('schema-u6', '[{"sku_id": 9001, "qty": 1}]')).expires_at,
	now() + interval '20 minutes', 'an order placed now expires 20 minutes from now');
SET LOCAL shop.reservation_ttl = '90s';
SELECT is((shop.shop_buy_now('schema-u7', '[{"sku_id": 9001, "qty": 1}]')).expires_at,
	now() + interval '90 seconds', 'expires_at follows the current shop.reservation_ttl');
RESET shop.reservation_ttl;

-- shop.webhook_max_body_bytes (0.2) ------------------------------------------

SELECT is((SELECT setting || ' ' || unit || ' ' || context FROM pg_catalog.pg_settings
			WHERE name = 'shop.webhook_max_body_bytes'),
	'1048576 B superuser', 'shop.webhook_max_body_bytes is 1MB, in bytes, superuser-only');

-- pg_dump keeps rows and id sequences (0.2: sequences too) -------------------

SELECT set_eq($$SELECT c::regclass::text FROM pg_catalog.pg_extension e, unnest(e.extconfig) c
				 WHERE e.extname = 'shop'$$,
	$$SELECT c.oid::regclass::text FROM pg_catalog.pg_class c
		WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('r', 'S')$$,
	'every table and every sequence of schema shop is config-dumped');

SELECT * FROM finish();
ROLLBACK;

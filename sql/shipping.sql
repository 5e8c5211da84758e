--
-- Shipping and fulfilment (0.2, issue 13): shipping methods, the address
-- snapshot and its validation (SH031), the method's refusals (SH032,
-- SH033), shipping chosen at creation or with shop_set_shipping (SH004,
-- SH034), the preview, READY -> SHIPPED -> DELIVERED with its refusals
-- (SH035, SH036), the events and the warehouse queue.  Hermetic: own
-- products (sh *), SKUs (SH-*), users (sh-*), methods (sh-*), provider
-- mock-sh, endpoint https://sh.example.test/; EUR and USD have no tax
-- setting here (tax: sql/tax.sql).
--
\set VERBOSITY terse
SET client_min_messages = warning;

\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency) VALUES
	('sh mug', 1500, 'EUR'), ('sh tee', 2000, 'EUR'), ('sh cap', 900, 'USD');
SELECT id AS p_mug FROM shop.product WHERE name = 'sh mug' \gset
SELECT id AS p_tee FROM shop.product WHERE name = 'sh tee' \gset
SELECT id AS p_cap FROM shop.product WHERE name = 'sh cap' \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES
	(:p_mug, 'SH-MUG', 50), (:p_tee, 'SH-TEE', 50), (:p_cap, 'SH-CAP', 50);
SELECT id AS s_mug FROM shop.sku WHERE code = 'SH-MUG' \gset
SELECT id AS s_tee FROM shop.sku WHERE code = 'SH-TEE' \gset
SELECT id AS s_cap FROM shop.sku WHERE code = 'SH-CAP' \gset

CREATE FUNCTION sh_items(VARIADIC pairs bigint[]) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_agg(jsonb_build_object('sku_id', pairs[i], 'qty', pairs[i + 1]) ORDER BY i)
	  FROM generate_series(1, cardinality(pairs), 2) i
$$;
CREATE FUNCTION sh_money(order_id bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT format('%s subtotal %s discount %s shipping %s tax %s amount %s method %s to %s',
				  o.status, o.subtotal, o.discount, o.shipping, o.tax, o.amount,
				  coalesce(o.shipping_method, '-'), coalesce(o.ship_to ->> 'country', '-'))
	  FROM shop.orders o WHERE o.id = order_id
$$;
CREATE FUNCTION sh_state(order_id bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT format('%s %s carrier %s tracking %s shipped %s delivered %s', o.status,
				  coalesce(o.fulfilment_status, '-'), coalesce(o.carrier, '-'), coalesce(o.tracking_no, '-'),
				  o.shipped_at IS NOT NULL, o.delivered_at IS NOT NULL)
	  FROM shop.orders o WHERE o.id = order_id
$$;
-- a valid Berlin address
CREATE FUNCTION sh_addr(country text DEFAULT 'DE') RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('name', 'Erika Muster', 'line1', 'Hauptstr. 1', 'city', 'Berlin',
							  'postal_code', '10115', 'country', country)
$$;

------------------------------------------------------------------------------
-- shop_set_shipping_method: create, update by code, the table's rules
------------------------------------------------------------------------------
SELECT code, name, currency, cost, free_over, countries, active
  FROM shop.shop_set_shipping_method('sh-std', 'Standard', 'eur', 490, 5000, ARRAY['de', 'AT']);
SELECT code, name, currency, cost, free_over, countries, active
  FROM shop.shop_set_shipping_method('sh-world', 'World', 'EUR', 1990);
SELECT code, cost, free_over, countries, active
  FROM shop.shop_set_shipping_method('sh-old', 'Old', 'EUR', 100, active => false);
SELECT code, cost FROM shop.shop_set_shipping_method('sh-usd', 'US ground', 'USD', 700, NULL, ARRAY['US']);
-- the same code updates the row
SELECT code, name, cost, free_over FROM shop.shop_set_shipping_method('sh-std', 'Standard DHL', 'EUR', 490, 5000, ARRAY['DE', 'AT']);
SELECT count(*) AS sh_methods FROM shop.shipping_method WHERE code LIKE 'sh-%';
-- the table refuses a bad code, a negative cost, countries that are not two letters, an empty list
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_shipping_method('sh bad', 'x', 'EUR', 1)$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_shipping_method('sh-neg', 'x', 'EUR', -1)$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_shipping_method('sh-c', 'x', 'EUR', 1, NULL, ARRAY['DEU'])$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_shipping_method('sh-c', 'x', 'EUR', 1, NULL, ARRAY[]::text[])$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_shipping_method('sh-c', 'x', 'EUR', 1, NULL, ARRAY['DE', NULL])$$);
SELECT pg_temp.outcome($$SELECT code FROM shop.shop_set_shipping_method('sh-c', 'x', 'EURO', 1)$$);

------------------------------------------------------------------------------
-- The address: required fields, normalised, SH031 for everything else
------------------------------------------------------------------------------
SELECT shop.ship_to_check('{"name": " Erika ", "line1": "Hauptstr. 1", "line2": "", "city": "Berlin",
							"postal_code": "10115", "country": "de", "phone": "+49 30 1"}');
SELECT pg_temp.outcome($$SELECT shop.ship_to_check('[]')$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check('"Berlin"')$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr() - 'city')$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr() || '{"name": "   "}')$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr() || '{"postal_code": 10115}')$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr() || '{"floor": "3"}')$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr('XX'))$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr('DEU'))$$);
SELECT pg_temp.outcome($$SELECT shop.ship_to_check(sh_addr() || jsonb_build_object('line1', repeat('x', 201)))$$);

------------------------------------------------------------------------------
-- Shipping chosen at order creation
------------------------------------------------------------------------------
-- without shipping: exactly as before
SELECT id AS o_plain FROM shop.shop_buy_now('sh-u1', sh_items(:s_mug, 1)) \gset
SELECT sh_money(:o_plain);
-- flat cost below free_over: 1500 + 490
SELECT status, amount, currency FROM shop.shop_buy_now('sh-u1', sh_items(:s_mug, 1), NULL, NULL, 'sh-std', sh_addr());
SELECT id AS o_std FROM shop.orders WHERE user_id = 'sh-u1' ORDER BY id DESC LIMIT 1 \gset
SELECT sh_money(:o_std);
SELECT ship_to FROM shop.orders WHERE id = :o_std;
-- free from 5000 of goods: 2 x 2000 + 1 x 1500 = 5500
SELECT status, amount FROM shop.shop_buy_now('sh-u1', sh_items(:s_tee, 2, :s_mug, 1), NULL, NULL, 'sh-std', sh_addr('AT'));
SELECT sh_money(max(id)) FROM shop.orders WHERE user_id = 'sh-u1';
-- exactly at the threshold is free too (goods >= free_over): 2000 + 2 x 1500
SELECT status, amount FROM shop.shop_buy_now('sh-u1', sh_items(:s_tee, 1, :s_mug, 2), NULL, NULL, 'sh-std', sh_addr());
-- a coupon brings the goods below it: 5500 - 10 % = 4950 pays shipping
SELECT code FROM shop.shop_set_coupon('SH-TEN', 'percent', 10);
SELECT status, amount FROM shop.shop_buy_now('sh-u1', sh_items(:s_tee, 2, :s_mug, 1), NULL, 'sh-ten', 'sh-std', sh_addr());
SELECT sh_money(max(id)) FROM shop.orders WHERE user_id = 'sh-u1';
-- a method without country list ships everywhere
SELECT status, amount FROM shop.shop_buy_now('sh-u1', sh_items(:s_mug, 1), NULL, NULL, 'sh-world', sh_addr('JP'));
-- an address without a method: stored, no shipping cost
SELECT status, amount FROM shop.shop_buy_now('sh-u1', sh_items(:s_mug, 1), NULL, NULL, NULL, sh_addr('FR'));
SELECT sh_money(max(id)) FROM shop.orders WHERE user_id = 'sh-u1';
-- from the cart
SELECT qty FROM shop.shop_cart_add('sh-u2', :s_mug, 2);
SELECT sku_code, line_total, line_tax, subtotal, discount, shipping, tax, tax_included, total
  FROM shop.shop_cart_preview('sh-u2', NULL, 'sh-std', sh_addr());
SELECT status, amount FROM shop.shop_create_order('sh-u2', 'sh-key-1', NULL, 'sh-std', sh_addr());
-- the same key again returns the first order (arguments are not compared)
SELECT status, amount FROM shop.shop_create_order('sh-u2', 'sh-key-1', NULL, 'sh-world', sh_addr('JP'));
SELECT count(*) AS sh_u2_orders FROM shop.orders WHERE user_id = 'sh-u2';

-- Refusals: nothing is created, no stock is held
SELECT reserved AS mug_reserved_before FROM shop.sku WHERE id = :s_mug \gset
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-std', NULL)$$, sh_items(:s_mug, 1)));
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-std', %L)$$, sh_items(:s_mug, 1), sh_addr() - 'country'));
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-nope', %L)$$, sh_items(:s_mug, 1), sh_addr()));
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-old', %L)$$, sh_items(:s_mug, 1), sh_addr()));
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-std', %L)$$, sh_items(:s_mug, 1), sh_addr('US')));
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-usd', %L)$$, sh_items(:s_mug, 1), sh_addr('US')));
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, '', %L)$$, sh_items(:s_mug, 1), sh_addr()));
SELECT count(*) AS sh_u3_orders FROM shop.orders WHERE user_id = 'sh-u3';
SELECT reserved = :mug_reserved_before AS stock_unchanged FROM shop.sku WHERE id = :s_mug;
-- amounts beyond bigint: 22003
SELECT code FROM shop.shop_set_shipping_method('sh-huge', 'Huge', 'EUR', 9223372036854775807);
SELECT pg_temp.outcome(format($$SELECT status FROM shop.shop_buy_now('sh-u3', %L, NULL, NULL, 'sh-huge', %L)$$, sh_items(:s_mug, 1), sh_addr()));
SELECT count(*) AS sh_u3_orders FROM shop.orders WHERE user_id = 'sh-u3';
-- the preview refuses what checkout refuses
SELECT pg_temp.outcome($$SELECT count(*) FROM shop.shop_cart_preview('sh-u4', NULL, 'sh-std', NULL)$$);
SELECT qty FROM shop.shop_cart_add('sh-u4', :s_mug, 1);
SELECT pg_temp.outcome($$SELECT count(*) FROM shop.shop_cart_preview('sh-u4', NULL, 'sh-std', NULL)$$);
SELECT pg_temp.outcome($$SELECT count(*) FROM shop.shop_cart_preview('sh-u4', NULL, 'sh-usd', sh_addr('US'))$$);
SELECT pg_temp.outcome($$SELECT count(*) FROM shop.shop_cart_preview('sh-u4', NULL, 'sh-std', sh_addr('US'))$$);

------------------------------------------------------------------------------
-- shop_set_shipping: while PENDING, until a checkout is open
------------------------------------------------------------------------------
SELECT id AS o_set FROM shop.shop_buy_now('sh-u5', sh_items(:s_tee, 1)) \gset
SELECT sh_money(:o_set);
SELECT status, amount FROM shop.shop_set_shipping(:o_set, 'sh-std', sh_addr());
SELECT sh_money(:o_set);
-- choose again: another method and country
SELECT status, amount FROM shop.shop_set_shipping(:o_set, 'sh-world', sh_addr('JP'));
SELECT sh_money(:o_set);
-- refusals change nothing
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(%s, %L, %L)', :o_set, 'sh-usd', sh_addr('US')));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(%s, %L, %L)', :o_set, 'sh-std', '{}'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(%s, NULL, %L)', :o_set, sh_addr()));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(%s, %L, NULL)', :o_set, 'sh-std'));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(NULL, %L, %L)', 'sh-std', sh_addr()));
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(-1, %L, %L)', 'sh-std', sh_addr()));
SELECT sh_money(:o_set);
-- a checkout session open at a provider: SH034 (the provider holds the amount)
SELECT shop.shop_set_provider('mock-sh', 'mock', 'whsec_' || encode(convert_to('shipping-test-secret-32-bytes!!!', 'UTF8'), 'base64')) IS NOT NULL AS provider_set;
INSERT INTO shop.payment_session (order_id, provider, session_id, url)
VALUES (:o_set, 'mock-sh', 'cs_sh_1', 'https://pay.example.test/cs_sh_1');
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(%s, %L, %L)', :o_set, 'sh-std', sh_addr()));
SELECT sh_money(:o_set);
-- once that session has expired, shipping may change again
UPDATE shop.payment_session SET state = 'expired' WHERE session_id = 'cs_sh_1';
SELECT status, amount FROM shop.shop_set_shipping(:o_set, 'sh-std', sh_addr());
-- not PENDING: SH004
SELECT status FROM shop.shop_release(:o_set);
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_set_shipping(%s, %L, %L)', :o_set, 'sh-std', sh_addr()));

------------------------------------------------------------------------------
-- Fulfilment: READY -> SHIPPED -> DELIVERED, events, the warehouse queue
------------------------------------------------------------------------------
SELECT shop.shop_subscribe('https://sh.example.test/hook', ARRAY['order.shipped', 'order.delivered']) ? 'endpoint_id' AS subscribed;
SELECT id AS o_ship FROM shop.shop_buy_now('sh-u6', sh_items(:s_mug, 1), NULL, NULL, 'sh-std', sh_addr()) \gset
SELECT sh_state(:o_ship);
-- not paid yet: SH035
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, %L, %L)', :o_ship, 'DHL', 'JD0001'));
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_mark_delivered(%s)', :o_ship));
SELECT status FROM shop.shop_confirm_paid(:o_ship, 'pay_sh_1');
SELECT sh_state(:o_ship);
SELECT order_id = :o_ship AS queued, shipping_method, ship_to ->> 'city' AS city,
	   items -> 0 ->> 'sku_code' AS sku, items -> 0 ->> 'qty' AS qty, jsonb_array_length(items) AS lines, amount, currency
  FROM shop.warehouse_queue WHERE user_id = 'sh-u6';
-- a paid order without an address is not for the warehouse
SELECT status FROM shop.shop_confirm_paid(:o_plain, 'pay_sh_0');
SELECT sh_state(:o_plain);
SELECT count(*) AS plain_queued FROM shop.warehouse_queue WHERE order_id = :o_plain;
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, %L, %L)', :o_plain, 'DHL', 'JD0000'));
-- delivering what is not shipped: SH035
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_mark_delivered(%s)', :o_ship));
-- ship: SHIPPED, one event, gone from the queue
SELECT status, fulfilment_status, carrier, tracking_no, shipped_at IS NOT NULL AS shipped, delivered_at
  FROM shop.shop_ship(:o_ship, 'DHL', 'JD0001');
SELECT count(*) AS queued_after FROM shop.warehouse_queue WHERE order_id = :o_ship;
SELECT shipped_at AS first_shipped_at FROM shop.orders WHERE id = :o_ship \gset
-- the same call again: the same answer, nothing changes, no second event
SELECT status, fulfilment_status, carrier, tracking_no, shipped_at = :'first_shipped_at' AS same_time
  FROM shop.shop_ship(:o_ship, 'DHL', 'JD0001');
-- another carrier or tracking number: SH036
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, %L, %L)', :o_ship, 'DHL', 'JD0002'));
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, %L, %L)', :o_ship, 'UPS', 'JD0001'));
SELECT sh_state(:o_ship);
-- a paid order cannot be released, nor re-shipped
SELECT pg_temp.outcome(format('SELECT status FROM shop.shop_release(%s)', :o_ship));
-- delivered, then the same again
SELECT status, fulfilment_status, delivered_at IS NOT NULL AS delivered FROM shop.shop_mark_delivered(:o_ship);
SELECT delivered_at AS first_delivered_at FROM shop.orders WHERE id = :o_ship \gset
SELECT fulfilment_status, delivered_at = :'first_delivered_at' AS same_time FROM shop.shop_mark_delivered(:o_ship);
-- shipping a delivered order: the same call answers, another is SH036
SELECT fulfilment_status, tracking_no FROM shop.shop_ship(:o_ship, 'DHL', 'JD0001');
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, %L, %L)', :o_ship, 'DHL', 'JD0009'));
-- the events: one order.shipped, one order.delivered, with the shipment
SELECT e.type, e.payload -> 'order' ->> 'fulfilment_status' AS fulfilment,
	   e.payload -> 'order' ->> 'carrier' AS carrier, e.payload -> 'order' ->> 'tracking_no' AS tracking,
	   e.payload -> 'order' ->> 'shipping' AS shipping, e.payload -> 'order' -> 'ship_to' ->> 'country' AS country
  FROM shop.event e WHERE e.order_id = :o_ship ORDER BY e.id;
SELECT count(*) AS outbox_rows FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id WHERE e.order_id = :o_ship;
-- missing order, NULL and empty arguments
SELECT pg_temp.outcome($$SELECT fulfilment_status FROM shop.shop_ship(-1, 'DHL', 'X')$$);
SELECT pg_temp.outcome($$SELECT fulfilment_status FROM shop.shop_mark_delivered(-1)$$);
SELECT pg_temp.outcome($$SELECT fulfilment_status FROM shop.shop_ship(NULL, 'DHL', 'X')$$);
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, NULL, %L)', :o_ship, 'X'));
SELECT pg_temp.outcome(format('SELECT fulfilment_status FROM shop.shop_ship(%s, %L, %L)', :o_ship, 'DHL', ''));
SELECT pg_temp.outcome($$SELECT fulfilment_status FROM shop.shop_mark_delivered(NULL)$$);
-- the table keeps shipment fields together
SELECT pg_temp.outcome(format('UPDATE shop.orders SET delivered_at = now() WHERE id = %s RETURNING id', :o_plain));
SELECT pg_temp.outcome(format('UPDATE shop.orders SET carrier = %L WHERE id = %s RETURNING id', 'DHL', :o_plain));

------------------------------------------------------------------------------
-- Invariants and clean-up
------------------------------------------------------------------------------
SELECT count(*) >= 0 AS released FROM (
	SELECT shop.shop_release(id) FROM shop.orders WHERE user_id LIKE 'sh-%' AND status = 'PENDING' ORDER BY id) r;
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'sh-%')
	OR subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'SH-%')
	OR subject LIKE 'user sh-%';

SELECT shop.shop_unsubscribe(id) FROM shop.event_endpoint WHERE url = 'https://sh.example.test/hook';
DELETE FROM shop.outbox WHERE event_id IN (SELECT id FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'sh-%'));
DELETE FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'sh-%');
DELETE FROM shop.event_endpoint_secret WHERE endpoint_id IN (SELECT id FROM shop.event_endpoint WHERE url = 'https://sh.example.test/hook');
DELETE FROM shop.event_endpoint WHERE url = 'https://sh.example.test/hook';
DELETE FROM shop.payment_session WHERE provider = 'mock-sh';
DELETE FROM shop.coupon_redemption WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'sh-%');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'sh-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'sh-%');
DELETE FROM shop.orders WHERE user_id LIKE 'sh-%';
DELETE FROM shop.cart WHERE user_id LIKE 'sh-%';
DELETE FROM shop.sku WHERE code LIKE 'SH-%';
DELETE FROM shop.product WHERE name LIKE 'sh %';
DELETE FROM shop.coupon WHERE code = 'SH-TEN';
DELETE FROM shop.shipping_method WHERE code LIKE 'sh-%';
DELETE FROM shop.payment_provider_secret WHERE provider = 'mock-sh';
DELETE FROM shop.payment_provider WHERE name = 'mock-sh';
DROP FUNCTION sh_items(bigint[]), sh_money(bigint), sh_state(bigint), sh_addr(text);

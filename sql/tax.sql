--
-- Tax (0.2, issue 13): settings per currency (prices inclusive or
-- exclusive of tax, the default country), rates by country, region and tax
-- class, the rounding rule (per rate on the summed nets, split in
-- proportion, remainder to the largest line), tax on the line after its
-- discount, the preview, re-pricing by shop_set_shipping, and the money
-- model amount = subtotal - discount + shipping + tax with the included
-- share kept apart.  Hermetic: own products (tx *), SKUs (TX-*), users
-- (tx-*), method tx-*, coupon TX-*; the tax settings of USD and KRW and
-- the rates of US and KR are removed at the end.
--
\set VERBOSITY terse
SET client_min_messages = warning;

\set ECHO none
\i sql/include/helpers.sql
\set ECHO all

INSERT INTO shop.product (name, price, currency, tax_class) VALUES
	('tx big', 1000, 'USD', 'standard'), ('tx small a', 333, 'USD', 'standard'),
	('tx small b', 333, 'USD', 'standard'), ('tx book', 2000, 'USD', 'books'),
	('tx won', 10000, 'KRW', 'standard'), ('tx won small', 3333, 'KRW', 'standard'),
	('tx euro', 1000, 'EUR', 'standard');
INSERT INTO shop.sku (product_id, code, on_hand)
SELECT id, 'TX-' || upper(replace(substr(name, 4), ' ', '-')), 100 FROM shop.product WHERE name LIKE 'tx %';
SELECT id AS s_big FROM shop.sku WHERE code = 'TX-BIG' \gset
SELECT id AS s_a FROM shop.sku WHERE code = 'TX-SMALL-A' \gset
SELECT id AS s_b FROM shop.sku WHERE code = 'TX-SMALL-B' \gset
SELECT id AS s_book FROM shop.sku WHERE code = 'TX-BOOK' \gset
SELECT id AS s_won FROM shop.sku WHERE code = 'TX-WON' \gset
SELECT id AS s_won_small FROM shop.sku WHERE code = 'TX-WON-SMALL' \gset
SELECT id AS s_euro FROM shop.sku WHERE code = 'TX-EURO' \gset

CREATE FUNCTION tx_items(VARIADIC pairs bigint[]) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_agg(jsonb_build_object('sku_id', pairs[i], 'qty', pairs[i + 1]) ORDER BY i)
	  FROM generate_series(1, cardinality(pairs), 2) i
$$;
CREATE FUNCTION tx_money(order_id bigint) RETURNS text
LANGUAGE sql AS $$
	SELECT format('subtotal %s - discount %s + shipping %s + tax %s = amount %s (included %s)',
				  o.subtotal, o.discount, o.shipping, o.tax, o.amount, o.tax_included)
	  FROM shop.orders o WHERE o.id = order_id
$$;
CREATE FUNCTION tx_lines(order_id bigint) RETURNS TABLE (sku text, line_total bigint, discount bigint, tax bigint)
LANGUAGE sql AS $$
	SELECT sku_code, unit_price * qty, discount, tax FROM shop.order_item
	 WHERE order_item.order_id = tx_lines.order_id ORDER BY sku_id
$$;
CREATE FUNCTION tx_addr(country text, region text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('name', 'Pat Doe', 'line1', '1 Main St', 'city', 'Somewhere',
							  'postal_code', '12345', 'country', country)
		   || CASE WHEN region IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('region', region) END
$$;

------------------------------------------------------------------------------
-- Settings and rates: upserts and the tables' rules
------------------------------------------------------------------------------
SELECT currency, prices_include_tax, default_country FROM shop.shop_set_tax_setting('usd', false, 'us');
SELECT currency, prices_include_tax, default_country FROM shop.shop_set_tax_setting('KRW', true, 'KR');
SELECT country, region, tax_class, rate FROM shop.shop_set_tax_rate('us', 5);
SELECT country, region, tax_class, rate FROM shop.shop_set_tax_rate('US', 8.875, 'standard', 'NY');
SELECT country, region, tax_class, rate FROM shop.shop_set_tax_rate('US', 0, 'books');
SELECT country, region, tax_class, rate FROM shop.shop_set_tax_rate('KR', 10);
-- the same key updates the rate
SELECT country, region, tax_class, rate FROM shop.shop_set_tax_rate('US', 7.25, 'standard', 'CA');
SELECT country, region, tax_class, rate FROM shop.shop_set_tax_rate('US', 7.5, 'standard', 'CA');
SELECT count(*) AS us_rates FROM shop.tax_rate WHERE country = 'US';
SELECT pg_temp.outcome($$SELECT country FROM shop.shop_set_tax_rate('US', 100.5)$$);
SELECT pg_temp.outcome($$SELECT country FROM shop.shop_set_tax_rate('US', -1)$$);
SELECT pg_temp.outcome($$SELECT country FROM shop.shop_set_tax_rate('U1', 5)$$);
SELECT pg_temp.outcome($$SELECT country FROM shop.shop_set_tax_rate('US', 5, '')$$);
SELECT pg_temp.outcome($$SELECT currency FROM shop.shop_set_tax_setting('USD', NULL)$$);
SELECT pg_temp.outcome($$SELECT currency FROM shop.shop_set_tax_setting('USD', false, 'USA')$$);
SELECT pg_temp.outcome($$UPDATE shop.product SET tax_class = '' WHERE name = 'tx big' RETURNING id$$);

------------------------------------------------------------------------------
-- Prices exclusive of tax (USD): tax is added on top
------------------------------------------------------------------------------
-- the rounding rule's example: 1000 + 333 + 333 at 8.875 % (NY):
-- 1666 x 8.875 % = 147.86 -> 148; shares 88 + 29 + 29 = 146, remainder 2
-- to the largest line: 90, 29, 29
SELECT id AS o_ny FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 1, :s_a, 1, :s_b, 1), NULL, NULL, NULL, tx_addr('US', 'NY')) \gset
SELECT tx_money(:o_ny);
SELECT * FROM tx_lines(:o_ny);
-- a region without its own rate takes the country's (5 %): 1666 x 5 % = 83.3 -> 83
SELECT id AS o_nv FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 1, :s_a, 1, :s_b, 1), NULL, NULL, NULL, tx_addr('US', 'NV')) \gset
SELECT tx_money(:o_nv);
SELECT * FROM tx_lines(:o_nv);
-- no address: the setting's default country (US, no region: 5 %)
SELECT id AS o_default FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 2)) \gset
SELECT tx_money(:o_default);
-- tax classes: books at 0 %, the rest at 7.5 % (CA), each rate on its own lines
SELECT id AS o_ca FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 1, :s_book, 1, :s_a, 1), NULL, NULL, NULL, tx_addr('US', 'CA')) \gset
SELECT tx_money(:o_ca);
SELECT * FROM tx_lines(:o_ca);
-- tax is on the line after its discount: 10 % off 1666 = 167 (101, 33, 33),
-- nets 899 + 300 + 300 = 1499 x 8.875 % = 133.04 -> 133: 79 + 26 + 26 = 131, +2 -> 81
SELECT code FROM shop.shop_set_coupon('TX-TEN', 'percent', 10);
SELECT id AS o_coupon FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 1, :s_a, 1, :s_b, 1), NULL, 'tx-ten', NULL, tx_addr('US', 'NY')) \gset
SELECT tx_money(:o_coupon);
SELECT * FROM tx_lines(:o_coupon);
-- shipping with tax: shipping is not taxed
SELECT code FROM shop.shop_set_shipping_method('tx-ground', 'Ground', 'USD', 500, NULL, ARRAY['US']);
SELECT id AS o_ship FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 1), NULL, NULL, 'tx-ground', tx_addr('US', 'NY')) \gset
SELECT tx_money(:o_ship);
-- a country without rates: no tax
SELECT code FROM shop.shop_set_shipping_method('tx-intl', 'International', 'USD', 2500);
SELECT id AS o_mx FROM shop.shop_buy_now('tx-u1', tx_items(:s_big, 1), NULL, NULL, 'tx-intl', tx_addr('MX')) \gset
SELECT tx_money(:o_mx);
-- shop_set_shipping re-prices tax with the new address: NY -> CA
SELECT status, amount FROM shop.shop_set_shipping(:o_ny, 'tx-ground', tx_addr('US', 'CA'));
SELECT tx_money(:o_ny);
SELECT * FROM tx_lines(:o_ny);
-- ... and to a country without rates: every line's tax back to 0
SELECT status, amount FROM shop.shop_set_shipping(:o_ny, 'tx-intl', tx_addr('MX'));
SELECT tx_money(:o_ny);
SELECT * FROM tx_lines(:o_ny);

------------------------------------------------------------------------------
-- Prices inclusive of tax (KRW, 10 % VAT): the included share, amount unchanged
------------------------------------------------------------------------------
-- 10000 + 2 x 3333 = 16666 contains 16666 x 10 / 110 = 1515.09 -> 1515:
-- shares 909 + 605 = 1514, remainder 1 to the largest line: 910, 605
SELECT shop.shop_subscribe('https://tx.example.test/hook', ARRAY['order.created']) ? 'endpoint_id' AS subscribed;
SELECT qty FROM shop.shop_cart_add('tx-u2', :s_won, 1);
SELECT qty FROM shop.shop_cart_add('tx-u2', :s_won_small, 2);
SELECT sku_code, line_total, line_discount, line_tax, subtotal, discount, shipping, tax, tax_included, total
  FROM shop.shop_cart_preview('tx-u2', NULL);
SELECT id AS o_krw, amount FROM shop.shop_create_order('tx-u2') \gset
SELECT tx_money(:o_krw);
SELECT * FROM tx_lines(:o_krw);
-- a KRW order to another country without rates: nothing included
SELECT code FROM shop.shop_set_shipping_method('tx-krw-air', 'Air', 'KRW', 15000);
SELECT id AS o_krw_jp FROM shop.shop_buy_now('tx-u2', tx_items(:s_won, 1), NULL, NULL, 'tx-krw-air', tx_addr('JP')) \gset
SELECT tx_money(:o_krw_jp);
-- a currency without a tax setting (EUR): no tax, even with a rate for the country
SELECT country FROM shop.shop_set_tax_rate('DE', 19);
SELECT id AS o_eur FROM shop.shop_buy_now('tx-u3', tx_items(:s_euro, 1), NULL, NULL, NULL, tx_addr('DE')) \gset
SELECT tx_money(:o_eur);
-- a setting without a default country and an order without an address: no tax
SELECT currency FROM shop.shop_set_tax_setting('EUR', true);
SELECT id AS o_eur2 FROM shop.shop_buy_now('tx-u3', tx_items(:s_euro, 1)) \gset
SELECT tx_money(:o_eur2);
-- ... with an address in DE: 19 % included, 1000 x 19 / 119 = 159.66 -> 160
SELECT id AS o_eur3 FROM shop.shop_buy_now('tx-u3', tx_items(:s_euro, 1), NULL, NULL, NULL, tx_addr('DE')) \gset
SELECT tx_money(:o_eur3);

------------------------------------------------------------------------------
-- The money model's CHECKs and invariants
------------------------------------------------------------------------------
SELECT pg_temp.outcome(format('UPDATE shop.orders SET tax = tax + 1 WHERE id = %s RETURNING id', :o_ny));
SELECT pg_temp.outcome(format('UPDATE shop.orders SET tax = 1, amount = amount + 1 WHERE id = %s RETURNING id', :o_krw));
SELECT pg_temp.outcome(format('UPDATE shop.orders SET shipping = -1, amount = amount - shipping - 1 WHERE id = %s RETURNING id', :o_ship));
-- a line's tax that no longer adds up is reported
BEGIN;
UPDATE shop.order_item SET tax = tax + 1 WHERE order_id = :o_coupon AND sku_id = :s_a;
SELECT check_name, detail FROM shop.shop_check_invariants() WHERE subject = 'order ' || :o_coupon;
ROLLBACK;
BEGIN;
UPDATE shop.order_item SET tax = 100000 WHERE order_id = :o_krw AND sku_id = :s_won_small;
UPDATE shop.orders SET tax_included = tax_included - 605 + 100000 WHERE id = :o_krw;
SELECT check_name, regexp_replace(detail, 'sku [0-9]+', 'sku N') AS detail
  FROM shop.shop_check_invariants() WHERE subject = 'order ' || :o_krw;
ROLLBACK;
-- the order events carry shipping and tax when the order has them
SELECT e.payload -> 'order' ->> 'tax' AS tax, e.payload -> 'order' ->> 'tax_included' AS included,
	   e.payload -> 'order' ->> 'amount' AS amount
  FROM shop.event e WHERE e.order_id = :o_krw;

------------------------------------------------------------------------------
-- Invariants and clean-up
------------------------------------------------------------------------------
SELECT count(*) >= 0 AS released FROM (
	SELECT shop.shop_release(id) FROM shop.orders WHERE user_id LIKE 'tx-%' AND status = 'PENDING' ORDER BY id) r;
SELECT * FROM shop.shop_check_invariants()
 WHERE subject IN (SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'tx-%')
	OR subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'TX-%')
	OR subject LIKE 'user tx-%';

SELECT shop.shop_unsubscribe(id) FROM shop.event_endpoint WHERE url = 'https://tx.example.test/hook';
DELETE FROM shop.outbox WHERE event_id IN (SELECT id FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'tx-%'));
DELETE FROM shop.event WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'tx-%');
DELETE FROM shop.event_endpoint_secret WHERE endpoint_id IN (SELECT id FROM shop.event_endpoint WHERE url = 'https://tx.example.test/hook');
DELETE FROM shop.event_endpoint WHERE url = 'https://tx.example.test/hook';
DELETE FROM shop.coupon_redemption WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'tx-%');
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'tx-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'tx-%');
DELETE FROM shop.orders WHERE user_id LIKE 'tx-%';
DELETE FROM shop.cart WHERE user_id LIKE 'tx-%';
DELETE FROM shop.sku WHERE code LIKE 'TX-%';
DELETE FROM shop.product WHERE name LIKE 'tx %';
DELETE FROM shop.coupon WHERE code = 'TX-TEN';
DELETE FROM shop.shipping_method WHERE code LIKE 'tx-%';
DELETE FROM shop.tax_rate WHERE country IN ('US', 'KR', 'DE');
DELETE FROM shop.tax_setting WHERE currency IN ('USD', 'KRW', 'EUR');
DROP FUNCTION tx_items(bigint[]), tx_money(bigint), tx_lines(bigint), tx_addr(text, text);

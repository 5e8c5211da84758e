-- shop install script, part 2c: shipping, tax and fulfilment (issue 13,
-- second part; README, "Shipping", "Tax", "Fulfilment").
--
-- The money rules live here, in SQL, like the coupon's: the preview and the
-- order use the same shop.shipping_tax_quote().  order.c calls
-- shop.order_reprice() after the order's lines and coupon are settled, and
-- only when the order has a shipping method or an address, or its currency
-- has a tax setting (the mark-pending statement says so): an order with
-- neither runs no statement more than before.  The state changes
-- (shop_set_shipping, shop_ship, shop_mark_delivered) are C (src/shipping.c).
--
-- Refusals (README, "Errors"):
--   SH031 invalid shipping address (missing or blank required field, a
--         field that is not a string, an unknown field, a country that is
--         not an ISO 3166 alpha-2 code, or none given with a method)
--   SH032 unknown or inactive shipping method
--   SH033 shipping method not for this order (another currency, or it does
--         not ship to the address's country)
--   SH034 shipping cannot change: a checkout was started at a provider
--   SH035 wrong fulfilment state (ship what is not READY, deliver what is
--         not SHIPPED)
--   SH036 already shipped with another carrier or tracking number

-- Every officially assigned ISO 3166-1 alpha-2 code (249, as in tzdata's
-- iso3166.tab).
CREATE FUNCTION shop.iso_country(p_code text)
	RETURNS boolean
	LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT $1 = ANY ('{AD,AE,AF,AG,AI,AL,AM,AO,AQ,AR,AS,AT,AU,AW,AX,AZ,BA,BB,BD,BE,BF,BG,BH,BI,BJ,BL,BM,BN,BO,BQ,BR,BS,BT,BV,BW,BY,BZ,CA,CC,CD,CF,CG,CH,CI,CK,CL,CM,CN,CO,CR,CU,CV,CW,CX,CY,CZ,DE,DJ,DK,DM,DO,DZ,EC,EE,EG,EH,ER,ES,ET,FI,FJ,FK,FM,FO,FR,GA,GB,GD,GE,GF,GG,GH,GI,GL,GM,GN,GP,GQ,GR,GS,GT,GU,GW,GY,HK,HM,HN,HR,HT,HU,ID,IE,IL,IM,IN,IO,IQ,IR,IS,IT,JE,JM,JO,JP,KE,KG,KH,KI,KM,KN,KP,KR,KW,KY,KZ,LA,LB,LC,LI,LK,LR,LS,LT,LU,LV,LY,MA,MC,MD,ME,MF,MG,MH,MK,ML,MM,MN,MO,MP,MQ,MR,MS,MT,MU,MV,MW,MX,MY,MZ,NA,NC,NE,NF,NG,NI,NL,NO,NP,NR,NU,NZ,OM,PA,PE,PF,PG,PH,PK,PL,PM,PN,PR,PS,PT,PW,PY,QA,RE,RO,RS,RU,RW,SA,SB,SC,SD,SE,SG,SH,SI,SJ,SK,SL,SM,SN,SO,SR,SS,ST,SV,SX,SY,SZ,TC,TD,TF,TG,TH,TJ,TK,TL,TM,TN,TO,TR,TT,TV,TW,TZ,UA,UG,UM,US,UY,UZ,VA,VC,VE,VG,VI,VN,VU,WF,WS,YE,YT,ZA,ZM,ZW}'::text[])
$$;
COMMENT ON FUNCTION shop.iso_country(text) IS
	'internal: whether the text is an assigned ISO 3166-1 alpha-2 country code (upper case)';

-- Validate a shipping address and return it normalised: the known fields
-- only, each trimmed, country in upper case.  Required: name, line1, city,
-- postal_code, country; optional: line2, region, phone.  SH031 otherwise.
CREATE FUNCTION shop.ship_to_check(p_address jsonb)
	RETURNS jsonb
	LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k		text;
	v		jsonb;
	val		text;
	result	jsonb := '{}';
BEGIN
	IF p_address IS NULL OR jsonb_typeof(p_address) <> 'object' THEN
		RAISE EXCEPTION 'the shipping address must be a JSON object'
			USING ERRCODE = 'SH031',
				  HINT = 'Pass {"name", "line1", "city", "postal_code", "country"} (line2, region, phone optional).';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(p_address) LOOP
		IF k NOT IN ('name', 'line1', 'line2', 'city', 'region', 'postal_code', 'country', 'phone') THEN
			RAISE EXCEPTION 'the shipping address has an unknown field "%"', left(k, 64)
				USING ERRCODE = 'SH031',
					  HINT = 'Fields are name, line1, line2, city, region, postal_code, country, phone.';
		END IF;
		IF jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'the shipping address field "%" must be a string', k
				USING ERRCODE = 'SH031';
		END IF;
		val := btrim(v #>> '{}');
		IF octet_length(val) > 200 THEN
			RAISE EXCEPTION 'the shipping address field "%" is longer than 200 bytes', k
				USING ERRCODE = 'SH031';
		END IF;
		IF val <> '' THEN
			result := result || jsonb_build_object(k, CASE k WHEN 'country' THEN upper(val) ELSE val END);
		END IF;
	END LOOP;
	FOREACH k IN ARRAY ARRAY['name', 'line1', 'city', 'postal_code', 'country'] LOOP
		IF NOT result ? k THEN
			RAISE EXCEPTION 'the shipping address has no "%"', k
				USING ERRCODE = 'SH031',
					  DETAIL = 'name, line1, city, postal_code and country are required and must not be blank.';
		END IF;
	END LOOP;
	IF NOT shop.iso_country(result ->> 'country') THEN
		RAISE EXCEPTION 'the shipping address country "%" is not an ISO 3166 alpha-2 code', result ->> 'country'
			USING ERRCODE = 'SH031', HINT = 'Use two letters, e.g. KR, US, DE.';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop.ship_to_check(jsonb) IS
	'internal: validate a shipping address (SH031) and return it normalised (known fields, trimmed, country upper case)';

-- Shipping and tax for lines (ascending sku_id: p_skus, their products,
-- their nets = line total - the line's discount) of an order in
-- p_currency, with shipping method p_method (NULL: none) to address
-- p_ship_to (NULL: none; required with a method).
--
-- Shipping: the method's cost, 0 when the goods (the sum of the nets,
-- i.e. subtotal - discount) reach its free_over.
--
-- The tax rounding rule (README, "Tax"): the currency's tax setting says
-- whether prices include tax; the country is the address's, else the
-- setting's default_country; each line's rate is the tax_rate of that
-- country, the address's region if it has its own, and the product's
-- tax_class (no rate: no tax).  Per rate, the tax of the lines at that rate
-- is computed once on their summed nets, rounded half up to the minor unit:
-- net x rate / 100 when prices exclude tax (added on top), net x rate /
-- (100 + rate) when they include it (the share contained).  It is split
-- over those lines in proportion to their nets, rounded down per line; the
-- remainder goes to the largest net (ties: lowest sku_id), and, when prices
-- include tax, never beyond a line's net (the rest to the next largest),
-- so the lines add up exactly to the order's tax.
CREATE FUNCTION shop.shipping_tax_quote(p_currency text, p_skus bigint[], p_products bigint[],
										p_nets bigint[], p_method text, p_ship_to jsonb,
										OUT shipping bigint, OUT tax bigint, OUT tax_included bigint,
										OUT line_taxes bigint[], OUT ship_to jsonb)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n			integer := coalesce(cardinality(p_skus), 0);
	goods		numeric := 0;
	m			shop.shipping_method;
	st			shop.tax_setting;
	v_country	text;
	v_region	text;
	rates		numeric[];
	g			numeric;
	group_net	numeric;
	t			bigint;
	rest		bigint;
	share		bigint;
	total_tax	bigint := 0;
	i			integer;
	idx			integer;
BEGIN
	shipping := 0;
	tax := 0;
	tax_included := 0;
	line_taxes := array_fill(0::bigint, ARRAY[n]);
	IF p_ship_to IS NOT NULL THEN
		ship_to := shop.ship_to_check(p_ship_to);
	END IF;
	FOR i IN 1 .. n LOOP
		goods := goods + p_nets[i];
	END LOOP;

	IF p_method IS NOT NULL THEN
		IF ship_to IS NULL THEN
			RAISE EXCEPTION 'shipping method "%" needs a shipping address', p_method
				USING ERRCODE = 'SH031', HINT = 'Pass ship_to with the method.';
		END IF;
		SELECT * INTO m FROM shop.shipping_method sm WHERE sm.code = p_method;
		IF NOT FOUND OR NOT m.active THEN
			RAISE EXCEPTION 'shipping method "%" does not exist or is not active', p_method
				USING ERRCODE = 'SH032';
		END IF;
		IF m.currency <> p_currency THEN
			RAISE EXCEPTION 'shipping method "%" is in %, the order in %', m.code, m.currency, p_currency
				USING ERRCODE = 'SH033';
		END IF;
		IF m.countries IS NOT NULL AND NOT (ship_to ->> 'country') = ANY (m.countries) THEN
			RAISE EXCEPTION 'shipping method "%" does not ship to %', m.code, ship_to ->> 'country'
				USING ERRCODE = 'SH033',
					  DETAIL = format('It ships to %s.', array_to_string(m.countries, ', '));
		END IF;
		shipping := CASE WHEN m.free_over IS NOT NULL AND goods >= m.free_over THEN 0 ELSE m.cost END;
	END IF;

	SELECT * INTO st FROM shop.tax_setting s WHERE s.currency = p_currency;
	IF NOT FOUND OR n = 0 THEN
		RETURN;
	END IF;
	v_country := coalesce(ship_to ->> 'country', st.default_country);
	v_region := ship_to ->> 'region';
	IF v_country IS NULL THEN
		RETURN;
	END IF;
	-- each line's rate: the region's own, else the country's; none: no tax
	SELECT array_agg((SELECT r.rate FROM shop.tax_rate r
					   WHERE r.country = v_country AND r.tax_class = p.tax_class
						 AND (r.region IS NULL OR r.region = v_region)
					   ORDER BY r.region IS NULL LIMIT 1) ORDER BY l.i)
	  INTO rates
	  FROM unnest(p_products) WITH ORDINALITY AS l(product, i)
	  JOIN shop.product p ON p.id = l.product;
	FOR g IN SELECT DISTINCT x FROM unnest(rates) x WHERE x > 0 ORDER BY 1 LOOP
		group_net := 0;
		FOR i IN 1 .. n LOOP
			IF rates[i] = g THEN
				group_net := group_net + p_nets[i];
			END IF;
		END LOOP;
		CONTINUE WHEN group_net = 0;
		IF st.prices_include_tax THEN
			t := round(group_net * g / (100 + g));		-- numeric round: half up for >= 0
		ELSE
			t := round(group_net * g / 100);
		END IF;
		rest := t;
		FOR i IN 1 .. n LOOP
			IF rates[i] = g THEN
				share := floor(t::numeric * p_nets[i] / group_net);
				line_taxes[i] := share;
				rest := rest - share;
			END IF;
		END LOOP;
		FOR idx IN
			SELECT l.i FROM unnest(p_nets, p_skus, rates) WITH ORDINALITY AS l(net, sku, rate, i)
			 WHERE l.rate = g
			 ORDER BY l.net DESC, l.sku
		LOOP
			EXIT WHEN rest = 0;
			share := CASE WHEN st.prices_include_tax
						  THEN least(rest, p_nets[idx] - line_taxes[idx]) ELSE rest END;
			line_taxes[idx] := line_taxes[idx] + share;
			rest := rest - share;
		END LOOP;
		total_tax := total_tax + t;
	END LOOP;
	IF st.prices_include_tax THEN
		tax_included := total_tax;
	ELSE
		tax := total_tax;
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shipping_tax_quote(text, bigint[], bigint[], bigint[], text, jsonb) IS
	'internal: shipping cost and tax (the rounding rule) for order lines; raises SH031-SH033';

-- Price shipping and tax of order p_order (its lines and coupon settled,
-- the order row locked or just created by this transaction): write each
-- line's tax, the order's shipping, tax, method and address, and amount =
-- subtotal - discount + shipping + tax.  Returns the order summary.
CREATE FUNCTION shop.order_reprice(p_order bigint, p_method text, p_ship_to jsonb)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	nets		bigint[];
	cur			text;
	q			record;
	result		shop.order_summary;
BEGIN
	SELECT array_agg(i.sku_id ORDER BY i.sku_id), array_agg(s.product_id ORDER BY i.sku_id),
		   array_agg(i.unit_price * i.qty - i.discount ORDER BY i.sku_id)
	  INTO skus, products, nets
	  FROM shop.order_item i JOIN shop.sku s ON s.id = i.sku_id
	 WHERE i.order_id = p_order;
	SELECT o.currency INTO cur FROM shop.orders o WHERE o.id = p_order;
	q := shop.shipping_tax_quote(cur, skus, products, nets, p_method, p_ship_to);
	UPDATE shop.order_item i SET tax = d.x
	  FROM unnest(skus, q.line_taxes) AS d(sku, x)
	 WHERE i.order_id = p_order AND i.sku_id = d.sku AND i.tax <> d.x;
	UPDATE shop.orders o
	   SET shipping = q.shipping, tax = q.tax, tax_included = q.tax_included,
		   shipping_method = p_method, ship_to = q.ship_to,
		   amount = o.subtotal - o.discount + q.shipping + q.tax, updated_at = now()
	 WHERE o.id = p_order
	RETURNING o.id, o.status, o.amount, o.currency, o.expires_at INTO result;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop.order_reprice(bigint, text, jsonb) IS
	'internal (shop_create_order, shop_buy_now, shop_set_shipping): price an order''s shipping and tax and set its amount';

-- API: Operator (shipping methods and tax)

CREATE FUNCTION shop.shop_set_shipping_method(code text, name text, currency text, cost bigint,
											  free_over bigint DEFAULT NULL,
											  countries text[] DEFAULT NULL,
											  active boolean DEFAULT true)
	RETURNS shop.shipping_method
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.shipping_method AS m (code, name, currency, cost, free_over, countries, active)
	VALUES ($1, $2, upper($3), $4, $5,
			CASE WHEN $6 IS NOT NULL THEN (SELECT coalesce(array_agg(upper(c) ORDER BY o), '{}')
											 FROM unnest($6) WITH ORDINALITY AS x(c, o)) END, $7)
	ON CONFLICT (code) DO UPDATE
	   SET name = excluded.name, currency = excluded.currency, cost = excluded.cost,
		   free_over = excluded.free_over, countries = excluded.countries,
		   active = excluded.active, updated_at = now()
	RETURNING m.*
$$;
COMMENT ON FUNCTION shop.shop_set_shipping_method(text, text, text, bigint, bigint, text[], boolean) IS
	'create or update (by code) a shipping method: flat cost in currency, free when the goods reach free_over, for countries (NULL: everywhere)';

CREATE FUNCTION shop.shop_set_tax_setting(currency text, prices_include_tax boolean,
										  default_country text DEFAULT NULL)
	RETURNS shop.tax_setting
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.tax_setting AS t (currency, prices_include_tax, default_country)
	VALUES (upper($1), $2, upper($3))
	ON CONFLICT (currency) DO UPDATE
	   SET prices_include_tax = excluded.prices_include_tax,
		   default_country = excluded.default_country, updated_at = now()
	RETURNING t.*
$$;
COMMENT ON FUNCTION shop.shop_set_tax_setting(text, boolean, text) IS
	'set whether prices in currency include tax, and the country whose rates apply to orders without an address';

CREATE FUNCTION shop.shop_set_tax_rate(country text, rate numeric,
									   tax_class text DEFAULT 'standard',
									   region text DEFAULT NULL)
	RETURNS shop.tax_rate
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.tax_rate AS r (country, rate, tax_class, region)
	VALUES (upper($1), $2, $3, $4)
	ON CONFLICT (country, (coalesce(region, '')), tax_class) DO UPDATE
	   SET rate = excluded.rate, updated_at = now()
	RETURNING r.*
$$;
COMMENT ON FUNCTION shop.shop_set_tax_rate(text, numeric, text, text) IS
	'create or update the tax rate (percent) of a country, tax class and optional region';

-- API: Public (cart)

CREATE FUNCTION shop.shop_cart_preview(user_id text, coupon_code text,
									   shipping_method text DEFAULT NULL,
									   ship_to jsonb DEFAULT NULL)
	RETURNS SETOF shop.cart_preview_row
	LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	totals		bigint[];
	nets		bigint[];
	cur			text;
	q			record;
	st			record;
	disc		bigint := 0;
	shares		bigint[];
BEGIN
	SELECT array_agg(ci.sku_id ORDER BY ci.sku_id), array_agg(s.product_id ORDER BY ci.sku_id),
		   array_agg(p.price * ci.qty ORDER BY ci.sku_id), min(p.currency)
	  INTO skus, products, totals, cur
	  FROM shop.cart c
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	 WHERE c.user_id = $1 AND c.checked_out_at IS NULL;
	IF skus IS NULL THEN
		RETURN;
	END IF;
	IF $2 IS NULL THEN
		shares := array_fill(0::bigint, ARRAY[cardinality(skus)]);
	ELSE
		q := shop.coupon_quote($2, $1, cur, skus, products, totals, false);
		disc := q.discount;
		shares := q.line_discounts;
	END IF;
	SELECT array_agg(t.total - t.share ORDER BY t.i) INTO nets
	  FROM unnest(totals, shares) WITH ORDINALITY AS t(total, share, i);
	st := shop.shipping_tax_quote(cur, skus, products, nets, $3, $4);
	RETURN QUERY
	SELECT ci.sku_id, s.code, p.name, p.price, p.currency, ci.qty,
		   p.price * ci.qty, d.x,
		   (sum(p.price * ci.qty) OVER ())::bigint, disc,
		   (sum(p.price * ci.qty) OVER ())::bigint - disc + st.shipping + st.tax,
		   d.t, st.shipping, st.tax, st.tax_included
	  FROM shop.cart c
	  JOIN shop.cart_item ci ON ci.cart_id = c.id
	  JOIN shop.sku s ON s.id = ci.sku_id
	  JOIN shop.product p ON p.id = s.product_id
	  JOIN unnest(skus, shares, st.line_taxes) AS d(sku, x, t) ON d.sku = ci.sku_id
	 WHERE c.user_id = $1 AND c.checked_out_at IS NULL
	 ORDER BY ci.sku_id;
END
$$;
COMMENT ON FUNCTION shop.shop_cart_preview(text, text, text, jsonb) IS
	'the open cart''s lines with current prices, each line''s share of the coupon''s discount and its tax, with subtotal, discount, shipping, tax and total; refuses what checkout would refuse (SH025-SH030, SH031-SH033), without taking anything';

-- API: Public (shipping) and Operator (fulfilment): C, src/shipping.c

CREATE TYPE shop.fulfilment_summary AS (
	order_id			bigint,
	status				text,
	fulfilment_status	text,
	carrier				text,
	tracking_no			text,
	shipped_at			timestamptz,
	delivered_at		timestamptz
);

CREATE FUNCTION shop.shop_set_shipping(order_id bigint, method text, address jsonb)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_set_shipping'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_set_shipping(bigint, text, jsonb) IS
	'choose the shipping method and address of a PENDING order, re-pricing shipping, tax and amount; refused (SH034) once a checkout was started at a provider';

CREATE FUNCTION shop.shop_ship(order_id bigint, carrier text, tracking text)
	RETURNS shop.fulfilment_summary
	AS 'MODULE_PATHNAME', 'shop_ship'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_ship(bigint, text, text) IS
	'mark a READY (PAID, with an address) order SHIPPED with carrier and tracking number (event order.shipped); the same call again returns it unchanged';

CREATE FUNCTION shop.shop_mark_delivered(order_id bigint)
	RETURNS shop.fulfilment_summary
	AS 'MODULE_PATHNAME', 'shop_mark_delivered'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_mark_delivered(bigint) IS
	'mark a SHIPPED order DELIVERED (event order.delivered); a DELIVERED order is returned unchanged';

-- The warehouse's work list: orders paid and not shipped yet, oldest first.
CREATE VIEW shop.warehouse_queue AS
SELECT o.id AS order_id,
	   o.user_id,
	   o.created_at,
	   pg_catalog.now() OPERATOR(pg_catalog.-) o.created_at AS age,
	   o.shipping_method,
	   o.ship_to,
	   (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('sku_id', i.sku_id,
				'sku_code', i.sku_code, 'product_name', i.product_name, 'qty', i.qty)
				ORDER BY i.sku_id)
		  FROM shop.order_item i WHERE i.order_id OPERATOR(pg_catalog.=) o.id) AS items,
	   o.amount,
	   o.currency
  FROM shop.orders o
 WHERE o.fulfilment_status OPERATOR(pg_catalog.=) 'READY'
 ORDER BY o.created_at, o.id;
COMMENT ON VIEW shop.warehouse_queue IS 'PAID orders with an address that are not shipped yet (fulfilment READY), oldest first';

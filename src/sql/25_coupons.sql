-- shop install script, part 2b: coupons (README, "Money and coupons").
--
-- The money rules live here, in SQL, so the preview and the order use the
-- same code: shop.coupon_quote() checks a coupon against a list of lines and
-- splits its discount over them.  order.c calls shop.coupon_redeem() after
-- the order's lines are reserved; the release paths (order_state.c,
-- expiry.c, reserve.c: coupon.c) give a redemption back, and a late
-- payment (webhook.c) takes it again with shop.coupon_retake().
--
-- Lock order: order row, then SKU rows (ascending), then the coupon row.
-- Every path that locks a coupon row does so after all its SKU locks, so
-- coupons add no deadlock to the stock paths.
--
-- Refusals (README, "Errors"):
--   SH025 unknown coupon code
--   SH026 coupon not valid now (inactive, not yet valid, or expired)
--   SH027 coupon exhausted (max_redemptions in total or max_per_user reached)
--   SH028 subtotal below the coupon's min_subtotal
--   SH029 coupon not for these items (none of its products in the order)
--   SH030 fixed coupon in another currency than the order

CREATE TYPE shop.cart_preview_row AS (
	sku_id			bigint,
	sku_code		text,
	product_name	text,
	unit_price		bigint,
	currency		char(3),
	qty				integer,
	line_total		bigint,
	line_discount	bigint,
	subtotal		bigint,
	discount		bigint,
	total			bigint,
	-- shipping and tax (src/sql/27_shipping_tax.sql); total is
	-- subtotal - discount + shipping + tax
	line_tax		bigint,
	shipping		bigint,
	tax				bigint,
	tax_included	bigint
);

-- Check coupon p_code for lines (ascending sku_id: p_skus, their products
-- and line totals) of user p_user in p_currency, and split its discount.
-- With p_lock the coupon row is locked (FOR UPDATE) first, so the limits
-- read here hold until the caller's transaction ends.
--
-- The rounding rule: a percent discount is computed on the eligible
-- subtotal (all lines, or the lines of the coupon's products), rounded half
-- up to the minor unit; a fixed discount is capped at the eligible
-- subtotal.  It is split over the eligible lines in proportion to their
-- line totals, rounded down per line; the remainder goes to the largest
-- line (ties: lowest sku_id), and only if that line is full to the next
-- largest, so the lines add up exactly to the discount and no line is
-- discounted below 0.
CREATE FUNCTION shop.coupon_quote(p_code text, p_user text, p_currency text,
								  p_skus bigint[], p_products bigint[], p_totals bigint[],
								  p_lock boolean,
								  OUT coupon_id bigint, OUT discount bigint,
								  OUT line_discounts bigint[])
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c			shop.coupon;
	n			integer := coalesce(cardinality(p_skus), 0);
	subtotal	numeric := 0;
	eligible	numeric := 0;
	used		integer;
	d			bigint;
	rest		bigint;
	share		bigint;
	i			integer;
	idx			integer;
BEGIN
	IF p_code IS NULL THEN
		RAISE EXCEPTION 'coupon_code must not be null' USING ERRCODE = '22004';
	END IF;
	IF p_lock THEN
		SELECT * INTO c FROM shop.coupon k WHERE lower(k.code) = lower(p_code) FOR UPDATE;
	ELSE
		SELECT * INTO c FROM shop.coupon k WHERE lower(k.code) = lower(p_code);
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coupon "%" does not exist', p_code
			USING ERRCODE = 'SH025', HINT = 'Check the code; codes are not case-sensitive.';
	END IF;
	IF NOT c.is_active OR now() < c.valid_from OR now() >= c.valid_to THEN
		RAISE EXCEPTION 'coupon "%" is not valid now', c.code
			USING ERRCODE = 'SH026',
				  DETAIL = format('active %s, valid from %s to %s', c.is_active,
								  coalesce(c.valid_from::text, '-'), coalesce(c.valid_to::text, '-'));
	END IF;
	IF c.kind = 'fixed' AND c.currency <> p_currency THEN
		RAISE EXCEPTION 'coupon "%" is in %, the order in %', c.code, c.currency, p_currency
			USING ERRCODE = 'SH030';
	END IF;
	FOR i IN 1 .. n LOOP
		subtotal := subtotal + p_totals[i];
		IF c.product_ids IS NULL OR p_products[i] = ANY (c.product_ids) THEN
			eligible := eligible + p_totals[i];
		END IF;
	END LOOP;
	IF subtotal < c.min_subtotal THEN
		RAISE EXCEPTION 'subtotal % is below the minimum % of coupon "%"', subtotal, c.min_subtotal, c.code
			USING ERRCODE = 'SH028';
	END IF;
	IF c.product_ids IS NOT NULL AND NOT EXISTS
		(SELECT FROM unnest(p_products) p WHERE p = ANY (c.product_ids)) THEN
		RAISE EXCEPTION 'coupon "%" is not for these items', c.code
			USING ERRCODE = 'SH029',
				  DETAIL = format('It applies to products %s only.', c.product_ids);
	END IF;
	IF c.max_redemptions IS NOT NULL AND c.redeemed >= c.max_redemptions THEN
		RAISE EXCEPTION 'coupon "%" is used up', c.code
			USING ERRCODE = 'SH027', DETAIL = format('All %s redemptions are taken.', c.max_redemptions);
	END IF;
	IF c.max_per_user IS NOT NULL THEN
		SELECT count(*) INTO used FROM shop.coupon_redemption r
		 WHERE r.coupon_id = c.id AND r.user_id = p_user AND r.state = 'active';
		IF used >= c.max_per_user THEN
			RAISE EXCEPTION 'coupon "%" is used up for user "%"', c.code, p_user
				USING ERRCODE = 'SH027', DETAIL = format('At most %s per user.', c.max_per_user);
		END IF;
	END IF;

	IF c.kind = 'percent' THEN
		d := round(eligible * c.percent / 100);		-- numeric round: half up for >= 0
	ELSE
		d := least(c.amount::numeric, eligible);
	END IF;

	line_discounts := array_fill(0::bigint, ARRAY[n]);
	rest := d;
	IF eligible > 0 THEN
		FOR i IN 1 .. n LOOP
			IF c.product_ids IS NULL OR p_products[i] = ANY (c.product_ids) THEN
				share := floor(d::numeric * p_totals[i] / eligible);
				line_discounts[i] := share;
				rest := rest - share;
			END IF;
		END LOOP;
		-- the remainder: largest line first (ties: lowest sku_id), capped at
		-- each line's total
		FOR idx IN
			SELECT t.i FROM unnest(p_totals, p_skus, p_products) WITH ORDINALITY AS t(total, sku, product, i)
			 WHERE c.product_ids IS NULL OR t.product = ANY (c.product_ids)
			 ORDER BY t.total DESC, t.sku
		LOOP
			EXIT WHEN rest = 0;
			share := least(rest, p_totals[idx] - line_discounts[idx]);
			line_discounts[idx] := line_discounts[idx] + share;
			rest := rest - share;
		END LOOP;
	END IF;
	coupon_id := c.id;
	discount := d;
END
$$;
COMMENT ON FUNCTION shop.coupon_quote(text, text, text, bigint[], bigint[], bigint[], boolean) IS
	'internal: check a coupon against order lines and split its discount over them (the rounding rule); raises SH025-SH030';

-- Apply coupon p_code to order p_order (its lines reserved, amount not yet
-- set): take a redemption and write each line's share.  Called by order.c
-- after every SKU lock of the order is held.  Returns the discount.
CREATE FUNCTION shop.coupon_redeem(p_order bigint, p_user text, p_code text, p_currency text)
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	skus		bigint[];
	products	bigint[];
	totals		bigint[];
	q			record;
BEGIN
	SELECT array_agg(i.sku_id ORDER BY i.sku_id), array_agg(s.product_id ORDER BY i.sku_id),
		   array_agg(i.unit_price * i.qty ORDER BY i.sku_id)
	  INTO skus, products, totals
	  FROM shop.order_item i JOIN shop.sku s ON s.id = i.sku_id
	 WHERE i.order_id = p_order;
	-- locks the coupon row: the limits checked stay true until commit
	q := shop.coupon_quote(p_code, p_user, p_currency, skus, products, totals, true);
	-- the total limit, checked and counted in one statement
	UPDATE shop.coupon SET redeemed = redeemed + 1
	 WHERE id = q.coupon_id AND (max_redemptions IS NULL OR redeemed < max_redemptions);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'coupon "%" is used up', p_code USING ERRCODE = 'SH027';
	END IF;
	INSERT INTO shop.coupon_redemption (coupon_id, order_id, user_id)
	VALUES (q.coupon_id, p_order, p_user);
	UPDATE shop.order_item i SET discount = d.x
	  FROM unnest(skus, q.line_discounts) AS d(sku, x)
	 WHERE i.order_id = p_order AND i.sku_id = d.sku AND d.x <> 0;
	RETURN q.discount;
END
$$;
COMMENT ON FUNCTION shop.coupon_redeem(bigint, text, text, text) IS
	'internal (shop_create_order, shop_buy_now): redeem a coupon for an order whose lines are reserved; returns the discount';

-- A late payment re-reserved released order p_order: take its released
-- redemption again if the limits allow.  false: they do not (the caller
-- gives the stock back and sends the order to review).  Called after every
-- SKU lock of the order is held.
CREATE FUNCTION shop.coupon_retake(p_order bigint)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r		shop.coupon_redemption;
	c		shop.coupon;
	used	integer;
BEGIN
	SELECT * INTO r FROM shop.coupon_redemption WHERE order_id = p_order;
	IF NOT FOUND OR r.state = 'active' THEN
		RETURN true;
	END IF;
	SELECT * INTO c FROM shop.coupon WHERE id = r.coupon_id FOR UPDATE;
	IF c.max_redemptions IS NOT NULL AND c.redeemed >= c.max_redemptions THEN
		RETURN false;
	END IF;
	IF c.max_per_user IS NOT NULL THEN
		SELECT count(*) INTO used FROM shop.coupon_redemption x
		 WHERE x.coupon_id = c.id AND x.user_id = r.user_id AND x.state = 'active';
		IF used >= c.max_per_user THEN
			RETURN false;
		END IF;
	END IF;
	UPDATE shop.coupon SET redeemed = redeemed + 1 WHERE id = c.id;
	UPDATE shop.coupon_redemption SET state = 'active', state_changed_at = now()
	 WHERE id = r.id;
	RETURN true;
END
$$;
COMMENT ON FUNCTION shop.coupon_retake(bigint) IS
	'internal (payment webhook): take a re-reserved order''s released coupon redemption again; false when the coupon''s limits no longer allow it';

-- API: Operator

CREATE FUNCTION shop.shop_set_coupon(code text, kind text, value bigint,
									 currency text DEFAULT NULL,
									 min_subtotal bigint DEFAULT 0,
									 valid_from timestamptz DEFAULT NULL,
									 valid_to timestamptz DEFAULT NULL,
									 max_redemptions integer DEFAULT NULL,
									 max_per_user integer DEFAULT NULL,
									 is_active boolean DEFAULT true,
									 product_ids bigint[] DEFAULT NULL)
	RETURNS shop.coupon
	LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	INSERT INTO shop.coupon AS k (code, kind, percent, amount, currency, min_subtotal,
								  valid_from, valid_to, max_redemptions, max_per_user,
								  is_active, product_ids)
	VALUES ($1, $2,
			CASE WHEN $2 = 'percent' THEN $3::integer END,
			CASE WHEN $2 = 'fixed' THEN $3 END,
			CASE WHEN $2 = 'fixed' THEN upper($4) END,
			$5, $6, $7, $8, $9, $10, $11)
	ON CONFLICT ((lower(code))) DO UPDATE
	   SET kind = excluded.kind, percent = excluded.percent, amount = excluded.amount,
		   currency = excluded.currency, min_subtotal = excluded.min_subtotal,
		   valid_from = excluded.valid_from, valid_to = excluded.valid_to,
		   max_redemptions = excluded.max_redemptions, max_per_user = excluded.max_per_user,
		   is_active = excluded.is_active, product_ids = excluded.product_ids,
		   updated_at = now()
	RETURNING k.*
$$;
COMMENT ON FUNCTION shop.shop_set_coupon(text, text, bigint, text, bigint, timestamptz, timestamptz, integer, integer, boolean, bigint[]) IS
	'create or update (matched case-insensitively by code) a coupon: kind percent (value 1-100) or fixed (value in minor units of currency); the redemption count is kept';

-- shop.shop_cart_preview (coupon, shipping and tax): src/sql/27_shipping_tax.sql

-- shop install script, part 3: read-only views for DBAs and the invariant check.

CREATE VIEW shop.sku_stock AS
SELECT s.id AS sku_id,
	   s.code,
	   s.product_id,
	   p.name AS product_name,
	   s.on_hand OPERATOR(pg_catalog.+) COALESCE(b.on_hand, 0) AS on_hand,
	   s.reserved OPERATOR(pg_catalog.+) COALESCE(b.reserved, 0) AS reserved,
	   s.on_hand OPERATOR(pg_catalog.-) s.reserved
		   OPERATOR(pg_catalog.+) COALESCE(b.available, 0) AS available,
	   s.is_active AND p.is_active AS sellable,
	   s.buckets
  FROM shop.sku s
  JOIN shop.product p ON p.id OPERATOR(pg_catalog.=) s.product_id
  -- a hot SKU's buckets (src/hot.c) count with its own row
  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(k.on_hand)::bigint AS on_hand,
			   pg_catalog.sum(k.reserved)::bigint AS reserved,
			   pg_catalog.sum(k.on_hand OPERATOR(pg_catalog.-) k.reserved)::bigint AS available
		  FROM shop.sku_bucket k
		 WHERE k.sku_id OPERATOR(pg_catalog.=) s.id) b ON true;
COMMENT ON VIEW shop.sku_stock IS 'on_hand, reserved and available (on_hand - reserved) per SKU, a hot SKU''s buckets included; buckets is its mode (0: sold from its own row)';

-- A hot SKU's buckets one by one (src/hot.c): where its stock is held.
CREATE VIEW shop.sku_buckets AS
SELECT k.sku_id,
	   s.code,
	   k.bucket,
	   k.on_hand,
	   k.reserved,
	   k.on_hand OPERATOR(pg_catalog.-) k.reserved AS available,
	   k.bucket OPERATOR(pg_catalog.<=) s.buckets AS in_use
  FROM shop.sku_bucket k
  JOIN shop.sku s ON s.id OPERATOR(pg_catalog.=) k.sku_id;
COMMENT ON VIEW shop.sku_buckets IS 'the stock buckets of hot SKUs; in_use is false for a bucket beyond the SKU''s current mode, which only settles what it still holds';

CREATE VIEW shop.active_reservations AS
SELECT r.id AS reservation_id,
	   r.order_id,
	   r.sku_id,
	   s.code AS sku_code,
	   r.qty,
	   r.created_at,
	   pg_catalog.now() OPERATOR(pg_catalog.-) r.created_at AS age,
	   o.status AS order_status,
	   o.expires_at,
	   o.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired
  FROM shop.stock_reservation r
  JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) r.order_id
  JOIN shop.sku s ON s.id OPERATOR(pg_catalog.=) r.sku_id
 WHERE r.state OPERATOR(pg_catalog.=) 'active';
COMMENT ON VIEW shop.active_reservations IS 'stock held by orders awaiting payment, with age and the order''s expiry';

CREATE VIEW shop.expiring_orders AS
SELECT o.id AS order_id,
	   o.user_id,
	   o.amount,
	   o.currency,
	   o.created_at,
	   o.expires_at,
	   o.expires_at OPERATOR(pg_catalog.-) pg_catalog.now() AS time_left,
	   o.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired
  FROM shop.orders o
 WHERE o.status OPERATOR(pg_catalog.=) 'PENDING';
COMMENT ON VIEW shop.expiring_orders IS 'PENDING orders by expiry; expired ones are released by shop.shop_expire_pending()';

CREATE TYPE shop.invariant_violation AS (
	check_name	text,
	subject		text,
	detail		text
);

-- The refund rules (issue 13), read by shop_check_invariants().  PL/pgSQL
-- because the refund tables are created by a later part of the install
-- script (src/sql/60_provider_calls.sql): its queries are planned when it
-- first runs.  Granted to no one; shop_check_invariants() reports its rows.
CREATE FUNCTION shop.refund_invariants()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	-- refunds requested or made never exceed what the order's payment paid
	SELECT 'refunded_within_paid'::text, 'order ' || o.id,
		   format('%s refunded (requested or succeeded) of a payment of %s', r.refunded, o.amount)
	  FROM shop.orders o
	  JOIN (SELECT x.order_id, x.payment_id, sum(x.amount) AS refunded
			  FROM shop.refund x WHERE x.state <> 'failed'
			 GROUP BY x.order_id, x.payment_id) r
		ON r.order_id = o.id AND r.payment_id = o.external_payment_id
	 WHERE r.refunded > o.amount
	UNION ALL
	-- a line's units are refunded, and restocked, at most once
	SELECT 'refunded_units_within_sold', 'order ' || i.order_id,
		   format('line %s (sku %s) sold %s units; refunds returned %s, restocked %s',
				  i.id, i.sku_id, i.qty, l.units, l.restocked)
	  FROM shop.order_item i
	  JOIN (SELECT order_item_id, sum(qty) AS units,
				   coalesce(sum(qty) FILTER (WHERE restocked), 0) AS restocked
			  FROM shop.refund_line GROUP BY order_item_id) l ON l.order_item_id = i.id
	 WHERE l.units > i.qty OR l.restocked > i.qty
	UNION ALL
	-- a refund returns lines of its own order only
	SELECT 'refund_line_of_its_order', 'order ' || r.order_id,
		   format('refund %s has refund line %s of order %s', r.id, l.id, i.order_id)
	  FROM shop.refund_line l
	  JOIN shop.order_item i ON i.id = l.order_item_id
	  JOIN shop.refund r ON r.id = l.refund_id
	 WHERE r.order_id <> i.order_id
	UNION ALL
	-- the books: every restocked unit is one stock adjustment of its SKU
	-- (so initial + adjustments - consumed still explains on_hand)
	SELECT 'restock_booked_as_adjustment', 'sku ' || i.sku_id,
		   format('refund line %s restocked %s units; its adjustment %s is %s',
				  l.id, l.qty, l.adjustment_id,
				  coalesce(format('%s units of sku %s', a.delta, a.sku_id), 'missing'))
	  FROM shop.refund_line l
	  JOIN shop.order_item i ON i.id = l.order_item_id
	  LEFT JOIN shop.stock_adjustment a ON a.id = l.adjustment_id
	 WHERE l.restocked
	   AND (a.id IS NULL OR a.sku_id <> i.sku_id OR a.delta <> l.qty);
END
$$;
COMMENT ON FUNCTION shop.refund_invariants() IS
	'the refund rows of shop_check_invariants(): refunds within the paid amount, refunded and restocked units within the sold ones, every restock booked as its stock adjustment';

-- A pure read-only report, so plain SQL: one query that states each rule.
CREATE FUNCTION shop.shop_check_invariants()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	WITH held AS (
		SELECT sku_id, bucket, sum(qty) AS qty
		  FROM shop.stock_reservation
		 WHERE state = 'active'
		 GROUP BY sku_id, bucket
	)
	-- every stock row (a SKU's own row is bucket 0) holds exactly what its
	-- active reservations say
	SELECT 'reserved_matches_active_reservations', 'sku ' || s.id,
		   format('reserved is %s but active reservations hold %s', s.reserved, coalesce(h.qty, 0))
	  FROM shop.sku s LEFT JOIN held h ON h.sku_id = s.id AND h.bucket = 0
	 WHERE s.reserved <> coalesce(h.qty, 0)
	UNION ALL
	SELECT 'reserved_matches_active_reservations', 'sku ' || k.sku_id || ' bucket ' || k.bucket,
		   format('reserved is %s but active reservations hold %s', k.reserved, coalesce(h.qty, 0))
	  FROM shop.sku_bucket k LEFT JOIN held h ON h.sku_id = k.sku_id AND h.bucket = k.bucket
	 WHERE k.reserved <> coalesce(h.qty, 0)
	UNION ALL
	SELECT 'reservation_in_existing_bucket', 'sku ' || h.sku_id || ' bucket ' || h.bucket,
		   format('active reservations hold %s units in a bucket that does not exist', h.qty)
	  FROM held h
	 WHERE h.bucket > 0
	   AND NOT EXISTS (SELECT FROM shop.sku_bucket k WHERE k.sku_id = h.sku_id AND k.bucket = h.bucket)
	UNION ALL
	SELECT 'stock_within_bounds', 'sku ' || s.id,
		   format('on_hand %s, reserved %s', s.on_hand, s.reserved)
	  FROM shop.sku s
	 WHERE s.on_hand < 0 OR s.reserved < 0 OR s.reserved > s.on_hand
	UNION ALL
	SELECT 'stock_within_bounds', 'sku ' || k.sku_id || ' bucket ' || k.bucket,
		   format('on_hand %s, reserved %s', k.on_hand, k.reserved)
	  FROM shop.sku_bucket k
	 WHERE k.on_hand < 0 OR k.reserved < 0 OR k.reserved > k.on_hand
	UNION ALL
	-- a hot SKU sells from buckets 1..N: each of them exists
	SELECT 'hot_sku_has_its_buckets', 'sku ' || s.id,
		   format('mode is %s buckets but %s of them exist', s.buckets,
				  (SELECT count(*) FROM shop.sku_bucket k WHERE k.sku_id = s.id AND k.bucket <= s.buckets))
	  FROM shop.sku s
	 WHERE s.buckets > 0
	   AND (SELECT count(*) FROM shop.sku_bucket k WHERE k.sku_id = s.id AND k.bucket <= s.buckets) <> s.buckets
	UNION ALL
	SELECT 'settled_order_holds_no_stock', 'order ' || o.id,
		   format('%s order has an active reservation of %s units of sku %s', o.status, r.qty, r.sku_id)
	  FROM shop.orders o JOIN shop.stock_reservation r ON r.order_id = o.id
	 WHERE o.status IN ('PAID', 'CANCELLED', 'FAILED') AND r.state = 'active'
	UNION ALL
	SELECT 'paid_order_consumed_its_lines', 'order ' || o.id,
		   format('PAID order line for sku %s has reservation state %s', i.sku_id, coalesce(r.state, 'missing'))
	  FROM shop.orders o
	  JOIN shop.order_item i ON i.order_id = o.id
	  LEFT JOIN shop.stock_reservation r ON r.order_id = o.id AND r.sku_id = i.sku_id
	 WHERE o.status = 'PAID' AND (r.state IS DISTINCT FROM 'consumed' OR r.qty <> i.qty)
	UNION ALL
	SELECT 'pending_order_holds_its_lines', 'order ' || o.id,
		   format('PENDING order line for sku %s has reservation state %s', i.sku_id, coalesce(r.state, 'missing'))
	  FROM shop.orders o
	  JOIN shop.order_item i ON i.order_id = o.id
	  LEFT JOIN shop.stock_reservation r ON r.order_id = o.id AND r.sku_id = i.sku_id
	 WHERE o.status = 'PENDING' AND (r.state IS DISTINCT FROM 'active' OR r.qty <> i.qty)
	UNION ALL
	SELECT 'amount_matches_lines', 'order ' || o.id,
		   format('amount %s, lines sum to %s', o.amount, l.total - l.discount + o.shipping + o.tax)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED' AND o.amount <> l.total - l.discount + o.shipping + o.tax
	UNION ALL
	-- the money model: amount = subtotal - discount + shipping + tax (also
	-- a CHECK), the lines' totals are the subtotal, their shares the
	-- discount, their taxes the order's tax (added or included)
	SELECT 'subtotal_and_discount_match_lines', 'order ' || o.id,
		   format('subtotal %s, discount %s, shipping %s, tax %s, amount %s; lines: total %s, discount %s',
				  o.subtotal, o.discount, o.shipping, o.tax, o.amount, l.total, l.discount)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(unit_price::numeric * qty) AS total, sum(discount) AS discount
			  FROM shop.order_item GROUP BY order_id) l ON l.order_id = o.id
	 WHERE o.status <> 'CREATED'
	   AND (o.subtotal <> l.total OR o.discount <> l.discount
			OR o.amount <> o.subtotal - o.discount + o.shipping + o.tax)
	UNION ALL
	SELECT 'tax_matches_lines', 'order ' || o.id,
		   format('tax %s, tax included %s; lines'' tax sums to %s', o.tax, o.tax_included, l.tax)
	  FROM shop.orders o
	  JOIN (SELECT order_id, sum(tax) AS tax FROM shop.order_item GROUP BY order_id) l
		ON l.order_id = o.id
	 WHERE o.status <> 'CREATED'
	   AND (o.tax + o.tax_included <> l.tax OR (o.tax <> 0 AND o.tax_included <> 0))
	UNION ALL
	SELECT 'included_tax_within_lines', 'order ' || i.order_id,
		   format('line of sku %s includes tax %s of its net %s', i.sku_id, i.tax,
				  i.unit_price::numeric * i.qty - i.discount)
	  FROM shop.orders o JOIN shop.order_item i ON i.order_id = o.id
	 WHERE o.tax_included > 0 AND i.tax > i.unit_price::numeric * i.qty - i.discount
	UNION ALL
	SELECT 'fulfilment_only_when_paid', 'order ' || o.id,
		   format('%s order has fulfilment %s', o.status, o.fulfilment_status)
	  FROM shop.orders o
	 WHERE o.shipped_at IS NOT NULL AND o.status <> 'PAID'
	UNION ALL
	SELECT 'coupon_redeemed_matches_redemptions', 'coupon ' || c.id,
		   format('redeemed is %s but %s redemptions are active, limit %s',
				  c.redeemed, coalesce(r.n, 0), coalesce(c.max_redemptions::text, 'none'))
	  FROM shop.coupon c
	  LEFT JOIN (SELECT coupon_id, count(*) AS n FROM shop.coupon_redemption
				  WHERE state = 'active' GROUP BY coupon_id) r ON r.coupon_id = c.id
	 WHERE c.redeemed <> coalesce(r.n, 0) OR c.redeemed > c.max_redemptions
	UNION ALL
	SELECT 'coupon_within_user_limit', 'coupon ' || c.id,
		   format('user %s holds %s active redemptions, limit %s', r.user_id, r.n, c.max_per_user)
	  FROM shop.coupon c
	  JOIN (SELECT coupon_id, user_id, count(*) AS n FROM shop.coupon_redemption
			 WHERE state = 'active' GROUP BY coupon_id, user_id) r ON r.coupon_id = c.id
	 WHERE r.n > c.max_per_user
	UNION ALL
	SELECT 'released_order_holds_no_coupon', 'order ' || o.id,
		   format('%s order holds an active redemption of coupon %s', o.status, r.coupon_id)
	  FROM shop.orders o JOIN shop.coupon_redemption r ON r.order_id = o.id
	 WHERE o.status IN ('CANCELLED', 'FAILED') AND r.state = 'active'
	UNION ALL
	SELECT 'one_open_cart_per_user', 'user ' || c.user_id,
		   format('%s open carts', count(*))
	  FROM shop.cart c
	 WHERE c.checked_out_at IS NULL
	 GROUP BY c.user_id
	HAVING count(*) > 1
	UNION ALL
	SELECT * FROM shop.refund_invariants()
$$;
COMMENT ON FUNCTION shop.shop_check_invariants() IS
	'one row per broken stock or order invariant; empty when all is well';

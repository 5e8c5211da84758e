-- shop install script, part 3: read-only views for DBAs and the invariant check.

CREATE VIEW shop.sku_stock AS
SELECT s.id AS sku_id,
	   s.code,
	   s.product_id,
	   p.name AS product_name,
	   s.on_hand,
	   s.reserved,
	   s.on_hand OPERATOR(pg_catalog.-) s.reserved AS available,
	   s.is_active AND p.is_active AS sellable
  FROM shop.sku s
  JOIN shop.product p ON p.id OPERATOR(pg_catalog.=) s.product_id;
COMMENT ON VIEW shop.sku_stock IS 'on_hand, reserved and available (on_hand - reserved) per SKU';

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

-- A pure read-only report, so plain SQL: one query that states each rule.
CREATE FUNCTION shop.shop_check_invariants()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	WITH held AS (
		SELECT sku_id, sum(qty) AS qty
		  FROM shop.stock_reservation
		 WHERE state = 'active'
		 GROUP BY sku_id
	)
	SELECT 'reserved_matches_active_reservations', 'sku ' || s.id,
		   format('reserved is %s but active reservations hold %s', s.reserved, coalesce(h.qty, 0))
	  FROM shop.sku s LEFT JOIN held h ON h.sku_id = s.id
	 WHERE s.reserved <> coalesce(h.qty, 0)
	UNION ALL
	SELECT 'stock_within_bounds', 'sku ' || s.id,
		   format('on_hand %s, reserved %s', s.on_hand, s.reserved)
	  FROM shop.sku s
	 WHERE s.on_hand < 0 OR s.reserved < 0 OR s.reserved > s.on_hand
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
$$;
COMMENT ON FUNCTION shop.shop_check_invariants() IS
	'one row per broken stock or order invariant; empty when all is well';

-- shop install script, part 2: result types and the SQL API.
--
-- Every API function is C, SECURITY DEFINER with a pinned search_path (it
-- reaches tables the caller cannot), and every name inside is
-- schema-qualified.  EXECUTE is revoked from PUBLIC in the last part; the operator
-- grants it to the application's roles.

CREATE TYPE shop.cart_line AS (
	sku_id		bigint,
	qty			integer
);

CREATE TYPE shop.cart_row AS (
	sku_id			bigint,
	sku_code		text,
	product_name	text,
	unit_price		bigint,
	currency		char(3),
	qty				integer,
	line_total		bigint,
	cart_total		bigint
);

CREATE TYPE shop.order_summary AS (
	id			bigint,
	status		text,
	amount		bigint,
	currency	char(3),
	expires_at	timestamptz
);

CREATE TYPE shop.stock_level AS (
	sku_id		bigint,
	on_hand		bigint,
	reserved	bigint,
	available	bigint
);

-- API: Public (cart)

CREATE FUNCTION shop.shop_cart_add(user_id text, sku_id bigint, qty integer)
	RETURNS shop.cart_line
	AS 'MODULE_PATHNAME', 'shop_cart_add'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_cart_add(text, bigint, integer) IS
	'add qty of a SKU to the user''s open cart (created if none); the line total must fit the available stock';

CREATE FUNCTION shop.shop_cart_set_qty(user_id text, sku_id bigint, qty integer)
	RETURNS shop.cart_line
	AS 'MODULE_PATHNAME', 'shop_cart_set_qty'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_cart_set_qty(text, bigint, integer) IS
	'set a cart line to qty (0 removes it); returns the line, qty 0 when removed';

CREATE FUNCTION shop.shop_cart_remove(user_id text, sku_id bigint)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'shop_cart_remove'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_cart_remove(text, bigint) IS
	'remove a SKU from the user''s open cart; true when a line was removed';

CREATE FUNCTION shop.shop_cart(user_id text)
	RETURNS SETOF shop.cart_row
	AS 'MODULE_PATHNAME', 'shop_cart'
	LANGUAGE C STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_cart(text) IS
	'the lines of the user''s open cart with current prices, line totals and the cart total';

-- API: Public (orders)

CREATE FUNCTION shop.shop_create_order(user_id text, idempotency_key text DEFAULT NULL,
										coupon_code text DEFAULT NULL,
										shipping_method text DEFAULT NULL,
										ship_to jsonb DEFAULT NULL)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_create_order'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_create_order(text, text, text, text, jsonb) IS
	'turn the open cart into a PENDING order: reserve every line (all or nothing), snapshot prices, apply the coupon if any, price shipping and tax, close the cart; a repeated (user_id, idempotency_key) returns the first order';

CREATE FUNCTION shop.shop_buy_now(user_id text, items jsonb, idempotency_key text DEFAULT NULL,
								  coupon_code text DEFAULT NULL,
								  shipping_method text DEFAULT NULL,
								  ship_to jsonb DEFAULT NULL)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_buy_now'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_buy_now(text, jsonb, text, text, text, jsonb) IS
	'create a PENDING order from [{"sku_id": N, "qty": N}, ...] without a cart, with the coupon, shipping and tax if any; lines of the same SKU are summed';

CREATE FUNCTION shop.shop_confirm_paid(order_id bigint, external_payment_id text)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_confirm_paid'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_confirm_paid(bigint, text) IS
	'mark a PENDING order PAID and consume its reservations; a PAID order is returned unchanged for the same payment id, refused (SH016) for another';

CREATE FUNCTION shop.shop_confirm_free(order_id bigint)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_confirm_free'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_confirm_free(bigint) IS
	'mark a PENDING order with nothing to pay (amount 0) PAID without a payment; a PAID order of amount 0 is returned unchanged, an order with an amount refused (SH017)';

CREATE FUNCTION shop.shop_release(order_id bigint, reason text DEFAULT 'cancelled')
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_release'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_release(bigint, text) IS
	'cancel a PENDING order and give its reserved stock back; reason is cancelled, customer_cancelled, shop_cancelled or payment_failed (status FAILED); a CANCELLED or FAILED order is returned unchanged';

-- API: Operator

CREATE FUNCTION shop.shop_expire_pending(max_orders integer DEFAULT 1000)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'shop_expire_pending'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_expire_pending(integer) IS
	'release up to max_orders PENDING orders past expires_at (reason expired), skipping orders locked by a concurrent confirm; returns how many';

CREATE FUNCTION shop.shop_adjust_stock(sku_id bigint, delta integer, reason text)
	RETURNS shop.stock_level
	AS 'MODULE_PATHNAME', 'shop_adjust_stock'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_adjust_stock(bigint, integer, text) IS
	'receive (delta > 0) or write off (delta < 0) stock; on_hand never falls below reserved; recorded in shop.stock_adjustment';

CREATE FUNCTION shop.shop_set_sku_mode(sku_id bigint, buckets integer)
	RETURNS shop.stock_level
	AS 'MODULE_PATHNAME', 'shop_set_sku_mode'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_set_sku_mode(bigint, integer) IS
	'hot-SKU mode: sell the SKU from buckets (1-64) so that concurrent buyers do not wait on one row lock, or from its own row again (0); safe on a live SKU; returns its totals';

CREATE FUNCTION shop.shop_schedule_expiry(schedule text DEFAULT '* * * * *')
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'shop_schedule_expiry'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_schedule_expiry(text) IS
	'register (or update) the pg_cron job shop-expire-pending that runs shop.shop_expire_pending(); returns the job id';

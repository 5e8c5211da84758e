-- bench/peers/plpgsql.sql: a straightforward PL/pgSQL port of the shop API.
--
-- What most teams would write instead of C: the same functions, arguments,
-- results and SQLSTATEs as the extension (src/*.c), working on the same
-- shop.* tables, with the same locking discipline:
--   * the cart row is locked first (SELECT ... FOR UPDATE, or created through
--     the one-open-cart-per-user unique index);
--   * order lines are reserved in ascending sku_id, each with ONE statement
--     that checks and reserves (UPDATE ... WHERE on_hand - reserved >= qty);
--   * the first reservation pass runs in a subtransaction (BEGIN ... EXCEPTION),
--     so a shortage rolls it back with its SKU locks, then expired orders
--     holding those SKUs are reclaimed (orders locked SKIP LOCKED) and the
--     releases and reservations are applied in one merged ascending pass;
--   * confirm / release / expiry lock the order(s) first, flip the
--     reservation rows, then move SKU counters in ascending sku_id.
-- Installed into its own schema by bench/run.sh, never by the extension.
-- Like the C functions, the API functions are SECURITY DEFINER with a pinned
-- search_path; the helpers they call (all names schema-qualified) are not, as
-- C's static helpers cost no GUC switch either.

CREATE SCHEMA shop_plpgsql;

-- Argument checks shared by every function (the C code's shop_text_arg).
CREATE FUNCTION shop_plpgsql.check_text(v text, name text, required boolean)
	RETURNS void
	LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF v IS NULL THEN
		IF required THEN
			RAISE EXCEPTION '% must not be null', name USING ERRCODE = '22004';
		END IF;
		RETURN;
	END IF;
	IF octet_length(v) = 0 OR octet_length(v) > 256 THEN
		RAISE EXCEPTION '% must be between 1 and 256 bytes long', name USING ERRCODE = '22023';
	END IF;
END
$$;

-- shop_cart_add(user_id, sku_id, qty): lock or create the open cart, check the
-- whole line against available stock, upsert the line.
CREATE FUNCTION shop_plpgsql.shop_cart_add(p_user_id text, p_sku_id bigint, p_qty integer)
	RETURNS shop.cart_line
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_cart		bigint;
	v_code		text;
	v_sellable	boolean;
	v_available	bigint;
	v_in_cart	integer;
	v_new		integer;
	v_line		shop.cart_line;
BEGIN
	PERFORM shop_plpgsql.check_text(p_user_id, 'user_id', true);
	IF p_sku_id IS NULL OR p_qty IS NULL THEN
		RAISE EXCEPTION 'sku_id and qty must not be null' USING ERRCODE = '22004';
	END IF;
	IF p_qty <= 0 THEN
		RAISE EXCEPTION 'qty must be positive, not %', p_qty USING ERRCODE = '22023';
	END IF;

	FOR tries IN 1..3 LOOP
		SELECT id INTO v_cart FROM shop.cart
		 WHERE user_id = p_user_id AND checked_out_at IS NULL FOR UPDATE;
		EXIT WHEN FOUND;
		INSERT INTO shop.cart (user_id) VALUES (p_user_id)
			ON CONFLICT (user_id) WHERE checked_out_at IS NULL DO NOTHING
			RETURNING id INTO v_cart;
		EXIT WHEN v_cart IS NOT NULL;
	END LOOP;
	IF v_cart IS NULL THEN
		RAISE EXCEPTION 'could not open a cart for user "%"', p_user_id USING ERRCODE = '40001';
	END IF;

	SELECT s.code, s.is_active AND p.is_active, s.on_hand - s.reserved,
		   (SELECT ci.qty FROM shop.cart_item ci WHERE ci.cart_id = v_cart AND ci.sku_id = s.id)
	  INTO v_code, v_sellable, v_available, v_in_cart
	  FROM shop.sku s JOIN shop.product p ON p.id = s.product_id
	 WHERE s.id = p_sku_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'SKU % does not exist', p_sku_id USING ERRCODE = 'P0002';
	END IF;
	IF NOT v_sellable THEN
		RAISE EXCEPTION 'SKU "%" is not for sale', v_code USING ERRCODE = 'SH002';
	END IF;
	v_new := coalesce(v_in_cart, 0) + p_qty;	-- integer overflow raises 22003
	IF v_new > v_available THEN
		RAISE EXCEPTION 'insufficient stock for SKU "%"', v_code USING ERRCODE = 'SH001',
			DETAIL = format('The cart line would hold %s, available %s.', v_new, greatest(v_available, 0));
	END IF;

	INSERT INTO shop.cart_item (cart_id, sku_id, qty) VALUES (v_cart, p_sku_id, v_new)
		ON CONFLICT (cart_id, sku_id) DO UPDATE SET qty = EXCLUDED.qty
		RETURNING sku_id, qty INTO v_line.sku_id, v_line.qty;
	RETURN v_line;
END
$$;

-- Lock up to p_limit expired PENDING orders holding one of p_skus (all
-- expired orders when p_skus is NULL), SKIP LOCKED; mark them CANCELLED
-- (expired) and their reservations released.  Returns the SKU counter moves
-- still to apply, ascending by sku_id, and the number of orders.
CREATE FUNCTION shop_plpgsql.expire_locked(p_skus bigint[], p_limit integer,
	OUT norders integer, OUT rel_skus bigint[], OUT rel_qtys bigint[])
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_ids	bigint[];
BEGIN
	IF p_skus IS NULL THEN
		SELECT array_agg(id) INTO v_ids FROM (
			SELECT id FROM shop.orders
			 WHERE status = 'PENDING' AND expires_at <= now()
			 ORDER BY expires_at, id LIMIT p_limit
			   FOR UPDATE SKIP LOCKED) e;
	ELSE
		SELECT array_agg(id) INTO v_ids FROM (
			SELECT o.id FROM shop.orders o
			 WHERE o.status = 'PENDING' AND o.expires_at <= now()
			   AND o.id IN (SELECT r.order_id FROM shop.stock_reservation r
							 WHERE r.sku_id = ANY (p_skus) AND r.state = 'active')
			 ORDER BY o.expires_at, o.id LIMIT p_limit
			   FOR UPDATE OF o SKIP LOCKED) e;
	END IF;
	norders := coalesce(cardinality(v_ids), 0);
	IF norders = 0 THEN
		RETURN;
	END IF;
	WITH r AS (
		UPDATE shop.stock_reservation SET state = 'released', state_changed_at = now()
		 WHERE order_id = ANY (v_ids) AND state = 'active'
		RETURNING sku_id, qty),
	d AS (SELECT sku_id, sum(qty)::bigint AS qty FROM r GROUP BY sku_id)
	SELECT array_agg(sku_id ORDER BY sku_id), array_agg(qty ORDER BY sku_id)
	  INTO rel_skus, rel_qtys FROM d;
	UPDATE shop.orders
	   SET status = 'CANCELLED', status_reason = 'expired', updated_at = now()
	 WHERE id = ANY (v_ids);
END
$$;

-- One pass over the lines (ascending sku_id), merged with the releases of
-- reclaimed orders (ascending sku_id) so SKU rows are locked in one order.
-- Each line is checked and reserved by one statement that also writes its
-- order_item snapshot and its reservation row.  A short line raises SH001,
-- or the private SQLSTATE SHX01 when the caller will reclaim and retry.
CREATE FUNCTION shop_plpgsql.reserve_pass(p_order_id bigint, p_skus bigint[], p_qtys integer[],
	p_rel_skus bigint[], p_rel_qtys bigint[], p_raise_on_short boolean,
	OUT amount bigint, OUT currency text)
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	i			integer := 1;
	j			integer := 1;
	n			integer := cardinality(p_skus);
	m			integer := coalesce(cardinality(p_rel_skus), 0);
	v_price		bigint;
	v_currency	text;
	v_code		text;
	v_sellable	boolean;
	v_available	bigint;
	v_done		boolean;
BEGIN
	amount := 0;
	WHILE i <= n OR j <= m LOOP
		IF j <= m AND (i > n OR p_rel_skus[j] <= p_skus[i]) THEN
			UPDATE shop.sku SET reserved = reserved - p_rel_qtys[j] WHERE id = p_rel_skus[j];
			j := j + 1;
			CONTINUE;
		END IF;
		v_done := false;
		FOR tries IN 1..3 LOOP
			WITH r AS (
				UPDATE shop.sku s SET reserved = s.reserved + p_qtys[i]
				  FROM shop.product p
				 WHERE s.id = p_skus[i] AND p.id = s.product_id
				   AND s.is_active AND p.is_active
				   AND s.on_hand - s.reserved >= p_qtys[i]
				RETURNING s.id, s.code, p.name, p.price, p.currency),
			it AS (
				INSERT INTO shop.order_item (order_id, sku_id, product_name, sku_code, unit_price, qty)
				SELECT p_order_id, r.id, r.name, r.code, r.price, p_qtys[i] FROM r),
			h AS (
				INSERT INTO shop.stock_reservation (order_id, sku_id, qty)
				SELECT p_order_id, r.id, p_qtys[i] FROM r)
			SELECT r.price, r.currency::text INTO v_price, v_currency FROM r;
			IF FOUND THEN
				v_done := true;
				EXIT;
			END IF;
			-- say why: unknown or unsellable SKU, or short
			SELECT s.code, s.is_active AND p.is_active, s.on_hand - s.reserved
			  INTO v_code, v_sellable, v_available
			  FROM shop.sku s JOIN shop.product p ON p.id = s.product_id
			 WHERE s.id = p_skus[i];
			IF NOT FOUND THEN
				RAISE EXCEPTION 'SKU % does not exist', p_skus[i] USING ERRCODE = 'P0002';
			END IF;
			IF NOT v_sellable THEN
				RAISE EXCEPTION 'SKU "%" is not for sale', v_code USING ERRCODE = 'SH002';
			END IF;
			IF v_available < p_qtys[i] THEN
				IF p_raise_on_short THEN
					RAISE EXCEPTION 'insufficient stock for SKU "%"', v_code USING ERRCODE = 'SH001',
						DETAIL = format('Requested %s, available %s.', p_qtys[i], greatest(v_available, 0));
				END IF;
				RAISE EXCEPTION 'short' USING ERRCODE = 'SHX01';
			END IF;
		END LOOP;
		IF NOT v_done THEN
			RAISE EXCEPTION 'insufficient stock for SKU "%"', v_code USING ERRCODE = 'SH001';
		END IF;
		IF i = 1 THEN
			currency := v_currency;
		ELSIF currency <> v_currency THEN
			RAISE EXCEPTION 'an order cannot mix currencies % and %', currency, v_currency
				USING ERRCODE = 'SH005';
		END IF;
		amount := amount + v_price * p_qtys[i];	-- bigint overflow raises 22003
		i := i + 1;
	END LOOP;
END
$$;

-- Reserve normalised lines for an order, all or nothing, reclaiming expired
-- orders' stock when short (see the header).
CREATE FUNCTION shop_plpgsql.reserve_lines(p_order_id bigint, p_skus bigint[], p_qtys integer[],
	OUT amount bigint, OUT currency text)
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	e	record;
BEGIN
	BEGIN
		SELECT * INTO amount, currency
		  FROM shop_plpgsql.reserve_pass(p_order_id, p_skus, p_qtys, NULL, NULL, false);
		RETURN;
	EXCEPTION WHEN SQLSTATE 'SHX01' THEN
		NULL;	-- rolled back with its SKU locks; reclaim, then the final pass
	END;
	SELECT * INTO e FROM shop_plpgsql.expire_locked(p_skus, 100);
	SELECT * INTO amount, currency
	  FROM shop_plpgsql.reserve_pass(p_order_id, p_skus, p_qtys, e.rel_skus, e.rel_qtys, true);
END
$$;

-- Insert the order, reserve its lines, make it PENDING.  NULL when the
-- idempotency key already names an order (the caller returns that one).
CREATE FUNCTION shop_plpgsql.place_order(p_user_id text, p_key text, p_skus bigint[], p_qtys integer[])
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	v_id		bigint;
	v_res		record;
	v_order		shop.order_summary;
BEGIN
	INSERT INTO shop.orders (user_id, idempotency_key, expires_at)
	VALUES (p_user_id, p_key,
			now() + coalesce(current_setting('shop.reservation_ttl', true), '20min')::interval)
	ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING id INTO v_id;
	IF v_id IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT * INTO v_res FROM shop_plpgsql.reserve_lines(v_id, p_skus, p_qtys);
	UPDATE shop.orders
	   SET status = 'PENDING', amount = v_res.amount, subtotal = v_res.amount, currency = v_res.currency, updated_at = now()
	 WHERE id = v_id
	RETURNING id, status, amount, currency, expires_at INTO v_order;
	RETURN v_order;
END
$$;

-- shop_create_order(user_id, idempotency_key): the open cart becomes a
-- PENDING order; a repeated key returns the first order.
CREATE FUNCTION shop_plpgsql.shop_create_order(p_user_id text, p_key text DEFAULT NULL)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_cart	bigint;
	v_skus	bigint[];
	v_qtys	integer[];
	v_order	shop.order_summary;
BEGIN
	PERFORM shop_plpgsql.check_text(p_user_id, 'user_id', true);
	PERFORM shop_plpgsql.check_text(p_key, 'idempotency_key', false);

	SELECT id INTO v_cart FROM shop.cart
	 WHERE user_id = p_user_id AND checked_out_at IS NULL FOR UPDATE;
	IF p_key IS NOT NULL THEN
		SELECT id, status, amount, currency, expires_at INTO v_order
		  FROM shop.orders WHERE user_id = p_user_id AND idempotency_key = p_key;
		IF FOUND THEN
			RETURN v_order;
		END IF;
	END IF;
	IF v_cart IS NOT NULL THEN
		SELECT array_agg(sku_id ORDER BY sku_id), array_agg(qty ORDER BY sku_id)
		  INTO v_skus, v_qtys
		  FROM shop.cart_item WHERE cart_id = v_cart;
	END IF;
	IF v_skus IS NULL THEN
		RAISE EXCEPTION 'the cart of user "%" is empty', p_user_id USING ERRCODE = 'SH003';
	END IF;
	IF cardinality(v_skus) > 1000 THEN
		RAISE EXCEPTION 'an order may have at most 1000 lines' USING ERRCODE = '22023';
	END IF;

	v_order := shop_plpgsql.place_order(p_user_id, p_key, v_skus, v_qtys);
	IF v_order.id IS NULL THEN
		SELECT id, status, amount, currency, expires_at INTO v_order
		  FROM shop.orders WHERE user_id = p_user_id AND idempotency_key = p_key;
		RETURN v_order;
	END IF;
	UPDATE shop.cart SET checked_out_at = now() WHERE id = v_cart;
	RETURN v_order;
END
$$;

-- Lock the order and settle its active reservations: consume (paid) or
-- release; SKU counters move in ascending sku_id.
CREATE FUNCTION shop_plpgsql.settle(p_order_id bigint, p_consume boolean)
	RETURNS void
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	d	record;
BEGIN
	FOR d IN
		WITH r AS (
			UPDATE shop.stock_reservation
			   SET state = CASE WHEN p_consume THEN 'consumed' ELSE 'released' END,
				   state_changed_at = now()
			 WHERE order_id = p_order_id AND state = 'active'
			RETURNING sku_id, qty)
		SELECT sku_id, sum(qty)::bigint AS qty FROM r GROUP BY sku_id ORDER BY sku_id
	LOOP
		IF p_consume THEN
			UPDATE shop.sku SET on_hand = on_hand - d.qty, reserved = reserved - d.qty
			 WHERE id = d.sku_id;
		ELSE
			UPDATE shop.sku SET reserved = reserved - d.qty WHERE id = d.sku_id;
		END IF;
	END LOOP;
END
$$;

-- shop_confirm_paid(order_id, external_payment_id)
CREATE FUNCTION shop_plpgsql.shop_confirm_paid(p_order_id bigint, p_payment_id text)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_status	text;
	v_order		shop.order_summary;
BEGIN
	IF p_order_id IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM shop_plpgsql.check_text(p_payment_id, 'external_payment_id', true);
	SELECT status INTO v_status FROM shop.orders WHERE id = p_order_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', p_order_id USING ERRCODE = 'P0002';
	END IF;
	IF v_status = 'PAID' THEN
		SELECT id, status, amount, currency, expires_at INTO v_order
		  FROM shop.orders WHERE id = p_order_id;
		RETURN v_order;
	END IF;
	IF v_status IN ('CANCELLED', 'FAILED') THEN
		RAISE EXCEPTION 'order % is % and cannot be confirmed', p_order_id, v_status
			USING ERRCODE = 'SH004';
	END IF;
	PERFORM shop_plpgsql.settle(p_order_id, true);
	UPDATE shop.orders
	   SET status = 'PAID', external_payment_id = p_payment_id, status_reason = NULL, updated_at = now()
	 WHERE id = p_order_id
	RETURNING id, status, amount, currency, expires_at INTO v_order;
	RETURN v_order;
END
$$;

-- shop_release(order_id, reason)
CREATE FUNCTION shop_plpgsql.shop_release(p_order_id bigint, p_reason text DEFAULT 'cancelled')
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_status	text;
	v_order		shop.order_summary;
BEGIN
	IF p_order_id IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM shop_plpgsql.check_text(p_reason, 'reason', true);
	SELECT status INTO v_status FROM shop.orders WHERE id = p_order_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', p_order_id USING ERRCODE = 'P0002';
	END IF;
	IF v_status IN ('CANCELLED', 'FAILED') THEN
		SELECT id, status, amount, currency, expires_at INTO v_order
		  FROM shop.orders WHERE id = p_order_id;
		RETURN v_order;
	END IF;
	IF v_status = 'PAID' THEN
		RAISE EXCEPTION 'order % is PAID and cannot be released', p_order_id USING ERRCODE = 'SH004';
	END IF;
	PERFORM shop_plpgsql.settle(p_order_id, false);
	UPDATE shop.orders
	   SET status = CASE WHEN p_reason = 'payment_failed' THEN 'FAILED' ELSE 'CANCELLED' END,
		   status_reason = p_reason, updated_at = now()
	 WHERE id = p_order_id
	RETURNING id, status, amount, currency, expires_at INTO v_order;
	RETURN v_order;
END
$$;

-- shop_expire_pending(max_orders): release up to max_orders expired PENDING
-- orders, skipping locked ones; returns how many.
CREATE FUNCTION shop_plpgsql.shop_expire_pending(p_max_orders integer DEFAULT 1000)
	RETURNS integer
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	e	record;
BEGIN
	IF p_max_orders IS NULL OR p_max_orders <= 0 THEN
		RAISE EXCEPTION 'max_orders must be positive, not %', p_max_orders USING ERRCODE = '22023';
	END IF;
	SELECT * INTO e FROM shop_plpgsql.expire_locked(NULL, p_max_orders);
	IF e.norders > 0 THEN
		FOR k IN 1 .. coalesce(cardinality(e.rel_skus), 0) LOOP
			UPDATE shop.sku SET reserved = reserved - e.rel_qtys[k] WHERE id = e.rel_skus[k];
		END LOOP;
	END IF;
	RETURN e.norders;
END
$$;

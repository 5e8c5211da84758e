-- shop install script, part 7: schema shop_api, the API that PostgREST (or
-- the shop's own HTTP daemon) exposes to shoppers and payment providers.
--
-- The core functions in schema shop take the user as an argument and trust
-- it.  The wrappers here take the user from the request's verified JWT
-- instead: PostgREST verifies the token, puts its claims in the
-- transaction setting request.jwt.claims (docs/references/transactions.rst,
-- "Request Headers, Cookies and JWT claims") and switches to the role the
-- token names; shop_api.current_user_id() reads the "sub" claim.  A user is
-- never an argument of any shop_api function.
--
-- Anyone who can set request.jwt.claims can act as any user, and every
-- session may set it: grant the shopper's functions only to NOLOGIN roles
-- that PostgREST's authenticator switches to (shop.shop_api_grant warns
-- about a login role; README, "Serving with PostgREST").
--
-- Every function is PL/pgSQL (its plans are kept for the session; a SQL
-- function with SET clauses is planned again on every call, 4x slower for
-- products() as measured) and SECURITY DEFINER with a pinned search_path and
-- schema-qualified names, like the core, so the API roles need no right on
-- schema shop at all.  Nothing is granted to PUBLIC (part 9);
-- shop.shop_api_grant() grants each API role exactly its functions.  PostgREST
-- publishes every function of schema shop_api, so nothing private lives here.
--
-- Errors keep the core's SQLSTATEs.  PostgREST answers a PTnnn SQLSTATE
-- with HTTP status nnn (src/library/PostgREST/Error.hs, mapSQLtoHTTP), so
-- a call without a user raises PT401.

CREATE SCHEMA shop_api;
COMMENT ON SCHEMA shop_api IS
	'the shopper-facing API (PostgREST db-schemas): the user is the JWT "sub" claim, never an argument';

-- API: Public (identity)

-- The user of this request: the "sub" claim of request.jwt.claims.
-- PostgREST sets the claims as a JSON object; after a transaction that set
-- them, a session reads '' instead of NULL (docs/references/transactions.rst),
-- so both mean "no claims".
CREATE FUNCTION shop_api.current_user_id()
	RETURNS text
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	claims text := current_setting('request.jwt.claims', true);
	sub jsonb;
	uid text;
BEGIN
	IF claims IS NOT NULL AND claims <> '' THEN
		sub := claims::jsonb -> 'sub';
	END IF;
	IF sub IS NOT NULL AND jsonb_typeof(sub) = 'string' THEN
		uid := sub #>> '{}';
	END IF;
	IF uid IS NULL OR uid = '' THEN
		RAISE EXCEPTION 'this call needs a signed-in user'
			USING ERRCODE = 'PT401',
				  DETAIL = 'The request has no JWT claims, or no "sub" claim that is a non-empty string.',
				  HINT = 'Send a JWT whose "sub" claim names the user (guests get a token with "sub": "guest:<random>" from the HTTP layer).';
	END IF;
	IF octet_length(uid) > 200 THEN
		RAISE EXCEPTION 'the "sub" claim is longer than 200 bytes'
			USING ERRCODE = '22023';
	END IF;
	RETURN uid;
END
$$;
COMMENT ON FUNCTION shop_api.current_user_id() IS
	'the signed-in user: the "sub" claim of request.jwt.claims (PT401 when there is none, 22023 when longer than 200 bytes)';

-- API: Public (catalog)

-- available is on_hand - reserved, as in shop.sku_stock (stock still held by
-- expired, not yet swept orders is not counted here; a cart add counts it).
CREATE FUNCTION shop_api.products()
	RETURNS TABLE (product_id bigint, product_name text, sku_id bigint, sku_code text,
				   price bigint, currency text, available bigint)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT p.id, p.name, s.sku_id, s.code, p.price, p.currency::text, s.available
	  FROM shop.product p
	  JOIN shop.sku_stock s ON s.product_id = p.id
	 WHERE s.sellable
	 ORDER BY p.id, s.sku_id;
END
$$;
COMMENT ON FUNCTION shop_api.products() IS
	'active products and their active SKUs with price and available stock, by product_id, sku_id; needs no user';

-- For GET /health of an HTTP layer: whether the outbox delivery worker
-- runs.  SECURITY DEFINER because only the owner (or pg_read_all_stats)
-- sees another backend's type in pg_stat_activity; it tells nothing else.
CREATE FUNCTION shop_api.health()
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN jsonb_build_object('worker',
		EXISTS (SELECT FROM pg_catalog.pg_stat_activity
				 WHERE backend_type = 'shop outbox worker'
				   AND datname = pg_catalog.current_database()));
END
$$;
COMMENT ON FUNCTION shop_api.health() IS
	'{"worker": true|false}: whether the outbox delivery worker runs for this database (for an HTTP layer''s health check; anon may call it)';

-- API: Public (cart)

CREATE FUNCTION shop_api.cart()
	RETURNS TABLE (sku_id bigint, sku_code text, product_name text, unit_price bigint,
				   currency text, qty integer, line_total bigint, cart_total bigint)
	LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT c.sku_id, c.sku_code, c.product_name, c.unit_price, c.currency::text, c.qty,
		   c.line_total, c.cart_total
	  FROM shop.shop_cart(shop_api.current_user_id()) c
	 ORDER BY c.sku_id;
END
$$;
COMMENT ON FUNCTION shop_api.cart() IS
	'the caller''s open cart at current prices (shop.shop_cart)';

CREATE FUNCTION shop_api.cart_add(sku_id bigint, qty integer)
	RETURNS shop.cart_line
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_cart_add(shop_api.current_user_id(), $1, $2);
END
$$;
COMMENT ON FUNCTION shop_api.cart_add(bigint, integer) IS
	'add qty of a SKU to the caller''s open cart (shop.shop_cart_add); returns the line (sku_id, qty)';

CREATE FUNCTION shop_api.cart_set_qty(sku_id bigint, qty integer)
	RETURNS shop.cart_line
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_cart_set_qty(shop_api.current_user_id(), $1, $2);
END
$$;
COMMENT ON FUNCTION shop_api.cart_set_qty(bigint, integer) IS
	'set a line of the caller''s open cart to qty, 0 removes it (shop.shop_cart_set_qty); returns the line (sku_id, qty)';

CREATE FUNCTION shop_api.cart_remove(sku_id bigint)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_cart_remove(shop_api.current_user_id(), $1);
END
$$;
COMMENT ON FUNCTION shop_api.cart_remove(bigint) IS
	'remove a SKU from the caller''s open cart; true when there was such a line';

-- A guest (sub "guest:<random>", issued by the HTTP layer) who signs in
-- brings the guest cart along.  Lock order: the guest's open cart first,
-- then the caller's (inside shop_cart_add); only signed-in users are ever
-- merged into and only guests merged from, so two merges never wait for
-- each other in a cycle, and every other cart function locks one cart.
-- Each line goes through shop.shop_cart_add, so the summed line must fit
-- the available stock exactly as for an add (SH001/SH002/P0002 otherwise,
-- and then nothing changes: the error aborts the whole call).  The guest
-- cart's lock makes a concurrent second merge of the same guest wait and
-- then find the cart empty (0), and a guest's concurrent add land before
-- the merge (merged) or after it (left in the guest cart).
CREATE FUNCTION shop_api.cart_merge(guest_sub text)
	RETURNS integer
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	guest_cart bigint;
	line record;
	merged integer := 0;
BEGIN
	IF guest_sub IS NULL THEN
		RAISE EXCEPTION 'guest_sub must not be null' USING ERRCODE = '22004';
	END IF;
	IF starts_with(uid, 'guest:') THEN
		RAISE EXCEPTION 'a guest cannot merge carts'
			USING ERRCODE = '42501',
				  HINT = 'Sign in first; the signed-in user merges the guest''s cart.';
	END IF;
	IF NOT starts_with(guest_sub, 'guest:') OR guest_sub = 'guest:' THEN
		RAISE EXCEPTION 'only a guest''s cart can be merged'
			USING ERRCODE = '42501',
				  DETAIL = 'guest_sub must be the "sub" of a guest token: "guest:<random>".';
	END IF;
	IF octet_length(guest_sub) > 200 THEN
		RAISE EXCEPTION 'guest_sub is longer than 200 bytes' USING ERRCODE = '22023';
	END IF;

	SELECT c.id INTO guest_cart
	  FROM shop.cart c
	 WHERE c.user_id = guest_sub AND c.checked_out_at IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	FOR line IN SELECT i.sku_id, i.qty FROM shop.cart_item i
				 WHERE i.cart_id = guest_cart ORDER BY i.sku_id
	LOOP
		PERFORM shop.shop_cart_add(uid, line.sku_id, line.qty);
		merged := merged + 1;
	END LOOP;
	DELETE FROM shop.cart_item i WHERE i.cart_id = guest_cart;
	RETURN merged;
END
$$;
COMMENT ON FUNCTION shop_api.cart_merge(text) IS
	'move the open cart lines of guest_sub ("guest:<random>") into the caller''s open cart, each as a cart add (all or nothing); empties the guest cart; returns the number of lines merged (0 when there is nothing to merge)';

-- API: Public (orders)

CREATE FUNCTION shop_api.create_order(idempotency_key text DEFAULT NULL)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_create_order(shop_api.current_user_id(), $1);
END
$$;
COMMENT ON FUNCTION shop_api.create_order(text) IS
	'turn the caller''s open cart into a PENDING order (shop.shop_create_order); a repeated idempotency_key returns the first order';

CREATE FUNCTION shop_api.buy_now(items jsonb, idempotency_key text DEFAULT NULL)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN shop.shop_buy_now(shop_api.current_user_id(), $1, $2);
END
$$;
COMMENT ON FUNCTION shop_api.buy_now(jsonb, text) IS
	'a PENDING order for the caller from [{"sku_id": N, "qty": N}, ...] without a cart (shop.shop_buy_now)';

-- The user is looked up before the query runs, so a call without one is
-- PT401 even when there are no orders to scan.
CREATE FUNCTION shop_api.orders()
	RETURNS TABLE (order_id bigint, status text, status_reason text, amount bigint,
				   currency text, created_at timestamptz, expires_at timestamptz)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	RETURN QUERY
	SELECT o.id, o.status, o.status_reason, o.amount, o.currency::text, o.created_at, o.expires_at
	  FROM shop.orders o
	 WHERE o.user_id = uid AND o.status <> 'CREATED'
	 ORDER BY o.created_at DESC, o.id DESC;
END
$$;
COMMENT ON FUNCTION shop_api.orders() IS
	'the caller''s orders, newest first';

-- Another user's order answers exactly as a missing one (PT404, the same
-- message): no way to learn which order ids exist.  PT404 rather than the
-- core's P0002: PostgREST answers PTnnn with HTTP nnn but every P0 code
-- except P0001 with 500.
CREATE FUNCTION shop_api."order"(order_id bigint)
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result jsonb;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	SELECT jsonb_build_object(
			'order_id', o.id, 'status', o.status, 'status_reason', o.status_reason,
			'amount', o.amount, 'currency', o.currency::text,
			'created_at', o.created_at, 'expires_at', o.expires_at)
		-- shipping, tax and fulfilment only when the order has them
		|| CASE WHEN o.ship_to IS NULL AND o.shipping = 0 AND o.tax = 0 AND o.tax_included = 0
				THEN '{}'::jsonb
				ELSE jsonb_build_object('subtotal', o.subtotal, 'discount', o.discount,
					'shipping', o.shipping, 'tax', o.tax, 'tax_included', o.tax_included,
					'shipping_method', o.shipping_method, 'ship_to', o.ship_to,
					'fulfilment_status', o.fulfilment_status, 'carrier', o.carrier,
					'tracking_no', o.tracking_no, 'shipped_at', o.shipped_at,
					'delivered_at', o.delivered_at) END
		|| jsonb_build_object(
			'items', coalesce((
				SELECT jsonb_agg(jsonb_build_object(
						'sku_id', i.sku_id, 'sku_code', i.sku_code, 'product_name', i.product_name,
						'unit_price', i.unit_price, 'qty', i.qty, 'line_total', i.unit_price * i.qty)
						ORDER BY i.sku_id)
				  FROM shop.order_item i WHERE i.order_id = o.id), '[]'::jsonb),
			'payment_sessions', coalesce((
				SELECT jsonb_agg(jsonb_build_object(
						'provider', s.provider, 'session_id', s.session_id, 'url', s.url,
						'state', s.state, 'expires_at', s.expires_at, 'created_at', s.created_at)
						ORDER BY s.id)
				  FROM shop.payment_session s WHERE s.order_id = o.id), '[]'::jsonb))
	  INTO result
	  FROM shop.orders o
	 WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF result IS NULL THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api."order"(bigint) IS
	'one of the caller''s orders with its lines and checkout sessions (PT404 for another user''s order, as for a missing one)';

CREATE FUNCTION shop_api.cancel_order(order_id bigint)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result shop.order_summary;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	-- an order's user never changes: no lock needed to check it
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	SELECT * INTO result FROM shop.shop_release($1, 'customer_cancelled');
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api.cancel_order(bigint) IS
	'cancel the caller''s PENDING order (reason customer_cancelled), giving its stock back; a CANCELLED or FAILED order is returned unchanged, a PAID one refused (SH004)';

-- API: Public (shipping; issue 13)

CREATE FUNCTION shop_api.shipping_methods()
	RETURNS TABLE (code text, name text, currency text, cost bigint, free_over bigint,
				   countries text[])
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT m.code, m.name, m.currency::text, m.cost, m.free_over, m.countries
	  FROM shop.shipping_method m
	 WHERE m.active
	 ORDER BY m.currency, m.cost, m.code;
END
$$;
COMMENT ON FUNCTION shop_api.shipping_methods() IS
	'the active shipping methods (code, name, currency, cost, free_over, countries: NULL for everywhere); needs no user';

CREATE FUNCTION shop_api.set_shipping(order_id bigint, method text, address jsonb)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
	result shop.order_summary;
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	-- an order's user never changes: no lock needed to check it
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	SELECT * INTO result FROM shop.shop_set_shipping($1, $2, $3);
	RETURN result;
END
$$;
COMMENT ON FUNCTION shop_api.set_shipping(bigint, text, jsonb) IS
	'choose the shipping method and address of the caller''s PENDING order (shop.shop_set_shipping), re-pricing shipping, tax and amount; PT404 for another user''s order';

CREATE FUNCTION shop_api.start_payment(order_id bigint, provider text,
									   success_url text, cancel_url text)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN shop.shop_start_payment($1, $2, $3, $4);
END
$$;
COMMENT ON FUNCTION shop_api.start_payment(bigint, text, text, text) IS
	'start the provider''s hosted checkout for the caller''s PENDING order (shop.shop_start_payment); returns the session and its URL';

CREATE FUNCTION shop_api.confirm_payment(order_id bigint, provider text, payment_key text,
										 amount bigint)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN shop.shop_confirm_payment($2, $1, $3, $4);
END
$$;
COMMENT ON FUNCTION shop_api.confirm_payment(bigint, text, text, bigint) IS
	'confirm-style providers (toss): the success page''s call for the caller''s order with the paymentKey and amount the provider gave (shop.shop_confirm_payment)';

CREATE FUNCTION shop_api.confirm_free(order_id bigint)
	RETURNS shop.order_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	uid text := shop_api.current_user_id();
BEGIN
	IF $1 IS NULL THEN
		RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
	END IF;
	PERFORM FROM shop.orders o WHERE o.id = $1 AND o.user_id = uid AND o.status <> 'CREATED';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'order % does not exist', $1 USING ERRCODE = 'PT404';
	END IF;
	RETURN shop.shop_confirm_free($1);
END
$$;
COMMENT ON FUNCTION shop_api.confirm_free(bigint) IS
	'the caller''s PENDING order with nothing to pay (amount 0) becomes PAID without a provider (shop.shop_confirm_free); SH017 when it has an amount';

-- API: Payment webhooks

-- For the shop's HTTP daemon: the core handler as it is (errors propagate
-- unchanged; the daemon maps SH010-SH014 to 400).  Keeps a failing
-- statement, which holds the raw body, out of the server log.
CREATE FUNCTION shop_api.handle_webhook(provider text, headers jsonb, body text)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic
AS $$
BEGIN
	RETURN shop.shop_handle_webhook($1, $2, $3);
END
$$;
COMMENT ON FUNCTION shop_api.handle_webhook(text, jsonb, text) IS
	'the payment webhook handler for the HTTP layer: shop.shop_handle_webhook(provider, headers, raw body); SH010-SH014 mean HTTP 400';

-- For PostgREST: POST /rpc/webhook with the provider's raw body.
--
-- A function with a single unnamed json parameter receives the whole
-- request body of a POST with Content-Type application/json
-- (docs/references/api/functions.rst, "Functions with a single unnamed JSON
-- parameter").  The bytes are passed through untouched: PostgREST keeps the
-- raw body (ApiRequest/Payload.hs: an object body becomes ProcessedJSON
-- with the raw bytes; it is only parsed to check it) and sends it as one
-- parameter of unknown type cast to the parameter's type
-- (Query/SqlFragment.hs, singleParameter: "$1::json").  The json type
-- stores an exact copy of its input text (PostgreSQL, "JSON Types"), so
-- $1::text is the body exactly as the provider signed it; jsonb would
-- re-serialise it and break every signature.  (text would keep the bytes
-- too, but PostgREST passes a text parameter only for Content-Type
-- text/plain, which providers do not send.)
--
-- The headers come from request.headers (names lowercased by PostgREST);
-- the provider from the header x-shop-provider (set by a reverse proxy per
-- provider URL), else the one registered provider whose kind signs with the
-- signature header present.  A refused event (SH010-SH014: nothing was
-- recorded) sets response.status 400 (docs/references/transactions.rst,
-- "Response Status Code") and returns {"error": SQLSTATE, "message": ...};
-- any other error propagates, rolls back, and the provider retries.
CREATE FUNCTION shop_api.webhook(json)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic
AS $$
DECLARE
	raw text := current_setting('request.headers', true);
	headers jsonb := '{}';
	provider text;
	kinds text[];
	candidates text[];
	code text;
	msg text;
BEGIN
	IF raw IS NOT NULL AND raw <> '' THEN
		headers := raw::jsonb;
	END IF;
	BEGIN
		IF jsonb_typeof(headers) <> 'object' THEN
			RAISE EXCEPTION 'request.headers is not a JSON object' USING ERRCODE = 'SH013';
		END IF;
		IF $1 IS NULL THEN
			RAISE EXCEPTION 'webhook body is empty' USING ERRCODE = 'SH014';
		END IF;
		SELECT h.value INTO provider
		  FROM jsonb_each_text(headers) h WHERE lower(h.key) = 'x-shop-provider';
		IF provider = '' THEN
			RAISE EXCEPTION 'the header x-shop-provider is empty' USING ERRCODE = 'SH010';
		ELSIF provider IS NULL THEN
			SELECT CASE WHEN bool_or(lower(h.key) = 'stripe-signature')
							 AND bool_or(lower(h.key) = 'webhook-signature') THEN NULL
						WHEN bool_or(lower(h.key) = 'stripe-signature') THEN ARRAY['stripe']
						WHEN bool_or(lower(h.key) = 'webhook-signature') THEN ARRAY['standard', 'mock']
				   END
			  INTO kinds
			  FROM jsonb_object_keys(headers) h(key);
			IF kinds IS NULL THEN
				RAISE EXCEPTION 'cannot tell the payment provider of this webhook'
					USING ERRCODE = 'SH013',
						  DETAIL = 'There is no x-shop-provider header and not exactly one of the headers stripe-signature and webhook-signature.';
			END IF;
			SELECT array_agg(p.name ORDER BY p.name) INTO candidates
			  FROM shop.payment_provider p WHERE p.kind = ANY (kinds);
			IF coalesce(array_length(candidates, 1), 0) <> 1 THEN
				RAISE EXCEPTION 'cannot tell the payment provider of this webhook'
					USING ERRCODE = 'SH010',
						  DETAIL = format('%s providers of kind %s are registered.',
										  coalesce(array_length(candidates, 1), 0),
										  array_to_string(kinds, ' or ')),
						  HINT = 'Have the reverse proxy set the header x-shop-provider for each provider''s webhook URL.';
			END IF;
			provider := candidates[1];
		END IF;
		RETURN shop.shop_handle_webhook(provider, headers, $1::text);
	EXCEPTION
		WHEN SQLSTATE 'SH010' OR SQLSTATE 'SH011' OR SQLSTATE 'SH012'
			 OR SQLSTATE 'SH013' OR SQLSTATE 'SH014' THEN
			GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			PERFORM set_config('response.status', '400', true);
			RETURN jsonb_build_object('error', code, 'message', msg);
	END;
END
$$;
COMMENT ON FUNCTION shop_api.webhook(json) IS
	'PostgREST''s payment webhook endpoint: the raw body as the single unnamed json argument, headers from request.headers, provider from x-shop-provider or the signature header; a refused event sets response.status 400 and returns {"error", "message"}';

-- Operator: the API roles' rights (in schema shop, which no API role may use)

-- The extension creates no roles; the operator creates them (README,
-- "Serving with PostgREST") and calls this once, and again after each
-- upgrade.  Each role ends with exactly its functions of schema shop_api:
-- whatever else the three roles held there is revoked first.  Nothing on
-- schema shop: the wrappers are SECURITY DEFINER.  Role names go into the
-- GRANTs through format('%I'); each must be an existing role (so "public"
-- cannot be named).
CREATE FUNCTION shop.shop_api_grant(anon_role name, user_role name, webhook_role name)
	RETURNS void
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r name;
BEGIN
	FOREACH r IN ARRAY ARRAY[anon_role, user_role, webhook_role]
	LOOP
		IF r IS NULL THEN
			RAISE EXCEPTION 'anon_role, user_role and webhook_role must not be null'
				USING ERRCODE = '22004';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			RAISE EXCEPTION 'role "%" does not exist', r
				USING ERRCODE = '42704',
					  HINT = 'Create the roles first (README, "Serving with PostgREST"); the extension creates none.';
		END IF;
	END LOOP;
	FOREACH r IN ARRAY ARRAY[anon_role, user_role, webhook_role]
	LOOP
		EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM %I', r);
		EXECUTE format('REVOKE ALL ON SCHEMA shop_api FROM %I', r);
	END LOOP;
	EXECUTE format('GRANT USAGE ON SCHEMA shop_api TO %I, %I, %I', anon_role, user_role, webhook_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.products(), shop_api.health(), shop_api.webhook(json),'
				   ' shop_api.shipping_methods() TO %I', anon_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.current_user_id(), shop_api.products(),'
				   ' shop_api.cart(), shop_api.cart_add(bigint, integer),'
				   ' shop_api.cart_set_qty(bigint, integer), shop_api.cart_remove(bigint),'
				   ' shop_api.cart_merge(text), shop_api.create_order(text),'
				   ' shop_api.buy_now(jsonb, text), shop_api.orders(), shop_api."order"(bigint),'
				   ' shop_api.cancel_order(bigint), shop_api.start_payment(bigint, text, text, text),'
				   ' shop_api.confirm_payment(bigint, text, text, bigint), shop_api.confirm_free(bigint),'
				   ' shop_api.shipping_methods(), shop_api.set_shipping(bigint, text, jsonb)'
				   ' TO %I', user_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.handle_webhook(text, jsonb, text),'
				   ' shop_api.webhook(json) TO %I', webhook_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = user_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any user', user_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it (README, "Serving with PostgREST").';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name) IS
	'grant the PostgREST roles exactly their shop_api functions: anon_role the catalog and the webhook, user_role the shopper''s functions, webhook_role the webhook handlers (revokes anything else they held in shop_api)';

-- API: Operator (issue 11: the operator page, web/ops.html)
--
-- A few operator functions for the HTTP layer, granted only to the operator
-- role by shop.shop_api_grant(anon_role, user_role, webhook_role,
-- operator_role).  The operator signs in with a JWT whose "role" is that
-- role and whose "sub" names the operator (README, "Storefront and operator
-- pages"); every function needs the sub (PT401 without), and stock
-- adjustments record it in their reason.  Thin wrappers over the core and
-- its views: no new rules here.

CREATE FUNCTION shop_api.ops_stock()
	RETURNS SETOF shop.sku_stock
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.sku_stock s ORDER BY s.product_id, s.sku_id;
END
$$;
COMMENT ON FUNCTION shop_api.ops_stock() IS
	'operator: every SKU''s stock (shop.sku_stock rows: on_hand, reserved, available, sellable), by product_id, sku_id';

CREATE FUNCTION shop_api.ops_adjust_stock(sku_id bigint, delta integer, reason text)
	RETURNS shop.stock_level
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	who text := shop_api.current_user_id();
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a stock adjustment needs a reason'
			USING ERRCODE = '22023', HINT = 'Say why, e.g. "received 10 from supplier".';
	END IF;
	RETURN shop.shop_adjust_stock(sku_id, delta, format('%s (operator %s)', reason, who));
END
$$;
COMMENT ON FUNCTION shop_api.ops_adjust_stock(bigint, integer, text) IS
	'operator: shop_adjust_stock with the operator (JWT sub) recorded in the reason; SH006 when on_hand would fall below reserved';

CREATE FUNCTION shop_api.ops_reservations()
	RETURNS SETOF shop.expiring_orders
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.expiring_orders e ORDER BY e.expires_at, e.order_id;
END
$$;
COMMENT ON FUNCTION shop_api.ops_reservations() IS
	'operator: PENDING orders holding stock with their expiry and time left (shop.expiring_orders), soonest first';

CREATE FUNCTION shop_api.ops_expire_now()
	RETURNS integer
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_expire_pending();
END
$$;
COMMENT ON FUNCTION shop_api.ops_expire_now() IS
	'operator: run the expiry sweep now (shop_expire_pending); returns how many orders were released';

CREATE FUNCTION shop_api.ops_payments()
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN jsonb_build_object(
		'events', coalesce((SELECT jsonb_agg(jsonb_build_object(
				'id', l.id, 'provider', l.provider, 'event_id', l.event_id, 'event_type', l.event_type,
				'order_id', l.order_id, 'amount', l.amount, 'currency', l.currency,
				'result', l.result, 'review', l.review, 'note', l.note, 'received_at', l.received_at)
				ORDER BY l.id DESC)
			FROM (SELECT * FROM shop.payment_log ORDER BY id DESC LIMIT 50) l), '[]'::jsonb),
		'reviews', coalesce((SELECT jsonb_agg(jsonb_build_object(
				'id', r.id, 'order_id', r.order_id, 'reason', r.reason, 'provider', r.provider,
				'event_id', r.event_id, 'detail', r.detail, 'created_at', r.created_at)
				ORDER BY r.id)
			FROM shop.order_review r WHERE r.resolved_at IS NULL), '[]'::jsonb));
END
$$;
COMMENT ON FUNCTION shop_api.ops_payments() IS
	'operator: {events: the 50 newest webhook events with their results, reviews: open orders needing review}';

CREATE FUNCTION shop_api.ops_outbox()
	RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN jsonb_build_object(
		'health', (SELECT to_jsonb(h) FROM shop.outbox_health h),
		'dead', coalesce((SELECT jsonb_agg(to_jsonb(d) ORDER BY d.outbox_id DESC)
			FROM (SELECT * FROM shop.outbox_dead ORDER BY outbox_id DESC LIMIT 100) d), '[]'::jsonb));
END
$$;
COMMENT ON FUNCTION shop_api.ops_outbox() IS
	'operator: {health: shop.outbox_health, dead: the 100 newest shop.outbox_dead rows}';

CREATE FUNCTION shop_api.ops_redeliver(outbox_id bigint)
	RETURNS boolean
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_redeliver(outbox_id);
END
$$;
COMMENT ON FUNCTION shop_api.ops_redeliver(bigint) IS
	'operator: queue a dead outbox row again (shop_redeliver); true when it was dead';

CREATE FUNCTION shop_api.ops_health()
	RETURNS SETOF shop.invariant_violation
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.shop_check_invariants();
END
$$;
COMMENT ON FUNCTION shop_api.ops_health() IS
	'operator: shop_check_invariants() rows (check_name, subject, detail); empty when all is well';

CREATE FUNCTION shop_api.ops_orders_per_minute()
	RETURNS TABLE (minute timestamptz, created bigint, paid bigint)
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY
		SELECT m.minute,
			   count(o.id) FILTER (WHERE o.id IS NOT NULL),
			   count(o.id) FILTER (WHERE o.status = 'PAID')
		  FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',
							   date_trunc('minute', now()), interval '1 minute') AS m(minute)
		  LEFT JOIN shop.orders o
			ON o.created_at >= m.minute AND o.created_at < m.minute + interval '1 minute'
		 GROUP BY m.minute
		 ORDER BY m.minute;
END
$$;
COMMENT ON FUNCTION shop_api.ops_orders_per_minute() IS
	'operator: orders created per minute over the last hour (60 rows, oldest first) and how many of them are PAID';

CREATE FUNCTION shop_api.ops_refund(order_id bigint, reason text, lines jsonb DEFAULT NULL,
									restock text DEFAULT 'restock', amount bigint DEFAULT NULL)
	RETURNS jsonb
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	who text := shop_api.current_user_id();
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a refund needs a reason'
			USING ERRCODE = '22023', HINT = 'Say why, e.g. "returned, box damaged".';
	END IF;
	RETURN shop.shop_refund(order_id, amount, format('%s (operator %s)', reason, who), lines, restock);
END
$$;
COMMENT ON FUNCTION shop_api.ops_refund(bigint, text, jsonb, text, bigint) IS
	'operator: shop_refund with the operator (JWT sub) recorded in the reason: lines [{order_item_id|sku_id, qty, restock}] with restock or no_restock, an amount, or (neither) all that is left with every unit restocked';

-- Fulfilment (issue 13): the warehouse's queue, shipping and delivery.

CREATE FUNCTION shop_api.ops_warehouse_queue()
	RETURNS SETOF shop.warehouse_queue
	LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN QUERY SELECT * FROM shop.warehouse_queue w ORDER BY w.created_at, w.order_id;
END
$$;
COMMENT ON FUNCTION shop_api.ops_warehouse_queue() IS
	'operator: PAID orders with an address not shipped yet (shop.warehouse_queue), oldest first';

CREATE FUNCTION shop_api.ops_ship(order_id bigint, carrier text, tracking text)
	RETURNS shop.fulfilment_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_ship($1, $2, $3);
END
$$;
COMMENT ON FUNCTION shop_api.ops_ship(bigint, text, text) IS
	'operator: mark a READY order SHIPPED with carrier and tracking number (shop_ship; the same call again returns it unchanged)';

CREATE FUNCTION shop_api.ops_mark_delivered(order_id bigint)
	RETURNS shop.fulfilment_summary
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM shop_api.current_user_id();
	RETURN shop.shop_mark_delivered($1);
END
$$;
COMMENT ON FUNCTION shop_api.ops_mark_delivered(bigint) IS
	'operator: mark a SHIPPED order DELIVERED (shop_mark_delivered; a DELIVERED order is returned unchanged)';

-- shop_api_grant with an operator role: the 3-argument form as before, then
-- exactly the ops_* functions (and USAGE on shop_api) for operator_role.  An
-- overload, so the 3-argument calls stay as they were; operator_role NULL
-- is the 3-argument form.
CREATE FUNCTION shop.shop_api_grant(anon_role name, user_role name, webhook_role name, operator_role name)
	RETURNS void
	LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF operator_role IS NOT NULL THEN
		IF operator_role IN (anon_role, user_role, webhook_role) THEN
			RAISE EXCEPTION 'operator_role must be a role of its own, not "%"', operator_role
				USING ERRCODE = '22023',
					  HINT = 'Create a NOLOGIN role for operators (README, "Storefront and operator pages").';
		END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role) THEN
			RAISE EXCEPTION 'role "%" does not exist', operator_role
				USING ERRCODE = '42704',
					  HINT = 'Create the roles first (README, "Storefront and operator pages"); the extension creates none.';
		END IF;
	END IF;
	PERFORM shop.shop_api_grant(anon_role, user_role, webhook_role);
	IF operator_role IS NULL THEN
		RETURN;
	END IF;
	EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM %I', operator_role);
	EXECUTE format('REVOKE ALL ON SCHEMA shop_api FROM %I', operator_role);
	EXECUTE format('GRANT USAGE ON SCHEMA shop_api TO %I', operator_role);
	EXECUTE format('GRANT EXECUTE ON FUNCTION shop_api.ops_stock(), shop_api.ops_adjust_stock(bigint, integer, text),'
				   ' shop_api.ops_reservations(), shop_api.ops_expire_now(), shop_api.ops_payments(),'
				   ' shop_api.ops_outbox(), shop_api.ops_redeliver(bigint), shop_api.ops_health(),'
				   ' shop_api.ops_orders_per_minute(), shop_api.ops_warehouse_queue(),'
				   ' shop_api.ops_ship(bigint, text, text), shop_api.ops_mark_delivered(bigint),'
				   ' shop_api.ops_refund(bigint, text, jsonb, text, bigint) TO %I',
				   operator_role);
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = operator_role AND rolcanlogin) THEN
		RAISE WARNING 'role "%" can log in: any session of it may set request.jwt.claims and act as any operator', operator_role
			USING HINT = 'Make it NOLOGIN and let the authenticator role switch to it.';
	END IF;
END
$$;
COMMENT ON FUNCTION shop.shop_api_grant(name, name, name, name) IS
	'shop_api_grant(anon_role, user_role, webhook_role) and then operator_role exactly the shop_api.ops_* functions (NULL: none); operator_role must differ from the other three';

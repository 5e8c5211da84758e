-- shop install script, part 6: calls to payment providers' APIs.
--
-- Checkout sessions started synchronously (shop_start_payment) and refunds
-- sent through the outbox (refund.c); provider_api.c explains the rules.

-- One hosted checkout per order and provider, as the provider answered.
CREATE TABLE shop.payment_session (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id	bigint NOT NULL REFERENCES shop.orders (id),
	provider	text NOT NULL REFERENCES shop.payment_provider (name),
	session_id	text NOT NULL CHECK (session_id <> ''),
	url			text NOT NULL CHECK (url <> ''),
	expires_at	timestamptz,
	state		text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completed', 'expired')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (order_id, provider),
	UNIQUE (provider, session_id)
);

-- One row per refund; review_id is the flag an automatic refund resolves
-- (at most one refund per flag: the webhook queues exactly one).
CREATE TABLE shop.refund (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id			bigint NOT NULL REFERENCES shop.orders (id),
	provider			text NOT NULL REFERENCES shop.payment_provider (name),
	payment_id			text NOT NULL CHECK (payment_id <> ''),
	amount				bigint NOT NULL CHECK (amount > 0),
	currency			char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
	reason				text,
	state				text NOT NULL DEFAULT 'requested'
		CHECK (state IN ('requested', 'succeeded', 'failed')),
	provider_refund_id	text,
	review_id			bigint REFERENCES shop.order_review (id),
	last_error			text,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refund_order_idx ON shop.refund (order_id);
CREATE UNIQUE INDEX refund_review_idx ON shop.refund (review_id) WHERE review_id IS NOT NULL;

-- The units a refund returns (issue 13): qty units of one order line, worth
-- amount (their share of what the line was paid), back in stock or not.  A
-- restocked line names the stock adjustment that booked its units; one line
-- per refund, order line and policy.  Units are refunded once: the lines of
-- every refund, whatever its state, count against the order line's qty.
CREATE TABLE shop.refund_line (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	refund_id		bigint NOT NULL REFERENCES shop.refund (id),
	order_item_id	bigint NOT NULL REFERENCES shop.order_item (id),
	qty				integer NOT NULL CHECK (qty > 0),
	amount			bigint NOT NULL CHECK (amount >= 0),
	restocked		boolean NOT NULL,
	adjustment_id	bigint REFERENCES shop.stock_adjustment (id),
	CONSTRAINT refund_line_restock_booked CHECK (restocked = (adjustment_id IS NOT NULL)),
	UNIQUE (refund_id, order_item_id, restocked)
);
CREATE INDEX refund_line_item_idx ON shop.refund_line (order_item_id);
CREATE UNIQUE INDEX refund_line_adjustment_idx ON shop.refund_line (adjustment_id)
	WHERE adjustment_id IS NOT NULL;

SELECT pg_catalog.pg_extension_config_dump('shop.payment_session', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund_line', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_session_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund_line_id_seq', '');

-- API: Provider calls
--
-- The functions that take an API key keep a failing statement out of the
-- server log, like the webhook functions.

CREATE FUNCTION shop.shop_set_provider_api_key(name text, api_key text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_set_provider_api_key'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic;
COMMENT ON FUNCTION shop.shop_set_provider_api_key(text, text) IS
	'store the API key of a provider''s outbound calls (never shown again)';

CREATE FUNCTION shop.shop_start_payment(order_id bigint, provider text,
										success_url text, cancel_url text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_start_payment'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_start_payment(bigint, text, text, text) IS
	'start the provider''s hosted checkout for a PENDING order (one call, idempotent); returns the session and its URL; the same order and provider return the stored session';

CREATE FUNCTION shop.shop_refund(order_id bigint, amount bigint DEFAULT NULL,
								 reason text DEFAULT NULL, lines jsonb DEFAULT NULL,
								 restock text DEFAULT 'restock')
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_refund'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_refund(bigint, bigint, text, jsonb, text) IS
	'queue a refund of a PAID order''s payment through the outbox: all that is left (every unit not refunded yet, restocked or not) by default, lines [{order_item_id|sku_id, qty, restock}] or an amount';

CREATE FUNCTION shop.shop_reconcile_payments(older_than interval DEFAULT '10 minutes',
											 max_orders integer DEFAULT 100)
	RETURNS integer
	AS 'MODULE_PATHNAME', 'shop_reconcile_payments'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_reconcile_payments(interval, integer) IS
	'ask the providers about PENDING orders whose checkout has been open for older_than without a payment event; returns how many fetches were queued';

CREATE FUNCTION shop.shop_confirm_payment(provider text, order_id bigint,
										  payment_key text, amount bigint)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_confirm_payment'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_confirm_payment(text, bigint, text, bigint) IS
	'capture a confirm-style provider''s (toss) payment for a PENDING, unexpired order of that exact amount (one idempotent call, no lock held during it); returns {result, order_id, order_status, payment_key}';

CREATE VIEW shop.refunds AS
SELECT r.id AS refund_id,
	   r.order_id,
	   o.status AS order_status,
	   r.provider,
	   r.payment_id,
	   r.amount,
	   r.currency,
	   r.reason,
	   r.state,
	   r.provider_refund_id,
	   r.review_id,
	   r.last_error,
	   r.created_at,
	   r.updated_at
  FROM shop.refund r
  JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) r.order_id;
COMMENT ON VIEW shop.refunds IS 'refunds with their order and state (ORDER BY refund_id DESC for newest first)';

-- Each order's refunds against its payment (issue 13): paid is the order's
-- amount once it is PAID; refunded counts the refunds requested or made
-- (not the failed ones) of that payment; state is none, partially_refunded
-- or refunded.  Refunds of another payment (a double payment's automatic
-- refund) are not the order's and are not counted.
CREATE VIEW shop.order_refund_status AS
SELECT o.id AS order_id,
	   o.status AS order_status,
	   o.currency,
	   CASE WHEN o.status OPERATOR(pg_catalog.=) 'PAID' THEN o.amount ELSE 0 END AS paid,
	   COALESCE(r.refunded, 0) AS refunded,
	   COALESCE(r.succeeded, 0) AS succeeded,
	   COALESCE(r.failed, 0) AS failed,
	   COALESCE(u.units, 0) AS units_refunded,
	   COALESCE(u.restocked, 0) AS units_restocked,
	   CASE WHEN COALESCE(r.refunded, 0) OPERATOR(pg_catalog.=) 0 THEN 'none'
			WHEN r.refunded OPERATOR(pg_catalog.>=) o.amount THEN 'refunded'
			ELSE 'partially_refunded' END AS state
  FROM shop.orders o
  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(x.amount) FILTER (WHERE x.state OPERATOR(pg_catalog.<>) 'failed')::bigint AS refunded,
			   pg_catalog.sum(x.amount) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'succeeded')::bigint AS succeeded,
			   pg_catalog.sum(x.amount) FILTER (WHERE x.state OPERATOR(pg_catalog.=) 'failed')::bigint AS failed
		  FROM shop.refund x
		 WHERE x.order_id OPERATOR(pg_catalog.=) o.id
		   AND x.payment_id OPERATOR(pg_catalog.=) o.external_payment_id) r ON true
  LEFT JOIN LATERAL (
		SELECT pg_catalog.sum(l.qty)::bigint AS units,
			   pg_catalog.sum(l.qty) FILTER (WHERE l.restocked)::bigint AS restocked
		  FROM shop.order_item i
		  JOIN shop.refund_line l ON l.order_item_id OPERATOR(pg_catalog.=) i.id
		 WHERE i.order_id OPERATOR(pg_catalog.=) o.id) u ON true;
COMMENT ON VIEW shop.order_refund_status IS
	'each order''s paid amount, what its refunds give back (refunded = requested + succeeded, failed apart), units refunded and restocked, and state none | partially_refunded | refunded';

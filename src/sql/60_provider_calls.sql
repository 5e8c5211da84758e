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

SELECT pg_catalog.pg_extension_config_dump('shop.payment_session', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_session_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.refund_id_seq', '');

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
								 reason text DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_refund'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_refund(bigint, bigint, text) IS
	'queue a refund of a PAID order''s payment through the outbox (all that is left by default)';

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

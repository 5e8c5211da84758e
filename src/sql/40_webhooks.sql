-- shop install script, part 4: payment webhooks.
--
-- Providers and their secrets, orders flagged for a person, the webhook API
-- and the DBA views.

-- A provider endpoint: its kind says how requests are signed and how events
-- are read (src/provider_*.c); options tune it (README, "Payment webhooks", lists them).
CREATE TABLE shop.payment_provider (
	name		text PRIMARY KEY CHECK (name <> ''),
	kind		text NOT NULL CHECK (kind IN ('stripe', 'standard', 'mock', 'toss')),
	options		jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- Webhook signing secrets.  Several may be active at once so a secret can be
-- rotated without rejecting events: the newest has retires_at NULL, older
-- ones stay valid until retires_at (set when a newer one is added) and are
-- then deleted.  Readable only by the extension owner; no view shows them.
CREATE TABLE shop.payment_provider_secret (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	provider	text NOT NULL REFERENCES shop.payment_provider (name) ON DELETE CASCADE,
	secret		text NOT NULL CHECK (secret <> ''),
	added_at	timestamptz NOT NULL DEFAULT now(),
	retires_at	timestamptz,
	UNIQUE (provider, secret)
);

-- API keys for providers' outbound calls (provider_api.c).  Readable only
-- by the extension owner; shop.payment_providers says only whether one is set.
CREATE TABLE shop.payment_provider_api_key (
	provider	text PRIMARY KEY REFERENCES shop.payment_provider (name) ON DELETE CASCADE,
	api_key		text NOT NULL CHECK (api_key <> ''),
	updated_at	timestamptz NOT NULL DEFAULT now()
);

-- Orders a person must look at: money arrived that the shop cannot simply
-- book (wrong amount, or no stock left for a late payment).  One row per
-- event; the order's status is left as it was.  A DBA closes a row by
-- setting resolved_at and resolution.
CREATE TABLE shop.order_review (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	order_id	bigint NOT NULL REFERENCES shop.orders (id),
	reason		text NOT NULL CHECK (reason IN ('amount_mismatch', 'refund_required')),
	provider	text NOT NULL,
	event_id	text NOT NULL,
	detail		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	resolved_at	timestamptz,
	resolution	text,
	UNIQUE (provider, event_id),
	FOREIGN KEY (provider, event_id) REFERENCES shop.payment_log (provider, event_id)
);
CREATE INDEX order_review_open_idx ON shop.order_review (created_at)
	WHERE resolved_at IS NULL;
CREATE INDEX order_review_order_idx ON shop.order_review (order_id);

SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider_secret', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_review', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider_api_key', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider_secret_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_review_id_seq', '');

-- API: Webhooks
--
-- The functions that take a secret or a raw body set log_min_error_statement
-- to panic: when they refuse a request, the server log gets the error but
-- not the statement, which would quote the secret or the body.

CREATE FUNCTION shop.shop_handle_webhook(provider text, headers jsonb, body text)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_handle_webhook'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic;
COMMENT ON FUNCTION shop.shop_handle_webhook(text, jsonb, text) IS
	'verify, record and apply one payment provider event; returns {"result": processed|duplicate|ignored|unmatched, "event_id", "order_id", "order_status"[, "review"]}; SH010-SH014 when the request is refused (nothing recorded)';

CREATE FUNCTION shop.shop_set_provider(name text, kind text, secret text,
									   options jsonb DEFAULT '{}')
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_set_provider'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic;
COMMENT ON FUNCTION shop.shop_set_provider(text, text, text, jsonb) IS
	'register or update a payment provider (kind stripe, standard, mock or toss); secret becomes the newest, older secrets stay valid for options.rotation_grace_seconds (default 86400)';

CREATE FUNCTION shop.shop_sign_mock(provider text, event_id text, body text,
									at timestamptz DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'shop_sign_mock'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	SET log_min_error_statement = panic;
COMMENT ON FUNCTION shop.shop_sign_mock(text, text, text, timestamptz) IS
	'the webhook headers a mock provider sends with body (Standard Webhooks signature under its newest secret, timestamp at or now); refuses non-mock providers';

CREATE FUNCTION shop.shop_confirm_paid(order_id bigint, external_payment_id text,
									   amount bigint, currency text)
	RETURNS shop.order_summary
	AS 'MODULE_PATHNAME', 'shop_confirm_paid_checked'
	LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION shop.shop_confirm_paid(bigint, text, bigint, text) IS
	'shop_confirm_paid that refuses (SH015) when amount or currency (case-insensitive) differ from the order''s snapshot; a PAID order is returned unchanged for the same payment id, refused (SH016) for another';

-- Views for DBAs

CREATE VIEW shop.webhook_events AS
SELECT l.id,
	   l.received_at,
	   l.provider,
	   l.event_id,
	   l.event_type,
	   l.kind,
	   l.result,
	   l.review,
	   l.order_id,
	   o.status AS order_status,
	   l.order_ref,
	   l.amount,
	   l.currency,
	   l.payment_id,
	   l.note
  FROM shop.payment_log l
  LEFT JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) l.order_id
;
COMMENT ON VIEW shop.webhook_events IS 'payment provider events with what processing did (ORDER BY received_at DESC for newest first)';

CREATE VIEW shop.unmatched_payments AS
SELECT l.id,
	   l.received_at,
	   l.provider,
	   l.event_id,
	   l.event_type,
	   l.kind,
	   l.order_ref,
	   l.amount,
	   l.currency,
	   l.payment_id,
	   l.note,
	   l.payload
  FROM shop.payment_log l
 WHERE l.result OPERATOR(pg_catalog.=) 'unmatched'
;
COMMENT ON VIEW shop.unmatched_payments IS 'dead letters: events naming no known order, accepted so the provider stops retrying';

CREATE VIEW shop.orders_needing_review AS
SELECT r.id AS review_id,
	   r.order_id,
	   r.reason,
	   r.detail,
	   o.status AS order_status,
	   o.amount AS order_amount,
	   o.currency AS order_currency,
	   l.amount AS paid_amount,
	   l.currency AS paid_currency,
	   l.payment_id,
	   r.provider,
	   r.event_id,
	   r.created_at
  FROM shop.order_review r
  JOIN shop.orders o ON o.id OPERATOR(pg_catalog.=) r.order_id
  JOIN shop.payment_log l ON l.provider OPERATOR(pg_catalog.=) r.provider
						 AND l.event_id OPERATOR(pg_catalog.=) r.event_id
 WHERE r.resolved_at IS NULL
;
COMMENT ON VIEW shop.orders_needing_review IS 'open review flags: amount_mismatch (never confirmed) and refund_required (paid but not sellable)';

CREATE VIEW shop.payment_providers AS
SELECT p.name,
	   p.kind,
	   p.options,
	   (SELECT pg_catalog.count(*) FROM shop.payment_provider_secret s
		 WHERE s.provider OPERATOR(pg_catalog.=) p.name) AS secrets,
	   (SELECT pg_catalog.min(s.retires_at) FROM shop.payment_provider_secret s
		 WHERE s.provider OPERATOR(pg_catalog.=) p.name) AS next_secret_retires_at,
	   p.updated_at,
	   EXISTS (SELECT FROM shop.payment_provider_api_key k
				WHERE k.provider OPERATOR(pg_catalog.=) p.name) AS api_key_set
  FROM shop.payment_provider p;
COMMENT ON VIEW shop.payment_providers IS 'registered payment providers and how many secrets each has (never the secrets)';

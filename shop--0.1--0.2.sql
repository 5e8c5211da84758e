-- shop upgrade script 0.1 -> 0.2.
--
-- Every schema change of 0.2 is made here AND in the install parts in
-- src/sql/; test/t/004_upgrade.pl proves that an upgraded 0.1 database and a
-- fresh 0.2 install have the same catalog contents.

\echo Use "ALTER EXTENSION shop UPDATE TO '0.2'" to load this file. \quit

-- 0.2 refuses a schema shop that a non-superuser owns, may create in, or has
-- objects in (src/sql/00_preamble.sql explains why); an existing installation
-- in such a schema is not upgraded until a person has looked at it.
DO $$
DECLARE
	who text;
BEGIN
	-- the schema's owner
	SELECT r.rolname INTO who
	  FROM pg_catalog.pg_namespace n
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop' AND NOT r.rolsuper;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" is owned by non-superuser role "%"', who
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Drop or rename that schema (or give it to a superuser) after checking what it contains, then try again.';
	END IF;
	-- anyone else who may create objects in it (PUBLIC included)
	SELECT coalesce(r.rolname, 'PUBLIC') INTO who
	  FROM pg_catalog.pg_namespace n,
		   LATERAL pg_catalog.aclexplode(n.nspacl) a
	  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop'
	   AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
	   AND NOT coalesce(r.rolsuper, false)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'non-superuser role "%" may create objects in schema "shop"', who
			USING ERRCODE = '42501',
				  DETAIL = 'An object it creates there (say, a look-alike overload of an API function) would be trusted like the extension''s own.',
				  HINT = 'REVOKE CREATE ON SCHEMA shop from that role after checking what it created, then try again.';
	END IF;
	-- objects someone else left there
	SELECT r.rolname INTO who
	  FROM (SELECT relowner AS owner FROM pg_catalog.pg_class
			 WHERE relnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT proowner FROM pg_catalog.pg_proc
			 WHERE pronamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT typowner FROM pg_catalog.pg_type
			 WHERE typnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT oprowner FROM pg_catalog.pg_operator
			 WHERE oprnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace) o
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
	 WHERE NOT r.rolsuper
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" holds objects owned by non-superuser role "%"', who
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Move or drop them after checking what they are, then try again.';
	END IF;
END
$$;

-- Order vocabulary.  A release reason decides what a late payment may do,
-- so it is a checked set (src/order_status.c) instead of free text.  0.1
-- accepted any text: such reasons move to the new status_note column, and
-- the order counts as cancelled on purpose, the one reason a late payment
-- never acts on (as the 0.2 code also reads unknown reasons).
ALTER TABLE shop.orders ADD COLUMN status_note text;
UPDATE shop.orders
   SET status_note = status_reason, status_reason = 'cancelled'
 WHERE status_reason NOT IN ('cancelled', 'customer_cancelled', 'shop_cancelled',
							 'payment_failed', 'expired', 'paid_after_release');
ALTER TABLE shop.orders ADD CONSTRAINT orders_status_reason_check CHECK (status_reason IN
		('cancelled', 'customer_cancelled', 'shop_cancelled', 'payment_failed',
		 'expired', 'paid_after_release'));

-- payment_log.processed was true on every committed row: it said nothing.
ALTER TABLE shop.payment_log DROP COLUMN processed;

-- Views order nothing (callers do); same columns as in 0.1.
CREATE OR REPLACE VIEW shop.webhook_events AS
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

CREATE OR REPLACE VIEW shop.unmatched_payments AS
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

CREATE OR REPLACE VIEW shop.orders_needing_review AS
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

COMMENT ON VIEW shop.webhook_events IS 'payment provider events with what processing did (ORDER BY received_at DESC for newest first)';

-- pg_dump keeps the id sequences' values with the rows (restored databases
-- must not hand out ids their rows already have).
SELECT pg_catalog.pg_extension_config_dump('shop.product_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.sku_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.stock_adjustment_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.cart_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.orders_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_item_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.stock_reservation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.payment_provider_secret_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('shop.order_review_id_seq', '');

-- Function behaviour changed in C (same signatures): comments say how.
COMMENT ON FUNCTION shop.shop_confirm_paid(bigint, text) IS
	'mark a PENDING order PAID and consume its reservations; a PAID order is returned unchanged for the same payment id, refused (SH016) for another';
COMMENT ON FUNCTION shop.shop_release(bigint, text) IS
	'cancel a PENDING order and give its reserved stock back; reason is cancelled, customer_cancelled, shop_cancelled or payment_failed (status FAILED); a CANCELLED or FAILED order is returned unchanged';
COMMENT ON FUNCTION shop.shop_confirm_paid(bigint, text, bigint, text) IS
	'shop_confirm_paid that refuses (SH015) when amount or currency (case-insensitive) differ from the order''s snapshot; a PAID order is returned unchanged for the same payment id, refused (SH016) for another';

-- Privileges: this upgrade creates no table, sequence or function, and
-- CREATE OR REPLACE VIEW keeps the views' grants.  So no GRANT or REVOKE
-- here: either would copy the operator's own grants into pg_init_privs,
-- after which pg_dump would no longer dump them (an upgrade that adds an
-- object revokes on that object alone).

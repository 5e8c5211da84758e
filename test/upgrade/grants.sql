-- The operator's grants, as README "Privileges" and "Privileges (webhooks)"
-- recommend, for test/t/004_upgrade.pl.  Made on the 0.1 database before its
-- history (a deployed shop has them) and on the fresh 0.2 install, so the
-- catalogs compare equal only if the upgrade keeps them as they are, and
-- pg_dump must carry them into the restored database.  The roles exist in
-- the test cluster.
\set ON_ERROR_STOP 1
-- the application (cart and orders)
GRANT USAGE ON SCHEMA shop TO app;
GRANT EXECUTE ON FUNCTION
	shop.shop_cart_add(text, bigint, int), shop.shop_cart_set_qty(text, bigint, int),
	shop.shop_cart_remove(text, bigint), shop.shop_cart(text),
	shop.shop_create_order, shop.shop_buy_now
	TO app;
-- (shop_create_order and shop_buy_now by name alone: 0.2 gave each a
-- trailing coupon_code argument, and this file runs on 0.1 and 0.2)
-- the payment backend
GRANT USAGE ON SCHEMA shop TO payments;
GRANT EXECUTE ON FUNCTION shop.shop_confirm_paid(bigint, text), shop.shop_release(bigint, text) TO payments;
-- DBAs / monitoring
GRANT USAGE ON SCHEMA shop TO dba;
GRANT SELECT ON shop.sku_stock, shop.active_reservations, shop.expiring_orders,
	shop.webhook_events, shop.unmatched_payments, shop.orders_needing_review TO dba;
GRANT EXECUTE ON FUNCTION shop.shop_check_invariants(), shop.shop_expire_pending(int),
	shop.shop_adjust_stock(bigint, int, text) TO dba;
-- the webhook endpoint's HTTP layer
GRANT USAGE ON SCHEMA shop TO shop_webhook;
GRANT EXECUTE ON FUNCTION shop.shop_handle_webhook(text, jsonb, text) TO shop_webhook;

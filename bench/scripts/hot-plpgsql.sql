-- hot / scarce, implementation plpgsql (bench/peers/plpgsql.sql): one cycle = add to cart -> create order ->
-- confirm paid, by a distinct user; one round trip (and transaction) per call.
-- Variables: sku (-D), n (-D n=0, per-client counter).
\set n :n + 1
\set uid :client_id * 1000000000 + :n
SELECT shop_plpgsql.shop_cart_add(:uid::text, :sku, 1);
SELECT id AS oid FROM shop_plpgsql.shop_create_order(:uid::text) \gset
SELECT shop_plpgsql.shop_confirm_paid(:oid, 'tx_bench');

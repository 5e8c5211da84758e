-- spread, implementation plpgsql (bench/peers/plpgsql.sql): one cycle = 3 cart adds (3 distinct random SKUs of
-- the 10,000, one from each third so they are distinct; added in the order
-- mid, high, low) -> create order -> confirm paid; one round trip per call.
\set n :n + 1
\set uid :client_id * 1000000000 + :n
\set s1 random(1, 3333)
\set s2 random(3334, 6666)
\set s3 random(6667, 10000)
SELECT shop_plpgsql.shop_cart_add(:uid::text, :s2, 1);
SELECT shop_plpgsql.shop_cart_add(:uid::text, :s3, 1);
SELECT shop_plpgsql.shop_cart_add(:uid::text, :s1, 1);
SELECT id AS oid FROM shop_plpgsql.shop_create_order(:uid::text) \gset
SELECT shop_plpgsql.shop_confirm_paid(:oid, 'tx_bench');

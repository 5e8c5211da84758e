-- spread, implementation c-buy: the same 3 SKUs bought without a cart,
-- shop_buy_now (the order, its lines and reservations in one call) then
-- confirm paid: 2 calls and 2 transactions per cycle, the limit peer's
-- shape, so c-buy/limit compares like with like (spread-c.sql keeps a cart:
-- 5 calls).  The lines in the order mid, high, low, as spread-c.sql adds them.
\set n :n + 1
\set uid :client_id * 1000000000 + :n
\set s1 random(1, 3333)
\set s2 random(3334, 6666)
\set s3 random(6667, 10000)
SELECT id AS oid FROM shop.shop_buy_now(:uid::text, jsonb_build_array(jsonb_build_object('sku_id', :s2::bigint, 'qty', 1), jsonb_build_object('sku_id', :s3::bigint, 'qty', 1), jsonb_build_object('sku_id', :s1::bigint, 'qty', 1))) \gset
SELECT shop.shop_confirm_paid(:oid, 'tx_bench');

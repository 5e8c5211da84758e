-- spread-money, implementation c: the spread cycle (3 cart adds of 3 random
-- SKUs -> create order -> confirm paid) with a 10 % coupon applied at
-- checkout and KRW prices including 10 % VAT (tax computed per line): what
-- coupons and tax cost per cycle.  run.sh sets the coupon and the tax rate
-- up for this run only.
\set n :n + 1
\set uid :client_id * 1000000000 + :n
\set s1 random(1, 3333)
\set s2 random(3334, 6666)
\set s3 random(6667, 10000)
SELECT shop.shop_cart_add(:uid::text, :s2, 1);
SELECT shop.shop_cart_add(:uid::text, :s3, 1);
SELECT shop.shop_cart_add(:uid::text, :s1, 1);
SELECT id AS oid FROM shop.shop_create_order(:uid::text, NULL, 'BENCH10') \gset
SELECT shop.shop_confirm_paid(:oid, 'tx_bench');

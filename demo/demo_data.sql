-- Demo catalog: a few products and SKUs, prices in won (KRW minor units).
INSERT INTO shop.product (id, name, price) VALUES
	(1, '머그컵 Mug', 10000),
	(2, '티셔츠 T-shirt', 25000),
	(3, '한정판 포스터 Limited poster', 50000);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(1, 1, 'MUG-001', 5),
	(2, 2, 'TEE-M', 20),
	(3, 2, 'TEE-L', 20),
	(4, 3, 'POSTER-LTD', 1);

-- Shipping and tax (README, "Shipping, tax and fulfilment"): a parcel service
-- in Korea, free from 50,000 won of goods, and Korean VAT: 10 %, included in
-- KRW prices (tax_included shows the share; the amount does not change).
SELECT code, cost, free_over FROM shop.shop_set_shipping_method('kr-parcel', '택배 Parcel', 'KRW', 3000,
	free_over => 50000, countries => ARRAY['KR']);
SELECT currency, prices_include_tax, default_country FROM shop.shop_set_tax_setting('KRW', true, 'KR');
SELECT country, tax_class, rate FROM shop.shop_set_tax_rate('KR', 10);

-- A welcome coupon (README, "Money and coupons"): 10 % off, once per customer.
SELECT code, kind, percent FROM shop.shop_set_coupon('WELCOME10', 'percent', 10, max_per_user => 1);

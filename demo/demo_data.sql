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

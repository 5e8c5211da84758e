-- The seed's three tests (section K), against the extension.
--
-- Hermetic: the file creates its own product, SKU (SEED-MUG) and users
-- (seed-*), checks the invariants of its own objects only and deletes every
-- row it created at the end.  Ids come from sequences that other files use
-- too: they are captured with \gset and never printed.
\set ON_ERROR_STOP 0

-- Invariant violations about this file's SKU, orders and users.
CREATE TEMP VIEW own_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'SEED-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'seed-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'seed-%');

INSERT INTO shop.product (name, price) VALUES ('Mug', 10000) RETURNING id AS mug_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:mug_product, 'SEED-MUG', 5) RETURNING id AS mug \gset

-- test_cart_to_order_reserve
SELECT qty FROM shop.shop_cart_add('seed-u1', :mug, 2);
SELECT (o).id AS k1, (o).status FROM shop.shop_create_order('seed-u1') o \gset
\echo :status
SELECT reserved = 2 AND on_hand = 5 AS reserved_not_sold FROM shop.sku WHERE id = :mug;
SELECT EXISTS (SELECT 1 FROM shop.stock_reservation
				WHERE order_id = :k1 AND sku_id = :mug AND qty = 2 AND state = 'active') AS reservation_active;
SELECT status FROM shop.shop_release(:k1, 'shop_cancelled');

-- test_confirm_paid_consumes_reservation
SELECT qty FROM shop.shop_cart_add('seed-u2', :mug, 3);
SELECT (o).id AS k2 FROM shop.shop_create_order('seed-u2') o \gset
SELECT status FROM shop.shop_confirm_paid(:k2, 'tx_1');
SELECT on_hand = 2 AND reserved = 0 AS consumed FROM shop.sku WHERE id = :mug;

-- test_cancel_release_on_timeout (restock first: 2 left, the seed asks for 4)
SELECT on_hand FROM shop.shop_adjust_stock(:mug, 3, 'seed test restock');
SELECT qty FROM shop.shop_cart_add('seed-u3', :mug, 4);
SELECT (o).id AS k3 FROM shop.shop_create_order('seed-u3') o \gset
SELECT status FROM shop.shop_release(:k3, 'customer_cancelled');
SELECT on_hand = 5 AND reserved = 0 AS released FROM shop.sku WHERE id = :mug;

SELECT * FROM own_violations;

-- Clean up: every row this file created, in foreign-key order; none is left.
DELETE FROM shop.stock_reservation WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'seed-%');
DELETE FROM shop.order_item WHERE order_id IN (SELECT id FROM shop.orders WHERE user_id LIKE 'seed-%');
DELETE FROM shop.orders WHERE user_id LIKE 'seed-%';
DELETE FROM shop.cart_item WHERE cart_id IN (SELECT id FROM shop.cart WHERE user_id LIKE 'seed-%');
DELETE FROM shop.cart WHERE user_id LIKE 'seed-%';
DELETE FROM shop.stock_adjustment WHERE sku_id = :mug;
DELETE FROM shop.sku WHERE code LIKE 'SEED-%';
DELETE FROM shop.product WHERE id = :mug_product;
SELECT (SELECT count(*) FROM shop.orders WHERE user_id LIKE 'seed-%')
	 + (SELECT count(*) FROM shop.cart WHERE user_id LIKE 'seed-%')
	 + (SELECT count(*) FROM shop.stock_adjustment WHERE sku_id = :mug)
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'SEED-%')
	 + (SELECT count(*) FROM shop.product WHERE id = :mug_product) AS rows_left;

-- Cart lines and their stock checks: add, set, remove, show; every refusal
-- with its SQLSTATE and no change.
--
-- Hermetic: the file creates its own products, SKUs (codes CART-*) and users
-- (cart-*), shows ids only as SKU codes (ids come from sequences that other
-- files use too), checks the invariants of its own objects only and deletes
-- every row it created at the end.
\set ON_ERROR_STOP 0

-- The code of a SKU id (temporary: gone with the session).
CREATE FUNCTION pg_temp.sku(id bigint) RETURNS text
LANGUAGE sql AS $$ SELECT code FROM shop.sku WHERE id = $1 $$;
-- Invariant violations about this file's SKUs, orders and users.
CREATE TEMP VIEW own_violations AS
	SELECT * FROM shop.shop_check_invariants()
	 WHERE subject IN (SELECT 'sku ' || id FROM shop.sku WHERE code LIKE 'CART-%'
					   UNION ALL
					   SELECT 'order ' || id FROM shop.orders WHERE user_id LIKE 'cart-%'
					   UNION ALL
					   SELECT 'user ' || user_id FROM shop.cart WHERE user_id LIKE 'cart-%');

INSERT INTO shop.product (name, price) VALUES ('Mug', 10000) RETURNING id AS mug_product \gset
INSERT INTO shop.product (name, price) VALUES ('Tee', 25000) RETURNING id AS tee_product \gset
INSERT INTO shop.product (name, price) VALUES ('Old poster', 5000) RETURNING id AS poster_product \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:mug_product, 'CART-MUG-001', 5) RETURNING id AS mug \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:tee_product, 'CART-TEE-M', 3) RETURNING id AS tee \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:poster_product, 'CART-POSTER-OLD', 10) RETURNING id AS poster \gset
INSERT INTO shop.sku (product_id, code, on_hand) VALUES (:mug_product, 'CART-MUG-EMPTY', 0) RETURNING id AS mug_empty \gset
UPDATE shop.product SET is_active = false WHERE id = :poster_product;

-- happy path: the first add creates the cart, the second adds to the line
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_add('cart-alice', :mug, 2);
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_add('cart-alice', :mug, 1);
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_add('cart-alice', :tee, 1);
SELECT pg_temp.sku(sku_id) AS sku, sku_code, product_name, unit_price, currency, qty, line_total, cart_total
  FROM shop.shop_cart('cart-alice');
SELECT count(*) AS open_carts FROM shop.cart WHERE user_id = 'cart-alice' AND checked_out_at IS NULL;

-- seed flaw 2: the seed checked only the added qty (3 in cart + 3 more > 5)
SELECT * FROM shop.shop_cart_add('cart-alice', :mug, 3);
\echo :LAST_ERROR_SQLSTATE
-- ... and let one unit through even at zero stock
SELECT * FROM shop.shop_cart_add('cart-alice', :mug_empty, 1);
\echo :LAST_ERROR_SQLSTATE
-- an inactive product is not for sale
SELECT * FROM shop.shop_cart_add('cart-alice', :poster, 1);
\echo :LAST_ERROR_SQLSTATE
-- unknown SKU
SELECT * FROM shop.shop_cart_add('cart-alice', 999999, 1);
\echo :LAST_ERROR_SQLSTATE
-- bad quantities and arguments
SELECT * FROM shop.shop_cart_add('cart-alice', :mug, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add('cart-alice', :mug, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add('', :mug, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add(NULL, :mug, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add('cart-alice', NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_set_qty('cart-alice', :mug, -2);
\echo :LAST_ERROR_SQLSTATE
-- a refused add creates no cart for a new user
SELECT * FROM shop.shop_cart_add('cart-bob', :mug_empty, 1);
SELECT count(*) AS bob_carts FROM shop.cart WHERE user_id = 'cart-bob';

-- nothing above changed alice's cart
SELECT pg_temp.sku(sku_id) AS sku, qty, line_total, cart_total FROM shop.shop_cart('cart-alice');

-- set_qty replaces the line, checked against the whole quantity
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_set_qty('cart-alice', :mug, 5);
SELECT * FROM shop.shop_cart_set_qty('cart-alice', :mug, 6);
\echo :LAST_ERROR_SQLSTATE
-- qty 0 removes the line
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_set_qty('cart-alice', :tee, 0);
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart('cart-alice');
-- set_qty on a user without a cart creates it; 0 on none is a no-op
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_set_qty('cart-carol', :tee, 2);
SELECT pg_temp.sku(sku_id) AS sku, qty FROM shop.shop_cart_set_qty('cart-dave', :tee, 0);
SELECT count(*) AS dave_carts FROM shop.cart WHERE user_id = 'cart-dave';

-- remove: true when a line went, false otherwise (idempotent)
SELECT shop.shop_cart_remove('cart-carol', :tee);
SELECT shop.shop_cart_remove('cart-carol', :tee);
SELECT shop.shop_cart_remove('cart-nobody', :tee);
SELECT count(*) AS carol_lines FROM shop.shop_cart('cart-carol');

-- the cart shows current prices
UPDATE shop.product SET price = 12000 WHERE id = :mug_product;
SELECT pg_temp.sku(sku_id) AS sku, sku_code, product_name, unit_price, currency, qty, line_total, cart_total
  FROM shop.shop_cart('cart-alice');
SELECT * FROM shop.shop_cart('cart-nobody');

SELECT * FROM own_violations;

-- Clean up: every row this file created, in foreign-key order; none is left.
DELETE FROM shop.cart_item WHERE cart_id IN (SELECT id FROM shop.cart WHERE user_id LIKE 'cart-%');
DELETE FROM shop.cart WHERE user_id LIKE 'cart-%';
DELETE FROM shop.sku WHERE code LIKE 'CART-%';
DELETE FROM shop.product WHERE id IN (:mug_product, :tee_product, :poster_product);
SELECT (SELECT count(*) FROM shop.cart WHERE user_id LIKE 'cart-%')
	 + (SELECT count(*) FROM shop.cart_item i JOIN shop.cart c ON c.id = i.cart_id WHERE c.user_id LIKE 'cart-%')
	 + (SELECT count(*) FROM shop.sku WHERE code LIKE 'CART-%')
	 + (SELECT count(*) FROM shop.product WHERE id IN (:mug_product, :tee_product, :poster_product)) AS rows_left;

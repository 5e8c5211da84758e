-- Cart: add, set, remove, show; every refusal with its SQLSTATE and no change.
\set ON_ERROR_STOP 0
INSERT INTO shop.product (id, name, price) VALUES (101, 'Mug', 10000), (102, 'Tee', 25000), (103, 'Old poster', 5000);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
	(101, 101, 'MUG-001', 5), (102, 102, 'TEE-M', 3), (103, 103, 'POSTER-OLD', 10), (104, 101, 'MUG-EMPTY', 0);
UPDATE shop.product SET is_active = false WHERE id = 103;

-- happy path: the first add creates the cart, the second adds to the line
SELECT * FROM shop.shop_cart_add('alice', 101, 2);
SELECT * FROM shop.shop_cart_add('alice', 101, 1);
SELECT * FROM shop.shop_cart_add('alice', 102, 1);
SELECT * FROM shop.shop_cart('alice');
SELECT count(*) AS open_carts FROM shop.cart WHERE user_id = 'alice' AND checked_out_at IS NULL;

-- seed flaw 2: the seed checked only the added qty (3 in cart + 3 more > 5)
SELECT * FROM shop.shop_cart_add('alice', 101, 3);
\echo :LAST_ERROR_SQLSTATE
-- ... and let one unit through even at zero stock
SELECT * FROM shop.shop_cart_add('alice', 104, 1);
\echo :LAST_ERROR_SQLSTATE
-- an inactive product is not for sale
SELECT * FROM shop.shop_cart_add('alice', 103, 1);
\echo :LAST_ERROR_SQLSTATE
-- unknown SKU
SELECT * FROM shop.shop_cart_add('alice', 999999, 1);
\echo :LAST_ERROR_SQLSTATE
-- bad quantities and arguments
SELECT * FROM shop.shop_cart_add('alice', 101, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add('alice', 101, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add('', 101, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add(NULL, 101, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_add('alice', NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_cart_set_qty('alice', 101, -2);
\echo :LAST_ERROR_SQLSTATE
-- a refused add creates no cart for a new user
SELECT * FROM shop.shop_cart_add('bob', 104, 1);
SELECT count(*) AS bob_carts FROM shop.cart WHERE user_id = 'bob';

-- nothing above changed alice's cart
SELECT sku_id, qty, line_total, cart_total FROM shop.shop_cart('alice');

-- set_qty replaces the line, checked against the whole quantity
SELECT * FROM shop.shop_cart_set_qty('alice', 101, 5);
SELECT * FROM shop.shop_cart_set_qty('alice', 101, 6);
\echo :LAST_ERROR_SQLSTATE
-- qty 0 removes the line
SELECT * FROM shop.shop_cart_set_qty('alice', 102, 0);
SELECT sku_id, qty FROM shop.shop_cart('alice');
-- set_qty on a user without a cart creates it; 0 on none is a no-op
SELECT * FROM shop.shop_cart_set_qty('carol', 102, 2);
SELECT * FROM shop.shop_cart_set_qty('dave', 102, 0);
SELECT count(*) AS dave_carts FROM shop.cart WHERE user_id = 'dave';

-- remove: true when a line went, false otherwise (idempotent)
SELECT shop.shop_cart_remove('carol', 102);
SELECT shop.shop_cart_remove('carol', 102);
SELECT shop.shop_cart_remove('nobody', 102);
SELECT count(*) AS carol_lines FROM shop.shop_cart('carol');

-- the cart shows current prices
UPDATE shop.product SET price = 12000 WHERE id = 101;
SELECT sku_id, sku_code, product_name, unit_price, currency, qty, line_total, cart_total FROM shop.shop_cart('alice');
SELECT * FROM shop.shop_cart('nobody');

SELECT * FROM shop.shop_check_invariants();

-- The seed's three tests (section K), against the extension.
\set ON_ERROR_STOP 0
INSERT INTO shop.product (id, name, price) VALUES (601, 'Mug', 10000);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (601, 601, 'MUG-SEED', 5);

-- test_cart_to_order_reserve
SELECT qty FROM shop.shop_cart_add('seed-u1', 601, 2);
SELECT (o).id AS k1, (o).status FROM shop.shop_create_order('seed-u1') o \gset
\echo :status
SELECT reserved = 2 AND on_hand = 5 AS reserved_not_sold FROM shop.sku WHERE id = 601;
SELECT EXISTS (SELECT 1 FROM shop.stock_reservation
				WHERE order_id = :k1 AND sku_id = 601 AND qty = 2 AND state = 'active') AS reservation_active;
SELECT status FROM shop.shop_release(:k1, 'test reset');

-- test_confirm_paid_consumes_reservation
SELECT qty FROM shop.shop_cart_add('seed-u2', 601, 3);
SELECT (o).id AS k2 FROM shop.shop_create_order('seed-u2') o \gset
SELECT status FROM shop.shop_confirm_paid(:k2, 'tx_1');
SELECT on_hand = 2 AND reserved = 0 AS consumed FROM shop.sku WHERE id = 601;

-- test_cancel_release_on_timeout (restock first: 2 left, the seed asks for 4)
SELECT on_hand FROM shop.shop_adjust_stock(601, 3, 'seed test restock');
SELECT qty FROM shop.shop_cart_add('seed-u3', 601, 4);
SELECT (o).id AS k3 FROM shop.shop_create_order('seed-u3') o \gset
SELECT status FROM shop.shop_release(:k3, 'user_cancel');
SELECT on_hand = 5 AND reserved = 0 AS released FROM shop.sku WHERE id = 601;

SELECT * FROM shop.shop_check_invariants();

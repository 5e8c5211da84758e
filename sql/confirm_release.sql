-- Settling orders: confirm (consume) and release (give back), both idempotent.
\set ON_ERROR_STOP 0
INSERT INTO shop.product (id, name, price) VALUES (301, 'Pen', 1500), (302, 'Ink', 800);
INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (301, 301, 'PEN-BLK', 10), (302, 302, 'INK-BLU', 10);

SELECT (o).id AS o1 FROM shop.shop_buy_now('kim', '[{"sku_id": 301, "qty": 2}, {"sku_id": 302, "qty": 3}]') o \gset
SELECT (o).id AS o2 FROM shop.shop_buy_now('lee', '[{"sku_id": 301, "qty": 1}]') o \gset
SELECT (o).id AS o3 FROM shop.shop_buy_now('moe', '[{"sku_id": 302, "qty": 4}]') o \gset
SELECT id, on_hand, reserved FROM shop.sku WHERE id IN (301, 302) ORDER BY id;

-- confirm consumes: on_hand and reserved drop together
SELECT status, amount, currency FROM shop.shop_confirm_paid(:o1, 'pay_1');
SELECT id, on_hand, reserved FROM shop.sku WHERE id IN (301, 302) ORDER BY id;
SELECT sku_id, state FROM shop.stock_reservation WHERE order_id = :o1 ORDER BY sku_id;
SELECT status, external_payment_id FROM shop.orders WHERE id = :o1;
-- confirming again returns the PAID order unchanged
SELECT status FROM shop.shop_confirm_paid(:o1, 'pay_1');
SELECT status FROM shop.shop_confirm_paid(:o1, 'pay_other');
SELECT external_payment_id FROM shop.orders WHERE id = :o1;
SELECT id, on_hand, reserved FROM shop.sku WHERE id IN (301, 302) ORDER BY id;
-- a PAID order cannot be released
SELECT * FROM shop.shop_release(:o1);
\echo :LAST_ERROR_SQLSTATE

-- release gives the stock back (on_hand untouched)
SELECT status FROM shop.shop_release(:o2);
SELECT id, on_hand, reserved FROM shop.sku WHERE id = 301;
SELECT state FROM shop.stock_reservation WHERE order_id = :o2;
SELECT status, status_reason FROM shop.orders WHERE id = :o2;
-- releasing again is a no-op, also with another reason
SELECT status FROM shop.shop_release(:o2);
SELECT status FROM shop.shop_release(:o2, 'payment_failed');
SELECT id, on_hand, reserved FROM shop.sku WHERE id = 301;
-- a released order cannot be confirmed later
SELECT * FROM shop.shop_confirm_paid(:o2, 'late_pay');
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM shop.orders WHERE id = :o2;

-- reason payment_failed ends FAILED
SELECT status FROM shop.shop_release(:o3, 'payment_failed');
SELECT status, status_reason FROM shop.orders WHERE id = :o3;
SELECT * FROM shop.shop_confirm_paid(:o3, 'late_pay');
\echo :LAST_ERROR_SQLSTATE

-- unknown orders and bad arguments
SELECT * FROM shop.shop_confirm_paid(999999, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_release(999999);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_confirm_paid(:o1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_confirm_paid(NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM shop.shop_release(:o1, NULL);
\echo :LAST_ERROR_SQLSTATE

SELECT id, on_hand, reserved FROM shop.sku WHERE id IN (301, 302) ORDER BY id;
SELECT * FROM shop.shop_check_invariants();

-- expiry sweeper, implementation orm: the seed's expire_pending_orders()
-- (select_for_update(skip_locked) over expired PENDING orders, then
-- cancel_and_release() per order inside a savepoint: lock the order, lock its
-- active reservations, one UPDATE per SKU, mark the reservations, mark the
-- order), one round trip per statement, -M simple.  Deviation: Django runs
-- the whole backlog in ONE transaction (locking every expired order and
-- every touched SKU until the end); here each order is its own transaction
-- (LIMIT 1 on the outer query), which is kinder to the concurrent load.
BEGIN;
SELECT id AS e_id FROM shop.orders WHERE (status = 'PENDING' AND expires_at < now()) ORDER BY expires_at, id LIMIT 1 FOR UPDATE SKIP LOCKED \gset
SAVEPOINT s_x1;
SELECT id AS o_id, user_id AS o_user_id, status AS o_status, amount AS o_amount, currency AS o_currency, external_payment_id AS o_external_payment_id, created_at AS o_created_at, updated_at AS o_updated_at, expires_at AS o_expires_at FROM shop.orders WHERE id = :e_id LIMIT 21 FOR UPDATE \gset
SELECT id AS r_id, order_id AS r_order_id, sku_id AS r_sku_id, qty AS r_qty, created_at AS r_created_at, state AS r_state FROM shop.stock_reservation WHERE (order_id = :e_id AND state = 'active') FOR UPDATE \gset
UPDATE shop.sku SET reserved = (reserved - :r_qty) WHERE id = :r_sku_id;
UPDATE shop.stock_reservation SET state = 'released', state_changed_at = now() WHERE id IN (:r_id);
UPDATE shop.orders SET status = 'CANCELLED', status_reason = 'expired' WHERE id = :e_id;
RELEASE SAVEPOINT s_x1;
COMMIT;

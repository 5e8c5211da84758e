-- expiry sweeper, implementation limit: the minimal writes for a batch of up
-- to 1000 expired orders in one statement (orders, their reservations, the
-- SKU counters), no logic; the client stops when a batch finds nothing.
-- The SET LOCALs make the SKU UPDATE a nested loop driven by the sorted
-- per-SKU totals, so SKU rows are locked in ascending id order like every
-- buyer does; left to a hash join, the order is arbitrary and the sweep
-- deadlocks with the concurrent load (it did: 40P01 at 32 and 64 clients).
BEGIN;
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;
WITH o AS (UPDATE shop.orders SET status = 'CANCELLED', status_reason = 'expired', updated_at = now()
            WHERE id IN (SELECT id FROM shop.orders WHERE status = 'PENDING' AND expires_at <= now()
                          ORDER BY expires_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED)
           RETURNING id),
 r AS (UPDATE shop.stock_reservation SET state = 'released', state_changed_at = now()
        WHERE order_id IN (SELECT id FROM o) AND state = 'active' RETURNING sku_id, qty),
 k AS (UPDATE shop.sku s SET reserved = s.reserved - d.qty
         FROM (SELECT sku_id, sum(qty) AS qty FROM r GROUP BY sku_id ORDER BY sku_id) d
        WHERE s.id = d.sku_id)
SELECT count(*) AS n FROM o \gset
COMMIT;
\if :n = 0
SELECT 'done' WHERE false \gset
\endif

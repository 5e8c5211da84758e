-- expiry sweeper, implementation c: one batch of up to 1000 expired orders
-- per transaction; the client stops (a \gset on no row) when nothing is left.
SELECT shop.shop_expire_pending(1000) AS n \gset
\if :n = 0
SELECT 'done' WHERE false \gset
\endif

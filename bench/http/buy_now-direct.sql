-- pgbench: the same call as POST /rpc/buy_now, straight to the extension
-- (one random SKU of the 10,000, one of 64 customers).
\set u random(1, 64)
\set s random(1, 10000)
SELECT shop.shop_buy_now('bench-http-' || :u::text, jsonb_build_array(jsonb_build_object('sku_id', :s::int, 'qty', 1)));

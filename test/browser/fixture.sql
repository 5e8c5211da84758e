-- The browser tests' roles, as README "Serving with PostgREST" makes them
-- (with the operator role), plus shop_auth_short: the same roles, but its
-- sessions hold orders for 6 seconds (shop.reservation_ttl), for the test
-- of the hold counter.
CREATE ROLE shop_authenticator LOGIN NOINHERIT;
CREATE ROLE shop_auth_short LOGIN NOINHERIT;
CREATE ROLE shop_anon NOLOGIN;
CREATE ROLE shop_customer NOLOGIN;
CREATE ROLE shop_webhook NOLOGIN;
CREATE ROLE shop_operator NOLOGIN;
GRANT shop_anon, shop_customer, shop_webhook, shop_operator TO shop_authenticator, shop_auth_short;
SELECT shop.shop_api_grant('shop_anon', 'shop_customer', 'shop_webhook', 'shop_operator');
ALTER ROLE shop_auth_short SET shop.reservation_ttl = '6s';

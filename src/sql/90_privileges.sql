-- shop install script, last part: privileges.
--
-- Nothing is reachable by default: PUBLIC gets no EXECUTE on the API and no
-- access to tables or views.  The operator grants what each role needs (see
-- README, "Privileges"); API roles never need table access, because every
-- function is SECURITY DEFINER.  This part runs last, so one REVOKE per
-- kind covers every object the parts before it created.

REVOKE ALL ON SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop FROM PUBLIC;

-- Schema shop_api (part 7): PostgREST publishes what its roles may execute;
-- shop.shop_api_grant() grants each API role exactly its functions.
REVOKE ALL ON SCHEMA shop_api FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop_api FROM PUBLIC;

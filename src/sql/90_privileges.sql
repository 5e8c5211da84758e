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

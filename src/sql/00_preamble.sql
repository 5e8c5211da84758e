-- shop install script, part 0: preamble.
-- The pieces in src/sql/ are concatenated in name order into shop--<version>.sql;
-- every schema change also goes into the upgrade script of the release in
-- progress (shop--<old>--<new>.sql), and test/t/004_upgrade.pl proves both agree.

\echo Use "CREATE EXTENSION shop" to load this file. \quit

-- The control file names schema shop.  When a schema of that name exists
-- already, CREATE EXTENSION installs into it as it is, and its owner keeps
-- every right over it: a non-superuser owner could rename it and plant
-- look-alike tables (with triggers) that our SECURITY DEFINER functions
-- would then run with the extension owner's rights.  Only a schema owned by
-- a superuser (or created right now by CREATE EXTENSION) is safe.
DO $$
DECLARE
	owner text;
BEGIN
	SELECT r.rolname INTO owner
	  FROM pg_catalog.pg_namespace n
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop' AND NOT r.rolsuper;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" is owned by non-superuser role "%"', owner
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Drop or rename that schema (or give it to a superuser) after checking what it contains, then create the extension again.';
	END IF;
END
$$;

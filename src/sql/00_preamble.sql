-- shop install script, part 0: preamble.
-- The pieces in src/sql/ are concatenated in name order into shop--<version>.sql;
-- every schema change also goes into the upgrade script of the release in
-- progress (shop--<old>--<new>.sql), and test/t/004_upgrade.pl proves both agree.

\echo Use "CREATE EXTENSION shop" to load this file. \quit

-- The control file names schema shop.  When a schema of that name exists
-- already, CREATE EXTENSION installs into it as it is, and its owner keeps
-- every right over it: a non-superuser owner could rename it and plant
-- look-alike tables (with triggers) that our SECURITY DEFINER functions
-- would then run with the extension owner's rights.  The same holds for any
-- other role that may CREATE in it, or that owns something already there
-- (a look-alike overload of an API function wins the caller's lookup).  So
-- the schema must be owned by a superuser (as when CREATE EXTENSION creates
-- it now), writable only by superusers, and hold nothing of anyone else's.
DO $$
DECLARE
	who text;
BEGIN
	-- the schema's owner
	SELECT r.rolname INTO who
	  FROM pg_catalog.pg_namespace n
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop' AND NOT r.rolsuper;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" is owned by non-superuser role "%"', who
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Drop or rename that schema (or give it to a superuser) after checking what it contains, then try again.';
	END IF;
	-- anyone else who may create objects in it (PUBLIC included)
	SELECT coalesce(r.rolname, 'PUBLIC') INTO who
	  FROM pg_catalog.pg_namespace n,
		   LATERAL pg_catalog.aclexplode(n.nspacl) a
	  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'shop'
	   AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
	   AND NOT coalesce(r.rolsuper, false)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'non-superuser role "%" may create objects in schema "shop"', who
			USING ERRCODE = '42501',
				  DETAIL = 'An object it creates there (say, a look-alike overload of an API function) would be trusted like the extension''s own.',
				  HINT = 'REVOKE CREATE ON SCHEMA shop from that role after checking what it created, then try again.';
	END IF;
	-- objects someone else left there
	SELECT r.rolname INTO who
	  FROM (SELECT relowner AS owner FROM pg_catalog.pg_class
			 WHERE relnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT proowner FROM pg_catalog.pg_proc
			 WHERE pronamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT typowner FROM pg_catalog.pg_type
			 WHERE typnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace
			UNION ALL
			SELECT oprowner FROM pg_catalog.pg_operator
			 WHERE oprnamespace OPERATOR(pg_catalog.=) 'shop'::pg_catalog.regnamespace) o
	  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) o.owner
	 WHERE NOT r.rolsuper
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'schema "shop" holds objects owned by non-superuser role "%"', who
			USING ERRCODE = '42501',
				  DETAIL = 'The extension''s SECURITY DEFINER functions would trust objects that role controls.',
				  HINT = 'Move or drop them after checking what they are, then try again.';
	END IF;
END
$$;

-- shop upgrade script 0.1 -> 0.2.
--
-- Every schema change of 0.2 is made here AND in the install parts in
-- src/sql/; test/t/004_upgrade.pl proves that an upgraded 0.1 database and a
-- fresh 0.2 install have the same catalog contents.

\echo Use "ALTER EXTENSION shop UPDATE TO '0.2'" to load this file. \quit

-- 0.2 refuses a schema shop that a non-superuser owns (src/sql/00_preamble.sql
-- explains why); an existing installation in such a schema is not upgraded
-- until a person has looked at it.
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

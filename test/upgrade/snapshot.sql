-- Snapshot of every row of every table in schema shop, for
-- test/t/004_upgrade.pl.  Prints, sorted:
--   <table> rows <count>
--   <table>.<column> <md5 of that column's values over all rows, ordered by the primary key>
-- Hashing column by column (each in primary-key order, NULL told apart from
-- the text 'NULL') is the same as hashing whole rows, and lets the test
-- compare exactly the columns both versions have and name the column that
-- changed.  Values are compared in their text form, i.e. byte for byte as
-- the server prints them (the sessions use the same settings).
\set ON_ERROR_STOP 1
SELECT format(
	'SELECT x.line FROM (SELECT count(*) AS n%s FROM shop.%I) s'
	' CROSS JOIN LATERAL (VALUES (%L || '' rows '' || s.n)%s) x(line)',
	string_agg(format(', md5(coalesce(string_agg(coalesce(quote_literal(%I::text), ''NULL''), '','' ORDER BY %s), '''')) AS c%s',
					  a.attname, t.pk, a.attnum), '' ORDER BY a.attnum),
	t.relname, t.relname,
	string_agg(format(', (%L || '' '' || s.c%s)', t.relname || '.' || a.attname, a.attnum), '' ORDER BY a.attnum))
  FROM (SELECT c.oid, c.relname,
			   coalesce((SELECT string_agg(quote_ident(ka.attname), ', ' ORDER BY k.ord)
						   FROM pg_index i
						  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
						   JOIN pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = k.attnum
						  WHERE i.indrelid = c.oid AND i.indisprimary),
						-- no primary key: order by the whole row's text
						format('%I::text', c.relname)) AS pk
		  FROM pg_class c
		 WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('r', 'p')) t
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
 GROUP BY t.oid, t.relname, t.pk
 ORDER BY t.relname
\gexec

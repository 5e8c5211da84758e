-- Catalog fingerprint of the shop extension, for test/t/004_upgrade.pl.
--
-- pg_dump --schema-only prints only "CREATE EXTENSION shop" for an
-- extension, so an upgraded database and a fresh install are compared here,
-- on the catalogs: one query printing a canonical, sorted text line per fact
-- about everything the extension owns or creates.  No OIDs, no values that
-- change with use (sequence positions, statistics), no attnums (a dropped
-- column leaves a gap in an upgraded table; positions count live columns).
--
-- Line format: "<section> <object>[ #<n>]: <fact>"; multi-line definitions
-- (functions, views) are split into numbered lines so a diff names the line.
\set ON_ERROR_STOP 1
-- (JIT would compile this one big query for seconds, for nothing)
SET jit = off;
WITH ext AS (
	SELECT e.oid, e.extnamespace AS nsp, e.extconfig, e.extcondition, e.extrelocatable, e.extversion
	  FROM pg_extension e WHERE e.extname = 'shop'
), members AS (
	SELECT d.classid, d.objid, d.objsubid
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), nsps AS (			-- the extension's schema and the schemas it creates (shop_api, 0.2)
	SELECT ext.nsp AS oid FROM ext
	UNION
	SELECT objid FROM members WHERE classid = 'pg_namespace'::regclass
), rels AS (			-- every relation in those schemas, and every member relation
	SELECT c.oid, c.relkind, pg_describe_object('pg_class'::regclass, c.oid, 0) AS name
	  FROM pg_class c
	 WHERE c.relnamespace IN (SELECT oid FROM nsps)
		OR c.oid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
), procs AS (
	SELECT p.oid, pg_describe_object('pg_proc'::regclass, p.oid, 0) AS name
	  FROM pg_proc p
	 WHERE p.pronamespace IN (SELECT oid FROM nsps)
		OR p.oid IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
), types AS (			-- types, without the array types that come with each
	SELECT t.oid, pg_describe_object('pg_type'::regclass, t.oid, 0) AS name
	  FROM pg_type t
	 WHERE (t.typnamespace IN (SELECT oid FROM nsps)
			OR t.oid IN (SELECT objid FROM members WHERE classid = 'pg_type'::regclass))
	   AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
), cons AS (
	SELECT k.oid, k.conname, k.conrelid, k.contypid,
		   coalesce(r.name, ty.name) AS owner_name
	  FROM pg_constraint k
	  LEFT JOIN rels r ON r.oid = k.conrelid
	  LEFT JOIN types ty ON ty.oid = k.contypid
	 WHERE r.oid IS NOT NULL OR ty.oid IS NOT NULL
), trigs AS (
	SELECT g.oid, r.name || ' trigger ' || g.tgname AS name, g.tgenabled, g.tgisinternal
	  FROM pg_trigger g JOIN rels r ON r.oid = g.tgrelid
	 WHERE NOT g.tgisinternal		-- foreign-key triggers carry OIDs in their names
), owned(classid, objid) AS (	-- for comments and initial privileges
	SELECT 'pg_class'::regclass, oid FROM rels
	UNION SELECT 'pg_proc'::regclass, oid FROM procs
	UNION SELECT 'pg_type'::regclass, oid FROM types
	UNION SELECT 'pg_constraint'::regclass, oid FROM cons
	UNION SELECT 'pg_trigger'::regclass, oid FROM trigs
	UNION SELECT 'pg_namespace'::regclass, oid FROM nsps
	UNION SELECT 'pg_extension'::regclass, oid FROM ext
	UNION SELECT classid, objid FROM members
), facts(section, obj, n, fact) AS (
	-- the extension itself and its configuration tables (pg_dump dumps their rows)
	SELECT 'extension', 'shop', 0,
		   format('schema %s relocatable %s version %s', ext.nsp::regnamespace, ext.extrelocatable, ext.extversion)
	  FROM ext
	UNION ALL
	SELECT 'extconfig', c.rel::regclass::text, 0, format('condition %L', coalesce(c.cond, ''))
	  FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(rel, cond)
	-- every member object (pg_depend deptype 'e')
	UNION ALL
	SELECT 'member', pg_describe_object(m.classid, m.objid, m.objsubid), 0, 'member of extension shop'
	  FROM members m
	-- the schemas: owner and ACL
	UNION ALL
	SELECT 'schema', n.nspname, 0, format('owner %s acl %s', n.nspowner::regrole, coalesce(n.nspacl::text, 'default'))
	  FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM nsps)
	-- relations: kind, persistence, owner, ACL, options, row security
	UNION ALL
	SELECT 'relation', r.name, 0,
		   format('kind %s persistence %s owner %s acl %s options %s rls %s/%s replident %s am %s',
				  c.relkind, c.relpersistence, c.relowner::regrole, coalesce(c.relacl::text, 'default'),
				  coalesce(c.reloptions::text, '-'), c.relrowsecurity, c.relforcerowsecurity,
				  c.relreplident, coalesce(am.amname, '-'))
	  FROM rels r JOIN pg_class c ON c.oid = r.oid
	  LEFT JOIN pg_am am ON am.oid = c.relam
	 WHERE c.relkind <> 'i'		-- indexes below
	-- columns of tables, views and composite types, in order (live columns only)
	UNION ALL
	SELECT 'column', r.name, 0,
		   format('%s. %s %s%s%s%s%s%s%s',
				  lpad((row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum))::text, 3, '0'),
				  quote_ident(a.attname), format_type(a.atttypid, a.atttypmod),
				  CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
				  CASE WHEN a.atthasdef THEN ' default ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END,
				  CASE a.attidentity WHEN 'a' THEN ' generated always as identity'
									 WHEN 'd' THEN ' generated by default as identity' ELSE '' END,
				  CASE a.attgenerated WHEN 's' THEN ' generated always stored' ELSE '' END,
				  CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
					   THEN ' collate ' || a.attcollation::regcollation ELSE '' END,
				  CASE WHEN a.attacl IS NOT NULL THEN ' acl ' || a.attacl::text ELSE '' END)
	  FROM rels r
	  JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
	  JOIN pg_type t ON t.oid = a.atttypid
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
	-- constraints of tables and domains
	UNION ALL
	SELECT 'constraint', k.owner_name || ' ' || k.conname, 0, pg_get_constraintdef(k.oid)
	  FROM cons k
	-- indexes
	UNION ALL
	SELECT 'index', r.name, 0,
		   pg_get_indexdef(r.oid) || CASE WHEN i.indisclustered THEN ' (clustered)' ELSE '' END
		   || CASE WHEN i.indisreplident THEN ' (replica identity)' ELSE '' END
	  FROM rels r JOIN pg_index i ON i.indexrelid = r.oid
	-- triggers, rules, policies, extended statistics
	UNION ALL
	SELECT 'trigger', g.name, 0, pg_get_triggerdef(g.oid) || ' enabled ' || g.tgenabled::text
	  FROM trigs g
	UNION ALL
	SELECT 'rule', r.name || ' rule ' || w.rulename, 0, pg_get_ruledef(w.oid)
	  FROM rels r JOIN pg_rewrite w ON w.ev_class = r.oid
	 WHERE w.rulename <> '_RETURN'
	UNION ALL
	SELECT 'policy', r.name || ' policy ' || p.polname, 0,
		   format('cmd %s permissive %s roles %s using %s check %s', p.polcmd, p.polpermissive,
				  p.polroles::regrole[]::text, pg_get_expr(p.polqual, p.polrelid),
				  pg_get_expr(p.polwithcheck, p.polrelid))
	  FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
	UNION ALL
	SELECT 'statistics', s.stxname, 0, pg_get_statisticsobjdef(s.oid)
	  FROM pg_statistic_ext s WHERE s.stxnamespace IN (SELECT oid FROM nsps)
	-- views: the definition, line by line
	UNION ALL
	SELECT 'view', r.name, l.n::int, l.line
	  FROM rels r
	  CROSS JOIN LATERAL regexp_split_to_table(pg_get_viewdef(r.oid), E'\n') WITH ORDINALITY AS l(line, n)
	 WHERE r.relkind IN ('v', 'm')
	-- sequences: parameters (not their current values) and what owns them
	UNION ALL
	SELECT 'sequence', r.name, 0,
		   format('type %s start %s increment %s min %s max %s cache %s cycle %s',
				  s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
	  FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
	UNION ALL
	SELECT 'sequence', r.name, 0,
		   format('owned by %s (%s)', pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid),
				  CASE d.deptype WHEN 'i' THEN 'identity' WHEN 'a' THEN 'serial/owned by' ELSE d.deptype::text END)
	  FROM rels r JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = r.oid
	   AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
	 WHERE r.relkind = 'S'
	-- functions: the full definition line by line, plus the attributes spelled out
	UNION ALL
	SELECT 'function', f.name, 0,
		   format('kind %s volatility %s strict %s security_definer %s parallel %s leakproof %s config %s owner %s acl %s',
				  p.prokind, p.provolatile, p.proisstrict, p.prosecdef, p.proparallel, p.proleakproof,
				  coalesce(p.proconfig::text, '-'), p.proowner::regrole, coalesce(p.proacl::text, 'default'))
	  FROM procs f JOIN pg_proc p ON p.oid = f.oid
	UNION ALL
	SELECT 'function', f.name, l.n::int, l.line
	  FROM procs f JOIN pg_proc p ON p.oid = f.oid
	  CROSS JOIN LATERAL regexp_split_to_table(
			CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END, E'\n')
			WITH ORDINALITY AS l(line, n)
	-- types: kind, owner, ACL, and what they are made of (composite
	-- attributes are under "column", domain checks under "constraint")
	UNION ALL
	SELECT 'type', ty.name, 0,
		   format('kind %s owner %s acl %s%s%s', t.typtype, t.typowner::regrole, coalesce(t.typacl::text, 'default'),
				  CASE WHEN t.typtype = 'd' THEN format(' over %s not null %s default %s',
						   format_type(t.typbasetype, t.typtypmod), t.typnotnull, coalesce(t.typdefault, '-')) ELSE '' END,
				  CASE WHEN t.typtype = 'e' THEN ' labels ' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
														   FROM pg_enum e WHERE e.enumtypid = t.oid) ELSE '' END)
	  FROM types ty JOIN pg_type t ON t.oid = ty.oid
	 WHERE t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'
	-- comments on anything owned (columns included)
	UNION ALL
	SELECT 'comment', pg_describe_object(d.classoid, d.objoid, d.objsubid), 0, d.description
	  FROM pg_description d JOIN owned o ON o.classid = d.classoid AND o.objid = d.objoid
	-- initial privileges recorded for the extension's objects (what pg_dump
	-- compares ACLs against)
	UNION ALL
	SELECT 'initprivs', pg_describe_object(i.classoid, i.objoid, i.objsubid), 0,
		   format('%s %s', i.privtype, i.initprivs::text)
	  FROM pg_init_privs i JOIN owned o ON o.classid = i.classoid AND o.objid = i.objoid
)
SELECT format('%s %s%s: %s', section, obj, CASE WHEN n > 0 THEN ' #' || lpad(n::text, 3, '0') ELSE '' END, fact)
  FROM facts
 ORDER BY section COLLATE "C", obj COLLATE "C", n, fact COLLATE "C";

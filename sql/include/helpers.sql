-- Helpers shared by the regression files, created in pg_temp (gone with the
-- session, so every file stays hermetic).  Include them with
--   \set ECHO none
--   \i sql/include/helpers.sql
--   \set ECHO all
-- (pg_regress runs psql from the top of the tree; ECHO none keeps these
-- definitions out of each file's expected output).

-- Run stmt, which must fail, and raise its error again (same SQLSTATE,
-- message, detail and hint) with "order <id>" / "SKU <id>" shown as label.
CREATE FUNCTION pg_temp.masked(stmt text, id bigint, label text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	pattern text := '\m(order|SKU) ' || id || '\M';
	state text;
	msg text;
	det text;
	hnt text;
BEGIN
	BEGIN
		EXECUTE stmt;
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
			det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
		msg := regexp_replace(msg, pattern, '\1 ' || label, 'g');
		det := regexp_replace(det, pattern, '\1 ' || label, 'g');
		hnt := regexp_replace(hnt, pattern, '\1 ' || label, 'g');
		IF det <> '' AND hnt <> '' THEN
			RAISE EXCEPTION USING ERRCODE = state, MESSAGE = msg, DETAIL = det, HINT = hnt;
		ELSIF det <> '' THEN
			RAISE EXCEPTION USING ERRCODE = state, MESSAGE = msg, DETAIL = det;
		ELSIF hnt <> '' THEN
			RAISE EXCEPTION USING ERRCODE = state, MESSAGE = msg, HINT = hnt;
		ELSE
			RAISE EXCEPTION USING ERRCODE = state, MESSAGE = msg;
		END IF;
	END;
	RAISE EXCEPTION 'no error from: %', stmt;
END
$$;

-- Run stmt and return its single result, or "SQLSTATE: message" when it
-- fails; order ids in messages read "order N" (they depend on what ran
-- before).
CREATE FUNCTION pg_temp.outcome(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	EXECUTE stmt INTO result;
	RETURN result;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'order [0-9]+', 'order N');
END
$$;

-- Rows and index entries of table rel this transaction has read so far,
-- by any scan: what a query reads, counted rather than timed.  (Heap rows
-- a bitmap or index scan fetches count on the index.)
CREATE FUNCTION pg_temp.rows_read(rel regclass) RETURNS bigint LANGUAGE sql AS $$
	SELECT sum(pg_stat_get_xact_tuples_returned(r) + pg_stat_get_xact_tuples_fetched(r))::bigint
	  FROM (SELECT rel::oid
			UNION ALL
			SELECT indexrelid FROM pg_index WHERE indrelid = rel) rels(r)
$$;
-- ... of shop.outbox: what a claim or a view reads
CREATE FUNCTION pg_temp.outbox_rows_read() RETURNS bigint LANGUAGE sql AS $$
	SELECT pg_temp.rows_read('shop.outbox')
$$;

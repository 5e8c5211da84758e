-- Fixture schema for shop-httpd's tests: functions of every shape the
-- daemon must serve, and the roles it switches to.  Loaded into the tests'
-- own throwaway cluster by test/http/run.sh (as superuser).
\set ON_ERROR_STOP on

CREATE ROLE fx_anon NOLOGIN;
CREATE ROLE fx_customer NOLOGIN;
CREATE ROLE fx_webhook NOLOGIN;
CREATE ROLE fx_authenticator LOGIN NOINHERIT;
GRANT fx_anon, fx_customer, fx_webhook TO fx_authenticator;

CREATE SCHEMA httpd_fixture;
GRANT USAGE ON SCHEMA httpd_fixture TO fx_anon, fx_customer, fx_webhook;

CREATE TYPE httpd_fixture.pair AS (id integer, label text);
CREATE TABLE httpd_fixture.counter (n bigint NOT NULL);
CREATE TABLE httpd_fixture.uniq (k text PRIMARY KEY);

-- scalar, immutable
CREATE FUNCTION httpd_fixture.add_them(a integer, b integer) RETURNS integer
	LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
-- scalar with a default
CREATE FUNCTION httpd_fixture.greet(name text, greeting text DEFAULT 'hello') RETURNS text
	LANGUAGE sql STABLE AS $$SELECT greeting || ', ' || name$$;
-- big numbers
CREATE FUNCTION httpd_fixture.big(n bigint) RETURNS bigint
	LANGUAGE sql IMMUTABLE AS 'SELECT n';
-- json in, json out
CREATE FUNCTION httpd_fixture.echo_json(items jsonb) RETURNS jsonb
	LANGUAGE sql IMMUTABLE AS 'SELECT items';
-- single composite
CREATE FUNCTION httpd_fixture.one_pair(id integer) RETURNS httpd_fixture.pair
	LANGUAGE sql STABLE AS $$SELECT ROW(id, 'label ' || id)::httpd_fixture.pair$$;
-- SETOF composite
CREATE FUNCTION httpd_fixture.pairs(n integer) RETURNS SETOF httpd_fixture.pair
	LANGUAGE sql STABLE AS $$SELECT i, 'label ' || i FROM generate_series(1, n) i$$;
-- TABLE
CREATE FUNCTION httpd_fixture.squares(n integer) RETURNS TABLE (i integer, sq integer)
	LANGUAGE sql STABLE AS 'SELECT i, i * i FROM generate_series(1, n) i';
-- SETOF scalar
CREATE FUNCTION httpd_fixture.ints(n integer) RETURNS SETOF integer
	LANGUAGE sql STABLE AS 'SELECT generate_series(1, n)';
-- void, volatile
CREATE FUNCTION httpd_fixture.nothing() RETURNS void
	LANGUAGE sql VOLATILE AS 'SELECT';
-- volatile with a write
CREATE FUNCTION httpd_fixture.bump() RETURNS bigint
	LANGUAGE sql VOLATILE AS 'INSERT INTO httpd_fixture.counter VALUES (1); SELECT count(*) FROM httpd_fixture.counter';
-- what the request looked like from inside the transaction
CREATE FUNCTION httpd_fixture.whoami() RETURNS jsonb
	LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object(
		'role', current_user,
		'claims', current_setting('request.jwt.claims', true)::jsonb,
		'headers', current_setting('request.headers', true)::jsonb,
		'method', current_setting('request.method', true),
		'path', current_setting('request.path', true),
		'read_only', current_setting('transaction_read_only'),
		'statement_timeout', current_setting('statement_timeout'))$$;
-- errors: a custom SQLSTATE (unknown to PostgREST → 400), PT403, RAISE's P0001, 23505, P0002
CREATE FUNCTION httpd_fixture.custom_error() RETURNS integer
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'sold out' USING ERRCODE = 'SH005', DETAIL = 'sku 7', HINT = 'try later'; END$$;
CREATE FUNCTION httpd_fixture.forbidden() RETURNS integer
	LANGUAGE plpgsql AS $$BEGIN RAISE SQLSTATE 'PT403' USING MESSAGE = 'not yours'; END$$;
CREATE FUNCTION httpd_fixture.just_fail() RETURNS void
	LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'I refuse!' USING DETAIL = 'Pretty simple', HINT = 'There is nothing you can do.'; END$$;
CREATE FUNCTION httpd_fixture.dup(k text) RETURNS text
	LANGUAGE sql VOLATILE AS 'INSERT INTO httpd_fixture.uniq VALUES (k) RETURNING k';
CREATE FUNCTION httpd_fixture.no_data() RETURNS integer
	LANGUAGE plpgsql AS $$BEGIN RAISE SQLSTATE 'P0002' USING MESSAGE = 'no such order'; END$$;
-- the caller's own resource: PT404 for another subject, PT401 without one
CREATE FUNCTION httpd_fixture.my_thing(owner text) RETURNS text
	LANGUAGE plpgsql STABLE AS $$
DECLARE sub text := current_setting('request.jwt.claims', true)::jsonb ->> 'sub';
BEGIN
	IF sub IS NULL THEN RAISE SQLSTATE 'PT401' USING MESSAGE = 'login required'; END IF;
	IF sub <> owner THEN RAISE SQLSTATE 'PT404' USING MESSAGE = 'not found'; END IF;
	RETURN 'yours';
END$$;
-- sets response.status and response.headers (PostgREST's GUCs)
CREATE FUNCTION httpd_fixture.teapot() RETURNS text
	LANGUAGE sql VOLATILE AS $$
	SELECT set_config('response.status', '418', true),
	       set_config('response.headers', '[{"X-Fixture": "short and stout"}]', true);
	SELECT 'tea'$$;
CREATE FUNCTION httpd_fixture.bad_status() RETURNS text
	LANGUAGE sql VOLATILE AS $$SELECT set_config('response.status', 'abc', true); SELECT 'x'$$;
-- sleeps (statement_timeout, slow requests, draining)
CREATE FUNCTION httpd_fixture.sleepy(ms integer) RETURNS integer
	LANGUAGE sql VOLATILE AS 'SELECT pg_sleep(ms / 1000.0); SELECT ms';
-- customers only (anonymous → 42501 → 401, a token with another role → 403)
CREATE FUNCTION httpd_fixture.customers_only() RETURNS text
	LANGUAGE sql STABLE AS $$SELECT 'welcome'$$;
-- overloaded: same name, different argument names
CREATE FUNCTION httpd_fixture.over(x integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'x'$$;
CREATE FUNCTION httpd_fixture.over(y text) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'y'$$;
-- webhooks: the same contract as shop_api.handle_webhook
CREATE FUNCTION httpd_fixture.handle_webhook(provider text, headers jsonb, body text) RETURNS jsonb
	LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
	AS 'SELECT shop.shop_handle_webhook(provider, headers, body)';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA httpd_fixture FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA httpd_fixture TO fx_anon, fx_customer;
REVOKE EXECUTE ON FUNCTION httpd_fixture.customers_only() FROM fx_anon;
REVOKE EXECUTE ON FUNCTION httpd_fixture.handle_webhook(text, jsonb, text) FROM fx_anon, fx_customer;
GRANT EXECUTE ON FUNCTION httpd_fixture.handle_webhook(text, jsonb, text) TO fx_webhook;
GRANT INSERT, SELECT ON httpd_fixture.counter, httpd_fixture.uniq TO fx_anon, fx_customer;

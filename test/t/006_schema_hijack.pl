# Privilege escalation through a pre-existing schema "shop".
#
# If a non-superuser owns a schema named shop before CREATE EXTENSION shop,
# the extension would install into it and that role would stay its owner.
# As the schema's owner it can rename the schema, create a new "shop" with
# look-alike tables carrying triggers, and the SECURITY DEFINER functions
# (whose SQL names shop.* objects) then run those triggers as the
# extension's owner, a superuser.
#
# Contract: CREATE EXTENSION shop (the current version) and the upgrade to
# it fail with SQLSTATE 42501, naming the schema's owner, when a schema shop
# exists whose owner is not a superuser; nothing of the extension is
# created.  A schema shop owned by a superuser, or none at all, is fine.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('hijack');
$node->init;
$node->start;

# Run SQL as a role (LOGIN, trust auth) in a database, errors reported with
# their SQLSTATE; returns (exit code, stdout, stderr).
sub run_as
{
	my ($role, $db, $sql) = @_;
	my ($out, $err);
	my $ret = $node->psql($db, "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err, on_error_stop => 1,
		extra_params => [ '-U', $role ]);
	return ($ret, $out, $err);
}

sub su { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

# Whatever the extension would have put in a database: its pg_extension
# row, any function named shop_*, any of its tables or types.
sub extension_traces
{
	my ($db) = @_;
	return su($db, q{
		SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'shop') || ','
			|| (SELECT count(*) FROM pg_proc WHERE proname LIKE 'shop\_%') || ','
			|| (SELECT count(*) FROM pg_class
				 WHERE relname IN ('product', 'sku', 'orders', 'payment_provider', 'payment_log')) || ','
			|| (SELECT count(*) FROM pg_type WHERE typname IN ('order_summary', 'cart_line'))});
}

$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;                         -- an ordinary user ...
	GRANT CREATE ON DATABASE postgres TO mallory;      -- ... who may create schemas
	CREATE ROLE ops LOGIN;                             -- an operator, README: "Operators get shop_set_provider"
});

# --- mallory prepares schema shop before the extension is installed ----------

my ($ret, $out, $err) = run_as('mallory', 'postgres', q{
	CREATE SCHEMA mallory_stash;
	GRANT USAGE ON SCHEMA mallory_stash TO PUBLIC;
	CREATE TABLE mallory_stash.loot (who name, su boolean);
	GRANT INSERT ON mallory_stash.loot TO PUBLIC;
	CREATE SCHEMA shop;
	-- a trigger function: records who runs it and, if that is a superuser,
	-- makes mallory one
	CREATE FUNCTION shop.trap() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO mallory_stash.loot
			SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
		IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
			EXECUTE 'ALTER ROLE mallory SUPERUSER';
		END IF;
		RETURN NEW;
	END
	$$;
});
is($ret, 0, 'mallory (not a superuser) creates schema shop with a trigger function in it') or diag($err);
is(su('postgres', "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'shop'"),
	'mallory', 'schema shop is owned by mallory');

# --- the superuser installs the extension: refused ----------------------------

($ret, $out, $err) = run_as('postgres', 'postgres', 'CREATE EXTENSION shop');
isnt($ret, 0, 'CREATE EXTENSION shop fails while mallory owns schema shop');
like($err, qr/ERROR:\s+42501:/, 'refused with SQLSTATE 42501 (insufficient privilege)') or diag($err);
like($err, qr/ERROR:\s+42501:[^\n]*mallory/, 'the message names the schema\'s owner, mallory') or diag($err);
is(extension_traces('postgres'), '0,0,0,0',
	'nothing of the extension was created (no pg_extension row, no shop_* function, table or type)');
is(su('postgres', q{
	SELECT string_agg(p.proname, ',') FROM pg_proc p WHERE p.pronamespace = 'shop'::regnamespace}),
	'trap', 'schema shop holds only what mallory put there');
is(su('postgres', "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'shop'"),
	'mallory', 'schema shop is untouched (still mallory\'s)');

# --- the attack that the refusal prevents -------------------------------------
# Each step may fail once the install is refused (errors are ignored); on a
# server that installed into mallory's schema it succeeds end to end:
# the operator's call of shop.shop_set_provider reaches the real SECURITY
# DEFINER function, whose INSERT INTO shop.payment_provider then hits
# mallory's look-alike table and runs her trigger as the extension owner.

run_as('postgres', 'postgres', q{
	GRANT USAGE ON SCHEMA shop TO ops;
	GRANT EXECUTE ON FUNCTION shop.shop_set_provider(text, text, text, jsonb) TO ops;
});
run_as('mallory', 'postgres', q{
	ALTER SCHEMA shop RENAME TO shop_orig;
	CREATE SCHEMA shop;
	GRANT USAGE ON SCHEMA shop TO PUBLIC;
	CREATE TABLE shop.payment_provider (name text PRIMARY KEY, kind text NOT NULL,
		options jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(),
		updated_at timestamptz NOT NULL DEFAULT now());
	CREATE TABLE shop.payment_provider_secret (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		provider text NOT NULL, secret text NOT NULL, added_at timestamptz NOT NULL DEFAULT now(),
		retires_at timestamptz, UNIQUE (provider, secret));
	CREATE TRIGGER trap BEFORE INSERT ON shop.payment_provider
		FOR EACH ROW EXECUTE FUNCTION shop_orig.trap();
	CREATE FUNCTION shop.shop_set_provider(name text, kind text, secret text, options jsonb DEFAULT '{}')
		RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		RETURN shop_orig.shop_set_provider(name, kind, secret, options);
	END
	$$;
});
run_as('ops', 'postgres', "SELECT shop.shop_set_provider('stripe-live', 'stripe', 'whsec_live_0123456789')");

is(su('postgres', "SELECT count(*) FROM mallory_stash.loot"), '0',
	'mallory\'s trigger never ran inside an extension function (her loot table is empty)');
is(su('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f',
	'mallory is still not a superuser');

# --- the upgrade script refuses too -------------------------------------------
# The frozen 0.1 script installs anywhere (as it always did); updating such
# an installation to the current version is refused like a fresh install.

su('postgres', q{
	CREATE DATABASE upgrade_db;
	GRANT CREATE ON DATABASE upgrade_db TO mallory;
});
($ret, $out, $err) = run_as('mallory', 'upgrade_db', 'CREATE SCHEMA shop');
is($ret, 0, 'upgrade_db: mallory creates schema shop') or diag($err);
($ret, $out, $err) = run_as('postgres', 'upgrade_db', "CREATE EXTENSION shop VERSION '0.1'");
is($ret, 0, 'upgrade_db: the frozen 0.1 script installs into it (the state an old install may be in)') or diag($err);
($ret, $out, $err) = run_as('postgres', 'upgrade_db', 'ALTER EXTENSION shop UPDATE');
isnt($ret, 0, 'ALTER EXTENSION shop UPDATE fails while mallory owns schema shop');
like($err, qr/ERROR:\s+42501:[^\n]*mallory/, 'refused with 42501 naming mallory') or diag($err);
is(su('upgrade_db', "SELECT extversion FROM pg_extension WHERE extname = 'shop'"), '0.1',
	'the extension stays at 0.1');

# --- positive controls ------------------------------------------------------------

# no schema shop beforehand: installed, schema owned by the installing superuser
su('postgres', 'CREATE DATABASE clean_db');
($ret, $out, $err) = run_as('postgres', 'clean_db', 'CREATE EXTENSION shop');
is($ret, 0, 'clean_db: CREATE EXTENSION shop succeeds when there is no schema shop') or diag($err);
is(su('clean_db', q{
	SELECT n.nspowner::regrole || ',' || e.extowner::regrole || ',' || e.extversion
	  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'shop'}),
	'postgres,postgres,0.2', 'clean_db: version 0.2, schema shop and extension owned by the installing superuser');

# a schema shop created beforehand by the installing superuser
su('postgres', 'CREATE DATABASE super_db');
su('super_db', 'CREATE SCHEMA shop');
($ret, $out, $err) = run_as('postgres', 'super_db', 'CREATE EXTENSION shop');
is($ret, 0, 'super_db: a schema shop created by the superuser is accepted') or diag($err);
is(su('super_db', "SELECT extversion FROM pg_extension WHERE extname = 'shop'"), '0.2',
	'super_db: the extension is installed');

# a schema shop owned by another superuser
su('postgres', q{
	CREATE ROLE admin2 SUPERUSER LOGIN;
	CREATE DATABASE super2_db;
});
su('super2_db', 'CREATE SCHEMA shop AUTHORIZATION admin2');
($ret, $out, $err) = run_as('postgres', 'super2_db', 'CREATE EXTENSION shop');
is($ret, 0, 'super2_db: a schema shop owned by another superuser is accepted') or diag($err);
is(su('super2_db', "SELECT nspowner::regrole || ',' || extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'shop'"),
	'admin2,0.2', 'super2_db: installed into admin2\'s schema');

# --- a superuser's schema that others may write into ------------------------
# (found while writing this test: the owner check alone let a superuser-owned
# schema with CREATE granted to another role through; that role's look-alike
# overload shop.shop_adjust_stock(integer, integer, text) then won a
# superuser caller's lookup for shop.shop_adjust_stock(1, 5, '...'))

su('postgres', q{
	CREATE ROLE mallory2 LOGIN;
	CREATE DATABASE grant_db;
});
su('grant_db', 'CREATE SCHEMA shop; GRANT CREATE ON SCHEMA shop TO mallory2');
($ret, $out, $err) = run_as('mallory2', 'grant_db', q{
	CREATE FUNCTION shop.shop_adjust_stock(integer, integer, text) RETURNS text
		LANGUAGE sql AS $$ SELECT current_user::text $$;
});
is($ret, 0, 'grant_db: mallory2 plants a look-alike overload in the superuser\'s schema') or diag($err);
($ret, $out, $err) = run_as('postgres', 'grant_db', 'CREATE EXTENSION shop');
isnt($ret, 0, 'grant_db: CREATE EXTENSION shop fails while mallory2 may create in schema shop');
like($err, qr/ERROR:\s+42501:[^\n]*mallory2/, 'grant_db: refused with 42501 naming mallory2') or diag($err);
su('grant_db', 'REVOKE CREATE ON SCHEMA shop FROM mallory2');
($ret, $out, $err) = run_as('postgres', 'grant_db', 'CREATE EXTENSION shop');
isnt($ret, 0, 'grant_db: still refused once CREATE is revoked: her function is still there');
like($err, qr/ERROR:\s+42501:[^\n]*holds objects owned by[^\n]*mallory2/,
	'grant_db: refused with 42501 naming the owner of the objects left behind') or diag($err);
is(su('grant_db', "SELECT count(*) FROM pg_extension WHERE extname = 'shop'"), '0',
	'grant_db: nothing installed');
su('grant_db', 'DROP FUNCTION shop.shop_adjust_stock(integer, integer, text); GRANT CREATE ON SCHEMA shop TO PUBLIC');
($ret, $out, $err) = run_as('postgres', 'grant_db', 'CREATE EXTENSION shop');
like($err, qr/ERROR:\s+42501:[^\n]*PUBLIC/, 'grant_db: CREATE granted to PUBLIC is refused too') or diag($err);
su('grant_db', 'REVOKE CREATE ON SCHEMA shop FROM PUBLIC; GRANT USAGE ON SCHEMA shop TO mallory2');
($ret, $out, $err) = run_as('postgres', 'grant_db', 'CREATE EXTENSION shop');
is($ret, 0, 'grant_db: USAGE for another role is no threat: installed') or diag($err);

# the refusal was about the owner, not the name: once mallory's schema is
# gone, the same database takes the extension
su('postgres', q{
	DROP EXTENSION IF EXISTS shop CASCADE;
	DROP SCHEMA IF EXISTS shop, shop_orig CASCADE;
});
($ret, $out, $err) = run_as('postgres', 'postgres', 'CREATE EXTENSION shop');
is($ret, 0, 'postgres: after dropping mallory\'s schema the install succeeds') or diag($err);
is(su('postgres', "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'shop'"),
	'postgres', 'postgres: schema shop now belongs to the superuser');

# --- schema shop_api (0.2): a pre-existing one is never adopted ---------------
# CREATE SCHEMA shop_api (no IF NOT EXISTS) fails when mallory made one
# first, so her schema can never hold functions PostgREST would publish next
# to, or instead of, the extension's.
su('postgres', 'CREATE DATABASE api_db; GRANT CREATE ON DATABASE api_db TO mallory');
($ret, $out, $err) = run_as('mallory', 'api_db', q{
	CREATE SCHEMA shop_api;
	CREATE FUNCTION shop_api.cart() RETURNS text LANGUAGE sql AS $$ SELECT current_user::text $$;
});
is($ret, 0, 'api_db: mallory creates schema shop_api with a look-alike function') or diag($err);
($ret, $out, $err) = run_as('postgres', 'api_db', 'CREATE EXTENSION shop');
isnt($ret, 0, 'api_db: CREATE EXTENSION shop fails while schema shop_api exists');
like($err, qr/ERROR:\s+42P06:[^\n]*shop_api/, 'api_db: refused with 42P06 (schema "shop_api" already exists)') or diag($err);
is(su('api_db', "SELECT count(*) FROM pg_extension WHERE extname = 'shop'") . ','
	  . su('api_db', "SELECT count(*) FROM pg_namespace WHERE nspname = 'shop'"),
	'0,0', 'api_db: nothing installed, not even schema shop');
su('api_db', q{CREATE EXTENSION shop VERSION '0.1'});
($ret, $out, $err) = run_as('postgres', 'api_db', 'ALTER EXTENSION shop UPDATE');
like($err, qr/ERROR:\s+42P06:[^\n]*shop_api/, 'api_db: the upgrade to 0.2 is refused the same way') or diag($err);
is(su('api_db', "SELECT extversion FROM pg_extension WHERE extname = 'shop'"), '0.1',
	'api_db: the 0.1 installation is left as it was');

$node->stop;
done_testing();

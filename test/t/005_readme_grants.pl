# The README's grant recipes, run as written: each role can do exactly what
# the README says it can, and no more.
#
# README.md marks every recipe with a line starting "<!-- grant-recipe:"
# right before its ```sql block.  This test extracts those blocks verbatim,
# creates the roles they name (LOGIN, trust auth), runs the blocks as the
# superuser, and then for each role proves:
#   (a) every function the README grants it works, by a real successful call
#       as that role (connected as it, not as a superuser);
#   (b) the functions of schema shop it may EXECUTE are exactly the README's
#       list, it has schema USAGE but not CREATE, and no privilege on any
#       table, view, column or sequence but SELECT on the views granted;
#   (c) representative calls it must not make are refused with 42501 and
#       change nothing.
# The per-role lists are parsed from the GRANT statements of the blocks AND
# compared with the lists hard-coded below, so a README edit that grants
# more (or less) fails here.
#
# The PostgREST recipe ("api": it creates its own roles and calls
# shop.shop_api_grant) runs as written in a cluster of its own, and each of
# its roles, reached the way PostgREST reaches them (connected as the
# authenticator, SET ROLE), may execute exactly its shop_api functions and
# nothing in schema shop.  In 0.1 the core recipe gave "payments" EXECUTE
# without USAGE on the schema: its calls failed with 42501, which (a) and
# the hard-coded schema list both catch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# What the README must grant, role by role (canonical regprocedure and
# regclass spellings, sorted).
my %expected = (
	app => {
		schema => ['USAGE'],
		functions => [
			'shop.shop_buy_now(text,jsonb,text,text,text,jsonb)',
			'shop.shop_cart(text)',
			'shop.shop_cart_add(text,bigint,integer)',
			'shop.shop_cart_preview(text,text,text,jsonb)',
			'shop.shop_cart_remove(text,bigint)',
			'shop.shop_cart_set_qty(text,bigint,integer)',
			'shop.shop_create_order(text,text,text,text,jsonb)',
			'shop.shop_set_shipping(bigint,text,jsonb)',
		],
		select => [],
	},
	payments => {
		schema => ['USAGE'],
		functions => [
			'shop.shop_confirm_paid(bigint,text)',
			'shop.shop_confirm_paid(bigint,text,bigint,text)',
			'shop.shop_release(bigint,text)',
		],
		select => [],
	},
	dba => {
		schema => ['USAGE'],
		functions => [
			'shop.shop_adjust_stock(bigint,integer,text)',
			'shop.shop_check_invariants()',
			'shop.shop_enable_endpoint(bigint)',
			'shop.shop_expire_pending(integer)',
			'shop.shop_redeliver(bigint)',
			'shop.shop_redeliver_dead(bigint)',
			'shop.shop_set_sku_mode(bigint,integer)',
		],
		select => [ 'shop.active_reservations', 'shop.event_endpoints', 'shop.expiring_orders',
					'shop.outbox_attempts', 'shop.outbox_dead', 'shop.outbox_health',
					'shop.outbox_pending', 'shop.sku_buckets', 'shop.sku_stock' ],
	},
	shop_webhook => {
		schema => ['USAGE'],
		functions => ['shop.shop_handle_webhook(text,jsonb,text)'],
		select => [],
	},
);
my %expected_recipes = (
	core => [qw(app dba payments)],
	webhooks => [qw(shop_webhook)],
);
# the PostgREST recipe, and what each of its roles may execute (shop_api)
my %expected_api = (
	shop_anon => [ 'shop_api.health()', 'shop_api.products()', 'shop_api.shipping_methods()', 'shop_api.webhook(json)' ],
	shop_customer => [
		'shop_api."order"(bigint)', 'shop_api.buy_now(jsonb,text)', 'shop_api.cancel_order(bigint)',
		'shop_api.cart()', 'shop_api.cart_add(bigint,integer)', 'shop_api.cart_merge(text)',
		'shop_api.cart_remove(bigint)', 'shop_api.cart_set_qty(bigint,integer)',
		'shop_api.confirm_free(bigint)', 'shop_api.confirm_payment(bigint,text,text,bigint)', 'shop_api.create_order(text)', 'shop_api.current_user_id()', 'shop_api.orders()',
		'shop_api.products()', 'shop_api.set_shipping(bigint,text,jsonb)', 'shop_api.shipping_methods()',
		'shop_api.start_payment(bigint,text,text,text)',
	],
	shop_webhook => [ 'shop_api.handle_webhook(text,jsonb,text)', 'shop_api.webhook(json)' ],
	# the operator page (issue 11), granted by the 4-argument shop_api_grant
	shop_operator => [
		'shop_api.ops_adjust_stock(bigint,integer,text)', 'shop_api.ops_expire_now()',
		'shop_api.ops_health()', 'shop_api.ops_mark_delivered(bigint)', 'shop_api.ops_orders_per_minute()',
		'shop_api.ops_outbox()', 'shop_api.ops_payments()', 'shop_api.ops_redeliver(bigint)',
		'shop_api.ops_refund(bigint,text,jsonb,text,bigint)', 'shop_api.ops_reservations()',
		'shop_api.ops_ship(bigint,text,text)', 'shop_api.ops_stock()', 'shop_api.ops_warehouse_queue()',
	],
	shop_authenticator => [],
);

# --- extract the recipes from the README ------------------------------------

my $readme_path = "$ENV{TESTDIR}/README.md";
my $readme = slurp_file($readme_path);
my @markers = ($readme =~ /^<!-- grant-recipe:/mg);
my @recipes;
while ($readme =~ /^<!-- grant-recipe:\s*([\w-]+)[^\n]*\n```sql\n(.*?)^```[ \t]*$/msg)
{
	push @recipes, { name => $1, sql => $2 };
}
cmp_ok(scalar(@markers), '>', 0, 'README.md has grant-recipe markers');
is(scalar(@recipes), scalar(@markers),
	'every grant-recipe marker is followed directly by a ```sql block');
is_deeply([ sort map { $_->{name} } @recipes ], [ sort(keys %expected_recipes, 'api') ],
	'the README has exactly the recipes core, webhooks and api');
my ($api_recipe) = grep { $_->{name} eq 'api' } @recipes;
@recipes = grep { $_->{name} ne 'api' } @recipes;

# Split a list at the commas outside parentheses.
sub split_top
{
	my ($list) = @_;
	my (@items, $depth, $cur);
	$depth = 0;
	$cur = '';
	for my $ch (split //, $list)
	{
		$depth++ if $ch eq '(';
		$depth-- if $ch eq ')';
		if ($ch eq ',' && $depth == 0)
		{
			push @items, $cur;
			$cur = '';
			next;
		}
		$cur .= $ch;
	}
	push @items, $cur;
	s/^\s+|\s+$//g for @items;
	return @items;
}

# Parse a recipe's GRANT statements into role => {schema, functions, select}
# (raw spellings); anything that is not one of the three GRANT forms the
# recipes use is reported, so the parse cannot silently miss a grant.
sub parse_grants
{
	my ($sql, $grants, $unparsed) = @_;
	(my $code = $sql) =~ s/--[^\n]*//g;
	for my $stmt (split /;/, $code)
	{
		$stmt =~ s/\s+/ /g;
		$stmt =~ s/^ | $//g;
		next if $stmt eq '';
		my ($what, $roles);
		if ($stmt =~ /^GRANT USAGE ON SCHEMA (\w+) TO (.+)$/i)
		{
			($what, $roles) = ([ 'schema', "USAGE ON $1" ], $2);
		}
		elsif ($stmt =~ /^GRANT EXECUTE ON FUNCTION (.+) TO (.+)$/i)
		{
			($what, $roles) = ([ 'functions', split_top($1) ], $2);
		}
		elsif ($stmt =~ /^GRANT SELECT ON (?:TABLE )?(.+) TO (.+)$/i)
		{
			($what, $roles) = ([ 'select', split_top($1) ], $2);
		}
		else
		{
			push @$unparsed, $stmt;
			next;
		}
		my ($kind, @objects) = @$what;
		for my $role (split_top($roles))
		{
			$grants->{$role} //= { schema => [], functions => [], select => [] };
			push @{ $grants->{$role}{$kind} }, @objects;
		}
	}
}

my (%grants, %recipe_roles, @unparsed);
for my $r (@recipes)
{
	my %g;
	parse_grants($r->{sql}, \%g, \@unparsed);
	$recipe_roles{ $r->{name} } = [ sort keys %g ];
	for my $role (keys %g)
	{
		$grants{$role} //= { schema => [], functions => [], select => [] };
		push @{ $grants{$role}{$_} }, @{ $g{$role}{$_} } for keys %{ $g{$role} };
	}
}
is_deeply(\@unparsed, [], 'every statement of the recipes is a GRANT this test understands');
is_deeply(\%recipe_roles, \%expected_recipes,
	'the recipes name the roles app, payments, dba (core) and shop_webhook (webhooks)');
my @roles = sort keys %grants;

# --- the cluster ----------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('grants');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION shop');

# Canonical spellings from the server (schema shop is not on the search
# path, so regprocedure and regclass print it).
sub canonical
{
	my ($cast, @names) = @_;
	return [] unless @names;
	my $list = join(', ', map { my $n = $_; $n =~ s/'/''/g; "('$n')" } @names);
	my $out = $node->safe_psql('postgres',
		"SELECT string_agg(n::${cast}::text, '|' ORDER BY n::${cast}::text) FROM (VALUES $list) v(n)");
	return [ split /\|/, $out ];
}

my %parsed;
for my $role (@roles)
{
	my $g = $grants{$role};
	$parsed{$role} = {
		schema => [ map { /^USAGE ON (\w+)$/ && $1 eq 'shop' ? 'USAGE' : "?$_" } @{ $g->{schema} } ],
		functions => canonical('regprocedure', @{ $g->{functions} }),
		select => canonical('regclass', @{ $g->{select} }),
	};
}
is_deeply(\%parsed, \%expected,
	'the README grants exactly the hard-coded lists (USAGE on shop, functions, SELECT on views) per role');

# The roles, and the recipes run as written.
for my $role (@roles, 'nobody')
{
	$node->safe_psql('postgres', "CREATE ROLE $role LOGIN");
}
for my $r (@recipes)
{
	my ($ret, $out, $err) = $node->psql('postgres', $r->{sql}, on_error_stop => 1);
	is($ret, 0, "recipe $r->{name} runs as written");
	is($err, '', "recipe $r->{name} runs without errors or warnings");
}

# --- fixtures (superuser) ---------------------------------------------------------

my $secret = "'whsec_' || encode(sha256('005_readme_grants mock provider'), 'base64')";
my ($sku1, $sku2) = (11, 12);
$node->safe_psql('postgres', qq{
	SELECT shop.shop_set_provider('mockpay', 'mock', $secret);
	INSERT INTO shop.product (id, name, price, currency) VALUES (1, 'Mug', 10000, 'KRW'), (2, 'Cup', 500, 'KRW');
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES ($sku1, 1, 'MUG-1', 10), ($sku2, 2, 'CUP-1', 5);
});

# Run SQL connected as a role; returns (exit code, stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($out, $err);
	my $ret = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err, on_error_stop => 1,
		extra_params => [ '-U', $role ]);
	return ($ret, $out, $err);
}

# A call the role may make: it succeeds and returns $want.
sub allowed
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $sql, $want, $name) = @_;
	my ($ret, $out, $err) = as_role($role, $sql);
	is($ret, 0, "$role: $name: succeeds") or diag($err);
	is($out, $want, "$role: $name: result");
}

# A call the role must not make: refused with 42501 (insufficient privilege).
sub refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $sql, $name) = @_;
	my ($ret, $out, $err) = as_role($role, $sql);
	isnt($ret, 0, "$role: $name: fails");
	like($err, qr/ERROR:\s+42501:/, "$role: $name: refused with 42501") or diag($err);
}

sub su { return $node->safe_psql('postgres', $_[0]); }

# --- (a) every granted function, really called by its role ------------------

is(su('SELECT current_user'), 'postgres', 'fixtures and checks run as the superuser');
allowed('app', 'SELECT current_user, session_user', 'app|app', 'connected as itself');

# app: the cart and order functions
allowed('app', "SELECT * FROM shop.shop_cart_add('alice', $sku1, 2)", "$sku1|2", 'shop_cart_add');
allowed('app', "SELECT * FROM shop.shop_cart_add('alice', $sku2, 1)", "$sku2|1", 'shop_cart_add (second line)');
allowed('app', "SELECT * FROM shop.shop_cart_set_qty('alice', $sku1, 3)", "$sku1|3", 'shop_cart_set_qty');
allowed('app', "SELECT shop.shop_cart_remove('alice', $sku2)", 't', 'shop_cart_remove');
allowed('app', "SELECT sku_id, qty, line_total, cart_total FROM shop.shop_cart('alice')",
	"$sku1|3|30000|30000", 'shop_cart');
allowed('app', "SELECT sku_id, line_discount, subtotal, discount, total FROM shop.shop_cart_preview('alice', NULL)",
	"$sku1|0|30000|0|30000", 'shop_cart_preview');
allowed('app', "SELECT status, amount FROM shop.shop_create_order('alice', 'alice-1')",
	'PENDING|30000', 'shop_create_order');
allowed('app', qq{SELECT status, amount FROM shop.shop_buy_now('bob', '[{"sku_id": $sku1, "qty": 1}]', 'bob-1')},
	'PENDING|10000', 'shop_buy_now');
for my $user (qw(carol dave erin))
{
	allowed('app', qq{SELECT status FROM shop.shop_buy_now('$user', '[{"sku_id": $sku2, "qty": 1}]', '$user-1')},
		'PENDING', "shop_buy_now for $user");
}
my %order = map { split /\|/ } split /\n/,
	su("SELECT user_id, id FROM shop.orders ORDER BY id");
is(scalar(keys %order), 5, 'the app role created five orders');
su("SELECT shop.shop_set_shipping_method('std', 'Standard', 'KRW', 3000)");
allowed('app', qq{SELECT status, amount FROM shop.shop_set_shipping($order{erin}, 'std',
	'{"name": "Erin", "line1": "1 Road", "city": "Seoul", "postal_code": "04524", "country": "KR"}')},
	'PENDING|3500', 'shop_set_shipping');

# payments: confirm and release
allowed('payments', "SELECT status, amount FROM shop.shop_confirm_paid($order{alice}, 'pi_alice')",
	'PAID|30000', 'shop_confirm_paid');
allowed('payments', "SELECT status FROM shop.shop_confirm_paid($order{alice}, 'pi_alice', 30000, 'KRW')",
	'PAID', 'shop_confirm_paid with the amount check (the same payment again: unchanged)');
allowed('payments', "SELECT status FROM shop.shop_release($order{carol}, 'payment_failed')",
	'FAILED', 'shop_release');
is(su("SELECT status, external_payment_id FROM shop.orders WHERE id = $order{alice}"),
	'PAID|pi_alice', 'the confirm by payments took effect');

# shop_webhook: an event signed by the superuser, handled by the role
my $body = qq({"type": "payment.succeeded", "data": {"order_id": "$order{bob}", "amount": 10000, "currency": "KRW", "payment_id": "pay_bob"}});
(my $body_lit = $body) =~ s/'/''/g;
my $headers = su("SELECT shop.shop_sign_mock('mockpay', 'evt_bob', '$body_lit')");
(my $headers_lit = $headers) =~ s/'/''/g;
allowed('shop_webhook',
	"SELECT r->>'result', r->>'order_status' FROM shop.shop_handle_webhook('mockpay', '$headers_lit', '$body_lit') r",
	'processed|PAID', 'shop_handle_webhook (signed mock paid event)');
is(su("SELECT status, external_payment_id FROM shop.orders WHERE id = $order{bob}"),
	'PAID|pay_bob', 'the event handled by shop_webhook paid the order');

# dba: the three views and the operator functions
su("UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = $order{dave}");
allowed('dba', "SELECT code, on_hand, reserved FROM shop.sku_stock ORDER BY sku_id",
	"MUG-1|6|0\nCUP-1|5|2", 'SELECT shop.sku_stock');
allowed('dba', "SELECT order_id, qty, order_status FROM shop.active_reservations ORDER BY order_id",
	"$order{dave}|1|PENDING\n$order{erin}|1|PENDING", 'SELECT shop.active_reservations');
allowed('dba', "SELECT order_id, expired FROM shop.expiring_orders ORDER BY order_id",
	"$order{dave}|t\n$order{erin}|f", 'SELECT shop.expiring_orders');
allowed('dba', 'SELECT shop.shop_expire_pending()', '1', 'shop_expire_pending (releases the expired order)');
is(su("SELECT status, status_reason FROM shop.orders WHERE id = $order{dave}"),
	'CANCELLED|expired', 'the sweep by dba released the expired order');
allowed('dba', "SELECT * FROM shop.shop_adjust_stock($sku2, 5, 'receiving')",
	"$sku2|10|1|9", 'shop_adjust_stock');
allowed('dba', 'SELECT count(*) FROM shop.shop_check_invariants()', '0', 'shop_check_invariants');
# dba: the outbox's views and redelivery (no endpoint here: empty, 0)
for my $view (qw(outbox_pending outbox_dead outbox_attempts event_endpoints))
{
	allowed('dba', "SELECT count(*) FROM shop.$view", '0', "SELECT shop.$view");
}
allowed('dba', 'SELECT queued FROM shop.outbox_health', '0', 'SELECT shop.outbox_health');
allowed('dba', 'SELECT shop.shop_redeliver_dead()', '0', 'shop_redeliver_dead');
refused('dba', 'SELECT * FROM shop.event_endpoint_secret', 'read shop.event_endpoint_secret');
refused('dba', "SELECT shop.shop_subscribe('https://example.invalid/', ARRAY['*'])", 'shop_subscribe');

# --- (b) exactly these privileges, nothing more -------------------------------

# Every relation privilege a role holds in schema shop, as "relation:PRIV"
# (tables, views, matviews, foreign tables: table and any-column privileges;
# sequences: sequence privileges).
sub relation_privileges
{
	my ($role) = @_;
	return [ split /\n/, su(qq{
		SELECT c.oid::regclass::text || ':' || p.priv
		  FROM pg_catalog.pg_class c,
			   unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(priv)
		 WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		   AND (has_table_privilege('$role', c.oid, p.priv)
				OR (p.priv IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
					AND has_any_column_privilege('$role', c.oid, p.priv)))
		UNION ALL
		SELECT c.oid::regclass::text || ':' || p.priv
		  FROM pg_catalog.pg_class c, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p(priv)
		 WHERE c.relnamespace = 'shop'::regnamespace AND c.relkind = 'S'
		   AND has_sequence_privilege('$role', c.oid, p.priv)
		 ORDER BY 1}) ];
}

# the checks are not vacuous: schema shop has what the role lists range over
cmp_ok(su("SELECT count(*) FROM pg_proc WHERE pronamespace = 'shop'::regnamespace"), '>=', 16,
	'schema shop has its API functions');
cmp_ok(su("SELECT count(*) FROM pg_class WHERE relnamespace = 'shop'::regnamespace AND relkind IN ('r', 'v', 'S')"),
	'>=', 25, 'schema shop has its tables, views and sequences');

for my $role (@roles, 'nobody')
{
	my $want = $parsed{$role} // { schema => [], functions => [], select => [] };
	is(su("SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = '$role'"),
		'f', "$role: no role attributes that bypass privileges");
	is(su("SELECT count(*) FROM pg_auth_members WHERE member = '$role'::regrole"),
		'0', "$role: member of no other role");
	is_deeply([ split /\n/, su("SELECT p FROM unnest(ARRAY['USAGE', 'CREATE']) p WHERE has_schema_privilege('$role', 'shop', p)") ],
		$want->{schema}, "$role: schema privileges on shop are exactly the README's");
	is_deeply([ split /\n/, su(qq{
		SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
		 WHERE p.pronamespace = 'shop'::regnamespace AND has_function_privilege('$role', p.oid, 'EXECUTE')
		 ORDER BY 1}) ],
		$want->{functions}, "$role: may EXECUTE exactly the README's functions of schema shop");
	is_deeply(relation_privileges($role), [ map { "$_:SELECT" } @{ $want->{select} } ],
		"$role: no table, column or sequence privilege in shop except SELECT on the README's views");
}

# --- (c) real refusals -------------------------------------------------------------

refused('app', "SELECT shop.shop_confirm_paid($order{erin}, 'pi_forged')", 'shop_confirm_paid');
refused('app', "SELECT shop.shop_confirm_paid($order{erin}, 'pi_forged', 500, 'KRW')",
	'shop_confirm_paid with amount');
refused('app', "SELECT shop.shop_release($order{erin})", 'shop_release');
refused('app', 'SELECT * FROM shop.sku', 'read shop.sku');
refused('app', "UPDATE shop.sku SET on_hand = on_hand + 100", 'update shop.sku');
refused('payments', 'SELECT * FROM shop.orders', 'read shop.orders');
refused('payments', qq{SELECT shop.shop_buy_now('mallory', '[{"sku_id": $sku2, "qty": 1}]')}, 'shop_buy_now');
refused('shop_webhook', 'SELECT * FROM shop.payment_log', 'read shop.payment_log');
refused('shop_webhook', 'SELECT * FROM shop.payment_provider_secret', 'read the provider secrets');
refused('shop_webhook', "SELECT shop.shop_sign_mock('mockpay', 'evt_forged', '{}')", 'shop_sign_mock');
refused('shop_webhook', "SELECT shop.shop_set_provider('mockpay', 'mock', 'whsec_' || encode(sha256('x'), 'base64'))",
	'shop_set_provider');
refused('shop_webhook', "SELECT shop.shop_confirm_paid($order{erin}, 'pi_forged')", 'shop_confirm_paid');
refused('dba', "SELECT shop.shop_confirm_paid($order{erin}, 'pi_forged')", 'shop_confirm_paid');
refused('dba', "UPDATE shop.sku SET reserved = 0", 'update shop.sku');
refused('nobody', "SELECT * FROM shop.shop_cart('alice')", 'shop_cart (no grants at all)');
is(su("SELECT status, external_payment_id IS NULL FROM shop.orders WHERE id = $order{erin}"),
	'PENDING|t', 'the refused calls changed nothing: order erin is still PENDING and unpaid');
is(su("SELECT count(*) FROM shop.payment_log"), '1', 'only the one signed event was recorded');
is(su("SELECT string_agg(code || '=' || on_hand || '/' || reserved, ',' ORDER BY id) FROM shop.sku"),
	'MUG-1=6/0,CUP-1=10/1', 'stock is as the allowed calls left it');
is(su("SELECT string_agg(name || ':' || secrets, ',') FROM shop.payment_providers"),
	'mockpay:1', 'the provider still has its one secret');

$node->stop;

# --- the PostgREST recipe, in a cluster of its own ---------------------------------
# (its roles are not LOGIN roles the test creates: the recipe creates them)

my $api = PostgreSQL::Test::Cluster->new('api_grants');
$api->init;
$api->start;
$api->safe_psql('postgres', 'CREATE EXTENSION shop');
{
	my ($ret, $out, $err) = $api->psql('postgres', $api_recipe->{sql}, on_error_stop => 1);
	is($ret, 0, 'recipe api runs as written');
	is($err, '', 'recipe api runs without errors or warnings');
}
sub api_su { return $api->safe_psql('postgres', $_[0]); }
is(api_su(q{SELECT string_agg(rolname || ':' || rolcanlogin || ':' || rolinherit, ',' ORDER BY rolname)
			  FROM pg_roles WHERE rolname LIKE 'shop\_%'}),
	'shop_anon:false:true,shop_authenticator:true:false,shop_customer:false:true,shop_operator:false:true,shop_webhook:false:true',
	'api: the authenticator logs in and does not inherit; the four API roles cannot log in');
is(api_su(q{SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY m.roleid::regrole::text) FROM pg_auth_members m
			 WHERE m.member = 'shop_authenticator'::regrole}),
	'shop_anon,shop_customer,shop_operator,shop_webhook', 'api: the authenticator may switch to exactly the four API roles');
for my $role (sort keys %expected_api)
{
	is_deeply([ split /\n/, api_su(qq{
		SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
		 WHERE p.pronamespace IN ('shop'::regnamespace, 'shop_api'::regnamespace)
		   AND has_function_privilege('$role', p.oid, 'EXECUTE')
		 ORDER BY 1}) ],
		$expected_api{$role}, "api: $role may EXECUTE exactly its shop_api functions and nothing of schema shop");
	is(api_su(qq{SELECT string_agg(s || ':' || p, ',' ORDER BY s, p)
				   FROM unnest(ARRAY['shop', 'shop_api']) s, unnest(ARRAY['USAGE', 'CREATE']) p
				  WHERE has_schema_privilege('$role', s, p)}),
		$role eq 'shop_authenticator' ? '' : 'shop_api:USAGE',
		"api: $role has " . ($role eq 'shop_authenticator' ? 'no schema privilege' : 'USAGE on shop_api only'));
	is(api_su(qq{SELECT count(*) FROM pg_class c
				  WHERE c.relnamespace IN ('shop'::regnamespace, 'shop_api'::regnamespace)
					AND c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
					AND (has_table_privilege('$role', c.oid, 'SELECT') OR has_table_privilege('$role', c.oid, 'INSERT')
						 OR has_table_privilege('$role', c.oid, 'UPDATE') OR has_table_privilege('$role', c.oid, 'DELETE'))}),
		'0', "api: $role has no table, view or sequence privilege");
}

# fixtures (superuser)
api_su(qq{
	SELECT shop.shop_set_provider('mockpay', 'mock', $secret);
	INSERT INTO shop.product (id, name, price, currency) VALUES (1, 'Mug', 10000, 'KRW');
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES ($sku1, 1, 'MUG-1', 10);
});

# As PostgREST does it: connected as the authenticator, one transaction per
# request, SET LOCAL ROLE and the claims as transaction settings.
sub as_api
{
	my ($role, $claims, $sql) = @_;
	my ($out, $err);
	my $set = $role ? "SET LOCAL ROLE $role;\n" : '';
	$set .= "SELECT set_config('request.jwt.claims', '$claims', true) \\gset\n" if $claims;
	my $ret = $api->psql('postgres', "\\set VERBOSITY verbose\nBEGIN;\n$set$sql;\nCOMMIT;",
		stdout => \$out, stderr => \$err, on_error_stop => 1,
		extra_params => [ '-U', 'shop_authenticator' ]);
	return ($ret, $out, $err);
}
sub api_allowed
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $claims, $sql, $want, $name) = @_;
	my ($ret, $out, $err) = as_api($role, $claims, $sql);
	is($ret, 0, "api: $name: succeeds") or diag($err);
	is($out, $want, "api: $name: result");
}
sub api_refused
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($role, $claims, $sql, $name) = @_;
	my ($ret, $out, $err) = as_api($role, $claims, $sql);
	isnt($ret, 0, "api: $name: fails");
	like($err, qr/ERROR:\s+42501:/, "api: $name: refused with 42501") or diag($err);
}

my $alice = '{"role": "shop_customer", "sub": "alice"}';
api_allowed('', '', 'SELECT current_user, session_user', "shop_authenticator|shop_authenticator",
	'the authenticator connects as itself');
api_refused('', '', 'SELECT count(*) FROM shop_api.products()',
	'the authenticator itself (NOINHERIT) cannot call products');
api_allowed('shop_anon', '', "SELECT sku_code, available FROM shop_api.products()", 'MUG-1|10',
	'shop_anon: products');
api_refused('shop_anon', '', "SELECT qty FROM shop_api.cart_add($sku1, 1)", 'shop_anon: cart_add');
api_refused('shop_anon', '', "SELECT shop.shop_cart_add('alice', $sku1, 1)", 'shop_anon: the core shop_cart_add');
api_allowed('shop_customer', $alice, "SELECT qty FROM shop_api.cart_add($sku1, 2)", '2', 'shop_customer: cart_add');
api_allowed('shop_customer', $alice, "SELECT status, amount FROM shop_api.create_order('alice-1')",
	'PENDING|20000', 'shop_customer: create_order');
api_allowed('shop_customer', $alice, 'SELECT status, amount FROM shop_api.orders()',
	'PENDING|20000', 'shop_customer: orders');
api_refused('shop_customer', $alice, "SELECT shop.shop_buy_now('bob', '[]')", 'shop_customer: the core shop_buy_now');
api_refused('shop_customer', $alice, "SELECT shop_api.handle_webhook('mockpay', '{}', '{}')",
	'shop_customer: handle_webhook');
is(api_su(q{SELECT user_id || ' ' || status FROM shop.orders}), 'alice PENDING',
	'api: the customer role ordered for the sub of its claims');
# the operator role (issue 11): its own functions, nothing of the shopper's
my $ops = '{"role": "shop_operator", "sub": "olga"}';
api_allowed('shop_operator', $ops, 'SELECT code, on_hand, reserved FROM shop_api.ops_stock()', 'MUG-1|10|2',
	'shop_operator: ops_stock');
api_allowed('shop_operator', $ops, "SELECT on_hand FROM shop_api.ops_adjust_stock($sku1, 5, 'delivery')", '15',
	'shop_operator: ops_adjust_stock');
is(api_su(q{SELECT reason FROM shop.stock_adjustment ORDER BY id DESC LIMIT 1}), 'delivery (operator olga)',
	'api: the operator (JWT sub) is recorded in the adjustment reason');
api_refused('shop_operator', $ops, "SELECT qty FROM shop_api.cart_add($sku1, 1)", 'shop_operator: cart_add');
api_refused('shop_customer', $alice, 'SELECT count(*) FROM shop_api.ops_stock()', 'shop_customer: ops_stock');
api_refused('shop_anon', '', 'SELECT shop_api.ops_expire_now()', 'shop_anon: ops_expire_now');

my $order_id = api_su(q{SELECT id FROM shop.orders WHERE user_id = 'alice'});
my $api_body = qq({"type": "payment.succeeded", "data": {"order_id": "$order_id", "amount": 20000, "currency": "KRW", "payment_id": "pay_alice"}});
(my $api_body_lit = $api_body) =~ s/'/''/g;
my $api_headers = api_su("SELECT shop.shop_sign_mock('mockpay', 'evt_alice', '$api_body_lit')");
(my $api_headers_lit = $api_headers) =~ s/'/''/g;
api_allowed('shop_webhook', '',
	"SELECT r->>'result', r->>'order_status' FROM shop_api.handle_webhook('mockpay', '$api_headers_lit', '$api_body_lit') r",
	'processed|PAID', 'shop_webhook: handle_webhook (signed mock paid event)');
api_refused('shop_webhook', '', 'SELECT count(*) FROM shop_api.cart()', 'shop_webhook: cart');
api_refused('shop_webhook', '', 'SELECT count(*) FROM shop.payment_log', 'shop_webhook: read shop.payment_log');
# PostgREST's webhook endpoint runs as the anonymous role (providers send no JWT)
api_allowed('shop_anon', '',
	"SELECT set_config('request.headers', '$api_headers_lit', true) IS NOT NULL;\n"
	  . "SELECT shop_api.webhook('$api_body_lit') ->> 'result'",
	"t\nduplicate", 'shop_anon: webhook(json), the event again');
is(api_su("SELECT status, external_payment_id FROM shop.orders WHERE id = $order_id"), 'PAID|pay_alice',
	'api: the webhook role paid the order, once');
$api->stop;
done_testing();

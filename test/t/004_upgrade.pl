# Upgrade 0.1 -> 0.2: a database created with the frozen 0.1 script and
# filled through the API keeps every row through ALTER EXTENSION shop UPDATE
# (except the documented 0.2 migrations, which are checked as such), ends
# with the same catalog contents as a fresh 0.2 install, keeps working, and
# survives pg_dump / restore with its rows, catalog and id sequences.
#
# The SQL lives in test/upgrade/:
#   grants.sql       the operator's grants to roles app, payments, dba,
#                    shop_webhook (README), made before any history
#   workload.sql     0.1 history through the API: orders in every state,
#                    webhook events of every outcome, review flags
#   snapshot.sql     row count and per-column hash (primary-key order) of
#                    every table in schema shop
#   fingerprint.sql  canonical sorted text of everything the extension owns
#                    (pg_dump --schema-only shows only CREATE EXTENSION)
#   smoke.sql        cart -> order -> signed webhook -> PAID, a refund by lines, release, expiry
#                    sweep, invariants; prints no ids or timestamps
use strict;
use warnings;
use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $started = time;
my $sqldir = "$FindBin::RealBin/../upgrade";
my %sql = map { $_ => slurp_file("$sqldir/$_.sql") } qw(grants workload snapshot fingerprint smoke);

# What the 0.2 upgrade may change in the data, and nothing else.  The orders
# columns status_reason and status_note are compared by the explicit
# migration check, not by hash.
my %may_drop = ('payment_log.processed' => 1);
# The money model (issue 13) adds orders.subtotal (backfilled = amount, checked
# below), orders.discount and order_item.discount (0).
# Shipping, tax and fulfilment (issue 13) add product.tax_class ('standard'),
# the orders' shipping, tax, tax_included (0), shipping_method, ship_to,
# carrier, tracking_no, shipped_at, delivered_at (NULL) and the generated
# fulfilment_status (NULL: no upgraded order has an address), and
# order_item.tax (0); checked below.
my %may_add = ('orders.status_note' => 1, 'sku.low_stock_threshold' => 1,
	'orders.subtotal' => 1, 'orders.discount' => 1, 'order_item.discount' => 1,
	# hot-SKU mode (issue 12): every SKU and reservation starts in its own row (0)
	'sku.buckets' => 1, 'stock_reservation.bucket' => 1,
	# shipping and tax (issue 13)
	'product.tax_class' => 1, 'orders.shipping' => 1, 'orders.tax' => 1, 'orders.tax_included' => 1,
	'orders.shipping_method' => 1, 'orders.ship_to' => 1, 'orders.carrier' => 1,
	'orders.tracking_no' => 1, 'orders.shipped_at' => 1, 'orders.delivered_at' => 1,
	'orders.fulfilment_status' => 1, 'order_item.tax' => 1);
# tables 0.2 adds (the outbox and outgoing events, coupons, shipping and
# tax); they start empty
my %new_tables = map { $_ => 1 } qw(event_endpoint event_endpoint_secret event outbox outbox_attempt
  payment_provider_api_key payment_session refund refund_line coupon coupon_redemption sku_bucket
  shipping_method tax_setting tax_rate);
my %migrated = ('orders.status_reason' => 1, 'orders.status_note' => 1);
my %reason_vocabulary = map { $_ => 1 }
  qw(cancelled customer_cancelled shop_cancelled payment_failed expired paid_after_release);

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
# JIT compiling the big catalog queries costs seconds and gains nothing here
$node->append_conf('postgresql.conf', 'jit = off');
$node->start;

# Run SQL as one assertion: a failure fails it (with psql's error) instead of
# aborting the test.  Returns stdout, or undef when psql failed.
sub run_ok
{
	my ($db, $sql, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($rc, $out, $err) = $node->psql($db, $sql);
	ok($rc == 0, $name) or diag("psql exit code $rc in database $db:\n$err");
	diag("stderr in database $db: $err") if $rc == 0 && $err ne '';
	return $rc == 0 ? $out : undef;
}

# Compare two line-oriented outputs.  is() compares their difference with
# the empty string, so a failure prints just the lines that differ:
# "- " only in the expected output, "+ " only in the one under test.
sub same_lines
{
	my ($got, $expected, $name, $got_label, $expected_label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	if (!defined $got || !defined $expected)
	{
		fail($name);
		diag('nothing to compare: the SQL failed (see above)');
		return;
	}
	my %count;
	$count{$_}++ for split /\n/, $expected;
	$count{$_}-- for split /\n/, $got;
	my @diff;
	for my $line (sort keys %count)
	{
		push @diff, ("- $line") x $count{$line} if $count{$line} > 0;
		push @diff, ("+ $line") x -$count{$line} if $count{$line} < 0;
	}
	push @diff, '(the same lines in another order)' if !@diff && $got ne $expected;
	is(@diff ? join("\n", "--- $expected_label", "+++ $got_label", @diff) : '', '', $name);
}

# Compare two { key => value } maps on the given keys; is() prints one line
# per key that differs.
sub same_values
{
	my ($got, $expected, $keys, $name, $got_label, $expected_label) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @diff = map {
		my ($g, $e) = ($got->{$_} // '(none)', $expected->{$_} // '(none)');
		$g eq $e ? () : ("$_: $expected_label $e, $got_label $g")
	} @$keys;
	is(join("\n", @diff), '', $name);
}

# Run a client program (connection in its arguments); its stderr is shown
# when it fails.
sub command_ok_showing_errors
{
	my ($cmd, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run($cmd, '>', \$out, '2>', \$err);
	ok($ok, $name) or diag("@$cmd failed:\n$err");
	return $ok;
}

# snapshot.sql as { "table rows" => count, "table.column" => md5 }
sub snapshot
{
	my ($db) = @_;
	my %s;
	for (split /\n/, $node->safe_psql($db, $sql{snapshot}))
	{
		my ($key, $value) = /^(\S+(?: rows)?) (\S+)$/ or die "bad snapshot line: $_";
		$s{$key} = $value;
	}
	return \%s;
}
sub snapshot_text { my ($s) = @_; return join("\n", map { "$_ $s->{$_}" } sort keys %$s); }

sub has_status_note
{
	return $node->safe_psql($_[0], q{
		SELECT count(*) FROM pg_attribute
		 WHERE attrelid = 'shop.orders'::regclass AND attname = 'status_note' AND NOT attisdropped});
}

# { order id => "status_reason | status_note" }
sub order_reasons
{
	my ($db) = @_;
	my $note = has_status_note($db) ? 'status_note' : 'NULL::text';
	return { map { split /\|/, $_, 2 } split /\n/, $node->safe_psql($db,
		"SELECT id, coalesce(status_reason, '<null>') || ' | ' || coalesce($note, '<null>') FROM shop.orders") };
}

sub invariants
{
	return $node->safe_psql($_[0],
		q{SELECT check_name || ': ' || subject || ': ' || detail FROM shop.shop_check_invariants() ORDER BY 1});
}

# Privileges granted to roles other than the owner on the schemas shop and
# shop_api (0.2), their tables, views, sequences and functions (one line each).
# shop_api does not exist in 0.1: to_regnamespace() is NULL there.
sub grants
{
	return $node->safe_psql($_[0], q{
		SELECT format('%s %s on %s', CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
					  a.privilege_type, o.name)
		  FROM (SELECT 'schema ' || nspname AS name, nspacl AS acl FROM pg_namespace
				 WHERE nspname IN ('shop', 'shop_api')
				UNION ALL
				SELECT pg_describe_object('pg_class'::regclass, oid, 0), relacl FROM pg_class
				 WHERE relnamespace IN ('shop'::regnamespace, to_regnamespace('shop_api'))
				UNION ALL
				SELECT pg_describe_object('pg_proc'::regclass, oid, 0), proacl FROM pg_proc
				 WHERE pronamespace IN ('shop'::regnamespace, to_regnamespace('shop_api'))) o
		 CROSS JOIN LATERAL aclexplode(o.acl) a
		 WHERE a.grantee <> a.grantor
		 ORDER BY 1});
}

sub extversion
{
	return $node->safe_psql($_[0], q{SELECT extversion FROM pg_extension WHERE extname = 'shop'});
}

# Every identity column in schema shop: { "table.column" => [highest value
# in the table, value its sequence hands out next] }
sub identity_positions
{
	my ($db) = @_;
	my $out = $node->safe_psql($db, q{
		SELECT format('SELECT %L, (SELECT coalesce(max(%I), 0) FROM shop.%I),'
					  ' CASE WHEN is_called THEN last_value + %s ELSE last_value END FROM %s',
					  c.relname || '.' || a.attname, a.attname, c.relname, s.seqincrement, s.seqrelid::regclass)
		  FROM pg_class c
		  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attidentity <> ''
		  JOIN pg_sequence s ON s.seqrelid = pg_get_serial_sequence(format('shop.%I', c.relname), a.attname)::regclass
		 WHERE c.relnamespace = 'shop'::regnamespace
		 ORDER BY 1
		\gexec});
	return { map { my ($col, $max, $next) = split /\|/; ($col => [ $max, $next ]) } split /\n/, $out };
}

$node->safe_psql('postgres', $_)
  for ('CREATE DATABASE up', 'CREATE DATABASE fresh', 'CREATE DATABASE empty_up', 'CREATE DATABASE restored',
	'CREATE ROLE app', 'CREATE ROLE payments', 'CREATE ROLE dba', 'CREATE ROLE shop_webhook');

# The databases to compare with: a fresh 0.2 install and an empty 0.1 one
# (updated later), both with the operator's grants.
$node->safe_psql('fresh', 'CREATE EXTENSION shop');
$node->safe_psql('fresh', $sql{grants});
$node->safe_psql('empty_up', q{CREATE EXTENSION shop VERSION '0.1'});
$node->safe_psql('empty_up', $sql{grants});
my $grants_fresh = grants('fresh');

###########################################################################
# 1. A 0.1 database with a realistic history, through the API
###########################################################################
$node->safe_psql('up', q{CREATE EXTENSION shop VERSION '0.1'});
is(extversion('up'), '0.1', 'CREATE EXTENSION shop VERSION 0.1 installs the frozen 0.1 script');
run_ok('up', $sql{grants}, "the operator's grants (README) apply to the 0.1 database");
is(scalar(my @g = split /\n/, grants('up')), 22,
	"the 0.1 database has the operator's 22 grants to app, payments, dba and shop_webhook");

my $workload = run_ok('up', $sql{workload}, 'the workload runs on the 0.1 database without error');
is($workload, join("\n",
	'idempotent retry: true',
	'webhook bob paid: processed PAID',
	'webhook bob paid again: duplicate PAID',
	'webhook bob failed late: ignored PAID',
	'webhook bob paid twice: processed PAID review refund_required',
	'erin: PAID',
	'frank: CANCELLED',
	'webhook frank paid after cancel: processed CANCELLED review refund_required',
	'grace: CANCELLED',
	'heidi: CANCELLED',
	'webhook ivan failed: processed FAILED',
	'judy: FAILED',
	'webhook mallory underpaid: processed PENDING review amount_mismatch',
	'expired by the sweep: 2',
	'webhook leo paid late: processed PAID',
	'webhook unknown order: unmatched -',
	'webhook no order id: unmatched -',
	'webhook other event type: ignored -'),
	'0.1 workload: webhooks answer processed, duplicate, ignored and unmatched and raise both review flags; the sweep expires 2 orders');
is($node->safe_psql('up', q{
	SELECT status || ' ' || coalesce(status_reason, '-') || ': ' || count(*)
	  FROM shop.orders GROUP BY status, status_reason ORDER BY 1}),
	join("\n",
		'CANCELLED cancelled: 1',
		'CANCELLED changed my mind: 1',
		'CANCELLED customer_cancelled: 1',
		'CANCELLED expired: 1',
		'FAILED payment_failed: 2',
		'PAID -: 2',
		'PAID paid_after_release: 1',
		'PENDING -: 2'),
	'0.1 data has orders in every state and reason, including the free text "changed my mind"');
is($node->safe_psql('up', q{
	SELECT count(DISTINCT r.order_id) || ' pending orders hold ' || sum(r.qty) || ' units'
	  FROM shop.stock_reservation r JOIN shop.orders o ON o.id = r.order_id
	 WHERE o.status = 'PENDING' AND r.state = 'active'}),
	'2 pending orders hold 5 units', '0.1 data: the PENDING orders hold active reservations');
is($node->safe_psql('up', q{
	SELECT string_agg(x, ', ' ORDER BY x) FROM (
		SELECT 'log ' || result || coalesce('/' || review, '') || ' ' || count(*) AS x
		  FROM shop.payment_log GROUP BY result, review
		UNION ALL
		SELECT 'review ' || reason || CASE WHEN resolved_at IS NULL THEN ' open' ELSE ' resolved' END || ' ' || count(*)
		  FROM shop.order_review GROUP BY reason, resolved_at IS NULL
		UNION ALL
		SELECT 'carts ' || CASE WHEN checked_out_at IS NULL THEN 'open' ELSE 'checked out' END || ' ' || count(*)
		  FROM shop.cart GROUP BY checked_out_at IS NULL
		UNION ALL
		SELECT 'adjustments ' || count(*) FROM shop.stock_adjustment
		UNION ALL
		SELECT 'secrets ' || count(*) FROM shop.payment_provider_secret) s}),
	'adjustments 2, carts checked out 2, carts open 2, log ignored 2, log processed 3, '
	  . 'log processed/amount_mismatch 1, log processed/refund_required 2, log unmatched 2, '
	  . 'review amount_mismatch open 1, review refund_required open 1, review refund_required resolved 1, secrets 3',
	'0.1 data: payment log outcomes, open and resolved review flags, open and checked-out carts, stock adjustments, rotated secrets');
is(invariants('up'), '', 'no invariant is broken before the upgrade');

my $before = snapshot('up');
my $reasons_before = order_reasons('up');

###########################################################################
# 2./3. ALTER EXTENSION shop UPDATE keeps every row
###########################################################################
run_ok('up', 'ALTER EXTENSION shop UPDATE', 'ALTER EXTENSION shop UPDATE succeeds on the populated 0.1 database');
is(extversion('up'), '0.2', 'the upgraded database is at version 0.2');

my $after = snapshot('up');
my @tables_before = sort map { / rows$/ ? $_ : () } keys %$before;
my @tables_after = sort map { / rows$/ ? $_ : () } keys %$after;
is(join(', ', grep { my $t = $_; $t =~ s/ rows$//; !$new_tables{$t} } @tables_after),
	join(', ', @tables_before),
	'the upgrade keeps the same tables in schema shop, adding only ' . join(', ', sort keys %new_tables));
is(join(', ', map { "$_ rows=" . ($after->{"$_ rows"} // 'missing') } sort keys %new_tables),
	join(', ', map { "$_ rows=0" } sort keys %new_tables),
	'the tables the upgrade adds exist and are empty');
same_values($after, $before, \@tables_before,
	'every table has the same number of rows after the upgrade', 'after', 'before');
my @dropped = sort grep { !/ rows$/ && !exists $after->{$_} } keys %$before;
my @added = sort grep { !/ rows$/ && !exists $before->{$_} } keys %$after;
note('columns the upgrade dropped: ' . (join(', ', @dropped) || 'none') . '; added: ' . (join(', ', @added) || 'none'));
is(join(', ', grep { !$may_drop{$_} } @dropped), '',
	'the upgrade drops no column except ' . join(', ', sort keys %may_drop));
is(join(', ', grep { my ($t) = /^([^.]+)\./; !$may_add{$_} && !$new_tables{$t} } @added), '',
	'the upgrade adds no column except ' . join(', ', sort keys %may_add));
is($node->safe_psql('up', q{
	SELECT count(*) || ' orders, ' || count(*) FILTER (WHERE subtotal = amount AND discount = 0) || ' with subtotal = amount, discount 0; '
		   || (SELECT count(*) FILTER (WHERE discount = 0) FROM shop.order_item) || ' of '
		   || (SELECT count(*) FROM shop.order_item) || ' lines without discount'
	  FROM shop.orders}),
	$node->safe_psql('up', q{SELECT count(*) || ' orders, ' || count(*) || ' with subtotal = amount, discount 0; '
		   || (SELECT count(*) FROM shop.order_item) || ' of ' || (SELECT count(*) FROM shop.order_item)
		   || ' lines without discount' FROM shop.orders}),
	'the money model: every upgraded order has subtotal = amount and no discount (amount = subtotal - discount holds)');
is($node->safe_psql('up', q{
	SELECT count(*) FILTER (WHERE shipping = 0 AND tax = 0 AND tax_included = 0 AND shipping_method IS NULL
							  AND ship_to IS NULL AND carrier IS NULL AND tracking_no IS NULL
							  AND shipped_at IS NULL AND delivered_at IS NULL AND fulfilment_status IS NULL)
		   = count(*)
	   AND (SELECT bool_and(tax = 0) FROM shop.order_item)
	   AND (SELECT bool_and(tax_class = 'standard') FROM shop.product)
	  FROM shop.orders}), 't',
	'shipping and tax: every upgraded order has no shipping, no tax, no address and no fulfilment; every line tax 0, every product tax_class standard');
my @common = sort grep { !/ rows$/ && exists $after->{$_} && !$migrated{$_} } keys %$before;
same_values($after, $before, \@common,
	'every value of every column that both versions have is unchanged by the upgrade (' . scalar(@common) . ' columns hashed in primary-key order)',
	'after', 'before');

# status_reason: 0.2 accepts only its vocabulary and moves any other 0.1
# text to status_note, setting the reason to 'cancelled'.  Until 0.2 has
# the status_note column, every reason must stay exactly as it was.
my $has_note = has_status_note('up');
my $reasons_after = order_reasons('up');
my %expected_reasons = map {
	my ($reason) = split / \| /, $reasons_before->{$_};
	$_ => (!$has_note || $reason eq '<null>' || $reason_vocabulary{$reason})
	  ? "$reason | <null>"
	  : "cancelled | $reason"
} keys %$reasons_before;
same_values($reasons_after, \%expected_reasons, [ sort { $a <=> $b } keys %expected_reasons ],
	$has_note
	? 'status_reason migration: NULL and vocabulary reasons kept with no note, other 0.1 text moved to status_note and the reason set to cancelled, for every order'
	: 'status_reason is unchanged for every order (this 0.2 has no status_note column)',
	'order after (reason | note)', 'expected');
is($node->safe_psql('up', "SELECT status || ' ' || status_reason || ' ' || coalesce("
	  . ($has_note ? 'status_note' : 'NULL') . ", '-') FROM shop.orders WHERE user_id = 'grace'"),
	$has_note ? 'CANCELLED cancelled changed my mind' : 'CANCELLED changed my mind -',
	'the order released with the free text "changed my mind" is still CANCELLED and keeps its text'
	  . ($has_note ? ' in status_note' : ''));
is(invariants('up'), '', 'no invariant is broken after the upgrade');
same_lines(grants('up'), $grants_fresh,
	"the upgrade keeps the operator's grants: the same as on a fresh install",
	'upgraded', 'fresh 0.2 install');

###########################################################################
# 4. The same catalog as a fresh 0.2 install
###########################################################################
is(extversion('fresh'), '0.2', 'a fresh CREATE EXTENSION shop installs 0.2');
$node->safe_psql('empty_up', 'ALTER EXTENSION shop UPDATE');
is(extversion('empty_up'), '0.2', 'an empty 0.1 database updates to 0.2');

my $fp_fresh = $node->safe_psql('fresh', $sql{fingerprint});
# the fingerprint really describes the extension (guards against a query
# that quietly finds nothing)
my @sections = map { (split / /)[0] } split /\n/, $fp_fresh;
my %sections = map { $_ => 1 } @sections;
my @want = qw(column comment constraint extconfig extension function index initprivs member relation schema sequence type view);
is(join(' ', grep { $sections{$_} } @want), join(' ', @want),
	'the fingerprint has columns, comments, constraints, extconfig, functions, indexes, initial privileges, members, relations, schema, sequences, types and views');
ok(@sections > 300, 'the fingerprint of a fresh install lists more than 300 facts (' . scalar(@sections) . ')');
# schema shop_api (0.2) is in it too, so the comparisons below cover it
is(scalar(grep { /^schema shop_api: owner / } split /\n/, $fp_fresh), 1,
	'the fingerprint covers schema shop_api (owner and ACL)');
my %api_functions = map { /^function function shop_api\.([^(]+)\(/ ? ($1 => 1) : () } split /\n/, $fp_fresh;
is(scalar(keys %api_functions), 33, 'the fingerprint covers the 33 functions of schema shop_api ('
	  . join(', ', sort keys %api_functions) . ')');
same_lines($node->safe_psql('up', $sql{fingerprint}), $fp_fresh,
	'the upgraded, populated database has the same catalog as a fresh 0.2 install (fingerprint.sql)',
	'upgraded 0.1 database', 'fresh 0.2 install');
same_lines($node->safe_psql('empty_up', $sql{fingerprint}), $fp_fresh,
	'an empty 0.1 database updated to 0.2 has the same catalog as a fresh 0.2 install (fingerprint.sql)',
	'empty 0.1 database, updated', 'fresh 0.2 install');
# the confirm-style provider kind toss and shop_confirm_payment (issue #9,
# Toss Payments) come with the upgrade: the kind's CHECK ends the same as a
# fresh install's (the fingerprint compares it too; this names it), and the
# new function is there, granted to no one
my $kind_check = q{SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
	WHERE conrelid = 'shop.payment_provider'::regclass AND conname = 'payment_provider_kind_check'};
like($node->safe_psql('fresh', $kind_check), qr/'toss'/, 'a fresh install accepts the provider kind toss');
is($node->safe_psql('up', $kind_check), $node->safe_psql('fresh', $kind_check),
	'the upgraded database has the same provider kind CHECK, with toss');
is($node->safe_psql('up', q{SELECT p.prosecdef AND NOT pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
	FROM pg_catalog.pg_proc p WHERE p.oid = 'shop.shop_confirm_payment(text,bigint,text,bigint)'::regprocedure}),
	't', 'the upgrade adds shop_confirm_payment, SECURITY DEFINER and not executable by PUBLIC');

###########################################################################
# 6a. pg_dump of the populated, upgraded database, restored into a new one
# (before the smoke flow runs there, so both start from the same rows)
###########################################################################
my $dumpfile = PostgreSQL::Test::Utils::tempdir() . '/up.sql';
my $ids_up = identity_positions('up');
command_ok_showing_errors([ $node->installed_command('pg_dump'), '-d', $node->connstr('up'), '-f', $dumpfile ],
	'pg_dump of the upgraded database succeeds');
command_ok_showing_errors(
	[ $node->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dumpfile ],
	'the dump restores into a new database without error (createdb + psql -f)');
is(extversion('restored'), '0.2', 'the restored database has shop 0.2');
same_lines(snapshot_text(snapshot('restored')), snapshot_text($after),
	'the restored database has every row of the upgraded one (snapshot.sql, all columns)',
	'restored', 'upgraded');
same_lines($node->safe_psql('restored', $sql{fingerprint}), $fp_fresh,
	'the restored database has the same catalog as a fresh 0.2 install (fingerprint.sql)',
	'restored', 'fresh 0.2 install');
is(invariants('restored'), '', 'no invariant is broken in the restored database');
same_lines(grants('restored'), $grants_fresh,
	"the restored database has the operator's grants (pg_dump dumped them)",
	'restored', 'fresh 0.2 install');
my $ids_restored = identity_positions('restored');
same_values({ map { $_ => $ids_restored->{$_}[1] } keys %$ids_restored },
	{ map { $_ => $ids_up->{$_}[1] } keys %$ids_up }, [ sort keys %$ids_up ],
	'pg_dump keeps every identity sequence: each hands out the same next id as in the dumped database',
	'next id restored', 'next id dumped');
is(join("\n", map { "$_: highest id $ids_restored->{$_}[0], next id $ids_restored->{$_}[1]" }
		grep { $ids_restored->{$_}[1] <= $ids_restored->{$_}[0] } sort keys %$ids_restored),
	'', 'in the restored database every identity sequence is past the highest restored id (new rows cannot collide)');

###########################################################################
# 5./6b. The smoke flow gives the same output on all three
###########################################################################
my $smoke_fresh = run_ok('fresh', $sql{smoke}, 'the smoke flow runs on a fresh 0.2 install');
is($smoke_fresh, join("\n",
	'provider: {"kind": "mock", "name": "smoke", "options": {}, "active_secrets": 1}',
	'cart add: qty 3',
	'cart: SMOKE-MUG x 3 = 4500, total 4500',
	'order 1: PENDING 4500 KRW',
	'order 1 again (same key): same order true',
	'stock: on_hand 10 reserved 3 available 7',
	'webhook paid: processed PAID',
	'webhook paid again: duplicate PAID',
	'order 1: PAID payment pay_smoke_1',
	'stock: on_hand 7 reserved 0 available 7',
	'refund by lines: requested 1500 1 unit restocked true',
	'order 1 refunds: partially_refunded, 1500 of 4500, units 1 restocked 1',
	'stock: on_hand 8 reserved 0 available 8',
	'order 2: PENDING',
	'order 2 released: CANCELLED',
	'order 2: CANCELLED cancelled',
	'expired by the sweep: 1',
	'order 3: CANCELLED expired',
	'new order ids are the highest: true',
	'stock: on_hand 8 reserved 0 available 8',
	'smoke orders: PAID -, CANCELLED cancelled, CANCELLED expired',
	'smoke events logged: 1',
	'invariant violations: 0'),
	'smoke on a fresh 0.2 install: cart -> order -> signed webhook -> PAID, duplicate, a refund by lines restocking a unit, release, expiry sweep, no invariant broken');
same_lines(run_ok('up', $sql{smoke}, 'the smoke flow runs on the upgraded database'), $smoke_fresh,
	'the smoke flow gives the same output on the upgraded database as on a fresh install',
	'upgraded', 'fresh 0.2 install');
same_lines(run_ok('restored', $sql{smoke}, 'the smoke flow runs on the restored database (new ids do not collide with restored rows)'),
	$smoke_fresh,
	'the smoke flow gives the same output on the restored database as on a fresh install',
	'restored', 'fresh 0.2 install');
is(invariants('up') . invariants('restored'), '',
	'no invariant is broken after the smoke flow on the upgraded and the restored databases');

###########################################################################
# 7. Schema shop_api (0.2) works on the upgraded database as on a fresh one
###########################################################################
$node->safe_psql('postgres', $_)
  for ('CREATE ROLE api_anon', 'CREATE ROLE api_customer', 'CREATE ROLE api_webhook');
my $api_grant = q{SELECT shop.shop_api_grant('api_anon', 'api_customer', 'api_webhook')};
run_ok($_, $api_grant, "shop.shop_api_grant runs on the $_ database") for qw(fresh up);
my @api_grants = grep { /shop_api/ } split /\n/, grants('fresh');
is(scalar(@api_grants), 26,
	'shop_api_grant gives 26 rights on a fresh install (USAGE on shop_api to 3 roles, EXECUTE on 4 + 17 + 2 functions)');
same_lines(grants('up'), grants('fresh'),
	'after shop_api_grant the upgraded database has the same grants as the fresh install',
	'upgraded', 'fresh 0.2 install');
my $api_smoke = q{
	\set ON_ERROR_STOP 1
	SET request.jwt.claims = '{"sub": "api-smoke-buyer"}';
	SET ROLE api_customer;
	SELECT 'api cart add: qty ' || qty FROM shop_api.cart_add((SELECT sku_id FROM shop_api.products() WHERE sku_code = 'SMOKE-MUG'), 2);
	SELECT 'api order: ' || status || ' ' || amount || ' ' || currency FROM shop_api.create_order('api-smoke-1');
	SELECT 'api orders: ' || string_agg(status, ', ') FROM shop_api.orders();
	SELECT 'api order lines: ' || jsonb_array_length(shop_api."order"(order_id) -> 'items') FROM shop_api.orders();
	SELECT 'api cancel: ' || status FROM shop_api.cancel_order((SELECT max(order_id) FROM shop_api.orders()));
	RESET ROLE;
	SELECT 'invariant violations: ' || count(*) FROM shop.shop_check_invariants();
};
my $api_fresh = run_ok('fresh', $api_smoke, 'the shop_api smoke flow runs on the fresh install (as the customer role)');
is($api_fresh, join("\n",
	'api cart add: qty 2',
	'api order: PENDING 3000 KRW',
	'api orders: PENDING',
	'api order lines: 1',
	'api cancel: CANCELLED',
	'invariant violations: 0'),
	'shop_api on a fresh install: cart add, order, orders, order, cancel as the customer role');
same_lines(run_ok('up', $api_smoke, 'the shop_api smoke flow runs on the upgraded database (as the customer role)'),
	$api_fresh, 'the shop_api smoke flow gives the same output on the upgraded database', 'upgraded',
	'fresh 0.2 install');

$node->stop;
note(sprintf('004_upgrade took %.1f s', time - $started));
done_testing();

# A backend skips the emit statement of an event type that no endpoint
# subscribes to (src/events_gate.c), and runs it again as soon as another
# session's change of the endpoints commits: the skip never loses an event.
# The counters it reads live in shared memory, so shop is preloaded here.
#
# Whether a call ran the emit statement is read from the caller's own
# statistics: the statement reads shop.event_endpoint, a skipped one does
# not.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopOutboxTest;

my $node = outbox_node('events_gate');
my $buyer = ShopOutboxTest::Session->new($node);    # one backend throughout
my $other = ShopOutboxTest::Session->new($node);    # the one that changes endpoints
my $n = 0;

# Run $call (SQL returning one value, %ORDER% replaced by $order) in its
# own transaction of the buyer's backend; returns (its value, reads of
# shop.event_endpoint in that transaction).
sub in_buyer_xact
{
	my ($call, $begin) = @_;
	# the backend's scan counts not yet flushed to the statistics; they
	# cover earlier transactions too, hence the difference
	my $scans = q{SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0)
		FROM pg_stat_xact_user_tables WHERE relid = 'shop.event_endpoint'::regclass};
	$buyer->query($begin // 'BEGIN');
	my $before = $buyer->query($scans);
	my $v = $buyer->query($call);
	my $reads = $buyer->query($scans) - $before;
	$buyer->query('COMMIT');
	return ($v, $reads);
}

sub buy_in_buyer
{
	my ($begin) = @_;
	$n++;
	return in_buyer_xact(qq{SELECT id FROM shop.shop_buy_now('gate$n', '[{"sku_id": 1, "qty": 1}]')}, $begin);
}

sub events_of
{
	my ($order) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(type, ',' ORDER BY id), '') FROM shop.event WHERE order_id = $order");
}

# --- no endpoint: the statement runs once, then is skipped
my ($o1, $r1) = buy_in_buyer();
is($r1, 1, 'no endpoint: the first order.created runs the emit statement (it reads the endpoints)');
my ($o2, $r2) = buy_in_buyer();
is($r2, 0, 'the next one skips it: the type had no endpoint and no endpoint changed');
is(events_of($o1) . events_of($o2), '', 'and neither wrote an event (there is no endpoint)');
my (undef, $rp1) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o1, 'pay_gate1')");
my (undef, $rp2) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o2, 'pay_gate2')");
is("$rp1 $rp2", '1 0', 'order.paid is remembered on its own: run once, then skipped');

# --- a subscription another session commits is seen by the next call
$node->safe_psql('postgres', q{SELECT shop.shop_subscribe('http://127.0.0.1:9/gate/created', ARRAY['order.created'])});
my ($o3, $r3) = buy_in_buyer();
is(events_of($o3), 'order.created', 'after another session subscribed to order.created, the next order writes it');
ok($r3 >= 1, 'that call ran the emit statement');
my (undef, $rp3) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o3, 'pay_gate3')");
my ($o4) = buy_in_buyer();
my (undef, $rp4) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o4, 'pay_gate4')");
is("$rp3 $rp4", '1 0',
	'order.paid (not subscribed) runs once after the change, then is skipped again');
is(events_of($o4), 'order.created', 'and writes nothing');

# --- a change rolled back changes nothing
$other->query('BEGIN');
$other->query(q{SELECT shop.shop_subscribe('http://127.0.0.1:9/gate/rolled-back', ARRAY['*']) IS NOT NULL});
my ($o5) = buy_in_buyer();
my (undef, $rp5) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o5, 'pay_gate5')");
is($rp5, 0, 'a subscription not committed yet: order.paid is still skipped');
is(events_of($o5), 'order.created', 'and writes nothing for it');
$other->query('ROLLBACK');
my ($o6) = buy_in_buyer();
my (undef, $rp6) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o6, 'pay_gate6')");
is(events_of($o6), 'order.created', 'a subscription rolled back: no order.paid');

# --- a subscription committed while the buyer's backend has the type remembered
$other->query('BEGIN');
$other->query(q{SELECT shop.shop_subscribe('http://127.0.0.1:9/gate/all', ARRAY['*']) IS NOT NULL});
my ($o7) = buy_in_buyer();
my (undef, $rp7) = in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o7, 'pay_gate7')");
is($rp7, 0, 'before the other session commits, order.paid is skipped');
$other->query('COMMIT');
my ($o8) = buy_in_buyer();
in_buyer_xact("SELECT status FROM shop.shop_confirm_paid($o8, 'pay_gate8')");
is(events_of($o8), 'order.created,order.paid',
	'right after it commits, the next order writes order.created and order.paid');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id WHERE e.order_id = $o8"),
	'3', 'one delivery per endpoint subscribed: 2 of order.created, 1 of order.paid');

# --- the buyer's own transaction subscribes: its later emits in it see it
$node->safe_psql('postgres', q{SELECT count(shop.shop_unsubscribe(id)) FROM shop.event_endpoint WHERE removed_at IS NULL});
my ($o9) = buy_in_buyer();
in_buyer_xact("SELECT status FROM shop.shop_release($o9)");
my ($o10) = buy_in_buyer();
my (undef, $rc10) = in_buyer_xact("SELECT status FROM shop.shop_release($o10)");
is($rc10, 0, 'every endpoint unsubscribed: order.cancelled is skipped again');
$buyer->query('BEGIN');
$buyer->query(q{SELECT shop.shop_subscribe('http://127.0.0.1:9/gate/own', ARRAY['order.cancelled']) IS NOT NULL});
$n++;
my $o11 = $buyer->query(qq{SELECT id FROM shop.shop_buy_now('gate$n', '[{"sku_id": 1, "qty": 1}]')});
$buyer->query("SELECT status FROM shop.shop_release($o11)");
$buyer->query('COMMIT');
is(events_of($o11), 'order.cancelled',
	'a transaction that subscribes and then cancels an order writes the order.cancelled');

# --- a change made with plain SQL on the table (not through shop_subscribe)
$node->safe_psql('postgres', q{SELECT count(shop.shop_unsubscribe(id)) FROM shop.event_endpoint WHERE removed_at IS NULL});
my ($o12) = buy_in_buyer();
my ($o13, $r13) = buy_in_buyer();
is($r13, 0, 'order.created is skipped with no endpoint');
$node->safe_psql('postgres',
	q{INSERT INTO shop.event_endpoint (url, event_types) VALUES ('http://127.0.0.1:9/gate/sql', ARRAY['order.created'])});
my ($o14) = buy_in_buyer();
is(events_of($o14), 'order.created', 'an endpoint INSERTed by plain SQL is seen by the next order');
$node->safe_psql('postgres',
	q{UPDATE shop.event_endpoint SET event_types = ARRAY['stock.low'] WHERE url = 'http://127.0.0.1:9/gate/sql'});
my ($o15) = buy_in_buyer();
my ($o16, $r16) = buy_in_buyer();
is(events_of($o15) . events_of($o16) . ":$r16", ':0',
	'its event_types changed by plain SQL: order.created is looked up again (none), then skipped');
$node->safe_psql('postgres',
	q{UPDATE shop.event_endpoint SET event_types = ARRAY['*'] WHERE url = 'http://127.0.0.1:9/gate/sql'});
my ($o17) = buy_in_buyer();
is(events_of($o17), 'order.created', 'and back to every type: the next order writes it');

# --- REPEATABLE READ never remembers (its snapshot may predate a change)
$node->safe_psql('postgres', q{UPDATE shop.event_endpoint SET removed_at = now() WHERE removed_at IS NULL});
my (undef, $rr1) = buy_in_buyer('BEGIN ISOLATION LEVEL REPEATABLE READ');
my (undef, $rr2) = buy_in_buyer('BEGIN ISOLATION LEVEL REPEATABLE READ');
is("$rr1 $rr2", '1 1', 'in REPEATABLE READ the statement runs every time');
my (undef, $rc1) = buy_in_buyer();
my (undef, $rc2) = buy_in_buyer();
is("$rc1 $rc2", '1 0', 'in READ COMMITTED it runs once, then is skipped');

is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0', 'invariants hold');
$buyer->quit;
$other->quit;
$node->stop;
done_testing();

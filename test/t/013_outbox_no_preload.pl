# Without shared_preload_libraries = 'shop' there is no delivery worker,
# and the shop still sells: orders work, their events queue up in
# shop.outbox, shop.outbox_health says worker_running = false and shows the
# backlog, shop_subscribe warns.  Preloading later (and restarting) sends
# the backlog.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopOutboxTest;

my $node = PostgreSQL::Test::Cluster->new('outbox_no_preload');
$node->init;
$node->append_conf('postgresql.conf', qq{
shop.outbox_allow_http_loopback = on
shop.outbox_retry_base = '100ms'
shop.outbox_poll_interval = '100ms'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION shop;
	INSERT INTO shop.product (id, name, price) VALUES (1, 'Mug', 10000);
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (1, 1, 'MUG-001', 100);
});
my $recv = ShopOutboxTest::Receiver->start(name => 'receiver_013');

my $url = $recv->url('/ok/nopreload');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT shop.shop_subscribe('$url', ARRAY['*'])");
is($ret, 0, 'shop_subscribe works without the worker');
like($err, qr/WARNING/, 'and warns that nothing is sent');
note("its warning: $err");
my $sub = json_decode($out);
$recv->set_secret('/ok/nopreload', $sub->{secret});

my $o1 = buy($node, 'np1');
is($node->safe_psql('postgres', "SELECT status FROM shop.shop_confirm_paid($o1, 'pay_np1')"), 'PAID',
	'an order is placed and paid');
my $o2 = buy($node, 'np2');
is($node->safe_psql('postgres', "SELECT status FROM shop.shop_release($o2)"), 'CANCELLED', 'another is cancelled');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0', 'invariants hold');

is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'shop outbox worker'"),
	'0', 'no worker process');
is($node->safe_psql('postgres', 'SELECT state, attempts, count(*) FROM shop.outbox GROUP BY 1, 2'),
	'queued|0|4', 'the 4 events wait in shop.outbox, queued, never tried');
is($node->safe_psql('postgres', 'SELECT worker_running, queued, in_flight, failed, dead FROM shop.outbox_health'),
	'f|4|0|0|0', 'shop.outbox_health: worker_running false, 4 queued');
ok(poll_sql($node, q{SELECT oldest_due_age > interval '0' FROM shop.outbox_health}),
	'shop.outbox_health shows the age of the oldest due row');
is(scalar @{ $recv->deliveries }, 0, 'nothing was sent');

# preload it now: the backlog goes out
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'shop'
shop.database_name = 'postgres'
});
$node->restart;
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'preloaded: the worker runs');
ok(poll_sql($node, "SELECT count(*) = 4 AND bool_and(state = 'delivered') FROM shop.outbox"),
	'the backlog is delivered');
my $got = $recv->deliveries('/ok/nopreload');
is(scalar(grep { $_->{verified} } @$got), 4, 'all 4 delivered and verified');

$recv->stop;
$node->stop;
done_testing();

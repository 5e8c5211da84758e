# pg_cron runs the expiry sweep: shop_schedule_expiry() registers one job,
# the job survives a restart, and it really releases expired orders.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
# jobs run in background workers: the test server has no TCP listener
cron.use_background_workers = on
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION shop;
	INSERT INTO shop.product (id, name, price) VALUES (1, 'Ticket', 5000);
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (1, 1, 'TICKET', 3);
});

my $job = $node->safe_psql('postgres', q{SELECT shop.shop_schedule_expiry('* * * * *')});
ok($job > 0, 'the expiry job is registered');
is($node->safe_psql('postgres', q{SELECT shop.shop_schedule_expiry('* * * * *')}),
	$job, 'registering again keeps the one job');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM cron.job WHERE command = 'SELECT shop.shop_expire_pending()'}),
	'1', 'exactly one job runs the sweep');

# from a database pg_cron does not run from, the error says what to run there
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION shop');
my ($rc, $out, $err) = $node->psql('other', q{SELECT shop.shop_schedule_expiry('*/5 * * * *')});
isnt($rc, 0, 'scheduling from another database fails');
like($err, qr/pg_cron runs jobs from database "postgres", not "other"/, 'it names both databases');
like($err, qr/cron\.schedule_in_database\('shop-expire-pending', '\*\/5 \* \* \* \*', 'SELECT shop\.shop_expire_pending\(\)', 'other'\)/,
	'its hint is the call to run in the cron database');

# the job is stored, not held in memory: it survives a restart
$node->restart;

my $order = $node->safe_psql('postgres',
	q{SELECT id FROM shop.shop_buy_now('late', '[{"sku_id": 1, "qty": 2}]')});
$node->safe_psql('postgres',
	"UPDATE shop.orders SET expires_at = now() - interval '1 minute' WHERE id = $order");
is($node->safe_psql('postgres', 'SELECT reserved FROM shop.sku WHERE id = 1'),
	'2', 'the expired order still holds its stock before the sweep');

# pg_cron 1.4 schedules by the minute: allow for the next full minute
ok($node->poll_query_until('postgres',
		"SELECT status = 'CANCELLED' FROM shop.orders WHERE id = $order"),
	'the scheduled sweep released the expired order');
is($node->safe_psql('postgres', "SELECT status_reason FROM shop.orders WHERE id = $order"),
	'expired', 'with reason expired');
is($node->safe_psql('postgres', 'SELECT reserved FROM shop.sku WHERE id = 1'),
	'0', 'its stock is available again');
is($node->safe_psql('postgres',
	q{SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = } . $job . q{ AND status = 'succeeded'}),
	't', 'pg_cron recorded a successful run');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'),
	'0', 'no invariant is broken');

$node->stop;
done_testing();

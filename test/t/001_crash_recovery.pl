# Crash recovery: an immediate shutdown (no checkpoint, like a power cut)
# loses nothing committed, keeps nothing uncommitted, and leaves the stock
# counters, reservations and orders consistent.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION shop;
	INSERT INTO shop.product (id, name, price) VALUES (1, 'Mug', 10000);
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (1, 1, 'MUG', 10), (2, 1, 'MUG-XL', 10);
});

# committed work of every kind: paid, released, pending
my $paid = $node->safe_psql('postgres',
	q{SELECT id FROM shop.shop_buy_now('u1', '[{"sku_id": 1, "qty": 2}, {"sku_id": 2, "qty": 1}]')});
$node->safe_psql('postgres', "SELECT shop.shop_confirm_paid($paid, 'pay_1')");
my $released = $node->safe_psql('postgres',
	q{SELECT id FROM shop.shop_buy_now('u2', '[{"sku_id": 1, "qty": 3}]')});
$node->safe_psql('postgres', "SELECT shop.shop_release($released)");
my $pending = $node->safe_psql('postgres',
	q{SELECT id FROM shop.shop_buy_now('u3', '[{"sku_id": 2, "qty": 4}]', 'key-3')});

# work in flight at the crash: a reservation and a confirm, uncommitted
my $inflight = $node->background_psql('postgres');
$inflight->query_safe('BEGIN');
$inflight->query_safe(q{SELECT shop.shop_buy_now('u4', '[{"sku_id": 1, "qty": 5}]')});
$inflight->query_safe("SELECT shop.shop_confirm_paid($pending, 'pay_3')");

$node->stop('immediate');
eval { $inflight->quit };
$node->start;

is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'),
	'0', 'no invariant is broken after crash recovery');
is($node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $paid"),
	'PAID', 'the committed payment survived');
is($node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $released"),
	'CANCELLED', 'the committed release survived');
is($node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $pending"),
	'PENDING', 'the uncommitted confirm is gone');
is($node->safe_psql('postgres', q{SELECT count(*) FROM shop.orders WHERE user_id = 'u4'}),
	'0', 'the uncommitted order is gone');
is($node->safe_psql('postgres', 'SELECT on_hand || \'/\' || reserved FROM shop.sku ORDER BY id'),
	"8/0\n9/4", 'stock counters are exactly the committed ones');

# the recovered shop keeps working: the pending order can still be paid,
# and its idempotency key still returns it
is($node->safe_psql('postgres',
	q{SELECT id FROM shop.shop_buy_now('u3', '[{"sku_id": 2, "qty": 4}]', 'key-3')}),
	$pending, 'idempotency key still maps to the recovered order');
is($node->safe_psql('postgres', "SELECT status FROM shop.shop_confirm_paid($pending, 'pay_3')"),
	'PAID', 'the recovered pending order can be confirmed');
is($node->safe_psql('postgres', 'SELECT on_hand || \'/\' || reserved FROM shop.sku WHERE id = 2'),
	'5/0', 'its reservation was consumed');

$node->stop;
done_testing();

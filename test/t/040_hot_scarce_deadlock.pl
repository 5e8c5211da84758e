# A scarce SKU in hot-SKU mode sold out by 64 buyers at once (README,
# "Hot-SKU mode"): no deadlock, every unit sold, a buyer refused only with
# SH001 once the SKU is sold out.
#
# The race this guards: a hot reservation statement that locks a bucket
# and then finds it short (its stock sold by another buyer after the
# statement's snapshot: the row stays locked after the recheck fails) used
# to keep that lock while the exact path that follows waited for the SKU
# row, against the exact path's order (SKU row, then buckets).  make bench
# counted 34 deadlocks in one scarce run; the same rounds as below gave
# 16-73 deadlocks per configuration before the fix (src/reserve.c,
# hot_exec_or_undo).  It needs real concurrency, so pgbench drives it: an
# isolation spec cannot stop a statement between its snapshot and its lock.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('hot_scarce');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_connections = 100
deadlock_timeout = '100ms'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION shop;
	INSERT INTO shop.product (id, name, price) VALUES (1, 'Scarce', 10000);
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (1, 1, 'SCARCE-1', 0);
});

# One cycle per buyer: add the one unit to a cart, order it, pay it; a
# pgbench client stops at its first error (SH001 once sold out).
my $script = "$PostgreSQL::Test::Utils::tmp_check/scarce.sql";
open(my $fh, '>', $script) or die "cannot write $script: $!";
print $fh q{\set n :n + 1
\set uid :round * 1000000000 + :client_id * 1000000 + :n
SELECT shop.shop_cart_add(:uid::text, 1, 1);
SELECT id AS oid FROM shop.shop_create_order(:uid::text) \gset
SELECT shop.shop_confirm_paid(:oid, 'pay-scarce');
};
close($fh);

my $round = 0;
my $units = 100;
for my $buckets (64, 16)
{
	$node->safe_psql('postgres', "SELECT shop.shop_set_sku_mode(1, $buckets)");
	for (1 .. 3)
	{
		$round++;
		$node->safe_psql('postgres', "SELECT shop.shop_adjust_stock(1, $units, 'round $round')");
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'pgbench', '-n', '--failures-detailed', '-c', '64', '-j', '2', '-T', '60', '-D', 'n=0',
						'-D', "round=$round", '-f', $script, $node->connstr('postgres') ],
			'>', \$out, '2>', \$err);
		my %errors;
		$errors{$1}++ while $err =~ /aborted in command \d+ query \d+: ERROR:\s+(.*)/g;
		my @other = grep { !/^insufficient stock for SKU "SCARCE-1"/ } sort keys %errors;
		ok(scalar(keys %errors) > 0, "$buckets buckets, round $round: buyers were refused once it was sold out")
		  or diag($err);
		is(join("\n", @other), '', "$buckets buckets, round $round: every buyer refused was refused for stock");
		# pgbench counts a deadlock as a failed transaction and goes on
		my ($dl) = $out =~ /number of deadlock failures: (\d+)/;
		is($dl, 0, "$buckets buckets, round $round: no transaction failed with a deadlock") or diag($out);
		is($node->safe_psql('postgres', "SELECT count(*) FROM shop.orders WHERE status = 'PAID'"),
			$units * $round, "$buckets buckets, round $round: all $units units sold");
	}
}
is($node->safe_psql('postgres', 'SELECT on_hand, reserved FROM shop.sku_stock WHERE sku_id = 1'), '0|0',
	'nothing left, nothing held');
my $log = slurp_file($node->logfile);
my $deadlocks = () = $log =~ /deadlock detected/g;
is($deadlocks, 0, 'no deadlock in the server log');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0', 'invariants hold');

$node->stop;
done_testing();

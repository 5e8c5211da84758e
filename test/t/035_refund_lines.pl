# Refunds by lines with a restock policy (issue 13; README "Refunds by
# lines"), end to end with the outbox worker and the mock payment provider
# (demo/mock_provider.js): a partial refund of a PAID order by its lines
# (one mug by SKU, restocked; two spoons by order line, not restocked)
# reaches the provider once, as one POST /v1/refunds with the Idempotency-Key
# refund-<id> and the lines' amount; the order is partially_refunded, the
# mug back on hand with its stock adjustment.  The rest (no lines, no
# amount) refunds every unit left, restocked, and the order is refunded:
# two refunds at the provider, each under its own key.  A refund the
# provider refuses (400) ends failed: its money counts no more (the order
# is partially_refunded again), its units stay restocked and refunded, and
# the operator gives the money back with an amount-only refund.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopProviderTest;

my $node = provider_node('refund_lines');
my $mock = ShopProviderTest::Mock->start(name => 'mock_035');
register_provider($node, $mock);
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');
# an endpoint for order.refunded, disabled: its rows are written, never sent
$node->safe_psql('postgres', q{
	SELECT shop.shop_subscribe('https://refund-lines.example.test/hook', ARRAY['order.refunded']);
	UPDATE shop.event_endpoint SET enabled = false WHERE url = 'https://refund-lines.example.test/hook';
});

sub status_of
{
	my ($order) = @_;
	return $node->safe_psql('postgres', "SELECT state || ' ' || paid || ' ' || refunded || ' ' || succeeded || ' '
		|| failed || ' ' || units_refunded || ' ' || units_restocked FROM shop.order_refund_status WHERE order_id = $order");
}
sub on_hand { return $node->safe_psql('postgres', "SELECT on_hand FROM shop.sku WHERE id = $_[0]"); }
sub refund_posts
{
	my ($key, $since) = @_;
	return [ grep { $_->{method} eq 'POST' && ($_->{idempotency_key} // '') eq $key }
		  @{ $mock->requests(path => '/v1/refunds', since => $since) } ];
}
sub refund_state_is
{
	my ($id, $state) = @_;
	return poll_sql($node, "SELECT state FROM shop.refund WHERE id = $id", $state);
}

# 2 mugs (10000 each) and 3 spoons (2500 each): 27500 KRW, paid at the mock.
my ($order, $pi) = paid_order($node, $mock, 'lines-alice', [ [ 1, 2 ], [ 2, 3 ] ]);
my $spoon_line = $node->safe_psql('postgres', "SELECT id FROM shop.order_item WHERE order_id = $order AND sku_id = 2");
is(status_of($order), 'none 27500 0 0 0 0 0', 'the PAID order: none refunded of 27500');
my ($mugs, $spoons) = (on_hand(1), on_hand(2));
my $seq = $mock->last_seq;

my $r = sql_call($node, qq{SELECT shop.shop_refund($order, reason => 'returned', lines =>
	'[{"sku_id": 1, "qty": 1}, {"order_item_id": $spoon_line, "qty": 2, "restock": "no_restock"}]')});
ok($r->{ok}, 'shop_refund by lines') or diag($r->{error});
my $rf = $r->{ok} ? json_decode($r->{value}) : {};
is_deeply([ @$rf{qw(state amount currency)} ], [ 'requested', 15000, 'KRW' ],
	'... requested, 15000 KRW: one mug (10000) and two spoons (2 x 2500)');
is_deeply([ map { "$_->{sku_id} x$_->{qty} $_->{amount} " . ($_->{restocked} ? 'restocked' : 'not') } @{ $rf->{lines} // [] } ],
	[ '1 x1 10000 restocked', '2 x2 5000 not' ], '... its lines: the mug restocked, the spoons not');
my $id1 = $rf->{refund_id} // 0;
is(status_of($order) =~ s/^(\S+ \S+ \S+) \S+ (.*)$/$1 $2/r, 'partially_refunded 27500 15000 0 3 1',
	'the order is partially_refunded at once (a requested refund counts, sent or not)');
is(on_hand(1), $mugs + 1, 'the mug is back on hand at once (decision time, like Shopify)');
is(on_hand(2), $spoons, 'the spoons are not');
is($node->safe_psql('postgres', "SELECT delta || ' ' || reason FROM shop.stock_adjustment WHERE sku_id = 1 ORDER BY id DESC LIMIT 1"),
	"1 refund $id1 of order $order", '... booked as a stock adjustment naming the refund');

ok(refund_state_is($id1, 'succeeded'), 'the worker sends it: succeeded');
my $ev = query_json($node, "SELECT payload FROM shop.event WHERE type = 'order.refunded'
	AND (payload -> 'refund' ->> 'id')::bigint = $id1");
is(scalar @$ev, 1, 'one order.refunded for it');
is_deeply([ map { "$_->{sku_id} x$_->{qty} $_->{amount} " . ($_->{restocked} ? 'restocked' : 'not') }
		@{ $ev->[0]{payload}{refund}{lines} // [] } ],
	[ '1 x1 10000 restocked', '2 x2 5000 not' ], '... with the refund\'s lines, as shop_refund returned them');
is($ev->[0]{payload}{order}{id}, $order, '... and the order');
my $posts = refund_posts("refund-$id1", $seq);
is(scalar @$posts, 1, "one POST /v1/refunds with Idempotency-Key refund-$id1");
is_deeply({ payment_intent => $posts->[0]{form}{payment_intent}, amount => $posts->[0]{form}{amount},
		refund_id => $posts->[0]{form}{metadata}{refund_id} },
	{ payment_intent => $pi, amount => 15000, refund_id => $id1 }, '... of 15000 of the payment, naming the refund');
is_deeply([ map { $_->{amount} } @{ $mock->refunds_of($pi) } ], [15000], 'the provider made exactly that refund');
is(status_of($order), 'partially_refunded 27500 15000 15000 0 3 1', 'the order stays partially_refunded, 15000 succeeded');

# The rest: no lines, no amount; every unit left (a mug, a spoon) restocked.
$seq = $mock->last_seq;
$r = sql_call($node, "SELECT shop.shop_refund($order)");
ok($r->{ok}, 'shop_refund of the rest') or diag($r->{error});
my $rest = $r->{ok} ? json_decode($r->{value}) : {};
is($rest->{amount}, 12500, '... 12500');
is_deeply([ map { "$_->{sku_id} x$_->{qty} " . ($_->{restocked} ? 'restocked' : 'not') } @{ $rest->{lines} // [] } ],
	[ '1 x1 restocked', '2 x1 restocked' ], '... the last mug and spoon, restocked');
ok(refund_state_is($rest->{refund_id} // 0, 'succeeded'), '... succeeded');
is(scalar @{ refund_posts('refund-' . ($rest->{refund_id} // 0), $seq) }, 1, '... one POST under its own key');
is_deeply([ map { $_->{amount} } @{ $mock->refunds_of($pi) } ], [ 15000, 12500 ], 'the provider holds the two refunds');
is(status_of($order), 'refunded 27500 27500 27500 0 5 3', 'the order is refunded: 5 units, 3 restocked');
is(on_hand(1) . ' ' . on_hand(2), ($mugs + 2) . ' ' . ($spoons + 1), 'on hand: both mugs and one spoon back');
is(sql_call($node, qq{SELECT shop.shop_refund($order, lines => '[{"sku_id": 1, "qty": 1}]')})->{sqlstate}, 'SH041',
	'a third mug: SH041 (none left of the line)');

# The provider refuses: the refund is failed, its units stay restocked.
my ($o2, $pi2) = paid_order($node, $mock, 'lines-bob', [ [ 2, 2 ] ]);    # 5000
$spoons = on_hand(2);
$mock->fail(path => '/v1/refunds', mode => 'status', status => 400, message => 'Refund refused by the mock: card expired');
$r = sql_call($node, qq{SELECT shop.shop_refund($o2, lines => '[{"sku_id": 2, "qty": 2}]')});
my $id2 = $r->{ok} ? json_decode($r->{value})->{refund_id} : 0;
ok(refund_state_is($id2, 'failed'), 'the provider refuses (400): the refund is failed');
$mock->clear_fail;
is(on_hand(2), $spoons + 2, '... the spoons stay restocked (the decision stands; README says the operator decides)');
is(status_of($o2), 'none 5000 0 0 5000 2 2', '... its money counts no more; its units are refunded and restocked');
is(sql_call($node, qq{SELECT shop.shop_refund($o2, lines => '[{"sku_id": 2, "qty": 1}]')})->{sqlstate}, 'SH041',
	'... the units cannot be refunded again');
$r = sql_call($node, "SELECT shop.shop_refund($o2, 5000, 'again, as money')");
ok($r->{ok}, 'the operator refunds the money again by amount') or diag($r->{error});
ok(refund_state_is($r->{ok} ? json_decode($r->{value})->{refund_id} : 0, 'succeeded'), '... succeeded');
is(status_of($o2), 'refunded 5000 5000 5000 5000 2 2', 'the order is refunded');
is_deeply([ map { $_->{amount} } @{ $mock->refunds_of($pi2) } ], [5000], 'the provider made one refund of 5000');

is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0', 'no invariant is broken');

$node->stop;
done_testing();

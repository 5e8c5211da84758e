# Payment provider calls and crashes (README "Payment provider calls", rule
# 2, exactly once in effect): a refund is on the wire when the server stops
# with an immediate shutdown (no checkpoint, the worker killed mid-request).
# After the restart the worker sends it again with the same Idempotency-Key
# and the mock payment provider (demo/mock_provider.js) answers from its
# idempotency cache: the provider holds EXACTLY ONE refund, and the shop's
# refund is succeeded with that refund's id.  Two ways: the provider acted
# at once and its answer never came (hang), and the provider acts only
# seconds later (slow), so that the retry meets the first request still in
# progress (409, retried) before it gets the saved answer.  Both on
# automatic refunds (of a second payment, queued by the webhook) and once
# on shop_refund's.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopProviderTest;

# A request stays in flight for up to 5 s (the lease is 10 s): the crash
# comes while the worker is still waiting.  Enough attempts for 15 s of 409s.
my $node = provider_node('provider_crash',
	'shop.outbox_timeout'      => q{'5s'},
	'shop.outbox_max_attempts' => '60');
my $mock = ShopProviderTest::Mock->start(name => 'mock_032');
register_provider($node, $mock);
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');

sub refund_posts
{
	my ($key, $since) = @_;
	return [ grep { $_->{method} eq 'POST' && ($_->{idempotency_key} // '') eq $key }
		  @{ $mock->requests(path => '/v1/refunds', since => $since) } ];
}

# A refund queued by shop_refund (2500 of a paid order), or automatically
# (10000: a second payment of a paid order, flagged by its webhook).
sub queue_refund
{
	my ($what, $how) = @_;
	my ($order, $pi) = paid_order($node, $mock, "crash-$what");
	if ($how eq 'shop_refund')
	{
		my $r = sql_call($node, "SELECT shop.shop_refund($order, 2500)");
		ok($r->{ok}, "$what: shop_refund queued a refund") or diag($r->{error});
		return ($r->{ok} ? json_decode($r->{value})->{refund_id} : 0, $pi, 2500);
	}
	my $second = $mock->api_post('/v1/checkout/sessions', [
		mode => 'payment', 'line_items[0][price_data][currency]' => 'krw',
		'line_items[0][price_data][unit_amount]' => 10000, 'line_items[0][price_data][product_data][name]' => 'Mug',
		'line_items[0][quantity]' => 1, 'metadata[order_id]' => $order, success_url => 'https://shop.example/ok' ],
		key => "second-session-$order");
	die "second session: " . explain($second) unless $second->{status} == 200;
	my $paid = $mock->pay($second->{json}{id});
	my $relayed = relay_events($node, $mock);
	is($relayed->[0]{result}{review}, 'refund_required', "$what: a second payment is flagged refund_required");
	my $id = $node->safe_psql('postgres', "SELECT id FROM shop.refund WHERE order_id = $order");
	ok($id ne '', "$what: an automatic refund was queued");
	return ($id || 0, $paid->{session}{payment_intent}, 10000);
}

sub crash_with_refund_in_flight
{
	my ($what, $how, $rule) = @_;
	my $seq = $mock->last_seq;
	$mock->fail(path => '/v1/refunds', %$rule);
	my ($id, $pi, $amount) = queue_refund($what, $how);
	ok(wait_until(sub { @{ refund_posts("refund-$id", $seq) } >= 1 }, 30), "$what: the refund is on the wire");
	is($node->safe_psql('postgres', "SELECT state FROM shop.outbox WHERE idempotency_key = 'refund-$id'"),
		'in_flight', "$what: its outbox row is in flight");
	is($node->safe_psql('postgres', "SELECT state FROM shop.refund WHERE id = $id"), 'requested',
		"$what: the refund is requested");

	$node->stop('immediate');
	my $at_crash = scalar @{ $mock->refunds_of($pi) };
	$node->start;

	ok(poll_sql($node, "SELECT state FROM shop.refund WHERE id = $id", 'succeeded', 60),
		"$what: after the restart the refund succeeds");
	my $made = $mock->refunds_of($pi);
	is(scalar @$made, 1, "$what: the provider holds exactly one refund ($at_crash when the server stopped)");
	is($made->[0]{amount}, $amount, "$what: of $amount");
	my $row = one_json($node, "SELECT to_jsonb(r) FROM shop.refund r WHERE id = $id") // {};
	ok(grep({ defined $_ && !ref $_ && $_ eq ($made->[0]{id} // 'none') } values %$row),
		"$what: shop.refund holds the provider's refund id");
	my $posts = refund_posts("refund-$id", $seq);
	ok(@$posts >= 2, "$what: the request was sent again after the restart, with the same key refund-$id ("
		  . scalar(@$posts) . ' POSTs)');
	is_deeply([ map { $_->{idempotency_key} } @$posts ], [ ("refund-$id") x @$posts ], "$what: every POST had that key");
	ok(@$posts && $posts->[-1]{replayed} && $posts->[-1]{answer} == 200,
		"$what: the last one was answered from the provider's idempotency cache")
	  or diag(explain([ map { { answer => $_->{answer}, replayed => $_->{replayed}, failure => $_->{failure} } } @$posts ]));
	note("$what: answers " . join(', ', map { $_->{answer} . ($_->{replayed} ? ' (replayed)' : '') } @$posts));
	$mock->clear_fail;
	return $posts;
}

# The provider refunds at once; its answer never comes.
crash_with_refund_in_flight('answer lost', 'automatic', { mode => 'hang', process => JSON::PP::true });

# The provider takes 15 s before it acts (room for the stop, the start and
# the worker's first claim on a slow machine): the retry after the restart
# finds the first request still running (409, which is retried) and then
# gets its saved answer.
my $posts = crash_with_refund_in_flight('provider still working', 'automatic',
	{ mode => 'slow', process => JSON::PP::false, delay_ms => 15000 });
ok(scalar(grep { ($_->{answer} // '') eq '409' } @$posts) >= 1,
	'provider still working: the retry met the first request in progress (409) and was retried');

# The same for a refund queued by shop_refund.
crash_with_refund_in_flight('shop_refund, answer lost', 'shop_refund', { mode => 'hang', process => JSON::PP::true });

is($mock->state->{posts_without_idempotency_key}, 0, 'every POST the shop made carried an Idempotency-Key');
my $key = $mock->api_key;
unlike(slurp_file($node->logfile), qr/\Q$key\E/, 'the API key is nowhere in the server log (log_min_messages = debug1)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0',
	'no invariant is broken');

$mock->stop;
$node->stop;
done_testing();

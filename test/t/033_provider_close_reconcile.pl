# Payment provider calls, rules 3 and 4 (README "Payment provider calls"),
# against the mock payment provider (demo/mock_provider.js).
# Rule 3, close the payment path on release: releasing an order (by a call
# or by the expiry sweep) with an open checkout expires the checkout at the
# provider (POST .../expire, written with the release: a rolled-back release
# sends nothing); when the buyer paid a moment before, the provider refuses,
# the shop fetches the session and applies the payment as its webhook would
# (event fetched:<session id>): an order cancelled on purpose is flagged and
# refunded automatically, an expired one is sold again; the webhook arriving
# later is a duplicate.  Rule 4, reconciliation: a paid checkout whose
# webhook never came is found by shop_reconcile_payments (and by the worker
# every shop.reconcile_interval): the order becomes PAID, the late webhook
# is a duplicate, an unpaid checkout changes nothing.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopProviderTest;

my $node = provider_node('provider_close');
my $mock = ShopProviderTest::Mock->start(name => 'mock_033');
register_provider($node, $mock);
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');

sub start_session
{
	my ($order) = @_;
	return json_decode($node->safe_psql('postgres',
		"SELECT shop.shop_start_payment($order, 'mock', 'https://shop.example/ok', 'https://shop.example/back')"))
	  ->{session_id};
}
sub expire_posts
{
	my ($sid, $since) = @_;
	return [ grep { $_->{method} eq 'POST' } @{ $mock->requests(path => "/v1/checkout/sessions/$sid/expire",
		since => $since) } ];
}
sub mock_session { my ($sid) = @_; my ($s) = grep { $_->{id} eq $sid } @{ $mock->state->{sessions} }; return $s // {}; }
sub shop_session_state
{
	my ($sid) = @_;
	return $node->safe_psql('postgres', "SELECT state FROM shop.payment_session WHERE session_id = '$sid'");
}
sub worker_idle
{
	return poll_sql($node, q{SELECT count(*) = 0 FROM shop.outbox WHERE state IN ('queued', 'in_flight', 'failed')});
}
sub status_of { my ($o) = @_; return $node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $o"); }
sub outcome { return join(',', map { ($_->{result}{result} // $_->{error}) . '/' . ($_->{result}{review} // '-') } @{ $_[0] }); }
sub lose_events { my $e = $mock->events(since => $mock->{relayed}); $mock->{relayed} = $e->[-1]{seq} if @$e; return $e; }

# ---------------------------------------------------------------------------
# Rule 3: a release expires the open checkout.
my $o1 = order_of($node, 'close-1');
my $s1 = start_session($o1);
my $seq = $mock->last_seq;
$node->safe_psql('postgres', "BEGIN; SELECT shop.shop_release($o1, 'customer_cancelled'); ROLLBACK;");
worker_idle();
is(scalar @{ expire_posts($s1, $seq) }, 0, 'a rolled-back release sends nothing');
is(status_of($o1), 'PENDING', '... the order is still PENDING');
$node->safe_psql('postgres', "SELECT shop.shop_release($o1, 'customer_cancelled')");
ok(wait_until(sub { @{ expire_posts($s1, $seq) } > 0 }, 20), 'a release: the provider is asked to expire the checkout');
my $x = expire_posts($s1, $seq)->[0] // {};
like($x->{idempotency_key} // '', qr/^session-.+-expire$/, '... with the Idempotency-Key session-<id>-expire')
  and note("expire key: $x->{idempotency_key}");
ok($x->{auth_ok}, '... with the API key');
is($x->{answer}, 200, '... the provider expired it');
is(mock_session($s1)->{status}, 'expired', '... the checkout is expired at the provider');
ok(poll_sql($node, "SELECT state FROM shop.payment_session WHERE session_id = '$s1'", 'expired'),
	'... and shop.payment_session says expired');
my $late = $mock->{http}->request('POST', $mock->url('/_pay'),
	{ content => qq({"session_id": "$s1"}), headers => { 'content-type' => 'application/json' } });
is($late->{status}, 400, '... the buyer can no longer pay there');
my $rel = relay_events($node, $mock);
is(outcome($rel), 'ignored/-', '... the provider\'s cancellation event for the released order is ignored');

# The expiry sweep closes the checkout too.
my $o2 = order_of($node, 'close-sweep', undef, q{SET shop.reservation_ttl = '1s';});
my $s2 = start_session($o2);
$seq = $mock->last_seq;
ok(poll_sql($node, "SELECT shop.shop_expire_pending() >= 0 AND status = 'CANCELLED' FROM shop.orders WHERE id = $o2"),
	'an order expires (the sweep)');
ok(wait_until(sub { grep { ($_->{answer} // '') eq '200' } @{ expire_posts($s2, $seq) } }, 20),
	'... its checkout is expired at the provider');
relay_events($node, $mock);

# ---------------------------------------------------------------------------
# Rule 3: the buyer paid a moment before the release.  The provider refuses
# the expiry, the shop fetches the session and applies the payment.
my $o3 = order_of($node, 'paid-then-cancelled');
my $s3 = start_session($o3);
my $paid3 = $mock->pay($s3);
lose_events();    # its webhook comes later (below)
$seq = $mock->last_seq;
$node->safe_psql('postgres', "SELECT shop.shop_release($o3, 'customer_cancelled')");
ok(wait_until(sub { grep { ($_->{answer} // '') eq '400' } @{ expire_posts($s3, $seq) } }, 20),
	'paid a moment before a cancel: the provider refuses to expire the checkout');
ok(wait_until(sub { grep { $_->{method} eq 'GET' && $_->{answer} eq '200' }
	  @{ $mock->requests(path => "/v1/checkout/sessions/$s3", since => $seq) } }, 20),
	'... the shop fetches the session');
worker_idle();
is($node->safe_psql('postgres', "SELECT result || ' ' || coalesce(payment_id, '-') FROM shop.payment_log
	WHERE provider = 'mock' AND event_id = 'fetched:$s3'"), "processed $paid3->{session}{payment_intent}",
	"... and applies the payment as its webhook would: event fetched:$s3 processed");
is(shop_session_state($s3), 'completed', '... shop.payment_session says completed');
is(status_of($o3), 'CANCELLED', '... the order cancelled on purpose is not sold');
ok(poll_sql($node, "SELECT count(*) = 1 AND bool_and(reason = 'refund_required' AND resolution = 'refunded automatically')
	FROM shop.order_review WHERE order_id = $o3"), '... flagged refund_required and refunded automatically');
ok(poll_sql($node, "SELECT count(*) = 1 AND bool_and(state = 'succeeded') FROM shop.refund WHERE order_id = $o3"),
	'... one refund, succeeded');
is(scalar @{ $mock->refunds_of($paid3->{session}{payment_intent}) }, 1, '... one refund at the provider');
$rel = relay_events($node, $mock, since => $paid3->{event}{seq} - 1);
is(outcome([ $rel->[0] ]), 'duplicate/-', 'the late webhook of that payment: duplicate');
worker_idle();
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.refund WHERE order_id = $o3"), '1', '... still one refund');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.order_review WHERE order_id = $o3"), '1', '... one flag');

# Paid a moment before the order expired: sold again (the stock is there).
my $o4 = order_of($node, 'paid-then-expired', undef, q{SET shop.reservation_ttl = '1s';});
my $s4 = start_session($o4);
my $paid4 = $mock->pay($s4);
lose_events();
$seq = $mock->last_seq;
ok(poll_sql($node, "SELECT shop.shop_expire_pending() >= 0 AND status <> 'PENDING' FROM shop.orders WHERE id = $o4"),
	'paid a moment before it expired: the order expires (the sweep)');
ok(poll_sql($node, "SELECT status || ' ' || coalesce(external_payment_id, '-') FROM shop.orders WHERE id = $o4",
	"PAID $paid4->{session}{payment_intent}"), '... the fetched payment sells it again: PAID by that payment');
is($node->safe_psql('postgres', "SELECT status_reason FROM shop.orders WHERE id = $o4"), 'paid_after_release',
	'... status_reason paid_after_release');
worker_idle();
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.refund WHERE order_id = $o4"), '0', '... nothing refunded');
$rel = relay_events($node, $mock, since => $paid4->{event}{seq} - 1);
is(outcome([ $rel->[0] ]), 'duplicate/-', '... its late webhook: duplicate');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0', '... invariants hold');

# ---------------------------------------------------------------------------
# Rule 4: reconciliation.  A paid checkout whose webhook was lost.
relay_events($node, $mock);
my $o5 = order_of($node, 'lost-webhook');
my $s5 = start_session($o5);
my $o6 = order_of($node, 'not-paid-yet');
my $s6 = start_session($o6);
my $paid5 = $mock->pay($s5);
lose_events();
$seq = $mock->last_seq;
is($node->safe_psql('postgres', q{SELECT shop.shop_reconcile_payments('0 seconds', 100)}), '2',
	'shop_reconcile_payments queues a fetch of each open checkout of a PENDING order: 2');
ok(poll_sql($node, "SELECT status || ' ' || coalesce(external_payment_id, '-') FROM shop.orders WHERE id = $o5",
	"PAID $paid5->{session}{payment_intent}"), '... the paid one: the order is PAID by its payment');
worker_idle();
is(status_of($o6), 'PENDING', '... the unpaid one: unchanged');
is(shop_session_state($s6), 'open', '... its checkout still open');
ok(scalar(grep { $_->{method} eq 'GET' } @{ $mock->requests(path => "/v1/checkout/sessions/$s6", since => $seq) }),
	'... (it was asked)');
$rel = relay_events($node, $mock, since => $paid5->{event}{seq} - 1);
is(outcome([ $rel->[0] ]), 'duplicate/-', 'the lost webhook arriving after all: duplicate');
# A session is fetched at most once a minute: the fetch's idempotency key
# names the minute, and a second fetch in the same minute is not queued
# (nor counted).  As if the fetches so far were a minute ago:
$node->safe_psql('postgres',
	q{UPDATE shop.outbox SET idempotency_key = idempotency_key || '-a-minute-ago' WHERE operation = 'fetch_payment'});
is($node->safe_psql('postgres', q{SELECT shop.shop_reconcile_payments('0 seconds', 100)}), '1',
	'reconciling again (a minute later): only the unpaid one is asked again');
is($node->safe_psql('postgres',
	"SELECT string_agg(s.session_id || ':' || (x.idempotency_key LIKE '%-a-minute-ago')::text, ',' ORDER BY x.id)"
	  . " FROM shop.outbox x JOIN shop.payment_session s ON s.id = x.subject_id"
	  . " WHERE x.operation = 'fetch_payment' AND s.session_id IN ('$s5', '$s6')"),
	"$s5:true,$s6:true,$s6:false", '... one new fetch, of the unpaid one');
worker_idle();
is($node->safe_psql('postgres', q{SELECT shop.shop_reconcile_payments('1 hour', 100)}), '0',
	'... and none that has been open for less than older_than');

# The worker reconciles by itself every shop.reconcile_interval.
reload_with($node, 'shop.reconcile_interval' => '1s', 'shop.reconcile_after' => '1s');
my $o7 = order_of($node, 'lost-webhook-2');
my $s7 = start_session($o7);
my $paid7 = $mock->pay($s7);
lose_events();
my $want7 = "SELECT status || ' ' || coalesce(external_payment_id, '-') FROM shop.orders WHERE id = $o7";
my $prompt = poll_sql($node, $want7, "PAID $paid7->{session}{payment_intent}", 15);
ok($prompt, 'shop.reconcile_interval reloaded to 1s (from 1min): within 15 s the worker finds the paid checkout');
# (when the reload is not taken at once: the worker still reconciles by itself)
ok($prompt || poll_sql($node, $want7, "PAID $paid7->{session}{payment_intent}", 75),
	'... the worker reconciles by itself: the order is PAID by that payment');
$rel = relay_events($node, $mock, since => $paid7->{event}{seq} - 1);
is(outcome([ $rel->[0] ]), 'duplicate/-', '... its late webhook: duplicate');

# ---------------------------------------------------------------------------
is($mock->state->{posts_without_idempotency_key}, 0, 'every POST the shop made carried an Idempotency-Key');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0',
	'no invariant is broken');

$mock->stop;
$node->stop;
done_testing();

# Payment provider calls through the outbox (README "Payment provider
# calls"): shop_refund queues a refund that the worker sends to the mock
# payment provider (demo/mock_provider.js) as POST /v1/refunds with the
# Idempotency-Key refund-<id>; the refund becomes succeeded with the
# provider's refund id.  Amount limits (22023, counting refunds not yet
# sent), SH004 without a payment.  Automatic refunds: a payment landing on
# an order cancelled on purpose, or a second payment of a paid order, is
# flagged refund_required and refunded exactly once, the flag resolved
# 'refunded automatically' (also when the release's expiry of the checkout
# is refused and the shop fetches the same payment after its webhook); with
# auto_refund false nothing is queued and the flag stays open.  Stripe's retry rules (proven on automatic refunds, and
# once on shop_refund's): network errors, 409, 429 (after its Retry-After)
# and 5xx are retried with the same key; a 400 is final: the row dead after
# one attempt, the refund failed with the provider's message, the flag open.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use ShopProviderTest;

# Retry-After is capped at outbox_retry_max: 5 s leaves room for a 2 s one.
# max_attempts 30: the expiry held back with 503s must not die before the
# webhook has been handled.
my $node = provider_node('provider_refunds', 'shop.outbox_retry_max' => q{'5s'}, 'shop.outbox_max_attempts' => '30');
my $mock = ShopProviderTest::Mock->start(name => 'mock_031');
register_provider($node, $mock);
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');
# An endpoint for the refund events, disabled: their rows are written and
# never sent (the checks at the end read shop.event).
$node->safe_psql('postgres', q{
	SELECT shop.shop_subscribe('https://refund-events.example.test/hook', ARRAY['order.refunded', 'order.refund_failed']);
	UPDATE shop.event_endpoint SET enabled = false WHERE url = 'https://refund-events.example.test/hook';
});

sub refund
{
	my ($order, $amount, $reason) = @_;
	return sql_call($node, "SELECT shop.shop_refund($order, " . ($amount // 'NULL') . ', '
		  . (defined $reason ? "'$reason'" : 'NULL') . ')');
}
sub refund_state_is
{
	my ($id, $state) = @_;
	return poll_sql($node, "SELECT state FROM shop.refund WHERE id = $id", $state);
}
sub refund_posts
{
	my ($key, $since) = @_;
	return [ grep { $_->{method} eq 'POST' && ($_->{idempotency_key} // '') eq $key }
		  @{ $mock->requests(path => '/v1/refunds', since => $since) } ];
}
sub refunds_of_order
{
	my ($order) = @_;
	return query_json($node, "SELECT * FROM shop.refund WHERE order_id = $order ORDER BY id");
}
sub holds { my ($row, $value) = @_; return scalar grep { defined $_ && !ref $_ && $_ eq $value } values %{ $row // {} }; }
sub review_of
{
	my ($order) = @_;
	return query_json($node, "SELECT id, reason, resolved_at IS NOT NULL AS resolved, resolution
		FROM shop.order_review WHERE order_id = $order ORDER BY id");
}
# Nothing left for the worker to do.  The disabled endpoint's rows wait at
# next_attempt_at infinity and never go; they are not work to wait for.
sub worker_idle
{
	return poll_sql($node, q{SELECT count(*) = 0 FROM shop.outbox
		WHERE state IN ('queued', 'in_flight', 'failed') AND next_attempt_at < 'infinity'});
}
sub start_session
{
	my ($order) = @_;
	return json_decode($node->safe_psql('postgres',
		"SELECT shop.shop_start_payment($order, 'mock', 'https://shop.example/ok', 'https://shop.example/back')"))
	  ->{session_id};
}

# ---------------------------------------------------------------------------
# A refund of part of a paid order.
my ($o1, $pi1) = paid_order($node, $mock, 'r-alice', [ [ 1, 2 ], [ 2, 1 ] ]);    # 22500 KRW
my $seq = $mock->last_seq;
my $r = refund($o1, 4000, 'customer asked');
ok($r->{ok}, 'shop_refund on a PAID order') or diag($r->{error});
my $rf = $r->{ok} ? json_decode($r->{value}) : {};
is_deeply([ sort keys %$rf ], [ sort qw(refund_id order_id provider state amount currency) ],
	'it returns refund_id, order_id, provider, state, amount, currency');
is_deeply([ @$rf{qw(state amount currency)} ], [ 'requested', 4000, 'KRW' ], '... state requested, 4000 KRW');
my $id1 = $rf->{refund_id} // 0;
ok(refund_outbox_row($node, $id1), "... queued in shop.outbox with the key refund-$id1");
ok(refund_state_is($id1, 'succeeded'), 'the worker sends it: the refund becomes succeeded');
my $at_mock = $mock->refunds_of($pi1);
is(scalar @$at_mock, 1, 'the provider made one refund');
is($at_mock->[0]{amount}, 4000, '... of 4000');
ok(holds(refund_row($node, $id1), $at_mock->[0]{id} // 'none'), '... and shop.refund holds its id ' . ($at_mock->[0]{id} // ''));
my $posts = refund_posts("refund-$id1", $seq);
is(scalar @$posts, 1, "one POST /v1/refunds with Idempotency-Key refund-$id1");
my $f = $posts->[0]{form} // {};
is_deeply({ payment_intent => $f->{payment_intent}, amount => $f->{amount},
		order_id => $f->{metadata}{order_id}, refund_id => $f->{metadata}{refund_id} },
	{ payment_intent => $pi1, amount => 4000, order_id => $o1, refund_id => $id1 },
	'... form: payment_intent, amount, metadata[order_id], metadata[refund_id]');
ok($posts->[0]{auth_ok}, '... with the API key');
is($posts->[0]{answer}, 200, '... accepted by the provider');

# The rest, and no more than the rest.
$r = refund($o1, 22500 - 4000 + 1);
is($r->{sqlstate}, '22023', 'refunding more than is left: 22023') or diag(explain($r));
$r = refund($o1);
ok($r->{ok}, 'a second shop_refund without an amount: the rest') or diag($r->{error});
my $rest = $r->{ok} ? json_decode($r->{value}) : {};
is($rest->{amount}, 18500, '... 18500');
ok(refund_state_is($rest->{refund_id} // 0, 'succeeded'), '... succeeded');
is(refund($o1, 1)->{sqlstate}, '22023', 'nothing left to refund: 22023');
is_deeply([ map { $_->{amount} } @{ $mock->refunds_of($pi1) } ], [ 4000, 18500 ],
	'the provider holds exactly those two refunds');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.refunds r WHERE to_jsonb(r) ->> 'order_id' = '$o1'"),
	'2', 'shop.refunds shows both');

# Refunds not yet sent count against what is left.
my ($o2, $pi2) = paid_order($node, $mock, 'r-bob');    # 10000
$r = refund($o2, 3000);
is(refund($o2, 7001)->{sqlstate}, '22023', 'a refund still requested counts: 3000 + 7001 > 10000 is 22023');
ok(refund($o2, 7000)->{ok}, '... 3000 + 7000 is accepted');
worker_idle();
is_deeply([ sort { $a <=> $b } map { $_->{amount} } @{ $mock->refunds_of($pi2) } ], [ 3000, 7000 ],
	'... the provider made both');

# Orders without a payment; amounts that are no amount.
my $o_pending = order_of($node, 'r-pending');
is(refund($o_pending)->{sqlstate}, 'SH004', 'a PENDING order (no payment): SH004');
my $o_cancelled = order_of($node, 'r-cancelled');
$node->safe_psql('postgres', "SELECT shop.shop_release($o_cancelled)");
is(refund($o_cancelled)->{sqlstate}, 'SH004', 'a CANCELLED order never paid: SH004');
my ($o3, $pi3) = paid_order($node, $mock, 'r-carol');
is(refund($o3, 0)->{sqlstate}, '22023', 'amount 0: 22023');
is(refund($o3, -5)->{sqlstate}, '22023', 'a negative amount: 22023');
is(scalar @{ refunds_of_order($o3) }, 0, '... nothing queued');

# ---------------------------------------------------------------------------
# Automatic refunds.  The buyer pays at the provider while the shop cancels
# the order on purpose; the payment's webhook arrives afterwards.  The
# release also asks the provider to expire the checkout (rule 3): that call
# is held back until the webhook has been handled, then the provider refuses
# it (the session is complete), the shop fetches the session and finds the
# same payment: it must not be flagged or refunded a second time.
sub paid_after_cancel
{
	my ($user) = @_;
	my $order = order_of($node, $user);
	my $session = start_session($order);
	relay_events($node, $mock);
	my $since = $mock->last_seq;
	# held back by answering 503 until the webhook has been handled, however
	# long that takes (a hold of fixed length lost the race on a busy machine)
	$mock->fail(path => "/v1/checkout/sessions/$session/expire", mode => 'status', status => 503, times => 1000);
	my $paid = $mock->pay($session);    # money taken; its event not relayed yet
	$node->safe_psql('postgres', "SELECT shop.shop_release($order, 'customer_cancelled')");
	my $relayed = relay_events($node, $mock);
	$mock->clear_fail;
	# the held-back expiry is sent again and refused; then quiet
	ok(wait_until(sub {
		grep { ($_->{answer} // '') eq '400' } @{ $mock->requests(path => "/v1/checkout/sessions/$session/expire",
			since => $since) } }, 30), "$user: the held-back expiry, sent again after the webhook, is refused (400)");
	worker_idle();
	return ($order, $paid, $relayed);
}

# A second payment of a PAID order (another checkout of it, paid too): its
# webhook flags refund_required and queues its refund.  No release is
# involved.  Returns (order, first payment, second payment, relayed).
sub paid_twice
{
	my ($user) = @_;
	my ($order, $pi1) = paid_order($node, $mock, $user);
	my $second = $mock->api_post('/v1/checkout/sessions', [
		mode => 'payment', 'line_items[0][price_data][currency]' => 'krw',
		'line_items[0][price_data][unit_amount]' => 10000, 'line_items[0][price_data][product_data][name]' => 'Mug',
		'line_items[0][quantity]' => 1, 'metadata[order_id]' => $order, success_url => 'https://shop.example/ok' ],
		key => "second-session-$order");
	die "second session: " . explain($second) unless $second->{status} == 200;
	my $paid2 = $mock->pay($second->{json}{id});
	return ($order, $pi1, $paid2->{session}{payment_intent}, relay_events($node, $mock));
}
sub outcome { return join(',', map { ($_->{result}{result} // $_->{error}) . '/' . ($_->{result}{review} // '-') } @{ $_[0] }); }

my ($oa, $paid_a, $rel_a) = paid_after_cancel('auto-a');
my $pia = $paid_a->{session}{payment_intent};
is(outcome($rel_a), 'processed/refund_required', 'a payment for an order cancelled on purpose: flagged refund_required');
my $rows = refunds_of_order($oa);
is(scalar @$rows, 1, '... exactly one refund queued, also after the shop fetched the refused checkout')
  or diag(explain([ map { { id => $_->{id}, state => $_->{state}, review_id => $_->{review_id},
	last_error => $_->{last_error} } } @$rows ]));
is($rows->[0]{amount}, 10000, '... of the whole payment');
ok(holds($rows->[0], $pia), "... of that payment ($pia)");
ok(refund_state_is($rows->[0]{id} // 0, 'succeeded'), '... sent and succeeded');
is(scalar @{ $mock->refunds_of($pia) }, 1, '... the provider made exactly one refund');
is($mock->refunds_of($pia)->[0]{amount}, 10000, '... of 10000');
is_deeply([ map { "$_->{reason}/" . ($_->{resolved} ? $_->{resolution} : 'open') } @{ review_of($oa) } ],
	['refund_required/refunded automatically'], '... one flag, resolved: refunded automatically');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.orders_needing_review WHERE order_id = $oa"), '0',
	'... and nothing in shop.orders_needing_review');
is($node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $oa"), 'CANCELLED',
	'... the order stays CANCELLED');
my $dup = relay_events($node, $mock, since => $paid_a->{event}{seq} - 1);
is($dup->[0]{result}{result}, 'duplicate', 'the provider sends the event again: duplicate');
worker_idle();
is(scalar @{ refunds_of_order($oa) }, 1, '... still one refund');
is(scalar @{ $mock->refunds_of($pia) }, 1, '... and one at the provider');

# Paid twice: the second payment is refunded, the first kept.
my ($oc, $pic1, $pic2, $rel_c) = paid_twice('auto-twice');
is(outcome($rel_c), 'processed/refund_required', 'a second payment of a PAID order: flagged refund_required');
$rows = refunds_of_order($oc);
is(scalar @$rows, 1, '... one refund queued');
ok(holds($rows->[0], $pic2) && !holds($rows->[0], $pic1), '... of the second payment, not the first');
ok(refund_state_is($rows->[0]{id} // 0, 'succeeded'), '... succeeded');
is_deeply([ scalar @{ $mock->refunds_of($pic2) }, scalar @{ $mock->refunds_of($pic1) } ], [ 1, 0 ],
	'... the provider refunded the second payment once and the first not at all');
is($node->safe_psql('postgres', "SELECT status || ' ' || external_payment_id FROM shop.orders WHERE id = $oc"),
	"PAID $pic1", '... the order stays PAID by the first payment');
ok(poll_sql($node, "SELECT bool_and(resolved_at IS NOT NULL AND resolution = 'refunded automatically')
	FROM shop.order_review WHERE order_id = $oc"), '... the flag is resolved');

# auto_refund false: flagged, nothing queued, the flag stays open.
register_provider($node, $mock, auto_refund => JSON::PP::false);
my ($ob, $paid_b, $rel_b) = paid_after_cancel('auto-off');
my $pib = $paid_b->{session}{payment_intent};
is(outcome($rel_b), 'processed/refund_required', 'auto_refund false: still flagged refund_required');
is(scalar @{ refunds_of_order($ob) }, 0, '... no refund queued');
is(scalar @{ $mock->refunds_of($pib) }, 0, '... none made at the provider');
my $flags_b = review_of($ob);
ok(@$flags_b && !grep({ $_->{resolved} } @$flags_b), '... the flag stays open');
is(scalar @$flags_b, 1, '... one flag for the one payment (also after the shop fetched the refused checkout)');
ok($node->safe_psql('postgres', "SELECT count(*) FROM shop.orders_needing_review WHERE order_id = $ob") >= 1,
	'... in shop.orders_needing_review');
register_provider($node, $mock);    # auto_refund back to its default, true

# ---------------------------------------------------------------------------
# Retry rules for queued calls, on automatic refunds (of second payments,
# queued by the webhook, sent by the worker).
sub refund_with_failure
{
	my ($what, $rule, %want) = @_;
	my $since = $mock->last_seq;
	$mock->fail(path => '/v1/refunds', %$rule);
	my ($order, undef, $pi) = paid_twice("retry-$what");
	my $id = refunds_of_order($order)->[0]{id} // 0;
	my $ok = refund_state_is($id, 'succeeded');
	$mock->clear_fail;
	ok($ok, "$what: retried, the refund succeeded");
	my $posts = refund_posts("refund-$id", $since);
	is(scalar @{ $mock->refunds_of($pi) }, 1, "$what: one refund at the provider");
	my $ob = refund_outbox_row($node, $id) // {};
	if (exists $want{attempts} && !defined $want{attempts})
	{
		is($ob->{state} // 'no row', 'delivered', "$what: the outbox row delivered");
		note("$what: outbox attempts $ob->{attempts}, POSTs " . scalar(@$posts));
		ok(@$posts >= 2, "$what: sent again with the same key refund-$id");
	}
	else
	{
		is(($ob->{state} // 'no row') . '/' . ($ob->{attempts} // ''), 'delivered/2',
			"$what: the outbox row delivered at the 2nd attempt");
		is(scalar @$posts, 2, "$what: two POSTs with the same key refund-$id");
	}
	ok(poll_sql($node, "SELECT resolution = 'refunded automatically' FROM shop.order_review
		WHERE order_id = $order"), "$what: the flag is resolved");
	return $posts;
}

refund_with_failure('500 once', { mode => 'status', status => 500 });
refund_with_failure('409 once', { mode => 'status', status => 409 });
# (libcurl itself sends a request again at once when a reused connection
# turns out dead, within one attempt of the worker: the attempt count is not
# checked here, the key and the single refund are)
refund_with_failure('connection reset once', { mode => 'refuse' }, attempts => undef);
refund_with_failure('unreadable 502 once', { mode => 'status', status => 502, body => '<html>Bad gateway</html>' });
my $p429 = refund_with_failure('429 with Retry-After: 2', { mode => 'status', status => 429, retry_after => 2 });
my $gap = @$p429 == 2 ? ($p429->[1]{received_ms} - $p429->[0]{received_ms}) / 1000 : 0;
ok($gap >= 1.9, sprintf('429 with Retry-After: 2: the retry came %.2f s later (retry_base is 100ms)', $gap));

# shop_refund's own refunds ride the same rules.
{
	my ($order, $pi) = paid_order($node, $mock, 'retry-manual');
	my $since = $mock->last_seq;
	$mock->fail(path => '/v1/refunds', mode => 'status', status => 503);
	my $x = refund($order, 1000);
	my $id = $x->{ok} ? json_decode($x->{value})->{refund_id} : 0;
	ok(refund_state_is($id, 'succeeded'), 'shop_refund, 503 once: retried, succeeded');
	$mock->clear_fail;
	is(scalar @{ refund_posts("refund-$id", $since) }, 2, 'shop_refund, 503 once: two POSTs with its key');
	is(scalar @{ $mock->refunds_of($pi) }, 1, 'shop_refund, 503 once: one refund at the provider');
}

# A 400 is final: for an automatic refund, the row is dead after one
# attempt, the refund failed with the provider's message, the flag open.
$mock->fail(path => '/v1/refunds', mode => 'status', status => 400,
	message => 'Refund refused by the mock: the account is closed');
$seq = $mock->last_seq;
my ($od, undef, $pid2) = paid_twice('refused-400');
$rows = refunds_of_order($od);
is(scalar @$rows, 1, '400: one automatic refund queued');
my $idd = $rows->[0]{id} // 0;
ok(refund_state_is($idd, 'failed'), '400: the refund failed');
my $obd = refund_outbox_row($node, $idd) // {};
is("$obd->{state}/$obd->{attempts}", 'dead/1', '400: its outbox row is dead after one attempt');
like($obd->{last_error} // '', qr/the account is closed/, '400: the row\'s last error is the provider\'s message');
ok(grep({ defined $_ && !ref $_ && /Refund refused by the mock: the account is closed/ } values %{ refund_row($node, $idd) // {} }),
	'400: shop.refund keeps the provider\'s message');
usleep(1_000_000);    # a retry would have come after 100-200 ms
is(scalar @{ refund_posts("refund-$idd", $seq) }, 1, '400: sent once, never retried');
is_deeply([ map { $_->{resolved} ? 'resolved' : 'open' } @{ review_of($od) } ], ['open'], '400: the flag stays open');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.orders_needing_review WHERE order_id = $od"), '1',
	'400: the order is in shop.orders_needing_review');
is(scalar @{ $mock->refunds_of($pid2) }, 0, '400: nothing refunded at the provider');
$mock->clear_fail;

# ---------------------------------------------------------------------------
# Refund events: the step that ends a refund writes its event once, the
# retried ones too; a refund not ended writes none.
my $events = query_json($node, q{
	SELECT r.id, r.state, r.order_id,
		   (SELECT count(*) FROM shop.event e WHERE e.type = 'order.refunded'
			   AND (e.payload -> 'refund' ->> 'id')::bigint = r.id) AS refunded,
		   (SELECT count(*) FROM shop.event e WHERE e.type = 'order.refund_failed'
			   AND (e.payload -> 'refund' ->> 'id')::bigint = r.id) AS failed
	  FROM shop.refund r ORDER BY r.id});
my @succeeded = grep { $_->{state} eq 'succeeded' } @$events;
ok(@succeeded >= 8, scalar(@succeeded) . ' refunds succeeded (the checks below are not vacuous)');
is(join(',', map { "$_->{id}:$_->{refunded}/$_->{failed}" } grep { $_->{refunded} != 1 || $_->{failed} != 0 } @succeeded), '',
	'every succeeded refund, retried ones too, has exactly one order.refunded and no order.refund_failed');
is(join(',', map { "$_->{id}:$_->{refunded}/$_->{failed}" } grep { $_->{state} eq 'failed' && ($_->{refunded} != 0 || $_->{failed} != 1) } @$events), '',
	'every failed refund has exactly one order.refund_failed and no order.refunded');
ok(scalar(grep { $_->{state} eq 'failed' } @$events) >= 1, '... (the refused 400 is one)');
is(join(',', map { $_->{id} } grep { $_->{state} eq 'requested' && $_->{refunded} + $_->{failed} > 0 } @$events), '',
	'a refund not ended has no event');
my $ev1 = query_json($node, "SELECT payload FROM shop.event WHERE type = 'order.refunded'
	AND (payload -> 'refund' ->> 'id')::bigint = $id1")->[0]{payload} // {};
is($ev1->{order}{id}, $o1, 'order.refunded carries the order');
is(join(' ', map { $ev1->{refund}{$_} // 'null' } qw(id amount currency state provider)),
	"$id1 4000 KRW succeeded mock", '... and the refund: id, amount, currency, state, provider');
ok(defined $ev1->{refund}{provider_refund_id} && $ev1->{refund}{provider_refund_id} eq ($at_mock->[0]{id} // ''),
	'... with the provider\'s refund id');
is(ref $ev1->{refund}{lines}, 'ARRAY', '... and its lines (none for a refund by amount)');
my $evd = query_json($node, "SELECT payload FROM shop.event WHERE type = 'order.refund_failed'
	AND (payload -> 'refund' ->> 'id')::bigint = $idd")->[0]{payload} // {};
like($evd->{refund}{last_error} // '', qr/the account is closed/, 'order.refund_failed carries the provider\'s message');
is($node->safe_psql('postgres', q{SELECT count(*) FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
	WHERE e.type IN ('order.refunded', 'order.refund_failed')}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM shop.event WHERE type IN ('order.refunded', 'order.refund_failed')}),
	'each refund event has its delivery queued for the endpoint');

# ---------------------------------------------------------------------------
is($mock->state->{posts_without_idempotency_key}, 0, 'every POST the shop made carried an Idempotency-Key');
my $key = $mock->api_key;
unlike(slurp_file($node->logfile), qr/\Q$key\E/, 'the API key is nowhere in the server log (log_min_messages = debug1)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0',
	'no invariant is broken');

$mock->stop;
$node->stop;
done_testing();

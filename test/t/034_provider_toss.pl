# Toss Payments, the confirm-style provider kind toss (README "Payment
# provider calls", "Toss Payments"), against the mock provider's Toss routes
# (demo/mock_provider.js) on a port of this test's own range:
# shop_confirm_payment captures a PENDING order's payment (POST
# /v1/payments/confirm, Basic auth, Idempotency-Key confirm-<order>-<key>)
# and the order becomes PAID with its stock consumed; a reloaded success page
# calls nothing again; an order cancelled on purpose, a released order whose
# stock is gone, or another amount, is refused without calling the provider,
# while an expired order whose stock is still there is captured and sold
# again (the late-webhook rule); a refusal is SH024 with Toss's code
# and the order stays PENDING; a timeout (SH020) or a 5xx (SH022) leaves it
# PENDING and the retry with the same key captures exactly once; a capture
# landing after the order was released and its stock sold is flagged and
# cancelled exactly once through the outbox; shop_refund cancels (part of) a
# toss payment; an (unsigned) webhook only triggers a fetch, which applies the
# payment as the API reports it, so a forged body changes nothing; and
# reconciliation fetches an open toss payment.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use ShopProviderTest;

# a request may stay in flight for 5 s: the crash below comes while the
# worker still waits for Toss's answer to a cancel
my $node = provider_node('provider_toss', 'shop.outbox_timeout' => q{'5s'});
# the fake Toss on a port of this test's range (18150-18199), else the OS's
my $mock = eval { ShopProviderTest::Mock->start(name => 'mock_034', port => 18151) }
  // ShopProviderTest::Mock->start(name => 'mock_034');
my $api_base = $mock->api_base;
note("the fake Toss listens at $api_base");
$node->safe_psql('postgres', qq{
	SELECT shop.shop_set_provider('toss', 'toss', 'unsigned', '{"api_base": "$api_base"}');
	SELECT shop.shop_set_provider_api_key('toss', '${\ $mock->api_key }');
	-- a SKU with one unit left, for the capture that lands after the stock is sold
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (9, 1, 'MUG-LAST', 1);
});
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');

sub confirm
{
	my ($order, $key, $amount) = @_;
	return sql_call($node, "SELECT shop.shop_confirm_payment('toss', $order, '$key', $amount)");
}
sub confirm_posts
{
	my ($since) = @_;
	return [ grep { $_->{method} eq 'POST' } @{ $mock->requests(path => '/v1/payments/confirm', since => $since) } ];
}
sub status_of { return $node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $_[0]"); }
sub on_hand { return $node->safe_psql('postgres', "SELECT on_hand FROM shop.sku WHERE id = $_[0]"); }
sub toss_order { return "shop-order-$_[0]"; }
sub authorize { my ($order, $amount, %o) = @_; return $mock->toss_authorize(toss_order($order), $amount, %o)->{paymentKey}; }

# --- the happy path
my $o1 = order_of($node, 'toss-1', [ [ 1, 2 ] ]);
my $k1 = authorize($o1, 20000);
my $before = on_hand(1);
my $seq = $mock->last_seq;
my $r = confirm($o1, $k1, 20000);
ok($r->{ok}, 'shop_confirm_payment of a PENDING order') or diag($r->{error});
my $res = $r->{ok} ? json_decode($r->{value}) : {};
is_deeply($res, { result => 'confirmed', order_id => $o1 + 0, order_status => 'PAID', payment_key => $k1 },
	'... returns {result: confirmed, order_id, order_status: PAID, payment_key}');
is(status_of($o1), 'PAID', '... the order is PAID');
is(on_hand(1), $before - 2, '... its stock is consumed (on_hand down by its quantity)');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.stock_reservation WHERE order_id = $o1 AND state = 'active'"),
	'0', '... no reservation of it is active');
my $posts = confirm_posts($seq);
is(scalar @$posts, 1, 'the fake Toss received exactly one confirm');
my $p = $posts->[0] // {};
is($p->{idempotency_key}, "confirm-$o1-$k1", '... with Idempotency-Key confirm-<order>-<paymentKey>');
ok(($p->{authorization} // '') eq 'basic' && $p->{auth_ok}, '... with Basic auth of the secret key');
is_deeply(eval { JSON::PP->new->decode($p->{raw_body}) } // {},
	{ paymentKey => $k1, orderId => toss_order($o1), amount => 20000 },
	'... body {paymentKey, orderId: shop-order-<id>, amount}');
is($mock->toss_payment($k1)->{status}, 'DONE', '... and the payment is captured (DONE) at Toss');
is($node->safe_psql('postgres', "SELECT session_id || ' ' || state FROM shop.payment_session WHERE order_id = $o1"),
	"$k1 completed", 'the payment session records the paymentKey, completed');
is($node->safe_psql('postgres', "SELECT event_id || ' ' || result FROM shop.payment_log WHERE order_id = $o1"),
	"fetched:$k1 processed", 'payment_log records the payment once (fetched:<paymentKey>)');

$seq = $mock->last_seq;
$r = confirm($o1, $k1, 20000);
ok($r->{ok} && json_decode($r->{value})->{result} eq 'confirmed',
	'the same confirm again (a reloaded success page) answers confirmed');
is(scalar @{ $mock->requests(since => $seq) }, 0, '... without calling Toss');

# --- refusals before any call
my $o2 = order_of($node, 'toss-2');
my $k2 = authorize($o2, 10000);
$seq = $mock->last_seq;
$r = confirm($o2, $k2, 9999);
is($r->{sqlstate}, 'SH015', 'another amount than the order\'s: SH015');
$r = confirm($o1, $k2, 20000);
is($r->{sqlstate}, 'SH004', 'an order that is PAID by another payment: SH004');
# an expired order whose stock is gone (its SKU written off after the sweep)
$node->safe_psql('postgres', q{
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (10, 1, 'MUG-GONE', 1)});
my $o3 = order_of($node, 'toss-3', [ [ 10, 1 ] ], "SET shop.reservation_ttl = '1s';");
my $k3 = authorize($o3, 10000);
usleep(1_300_000);
$node->safe_psql('postgres', 'SELECT shop.shop_expire_pending(100)');
is(status_of($o3), 'CANCELLED', 'the sweep released an expired order');
$node->safe_psql('postgres', q{SELECT shop.shop_adjust_stock(10, -1, 'written off')});
$r = confirm($o3, $k3, 10000);
is($r->{sqlstate}, 'SH004', 'an expired order whose stock is gone: SH004');
like($r->{message}, qr/stock is gone/, '... saying its stock is gone');
# an order the customer cancelled is never captured, stock or not
my $o3c = order_of($node, 'toss-3c');
my $k3c = authorize($o3c, 10000);
$node->safe_psql('postgres', "SELECT shop.shop_release($o3c, 'customer_cancelled')");
$r = confirm($o3c, $k3c, 10000);
is($r->{sqlstate}, 'SH004', 'an order the customer cancelled: SH004');
is(scalar @{ $mock->requests(since => $seq) }, 0, 'none of these refusals called Toss');
is($mock->toss_payment($k3)->{status}, 'IN_PROGRESS', '... the expired order\'s payment stays uncaptured');
is($mock->toss_payment($k3c)->{status}, 'IN_PROGRESS', '... and the cancelled order\'s too');

# expired, but its stock is still there: captured and sold again, as a late
# webhook would be (paid_after_release), before and after the sweep
my $o3p = order_of($node, 'toss-3p', undef, "SET shop.reservation_ttl = '1s';");
my $k3p = authorize($o3p, 10000);
my $o3s = order_of($node, 'toss-3s', undef, "SET shop.reservation_ttl = '1s';");
my $k3s = authorize($o3s, 10000);
usleep(1_300_000);
$r = confirm($o3p, $k3p, 10000);
ok($r->{ok} && json_decode($r->{value})->{result} eq 'confirmed',
	'an order past its expires_at, not swept yet (its stock still held): confirmed') or diag($r->{error});
is(status_of($o3p), 'PAID', '... PAID');
$node->safe_psql('postgres', 'SELECT shop.shop_expire_pending(100)');
is(status_of($o3s), 'CANCELLED', 'another expired order is swept');
my $held = on_hand(1);
$r = confirm($o3s, $k3s, 10000);
ok($r->{ok} && json_decode($r->{value})->{result} eq 'confirmed',
	'... its payment confirmed while its stock is still there') or diag($r->{error});
is($node->safe_psql('postgres', "SELECT status || ' ' || status_reason FROM shop.orders WHERE id = $o3s"),
	'PAID paid_after_release', '... PAID again, reason paid_after_release');
is(on_hand(1), $held - 1, '... its unit reserved again and consumed');
is($mock->toss_payment($k3s)->{status}, 'DONE', '... captured at Toss');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.refund WHERE order_id = $o3s"), '0',
	'... and nothing to refund');

# --- the provider refuses
my $o4 = order_of($node, 'toss-4');
my $k4 = authorize($o4, 10000, reject => 'REJECT_CARD_PAYMENT');
$r = confirm($o4, $k4, 10000);
is($r->{sqlstate}, 'SH024', 'Toss refuses the confirmation: SH024');
like($r->{detail}, qr/REJECT_CARD_PAYMENT/, '... DETAIL has Toss\'s code');
is(status_of($o4), 'PENDING', '... the order is still PENDING');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.payment_session WHERE order_id = $o4"), '0',
	'... and nothing was stored');

# --- timeout, then the retry: one capture
my $o5 = order_of($node, 'toss-5');
my $k5 = authorize($o5, 10000);
$mock->fail(path => '/v1/payments/confirm', mode => 'hang', process => JSON::PP::true);
$seq = $mock->last_seq;
$r = sql_call($node, "SET shop.provider_timeout = '1s'; SELECT shop.shop_confirm_payment('toss', $o5, '$k5', 10000)");
is($r->{sqlstate}, 'SH020', 'Toss captured but its answer never came: SH020 after shop.provider_timeout');
ok($r->{secs} < 5, '... within the timeout') or diag("took $r->{secs} s");
is(status_of($o5), 'PENDING', '... the order stays PENDING');
$mock->fail(path => '/v1/payments/confirm', mode => 'status', status => 503);
$r = confirm($o5, $k5, 10000);
is($r->{sqlstate}, 'SH022', 'Toss fails with 503: SH022, order PENDING') or diag($r->{error});
$r = confirm($o5, $k5, 10000);
ok($r->{ok} && json_decode($r->{value})->{result} eq 'confirmed', 'the retry is confirmed')
  or diag($r->{error});
is(status_of($o5), 'PAID', '... the order is PAID');
$posts = confirm_posts($seq);
is(scalar @$posts, 3, 'three confirm requests reached Toss');
is(scalar(grep { ($_->{idempotency_key} // '') eq "confirm-$o5-$k5" } @$posts), 3, '... all with the same Idempotency-Key');
is($mock->toss_payment($k5)->{captures}, 1, '... and Toss captured exactly once');

# --- captured after the order was released and its stock sold: cancelled once
my $o6 = order_of($node, 'toss-6', [ [ 9, 1 ] ]);
my $k6 = authorize($o6, 10000);
# Toss answers after 8 s: the release and the other order below must land
# first, also on a loaded machine (1.5 s was not always enough in CI, and the
# confirm then re-reserved the unit before the other order could buy it).
$mock->fail(path => '/v1/payments/confirm', mode => 'slow', delay_ms => 8000);
$seq = $mock->last_seq;
my ($out, $err) = ('', '');
my $h = IPC::Run::start([ 'psql', '-X', '-A', '-t', '-q', '-d', $node->connstr('postgres'), '-c',
	"SET shop.provider_timeout = '60s'", '-c',
	"SELECT shop.shop_confirm_payment('toss', $o6, '$k6', 10000)" ], '>', \$out, '2>', \$err);
ok(wait_until(sub { @{ confirm_posts($seq) } > 0 }, 10), 'a confirm is in flight');
$node->safe_psql('postgres', "SELECT shop.shop_release($o6, 'payment_failed')");
my $o7 = order_of($node, 'toss-7', [ [ 9, 1 ] ]);
ok($o7, 'meanwhile the order was released and its last unit sold to another order');
$h->finish;
my $late = eval { json_decode($out) } // {};
is($late->{result}, 'refund_required', 'the late capture: shop_confirm_payment answers refund_required')
  or diag("out: $out err: $err");
is(status_of($o6), 'FAILED', '... the order stays released');
my $rf = query_json($node, "SELECT id, state, review_id IS NOT NULL AS flagged FROM shop.refund WHERE order_id = $o6");
is(scalar @$rf, 1, '... exactly one refund is queued');
my $rid = $rf->[0]{id} // 0;
ok(poll_sql($node, "SELECT state FROM shop.refund WHERE id = $rid", 'succeeded'), '... and it succeeds');
my $cancels = [ grep { $_->{method} eq 'POST' }
	@{ $mock->requests(path => "/v1/payments/$k6/cancel", since => $seq) } ];
is(scalar @$cancels, 1, '... sent to Toss as exactly one cancel');
is($cancels->[0]{idempotency_key} // '', "refund-$rid", '... with Idempotency-Key refund-<id>');
is($mock->toss_payment($k6)->{status}, 'CANCELED', '... the payment is cancelled at Toss');
is($node->safe_psql('postgres', "SELECT resolution FROM shop.order_review WHERE order_id = $o6"),
	'refunded automatically', '... and the flag is resolved');

# --- shop_refund of a toss order
$seq = $mock->last_seq;
$r = sql_call($node, "SELECT shop.shop_refund($o1, 5000, 'customer asked')");
ok($r->{ok}, 'shop_refund of a toss order') or diag($r->{error});
my $refund = $r->{ok} ? json_decode($r->{value}) : {};
is($refund->{provider}, 'toss', '... names the toss provider');
ok(poll_sql($node, "SELECT state FROM shop.refund WHERE id = " . ($refund->{refund_id} // 0), 'succeeded'),
	'... the refund succeeds');
$cancels = [ grep { $_->{method} eq 'POST' } @{ $mock->requests(path => "/v1/payments/$k1/cancel", since => $seq) } ];
is(scalar @$cancels, 1, '... one POST /v1/payments/{paymentKey}/cancel');
is_deeply(eval { JSON::PP->new->decode($cancels->[0]{raw_body}) }->{cancelAmount}, 5000, '... cancelAmount 5000');
my $tp = $mock->toss_payment($k1);
is("$tp->{status} $tp->{balanceAmount}", 'PARTIAL_CANCELED 15000', '... Toss keeps 15000 of 20000');
is($node->safe_psql('postgres', "SELECT provider_refund_id FROM shop.refund WHERE id = $refund->{refund_id}"),
	$tp->{cancels}[-1]{transactionKey}, '... the refund id is the cancel\'s transactionKey');

# --- webhooks are triggers: fetched, then applied as Toss says
sub webhook
{
	my ($body) = @_;
	my $r = sql_call($node, "SELECT shop.shop_handle_webhook('toss', '{}', \$w\$$body\$w\$)");
	return $r->{ok} ? json_decode($r->{value}) : { error => $r->{error} };
}
my $o8 = order_of($node, 'toss-8');
my $k8 = authorize($o8, 10000);
# captured by a confirm whose answer the shop never recorded
is($mock->toss_api('POST', '/v1/payments/confirm', { paymentKey => $k8, orderId => toss_order($o8), amount => 10000 },
	key => 'elsewhere')->{status}, 200, 'a payment is captured without the shop recording it');
my ($ev) = grep { index($_->{body}, $k8) >= 0 } @{ $mock->toss_events };
my $w = webhook($ev->{body});
is($w->{result}, 'fetch_queued', 'its PAYMENT_STATUS_CHANGED webhook: fetch_queued') or diag(explain($w));
ok(poll_sql($node, "SELECT status FROM shop.orders WHERE id = $o8", 'PAID'), '... the fetch makes the order PAID');
ok(scalar(grep { $_->{method} eq 'GET' } @{ $mock->requests(path => "/v1/payments/$k8") }), '... fetched with GET /v1/payments/{paymentKey}');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.payment_log WHERE order_id = $o8 AND event_id = 'fetched:$k8'"),
	'1', '... recorded once');

my $o9 = order_of($node, 'toss-9');
my $k9 = authorize($o9, 10000);
my $forged = json_bytes({ eventType => 'PAYMENT_STATUS_CHANGED', createdAt => '2026-01-01T00:00:00.000',
	data => { paymentKey => $k9, orderId => toss_order($o9), status => 'DONE', totalAmount => 10000, currency => 'KRW' } });
$seq = $mock->last_seq;
$w = webhook($forged);
is($w->{result}, 'fetch_queued', 'a forged "DONE" webhook for an uncaptured payment: only a fetch');
ok(wait_until(sub { scalar grep { $_->{method} eq 'GET' && ($_->{answer} // '') eq '200' }
	@{ $mock->requests(path => "/v1/payments/$k9", since => $seq) } }), '... the payment is fetched');
ok(poll_sql($node, "SELECT count(*) = 0 FROM shop.outbox WHERE provider = 'toss' AND state IN ('queued', 'in_flight', 'failed')"),
	'... and the answer handled');
is(status_of($o9), 'PENDING', '... the order stays PENDING (Toss says IN_PROGRESS)');
$w = webhook(json_bytes({ eventType => 'PAYMENT_STATUS_CHANGED', data => { paymentKey => 'tgen_nosuch', orderId => toss_order(999999) } }));
is($w->{result}, 'unmatched', 'a webhook naming no order of ours: unmatched, nothing fetched');

$seq = $mock->last_seq;
($ev) = grep { index($_->{body}, $k1) >= 0 } @{ $mock->toss_events };
my $logs = $node->safe_psql('postgres', 'SELECT count(*) FROM shop.payment_log');
$w = webhook($ev->{body});
ok(wait_until(sub { scalar grep { $_->{method} eq 'GET' } @{ $mock->requests(path => "/v1/payments/$k1", since => $seq) } }),
	'the webhook of a payment confirmed already is fetched');
ok(poll_sql($node, "SELECT count(*) = 0 FROM shop.outbox WHERE provider = 'toss' AND state IN ('queued', 'in_flight', 'failed')"),
	'... and handled');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.payment_log'), $logs, '... changing nothing');

# --- reconciliation
my $o10 = order_of($node, 'toss-10');
my $k10 = authorize($o10, 10000);
$mock->toss_api('POST', '/v1/payments/confirm', { paymentKey => $k10, orderId => toss_order($o10), amount => 10000 }, key => 'lost');
$mock->fail(path => "/v1/payments/$k10", mode => 'status', status => 400, method => 'GET');
($ev) = grep { index($_->{body}, $k10) >= 0 } @{ $mock->toss_events };
is(webhook($ev->{body})->{result}, 'fetch_queued', 'a webhook whose fetch fails for good');
ok(poll_sql($node, "SELECT count(*) = 1 FROM shop.outbox WHERE provider = 'toss' AND operation = 'fetch_payment' AND state = 'dead'"),
	'... the fetch is dead') ;
is(status_of($o10), 'PENDING', '... the order is still PENDING');
# this one, and the uncaptured payment of the forged webhook above (o9)
is($node->safe_psql('postgres', "SELECT shop.shop_reconcile_payments('0 seconds', 100)"), '2',
	'shop_reconcile_payments queues a fetch of each open toss payment of a PENDING order');
ok(poll_sql($node, "SELECT status FROM shop.orders WHERE id = $o10", 'PAID'), '... which makes the order PAID');
ok(poll_sql($node, "SELECT count(*) = 0 FROM shop.outbox WHERE provider = 'toss' AND state IN ('queued', 'in_flight', 'failed')"),
	'... both fetches handled');
is(status_of($o9), 'PENDING', '... the uncaptured one stays PENDING');

# --- the widget
my $http = HTTP::Tiny->new(max_redirect => 0);
my $o11 = order_of($node, 'toss-11');
my $page = $http->get($mock->url('/toss/widget?orderId=' . toss_order($o11) . '&amount=10000&successUrl=https://shop.example/ok'));
is($page->{status}, 200, 'the widget page');
my $paid = $http->post_form($mock->url('/toss/widget/pay'),
	{ orderId => toss_order($o11), amount => 10000, successUrl => 'https://shop.example/ok' });
is($paid->{status}, 303, 'paying in the widget redirects');
my ($loc) = $paid->{headers}{location} =~ /\?(.*)$/;
my %q = map { my ($k, $v) = split /=/, $_, 2; ($k => $v) } split /&/, $loc // '';
is("$q{orderId} $q{amount}", toss_order($o11) . ' 10000', '... to the success URL with orderId and amount');
$r = confirm($o11, $q{paymentKey}, $q{amount});
ok($r->{ok} && json_decode($r->{value})->{order_status} eq 'PAID', '... whose paymentKey the shop confirms');

# --- shop_refund's cancel on the wire when the server crashes: Toss holds one
$seq = $mock->last_seq;
$mock->fail(path => "/v1/payments/$k5/cancel", mode => 'hang', process => JSON::PP::true);
$r = sql_call($node, "SELECT shop.shop_refund($o5)");
ok($r->{ok}, 'shop_refund of another toss order') or diag($r->{error});
my $crash_id = $r->{ok} ? json_decode($r->{value})->{refund_id} : 0;
sub cancel_posts
{
	return [ grep { $_->{method} eq 'POST' && ($_->{idempotency_key} // '') eq "refund-$crash_id" }
		@{ $mock->requests(path => "/v1/payments/$k5/cancel", since => $seq) } ];
}
ok(wait_until(sub { @{ cancel_posts() } >= 1 }, 20), '... its cancel is on the wire (Toss acted, the answer hangs)');
$node->stop('immediate');
$node->start;
ok(poll_sql($node, "SELECT state FROM shop.refund WHERE id = $crash_id", 'succeeded'),
	'after an immediate shutdown and restart the refund succeeds');
ok(@{ cancel_posts() } >= 2, '... the cancel was sent again with the same Idempotency-Key');
$tp = $mock->toss_payment($k5);
is(scalar @{ $tp->{cancels} // [] }, 1, '... and Toss holds exactly one cancel');
is($tp->{status}, 'CANCELED', '... of the whole payment');

# secrets
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q${\ $mock->api_key }\E/, 'the server log never shows the API key');

$mock->stop;
$node->stop;
done_testing();

# Outbox delivery worker: events reach the merchant's endpoint as signed
# Standard Webhooks (verified by the reference library in the test receiver),
# with the documented headers and body; a rolled-back transaction sends
# nothing; a huge response body does not stop a 2xx from counting; the events
# of one order arrive in the order they happened, also when the first one
# has to be retried; delivered events are deleted after the retention.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopOutboxTest;

# sessions in another time zone than UTC: the bodies' timestamps must still be UTC
# (8 attempts: ordering (b) below needs 6 failures before the 200)
my $node = outbox_node('outbox_delivery', 'timezone' => q{'Asia/Seoul'},
	'shop.outbox_max_attempts' => '8');
my $recv = ShopOutboxTest::Receiver->start(name => 'receiver_010');

ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'),
	'the worker runs: shop.outbox_health.worker_running');
# what an HTTP layer's /health asks as the anonymous role, which cannot see
# other backends in pg_stat_activity itself
$node->safe_psql('postgres', q{CREATE ROLE h_anon; CREATE ROLE h_user; CREATE ROLE h_webhook;
	SELECT shop.shop_api_grant('h_anon', 'h_user', 'h_webhook')});
is($node->safe_psql('postgres', q{SET ROLE h_anon;
	SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'shop outbox worker')
	       || ' ' || (shop_api.health() ->> 'worker')}),
	'0 true', 'shop_api.health() as the anonymous role: the worker runs (pg_stat_activity alone does not show it)');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'shop outbox worker'}),
	'1', 'one worker, with backend_type "shop outbox worker"');

# ---------------------------------------------------------------------------
# Delivery: every order transition's event, verified, headers and body as
# documented.
my $ep = subscribe($node, $recv, '/ok/main');

my $paid = buy($node, 'alice');
$node->safe_psql('postgres', "SELECT shop.shop_confirm_paid($paid, 'pay_a')");
my $cancelled = buy($node, 'bob');
$node->safe_psql('postgres', "SELECT shop.shop_release($cancelled)");
my $failed = buy($node, 'carol');
$node->safe_psql('postgres', "SELECT shop.shop_release($failed, 'payment_failed')");
my $expired = $node->safe_psql('postgres', q{
	SET shop.reservation_ttl = '1s';
	SELECT id FROM shop.shop_buy_now('dave', '[{"sku_id": 1, "qty": 1}]')});
ok(poll_sql($node, 'SELECT shop.shop_expire_pending() > 0 OR '
	  . "(SELECT status = 'CANCELLED' FROM shop.orders WHERE id = $expired)"),
	'the short-lived order expired');

my %want_types = (
	$paid      => [ 'order.created', 'order.paid' ],
	$cancelled => [ 'order.created', 'order.cancelled' ],
	$failed    => [ 'order.created', 'order.failed' ],
	$expired   => [ 'order.created', 'order.expired' ]);
my $orders = join(',', sort keys %want_types);
is_deeply({ map { $_ => [ map { $_->[1] } @{ order_events($node, $_) } ] } keys %want_types },
	\%want_types, 'shop.event: created, then paid / cancelled / failed / expired');

ok(poll_sql($node, "SELECT count(*) = 8 AND bool_and(state = 'delivered') FROM shop.outbox
	WHERE endpoint_id = $ep"), 'all 8 outbox rows are delivered');

my $rows = query_json($node, qq{
	SELECT o.id AS outbox_id, e.id AS event_id, e.type, e.order_id, o.body, o.state,
		   o.attempts, o.last_status, o.delivered_at IS NOT NULL AS has_delivered_at,
		   o.idempotency_key,
		   (SELECT json_agg(json_build_object('attempt', a.attempt, 'http_status', a.http_status,
											  'succeeded', a.succeeded) ORDER BY a.attempt)
			  FROM shop.outbox_attempts a WHERE a.outbox_id = o.id) AS attempts_log
	  FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
	 WHERE o.endpoint_id = $ep ORDER BY e.id});
my $got = $recv->deliveries('/ok/main');
is(scalar @$got, 8, 'the receiver got 8 deliveries, one per event');
is(scalar(grep { $_->{verified} } @$got), 8,
	'every delivery verified with the reference standardwebhooks library')
  or diag(explain([ map { "$_->{webhook_id}: $_->{verify_error}" } grep { !$_->{verified} } @$got ]));
is(scalar(grep { $_->{attempt} == 1 && $_->{answer} == 200 } @$got), 8,
	'each webhook-id arrived once and was answered 200');

my %by_id = map { $_->{webhook_id} => $_ } @$got;
my %status_of = ('order.created' => 'PENDING', 'order.paid' => 'PAID',
	'order.cancelled' => 'CANCELLED', 'order.failed' => 'FAILED', 'order.expired' => 'CANCELLED');
my %reason_of = ('order.cancelled' => 'cancelled', 'order.failed' => 'payment_failed',
	'order.expired' => 'expired');
my (@body_problems, @header_problems, @row_problems);
for my $r (@$rows)
{
	my $id = "evt_$r->{event_id}";
	my $d = $by_id{$id};
	if (!$d) { push @body_problems, "$id: not received"; next; }
	# the body: the row's bytes, as documented
	push @body_problems, "$id: body differs from shop.outbox.body" if $d->{body} ne $r->{body};
	my $b = eval { json_decode($d->{body}) };
	if (!$b) { push @body_problems, "$id: body is not JSON"; next; }
	my $o = $b->{data}{order} // {};
	my $utc = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
	for my $ts ([ 'created_at', $b->{created_at} ], [ 'data.order.created_at', $b->{data}{order}{created_at} ],
		[ 'data.order.expires_at', $b->{data}{order}{expires_at} ])
	{
		push @body_problems, "$id: $ts->[0] " . ($ts->[1] // 'null') . ' is not ISO 8601 in UTC'
		  unless ($ts->[1] // '') =~ $utc;
	}
	my %have = (id => $b->{id}, type => $b->{type}, has_created_at => defined $b->{created_at} ? 1 : 0,
		order_id => $o->{id}, status => $o->{status}, status_reason => $o->{status_reason},
		user_id => $o->{user_id}, amount => $o->{amount}, currency => $o->{currency},
		external_payment_id => $o->{external_payment_id},
		order_keys => join(',', sort keys %$o));
	my %want = (id => $id, type => $r->{type}, has_created_at => 1,
		order_id => $r->{order_id}, status => $status_of{ $r->{type} },
		status_reason => $reason_of{ $r->{type} },
		user_id => { $paid => 'alice', $cancelled => 'bob', $failed => 'carol', $expired => 'dave' }->{ $r->{order_id} },
		amount => 10000, currency => 'KRW',
		external_payment_id => $r->{type} eq 'order.paid' ? 'pay_a' : undef,
		order_keys => 'amount,created_at,currency,discount,expires_at,external_payment_id,id,status,status_reason,subtotal,user_id');
	for my $k (sort keys %want)
	{
		my ($h, $w) = ($have{$k}, $want{$k});
		push @body_problems, "$id: $k is " . ($h // 'null') . ', want ' . ($w // 'null')
		  if (defined $h) != (defined $w) || (defined $h && $h ne $w);
	}
	# the headers
	push @header_problems, "$id: content-type $d->{content_type}"
	  unless ($d->{content_type} // '') =~ m{^application/json\b};
	push @header_problems, "$id: user-agent " . ($d->{user_agent} // 'none')
	  unless ($d->{user_agent} // '') =~ m{^shop-outbox/\S+};
	push @header_problems, "$id: webhook-timestamp " . ($d->{webhook_timestamp} // 'none')
	  unless ($d->{webhook_timestamp} // '') =~ /^\d+$/
	  && abs($d->{webhook_timestamp} - $d->{received_ms} / 1000) < 60;
	push @header_problems, "$id: webhook-signature " . ($d->{webhook_signature} // 'none')
	  unless ($d->{webhook_signature} // '') =~ m{^v1,[A-Za-z0-9+/]+=*( v1,[A-Za-z0-9+/]+=*)*$};
	# the rows
	push @row_problems, "$id: row $r->{state}, $r->{attempts} attempts, status " . ($r->{last_status} // 'null')
	  unless $r->{state} eq 'delivered' && $r->{attempts} == 1 && ($r->{last_status} // 0) == 200
	  && $r->{has_delivered_at};
	push @row_problems, "$id: idempotency_key $r->{idempotency_key}" unless $r->{idempotency_key} eq $id;
	push @row_problems, "$id: attempt log " . explain($r->{attempts_log})
	  unless @{ $r->{attempts_log} // [] } == 1 && $r->{attempts_log}[0]{attempt} == 1
	  && $r->{attempts_log}[0]{http_status} == 200 && $r->{attempts_log}[0]{succeeded};
}
is_deeply(\@body_problems, [],
	'bodies: the outbox row\'s bytes; id = webhook-id = "evt_<event id>", type, created_at, data.order as documented; timestamps ISO 8601 in UTC');
is_deeply(\@header_problems, [],
	'headers: content-type application/json, user-agent shop-outbox/<version>, webhook-timestamp now, webhook-signature v1,<base64>');
is_deeply(\@row_problems, [],
	'rows: delivered after 1 attempt with status 200; idempotency_key = webhook-id; one succeeded attempt logged');

is($node->safe_psql('postgres', "SELECT enabled, consecutive_failures, delivered, backlog, dead,
	last_success_at IS NOT NULL FROM shop.event_endpoints WHERE endpoint_id = $ep"),
	't|0|8|0|0|t', 'shop.event_endpoints: enabled, 8 delivered, no backlog, no dead');

# ---------------------------------------------------------------------------
# A rolled-back transaction sends nothing: its outbox row existed only
# inside it.
my ($rb_order, $rb_rows) = split /\n/, $node->safe_psql('postgres', qq{
	BEGIN;
	SELECT id FROM shop.shop_buy_now('rollback', '[{"sku_id": 1, "qty": 1}]');
	SELECT count(*) FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
	 WHERE o.endpoint_id = $ep AND e.order_id = currval(pg_get_serial_sequence('shop.orders', 'id'));
	ROLLBACK;});
is($rb_rows, '1', 'inside the transaction, the order wrote its outbox row');
my $marker = buy($node, 'after-rollback');
ok(poll_sql($node, qq{SELECT bool_and(o.state = 'delivered') FROM shop.outbox o
	JOIN shop.event e ON e.id = o.event_id WHERE o.endpoint_id = $ep AND e.order_id = $marker}),
	'a later committed order is delivered');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.event WHERE order_id = $rb_order"),
	'0', 'the rolled-back order left no event');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.outbox WHERE endpoint_id = $ep"),
	'9', 'and no outbox row: only the later order\'s was added');
$got = $recv->deliveries('/ok/main');
is(scalar(grep { ($_->{order_id} // 0) == $rb_order } @$got), 0,
	'the receiver never heard of the rolled-back order');
is(scalar(grep { ($_->{order_id} // 0) == $marker } @$got), 1,
	'it got the later order');

# ---------------------------------------------------------------------------
# A huge response (50 MB, with Content-Length and chunked): the 2xx counts,
# only the start of the body is kept.
my $huge = subscribe($node, $recv, '/huge/52428800/big', 'order.created');
my $hugec = subscribe($node, $recv, '/huge-chunked/52428800/bigc', 'order.created');
my $big_order = buy($node, 'big');
ok(poll_sql($node, "SELECT count(*) = 2 AND bool_and(state IN ('delivered', 'dead')) FROM shop.outbox
	WHERE endpoint_id IN ($huge, $hugec)"), 'the rows to the huge-body endpoints are done');
my $max_bytes = $node->safe_psql('postgres',
	q{SELECT setting::bigint * CASE unit WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576 ELSE 1 END
	  FROM pg_settings WHERE name = 'shop.outbox_max_response_bytes'});
for my $e ([ $huge, 'Content-Length' ], [ $hugec, 'chunked' ])
{
	my ($id, $how) = @$e;
	is($node->safe_psql('postgres', "SELECT state, attempts, last_status FROM shop.outbox WHERE endpoint_id = $id"),
		'delivered|1|200', "50 MB response ($how): delivered at the first attempt, status 200");
	my $a = query_json($node, "SELECT http_status, succeeded, length(response_excerpt) AS len,
		response_excerpt ~ '^x+\$' AS only_x, error FROM shop.outbox_attempts WHERE endpoint_id = $id");
	ok(@$a == 1 && $a->[0]{succeeded} && ($a->[0]{http_status} // 0) == 200,
		"50 MB response ($how): one succeeded attempt logged");
	is($a->[0]{error}, "response body longer than $max_bytes bytes; the rest was not read",
		"50 MB response ($how): the attempt says the body went past the cap");
	ok(defined $a->[0]{len} && $a->[0]{len} > 0 && $a->[0]{len} <= $max_bytes && $a->[0]{only_x},
		"50 MB response ($how): the logged excerpt is the start of the body, at most $max_bytes bytes")
	  or diag(explain($a));
}
my @bigd = grep { $_->{path} =~ m{^/huge} } @{ $recv->deliveries };
is(scalar(grep { $_->{verified} } @bigd), 2, 'both huge-body deliveries verified');
# The cap stops the transfer: the worker hangs up instead of reading 50 MB
# (the receiver sees its client go away before the body is all written).
ok($_->{client_closed}, "the worker closed the connection before the end of the body on $_->{path}")
  for @bigd;
is($node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($huge), shop.shop_unsubscribe($hugec)"),
	't|t', 'huge-body endpoints unsubscribed');

# ---------------------------------------------------------------------------
# Per-order ordering.  (a) Several orders, each created then paid or
# released at once: per order, the later event never arrives before the
# earlier one was answered.
my $ord = subscribe($node, $recv, '/ok/ord');
my @ord_orders = map { buy($node, "ord$_") } 1 .. 5;
for my $i (0 .. $#ord_orders)
{
	$node->safe_psql('postgres', $i % 2
		? "SELECT shop.shop_release($ord_orders[$i])"
		: "SELECT shop.shop_confirm_paid($ord_orders[$i], 'pay_ord$i')");
}
# (b) An endpoint that fails every event's first 6 attempts (about 3 s of
# retries at the test's retry settings): one order created and paid in one
# transaction (both rows due at once), one released while its created event
# is failing.  Every change of the endpoint's rows is recorded (watch_rows),
# so the check covers the whole time the earlier event was failing, not one
# moment of it.
my $ordf = subscribe($node, $recv, '/first/6/status/500/ordf');
my ($both, $later, $failing);
my $fhist = watch_rows($node, "endpoint_id = $ordf", sub {
	$both = $node->safe_psql('postgres', q{
		BEGIN;
		SELECT id FROM shop.shop_buy_now('ordf1', '[{"sku_id": 1, "qty": 1}]') \gset
		SELECT shop.shop_confirm_paid(:id, 'pay_ordf1');
		COMMIT;
		SELECT :id;});
	$both = (split /\n/, $both)[-1];
	$later = buy($node, 'ordf2');
	$failing = poll_sql($node, qq{SELECT o.state = 'failed' AND o.attempts >= 1 FROM shop.outbox o
		JOIN shop.event e ON e.id = o.event_id WHERE o.endpoint_id = $ordf AND e.order_id = $later});
	$node->safe_psql('postgres', "SELECT shop.shop_release($later, 'customer_cancelled')");
}, 60);
ok($failing, 'the created event of the second order is failing');
my %later_row = map { split /\|/ } split /\n/, $node->safe_psql('postgres', qq{SELECT e.type, o.id
	FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id WHERE o.endpoint_id = $ordf AND e.order_id = $later});
my ($created_done) = grep { $_->{state} eq 'delivered' } @{ $fhist->{ $later_row{'order.created'} // 0 } // [] };
my @cancelled = @{ $fhist->{ $later_row{'order.cancelled'} // 0 } // [] };
ok($created_done && @cancelled && $cancelled[0]{seq} < $created_done->{seq},
	'its cancelled event was written while the created one was still undelivered')
  or diag(explain($fhist));
is_deeply([ map { "$_->{state}/$_->{attempts}" } grep { $_->{seq} < ($created_done->{seq} // 0) } @cancelled ],
	['queued/0'], 'its cancelled event stayed queued behind it, never tried, until the created one was delivered');

my $ord_list = join(',', @ord_orders);
ok(poll_sql($node, "SELECT count(*) = 10 AND bool_and(o.state = 'delivered') FROM shop.outbox o
	JOIN shop.event e ON e.id = o.event_id WHERE o.endpoint_id = $ord AND e.order_id IN ($ord_list)"),
	'ordering (a): all 10 rows delivered');
ok(poll_sql($node, "SELECT count(*) = 4 AND bool_and(state = 'delivered') FROM shop.outbox
	WHERE endpoint_id = $ordf"), 'ordering (b): all 4 rows delivered after their retries');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT attempts::text, ',') FROM shop.outbox
	WHERE endpoint_id = $ordf"), '7', 'ordering (b): each row took 7 attempts (6 failures, then 200)');

# For each order: every delivery of its later event comes after the 200
# answer to its earlier one.
sub order_kept
{
	my ($path, @order_ids) = @_;
	my $log = $recv->deliveries($path);
	my @bad;
	for my $o (@order_ids)
	{
		my @ev = @{ order_events($node, $o) };
		push @bad, "order $o: " . scalar(@ev) . ' events, want 2' if @ev != 2;
		for my $i (1 .. $#ev)
		{
			my ($prev, $next) = ("evt_$ev[$i - 1][0]", "evt_$ev[$i][0]");
			my ($ok_prev) = grep { $_->{webhook_id} eq $prev && ($_->{answer} // '') eq '200' } @$log;
			my ($first_next) = grep { $_->{webhook_id} eq $next } @$log;
			if (!$ok_prev)
			{
				push @bad, "order $o: $prev ($ev[$i - 1][1]) was never answered 200";
			}
			elsif (!$first_next)
			{
				push @bad, "order $o: $next ($ev[$i][1]) never arrived";
			}
			elsif ($first_next->{seq} < $ok_prev->{seq})
			{
				push @bad, "order $o: $next ($ev[$i][1]) arrived (seq $first_next->{seq}) "
				  . "before $prev was delivered (seq $ok_prev->{seq})";
			}
		}
	}
	return \@bad;
}
is_deeply(order_kept('/ok/ord', @ord_orders), [],
	'ordering (a): per order, the later event arrived after the earlier one was delivered');
is_deeply(order_kept('/first/6/status/500/ordf', $both, $later), [],
	'ordering (b): the later event waited for the earlier one through its 6 failures');
my $fl = $recv->deliveries('/first/6/status/500/ordf');
is(scalar(grep { !$_->{verified} } @$fl), 0, 'ordering (b): every attempt verified');

# The same event to two endpoints has the same webhook-id.
my %main_ids = map { $_->{webhook_id} => 1 } @{ $recv->deliveries('/ok/main') };
my @ord_ids = map { $_->{webhook_id} } grep { $_->{answer} eq '200' } @{ $recv->deliveries('/ok/ord') };
is(scalar(grep { !$main_ids{$_} } @ord_ids), 0,
	'an event sent to two endpoints carries the same webhook-id to both');

# ---------------------------------------------------------------------------
# Secret rotation: a new secret becomes the newest, the older one keeps
# signing during the grace period (two v1 signatures); with a grace of 0 s
# only the newest signs.
sub new_secret
{
	return 'whsec_' . MIME::Base64::encode_base64(join('', map { chr(int(rand(256))) } 1 .. 32), '');
}
use MIME::Base64 ();
my $rot = subscribe($node, $recv, '/ok/rot', 'order.created');
my $s1 = $node->safe_psql('postgres', "SELECT secret FROM shop.event_endpoint_secret WHERE endpoint_id = $rot");
my ($s2, $s3) = (new_secret(), new_secret());
my $rot_url = $recv->url('/ok/rot');
$node->safe_psql('postgres', "SELECT shop.shop_subscribe('$rot_url', ARRAY['order.created'], '$s2')");
sub rot_delivery
{
	my ($user, @secrets) = @_;
	$recv->_call('POST', '/_secret', { path => '/ok/rot', secret => shift(@secrets), replace => JSON::PP::true });
	$recv->set_secret('/ok/rot', $_) for @secrets;
	my $o = buy($node, $user);
	poll_sql($node, qq{SELECT o.state FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
		WHERE o.endpoint_id = $rot AND e.order_id = $o}, 'delivered', 20);
	my ($d) = grep { ($_->{order_id} // 0) == $o } @{ $recv->deliveries('/ok/rot') };
	return $d // {};
}
my $d = rot_delivery('rot1', $s2);
ok($d->{verified}, 'rotation: verified with the new secret alone');
is(scalar(split / /, $d->{webhook_signature} // ''), 2, 'rotation: two v1 signatures during the grace period');
$d = rot_delivery('rot2', $s1);
ok($d->{verified}, 'rotation: verified with the old secret alone during the grace period');
$node->safe_psql('postgres', "SELECT shop.shop_subscribe('$rot_url', ARRAY['order.created'], '$s3', NULL, 0)");
$d = rot_delivery('rot3', $s1, $s2);
ok(!$d->{verified}, 'rotation with grace 0: the older secrets no longer verify');
is(scalar(split / /, $d->{webhook_signature} // ''), 1, 'rotation with grace 0: one v1 signature');
$d = rot_delivery('rot4', $s3);
ok($d->{verified}, 'rotation with grace 0: the newest secret verifies');
is($node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($rot)"), 't', 'rotation endpoint unsubscribed');

# ---------------------------------------------------------------------------
# stock.low: a reservation takes a SKU's available stock below the
# threshold; data.sku as documented.
my $stock_ep = subscribe($node, $recv, '/ok/stock', 'stock.low');
$node->safe_psql('postgres', q{
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (2, 1, 'MUG-LOW', 5)});
$node->safe_psql('postgres', q{
	SET shop.low_stock_threshold = 3;
	SELECT shop.shop_buy_now('low', '[{"sku_id": 2, "qty": 3}]')});
ok(poll_sql($node, "SELECT count(*) = 1 AND bool_and(state = 'delivered') FROM shop.outbox WHERE endpoint_id = $stock_ep"),
	'stock.low: one row, delivered');
my ($low) = @{ $recv->deliveries('/ok/stock') };
my $low_body = eval { json_decode($low->{body}) } // {};
ok($low && $low->{verified} && $low->{type} eq 'stock.low', 'stock.low: received and verified');
is_deeply($low_body->{data}, { sku => { id => 2, code => 'MUG-LOW', on_hand => 5, reserved => 3, available => 2, threshold => 3 } },
	'stock.low: data.sku has id, code, on_hand, reserved, available, threshold');
is($node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($stock_ep)"), 't', 'stock endpoint unsubscribed');

# ---------------------------------------------------------------------------
# What shop_subscribe refuses (22023): not https (or allowed loopback http),
# credentials in the URL, unknown event types, an empty list, a malformed
# secret.
my $port = $recv->port;
is(sql_error($node, q{SELECT shop.shop_subscribe('http://example.com/hook', ARRAY['*'])}),
	'22023', 'subscribe: http:// to a non-loopback host is refused');
is(sql_error($node, qq{SELECT shop.shop_subscribe('http://user:pw\@127.0.0.1:$port/ok/x', ARRAY['*'])}),
	'22023', 'subscribe: a URL with credentials is refused');
is(sql_error($node, qq{SELECT shop.shop_subscribe('http://127.0.0.1:$port/ok/x', ARRAY['order.teleported'])}),
	'22023', 'subscribe: an unknown event type is refused');
is(sql_error($node, qq{SELECT shop.shop_subscribe('http://127.0.0.1:$port/ok/x', ARRAY[]::text[])}),
	'22023', 'subscribe: an empty type list is refused');
is(sql_error($node, qq{SELECT shop.shop_subscribe('http://127.0.0.1:$port/ok/x', ARRAY['*'], 'whsec_tooshort')}),
	'22023', 'subscribe: a malformed secret is refused');

# ---------------------------------------------------------------------------
# shop.outbox_batch_delay: a wake-up waits that long for more rows before
# it claims (README, "Batches").  With 1s, and an idle worker that would
# not poll again for an hour, an event goes out no sooner than 1 s after
# its commit: the claim is the commit's wake-up plus the delay.
# (no other row open: a claim due for one, a retry say, would take this
# event with it, sooner)
ok(poll_sql($node, q{SELECT count(*) = 0 FROM shop.outbox WHERE state IN ('queued', 'in_flight', 'failed')}),
	'batch delay: nothing else is open');
reload_with($node, 'shop.outbox_poll_interval' => '1h', 'shop.outbox_batch_delay' => '1s');
sleep 2;	# the claim the worker had planned under the old poll interval
my $batched = buy($node, 'batch-delay');
my $batched_event = $node->safe_psql('postgres',
	"SELECT id FROM shop.event WHERE order_id = $batched AND type = 'order.created'");
ok(poll_sql($node, qq{SELECT count(*) > 0 FROM shop.outbox
	WHERE endpoint_id = $ep AND event_id = $batched_event AND state = 'delivered'}),
	'batch delay 1s: the event is delivered');
cmp_ok($node->safe_psql('postgres', qq{SELECT extract(epoch FROM min(a.started_at) - e.created_at)
	FROM shop.outbox_attempt a JOIN shop.outbox o ON o.id = a.outbox_id JOIN shop.event e ON e.id = o.event_id
	WHERE o.endpoint_id = $ep AND o.event_id = $batched_event GROUP BY e.created_at}),
	'>=', 0.9, '... its first attempt started 1 s after the event was written, not before');
reload_with($node, 'shop.outbox_poll_interval' => '1s', 'shop.outbox_batch_delay' => '20ms');

# ---------------------------------------------------------------------------
# Retention: with shop.outbox_retention = 1s the worker deletes the event
# deliveries delivered more than 1 s ago, their attempts, and their events
# (every event here has no other delivery left then).  Dead deliveries
# stay.  Until now the default (30 days) kept everything.
my $delivered = $node->safe_psql('postgres',
	q{SELECT count(*) FROM shop.outbox WHERE state = 'delivered' AND operation = 'event'});
cmp_ok($delivered, '>', 20, "before: $delivered delivered event deliveries are kept");
# one delivery given up (set by hand: no endpoint here fails for good)
$node->safe_psql('postgres', q{UPDATE shop.outbox SET state = 'dead', delivered_at = NULL
	WHERE id = (SELECT min(id) FROM shop.outbox WHERE state = 'delivered' AND operation = 'event')});
my $dead = $node->safe_psql('postgres',
	q{SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '-') FROM shop.outbox WHERE state = 'dead'});
isnt($dead, '-', "a dead delivery ($dead)");
my $oldest = $node->safe_psql('postgres',
	q{SELECT min(id) FROM shop.outbox WHERE state = 'delivered' AND operation = 'event'});
$node->append_conf('postgresql.conf', "shop.outbox_retention = '1s'");
$node->reload;
# (deliveries still going on, such as retries left from above, may be
# younger than 1 s or wait for the next prune, a second later: 5 s apart)
ok(poll_sql($node, q{SELECT count(*) = 0 FROM shop.outbox WHERE state = 'delivered' AND operation = 'event'
	AND delivered_at < now() - interval '5 seconds'}),
	'retention 1s: the worker deleted every delivered event delivery');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.outbox WHERE id = $oldest"), '0',
	"the oldest one ($oldest) is gone");
is($node->safe_psql('postgres', q{SELECT count(*) FROM shop.event e
	WHERE NOT EXISTS (SELECT FROM shop.outbox o WHERE o.event_id = e.id)}),
	'0', 'and every event left without a delivery');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM shop.event e
	JOIN shop.outbox o ON o.event_id = e.id WHERE o.id IN ($dead)}),
	'1', 'the dead delivery\'s event stays');
is($node->safe_psql('postgres', q{SELECT count(*) FROM shop.outbox_attempt a
	JOIN shop.outbox o ON o.id = a.outbox_id
	WHERE o.state = 'delivered' AND o.delivered_at < now() - interval '5 seconds'}),
	'0', 'and their attempts');
is($node->safe_psql('postgres',
	q{SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '-') FROM shop.outbox WHERE state = 'dead'}),
	$dead, "dead deliveries stay ($dead)");
# a new order's events go the same way once delivered
my $late = buy($node, 'after-retention');
my $late_event = $node->safe_psql('postgres', "SELECT id FROM shop.event WHERE order_id = $late");
ok(poll_sql($node, qq{SELECT count(*) = 0 FROM shop.outbox WHERE endpoint_id = $ep AND event_id = $late_event}),
	'a later order\'s event is delivered, then its delivery is deleted after 1 s');
ok(scalar(grep { ($_->{order_id} // 0) == $late } @{ $recv->deliveries('/ok/main') }) >= 1,
	'it was delivered before it was deleted');

$recv->stop;
$node->stop;
done_testing();

# Outbox delivery worker: failures and retries.  The retry schedule (5xx,
# then success; state failed in between; growing delays), Retry-After in
# seconds and as an HTTP date, capped at retry_max; a timeout, a reset
# connection and a redirect are failures; dead after max_attempts (and after
# max_age), shown in shop.outbox_dead, shop_redeliver sends it again;
# settings change on SIGHUP; an endpoint that keeps failing is disabled and
# shop_enable_endpoint resumes it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopOutboxTest;

# retry_base 300ms keeps the schedule's delays (150 ms to 1.2 s) well apart
# from an attempt's own time; watch_rows records every state the rows pass
# through, however briefly.  retry_max 10s lets a 2-3 s Retry-After through.
# timeout 1s: the hanging receiver below is given up after it.
my $node = outbox_node('outbox_retries',
	'shop.outbox_timeout'    => q{'1s'},
	'shop.outbox_retry_base' => q{'300ms'},
	'shop.outbox_retry_max'  => q{'10s'});
my $recv = ShopOutboxTest::Receiver->start(name => 'receiver_011');
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');

sub row_of
{
	my ($ep) = @_;
	return $node->safe_psql('postgres', "SELECT id FROM shop.outbox WHERE endpoint_id = $ep ORDER BY id LIMIT 1");
}

sub unsubscribe
{
	my (@eps) = @_;
	$node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($_)") for @eps;
}

# ---------------------------------------------------------------------------
# The retry schedule, and failures of every kind, in parallel: four
# endpoints get the same order.created event.
my %ep = (
	sched => subscribe($node, $recv, '/first/3/status/500/sched', 'order.created'),
	to    => subscribe($node, $recv, '/first/1/hang/to', 'order.created'),
	rs    => subscribe($node, $recv, '/first/1/reset/rs', 'order.created'),
	redir => subscribe($node, $recv, '/first/1/status/302/redir', 'order.created'));
my $eps = join(',', values %ep);
my $hist = watch_rows($node, "endpoint_id IN ($eps)", sub { buy($node, 'retries') }, 30);
my %row = map { $_ => row_of($ep{$_}) } keys %ep;

# 500, 500, 500, 200
is($node->safe_psql('postgres', "SELECT state, attempts, last_status FROM shop.outbox WHERE id = $row{sched}"),
	'delivered|4|200', 'schedule: 500 three times, then 200: delivered after 4 attempts');
my $log = attempts_of($node, $row{sched});
is_deeply([ map { [ $_->{attempt}, $_->{http_status}, $_->{succeeded} ? 't' : 'f' ] } @$log ],
	[ [ 1, 500, 'f' ], [ 2, 500, 'f' ], [ 3, 500, 'f' ], [ 4, 200, 't' ] ],
	'schedule: the attempt log has one row per try with its status');
my %failed_after = map { $_->{attempts} => $_ } grep { $_->{state} eq 'failed' } @{ $hist->{ $row{sched} } };
is_deeply([ sort keys %failed_after ], [ 1, 2, 3 ], 'schedule: the row was "failed" after each failed attempt')
  or diag(explain([ map { "$_->{state}/$_->{attempts}" } @{ $hist->{ $row{sched} } } ]));
# the delay chosen after attempt k: the worker sets next_attempt_at to
# now() + delay and updated_at to now() in one statement, so their
# difference is the delay itself; nominal 300ms * 2^(k-1), jittered to
# 50-100 % of it
my @delay = map { defined $failed_after{$_}
	  ? $failed_after{$_}{next_attempt_at} - $failed_after{$_}{updated_at} : undef } 1 .. 3;
for my $k (1 .. 3)
{
	my $nominal = 0.3 * 2**($k - 1);
	my $d = $delay[ $k - 1 ];
	ok(defined $d && $d >= 0.5 * $nominal - 0.0005 && $d <= $nominal + 0.0005,
		sprintf('schedule: delay after attempt %d is %s s (jittered %.2f-%.2f s)', $k,
			defined $d ? sprintf('%.3f', $d) : 'unknown', 0.5 * $nominal, $nominal));
	ok(defined $failed_after{$k} && $log->[$k] && $log->[$k]{started} >= $failed_after{$k}{next_attempt_at} - 0.1,
		"schedule: attempt " . ($k + 1) . ' did not start before next_attempt_at');
}
ok(defined $delay[0] && defined $delay[2] && $delay[2] > $delay[0],
	'schedule: next_attempt_at moves further out as attempts grow (delay 3 > delay 1)');

# a timeout, a reset connection, a redirect: failures, then success
my %first_fail = map {
	my $k = $_;
	my ($f) = grep { $_->{state} eq 'failed' && $_->{attempts} == 1 } @{ $hist->{ $row{$k} } };
	$k => $f
} qw(to rs redir);
for my $k (qw(to rs redir))
{
	is($node->safe_psql('postgres', "SELECT state, attempts, last_status FROM shop.outbox WHERE id = $row{$k}"),
		'delivered|2|200', "$k: delivered at the second attempt");
}
$log = attempts_of($node, $row{to});
ok(!$log->[0]{succeeded} && !defined $log->[0]{http_status} && ($log->[0]{error} // '') =~ /time(d)?[ -]?out/i,
	'timeout: attempt 1 failed without a status, its error mentions the timeout')
  or diag(explain($log->[0]));
ok($log->[0]{duration_ms} >= 500 && $log->[0]{duration_ms} < 5000,
	"timeout: attempt 1 lasted about shop.outbox_timeout (1s): $log->[0]{duration_ms} ms");
ok($first_fail{to} && ($first_fail{to}{last_error} // '') =~ /time(d)?[ -]?out/i,
	'timeout: the row was "failed" with last_error mentioning the timeout')
  or diag(explain($hist->{ $row{to} }));
my ($hang) = grep { $_->{attempt} == 1 } @{ $recv->deliveries('/first/1/hang/to') };
ok($hang && $hang->{verified} && $hang->{client_closed}, 'timeout: the receiver got it (verified) and the worker hung up');

$log = attempts_of($node, $row{rs});
ok(!$log->[0]{succeeded} && !defined $log->[0]{http_status} && ($log->[0]{error} // '') ne '',
	'reset: attempt 1 failed without a status, with an error: ' . ($log->[0]{error} // 'none'));
ok($first_fail{rs} && defined $first_fail{rs}{last_error} && !defined $first_fail{rs}{last_status},
	'reset: the row was "failed" with last_error set');

$log = attempts_of($node, $row{redir});
ok(!$log->[0]{succeeded} && ($log->[0]{http_status} // 0) == 302,
	'redirect: a 302 is a failure (attempt 1 logged with status 302)');
ok($first_fail{redir} && ($first_fail{redir}{last_status} // 0) == 302, 'redirect: the row was "failed" with last_status 302');
is(scalar @{ $recv->deliveries('/ok/redirected') }, 0, 'redirect: not followed');
unsubscribe(values %ep);

# ---------------------------------------------------------------------------
# Retry-After, in seconds and as an HTTP date: the next attempt waits for it.
my %ra = (
	secs => subscribe($node, $recv, '/first/1/retry-after/2/ra', 'order.created'),
	date => subscribe($node, $recv, '/first/1/retry-after-date/3/rad', 'order.created'));
buy($node, 'retry-after');
ok(poll_sql($node, "SELECT count(*) = 2 AND bool_and(state = 'delivered') FROM shop.outbox
	WHERE endpoint_id IN ($ra{secs}, $ra{date})", 't', 30), 'Retry-After: both rows delivered');
for my $k (qw(secs date))
{
	$log = attempts_of($node, row_of($ra{$k}));
	is_deeply([ map { $_->{http_status} } @$log ], [ 429, 200 ], "Retry-After ($k): 429, then 200");
	my $gap = @$log == 2 ? $log->[1]{started} - $log->[0]{ended} : -1;
	ok($gap >= 1.5, sprintf('Retry-After (%s): the retry waited %.2f s (asked: %s; backoff alone: < 0.3 s)',
		$k, $gap, $k eq 'secs' ? '2 s' : 'an HTTP date 3 s ahead'));
}
unsubscribe(values %ra);

# ... but never longer than shop.outbox_retry_max (changed on SIGHUP)
reload_with($node, 'shop.outbox_retry_max' => '1s');
my $cap = subscribe($node, $recv, '/first/1/retry-after/3600/cap', 'order.created');
buy($node, 'cap');
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE endpoint_id = $cap", 'delivered', 20),
	'Retry-After: 3600 with retry_max 1s: delivered within seconds');
$log = attempts_of($node, row_of($cap));
my $gap = @$log == 2 ? $log->[1]{started} - $log->[0]{ended} : 99;
ok($gap <= 2.5, sprintf('Retry-After 3600 capped at retry_max (1s): waited %.2f s', $gap));
unsubscribe($cap);

# ---------------------------------------------------------------------------
# Dead after shop.outbox_max_attempts (4); shop_redeliver sends it again.
my $dead_ep = subscribe($node, $recv, '/status/500/dead', 'order.created');
buy($node, 'dead');
my $dead_row = row_of($dead_ep);
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE id = $dead_row", 'dead', 30), 'always 500: the row is dead');
is($node->safe_psql('postgres', "SELECT attempts, last_status, event_type FROM shop.outbox_dead WHERE outbox_id = $dead_row"),
	'4|500|order.created', 'shown in shop.outbox_dead after 4 attempts, last status 500');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.outbox_attempts WHERE outbox_id = $dead_row"),
	'4', 'four attempts logged');
my $dl = $recv->deliveries('/status/500/dead');
is_deeply([ map { $_->{attempt} } @$dl ], [ 1, 2, 3, 4 ], 'the receiver got it 4 times, then no more');
ok(@$dl == 4 && !grep({ !$_->{verified} || $_->{webhook_id} ne $dl->[0]{webhook_id} || $_->{body} ne $dl->[0]{body} } @$dl),
	'every attempt: the same webhook-id and the same body bytes, verified');
ok($node->safe_psql('postgres', 'SELECT dead >= 1 FROM shop.outbox_health') eq 't', 'shop.outbox_health counts it');

$recv->set_mode('/status/500/dead', '/ok');
is($node->safe_psql('postgres', "SELECT shop.shop_redeliver($dead_row)"), 't', 'shop_redeliver on the dead row: true');
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE id = $dead_row", 'delivered', 20), 'redelivered: delivered');
is($node->safe_psql('postgres', "SELECT attempts, last_status FROM shop.outbox WHERE id = $dead_row"),
	'1|200', 'the attempts started over: 1 attempt, status 200');
$dl = $recv->deliveries('/status/500/dead');
ok(@$dl == 5 && $dl->[4]{answer} == 200 && $dl->[4]{verified} && $dl->[4]{webhook_id} eq $dl->[0]{webhook_id},
	'the receiver got the same webhook-id a fifth time and answered 200');
is($node->safe_psql('postgres', "SELECT shop.shop_redeliver($dead_row)"), 'f', 'shop_redeliver on a delivered row: false');
is(sql_error($node, 'SELECT shop.shop_redeliver(-1)'), 'P0002', 'shop_redeliver on an unknown row: P0002');
unsubscribe($dead_ep);

# ---------------------------------------------------------------------------
# SIGHUP: ALTER SYSTEM + pg_reload_conf() changes the worker's settings.
reload_with($node, 'shop.outbox_max_attempts' => '2');
my $dead2 = subscribe($node, $recv, '/status/500/dead2', 'order.created');
buy($node, 'dead2');
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE endpoint_id = $dead2", 'dead', 20),
	'SIGHUP: with max_attempts 2 the next failing row dies');
is($node->safe_psql('postgres', "SELECT attempts FROM shop.outbox WHERE endpoint_id = $dead2"),
	'2', 'SIGHUP: after 2 attempts');
is(scalar @{ $recv->deliveries('/status/500/dead2') }, 2, 'SIGHUP: the receiver got it twice');
$recv->set_mode('/status/500/dead2', '/ok');
is($node->safe_psql('postgres', "SELECT shop.shop_redeliver_dead($dead2)"), '1',
	'shop_redeliver_dead(endpoint): 1 row queued again');
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE endpoint_id = $dead2", 'delivered', 20),
	'shop_redeliver_dead: delivered');
unsubscribe($dead2);

# dead after shop.outbox_max_age, however few attempts
reload_with($node, 'shop.outbox_max_attempts' => '1000', 'shop.outbox_max_age' => '1s');
my $old = subscribe($node, $recv, '/status/500/old', 'order.created');
buy($node, 'old');
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE endpoint_id = $old", 'dead', 20),
	'max_age 1s: a row failing for longer is dead');
my ($att, $age) = split /\|/, $node->safe_psql('postgres',
	"SELECT attempts, extract(epoch FROM died_at - queued_at) FROM shop.outbox_dead WHERE endpoint_id = $old");
ok($att >= 2 && $att < 1000 && $age >= 0.8, "max_age: dead after $att attempts, $age s after it was queued");
unsubscribe($old);
reload_with($node, 'shop.outbox_max_attempts' => '4', 'shop.outbox_max_age' => '3d');

# ---------------------------------------------------------------------------
# An endpoint failing shop.endpoint_max_failures (3) attempts in a row is
# disabled; its rows wait; shop_enable_endpoint resumes it.
reload_with($node, 'shop.endpoint_max_failures' => '3');
my $dis = subscribe($node, $recv, '/status/500/dis');
buy($node, 'dis1');
my $dis_row = row_of($dis);
ok(poll_sql($node, "SELECT enabled FROM shop.event_endpoints WHERE endpoint_id = $dis", 'f', 20),
	'after 3 failures in a row the endpoint is disabled');
my $epv = query_json($node, "SELECT enabled, disabled_reason, consecutive_failures, backlog
	FROM shop.event_endpoints WHERE endpoint_id = $dis")->[0];
ok(!$epv->{enabled} && defined $epv->{disabled_reason} && $epv->{disabled_reason} ne ''
	  && $epv->{consecutive_failures} == 3 && $epv->{backlog} == 1,
	'shop.event_endpoints: disabled with a reason, 3 consecutive failures, backlog 1')
  or diag(explain($epv));
is($node->safe_psql('postgres', "SELECT state, attempts FROM shop.outbox WHERE id = $dis_row"),
	'failed|3', 'its row is failed after 3 attempts (not dead: max_attempts is 4)');
my $dis2 = buy($node, 'dis2');
my $dis2_row = $node->safe_psql('postgres', "SELECT o.id FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
	WHERE o.endpoint_id = $dis AND e.order_id = $dis2");
isnt($dis2_row, '', 'an event while it is disabled still queues a row for it (README as amended: it waits)');
ok(poll_sql($node, "SELECT clock_timestamp() > next_attempt_at + interval '500 ms' FROM shop.outbox WHERE id = $dis_row"),
	'its failed row\'s retry time has passed');
is($node->safe_psql('postgres', "SELECT state, attempts FROM shop.outbox WHERE id = $dis_row"),
	'failed|3', 'the failed row waits: no attempt while the endpoint is disabled');
is($node->safe_psql('postgres', "SELECT state, attempts FROM shop.outbox WHERE id = $dis2_row"),
	'queued|0', 'the new row waits too, never tried');
is($node->safe_psql('postgres', "SELECT next_attempt_at = 'infinity' FROM shop.outbox WHERE id = $dis2_row"),
	't', 'the new row waits at next_attempt_at infinity, out of the claim\'s way');
is(scalar @{ $recv->deliveries('/status/500/dis') }, 3, 'the receiver got exactly 3 attempts');
is($node->safe_psql('postgres', "SELECT backlog FROM shop.event_endpoints WHERE endpoint_id = $dis"),
	'2', 'shop.event_endpoints: backlog 2 while disabled');

$recv->set_mode('/status/500/dis', '/ok');
is($node->safe_psql('postgres', "SELECT shop.shop_enable_endpoint($dis)"), 't', 'shop_enable_endpoint: true');
ok(poll_sql($node, "SELECT count(*) = 2 AND bool_and(state = 'delivered') FROM shop.outbox WHERE endpoint_id = $dis", 't', 20),
	'enabled again: both waiting rows are delivered');
is($node->safe_psql('postgres', "SELECT enabled, disabled_reason IS NULL, consecutive_failures, delivered, backlog
	FROM shop.event_endpoints WHERE endpoint_id = $dis"), 't|t|0|2|0',
	'shop.event_endpoints: enabled, no reason, failure count reset, 2 delivered, no backlog');
is(scalar(grep { $_->{verified} && $_->{answer} eq '200' } @{ $recv->deliveries('/status/500/dis') }), 2,
	'the receiver got both, verified');
is(sql_error($node, 'SELECT shop.shop_enable_endpoint(-1)'), 'P0002', 'shop_enable_endpoint on an unknown endpoint: P0002');
unsubscribe($dis);
reload_with($node, 'shop.endpoint_max_failures' => '1000');

# ---------------------------------------------------------------------------
# shop_unsubscribe: the endpoint's failing rows become dead, nothing more is
# sent to it.
my $gone = subscribe($node, $recv, '/status/503/gone', 'order.created');
buy($node, 'gone');
my $gone_row = row_of($gone);
ok(poll_sql($node, "SELECT attempts >= 1 AND state <> 'in_flight' FROM shop.outbox WHERE id = $gone_row"),
	'unsubscribe: the row has failed once');
is($node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($gone)"), 't', 'shop_unsubscribe: true');
is($node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($gone)"), 'f', 'shop_unsubscribe again: false');
my $gone_dead = query_json($node, "SELECT state, last_error FROM shop.outbox WHERE id = $gone_row")->[0];
ok($gone_dead->{state} eq 'dead' && ($gone_dead->{last_error} // '') =~ /unsubscribed/,
	'unsubscribe: the failed row is dead ("endpoint unsubscribed")')
  or diag(explain($gone_dead));
# a retry claimed just before the unsubscribe may still be on the wire: it
# finishes (attempts counts every claim), and nothing comes after it
my $gone_claims = $node->safe_psql('postgres', "SELECT attempts FROM shop.outbox WHERE id = $gone_row");
ok(wait_until(sub { @{ $recv->deliveries('/status/503/gone') } >= $gone_claims }),
	"unsubscribe: the receiver got the $gone_claims attempt(s) claimed before it");
my $gone_sent = scalar @{ $recv->deliveries('/status/503/gone') };
is($gone_sent, $gone_claims, 'unsubscribe: no more than were claimed');
ok(poll_sql($node, "SELECT clock_timestamp() > updated_at + interval '1 s' FROM shop.outbox WHERE id = $gone_row"),
	'unsubscribe: a second has passed');
is(scalar @{ $recv->deliveries('/status/503/gone') }, $gone_sent, 'unsubscribe: nothing more was sent to it');

# ---------------------------------------------------------------------------
# shop.outbox_allow_http_loopback off (SIGHUP): http:// to loopback is
# refused when subscribing, and the worker sends nothing to it.
my $lo = subscribe($node, $recv, '/ok/loopback', 'order.created');
reload_with($node, 'shop.outbox_allow_http_loopback' => 'off');
is(sql_error($node, "SELECT shop.shop_subscribe('" . $recv->url('/ok/other') . "', ARRAY['*'])"),
	'22023', 'loopback off: subscribing an http://127.0.0.1 URL is refused');
buy($node, 'loopback');
my $lo_row = row_of($lo);
ok(poll_sql($node, "SELECT clock_timestamp() > queued_at + interval '1.5 s' FROM shop.outbox WHERE id = $lo_row"),
	'loopback off: 1.5 s after the event');
is(scalar @{ $recv->deliveries('/ok/loopback') }, 0, 'loopback off: the worker sent nothing to http://127.0.0.1');
note('loopback off, the row: ' . $node->safe_psql('postgres',
	"SELECT state, attempts, last_error FROM shop.outbox WHERE id = $lo_row"));
reload_with($node, 'shop.outbox_allow_http_loopback' => 'on');
# (whether it waited or failed is not the contract's; if it died, redeliver it)
$node->safe_psql('postgres', "SELECT shop.shop_redeliver($lo_row)");
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE id = $lo_row", 'delivered', 20),
	'loopback on again: the row is delivered')
  or diag($node->safe_psql('postgres', "SELECT state, attempts, last_error FROM shop.outbox WHERE id = $lo_row"));

$recv->stop;
$node->stop;
done_testing();

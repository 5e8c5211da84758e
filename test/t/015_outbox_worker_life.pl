# The delivery worker's own life, and what it trusts:
#  - stopped with SIGTERM (pg_terminate_backend) in the middle of a request,
#    it comes back by itself and sends that row again, same webhook-id;
#  - killed outright (SIGKILL: the postmaster then restarts every process),
#    it comes back too, and every committed event is delivered;
#  - it sends up to shop.outbox_max_in_flight requests at once, no more;
#  - its statements run as the extension's owner (here a role of its own),
#    not as the bootstrap superuser it connects as;
#  - it serves one database: shop in another database of the cluster is
#    told (health view, shop_api.health, a WARNING) that nobody sends;
#  - it verifies TLS certificates: an https receiver with a self-signed
#    certificate gets no request, and the attempt says why;
#  - with the server logging at INFO and above, neither a subscription's
#    secret nor an event's body reaches the server log.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use ShopOutboxTest;

# timeout 30s: the hanging request below is still in flight when the worker
# is stopped.  INFO: what an operator's log shows (the other outbox tests
# log at DEBUG1).
my $node = outbox_node('outbox_life',
	'-owner'              => 'shop_admin',
	'shop.outbox_timeout' => q{'30s'},
	# the in-flight section below checks this limit (no other needs more)
	'shop.outbox_max_in_flight' => '3',
	'log_min_messages'    => 'info',
	'log_statement'       => 'none',
	# the server's default (the test framework turns it off): a process
	# killed outright makes the postmaster restart every process
	'restart_after_crash' => 'on');
my $recv = ShopOutboxTest::Receiver->start(name => 'receiver_015');
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');

my $worker_pid_sql =
  q{SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'shop outbox worker'};

# Wait for a worker whose pid is not $old; returns its pid (0: none came).
sub new_worker
{
	my ($old) = @_;
	return poll_sql($node, "SELECT ($worker_pid_sql) NOT IN (0, $old)")
	  ? $node->safe_psql('postgres', $worker_pid_sql) : 0;
}

# ---------------------------------------------------------------------------
# The owner: shop_admin created the extension.  A test-only trigger notes
# who the worker's updates run as.
$node->safe_psql('postgres', q{
	CREATE TABLE public.outbox_who (state text, cur name, sess name);
	GRANT INSERT ON public.outbox_who TO PUBLIC;
	CREATE FUNCTION public.outbox_who() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.outbox_who VALUES (NEW.state, current_user, session_user);
		RETURN NULL;
	END $$;
	CREATE TRIGGER outbox_who AFTER UPDATE ON shop.outbox
		FOR EACH ROW EXECUTE FUNCTION public.outbox_who();
});
my $ep = subscribe($node, $recv, '/ok/owner', 'order.created');
my $secret_line = $node->safe_psql('postgres',
	"SELECT secret FROM shop.event_endpoint_secret WHERE endpoint_id = $ep");
buy($node, 'owner-check');
ok(poll_sql($node, "SELECT bool_and(state = 'delivered') FROM shop.outbox WHERE endpoint_id = $ep"),
	'owner: delivered');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT cur || '/' || (sess = cur)::text, ',') FROM public.outbox_who}),
	'shop_admin/false', "owner: the worker's updates ran as the extension's owner, not as its session user");
$node->safe_psql('postgres', q{
	DROP TRIGGER outbox_who ON shop.outbox;
	DROP FUNCTION public.outbox_who();
	DROP TABLE public.outbox_who;
});
$node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($ep)");

# ---------------------------------------------------------------------------
# One worker, for one database: shop in another database of the cluster is
# told that nobody delivers its rows (the worker's process is listed in
# every database's pg_stat_activity).
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION shop');
for my $db ('postgres', 'other')
{
	my $serves = $db eq 'postgres' ? 't' : 'f';
	is($node->safe_psql($db, "SELECT worker_running FROM shop.outbox_health"), $serves,
		"one worker: shop.outbox_health.worker_running in $db is $serves");
	is($node->safe_psql($db, "SELECT shop_api.health()->>'worker'"), $serves eq 't' ? 'true' : 'false',
		"one worker: shop_api.health() in $db says worker " . ($serves eq 't' ? 'true' : 'false'));
	my ($rc, $out, $err) = $node->psql($db,
		"SELECT shop.shop_subscribe('https://other.example.test/$db', ARRAY['order.paid'])");
	is($rc, 0, "one worker: subscribing in $db works");
	if ($serves eq 't')
	{
		unlike($err, qr/WARNING/, "one worker: no warning in $db");
	}
	else
	{
		like($err, qr/WARNING:  the shop outbox worker is not running/, "one worker: $db is warned that nothing is sent");
	}
	$node->safe_psql($db, "SELECT shop.shop_unsubscribe(id) FROM shop.event_endpoint WHERE url = 'https://other.example.test/$db'");
}
$node->safe_psql('postgres', 'DROP DATABASE other');

# ---------------------------------------------------------------------------
# SIGTERM in the middle of a request: the receiver never answers the first
# attempt, and the worker is stopped while it waits.
$ep = subscribe($node, $recv, '/first/1/hang/term', 'order.created');
my $order = buy($node, 'sigterm');
my $row = $node->safe_psql('postgres', "SELECT id FROM shop.outbox WHERE endpoint_id = $ep");
ok(wait_until(sub { @{ $recv->deliveries('/first/1/hang/term') } >= 1 }),
	'SIGTERM: the first attempt reached the receiver');
is($node->safe_psql('postgres', "SELECT state FROM shop.outbox WHERE id = $row"), 'in_flight',
	'SIGTERM: the row is in flight (the receiver does not answer)');
my $pid = $node->safe_psql('postgres', $worker_pid_sql);
ok($pid > 0, 'SIGTERM: the worker has a pid');
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'SIGTERM: sent to the worker');
my $pid2 = new_worker($pid);
ok($pid2, "SIGTERM: a new worker started by itself (pid $pid2, was $pid)");
ok(poll_sql($node, "SELECT state FROM shop.outbox WHERE id = $row", 'delivered'),
	'SIGTERM: the row in flight was sent again and delivered');
is($node->safe_psql('postgres', "SELECT attempts FROM shop.outbox WHERE id = $row"), '2',
	'SIGTERM: at the second attempt');
my $got = $recv->deliveries('/first/1/hang/term');
is(scalar(@$got), 2, 'SIGTERM: the receiver got the request twice');
ok(@$got == 2 && $got->[0]{webhook_id} eq "evt_" . $node->safe_psql('postgres',
		"SELECT event_id FROM shop.outbox WHERE id = $row")
	  && $got->[1]{webhook_id} eq $got->[0]{webhook_id} && $got->[0]{verified} && $got->[1]{verified},
	'SIGTERM: both with the same webhook-id, both verified')
  or diag(explain($got));
like(slurp_file($node->logfile), qr/1 requests of a stopped worker will be sent again/,
	'SIGTERM: the new worker logged that it sends the row again');
$node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($ep)");

# ---------------------------------------------------------------------------
# SIGKILL: the postmaster treats it as a crash and restarts every process;
# events committed before and after are all delivered.
$ep = subscribe($node, $recv, '/ok/kill', 'order.created');
my @before = map { buy($node, "kill-before-$_") } 1 .. 3;
ok(poll_sql($node, "SELECT count(*) = 3 AND bool_and(state = 'delivered') FROM shop.outbox WHERE endpoint_id = $ep"),
	'SIGKILL: three events delivered before');
$pid = $node->safe_psql('postgres', $worker_pid_sql);
my $log_offset = -s $node->logfile;
ok($pid > 0 && kill('KILL', $pid), "SIGKILL: sent to the worker (pid $pid)");
# the postmaster has seen it (else a connection could still get in before)
$node->wait_for_log(qr/background worker "shop outbox worker" \(PID $pid\) was terminated by signal 9/,
	$log_offset);
pass('SIGKILL: the postmaster saw the worker killed');
ok(poll_sql($node, 'SELECT true'), 'SIGKILL: the server accepts connections again after its crash restart');
$pid2 = new_worker($pid);
ok($pid2, "SIGKILL: a new worker runs (pid $pid2)");
my @after = map { buy($node, "kill-after-$_") } 1 .. 3;
ok(poll_sql($node, "SELECT count(*) = 6 AND bool_and(state = 'delivered') FROM shop.outbox WHERE endpoint_id = $ep"),
	'SIGKILL: the three events after the crash delivered too');
$got = $recv->deliveries('/ok/kill');
my %ids = map { $_->{webhook_id} => 1 } grep { $_->{verified} } @$got;
is(scalar(keys %ids), 6, 'SIGKILL: the receiver has 6 distinct verified webhook-ids');
$node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($ep)");

# ---------------------------------------------------------------------------
# Requests in flight at once: with shop.outbox_max_in_flight = 3 (the
# node's setting) and a receiver that takes 800 ms per answer, nine events
# committed together go out three at a time: never more, and not one after
# the other either.
$ep = subscribe($node, $recv, '/slow/800/par', 'order.created');
$node->safe_psql('postgres', join("\n", 'BEGIN;',
	(map { qq{SELECT shop.shop_buy_now('par-$_', '[{"sku_id": 1, "qty": 1}]');} } 1 .. 9), 'COMMIT;'));
ok(poll_sql($node, "SELECT count(*) = 9 AND bool_and(state = 'delivered') FROM shop.outbox WHERE endpoint_id = $ep"),
	'in flight: the nine events delivered');
$got = $recv->deliveries('/slow/800/par');
# the most requests open at the same moment, from when each arrived to when
# it was answered (an answer at the same millisecond as an arrival first)
my @edges = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
  map { ([ $_->{received_ms}, 1 ], [ $_->{answered_ms} // $_->{received_ms}, -1 ]) } @$got;
my ($open, $most) = (0, 0);
for my $e (@edges)
{
	$open += $e->[1];
	$most = $open if $open > $most;
}
is(scalar(@$got), 9, 'in flight: nine requests, one per event');
is($most, 3, 'in flight: at most 3 requests open at once, and 3 were');
$node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($ep)");

# ---------------------------------------------------------------------------
# TLS: a receiver whose certificate nobody trusts.  https is allowed to any
# host, so only the certificate check stands in the way.
my $dir = PostgreSQL::Test::Utils::tempdir();
my ($ssl_out, $ssl_err) = ('', '');
IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
		'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
		'-keyout', "$dir/key.pem", '-out', "$dir/cert.pem" ], '>', \$ssl_out, '2>', \$ssl_err)
  or die "openssl could not make a certificate: $ssl_err";
my ($tin, $tout) = ('', '');
my $tls = IPC::Run::start([ 'node', "$FindBin::RealBin/../receiver/tls_receiver.js", "$dir/key.pem", "$dir/cert.pem" ],
	'<', \$tin, '>', \$tout, '2>', "$PostgreSQL::Test::Utils::log_path/tls_receiver.log");
ok(wait_until(sub { $tls->pump_nb; $tout =~ /^selfcheck=/m }, 30), 'TLS: the https receiver started');
like($tout, qr/^selfcheck=200$/m, 'TLS: it answers a client that does not verify (control)');
my ($tport) = $tout =~ /^port=(\d+)$/m;
my $r = json_decode($node->safe_psql('postgres',
	"SELECT shop.shop_subscribe('https://127.0.0.1:$tport/tls', ARRAY['order.created'])"));
$ep = $r->{endpoint_id};
buy($node, 'tls');
ok(poll_sql($node, "SELECT count(*) > 0 FROM shop.outbox_attempts WHERE endpoint_id = $ep"),
	'TLS: the worker tried');
my $att = query_json($node, "SELECT http_status, succeeded, error FROM shop.outbox_attempts
	WHERE endpoint_id = $ep ORDER BY attempt LIMIT 1")->[0];
ok(!$att->{succeeded} && !defined $att->{http_status}, 'TLS: the attempt failed, without an HTTP status')
  or diag(explain($att));
like($att->{error} // '', qr/certificate/i, 'TLS: the error is about the certificate: ' . ($att->{error} // 'none'))
  or diag(explain($att));
ok(wait_until(sub { $tls->pump_nb; $tout =~ /^tls-error /m }, 30),
	'TLS: the server saw the client give up the handshake');
my @requests = grep { !m{ /_selfcheck$} } $tout =~ /^request (.*)$/mg;
is(scalar(@requests), 0, 'TLS: no HTTP request reached the server');
$node->safe_psql('postgres', "SELECT shop.shop_unsubscribe($ep)");
$tin = undef;
$tls->kill_kill;

# ---------------------------------------------------------------------------
# The server log at INFO and above: no secret (neither the one generated
# above nor one given), no event body.  A refused subscribe that carried a
# secret is in the log as an error, without its statement.
my $given = 'whsec_' . 'R0xPR1RFU1RTRUNSRVRWQUxVRTEyMzQ1Njc4OTA=';
$node->safe_psql('postgres',
	"SELECT shop.shop_subscribe('" . $recv->url('/ok/given') . "', ARRAY['order.created'], '$given')");
$recv->set_secret('/ok/given', $given);
my ($rc) = $node->psql('postgres',
	"SELECT shop.shop_subscribe('http://subs.example.test/refused', ARRAY['order.created'], '$given')");
isnt($rc, 0, 'log: a subscribe with a refused URL fails');
my ($ret) = $node->psql('postgres', q{SELECT shop.shop_buy_now('CONTROL-MARK', '[]')});
isnt($ret, 0, 'log: a failing control statement');
buy($node, 'BODYMARKER-user');
ok(poll_sql($node, q{SELECT count(*) > 0 AND bool_and(state = 'delivered') FROM shop.outbox o
	JOIN shop.event_endpoint e ON e.id = o.endpoint_id WHERE e.url LIKE '%/ok/given'}),
	'log: the event to the given secret was delivered');
ok(scalar(grep { $_->{verified} } @{ $recv->deliveries('/ok/given') }) >= 1,
	'log: verified with the given secret');
my $log = slurp_file($node->logfile);
like($log, qr/CONTROL-MARK/, 'log: failing statements are logged in this setup (control)');
unlike($log, qr/R0xPR1RFU1RTRUNSRVRWQUxVRTEyMzQ1Njc4OTA/, 'log: the given secret is not in the server log');
my ($gen) = $secret_line =~ /^whsec_(.+)$/;
ok(defined $gen && index($log, $gen) < 0, 'log: the generated secret is not in the server log');
unlike($log, qr/BODYMARKER/, 'log: no event body is in the server log');

$recv->stop;
$node->stop;
done_testing();

# Helpers for the outbox delivery worker's TAP tests (test/t/01*_outbox_*.pl):
# a node with the worker preloaded and fast retry settings, the test receiver
# (test/receiver/receiver.js) run as a child of the test, endpoints subscribed
# with their secrets handed to the receiver, and polling with deadlines.
package ShopOutboxTest;

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Exporter 'import';
our @EXPORT = qw(outbox_node wait_until poll_sql subscribe order_events json_decode query_json
	reload_with buy watch_rows attempts_of sql_error);

my $json = JSON::PP->new->utf8->canonical;
sub json_decode { return $json->decode($_[0]); }

# Longest wait of one poll: long enough for a slow CI machine, short enough
# that a broken worker fails the file instead of hanging it.
our $DEADLINE = $ENV{SHOP_OUTBOX_TEST_DEADLINE} || 60;

# The settings every outbox test runs with: the worker preloaded, serving
# "postgres", loopback http allowed, fast retries.  %extra adds or
# overrides settings (name => value, as postgresql.conf text); '-owner' =>
# ROLE creates the extension as that (new, superuser) role instead of the
# bootstrap superuser.
sub outbox_node
{
	my ($name, %extra) = @_;
	my $owner = delete $extra{'-owner'};
	my %conf = (
		'shared_preload_libraries'          => q{'shop'},
		'shop.database_name'                => q{'postgres'},
		'shop.outbox_allow_http_loopback'   => 'on',
		'shop.outbox_retry_base'            => q{'100ms'},
		'shop.outbox_retry_max'             => q{'1s'},
		# long enough that a slow answer on a busy machine is not an extra
		# failed attempt; the tests of the timeout itself set 1s
		'shop.outbox_timeout'               => q{'10s'},
		'shop.outbox_poll_interval'         => q{'100ms'},
		'shop.outbox_max_attempts'          => '4',
		'shop.endpoint_max_failures'        => '1000',
		'log_min_messages'                  => 'debug1',
		%extra);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		join('', map { defined $conf{$_} ? "$_ = $conf{$_}\n" : '' } sort keys %conf));
	$node->start;
	my $create = defined $owner
	  ? "CREATE ROLE $owner SUPERUSER; SET ROLE $owner; CREATE EXTENSION shop; RESET ROLE;"
	  : 'CREATE EXTENSION shop;';
	$node->safe_psql('postgres', $create . q{
		INSERT INTO shop.product (id, name, price) VALUES (1, 'Mug', 10000);
		INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (1, 1, 'MUG-001', 100000);
	});
	return $node;
}

# Call $check until it returns true or $secs (default $DEADLINE) pass;
# returns its last result.
sub wait_until
{
	my ($check, $secs, $sleep_us) = @_;
	my $deadline = time + ($secs // $DEADLINE);
	while (1)
	{
		my $r = $check->();
		return $r if $r || time > $deadline;
		usleep($sleep_us // 50_000);
	}
}

# Run $sql until it returns 't' (or $expected), at most $secs seconds.
# Unlike poll_query_until it gives up after $DEADLINE, not 180 s.
sub poll_sql
{
	my ($node, $sql, $expected, $secs) = @_;
	$expected //= 't';
	my $last = '';
	my $ok = wait_until(
		sub {
			my ($ret, $out, $err) = $node->psql('postgres', $sql);
			$last = "$out$err";
			return $ret == 0 && $out eq $expected;
		},
		$secs);
	diag("poll_sql gave up on:\n$sql\nexpected: $expected\nlast: $last") unless $ok;
	return $ok ? 1 : 0;
}

# Subscribe the receiver's $path for @types (default '*'), hand the secret
# to the receiver; returns the endpoint id.
sub subscribe
{
	my ($node, $recv, $path, @types) = @_;
	@types = ('*') unless @types;
	my $types = join(',', map { "'$_'" } @types);
	my $url = $recv->url($path);
	my $r = json_decode($node->safe_psql('postgres',
		"SELECT shop.shop_subscribe('$url', ARRAY[$types])"));
	die "shop_subscribe returned no secret for $url" unless defined $r->{secret};
	$recv->set_secret($path, $r->{secret});
	return $r->{endpoint_id};
}

# Rows of $query as a list of hashes (json_agg), so that bodies and
# errors with any characters come through intact.
sub query_json
{
	my ($node, $query) = @_;
	return json_decode($node->safe_psql('postgres',
		"SELECT coalesce(json_agg(q), '[]') FROM ($query) q"));
}

# ALTER SYSTEM SET each setting, pg_reload_conf(), and wait until a new
# session sees every value (spell values as SHOW does: '300ms', '10s', '2').
# The worker gets the same SIGHUP as every process and reloads in its loop.
sub reload_with
{
	my ($node, %set) = @_;
	for my $name (sort keys %set)
	{
		$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$set{$name}'");
	}
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	for my $name (sort keys %set)
	{
		poll_sql($node, "SELECT current_setting('$name')", $set{$name}, 30)
		  or die "$name is not $set{$name} after pg_reload_conf()";
	}
}

# A new order of one mug for $user; returns its id.
sub buy
{
	my ($node, $user) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT id FROM shop.shop_buy_now('$user', '[{"sku_id": 1, "qty": 1}]')});
}

# Record every change of the outbox rows that $where selects, from before
# $start->() runs (it writes the rows) until every one is delivered or dead
# or $secs pass.  Returns { outbox id => [ snapshot, ... ] }, one snapshot
# per change of (state, attempts): {seq (the order of all changes, across
# rows), state, attempts, next_attempt_at and updated_at (epoch seconds),
# last_status, last_error, at (epoch seconds, server clock)}.
#
# A test-only trigger on shop.outbox writes each new row version to a side
# table in the same transaction, so a state that lasted a few milliseconds
# is recorded as surely as one that lasted seconds, and nothing of a
# transaction that rolled back is.  (Sampling with a poll missed the first
# short "failed" state when the machine was busy.)
sub watch_rows
{
	my ($node, $where, $start, $secs) = @_;
	$node->safe_psql('postgres', q{
		CREATE TABLE public.outbox_watch (
			seq bigserial PRIMARY KEY, id bigint, endpoint_id bigint, state text, attempts int,
			next_attempt_at timestamptz, updated_at timestamptz, last_status int, last_error text,
			at timestamptz DEFAULT clock_timestamp());
		CREATE FUNCTION public.outbox_watch() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.outbox_watch (id, endpoint_id, state, attempts, next_attempt_at,
											 updated_at, last_status, last_error)
			VALUES (NEW.id, NEW.endpoint_id, NEW.state::text, NEW.attempts, NEW.next_attempt_at,
					NEW.updated_at, NEW.last_status, NEW.last_error);
			RETURN NULL;
		END $$;
		CREATE TRIGGER outbox_watch AFTER INSERT OR UPDATE ON shop.outbox
			FOR EACH ROW EXECUTE FUNCTION public.outbox_watch();
	});
	$start->();
	poll_sql($node, qq{
		SELECT count(*) > 0 AND count(*) FILTER (WHERE state NOT IN ('delivered', 'dead')) = 0
		  FROM shop.outbox WHERE $where}, 't', $secs);
	my $rows = query_json($node, qq{
		SELECT seq, id, state, attempts, extract(epoch FROM next_attempt_at) AS next_attempt_at,
			   extract(epoch FROM updated_at) AS updated_at,
			   last_status, last_error, extract(epoch FROM at) AS at
		  FROM public.outbox_watch WHERE $where ORDER BY seq});
	$node->safe_psql('postgres', q{
		DROP TRIGGER outbox_watch ON shop.outbox;
		DROP FUNCTION public.outbox_watch();
		DROP TABLE public.outbox_watch;
	});
	my %hist;
	for my $r (@$rows)
	{
		my $h = $hist{ $r->{id} } //= [];
		push @$h, $r
		  unless @$h && $h->[-1]{state} eq $r->{state} && $h->[-1]{attempts} == $r->{attempts};
	}
	return \%hist;
}

# The attempt log of one outbox row, oldest first, with started_at and the
# end of the attempt in epoch seconds.
sub attempts_of
{
	my ($node, $outbox_id) = @_;
	return query_json($node, qq{
		SELECT attempt, http_status, succeeded, error, duration_ms, response_excerpt,
			   extract(epoch FROM started_at) AS started,
			   extract(epoch FROM started_at) + duration_ms / 1000.0 AS ended
		  FROM shop.outbox_attempts WHERE outbox_id = $outbox_id ORDER BY attempt, attempt_id});
}

# Run $sql expecting an error; returns its SQLSTATE (or 'no error').
sub sql_error
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return 'no error' if $ret == 0;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : "unreadable error: $err";
}

# The events of one order, oldest first: [[event id, type], ...]
sub order_events
{
	my ($node, $order_id) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT id, type FROM shop.event WHERE order_id = $order_id ORDER BY id");
	return [ map { [ split /\|/ ] } grep { $_ ne '' } split /\n/, $out ];
}

# ---------------------------------------------------------------------------
# A psql session kept open for fast repeated queries (BackgroundPsql notes
# every query and its result in the log; this one does not).  Queries are
# one statement returning one value or none.
package ShopOutboxTest::Session;

use strict;
use warnings;
use IPC::Run;
use Time::HiRes qw(time);

sub new
{
	my ($class, $node) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', '-' ],
		'<', \$in, '>', \$out, '2>', \$err);
	return bless { h => $h, in => \$in, out => \$out, err => \$err }, $class;
}

sub query
{
	my ($self, $sql) = @_;
	my ($in, $out, $err) = @$self{qw(in out err)};
	$$out = '';
	$$in .= "$sql;\n\\echo __shop_done__\n";
	my $deadline = time + 60;
	until ($$out =~ /__shop_done__\n\z/)
	{
		die "psql session failed: $$err" if $$err ne '' || !$self->{h}->pumpable;
		die "psql session: no answer to $sql" if time > $deadline;
		$self->{h}->pump;
	}
	(my $r = $$out) =~ s/\n?__shop_done__\n\z//;
	return $r;
}

sub quit
{
	my ($self) = @_;
	${ $self->{in} } .= "\\q\n";
	$self->{h}->finish;
}

# ---------------------------------------------------------------------------
# The test receiver, a child process of the test.  Its stdin is a pipe from
# this process: when the test ends in any way, the pipe closes and the
# receiver exits (it also watches its parent and has a maximal lifetime).
package ShopOutboxTest::Receiver;

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

sub start
{
	my ($class, %opt) = @_;
	my $dir = abs_path(dirname(__FILE__) . '/../receiver');
	die "test receiver not installed: run bash test/receiver/install.sh\n"
	  unless -f "$dir/node_modules/standardwebhooks/package.json";
	my $logdir = $PostgreSQL::Test::Utils::log_path;
	my $name = $opt{name} // 'receiver';
	my ($in, $out) = ('', '');
	my $h = IPC::Run::start(
		[ 'node', "$dir/receiver.js", '0', '--max-lifetime', $opt{max_lifetime} // 600,
		  '--log-file', "$logdir/${name}_deliveries.jsonl" ],
		'<', \$in, '>', \$out, '2>', "$logdir/$name.log");
	my $deadline = time + 30;
	my $port;
	while (!defined $port)
	{
		$h->pump_nb;
		($port) = $out =~ /port=(\d+)/;
		last if defined $port;
		die "test receiver did not start: see $logdir/$name.log\n" if time > $deadline || !$h->pumpable;
		usleep(20_000);
	}
	my $self = bless { h => $h, in => \$in, out => \$out, port => $port,
		http => HTTP::Tiny->new(timeout => 10), json => JSON::PP->new->utf8->canonical }, $class;
	return $self;
}

sub port { return $_[0]{port}; }
sub url { my ($self, $path) = @_; return "http://127.0.0.1:$self->{port}$path"; }

sub _call
{
	my ($self, $method, $path, $value) = @_;
	my %req;
	if (defined $value)
	{
		%req = (content => $self->{json}->encode($value),
			headers => { 'content-type' => 'application/json' });
	}
	my $r = $self->{http}->request($method, $self->url($path), \%req);
	die "receiver $method $path: $r->{status} $r->{content}\n" unless $r->{success};
	return $self->{json}->decode($r->{content});
}

sub set_secret { my ($self, $path, $secret) = @_; return $self->_call('POST', '/_secret', { path => $path, secret => $secret }); }
sub set_mode { my ($self, $path, $mode) = @_; return $self->_call('POST', '/_mode', { path => $path, mode => $mode }); }
sub stats { my ($self) = @_; return $self->_call('GET', '/_stats'); }

# Deliveries received (all, or those to $path), oldest first.
sub deliveries
{
	my ($self, $path) = @_;
	return $self->_call('GET', '/_log' . (defined $path ? "?path=$path" : ''));
}

sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	eval { $self->_call('POST', '/_quit') };
	eval {
		$self->{h}->finish;
		1;
	} or $self->{h}->kill_kill;
	delete $self->{h};
}

sub DESTROY { my ($self) = @_; eval { $self->{h}->kill_kill if $self->{h} }; }

1;

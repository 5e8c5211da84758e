# Helpers for the payment provider calls' TAP tests (test/t/03*_provider_*.pl):
# a node with the outbox worker preloaded (as ShopOutboxTest, in a UTF8
# database, with a few products, statements not logged), the mock payment provider
# (demo/mock_provider.js) run as a child of the test, the provider registered
# with its API base and key, orders, synchronous calls with their SQLSTATE
# and DETAIL, and the mock's signed events relayed into shop_handle_webhook.
package ShopProviderTest;

use strict;
use warnings;
use Encode qw(encode_utf8);
use JSON::PP;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopOutboxTest;

use Exporter 'import';
our @EXPORT = (@ShopOutboxTest::EXPORT,
	qw(provider_node register_provider order_of paid_order sql_call relay_events
	   refund_row refund_outbox_row one_json json_bytes));

# Polls give up after 20 s (the worker answers in well under a second when
# it works; ShopOutboxTest's default of 60 s makes a broken run very long).
$ShopOutboxTest::DEADLINE = $ENV{SHOP_PROVIDER_TEST_DEADLINE} || 20;

my $json = JSON::PP->new->utf8->canonical;
# $value as JSON text in UTF-8 bytes (for SQL literals)
sub json_bytes { return $json->encode($_[0]); }

# The settings of ShopOutboxTest::outbox_node; %extra adds or overrides.
# Products: 1 Mug 10000, 2 Spoon 2500, 3 a name that needs escaping
# (quotes, ampersand, brackets, non-ASCII), all KRW, plenty of stock.
sub provider_node
{
	my ($name, %extra) = @_;
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
		'shop.outbox_max_attempts'          => '6',
		'shop.endpoint_max_failures'        => '1000',
		'log_min_messages'                  => 'debug1',
		# the server's defaults for statement logging, so that the tests can
		# look for the API key in the log (the test framework sets
		# log_statement = all, which README says logs every statement)
		'log_statement'                     => 'none',
		'log_min_error_statement'           => 'error',
		%extra);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	$node->append_conf('postgresql.conf',
		join('', map { defined $conf{$_} ? "$_ = $conf{$_}\n" : '' } sort keys %conf));
	$node->start;
	$node->safe_psql('postgres', q{
		CREATE EXTENSION shop;
		INSERT INTO shop.product (id, name, price) VALUES
			(1, 'Mug', 10000), (2, 'Spoon', 2500), (3, 'Tasse "Ümlaut" & Co [x]=1+1%', 1234);
		INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES
			(1, 1, 'MUG-001', 100000), (2, 2, 'SPOON-001', 100000), (3, 3, 'TASSE-001', 100000);
	});
	return $node;
}

# Register the mock as provider $name (kind mock) with its API base, and
# its API key unless no_key => 1.  %options go into the options object.
sub register_provider
{
	my ($node, $mock, %opt) = @_;
	my $name = delete $opt{name} // 'mock';
	my $no_key = delete $opt{no_key};
	my $api_base = delete $opt{api_base} // $mock->api_base;
	my $options = json_bytes({ api_base => $api_base, %opt });
	$node->safe_psql('postgres', qq{SELECT shop.shop_set_provider('$name', 'mock', '${\ $mock->webhook_secret }', '$options')});
	$node->safe_psql('postgres', qq{SELECT shop.shop_set_provider_api_key('$name', '${\ $mock->api_key }')})
	  unless $no_key;
	return $name;
}

# A new PENDING order of [[sku_id, qty], ...] (default one mug) for $user.
sub order_of
{
	my ($node, $user, $lines, $set) = @_;
	$lines //= [ [ 1, 1 ] ];
	my $items = join(', ', map { qq({"sku_id": $_->[0], "qty": $_->[1]}) } @$lines);
	return $node->safe_psql('postgres', ($set // '') . qq{
		SELECT id FROM shop.shop_buy_now('$user', '[$items]')});
}

# Run one statement expecting one value; returns {ok, value} or {ok => 0,
# sqlstate, message, detail, error}, with the wall time in seconds.
sub sql_call
{
	my ($node, $sql) = @_;
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	my $r = { secs => time - $t0 };
	if ($ret == 0)
	{
		$r->{ok} = 1;
		$r->{value} = $out;
		return $r;
	}
	$r->{ok} = 0;
	$r->{error} = $err;
	($r->{sqlstate}, $r->{message}) = $err =~ /ERROR:\s+([0-9A-Z]{5}):\s*(.*)/;
	($r->{detail}) = $err =~ /DETAIL:\s+(.*(?:\n(?!HINT:|LOCATION:|CONTEXT:).*)*)/;
	$r->{sqlstate} //= 'unreadable';
	$r->{detail} //= '';
	return $r;
}

# The first value of $sql, decoded as JSON.
sub one_json
{
	my ($node, $sql) = @_;
	my $out = $node->safe_psql('postgres', $sql);
	return $out eq '' ? undef : json_decode($out);
}

# Relay the mock's events not relayed yet (or those after $since) into
# shop_handle_webhook('mock', headers, body), in order; returns their
# results [{event => ..., result => {...} | undef, error => ...}].
sub relay_events
{
	my ($node, $mock, %opt) = @_;
	my $provider = $opt{provider} // 'mock';
	my $events = $mock->events(since => $opt{since} // $mock->{relayed} // 0);
	my @out;
	for my $e (@$events)
	{
		my $tag = '$relay' . int(rand(1e9)) . '$';
		my $headers = json_bytes($e->{headers});
		my $body = encode_utf8($e->{body});
		my $r = sql_call($node,
			"SELECT shop.shop_handle_webhook('$provider', ${tag}$headers${tag}::jsonb, ${tag}$body${tag})");
		push @out, { event => $e, result => $r->{ok} ? json_decode($r->{value}) : undef,
			error => $r->{ok} ? undef : "$r->{sqlstate} $r->{message}" };
		$mock->{relayed} = $e->{seq} if !defined $opt{since} && $e->{seq} > ($mock->{relayed} // 0);
	}
	return \@out;
}

# A PAID order through the real flow: buy, shop_start_payment, pay at the
# mock, relay the event.  Returns (order id, payment intent id, session id).
sub paid_order
{
	my ($node, $mock, $user, $lines) = @_;
	my $order = order_of($node, $user, $lines);
	my $start = json_decode($node->safe_psql('postgres',
		"SELECT shop.shop_start_payment($order, 'mock', 'https://shop.example/ok', 'https://shop.example/back')"));
	my $paid = $mock->pay($start->{session_id});
	my $results = relay_events($node, $mock);
	my @mine = grep { $_->{event}{id} eq $paid->{event}{id} } @$results;
	die "paying order $order: the event was not processed: " . explain(\@mine)
	  unless @mine == 1 && $mine[0]{result} && $mine[0]{result}{result} eq 'processed';
	die "order $order is not PAID"
	  unless $node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $order") eq 'PAID';
	return ($order, $paid->{session}{payment_intent}, $start->{session_id});
}

# The shop.refund row as a hash (column names as the table has them).
sub refund_row
{
	my ($node, $refund_id) = @_;
	return one_json($node, "SELECT to_jsonb(r) FROM shop.refund r WHERE r.id = $refund_id");
}

# The outbox row that carries refund $refund_id (idempotency key refund-<id>).
sub refund_outbox_row
{
	my ($node, $refund_id) = @_;
	return one_json($node, qq{SELECT to_jsonb(o) FROM shop.outbox o
		WHERE o.idempotency_key = 'refund-$refund_id'});
}

# ---------------------------------------------------------------------------
# The mock payment provider, a child process of the test (its stdin is a
# pipe from this process: it exits when the test ends, however it ends).
package ShopProviderTest::Mock;

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time usleep);

# Ports the fixed test clusters of this repository use (run-all's 54329 and
# its neighbours): a mock that got one from the OS is started again.
my @reserved_ports = (54329, 54360);

sub start
{
	my ($class, %opt) = @_;
	for (1 .. 10)
	{
		my $self = $class->_start(%opt);
		return $self unless $self->{port} >= $reserved_ports[0] && $self->{port} <= $reserved_ports[1];
		$self->stop;
	}
	die "the mock provider kept getting a reserved port\n";
}

sub _start
{
	my ($class, %opt) = @_;
	my $root = abs_path(dirname(__FILE__) . '/../..');
	die "the mock provider needs standardwebhooks: run bash test/receiver/install.sh\n"
	  unless -f "$root/test/receiver/node_modules/standardwebhooks/package.json";
	my $logdir = $PostgreSQL::Test::Utils::log_path;
	my $name = $opt{name} // 'mock_provider';
	my $api_key = $opt{api_key} // 'sk_test_' . join('', map { sprintf '%02x', int rand 256 } 1 .. 12);
	my $secret = $opt{webhook_secret} // 'whsec_' . encode_base64(join('', map { chr int rand 256 } 1 .. 32), '');
	my ($in, $out) = ('', '');
	my $h = IPC::Run::start(
		[ 'node', "$root/demo/mock_provider.js", '--port', $opt{port} // '0', '--api-key', $api_key,
		  '--webhook-secret', $secret, '--max-lifetime', $opt{max_lifetime} // 600 ],
		'<', \$in, '>', \$out, '2>', "$logdir/$name.log");
	my $deadline = time + 30;
	my $port;
	while (!defined $port)
	{
		$h->pump_nb;
		($port) = $out =~ /port=(\d+)/;
		last if defined $port;
		die "mock provider did not start: see $logdir/$name.log\n" if time > $deadline || !$h->pumpable;
		usleep(20_000);
	}
	return bless { h => $h, in => \$in, out => \$out, port => $port, api_key => $api_key,
		webhook_secret => $secret, relayed => 0,
		http => HTTP::Tiny->new(timeout => 10, max_redirect => 0),
		json => JSON::PP->new->utf8->canonical }, $class;
}

sub port { return $_[0]{port}; }
sub api_key { return $_[0]{api_key}; }
sub webhook_secret { return $_[0]{webhook_secret}; }
sub api_base { my ($self) = @_; return "http://127.0.0.1:$self->{port}"; }
sub url { my ($self, $path) = @_; return $self->api_base . $path; }

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
	die "mock provider $method $path: $r->{status} $r->{content}\n" unless $r->{success};
	return $self->{json}->decode($r->{content});
}

# Requests received (to /v1 and /pay), oldest first; path => prefix,
# since => seq.
sub requests
{
	my ($self, %f) = @_;
	my @q;
	push @q, "path=$f{path}" if defined $f{path};
	push @q, "since=$f{since}" if defined $f{since};
	return $self->_call('GET', '/_requests' . (@q ? '?' . join('&', @q) : ''));
}
sub last_seq { my ($self) = @_; my $r = $self->requests; return @$r ? $r->[-1]{seq} : 0; }
sub fail { my ($self, %rule) = @_; return $self->_call('POST', '/_fail', \%rule); }
sub clear_fail { my ($self) = @_; return $self->_call('POST', '/_fail', { clear => JSON::PP::true }); }
sub pay { my ($self, $sid) = @_; return $self->_call('POST', '/_pay', { session_id => $sid }); }
sub cancel { my ($self, $sid) = @_; return $self->_call('POST', '/_cancel', { session_id => $sid }); }
sub state { my ($self) = @_; return $self->_call('GET', '/_state'); }

sub events
{
	my ($self, %f) = @_;
	return $self->_call('GET', '/_events?since=' . ($f{since} // 0) . ($f{fresh} ? '&fresh=1' : ''));
}

# The mock's sessions whose metadata[order_id] is $order.
sub sessions_of
{
	my ($self, $order) = @_;
	return [ grep { ($_->{metadata}{order_id} // '') eq $order } @{ $self->state->{sessions} } ];
}

# The mock's refunds of payment intent $pi.
sub refunds_of
{
	my ($self, $pi) = @_;
	return [ grep { $_->{payment_intent} eq $pi } @{ $self->state->{refunds} } ];
}

# A raw API call as a client of the mock would make it (form-encoded).
sub api_post
{
	my ($self, $path, $form, %opt) = @_;
	my %headers = (authorization => 'Bearer ' . $self->{api_key});
	$headers{'idempotency-key'} = $opt{key} if defined $opt{key};
	my $r = $self->{http}->post_form($self->url($path), $form, { headers => \%headers });
	return { status => $r->{status}, json => eval { $self->{json}->decode($r->{content}) } };
}

# Toss Payments (demo/mock_provider.js, "Toss Payments"): authorise a
# payment as the buyer would in the widget, the mock's payments, the
# webhook bodies it would have sent, and a raw API call with the key as
# Basic user name (as a Toss client makes it).
sub toss_authorize
{
	my ($self, $order_id, $amount, %opt) = @_;
	return $self->_call('POST', '/_toss/authorize',
		{ orderId => $order_id, amount => $amount, defined $opt{reject} ? (reject => $opt{reject}) : () });
}
sub toss_payment
{
	my ($self, $key) = @_;
	my ($p) = grep { $_->{paymentKey} eq $key } @{ $self->_call('GET', '/_toss/state')->{payments} };
	return $p;
}
sub toss_events { my ($self, %f) = @_; return $self->_call('GET', '/_toss/events?since=' . ($f{since} // 0)); }
sub toss_api
{
	my ($self, $method, $path, $value, %opt) = @_;
	my %headers = (authorization => 'Basic ' . encode_base64($self->{api_key} . ':', ''),
		'content-type' => 'application/json');
	$headers{'idempotency-key'} = $opt{key} if defined $opt{key};
	my $r = $self->{http}->request($method, $self->url($path),
		{ headers => \%headers, defined $value ? (content => $self->{json}->encode($value)) : () });
	return { status => $r->{status}, json => eval { $self->{json}->decode($r->{content}) } };
}

# GET or POST a URL of the mock as a browser would (no redirects followed).
sub browse
{
	my ($self, $method, $url) = @_;
	my $r = $self->{http}->request($method, $url);
	return $r;
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

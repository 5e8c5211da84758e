# Payment provider calls, synchronous part (README "Payment provider
# calls"): shop_start_payment against the mock payment provider
# (demo/mock_provider.js), which checks each request as Stripe's API does
# (form fields, Stripe's expires_at window, Bearer key, Idempotency-Key
# answered from its own cache).  Proves: the documented result and request
# (one line per order line from the price snapshot, metadata[order_id],
# client_reference_id, URLs, expires_at = the order's when its hold is 30 min -
# 24 h, key order-<id>-checkout), one call per order (created=false after),
# SH004 / SH023, SH020 on refused, unreachable and hanging providers (within
# shop.provider_timeout), SH021 with the provider's message in DETAIL, SH022
# on 5xx and unreadable answers, nothing stored after any failure, a retry
# that gets the same session (also when the provider acted and its answer
# was lost), no row lock held during the call, the API key kept out of
# views, results and the log, and the whole flow: pay or cancel at the mock,
# its signed event relayed into shop_handle_webhook, order PAID / FAILED.
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

my $node = provider_node('provider_calls');
my $mock = ShopProviderTest::Mock->start(name => 'mock_030');

my $ok_url = 'https://shop.example/paid?session={CHECKOUT_SESSION_ID}';
my $back_url = 'https://shop.example/cart?from=checkout';

sub start_payment
{
	my ($order, %o) = @_;
	my $provider = $o{provider} // 'mock';
	return sql_call($node, ($o{set} // '')
		  . "SELECT shop.shop_start_payment($order, '$provider', '$ok_url', '$back_url')");
}
sub sessions_stored { return $node->safe_psql('postgres', 'SELECT count(*) FROM shop.payment_session'); }
sub checkout_posts
{
	my ($since) = @_;
	return [ grep { $_->{method} eq 'POST' } @{ $mock->requests(path => '/v1/checkout/sessions', since => $since) } ];
}
sub epoch_of { my ($ts) = @_; return $node->safe_psql('postgres', "SELECT extract(epoch FROM '$ts'::timestamptz)::bigint"); }
sub order_expires { my ($o) = @_; return $node->safe_psql('postgres', "SELECT extract(epoch FROM expires_at) FROM shop.orders WHERE id = $o"); }

# ---------------------------------------------------------------------------
# Setup: the provider without a key first; SH023 until one is set; the key
# never shown.
register_provider($node, $mock, no_key => 1);
my $view_before = $node->safe_psql('postgres', q{SELECT p::text FROM shop.payment_providers p WHERE name = 'mock'});

my $o_nokey = order_of($node, 'nokey');
my $seq = $mock->last_seq;
my $r = start_payment($o_nokey);
is($r->{sqlstate}, 'SH023', 'shop_start_payment without an API key: SH023')
  or diag(explain($r));
is(scalar @{ $mock->requests(since => $seq) }, 0, '... and no call was made');

$r = sql_call($node, "SELECT shop.shop_set_provider_api_key('mock', '${\ $mock->api_key }')");
ok($r->{ok}, 'shop_set_provider_api_key') or diag($r->{error});
my $key = $mock->api_key;
unlike($r->{value} // '', qr/\Q$key\E/, '... returns the provider without the key');
my $view_after = $node->safe_psql('postgres', q{SELECT p::text FROM shop.payment_providers p WHERE name = 'mock'});
isnt($view_after, $view_before, 'shop.payment_providers shows that a key is now set');
unlike($node->safe_psql('postgres', 'SELECT coalesce(string_agg(p::text, chr(10)), \'\') FROM shop.payment_providers p'),
	qr/\Q$key\E/, '... never the key');
$node->safe_psql('postgres', q{CREATE ROLE snoop LOGIN; GRANT USAGE ON SCHEMA shop TO snoop});
$r = sql_call($node, 'SET ROLE snoop; SELECT count(*) FROM shop.payment_provider_api_key');
is($r->{sqlstate}, '42501', 'shop.payment_provider_api_key is not readable by another role')
  or diag(explain($r));
my $log_offset = -s $node->logfile;
$r = sql_call($node, q{SELECT shop.shop_set_provider_api_key('no_such_provider', 'sk_test_LEAKCHECK_4f7d1c')});
ok(!$r->{ok}, 'shop_set_provider_api_key for an unknown provider fails (' . ($r->{sqlstate} // 'ok') . ')');
unlike($r->{error} // '', qr/LEAKCHECK/, '... and its error does not show the key');
$r = sql_call($node, q{SELECT shop.shop_buy_now('CONTROL-MARK', '[]')});
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/CONTROL-MARK/, '(control: failing statements are logged in this setup)');
unlike($log, qr/LEAKCHECK/, '... nor does the server log');

# A kind without checkout calls: SH023.
$node->safe_psql('postgres', q{SELECT shop.shop_set_provider('std', 'standard', 'whsec_c3RhbmRhcmQtc2VjcmV0LWZvci1hLXRlc3QtMTIzNDU2Nzg=')});
$node->psql('postgres', q{SELECT shop.shop_set_provider_api_key('std', 'sk_test_standard_kind')});
$seq = $mock->last_seq;
is(start_payment($o_nokey, provider => 'std')->{sqlstate}, 'SH023',
	'a provider of kind standard (no checkout call): SH023');
is(scalar @{ $mock->requests(since => $seq) }, 0, '... and no call was made');

# ---------------------------------------------------------------------------
# The call and its request.  Prices change after the order: the lines must
# come from the order's snapshot.
my $o1 = order_of($node, 'alice', [ [ 1, 2 ], [ 2, 1 ], [ 3, 3 ] ]);
$node->safe_psql('postgres', 'UPDATE shop.product SET price = price + 7');
$seq = $mock->last_seq;
$r = start_payment($o1);
ok($r->{ok}, 'shop_start_payment on a PENDING order') or diag($r->{error});
my $res = $r->{ok} ? json_decode($r->{value}) : {};
is_deeply([ sort keys %$res ], [ sort qw(order_id provider session_id url expires_at created) ],
	'it returns order_id, provider, session_id, url, expires_at, created');
is($res->{order_id}, $o1, '... order_id');
is($res->{provider}, 'mock', '... provider');
ok(JSON::PP::is_bool($res->{created}) && $res->{created}, '... created: true');

my $posts = checkout_posts($seq);
is(scalar @$posts, 1, 'the mock received exactly one POST /v1/checkout/sessions');
is(scalar @{ $mock->requests(since => $seq) }, 1, '... and no other request');
my $req = $posts->[0] // { form => {} };
is($req->{idempotency_key}, "order-$o1-checkout", "... with Idempotency-Key order-$o1-checkout");
ok($req->{authorization} && $req->{authorization} eq 'bearer' && $req->{auth_ok},
	'... with Authorization: Bearer <the key>');
like($req->{content_type} // '', qr{^application/x-www-form-urlencoded}, '... form-encoded');
is($req->{answer}, 200, '... which the mock accepted (200)')
  or diag('the mock answered: ' . explain($req));
my $f = $req->{form} // {};
is($f->{mode}, 'payment', 'form: mode=payment');
my $lines = query_json($node, qq{
	SELECT i.product_name AS name, lower(o.currency) AS currency, i.unit_price::text AS unit_amount,
		   i.qty::text AS quantity
	  FROM shop.order_item i JOIN shop.orders o ON o.id = i.order_id
	 WHERE i.order_id = $o1 ORDER BY i.product_name});
my $li = ref $f->{line_items} eq 'HASH' ? $f->{line_items} : {};
is_deeply([ sort { $a <=> $b } keys %$li ], [ 0 .. $#$lines ], 'form: line_items[0..n-1], one per order line');
my @sent = sort { $a->{name} cmp $b->{name} } map {
	my $l = $li->{$_};
	{ name => $l->{price_data}{product_data}{name}, currency => lc($l->{price_data}{currency} // ''),
	  unit_amount => $l->{price_data}{unit_amount}, quantity => $l->{quantity} }
} keys %$li;
is_deeply(\@sent, $lines,
	'form: each line from the price snapshot: price_data[currency], [unit_amount], [product_data][name], quantity '
	  . '(names with quotes, &, [ ], =, +, %, non-ASCII intact)');
is($f->{metadata}{order_id}, $o1, 'form: metadata[order_id]');
ok(defined $f->{client_reference_id} && $f->{client_reference_id} ne '', 'form: client_reference_id')
  and note("client_reference_id = $f->{client_reference_id}");
is($f->{success_url}, $ok_url, 'form: success_url as given');
is($f->{cancel_url}, $back_url, 'form: cancel_url as given');
# A 20 min hold is shorter than Stripe's 30 min minimum: expires_at is left
# to Stripe's default (the session is expired with the order, rule 3).
# Everything sent derives from the order alone, so a retry repeats it.
ok(!defined $f->{expires_at},
	'form: no expires_at for a 20 min hold (shorter than Stripe\'s 30 min minimum)');
my %documented = map { $_ => 1 } qw(mode line_items metadata client_reference_id success_url cancel_url expires_at);
my @extra = grep { !$documented{$_} } sort keys %$f;
note('form fields beyond the documented ones: ' . (@extra ? join(', ', @extra) : 'none'));

my $ms = $mock->sessions_of($o1);
is(scalar @$ms, 1, 'the mock holds one session for the order');
my $s = $ms->[0] // {};
is($res->{session_id}, $s->{id}, 'session_id is the provider\'s');
is($res->{url}, $s->{url}, 'url is the provider\'s hosted page');
is(epoch_of($res->{expires_at} // 'epoch'), $s->{expires_at}, 'expires_at is the session\'s');
is($s->{amount_total}, $node->safe_psql('postgres', "SELECT amount FROM shop.orders WHERE id = $o1"),
	'the session\'s total is the order\'s amount');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.payment_session s WHERE to_jsonb(s) ->> 'order_id' = '$o1'"),
	'1', 'shop.payment_session: one row for the order');
my $page = $mock->browse('GET', $res->{url} // $mock->url('/none'));
ok($page->{status} == 200 && $page->{content} =~ /Mug/ && $page->{content} =~ /Spoon/,
	'the url opens the mock\'s payment page with the order\'s lines');

# Again: the stored session, no call.
$seq = $mock->last_seq;
$r = start_payment($o1);
my $again = $r->{ok} ? json_decode($r->{value}) : {};
ok(JSON::PP::is_bool($again->{created}) && !$again->{created}, 'the same order again: created: false');
is_deeply([ @$again{qw(session_id url expires_at)} ], [ @$res{qw(session_id url expires_at)} ],
	'... the same session_id, url and expires_at');
is(scalar @{ $mock->requests(since => $seq) }, 0, '... and no call was made');
is(scalar @{ $mock->sessions_of($o1) }, 1, '... the mock still holds one session');

# expires_at is the order's when its hold is inside the window, else left out.
my $o2h = order_of($node, 'ttl2h', undef, q{SET shop.reservation_ttl = '2h';});
$seq = $mock->last_seq;
$r = start_payment($o2h);
ok($r->{ok}, 'an order reserved for 2 h: started') or diag($r->{error});
$req = checkout_posts($seq)->[0] // { form => {} };
ok(abs(($req->{form}{expires_at} // 0) - order_expires($o2h)) <= 1,
	'... expires_at = the order\'s expires_at (inside the window)');
my $o48h = order_of($node, 'ttl48h', undef, q{SET shop.reservation_ttl = '48h';});
$seq = $mock->last_seq;
$r = start_payment($o48h);
ok($r->{ok}, 'an order reserved for 48 h: started') or diag($r->{error});
$req = checkout_posts($seq)->[0] // { form => {}, received_ms => 0 };
ok(!defined $req->{form}{expires_at}, '... no expires_at (a hold longer than Stripe\'s 24 h maximum)');

# ---------------------------------------------------------------------------
# Orders that are not PENDING: SH004, no call.
my $o_paid = order_of($node, 'paid-already');
$node->safe_psql('postgres', "SELECT shop.shop_confirm_paid($o_paid, 'pi_elsewhere')");
my $o_cancelled = order_of($node, 'cancelled-already');
$node->safe_psql('postgres', "SELECT shop.shop_release($o_cancelled, 'customer_cancelled')");
$seq = $mock->last_seq;
is(start_payment($o_paid)->{sqlstate}, 'SH004', 'a PAID order: SH004');
is(start_payment($o_cancelled)->{sqlstate}, 'SH004', 'a CANCELLED order: SH004');
is(scalar @{ $mock->requests(since => $seq) }, 0, '... and no call was made');

# ---------------------------------------------------------------------------
# Failures: the right SQLSTATE, nothing stored, and a retry that succeeds
# with the same idempotency key, leaving one session at the provider.
sub failing_then_retried
{
	my ($what, $rule, $want, %o) = @_;
	my $order = order_of($node, "fail-$what");
	my $stored = sessions_stored();
	my $since = $mock->last_seq;
	$mock->fail(path => '/v1/checkout/sessions', %$rule);
	my $fail = start_payment($order, set => $o{set});
	is($fail->{sqlstate}, $want, "$what: $want") or diag(explain($fail));
	is(sessions_stored(), $stored, "$what: nothing stored");
	my $retry = start_payment($order);
	ok($retry->{ok}, "$what: a retry succeeds") or diag($retry->{error});
	my $got = $retry->{ok} ? json_decode($retry->{value}) : {};
	my $sessions = $mock->sessions_of($order);
	is(scalar @$sessions, 1, "$what: the provider holds one session for the order");
	is($got->{session_id}, $sessions->[0]{id}, "$what: the retry returned it");
	my @keys = map { $_->{idempotency_key} // 'none' } @{ checkout_posts($since) };
	ok(@keys >= 2 && !grep({ $_ ne "order-$order-checkout" } @keys),
		"$what: every attempt carried the same key (" . join(', ', @keys) . ')');
	$mock->clear_fail;
	return ($fail, $retry);
}

my ($fail) = failing_then_retried('connection refused', { mode => 'refuse' }, 'SH020');
ok($fail->{secs} < 5, 'connection refused: answered at once (' . sprintf('%.1f', $fail->{secs}) . ' s)');

($fail) = failing_then_retried('hanging provider', { mode => 'hang' }, 'SH020',
	set => q{SET shop.provider_timeout = '1s';});
ok($fail->{secs} >= 0.9 && $fail->{secs} < 5,
	sprintf('hanging provider: given up after shop.provider_timeout = 1s (%.1f s)', $fail->{secs}));

($fail) = failing_then_retried('400', { mode => 'status', status => 400,
	message => 'This value must be less than or equal to 99999999 (mock refusal)' }, 'SH021');
like($fail->{detail} // '', qr/must be less than or equal to 99999999 \(mock refusal\)/,
	'400: DETAIL has the provider\'s error message');

($fail) = failing_then_retried('500', { mode => 'status', status => 500, message => 'Mock internal trouble 5xx' }, 'SH022');
like($fail->{detail} // '', qr/Mock internal trouble 5xx/, '500: DETAIL has what the provider said');

($fail) = failing_then_retried('malformed JSON', { mode => 'status', status => 200, body => 'this is {not json' }, 'SH022');
like($fail->{detail} // '', qr/this is \{not json/, 'malformed JSON: DETAIL has what the provider said');

# A provider nobody listens on.
my $closed_port = do {
	require IO::Socket::INET;
	my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die $!;
	my $p = $sock->sockport;
	close $sock;
	$p;
};
register_provider($node, $mock, name => 'mock_down', api_base => "http://127.0.0.1:$closed_port");
my $o_down = order_of($node, 'down');
my $stored = sessions_stored();
$r = start_payment($o_down, provider => 'mock_down');
is($r->{sqlstate}, 'SH020', 'a provider nobody listens on: SH020') or diag(explain($r));
is(sessions_stored(), $stored, '... nothing stored');

# A wrong key: the provider's 401 is a refusal (SH021), the key not shown.
my $o_wrong = order_of($node, 'wrong-key');
$node->safe_psql('postgres', q{SELECT shop.shop_set_provider_api_key('mock', 'sk_test_WRONGKEY_0123456789abcd')});
$r = start_payment($o_wrong);
is($r->{sqlstate}, 'SH021', 'a wrong API key (the provider answers 401): SH021') or diag(explain($r));
like($r->{detail} // '', qr/Invalid API Key provided/, '... DETAIL has the provider\'s message');
unlike($r->{error} // '', qr/WRONGKEY_0123456789/, '... and does not show the key');
$node->safe_psql('postgres', "SELECT shop.shop_set_provider_api_key('mock', '${\ $mock->api_key }')");

# The provider made the session but its answer was lost (a timeout after it
# acted): the retry gets the same session from the provider's idempotency
# cache, which only answers when the parameters are the same.
my $o_lost = order_of($node, 'answer-lost');
$seq = $mock->last_seq;
$mock->fail(path => '/v1/checkout/sessions', mode => 'hang', process => JSON::PP::true);
$r = start_payment($o_lost, set => q{SET shop.provider_timeout = '1s';});
is($r->{sqlstate}, 'SH020', 'the provider acted but its answer never came: SH020') or diag(explain($r));
is(scalar @{ $mock->sessions_of($o_lost) }, 1, '... the provider made one session');
$r = start_payment($o_lost);
ok($r->{ok}, '... a retry succeeds') or diag($r->{error});
$res = $r->{ok} ? json_decode($r->{value}) : {};
my $lost = $mock->sessions_of($o_lost);
is(scalar @$lost, 1, '... the provider still holds one session');
is($res->{session_id}, $lost->[0]{id}, '... and the retry returned that session');
$posts = checkout_posts($seq);
ok(@$posts == 2 && $posts->[1]{replayed} && $posts->[1]{answer} == 200,
	'... answered from the provider\'s idempotency cache (same key, same parameters)')
  or diag(explain([ map { { key => $_->{idempotency_key}, answer => $_->{answer}, replayed => $_->{replayed},
	expires_at => $_->{form}{expires_at} } } @$posts ]));
$mock->clear_fail;

# ---------------------------------------------------------------------------
# No row lock is held while the provider is called: a slow provider, and the
# order and its SKUs can be locked meanwhile.
my $o_slow = order_of($node, 'slow', [ [ 1, 1 ], [ 2, 1 ] ]);
$seq = $mock->last_seq;
$mock->fail(path => '/v1/checkout/sessions', mode => 'slow', delay_ms => 3000);
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	"SELECT shop.shop_start_payment($o_slow, 'mock', '$ok_url', '$back_url') ->> 'session_id'" ],
	'>', \$bg_out, '2>', \$bg_err);
ok(wait_until(sub { @{ checkout_posts($seq) } > 0 }, 10), 'a slow provider: the call is on the wire');
$r = sql_call($node, qq{SET lock_timeout = '500ms';
	BEGIN;
	SELECT count(*) FROM (SELECT id FROM shop.orders WHERE id = $o_slow FOR UPDATE) o;
	SELECT count(*) FROM (SELECT id FROM shop.sku WHERE id IN (1, 2) ORDER BY id FOR UPDATE) s;
	ROLLBACK;});
ok($r->{ok}, '... meanwhile the order and its SKUs can be locked (no row lock held during the call)')
  or diag(explain($r));
$bg->finish;
like($bg_out, qr/^cs_mock_/, '... and the call then completes');
$mock->clear_fail;

# ---------------------------------------------------------------------------
# The whole flow: start, pay at the provider, its signed event relayed into
# shop_handle_webhook: PAID.  Cancel on the hosted page: FAILED.
my $o_flow = order_of($node, 'flow', [ [ 1, 1 ], [ 2, 2 ] ]);
$res = json_decode($node->safe_psql('postgres',
	"SELECT shop.shop_start_payment($o_flow, 'mock', '$ok_url', '$back_url')"));
relay_events($node, $mock);    # whatever came before
my $paid = $mock->pay($res->{session_id});
my $relayed = relay_events($node, $mock);
is(scalar @$relayed, 1, 'paid at the mock: one event to relay');
is($relayed->[0]{result}{result}, 'processed', '... shop_handle_webhook: processed')
  or diag(explain($relayed));
is($node->safe_psql('postgres', "SELECT status || ' ' || external_payment_id FROM shop.orders WHERE id = $o_flow"),
	"PAID $paid->{session}{payment_intent}", '... the order is PAID with the provider\'s payment id');

my $o_cancel = order_of($node, 'flow-cancel');
$res = json_decode($node->safe_psql('postgres',
	"SELECT shop.shop_start_payment($o_cancel, 'mock', '$ok_url', '$back_url')"));
my $click = $mock->browse('POST', "$res->{url}/cancel");
is($click->{status}, 303, 'Cancel on the hosted page: redirected');
is($click->{headers}{location}, $back_url, '... to cancel_url');
$relayed = relay_events($node, $mock);
is(join(',', map { $_->{result}{result} // $_->{error} } @$relayed), 'processed',
	'... its payment.cancelled event: processed');
is($node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $o_cancel"), 'FAILED',
	'... the order is FAILED');

# ---------------------------------------------------------------------------
# Shipping and tax (issue 13): the lines sent add up to the order's amount,
# what the payment is checked against: the item lines, a shipping line and a
# tax line (prices exclusive of tax here); an order with a coupon's discount
# goes as one line of its amount (no negative line items).  Paid at the
# provider, the webhook's amount matches: PAID.
$node->safe_psql('postgres', q{
	UPDATE shop.product SET price = CASE id WHEN 1 THEN 10000 WHEN 2 THEN 2500 ELSE price END;
	SELECT shop.shop_set_shipping_method('kr-parcel', 'Parcel', 'KRW', 3000, NULL, ARRAY['KR']);
	SELECT shop.shop_set_tax_setting('KRW', false, 'KR');
	SELECT shop.shop_set_tax_rate('KR', 10);
	SELECT shop.shop_set_coupon('TENOFF', 'percent', 10);});
my $addr = q{'{"name": "Kim", "line1": "1 Road", "city": "Seoul", "postal_code": "04524", "country": "KR"}'};
my $o_ship = $node->safe_psql('postgres', qq{SELECT id FROM shop.shop_buy_now('ship',
	'[{"sku_id": 1, "qty": 1}, {"sku_id": 2, "qty": 2}]', NULL, NULL, 'kr-parcel', $addr)});
is($node->safe_psql('postgres', "SELECT subtotal || ' + ' || shipping || ' + ' || tax || ' = ' || amount FROM shop.orders WHERE id = $o_ship"),
	'15000 + 3000 + 1500 = 19500', 'an order with shipping and 10 % tax added: 15000 + 3000 + 1500');
$seq = $mock->last_seq;
$res = json_decode($node->safe_psql('postgres',
	"SELECT shop.shop_start_payment($o_ship, 'mock', '$ok_url', '$back_url')"));
$posts = checkout_posts($seq);
$li = ref $posts->[0]{form}{line_items} eq 'HASH' ? $posts->[0]{form}{line_items} : {};
is(join(', ', map { "$li->{$_}{price_data}{product_data}{name} $li->{$_}{price_data}{unit_amount} x $li->{$_}{quantity}" }
		sort { $a <=> $b } keys %$li),
	'Mug 10000 x 1, Spoon 2500 x 2, Shipping (kr-parcel) 3000 x 1, Tax 1500 x 1',
	'... the checkout sends the item lines, then shipping and tax as lines of their own');
is($mock->sessions_of($o_ship)->[0]{amount_total}, '19500', '... so the session\'s total is the order\'s amount');
relay_events($node, $mock);
$mock->pay($res->{session_id});
$relayed = relay_events($node, $mock);
is(join(',', map { $_->{result}{result} // $_->{error} } @$relayed), 'processed', '... paid at the provider: processed');
is($node->safe_psql('postgres', "SELECT status || ' ' || fulfilment_status FROM shop.orders WHERE id = $o_ship"),
	'PAID READY', '... the order is PAID (the amounts matched) and READY to ship');

my $o_coupon = $node->safe_psql('postgres', qq{SELECT id FROM shop.shop_buy_now('ship',
	'[{"sku_id": 1, "qty": 1}, {"sku_id": 2, "qty": 2}]', NULL, 'TENOFF', 'kr-parcel', $addr)});
my $coupon_amount = $node->safe_psql('postgres', "SELECT amount FROM shop.orders WHERE id = $o_coupon");
is($coupon_amount, '17850', 'an order with a 10 % coupon, shipping and tax: 15000 - 1500 + 3000 + 1350');
$seq = $mock->last_seq;
$res = json_decode($node->safe_psql('postgres',
	"SELECT shop.shop_start_payment($o_coupon, 'mock', '$ok_url', '$back_url')"));
$posts = checkout_posts($seq);
$li = ref $posts->[0]{form}{line_items} eq 'HASH' ? $posts->[0]{form}{line_items} : {};
is(join(', ', map { "$li->{$_}{price_data}{product_data}{name} $li->{$_}{price_data}{unit_amount} x $li->{$_}{quantity}" }
		sort { $a <=> $b } keys %$li),
	"Order $o_coupon 17850 x 1", '... the checkout sends one line of the order\'s amount (a discount is no line item)');
is($mock->sessions_of($o_coupon)->[0]{amount_total}, $coupon_amount, '... the session\'s total is the order\'s amount');
$mock->pay($res->{session_id});
$relayed = relay_events($node, $mock);
is($node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $o_coupon"), 'PAID',
	'... paid at the provider: PAID');

# ---------------------------------------------------------------------------
is($mock->state->{posts_without_idempotency_key}, 0, 'every POST the shop made carried an Idempotency-Key');
unlike(slurp_file($node->logfile), qr/\Q$key\E/, 'the API key is nowhere in the server log (log_min_messages = debug1)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0',
	'no invariant is broken');

$mock->stop;
$node->stop;
done_testing();

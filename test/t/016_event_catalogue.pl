# The event catalogue (README "Event catalogue", "One example of each
# type"): README shows one JSON body per outgoing event type.  This test
# reads those examples, checks that there is exactly one per type of
# shop.event's CHECK constraint event_type_check (read from the live
# database), produces every type for real (one endpoint subscribed to '*',
# disabled: its shop.outbox rows are written with the bodies it would be
# sent, and never sent), and compares each README example with the live
# body structurally: the same key paths, recursively, with the same JSON
# types (string, number, boolean, object, array); null on either side
# matches anything (and whatever is below it on the other side); an array
# is empty on both sides or non-empty on both with the same element
# structure.  Values (ids, times, amounts) are not compared.
use strict;
use warnings;
use B;
use FindBin;
use lib $FindBin::RealBin;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ShopProviderTest;

my $readme = "$FindBin::RealBin/../../README.md";
my $section = '#### One example of each type';

# ---------------------------------------------------------------------------
# JSON structure: { path => { type => 1, ... } } of a decoded value, paths
# as $.data.order.id, array elements as $.data.refund.lines[] (the
# structures of all elements merged); an array is 'array' when it has
# elements, 'empty array' when not.

# The JSON type of a value as JSON::PP decoded it.  A number is decoded as
# a numeric scalar, a string as a string one: this must be asked before
# anything uses the value as a string (which would cache a string form).
sub json_type
{
	my ($v) = @_;
	return 'null' unless defined $v;
	return 'boolean' if JSON::PP::is_bool($v);
	return 'object' if ref $v eq 'HASH';
	return 'array' if ref $v eq 'ARRAY';
	die "unexpected reference in decoded JSON: " . ref($v) if ref $v;
	my $flags = B::svref_2object(\$v)->FLAGS;
	return ($flags & (B::SVp_IOK | B::SVp_NOK)) && !($flags & B::SVp_POK) ? 'number' : 'string';
}

sub shape
{
	my ($v, $path, $out) = @_;
	$path //= '$';
	$out //= {};
	my $t = json_type($v);
	if ($t eq 'array')
	{
		$t = 'empty array' unless @$v;
		shape($_, "$path\[]", $out) for @$v;
	}
	elsif ($t eq 'object')
	{
		shape($v->{$_}, "$path.$_", $out) for sort keys %$v;
	}
	$out->{$path}{$t} = 1;
	return $out;
}

# The differences of two shapes, one line each (empty: the same structure).
sub shape_diff
{
	my ($readme_shape, $live_shape) = @_;
	my %side = (README => $readme_shape, live => $live_shape);
	# paths that are only null on a side: anything matches there, and what
	# the other side has below them is not compared
	my @null_only = grep {
		my $p = $_;
		grep { my $s = $side{$_}{$p}; $s && keys %$s == 1 && $s->{null} } keys %side
	} keys %{ { %$readme_shape, %$live_shape } };
	my $below_null = sub {
		my ($p) = @_;
		return scalar grep { index($p, "$_.") == 0 || index($p, "$_\[]") == 0 } @null_only;
	};
	my @diff;
	for my $p (sort keys %{ { %$readme_shape, %$live_shape } })
	{
		next if $below_null->($p);
		my ($r, $l) = ($readme_shape->{$p}, $live_shape->{$p});
		my $types = sub { join('|', sort keys %{ $_[0] }) };
		if (!$r)
		{
			push @diff, "$p: only in the live body (" . $types->($l) . ')';
			next;
		}
		if (!$l)
		{
			push @diff, "$p: only in the README example (" . $types->($r) . ')';
			next;
		}
		my %rt = %$r;
		my %lt = %$l;
		delete $rt{null};
		delete $lt{null};
		next unless %rt && %lt;    # null on a side matches anything
		push @diff, "$p: README " . $types->($r) . ', live ' . $types->($l)
		  if $types->(\%rt) ne $types->(\%lt);
	}
	return \@diff;
}

# ---------------------------------------------------------------------------
# README: the json blocks between the section's heading and the next heading.
my (@blocks, @parse_errors);
{
	open my $fh, '<:encoding(UTF-8)', $readme or die "cannot open $readme: $!";
	my ($in_section, $in_json, $text, $line_no) = (0, 0, '', 0);
	while (my $line = <$fh>)
	{
		if (!$in_section)
		{
			$in_section = 1 if $line =~ /^\Q$section\E\s*$/;
			next;
		}
		if ($in_json)
		{
			if ($line =~ /^```\s*$/)
			{
				push @blocks, { line => $line_no, text => $text };
				$in_json = 0;
			}
			else
			{
				$text .= $line;
			}
			next;
		}
		last if $line =~ /^#{1,6}\s/;
		if ($line =~ /^```json\s*$/)
		{
			($in_json, $text, $line_no) = (1, '', $.);
		}
	}
	close $fh;
	push @parse_errors, "README.md has no \"$section\" section" unless $in_section;
	push @parse_errors, "README.md line $line_no: the json block is not closed" if $in_json;
}
my $decoder = JSON::PP->new;    # README is read as characters
my %readme_example;             # type => [ { line, shape }, ... ]
for my $blk (@blocks)
{
	my $v = eval { $decoder->decode($blk->{text}) };
	if (!defined $v)
	{
		(my $e = $@ // 'null') =~ s/\s+at \S+ line \d+\.?\s*$//;
		push @parse_errors, "README.md line $blk->{line}: not JSON: $e";
		next;
	}
	my $shape = shape($v);    # before the type is read as a string
	my $type = ref $v eq 'HASH' && defined $v->{type} && !ref $v->{type} ? $v->{type} : '(no type)';
	push @{ $readme_example{$type} }, { line => $blk->{line}, shape => $shape };
}

# ---------------------------------------------------------------------------
# The cluster, with the worker (it sends the refunds to the mock provider).
my $node = provider_node('event_catalogue');
my $mock = ShopProviderTest::Mock->start(name => 'mock_016');
register_provider($node, $mock);
ok(poll_sql($node, 'SELECT worker_running FROM shop.outbox_health'), 'the worker runs');

# The types: the values shop.event's CHECK allows, in its order.
my @types = split / /, $node->safe_psql('postgres', q{
	SELECT string_agg(u.t, ' ' ORDER BY u.n)
	  FROM pg_constraint c,
		   unnest(substring(pg_get_constraintdef(c.oid) FROM '''(\{[^'']*\})''::text\[\]')::text[])
			 WITH ORDINALITY AS u(t, n)
	 WHERE c.conrelid = 'shop.event'::regclass AND c.conname = 'event_type_check'});
die "no event types read from shop.event's constraint event_type_check\n" unless @types;

is_deeply(\@parse_errors, [], scalar(@blocks) . " json blocks under \"$section\" in README.md, each JSON");
{
	my %is_type = map { $_ => 1 } @types;
	my @problems;
	for my $type (@types, sort grep { !$is_type{$_} } keys %readme_example)
	{
		my @lines = map { $_->{line} } @{ $readme_example{$type} // [] };
		push @problems, !$is_type{$type} ? "$type: not a type of event_type_check (README.md line @lines)"
		  : !@lines ? "$type: no example"
		  : @lines > 1 ? "$type: " . scalar(@lines) . " examples (README.md lines @lines)"
		  : ();
	}
	is_deeply(\@problems, [],
		'README.md has exactly one example per type of shop.event\'s event_type_check: ' . join(', ', @types))
	  or diag(join("\n", @problems));
}

# One endpoint for every type, disabled: rows written, never sent.
my $ep = json_decode($node->safe_psql('postgres',
	q{SELECT shop.shop_subscribe('https://catalogue.example.test/hook', ARRAY['*'])}))->{endpoint_id};
$node->safe_psql('postgres', "UPDATE shop.event_endpoint SET enabled = false WHERE id = $ep");

sub refund
{
	my ($sql) = @_;
	my $r = sql_call($node, $sql);
	die "$sql: $r->{sqlstate} $r->{message}\n" unless $r->{ok};
	return json_decode($r->{value})->{refund_id};
}

# type => the condition on shop.event e that picks the event of its flow
my %event_of;

# order.created: shop_buy_now of one mug, without shipping
my $o_created = order_of($node, 'cat-alice');
$event_of{'order.created'} = "e.order_id = $o_created";

# order.paid: 2 mugs and 3 spoons paid at the mock provider, its webhook
# relayed (ShopProviderTest::paid_order); refunded by lines below
my ($o_paid) = paid_order($node, $mock, 'cat-bob', [ [ 1, 2 ], [ 2, 3 ] ]);
$event_of{'order.paid'} = "e.order_id = $o_paid";

# order.cancelled: shop_release(order, 'customer_cancelled')
my $o_cancelled = order_of($node, 'cat-carol');
$node->safe_psql('postgres', "SELECT shop.shop_release($o_cancelled, 'customer_cancelled')");
$event_of{'order.cancelled'} = "e.order_id = $o_cancelled";

# order.failed: shop_release(order, 'payment_failed')
my $o_failed = order_of($node, 'cat-dave');
$node->safe_psql('postgres', "SELECT shop.shop_release($o_failed, 'payment_failed')");
$event_of{'order.failed'} = "e.order_id = $o_failed";

# order.expired: an order with shop.reservation_ttl 1s, released by the
# expiry sweep (shop_expire_pending)
my $o_expired = order_of($node, 'cat-erin', undef, q{SET shop.reservation_ttl = '1s';});
poll_sql($node, "SELECT shop.shop_expire_pending() >= 0 AND status = 'CANCELLED'
	FROM shop.orders WHERE id = $o_expired") or die "order $o_expired did not expire\n";
$event_of{'order.expired'} = "e.order_id = $o_expired";

# order.needs_review: a signed payment webhook of the mock provider with
# the wrong amount (amount_mismatch; the order stays PENDING)
my $o_review = order_of($node, 'cat-frank');
{
	my $body = json_bytes({ type => 'payment.succeeded', data => { order_id => "$o_review", amount => 9999,
		currency => 'KRW', payment_id => 'pi_mock_wrong_amount' } });
	my $review = $node->safe_psql('postgres', "SELECT shop.shop_handle_webhook('mock',
		shop.shop_sign_mock('mock', 'msg_cat_review', \$b\$$body\$b\$), \$b\$$body\$b\$) ->> 'review'");
	die "the wrong amount was not flagged: $review\n" unless $review eq 'amount_mismatch';
}
$event_of{'order.needs_review'} = "e.order_id = $o_review";

# stock.low: a SKU with low_stock_threshold 3 and 10 on hand; an order of 8
# leaves 2 available
$node->safe_psql('postgres', q{
	INSERT INTO shop.product (id, name, price) VALUES (4, 'Lamp', 4000);
	INSERT INTO shop.sku (id, product_id, code, on_hand, low_stock_threshold) VALUES (4, 4, 'LAMP-001', 10, 3);
});
order_of($node, 'cat-grace', [ [ 4, 8 ] ]);
$event_of{'stock.low'} = 'e.sku_id = 4';

# order.shipped, order.delivered: an order with a shipping method and an
# address, shop_confirm_paid, shop_ship, shop_mark_delivered
my $o_ship = $node->safe_psql('postgres', q{
	SELECT code FROM shop.shop_set_shipping_method('std', 'Standard', 'KRW', 3000, 50000, ARRAY['KR']);
	SELECT id FROM shop.shop_buy_now('cat-heidi', '[{"sku_id": 1, "qty": 1}]', NULL, NULL, 'std',
		'{"name": "Kim Minji", "line1": "12 Sejong-daero", "city": "Seoul", "postal_code": "04524",
		  "country": "KR"}')});
$o_ship = (split /\n/, $o_ship)[-1];
$node->safe_psql('postgres', qq{
	SELECT status FROM shop.shop_confirm_paid($o_ship, 'pi_cat_ship');
	SELECT fulfilment_status FROM shop.shop_ship($o_ship, 'CJ Logistics', '680123456789');
	SELECT fulfilment_status FROM shop.shop_mark_delivered($o_ship);
});
$event_of{'order.shipped'} = "e.order_id = $o_ship";
$event_of{'order.delivered'} = "e.order_id = $o_ship";

# order.refunded: shop_refund by lines of the paid order (one mug
# restocked, two spoons not), sent by the worker, accepted by the mock
my $spoon_line = $node->safe_psql('postgres',
	"SELECT id FROM shop.order_item WHERE order_id = $o_paid AND sku_id = 2");
my $rf_ok = refund(qq{SELECT shop.shop_refund($o_paid, reason => 'returned', lines =>
	'[{"sku_id": 1, "qty": 1}, {"order_item_id": $spoon_line, "qty": 2, "restock": "no_restock"}]')});
poll_sql($node, "SELECT state FROM shop.refund WHERE id = $rf_ok", 'succeeded')
  or die "refund $rf_ok did not succeed\n";
$event_of{'order.refunded'} = "(e.payload -> 'refund' ->> 'id')::bigint = $rf_ok";

# order.refund_failed: shop_refund by amount (no lines) of another paid
# order; the mock refuses it with a 400, which is final
my ($o_refused) = paid_order($node, $mock, 'cat-ivan');
$mock->fail(path => '/v1/refunds', mode => 'status', status => 400, times => 1,
	message => 'Refund refused by the mock: the charge is disputed');
my $rf_failed = refund("SELECT shop.shop_refund($o_refused, 5000, 'damaged')");
poll_sql($node, "SELECT state FROM shop.refund WHERE id = $rf_failed", 'failed')
  or die "refund $rf_failed did not fail\n";
$mock->clear_fail;
$event_of{'order.refund_failed'} = "(e.payload -> 'refund' ->> 'id')::bigint = $rf_failed";

# ---------------------------------------------------------------------------
# Each type: the README example against the live body.
for my $type (@types)
{
	my @problems;
	my $live;
	if (!defined $event_of{$type})
	{
		push @problems, 'no flow of this test produces it';
	}
	else
	{
		my $rows = query_json($node, "SELECT o.body FROM shop.outbox o JOIN shop.event e ON e.id = o.event_id
			WHERE o.endpoint_id = $ep AND e.type = '$type' AND $event_of{$type} ORDER BY e.id");
		if (@$rows != 1)
		{
			push @problems, scalar(@$rows) . " live bodies (want 1) for $event_of{$type}";
		}
		else
		{
			note("$type, live body: $rows->[0]{body}");
			$live = shape($decoder->decode($rows->[0]{body}));
		}
	}
	my $examples = $readme_example{$type} // [];
	push @problems, 'README.md has ' . scalar(@$examples) . ' examples (want 1)' if @$examples != 1;
	push @problems, map { "README.md line $examples->[0]{line}: $_" } @{ shape_diff($examples->[0]{shape}, $live) }
	  if @$examples && $live;
	is_deeply(\@problems, [], "$type: README's example has the live body's key paths and JSON types")
	  or diag(join("\n", "$type:", @problems));
}

$mock->stop;
$node->stop;
done_testing();

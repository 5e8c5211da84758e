# Our Stripe webhook verification accepts what the official `stripe` npm
# package signs (stripe.webhooks.generateTestHeaderString), and refuses the
# same events tampered with, signed with another secret, or too old: the
# signature scheme is checked against someone else's code, not only against
# vectors we computed ourselves.
use strict;
use warnings;
use FindBin;
use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $receiver_dir = "$FindBin::RealBin/../receiver";
plan skip_all => 'the stripe npm package is not installed (bash test/receiver/install.sh)'
  unless -f "$receiver_dir/node_modules/stripe/package.json";

my $secret = 'whsec_official_signer_test_0123456789';

# The Stripe-Signature header the official library makes for payload.
sub stripe_header
{
	my ($payload, $key, $timestamp) = @_;
	my ($out, $err);
	run([ 'node', "$receiver_dir/stripe_sign.js", $key, ($timestamp // ()) ],
		'<', \$payload, '>', \$out, '2>', \$err)
	  or die "stripe_sign.js failed: $err";
	return $out;
}

my $node = PostgreSQL::Test::Cluster->new('stripe_signer');
$node->init;
$node->start;
$node->safe_psql('postgres', qq{
	CREATE EXTENSION shop;
	SELECT shop.shop_set_provider('stripe', 'stripe', '$secret');
	INSERT INTO shop.product (name, price, currency) VALUES ('Lamp', 2500, 'USD');
	INSERT INTO shop.sku (product_id, code, on_hand)
		SELECT id, 'LAMP-1', 10 FROM shop.product WHERE name = 'Lamp';
});
my @orders = map {
	$node->safe_psql('postgres', qq{
		SELECT (shop.shop_buy_now('buyer-$_', jsonb_build_array(jsonb_build_object(
			'sku_id', (SELECT id FROM shop.sku WHERE code = 'LAMP-1'), 'qty', 1)))).id})
} 1 .. 3;

# Send an event: (result or SQLSTATE, order status).
sub deliver
{
	my ($payload, $header) = @_;
	(my $p = $payload) =~ s/'/''/g;
	(my $h = $header) =~ s/'/''/g;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT shop.shop_handle_webhook('stripe', "
		  . "jsonb_build_object('Stripe-Signature', '$h'), '$p') ->> 'result'");
	return $ret == 0 ? $out : ($err =~ /ERROR:\s+(\w{5}):/ ? $1 : "error: $err");
}
sub status { $node->safe_psql('postgres', "SELECT status FROM shop.orders WHERE id = $_[0]") }

my $intent = qq({"id": "evt_official_1", "object": "event", "type": "payment_intent.succeeded",
 "data": {"object": {"id": "pi_official_1", "object": "payment_intent", "amount": 2500,
 "amount_received": 2500, "currency": "usd", "metadata": {"order_id": "$orders[0]"}}}});
is(deliver($intent, stripe_header($intent, $secret)), 'processed',
	'payment_intent.succeeded signed by the official library is accepted');
is(status($orders[0]), 'PAID', '... and the order is PAID');
is(deliver($intent, stripe_header($intent, $secret)), 'duplicate',
	'the same event signed again (a Stripe retry) is a duplicate');

my $session = qq({"id": "evt_official_2", "object": "event", "type": "checkout.session.completed",
 "data": {"object": {"id": "cs_official_2", "object": "checkout.session", "amount_total": 2500,
 "currency": "usd", "payment_status": "paid", "payment_intent": "pi_official_2",
 "metadata": {"order_id": "$orders[1]"}}}});
is(deliver($session, stripe_header($session, $secret)), 'processed',
	'checkout.session.completed signed by the official library is accepted');
is(status($orders[1]), 'PAID', '... and its order is PAID');

my $late = qq({"id": "evt_official_3", "object": "event", "type": "payment_intent.succeeded",
 "data": {"object": {"id": "pi_official_3", "object": "payment_intent", "amount": 2500,
 "amount_received": 2500, "currency": "usd", "metadata": {"order_id": "$orders[2]"}}}});
my $header = stripe_header($late, $secret);
(my $tampered = $late) =~ s/"amount_received": 2500/"amount_received": 25/;
is(deliver($tampered, $header), 'SH011', 'the body changed after signing: refused, SH011');
is(deliver($late, stripe_header($late, 'whsec_some_other_endpoint_secret')), 'SH011',
	'signed with another endpoint\'s secret: refused, SH011');
is(deliver($late, stripe_header($late, $secret, time() - 3600)), 'SH012',
	'signed an hour ago (a replay): refused, SH012');
is($node->safe_psql('postgres', "SELECT count(*) FROM shop.payment_log WHERE event_id = 'evt_official_3'"),
	'0', 'nothing of the refused deliveries was recorded');
is(status($orders[2]), 'PENDING', 'their order is still PENDING');
is(deliver($late, $header), 'processed', 'the untampered event with its header is then accepted');

is($node->safe_psql('postgres', 'SELECT count(*) FROM shop.shop_check_invariants()'), '0',
	'no invariant is broken');
$node->stop;
done_testing();

# Webhook secrets and raw bodies never reach the server log, also when a
# call that carries them is refused (issue #3: "never log secrets or full
# bodies at levels above DEBUG").  With the default log_min_error_statement
# a failing statement is logged in full; the webhook functions turn that off.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('logs');
$node->init;
# the server defaults (the test framework logs every statement otherwise;
# an operator who sets log_statement = all asks for every statement)
$node->append_conf('postgresql.conf', "log_statement = none\nlog_min_error_statement = error\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION shop');

my $secret = 'whsec_TOPSECRETVALUE1234567890';
my $body = '{"type": "payment.succeeded", "card": "SECRETBODY4242"}';

# refused: an unknown option while registering a secret
my ($rc) = $node->psql('postgres',
	"SELECT shop.shop_set_provider('s', 'stripe', '$secret', '{\"tolerance\": 1}')");
isnt($rc, 0, 'a bad option is refused');
# accepted registration, then refused webhooks: bad signature, unknown provider
$node->safe_psql('postgres', "SELECT shop.shop_set_provider('s', 'stripe', '$secret')");
($rc) = $node->psql('postgres',
	"SELECT shop.shop_handle_webhook('s', '{\"stripe-signature\": \"t=1,v1=00\"}', '$body')");
isnt($rc, 0, 'a forged webhook is refused');
($rc) = $node->psql('postgres', "SELECT shop.shop_handle_webhook('nope', '{}', '$body')");
isnt($rc, 0, 'an unknown provider is refused');
# control: other failing statements are still logged in full
($rc) = $node->psql('postgres', "SELECT shop.shop_buy_now('CONTROL-MARK', '[]')");
isnt($rc, 0, 'the control statement fails');

my $log = slurp_file($node->logfile);
like($log, qr/CONTROL-MARK/, 'failing statements are logged in this setup (control)');
like($log, qr/webhook signature does not match/, 'the refusals themselves are logged');
unlike($log, qr/TOPSECRETVALUE/, 'no secret in the server log');
unlike($log, qr/SECRETBODY4242/, 'no webhook body in the server log');

$node->stop;
done_testing();

/*
 * provider_mock.c
 *		Provider kind "mock": our local test provider.
 *
 * It signs with the Standard Webhooks scheme and uses the standard kind's
 * default field mapping, so nothing is ever accepted unsigned and the mock
 * exercises exactly the code real providers go through.  The demo, the
 * HTTP layer's tests and ours produce mock events with shop_sign_mock(),
 * which refuses every provider that is not of kind mock: EXECUTE on it can
 * never forge a real provider's event.
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(shop_sign_mock);

static SPIPlanPtr plan_headers;

static const char *const mock_option_keys[] = {NULL};

/*
 * The mock's events use the standard kind's default mapping (its options
 * cannot change it: they accept no mapping keys).
 */
static void
mock_parse(const WebhookProvider *provider, const WebhookRequest *request,
		   Jsonb *body, WebhookEvent *event)
{
	webhook_kind_standard.parse(provider, request, body, event);
}

const WebhookKind webhook_kind_mock = {
	.name = "mock",
	.parse_secret = standard_parse_secret,
	.verify = standard_verify,
	.parse = mock_parse,
	.option_keys = mock_option_keys
};

/*
 * shop_sign_mock(provider text, event_id text, body text, at timestamptz)
 *		returns jsonb
 *
 * The headers a mock provider would send with body: webhook-id,
 * webhook-timestamp (at, default now) and webhook-signature under the
 * provider's newest active secret.
 */
Datum
shop_sign_mock(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID};
	text	   *name = shop_text_arg(fcinfo, 0, "provider", true);
	text	   *event_id = shop_text_arg(fcinfo, 1, "event_id", true);
	text	   *body;
	TimestampTz at;
	WebhookProvider *provider;
	int64		timestamp;
	char	   *msg_id;
	Datum		values[3];
	Datum		result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("body must not be null")));
	body = PG_GETARG_TEXT_PP(2);
	at = PG_ARGISNULL(3) ? GetCurrentTransactionStartTimestamp()
		: PG_GETARG_TIMESTAMPTZ(3);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be a finite timestamp")));
	/* floor division: a time before 1970 is refused below anyway */
	timestamp = (at + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) /
		USECS_PER_SEC;
	if (timestamp < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must not be before 1970")));
	msg_id = text_to_cstring(event_id);

	SPI_connect();
	provider = webhook_load_provider(name);
	if (provider->kind != &webhook_kind_mock)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("provider \"%s\" is of kind %s, not mock",
						provider->name, provider->kind->name),
				 errdetail("Only mock providers' events can be signed in the database.")));
	if (provider->nsecrets == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("provider \"%s\" has no active secret", provider->name)));

	values[0] = CStringGetTextDatum(msg_id);
	values[1] = CStringGetTextDatum(psprintf("%lld", (long long) timestamp));
	values[2] = CStringGetTextDatum(standard_sign(&provider->secrets[0], msg_id,
												  timestamp, VARDATA_ANY(body),
												  VARSIZE_ANY_EXHDR(body)));
	shop_exec(shop_plan(&plan_headers,
						"SELECT pg_catalog.jsonb_build_object("
						"  'webhook-id', $1, 'webhook-timestamp', $2,"
						"  'webhook-signature', $3)",
						3, argtypes),
			  values, NULL, true, 0);
	result = webhook_jsonb_result();
	SPI_finish();
	PG_RETURN_DATUM(result);
}

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

/* 1970-01-01 and 10000-01-01 00:00 UTC as TimestampTz */
#define MOCK_MIN_AT	((TimestampTz) (UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY)
#define MOCK_END_AT	(MOCK_MIN_AT + INT64CONST(253402300800) * USECS_PER_SEC)

/* no mapping keys: the mock's events use the standard defaults */
static const char *const mock_option_keys[] = {"api_base", "auto_refund", NULL};

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
	.option_keys = mock_option_keys,
	.api = &stripe_api,			/* demo/mock_provider.js speaks Stripe's API */
	.default_api_base = "http://127.0.0.1:18090"
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
	text	   *name = shop_text_arg(fcinfo, 0, "provider", true);
	text	   *event_id = shop_text_arg(fcinfo, 1, "event_id", true);
	text	   *body;
	TimestampTz at;
	WebhookProvider *provider;
	int64		timestamp;
	char	   *msg_id;
	MemoryContext outer = CurrentMemoryContext;
	JsonResult	res;
	Datum		result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("body must not be null")));
	body = PG_GETARG_TEXT_PP(2);
	at = PG_ARGISNULL(3) ? GetCurrentTransactionStartTimestamp()
		: PG_GETARG_TIMESTAMPTZ(3);
	/*
	 * Seconds since 1970, rounded down.  The range is what a
	 * webhook-timestamp header can carry (webhook_parse_timestamp: at most
	 * 12 digits); checking it first also keeps the conversion from
	 * overflowing for timestamps near the end of PostgreSQL's range.
	 */
	if (TIMESTAMP_NOT_FINITE(at) || at < MOCK_MIN_AT || at >= MOCK_END_AT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be a timestamp from 1970 to 9999")));
	timestamp = (at - MOCK_MIN_AT) / USECS_PER_SEC;
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

	json_result_begin(&res, outer);
	json_result_text(&res, "webhook-id", msg_id);
	json_result_text(&res, "webhook-timestamp", psprintf("%lld", (long long) timestamp));
	json_result_text(&res, "webhook-signature",
					 standard_sign(&provider->secrets[0], msg_id, timestamp,
								   VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body)));
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * provider_api.c
 *		Calls to payment providers' APIs: the synchronous ones made by the
 *		calling backend (starting a checkout), and what every call shares
 *		(where it goes, the API key, the answer).
 *
 * A synchronous call runs in the caller's transaction with a hard timeout
 * (shop.provider_timeout) and no row lock held: the order is read, not
 * locked, and the result is written after the call.  Should the
 * transaction roll back after the provider acted, the retry sends the same
 * Idempotency-Key and the provider answers with what it did the first
 * time; nothing is created twice.  Calls that follow a decision (refunds)
 * are not made here but queued in the outbox (refund.c).
 *
 * API keys live in shop.payment_provider_api_key, readable only by the
 * extension's owner; they are added to a request when it is sent, never
 * stored with it, and never logged or returned.
 */
#include "webhook.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(shop_set_provider_api_key);
PG_FUNCTION_INFO_V1(shop_start_payment);

/* Most bytes of a provider's answer that are read. */
#define PROVIDER_MAX_ANSWER		(256 * 1024)

/* GUC shop.provider_timeout, milliseconds (shop.c). */
int			shop_provider_timeout_ms = 10000;

static SPIPlanPtr plan_api_key;
static SPIPlanPtr plan_has_key;
static SPIPlanPtr plan_queue_call;
static SPIPlanPtr plan_set_key;
static SPIPlanPtr plan_session;
static SPIPlanPtr plan_order;
static SPIPlanPtr plan_lines;
static SPIPlanPtr plan_store_session;

/*
 * The provider's API base URL: its api_base option, else its kind's.
 */
char *
provider_api_base(const WebhookProvider *provider)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&provider->options->root, "api_base",
												 strlen("api_base"), NULL);

	if (v != NULL && v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	return pstrdup(provider->kind->default_api_base);
}

/*
 * The provider's API key (SPI must be connected; replaces the SPI result);
 * SH023 when none is set.
 */
char *
provider_api_key(const char *name)
{
	static const Oid argtypes[] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(name);
	if (shop_exec(shop_plan(&plan_api_key,
							"SELECT api_key FROM shop.payment_provider_api_key"
							" WHERE provider = $1",
							1, argtypes),
				  values, NULL, true, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("payment provider \"%s\" has no API key", name),
				 errhint("Set one with shop.shop_set_provider_api_key().")));
	return shop_get_text(0, 1);
}

/*
 * Whether the provider has an API key (SPI connected; replaces the result).
 */
bool
provider_has_api_key(const char *name)
{
	static const Oid argtypes[] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(name);
	return shop_exec(shop_plan(&plan_has_key,
							   "SELECT FROM shop.payment_provider_api_key WHERE provider = $1",
							   1, argtypes),
					 values, NULL, true, 0) == 1;
}

/*
 * A boolean option of the provider (checked by shop_set_provider).
 */
bool
provider_option_bool(const WebhookProvider *provider, const char *key, bool default_value)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&provider->options->root, key,
												 strlen(key), NULL);

	return v != NULL && v->type == jbvBool ? v->val.boolean : default_value;
}

/*
 * The provider's outbound API; SH023 when its kind has none.
 */
const ProviderApi *
provider_api(const WebhookProvider *provider)
{
	if (provider->kind->api == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("payment providers of kind %s make no outbound calls",
						provider->kind->name)));
	return provider->kind->api;
}

/* The answer being read (libcurl's write callback: no palloc, no ereport). */
typedef struct Answer
{
	char	   *data;
	size_t		len;
	bool		too_long;
} Answer;

static size_t
collect(char *data, size_t size, size_t nmemb, void *arg)
{
	Answer	   *answer = (Answer *) arg;
	size_t		n = size * nmemb;
	char	   *grown;

	if (answer->len + n > PROVIDER_MAX_ANSWER)
	{
		answer->too_long = true;
		return 0;
	}
	grown = realloc(answer->data, answer->len + n + 1);
	if (grown == NULL)
		return 0;
	answer->data = grown;
	memcpy(answer->data + answer->len, data, n);
	answer->len += n;
	answer->data[answer->len] = '\0';
	return n;
}

/*
 * The answer as jsonb, or NULL when it is not a JSON object.
 */
Jsonb *
provider_parse_answer(const char *body)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *result = NULL;

	if (body == NULL || *body == '\0')
		return NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = shop_subxact_abort(cxt, owner);

		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
		result = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return result != NULL && JB_ROOT_IS_OBJECT(result) ? result : NULL;
}

/*
 * The start of an answer as printable ASCII, for an error's DETAIL.
 */
static char *
printable_start(const char *body)
{
	int			len = body ? Min((int) strlen(body), 200) : 0;
	char	   *s = palloc(len + 1);
	int			i;

	for (i = 0; i < len; i++)
		s[i] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : '?';
	s[len] = '\0';
	return s;
}

/*
 * The Authorization header's value for the provider's API key: its kind's
 * scheme (Toss Payments: Basic), else Bearer (Stripe and the mock).
 */
char *
provider_authorization(const WebhookProvider *provider, const char *api_key)
{
	const ProviderApi *api = provider->kind->api;

	if (api != NULL && api->authorization != NULL)
		return api->authorization(api_key);
	return psprintf("Bearer %s", api_key);
}

/*
 * Make call to provider now and return its answer (a JSON object, or NULL
 * when it is not one), its HTTP status and its raw body.  Raises SH020 only:
 * when the provider cannot be reached in time; every HTTP answer is the
 * caller's to judge.  SPI must be connected.
 */
Jsonb *
provider_call_answer(const WebhookProvider *provider, const ProviderCall *call,
					 long *status, char **body)
{
	char	   *url = psprintf("%s%s", provider_api_base(provider), call->path);
	const char *why = endpoint_url_refusal(url);
	char	   *key = provider_api_key(provider->name);
	struct curl_slist *headers = NULL;
	char		errbuf[CURL_ERROR_SIZE];
	Answer		answer = {NULL, 0, false};
	CURL	   *easy;
	CURLcode	code;

	*status = 0;
	if (why != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("payment provider \"%s\" cannot be called: %s", provider->name, why)));
	easy = curl_easy_init();
	if (easy == NULL)
		elog(ERROR, "shop: could not create a libcurl handle");
	headers = curl_slist_append(headers, psprintf("Authorization: %s",
												  provider_authorization(provider, key)));
	headers = curl_slist_append(headers, psprintf("Content-Type: %s", call->content_type));
	headers = curl_slist_append(headers, psprintf("Idempotency-Key: %s", call->idempotency_key));
	headers = curl_slist_append(headers, "User-Agent: shop/" SHOP_VERSION);
	headers = curl_slist_append(headers, "Expect:");
	errbuf[0] = '\0';
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR,
					 outbox_allow_http_loopback ? "http,https" : "https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) shop_provider_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) shop_provider_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, call->method);
	if (call->body != NULL)
	{
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(call->body));
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &answer);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);

	code = curl_easy_perform(easy);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	*body = answer.data ? pstrdup(answer.data) : NULL;
	free(answer.data);

	if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && answer.too_long))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNREACHABLE),
				 errmsg("payment provider \"%s\" did not answer", provider->name),
				 errdetail("%s%s%s", curl_easy_strerror(code), errbuf[0] ? ": " : "", errbuf),
				 errhint("Nothing was stored; calling again is safe (the request is idempotent).")));
	return answer.too_long ? NULL : provider_parse_answer(*body);
}

/*
 * Make call to provider now and return its answer (a JSON object).  Raises
 * SH020 when the provider cannot be reached in time, SH021 when it refuses
 * (4xx), SH022 when it fails (5xx) or answers something unreadable; DETAIL
 * carries the provider's own message.  SPI must be connected.
 */
Jsonb *
provider_call_sync(const WebhookProvider *provider, const ProviderCall *call)
{
	long		status;
	char	   *body;
	Jsonb	   *json = provider_call_answer(provider, call, &status, &body);
	char	   *message = provider->kind->api->error_message(json);

	if (status >= 400 && status < 500)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_REFUSED),
				 errmsg("payment provider \"%s\" refused the request (HTTP %ld)",
						provider->name, status),
				 errdetail("%s", message ? message : "The provider gave no message.")));
	if (status < 200 || status >= 300 || json == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_FAILED),
				 errmsg("payment provider \"%s\" failed (HTTP %ld)", provider->name, status),
				 errdetail("%s", message ? message
						   : json == NULL ? psprintf("The answer is not a JSON object: \"%s\".",
													 printable_start(body))
						   : "The provider gave no message."),
				 errhint("Nothing was stored; calling again is safe (the request is idempotent).")));
	return json;
}

/*
 * Queue call to provider through the outbox (SPI connected; replaces the
 * SPI result): operation names what the worker does with the answer
 * (refund.c, session.c), subject_id the row it is about, ordering_key the
 * rows sent one after another.  A call already queued under the same
 * Idempotency-Key is not queued twice: returns whether this one was.
 */
bool
provider_queue_call(const WebhookProvider *provider, const char *operation,
					int64 subject_id, const ProviderCall *call,
					const char *ordering_key)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(provider->name);
	values[1] = CStringGetTextDatum(operation);
	values[2] = Int64GetDatum(subject_id);
	values[3] = CStringGetTextDatum(psprintf("%s%s", provider_api_base(provider), call->path));
	values[4] = CStringGetTextDatum(call->method);
	values[5] = CStringGetTextDatum(call->content_type);
	values[6] = call->body ? CStringGetTextDatum(call->body) : (Datum) 0;
	nulls[6] = call->body ? ' ' : 'n';
	values[7] = CStringGetTextDatum(call->idempotency_key);
	values[8] = CStringGetTextDatum(ordering_key);
	if (shop_exec(shop_plan(&plan_queue_call,
							"INSERT INTO shop.outbox"
							"  (provider, operation, subject_id, url, method, headers, body,"
							"   idempotency_key, ordering_key)"
							" VALUES ($1, $2, $3, $4, $5,"
							"         pg_catalog.jsonb_build_object('content-type', $6::text,"
							"                                       'idempotency-key', $8::text),"
							"         $7, $8, $9)"
							" ON CONFLICT (provider, idempotency_key) WHERE provider IS NOT NULL"
							" DO NOTHING",
							9, argtypes),
			  values, nulls, false, 0) == 0)
		return false;
	outbox_wake_at_commit();
	return true;
}

/*
 * shop_set_provider_api_key(name text, api_key text) returns jsonb
 */
Datum
shop_set_provider_api_key(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	text	   *name = shop_text_arg(fcinfo, 0, "name", true);
	text	   *key = shop_text_arg(fcinfo, 1, "api_key", true);
	MemoryContext outer = CurrentMemoryContext;
	WebhookProvider *provider;
	JsonResult	res;
	Datum		values[2];
	Datum		result;

	SPI_connect();
	provider = webhook_load_provider(name);
	provider_api(provider);
	values[0] = PointerGetDatum(name);
	values[1] = PointerGetDatum(key);
	shop_exec(shop_plan(&plan_set_key,
						"INSERT INTO shop.payment_provider_api_key (provider, api_key)"
						" VALUES ($1, $2)"
						" ON CONFLICT (provider) DO UPDATE"
						"   SET api_key = excluded.api_key, updated_at = now()",
						2, argtypes),
			  values, NULL, false, 0);
	json_result_begin(&res, outer);
	json_result_text(&res, "name", provider->name);
	json_result_text(&res, "kind", provider->kind->name);
	json_result_bool(&res, "api_key_set", true);
	json_result_text(&res, "api_base", provider_api_base(provider));
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * The stored session of the order at the provider as the result, or
 * (Datum) 0 when there is none.
 */
static Datum
stored_session(MemoryContext outer, int64 order_id, const char *provider, bool created)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID};
	Datum		values[2];
	JsonResult	res;
	bool		isnull;
	Datum		expires;

	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(provider);
	if (shop_exec(shop_plan(&plan_session,
							"SELECT session_id, url, expires_at"
							"  FROM shop.payment_session"
							" WHERE order_id = $1 AND provider = $2",
							2, argtypes),
				  values, NULL, false, 0) == 0)
		return (Datum) 0;
	expires = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	json_result_begin(&res, outer);
	json_result_int(&res, "order_id", order_id, false);
	json_result_text(&res, "provider", provider);
	json_result_text(&res, "session_id", shop_get_text(0, 1));
	json_result_text(&res, "url", shop_get_text(0, 2));
	json_result_text(&res, "expires_at",
					 isnull ? NULL : DatumGetCString(DirectFunctionCall1(timestamptz_out, expires)));
	json_result_bool(&res, "created", created);
	return json_result_end(&res);
}

/*
 * Read what a checkout needs of a PENDING order (not locking it: the call
 * is made without row locks); SH004 for any other status.
 *
 * The lines sent must add up to the order's amount, which is what the
 * payment is checked against: the item lines, then a shipping line and a
 * tax line (tax added on top) when the order has them.  A coupon's
 * discount cannot be a line of its own (providers take no negative line
 * items), so an order with a discount is sent as one line for its whole
 * amount.
 */
static void
read_order(int64 order_id, CheckoutOrder *order)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];
	bool		isnull;
	uint64		n;
	uint64		i;
	int64		discount;
	int64		shipping;
	int64		tax;
	char	   *method;

	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_order,
							"SELECT status, currency::text, amount, expires_at, created_at,"
							"       discount, shipping, tax, shipping_method"
							"  FROM shop.orders WHERE id = $1",
							1, argtypes),
				  values, NULL, true, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	if (order_status_from_name(shop_get_text(0, 1)) != ORDER_PENDING)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s; only a PENDING order can be paid",
						(long long) order_id, shop_get_text(0, 1))));
	order->order_id = order_id;
	strlcpy(order->currency, shop_get_text(0, 2), sizeof(order->currency));
	order->amount = shop_get_int64(0, 3, NULL);
	order_refuse_nothing_to_pay(order_id, order->amount);
	order->expires_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 4, &isnull));
	order->created_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 5, &isnull));
	discount = shop_get_int64(0, 6, NULL);
	shipping = shop_get_int64(0, 7, NULL);
	tax = shop_get_int64(0, 8, NULL);
	method = shop_get_text(0, 9);
	if (discount > 0)
	{
		order->nlines = 1;
		order->lines = palloc(sizeof(CheckoutLine));
		order->lines[0].name = psprintf("Order %lld", (long long) order_id);
		order->lines[0].unit_price = order->amount;
		order->lines[0].qty = 1;
		return;
	}
	n = shop_exec(shop_plan(&plan_lines,
							"SELECT product_name, unit_price, qty FROM shop.order_item"
							" WHERE order_id = $1 ORDER BY sku_id",
							1, argtypes),
				  values, NULL, true, 0);
	order->nlines = (int) n;
	order->lines = palloc(sizeof(CheckoutLine) * (n + 2));
	for (i = 0; i < n; i++)
	{
		order->lines[i].name = shop_get_text(i, 1);
		order->lines[i].unit_price = shop_get_int64(i, 2, NULL);
		order->lines[i].qty = (int32) shop_get_int64(i, 3, NULL);
	}
	if (shipping > 0)
	{
		order->lines[order->nlines].name = method ? psprintf("Shipping (%s)", method)
			: pstrdup("Shipping");
		order->lines[order->nlines].unit_price = shipping;
		order->lines[order->nlines++].qty = 1;
	}
	if (tax > 0)
	{
		order->lines[order->nlines].name = pstrdup("Tax");
		order->lines[order->nlines].unit_price = tax;
		order->lines[order->nlines++].qty = 1;
	}
}

/*
 * A buyer-facing URL argument: http(s), not empty, not huge.
 */
static char *
url_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	char	   *url = text_to_cstring(shop_text_arg(fcinfo, argno, name, true));

	if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be an http:// or https:// URL", name)));
	return url;
}

/*
 * shop_start_payment(order_id bigint, provider text, success_url text,
 *					  cancel_url text) returns jsonb
 */
Datum
shop_start_payment(PG_FUNCTION_ARGS)
{
	static const Oid store_types[] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *name = shop_text_arg(fcinfo, 1, "provider", true);
	MemoryContext outer = CurrentMemoryContext;
	WebhookProvider *provider;
	const ProviderApi *api;
	CheckoutOrder order;
	CheckoutSession session;
	ProviderCall call;
	Jsonb	   *answer;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Datum		result;

	order.success_url = url_arg(fcinfo, 2, "success_url");
	order.cancel_url = url_arg(fcinfo, 3, "cancel_url");
	SPI_connect();
	provider = webhook_load_provider(name);
	api = provider_api(provider);
	if (api->checkout == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("payment providers of kind %s have no hosted checkout to start",
						provider->kind->name),
				 errhint("The buyer pays in the provider's widget; confirm the payment with shop.shop_confirm_payment().")));
	if ((result = stored_session(outer, order_id, provider->name, false)) != (Datum) 0)
	{
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	read_order(order_id, &order);

	memset(&call, 0, sizeof(call));
	api->checkout(&order, &call);
	answer = provider_call_sync(provider, &call);
	if (!api->checkout_result(answer, &session))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_FAILED),
				 errmsg("payment provider \"%s\" answered without a session id and URL",
						provider->name)));

	/* a concurrent start stored the same session first: keep that row */
	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(provider->name);
	values[2] = CStringGetTextDatum(session.id);
	values[3] = CStringGetTextDatum(session.url);
	values[4] = TimestampTzGetDatum(session.expires_at);
	nulls[4] = session.expires_at != 0 ? ' ' : 'n';
	shop_exec(shop_plan(&plan_store_session,
						"INSERT INTO shop.payment_session"
						"  (order_id, provider, session_id, url, expires_at)"
						" VALUES ($1, $2, $3, $4, $5)"
						" ON CONFLICT (order_id, provider) DO NOTHING",
						5, store_types),
			  values, nulls, false, 0);
	result = stored_session(outer, order_id, provider->name, SPI_processed == 1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

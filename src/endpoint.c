/*
 * endpoint.c
 *		The merchant's event endpoints: subscribe, unsubscribe, re-enable,
 *		and the URL policy every outbound request is held to.
 *
 * Only https:// is sent to (TLS verified by the worker), except http:// to
 * a loopback host when shop.outbox_allow_http_loopback is on (tests, the
 * local demo).  URLs carrying credentials are refused: a secret inside a
 * URL would be shown by every view that shows the URL.  URLs are parsed
 * with libcurl's own parser, the one that will send them, so what is
 * checked here is what is used there.
 *
 * Signing secrets follow the payment providers' rotation rules: the newest
 * signs, older ones keep signing (each delivery carries one signature per
 * active secret) until they retire.
 */
#include "webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_subscribe);
PG_FUNCTION_INFO_V1(shop_unsubscribe);
PG_FUNCTION_INFO_V1(shop_enable_endpoint);

/* Longest endpoint URL we accept. */
#define ENDPOINT_MAX_URL	2048

/* Key bytes of a generated signing secret. */
#define ENDPOINT_SECRET_BYTES	32

/* The event catalogue (README, "Event catalogue"); "*" subscribes to all. */
static const char *const event_types[] = {
	"order.created", "order.paid", "order.cancelled", "order.failed",
	"order.expired", "order.needs_review", "stock.low",
	"order.shipped", "order.delivered", "order.refunded", "order.refund_failed",
	"*", NULL
};

static SPIPlanPtr plan_upsert;
static SPIPlanPtr plan_retire;
static SPIPlanPtr plan_add_secret;
static SPIPlanPtr plan_purge;
static SPIPlanPtr plan_unsubscribe;
static SPIPlanPtr plan_enable;
static SPIPlanPtr plan_exists;
static SPIPlanPtr plan_worker_running;
static SPIPlanPtr plan_resume;

/*
 * Whether host (as libcurl gives it) is this machine's loopback: an IPv4
 * literal in 127.0.0.0/8, [::1], or localhost (which libcurl resolves to
 * loopback itself, without asking DNS).  A name merely starting with "127."
 * (127.0.0.1.example.com) is a DNS name like any other, so the address is
 * parsed, not its text compared.
 */
static bool
host_is_loopback(const char *host)
{
	struct in_addr addr;

	if (inet_pton(AF_INET, host, &addr) == 1)
		return (pg_ntoh32(addr.s_addr) >> 24) == 127;
	return pg_strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0;
}

/*
 * NULL when url may be sent to under the current settings, else why not.
 * Used by shop_subscribe and, again at sending time, by the worker.
 */
const char *
endpoint_url_refusal(const char *url)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *password = NULL;
	const char *why = NULL;
	const char *p;

	if (strlen(url) > ENDPOINT_MAX_URL)
		return "the URL is too long";
	/* libcurl would read "https:///x" as host "x": the host must be there */
	if ((p = strstr(url, "://")) == NULL || p[3] == '/' || p[3] == '\0')
		return "the URL is malformed";
	u = curl_url();
	if (u == NULL)
		return "out of memory";
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		why = "the URL is malformed";
	else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
			 curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
		why = "the URL carries credentials";
	else if (strcmp(scheme, "https") == 0)
		why = NULL;
	else if (strcmp(scheme, "http") != 0)
		why = "only https:// URLs are allowed";
	else if (!host_is_loopback(host))
		why = "only https:// URLs are allowed (http:// only to loopback, when shop.outbox_allow_http_loopback is on)";
	else if (!outbox_allow_http_loopback)
		why = "http:// to loopback needs shop.outbox_allow_http_loopback = on";
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return why;
}

/*
 * The event types argument: catalogue types or "*", at least one, each once.
 */
static Datum
check_event_types(ArrayType *types)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int			j;

	if (ARR_NDIM(types) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_types must be a one-dimensional array")));
	deconstruct_array(types, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_types must name at least one event type"),
				 errhint("Use ARRAY['*'] for every event.")));
	for (i = 0; i < n; i++)
	{
		char	   *type;
		bool		known = false;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event_types must not contain null")));
		type = TextDatumGetCString(elems[i]);
		for (j = 0; event_types[j] != NULL; j++)
			known |= strcmp(event_types[j], type) == 0;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown event type \"%s\"", type),
					 errhint("Event types are order.created, order.paid, order.cancelled, order.failed, order.expired, order.needs_review, stock.low, order.shipped, order.delivered, order.refunded, order.refund_failed, or * for all.")));
	}
	return PointerGetDatum(types);
}

/*
 * A new signing secret: "whsec_" and the base64 of random key bytes.
 */
static char *
generate_secret(void)
{
	uint8		key[ENDPOINT_SECRET_BYTES];
	int			enclen = pg_b64_enc_len(ENDPOINT_SECRET_BYTES);
	char	   *secret = palloc(6 + enclen + 1);
	int			n;

	if (!pg_strong_random(key, sizeof(key)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random secret")));
	memcpy(secret, "whsec_", 6);
	n = pg_b64_encode((const char *) key, sizeof(key), secret + 6, enclen);
	if (n < 0)
		elog(ERROR, "shop: base64 encoding failed");
	secret[6 + n] = '\0';
	return secret;
}

/*
 * Make secret the endpoint's newest; the others retire after grace seconds.
 */
static void
rotate_secret(int64 endpoint_id, const char *secret, int32 grace)
{
	static const Oid retire_types[] = {INT8OID, TEXTOID, INT4OID};
	static const Oid secret_types[] = {INT8OID, TEXTOID};
	Datum		values[3];

	values[0] = Int64GetDatum(endpoint_id);
	values[1] = CStringGetTextDatum(secret);
	values[2] = Int32GetDatum(grace);
	shop_exec(shop_plan(&plan_retire,
						"UPDATE shop.event_endpoint_secret"
						"   SET retires_at = LEAST(COALESCE(retires_at, 'infinity'),"
						"                          now() + $3 * interval '1 second')"
						" WHERE endpoint_id = $1 AND secret <> $2",
						3, retire_types),
			  values, NULL, false, 0);
	shop_exec(shop_plan(&plan_add_secret,
						"INSERT INTO shop.event_endpoint_secret (endpoint_id, secret)"
						" VALUES ($1, $2)"
						" ON CONFLICT (endpoint_id, secret) DO UPDATE"
						"   SET retires_at = NULL, added_at = now()",
						2, secret_types),
			  values, NULL, false, 0);
	shop_exec(shop_plan(&plan_purge,
						"DELETE FROM shop.event_endpoint_secret"
						" WHERE endpoint_id = $1 AND retires_at <= now()",
						1, secret_types),
			  values, NULL, false, 0);
}

/*
 * Warn once per call when no delivery worker serves this database: rows
 * will only queue.  (The one worker of a cluster serves the database named
 * by shop.database_name; its process is listed in every database.)
 */
static void
warn_without_worker(void)
{
	if (shop_exec(shop_plan(&plan_worker_running,
							"SELECT FROM pg_catalog.pg_stat_activity"
							" WHERE backend_type = 'shop outbox worker'"
							"   AND datname = pg_catalog.current_database()",
							0, NULL),
				  NULL, NULL, true, 1) == 0)
		ereport(WARNING,
				(errmsg("the shop outbox worker is not running: events will queue but not be sent"),
				 errhint("Add shop to shared_preload_libraries, set shop.database_name to this database, and restart.")));
}

/*
 * shop_subscribe(url text, event_types text[], secret text, description text,
 *				  rotation_grace_seconds int) returns jsonb
 */
Datum
shop_subscribe(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID, TEXTARRAYOID, TEXTOID};
	text	   *url_arg;
	char	   *url;
	Datum		types;
	char	   *secret = NULL;
	int32		grace;
	const char *why;
	MemoryContext outer = CurrentMemoryContext;
	JsonResult	res;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int64		endpoint_id;
	bool		created;
	bool		generated = false;
	Datum		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("url, event_types and rotation_grace_seconds must not be null")));
	url_arg = PG_GETARG_TEXT_PP(0);
	url = text_to_cstring(url_arg);
	if ((why = endpoint_url_refusal(url)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("endpoint URL refused: %s", why)));
	types = check_event_types(PG_GETARG_ARRAYTYPE_P(1));
	if (!PG_ARGISNULL(2))
	{
		secret = text_to_cstring(PG_GETARG_TEXT_PP(2));
		standard_parse_secret(secret);
	}
	grace = PG_GETARG_INT32(4);
	if (grace < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rotation_grace_seconds must not be negative")));

	SPI_connect();
	values[0] = PointerGetDatum(url_arg);
	values[1] = types;
	values[2] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[2] = PG_ARGISNULL(3) ? 'n' : ' ';
	/* one endpoint per URL: a second call updates it and re-enables it */
	shop_exec(shop_plan(&plan_upsert,
						"INSERT INTO shop.event_endpoint AS e (url, event_types, description)"
						" VALUES ($1, $2, $3)"
						" ON CONFLICT (url) WHERE removed_at IS NULL DO UPDATE"
						"   SET event_types = excluded.event_types,"
						"       description = COALESCE(excluded.description, e.description),"
						"       enabled = true, disabled_reason = NULL,"
						"       consecutive_failures = 0, updated_at = now()"
						" RETURNING id, xmax = 0",
						3, argtypes),
			  values, nulls, false, 0);
	endpoint_id = shop_get_int64(0, 1, NULL);
	created = shop_get_bool(0, 2);
	if (!created)
	{
		/* re-enabled: rows that waited while it was disabled are due */
		Datum		id = Int64GetDatum(endpoint_id);

		shop_exec(shop_plan(&plan_resume,
							"UPDATE shop.outbox SET next_attempt_at = now()"
							" WHERE endpoint_id = $1 AND state IN ('queued', 'failed')"
							"   AND next_attempt_at = 'infinity'",
							1, (const Oid[]) {INT8OID}),
				  &id, NULL, false, 0);
	}
	if (secret == NULL && created)
	{
		secret = generate_secret();
		generated = true;
	}
	if (secret != NULL)
		rotate_secret(endpoint_id, secret, grace);
	warn_without_worker();
	outbox_wake_at_commit();	/* a re-enabled endpoint's rows are due */

	json_result_begin(&res, outer);
	json_result_int(&res, "endpoint_id", endpoint_id, false);
	json_result_text(&res, "url", url);
	{
		Datum	   *elems;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(types), TEXTOID, -1, false,
						  TYPALIGN_INT, &elems, NULL, &n);
		json_result_text_array(&res, "event_types", elems, n);
	}
	json_result_bool(&res, "enabled", true);
	if (generated)
		json_result_text(&res, "secret", secret);
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * P0002 unless endpoint_id names an endpoint (removed ones too).
 */
static void
require_endpoint(int64 endpoint_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(endpoint_id);
	if (shop_exec(shop_plan(&plan_exists,
							"SELECT FROM shop.event_endpoint WHERE id = $1",
							1, argtypes),
				  values, NULL, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("event endpoint %lld does not exist", (long long) endpoint_id)));
}

/*
 * shop_unsubscribe(endpoint_id bigint) returns boolean
 *
 * The endpoint is kept (removed_at) for its deliveries' history; what it
 * has not received yet is given up (a request on the wire still finishes;
 * its attempt is logged, the row stays dead).  false when it was removed
 * already.
 */
Datum
shop_unsubscribe(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		endpoint_id = shop_int64_arg(fcinfo, 0, "endpoint_id");
	Datum		values[1];
	bool		removed;

	SPI_connect();
	values[0] = Int64GetDatum(endpoint_id);
	removed = shop_exec(shop_plan(&plan_unsubscribe,
								  "WITH e AS ("
								  "  UPDATE shop.event_endpoint"
								  "     SET removed_at = now(), enabled = false, updated_at = now()"
								  "   WHERE id = $1 AND removed_at IS NULL"
								  "  RETURNING id),"
								  " o AS ("
								  "  UPDATE shop.outbox o"
								  "     SET state = 'dead', last_error = 'endpoint unsubscribed',"
								  "         claimed_by = NULL, lease_until = NULL, updated_at = now()"
								  "    FROM e"
								  "   WHERE o.endpoint_id = e.id"
								  "     AND o.state IN ('queued', 'in_flight', 'failed'))"
								  " SELECT id FROM e",
								  1, argtypes),
						values, NULL, false, 0) == 1;
	if (!removed)
		require_endpoint(endpoint_id);
	SPI_finish();
	PG_RETURN_BOOL(removed);
}

/*
 * shop_enable_endpoint(endpoint_id bigint) returns boolean
 *
 * true when the endpoint was disabled and is enabled now; P0002 for an
 * unknown or removed endpoint.
 */
Datum
shop_enable_endpoint(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		endpoint_id = shop_int64_arg(fcinfo, 0, "endpoint_id");
	Datum		values[1];
	bool		was_disabled;

	SPI_connect();
	values[0] = Int64GetDatum(endpoint_id);
	/* its waiting rows are due again (they waited at infinity) */
	if (shop_exec(shop_plan(&plan_enable,
							"WITH e AS ("
							"  UPDATE shop.event_endpoint e"
							"     SET enabled = true, disabled_reason = NULL,"
							"         consecutive_failures = 0, updated_at = now()"
							"    FROM (SELECT id, enabled FROM shop.event_endpoint"
							"           WHERE id = $1 AND removed_at IS NULL FOR UPDATE) old"
							"   WHERE e.id = old.id"
							"  RETURNING e.id, NOT old.enabled AS was_disabled),"
							" r AS ("
							"  UPDATE shop.outbox o SET next_attempt_at = now()"
							"    FROM e"
							"   WHERE o.endpoint_id = e.id AND o.state IN ('queued', 'failed')"
							"     AND o.next_attempt_at = 'infinity')"
							" SELECT was_disabled FROM e",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("event endpoint %lld does not exist or was removed",
						(long long) endpoint_id)));
	was_disabled = shop_get_bool(0, 1);
	if (was_disabled)
		outbox_wake_at_commit();
	SPI_finish();
	PG_RETURN_BOOL(was_disabled);
}

/*
 * webhook_util.c
 *		Helpers the provider kinds share: HMAC-SHA256, constant-time
 *		comparison, case-insensitive header lookup, timestamp checks and
 *		reading normalised fields out of JSON bodies.
 *
 * Nothing here logs a secret or a body: errors name the header or the
 * field that was wrong, never its content beyond what the sender already
 * knows.
 */
#include "webhook.h"

#include "common/hmac.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

/*
 * The provider kind called name, or NULL.
 */
const WebhookKind *
webhook_kind_by_name(const char *name)
{
	if (strcmp(name, webhook_kind_stripe.name) == 0)
		return &webhook_kind_stripe;
	if (strcmp(name, webhook_kind_standard.name) == 0)
		return &webhook_kind_standard;
	if (strcmp(name, webhook_kind_mock.name) == 0)
		return &webhook_kind_mock;
	if (strcmp(name, webhook_kind_toss.name) == 0)
		return &webhook_kind_toss;
	return NULL;
}

/*
 * HMAC-SHA256 of the concatenated parts under key, into digest (32 bytes).
 * Parts are hashed in place: the signed content is never copied together.
 */
void
webhook_hmac_sha256(const char *key, int keylen, const char *const *parts,
					const int *lens, int nparts, uint8 *digest)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	int			i;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0)
		goto fail;
	for (i = 0; i < nparts; i++)
		if (pg_hmac_update(ctx, (const uint8 *) parts[i], lens[i]) < 0)
			goto fail;
	if (pg_hmac_final(ctx, digest, WEBHOOK_DIGEST_LEN) < 0)
		goto fail;
	pg_hmac_free(ctx);
	return;

fail:
	{
		/* copy the message before the context that owns it goes away */
		char	   *msg = pstrdup(pg_hmac_error(ctx));

		pg_hmac_free(ctx);
		elog(ERROR, "shop: HMAC-SHA256 failed: %s", msg);
	}
}

/*
 * Compare two digests in time independent of where they differ, so a
 * forger cannot find the right signature byte by byte.
 */
bool
webhook_digest_equal(const uint8 *a, const uint8 *b, int len)
{
	uint8		diff = 0;
	int			i;

	for (i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/*
 * The value of header name (ASCII case-insensitive), or NULL when absent.
 * headers must be a JSON object of strings; a header given twice under
 * different spellings is refused rather than guessed.
 */
char *
webhook_header(const WebhookRequest *request, const char *name)
{
	JsonbIterator *it = JsonbIteratorInit(&request->headers->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *found = NULL;
	bool		match = false;
	int			namelen = strlen(name);

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			match = v.val.string.len == namelen &&
				pg_strncasecmp(v.val.string.val, name, namelen) == 0;
		else if (tok == WJB_VALUE && match)
		{
			if (found != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
						 errmsg("header \"%s\" is given more than once", name)));
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
						 errmsg("header \"%s\" must be a JSON string", name)));
			found = pnstrdup(v.val.string.val, v.val.string.len);
		}
	}
	return found;
}

/*
 * A unix timestamp in seconds from a header field: digits only, no sign,
 * no fraction, no surrounding space.
 */
int64
webhook_parse_timestamp(const char *value, const char *header)
{
	int64		result = 0;
	const char *p;

	if (*value == '\0' || strlen(value) > 12)
		goto bad;
	for (p = value; *p; p++)
	{
		if (*p < '0' || *p > '9')
			goto bad;
		result = result * 10 + (*p - '0');
	}
	return result;

bad:
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
			 errmsg("timestamp in header \"%s\" is not a unix time in seconds",
					header)));
	return 0;					/* keep compiler quiet */
}

/*
 * Refuse a signed timestamp too far from now, in either direction: an old
 * one is a replay, a future one a clock fault or a pre-signed forgery.
 */
static void
webhook_check_timestamp(const WebhookProvider *provider,
						const WebhookRequest *request, int64 timestamp)
{
	int64		skew = request->now - timestamp;

	if (skew > provider->tolerance)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_STALE_TIMESTAMP),
				 errmsg("webhook timestamp is %lld seconds old", (long long) skew),
				 errdetail("Provider \"%s\" accepts at most %lld seconds.",
						   provider->name, (long long) provider->tolerance),
				 errhint("A replayed or long-delayed event; the provider will resend a fresh one.")));
	if (-skew > provider->tolerance)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_STALE_TIMESTAMP),
				 errmsg("webhook timestamp is %lld seconds in the future",
						(long long) -skew),
				 errdetail("Provider \"%s\" accepts at most %lld seconds.",
						   provider->name, (long long) provider->tolerance),
				 errhint("Check the database server's clock.")));
}

/*
 * Raise the error for a signature that matches no active secret.
 */
static void
webhook_no_match(const WebhookProvider *provider)
{
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_WEBHOOK_BAD_SIGNATURE),
			 errmsg("webhook signature does not match"),
			 errdetail("No signature in the request matches any of the %d active secrets of provider \"%s\".",
					   provider->nsecrets, provider->name),
			 errhint("The body must be passed exactly as received; check the provider's secret.")));
}

/*
 * Accept a request whose signed content (the parts, concatenated) has as
 * its HMAC-SHA256 under one of the provider's active secrets one of the
 * candidate digests taken from its headers; then check the signed
 * timestamp (signature first, so junk always reads as a bad signature and
 * SH012 means a genuine but late event).  Every secret is tried against
 * every candidate, since both sides may be rotating, and each comparison
 * takes constant time.  SH011 when nothing matches.
 */
void
webhook_verify_hmac(const WebhookProvider *provider,
					const WebhookRequest *request,
					const char *const *parts, const int *lens, int nparts,
					const uint8 (*candidates)[WEBHOOK_DIGEST_LEN],
					int ncandidates, int64 timestamp)
{
	int			s;
	int			c;

	for (s = 0; s < provider->nsecrets; s++)
	{
		uint8		expected[WEBHOOK_DIGEST_LEN];

		webhook_hmac_sha256(provider->secrets[s].key, provider->secrets[s].len,
							parts, lens, nparts, expected);
		for (c = 0; c < ncandidates; c++)
			if (webhook_digest_equal(expected, candidates[c], WEBHOOK_DIGEST_LEN))
			{
				webhook_check_timestamp(provider, request, timestamp);
				return;
			}
	}
	webhook_no_match(provider);
}

/*
 * The value at path (object keys) in doc, or NULL when any step is missing
 * or not an object.
 */
JsonbValue *
webhook_json_get(Jsonb *doc, const char *const *path, int depth)
{
	JsonbContainer *c = &doc->root;
	JsonbValue *v = NULL;
	int			i;

	for (i = 0; i < depth; i++)
	{
		if (!JsonContainerIsObject(c))
			return NULL;
		v = getKeyJsonValueFromContainer(c, path[i], strlen(path[i]), NULL);
		if (v == NULL)
			return NULL;
		if (i < depth - 1)
		{
			if (v->type != jbvBinary)
				return NULL;
			c = v->val.binary.data;
		}
	}
	return v;
}

/*
 * The value at the path named by options->option (a JSON array of keys,
 * checked by shop_set_provider) or else at default_path.  An empty array
 * means "this provider does not send the field".
 */
JsonbValue *
webhook_json_path(Jsonb *doc, Jsonb *options, const char *option,
				  const char *const *default_path, int default_depth)
{
	JsonbValue *opt = getKeyJsonValueFromContainer(&options->root, option,
												   strlen(option), NULL);
	const char **path;
	int			depth;
	int			i;

	if (opt == NULL)
		return webhook_json_get(doc, default_path, default_depth);
	if (opt->type != jbvBinary || !JsonContainerIsArray(opt->val.binary.data))
		elog(ERROR, "shop: option %s is not an array", option);
	depth = JsonContainerSize(opt->val.binary.data);
	if (depth == 0)
		return NULL;
	path = palloc(sizeof(char *) * depth);
	for (i = 0; i < depth; i++)
	{
		JsonbValue *key = getIthJsonbValueFromContainer(opt->val.binary.data, i);

		if (key->type != jbvString)
			elog(ERROR, "shop: option %s holds a non-string key", option);
		path[i] = pnstrdup(key->val.string.val, key->val.string.len);
	}
	return webhook_json_get(doc, path, depth);
}

/*
 * A JSON string or number as a C string (NULL for anything else or a
 * missing value).  A number is written without trailing fractional zeros,
 * so an order id sent as 123.0 names order 123.  A value longer than WEBHOOK_MAX_ID_LEN is refused (SH014)
 * when what names a field the event cannot do without (its id); any other
 * field that long reads as absent, so the event is still recorded (the
 * payload keeps the value) instead of being refused and retried forever.
 */
char *
webhook_json_string(JsonbValue *v, const char *what)
{
	char	   *s;

	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		s = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
		s = numeric_normalize(v->val.numeric);	/* 123.0 and 1.23e2 read as 123 */
	else
		return NULL;
	if (strlen(s) <= WEBHOOK_MAX_ID_LEN)
		return s;
	if (what != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("%s in the webhook body is longer than %d bytes",
						what, WEBHOOK_MAX_ID_LEN)));
	return NULL;
}

/*
 * An amount in minor units: a whole JSON number, or a string of digits
 * (some providers quote amounts).  False for anything else.
 */
bool
webhook_json_amount(JsonbValue *v, int64 *amount)
{
	const char *p;
	int64		result = 0;

	if (v == NULL)
		return false;
	if (v->type == jbvNumeric)
	{
		Numeric		num = v->val.numeric;
		Numeric		rounded;

		if (numeric_is_nan(num) || numeric_is_inf(num))
			return false;
		rounded = DatumGetNumeric(DirectFunctionCall2(numeric_round,
													  NumericGetDatum(num),
													  Int32GetDatum(0)));
		/* 12.5 is not an amount in minor units: refuse, never round */
		if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(num),
											  NumericGetDatum(rounded))))
			return false;
		if (DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(num),
											 DirectFunctionCall1(int8_numeric,
																 Int64GetDatum(0)))) ||
			DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(num),
											 DirectFunctionCall1(int8_numeric,
																 Int64GetDatum(PG_INT64_MAX)))))
			return false;
		*amount = DatumGetInt64(DirectFunctionCall1(numeric_int8,
													NumericGetDatum(num)));
		return true;
	}
	if (v->type != jbvString || v->val.string.len == 0 || v->val.string.len > 18)
		return false;
	for (p = v->val.string.val; p < v->val.string.val + v->val.string.len; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		result = result * 10 + (*p - '0');
	}
	*amount = result;
	return true;
}

/*
 * Whether value is one of the strings in options->option (a JSON array),
 * or in the NULL-terminated defaults when the option is not set.
 */
bool
webhook_json_string_in(Jsonb *options, const char *option,
					   const char *const *defaults, const char *value)
{
	JsonbValue *opt = getKeyJsonValueFromContainer(&options->root, option,
												   strlen(option), NULL);
	int			n;
	int			i;

	if (value == NULL)
		return false;
	if (opt == NULL)
	{
		for (i = 0; defaults[i] != NULL; i++)
			if (strcmp(defaults[i], value) == 0)
				return true;
		return false;
	}
	if (opt->type != jbvBinary || !JsonContainerIsArray(opt->val.binary.data))
		elog(ERROR, "shop: option %s is not an array", option);
	n = JsonContainerSize(opt->val.binary.data);
	for (i = 0; i < n; i++)
	{
		JsonbValue *s = getIthJsonbValueFromContainer(opt->val.binary.data, i);

		if (s->type == jbvString && s->val.string.len == (int) strlen(value) &&
			memcmp(s->val.string.val, value, s->val.string.len) == 0)
			return true;
	}
	return false;
}

/*
 * Integer option key, or default_value when not set (shop_set_provider
 * has checked its range).
 */
int64
webhook_option_int(Jsonb *options, const char *key, int64 default_value)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&options->root, key,
												 strlen(key), NULL);

	if (v == NULL || v->type != jbvNumeric)
		return default_value;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 NumericGetDatum(v->val.numeric)));
}

/*
 * Start a flat JSON object to return from a function; it is built in cxt
 * (the caller's context, so it outlives SPI_finish).  The webhook functions
 * build their results here instead of asking the executor to.
 */
void
json_result_begin(JsonResult *res, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	res->cxt = cxt;
	res->state = NULL;
	pushJsonbValue(&res->state, WJB_BEGIN_OBJECT, NULL);
	MemoryContextSwitchTo(old);
}

/*
 * Add key: value (value a JsonbValue, jbvBinary for a whole document).
 */
static void
json_result_add(JsonResult *res, const char *key, JsonbValue *value)
{
	MemoryContext old = MemoryContextSwitchTo(res->cxt);
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = pstrdup(key);
	k.val.string.len = strlen(key);
	pushJsonbValue(&res->state, WJB_KEY, &k);
	pushJsonbValue(&res->state, WJB_VALUE, value);
	MemoryContextSwitchTo(old);
}

/*
 * Add key: "value", or key: null when value is NULL.
 */
void
json_result_text(JsonResult *res, const char *key, const char *value)
{
	MemoryContext old = MemoryContextSwitchTo(res->cxt);
	JsonbValue	v;

	if (value == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = pstrdup(value);
		v.val.string.len = strlen(value);
	}
	MemoryContextSwitchTo(old);
	json_result_add(res, key, &v);
}

/*
 * Add key: number, or key: null when isnull.
 */
void
json_result_int(JsonResult *res, const char *key, int64 value, bool isnull)
{
	MemoryContext old = MemoryContextSwitchTo(res->cxt);
	JsonbValue	v;

	if (isnull)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(value);
	}
	MemoryContextSwitchTo(old);
	json_result_add(res, key, &v);
}

/*
 * Add key: an array of the n text datums.
 */
void
json_result_text_array(JsonResult *res, const char *key, const Datum *elems, int n)
{
	MemoryContext old = MemoryContextSwitchTo(res->cxt);
	JsonbValue	k;
	int			i;

	k.type = jbvString;
	k.val.string.val = pstrdup(key);
	k.val.string.len = strlen(key);
	pushJsonbValue(&res->state, WJB_KEY, &k);
	pushJsonbValue(&res->state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
	{
		JsonbValue	v;
		text	   *t = DatumGetTextPP(elems[i]);

		v.type = jbvString;
		v.val.string.val = VARDATA_ANY(t);
		v.val.string.len = VARSIZE_ANY_EXHDR(t);
		pushJsonbValue(&res->state, WJB_ELEM, &v);
	}
	pushJsonbValue(&res->state, WJB_END_ARRAY, NULL);
	MemoryContextSwitchTo(old);
}

/*
 * Add key: true or false.
 */
void
json_result_bool(JsonResult *res, const char *key, bool value)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = value;
	json_result_add(res, key, &v);
}

/*
 * Add key: document.
 */
void
json_result_jsonb(JsonResult *res, const char *key, Jsonb *doc)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &doc->root;
	v.val.binary.len = VARSIZE(doc) - VARHDRSZ;
	json_result_add(res, key, &v);
}

/*
 * The finished object as a jsonb datum in the result's context.
 */
Datum
json_result_end(JsonResult *res)
{
	MemoryContext old = MemoryContextSwitchTo(res->cxt);
	JsonbValue *v = pushJsonbValue(&res->state, WJB_END_OBJECT, NULL);
	Jsonb	   *result = JsonbValueToJsonb(v);

	MemoryContextSwitchTo(old);
	return JsonbPGetDatum(result);
}

/*
 * webhook_provider.c
 *		Payment providers: register one (shop_set_provider) and load one with
 *		its active secrets for verification.
 *
 * Secrets live only in shop.payment_provider_secret, readable by the
 * extension owner alone; nothing here logs or returns them.
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(shop_set_provider);

static SPIPlanPtr plan_provider;
static SPIPlanPtr plan_secrets;
static SPIPlanPtr plan_create_provider;
static SPIPlanPtr plan_lock_provider;
static SPIPlanPtr plan_update_provider;
static SPIPlanPtr plan_drop_secrets;
static SPIPlanPtr plan_retire_secrets;
static SPIPlanPtr plan_add_secret;
static SPIPlanPtr plan_purge_secrets;
static SPIPlanPtr plan_count_secrets;

/* Option keys every kind accepts. */
static const char *const common_option_keys[] = {
	"tolerance_seconds", "rotation_grace_seconds", NULL
};

/*
 * Load provider name with its active secrets, newest first; SH010 when no
 * such provider is registered.
 */
WebhookProvider *
webhook_load_provider(text *name)
{
	static const Oid argtypes[] = {TEXTOID};
	WebhookProvider *provider = palloc0(sizeof(WebhookProvider));
	Datum		values[1];
	bool		isnull;
	uint64		n;
	uint64		i;

	values[0] = PointerGetDatum(name);
	if (shop_exec(shop_plan(&plan_provider,
							"SELECT kind, options FROM shop.payment_provider"
							" WHERE name = $1",
							1, argtypes),
				  values, NULL, true, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_UNKNOWN_PROVIDER),
				 errmsg("payment provider \"%s\" is not registered",
						text_to_cstring(name)),
				 errhint("Register it with shop.shop_set_provider().")));
	provider->name = text_to_cstring(name);
	provider->kind = webhook_kind_by_name(shop_get_text(0, 1));
	if (provider->kind == NULL)
		elog(ERROR, "shop: provider \"%s\" has an unknown kind", provider->name);
	provider->options = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc,
														 2, &isnull));
	provider->tolerance = webhook_option_int(provider->options, "tolerance_seconds",
											 WEBHOOK_DEFAULT_TOLERANCE);

	n = shop_exec(shop_plan(&plan_secrets,
							"SELECT secret FROM shop.payment_provider_secret"
							" WHERE provider = $1"
							"   AND (retires_at IS NULL OR retires_at > now())"
							" ORDER BY added_at DESC, id DESC",
							1, argtypes),
				  values, NULL, true, 0);
	provider->nsecrets = (int) n;
	provider->secrets = palloc(sizeof(WebhookSecret) * Max(n, 1));
	for (i = 0; i < n; i++)
		provider->secrets[i] = provider->kind->parse_secret(shop_get_text(i, 1));
	return provider;
}

/*
 * Whether key is in the NULL-terminated list keys.
 */
static bool
key_in(const char *key, const char *const *keys)
{
	int			i;

	for (i = 0; keys[i] != NULL; i++)
		if (strcmp(keys[i], key) == 0)
			return true;
	return false;
}

/*
 * Check one option's value: integers in range, key paths and type lists
 * as arrays of non-empty strings.
 */
static void
check_option(const char *key, JsonbValue *v)
{
	bool		ok = false;

	if (strcmp(key, "auto_refund") == 0)
	{
		if (v->type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option auto_refund must be true or false")));
		return;
	}
	if (strcmp(key, "api_base") == 0)
	{
		char	   *url;
		const char *why;

		if (v->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option api_base must be a URL string")));
		url = pnstrdup(v->val.string.val, v->val.string.len);
		if ((why = endpoint_url_refusal(url)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option api_base refused: %s", why)));
		return;
	}

	if (strcmp(key, "tolerance_seconds") == 0 ||
		strcmp(key, "rotation_grace_seconds") == 0)
	{
		int64		n;
		int64		min = strcmp(key, "tolerance_seconds") == 0 ? 1 : 0;

		ok = webhook_json_amount(v, &n) && v->type == jbvNumeric &&
			n >= min && n <= PG_INT32_MAX;
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option %s must be a whole number of seconds between %lld and %d",
							key, (long long) min, PG_INT32_MAX)));
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		int			n = JsonContainerSize(v->val.binary.data);
		int			i;

		ok = n <= 16;
		for (i = 0; i < n && ok; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);

			ok = e->type == jbvString && e->val.string.len > 0;
		}
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option %s must be an array of at most 16 non-empty strings", key),
				 errhint("A path is the list of object keys, e.g. [\"data\", \"order_id\"].")));
}

/*
 * Refuse options that are not an object of known, well-formed keys for
 * kind: a typo must not silently fall back to a default.
 */
static void
check_options(Jsonb *options, const WebhookKind *kind)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a JSON object")));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			if (!key_in(key, common_option_keys) && !key_in(key, kind->option_keys))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown option \"%s\" for provider kind %s",
								key, kind->name)));
		}
		else if (tok == WJB_VALUE)
			check_option(key, &v);
	}
}

/*
 * shop_set_provider(name text, kind text, secret text, options jsonb)
 *		returns jsonb
 *
 * Registers or updates a provider.  secret becomes its newest secret; every
 * other secret stays valid for rotation_grace_seconds (default one day) and
 * is then dropped, so a secret is rotated by adding the new one and letting
 * the old one lapse.  Changing the kind drops all old secrets: they belong
 * to another scheme.  Returns the provider without its secrets.
 */
Datum
shop_set_provider(PG_FUNCTION_ARGS)
{
	static const Oid name_types[] = {TEXTOID};
	static const Oid upsert_types[] = {TEXTOID, TEXTOID, JSONBOID};
	static const Oid retire_types[] = {TEXTOID, TEXTOID, INT8OID};
	static const Oid secret_types[] = {TEXTOID, TEXTOID};
	text	   *name = shop_text_arg(fcinfo, 0, "name", true);
	text	   *kind_text = shop_text_arg(fcinfo, 1, "kind", true);
	text	   *secret = shop_text_arg(fcinfo, 2, "secret", true);
	char	   *kind_name_str = text_to_cstring(kind_text);
	MemoryContext outer = CurrentMemoryContext;
	JsonResult	res;
	const WebhookKind *kind = webhook_kind_by_name(kind_name_str);
	Jsonb	   *options;
	Datum		values[3];
	Datum		result;
	int64		grace;

	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown provider kind \"%s\"", kind_name_str),
				 errhint("Kinds are stripe, standard, mock and toss.")));
	options = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	if (options == NULL)
		options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	check_options(options, kind);
	kind->parse_secret(text_to_cstring(secret));
	grace = webhook_option_int(options, "rotation_grace_seconds",
							   WEBHOOK_DEFAULT_ROTATION_GRACE);

	SPI_connect();
	values[0] = PointerGetDatum(name);
	values[1] = CStringGetTextDatum(kind->name);
	values[2] = JsonbPGetDatum(options);

	/*
	 * Serialise every call for this name, the first ones too: the insert
	 * makes a concurrent first-time call wait on the unique key until we
	 * commit, after which it finds our row, locks it below and, seeing
	 * another kind, drops our secrets.  Locking only an existing row let two
	 * first-time calls with different kinds both keep their secrets.
	 */
	shop_exec(shop_plan(&plan_create_provider,
						"INSERT INTO shop.payment_provider (name, kind, options)"
						" VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
						3, upsert_types),
			  values, NULL, false, 0);
	if (shop_exec(shop_plan(&plan_lock_provider,
							"SELECT kind FROM shop.payment_provider"
							" WHERE name = $1 FOR UPDATE",
							1, name_types),
				  values, NULL, false, 0) == 1 &&
		strcmp(shop_get_text(0, 1), kind->name) != 0)
		shop_exec(shop_plan(&plan_drop_secrets,
							"DELETE FROM shop.payment_provider_secret WHERE provider = $1",
							1, name_types),
				  values, NULL, false, 0);

	shop_exec(shop_plan(&plan_update_provider,
						"UPDATE shop.payment_provider"
						"   SET kind = $2, options = $3, updated_at = now()"
						" WHERE name = $1",
						3, upsert_types),
			  values, NULL, false, 0);

	values[1] = PointerGetDatum(secret);
	values[2] = Int64GetDatum(grace);
	shop_exec(shop_plan(&plan_retire_secrets,
						"UPDATE shop.payment_provider_secret"
						"   SET retires_at = LEAST(COALESCE(retires_at, 'infinity'),"
						"                          now() + $3 * interval '1 second')"
						" WHERE provider = $1 AND secret <> $2",
						3, retire_types),
			  values, NULL, false, 0);
	shop_exec(shop_plan(&plan_add_secret,
						"INSERT INTO shop.payment_provider_secret (provider, secret)"
						" VALUES ($1, $2)"
						" ON CONFLICT (provider, secret) DO UPDATE"
						"   SET retires_at = NULL, added_at = now()",
						2, secret_types),
			  values, NULL, false, 0);
	shop_exec(shop_plan(&plan_purge_secrets,
						"DELETE FROM shop.payment_provider_secret"
						" WHERE provider = $1 AND retires_at <= now()",
						1, name_types),
			  values, NULL, false, 0);

	shop_exec(shop_plan(&plan_count_secrets,
						"SELECT pg_catalog.count(*) FROM shop.payment_provider_secret"
						" WHERE provider = $1",
						1, name_types),
			  values, NULL, false, 0);

	json_result_begin(&res, outer);
	json_result_text(&res, "name", text_to_cstring(name));
	json_result_text(&res, "kind", kind->name);
	json_result_jsonb(&res, "options", options);
	json_result_int(&res, "active_secrets", shop_get_int64(0, 1, NULL), false);
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

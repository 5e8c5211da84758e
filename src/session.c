/*
 * session.c
 *		Checkout sessions of released orders: close the payment path, and
 *		never lose a payment that slipped through it.
 *
 * When an order is released (cancelled, failed, expired) while a hosted
 * checkout of it is open, the buyer could still pay there.  The release
 * queues the session's expiry at the provider through the outbox (written
 * with the release, sent after it commits).  A provider that refuses
 * because the session has completed in the meantime (the buyer paid a
 * moment before) gets asked what happened (a fetch, also through the
 * outbox), and a paid answer is applied by the webhook's own rules
 * (webhook_apply_event): re-reserved and sold if the stock is still there,
 * else flagged and refunded.  So the release never swallows a payment.
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(shop_reconcile_payments);

static SPIPlanPtr plan_open_sessions;
static SPIPlanPtr plan_session_state;
static SPIPlanPtr plan_session_of;
static SPIPlanPtr plan_stale_sessions;
static SPIPlanPtr plan_session_by_key;
static SPIPlanPtr plan_insert_payment;
static SPIPlanPtr plan_reuse_open;
static SPIPlanPtr plan_open_of_order;
static SPIPlanPtr plan_complete_session;

/*
 * Queue a provider call about session row session_row: one at a time per
 * session, in the order queued.
 */
static bool
queue_session_call(const WebhookProvider *provider, int64 session_row,
				   const char *operation, const ProviderCall *call)
{
	return provider_queue_call(provider, operation, session_row, call,
							   psprintf("session:%lld", (long long) session_row));
}

/*
 * The orders were just released: queue the expiry of their open checkout
 * sessions.  Keeps the caller's SPI result.
 */
void
sessions_close(const int64 *order_ids, int norders)
{
	static const Oid argtypes[] = {INT8ARRAYOID};
	SPITupleTable *saved = SPI_tuptable;
	uint64		saved_n = SPI_processed;
	SPITupleTable *sessions;
	Datum		values[1];
	uint64		n;
	uint64		i;

	if (norders == 0 || !events_schema_ready())
		return;
	values[0] = shop_int64_array(order_ids, norders);
	n = shop_exec(shop_plan(&plan_open_sessions,
							"SELECT s.id, s.provider, s.session_id FROM shop.payment_session s"
							" WHERE s.order_id = ANY ($1) AND s.state = 'open'"
							" ORDER BY s.id",
							1, argtypes),
				  values, NULL, false, 0);
	sessions = SPI_tuptable;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		int64		row = DatumGetInt64(SPI_getbinval(sessions->vals[i], sessions->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(sessions->vals[i], sessions->tupdesc, 2);
		char	   *session_id = SPI_getvalue(sessions->vals[i], sessions->tupdesc, 3);
		WebhookProvider *provider = webhook_load_provider(cstring_to_text(name));
		ProviderCall call;

		if (provider->kind->api == NULL || provider->kind->api->expire == NULL)
			continue;
		memset(&call, 0, sizeof(call));
		provider->kind->api->expire(session_id, &call);
		queue_session_call(provider, row, "expire_checkout", &call);
	}
	SPI_tuptable = saved;
	SPI_processed = saved_n;
}

/*
 * The provider session id of session row id, or NULL.
 */
static char *
session_of(int64 id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(id);
	if (shop_exec(shop_plan(&plan_session_of,
							"SELECT session_id FROM shop.payment_session WHERE id = $1",
							1, argtypes),
				  values, NULL, true, 0) == 0)
		return NULL;
	return shop_get_text(0, 1);
}

static void
set_session_state(int64 id, const char *state)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID};
	Datum		values[2];

	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(state);
	shop_exec(shop_plan(&plan_session_state,
						"UPDATE shop.payment_session SET state = $2, updated_at = now()"
						" WHERE id = $1",
						2, argtypes),
			  values, NULL, false, 0);
}

/*
 * The worker's news of a session call (its recording transaction, SPI
 * connected).  An expiry that went through closes the session; one the
 * provider refused means the session is no longer open (most likely paid):
 * ask what became of it.  A fetched paid session is applied as its webhook
 * would be.
 */
void
session_record_answer(const char *operation, int64 session_row,
					  const WebhookProvider *provider, bool delivered, bool dead,
					  Jsonb *answer)
{
	const ProviderApi *api = provider->kind->api;
	char	   *session_id = session_of(session_row);
	WebhookEvent event;

	if (session_id == NULL || api == NULL)
		return;
	if (strcmp(operation, "expire_checkout") == 0)
	{
		if (delivered)
			set_session_state(session_row, "expired");
		else if (dead && api->fetch != NULL)
		{
			ProviderCall call;

			memset(&call, 0, sizeof(call));
			api->fetch(session_id, &call);
			queue_session_call(provider, session_row, "fetch_payment", &call);
		}
	}
	else if (strcmp(operation, "fetch_payment") == 0 && delivered && answer != NULL &&
			 api->fetch_result != NULL)
	{
		if (api->fetch_result(answer, &event))
		{
			set_session_state(session_row, "completed");
			webhook_apply_event(provider, &event, answer);
		}
	}
}

/*
 * Record payment_key as the payment of order_id at a provider without a
 * hosted checkout (Toss Payments: the buyer pays in its widget, the shop
 * learns the payment key from the success URL or a webhook): the order's
 * payment_session row, session_id = the payment key, url = the payment's
 * API resource; completed marks the row completed.  When the order has an
 * open row of another key, a trusted key (the provider answered about it)
 * replaces it (the buyer tried again); an untrusted one (named by an
 * unsigned webhook) leaves the row as it is and gets its id, so a forged
 * request cannot make reconciliation look at another payment.  Returns the
 * row's id, or 0 when the order has a completed row of another payment.
 * SPI connected; replaces the SPI result.
 */
int64
session_upsert_payment(const WebhookProvider *provider, int64 order_id,
					   const char *payment_key, bool completed, bool trusted)
{
	static const Oid key_types[] = {TEXTOID, TEXTOID};
	static const Oid row_types[] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	static const Oid complete_types[] = {INT8OID};
	static const Oid open_types[] = {INT8OID, TEXTOID};
	Datum		values[5];
	ProviderCall call;
	int64		row = 0;

	values[0] = CStringGetTextDatum(provider->name);
	values[1] = CStringGetTextDatum(payment_key);
	if (shop_exec(shop_plan(&plan_session_by_key,
							"SELECT id FROM shop.payment_session"
							" WHERE provider = $1 AND session_id = $2",
							2, key_types),
				  values, NULL, false, 0) == 1)
		row = shop_get_int64(0, 1, NULL);
	else
	{
		memset(&call, 0, sizeof(call));
		provider->kind->api->fetch(payment_key, &call);
		values[0] = Int64GetDatum(order_id);
		values[1] = CStringGetTextDatum(provider->name);
		values[2] = CStringGetTextDatum(payment_key);
		values[3] = CStringGetTextDatum(psprintf("%s%s", provider_api_base(provider), call.path));
		values[4] = CStringGetTextDatum(completed ? "completed" : "open");
		if (shop_exec(shop_plan(&plan_insert_payment,
								"INSERT INTO shop.payment_session"
								"  (order_id, provider, session_id, url, state)"
								" VALUES ($1, $2, $3, $4, $5)"
								" ON CONFLICT DO NOTHING RETURNING id",
								5, row_types),
					  values, NULL, false, 0) == 1 ||
			(trusted &&
			 shop_exec(shop_plan(&plan_reuse_open,
								 "UPDATE shop.payment_session"
								 "   SET session_id = $3, url = $4, state = $5, updated_at = now()"
								 " WHERE order_id = $1 AND provider = $2 AND state = 'open'"
								 " RETURNING id",
								 5, row_types),
					   values, NULL, false, 0) == 1) ||
			(!trusted &&
			 shop_exec(shop_plan(&plan_open_of_order,
								 "SELECT id FROM shop.payment_session"
								 " WHERE order_id = $1 AND provider = $2 AND state = 'open'",
								 2, open_types),
					   values, NULL, false, 0) == 1))
			return shop_get_int64(0, 1, NULL);
		return 0;
	}
	if (completed)
	{
		values[0] = Int64GetDatum(row);
		shop_exec(shop_plan(&plan_complete_session,
							"UPDATE shop.payment_session SET state = 'completed', updated_at = now()"
							" WHERE id = $1 AND state <> 'completed'",
							1, complete_types),
				  values, NULL, false, 0);
	}
	return row;
}

/*
 * Queue a fetch of payment_key, the payment of session row session_row
 * (SPI connected; replaces the SPI result).
 */
void
session_queue_fetch(const WebhookProvider *provider, int64 session_row,
					const char *payment_key)
{
	ProviderCall call;

	memset(&call, 0, sizeof(call));
	provider->kind->api->fetch(payment_key, &call);
	queue_session_call(provider, session_row, "fetch_payment", &call);
}

/*
 * shop_reconcile_payments(older_than interval, max_orders int) returns int
 *
 * Ask the providers about PENDING orders whose checkout has been open for
 * older_than without a payment event: a lost webhook must not leave a paid
 * customer's order to expire.  Queues one fetch per session (not while one
 * is still open); a paid answer is applied as the webhook would be, and the
 * webhook arriving later is answered "duplicate".  Returns how many were
 * queued.  The delivery worker runs it every shop.reconcile_interval.
 */
Datum
shop_reconcile_payments(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INTERVALOID, INT4OID};
	Datum		values[2];
	SPITupleTable *sessions;
	int32		max_orders;
	uint64		n;
	uint64		i;
	int32		queued = 0;
	int			guc_level;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("older_than and max_orders must not be null")));
	max_orders = PG_GETARG_INT32(1);
	if (max_orders <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_orders must be positive, not %d", max_orders)));
	SPI_connect();
	values[0] = PG_GETARG_DATUM(0);
	values[1] = Int32GetDatum(max_orders);

	/*
	 * Read the PENDING orders, then their sessions: never the sessions
	 * themselves.  A paid order's session stays 'open' (the provider
	 * closes it, we do not), so open sessions are nearly the whole history,
	 * while PENDING orders are the few in checkout now.  Both subqueries
	 * are fenced (OFFSET 0) so that the sessions can only be reached by
	 * order, and sequential scans are off for this one query so that
	 * statistics from when many orders were PENDING cannot turn the first
	 * step into a scan of every order: the partial index
	 * orders_pending_expiry_idx holds exactly the PENDING ones.  The two
	 * checks are probes per session: the payment log by order, the open
	 * outbox rows by the session's ordering key (queue_session_call), not
	 * a read of every open row.  (sql/reconcile_payments.sql counts what a
	 * call reads.)
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	n = shop_exec(shop_plan(&plan_stale_sessions,
							"SELECT s.id, s.provider, s.session_id"
							"  FROM (SELECT o.id FROM shop.orders o"
							"         WHERE o.status = 'PENDING' OFFSET 0) o,"
							"       LATERAL (SELECT s.id, s.provider, s.session_id, s.created_at"
							"                  FROM shop.payment_session s"
							"                 WHERE s.order_id = o.id AND s.state = 'open'"
							"                   AND s.created_at <= now() - $1 OFFSET 0) s"
							" WHERE NOT EXISTS (SELECT FROM shop.payment_log l"
							"                    WHERE l.order_id = o.id AND l.kind = 'paid')"
							"   AND NOT EXISTS (SELECT FROM shop.outbox x"
							"                    WHERE x.ordering_key = 'session:' || s.id"
							"                      AND x.state IN ('queued', 'in_flight', 'failed')"
							"                      AND x.provider = s.provider"
							"                      AND x.operation = 'fetch_payment'"
							"                      AND x.subject_id = s.id)"
							" ORDER BY s.created_at, s.id LIMIT $2",
							2, argtypes),
				  values, NULL, false, 0);
	AtEOXact_GUC(true, guc_level);
	sessions = SPI_tuptable;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		int64		row = DatumGetInt64(SPI_getbinval(sessions->vals[i], sessions->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(sessions->vals[i], sessions->tupdesc, 2);
		char	   *session_id = SPI_getvalue(sessions->vals[i], sessions->tupdesc, 3);
		WebhookProvider *provider = webhook_load_provider(cstring_to_text(name));
		ProviderCall call;

		if (provider->kind->api == NULL || provider->kind->api->fetch == NULL)
			continue;
		memset(&call, 0, sizeof(call));
		provider->kind->api->fetch(session_id, &call);
		/* not counted when this minute's fetch of it was queued already */
		if (queue_session_call(provider, row, "fetch_payment", &call))
			queued++;
	}
	SPI_finish();
	PG_RETURN_INT32(queued);
}

/*
 * refund.c
 *		Refunds: decided in a transaction, sent by the outbox worker, settled
 *		by the provider's answer.
 *
 * A refund is one row of shop.refund and one outbox row that carries the
 * provider call (built by the provider's kind, e.g. Stripe's POST
 * /v1/refunds) with the idempotency key "refund-<id>": whatever happens
 * between the call and the recording of its answer (a crash, a timeout
 * after the provider acted), sending it again refunds nothing twice.  The
 * worker hands the answer back here (refund_record_answer), in the
 * transaction that records the attempt.
 *
 * Who decides: shop_refund() (a person or the application), and the payment
 * webhook when money arrived for an order that cannot be sold and the
 * provider has auto_refund (webhook.c): that refund carries its review flag,
 * which the provider's confirmation resolves.
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_refund);

static SPIPlanPtr plan_insert_refund;
static SPIPlanPtr plan_paid_order;
static SPIPlanPtr plan_settled;
static SPIPlanPtr plan_refused;

/*
 * Write a refund and queue its call (SPI connected; replaces the SPI
 * result).  Returns the refund id.
 */
int64
refund_queue(const WebhookProvider *provider, int64 order_id, const char *payment_id,
			 int64 amount, const char *currency, const char *reason, int64 review_id)
{
	static const Oid refund_types[] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
	TEXTOID, INT8OID};
	const ProviderApi *api = provider_api(provider);
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	RefundRequest req;
	ProviderCall call;

	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(provider->name);
	values[2] = CStringGetTextDatum(payment_id);
	values[3] = Int64GetDatum(amount);
	values[4] = CStringGetTextDatum(currency);
	values[5] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[5] = reason ? ' ' : 'n';
	values[6] = Int64GetDatum(review_id);
	nulls[6] = review_id ? ' ' : 'n';
	shop_exec(shop_plan(&plan_insert_refund,
						"INSERT INTO shop.refund"
						"  (order_id, provider, payment_id, amount, currency, reason, review_id)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7)"
						" RETURNING id",
						7, refund_types),
			  values, nulls, false, 0);
	req.refund_id = shop_get_int64(0, 1, NULL);
	req.order_id = order_id;
	req.payment_id = (char *) payment_id;
	req.amount = amount;
	req.currency = (char *) currency;
	memset(&call, 0, sizeof(call));
	api->refund(&req, &call);

	provider_queue_call(provider, "refund", req.refund_id, &call,
						psprintf("refund:%lld", (long long) req.refund_id));
	return req.refund_id;
}

/*
 * The worker's news of a refund call: delivered (answer is the provider's
 * JSON), or given up (dead, with the provider's message or the transport
 * error).  Runs in the worker's recording transaction, SPI connected.
 */
void
refund_record_answer(int64 refund_id, const WebhookProvider *provider, bool delivered,
					 bool dead, Jsonb *answer, const char *error)
{
	static const Oid settled_types[] = {INT8OID, TEXTOID, BOOLOID};
	static const Oid refused_types[] = {INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(refund_id);
	if (delivered)
	{
		bool		succeeded = false;
		char	   *id = answer ? provider->kind->api->refund_result(answer, &succeeded) : NULL;

		values[1] = id ? CStringGetTextDatum(id) : (Datum) 0;
		nulls[1] = id ? ' ' : 'n';
		values[2] = BoolGetDatum(succeeded);
		/* the provider confirmed: the flag that asked for it is resolved */
		shop_exec(shop_plan(&plan_settled,
							"WITH r AS ("
							"  UPDATE shop.refund"
							"     SET provider_refund_id = $2, last_error = NULL,"
							"         state = CASE WHEN $3 THEN 'succeeded' ELSE state END,"
							"         updated_at = now()"
							"   WHERE id = $1"
							"  RETURNING review_id, state)"
							" UPDATE shop.order_review v"
							"    SET resolved_at = now(), resolution = 'refunded automatically'"
							"   FROM r"
							"  WHERE v.id = r.review_id AND r.state = 'succeeded'"
							"    AND v.resolved_at IS NULL",
							3, settled_types),
				  values, nulls, false, 0);
	}
	else if (dead)
	{
		values[1] = CStringGetTextDatum(error ? error : "the provider refused the refund");
		shop_exec(shop_plan(&plan_refused,
							"UPDATE shop.refund"
							"   SET state = 'failed', last_error = $2, updated_at = now()"
							" WHERE id = $1 AND state = 'requested'",
							2, refused_types),
				  values, NULL, false, 0);
	}
}

/*
 * shop_refund(order_id bigint, amount bigint, reason text) returns jsonb
 *
 * Refunds (part of) a PAID order's payment: the provider is the one whose
 * event paid it.  Refunds already requested or made count against what is
 * left; failed ones do not.
 */
Datum
shop_refund(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *reason = shop_text_arg(fcinfo, 2, "reason", false);
	MemoryContext outer = CurrentMemoryContext;
	LockedOrder order;
	WebhookProvider *provider;
	Datum		values[1];
	char	   *provider_name;
	char	   *currency;
	int64		left;
	int64		amount;
	int64		refund_id;
	JsonResult	res;
	Datum		result;

	SPI_connect();
	if (!order_lock(order_id, &order))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	if (order.status != ORDER_PAID || order.payment_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s and has no payment to refund",
						(long long) order_id, order_status_name(order.status))));
	values[0] = Int64GetDatum(order_id);
	shop_exec(shop_plan(&plan_paid_order,
						"SELECT (SELECT l.provider FROM shop.payment_log l"
						"         WHERE l.order_id = o.id AND l.payment_id = o.external_payment_id"
						"         ORDER BY l.id LIMIT 1),"
						"       o.amount - COALESCE((SELECT sum(r.amount)::bigint FROM shop.refund r"
						"                             WHERE r.order_id = o.id AND r.state <> 'failed'"
						"                               AND r.payment_id = o.external_payment_id), 0),"
						"       o.currency::text"
						"  FROM shop.orders o WHERE o.id = $1",
						1, argtypes),
			  values, NULL, false, 0);
	provider_name = shop_get_text(0, 1);
	left = shop_get_int64(0, 2, NULL);
	currency = shop_get_text(0, 3);
	if (provider_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("no payment provider is known for the payment of order %lld",
						(long long) order_id),
				 errdetail("It was confirmed by a direct call, not by a provider's event.")));
	amount = PG_ARGISNULL(1) ? left : PG_GETARG_INT64(1);
	if (amount <= 0 || amount > left)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund amount must be between 1 and %lld (what is left of the payment)",
						(long long) left)));
	provider = webhook_load_provider(cstring_to_text(provider_name));
	refund_id = refund_queue(provider, order_id, order.payment_id, amount, currency,
							 reason ? text_to_cstring(reason) : NULL, 0);

	json_result_begin(&res, outer);
	json_result_int(&res, "refund_id", refund_id, false);
	json_result_int(&res, "order_id", order_id, false);
	json_result_text(&res, "provider", provider->name);
	json_result_text(&res, "state", "requested");
	json_result_int(&res, "amount", amount, false);
	json_result_text(&res, "currency", currency);
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

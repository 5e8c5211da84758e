/*
 * confirm.c
 *		shop_confirm_payment: capture a payment of a confirm-style provider
 *		(Toss Payments, provider_toss.c) for the order it was made for.
 *
 * The buyer authorised the payment in the provider's widget and came back
 * to the application's success URL with the payment key and the amount;
 * nothing is captured until this call confirms it.  The rules:
 *	1. before any call, without taking a lock: the amount must be the
 *	   order's snapshot (SH015), and the order must be one the webhook's
 *	   late-payment rules would sell: PENDING (also past expires_at but not
 *	   swept yet: its stock is still held), or released by time or by a
 *	   failed attempt (expired, payment_failed) with every line's stock
 *	   available right now, so that it can be reserved again.  Anything
 *	   else (cancelled on purpose, PAID by another payment, or released and
 *	   its stock gone) is refused with SH004 and nothing is captured, so
 *	   there is nothing to refund.  An order already PAID by this payment
 *	   key is answered as confirmed without calling again (a reloaded
 *	   success page).  The stock check takes no lock: if the stock goes
 *	   between it and step 3, step 3's rules refund the capture;
 *	2. the confirm is sent synchronously (provider_call_answer: hard timeout
 *	   shop.provider_timeout) while this backend holds no row lock, so no
 *	   transaction waits on the network.  Its Idempotency-Key derives from
 *	   the order and the payment key: a retry after a timeout is the same
 *	   call, and the provider answers it with what it did the first time;
 *	3. a captured (DONE) answer is applied, with the order row locked only
 *	   from then on, through the webhook's own rules (webhook_apply_event,
 *	   order_confirm_locked with the amount and currency checked): PENDING
 *	   becomes PAID; if the order was released while the call was in flight,
 *	   it is sold again when its stock is still there (paid_after_release),
 *	   else flagged refund_required and the capture is cancelled through the
 *	   outbox (refund.c): money is never kept for stock the shop does not
 *	   have.  The payment is recorded in payment_log as event
 *	   "fetched:<payment key>", the same id a later webhook-triggered fetch
 *	   of it gets, so it is applied once;
 *	4. a refusal (4xx) changes nothing and raises SH024 with the provider's
 *	   code; ALREADY_PROCESSED_PAYMENT (confirmed before under another key)
 *	   fetches the payment and applies it as in 3; a timeout is SH020 and a
 *	   5xx SH022, the order stays PENDING and calling again is safe.
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_confirm_payment);

/* Longest payment key accepted (Toss: at most 200 characters). */
#define CONFIRM_MAX_KEY_LEN	200

static SPIPlanPtr plan_confirm_order;

/* The order as read before the call (no lock). */
typedef struct ConfirmOrder
{
	char	   *status;
	int64		amount;
	char	   *payment_id;
	bool		expired;
	char	   *expires_at;
	char	   *reason;			/* status_reason, NULL for none */
	bool		stock_there;	/* every line could be reserved now */
} ConfirmOrder;

static void
read_confirm_order(int64 order_id, ConfirmOrder *order)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_confirm_order,
							"SELECT o.status, o.amount, o.external_payment_id,"
							"       o.expires_at IS NOT NULL AND o.expires_at <= now(),"
							"       o.expires_at::text, o.status_reason,"
							"       NOT EXISTS (SELECT FROM shop.order_item i"
							"                     JOIN shop.sku_stock s ON s.sku_id = i.sku_id"
							"                    WHERE i.order_id = o.id"
							"                      AND NOT (s.sellable AND s.available >= i.qty))"
							"  FROM shop.orders o WHERE o.id = $1",
							1, argtypes),
				  values, NULL, true, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	order->status = shop_get_text(0, 1);
	order->amount = shop_get_int64(0, 2, NULL);
	order->payment_id = shop_get_text(0, 3);
	order->expired = shop_get_bool(0, 4);
	order->expires_at = shop_get_text(0, 5);
	order->reason = shop_get_text(0, 6);
	order->stock_there = shop_get_bool(0, 7);
}

/*
 * The result object.
 */
static Datum
confirm_result(MemoryContext outer, const char *result, int64 order_id,
			   const char *status, const char *payment_key, const char *review,
			   const char *provider_status)
{
	JsonResult	res;

	json_result_begin(&res, outer);
	json_result_text(&res, "result", result);
	json_result_int(&res, "order_id", order_id, false);
	json_result_text(&res, "order_status", status);
	json_result_text(&res, "payment_key", payment_key);
	if (review != NULL)
		json_result_text(&res, "review", review);
	if (provider_status != NULL)
		json_result_text(&res, "provider_status", provider_status);
	return json_result_end(&res);
}

/*
 * Apply the provider's Payment object for payment_key (the confirm's answer
 * or a fetch) to order_id; returns the result object.
 */
static Datum
apply_payment(MemoryContext outer, const WebhookProvider *provider, int64 order_id,
			  const char *payment_key, Jsonb *payment)
{
	static const char *const status_path[] = {"status"};
	const ProviderApi *api = provider->kind->api;
	char	   *order_ref = psprintf("%lld", (long long) order_id);
	WebhookEvent event;
	WebhookOutcome out;

	if (!api->fetch_result(payment, &event))
	{
		/* not captured (e.g. a virtual account WAITING_FOR_DEPOSIT): the
		 * payment stays the order's open one; its webhook or reconciliation
		 * fetches it again */
		char	   *status = webhook_json_string(webhook_json_get(payment, status_path, 1), NULL);

		if (session_upsert_payment(provider, order_id, payment_key, false, true) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
					 errmsg("order %lld already has another completed payment", (long long) order_id)));
		return confirm_result(outer, "pending", order_id, "PENDING", payment_key, NULL,
							  status ? status : "unknown");
	}
	if (event.order_ref == NULL || strcmp(event.order_ref, order_ref) != 0 ||
		strcmp(event.payment_id, payment_key) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_FAILED),
				 errmsg("payment provider \"%s\" answered about another payment or order",
						provider->name),
				 errdetail("Asked for payment %s of order %lld.", payment_key, (long long) order_id)));
	session_upsert_payment(provider, order_id, payment_key, true, true);
	webhook_apply_event_outcome(provider, &event, payment, &out);
	if (out.review != NULL)
		return confirm_result(outer, out.review, order_id, out.status, payment_key,
							  out.review, NULL);
	/* PAID now, or already (the same payment applied by a fetch first) */
	if (out.status != NULL && strcmp(out.status, "PAID") == 0)
		return confirm_result(outer, "confirmed", order_id, "PAID", payment_key, NULL, NULL);
	return confirm_result(outer, out.result, order_id, out.status, payment_key, NULL, NULL);
}

/*
 * shop_confirm_payment(provider text, order_id bigint, payment_key text,
 *						amount bigint) returns jsonb
 */
Datum
shop_confirm_payment(PG_FUNCTION_ARGS)
{
	text	   *name = shop_text_arg(fcinfo, 0, "provider", true);
	int64		order_id = shop_int64_arg(fcinfo, 1, "order_id");
	char	   *payment_key = text_to_cstring(shop_text_arg(fcinfo, 2, "payment_key", true));
	MemoryContext outer = CurrentMemoryContext;
	WebhookProvider *provider;
	const ProviderApi *api;
	ConfirmOrder order;
	ConfirmRequest req;
	ProviderCall call;
	Jsonb	   *answer;
	long		status;
	char	   *body;
	char	   *code;
	int64		amount;
	const char *p;
	Datum		result;

	amount = shop_int64_arg(fcinfo, 3, "amount");
	if (*payment_key == '\0' || strlen(payment_key) > CONFIRM_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payment_key must be 1 to %d characters", CONFIRM_MAX_KEY_LEN)));
	for (p = payment_key; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("payment_key must be printable ASCII without spaces")));

	SPI_connect();
	provider = webhook_load_provider(name);
	api = provider_api(provider);
	if (api->confirm == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("payment providers of kind %s are not confirmed by the shop",
						provider->kind->name),
				 errhint("Their payments arrive by webhook; shop_confirm_payment is for confirm-style kinds (toss).")));

	/* 1. the order, read without a lock */
	read_confirm_order(order_id, &order);
	if (strcmp(order.status, "PAID") == 0 && order.payment_id != NULL &&
		strcmp(order.payment_id, payment_key) == 0)
	{
		result = confirm_result(outer, "confirmed", order_id, "PAID", payment_key, NULL, NULL);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	if (strcmp(order.status, "PENDING") != 0)
	{
		OrderStatus st = order_status_from_name(order.status);
		OrderReason why = order.reason ? order_reason_from_name(order.reason) : REASON_NONE;

		if (!order_status_released(st) || !order_reason_resellable(why))
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
					 errmsg("order %lld is %s%s%s; its payment is not confirmed",
							(long long) order_id, order.status,
							order.reason ? " for reason " : "", order.reason ? order.reason : ""),
					 errdetail("Nothing was sent to the provider: the payment stays uncaptured.")));
		if (!order.stock_there)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
					 errmsg("order %lld was released at %s and its stock is gone",
							(long long) order_id, order.expires_at ? order.expires_at : "?"),
					 errdetail("Nothing was sent to the provider: the payment stays uncaptured.")));
		/* released by time, stock still there: step 3 reserves it again */
	}
	order_refuse_nothing_to_pay(order_id, order.amount);
	if (amount != order.amount)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PAYMENT_MISMATCH),
				 errmsg("payment amount %lld is not the amount %lld of order %lld",
						(long long) amount, (long long) order.amount, (long long) order_id),
				 errdetail("Nothing was sent to the provider: the payment stays uncaptured.")));

	/* 2. the call, no row lock held */
	req.order_id = order_id;
	req.payment_key = payment_key;
	req.amount = amount;
	memset(&call, 0, sizeof(call));
	api->confirm(&req, &call);
	answer = provider_call_answer(provider, &call, &status, &body);

	/* 3. captured */
	if (status >= 200 && status < 300 && answer != NULL)
	{
		result = apply_payment(outer, provider, order_id, payment_key, answer);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	/* 4. refused, or failed */
	code = api->error_code ? api->error_code(answer) : NULL;
	if (status >= 400 && status < 500 && code != NULL &&
		strcmp(code, "ALREADY_PROCESSED_PAYMENT") == 0)
	{
		/* confirmed before (under another key): what is it now? */
		memset(&call, 0, sizeof(call));
		api->fetch(payment_key, &call);
		answer = provider_call_sync(provider, &call);
		result = apply_payment(outer, provider, order_id, payment_key, answer);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	if (status >= 400 && status < 500 && status != 409 && status != 429)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_DECLINED),
				 errmsg("payment provider \"%s\" refused to confirm payment %s of order %lld (HTTP %ld)",
						provider->name, payment_key, (long long) order_id, status),
				 errdetail("%s", api->error_message(answer) ? api->error_message(answer)
						   : "The provider gave no message."),
				 errhint("Nothing was captured and the order is still PENDING.")));
	ereport(ERROR,
			(errcode(status == 409 || status == 429 ? ERRCODE_SHOP_PROVIDER_UNREACHABLE
					 : ERRCODE_SHOP_PROVIDER_FAILED),
			 errmsg("payment provider \"%s\" could not confirm payment %s now (HTTP %ld)",
					provider->name, payment_key, status),
			 errdetail("%s", api->error_message(answer) ? api->error_message(answer)
					   : "The provider gave no message."),
			 errhint("The order is still PENDING; calling again is safe (the request is idempotent).")));
	PG_RETURN_NULL();			/* not reached */
}

/*
 * order_state.c
 *		Settle a PENDING order: paid (confirm) or given up (release).
 *
 * Both lock the order row first and then its SKUs in ascending order
 * (settle.c).  Both are idempotent: repeating the transition that already
 * happened returns the order unchanged; the opposite transition is refused
 * with SH004 and changes nothing, so a paid order is never released and a
 * released order is never confirmed.
 */
#include "shop.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_confirm_paid);
PG_FUNCTION_INFO_V1(shop_release);

static SPIPlanPtr plan_lock_order;
static SPIPlanPtr plan_order_summary;
static SPIPlanPtr plan_mark_paid;
static SPIPlanPtr plan_mark_released;

/*
 * Lock the order row and return its status (in the SPI context).
 */
char *
order_lock_status(int64 order_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_lock_order,
							"SELECT status FROM shop.orders WHERE id = $1 FOR UPDATE",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	return shop_get_text(0, 1);
}

/*
 * Leave the order's summary as the SPI result.
 */
static void
select_summary(int64 order_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(order_id);
	shop_exec(shop_plan(&plan_order_summary,
						"SELECT id, status, amount, currency, expires_at"
						"  FROM shop.orders WHERE id = $1",
						1, argtypes),
			  values, NULL, false, 0);
}

/*
 * Consume or release the locked order's active reservations.
 */
void
order_settle(int64 order_id, bool consume)
{
	SkuDelta   *deltas;
	int			ndeltas;

	deltas = settle_mark(&order_id, 1, consume, &ndeltas);
	settle_apply(deltas, ndeltas, consume);
}

/*
 * shop_confirm_paid(order_id bigint, external_payment_id text)
 *		returns order_summary
 */
Datum
shop_confirm_paid(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *payment_id = shop_text_arg(fcinfo, 1, "external_payment_id", true);
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[2];
	char	   *status;
	Datum		result;

	SPI_connect();
	status = order_lock_status(order_id);
	if (strcmp(status, "PAID") == 0)
		select_summary(order_id);
	else if (strcmp(status, "CANCELLED") == 0 || strcmp(status, "FAILED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s and cannot be confirmed",
						(long long) order_id, status),
				 errdetail("Its reserved stock was already given back."),
				 errhint("Refund the payment, or re-reserve through the payment webhook.")));
	else
	{
		order_settle(order_id, true);
		values[0] = Int64GetDatum(order_id);
		values[1] = PointerGetDatum(payment_id);
		shop_exec(shop_plan(&plan_mark_paid,
							"UPDATE shop.orders"
							"   SET status = 'PAID', external_payment_id = $2,"
							"       status_reason = NULL, updated_at = now()"
							" WHERE id = $1"
							" RETURNING id, status, amount, currency, expires_at",
							2, argtypes),
				  values, NULL, false, 0);
	}
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_release(order_id bigint, reason text) returns order_summary
 *
 * reason 'payment_failed' ends the order FAILED, any other CANCELLED.
 */
Datum
shop_release(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *reason = shop_text_arg(fcinfo, 1, "reason", true);
	bool		failed = strcmp(text_to_cstring(reason), "payment_failed") == 0;
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[3];
	char	   *status;
	Datum		result;

	SPI_connect();
	status = order_lock_status(order_id);
	if (strcmp(status, "CANCELLED") == 0 || strcmp(status, "FAILED") == 0)
		select_summary(order_id);
	else if (strcmp(status, "PAID") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is PAID and cannot be released",
						(long long) order_id),
				 errhint("Refund the payment instead; stock of a paid order is sold.")));
	else
	{
		order_settle(order_id, false);
		values[0] = Int64GetDatum(order_id);
		values[1] = CStringGetTextDatum(failed ? "FAILED" : "CANCELLED");
		values[2] = PointerGetDatum(reason);
		shop_exec(shop_plan(&plan_mark_released,
							"UPDATE shop.orders"
							"   SET status = $2, status_reason = $3, updated_at = now()"
							" WHERE id = $1"
							" RETURNING id, status, amount, currency, expires_at",
							3, argtypes),
				  values, NULL, false, 0);
	}
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

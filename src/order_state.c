/*
 * order_state.c
 *		Lock an order and move it along: confirm (paid) or release.
 *
 * Every transition locks the order row first and then its SKUs in
 * ascending order (settle.c).  Every transition is idempotent: repeating
 * the one that already happened returns the order unchanged; the opposite
 * one is refused with SH004 and changes nothing, so a paid order is never
 * released and a released order is never confirmed.
 *
 * There is one confirm: shop_confirm_paid() in both forms and the payment
 * webhook (webhook.c) lock with order_lock(), compare the payment with
 * order_payment_matches() and sell with order_confirm_locked().  One rule
 * for a payment that arrives for an order already PAID: by the same
 * payment it changes nothing; by another payment it is a double payment
 * that must be refunded (the SQL functions raise SH016, the webhook, which
 * must answer 200, flags the order refund_required).  An order with
 * nothing to pay is sold by shop_confirm_free() through the same
 * order_confirm_locked(), with no payment.
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_confirm_paid);
PG_FUNCTION_INFO_V1(shop_confirm_paid_checked);
PG_FUNCTION_INFO_V1(shop_release);
PG_FUNCTION_INFO_V1(shop_confirm_free);

static SPIPlanPtr plan_lock_order;
static SPIPlanPtr plan_order_summary;
static SPIPlanPtr plan_mark_paid;
static SPIPlanPtr plan_mark_released;

/*
 * Lock order_id and read what the transitions decide on; false when there
 * is no such order.  Strings are in the SPI context.
 */
bool
order_lock(int64 order_id, LockedOrder *order)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_lock_order,
							"SELECT status, status_reason, amount, currency::text,"
							"       external_payment_id"
							"  FROM shop.orders WHERE id = $1 FOR UPDATE",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		return false;
	order->id = order_id;
	order->status = order_status_from_name(shop_get_text(0, 1));
	order->reason = order_reason_from_name(shop_get_text(0, 2));
	order->amount = shop_get_int64(0, 3, NULL);
	strlcpy(order->currency, shop_get_text(0, 4), sizeof(order->currency));
	order->payment_id = shop_get_text(0, 5);
	return true;
}

/*
 * order_lock() for an order the caller names: P0002 when it does not exist.
 */
static void
lock_named_order(int64 order_id, LockedOrder *order)
{
	if (!order_lock(order_id, order))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
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
						"SELECT " SHOP_ORDER_SUMMARY " FROM shop.orders WHERE id = $1",
						1, argtypes),
			  values, NULL, false, 0);
}

/*
 * Whether a payment of amount in currency (any case) is exactly the
 * order's snapshot; if not, *why says what differs.
 */
bool
order_payment_matches(const LockedOrder *order, bool has_amount, int64 amount,
					  const char *currency, char **why)
{
	if (!has_amount || currency == NULL)
	{
		*why = psprintf("the payment carries no %s; the order is %lld %s",
						!has_amount ? "amount" : "currency",
						(long long) order->amount, order->currency);
		return false;
	}
	if (amount != order->amount || strlen(currency) != 3 ||
		pg_strcasecmp(currency, order->currency) != 0)
	{
		*why = psprintf("paid %lld %s, the order is %lld %s",
						(long long) amount, currency,
						(long long) order->amount, order->currency);
		return false;
	}
	return true;
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
 * Sell a locked order whose lines are reserved: consume the reservations
 * and mark it PAID (event order.paid).  Leaves the order's summary as the
 * SPI result.
 */
void
order_confirm_locked(int64 order_id, const char *payment_id, OrderReason reason)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	const char *reason_name = order_reason_name(reason);

	order_settle(order_id, true);
	values[0] = Int64GetDatum(order_id);
	values[1] = payment_id ? CStringGetTextDatum(payment_id) : (Datum) 0;
	nulls[1] = payment_id ? ' ' : 'n';
	values[2] = reason_name ? CStringGetTextDatum(reason_name) : (Datum) 0;
	nulls[2] = reason_name ? ' ' : 'n';
	shop_exec(shop_plan(&plan_mark_paid,
						"UPDATE shop.orders"
						"   SET status = 'PAID', external_payment_id = $2,"
						"       status_reason = $3, updated_at = now()"
						" WHERE id = $1"
						" RETURNING " SHOP_ORDER_SUMMARY,
						3, argtypes),
			  values, nulls, false, 0);
	events_emit_orders("order.paid", &order_id, 1, NULL);
}

/*
 * Give a locked PENDING order's stock back and end it as the reason says
 * (event order.cancelled or order.failed).  Leaves the order's summary as
 * the SPI result.
 */
void
order_release_locked(int64 order_id, OrderReason reason)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];

	order_settle(order_id, false);
	/* after the SKUs: coupon rows are locked last (coupon.c) */
	coupons_release(&order_id, 1);
	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(order_status_name(order_release_status(reason)));
	values[2] = CStringGetTextDatum(order_reason_name(reason));
	shop_exec(shop_plan(&plan_mark_released,
						"UPDATE shop.orders"
						"   SET status = $2, status_reason = $3, updated_at = now()"
						" WHERE id = $1"
						" RETURNING " SHOP_ORDER_SUMMARY,
						3, argtypes),
			  values, NULL, false, 0);
	events_emit_orders(events_release_type(reason), &order_id, 1, NULL);
	sessions_close(&order_id, 1);
}

/*
 * Both forms of shop_confirm_paid: with check, the payment's amount and
 * currency (arguments 2 and 3) must be the order's snapshot (SH015).
 */
static Datum
confirm_paid(FunctionCallInfo fcinfo, bool check)
{
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	char	   *payment_id = text_to_cstring(shop_text_arg(fcinfo, 1,
														   "external_payment_id",
														   true));
	int64		amount = check ? shop_int64_arg(fcinfo, 2, "amount") : 0;
	char	   *currency = check ? text_to_cstring(shop_text_arg(fcinfo, 3,
																 "currency", true))
		: NULL;
	MemoryContext outer = CurrentMemoryContext;
	LockedOrder order;
	Datum		result;
	char	   *why;

	SPI_connect();
	lock_named_order(order_id, &order);
	if (order.status == ORDER_PAID)
	{
		if (order.payment_id != NULL && strcmp(order.payment_id, payment_id) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_PAID_TWICE),
					 errmsg("order %lld is already PAID by another payment",
							(long long) order_id),
					 errdetail("It was paid by payment \"%s\"; payment \"%s\" is a second payment.",
							   order.payment_id, payment_id),
					 errhint("Refund the second payment; the order is not changed.")));
		select_summary(order_id);
	}
	else if (order_status_released(order.status))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s and cannot be confirmed",
						(long long) order_id, order_status_name(order.status)),
				 errdetail("Its reserved stock was already given back."),
				 errhint("Refund the payment, or re-reserve through the payment webhook.")));
	else
	{
		if (check && !order_payment_matches(&order, true, amount, currency, &why))
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_PAYMENT_MISMATCH),
					 errmsg("payment does not match order %lld", (long long) order_id),
					 errdetail("%s.", why),
					 errhint("Nothing was confirmed; refund or investigate the payment.")));
		order_confirm_locked(order_id, payment_id, REASON_NONE);
	}
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_confirm_paid(order_id bigint, external_payment_id text)
 *		returns order_summary
 */
Datum
shop_confirm_paid(PG_FUNCTION_ARGS)
{
	return confirm_paid(fcinfo, false);
}

/*
 * shop_confirm_paid(order_id bigint, external_payment_id text,
 *					 amount bigint, currency text) returns order_summary
 */
Datum
shop_confirm_paid_checked(PG_FUNCTION_ARGS)
{
	return confirm_paid(fcinfo, true);
}

/*
 * Before a provider call for an order: no provider takes a payment of 0
 * (Stripe refuses such a session, Toss such a confirm), so an order with
 * nothing to pay is refused with SH018 before anything is sent; it is sold
 * by shop_confirm_free() instead.
 */
void
order_refuse_nothing_to_pay(int64 order_id, int64 amount)
{
	if (amount == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOTHING_TO_PAY),
				 errmsg("order %lld has nothing to pay", (long long) order_id),
				 errdetail("Nothing was sent to the provider."),
				 errhint("Confirm it with shop.shop_confirm_free().")));
}

/*
 * shop_confirm_free(order_id bigint) returns order_summary
 *
 * A PENDING order with nothing to pay (amount 0: a coupon covered every
 * line, and no shipping or tax is due on top) is sold without a payment:
 * no provider takes a payment of 0 (shop_start_payment refuses it with
 * SH018), so without this the order could only wait for its hold to run
 * out.  The amount is read with the order row locked, in the lock that the
 * sale keeps, so a shipping change (which locks the row too) cannot add an
 * amount between the check and the sale.  The order is PAID with no
 * external_payment_id.  Idempotent: a PAID order of amount 0 is returned
 * unchanged; an order with an amount is refused (SH017), a released one
 * too (SH004), and nothing changes.
 */
Datum
shop_confirm_free(PG_FUNCTION_ARGS)
{
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	MemoryContext outer = CurrentMemoryContext;
	LockedOrder order;
	Datum		result;

	SPI_connect();
	lock_named_order(order_id, &order);
	if (order_status_released(order.status))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s and cannot be confirmed",
						(long long) order_id, order_status_name(order.status)),
				 errdetail("Its reserved stock was already given back.")));
	if (order.amount != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_AMOUNT_DUE),
				 errmsg("order %lld has %lld %s to pay",
						(long long) order_id, (long long) order.amount, order.currency),
				 errdetail("Only an order whose amount is 0 is confirmed without a payment."),
				 errhint("Take the payment with shop.shop_start_payment() or shop.shop_confirm_payment().")));
	if (order.status == ORDER_PAID)
		select_summary(order_id);
	else
		order_confirm_locked(order_id, NULL, REASON_NONE);
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_release(order_id bigint, reason text) returns order_summary
 *
 * reason is one of the release reasons (order_status.c); payment_failed
 * ends the order FAILED, the others CANCELLED.
 */
Datum
shop_release(PG_FUNCTION_ARGS)
{
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	OrderReason reason = order_release_reason_arg(shop_text_arg(fcinfo, 1,
																"reason", true));
	MemoryContext outer = CurrentMemoryContext;
	LockedOrder order;
	Datum		result;

	SPI_connect();
	lock_named_order(order_id, &order);
	if (order_status_released(order.status))
		select_summary(order_id);
	else if (order.status == ORDER_PAID)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is PAID and cannot be released",
						(long long) order_id),
				 errhint("Refund the payment instead; stock of a paid order is sold.")));
	else
		order_release_locked(order_id, reason);
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shipping.c
 *		Shipping and tax of orders, and their fulfilment.
 *
 * The money rules (shipping cost, the tax rounding rule) live in SQL
 * (src/sql/27_shipping_tax.sql: shop.shipping_tax_quote, shared with the
 * preview; shop.order_reprice writes them to an order).  Here are the
 * state changes:
 *
 *	- shop_set_shipping: a PENDING order's method and address, re-priced
 *	  under the order's row lock.  Refused once a checkout session is open
 *	  at a provider (the provider holds the old amount).  A confirmation
 *	  locks the same row first, so a re-price never lands on a PAID order.
 *	- shop_ship, shop_mark_delivered: one UPDATE each that checks the
 *	  fulfilment state and moves it at once; when it changes nothing, a
 *	  read tells an idempotent repeat (the same answer again) from a wrong
 *	  transition (SH035, SH036).  Two concurrent shop_ship calls: the second
 *	  UPDATE waits for the first, re-checks the new row and finds it
 *	  SHIPPED, so exactly one ships.
 *
 * fulfilment_status is a generated column of shop.orders (READY when PAID
 * with an address, SHIPPED once shipped_at is set, DELIVERED once
 * delivered_at is), so the payment paths need not know about it.
 */
#include "shop.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_set_shipping);
PG_FUNCTION_INFO_V1(shop_ship);
PG_FUNCTION_INFO_V1(shop_mark_delivered);

static SPIPlanPtr plan_reprice;
static SPIPlanPtr plan_lock_pending;
static SPIPlanPtr plan_open_session;
static SPIPlanPtr plan_ship;
static SPIPlanPtr plan_ship_lock;
static SPIPlanPtr plan_refunded;
static SPIPlanPtr plan_deliver;
static SPIPlanPtr plan_fulfilment;

/* The columns of type shop.fulfilment_summary, in order. */
#define FULFILMENT_SUMMARY \
	"id, status, fulfilment_status, carrier, tracking_no, shipped_at, delivered_at"

/*
 * The shipping_method and ship_to arguments (argno, argno + 1) of order
 * creation, NULL when absent or NULL; false when both are.
 */
bool
shipping_args(FunctionCallInfo fcinfo, int argno, text **method, Jsonb **ship_to)
{
	*method = PG_NARGS() > argno
		? shop_text_arg(fcinfo, argno, "shipping_method", false) : NULL;
	*ship_to = PG_NARGS() > argno + 1 && !PG_ARGISNULL(argno + 1)
		? PG_GETARG_JSONB_P(argno + 1) : NULL;
	if ((*method != NULL || *ship_to != NULL) && !coupons_schema_ready())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("shipping needs the shop 0.2 schema"),
				 errhint("Run ALTER EXTENSION shop UPDATE.")));
	return *method != NULL || *ship_to != NULL;
}

/*
 * Price shipping and tax of order_id (its lines and coupon settled) and set
 * its amount; returns its summary as the function's result datum.
 */
Datum
shipping_reprice(FunctionCallInfo fcinfo, MemoryContext outer, int64 order_id,
				 text *method, Jsonb *ship_to)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, JSONBOID};
	Datum		values[3];
	char		nulls[3] = {' ', method ? ' ' : 'n', ship_to ? ' ' : 'n'};

	values[0] = Int64GetDatum(order_id);
	values[1] = PointerGetDatum(method);
	values[2] = PointerGetDatum(ship_to);
	shop_exec(shop_plan(&plan_reprice,
						"SELECT r.id, r.status, r.amount, r.currency, r.expires_at"
						"  FROM shop.order_reprice($1, $2, $3) r",
						3, argtypes),
			  values, nulls, false, 0);
	return shop_row_datum(fcinfo, outer, 0);
}

/*
 * shop_set_shipping(order_id bigint, method text, address jsonb)
 *		returns order_summary
 *
 * The order row is locked first (the confirmation paths lock it too, so a
 * re-price never lands on an order that became PAID); the open-session
 * check runs after the lock, in a statement of its own, so it sees every
 * session committed before the lock was granted.  Not covered: a
 * shop_start_payment that read the old amount before this commits and
 * stores its session after (it holds no lock while the provider answers);
 * the payment's amount check (SH015, review amount_mismatch) catches a
 * payment of the old amount.
 */
Datum
shop_set_shipping(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *method = shop_text_arg(fcinfo, 1, "method", true);
	Jsonb	   *address;
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[1];
	char	   *status;
	Datum		result;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("address must not be null")));
	address = PG_GETARG_JSONB_P(2);

	SPI_connect();
	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_lock_pending,
							"SELECT status FROM shop.orders WHERE id = $1 FOR UPDATE",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	status = shop_get_text(0, 1);
	if (order_status_from_name(status) != ORDER_PENDING)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s; shipping can change only while it is PENDING",
						(long long) order_id, status)));
	if (shop_exec(shop_plan(&plan_open_session,
							"SELECT provider FROM shop.payment_session"
							" WHERE order_id = $1 AND state = 'open'",
							1, argtypes),
				  values, NULL, false, 1) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_SHIPPING_LOCKED),
				 errmsg("order %lld has a checkout open at payment provider \"%s\"",
						(long long) order_id, shop_get_text(0, 1)),
				 errdetail("The provider holds the order's amount; a new shipping choice would change it."),
				 errhint("Cancel the order and place a new one with the shipping wanted.")));
	result = shipping_reprice(fcinfo, outer, order_id, method, address);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * Leave order_id's fulfilment summary as the SPI result; P0002 when there
 * is no such order.
 */
static void
read_fulfilment(int64 order_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_fulfilment,
							"SELECT " FULFILMENT_SUMMARY " FROM shop.orders WHERE id = $1",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
}

/*
 * Whether the order's payment was refunded in full (shop.order_refund_
 * status).  Keeps the SPI result as it was.
 */
static bool
order_refunded(int64 order_id)
{
	static const Oid argtypes[] = {INT8OID};
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		processed = SPI_processed;
	Datum		values[1];
	bool		refunded;

	values[0] = Int64GetDatum(order_id);
	refunded = shop_exec(shop_plan(&plan_refunded,
								   "SELECT FROM shop.order_refund_status"
								   " WHERE order_id = $1 AND state = 'refunded'",
								   1, argtypes),
						 values, NULL, false, 0) > 0;
	SPI_tuptable = tuptable;
	SPI_processed = processed;
	return refunded;
}

/*
 * Whether text column col of the SPI result's first row equals s.
 */
static bool
column_is(int col, const char *s)
{
	char	   *v = shop_get_text(0, col);

	return v != NULL && strcmp(v, s) == 0;
}

/*
 * shop_ship(order_id bigint, carrier text, tracking text)
 *		returns fulfilment_summary
 */
Datum
shop_ship(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *carrier = shop_text_arg(fcinfo, 1, "carrier", true);
	text	   *tracking = shop_text_arg(fcinfo, 2, "tracking", true);
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[3];
	Datum		result;
	char	   *state;

	SPI_connect();
	values[0] = Int64GetDatum(order_id);
	values[1] = PointerGetDatum(carrier);
	values[2] = PointerGetDatum(tracking);

	/*
	 * An order refunded in full is not shipped (its units may be back in
	 * stock already).  Refunds are decided under the order's row lock
	 * (refund.c): lock it first, so that the check below, a statement of
	 * its own with a snapshot taken after the lock, sees a refund that
	 * committed while this call waited.
	 */
	shop_exec(shop_plan(&plan_ship_lock,
						"SELECT FROM shop.orders WHERE id = $1 FOR UPDATE",
						1, argtypes),
			  values, NULL, false, 0);
	if (shop_exec(shop_plan(&plan_ship,
							"UPDATE shop.orders o"
							"   SET carrier = $2, tracking_no = $3, shipped_at = now(),"
							"       updated_at = now()"
							" WHERE o.id = $1 AND o.fulfilment_status = 'READY'"
							"   AND NOT EXISTS (SELECT FROM shop.order_refund_status r"
							"                    WHERE r.order_id = $1 AND r.state = 'refunded')"
							" RETURNING " FULFILMENT_SUMMARY,
							3, argtypes),
				  values, NULL, false, 0) == 1)
	{
		result = shop_row_datum(fcinfo, outer, 0);
		events_emit_orders("order.shipped", &order_id, 1, NULL);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	read_fulfilment(order_id);
	state = shop_get_text(0, 3);
	if (state != NULL && strcmp(state, "READY") == 0 && order_refunded(order_id))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_FULFILMENT_STATE),
				 errmsg("order %lld is not ready to ship", (long long) order_id),
				 errdetail("It was refunded in full.")));
	if (state == NULL || strcmp(state, "READY") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_FULFILMENT_STATE),
				 errmsg("order %lld is not ready to ship", (long long) order_id),
				 column_is(2, "PAID")
				 ? errdetail("It has no shipping address.")
				 : errdetail("Its status is %s.", shop_get_text(0, 2)),
				 errhint("Only a PAID order with a shipping address can be shipped.")));
	if (!column_is(4, text_to_cstring(carrier)) || !column_is(5, text_to_cstring(tracking)))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_SHIPPED_OTHERWISE),
				 errmsg("order %lld is already %s with carrier \"%s\", tracking number \"%s\"",
						(long long) order_id, state, shop_get_text(0, 4), shop_get_text(0, 5))));
	/* the same call again: the same answer, nothing changed */
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_mark_delivered(order_id bigint) returns fulfilment_summary
 */
Datum
shop_mark_delivered(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[1];
	Datum		result;

	SPI_connect();
	values[0] = Int64GetDatum(order_id);
	if (shop_exec(shop_plan(&plan_deliver,
							"UPDATE shop.orders SET delivered_at = now(), updated_at = now()"
							" WHERE id = $1 AND fulfilment_status = 'SHIPPED'"
							" RETURNING " FULFILMENT_SUMMARY,
							1, argtypes),
				  values, NULL, false, 0) == 1)
	{
		result = shop_row_datum(fcinfo, outer, 0);
		events_emit_orders("order.delivered", &order_id, 1, NULL);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	read_fulfilment(order_id);
	if (!column_is(3, "DELIVERED"))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_FULFILMENT_STATE),
				 errmsg("order %lld is not shipped", (long long) order_id),
				 errdetail("Its status is %s, fulfilment %s.", shop_get_text(0, 2),
						   shop_get_text(0, 3) ? shop_get_text(0, 3) : "none"),
				 errhint("Ship it with shop.shop_ship() first.")));
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

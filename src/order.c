/*
 * order.c
 *		Create orders: from the open cart, or from an explicit list of lines.
 *
 * Both paths end in place_order(): insert the order row, reserve its lines
 * (reserve.c), and make it PENDING with an expiry.  An idempotency key makes
 * a retried request return the first order: the order row's insert meets a
 * unique index on (user_id, idempotency_key), so two concurrent requests
 * with one key serialise there and the second returns the first's order.
 */
#include "shop.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_create_order);
PG_FUNCTION_INFO_V1(shop_buy_now);

static SPIPlanPtr plan_insert_order;
static SPIPlanPtr plan_order_by_key;
static SPIPlanPtr plan_mark_pending;
static SPIPlanPtr plan_mark_pending_01;
static SPIPlanPtr plan_cart_lines;
static SPIPlanPtr plan_close_cart;

static void close_cart(int64 cart_id);

/*
 * Leave the order with this (user_id, key) as the SPI result; true if found.
 */
static bool
find_order_by_key(text *user_id, text *key)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(key);
	return shop_exec(shop_plan(&plan_order_by_key,
							   "SELECT " SHOP_ORDER_SUMMARY
							   "  FROM shop.orders"
							   " WHERE user_id = $1 AND idempotency_key = $2",
							   2, argtypes),
					 values, NULL, false, 0) == 1;
}

/*
 * The order's row, written first: PENDING's amounts come with the lines.
 */
#define INSERT_ORDER_SQL \
	"INSERT INTO shop.orders (user_id, idempotency_key, expires_at)" \
	" VALUES ($1, $2, now() + $3 * interval '1 second')" \
	" ON CONFLICT (user_id, idempotency_key)" \
	"   WHERE idempotency_key IS NOT NULL DO NOTHING" \
	" RETURNING id"

/*
 * Leave the existing order with the key as the result of a placement whose
 * insert found the key taken (a concurrent call with the same key).
 */
static Datum
order_of_key(FunctionCallInfo fcinfo, MemoryContext outer, text *user_id,
			 text *key, bool *created)
{
	if (!find_order_by_key(user_id, key))
		elog(ERROR, "shop: idempotency key conflict without an order");
	*created = false;
	return shop_row_datum(fcinfo, outer, 0);
}

/*
 * Create a PENDING order for lines; returns its summary as the function's
 * result datum.  *created is false when the idempotency key already names
 * an order: that order is returned and nothing is changed.  order_id is
 * the order's row when the caller wrote it (order_from_cart), else 0.
 */
static Datum
place_order(FunctionCallInfo fcinfo, MemoryContext outer, text *user_id,
			text *key, text *coupon, text *method, Jsonb *ship_to,
			OrderLine *lines, int nlines, int64 cart_id, int64 order_id,
			bool *created)
{
	static const Oid insert_types[] = {TEXTOID, TEXTOID, INT4OID};
	static const Oid pending_types[] = {INT8OID, INT8OID, TEXTOID, INT8OID, INT8OID};
	Datum		values[5];
	char		nulls[5] = {' ', key ? ' ' : 'n', ' ', ' ', ' '};
	int64		amount;
	int64		discount = 0;
	char		currency[4];
	Datum		result;

	if (order_id == 0)
	{
		values[0] = PointerGetDatum(user_id);
		values[1] = PointerGetDatum(key);
		values[2] = Int32GetDatum(shop_reservation_ttl);
		if (shop_exec(shop_plan(&plan_insert_order, INSERT_ORDER_SQL, 3, insert_types),
					  values, nulls, false, 0) == 0)
			return order_of_key(fcinfo, outer, user_id, key, created);
		order_id = shop_get_int64(0, 1, NULL);
	}

	reserve_order_lines(order_id, lines, nlines, &amount, currency);
	/* the coupon after every SKU lock: coupon rows are locked last */
	if (coupon != NULL)
		discount = coupons_redeem(order_id, user_id, coupon, currency);

	/*
	 * amount = subtotal - discount (README, "Money and coupons"); the
	 * statement also says whether the currency has a tax setting, so an
	 * order without shipping or tax runs no statement more, and closes the
	 * cart the order came from (cart_id; 0 for none).
	 */
	values[0] = Int64GetDatum(order_id);
	values[1] = Int64GetDatum(amount);
	values[2] = CStringGetTextDatum(currency);
	values[3] = Int64GetDatum(discount);
	values[4] = Int64GetDatum(cart_id);
	if (coupons_schema_ready())
		shop_exec(shop_plan(&plan_mark_pending,
							"WITH c AS ("
							"  UPDATE shop.cart SET checked_out_at = now() WHERE id = $5)"
							" UPDATE shop.orders"
							"   SET status = 'PENDING', subtotal = $2, discount = $4,"
							"       amount = $2 - $4, currency = $3, updated_at = now()"
							" WHERE id = $1"
							" RETURNING " SHOP_ORDER_SUMMARY ","
							"   EXISTS (SELECT FROM shop.tax_setting t"
							"            WHERE t.currency = $3::bpchar)",
							5, pending_types),
				  values, NULL, false, 0);
	else
	{
		if (cart_id != 0)
			close_cart(cart_id);
		shop_exec(shop_plan(&plan_mark_pending_01,
							"UPDATE shop.orders"
							"   SET status = 'PENDING', amount = $2, currency = $3,"
							"       updated_at = now()"
							" WHERE id = $1"
							" RETURNING " SHOP_ORDER_SUMMARY,
							3, pending_types),
				  values, NULL, false, 0);
	}
	/* shipping and tax: only when chosen or configured */
	if (method != NULL || ship_to != NULL ||
		(SPI_tuptable->tupdesc->natts > 5 && shop_get_bool(0, 6)))
		result = shipping_reprice(fcinfo, outer, order_id, method, ship_to);
	else
		result = shop_row_datum(fcinfo, outer, 0);
	events_emit_orders("order.created", &order_id, 1, NULL);
	*created = true;
	return result;
}

/*
 * Write the order's row and read the locked cart's lines, ascending by
 * sku_id (each SKU is one line already), in one statement.  The lines are
 * read after the cart's lock was taken (by an earlier statement), so none
 * added by a concurrent add is missed.  Returns the lines; *order_id is 0
 * when the key names an order already (nothing written), *nlines 0 for an
 * empty cart (the caller raises, which undoes the order's row).
 */
static OrderLine *
order_from_cart(text *user_id, text *key, int64 cart_id, int64 *order_id,
				int *nlines)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, INT4OID, INT8OID};
	Datum		values[4];
	char		nulls[4] = {' ', key ? ' ' : 'n', ' ', ' '};
	bool		isnull;
	uint64		n;

	values[0] = PointerGetDatum(user_id);
	values[1] = PointerGetDatum(key);
	values[2] = Int32GetDatum(shop_reservation_ttl);
	values[3] = Int64GetDatum(cart_id);
	n = shop_exec(shop_plan(&plan_cart_lines,
							"WITH o AS (" INSERT_ORDER_SQL ")"
							" SELECT ci.sku_id, ci.qty, o.id"
							"   FROM o LEFT JOIN shop.cart_item ci ON ci.cart_id = $4"
							"  ORDER BY ci.sku_id",
							4, argtypes),
				  values, nulls, false, 0);
	*order_id = n > 0 ? shop_get_int64(0, 3, NULL) : 0;
	if (n == 1)
	{
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			n = 0;				/* the cart has no line */
	}
	if (n > SHOP_MAX_ORDER_LINES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an order may have at most %d lines", SHOP_MAX_ORDER_LINES)));
	*nlines = (int) n;
	return shop_result_lines(n);
}

/*
 * Mark the cart checked out.
 */
static void
close_cart(int64 cart_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(cart_id);
	shop_exec(shop_plan(&plan_close_cart,
						"UPDATE shop.cart SET checked_out_at = now() WHERE id = $1",
						1, argtypes),
			  values, NULL, false, 0);
}

/*
 * The coupon_code argument (argno), or NULL: absent in the 0.1 signature,
 * and a coupon needs the 0.2 schema.
 */
static text *
coupon_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *code = PG_NARGS() > argno
		? shop_text_arg(fcinfo, argno, "coupon_code", false) : NULL;

	if (code != NULL && !coupons_schema_ready())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("coupons need the shop 0.2 schema"),
				 errhint("Run ALTER EXTENSION shop UPDATE.")));
	return code;
}

/*
 * shop_create_order(user_id text, idempotency_key text, coupon_code text,
 *					 shipping_method text, ship_to jsonb) returns order_summary
 *
 * The cart is locked first: a concurrent call with the same key waits here,
 * then finds the first call's order by its key (the cart is closed by then).
 */
Datum
shop_create_order(PG_FUNCTION_ARGS)
{
	text	   *user_id = shop_text_arg(fcinfo, 0, "user_id", true);
	text	   *key = shop_text_arg(fcinfo, 1, "idempotency_key", false);
	text	   *coupon = coupon_arg(fcinfo, 2);
	text	   *method;
	Jsonb	   *ship_to;
	MemoryContext outer = CurrentMemoryContext;
	int64		cart_id;
	int64		order_id = 0;
	OrderLine  *lines = NULL;
	int			nlines = 0;
	bool		created;
	Datum		result;

	shipping_args(fcinfo, 3, &method, &ship_to);
	SPI_connect();
	cart_id = cart_lock_open(user_id, false);
	if (key != NULL && find_order_by_key(user_id, key))
		result = shop_row_datum(fcinfo, outer, 0);
	else
	{
		if (cart_id != 0)
			lines = order_from_cart(user_id, key, cart_id, &order_id, &nlines);
		if (cart_id != 0 && order_id == 0)
			result = order_of_key(fcinfo, outer, user_id, key, &created);
		else if (nlines == 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_EMPTY_CART),
					 errmsg("the cart of user \"%s\" is empty", text_to_cstring(user_id)),
					 errhint("Add items with shop.shop_cart_add() first.")));
		else
			/* the cart is closed with the order (place_order) */
			result = place_order(fcinfo, outer, user_id, key, coupon, method, ship_to,
								 lines, nlines, cart_id, order_id, &created);
	}
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_buy_now(user_id text, items jsonb, idempotency_key text,
 *				coupon_code text, shipping_method text, ship_to jsonb)
 *		returns order_summary
 */
Datum
shop_buy_now(PG_FUNCTION_ARGS)
{
	text	   *user_id = shop_text_arg(fcinfo, 0, "user_id", true);
	text	   *key = shop_text_arg(fcinfo, 2, "idempotency_key", false);
	text	   *coupon = coupon_arg(fcinfo, 3);
	text	   *method;
	Jsonb	   *ship_to;
	MemoryContext outer = CurrentMemoryContext;
	OrderLine  *lines;
	int			nlines;
	bool		created;
	Datum		result;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("items must not be null")));
	lines = lines_from_jsonb(PG_GETARG_DATUM(1), &nlines);
	shipping_args(fcinfo, 4, &method, &ship_to);

	SPI_connect();
	result = place_order(fcinfo, outer, user_id, key, coupon, method, ship_to,
						 lines, nlines, 0, 0, &created);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * cart.c
 *		The user's open cart: add, set, remove, show.
 *
 * A cart holds no stock; its checks only keep a buyer from queueing what
 * the shop cannot sell right now (stock held by expired orders counts as
 * sellable: checkout reclaims it).  The whole line (what is in the cart plus
 * what is added) must fit the available stock, also at zero stock.  Every
 * change locks the cart row, so one user's concurrent calls serialise, and
 * the first add creates the cart race-free through the one-open-cart-per-user
 * unique index.
 */
#include "shop.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_cart_add);
PG_FUNCTION_INFO_V1(shop_cart_set_qty);
PG_FUNCTION_INFO_V1(shop_cart_remove);
PG_FUNCTION_INFO_V1(shop_cart);

static SPIPlanPtr plan_lock_cart;
static SPIPlanPtr plan_create_cart;
static SPIPlanPtr plan_upsert_line;
static SPIPlanPtr plan_delete_line;
static SPIPlanPtr plan_cart_rows;
static SPIPlanPtr plan_add_fast;
static SPIPlanPtr plan_add_fast_01;

/*
 * A cart add in one statement, for the common case: the SKU is for sale and
 * the whole line fits its available stock.  It locks the open cart (as
 * cart_lock_open), or creates it when the user has none (a user's first
 * add), and the line's new quantity is the row's latest one plus qty,
 * checked in the upsert's own WHERE, so it is exact whatever the
 * statement's snapshot saw.  Anything else (a refusal to explain, stock
 * held by expired orders, an overflow, a concurrent first add that created
 * the cart first) writes no line and takes the step-by-step path, which
 * decides and raises (a refusal rolls back a cart created here with it).
 * available is the SKU's row plus its buckets (hot.c); a 0.1 schema has
 * no buckets.
 */
#define ADD_FAST_SQL(in_buckets) \
	"WITH c AS (" \
	"  SELECT id FROM shop.cart" \
	"   WHERE user_id = $1 AND checked_out_at IS NULL FOR UPDATE)," \
	" nc AS (" \
	"  INSERT INTO shop.cart (user_id) SELECT $1 WHERE NOT EXISTS (SELECT FROM c)" \
	"  ON CONFLICT (user_id) WHERE checked_out_at IS NULL DO NOTHING RETURNING id)," \
	" s AS (" \
	"  SELECT s.id, s.on_hand - s.reserved" in_buckets " AS available" \
	"    FROM shop.sku s JOIN shop.product p ON p.id = s.product_id" \
	"   WHERE s.id = $2 AND s.is_active AND p.is_active)" \
	" INSERT INTO shop.cart_item AS ci (cart_id, sku_id, qty)" \
	" SELECT c.id, s.id, $3" \
	"   FROM (SELECT id FROM c UNION ALL SELECT id FROM nc) c, s" \
	"  WHERE $3 <= s.available" \
	" ON CONFLICT (cart_id, sku_id) DO UPDATE SET qty = ci.qty + EXCLUDED.qty" \
	"  WHERE ci.qty <= 2147483647 - EXCLUDED.qty" \
	"    AND ci.qty + EXCLUDED.qty <= (SELECT s.available FROM s)" \
	" RETURNING sku_id, qty"

/*
 * Run ADD_FAST_SQL; true when it wrote the line (the result is the line).
 */
static bool
add_fast(text *user_id, int64 sku_id, int32 qty)
{
	static const Oid argtypes[] = {TEXTOID, INT8OID, INT4OID};
	Datum		values[3];

	values[0] = PointerGetDatum(user_id);
	values[1] = Int64GetDatum(sku_id);
	values[2] = Int32GetDatum(qty);
	return shop_exec(hot_schema_ready()
					 ? shop_plan_generic(&plan_add_fast,
								 ADD_FAST_SQL(" + coalesce((SELECT sum(b.on_hand - b.reserved)"
											  " FROM shop.sku_bucket b WHERE b.sku_id = s.id), 0)"),
								 3, argtypes)
					 : shop_plan(&plan_add_fast_01, ADD_FAST_SQL(""), 3, argtypes),
					 values, NULL, false, 0) == 1;
}

/*
 * Create the user's open cart; returns its id (locked: this transaction
 * wrote it), or 0 when a concurrent first add created it first.
 */
static int64
cart_create(text *user_id)
{
	static const Oid argtypes[] = {TEXTOID};
	Datum		values[1];

	values[0] = PointerGetDatum(user_id);
	/* a concurrent first add makes this insert wait, then do nothing */
	if (shop_exec(shop_plan(&plan_create_cart,
							"INSERT INTO shop.cart (user_id) VALUES ($1)"
							" ON CONFLICT (user_id) WHERE checked_out_at IS NULL"
							" DO NOTHING RETURNING id",
							1, argtypes),
				  values, NULL, false, 0) == 1)
		return shop_get_int64(0, 1, NULL);
	return 0;
}

/*
 * Lock the user's open cart and return its id; create it when asked and
 * there is none.  Returns 0 when there is none and create is false.
 */
int64
cart_lock_open(text *user_id, bool create)
{
	static const Oid argtypes[] = {TEXTOID};
	Datum		values[1];
	int			tries;
	int64		cart_id;

	values[0] = PointerGetDatum(user_id);
	for (tries = 0; tries < 3; tries++)
	{
		if (shop_exec(shop_plan(&plan_lock_cart,
								"SELECT id FROM shop.cart"
								" WHERE user_id = $1 AND checked_out_at IS NULL"
								" FOR UPDATE",
								1, argtypes),
					  values, NULL, false, 0) == 1)
			return shop_get_int64(0, 1, NULL);
		if (!create)
			return 0;
		if ((cart_id = cart_create(user_id)) != 0)
			return cart_id;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not open a cart for user \"%s\"", text_to_cstring(user_id)),
			 errdetail("The open cart changed concurrently three times."),
			 errhint("Retry the request.")));
	return 0;					/* keep compiler quiet */
}

/*
 * Check that the cart line for sku_id may hold new_qty, or raise.
 * add is the quantity being added, to compute the new total; 0 for a set.
 */
static int32
check_line(int64 cart_id, int64 sku_id, int32 qty, bool add)
{
	int64		available;
	int32		in_cart;
	int32		new_qty = qty;
	char	   *code = sku_for_sale(sku_id, cart_id, &available, &in_cart);

	if (add && pg_add_s32_overflow(in_cart, qty, &new_qty))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("cart quantity of SKU \"%s\" is out of range", code)));
	/* stock held by expired orders is sellable: checkout reclaims it */
	if (new_qty > available)
		available += sku_expired_holdings(sku_id);
	if (new_qty > available)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
				 errmsg("insufficient stock for SKU \"%s\"", code),
				 errdetail("The cart line would hold %d, available %lld.",
						   new_qty, (long long) Max(available, 0))));
	return new_qty;
}

/*
 * Write the cart line and return it as the function's result.
 */
static Datum
store_line(FunctionCallInfo fcinfo, MemoryContext outer, int64 cart_id,
		   int64 sku_id, int32 qty)
{
	static const Oid argtypes[] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];

	values[0] = Int64GetDatum(cart_id);
	values[1] = Int64GetDatum(sku_id);
	values[2] = Int32GetDatum(qty);
	shop_exec(shop_plan(&plan_upsert_line,
						"INSERT INTO shop.cart_item (cart_id, sku_id, qty)"
						" VALUES ($1, $2, $3)"
						" ON CONFLICT (cart_id, sku_id) DO UPDATE SET qty = EXCLUDED.qty"
						" RETURNING sku_id, qty",
						3, argtypes),
			  values, NULL, false, 0);
	return shop_row_datum(fcinfo, outer, 0);
}

/*
 * Delete the cart line; true when there was one.
 */
static bool
delete_line(int64 cart_id, int64 sku_id)
{
	static const Oid argtypes[] = {INT8OID, INT8OID};
	Datum		values[2];

	values[0] = Int64GetDatum(cart_id);
	values[1] = Int64GetDatum(sku_id);
	return shop_exec(shop_plan(&plan_delete_line,
							   "DELETE FROM shop.cart_item WHERE cart_id = $1 AND sku_id = $2",
							   2, argtypes),
					 values, NULL, false, 0) > 0;
}

/*
 * The result (sku_id, 0) for a line that is not in the cart.
 */
static Datum
empty_line(FunctionCallInfo fcinfo, int64 sku_id)
{
	TupleDesc	tupdesc;
	Datum		values[2] = {Int64GetDatum(sku_id), Int32GetDatum(0)};
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "shop: function must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * shop_cart_add(user_id text, sku_id bigint, qty int) returns cart_line
 */
Datum
shop_cart_add(PG_FUNCTION_ARGS)
{
	text	   *user_id = shop_text_arg(fcinfo, 0, "user_id", true);
	int64		sku_id = shop_int64_arg(fcinfo, 1, "sku_id");
	int32		qty = shop_int32_arg(fcinfo, 2, "qty");
	MemoryContext outer = CurrentMemoryContext;
	int64		cart_id;
	Datum		result;

	if (qty <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("qty must be positive, not %d", qty)));
	SPI_connect();
	/* one statement when the line fits (creating the cart on a first add) */
	if (add_fast(user_id, sku_id, qty))
	{
		result = shop_row_datum(fcinfo, outer, 0);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	cart_id = cart_lock_open(user_id, true);
	qty = check_line(cart_id, sku_id, qty, true);
	result = store_line(fcinfo, outer, cart_id, sku_id, qty);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_cart_set_qty(user_id text, sku_id bigint, qty int) returns cart_line
 */
Datum
shop_cart_set_qty(PG_FUNCTION_ARGS)
{
	text	   *user_id = shop_text_arg(fcinfo, 0, "user_id", true);
	int64		sku_id = shop_int64_arg(fcinfo, 1, "sku_id");
	int32		qty = shop_int32_arg(fcinfo, 2, "qty");
	MemoryContext outer = CurrentMemoryContext;
	int64		cart_id;
	Datum		result;

	if (qty < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("qty must not be negative, not %d", qty),
				 errhint("Set qty 0 to remove the line.")));
	SPI_connect();
	cart_id = cart_lock_open(user_id, qty > 0);
	if (qty == 0)
	{
		if (cart_id != 0)
			delete_line(cart_id, sku_id);
		SPI_finish();
		return empty_line(fcinfo, sku_id);
	}
	check_line(cart_id, sku_id, qty, false);
	result = store_line(fcinfo, outer, cart_id, sku_id, qty);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_cart_remove(user_id text, sku_id bigint) returns boolean
 */
Datum
shop_cart_remove(PG_FUNCTION_ARGS)
{
	text	   *user_id = shop_text_arg(fcinfo, 0, "user_id", true);
	int64		sku_id = shop_int64_arg(fcinfo, 1, "sku_id");
	int64		cart_id;
	bool		removed = false;

	SPI_connect();
	cart_id = cart_lock_open(user_id, false);
	if (cart_id != 0)
		removed = delete_line(cart_id, sku_id);
	SPI_finish();
	PG_RETURN_BOOL(removed);
}

/*
 * shop_cart(user_id text) returns setof cart_row
 */
Datum
shop_cart(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID};
	text	   *user_id = shop_text_arg(fcinfo, 0, "user_id", true);
	Datum		values[1];

	values[0] = PointerGetDatum(user_id);
	SPI_connect();
	shop_exec(shop_plan(&plan_cart_rows,
						"SELECT ci.sku_id, s.code, p.name, p.price, p.currency, ci.qty,"
						"       p.price * ci.qty,"
						"       (sum(p.price * ci.qty) OVER ())::bigint"
						"  FROM shop.cart c"
						"  JOIN shop.cart_item ci ON ci.cart_id = c.id"
						"  JOIN shop.sku s ON s.id = ci.sku_id"
						"  JOIN shop.product p ON p.id = s.product_id"
						" WHERE c.user_id = $1 AND c.checked_out_at IS NULL"
						" ORDER BY ci.sku_id",
						1, argtypes),
			  values, NULL, true, 0);
	shop_rows_to_srf(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

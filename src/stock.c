/*
 * stock.c
 *		Receiving and writing off stock outside of sales, and returning
 *		refunded units to stock.
 *
 * Every on_hand change that is not a sale is one row of
 * shop.stock_adjustment, so initial stock + adjustments - consumed
 * reservations always explains on_hand.
 */
#include "shop.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(shop_adjust_stock);

static SPIPlanPtr plan_adjust;
static SPIPlanPtr plan_adjust_01;
static SPIPlanPtr plan_sku_counts;
static SPIPlanPtr plan_record;
static SPIPlanPtr plan_restock;
static SPIPlanPtr plan_restock_record;

/*
 * Return qty refunded units of sku_id to on_hand and book them in
 * shop.stock_adjustment with reason, in one statement (SPI connected; the
 * caller holds the order lock and restocks its SKUs in ascending id order).
 * Returns the adjustment's id.  Adding stock never breaks on_hand >=
 * reserved, so it has no refusal; a SKU that does not exist is P0002.
 *
 * This is the one place a refund changes stock: when stock is split into
 * buckets, only this function changes.
 */
int64
stock_restock(int64 sku_id, int32 qty, const char *reason)
{
	static const Oid argtypes[] = {INT8OID, INT4OID, TEXTOID};
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		processed = SPI_processed;
	Datum		values[3];
	int64		adjustment_id;

	Assert(qty > 0);
	values[0] = Int64GetDatum(sku_id);
	values[1] = Int32GetDatum(qty);
	values[2] = CStringGetTextDatum(reason);
	if (shop_exec(shop_plan(&plan_restock,
							"WITH s AS ("
							"  UPDATE shop.sku SET on_hand = on_hand + $2"
							"   WHERE id = $1 AND buckets = 0"
							"  RETURNING id)"
							" INSERT INTO shop.stock_adjustment (sku_id, delta, reason)"
							" SELECT s.id, $2, $3 FROM s"
							" RETURNING id",
							3, argtypes),
				  values, NULL, false, 0) == 0)
	{
		int			nbuckets;
		int64		available;

		/*
		 * A hot SKU (hot.c): the units are spread over its buckets by the
		 * exact path, which raises P0002 for an unknown SKU.
		 */
		hot_rebalance(sku_id, 0, qty, &nbuckets, &available);
		shop_exec(shop_plan(&plan_restock_record,
							"INSERT INTO shop.stock_adjustment (sku_id, delta, reason)"
							" VALUES ($1, $2, $3) RETURNING id",
							3, argtypes),
				  values, NULL, false, 0);
	}
	adjustment_id = shop_get_int64(0, 1, NULL);
	SPI_tuptable = tuptable;
	SPI_processed = processed;
	return adjustment_id;
}

/*
 * Explain why an adjustment matched no row: no such SKU, or it would take
 * on_hand below what is reserved.
 */
static void
refuse_adjustment(int64 sku_id, int32 delta)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];
	int64		on_hand;
	int64		reserved;

	values[0] = Int64GetDatum(sku_id);
	if (shop_exec(shop_plan(&plan_sku_counts,
							"SELECT code, on_hand, reserved FROM shop.sku_stock WHERE sku_id = $1",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("SKU %lld does not exist", (long long) sku_id)));
	on_hand = shop_get_int64(0, 2, NULL);
	reserved = shop_get_int64(0, 3, NULL);
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_STOCK_BELOW_RESERVED),
			 errmsg("cannot write off %lld units of SKU \"%s\"",
					-(long long) delta, shop_get_text(0, 1)),
			 errdetail("on_hand is %lld and %lld are reserved by pending orders; "
					   "at most %lld can be written off.",
					   (long long) on_hand, (long long) reserved,
					   (long long) (on_hand - reserved))));
}

/*
 * shop_adjust_stock(sku_id bigint, delta int, reason text) returns stock_level
 *
 * One statement checks and moves on_hand, so a concurrent reservation can
 * never be left without stock behind it.
 */
Datum
shop_adjust_stock(PG_FUNCTION_ARGS)
{
	static const Oid adjust_types[] = {INT8OID, INT4OID};
	static const Oid record_types[] = {INT8OID, INT4OID, TEXTOID};
	int64		sku_id = shop_int64_arg(fcinfo, 0, "sku_id");
	int32		delta = shop_int32_arg(fcinfo, 1, "delta");
	text	   *reason = shop_text_arg(fcinfo, 2, "reason", true);
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[3];
	Datum		result;

	if (delta == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delta must not be zero")));

	SPI_connect();
	values[0] = Int64GetDatum(sku_id);
	values[1] = Int32GetDatum(delta);
	if (!hot_schema_ready())
	{
		if (shop_exec(shop_plan(&plan_adjust_01,
								"UPDATE shop.sku SET on_hand = on_hand + $2"
								" WHERE id = $1 AND on_hand + $2 >= reserved"
								" RETURNING id, on_hand, reserved, on_hand - reserved",
								2, adjust_types),
					  values, NULL, false, 0) == 0)
			refuse_adjustment(sku_id, delta);
	}
	else
	{
		int			nbuckets;
		int64		available;

		/*
		 * A SKU sold from its own row takes the delta there; a hot SKU, or
		 * a write-off beyond what the SKU row has free, goes through the
		 * exact path, which spreads the new total over the SKU's rows.
		 */
		int64		in_buckets;

		/*
		 * A SKU sold from its own row whose buckets hold nothing free is
		 * decided by that one UPDATE, as always (a write-off beyond what is
		 * committed as free is refused at once).
		 */
		if (shop_exec(shop_plan(&plan_adjust,
								"UPDATE shop.sku SET on_hand = on_hand + $2"
								" WHERE id = $1 AND on_hand + $2 >= reserved AND buckets = 0",
								2, adjust_types),
					  values, NULL, false, 0) == 0 &&
			(!hot_sku_state(sku_id, &nbuckets, &available, &in_buckets) ||
			 (nbuckets == 0 && in_buckets == 0) ||
			 hot_rebalance(sku_id, 0, delta, &nbuckets, &available) < 0))
			refuse_adjustment(sku_id, delta);
		hot_stock_level(sku_id);
	}
	result = shop_row_datum(fcinfo, outer, 0);

	values[2] = PointerGetDatum(reason);
	shop_exec(shop_plan(&plan_record,
						"INSERT INTO shop.stock_adjustment (sku_id, delta, reason)"
						" VALUES ($1, $2, $3)",
						3, record_types),
			  values, NULL, false, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

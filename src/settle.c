/*
 * settle.c
 *		Consume or release the active reservations of locked orders.
 *
 * Settling is split in two so that callers control SKU lock order:
 * settle_mark() flips the reservation rows (no SKU row is touched) and
 * returns the totals per stock row in ascending (sku_id, bucket) order, the
 * SKU row being bucket 0 (hot.c); settle_apply() then moves the counters in
 * that order.  The inline reclaim interleaves those
 * counter moves with its own reservations (reserve.c), which is why the two
 * steps are separate.
 *
 * Counters only ever move by one UPDATE each with the delta inside the
 * statement, never read-modify-write.
 */
#include "shop.h"

#include "catalog/pg_type.h"

static SPIPlanPtr plan_mark_consumed;
static SPIPlanPtr plan_mark_released;
static SPIPlanPtr plan_mark_consumed_01;
static SPIPlanPtr plan_mark_released_01;
static SPIPlanPtr plan_consume;
static SPIPlanPtr plan_release;
static SPIPlanPtr plan_consume_bucket;
static SPIPlanPtr plan_release_bucket;
static SPIPlanPtr plan_apply_rows;

/* Flip reservations to new_state; totals per (sku_id, bucket), ascending. */
#define SETTLE_MARK_SQL(new_state, bucket) \
	"WITH r AS (" \
	"  UPDATE shop.stock_reservation" \
	"     SET state = '" new_state "', state_changed_at = now()" \
	"   WHERE order_id = ANY ($1) AND state = 'active'" \
	"  RETURNING sku_id, " bucket "::int4 AS bucket, qty)" \
	" SELECT sku_id, bucket, sum(qty)::bigint FROM r" \
	"  GROUP BY sku_id, bucket ORDER BY sku_id, bucket"

/*
 * Flip the active reservations of the given (already locked) orders to
 * consumed or released; return totals per stock row, ascending.
 */
SkuDelta *
settle_mark(const int64 *order_ids, int norders, bool consume, int *ndeltas)
{
	static const Oid argtypes[] = {INT8ARRAYOID};
	SPIPlanPtr	plan;
	Datum		values[1];
	SkuDelta   *deltas;
	uint64		n;
	uint64		i;

	/*
	 * Totals per stock row (the SKU row is bucket 0), ascending.  A 0.1
	 * schema has no buckets: all is held in SKU rows.  One generic plan,
	 * kept: for the array the plan cache re-planned it on every call (3 %
	 * of the backends' time in the spread benchmark).
	 */
	if (!hot_schema_ready())
		plan = consume
			? shop_plan_generic(&plan_mark_consumed_01, SETTLE_MARK_SQL("consumed", "0"), 1, argtypes)
			: shop_plan_generic(&plan_mark_released_01, SETTLE_MARK_SQL("released", "0"), 1, argtypes);
	else
		plan = consume
			? shop_plan_generic(&plan_mark_consumed, SETTLE_MARK_SQL("consumed", "bucket"), 1, argtypes)
			: shop_plan_generic(&plan_mark_released, SETTLE_MARK_SQL("released", "bucket"), 1, argtypes);

	values[0] = shop_int64_array(order_ids, norders);
	n = shop_exec(plan, values, NULL, false, 0);
	deltas = palloc(sizeof(SkuDelta) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		deltas[i].sku_id = shop_get_int64(i, 1, NULL);
		deltas[i].bucket = (int) shop_get_int64(i, 2, NULL);
		deltas[i].qty = shop_get_int64(i, 3, NULL);
	}
	*ndeltas = (int) n;
	return deltas;
}

/*
 * Move one stock row's counters (the SKU row for bucket 0, else that
 * bucket): a consumed reservation leaves stock for good (on_hand and
 * reserved drop), a released one only stops being held.
 */
void
settle_apply_one(int64 sku_id, int bucket, int64 qty, bool consume)
{
	static const Oid argtypes[] = {INT8OID, INT8OID};
	static const Oid bucket_types[] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];
	SPIPlanPtr	plan;

	if (bucket == 0)
		plan = consume
			? shop_plan(&plan_consume,
						"UPDATE shop.sku"
						"   SET on_hand = on_hand - $2, reserved = reserved - $2"
						" WHERE id = $1",
						2, argtypes)
			: shop_plan(&plan_release,
						"UPDATE shop.sku SET reserved = reserved - $2 WHERE id = $1",
						2, argtypes);
	else
		plan = consume
			? shop_plan(&plan_consume_bucket,
						"UPDATE shop.sku_bucket"
						"   SET on_hand = on_hand - $2, reserved = reserved - $2"
						" WHERE sku_id = $1 AND bucket = $3",
						3, bucket_types)
			: shop_plan(&plan_release_bucket,
						"UPDATE shop.sku_bucket SET reserved = reserved - $2"
						" WHERE sku_id = $1 AND bucket = $3",
						3, bucket_types);

	values[0] = Int64GetDatum(sku_id);
	values[1] = Int64GetDatum(qty);
	values[2] = Int32GetDatum(bucket);
	if (shop_exec(plan, values, NULL, false, 0) != 1)
		elog(ERROR, "shop: stock row %d of SKU %lld of a reservation is missing",
			 bucket, (long long) sku_id);
}

/*
 * Apply the totals from settle_mark(), in their ascending order.
 *
 * When every total is for a SKU row (no bucket: the common case), one
 * statement moves them all: its InitPlan first locks the SKU rows in
 * ascending id (a sorted FOR NO KEY UPDATE, run once before the UPDATE
 * touches a row), so the lock order is the global one whatever join order
 * the plan picks.  With buckets among them, one statement per row in the
 * order given, which is the global (sku_id, bucket) order.
 */
void
settle_apply(const SkuDelta *deltas, int ndeltas, bool consume)
{
	static const Oid argtypes[] = {INT8ARRAYOID, INT8ARRAYOID, BOOLOID};
	bool		all_rows = ndeltas > 1;
	int64	   *skus;
	int64	   *qtys;
	Datum		values[3];
	int			i;

	for (i = 0; i < ndeltas && all_rows; i++)
		all_rows = deltas[i].bucket == 0;
	if (!all_rows)
	{
		for (i = 0; i < ndeltas; i++)
			settle_apply_one(deltas[i].sku_id, deltas[i].bucket, deltas[i].qty, consume);
		return;
	}
	skus = palloc(sizeof(int64) * ndeltas);
	qtys = palloc(sizeof(int64) * ndeltas);
	for (i = 0; i < ndeltas; i++)
	{
		skus[i] = deltas[i].sku_id;
		qtys[i] = deltas[i].qty;
	}
	values[0] = shop_int64_array(skus, ndeltas);
	values[1] = shop_int64_array(qtys, ndeltas);
	values[2] = BoolGetDatum(consume);
	if (shop_exec(shop_plan_generic(&plan_apply_rows,
							"WITH l AS ("
							"  SELECT id FROM shop.sku WHERE id = ANY ($1)"
							"   ORDER BY id FOR NO KEY UPDATE)"
							" UPDATE shop.sku s"
							"    SET on_hand = s.on_hand - CASE WHEN $3 THEN d.qty ELSE 0 END,"
							"        reserved = s.reserved - d.qty"
							"   FROM unnest($1, $2) AS d (sku_id, qty)"
							"  WHERE s.id = d.sku_id"
							"    AND (SELECT count(*) FROM l) = cardinality($1)",
							3, argtypes),
				  values, NULL, false, 0) != (uint64) ndeltas)
		elog(ERROR, "shop: a SKU of a reservation is missing");
}

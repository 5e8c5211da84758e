/*
 * settle.c
 *		Consume or release the active reservations of locked orders.
 *
 * Settling is split in two so that callers control SKU lock order:
 * settle_mark() flips the reservation rows (no SKU row is touched) and
 * returns the per-SKU totals in ascending sku_id; settle_apply() then moves
 * the SKU counters in that order.  The inline reclaim interleaves those
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
static SPIPlanPtr plan_consume;
static SPIPlanPtr plan_release;

/*
 * Flip the active reservations of the given (already locked) orders to
 * consumed or released; return per-SKU totals in ascending sku_id.
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

	if (consume)
		plan = shop_plan(&plan_mark_consumed,
						 "WITH r AS ("
						 "  UPDATE shop.stock_reservation"
						 "     SET state = 'consumed', state_changed_at = now()"
						 "   WHERE order_id = ANY ($1) AND state = 'active'"
						 "  RETURNING sku_id, qty)"
						 " SELECT sku_id, sum(qty)::bigint FROM r"
						 "  GROUP BY sku_id ORDER BY sku_id",
						 1, argtypes);
	else
		plan = shop_plan(&plan_mark_released,
						 "WITH r AS ("
						 "  UPDATE shop.stock_reservation"
						 "     SET state = 'released', state_changed_at = now()"
						 "   WHERE order_id = ANY ($1) AND state = 'active'"
						 "  RETURNING sku_id, qty)"
						 " SELECT sku_id, sum(qty)::bigint FROM r"
						 "  GROUP BY sku_id ORDER BY sku_id",
						 1, argtypes);

	values[0] = shop_int64_array(order_ids, norders);
	n = shop_exec(plan, values, NULL, false, 0);
	deltas = palloc(sizeof(SkuDelta) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		deltas[i].sku_id = shop_get_int64(i, 1, NULL);
		deltas[i].qty = shop_get_int64(i, 2, NULL);
	}
	*ndeltas = (int) n;
	return deltas;
}

/*
 * Move one SKU's counters: a consumed reservation leaves stock for good
 * (on_hand and reserved drop), a released one only stops being held.
 */
void
settle_apply_one(int64 sku_id, int64 qty, bool consume)
{
	static const Oid argtypes[] = {INT8OID, INT8OID};
	Datum		values[2];
	SPIPlanPtr	plan;

	if (consume)
		plan = shop_plan(&plan_consume,
						 "UPDATE shop.sku"
						 "   SET on_hand = on_hand - $2, reserved = reserved - $2"
						 " WHERE id = $1",
						 2, argtypes);
	else
		plan = shop_plan(&plan_release,
						 "UPDATE shop.sku SET reserved = reserved - $2 WHERE id = $1",
						 2, argtypes);

	values[0] = Int64GetDatum(sku_id);
	values[1] = Int64GetDatum(qty);
	if (shop_exec(plan, values, NULL, false, 0) != 1)
		elog(ERROR, "shop: SKU %lld of a reservation is missing",
			 (long long) sku_id);
}

/*
 * Apply per-SKU totals from settle_mark(), in their ascending order.
 */
void
settle_apply(const SkuDelta *deltas, int ndeltas, bool consume)
{
	int			i;

	for (i = 0; i < ndeltas; i++)
		settle_apply_one(deltas[i].sku_id, deltas[i].qty, consume);
}

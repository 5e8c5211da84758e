/*
 * expiry.c
 *		Release PENDING orders whose reservation time is over.
 *
 * Two callers share this code and its rules: shop_expire_pending(), run by
 * pg_cron, and the inline reclaim in reserve.c, run by a buyer who found
 * too little stock.  Orders are locked with SKIP LOCKED: an order locked by
 * someone else is being confirmed or released right now, and waiting for it
 * could deadlock the reclaim against a confirm (which locks the order before
 * its SKUs).  Skipping is safe: that order is handled by whoever holds it,
 * or by the next sweep.
 */
#include "webhook.h"

#include "catalog/pg_type.h"

PG_FUNCTION_INFO_V1(shop_expire_pending);

static SPIPlanPtr plan_lock_expired;
static SPIPlanPtr plan_lock_expired_for_skus;
static SPIPlanPtr plan_mark_expired;

/*
 * Lock up to limit expired PENDING orders, oldest first.  With skus, only
 * orders holding one of those SKUs.  Returns the locked order ids.
 */
int64 *
expiry_lock_orders(const int64 *skus, int nskus, int limit, int *norders)
{
	static const Oid any_types[] = {INT4OID};
	static const Oid sku_types[] = {INT4OID, INT8ARRAYOID};
	Datum		values[2];
	int64	   *ids;
	uint64		n;
	uint64		i;

	values[0] = Int32GetDatum(limit);
	if (skus == NULL)
		n = shop_exec(shop_plan(&plan_lock_expired,
								"SELECT id FROM shop.orders"
								" WHERE status = 'PENDING' AND expires_at <= now()"
								" ORDER BY expires_at, id LIMIT $1"
								" FOR UPDATE SKIP LOCKED",
								1, any_types),
					  values, NULL, false, 0);
	else
	{
		values[1] = shop_int64_array(skus, nskus);
		n = shop_exec(shop_plan(&plan_lock_expired_for_skus,
								"SELECT o.id FROM shop.orders o"
								" WHERE o.status = 'PENDING' AND o.expires_at <= now()"
								"   AND o.id IN (SELECT r.order_id FROM shop.stock_reservation r"
								"                 WHERE r.sku_id = ANY ($2) AND r.state = 'active')"
								" ORDER BY o.expires_at, o.id LIMIT $1"
								" FOR UPDATE OF o SKIP LOCKED",
								2, sku_types),
					  values, NULL, false, 0);
	}

	ids = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
		ids[i] = shop_get_int64(i, 1, NULL);
	*norders = (int) n;
	return ids;
}

/*
 * Mark locked orders CANCELLED (reason expired) and their reservations
 * released.  Returns the SKU counter moves still to apply, ascending.
 * The caller then gives back their coupon redemptions (coupons_release),
 * after the SKU moves.
 */
SkuDelta *
expiry_release_locked(const int64 *order_ids, int norders, int *ndeltas)
{
	static const Oid argtypes[] = {INT8ARRAYOID};
	Datum		values[1];
	SkuDelta   *deltas;

	deltas = settle_mark(order_ids, norders, false, ndeltas);
	values[0] = shop_int64_array(order_ids, norders);
	shop_exec(shop_plan(&plan_mark_expired,
						"UPDATE shop.orders"
						"   SET status = 'CANCELLED', status_reason = 'expired',"
						"       updated_at = now()"
						" WHERE id = ANY ($1)",
						1, argtypes),
			  values, NULL, false, 0);
	events_emit_orders(events_release_type(REASON_EXPIRED), order_ids, norders, NULL);
	sessions_close(order_ids, norders);
	return deltas;
}

/*
 * shop_expire_pending(max_orders int) returns int
 *
 * Release up to max_orders expired PENDING orders in one transaction.
 */
Datum
shop_expire_pending(PG_FUNCTION_ARGS)
{
	int32		max_orders = shop_int32_arg(fcinfo, 0, "max_orders");
	int64	   *ids;
	int			norders;
	SkuDelta   *deltas;
	int			ndeltas;

	if (max_orders <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_orders must be positive, not %d", max_orders)));

	SPI_connect();
	ids = expiry_lock_orders(NULL, 0, max_orders, &norders);
	if (norders > 0)
	{
		deltas = expiry_release_locked(ids, norders, &ndeltas);
		settle_apply(deltas, ndeltas, false);
		/* after the SKUs: coupon rows are locked last (coupon.c) */
		coupons_release(ids, norders);
	}
	SPI_finish();
	PG_RETURN_INT32(norders);
}

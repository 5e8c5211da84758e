/*
 * coupon.c
 *		The C side of coupons: redeem at order creation, give back on every
 *		release, take again on a late payment.
 *
 * The rules (validity, limits, the rounding rule) live in SQL
 * (src/sql/25_coupons.sql: shop.coupon_quote), shared with the preview.
 *
 * Lock order: order row, SKU rows ascending, then coupon rows (ascending
 * id).  Every caller here runs after all SKU locks of its orders are held:
 * place_order after reserving, the release paths after settling, the
 * inline reclaim after its whole reservation pass, the late payment after
 * re-reserving.  So a coupon lock is never held while waiting for a SKU.
 */
#include "shop.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

static SPIPlanPtr plan_redeem;
static SPIPlanPtr plan_release_redemptions;
static SPIPlanPtr plan_uncount;
static SPIPlanPtr plan_retake;

/*
 * Whether the database's shop schema has coupons (0.2 and later; a 0.1
 * schema served by this library has none until ALTER EXTENSION UPDATE).
 */
bool
coupons_schema_ready(void)
{
	Oid			nsp = get_namespace_oid("shop", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("coupon_redemption", nsp));
}

/*
 * Redeem coupon code for order_id (lines reserved, all SKU locks held);
 * returns the discount.  Raises SH025..SH030 when the coupon is refused.
 */
int64
coupons_redeem(int64 order_id, text *user_id, text *code, const char *currency)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		processed = SPI_processed;
	int64		discount;

	values[0] = Int64GetDatum(order_id);
	values[1] = PointerGetDatum(user_id);
	values[2] = PointerGetDatum(code);
	values[3] = CStringGetTextDatum(currency);
	shop_exec(shop_plan(&plan_redeem,
						"SELECT shop.coupon_redeem($1, $2, $3, $4)",
						4, argtypes),
			  values, NULL, false, 0);
	discount = shop_get_int64(0, 1, NULL);
	SPI_tuptable = tuptable;
	SPI_processed = processed;
	return discount;
}

/*
 * Give back the active redemptions of released orders (locked, their SKUs
 * settled): each coupon's count goes down by its redemptions, coupon rows
 * locked in ascending id.  Keeps the caller's SPI result.
 */
void
coupons_release(const int64 *order_ids, int norders)
{
	static const Oid argtypes[] = {INT8ARRAYOID};
	static const Oid uncount_types[] = {INT8OID, INT4OID};
	Datum		values[2];
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		processed = SPI_processed;
	uint64		n;
	uint64		i;
	int64	   *coupons;
	int32	   *counts;

	if (norders == 0 || !coupons_schema_ready())
		return;
	values[0] = shop_int64_array(order_ids, norders);
	n = shop_exec(shop_plan(&plan_release_redemptions,
							"WITH r AS ("
							"  UPDATE shop.coupon_redemption"
							"     SET state = 'released', state_changed_at = now()"
							"   WHERE order_id = ANY ($1) AND state = 'active'"
							"  RETURNING coupon_id)"
							" SELECT coupon_id, count(*)::integer FROM r"
							"  GROUP BY coupon_id ORDER BY coupon_id",
							1, argtypes),
				  values, NULL, false, 0);
	if (n > 0)
	{
		coupons = palloc(sizeof(int64) * n);
		counts = palloc(sizeof(int32) * n);
		for (i = 0; i < n; i++)
		{
			coupons[i] = shop_get_int64(i, 1, NULL);
			counts[i] = (int32) shop_get_int64(i, 2, NULL);
		}
		for (i = 0; i < n; i++)
		{
			values[0] = Int64GetDatum(coupons[i]);
			values[1] = Int32GetDatum(counts[i]);
			shop_exec(shop_plan(&plan_uncount,
								"UPDATE shop.coupon SET redeemed = redeemed - $2"
								" WHERE id = $1",
								2, uncount_types),
					  values, NULL, false, 0);
		}
	}
	SPI_tuptable = tuptable;
	SPI_processed = processed;
}

/*
 * A late payment re-reserved released order_id (all its SKU locks held):
 * take its coupon redemption again.  false when the coupon's limits no
 * longer allow it.
 */
bool
coupons_retake(int64 order_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	if (!coupons_schema_ready())
		return true;
	values[0] = Int64GetDatum(order_id);
	shop_exec(shop_plan(&plan_retake, "SELECT shop.coupon_retake($1)", 1, argtypes),
			  values, NULL, false, 0);
	return shop_get_bool(0, 1);
}

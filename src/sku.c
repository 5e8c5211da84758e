/*
 * sku.c
 *		Read a SKU's sale state: shared by the cart checks and the
 *		reservation diagnosis, so both refuse with the same errors.
 */
#include "shop.h"

#include "catalog/pg_type.h"

static SPIPlanPtr plan_sku_for_sale;
static SPIPlanPtr plan_sku_for_sale_01;

/* The SKU's sale state; a 0.1 schema has no buckets (hot.c). */
#define SKU_FOR_SALE_SQL(buckets, in_buckets) \
	"SELECT s.code, s.is_active AND p.is_active," \
	"       s.on_hand - s.reserved," \
	"       (SELECT ci.qty FROM shop.cart_item ci" \
	"         WHERE ci.cart_id = $2 AND ci.sku_id = s.id)," \
	"       " buckets ", " in_buckets \
	"  FROM shop.sku s JOIN shop.product p ON p.id = s.product_id" \
	" WHERE s.id = $1"
static SPIPlanPtr plan_expired_holdings;

/*
 * Look up a SKU that is to be sold: raise P0002 when it does not exist and
 * SH002 when it or its product is inactive.  Returns its code and sets
 * *available (on_hand - reserved, its buckets included: hot.c) and, for a
 * cart_id other than 0, *in_cart (the quantity already in that cart).
 * nbuckets and in_buckets, when not NULL, get the SKU's mode and the part
 * of available held in buckets.
 */
char *
sku_for_sale_stock(int64 sku_id, int64 cart_id, int64 *available, int32 *in_cart,
				   int *nbuckets, int64 *in_buckets)
{
	static const Oid argtypes[] = {INT8OID, INT8OID};
	Datum		values[2];
	char	   *code;
	bool		hot = hot_schema_ready();

	values[0] = Int64GetDatum(sku_id);
	values[1] = Int64GetDatum(cart_id);
	if (shop_exec(hot ? shop_plan(&plan_sku_for_sale, SKU_FOR_SALE_SQL(
																	   "s.buckets::int4",
																	   "coalesce((SELECT sum(b.on_hand - b.reserved)"
																	   " FROM shop.sku_bucket b WHERE b.sku_id = s.id), 0)::int8"),
								  2, argtypes)
				  : shop_plan(&plan_sku_for_sale_01, SKU_FOR_SALE_SQL("0", "0::int8"),
							  2, argtypes),
				  values, NULL, false, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("SKU %lld does not exist", (long long) sku_id)));
	code = shop_get_text(0, 1);
	if (!shop_get_bool(0, 2))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_NOT_FOR_SALE),
				 errmsg("SKU \"%s\" is not for sale", code),
				 errdetail("The SKU or its product is inactive.")));
	*available = shop_get_int64(0, 3, NULL) + shop_get_int64(0, 6, NULL);
	if (in_cart)
		*in_cart = (int32) shop_get_int64(0, 4, NULL);
	if (nbuckets)
		*nbuckets = (int) shop_get_int64(0, 5, NULL);
	if (in_buckets)
		*in_buckets = shop_get_int64(0, 6, NULL);
	return code;
}

char *
sku_for_sale(int64 sku_id, int64 cart_id, int64 *available, int32 *in_cart)
{
	return sku_for_sale_stock(sku_id, cart_id, available, in_cart, NULL, NULL);
}

/*
 * Units of sku_id held by expired PENDING orders: stock that the next
 * reservation reclaims (reserve.c), so a cart may count it as available.
 * Scans the SKU's active reservations: ask only when stock looks short.
 */
int64
sku_expired_holdings(int64 sku_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(sku_id);
	shop_exec(shop_plan(&plan_expired_holdings,
						"SELECT coalesce(sum(r.qty), 0)::bigint"
						"  FROM shop.stock_reservation r"
						"  JOIN shop.orders o ON o.id = r.order_id"
						" WHERE r.sku_id = $1 AND r.state = 'active'"
						"   AND o.status = 'PENDING' AND o.expires_at <= now()",
						1, argtypes),
			  values, NULL, false, 0);
	return shop_get_int64(0, 1, NULL);
}

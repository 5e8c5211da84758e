/*
 * hot.c
 *		Hot-SKU mode: one SKU's stock split into buckets, so that the buyers
 *		of a flash sale do not queue on one row lock.
 *
 * In the normal mode every reservation and every sale of a SKU updates the
 * SKU's row and holds that row's lock until commit: the buyers of one SKU
 * commit one after another, one WAL flush each.  A SKU switched to N
 * buckets (shop_set_sku_mode) keeps its stock in N rows of shop.sku_bucket,
 * each with the same CHECKs as the SKU row.  A reservation records its
 * bucket, and confirm and release touch only that bucket.
 *
 * Reserving a line of a hot SKU (reserve.c) has two paths:
 *
 * - fast: one statement takes one bucket with enough stock, starting at the
 *   backend's own bucket (hot_start_bucket) and skipping buckets other
 *   transactions hold (FOR NO KEY UPDATE SKIP LOCKED).  It never waits.
 *
 * - waiting, when every stocked bucket is held (more buyers than buckets):
 *   wait for one bucket, the first with stock in the snapshot from the
 *   backend's own on, in a subtransaction that gives the lock back when the
 *   bucket comes up short (reserve.c, reserve_hot_wait).
 *
 * - exact, when neither found enough: hot_rebalance() locks the SKU
 *   row and then every bucket in ascending order, waiting for the holders,
 *   counts what the SKU really has, and spreads the available units over
 *   the buckets again with at least the line's quantity in one of them.
 *   Only when the total is short is the buyer refused, so a buyer is never
 *   turned away because the bucket it looked at was empty while stock
 *   remained elsewhere.
 *
 * Lock order: for one SKU its own row first, then its buckets ascending;
 * SKUs ascending as everywhere.  The fast path never waits, so it cannot
 * close a cycle.  Every change of a SKU's totals that is not a sale
 * (shop_adjust_stock, the mode switch) goes through the exact path, and a
 * normal-mode SKU that still has units in buckets (it was hot before) is
 * gathered back into its row by the same function when a buyer needs them.
 */
#include "shop.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "storage/backendid.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(shop_set_sku_mode);

#define HOT_MAX_BUCKETS 64

static SPIPlanPtr plan_lock_sku;
static SPIPlanPtr plan_lock_buckets;
static SPIPlanPtr plan_set_sku_row;
static SPIPlanPtr plan_set_buckets;
static SPIPlanPtr plan_state;
static SPIPlanPtr plan_add_buckets;
static SPIPlanPtr plan_set_mode;
static SPIPlanPtr plan_level;

/*
 * Whether the installed schema has buckets (0.2).  A 0.1 schema served by
 * this library until ALTER EXTENSION shop UPDATE has none, and every SKU
 * there is in the normal mode.
 */
bool
hot_schema_ready(void)
{
	Oid			nsp = get_namespace_oid("shop", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("sku_bucket", nsp));
}

/*
 * The bucket this backend tries first: backends spread evenly over the
 * buckets, and one backend keeps to one bucket while it has stock.
 */
int
hot_start_bucket(int nbuckets)
{
	if (nbuckets <= 0)
		return 0;
	return 1 + (int) (MyBackendId % nbuckets);
}

/*
 * What a SKU holds, read without locks: its mode, its total available
 * units (its row plus its buckets) and the part of them in buckets.
 * Returns false when the SKU does not exist.
 */
bool
hot_sku_state(int64 sku_id, int *nbuckets, int64 *available, int64 *in_buckets)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(sku_id);
	if (shop_exec(shop_plan(&plan_state,
							"SELECT s.buckets::int4, s.on_hand - s.reserved,"
							"       coalesce((SELECT sum(b.on_hand - b.reserved)"
							"                   FROM shop.sku_bucket b WHERE b.sku_id = s.id), 0)::int8"
							"  FROM shop.sku s WHERE s.id = $1",
							1, argtypes),
				  values, NULL, true, 1) == 0)
		return false;
	*nbuckets = (int) shop_get_int64(0, 1, NULL);
	*in_buckets = shop_get_int64(0, 3, NULL);
	*available = shop_get_int64(0, 2, NULL) + *in_buckets;
	return true;
}

/*
 * Lock a SKU's stock rows in the global order: its row, then its buckets
 * ascending.  Leaves the buckets (bucket, on_hand, reserved) as the SPI
 * result and returns the SKU row's on_hand, reserved and mode.  Raises
 * P0002 for an unknown SKU.
 */
static void
lock_stock_rows(int64 sku_id, int64 *on_hand, int64 *reserved, int *nbuckets)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(sku_id);
	if (shop_exec(shop_plan(&plan_lock_sku,
							"SELECT on_hand, reserved, buckets::int4 FROM shop.sku"
							" WHERE id = $1 FOR NO KEY UPDATE",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("SKU %lld does not exist", (long long) sku_id)));
	*on_hand = shop_get_int64(0, 1, NULL);
	*reserved = shop_get_int64(0, 2, NULL);
	*nbuckets = (int) shop_get_int64(0, 3, NULL);
	shop_exec(shop_plan(&plan_lock_buckets,
						"SELECT bucket::int4, on_hand, reserved FROM shop.sku_bucket"
						" WHERE sku_id = $1 ORDER BY bucket FOR NO KEY UPDATE",
						1, argtypes),
			  values, NULL, false, 0);
}

/*
 * Lock every stock row of a SKU (see lock_stock_rows), for a caller that
 * is about to touch several of them in an order the global one must not
 * be broken by (the inline reclaim, reserve.c).
 */
void
hot_lock(int64 sku_id)
{
	int64		on_hand;
	int64		reserved;
	int			nbuckets;

	lock_stock_rows(sku_id, &on_hand, &reserved, &nbuckets);
}

/*
 * The exact path: lock the SKU's stock rows (row, then buckets ascending),
 * add delta units to its total on_hand, and spread what is available over
 * its rows again: all of it into the SKU row in the normal mode, evenly
 * over buckets 1..N in the hot mode, with at least need units in the
 * bucket this backend starts at.  Bucket counters only move as on_hand =
 * reserved + the new available, so what is reserved stays where it is.
 *
 * Returns the row that holds need units (0: the SKU row, else a bucket),
 * or -1 when the SKU's available total plus delta is below need or below
 * zero: then nothing is changed (the locks stay, the caller decides).
 * Sets *nbuckets_out to the mode read under the lock and *available to the
 * total available units (delta included).
 */
int
hot_rebalance(int64 sku_id, int64 need, int64 delta, int *nbuckets_out,
			  int64 *available)
{
	static const Oid sku_types[] = {INT8OID, INT8OID};
	static const Oid bucket_types[] = {INT8OID, INT4ARRAYOID, INT8ARRAYOID};
	int64		sku_on_hand;
	int64		sku_reserved;
	int			nbuckets;
	uint64		nrows;
	uint64		i;
	int64		total;
	int64		sku_avail;
	int		   *bucket_ids;
	int64	   *bucket_avail;
	int64	   *bucket_new;
	Datum	   *id_datums;
	Datum	   *avail_datums;
	int			nchanged = 0;
	int			target = 0;
	Datum		values[3];

	lock_stock_rows(sku_id, &sku_on_hand, &sku_reserved, &nbuckets);
	nrows = SPI_processed;
	bucket_ids = palloc(sizeof(int) * Max(nrows, 1));
	bucket_avail = palloc(sizeof(int64) * Max(nrows, 1));
	bucket_new = palloc0(sizeof(int64) * Max(nrows, 1));
	total = sku_on_hand - sku_reserved;
	for (i = 0; i < nrows; i++)
	{
		bucket_ids[i] = (int) shop_get_int64(i, 1, NULL);
		bucket_avail[i] = shop_get_int64(i, 2, NULL) - shop_get_int64(i, 3, NULL);
		if (pg_add_s64_overflow(total, bucket_avail[i], &total))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("stock of SKU %lld is out of range", (long long) sku_id)));
	}
	if (pg_add_s64_overflow(total, delta, &total))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("stock of SKU %lld is out of range", (long long) sku_id)));
	*nbuckets_out = nbuckets;
	*available = total;
	if (total < 0 || total < need)
		return -1;

	/* the new spread: buckets 1..N only (hot), or the SKU row only (normal) */
	sku_avail = total;
	if (nbuckets > 0)
	{
		/* a buyer's own bucket first; an even spread from bucket 1 else */
		int			start = need > 0 ? hot_start_bucket(nbuckets) : 1;
		int64		rest = total;
		int64		share;
		int			left = nbuckets;

		sku_avail = 0;
		target = start;
		/* the starting bucket first: need units at least, else its share */
		for (i = 0; i < nrows; i++)
			if (bucket_ids[i] == start)
			{
				share = Max(need, (total + nbuckets - 1) / nbuckets);
				bucket_new[i] = Min(share, rest);
				rest -= bucket_new[i];
				left--;
			}
		for (i = 0; i < nrows; i++)
			if (bucket_ids[i] != start && bucket_ids[i] <= nbuckets)
			{
				share = left > 0 ? (rest + left - 1) / left : rest;
				bucket_new[i] = Min(share, rest);
				rest -= bucket_new[i];
				left--;
			}
		/* buckets 1..N always exist (shop_set_sku_mode); if not, keep the rest */
		sku_avail = rest;
	}

	if (sku_avail != sku_on_hand - sku_reserved)
	{
		values[0] = Int64GetDatum(sku_id);
		values[1] = Int64GetDatum(sku_avail);
		shop_exec(shop_plan(&plan_set_sku_row,
							"UPDATE shop.sku SET on_hand = reserved + $2 WHERE id = $1",
							2, sku_types),
				  values, NULL, false, 0);
	}
	id_datums = palloc(sizeof(Datum) * Max(nrows, 1));
	avail_datums = palloc(sizeof(Datum) * Max(nrows, 1));
	for (i = 0; i < nrows; i++)
		if (bucket_new[i] != bucket_avail[i])
		{
			id_datums[nchanged] = Int32GetDatum(bucket_ids[i]);
			avail_datums[nchanged] = Int64GetDatum(bucket_new[i]);
			nchanged++;
		}
	if (nchanged > 0)
	{
		values[0] = Int64GetDatum(sku_id);
		values[1] = PointerGetDatum(construct_array(id_datums, nchanged, INT4OID,
													4, true, TYPALIGN_INT));
		values[2] = PointerGetDatum(construct_array(avail_datums, nchanged, INT8OID,
													8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		shop_exec(shop_plan(&plan_set_buckets,
							"UPDATE shop.sku_bucket b SET on_hand = b.reserved + d.available"
							"  FROM unnest($2::int4[], $3::int8[]) AS d (bucket, available)"
							" WHERE b.sku_id = $1 AND b.bucket = d.bucket",
							3, bucket_types),
				  values, NULL, false, 0);
	}
	return target;
}

/*
 * A SKU's totals as shop.stock_level (sku_id, on_hand, reserved,
 * available): its row plus its buckets.  Leaves them as the SPI result.
 */
void
hot_stock_level(int64 sku_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(sku_id);
	shop_exec(shop_plan(&plan_level,
						"SELECT s.id, s.on_hand + coalesce(b.on_hand, 0),"
						"       s.reserved + coalesce(b.reserved, 0),"
						"       s.on_hand - s.reserved + coalesce(b.on_hand - b.reserved, 0)"
						"  FROM shop.sku s"
						"  LEFT JOIN (SELECT sum(on_hand)::int8 AS on_hand,"
						"                    sum(reserved)::int8 AS reserved"
						"               FROM shop.sku_bucket WHERE sku_id = $1) b ON true"
						" WHERE s.id = $1",
						1, argtypes),
			  values, NULL, false, 0);
}

/*
 * shop_set_sku_mode(sku_id bigint, buckets integer) returns shop.stock_level
 *
 * Switch a SKU to N buckets (hot mode, 1..64) or back to its own row (0),
 * on a live SKU: with every stock row of the SKU locked, the mode changes
 * and the available units are spread for the new mode.  What is reserved
 * stays in the row that holds it and settles there; a bucket beyond the
 * new N keeps only what its reservations hold, and the units they give
 * back are gathered by the next exact path.  Idempotent: the same mode
 * again only evens the spread out.
 */
Datum
shop_set_sku_mode(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID, INT4OID};
	int64		sku_id = shop_int64_arg(fcinfo, 0, "sku_id");
	int32		nbuckets = shop_int32_arg(fcinfo, 1, "buckets");
	MemoryContext outer = CurrentMemoryContext;
	Datum		values[2];
	Datum		result;
	int			mode;
	int64		available;

	if (nbuckets < 0 || nbuckets > HOT_MAX_BUCKETS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("buckets must be between 0 and %d, not %d",
						HOT_MAX_BUCKETS, nbuckets),
				 errhint("0 sells the SKU from its own row; 8 to 16 buckets suit a flash sale on 2 to 8 cores.")));

	SPI_connect();
	hot_lock(sku_id);
	values[0] = Int64GetDatum(sku_id);
	values[1] = Int32GetDatum(nbuckets);
	/* buckets 1..N exist from here on (never deleted: see shop.sku_bucket) */
	if (nbuckets > 0)
		shop_exec(shop_plan(&plan_add_buckets,
							"INSERT INTO shop.sku_bucket (sku_id, bucket)"
							" SELECT $1, g FROM generate_series(1, $2) AS g"
							" ON CONFLICT (sku_id, bucket) DO NOTHING",
							2, argtypes),
				  values, NULL, false, 0);
	shop_exec(shop_plan(&plan_set_mode,
						"UPDATE shop.sku SET buckets = $2 WHERE id = $1 AND buckets <> $2",
						2, argtypes),
			  values, NULL, false, 0);
	/* cannot be short: nothing is needed and nothing taken */
	if (hot_rebalance(sku_id, 0, 0, &mode, &available) < 0)
		elog(ERROR, "shop: stock of SKU %lld is below what it holds", (long long) sku_id);
	hot_forget(sku_id);
	hot_stock_level(sku_id);
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * A backend-local hint of each SKU's mode, so that reserving a hot SKU's
 * line tries the bucket statement first instead of failing on the SKU row
 * every time.  Only a hint: each statement checks the mode itself, and a
 * wrong guess costs one statement and a new look (reserve.c).
 */
#define HOT_HINTS 256
static struct
{
	int64		sku_id;
	int			nbuckets;
}			hints[HOT_HINTS];

int
hot_hint(int64 sku_id)
{
	int			slot = (int) (sku_id % HOT_HINTS);

	return hints[slot].sku_id == sku_id ? hints[slot].nbuckets : 0;
}

void
hot_remember(int64 sku_id, int nbuckets)
{
	int			slot = (int) (sku_id % HOT_HINTS);

	if (nbuckets > 0)
	{
		hints[slot].sku_id = sku_id;
		hints[slot].nbuckets = nbuckets;
	}
	else if (hints[slot].sku_id == sku_id)
		hints[slot].sku_id = 0;
}

void
hot_forget(int64 sku_id)
{
	hot_remember(sku_id, 0);
}

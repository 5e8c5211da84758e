/*
 * reserve.c
 *		Reserve an order's lines: all or nothing, never beyond stock.
 *
 * Each line is one statement that checks and reserves at once
 * (UPDATE ... SET reserved = reserved + qty WHERE on_hand - reserved >= qty),
 * and writes the line's price snapshot and reservation row in the same
 * statement.  Lines come sorted by sku_id, so SKU rows are locked in one
 * global order and two orders can never deadlock on each other.
 *
 * When a line finds too little stock, expired PENDING orders may be what
 * holds it (pg_cron may be late or down).  The first attempt runs in a
 * subtransaction; on a shortage it is rolled back, which also drops its SKU
 * row locks, and a second attempt first releases expired orders holding
 * these SKUs.  The releases and the new reservations are then applied in one
 * merged ascending pass over sku_id, so even the reclaim takes SKU locks in
 * order.  A stopped cron job may delay housekeeping, never a sale.
 *
 * Two callers: a new order (reserve_order_lines: writes the price snapshot,
 * raises SH001 when short) and a released order paid late (reserve_order_
 * again, webhook.c: reactivates its released reservations, reports a short
 * SKU instead of raising, and keeps the reclaimed orders released).
 */
#include "shop.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/array.h"
#include "utils/resowner.h"

static SPIPlanPtr plan_reserve_line;
static SPIPlanPtr plan_reserve_again;
static SPIPlanPtr plan_reserve_line_01;
static SPIPlanPtr plan_reserve_again_01;

/*
 * The reservation statements, with what else they return (the SKU's
 * available stock and low-stock threshold for stock.low) as a parameter:
 * a 0.1 schema, served by this library until ALTER EXTENSION shop UPDATE,
 * has no threshold column, and gets the statements without it.
 */
#define RESERVE_LINE_SQL(sku_where, sku_returning, select_list) \
	"WITH r AS (" \
	"  UPDATE shop.sku s SET reserved = s.reserved + $3" \
	"    FROM shop.product p" \
	"   WHERE s.id = $2 AND p.id = s.product_id" \
	"     AND s.is_active AND p.is_active" sku_where \
	"     AND s.on_hand - s.reserved >= $3" \
	"  RETURNING s.id, s.code, p.name, p.price, p.currency" sku_returning ")," \
	" i AS (" \
	"  INSERT INTO shop.order_item" \
	"         (order_id, sku_id, product_name, sku_code, unit_price, qty)" \
	"  SELECT $1, r.id, r.name, r.code, r.price, $3 FROM r)," \
	" h AS (" \
	"  INSERT INTO shop.stock_reservation (order_id, sku_id, qty)" \
	"  SELECT $1, r.id, $3 FROM r)" \
	" SELECT r.price, r.currency::text" select_list " FROM r"

#define RESERVE_AGAIN_SQL(sku_where, sku_returning, returning) \
	"WITH s AS (" \
	"  UPDATE shop.sku s SET reserved = s.reserved + $3" \
	"    FROM shop.product p" \
	"   WHERE s.id = $2 AND p.id = s.product_id" \
	"     AND s.is_active AND p.is_active" sku_where \
	"     AND s.on_hand - s.reserved >= $3" \
	"     AND NOT EXISTS (SELECT FROM shop.stock_reservation x" \
	"                      WHERE x.order_id = $1 AND x.sku_id = $2" \
	"                        AND x.state <> 'released')" \
	"  RETURNING s.id" sku_returning ")" \
	" INSERT INTO shop.stock_reservation AS r" \
	"        (order_id, sku_id, qty)" \
	" SELECT $1, s.id, $3 FROM s" \
	" ON CONFLICT (order_id, sku_id) DO UPDATE" \
	"   SET state = 'active', qty = excluded.qty," \
	"       state_changed_at = now()" \
	"   WHERE r.state = 'released'" \
	" RETURNING r.id" returning

/*
 * The same for a hot SKU's line (hot.c): the fast path takes one bucket
 * with enough stock, from the backend's own bucket ($4) on, skipping the
 * buckets other transactions hold; it never waits.  The SKU's available
 * total for stock.low is read from the statement's snapshot (the buckets
 * move concurrently, so the event is a close estimate, as the README says).
 */
#define HOT_BUCKET_CTE(bucket_where) HOT_BUCKET_CTE_PICK(" FOR NO KEY UPDATE SKIP LOCKED", bucket_where)
#define HOT_BUCKET_CTE_PICK(lock, bucket_where) \
	"b AS (" \
	"  SELECT k.bucket FROM shop.sku_bucket k" \
	"   WHERE k.sku_id = $2 AND k.on_hand - k.reserved >= $3" \
	"   ORDER BY (k.bucket + 64 - $4) % 64" \
	"   LIMIT 1" lock ")," \
	" k AS (" \
	"  UPDATE shop.sku_bucket k SET reserved = k.reserved + $3" \
	"    FROM b, shop.sku s JOIN shop.product p ON p.id = s.product_id" \
	"   WHERE k.sku_id = $2 AND k.bucket = b.bucket AND s.id = $2" \
	"     AND s.buckets > 0 AND s.is_active AND p.is_active" \
	"     AND k.on_hand - k.reserved >= $3" bucket_where \
	"  RETURNING s.id, s.code, p.name, p.price, p.currency, k.bucket," \
	"            (s.on_hand - s.reserved + (SELECT sum(x.on_hand - x.reserved)" \
	"              FROM shop.sku_bucket x WHERE x.sku_id = $2) - $3)::int8 AS available," \
	"            s.low_stock_threshold)"

#define RESERVE_HOT_SQL RESERVE_HOT_PICK_SQL(HOT_BUCKET_CTE(""))
/*
 * The waiting variant (reserve_hot_wait): the bucket is the first with
 * enough stock in the statement's snapshot, locked or not, and the UPDATE
 * waits for its holder, then checks it again.
 */
#define RESERVE_HOT_WAIT_SQL RESERVE_HOT_PICK_SQL(HOT_BUCKET_CTE_PICK("", ""))
#define RESERVE_HOT_PICK_SQL(cte) \
	"WITH " cte "," \
	" i AS (" \
	"  INSERT INTO shop.order_item" \
	"         (order_id, sku_id, product_name, sku_code, unit_price, qty)" \
	"  SELECT $1, k.id, k.name, k.code, k.price, $3 FROM k)," \
	" h AS (" \
	"  INSERT INTO shop.stock_reservation (order_id, sku_id, qty, bucket)" \
	"  SELECT $1, k.id, $3, k.bucket FROM k)" \
	" SELECT k.price, k.currency::text, k.available, k.low_stock_threshold FROM k"

#define RESERVE_AGAIN_HOT_SQL \
	"WITH " HOT_BUCKET_CTE( \
	"     AND NOT EXISTS (SELECT FROM shop.stock_reservation x" \
	"                      WHERE x.order_id = $1 AND x.sku_id = $2" \
	"                        AND x.state <> 'released')") \
	" INSERT INTO shop.stock_reservation AS r" \
	"        (order_id, sku_id, qty, bucket)" \
	" SELECT $1, k.id, $3, k.bucket FROM k" \
	" ON CONFLICT (order_id, sku_id) DO UPDATE" \
	"   SET state = 'active', qty = excluded.qty, bucket = excluded.bucket," \
	"       state_changed_at = now()" \
	"   WHERE r.state = 'released'" \
	" RETURNING r.id, (SELECT k.available FROM k), (SELECT k.low_stock_threshold FROM k)"

static SPIPlanPtr plan_reserve_hot;
static SPIPlanPtr plan_reserve_hot_wait;
static SPIPlanPtr plan_reserve_batch;

/*
 * All lines of a new order in one statement, when every SKU is sold from
 * its own row (the common case): the InitPlan locks the lines' SKU rows in
 * ascending id before the UPDATE touches one (as settle_apply does), so the
 * lock order is the global one whatever the plan; each row is still checked
 * and reserved by the UPDATE's own WHERE.  Returns the lines reserved, in
 * ascending sku_id; fewer than asked means a line was short, inactive or
 * hot, and the caller undoes the statement (a subtransaction) and goes
 * line by line.  Its one generic plan is kept: a custom plan per call (the
 * plan cache's choice for the arrays) cost 7 % of the backends' time.
 */
#define RESERVE_BATCH_SQL \
	"WITH l AS (" \
	"  SELECT id FROM shop.sku WHERE id = ANY ($2) ORDER BY id FOR NO KEY UPDATE)," \
	" d AS (SELECT * FROM unnest($2, $3) AS d (sku_id, qty))," \
	" r AS (" \
	"  UPDATE shop.sku s SET reserved = s.reserved + d.qty" \
	"    FROM d, shop.product p" \
	"   WHERE s.id = d.sku_id AND p.id = s.product_id" \
	"     AND s.is_active AND p.is_active AND s.buckets = 0" \
	"     AND s.on_hand - s.reserved >= d.qty" \
	"     AND (SELECT count(*) FROM l) >= 0" \
	"  RETURNING s.id, s.code, p.name, p.price, p.currency, d.qty," \
	"            s.on_hand - s.reserved AS available, s.low_stock_threshold)," \
	" i AS (" \
	"  INSERT INTO shop.order_item" \
	"         (order_id, sku_id, product_name, sku_code, unit_price, qty)" \
	"  SELECT $1, r.id, r.name, r.code, r.price, r.qty FROM r)," \
	" h AS (" \
	"  INSERT INTO shop.stock_reservation (order_id, sku_id, qty)" \
	"  SELECT $1, r.id, r.qty FROM r)" \
	" SELECT r.id, r.price, r.currency::text, r.available, r.low_stock_threshold" \
	"   FROM r ORDER BY r.id"
static SPIPlanPtr plan_reserve_again_hot;
static SPIPlanPtr plan_unreserve_line;
static SPIPlanPtr plan_unreserve_line_01;

/* One reservation job: the order, its normalised lines, and the mode. */
typedef struct ReserveJob
{
	int64		order_id;
	const OrderLine *lines;
	int			nlines;
	bool		again;			/* reactivate a released order's lines */
	int64		amount;			/* new orders: running totals */
	char		currency[4];
	int			nreserved;
	int64	   *short_skus;		/* SKUs the first attempt found short */
	int			nshort;
} ReserveJob;

/*
 * Raise the insufficient-stock error for a line.
 */
static void
report_shortage(const char *code, const OrderLine *line, int64 available)
{
	ereport(ERROR,
			(errcode(ERRCODE_SHOP_INSUFFICIENT_STOCK),
			 errmsg("insufficient stock for SKU \"%s\"", code),
			 errdetail("Requested %d, available %lld.", line->qty,
					   (long long) Max(available, 0))));
}

/*
 * Add a reserved line's price to the order's totals, refusing overflow and
 * a second currency.
 */
static void
add_to_totals(ReserveJob *job, const OrderLine *line, int64 price,
			  const char *currency)
{
	int64		line_total;

	if (job->nreserved == 0)
		strlcpy(job->currency, currency, sizeof(job->currency));
	else if (strcmp(job->currency, currency) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_MIXED_CURRENCY),
				 errmsg("an order cannot mix currencies %s and %s",
						job->currency, currency),
				 errhint("Place a separate order per currency.")));
	if (pg_mul_s64_overflow(price, line->qty, &line_total) ||
		pg_add_s64_overflow(job->amount, line_total, &job->amount))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order amount is out of range")));
}

/*
 * After a line was reserved, with the SKU's available stock and its own
 * threshold in columns col and col + 1 of the SPI result: write stock.low
 * when this reservation took it below the threshold.
 */
static void
check_low_stock_row(const OrderLine *line, uint64 row, int col)
{
	bool		no_own;
	int64		own = shop_get_int64(row, col + 1, &no_own);
	int64		threshold;

	if (events_stock_crossed_low(shop_get_int64(row, col, NULL), line->qty,
								 !no_own, own, &threshold))
		events_emit_stock_low(line->sku_id, threshold);
}

static void
check_low_stock(const OrderLine *line, int col)
{
	check_low_stock_row(line, 0, col);
}

/*
 * Run a hot SKU's reservation statement in a subtransaction that is undone
 * when it reserves nothing.  A bucket row the statement locked and then
 * found short stays locked after the recheck fails: the fast path's SKIP
 * LOCKED locks a bucket whose stock another buyer sold after the
 * statement's snapshot, the waiting path waits for a bucket that turns out
 * drained.  Kept, that lock would be held while the exact path that follows
 * waits for the SKU row, the opposite of the exact path's order (SKU row,
 * then buckets): a deadlock (seen at 64 buyers on a scarce hot SKU).
 * Undone with the subtransaction, no bucket is held when the statement
 * reserved nothing.  On success, taken (job, line) gets the statement's
 * result while the subtransaction is still open (its tuples live there).
 */
typedef struct HotStep
{
	SPIPlanPtr	plan;
	Datum	   *values;
	void		(*taken) (ReserveJob *job, const OrderLine *line);
	ReserveJob *job;
	const OrderLine *line;
} HotStep;

static bool
hot_step(void *arg)
{
	HotStep    *h = (HotStep *) arg;

	if (shop_exec(h->plan, h->values, NULL, false, 0) != 1)
		return false;
	h->taken(h->job, h->line);
	return true;
}

static bool
hot_exec_or_undo(SPIPlanPtr plan, Datum *values,
				 void (*taken) (ReserveJob *job, const OrderLine *line),
				 ReserveJob *job, const OrderLine *line)
{
	HotStep		h = {plan, values, taken, job, line};

	return shop_keep_or_undo(hot_step, &h);
}

/* A new order's line was reserved: (price, currency, available, threshold). */
static void
new_line_taken(ReserveJob *job, const OrderLine *line)
{
	add_to_totals(job, line, shop_get_int64(0, 1, NULL), shop_get_text(0, 2));
	check_low_stock(line, 3);
}

/* A released line was reserved again: (id, available, threshold). */
static void
again_line_taken(ReserveJob *job, const OrderLine *line)
{
	check_low_stock(line, 2);
}

/*
 * Run the reservation statement of a new order's line for the mode
 * guessed (nbuckets: 0 the SKU row, else its buckets).  True when reserved.
 */
static bool
try_new_line(ReserveJob *job, const OrderLine *line, bool current, int nbuckets)
{
	static const Oid argtypes[] = {INT8OID, INT8OID, INT4OID, INT4OID};
	Datum		values[4];
	SPIPlanPtr	plan;

	values[0] = Int64GetDatum(job->order_id);
	values[1] = Int64GetDatum(line->sku_id);
	values[2] = Int32GetDatum(line->qty);
	values[3] = Int32GetDatum(hot_start_bucket(nbuckets));
	if (!current)
		plan = shop_plan(&plan_reserve_line_01, RESERVE_LINE_SQL("", "", ""),
						 3, argtypes);
	else if (nbuckets > 0)
		return hot_exec_or_undo(shop_plan_generic(&plan_reserve_hot, RESERVE_HOT_SQL,
												  4, argtypes),
								values, new_line_taken, job, line);
	else
		plan = shop_plan_generic(&plan_reserve_line,
								 RESERVE_LINE_SQL(" AND s.buckets = 0",
										  ", s.on_hand - s.reserved AS available,"
										  " s.low_stock_threshold",
										  ", r.available, r.low_stock_threshold"),
						 3, argtypes);
	if (shop_exec(plan, values, NULL, false, 0) != 1)
		return false;
	add_to_totals(job, line, shop_get_int64(0, 1, NULL), shop_get_text(0, 2));
	if (current)
		check_low_stock(line, 3);
	return true;
}

/*
 * A hot SKU's line when the fast path found every bucket with stock held
 * by other buyers (more buyers than buckets): wait for one bucket, the
 * first with enough stock in the snapshot from this backend's own on, so
 * that waiting buyers queue on different buckets instead of all taking the
 * exact path.  Undone when the bucket turns out short after the wait
 * (hot_exec_or_undo).  Returns true when reserved.
 */
static bool
reserve_hot_wait(ReserveJob *job, const OrderLine *line, int nbuckets)
{
	static const Oid argtypes[] = {INT8OID, INT8OID, INT4OID, INT4OID};
	Datum		values[4];

	values[0] = Int64GetDatum(job->order_id);
	values[1] = Int64GetDatum(line->sku_id);
	values[2] = Int32GetDatum(line->qty);
	values[3] = Int32GetDatum(hot_start_bucket(nbuckets));
	return hot_exec_or_undo(shop_plan_generic(&plan_reserve_hot_wait, RESERVE_HOT_WAIT_SQL,
											  4, argtypes),
							values, new_line_taken, job, line);
}

/*
 * Check and reserve one line of a new order in one statement, recording
 * its price snapshot and reservation row.  Returns false (nothing changed)
 * when stock is short; with raise_on_short it raises instead.  Unknown and
 * unsellable SKUs always raise.
 *
 * The statement is the one for the SKU's mode as this backend last saw it
 * (hot_hint).  When it reserves nothing, the SKU's state says why: a wrong
 * guess of the mode (try the other statement), stock really short (stop),
 * or stock that is there but not where the statement looked: in buckets
 * another transaction holds or in a bucket other than the SKU's own row.
 * Then the exact path (hot_rebalance) locks every stock row of the SKU,
 * moves the units where this line can take them, and the statement runs
 * again under those locks.
 */
static bool
reserve_new_line(ReserveJob *job, const OrderLine *line, bool raise_on_short)
{
	int64		available = 0;
	int64		in_buckets = 0;
	char	   *code = NULL;
	int			tries;
	bool		current = events_schema_ready();
	int			nbuckets = current ? hot_hint(line->sku_id) : 0;
	int			mode;
	bool		waited = false;

	/* a retry covers stock freed between the failed UPDATE and the diagnosis */
	for (tries = 0; tries < 4; tries++)
	{
		if (try_new_line(job, line, current, nbuckets))
			return true;
		/* every stocked bucket held by someone: wait for one (once) */
		if (current && nbuckets > 0 && !waited)
		{
			waited = true;
			if (reserve_hot_wait(job, line, nbuckets))
				return true;
		}
		/* unknown and unsellable SKUs raise here; else it is a shortage */
		code = sku_for_sale_stock(line->sku_id, 0, &available, NULL,
								  &mode, &in_buckets);
		if (available < line->qty)
			break;
		if (mode != nbuckets)
		{
			/* the mode guessed was wrong: the other statement */
			hot_remember(line->sku_id, mode);
			nbuckets = mode;
			continue;
		}
		if (current && (mode > 0 || in_buckets > 0) &&
			hot_rebalance(line->sku_id, line->qty, 0, &nbuckets, &available) < 0)
			break;
		hot_remember(line->sku_id, nbuckets);
	}
	if (raise_on_short)
		report_shortage(code, line, available);
	return false;
}

/*
 * Check and reserve one line of a released order again in one statement,
 * reactivating its released reservation row.  Returns false (nothing
 * changed) when the SKU is short or no longer for sale: the price was
 * agreed long ago, only the stock matters now.
 *
 * The SKU counter moves only when the line's reservation row is absent or
 * released, i.e. exactly when the statement's insert (RESERVE_AGAIN_SQL)
 * writes a row: otherwise the
 * upsert's conflict arm would write nothing while the counter kept the
 * increment (a line whose reservation is still active or consumed: only
 * possible once invariants are broken, and then nothing must get worse).
 * The order row is locked, so no one else changes its reservations.
 */
static bool
reserve_again_line(ReserveJob *job, const OrderLine *line)
{
	static const Oid argtypes[] = {INT8OID, INT8OID, INT4OID, INT4OID};
	Datum		values[4];
	bool		current = events_schema_ready();
	int			nbuckets = current ? hot_hint(line->sku_id) : 0;
	int			tries;
	int			mode;
	int64		available;
	int64		in_buckets;
	SPIPlanPtr	plan;

	values[0] = Int64GetDatum(job->order_id);
	values[1] = Int64GetDatum(line->sku_id);
	values[2] = Int32GetDatum(line->qty);
	/* the mode and the exact path as for a new line (reserve_new_line) */
	for (tries = 0; tries < 4; tries++)
	{
		values[3] = Int32GetDatum(hot_start_bucket(nbuckets));
		if (!current)
			plan = shop_plan(&plan_reserve_again_01, RESERVE_AGAIN_SQL("", "", ""),
							 3, argtypes);
		else if (nbuckets > 0)
		{
			if (hot_exec_or_undo(shop_plan(&plan_reserve_again_hot, RESERVE_AGAIN_HOT_SQL,
										   4, argtypes),
								 values, again_line_taken, job, line))
				return true;
			plan = NULL;
		}
		else
			plan = shop_plan(&plan_reserve_again,
							 RESERVE_AGAIN_SQL(" AND s.buckets = 0",
											   ", s.on_hand - s.reserved AS available,"
											   " s.low_stock_threshold",
											   ", (SELECT s.available FROM s),"
											   " (SELECT s.low_stock_threshold FROM s)"),
							 3, argtypes);
		if (plan != NULL && shop_exec(plan, values, NULL, false, 0) == 1)
		{
			if (current)
				check_low_stock(line, 2);
			return true;
		}
		if (!current || !hot_sku_state(line->sku_id, &mode, &available, &in_buckets) ||
			available < line->qty)
			return false;
		if (mode != nbuckets)
		{
			hot_remember(line->sku_id, mode);
			nbuckets = mode;
			continue;
		}
		/* a SKU row that is short, or a SKU no longer for sale */
		if (mode == 0 && in_buckets == 0)
			return false;
		if (hot_rebalance(line->sku_id, line->qty, 0, &nbuckets, &available) < 0)
			return false;
	}
	return false;
}

/*
 * Reserve one line in the job's mode; false when short (see above).
 */
static bool
reserve_line(ReserveJob *job, const OrderLine *line, bool raise_on_short)
{
	bool		ok;

	ok = job->again ? reserve_again_line(job, line)
		: reserve_new_line(job, line, raise_on_short);
	if (ok)
		job->nreserved++;
	return ok;
}

/*
 * Give back the first n lines, reserved by this job's last pass (their SKU
 * rows are locked already, so no lock is taken out of order).
 */
static void
unreserve_lines(const ReserveJob *job, int n)
{
	static const Oid argtypes[] = {INT8OID, INT8OID};
	Datum		values[2];
	int			i;

	values[0] = Int64GetDatum(job->order_id);
	for (i = 0; i < n; i++)
	{
		values[1] = Int64GetDatum(job->lines[i].sku_id);
		shop_exec(hot_schema_ready()
				  ? shop_plan(&plan_unreserve_line,
							  "WITH r AS ("
							  "  UPDATE shop.stock_reservation"
							  "     SET state = 'released', state_changed_at = now()"
							  "   WHERE order_id = $1 AND sku_id = $2 AND state = 'active'"
							  "  RETURNING sku_id, bucket, qty),"
							  " s AS ("
							  "  UPDATE shop.sku s SET reserved = s.reserved - r.qty"
							  "    FROM r WHERE s.id = r.sku_id AND r.bucket = 0)"
							  " UPDATE shop.sku_bucket b SET reserved = b.reserved - r.qty"
							  "   FROM r WHERE b.sku_id = r.sku_id AND b.bucket = r.bucket",
							  2, argtypes)
				  : shop_plan(&plan_unreserve_line_01,
							  "WITH r AS ("
							  "  UPDATE shop.stock_reservation"
							  "     SET state = 'released', state_changed_at = now()"
							  "   WHERE order_id = $1 AND sku_id = $2 AND state = 'active'"
							  "  RETURNING sku_id, qty)"
							  " UPDATE shop.sku s SET reserved = s.reserved - r.qty"
							  "   FROM r WHERE s.id = r.sku_id",
							  2, argtypes),
				  values, NULL, false, 0);
	}
}

static int	reserve_attempt_lines(ReserveJob *job);

/*
 * Whether the releases of the first SKU in released[0..n) go into buckets
 * (they are sorted by sku_id, bucket: the SKU row's comes first).
 */
static bool
releases_into_buckets(const SkuDelta *released, int n)
{
	int			k;

	for (k = 0; k < n && released[k].sku_id == released[0].sku_id; k++)
		if (released[k].bucket > 0)
			return true;
	return false;
}

/*
 * Reserve every line, giving back the expired orders' stock (released, may
 * be empty) in the same ascending sku_id pass.  Every release is applied
 * even after a short line (its reservation rows are already marked).  With
 * find_all, lines after a short one are still tried, and every short SKU is
 * recorded in job->short_skus; without it, reserving stops at the first
 * short line, so the lines reserved are a prefix.  Returns the index of the
 * first short line, or -1 when all are reserved.
 */
static int
reserve_pass(ReserveJob *job, const SkuDelta *released, int nreleased,
			 bool raise_on_short, bool find_all)
{
	int			i = 0;
	int			j = 0;
	int			short_line = -1;

	job->amount = 0;
	job->nreserved = 0;
	while (i < job->nlines || j < nreleased)
	{
		if (j < nreleased &&
			(i >= job->nlines || released[j].sku_id <= job->lines[i].sku_id))
		{
			/*
			 * Releasing into a bucket locks it before the SKU's row; a line
			 * of this SKU that then needs the exact path would wait for the
			 * SKU row out of order.  Lock the SKU's rows in order first.
			 */
			if ((j == 0 || released[j - 1].sku_id != released[j].sku_id) &&
				releases_into_buckets(released + j, nreleased - j))
				hot_lock(released[j].sku_id);
			settle_apply_one(released[j].sku_id, released[j].bucket,
							 released[j].qty, false);
			j++;
			continue;
		}
		if ((short_line < 0 || find_all) &&
			!reserve_line(job, &job->lines[i], raise_on_short))
		{
			if (short_line < 0)
				short_line = i;
			if (find_all)
				job->short_skus[job->nshort++] = job->lines[i].sku_id;
		}
		i++;
	}
	return short_line;
}

/*
 * Reserve every line of a new order with RESERVE_BATCH_SQL; true when all
 * are reserved (totals and stock.low done), false when the statement
 * reserved fewer (the caller rolls it back).
 */
static bool
reserve_batch(ReserveJob *job)
{
	static const Oid argtypes[] = {INT8OID, INT8ARRAYOID, INT4ARRAYOID};
	Datum		values[3];
	Datum	   *skus = palloc(sizeof(Datum) * job->nlines);
	Datum	   *qtys = palloc(sizeof(Datum) * job->nlines);
	uint64		n;
	int			i;

	for (i = 0; i < job->nlines; i++)
	{
		skus[i] = Int64GetDatum(job->lines[i].sku_id);
		qtys[i] = Int32GetDatum(job->lines[i].qty);
	}
	values[0] = Int64GetDatum(job->order_id);
	values[1] = PointerGetDatum(construct_array(skus, job->nlines, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(qtys, job->nlines, INT4OID, 4,
												true, TYPALIGN_INT));
	n = shop_exec(shop_plan_generic(&plan_reserve_batch, RESERVE_BATCH_SQL, 3, argtypes),
				  values, NULL, false, 0);
	if (n != (uint64) job->nlines)
		return false;
	job->amount = 0;
	job->nreserved = 0;
	/* rows come in ascending sku_id, as the (normalised) lines do */
	for (i = 0; i < job->nlines; i++)
	{
		if (shop_get_int64(i, 1, NULL) != job->lines[i].sku_id)
			elog(ERROR, "shop: reserved lines out of order");
		add_to_totals(job, &job->lines[i], shop_get_int64(i, 2, NULL),
					  shop_get_text(i, 3));
		job->nreserved++;
	}
	/* stock.low writes events: after every row was read */
	for (i = 0; i < job->nlines; i++)
		check_low_stock_row(&job->lines[i], i, 4);
	return true;
}

/*
 * Whether the batch statement may serve this job: a new order of several
 * lines in the current schema, none of whose SKUs this backend saw hot.
 */
static bool
batch_eligible(const ReserveJob *job)
{
	int			i;

	if (job->again || job->nlines < 2 || !events_schema_ready())
		return false;
	for (i = 0; i < job->nlines; i++)
		if (hot_hint(job->lines[i].sku_id) > 0)
			return false;
	return true;
}

/* The batch statement as a step of shop_keep_or_undo(). */
static bool
batch_step(void *arg)
{
	return reserve_batch((ReserveJob *) arg);
}

/*
 * First attempt inside a subtransaction, so that a shortage is undone
 * together with the SKU row locks it took.  Finds every short SKU (for the
 * reclaim to target).  Returns the first short line's index or -1.
 *
 * Several lines are first tried in one statement (reserve_batch); when it
 * falls short, its subtransaction is rolled back and the lines are tried
 * one by one, which finds the short ones.
 */
static int
reserve_attempt(ReserveJob *job)
{
	if (batch_eligible(job) && shop_keep_or_undo(batch_step, job))
		return -1;
	return reserve_attempt_lines(job);
}

/*
 * The line-by-line attempt (see reserve_attempt).
 */
typedef struct LinesStep
{
	ReserveJob *job;
	int			short_line;
} LinesStep;

static bool
lines_step(void *arg)
{
	LinesStep  *l = (LinesStep *) arg;

	l->short_line = reserve_pass(l->job, NULL, 0, false, true);
	return l->short_line < 0;
}

static int
reserve_attempt_lines(ReserveJob *job)
{
	LinesStep	l = {job, -1};

	(void) shop_keep_or_undo(lines_step, &l);
	return l.short_line;
}

/*
 * Run a job: the attempt, and on a shortage the reclaim and a second pass.
 * Returns -1 when every line is reserved, else the index of a short line
 * (nothing of this order is reserved then; reclaimed orders stay released).
 */
static int
reserve_job(ReserveJob *job, bool raise_on_short)
{
	int64	   *expired;
	int			nexpired;
	SkuDelta   *released = NULL;
	int			nreleased = 0;
	int			short_line;

	job->short_skus = palloc(sizeof(int64) * Max(job->nlines, 1));
	job->nshort = 0;
	short_line = reserve_attempt(job);
	if (short_line < 0)
		return -1;

	/*
	 * No SKU locks are held here: the subtransaction dropped them.  Release
	 * the expired orders that hold the short SKUs, oldest first.
	 */
	expired = expiry_lock_orders(job->short_skus, job->nshort,
								 SHOP_RECLAIM_BATCH, &nexpired);
	if (nexpired == 0 && !raise_on_short)
		return short_line;
	if (nexpired > 0)
		released = expiry_release_locked(expired, nexpired, &nreleased);
	short_line = reserve_pass(job, released, nreleased, raise_on_short, false);
	if (short_line >= 0)
		unreserve_lines(job, short_line);
	/* the reclaimed orders' coupons, after every SKU lock (coupon.c) */
	coupons_release(expired, nexpired);
	return short_line;
}

/*
 * Reserve the lines (normalised: ascending sku_id, each SKU once) of a new
 * order, all or nothing, reclaiming expired orders' stock when short.  Sets
 * the order amount and currency; raises SH001 when stock is really short.
 */
void
reserve_order_lines(int64 order_id, OrderLine *lines, int nlines,
					int64 *amount, char *currency)
{
	ReserveJob	job = {.order_id = order_id,.lines = lines,.nlines = nlines};

	reserve_job(&job, true);
	*amount = job.amount;
	strlcpy(currency, job.currency, 4);
}

/*
 * Reserve the lines of a released (CANCELLED or FAILED) order again, all
 * or nothing, reclaiming expired orders' stock when short.  Returns 0 when
 * reserved, else the id of a SKU that is short or no longer for sale.
 */
int64
reserve_order_again(int64 order_id, OrderLine *lines, int nlines)
{
	ReserveJob	job = {.order_id = order_id,.lines = lines,.nlines = nlines,.again = true};
	int			short_line = reserve_job(&job, false);

	return short_line < 0 ? 0 : lines[short_line].sku_id;
}

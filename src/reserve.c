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
 */
#include "shop.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/resowner.h"

static SPIPlanPtr plan_reserve_line;

/* Running totals of the lines reserved so far. */
typedef struct ReserveTotals
{
	int64		amount;
	char		currency[4];
	int			nreserved;
} ReserveTotals;

/* What one line's reservation found. */
typedef enum LineOutcome
{
	LINE_RESERVED,
	LINE_SHORT
} LineOutcome;

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
add_to_totals(ReserveTotals *totals, const OrderLine *line, int64 price,
			  const char *currency)
{
	int64		line_total;

	if (totals->nreserved == 0)
		strlcpy(totals->currency, currency, sizeof(totals->currency));
	else if (strcmp(totals->currency, currency) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_MIXED_CURRENCY),
				 errmsg("an order cannot mix currencies %s and %s",
						totals->currency, currency),
				 errhint("Place a separate order per currency.")));
	if (pg_mul_s64_overflow(price, line->qty, &line_total) ||
		pg_add_s64_overflow(totals->amount, line_total, &totals->amount))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order amount is out of range")));
	totals->nreserved++;
}

/*
 * Check and reserve one line in one statement, recording its snapshot and
 * reservation row.  Returns LINE_SHORT (with nothing changed) when stock is
 * short; with raise_on_short it raises instead.
 */
static LineOutcome
reserve_line(int64 order_id, const OrderLine *line, ReserveTotals *totals,
			 bool raise_on_short)
{
	static const Oid argtypes[] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];
	int64		available;
	char	   *code;
	int			tries;

	values[0] = Int64GetDatum(order_id);
	values[1] = Int64GetDatum(line->sku_id);
	values[2] = Int32GetDatum(line->qty);
	/* a retry covers stock freed between the failed UPDATE and the diagnosis */
	for (tries = 0; tries < 3; tries++)
	{
		if (shop_exec(shop_plan(&plan_reserve_line,
								"WITH r AS ("
								"  UPDATE shop.sku s SET reserved = s.reserved + $3"
								"    FROM shop.product p"
								"   WHERE s.id = $2 AND p.id = s.product_id"
								"     AND s.is_active AND p.is_active"
								"     AND s.on_hand - s.reserved >= $3"
								"  RETURNING s.id, s.code, p.name, p.price, p.currency),"
								" i AS ("
								"  INSERT INTO shop.order_item"
								"         (order_id, sku_id, product_name, sku_code, unit_price, qty)"
								"  SELECT $1, r.id, r.name, r.code, r.price, $3 FROM r),"
								" h AS ("
								"  INSERT INTO shop.stock_reservation (order_id, sku_id, qty)"
								"  SELECT $1, r.id, $3 FROM r)"
								" SELECT r.price, r.currency::text FROM r",
								3, argtypes),
					  values, NULL, false, 0) == 1)
		{
			add_to_totals(totals, line, shop_get_int64(0, 1, NULL),
						  shop_get_text(0, 2));
			return LINE_RESERVED;
		}
		/* unknown and unsellable SKUs raise here; else it is a shortage */
		code = sku_for_sale(line->sku_id, 0, &available, NULL);
		if (available < line->qty)
		{
			if (raise_on_short)
				report_shortage(code, line, available);
			return LINE_SHORT;
		}
	}
	report_shortage(code, line, available);
	return LINE_SHORT;			/* keep compiler quiet */
}

/*
 * Reserve every line, first giving back the expired orders' stock (deltas,
 * may be empty) in the same ascending sku_id pass.  Returns false at the
 * first short line unless raise_on_short.
 */
static bool
reserve_pass(int64 order_id, const OrderLine *lines, int nlines,
			 const SkuDelta *released, int nreleased,
			 ReserveTotals *totals, bool raise_on_short)
{
	int			i = 0;
	int			j = 0;

	while (i < nlines || j < nreleased)
	{
		if (j < nreleased &&
			(i >= nlines || released[j].sku_id <= lines[i].sku_id))
		{
			settle_apply_one(released[j].sku_id, released[j].qty, false);
			j++;
			continue;
		}
		if (reserve_line(order_id, &lines[i], totals, raise_on_short) == LINE_SHORT)
			return false;
		i++;
	}
	return true;
}

/*
 * First attempt inside a subtransaction, so that a shortage can be undone
 * together with the SKU row locks it took.  Returns true when reserved.
 */
static bool
reserve_attempt(int64 order_id, const OrderLine *lines, int nlines,
				ReserveTotals *totals)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ok = reserve_pass(order_id, lines, nlines, NULL, 0, totals, false);
		if (ok)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* save the error, undo the subtransaction, then raise it again */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/*
 * Reserve lines (normalised: ascending sku_id, each SKU once) for order_id,
 * all or nothing, reclaiming expired orders' stock when short.  Sets the
 * order amount and currency; raises SH001 when stock is really short.
 */
void
reserve_order_lines(int64 order_id, OrderLine *lines, int nlines,
					int64 *amount, char *currency)
{
	ReserveTotals totals = {0};

	if (!reserve_attempt(order_id, lines, nlines, &totals))
	{
		int64	   *expired;
		int			nexpired;
		SkuDelta   *released = NULL;
		int			nreleased = 0;

		/* no SKU locks are held here: the subtransaction dropped them */
		expired = expiry_lock_orders(lines, nlines, SHOP_RECLAIM_BATCH, &nexpired);
		if (nexpired > 0)
			released = expiry_release_locked(expired, nexpired, &nreleased);
		memset(&totals, 0, sizeof(totals));
		reserve_pass(order_id, lines, nlines, released, nreleased, &totals, true);
	}
	*amount = totals.amount;
	strlcpy(currency, totals.currency, 4);
}

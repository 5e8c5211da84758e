/*
 * events.c
 *		Outgoing events: written by the transaction that causes them.
 *
 * A state change calls events_emit_orders() (or events_emit_stock_low())
 * right after its own statement.  One statement then writes the event row
 * and one outbox row per endpoint subscribed to its type, with the body the
 * endpoint will receive, so the request exists exactly when the change
 * commits.  When no endpoint subscribes to the type nothing is written:
 * the statement finds no endpoint and inserts nothing, and the backend
 * skips it from then on until an endpoint changes (events_gate.c).
 *
 * The delivery worker (outbox_worker.c) sleeps on its latch; a transaction
 * that queued rows sets that latch when it commits (never before: the rows
 * would not be visible yet, and never on abort: there would be nothing).
 *
 * The callers' SPI result (an order summary about to be returned) is kept:
 * the emit statements return nothing, and shop_exec_keep_result() restores
 * SPI_tuptable after them.
 */
#include "shop.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#define UTC_TEXT(expr) SHOP_UTC_TEXT(expr)

/*
 * A row for a disabled endpoint waits at next_attempt_at infinity, so the
 * worker's claim, which walks due rows in next_attempt_at order, never
 * reads it; shop_enable_endpoint makes it due again.
 */
#define WAIT_WHILE_DISABLED \
	"CASE WHEN ep.enabled THEN now() ELSE 'infinity' END"

static SPIPlanPtr plan_emit_orders;
static SPIPlanPtr plan_emit_stock_low;

/* Set when this transaction queued outbox rows; cleared at its end. */
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/*
 * Whether the database's shop schema has the outbox (0.2 and later).  A
 * 0.1 database keeps working with this library until ALTER EXTENSION shop
 * UPDATE: it gets no events and no stock.low until then.  Two syscache
 * lookups, so it is cheap enough to ask on every emit.
 */
bool
events_schema_ready(void)
{
	Oid			nsp = get_namespace_oid("shop", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("outbox", nsp));
}

/*
 * Wake the delivery worker once this transaction has committed.
 */
static void
events_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				outbox_worker_wake();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Remember to wake the worker when the current transaction commits.
 */
void
outbox_wake_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(events_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/*
 * Run an emit statement (its outbox INSERT returns, per row, whether it is
 * due now) and wake the worker at commit only when a row is: rows of a
 * disabled endpoint wait at infinity, and waking the worker for them would
 * make it run a claim per buyer's commit for nothing.  The caller's
 * SPI_tuptable is kept.  Returns the number of outbox rows written.
 */
static uint64
emit_exec(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	SPITupleTable *tuptable = SPI_tuptable;
	uint64		processed = SPI_processed;
	uint64		n = shop_exec(plan, values, nulls, false, 0);
	uint64		i;

	for (i = 0; i < n; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
									   1, &isnull)) && !isnull)
		{
			outbox_wake_at_commit();
			break;
		}
	}
	SPI_tuptable = tuptable;
	SPI_processed = processed;
	return n;
}

/*
 * Write event type for each of the orders (their rows as they are now, so
 * call it after the change), with extra merged into data (NULL for none).
 */
void
events_emit_orders(const char *type, const int64 *order_ids, int norders,
				   Jsonb *extra)
{
	static const Oid argtypes[] = {TEXTOID, INT8ARRAYOID, JSONBOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	uint64		generation;

	if (norders == 0 || !events_schema_ready() ||
		events_gate_closed(type, &generation))
		return;
	values[0] = CStringGetTextDatum(type);
	values[1] = shop_int64_array(order_ids, norders);
	values[2] = extra ? JsonbPGetDatum(extra) : (Datum) 0;
	nulls[2] = extra ? ' ' : 'n';
	if (emit_exec(shop_plan_generic(&plan_emit_orders,
							"WITH ep AS ("
							"  SELECT e.id, e.url, e.enabled FROM shop.event_endpoint e"
							"   WHERE e.removed_at IS NULL"
							"     AND ($1 = ANY (e.event_types) OR '*' = ANY (e.event_types))),"
							" ev AS ("
							"  INSERT INTO shop.event (type, order_id, payload)"
							"  SELECT $1, o.id, jsonb_build_object('order', jsonb_build_object("
							"           'id', o.id, 'user_id', o.user_id, 'status', o.status,"
							"           'status_reason', o.status_reason, 'amount', o.amount,"
							"           'subtotal', o.subtotal, 'discount', o.discount,"
							"           'currency', o.currency,"
							"           'external_payment_id', o.external_payment_id,"
							"           'created_at', " UTC_TEXT("o.created_at") ","
							"           'expires_at', " UTC_TEXT("o.expires_at") ")"
							/* shipping, tax and fulfilment only when the order has them */
							"         || CASE WHEN o.ship_to IS NULL AND o.shipping = 0 AND o.tax = 0"
							"                  AND o.tax_included = 0 THEN '{}'::jsonb"
							"            ELSE jsonb_build_object('shipping', o.shipping, 'tax', o.tax,"
							"              'tax_included', o.tax_included, 'shipping_method', o.shipping_method,"
							"              'ship_to', o.ship_to, 'fulfilment_status', o.fulfilment_status,"
							"              'carrier', o.carrier, 'tracking_no', o.tracking_no,"
							"              'shipped_at', " UTC_TEXT("o.shipped_at") ","
							"              'delivered_at', " UTC_TEXT("o.delivered_at") ") END)"
							"         || coalesce($3, '{}')"
							"    FROM shop.orders o"
							"   WHERE o.id = ANY ($2) AND EXISTS (SELECT FROM ep)"
							"   ORDER BY o.id"
							"  RETURNING id, type, order_id, payload, created_at)"
							" INSERT INTO shop.outbox"
							"   (endpoint_id, event_id, url, headers, body, idempotency_key, ordering_key,"
							"    next_attempt_at)"
							" SELECT ep.id, ev.id, ep.url, '{\"content-type\": \"application/json\"}',"
							"        jsonb_build_object('id', 'evt_' || ev.id, 'type', ev.type,"
							"          'created_at', " UTC_TEXT("ev.created_at") ", 'data', ev.payload)::text,"
							"        'evt_' || ev.id, 'order:' || ev.order_id, " WAIT_WHILE_DISABLED
							"   FROM ev CROSS JOIN ep"
							"  ORDER BY ev.id, ep.id"
							" RETURNING next_attempt_at <> 'infinity'",
							3, argtypes),
				  values, nulls) == 0)
		events_gate_found_none(type, generation);
}

/*
 * Write stock.low for a SKU whose available stock just fell below
 * threshold.
 */
void
events_emit_stock_low(int64 sku_id, int64 threshold)
{
	static const Oid argtypes[] = {INT8OID, INT8OID};
	Datum		values[2];
	uint64		generation;

	if (!events_schema_ready() || events_gate_closed("stock.low", &generation))
		return;
	values[0] = Int64GetDatum(sku_id);
	values[1] = Int64GetDatum(threshold);
	if (emit_exec(shop_plan_generic(&plan_emit_stock_low,
							"WITH ep AS ("
							"  SELECT e.id, e.url, e.enabled FROM shop.event_endpoint e"
							"   WHERE e.removed_at IS NULL"
							"     AND ('stock.low' = ANY (e.event_types) OR '*' = ANY (e.event_types))),"
							" ev AS ("
							"  INSERT INTO shop.event (type, sku_id, payload)"
							"  SELECT 'stock.low', s.sku_id, jsonb_build_object('sku', jsonb_build_object("
							"           'id', s.sku_id, 'code', s.code, 'on_hand', s.on_hand,"
							"           'reserved', s.reserved, 'available', s.available,"
							"           'threshold', $2))"
							"    FROM shop.sku_stock s"
							"   WHERE s.sku_id = $1 AND EXISTS (SELECT FROM ep)"
							"  RETURNING id, type, sku_id, payload, created_at)"
							" INSERT INTO shop.outbox"
							"   (endpoint_id, event_id, url, headers, body, idempotency_key, ordering_key,"
							"    next_attempt_at)"
							" SELECT ep.id, ev.id, ep.url, '{\"content-type\": \"application/json\"}',"
							"        jsonb_build_object('id', 'evt_' || ev.id, 'type', ev.type,"
							"          'created_at', " UTC_TEXT("ev.created_at") ", 'data', ev.payload)::text,"
							"        'evt_' || ev.id, 'sku:' || ev.sku_id, " WAIT_WHILE_DISABLED
							"   FROM ev CROSS JOIN ep"
							" RETURNING next_attempt_at <> 'infinity'",
							2, argtypes),
				  values, NULL) == 0)
		events_gate_found_none("stock.low", generation);
}

/*
 * The event a release for reason writes.
 */
const char *
events_release_type(OrderReason reason)
{
	switch (reason)
	{
		case REASON_PAYMENT_FAILED:
			return "order.failed";
		case REASON_EXPIRED:
			return "order.expired";
		default:
			return "order.cancelled";
	}
}

/*
 * The low-stock threshold of a SKU: its own, else shop.low_stock_threshold
 * (0: none).  Whether taking qty units just crossed it.
 */
bool
events_stock_crossed_low(int64 available_after, int32 qty, bool has_own,
						 int64 own_threshold, int64 *threshold)
{
	*threshold = has_own ? own_threshold : shop_low_stock_threshold;
	return *threshold > 0 && available_after < *threshold &&
		available_after + qty >= *threshold;
}

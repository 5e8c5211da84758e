/*
 * refund.c
 *		Refunds: decided in a transaction, sent by the outbox worker, settled
 *		by the provider's answer.
 *
 * A refund is one row of shop.refund and one outbox row that carries the
 * provider call (built by the provider's kind, e.g. Stripe's POST
 * /v1/refunds) with the idempotency key "refund-<id>": whatever happens
 * between the call and the recording of its answer (a crash, a timeout
 * after the provider acted), sending it again refunds nothing twice.  The
 * worker hands the answer back here (refund_record_answer), in the
 * transaction that records the attempt.
 *
 * Who decides: shop_refund() (a person or the application), and the payment
 * webhook when money arrived for an order that cannot be sold and the
 * provider has auto_refund (webhook.c): that refund carries its review flag,
 * which the provider's confirmation resolves.
 *
 * shop_refund() also returns units (issue 13): by the order's lines, each
 * restocked (stock_restock() in stock.c, booked as a stock adjustment) or
 * not, in shop.refund_line; see "Refunds by lines" below and README,
 * "Refunds".
 */
#include "webhook.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(shop_refund);

static SPIPlanPtr plan_insert_refund;
static SPIPlanPtr plan_paid_order;
static SPIPlanPtr plan_settled;
static SPIPlanPtr plan_refused;
static SPIPlanPtr plan_refund_event;

/*
 * Queue the provider call of refund refund_id (SPI connected).
 */
static void
refund_send(const WebhookProvider *provider, int64 refund_id, int64 order_id,
			const char *payment_id, int64 amount, const char *currency)
{
	const ProviderApi *api = provider_api(provider);
	RefundRequest req;
	ProviderCall call;

	req.refund_id = refund_id;
	req.order_id = order_id;
	req.payment_id = (char *) payment_id;
	req.amount = amount;
	req.currency = (char *) currency;
	memset(&call, 0, sizeof(call));
	api->refund(&req, &call);

	provider_queue_call(provider, "refund", req.refund_id, &call,
						psprintf("refund:%lld", (long long) req.refund_id));
}

/*
 * Write a refund and queue its call (SPI connected; replaces the SPI
 * result).  Returns the refund id.
 */
int64
refund_queue(const WebhookProvider *provider, int64 order_id, const char *payment_id,
			 int64 amount, const char *currency, const char *reason, int64 review_id)
{
	static const Oid refund_types[] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID,
	TEXTOID, INT8OID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		refund_id;

	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(provider->name);
	values[2] = CStringGetTextDatum(payment_id);
	values[3] = Int64GetDatum(amount);
	values[4] = CStringGetTextDatum(currency);
	values[5] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[5] = reason ? ' ' : 'n';
	values[6] = Int64GetDatum(review_id);
	nulls[6] = review_id ? ' ' : 'n';
	shop_exec(shop_plan(&plan_insert_refund,
						"INSERT INTO shop.refund"
						"  (order_id, provider, payment_id, amount, currency, reason, review_id)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7)"
						" RETURNING id",
						7, refund_types),
			  values, nulls, false, 0);
	refund_id = shop_get_int64(0, 1, NULL);
	refund_send(provider, refund_id, order_id, payment_id, amount, currency);
	return refund_id;
}

/*
 * Write type (order.refunded, order.refund_failed) for a refund that has
 * just reached its end: the order, and data.refund with its lines.
 */
static void
refund_emit(int64 refund_id, const char *type)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];
	int64		order_id;
	Jsonb	   *extra;
	bool		isnull;

	values[0] = Int64GetDatum(refund_id);
	if (shop_exec(shop_plan(&plan_refund_event,
							"SELECT r.order_id, jsonb_build_object('refund', jsonb_build_object("
							"         'id', r.id, 'amount', r.amount, 'currency', r.currency,"
							"         'reason', r.reason, 'state', r.state, 'provider', r.provider,"
							"         'provider_refund_id', r.provider_refund_id,"
							"         'last_error', r.last_error,"
							"         'created_at', " SHOP_UTC_TEXT("r.created_at") ","
							"         'lines', coalesce((SELECT jsonb_agg(jsonb_build_object("
							"                             'order_item_id', l.order_item_id,"
							"                             'sku_id', i.sku_id, 'qty', l.qty,"
							"                             'amount', l.amount, 'restocked', l.restocked)"
							"                             ORDER BY l.id)"
							"                             FROM shop.refund_line l"
							"                             JOIN shop.order_item i ON i.id = l.order_item_id"
							"                            WHERE l.refund_id = r.id), '[]')))"
							"  FROM shop.refund r WHERE r.id = $1",
							1, argtypes),
				  values, NULL, false, 0) != 1)
		return;
	order_id = shop_get_int64(0, 1, NULL);
	extra = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											 2, &isnull));
	events_emit_orders(type, &order_id, 1, extra);
}

/*
 * The worker's news of a refund call: delivered (answer is the provider's
 * JSON), or given up (dead, with the provider's message or the transport
 * error).  Runs in the worker's recording transaction, SPI connected.  The
 * step that ends the refund writes its event; news of a refund already
 * ended (the same answer recorded again after a crash) writes none.
 */
void
refund_record_answer(int64 refund_id, const WebhookProvider *provider, bool delivered,
					 bool dead, Jsonb *answer, const char *error)
{
	static const Oid settled_types[] = {INT8OID, TEXTOID, BOOLOID};
	static const Oid refused_types[] = {INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(refund_id);
	if (delivered)
	{
		bool		succeeded = false;
		char	   *id = answer ? provider->kind->api->refund_result(answer, &succeeded) : NULL;

		values[1] = id ? CStringGetTextDatum(id) : (Datum) 0;
		nulls[1] = id ? ' ' : 'n';
		values[2] = BoolGetDatum(succeeded);
		/*
		 * the provider confirmed: the flag that asked for it is resolved;
		 * the statement says whether this made the refund succeeded (was
		 * is its state before)
		 */
		if (shop_exec(shop_plan(&plan_settled,
								"WITH r AS ("
								"  UPDATE shop.refund f"
								"     SET provider_refund_id = $2, last_error = NULL,"
								"         state = CASE WHEN $3 THEN 'succeeded' ELSE f.state END,"
								"         updated_at = now()"
								"    FROM (SELECT id, state FROM shop.refund WHERE id = $1 FOR UPDATE) was"
								"   WHERE f.id = was.id"
								"  RETURNING f.review_id, f.state, was.state AS was),"
								" v AS ("
								"  UPDATE shop.order_review v"
								"     SET resolved_at = now(), resolution = 'refunded automatically'"
								"    FROM r"
								"   WHERE v.id = r.review_id AND r.state = 'succeeded'"
								"     AND v.resolved_at IS NULL)"
								" SELECT FROM r WHERE r.state = 'succeeded' AND r.was <> 'succeeded'",
								3, settled_types),
					  values, nulls, false, 0) == 1)
			refund_emit(refund_id, "order.refunded");
	}
	else if (dead)
	{
		values[1] = CStringGetTextDatum(error ? error : "the provider refused the refund");
		if (shop_exec(shop_plan(&plan_refused,
								"UPDATE shop.refund"
								"   SET state = 'failed', last_error = $2, updated_at = now()"
								" WHERE id = $1 AND state = 'requested'",
								2, refused_types),
					  values, NULL, false, 0) == 1)
			refund_emit(refund_id, "order.refund_failed");
	}
}


/*
 * Refunds by lines (issue 13).
 *
 * shop_refund() decides a refund under the order's row lock: what money is
 * left of the payment, which order lines and how many of their units it
 * returns, and whether each returned unit goes back to stock (restock) or
 * not (no_restock: damaged or consumed goods).  A line's units are refunded
 * at most once, whatever becomes of the refund at the provider; a refund
 * the provider refuses leaves its units where the decision put them (see
 * README, "Refunds").
 *
 * Money of a line: what the line was paid, unit_price * qty - discount,
 * spread over its units so that refunding all of them, in any number of
 * refunds, gives back exactly that: the first k refunded units are worth
 * floor(paid * k / qty).
 */

/* One refund line asked for: units of an order line, restocked or not. */
typedef struct RefundPart
{
	int			item;			/* index into the order's lines */
	int64		sku_id;
	int32		qty;
	bool		restock;
	int64		amount;			/* its money, computed */
	int			index;			/* lines[index] it came from; -1: all */
} RefundPart;

/* One line of the order, with what its earlier refunds returned. */
typedef struct RefundItem
{
	int64		id;
	int64		sku_id;
	int32		qty;
	int64		paid;			/* unit_price * qty - discount */
	int64		refunded;		/* units of earlier refunds */
	int64		asked;			/* units of this refund */
} RefundItem;

static SPIPlanPtr plan_order_items;
static SPIPlanPtr plan_insert_capped;
static SPIPlanPtr plan_insert_line;
static SPIPlanPtr plan_refund_lines_json;

/*
 * The restock policy named by policy ("restock" or "no_restock").
 */
static bool
refund_policy(const char *policy, const char *what)
{
	if (strcmp(policy, "restock") == 0)
		return true;
	if (strcmp(policy, "no_restock") == 0)
		return false;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s must be 'restock' or 'no_restock', not \"%s\"", what, policy)));
	return false;				/* keep the compiler quiet */
}

/*
 * Parse [{"order_item_id": N | "sku_id": N, "qty": N, "restock": "..."}]
 * into parts (item not resolved yet: item = -1, sku_id or -id).
 */
static RefundPart *
refund_parse_lines(Jsonb *jb, bool default_restock, int *nparts, int64 **item_ids)
{
	RefundPart *parts;
	int64	   *ids;
	int			n;
	int			i;

	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb) || JB_ROOT_COUNT(jb) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lines must be a non-empty JSON array"),
				 errhint("Pass lines as [{\"order_item_id\": 1, \"qty\": 2}, ...] or "
						 "[{\"sku_id\": 1, \"qty\": 2, \"restock\": \"no_restock\"}, ...].")));
	n = JB_ROOT_COUNT(jb);
	if (n > SHOP_MAX_ORDER_LINES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a refund may have at most %d lines", SHOP_MAX_ORDER_LINES)));
	parts = palloc0(sizeof(RefundPart) * n);
	ids = palloc0(sizeof(int64) * n);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&jb->root, i);
		JsonbContainer *obj;
		JsonbValue *policy;
		int64		item_id = 0;
		int64		sku_id = 0;
		int64		qty = 0;
		bool		has_item;
		bool		has_sku;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lines[%d] must be an object with order_item_id or sku_id, and qty", i)));
		obj = elem->val.binary.data;
		has_item = json_member_int64(obj, "order_item_id", "lines", i, &item_id);
		has_sku = json_member_int64(obj, "sku_id", "lines", i, &sku_id);
		if (has_item == has_sku)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lines[%d] must name exactly one of order_item_id and sku_id", i)));
		if (!json_member_int64(obj, "qty", "lines", i, &qty) || qty <= 0 || qty > PG_INT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lines[%d].qty must be a positive integer", i)));
		parts[i].restock = default_restock;
		policy = getKeyJsonValueFromContainer(obj, "restock", strlen("restock"), NULL);
		if (policy != NULL && policy->type != jbvNull)
		{
			if (policy->type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("lines[%d].restock must be 'restock' or 'no_restock'", i)));
			parts[i].restock = refund_policy(pnstrdup(policy->val.string.val,
													  policy->val.string.len),
											 psprintf("lines[%d].restock", i));
		}
		parts[i].item = -1;
		parts[i].sku_id = has_sku ? sku_id : 0;
		ids[i] = has_item ? item_id : 0;
		parts[i].qty = (int32) qty;
		parts[i].index = i;
	}
	*nparts = n;
	*item_ids = ids;
	return parts;
}

/*
 * The locked order's lines with the units their refunds returned, by id.
 */
static RefundItem *
refund_order_items(int64 order_id, int *nitems)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];
	RefundItem *items;
	uint64		n;
	uint64		i;

	values[0] = Int64GetDatum(order_id);
	n = shop_exec(shop_plan(&plan_order_items,
							"SELECT i.id, i.sku_id, i.qty,"
							"       i.unit_price::numeric * i.qty - i.discount,"
							"       COALESCE((SELECT sum(l.qty) FROM shop.refund_line l"
							"                  WHERE l.order_item_id = i.id), 0)::bigint"
							"  FROM shop.order_item i"
							" WHERE i.order_id = $1"
							" ORDER BY i.id",
							1, argtypes),
				  values, NULL, false, 0);
	items = palloc0(sizeof(RefundItem) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		paid;

		items[i].id = shop_get_int64(i, 1, NULL);
		items[i].sku_id = shop_get_int64(i, 2, NULL);
		items[i].qty = (int32) shop_get_int64(i, 3, NULL);
		paid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull);
		items[i].paid = DatumGetInt64(DirectFunctionCall1(numeric_int8, paid));
		items[i].refunded = shop_get_int64(i, 5, NULL);
	}
	*nitems = (int) n;
	return items;
}

/*
 * What the first k refunded units of item are worth.
 */
static int64
refund_units_value(const RefundItem *item, int64 k)
{
	int64		product;

	if (pg_mul_s64_overflow(item->paid, k, &product))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the refund of order line %lld is out of range",
						(long long) item->id)));
	return product / item->qty;
}

/*
 * Order parts by SKU (the lock order of the restocks), restocked first.
 */
static int
refund_part_cmp(const void *a, const void *b)
{
	const RefundPart *x = (const RefundPart *) a;
	const RefundPart *y = (const RefundPart *) b;

	if (x->sku_id != y->sku_id)
		return (x->sku_id > y->sku_id) - (x->sku_id < y->sku_id);
	if (x->item != y->item)
		return (x->item > y->item) - (x->item < y->item);
	return (int) y->restock - (int) x->restock;
}

/*
 * Resolve the parts asked for against the order's lines, merge those of
 * one line and policy, check every line's units (SH040, SH041) and price
 * them.  Parts end up sorted by SKU.
 */
static void
refund_resolve(int64 order_id, RefundPart *parts, int *nparts, const int64 *item_ids,
			   RefundItem *items, int nitems)
{
	int			n = *nparts;
	int			out = 0;
	int			i;
	int			j;

	for (i = 0; i < n; i++)
	{
		if (parts[i].item >= 0)
		{
			/* already an order line (a whole refund) */
			items[parts[i].item].asked += parts[i].qty;
			continue;
		}
		for (j = 0; j < nitems; j++)
			if (item_ids[i] != 0 ? items[j].id == item_ids[i] : items[j].sku_id == parts[i].sku_id)
				break;
		if (j == nitems)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_REFUND_LINE_UNKNOWN),
					 errmsg("order %lld has no line with %s %lld",
							(long long) order_id,
							item_ids[i] != 0 ? "order_item_id" : "sku_id",
							(long long) (item_ids[i] != 0 ? item_ids[i] : parts[i].sku_id)),
					 errdetail("lines[%d] names it.", parts[i].index),
					 errhint("Name the order's lines by their order_item_id or sku_id.")));
		parts[i].item = j;
		parts[i].sku_id = items[j].sku_id;
		items[j].asked += parts[i].qty;
	}
	for (j = 0; j < nitems; j++)
		if (items[j].asked > items[j].qty - items[j].refunded)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_REFUND_QTY_EXCEEDED),
					 errmsg("cannot refund %lld units of order line %lld (SKU %lld)",
							(long long) items[j].asked, (long long) items[j].id,
							(long long) items[j].sku_id),
					 errdetail("The line has %d units and %lld of them were refunded before; "
							   "at most %lld are left.",
							   items[j].qty, (long long) items[j].refunded,
							   (long long) (items[j].qty - items[j].refunded))));

	/* one part per line and policy, in lock order */
	qsort(parts, n, sizeof(RefundPart), refund_part_cmp);
	for (i = 0; i < n; i++)
	{
		if (out > 0 && parts[out - 1].item == parts[i].item &&
			parts[out - 1].restock == parts[i].restock)
		{
			parts[out - 1].qty += parts[i].qty;	/* within the line's qty: no overflow */
			continue;
		}
		parts[out++] = parts[i];
	}
	*nparts = out;

	/* price them: the line's next units, in the order of the parts */
	for (i = 0; i < out; i++)
	{
		RefundItem *item = &items[parts[i].item];

		parts[i].amount = refund_units_value(item, item->refunded + parts[i].qty) -
			refund_units_value(item, item->refunded);
		item->refunded += parts[i].qty;
	}
}

/*
 * Every unit of the order not refunded yet, with one policy.
 */
static RefundPart *
refund_all_units(RefundItem *items, int nitems, bool restock, int *nparts)
{
	RefundPart *parts = palloc0(sizeof(RefundPart) * (nitems + 1));
	int			n = 0;
	int			j;

	for (j = 0; j < nitems; j++)
	{
		if (items[j].qty - items[j].refunded <= 0)
			continue;
		parts[n].item = j;
		parts[n].sku_id = items[j].sku_id;
		parts[n].qty = (int32) (items[j].qty - items[j].refunded);
		parts[n].restock = restock;
		parts[n].index = -1;
		n++;
	}
	*nparts = n;
	return parts;
}

/*
 * shop_refund(order_id bigint, amount bigint DEFAULT NULL, reason text
 *			   DEFAULT NULL, lines jsonb DEFAULT NULL, restock text DEFAULT
 *			   'restock') returns jsonb
 *
 * Refunds (part of) a PAID order's payment: the provider is the one whose
 * event paid it.  Refunds already requested or made count against what is
 * left; failed ones do not.
 *
 *	- neither lines nor amount: everything that is left, every unit not
 *	  refunded yet with policy restock (a PAID order cancelled);
 *	- lines: those units, worth their share of what their lines were paid
 *	  (amount, when given, is the money instead: a fee kept or shipping
 *	  given back);
 *	- amount only: money, no units.
 *
 * Decided under the order's row lock: two refunds of one order take turns,
 * and the second sees the first's rows.  The refund row is inserted by one
 * statement that checks the cap again; each line's row by one that checks
 * the line's units again.  Restocked SKUs are updated in ascending id
 * order, after the order row (the lock order of every stock path).
 */
Datum
shop_refund(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	static const Oid capped_types[] = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID};
	static const Oid line_types[] = {INT8OID, INT8OID, INT4OID, INT8OID, BOOLOID, INT8OID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *reason = shop_text_arg(fcinfo, 2, "reason", false);
	bool		has_lines = PG_NARGS() > 3 && !PG_ARGISNULL(3);
	text	   *policy_arg = PG_NARGS() > 4 ? shop_text_arg(fcinfo, 4, "restock", true) : NULL;
	bool		restock = policy_arg ? refund_policy(text_to_cstring(policy_arg), "restock") : true;
	MemoryContext outer = CurrentMemoryContext;
	RefundPart *parts = NULL;
	int			nparts = 0;
	int64	   *item_ids = NULL;
	RefundItem *items;
	int			nitems;
	LockedOrder order;
	WebhookProvider *provider;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	char	   *provider_name;
	char	   *currency;
	int64		left;
	int64		amount;
	int64		lines_amount = 0;
	int64		refund_id;
	char	   *restock_reason;
	Jsonb	   *lines_json = NULL;
	JsonResult	res;
	Datum		result;
	bool		isnull;
	int			i;

	if (has_lines)
		parts = refund_parse_lines(PG_GETARG_JSONB_P(3), restock, &nparts, &item_ids);

	SPI_connect();
	if (!order_lock(order_id, &order))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	if (order.status != ORDER_PAID || order.payment_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s and has no payment to refund",
						(long long) order_id, order_status_name(order.status))));
	values[0] = Int64GetDatum(order_id);
	shop_exec(shop_plan(&plan_paid_order,
						"SELECT (SELECT l.provider FROM shop.payment_log l"
						"         WHERE l.order_id = o.id AND l.payment_id = o.external_payment_id"
						"         ORDER BY l.id LIMIT 1),"
						"       o.amount - COALESCE((SELECT sum(r.amount)::bigint FROM shop.refund r"
						"                             WHERE r.order_id = o.id AND r.state <> 'failed'"
						"                               AND r.payment_id = o.external_payment_id), 0),"
						"       o.currency::text"
						"  FROM shop.orders o WHERE o.id = $1",
						1, argtypes),
			  values, NULL, false, 0);
	provider_name = shop_get_text(0, 1);
	left = shop_get_int64(0, 2, NULL);
	currency = shop_get_text(0, 3);
	if (provider_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PROVIDER_UNSUPPORTED),
				 errmsg("no payment provider is known for the payment of order %lld",
						(long long) order_id),
				 errdetail("It was confirmed by a direct call, not by a provider's event.")));

	/* the units: those asked for, or (a whole refund) all that are left */
	items = refund_order_items(order_id, &nitems);
	if (has_lines)
		refund_resolve(order_id, parts, &nparts, item_ids, items, nitems);
	else if (PG_ARGISNULL(1))
	{
		parts = refund_all_units(items, nitems, restock, &nparts);
		refund_resolve(order_id, parts, &nparts, NULL, items, nitems);
	}
	for (i = 0; i < nparts; i++)
		lines_amount += parts[i].amount;	/* at most the order's amount */

	/* the money */
	if (!PG_ARGISNULL(1))
		amount = PG_GETARG_INT64(1);
	else if (has_lines)
	{
		amount = lines_amount;
		if (amount > left)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_REFUND_OVER_PAID),
					 errmsg("the lines are worth %lld but only %lld %s of the payment of order %lld are left to refund",
							(long long) amount, (long long) left, currency, (long long) order_id),
					 errhint("Pass the amount to refund with the lines.")));
	}
	else
		amount = left;
	if (left <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nothing is left to refund of the payment of order %lld",
						(long long) order_id),
				 errdetail("Refunds requested or made already give back all %lld %s it paid.",
						   (long long) order.amount, currency)));
	if (amount <= 0 || amount > left)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund amount must be between 1 and %lld (what is left of the payment)",
						(long long) left)));

	/* the refund row: checked against what is left in the same statement */
	provider = webhook_load_provider(cstring_to_text(provider_name));
	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(provider->name);
	values[2] = CStringGetTextDatum(order.payment_id);
	values[3] = Int64GetDatum(amount);
	values[4] = CStringGetTextDatum(currency);
	values[5] = reason ? PointerGetDatum(reason) : (Datum) 0;
	nulls[5] = reason ? ' ' : 'n';
	if (shop_exec(shop_plan(&plan_insert_capped,
							"INSERT INTO shop.refund"
							"  (order_id, provider, payment_id, amount, currency, reason)"
							" SELECT o.id, $2, $3, $4, $5, $6"
							"   FROM shop.orders o"
							"  WHERE o.id = $1 AND o.status = 'PAID' AND o.external_payment_id = $3"
							"    AND $4 <= o.amount - COALESCE((SELECT sum(r.amount) FROM shop.refund r"
							"                                    WHERE r.order_id = o.id"
							"                                      AND r.state <> 'failed'"
							"                                      AND r.payment_id = $3), 0)"
							" RETURNING id",
							6, capped_types),
				  values, nulls, false, 0) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refund amount must be between 1 and %lld (what is left of the payment)",
						(long long) left)));
	refund_id = shop_get_int64(0, 1, NULL);
	refund_send(provider, refund_id, order_id, order.payment_id, amount, currency);

	/* the units: back to stock (SKUs in ascending order) and booked */
	restock_reason = psprintf("refund %lld of order %lld", (long long) refund_id,
							  (long long) order_id);
	for (i = 0; i < nparts; i++)
	{
		RefundItem *item = &items[parts[i].item];
		int64		adjustment = 0;

		if (parts[i].restock)
			adjustment = stock_restock(item->sku_id, parts[i].qty, restock_reason);
		values[0] = Int64GetDatum(refund_id);
		values[1] = Int64GetDatum(item->id);
		values[2] = Int32GetDatum(parts[i].qty);
		values[3] = Int64GetDatum(parts[i].amount);
		values[4] = BoolGetDatum(parts[i].restock);
		values[5] = Int64GetDatum(adjustment);
		nulls[5] = parts[i].restock ? ' ' : 'n';
		if (shop_exec(shop_plan(&plan_insert_line,
								"INSERT INTO shop.refund_line"
								"  (refund_id, order_item_id, qty, amount, restocked, adjustment_id)"
								" SELECT $1, i.id, $3, $4, $5, $6"
								"   FROM shop.order_item i"
								"  WHERE i.id = $2"
								"    AND i.qty - COALESCE((SELECT sum(l.qty) FROM shop.refund_line l"
								"                           WHERE l.order_item_id = i.id), 0) >= $3",
								6, line_types),
					  values, nulls, false, 0) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_REFUND_QTY_EXCEEDED),
					 errmsg("cannot refund %d more units of order line %lld",
							parts[i].qty, (long long) item->id)));
	}

	/* the whole payment given back: the coupon can be used again */
	if (amount == left)
		coupons_release(&order_id, 1);

	if (nparts > 0)
	{
		MemoryContext old;

		values[0] = Int64GetDatum(refund_id);
		shop_exec(shop_plan(&plan_refund_lines_json,
							"SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
							"         'order_item_id', l.order_item_id, 'sku_id', i.sku_id,"
							"         'qty', l.qty, 'amount', l.amount, 'restocked', l.restocked)"
							"         ORDER BY i.sku_id, l.restocked DESC)"
							"  FROM shop.refund_line l JOIN shop.order_item i ON i.id = l.order_item_id"
							" WHERE l.refund_id = $1",
							1, argtypes),
				  values, NULL, false, 0);
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			old = MemoryContextSwitchTo(outer);
			lines_json = DatumGetJsonbPCopy(result);
			MemoryContextSwitchTo(old);
		}
	}

	json_result_begin(&res, outer);
	json_result_int(&res, "refund_id", refund_id, false);
	json_result_int(&res, "order_id", order_id, false);
	json_result_text(&res, "provider", provider->name);
	json_result_text(&res, "state", "requested");
	json_result_int(&res, "amount", amount, false);
	json_result_text(&res, "currency", currency);
	if (lines_json)
		json_result_jsonb(&res, "lines", lines_json);
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

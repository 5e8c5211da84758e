/*
 * webhook.c
 *		Payment webhooks: verify, record and apply one provider event in one
 *		transaction; confirm a payment only for the order's exact amount.
 *
 * shop_handle_webhook() runs the rules in this order:
 *	1. the provider kind verifies signature and timestamp (provider_*.c);
 *	   any failure raises before anything is written;
 *	2. the event is claimed by inserting its payment_log row: a second copy,
 *	   even a concurrent one, meets the unique (provider, event_id) and
 *	   returns "duplicate" without touching the order;
 *	3. the order row is locked (FOR UPDATE, waiting: a transient lock or
 *	   serialization error propagates, the provider retries, and the retry
 *	   finds nothing claimed because the claim rolled back with the error);
 *	4. the event is applied by the transition table in the README ("How an event changes its order").
 * Providers are registered and loaded in webhook_provider.c.
 * Lock order is the core's: order row first, then SKU rows ascending.
 */
#include "webhook.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(shop_handle_webhook);
PG_FUNCTION_INFO_V1(shop_confirm_paid_checked);

static SPIPlanPtr plan_claim;
static SPIPlanPtr plan_duplicate;
static SPIPlanPtr plan_lock_order;
static SPIPlanPtr plan_mark_paid;
static SPIPlanPtr plan_mark_failed;
static SPIPlanPtr plan_order_lines;
static SPIPlanPtr plan_review;
static SPIPlanPtr plan_finish_log;
static SPIPlanPtr plan_response;
static SPIPlanPtr plan_order_summary_checked;

/* The locked order an event is about. */
typedef struct LockedOrder
{
	int64		id;
	char	   *status;
	int64		amount;
	char	   *currency;
	char	   *payment_id;		/* external_payment_id, NULL if none */
	char	   *reason;			/* status_reason, NULL if none */
} LockedOrder;

/* What applying an event did, for the log row and the response. */
typedef struct Outcome
{
	const char *result;			/* processed | ignored | unmatched */
	int64		order_id;		/* 0 when no order */
	const char *status;			/* the order's status afterwards */
	const char *review;			/* amount_mismatch | refund_required | NULL */
	char	   *note;			/* one line for the DBA views */
} Outcome;

/*
 * The body as jsonb; SH014 when it is not a JSON object.  jsonb_in runs in
 * a subtransaction so its data errors can be reported as SH014; other
 * errors (cancel, out of memory) are raised as they are.  The parser's
 * detail is dropped: it quotes the body.
 */
static Jsonb *
parse_body(const char *body, int len)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *cstr = pnstrdup(body, len);
	Jsonb	   *result = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(cstr)));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = shop_subxact_abort(cxt, owner);

		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			ReThrowError(edata);
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("webhook body is not valid JSON")));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;

	if (!JB_ROOT_IS_OBJECT(result))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("webhook body must be a JSON object")));
	return result;
}

/*
 * The event's kind as stored in payment_log.kind.
 */
static const char *
kind_name(WebhookEventKind kind)
{
	switch (kind)
	{
		case WEBHOOK_EVENT_PAID:
			return "paid";
		case WEBHOOK_EVENT_FAILED:
			return "failed";
		default:
			return "other";
	}
}

/*
 * Text datum or null marker for an optional string.
 */
static void
set_text(Datum *values, char *nulls, int i, const char *s)
{
	values[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	nulls[i] = s ? ' ' : 'n';
}

/*
 * Claim the event by inserting its log row; returns the row id, or 0 when
 * (provider, event_id) is already recorded.  A concurrent claim of the
 * same event waits here for the first to commit (then 0) or abort.
 */
static int64
claim_event(const WebhookProvider *provider, const WebhookEvent *event,
			Jsonb *payload)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID,
	TEXTOID, INT8OID, TEXTOID, TEXTOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	set_text(values, nulls, 0, provider->name);
	set_text(values, nulls, 1, event->event_id);
	set_text(values, nulls, 2, kind_name(event->kind));
	values[3] = JsonbPGetDatum(payload);
	set_text(values, nulls, 4, event->type);
	set_text(values, nulls, 5, event->order_ref);
	values[6] = Int64GetDatum(event->amount);
	nulls[6] = event->has_amount ? ' ' : 'n';
	set_text(values, nulls, 7, event->currency);
	set_text(values, nulls, 8, event->payment_id);
	if (shop_exec(shop_plan(&plan_claim,
							"INSERT INTO shop.payment_log"
							"  (provider, event_id, kind, payload, event_type,"
							"   order_ref, amount, currency, payment_id)"
							" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
							" ON CONFLICT (provider, event_id) DO NOTHING"
							" RETURNING id",
							9, argtypes),
				  values, nulls, false, 0) == 0)
		return 0;
	return shop_get_int64(0, 1, NULL);
}

/*
 * The outcome of an event already recorded: its order and that order's
 * current status.
 */
static void
duplicate_outcome(const WebhookProvider *provider, const WebhookEvent *event,
				  Outcome *out)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;

	values[0] = CStringGetTextDatum(provider->name);
	values[1] = CStringGetTextDatum(event->event_id);
	out->result = "duplicate";
	if (shop_exec(shop_plan(&plan_duplicate,
							"SELECT l.order_id, o.status"
							"  FROM shop.payment_log l"
							"  LEFT JOIN shop.orders o ON o.id = l.order_id"
							" WHERE l.provider = $1 AND l.event_id = $2",
							2, argtypes),
				  values, NULL, false, 0) == 0)
		elog(ERROR, "shop: duplicate event has no log row");
	out->order_id = shop_get_int64(0, 1, &isnull);
	out->status = shop_get_text(0, 2);
}

/*
 * The order id an event names, or 0 when the reference is missing or not
 * an order id at all (both are unmatched).
 */
static int64
order_ref_id(const char *ref)
{
	int64		id = 0;
	const char *p;

	if (ref == NULL || *ref == '\0' || strlen(ref) > 18)
		return 0;
	for (p = ref; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return 0;
		id = id * 10 + (*p - '0');
	}
	return id;
}

/*
 * Lock order id and read what the rules need; false when it does not exist.
 */
static bool
lock_order(int64 id, LockedOrder *order)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(id);
	if (shop_exec(shop_plan(&plan_lock_order,
							"SELECT status, amount, currency::text, external_payment_id,"
							"       status_reason"
							"  FROM shop.orders WHERE id = $1 FOR UPDATE",
							1, argtypes),
				  values, NULL, false, 0) == 0)
		return false;
	order->id = id;
	order->status = shop_get_text(0, 1);
	order->amount = shop_get_int64(0, 2, NULL);
	order->currency = shop_get_text(0, 3);
	order->payment_id = shop_get_text(0, 4);
	order->reason = shop_get_text(0, 5);
	return true;
}

/*
 * Whether a payment of amount in currency (any case) is exactly the
 * order's snapshot; if not, *why says what differs.
 */
static bool
payment_matches(const LockedOrder *order, bool has_amount, int64 amount,
				const char *currency, char **why)
{
	char		upper[4];
	int			i;

	if (!has_amount || currency == NULL)
	{
		*why = psprintf("the payment carries no %s; the order is %lld %s",
						!has_amount ? "amount" : "currency",
						(long long) order->amount, order->currency);
		return false;
	}
	for (i = 0; i < 3 && currency[i] != '\0'; i++)
		upper[i] = pg_toupper((unsigned char) currency[i]);
	upper[i] = '\0';
	if (amount != order->amount || strlen(currency) != 3 ||
		strcmp(upper, order->currency) != 0)
	{
		*why = psprintf("paid %lld %s, the order is %lld %s",
						(long long) amount, currency,
						(long long) order->amount, order->currency);
		return false;
	}
	return true;
}

/*
 * Mark the locked order PAID, its reservations already consumed.
 */
static void
mark_paid(int64 order_id, const char *payment_id, const char *reason)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	values[0] = Int64GetDatum(order_id);
	set_text(values, nulls, 1, payment_id);
	set_text(values, nulls, 2, reason);
	shop_exec(shop_plan(&plan_mark_paid,
						"UPDATE shop.orders"
						"   SET status = 'PAID', external_payment_id = $2,"
						"       status_reason = $3, updated_at = now()"
						" WHERE id = $1",
						3, argtypes),
			  values, nulls, false, 0);
}

/*
 * Sell a locked PENDING order: consume its reservations, mark it PAID.
 */
static void
confirm_locked(int64 order_id, const char *payment_id)
{
	order_settle(order_id, true);
	mark_paid(order_id, payment_id, NULL);
}

/*
 * Record that a person must look at the order (the event's row in
 * shop.order_review, listed by shop.orders_needing_review).
 */
static void
flag_review(int64 order_id, const char *reason, const WebhookProvider *provider,
			const WebhookEvent *event, const char *detail)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];

	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(reason);
	values[2] = CStringGetTextDatum(provider->name);
	values[3] = CStringGetTextDatum(event->event_id);
	values[4] = CStringGetTextDatum(detail);
	shop_exec(shop_plan(&plan_review,
						"INSERT INTO shop.order_review"
						"  (order_id, reason, provider, event_id, detail)"
						" VALUES ($1, $2, $3, $4, $5)",
						5, argtypes),
			  values, NULL, false, 0);
}

/*
 * Reserve every line of a released order again, all or nothing, with the
 * core's reservation code (reserve.c; the order row is locked already).
 * Returns 0 when all lines are reserved, else the id of a SKU that is short.
 */
static int64
rereserve_order(int64 order_id)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];
	OrderLine  *lines;
	uint64		n;

	values[0] = Int64GetDatum(order_id);
	n = shop_exec(shop_plan(&plan_order_lines,
							"SELECT sku_id, qty FROM shop.order_item"
							" WHERE order_id = $1 ORDER BY sku_id",
							1, argtypes),
				  values, NULL, false, 0);
	lines = shop_result_lines(n);

	return reserve_order_again(order_id, lines, (int) n);
}

/*
 * Apply a paid event to the locked order.
 */
static void
apply_paid(const WebhookProvider *provider, const WebhookEvent *event,
		   LockedOrder *order, Outcome *out)
{
	char	   *why;
	int64		short_sku;
	const char *payment_id = event->payment_id ? event->payment_id : event->event_id;

	out->result = "processed";
	if (strcmp(order->status, "PAID") == 0)
	{
		if (event->payment_id == NULL || order->payment_id == NULL ||
			strcmp(event->payment_id, order->payment_id) == 0)
		{
			/* the same payment reported again (another event type) */
			out->result = "ignored";
			out->note = pstrdup("order is already PAID by this payment");
			return;
		}
		/* a second, different payment for a sold order: give it back */
		out->review = "refund_required";
		out->note = psprintf("order is already PAID by payment %s; payment %s must be refunded",
							 order->payment_id, event->payment_id);
		flag_review(order->id, out->review, provider, event, out->note);
		return;
	}
	if (!payment_matches(order, event->has_amount, event->amount,
						 event->currency, &why))
	{
		/* never sell for a different amount: a person decides */
		out->review = "amount_mismatch";
		out->note = why;
		flag_review(order->id, out->review, provider, event, out->note);
		return;
	}
	if (strcmp(order->status, "CANCELLED") != 0 &&
		strcmp(order->status, "FAILED") != 0)
	{
		confirm_locked(order->id, payment_id);
		out->status = "PAID";
		return;
	}

	/*
	 * Paid after the order was released.  Released by time (expired) or by
	 * a failed attempt the customer then retried: the customer still wants
	 * it, so sell it if the stock is still there.  Cancelled on purpose
	 * (by the customer or the shop): never sell it behind their back.
	 */
	if (order->reason == NULL ||
		(strcmp(order->reason, "expired") != 0 &&
		 strcmp(order->reason, "payment_failed") != 0))
	{
		out->review = "refund_required";
		out->note = psprintf("payment arrived after the order was %s (%s); it is not sold again",
							 order->status, order->reason ? order->reason : "no reason");
		flag_review(order->id, out->review, provider, event, out->note);
		return;
	}
	short_sku = rereserve_order(order->id);
	if (short_sku == 0)
	{
		order_settle(order->id, true);
		mark_paid(order->id, payment_id, "paid_after_release");
		out->status = "PAID";
		out->note = psprintf("payment arrived after the order was %s; stock reserved again",
							 order->status);
		return;
	}
	out->review = "refund_required";
	out->note = psprintf("payment arrived after the order was %s and SKU %lld is no longer available",
						 order->status, (long long) short_sku);
	flag_review(order->id, out->review, provider, event, out->note);
}

/*
 * Apply a failed event to the locked order: release a pending order;
 * anything already settled stays as it is.
 */
static void
apply_failed(LockedOrder *order, Outcome *out)
{
	static const Oid argtypes[] = {INT8OID};
	Datum		values[1];

	if (strcmp(order->status, "PAID") == 0)
	{
		out->result = "ignored";
		out->note = pstrdup("failure reported for a PAID order; nothing changed");
		return;
	}
	if (strcmp(order->status, "CANCELLED") == 0 ||
		strcmp(order->status, "FAILED") == 0)
	{
		out->result = "ignored";
		out->note = psprintf("order is already %s", order->status);
		return;
	}
	order_settle(order->id, false);
	values[0] = Int64GetDatum(order->id);
	shop_exec(shop_plan(&plan_mark_failed,
						"UPDATE shop.orders"
						"   SET status = 'FAILED', status_reason = 'payment_failed',"
						"       updated_at = now()"
						" WHERE id = $1",
						1, argtypes),
			  values, NULL, false, 0);
	out->result = "processed";
	out->status = "FAILED";
}

/*
 * Write the outcome into the event's log row.
 */
static void
finish_log(int64 log_id, const Outcome *out)
{
	static const Oid argtypes[] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(log_id);
	values[1] = Int64GetDatum(out->order_id);
	nulls[1] = out->order_id != 0 ? ' ' : 'n';
	set_text(values, nulls, 2, out->result);
	set_text(values, nulls, 3, out->review);
	set_text(values, nulls, 4, out->note);
	shop_exec(shop_plan(&plan_finish_log,
						"UPDATE shop.payment_log"
						"   SET order_id = $2, result = $3, review = $4, note = $5,"
						"       processed = true"
						" WHERE id = $1",
						5, argtypes),
			  values, nulls, false, 0);
}

/*
 * Record and apply a verified, parsed event.
 */
static void
process_event(const WebhookProvider *provider, const WebhookEvent *event,
			  Jsonb *payload, Outcome *out)
{
	int64		log_id = claim_event(provider, event, payload);
	int64		order_id;
	LockedOrder order;

	if (log_id == 0)
	{
		duplicate_outcome(provider, event, out);
		return;
	}
	if (event->kind == WEBHOOK_EVENT_OTHER)
	{
		out->result = "ignored";
		out->note = psprintf("event type %s is not handled",
							 event->type ? event->type : "(none)");
	}
	else if ((order_id = order_ref_id(event->order_ref)) == 0 ||
			 !lock_order(order_id, &order))
	{
		/* dead letter: accepted, kept for a person, never retried forever */
		out->result = "unmatched";
		out->note = event->order_ref
			? psprintf("no order %s", event->order_ref)
			: pstrdup("the event names no order");
	}
	else
	{
		out->order_id = order.id;
		out->status = order.status;
		if (event->kind == WEBHOOK_EVENT_PAID)
			apply_paid(provider, event, &order, out);
		else
			apply_failed(&order, out);
	}
	finish_log(log_id, out);
}

/*
 * shop_handle_webhook(provider text, headers jsonb, body text) returns jsonb
 *
 * {"result": processed|duplicate|ignored|unmatched, "event_id", "order_id",
 *  "order_status"} plus "review" when a person must look at the order.
 */
Datum
shop_handle_webhook(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID};
	text	   *name = shop_text_arg(fcinfo, 0, "provider", true);
	WebhookRequest request;
	WebhookProvider *provider;
	WebhookEvent event;
	Outcome		out;
	Jsonb	   *payload;
	text	   *body;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	Datum		result;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("headers and body must not be null")));
	request.headers = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(request.headers))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("headers must be a JSON object of header names and values")));
	body = PG_GETARG_TEXT_PP(2);
	request.body = VARDATA_ANY(body);
	request.body_len = VARSIZE_ANY_EXHDR(body);
	request.now = (GetCurrentTransactionStartTimestamp() +
				   (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) /
		USECS_PER_SEC;
	memset(&event, 0, sizeof(event));
	memset(&out, 0, sizeof(out));

	SPI_connect();
	provider = webhook_load_provider(name);
	provider->kind->verify(provider, &request);
	payload = parse_body(request.body, request.body_len);
	provider->kind->parse(provider, &request, payload, &event);
	process_event(provider, &event, payload, &out);

	set_text(values, nulls, 0, out.result);
	set_text(values, nulls, 1, event.event_id);
	values[2] = Int64GetDatum(out.order_id);
	nulls[2] = out.order_id != 0 ? ' ' : 'n';
	set_text(values, nulls, 3, out.status);
	set_text(values, nulls, 4, out.review);
	shop_exec(shop_plan(&plan_response,
						"SELECT pg_catalog.jsonb_build_object("
						"  'result', $1, 'event_id', $2, 'order_id', $3,"
						"  'order_status', $4)"
						" OPERATOR(pg_catalog.||) CASE WHEN $5 IS NULL"
						"   THEN '{}'::pg_catalog.jsonb"
						"   ELSE pg_catalog.jsonb_build_object('review', $5) END",
						5, argtypes),
			  values, nulls, true, 0);
	result = webhook_jsonb_result();
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * shop_confirm_paid(order_id bigint, external_payment_id text,
 *					 amount bigint, currency text) returns order_summary
 *
 * The core confirm, refusing (SH015) a payment whose amount or currency
 * (compared case-insensitively) differs from the order's snapshot.  A PAID
 * order is returned unchanged; a CANCELLED or FAILED one is refused (SH004)
 * as in the core: late payments go through the webhook.
 */
Datum
shop_confirm_paid_checked(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {INT8OID};
	int64		order_id = shop_int64_arg(fcinfo, 0, "order_id");
	text	   *payment_id = shop_text_arg(fcinfo, 1, "external_payment_id", true);
	int64		amount = shop_int64_arg(fcinfo, 2, "amount");
	text	   *currency = shop_text_arg(fcinfo, 3, "currency", true);
	MemoryContext outer = CurrentMemoryContext;
	LockedOrder order;
	Datum		values[1];
	Datum		result;
	char	   *why;

	SPI_connect();
	if (!lock_order(order_id, &order))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
	if (!payment_matches(&order, true, amount, text_to_cstring(currency), &why))
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_PAYMENT_MISMATCH),
				 errmsg("payment does not match order %lld", (long long) order_id),
				 errdetail("%s.", why),
				 errhint("Nothing was confirmed; refund or investigate the payment.")));
	if (strcmp(order.status, "CANCELLED") == 0 || strcmp(order.status, "FAILED") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WRONG_ORDER_STATE),
				 errmsg("order %lld is %s and cannot be confirmed",
						(long long) order_id, order.status),
				 errdetail("Its reserved stock was already given back."),
				 errhint("Refund the payment, or re-reserve through the payment webhook.")));
	if (strcmp(order.status, "PAID") != 0)
		confirm_locked(order_id, text_to_cstring(payment_id));

	values[0] = Int64GetDatum(order_id);
	shop_exec(shop_plan(&plan_order_summary_checked,
						"SELECT id, status, amount, currency, expires_at"
						"  FROM shop.orders WHERE id = $1",
						1, argtypes),
			  values, NULL, false, 0);
	result = shop_row_datum(fcinfo, outer, 0);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

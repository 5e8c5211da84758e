/*
 * webhook.c
 *		Payment webhooks: verify, record and apply one provider event in one
 *		transaction; confirm a payment only for the order's exact amount.
 *
 * shop_handle_webhook() runs the rules in this order:
 *	0. a body longer than shop.webhook_max_body_bytes is refused before
 *	   anything reads it (SH014);
 *	1. the provider kind verifies signature and timestamp (provider_*.c);
 *	   any failure raises before anything is written;
 *	2. the event is claimed by inserting its payment_log row: a second copy,
 *	   even a concurrent one, meets the unique (provider, event_id) and
 *	   returns "duplicate" without touching the order;
 *	3. the order row is locked (FOR UPDATE, waiting: a transient lock or
 *	   serialization error propagates, the provider retries, and the retry
 *	   finds nothing claimed because the claim rolled back with the error);
 *	4. the event is applied by the transition table in the README ("How an
 *	   event changes its order"), through the one confirm and release of
 *	   order_state.c, with the order vocabulary of order_status.c.
 * A kind whose provider signs nothing (trigger_only: Toss Payments) skips
 * 2-4: its request only names a payment, which is fetched from the
 * provider's API through the outbox and applied as the API reports it
 * (trigger_fetch, session.c).
 * Providers are registered and loaded in webhook_provider.c.
 * Lock order is the core's: order row first, then SKU rows ascending.
 */
#include "webhook.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(shop_handle_webhook);

static SPIPlanPtr plan_claim;
static SPIPlanPtr plan_duplicate;
static SPIPlanPtr plan_order_lines;
static SPIPlanPtr plan_review;
static SPIPlanPtr plan_finish_log;
static SPIPlanPtr plan_fetched;
static SPIPlanPtr plan_trigger_order;

/* What applying an event did, for the log row and the response (webhook.h). */
typedef WebhookOutcome Outcome;

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
		int			category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);

		/*
		 * Limits the body itself runs into (nesting too deep for the stack,
		 * 54001; too large, 54000) are the body's fault like data errors:
		 * SH014, never the transient class, or the provider would resend
		 * it forever.
		 */
		if (category == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
					 errmsg("webhook body is too deeply nested or too large to read")));
		if (category != ERRCODE_DATA_EXCEPTION)
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
 * {"review": {"reason": ..., "detail": ...}} for the order.needs_review
 * event.
 */
static Jsonb *
review_extra(const char *reason, const char *detail)
{
	JsonResult	review;
	JsonResult	outer;

	json_result_begin(&review, CurrentMemoryContext);
	json_result_text(&review, "reason", reason);
	json_result_text(&review, "detail", detail);
	json_result_begin(&outer, CurrentMemoryContext);
	json_result_jsonb(&outer, "review", DatumGetJsonbP(json_result_end(&review)));
	return DatumGetJsonbP(json_result_end(&outer));
}

/*
 * Money arrived that cannot be kept: when the provider can refund through
 * its API and auto_refund is on (the default), queue exactly one refund of
 * that payment, tied to its review flag (resolved when the provider
 * confirms).  Without an API key, an amount or a payment id the flag is
 * left to a person, as before.
 */
static void
refund_automatically(int64 order_id, const WebhookProvider *provider,
					 const WebhookEvent *event, int64 review_id)
{
	char		currency[4];
	int			i;

	if (!events_schema_ready() ||	/* a 0.1 schema has no refunds */
		provider->kind->api == NULL || !event->has_amount || event->amount <= 0 ||
		event->payment_id == NULL || event->currency == NULL ||
		strlen(event->currency) != 3 ||
		!provider_option_bool(provider, "auto_refund", true) ||
		!provider_has_api_key(provider->name))
		return;
	for (i = 0; i < 3; i++)
		currency[i] = pg_toupper((unsigned char) event->currency[i]);
	currency[3] = '\0';
	refund_queue(provider, order_id, event->payment_id, event->amount, currency,
				 "automatic: the payment could not be kept", review_id);
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
	int64		review_id;

	values[0] = Int64GetDatum(order_id);
	values[1] = CStringGetTextDatum(reason);
	values[2] = CStringGetTextDatum(provider->name);
	values[3] = CStringGetTextDatum(event->event_id);
	values[4] = CStringGetTextDatum(detail);
	shop_exec(shop_plan(&plan_review,
						"INSERT INTO shop.order_review"
						"  (order_id, reason, provider, event_id, detail)"
						" VALUES ($1, $2, $3, $4, $5)"
						" RETURNING id",
						5, argtypes),
			  values, NULL, false, 0);
	review_id = shop_get_int64(0, 1, NULL);
	events_emit_orders("order.needs_review", &order_id, 1,
					   review_extra(reason, detail));
	if (strcmp(reason, "refund_required") == 0)
		refund_automatically(order_id, provider, event, review_id);
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
	if (order->status == ORDER_PAID)
	{
		/* the one rule for a paid order (order_state.c) */
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
	if (!order_payment_matches(order, event->has_amount, event->amount,
							   event->currency, &why))
	{
		/* never sell for a different amount: a person decides */
		out->review = "amount_mismatch";
		out->note = why;
		flag_review(order->id, out->review, provider, event, out->note);
		return;
	}
	if (!order_status_released(order->status))
	{
		order_confirm_locked(order->id, payment_id, REASON_NONE);
		out->status = order_status_name(ORDER_PAID);
		return;
	}

	/*
	 * Paid after the order was released.  Released by time (expired) or by
	 * a failed attempt the customer then retried: the customer still wants
	 * it, so sell it if the stock is still there.  Cancelled on purpose
	 * (by the customer or the shop): never sell it behind their back.
	 */
	if (!order_reason_resellable(order->reason))
	{
		out->review = "refund_required";
		out->note = psprintf("payment arrived after the order was %s (%s); it is not sold again",
							 order_status_name(order->status),
							 order->reason != REASON_NONE
							 ? order_reason_name(order->reason) : "no reason");
		flag_review(order->id, out->review, provider, event, out->note);
		return;
	}
	short_sku = rereserve_order(order->id);
	if (short_sku == 0 && !coupons_retake(order->id))
	{
		/*
		 * The stock is back but its coupon is used up meanwhile: never sell
		 * over the coupon's limit, nor at another price than was paid.  Give
		 * the stock back (its SKU rows are locked already) and ask a person.
		 */
		order_settle(order->id, false);
		out->review = "refund_required";
		out->note = psprintf("payment arrived after the order was %s and its coupon is used up",
							 order_status_name(order->status));
		flag_review(order->id, out->review, provider, event, out->note);
		return;
	}
	if (short_sku == 0)
	{
		order_confirm_locked(order->id, payment_id, REASON_PAID_AFTER_RELEASE);
		out->status = order_status_name(ORDER_PAID);
		out->note = psprintf("payment arrived after the order was %s; stock reserved again",
							 order_status_name(order->status));
		return;
	}
	out->review = "refund_required";
	out->note = psprintf("payment arrived after the order was %s and SKU %lld is no longer available",
						 order_status_name(order->status), (long long) short_sku);
	flag_review(order->id, out->review, provider, event, out->note);
}

/*
 * Apply a failed event to the locked order: release a pending order;
 * anything already settled stays as it is.
 */
static void
apply_failed(LockedOrder *order, Outcome *out)
{
	if (order->status == ORDER_PAID)
	{
		out->result = "ignored";
		out->note = pstrdup("failure reported for a PAID order; nothing changed");
		return;
	}
	if (order_status_released(order->status))
	{
		out->result = "ignored";
		out->note = psprintf("order is already %s", order_status_name(order->status));
		return;
	}
	order_release_locked(order->id, REASON_PAYMENT_FAILED);
	out->result = "processed";
	out->status = order_status_name(ORDER_FAILED);
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
						"   SET order_id = $2, result = $3, review = $4, note = $5"
						" WHERE id = $1",
						5, argtypes),
			  values, nulls, false, 0);
}

/*
 * A payment reported once by a webhook and once by a fetch (a closed or
 * reconciled checkout, session.c), in either order, is one payment: the
 * second report is answered "duplicate", as a second delivery of the same
 * event would be, and not recorded, so it can neither sell nor flag (and
 * refund) a second time.  Two webhooks of one payment keep their own rules.
 */
static bool
fetched_already(const WebhookProvider *provider, const WebhookEvent *event,
				Outcome *out)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, BOOLOID};
	Datum		values[3];
	bool		isnull;

	if (event->kind != WEBHOOK_EVENT_PAID || event->payment_id == NULL)
		return false;
	values[0] = CStringGetTextDatum(provider->name);
	values[1] = CStringGetTextDatum(event->payment_id);
	values[2] = BoolGetDatum(strncmp(event->event_id, "fetched:", 8) == 0);
	if (shop_exec(shop_plan(&plan_fetched,
							"SELECT l.order_id, o.status"
							"  FROM shop.payment_log l"
							"  LEFT JOIN shop.orders o ON o.id = l.order_id"
							" WHERE l.provider = $1 AND l.payment_id = $2 AND l.kind = 'paid'"
							"   AND l.result = 'processed'"
							"   AND (l.event_id LIKE 'fetched:%') <> $3"
							" LIMIT 1",
							3, argtypes),
				  values, NULL, false, 0) == 0)
		return false;
	out->result = "duplicate";
	out->order_id = shop_get_int64(0, 1, &isnull);
	out->status = shop_get_text(0, 2);
	return true;
}

/*
 * Record and apply a verified, parsed event.
 */
static void
process_event(const WebhookProvider *provider, const WebhookEvent *event,
			  Jsonb *payload, Outcome *out)
{
	int64		log_id;
	int64		order_id;
	LockedOrder order;

	if (fetched_already(provider, event, out))
		return;
	log_id = claim_event(provider, event, payload);
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
			 !order_lock(order_id, &order))
	{
		/* dead letter: accepted, kept for a person, never retried forever */
		out->result = "unmatched";
		out->note = event->order_ref
			? psprintf("no order %s", event->order_ref)
			: pstrdup("the event names no order");
	}
	else
	{
		Outcome		other;

		memset(&other, 0, sizeof(other));
		out->order_id = order.id;
		out->status = order_status_name(order.status);

		/*
		 * The same payment reported by the other path (its webhook, or a
		 * fetch) may have been applied while this report waited for the
		 * order's lock: the look before claiming could not see it yet.
		 * Look again now, under the lock, or both would sell or flag (and
		 * refund) one payment.
		 */
		if (event->kind == WEBHOOK_EVENT_PAID && fetched_already(provider, event, &other))
		{
			out->result = "ignored";
			out->note = psprintf("payment %s was applied from another report of it meanwhile",
								 event->payment_id);
		}
		else if (event->kind == WEBHOOK_EVENT_PAID)
			apply_paid(provider, event, &order, out);
		else
			apply_failed(&order, out);
	}
	finish_log(log_id, out);
}

/*
 * Apply an event that did not come as a webhook (a payment fetched from the
 * provider) by the webhook's own rules: recorded once per (provider, event
 * id), applied to its order exactly as the webhook would.  Returns the
 * result (processed, duplicate, ignored, unmatched).  SPI connected.
 */
const char *
webhook_apply_event(const WebhookProvider *provider, const WebhookEvent *event,
					Jsonb *payload)
{
	Outcome		out;

	memset(&out, 0, sizeof(out));
	process_event(provider, event, payload, &out);
	return out.result;
}

/*
 * webhook_apply_event() that also says what became of the order.
 */
void
webhook_apply_event_outcome(const WebhookProvider *provider, const WebhookEvent *event,
							Jsonb *payload, WebhookOutcome *out)
{
	memset(out, 0, sizeof(*out));
	process_event(provider, event, payload, out);
}

/*
 * A request of a provider that does not sign its webhooks (a trigger_only
 * kind, Toss Payments) is never applied: its body could say anything.  It
 * only names a payment (event->payment_id) and the order it claims to be
 * for (event->order_ref); if that order exists, the payment is recorded as
 * its open payment session (unless it has one already, open or completed:
 * an untrusted key replaces none) and fetched from
 * the provider's API through the outbox.  What the provider answers is
 * applied like any fetched payment (session.c): an authentic one by its
 * real state and its own order id, a forged one not at all.  Nothing is
 * written to payment_log here.  Result: "fetch_queued", or "ignored" /
 * "unmatched" when there is nothing to fetch.
 */
static void
trigger_fetch(const WebhookProvider *provider, const WebhookEvent *event, Outcome *out)
{
	static const Oid argtypes[] = {INT8OID};
	int64		order_id = order_ref_id(event->order_ref);
	int64		row;
	Datum		values[1];

	if (event->payment_id == NULL || *event->payment_id == '\0')
	{
		out->result = "ignored";
		return;
	}
	values[0] = Int64GetDatum(order_id);
	if (order_id == 0 ||
		shop_exec(shop_plan(&plan_trigger_order,
							"SELECT status FROM shop.orders WHERE id = $1",
							1, argtypes),
				  values, NULL, false, 0) == 0)
	{
		out->result = "unmatched";
		return;
	}
	out->order_id = order_id;
	out->status = shop_get_text(0, 1);
	row = session_upsert_payment(provider, order_id, event->payment_id, false, false);
	if (row == 0)
	{
		out->result = "ignored";	/* the order's payment is settled already */
		return;
	}
	session_queue_fetch(provider, row, event->payment_id);
	out->result = "fetch_queued";
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
	text	   *name = shop_text_arg(fcinfo, 0, "provider", true);
	MemoryContext outer = CurrentMemoryContext;
	JsonResult	res;
	WebhookRequest request;
	WebhookProvider *provider;
	WebhookEvent event;
	Outcome		out;
	Jsonb	   *payload;
	text	   *body;
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
	/* before anything reads the body: no HMAC or parse of a huge one */
	if (toast_raw_datum_size(PG_GETARG_DATUM(2)) - VARHDRSZ > (Size) shop_webhook_max_body)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("webhook body is larger than %d bytes", shop_webhook_max_body),
				 errhint("The limit is the setting shop.webhook_max_body_bytes.")));
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
	if (provider->kind->trigger_only)
		trigger_fetch(provider, &event, &out);
	else
		process_event(provider, &event, payload, &out);

	json_result_begin(&res, outer);
	json_result_text(&res, "result", out.result);
	json_result_text(&res, "event_id", event.event_id);
	json_result_int(&res, "order_id", out.order_id, out.order_id == 0);
	json_result_text(&res, "order_status", out.status);
	if (out.review != NULL)
		json_result_text(&res, "review", out.review);
	result = json_result_end(&res);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

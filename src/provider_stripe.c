/*
 * provider_stripe.c
 *		Provider kind "stripe": Stripe's webhook signature scheme and event
 *		format (https://docs.stripe.com/webhooks, "Verify manually").
 *
 * Header Stripe-Signature: "t=<unix time>,v1=<hex HMAC-SHA256>[,v1=...]"
 * (several v1 while Stripe rolls an endpoint secret; v0 and unknown schemes
 * are ignored).  The signed payload is "<t>.<body>" and the key is the
 * endpoint secret string itself ("whsec_...", not decoded).
 *
 * Events: payment_intent.succeeded and checkout.session.completed (only
 * with payment_status "paid": delayed methods complete unpaid and
 * succeed later as checkout.session.async_payment_succeeded) are paid;
 * payment_intent.payment_failed, checkout.session.expired and
 * checkout.session.async_payment_failed are failed.  The order comes from
 * metadata.order_id of the event's object; Stripe sends lowercase currency.
 */
#include "webhook.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define STRIPE_SECRET_PREFIX	"whsec_"

static const char *const stripe_option_keys[] = {"api_base", "auto_refund", NULL};

/*
 * The endpoint secret as given: Stripe keys the HMAC with the whole string.
 * The prefix check catches a pasted API key (sk_...) early.
 */
static WebhookSecret
stripe_parse_secret(const char *secret)
{
	WebhookSecret result;

	if (strncmp(secret, STRIPE_SECRET_PREFIX, strlen(STRIPE_SECRET_PREFIX)) != 0 ||
		strlen(secret) < strlen(STRIPE_SECRET_PREFIX) + 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Stripe webhook secret must start with \"%s\"",
						STRIPE_SECRET_PREFIX),
				 errhint("Use the endpoint's signing secret, not an API key.")));
	result.key = pstrdup(secret);
	result.len = strlen(secret);
	return result;
}

/*
 * Verify Stripe-Signature: any v1 signature under any active secret, then
 * the timestamp (see standard_verify for why in this order).
 */
static void
stripe_verify(const WebhookProvider *provider, const WebhookRequest *request)
{
	char	   *header = webhook_header(request, "Stripe-Signature");
	uint8		candidates[WEBHOOK_MAX_SIGNATURES][WEBHOOK_DIGEST_LEN];
	int			ncandidates = 0;
	int			nv1 = 0;
	int			nitems = 0;
	char	   *ts_text = NULL;
	char	   *save = NULL;
	char	   *item;
	int64		timestamp;
	const char *parts[3];
	int			lens[3];

	if (header == NULL || *header == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("webhook header \"Stripe-Signature\" is missing")));

	for (item = strtok_r(header, ",", &save); item != NULL;
		 item = strtok_r(NULL, ",", &save))
	{
		if (++nitems > WEBHOOK_MAX_SIGNATURES + 2)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
					 errmsg("header \"Stripe-Signature\" has too many elements")));
		if (strncmp(item, "t=", 2) == 0)
		{
			if (ts_text != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
						 errmsg("header \"Stripe-Signature\" has more than one timestamp")));
			ts_text = item + 2;
		}
		else if (strncmp(item, "v1=", 3) == 0)
		{
			if (++nv1 > WEBHOOK_MAX_SIGNATURES)
				ereport(ERROR,
						(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
						 errmsg("header \"Stripe-Signature\" has more than %d signatures",
								WEBHOOK_MAX_SIGNATURES)));
			/* a v1 that is not 64 hex digits can match nothing */
			if (strlen(item + 3) == WEBHOOK_DIGEST_LEN * 2 &&
				strspn(item + 3, "0123456789abcdefABCDEF") == WEBHOOK_DIGEST_LEN * 2)
			{
				hex_decode(item + 3, WEBHOOK_DIGEST_LEN * 2,
						   (char *) candidates[ncandidates]);
				ncandidates++;
			}
		}
	}
	if (ts_text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("header \"Stripe-Signature\" has no timestamp")));
	if (nv1 == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("header \"Stripe-Signature\" has no v1 signature")));
	timestamp = webhook_parse_timestamp(ts_text, "Stripe-Signature");

	parts[0] = ts_text;
	lens[0] = strlen(ts_text);
	parts[1] = ".";
	lens[1] = 1;
	parts[2] = request->body;
	lens[2] = request->body_len;
	webhook_verify_hmac(provider, request, parts, lens, 3,
						(const uint8 (*)[WEBHOOK_DIGEST_LEN]) candidates,
						ncandidates, timestamp);
}

/*
 * Map a Stripe event to the normalised event.
 */
static void
stripe_parse(const WebhookProvider *provider, const WebhookRequest *request,
			 Jsonb *body, WebhookEvent *event)
{
	static const char *const id_path[] = {"id"};
	static const char *const type_path[] = {"type"};
	static const char *const object_path[] = {"data", "object"};
	static const char *const object_id_path[] = {"data", "object", "id"};
	static const char *const intent_path[] = {"data", "object", "payment_intent"};
	static const char *const order_path[] = {"data", "object", "metadata", "order_id"};
	static const char *const currency_path[] = {"data", "object", "currency"};
	static const char *const received_path[] = {"data", "object", "amount_received"};
	static const char *const amount_path[] = {"data", "object", "amount"};
	static const char *const total_path[] = {"data", "object", "amount_total"};
	static const char *const status_path[] = {"data", "object", "payment_status"};
	const char *type;
	bool		session;
	char	   *payment_status;

	event->event_id = webhook_json_string(webhook_json_get(body, id_path, 1),
										  "event id");
	event->type = webhook_json_string(webhook_json_get(body, type_path, 1), NULL);
	if (event->event_id == NULL || *event->event_id == '\0' || event->type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("Stripe event has no \"id\" or \"type\"")));
	if (webhook_json_get(body, object_path, 2) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("Stripe event \"%s\" has no data.object", event->event_id)));

	type = event->type;
	session = strncmp(type, "checkout.session.", 17) == 0;
	payment_status = webhook_json_string(webhook_json_get(body, status_path, 3), NULL);
	if (strcmp(type, "payment_intent.succeeded") == 0 ||
		strcmp(type, "checkout.session.async_payment_succeeded") == 0 ||
		(strcmp(type, "checkout.session.completed") == 0 &&
		 payment_status != NULL && strcmp(payment_status, "paid") == 0))
		event->kind = WEBHOOK_EVENT_PAID;
	else if (strcmp(type, "payment_intent.payment_failed") == 0 ||
			 strcmp(type, "checkout.session.expired") == 0 ||
			 strcmp(type, "checkout.session.async_payment_failed") == 0)
		event->kind = WEBHOOK_EVENT_FAILED;
	else
		event->kind = WEBHOOK_EVENT_OTHER;

	event->order_ref = webhook_json_string(webhook_json_get(body, order_path, 4), NULL);
	event->currency = webhook_json_string(webhook_json_get(body, currency_path, 3), NULL);
	if (session)
	{
		/* a session pays through its PaymentIntent: use that id, so the
		 * session and intent events of one payment agree */
		event->has_amount = webhook_json_amount(webhook_json_get(body, total_path, 3),
												&event->amount);
		event->payment_id = webhook_json_string(webhook_json_get(body, intent_path, 3), NULL);
	}
	else
	{
		/* amount_received is what arrived; amount is what was asked */
		event->has_amount = webhook_json_amount(webhook_json_get(body, received_path, 3),
												&event->amount) ||
			webhook_json_amount(webhook_json_get(body, amount_path, 3), &event->amount);
		event->payment_id = NULL;
	}
	if (event->payment_id == NULL)
		event->payment_id = webhook_json_string(webhook_json_get(body, object_id_path, 3), NULL);
}

const WebhookKind webhook_kind_stripe = {
	.name = "stripe",
	.parse_secret = stripe_parse_secret,
	.verify = stripe_verify,
	.parse = stripe_parse,
	.option_keys = stripe_option_keys,
	.api = &stripe_api,
	.default_api_base = "https://api.stripe.com"
};

/*
 * Stripe's API (https://docs.stripe.com/api): form-encoded requests with
 * Stripe's bracket syntax for nested fields, JSON answers, errors as
 * {"error": {"type", "message", ...}}.  The mock kind speaks it too
 * (demo/mock_provider.js), pointed at its own api_base.
 */

/* Stripe's limits on a Checkout Session's expires_at, from now. */
#define STRIPE_SESSION_MIN_SECS	(30 * 60 + 60)	/* 30 min, and a minute for the call */
#define STRIPE_SESSION_MAX_SECS	(24 * 60 * 60)

/*
 * Append key=value to a form body, both percent-encoded by libcurl.
 */
static void
form_add(StringInfo form, const char *key, const char *value)
{
	char	   *k = curl_easy_escape(NULL, key, 0);
	char	   *v = curl_easy_escape(NULL, value, 0);

	if (k == NULL || v == NULL)
		elog(ERROR, "shop: out of memory encoding a form field");
	if (form->len > 0)
		appendStringInfoChar(form, '&');
	appendStringInfo(form, "%s=%s", k, v);
	curl_free(k);
	curl_free(v);
}

static void
form_add_int(StringInfo form, const char *key, int64 value)
{
	form_add(form, key, psprintf("%lld", (long long) value));
}

/*
 * POST /v1/checkout/sessions: one line per order line from the price
 * snapshot, the order in metadata and client_reference_id, and expires_at
 * the order's own when its reservation lasts within the window Stripe
 * accepts (30 min to 24 h).  Shorter holds leave it to Stripe's default:
 * the session is expired with the order anyway (session.c).  Everything
 * sent derives from the order alone, never from the clock, so a retry
 * sends the same parameters with the same Idempotency-Key (Stripe refuses
 * a key reused with other parameters).
 */
static void
stripe_checkout(const CheckoutOrder *order, ProviderCall *call)
{
	StringInfoData form;
	int64		expires = (order->expires_at - SetEpochTimestamp()) / USECS_PER_SEC;
	int64		hold = (order->expires_at - order->created_at) / USECS_PER_SEC;
	char		currency[4];
	int			i;

	for (i = 0; i < 3; i++)
		currency[i] = pg_tolower((unsigned char) order->currency[i]);
	currency[3] = '\0';

	initStringInfo(&form);
	form_add(&form, "mode", "payment");
	for (i = 0; i < order->nlines; i++)
	{
		const CheckoutLine *line = &order->lines[i];

		form_add(&form, psprintf("line_items[%d][price_data][currency]", i), currency);
		form_add_int(&form, psprintf("line_items[%d][price_data][unit_amount]", i),
					 line->unit_price);
		form_add(&form, psprintf("line_items[%d][price_data][product_data][name]", i),
				 line->name);
		form_add_int(&form, psprintf("line_items[%d][quantity]", i), line->qty);
	}
	form_add_int(&form, "metadata[order_id]", order->order_id);
	form_add_int(&form, "client_reference_id", order->order_id);
	form_add(&form, "success_url", order->success_url);
	form_add(&form, "cancel_url", order->cancel_url);
	if (hold >= STRIPE_SESSION_MIN_SECS && hold <= STRIPE_SESSION_MAX_SECS)
		form_add_int(&form, "expires_at", expires);

	call->method = "POST";
	call->path = pstrdup("/v1/checkout/sessions");
	call->content_type = "application/x-www-form-urlencoded";
	call->body = form.data;
	call->idempotency_key = psprintf("order-%lld-checkout", (long long) order->order_id);
}

static bool
stripe_checkout_result(Jsonb *answer, CheckoutSession *session)
{
	static const char *const id_path[] = {"id"};
	static const char *const url_path[] = {"url"};
	static const char *const expires_path[] = {"expires_at"};
	int64		expires;

	session->id = webhook_json_string(webhook_json_get(answer, id_path, 1), NULL);
	session->url = webhook_json_string(webhook_json_get(answer, url_path, 1), NULL);
	session->expires_at = 0;
	if (webhook_json_amount(webhook_json_get(answer, expires_path, 1), &expires))
		session->expires_at = SetEpochTimestamp() + expires * USECS_PER_SEC;
	return session->id != NULL && session->url != NULL;
}

/*
 * POST /v1/refunds for a payment (a PaymentIntent id).
 */
static void
stripe_refund(const RefundRequest *refund, ProviderCall *call)
{
	StringInfoData form;

	initStringInfo(&form);
	form_add(&form, "payment_intent", refund->payment_id);
	form_add_int(&form, "amount", refund->amount);
	form_add_int(&form, "metadata[order_id]", refund->order_id);
	form_add_int(&form, "metadata[refund_id]", refund->refund_id);
	call->method = "POST";
	call->path = pstrdup("/v1/refunds");
	call->content_type = "application/x-www-form-urlencoded";
	call->body = form.data;
	call->idempotency_key = psprintf("refund-%lld", (long long) refund->refund_id);
}

/*
 * The refund's id; *succeeded when Stripe says it went through ("pending"
 * and "requires_action" are not yet; the refund stays requested).
 */
static char *
stripe_refund_result(Jsonb *answer, bool *succeeded)
{
	static const char *const id_path[] = {"id"};
	static const char *const status_path[] = {"status"};
	char	   *status = webhook_json_string(webhook_json_get(answer, status_path, 1), NULL);

	*succeeded = status != NULL && strcmp(status, "succeeded") == 0;
	return webhook_json_string(webhook_json_get(answer, id_path, 1), NULL);
}

/*
 * POST /v1/checkout/sessions/{id}/expire: the buyer can no longer pay.
 */
static void
stripe_expire(const char *session_id, ProviderCall *call)
{
	char	   *id = curl_easy_escape(NULL, session_id, 0);

	call->method = "POST";
	call->path = psprintf("/v1/checkout/sessions/%s/expire", id);
	call->content_type = "application/x-www-form-urlencoded";
	call->body = pstrdup("");
	call->idempotency_key = psprintf("session-%s-expire", session_id);
	curl_free(id);
}

/*
 * GET /v1/checkout/sessions/{id}: what became of a checkout.
 */
static void
stripe_fetch(const char *session_id, ProviderCall *call)
{
	char	   *id = curl_easy_escape(NULL, session_id, 0);

	call->method = "GET";
	call->path = psprintf("/v1/checkout/sessions/%s", id);
	call->content_type = "application/x-www-form-urlencoded";
	call->body = NULL;
	/* a read: the key only names the request (fetches repeat over time) */
	call->idempotency_key = psprintf("session-%s-fetch-%lld", session_id,
									 (long long) ((GetCurrentTimestamp() - SetEpochTimestamp())
												  / USECS_PER_SEC / 60));
	curl_free(id);
}

/*
 * A fetched Checkout Session as the event its payment would have sent
 * (checkout.session.completed): true when it is paid.
 */
static bool
stripe_fetch_result(Jsonb *answer, WebhookEvent *event)
{
	static const char *const id_path[] = {"id"};
	static const char *const status_path[] = {"payment_status"};
	static const char *const order_path[] = {"metadata", "order_id"};
	static const char *const total_path[] = {"amount_total"};
	static const char *const currency_path[] = {"currency"};
	static const char *const intent_path[] = {"payment_intent"};
	char	   *session_id = webhook_json_string(webhook_json_get(answer, id_path, 1), NULL);
	char	   *status = webhook_json_string(webhook_json_get(answer, status_path, 1), NULL);

	if (session_id == NULL || status == NULL || strcmp(status, "paid") != 0)
		return false;
	memset(event, 0, sizeof(*event));
	event->event_id = psprintf("fetched:%s", session_id);
	event->type = pstrdup("checkout.session.completed");
	event->kind = WEBHOOK_EVENT_PAID;
	event->order_ref = webhook_json_string(webhook_json_get(answer, order_path, 2), NULL);
	event->has_amount = webhook_json_amount(webhook_json_get(answer, total_path, 1),
											&event->amount);
	event->currency = webhook_json_string(webhook_json_get(answer, currency_path, 1), NULL);
	event->payment_id = webhook_json_string(webhook_json_get(answer, intent_path, 1), NULL);
	return true;
}

static char *
stripe_error_message(Jsonb *answer)
{
	static const char *const message_path[] = {"error", "message"};

	return answer ? webhook_json_string(webhook_json_get(answer, message_path, 2), NULL) : NULL;
}

/*
 * Stripe's advice: retry network errors (0 here), 409 (a concurrent request
 * with the same key), 429 and 5xx; any other 4xx will fail again.
 */
static bool
stripe_retryable(int http_status)
{
	return http_status == 0 || http_status == 409 || http_status == 429 ||
		http_status >= 500;
}

const ProviderApi stripe_api = {
	.checkout = stripe_checkout,
	.checkout_result = stripe_checkout_result,
	.refund = stripe_refund,
	.refund_result = stripe_refund_result,
	.expire = stripe_expire,
	.fetch = stripe_fetch,
	.fetch_result = stripe_fetch_result,
	.error_message = stripe_error_message,
	.retryable = stripe_retryable
};

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

#include "utils/builtins.h"

#define STRIPE_SECRET_PREFIX	"whsec_"

static const char *const stripe_option_keys[] = {NULL};

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
	.option_keys = stripe_option_keys
};

/*
 * provider_standard.c
 *		Provider kind "standard": the Standard Webhooks scheme
 *		(https://www.standardwebhooks.com/, used by PortOne, Svix and others).
 *
 * Headers webhook-id, webhook-timestamp and webhook-signature; the signature
 * header is a space-separated list of "v1,<base64 HMAC-SHA256>" (several
 * during the sender's key rotation); the signed content is
 * "<webhook-id>.<webhook-timestamp>.<body>"; the secret is "whsec_" followed
 * by the base64 of the key bytes.  webhook-id is the message's idempotency
 * key, so it is the event id unless the options name a body field.
 *
 * Which body fields hold the order, amount, currency and type differs per
 * provider; the options map them (JSON arrays of object keys), with
 * defaults that our mock provider uses.
 */
#include "webhook.h"

#include "common/base64.h"

#define STANDARD_SECRET_PREFIX	"whsec_"

/* Default field mapping (the mock provider's event format). */
static const char *const default_type_path[] = {"type"};
static const char *const default_order_path[] = {"data", "order_id"};
static const char *const default_amount_path[] = {"data", "amount"};
static const char *const default_currency_path[] = {"data", "currency"};
static const char *const default_payment_path[] = {"data", "payment_id"};
static const char *const default_paid_types[] = {"payment.succeeded", NULL};
static const char *const default_failed_types[] = {"payment.failed",
"payment.cancelled", NULL};

static const char *const standard_option_keys[] = {
	"event_id_path", "type_path", "order_id_path", "amount_path",
	"currency_path", "payment_id_path", "paid_types", "failed_types", NULL
};

/*
 * "whsec_<base64>" to the key bytes; 24 to 64 bytes as the specification
 * asks, so a truncated paste is caught when it is registered.
 */
WebhookSecret
standard_parse_secret(const char *secret)
{
	WebhookSecret result;
	const char *b64;
	int			b64len;

	if (strncmp(secret, STANDARD_SECRET_PREFIX, strlen(STANDARD_SECRET_PREFIX)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Standard Webhooks secret must start with \"%s\"",
						STANDARD_SECRET_PREFIX)));
	b64 = secret + strlen(STANDARD_SECRET_PREFIX);
	b64len = strlen(b64);
	result.key = palloc(pg_b64_dec_len(b64len) + 1);
	result.len = pg_b64_decode(b64, b64len, result.key, pg_b64_dec_len(b64len));
	if (result.len < 24 || result.len > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Standard Webhooks secret must be \"%s\" and the base64 of 24 to 64 bytes",
						STANDARD_SECRET_PREFIX)));
	return result;
}

/*
 * A required header, or SH013 naming it.
 */
static char *
required_header(const WebhookRequest *request, const char *name)
{
	char	   *value = webhook_header(request, name);

	if (value == NULL || *value == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("webhook header \"%s\" is missing", name)));
	return value;
}

/*
 * The "v1,<base64>" signatures of the header as digests; entries of other
 * versions are skipped, v1 entries that do not decode to a digest are kept
 * out (they can match nothing).  Returns how many were found, counting
 * undecodable v1 entries so "v1,garbage" is a bad signature, not a
 * missing one.
 */
static int
standard_signatures(char *header, uint8 (*digests)[WEBHOOK_DIGEST_LEN],
					int *ndigests)
{
	char	   *save = NULL;
	char	   *entry;
	int			nv1 = 0;
	int			nentries = 0;

	*ndigests = 0;
	for (entry = strtok_r(header, " ", &save); entry != NULL;
		 entry = strtok_r(NULL, " ", &save))
	{
		char		buf[WEBHOOK_DIGEST_LEN * 2];
		int			len;

		if (++nentries > WEBHOOK_MAX_SIGNATURES)
			ereport(ERROR,
					(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
					 errmsg("header \"webhook-signature\" has more than %d signatures",
							WEBHOOK_MAX_SIGNATURES)));
		if (strncmp(entry, "v1,", 3) != 0)
			continue;
		nv1++;
		entry += 3;
		len = strlen(entry);
		if (len == 0 || pg_b64_dec_len(len) > (int) sizeof(buf))
			continue;
		if (pg_b64_decode(entry, len, buf, sizeof(buf)) != WEBHOOK_DIGEST_LEN)
			continue;
		memcpy(digests[(*ndigests)++], buf, WEBHOOK_DIGEST_LEN);
	}
	return nv1;
}

/*
 * Verify a Standard Webhooks request: signature over id.timestamp.body
 * under any active secret, then the timestamp.  Signature first, so that
 * junk always reads as a bad signature and a stale timestamp means a
 * genuine but late (or replayed) message.
 */
void
standard_verify(const WebhookProvider *provider, const WebhookRequest *request)
{
	char	   *msg_id = required_header(request, "webhook-id");
	char	   *ts_text = required_header(request, "webhook-timestamp");
	char	   *sig_header = required_header(request, "webhook-signature");
	uint8		candidates[WEBHOOK_MAX_SIGNATURES][WEBHOOK_DIGEST_LEN];
	int			ncandidates;
	int64		timestamp;
	const char *parts[5];
	int			lens[5];

	if (strlen(msg_id) > WEBHOOK_MAX_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("header \"webhook-id\" is longer than %d bytes",
						WEBHOOK_MAX_ID_LEN)));
	timestamp = webhook_parse_timestamp(ts_text, "webhook-timestamp");
	if (standard_signatures(sig_header, candidates, &ncandidates) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_HEADERS),
				 errmsg("header \"webhook-signature\" has no v1 signature")));

	parts[0] = msg_id;
	lens[0] = strlen(msg_id);
	parts[1] = ".";
	lens[1] = 1;
	parts[2] = ts_text;
	lens[2] = strlen(ts_text);
	parts[3] = ".";
	lens[3] = 1;
	parts[4] = request->body;
	lens[4] = request->body_len;
	webhook_verify_hmac(provider, request, parts, lens, 5,
						(const uint8 (*)[WEBHOOK_DIGEST_LEN]) candidates,
						ncandidates, timestamp);
}

/*
 * The "v1,<base64>" signature of a message under secret (for the mock
 * provider's signing helper).
 */
char *
standard_sign(const WebhookSecret *secret, const char *msg_id, int64 timestamp,
			  const char *body, int body_len)
{
	uint8		digest[WEBHOOK_DIGEST_LEN];
	char	   *ts_text = psprintf("%lld", (long long) timestamp);
	const char *parts[5] = {msg_id, ".", ts_text, ".", body};
	int			lens[5] = {(int) strlen(msg_id), 1, (int) strlen(ts_text), 1, body_len};
	int			enclen = pg_b64_enc_len(WEBHOOK_DIGEST_LEN);
	char	   *result = palloc(enclen + 4);
	int			n;

	webhook_hmac_sha256(secret->key, secret->len, parts, lens, 5, digest);
	memcpy(result, "v1,", 3);
	n = pg_b64_encode((const char *) digest, WEBHOOK_DIGEST_LEN, result + 3, enclen);
	if (n < 0)
		elog(ERROR, "shop: base64 encoding failed");
	result[3 + n] = '\0';
	return result;
}

/*
 * The optional text field the option (or else default_path) points at.
 */
static char *
mapped_text(Jsonb *body, Jsonb *opts, const char *option,
			const char *const *default_path, int depth)
{
	return webhook_json_string(webhook_json_path(body, opts, option,
												 default_path, depth),
							   NULL);
}

/*
 * Map the verified body to the normalised event with the provider's
 * field mapping.  The event id is the webhook-id header (the scheme's
 * idempotency key) unless event_id_path names a body field.
 */
static void
standard_parse(const WebhookProvider *provider, const WebhookRequest *request,
			   Jsonb *body, WebhookEvent *event)
{
	Jsonb	   *opts = provider->options;
	JsonbValue *v;

	v = webhook_json_path(body, opts, "event_id_path", NULL, 0);
	event->event_id = v != NULL ? webhook_json_string(v, "event id")
		: webhook_header(request, "webhook-id");
	if (event->event_id == NULL || *event->event_id == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_SHOP_WEBHOOK_BAD_BODY),
				 errmsg("webhook event has no event id")));

	event->type = mapped_text(body, opts, "type_path", default_type_path, 1);
	if (webhook_json_string_in(opts, "paid_types", default_paid_types, event->type))
		event->kind = WEBHOOK_EVENT_PAID;
	else if (webhook_json_string_in(opts, "failed_types", default_failed_types,
									event->type))
		event->kind = WEBHOOK_EVENT_FAILED;
	else
		event->kind = WEBHOOK_EVENT_OTHER;

	event->order_ref = mapped_text(body, opts, "order_id_path", default_order_path, 2);
	event->has_amount = webhook_json_amount(webhook_json_path(body, opts, "amount_path",
															  default_amount_path, 2),
											&event->amount);
	event->currency = mapped_text(body, opts, "currency_path", default_currency_path, 2);
	event->payment_id = mapped_text(body, opts, "payment_id_path", default_payment_path, 2);
}

const WebhookKind webhook_kind_standard = {
	.name = "standard",
	.parse_secret = standard_parse_secret,
	.verify = standard_verify,
	.parse = standard_parse,
	.option_keys = standard_option_keys
};

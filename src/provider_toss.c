/*
 * provider_toss.c
 *		Provider kind "toss": Toss Payments, a confirm-style provider.
 *
 * The buyer pays in Toss's payment widget (started in the browser, not by
 * the shop) and is sent back to the shop's success URL with paymentKey,
 * orderId and amount in the query string.  Nothing is captured until the
 * shop confirms the payment (shop_confirm_payment, confirm.c), which it
 * must do within 10 minutes of the buyer's authentication
 * (https://docs.tosspayments.com/en/webhooks: "once the authentication is
 * complete and the payment status is IN_PROGRESS, you have 10 minutes to
 * authorize the payment").
 *
 * The API (https://docs.tosspayments.com/reference): JSON bodies and
 * answers, authentication "Authorization: Basic base64(<secret key> + ':')"
 * (https://docs.tosspayments.com/guides/using-api/authorization), and
 * errors as {"code": "...", "message": "..."} with an HTTP status
 * (https://docs.tosspayments.com/reference/error-codes).
 *	  POST /v1/payments/confirm            {paymentKey, orderId, amount}: capture
 *	  POST /v1/payments/{paymentKey}/cancel {cancelReason, cancelAmount}: refund
 *	  GET  /v1/payments/{paymentKey}       the Payment object (status READY,
 *	                                       IN_PROGRESS, WAITING_FOR_DEPOSIT, DONE,
 *	                                       CANCELED, PARTIAL_CANCELED, ABORTED,
 *	                                       EXPIRED; totalAmount, currency, orderId)
 * Every POST carries an Idempotency-Key (at most 300 characters, valid 15
 * days: https://docs.tosspayments.com/guides/using-api/idempotency-key):
 * the same key answers with the first request's result, so a retry after a
 * timeout never captures or cancels twice.
 *
 * Order ids: Toss's orderId is a string of 6 to 64 characters of
 * [A-Za-z0-9_-]; ours is "shop-order-<order id>" (toss_order_id), and an
 * orderId of another shape names no order of ours (toss_order_ref).
 *
 * Webhooks: Toss does not sign them (PAYMENT_STATUS_CHANGED carries the
 * Payment object as "data"; https://docs.tosspayments.com/en/webhooks).
 * An unsigned body cannot be trusted, so this kind is trigger_only: verify
 * accepts every request, parse reads only the paymentKey and orderId it
 * names, and webhook.c fetches that payment from the API through the
 * outbox and applies what the API says.  A forged request can at most
 * cause a fetch.
 */
#include "webhook.h"

#include <curl/curl.h>

#include "common/base64.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define TOSS_ORDER_PREFIX	"shop-order-"

static const char *const toss_option_keys[] = {"api_base", "auto_refund", NULL};

/*
 * Toss's orderId for our order id.
 */
char *
toss_order_id(int64 order_id)
{
	return psprintf(TOSS_ORDER_PREFIX "%lld", (long long) order_id);
}

/*
 * Our order reference (decimal digits, as webhook.c reads order_ref) of a
 * Toss orderId, or NULL when it is not one of ours.
 */
char *
toss_order_ref(const char *toss_order_id)
{
	const char *digits;

	if (toss_order_id == NULL ||
		strncmp(toss_order_id, TOSS_ORDER_PREFIX, strlen(TOSS_ORDER_PREFIX)) != 0)
		return NULL;
	digits = toss_order_id + strlen(TOSS_ORDER_PREFIX);
	if (*digits == '\0' || strspn(digits, "0123456789") != strlen(digits))
		return NULL;
	return pstrdup(digits);
}

/*
 * Toss signs nothing, so the provider's "secret" verifies nothing; any
 * non-empty label is stored (e.g. 'unsigned').  A Toss API secret key is
 * refused here: it belongs in shop_set_provider_api_key.
 */
static WebhookSecret
toss_parse_secret(const char *secret)
{
	WebhookSecret result;

	if (strncmp(secret, "test_sk_", 8) == 0 || strncmp(secret, "live_sk_", 8) == 0 ||
		strncmp(secret, "test_gsk_", 9) == 0 || strncmp(secret, "live_gsk_", 9) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Toss Payments secret key is an API key, not a webhook secret"),
				 errhint("Store it with shop.shop_set_provider_api_key(); Toss does not sign webhooks, "
						 "so pass any label (e.g. 'unsigned') as the secret.")));
	result.key = pstrdup(secret);
	result.len = strlen(secret);
	return result;
}

/*
 * Accept every request: it is only a trigger (see the file header).
 */
static void
toss_verify(const WebhookProvider *provider, const WebhookRequest *request)
{
}

/*
 * Read the payment a request names, nothing else: PAYMENT_STATUS_CHANGED's
 * data.paymentKey and data.orderId (DEPOSIT_CALLBACK, virtual accounts,
 * names no paymentKey and is ignored).  Its status and amounts are not
 * read: the fetch says what they are.
 */
static void
toss_parse(const WebhookProvider *provider, const WebhookRequest *request,
		   Jsonb *body, WebhookEvent *event)
{
	static const char *const type_path[] = {"eventType"};
	static const char *const key_path[] = {"data", "paymentKey"};
	static const char *const order_path[] = {"data", "orderId"};

	event->event_id = NULL;
	event->type = webhook_json_string(webhook_json_get(body, type_path, 1), NULL);
	event->kind = WEBHOOK_EVENT_OTHER;
	event->payment_id = webhook_json_string(webhook_json_get(body, key_path, 2), "paymentKey");
	event->order_ref = toss_order_ref(webhook_json_string(webhook_json_get(body, order_path, 2),
														  "orderId"));
}

/*
 * "Basic " + base64(secret key + ":"): the key is the user name, the
 * password is empty.
 */
static char *
toss_authorization(const char *api_key)
{
	char	   *plain = psprintf("%s:", api_key);
	int			len = strlen(plain);
	int			enclen = pg_b64_enc_len(len);
	char	   *encoded = palloc(enclen + 1);
	int			n = pg_b64_encode(plain, len, encoded, enclen);

	if (n < 0)
		elog(ERROR, "shop: could not encode the Toss Payments API key");
	encoded[n] = '\0';
	return psprintf("Basic %s", encoded);
}

/*
 * A JSON body from a JsonResult, as the text sent.
 */
static char *
json_body(JsonResult *res)
{
	Jsonb	   *doc = DatumGetJsonbP(json_result_end(res));

	return JsonbToCString(NULL, &doc->root, VARSIZE(doc));
}

/*
 * The payment key as a path segment (percent-encoded by libcurl).
 */
static char *
key_segment(const char *payment_key)
{
	char	   *k = curl_easy_escape(NULL, payment_key, 0);
	char	   *result;

	if (k == NULL)
		elog(ERROR, "shop: out of memory encoding a payment key");
	result = pstrdup(k);
	curl_free(k);
	return result;
}

/*
 * POST /v1/payments/confirm {paymentKey, orderId, amount}.  The
 * Idempotency-Key derives from the order and the payment key alone, so a
 * retry is the same call (the provider is implicit: Toss scopes keys to the
 * merchant whose secret key signs the request, i.e. to the provider).
 */
static void
toss_confirm(const ConfirmRequest *req, ProviderCall *call)
{
	JsonResult	res;

	json_result_begin(&res, CurrentMemoryContext);
	json_result_text(&res, "paymentKey", req->payment_key);
	json_result_text(&res, "orderId", toss_order_id(req->order_id));
	json_result_int(&res, "amount", req->amount, false);
	call->method = "POST";
	call->path = pstrdup("/v1/payments/confirm");
	call->content_type = "application/json";
	call->body = json_body(&res);
	call->idempotency_key = psprintf("confirm-%lld-%s", (long long) req->order_id,
									 req->payment_key);
}

/*
 * POST /v1/payments/{paymentKey}/cancel {cancelReason, cancelAmount}: a
 * refund of (part of) a captured payment.
 */
static void
toss_refund(const RefundRequest *refund, ProviderCall *call)
{
	JsonResult	res;

	json_result_begin(&res, CurrentMemoryContext);
	json_result_text(&res, "cancelReason",
					 psprintf("shop refund %lld of order %lld",
							  (long long) refund->refund_id, (long long) refund->order_id));
	json_result_int(&res, "cancelAmount", refund->amount, false);
	call->method = "POST";
	call->path = psprintf("/v1/payments/%s/cancel", key_segment(refund->payment_id));
	call->content_type = "application/json";
	call->body = json_body(&res);
	call->idempotency_key = psprintf("refund-%lld", (long long) refund->refund_id);
}

/*
 * The cancel's answer is the Payment object: the refund went through when
 * it is CANCELED or PARTIAL_CANCELED; its id is the newest cancel's
 * transactionKey.
 */
static char *
toss_refund_result(Jsonb *answer, bool *succeeded)
{
	static const char *const status_path[] = {"status"};
	static const char *const cancels_path[] = {"cancels"};
	char	   *status = webhook_json_string(webhook_json_get(answer, status_path, 1), NULL);
	JsonbValue *cancels = webhook_json_get(answer, cancels_path, 1);
	char	   *id = NULL;

	*succeeded = status != NULL &&
		(strcmp(status, "CANCELED") == 0 || strcmp(status, "PARTIAL_CANCELED") == 0);
	if (cancels != NULL && cancels->type == jbvBinary &&
		JsonContainerIsArray(cancels->val.binary.data) &&
		JsonContainerSize(cancels->val.binary.data) > 0)
	{
		JsonbValue *last = getIthJsonbValueFromContainer(cancels->val.binary.data,
														 JsonContainerSize(cancels->val.binary.data) - 1);

		if (last != NULL && last->type == jbvBinary)
		{
			JsonbValue *key = getKeyJsonValueFromContainer(last->val.binary.data,
														   "transactionKey",
														   strlen("transactionKey"), NULL);

			id = webhook_json_string(key, NULL);
		}
	}
	return id;
}

/*
 * GET /v1/payments/{paymentKey}.  A read: the key only names the request
 * (repeated fetches are distinct requests).
 */
static void
toss_fetch(const char *payment_key, ProviderCall *call)
{
	call->method = "GET";
	call->path = psprintf("/v1/payments/%s", key_segment(payment_key));
	call->content_type = "application/json";
	call->body = NULL;
	call->idempotency_key = psprintf("payment-%s-fetch-%lld", payment_key,
									 (long long) ((GetCurrentTimestamp() - SetEpochTimestamp())
												  / 1000));
}

/*
 * A fetched (or confirmed) Payment as a normalised paid event: true when
 * its status is DONE (captured, nothing cancelled).  The event id
 * "fetched:<paymentKey>" is the same for the confirm's answer and every
 * later fetch, so one payment is applied once.
 */
static bool
toss_fetch_result(Jsonb *answer, WebhookEvent *event)
{
	static const char *const key_path[] = {"paymentKey"};
	static const char *const status_path[] = {"status"};
	static const char *const order_path[] = {"orderId"};
	static const char *const total_path[] = {"totalAmount"};
	static const char *const currency_path[] = {"currency"};
	char	   *key = webhook_json_string(webhook_json_get(answer, key_path, 1), NULL);
	char	   *status = webhook_json_string(webhook_json_get(answer, status_path, 1), NULL);

	if (key == NULL || status == NULL || strcmp(status, "DONE") != 0)
		return false;
	memset(event, 0, sizeof(*event));
	event->event_id = psprintf("fetched:%s", key);
	event->type = pstrdup("payment.DONE");
	event->kind = WEBHOOK_EVENT_PAID;
	event->order_ref = toss_order_ref(webhook_json_string(webhook_json_get(answer, order_path, 1),
														  NULL));
	event->has_amount = webhook_json_amount(webhook_json_get(answer, total_path, 1),
											&event->amount);
	event->currency = webhook_json_string(webhook_json_get(answer, currency_path, 1), NULL);
	event->payment_id = key;
	return true;
}

static char *
toss_error_code(Jsonb *answer)
{
	static const char *const code_path[] = {"code"};

	return answer ? webhook_json_string(webhook_json_get(answer, code_path, 1), NULL) : NULL;
}

/*
 * "CODE: message" of an error object.
 */
static char *
toss_error_message(Jsonb *answer)
{
	static const char *const message_path[] = {"message"};
	char	   *code = toss_error_code(answer);
	char	   *message = answer ? webhook_json_string(webhook_json_get(answer, message_path, 1),
													   NULL) : NULL;

	if (code == NULL && message == NULL)
		return NULL;
	return psprintf("%s: %s", code ? code : "(no code)", message ? message : "(no message)");
}

/*
 * Network errors, 409 (a request with the same Idempotency-Key still in
 * progress), 429 and 5xx may succeed when sent again (with the same key);
 * other 4xx will not.
 */
static bool
toss_retryable(int http_status)
{
	return http_status == 0 || http_status == 409 || http_status == 429 ||
		http_status >= 500;
}

static const ProviderApi toss_api = {
	.authorization = toss_authorization,
	.checkout = NULL,			/* the widget is started in the browser */
	.checkout_result = NULL,
	.refund = toss_refund,
	.refund_result = toss_refund_result,
	.expire = NULL,				/* no session to close: an unconfirmed payment lapses */
	.fetch = toss_fetch,
	.fetch_result = toss_fetch_result,
	.error_message = toss_error_message,
	.retryable = toss_retryable,
	.confirm = toss_confirm,
	.error_code = toss_error_code
};

const WebhookKind webhook_kind_toss = {
	.name = "toss",
	.parse_secret = toss_parse_secret,
	.verify = toss_verify,
	.parse = toss_parse,
	.option_keys = toss_option_keys,
	.api = &toss_api,
	.default_api_base = "https://api.tosspayments.com",
	.trigger_only = true
};

/*
 * webhook.h
 *		Payment webhooks: the provider interface and shared helpers.
 *
 * A provider kind (stripe, standard, mock; one provider_*.c file each) does
 * two things: verify a request's signature and timestamp against the
 * provider's active secrets, and parse the verified body into one
 * normalised WebhookEvent.  webhook.c does everything after that (record,
 * deduplicate, apply to the order) the same way for every kind.
 */
#ifndef WEBHOOK_H
#define WEBHOOK_H

#include "shop.h"

#include "utils/jsonb.h"
#include "datatype/timestamp.h"

/*
 * Webhook SQLSTATEs (class SH, continuing shop.h's numbering at 010).  Part
 * of the API: the HTTP layer maps SH010..SH014 to 400, never renumber one.
 */
#define ERRCODE_SHOP_WEBHOOK_UNKNOWN_PROVIDER	MAKE_SQLSTATE('S','H','0','1','0')
#define ERRCODE_SHOP_WEBHOOK_BAD_SIGNATURE		MAKE_SQLSTATE('S','H','0','1','1')
#define ERRCODE_SHOP_WEBHOOK_STALE_TIMESTAMP	MAKE_SQLSTATE('S','H','0','1','2')
#define ERRCODE_SHOP_WEBHOOK_BAD_HEADERS		MAKE_SQLSTATE('S','H','0','1','3')
#define ERRCODE_SHOP_WEBHOOK_BAD_BODY			MAKE_SQLSTATE('S','H','0','1','4')
/* SH015 ERRCODE_SHOP_PAYMENT_MISMATCH and SH016 are in shop.h (order_state.c) */

/* Provider calls (provider_api.c); the HTTP layer maps them to 502/504. */
#define ERRCODE_SHOP_PROVIDER_UNREACHABLE		MAKE_SQLSTATE('S','H','0','2','0')
#define ERRCODE_SHOP_PROVIDER_REFUSED			MAKE_SQLSTATE('S','H','0','2','1')
#define ERRCODE_SHOP_PROVIDER_FAILED			MAKE_SQLSTATE('S','H','0','2','2')
#define ERRCODE_SHOP_PROVIDER_UNSUPPORTED		MAKE_SQLSTATE('S','H','0','2','3')
/* shop_confirm_payment: the provider refused to capture (its code in DETAIL) */
#define ERRCODE_SHOP_PROVIDER_DECLINED			MAKE_SQLSTATE('S','H','0','2','4')

/* Default timestamp tolerance, seconds (Stripe's and Standard Webhooks'). */
#define WEBHOOK_DEFAULT_TOLERANCE	300

/* Default time an older secret stays valid after a new one is added. */
#define WEBHOOK_DEFAULT_ROTATION_GRACE	(24 * 60 * 60)

/* Most signatures one header may carry; more is an attack, not rotation. */
#define WEBHOOK_MAX_SIGNATURES	16

/* Longest identifier (event id, payment id, order reference) we store. */
#define WEBHOOK_MAX_ID_LEN	256

/* HMAC-SHA256 digest length. */
#define WEBHOOK_DIGEST_LEN	32

/* What an event means for an order. */
typedef enum WebhookEventKind
{
	WEBHOOK_EVENT_OTHER,		/* not about payment success or failure */
	WEBHOOK_EVENT_PAID,
	WEBHOOK_EVENT_FAILED
} WebhookEventKind;

/* One active secret, as the raw HMAC key bytes. */
typedef struct WebhookSecret
{
	char	   *key;
	int			len;
} WebhookSecret;

/* A registered provider with its active secrets, loaded per request. */
typedef struct WebhookProvider
{
	char	   *name;
	const struct WebhookKind *kind;
	Jsonb	   *options;
	int64		tolerance;		/* seconds either side of now */
	int			nsecrets;
	WebhookSecret *secrets;		/* newest first */
} WebhookProvider;

/* The request as received: headers (JSON object) and the raw body bytes. */
typedef struct WebhookRequest
{
	Jsonb	   *headers;
	const char *body;
	int			body_len;
	int64		now;			/* unix seconds, the transaction's now() */
} WebhookRequest;


/*
 * The normalised event.  Strings are NULL when the event does not carry
 * them; a paid event without amount or currency can never confirm.
 */
typedef struct WebhookEvent
{
	char	   *event_id;
	char	   *type;			/* the provider's event type */
	WebhookEventKind kind;
	char	   *order_ref;		/* order reference as sent */
	bool		has_amount;
	int64		amount;
	char	   *currency;
	char	   *payment_id;		/* the provider's payment id */
} WebhookEvent;

/*
 * An outbound call to a provider's API, built by its kind: appended to the
 * provider's api_base, sent with its API key (provider_api.c adds the
 * authorization, never stored with the call).
 */
typedef struct ProviderCall
{
	const char *method;
	char	   *path;
	const char *content_type;
	char	   *body;
	char	   *idempotency_key;
} ProviderCall;

/* What a checkout is started for: the order's snapshot. */
typedef struct CheckoutLine
{
	char	   *name;
	int64		unit_price;
	int32		qty;
} CheckoutLine;

typedef struct CheckoutOrder
{
	int64		order_id;
	char		currency[4];
	int64		amount;
	TimestampTz created_at;
	TimestampTz expires_at;
	int			nlines;
	CheckoutLine *lines;
	const char *success_url;
	const char *cancel_url;
} CheckoutOrder;

/* A started checkout, as the provider answered. */
typedef struct CheckoutSession
{
	char	   *id;
	char	   *url;
	TimestampTz expires_at;		/* 0: not given */
} CheckoutSession;

/* A refund to send. */
typedef struct RefundRequest
{
	int64		refund_id;
	int64		order_id;
	char	   *payment_id;
	int64		amount;
	char	   *currency;
} RefundRequest;

/*
 * A confirm-style capture (Toss Payments): the buyer authorised the payment
 * in the provider's widget, the shop captures it by confirming it.
 */
typedef struct ConfirmRequest
{
	int64		order_id;
	const char *payment_key;	/* the provider's payment id */
	int64		amount;
} ConfirmRequest;

/* The outbound API of a kind (NULL members: the kind has no such call). */
typedef struct ProviderApi
{
	/* the Authorization header's value for key (NULL: "Bearer <key>") */
	char	   *(*authorization) (const char *api_key);
	void		(*checkout) (const CheckoutOrder *order, ProviderCall *call);
	bool		(*checkout_result) (Jsonb *answer, CheckoutSession *session);
	void		(*refund) (const RefundRequest *refund, ProviderCall *call);
	/* the provider's refund id; *final false while the refund is pending */
	char	   *(*refund_result) (Jsonb *answer, bool *succeeded);
	/* close an open checkout, and read one's state (for a closed path) */
	void		(*expire) (const char *session_id, ProviderCall *call);
	void		(*fetch) (const char *session_id, ProviderCall *call);
	/* a fetched checkout as a normalised event; false while it is unpaid */
	bool		(*fetch_result) (Jsonb *answer, WebhookEvent *event);
	/* the provider's own words for a refused request, or NULL */
	char	   *(*error_message) (Jsonb *answer);
	/* whether a failed HTTP status may succeed when sent again */
	bool		(*retryable) (int http_status);
	/* confirm-style kinds: capture an authorised payment (synchronous) */
	void		(*confirm) (const ConfirmRequest *req, ProviderCall *call);
	/* the provider's error code of a refused request, or NULL */
	char	   *(*error_code) (Jsonb *answer);
} ProviderApi;

/* A provider kind: one per provider_*.c file. */
typedef struct WebhookKind
{
	const char *name;
	/* raise 22023 unless secret is usable; return its HMAC key bytes */
	WebhookSecret (*parse_secret) (const char *secret);
	/* raise SH011/SH012/SH013 unless the request is authentic and fresh */
	void		(*verify) (const WebhookProvider *provider,
						   const WebhookRequest *request);
	/* fill event from the verified body (a JSON object); SH014 if unusable */
	void		(*parse) (const WebhookProvider *provider,
						  const WebhookRequest *request,
						  Jsonb *body, WebhookEvent *event);
	/* option keys this kind accepts besides the common ones */
	const char *const *option_keys;
	/* outbound calls (NULL: none) and where they go by default */
	const ProviderApi *api;
	const char *default_api_base;
	/*
	 * The provider does not sign its webhooks (Toss Payments): a request is
	 * only a trigger to fetch the payment it names from the API, never
	 * applied itself (webhook.c, webhook_trigger_fetch).
	 */
	bool		trigger_only;
} WebhookKind;

extern const ProviderApi stripe_api;

/* provider_api.c: outbound calls */
extern int	shop_provider_timeout_ms;
extern char *provider_api_base(const WebhookProvider *provider);
extern char *provider_api_key(const char *name);
extern bool provider_has_api_key(const char *name);
extern const ProviderApi *provider_api(const WebhookProvider *provider);
extern Jsonb *provider_parse_answer(const char *body);
extern Jsonb *provider_call_sync(const WebhookProvider *provider,
								 const ProviderCall *call);
extern Jsonb *provider_call_answer(const WebhookProvider *provider,
								   const ProviderCall *call, long *status,
								   char **body);
extern char *provider_authorization(const WebhookProvider *provider,
									const char *api_key);
extern bool provider_option_bool(const WebhookProvider *provider,
								 const char *key, bool default_value);
extern bool provider_queue_call(const WebhookProvider *provider,
								const char *operation, int64 subject_id,
								const ProviderCall *call,
								const char *ordering_key);

/* refund.c: refunds through the outbox */
extern int64 refund_queue(const WebhookProvider *provider, int64 order_id,
						  const char *payment_id, int64 amount,
						  const char *currency, const char *reason,
						  int64 review_id);
extern void refund_record_answer(int64 refund_id, const WebhookProvider *provider,
								 bool delivered, bool dead, Jsonb *answer,
								 const char *error);

/* session.c: checkout sessions after their order was released */
extern void sessions_close(const int64 *order_ids, int norders);
extern void session_record_answer(const char *operation, int64 session_id,
								  const WebhookProvider *provider, bool delivered,
								  bool dead, Jsonb *answer);
extern int64 session_upsert_payment(const WebhookProvider *provider, int64 order_id,
									const char *payment_key, bool completed,
									bool trusted);
extern void session_queue_fetch(const WebhookProvider *provider, int64 session_row,
								const char *payment_key);

/* webhook.c: apply a normalised event as the webhook would */
extern const char *webhook_apply_event(const WebhookProvider *provider,
									   const WebhookEvent *event, Jsonb *payload);

/* What applying an event did (webhook_apply_event_outcome). */
typedef struct WebhookOutcome
{
	const char *result;			/* processed | duplicate | ignored | unmatched */
	int64		order_id;		/* 0 when no order */
	const char *status;			/* the order's status afterwards */
	const char *review;			/* amount_mismatch | refund_required | NULL */
	char	   *note;
} WebhookOutcome;
extern void webhook_apply_event_outcome(const WebhookProvider *provider,
										const WebhookEvent *event, Jsonb *payload,
										WebhookOutcome *out);

extern const WebhookKind webhook_kind_stripe;
extern const WebhookKind webhook_kind_standard;
extern const WebhookKind webhook_kind_mock;
extern const WebhookKind webhook_kind_toss;

/* provider_toss.c: Toss Payments' orderId for an order, and back */
extern char *toss_order_id(int64 order_id);
extern char *toss_order_ref(const char *toss_order_id);

/* A JSON object built in C as a function's result (webhook_util.c). */
typedef struct JsonResult
{
	MemoryContext cxt;
	JsonbParseState *state;
} JsonResult;

/* webhook_provider.c: the provider registry */
extern WebhookProvider *webhook_load_provider(text *name);

/* webhook_util.c: crypto, headers, JSON access */
extern const WebhookKind *webhook_kind_by_name(const char *name);
extern void webhook_hmac_sha256(const char *key, int keylen,
								const char *const *parts, const int *lens,
								int nparts, uint8 *digest);
extern bool webhook_digest_equal(const uint8 *a, const uint8 *b, int len);
extern char *webhook_header(const WebhookRequest *request, const char *name);
extern int64 webhook_parse_timestamp(const char *value, const char *header);
extern void webhook_verify_hmac(const WebhookProvider *provider,
								const WebhookRequest *request,
								const char *const *parts, const int *lens,
								int nparts,
								const uint8 (*candidates)[WEBHOOK_DIGEST_LEN],
								int ncandidates, int64 timestamp);
extern JsonbValue *webhook_json_get(Jsonb *doc, const char *const *path,
									int depth);
extern JsonbValue *webhook_json_path(Jsonb *doc, Jsonb *options,
									 const char *option,
									 const char *const *default_path,
									 int default_depth);
extern char *webhook_json_string(JsonbValue *v, const char *what);
extern bool webhook_json_amount(JsonbValue *v, int64 *amount);
extern bool webhook_json_string_in(Jsonb *options, const char *option,
								   const char *const *defaults,
								   const char *value);
extern int64 webhook_option_int(Jsonb *options, const char *key,
								int64 default_value);
extern void json_result_begin(JsonResult *res, MemoryContext cxt);
extern void json_result_text(JsonResult *res, const char *key, const char *value);
extern void json_result_int(JsonResult *res, const char *key, int64 value,
							bool isnull);
extern void json_result_bool(JsonResult *res, const char *key, bool value);
extern void json_result_text_array(JsonResult *res, const char *key,
								   const Datum *elems, int n);
extern void json_result_jsonb(JsonResult *res, const char *key, Jsonb *doc);
extern Datum json_result_end(JsonResult *res);

/* provider_standard.c: the Standard Webhooks scheme, shared with mock */
extern WebhookSecret standard_parse_secret(const char *secret);
extern void standard_verify(const WebhookProvider *provider,
							const WebhookRequest *request);
extern char *standard_sign(const WebhookSecret *secret, const char *msg_id,
						   int64 timestamp, const char *body, int body_len);

#endif							/* WEBHOOK_H */

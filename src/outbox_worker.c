/*
 * outbox_worker.c
 *		The delivery worker: a background worker that sends committed outbox
 *		rows, and the settings and shared state it needs.
 *
 * Shaped after pg_net's worker: requests wait in a table, one process runs
 * many of them at once on libcurl's multi interface (outbox_http.c), and
 * only committed rows are ever sent.  The loop:
 *	1. in one short transaction, record the finished requests (attempt
 *	   row, new state, endpoint health) and claim due rows up to the free
 *	   slots (shop.outbox_claim: SKIP LOCKED, per-key order, a lease),
 *	   handing those to libcurl, which sends nothing before step 2;
 *	2. let libcurl run them, waking at least every POLL_SLICE_MS;
 *	3. with nothing in flight, sleep on the latch until a committing
 *	   transaction that queued rows wakes it (events.c), the next row is
 *	   due, or shop.outbox_poll_interval passes.
 * Under load the worker refills in batches (a quarter of the slots at a
 * time) rather than per finished request: each of its transactions costs
 * the shop a commit, and the worker shares the machine with the buyers.
 * No transaction is open while a request is on the wire, so no HTTP call
 * can happen inside a transaction that rolls back, and a crash between a
 * call and the commit of its result only means the row is sent again: its
 * lease runs out, or the next worker start finds its claimant gone.
 *
 * The worker exists only when shop is in shared_preload_libraries; without
 * it rows queue up and shop.outbox_health says so.
 */
#include "outbox.h"
#include "webhook.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/pmsignal.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void shop_outbox_worker_main(Datum arg);

/* Longest stretch libcurl runs before the loop looks at its latch again. */
#define POLL_SLICE_MS	100

/*
 * Finished requests wait at most this long for the batch that records
 * them (while others are still in flight).
 */
#define RECORD_DELAY_MS	20

/*
 * Retention: the worker deletes old delivered events (shop.outbox_prune)
 * at most this often, and at most this many deliveries per transaction.
 */
#define PRUNE_INTERVAL_S	60
#define PRUNE_BATCH			1000

/* Extra lease time beyond the request timeout. */
#define LEASE_MARGIN_MS	5000

/* Settings (README, "Setting up the worker"). */
char	   *outbox_database_name = NULL;
int			outbox_max_in_flight = 16;
int			outbox_timeout_ms = 10000;
int			outbox_max_response_bytes = 64 * 1024;
int			outbox_retry_base_ms = 1000;
int			outbox_retry_max_ms = 3600 * 1000;
int			outbox_max_attempts = 12;
int			outbox_max_age_s = 3 * 24 * 3600;
int			outbox_poll_interval_ms = 1000;
int			outbox_endpoint_max_failures = 20;
int			outbox_reconcile_interval_s = 60;
int			outbox_reconcile_after_s = 600;
int			outbox_retention_s = 30 * 24 * 3600;
bool		outbox_allow_http_loopback = false;

/*
 * shop.outbox_batch_delay: how long a wake-up (a commit that queued rows,
 * or requests that finished) waits for more before it claims, unless the
 * last claim filled every free slot (then more rows are due already).
 * Each claim and its recording cost about the same whether they take 2
 * rows or 16: at 5 ms, and at once after every finished request, a spread
 * run at 8 clients made the worker claim 2-4 rows at a time, 240 claims a
 * second, a fifth of this machine's 2 cores; at 20 ms a claim takes 12-16.
 * The price is up to that much more before an event is sent.
 */
static int	outbox_batch_delay_ms = 20;

/* Shared state: where the worker's latch is, for wake-ups. */
typedef struct OutboxShared
{
	slock_t		mutex;
	Latch	   *latch;
} OutboxShared;

static OutboxShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static SPIPlanPtr plan_ready;
static SPIPlanPtr plan_recover;
static SPIPlanPtr plan_claim;
static SPIPlanPtr plan_secrets;
static SPIPlanPtr plan_next_due;
static SPIPlanPtr plan_record;
static SPIPlanPtr plan_record_delivered;
static SPIPlanPtr plan_lock_endpoints;
static SPIPlanPtr plan_unapplied;
static SPIPlanPtr plan_reconcile;
static SPIPlanPtr plan_prune;

/* The extension's owner, whose rights the worker's statements run with. */
static Oid	owner_oid = InvalidOid;

static void
outbox_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OutboxShared)));
}

static void
outbox_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("shop outbox", sizeof(OutboxShared), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		shared->latch = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Wake the worker (a transaction that queued rows has committed).  A no-op
 * when shop is not preloaded: there is no worker then.
 */
void
outbox_worker_wake(void)
{
	Latch	   *latch;

	if (shared == NULL)
		return;
	SpinLockAcquire(&shared->mutex);
	latch = shared->latch;
	SpinLockRelease(&shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
unpublish_latch(int code, Datum arg)
{
	SpinLockAcquire(&shared->mutex);
	shared->latch = NULL;
	SpinLockRelease(&shared->mutex);
}

/*
 * Define the settings; when loaded by shared_preload_libraries, also the
 * shared state and the worker itself.  Called from _PG_init.
 */
void
outbox_worker_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("shop.outbox_max_in_flight",
							"Outbound requests the delivery worker sends at once.",
							NULL, &outbox_max_in_flight, 16, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_timeout",
							"Whole-request timeout of an outbound request.",
							NULL, &outbox_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_max_response_bytes",
							"Response body bytes read at most per request.",
							NULL, &outbox_max_response_bytes, 64 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_retry_base",
							"Delay before the first retry; it doubles per attempt, with jitter.",
							NULL, &outbox_retry_base_ms, 1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_retry_max",
							"Longest retry delay, also the cap on a Retry-After.",
							NULL, &outbox_retry_max_ms, 3600 * 1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_max_attempts",
							"Attempts after which an outbox row is dead.",
							NULL, &outbox_max_attempts, 12, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_max_age",
							"Age after which a failing outbox row is dead.",
							NULL, &outbox_max_age_s, 3 * 24 * 3600, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_poll_interval",
							"Longest sleep of the idle delivery worker.",
							NULL, &outbox_poll_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.endpoint_max_failures",
							"Consecutive failed attempts after which an event endpoint is disabled.",
							NULL, &outbox_endpoint_max_failures, 20, 1, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.reconcile_interval",
							"How often the delivery worker asks providers about stale checkouts (0: never).",
							NULL, &outbox_reconcile_interval_s, 60, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.reconcile_after",
							"How long a checkout stays open without a payment event before its provider is asked.",
							NULL, &outbox_reconcile_after_s, 600, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_retention",
							"How long delivered events and their deliveries are kept (0: forever).",
							"The delivery worker deletes older ones every minute (shop.outbox_prune).",
							&outbox_retention_s, 30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("shop.outbox_batch_delay",
							"How long the delivery worker waits for more rows before a claim.",
							"Longer makes fewer, larger claims (less CPU per event) and sends each event later.",
							&outbox_batch_delay_ms, 20, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("shop.outbox_allow_http_loopback",
							 "Allow http:// outbound requests to loopback hosts.",
							 "Only for tests and local demos; otherwise only https:// is sent to.",
							 &outbox_allow_http_loopback, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("shop.database_name",
							   "Database the shop outbox worker serves.",
							   NULL, &outbox_database_name, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = outbox_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = outbox_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "shop");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "shop_outbox_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "shop outbox worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "shop outbox worker");
	RegisterBackgroundWorker(&worker);
}

/*
 * Start a transaction for the worker's statements, run as the extension's
 * owner once it is known.
 */
static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	if (OidIsValid(owner_oid))
		SetUserIdAndSecContext(owner_oid, SECURITY_LOCAL_USERID_CHANGE);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Whether shop (a version with the outbox) is installed in the database;
 * remembers its owner.  Rows whose claimant is gone (a crash, a restart)
 * are made due again the first time it is.
 */
static bool
extension_ready(void)
{
	bool		ready;

	begin_work("checking for the shop extension");
	ready = shop_exec(shop_plan(&plan_ready,
								"SELECT e.extowner FROM pg_catalog.pg_extension e"
								" WHERE e.extname = 'shop'"
								"   AND pg_catalog.to_regproc('shop.outbox_claim') IS NOT NULL",
								0, NULL),
					  NULL, NULL, true, 0) == 1;
	if (ready)
	{
		bool		isnull;

		owner_oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
		SetUserIdAndSecContext(owner_oid, SECURITY_LOCAL_USERID_CHANGE);
		shop_exec(shop_plan(&plan_recover,
							"UPDATE shop.outbox"
							"   SET state = 'failed', next_attempt_at = now(),"
							"       claimed_by = NULL, lease_until = NULL,"
							"       last_error = 'the worker that sent it stopped before recording the result',"
							"       updated_at = now()"
							" WHERE state = 'in_flight'"
							"   AND claimed_by IS DISTINCT FROM pg_catalog.pg_backend_pid()"
							"   AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a"
							"                    WHERE a.pid = claimed_by)",
							0, NULL),
				  NULL, NULL, false, 0);
		if (SPI_processed > 0)
			elog(LOG, "shop outbox worker: %llu requests of a stopped worker will be sent again",
				 (unsigned long long) SPI_processed);
	}
	end_work();
	return ready;
}

/*
 * Add a header line "name: value" to req.
 */
static void
add_header(OutboxRequest *req, const char *name, const char *value)
{
	req->headers = curl_slist_append(req->headers, psprintf("%s: %s", name, value));
	if (req->headers == NULL)
		elog(ERROR, "shop: out of memory for request headers");
}

/*
 * The signature header value for req's body: one "v1,<base64>" per active
 * secret of its endpoint (rows of the SPI result (endpoint_id, secret),
 * newest first), so receivers keep verifying while a secret rotates.
 */
static char *
sign(OutboxRequest *req, SPITupleTable *secrets, uint64 nsecrets,
	 const char *msg_id, int64 timestamp)
{
	StringInfoData sig;
	uint64		i;

	initStringInfo(&sig);
	for (i = 0; i < nsecrets; i++)
	{
		WebhookSecret secret;
		bool		isnull;

		if (DatumGetInt64(SPI_getbinval(secrets->vals[i], secrets->tupdesc, 1, &isnull)) !=
			req->endpoint_id)
			continue;
		secret = standard_parse_secret(SPI_getvalue(secrets->vals[i], secrets->tupdesc, 2));
		if (sig.len > 0)
			appendStringInfoChar(&sig, ' ');
		appendStringInfoString(&sig, standard_sign(&secret, msg_id, timestamp,
												   req->body ? req->body : "",
												   req->body_len));
	}
	return sig.data;
}

/*
 * Build the request of claim result row i (columns as in plan_claim); the
 * secrets of the claimed endpoints are in secrets (nsecrets rows).
 */
static OutboxRequest *
build_request(SPITupleTable *claimed, uint64 i, SPITupleTable *secrets,
			  uint64 nsecrets, TimestampTz now_ts)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "shop outbox request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	OutboxRequest *req = palloc0(sizeof(OutboxRequest));
	HeapTuple	row = claimed->vals[i];
	TupleDesc	desc = claimed->tupdesc;
	bool		isnull;
	Datum		d;
	char	   *headers_json;

	req->cxt = cxt;
	req->id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	req->attempt = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
	d = SPI_getbinval(row, desc, 3, &isnull);
	req->endpoint_id = isnull ? 0 : DatumGetInt64(d);
	req->queued_at = DatumGetTimestampTz(SPI_getbinval(row, desc, 4, &isnull));
	req->url = SPI_getvalue(row, desc, 5);
	req->method = SPI_getvalue(row, desc, 6);
	req->body = SPI_getvalue(row, desc, 7);
	req->body_len = req->body ? strlen(req->body) : 0;
	headers_json = SPI_getvalue(row, desc, 8);	/* "name: value" lines */
	if (headers_json != NULL && *headers_json != '\0')
	{
		char	   *save = NULL;
		char	   *line;

		for (line = strtok_r(headers_json, "\n", &save); line != NULL;
			 line = strtok_r(NULL, "\n", &save))
			req->headers = curl_slist_append(req->headers, line);
	}
	add_header(req, "expect", "");	/* no 100-continue round trip */
	d = SPI_getbinval(row, desc, 9, &isnull);
	if (!isnull)
	{
		/* an event: Standard Webhooks headers, signed now */
		char	   *msg_id = TextDatumGetCString(d);
		int64		timestamp = (now_ts - SetEpochTimestamp()) / USECS_PER_SEC;

		add_header(req, "user-agent", "shop-outbox/" SHOP_VERSION);
		add_header(req, "webhook-id", msg_id);
		add_header(req, "webhook-timestamp", psprintf("%lld", (long long) timestamp));
		add_header(req, "webhook-signature", sign(req, secrets, nsecrets, msg_id, timestamp));
	}
	req->provider = SPI_getvalue(row, desc, 10);
	req->operation = SPI_getvalue(row, desc, 11);
	d = SPI_getbinval(row, desc, 12, &isnull);
	req->subject_id = isnull ? 0 : DatumGetInt64(d);
	if (req->provider != NULL)
	{
		/* a provider call: its API key now (never stored with the row) */
		char	   *key = provider_has_api_key(req->provider)
			? provider_api_key(req->provider) : NULL;

		if (key != NULL)
			add_header(req, "authorization",
					   provider_authorization(webhook_load_provider(cstring_to_text(req->provider)),
											  key));
		add_header(req, "user-agent", "shop/" SHOP_VERSION);
		req->keep_answer = true;
	}
	MemoryContextSwitchTo(old);
	return req;
}

/*
 * Claim up to n due rows and hand them to libcurl (in the caller's
 * transaction; libcurl sends them once the loop polls, after the commit).
 * Returns how many were claimed; sets *next_due to when a row not
 * claimable now becomes due.
 */
static int
claim_and_start(int n, TimestampTz *next_due, OutboxRequest **failed, int *nfailed)
{
	static const Oid claim_types[] = {INT4OID, INT4OID};
	static const Oid secret_types[] = {INT8ARRAYOID};
	Datum		values[2];
	SPITupleTable *claimed;
	uint64		nclaimed;
	TimestampTz now_ts = GetCurrentTimestamp();
	uint64		i;
	bool		isnull;

	values[0] = Int32GetDatum(n);
	values[1] = Int32GetDatum(outbox_timeout_ms + LEASE_MARGIN_MS);
	nclaimed = shop_exec(shop_plan(&plan_claim,
								   "SELECT c.id, c.attempts, c.endpoint_id, c.queued_at, c.url,"
								   "       c.method, c.body,"
								   "       (SELECT pg_catalog.string_agg(h.key || ': ' || h.value, E'\\n')"
								   "          FROM pg_catalog.jsonb_each_text(c.headers) h),"
								   "       CASE WHEN c.event_id IS NOT NULL THEN c.idempotency_key END,"
								   "       c.provider, c.operation, c.subject_id"
								   "  FROM shop.outbox_claim($1, $2 * interval '1 millisecond') c"
								   " ORDER BY c.id",
								   2, claim_types),
						 values, NULL, false, 0);
	claimed = SPI_tuptable;
	if (nclaimed > 0)
	{
		Datum		ids;
		int64	   *endpoint_ids = palloc(sizeof(int64) * nclaimed);
		uint64		nsecrets;
		SPITupleTable *secrets;

		for (i = 0; i < nclaimed; i++)
		{
			Datum		d = SPI_getbinval(claimed->vals[i], claimed->tupdesc, 3, &isnull);

			endpoint_ids[i] = isnull ? 0 : DatumGetInt64(d);
		}
		ids = shop_int64_array(endpoint_ids, (int) nclaimed);
		nsecrets = shop_exec(shop_plan(&plan_secrets,
									   "SELECT endpoint_id, secret FROM shop.event_endpoint_secret"
									   " WHERE endpoint_id = ANY ($1)"
									   "   AND (retires_at IS NULL OR retires_at > now())"
									   " ORDER BY endpoint_id, added_at DESC, id DESC",
									   1, secret_types),
							 &ids, NULL, true, 0);
		secrets = SPI_tuptable;
		for (i = 0; i < nclaimed; i++)
		{
			OutboxRequest *req = build_request(claimed, i, secrets, nsecrets, now_ts);
			MemoryContext old = MemoryContextSwitchTo(req->cxt);

			if (!outbox_http_start(req))
				failed[(*nfailed)++] = req;
			MemoryContextSwitchTo(old);
		}
	}
	*next_due = 0;
	if (nclaimed < (uint64) n &&
		shop_exec(shop_plan(&plan_next_due,
							"SELECT LEAST((SELECT min(next_attempt_at) FROM shop.outbox"
							"               WHERE state IN ('queued', 'failed')),"
							"             (SELECT min(lease_until) FROM shop.outbox"
							"               WHERE state = 'in_flight'))",
							0, NULL),
				  NULL, NULL, true, 0) == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			*next_due = DatumGetTimestampTz(d);
	}
	return (int) nclaimed;
}

/*
 * Milliseconds until the next attempt after a failed attempt number
 * attempt: the response's Retry-After if any, else retry_base doubled per
 * attempt with jitter (a random 50-100 % of it); never above retry_max.
 */
static int64
retry_delay_ms(const OutboxRequest *req)
{
	int64		delay;

	if (req->retry_after_ms >= 0)
		return Min(req->retry_after_ms, (int64) outbox_retry_max_ms);
	delay = outbox_retry_base_ms;
	for (int i = 1; i < req->attempt && delay < outbox_retry_max_ms; i++)
		delay *= 2;
	delay = Min(delay, (int64) outbox_retry_max_ms);
	return delay / 2 + (int64) (pg_prng_double(&pg_global_prng_state) * (delay - delay / 2));
}

/*
 * The printable start of the response, for the attempt log.
 */
static char *
excerpt(const OutboxRequest *req)
{
	char	   *s = palloc(req->excerpt_len + 1);
	int			i;

	for (i = 0; i < req->excerpt_len; i++)
	{
		unsigned char c = (unsigned char) req->excerpt[i];

		s[i] = (c >= 0x20 && c < 0x7f) || c == '\n' ? (char) c : '?';
	}
	s[i] = '\0';
	return s;
}

/*
 * Hand a provider call's outcome to the code that knows what it means
 * (refund.c, session.c), in a subtransaction: should that fail (an order
 * locked too long, say), the error goes into the row, which is tried again
 * later, and the worker and the other results carry on.
 */
static void
handle_answer(OutboxRequest *req, const WebhookProvider *provider, bool delivered,
			  bool dead, Jsonb *answer)
{
	static const Oid argtypes[] = {INT8OID, TEXTOID, INT8OID};
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (strcmp(req->operation, "refund") == 0)
			refund_record_answer(req->subject_id, provider, delivered, dead, answer,
								 req->error);
		else
			session_record_answer(req->operation, req->subject_id, provider,
								  delivered, dead, answer);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = shop_subxact_abort(cxt, owner);
		Datum		values[3];

		ereport(WARNING,
				(errmsg("shop outbox worker: the answer to row %lld could not be applied: %s",
						(long long) req->id, edata->message)));
		values[0] = Int64GetDatum(req->id);
		values[1] = CStringGetTextDatum(psprintf("answer not applied: %s", edata->message));
		values[2] = Int64GetDatum(retry_delay_ms(req));
		shop_exec(shop_plan(&plan_unapplied,
							"UPDATE shop.outbox"
							"   SET state = 'failed', last_error = $2,"
							"       next_attempt_at = now() + $3 * interval '1 millisecond',"
							"       updated_at = now()"
							" WHERE id = $1",
							3, argtypes),
				  values, NULL, false, 0);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
}

/*
 * An array of n elements of type (by value if byval) with nulls where
 * isnull says, for the batched record below.
 */
static Datum
array_of(Datum *elems, bool *isnull, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, isnull, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

/*
 * Record the delivered event requests among done (a 2xx, no provider) in
 * one statement: their attempt rows, their rows delivered, and their
 * endpoints' failure counts reset where they were not 0 already.  The
 * common case under load, so one statement per batch instead of one per
 * request.  Frees the requests it recorded and compacts done to the rest;
 * returns how many are left.
 */
static int
record_delivered(OutboxRequest **done, int ndone)
{
	static const Oid argtypes[] = {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
	INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum	   *cols[7];
	bool	   *nulls[7];
	Datum		values[7];
	int			n = 0;
	int			rest = 0;
	int			i,
				c;

	for (c = 0; c < 7; c++)
	{
		cols[c] = palloc(sizeof(Datum) * ndone);
		nulls[c] = palloc0(sizeof(bool) * ndone);
	}
	for (i = 0; i < ndone; i++)
	{
		OutboxRequest *req = done[i];

		if (req->provider != NULL || !outbox_http_succeeded(req))
		{
			done[rest++] = req;
			continue;
		}
		ereport(DEBUG1,
				(errmsg_internal("shop outbox: row %lld attempt %d: delivered (status %d)",
								 (long long) req->id, req->attempt, req->http_status)));
		cols[0][n] = Int64GetDatum(req->id);
		cols[1][n] = Int32GetDatum(req->attempt);
		cols[2][n] = TimestampTzGetDatum(req->started_at);
		cols[3][n] = Int32GetDatum((int32) Min(req->duration_ms, PG_INT32_MAX));
		cols[4][n] = Int32GetDatum(req->http_status);
		cols[5][n] = req->error ? CStringGetTextDatum(req->error) : (Datum) 0;
		nulls[5][n] = req->error == NULL;
		cols[6][n] = CStringGetTextDatum(excerpt(req));
		nulls[6][n] = req->excerpt_len == 0;
		n++;
		outbox_request_free(req);	/* the values above are copies */
	}
	if (n == 0)
		return rest;
	values[0] = array_of(cols[0], nulls[0], n, INT8OID);
	values[1] = array_of(cols[1], nulls[1], n, INT4OID);
	values[2] = array_of(cols[2], nulls[2], n, TIMESTAMPTZOID);
	values[3] = array_of(cols[3], nulls[3], n, INT4OID);
	values[4] = array_of(cols[4], nulls[4], n, INT4OID);
	values[5] = array_of(cols[5], nulls[5], n, TEXTOID);
	values[6] = array_of(cols[6], nulls[6], n, TEXTOID);
	shop_exec(shop_plan(&plan_record_delivered,
						"WITH r AS ("
						"  SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
						"         pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
						"         pg_catalog.unnest($6), pg_catalog.unnest($7))"
						"    AS r(id, attempt, started_at, duration_ms, http_status, error, excerpt)),"
						" a AS ("
						"  INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at,"
						"         duration_ms, http_status, succeeded, error, response_excerpt)"
						"  SELECT id, attempt, started_at, duration_ms, http_status, true, error, excerpt"
						"    FROM r ORDER BY id),"
						" o AS ("
						"  UPDATE shop.outbox o"
						"     SET state = 'delivered', last_status = r.http_status, last_error = NULL,"
						"         next_attempt_at = now(), delivered_at = now(),"
						"         claimed_by = NULL, lease_until = NULL, updated_at = now()"
						"    FROM r"
						"   WHERE o.id = r.id AND o.state = 'in_flight' AND o.attempts = r.attempt"
						"     AND o.claimed_by = pg_catalog.pg_backend_pid()"
						"  RETURNING o.endpoint_id)"
						" UPDATE shop.event_endpoint e"
						"    SET consecutive_failures = 0, updated_at = now()"
						"  WHERE e.id IN (SELECT endpoint_id FROM o) AND e.consecutive_failures <> 0",
						7, argtypes),
			  values, NULL, false, 0);
	return rest;
}

/*
 * Lock the endpoints of the finished event requests, in ascending id,
 * before any of their outbox rows is written.  shop_unsubscribe() locks an
 * endpoint and then its open rows; recording writes a row and then its
 * endpoint's failure count.  In that opposite order the two deadlocked
 * (014_events_gate.pl unsubscribing while failures were recorded: the
 * worker's transaction was cancelled and the worker restarted).
 */
static void
lock_endpoints(OutboxRequest **done, int ndone)
{
	static const Oid argtypes[] = {INT8ARRAYOID};
	int64	   *ids = palloc(sizeof(int64) * Max(ndone, 1));
	Datum		values[1];
	int			n = 0;
	int			i;

	for (i = 0; i < ndone; i++)
		if (done[i]->provider == NULL && done[i]->endpoint_id != 0)
			ids[n++] = done[i]->endpoint_id;
	if (n == 0)
		return;
	values[0] = shop_int64_array(ids, n);
	shop_exec(shop_plan(&plan_lock_endpoints,
						"SELECT FROM shop.event_endpoint WHERE id = ANY ($1)"
						" ORDER BY id FOR NO KEY UPDATE",
						1, argtypes),
			  values, NULL, false, 0);
}

/*
 * Record finished requests (in the caller's transaction): an attempt row
 * each, the row's new state, and the endpoint's failure count (disabling
 * it after too many in a row).  Frees the requests.
 */
static void
record_results(OutboxRequest **done, int ndone)
{
	static const Oid argtypes[] = {INT8OID, INT4OID, TIMESTAMPTZOID, INT4OID, INT4OID,
	BOOLOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID};
	TimestampTz now_ts = GetCurrentTimestamp();
	int			i;

	lock_endpoints(done, ndone);
	ndone = record_delivered(done, ndone);
	for (i = 0; i < ndone; i++)
	{
		OutboxRequest *req = done[i];
		bool		ok = outbox_http_succeeded(req);
		const char *state;
		int64		delay = 0;
		Datum		values[11];
		char		nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		WebhookProvider *provider = NULL;
		Jsonb	   *answer = NULL;
		bool		final = false;

		if (req->provider != NULL)
		{
			/*
			 * A provider call: its answer is read here, its own words go
			 * into the error, and its retry rules decide (Stripe: any 4xx
			 * but 409 and 429 will fail again, so it is final).
			 */
			char	   *message;

			provider = webhook_load_provider(cstring_to_text(req->provider));
			answer = provider_parse_answer(req->answer);
			message = provider->kind->api ? provider->kind->api->error_message(answer) : NULL;
			if (!ok && req->error == NULL)
				req->error = psprintf("HTTP %d%s%s", req->http_status,
									  message ? ": " : "", message ? message : "");
			final = !ok && provider->kind->api != NULL &&
				!provider->kind->api->retryable(req->error != NULL && req->http_status == 0
												? 0 : req->http_status);
		}
		if (ok)
			state = "delivered";
		else if (final || req->attempt >= outbox_max_attempts ||
				 now_ts - req->queued_at >= (int64) outbox_max_age_s * USECS_PER_SEC)
			state = "dead";
		else
		{
			state = "failed";
			delay = retry_delay_ms(req);
		}
		ereport(DEBUG1,
				(errmsg_internal("shop outbox: row %lld attempt %d: %s (status %d%s%s)",
								 (long long) req->id, req->attempt, state, req->http_status,
								 req->error ? ", " : "", req->error ? req->error : "")));

		values[0] = Int64GetDatum(req->id);
		values[1] = Int32GetDatum(req->attempt);
		values[2] = TimestampTzGetDatum(req->started_at);
		values[3] = Int32GetDatum((int32) Min(req->duration_ms, PG_INT32_MAX));
		values[4] = Int32GetDatum(req->http_status);
		nulls[4] = req->http_status > 0 ? ' ' : 'n';
		values[5] = BoolGetDatum(ok);
		values[6] = req->error ? CStringGetTextDatum(req->error) : (Datum) 0;
		nulls[6] = req->error ? ' ' : 'n';
		values[7] = CStringGetTextDatum(excerpt(req));
		nulls[7] = req->excerpt_len > 0 ? ' ' : 'n';
		values[8] = CStringGetTextDatum(state);
		values[9] = Int64GetDatum(delay);
		values[10] = Int32GetDatum(outbox_endpoint_max_failures);
		shop_exec(shop_plan(&plan_record,
							"WITH a AS ("
							"  INSERT INTO shop.outbox_attempt (outbox_id, attempt, started_at,"
							"         duration_ms, http_status, succeeded, error, response_excerpt)"
							"  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)),"
							" o AS ("
							"  UPDATE shop.outbox"
							"     SET state = $9, last_status = $5,"
							"         last_error = CASE WHEN $6 THEN NULL"
							"                           ELSE COALESCE($7, 'HTTP status ' || $5) END,"
							"         next_attempt_at = now() + $10 * interval '1 millisecond',"
							"         delivered_at = CASE WHEN $6 THEN now() END,"
							"         claimed_by = NULL, lease_until = NULL, updated_at = now()"
							"   WHERE id = $1 AND state = 'in_flight' AND attempts = $2"
							"     AND claimed_by = pg_catalog.pg_backend_pid()"
							"  RETURNING endpoint_id),"
							" d AS ("
							"  UPDATE shop.event_endpoint e"
							"    SET consecutive_failures = CASE WHEN $6 THEN 0"
							"                               ELSE e.consecutive_failures + 1 END,"
							"        enabled = e.enabled AND ($6 OR e.consecutive_failures + 1 < $11),"
							"        disabled_reason = CASE"
							"          WHEN e.enabled AND NOT $6 AND e.consecutive_failures + 1 >= $11"
							"          THEN pg_catalog.format('%s consecutive failed attempts; the last: %s',"
							"                                 e.consecutive_failures + 1,"
							"                                 COALESCE($7, 'HTTP status ' || $5))"
							"          ELSE e.disabled_reason END,"
							"        updated_at = now()"
							"   FROM o WHERE e.id = o.endpoint_id"
							"     AND NOT ($6 AND e.consecutive_failures = 0)"
							"  RETURNING e.id, e.enabled),"
							" w AS ("
							"  UPDATE shop.outbox q SET next_attempt_at = 'infinity'"
							"    FROM d"
							"   WHERE NOT d.enabled AND q.endpoint_id = d.id AND q.id <> $1"
							"     AND q.state IN ('queued', 'failed'))"
							" SELECT",
							11, argtypes),
				  values, nulls, false, 0);
		if (provider != NULL)
			handle_answer(req, provider, ok, strcmp(state, "dead") == 0, answer);
		outbox_request_free(req);
	}
}

/*
 * Queue the providers' fetches for stale checkouts (session.c); how many.
 */
static int
reconcile(void)
{
	static const Oid argtypes[] = {INT4OID};
	Datum		values[1];
	int			queued;

	begin_work("reconciling stale checkouts");
	values[0] = Int32GetDatum(outbox_reconcile_after_s);
	shop_exec(shop_plan(&plan_reconcile,
						"SELECT shop.shop_reconcile_payments($1 * interval '1 second', 100)",
						1, argtypes),
			  values, NULL, false, 0);
	queued = (int) shop_get_int64(0, 1, NULL);
	end_work();
	return queued;
}

/*
 * Delete delivered events older than the retention, one batch
 * (shop.outbox_prune); how many deliveries went.
 */
static int
prune(void)
{
	static const Oid argtypes[] = {INT4OID, INT4OID};
	Datum		values[2];
	int			deleted;

	begin_work("deleting delivered events past their retention");
	values[0] = Int32GetDatum(outbox_retention_s);
	values[1] = Int32GetDatum(PRUNE_BATCH);
	shop_exec(shop_plan(&plan_prune,
						"SELECT deliveries FROM shop.outbox_prune($1 * interval '1 second', $2)",
						2, argtypes),
			  values, NULL, false, 0);
	deleted = (int) shop_get_int64(0, 1, NULL);
	end_work();
	return deleted;
}

/*
 * Whether any of the finished requests is a provider call: their results
 * (a refund succeeded, a payment fetched and applied) are committed
 * durably.  Everything else the worker commits (claims, event deliveries)
 * may be lost in a crash at no cost but a repeated request with the same
 * idempotency key, which at-least-once delivery allows; those commits do
 * not wait for the WAL flush (synchronous_commit off), so the worker does
 * not add flush waits to the buyers' own.
 */
static bool
needs_durable_commit(OutboxRequest **done, int ndone)
{
	int			i;

	for (i = 0; i < ndone; i++)
		if (done[i]->provider != NULL)
			return true;
	return false;
}

/*
 * How many free slots make a claim worthwhile while requests are still
 * in flight: a quarter of them (at least one).
 */
static int
refill_slots(void)
{
	return Max(1, outbox_max_in_flight / 4);
}

/*
 * The worker's entry point.
 */
void
shop_outbox_worker_main(Datum arg)
{
	OutboxRequest **done;
	int			ndone = 0;
	TimestampTz oldest_done = 0;
	bool		ready = false;
	TimestampTz next_claim = 0;
	TimestampTz next_reconcile = 0;
	TimestampTz next_prune = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(outbox_database_name, NULL, 0);
	pgstat_report_appname("shop outbox worker");

	SpinLockAcquire(&shared->mutex);
	shared->latch = MyLatch;
	SpinLockRelease(&shared->mutex);
	on_shmem_exit(unpublish_latch, (Datum) 0);

	outbox_http_init();
	/* every request is either running or here: at most max_in_flight */
	done = MemoryContextAlloc(TopMemoryContext, sizeof(OutboxRequest *) * 1000);
	elog(LOG, "shop outbox worker started for database \"%s\"", outbox_database_name);

	for (;;)
	{
		TimestampTz now_ts;
		int			running;
		int			free_slots;
		bool		claim_now;
		bool		record_now;
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_reconcile = 0;		/* under the new interval from now on */
			next_prune = 0;
		}
		if (!ready && !(ready = extension_ready()))
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 outbox_poll_interval_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		now_ts = GetCurrentTimestamp();
		if (outbox_reconcile_interval_s > 0 && now_ts >= next_reconcile)
		{
			if (reconcile() > 0)
				next_claim = 0;
			next_reconcile = TimestampTzPlusMilliseconds(now_ts,
														 (int64) outbox_reconcile_interval_s * 1000);
		}
		if (outbox_retention_s > 0 && now_ts >= next_prune)
		{
			/* a full batch leaves more behind: go on at the next turn */
			next_prune = prune() >= PRUNE_BATCH ? 0
				: TimestampTzPlusMilliseconds(now_ts,
											  (int64) Min(outbox_retention_s, PRUNE_INTERVAL_S) * 1000);
		}

		/*
		 * Claim when slots are free and rows may be due: with nothing in
		 * flight at once, else once enough slots are free for a batch.
		 * Record finished requests with the claim, or once they are
		 * enough for a batch or have waited RECORD_DELAY_MS.
		 */
		running = outbox_http_running();
		free_slots = outbox_max_in_flight - running - ndone;
		claim_now = free_slots > 0 && now_ts >= next_claim &&
			(running == 0 || free_slots >= refill_slots());
		record_now = ndone > 0 &&
			(claim_now || running == 0 || ndone >= refill_slots() ||
			 now_ts - oldest_done >= (int64) RECORD_DELAY_MS * 1000);
		if (record_now || claim_now)
		{
			begin_work(claim_now ? "claiming outbox rows" : "recording outbox results");
			if (!(record_now && needs_durable_commit(done, ndone)))
				(void) set_config_option("synchronous_commit", "off",
										 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
										 true, 0, false);
			if (record_now)
			{
				record_results(done, ndone);
				ndone = 0;
				free_slots = outbox_max_in_flight - running;
			}
			if (claim_now)
			{
				TimestampTz next_due;
				int			claimed = claim_and_start(free_slots, &next_due, done, &ndone);

				/*
				 * All slots filled: claim again as soon as enough free.
				 * Else the next row is due at next_due; one that is due
				 * already but was not claimed waits for another row
				 * (per-key order) or its endpoint, which a delivery or a
				 * wake-up changes.
				 */
				if (claimed == free_slots)
					next_claim = 0;
				else if (next_due > now_ts)
					next_claim = Min(next_due, TimestampTzPlusMilliseconds(now_ts, outbox_poll_interval_ms));
				else
					next_claim = TimestampTzPlusMilliseconds(now_ts, outbox_poll_interval_ms);
				if (ndone > 0)
					oldest_done = now_ts;	/* requests libcurl refused */
			}
			end_work();
		}

		if (outbox_http_running() > 0)
		{
			int			n;
			long		slice = ndone > 0 ? Min(POLL_SLICE_MS, RECORD_DELAY_MS) : POLL_SLICE_MS;

			if (!PostmasterIsAlive())
				proc_exit(1);
			/* a claim that is coming up does not wait for the slice's end */
			if (outbox_max_in_flight - outbox_http_running() - ndone >= refill_slots())
			{
				now_ts = GetCurrentTimestamp();
				slice = Min(slice, next_claim <= now_ts ? 0 : (next_claim - now_ts) / 1000 + 1);
			}
			n = outbox_http_poll((int) slice, done + ndone, 1000 - ndone);
			if (n > 0)
			{
				if (ndone == 0)
					oldest_done = GetCurrentTimestamp();
				ndone += n;
				/* slots freed, and the next of a key may go */
				next_claim = Min(next_claim, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																		 outbox_batch_delay_ms));
			}
			if (MyLatch->is_set)
			{
				ResetLatch(MyLatch);
				next_claim = Min(next_claim, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																		 outbox_batch_delay_ms));
			}
			continue;
		}
		if (ndone > 0)
			continue;			/* record them at once: nothing else runs */

		now_ts = GetCurrentTimestamp();
		wait_ms = next_claim <= now_ts ? 0
			: Min((next_claim - now_ts) / 1000, (long) outbox_poll_interval_ms);

		/*
		 * A claim due within the coalescing window takes whatever commits
		 * until then, so that wait is for the clock only: the latch stays
		 * set, and the buyers committing meanwhile do not signal this
		 * process once per commit (setting a set latch costs them nothing).
		 * Interrupts are then seen when the window ends.
		 */
		if (wait_ms > 0 &&
			(WaitLatch(MyLatch,
					   (next_claim <= TimestampTzPlusMilliseconds(now_ts, outbox_batch_delay_ms)
						? 0 : WL_LATCH_SET) | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   wait_ms, PG_WAIT_EXTENSION) & WL_LATCH_SET))
		{
			/*
			 * A commit queued rows.  Under load the next commits follow
			 * within milliseconds: claiming a moment later takes theirs in
			 * the same claim instead of one claim per commit.  (Min: later
			 * wake-ups never push a pending claim further away.)
			 */
			next_claim = Min(next_claim,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), outbox_batch_delay_ms));
		}
		ResetLatch(MyLatch);
	}
}

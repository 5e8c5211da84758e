/*
 * outbox.h
 *		The delivery worker: its settings, and the request it hands from its
 *		database side (outbox_worker.c) to its HTTP side (outbox_http.c).
 */
#ifndef OUTBOX_H
#define OUTBOX_H

#include "shop.h"

#include <curl/curl.h>

#include "datatype/timestamp.h"

/* Bytes of a response body kept in the attempt log. */
#define OUTBOX_EXCERPT_BYTES	512

/* Settings (outbox_worker.c; README, "Setting up the worker"). */
extern char *outbox_database_name;
extern int	outbox_max_in_flight;
extern int	outbox_timeout_ms;
extern int	outbox_max_response_bytes;
extern int	outbox_retry_base_ms;
extern int	outbox_retry_max_ms;
extern int	outbox_max_attempts;
extern int	outbox_max_age_s;
extern int	outbox_poll_interval_ms;
extern int	outbox_endpoint_max_failures;

/* One claimed outbox row on its way out, and what came back. */
typedef struct OutboxRequest
{
	MemoryContext cxt;			/* holds this request and everything in it */
	int64		id;
	int32		attempt;		/* this attempt's number (1 = first) */
	int64		endpoint_id;
	TimestampTz queued_at;
	char	   *url;
	char	   *method;
	char	   *body;			/* NULL: no body */
	int			body_len;
	struct curl_slist *headers;
	char	   *provider;		/* provider rows: the provider called */
	char	   *operation;		/* event | refund */
	int64		subject_id;		/* the refund of a refund row */

	/* filled in by outbox_http.c */
	CURL	   *easy;
	TimestampTz started_at;
	int64		duration_ms;
	int			http_status;	/* 0: no response */
	char	   *error;			/* NULL: the transfer went through */
	int64		retry_after_ms; /* -1: the response gave none */
	size_t		received;
	bool		truncated;		/* the body went past the cap */
	int			excerpt_len;
	char		excerpt[OUTBOX_EXCERPT_BYTES];
	bool		keep_answer;	/* provider rows: the whole answer is read */
	char	   *answer;			/* malloc'd (the write callback may not palloc) */
	size_t		answer_len;
	char		errbuf[CURL_ERROR_SIZE];
} OutboxRequest;

/* outbox_http.c */
extern void outbox_http_init(void);
extern bool outbox_http_start(OutboxRequest *req);
extern int	outbox_http_running(void);
extern int	outbox_http_poll(int timeout_ms, OutboxRequest **done, int maxdone);
extern bool outbox_http_succeeded(const OutboxRequest *req);
extern void outbox_request_free(OutboxRequest *req);

#endif							/* OUTBOX_H */

/*
 * log.c: one line per request on stderr (method, path without the query
 * string, status, milliseconds; never bodies, tokens or query strings), and
 * building JSON replies.  Error bodies have PostgREST's shape
 * {"code", "message", "details", "hint"} (PostgREST docs, "Errors").
 */
#include "httpd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void
timestamp(char *buf, size_t len)
{
	struct timespec now;
	struct tm	tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, (long) ((now.tv_nsec / 1000000) % 1000));
}

/* Paths are logged with control characters and quotes replaced: a request
 * line must not be able to forge log lines. */
void
log_request(const char *method, const char *path, int status, const struct timespec *start)
{
	struct timespec now;
	char		ts[96];
	char		safe[256];
	size_t		i,
				j = 0;
	double		ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - start->tv_sec) * 1000.0 + (now.tv_nsec - start->tv_nsec) / 1e6;
	for (i = 0; path && path[i] && j < sizeof(safe) - 4; i++)
	{
		unsigned char ch = (unsigned char) path[i];

		safe[j++] = (ch < 0x20 || ch == 0x7f || ch == '"') ? '?' : (char) ch;
	}
	if (path && path[i])
	{
		safe[j++] = '.';
		safe[j++] = '.';
		safe[j++] = '.';
	}
	safe[j] = '\0';
	timestamp(ts, sizeof(ts));
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s %s \"%s\" %d %.1fms\n", ts, method ? method : "-", safe, status, ms);
	pthread_mutex_unlock(&log_lock);
}

void
log_msg(const char *fmt,...)
{
	char		ts[96];
	va_list		ap;

	timestamp(ts, sizeof(ts));
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s shop-httpd: ", ts);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
}

void
reply_json(Reply *r, int status, json_t *body)
{
	r->status = status;
	free(r->body);
	r->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	r->body_len = r->body ? strlen(r->body) : 0;
	r->content_type = "application/json; charset=utf-8";
	json_decref(body);
}

static json_t *
str_or_null(const char *s)
{
	json_t	   *v = s ? json_string(s) : NULL;

	/* json_string refuses invalid UTF-8: fall back to a lossless-enough copy */
	if (s && !v)
		v = json_stringn_nocheck(s, strlen(s));
	return v ? v : json_null();
}

void
reply_error(Reply *r, int status, const char *code, const char *message,
			const char *details, const char *hint)
{
	json_t	   *o = json_object();

	json_object_set_new(o, "code", str_or_null(code));
	json_object_set_new(o, "details", str_or_null(details));
	json_object_set_new(o, "hint", str_or_null(hint));
	json_object_set_new(o, "message", str_or_null(message));
	reply_json(r, status, o);
}

void
reply_header(Reply *r, const char *name, const char *value)
{
	if (!r->headers)
		r->headers = json_object();
	json_object_set_new(r->headers, name, json_string(value));
}

MHD_RESULT_T
reply_send(struct MHD_Connection *c, Reply *r)
{
	struct MHD_Response *resp;
	MHD_RESULT_T ret;
	const char *k;
	json_t	   *v;

	resp = MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (void *) "",
										   r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	r->body = NULL;
	if (!resp)
		return MHD_NO;
	if (r->content_type && r->body_len > 0)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	if (r->headers)
	{
		json_object_foreach(r->headers, k, v)
		{
			if (json_is_string(v))
				MHD_add_response_header(resp, k, json_string_value(v));
		}
	}
	ret = MHD_queue_response(c, (unsigned) r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * outbox_http.c
 *		The delivery worker's HTTP side: many requests at once on one libcurl
 *		multi handle, nothing of the database.
 *
 * Each request is an OutboxRequest (outbox.h) set up by the worker; here it
 * becomes an easy handle with the limits every outbound call keeps: a
 * whole-request timeout, no redirects, only https (or http when the worker
 * allows loopback), TLS verification on, no signals (the worker owns them),
 * and a cap on the response body read.  When the cap is reached the
 * transfer is cut: the status line has arrived by then and is what counts.
 */
#include "outbox.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

static CURLM *multi = NULL;
static int	running = 0;

/*
 * Set up libcurl once per worker process.
 */
void
outbox_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "shop: could not initialize libcurl");
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "shop: could not create a libcurl multi handle");
}

/*
 * Keep the start of the response body, up to the configured cap; past it,
 * stop the transfer (returning less than given makes libcurl abort it).
 */
static size_t
write_body(char *data, size_t size, size_t nmemb, void *arg)
{
	OutboxRequest *req = (OutboxRequest *) arg;
	size_t		n = size * nmemb;
	size_t		keep;

	if (req->received + n > (size_t) outbox_max_response_bytes)
	{
		req->truncated = true;
		return 0;
	}
	req->received += n;
	keep = Min(n, (size_t) (OUTBOX_EXCERPT_BYTES - req->excerpt_len));
	memcpy(req->excerpt + req->excerpt_len, data, keep);
	req->excerpt_len += keep;
	if (req->keep_answer)
	{
		char	   *grown = realloc(req->answer, req->answer_len + n + 1);

		if (grown == NULL)
			return 0;
		req->answer = grown;
		memcpy(req->answer + req->answer_len, data, n);
		req->answer_len += n;
		req->answer[req->answer_len] = '\0';
	}
	return n;
}

/*
 * Read Retry-After (delay-seconds or an HTTP date) from a response header.
 */
static size_t
read_header(char *data, size_t size, size_t nmemb, void *arg)
{
	OutboxRequest *req = (OutboxRequest *) arg;
	size_t		n = size * nmemb;
	static const char name[] = "retry-after:";
	char		value[128];
	size_t		len;
	char	   *end;
	long		seconds;
	time_t		when;

	if (n <= sizeof(name) - 1 || pg_strncasecmp(data, name, sizeof(name) - 1) != 0)
		return n;
	len = Min(n - (sizeof(name) - 1), sizeof(value) - 1);
	memcpy(value, data + sizeof(name) - 1, len);
	value[len] = '\0';
	while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n' || value[len - 1] == ' '))
		value[--len] = '\0';
	end = value;
	while (*end == ' ')
		end++;
	seconds = strtol(end, &end, 10);
	if (*end == '\0' && end != value && seconds >= 0)
		req->retry_after_ms = (int64) Min(seconds, 365L * 24 * 3600) * 1000;
	else if ((when = curl_getdate(value, NULL)) != -1)
		req->retry_after_ms = Max((int64) when - (int64) time(NULL), 0) * 1000;
	return n;
}

/*
 * Start req on the multi handle; false (req->error set) when it cannot be
 * sent at all (the URL policy, or libcurl refusing the setup).
 */
bool
outbox_http_start(OutboxRequest *req)
{
	const char *why = endpoint_url_refusal(req->url);
	CURL	   *easy;

	req->started_at = GetCurrentTimestamp();
	req->retry_after_ms = -1;
	if (why != NULL)
	{
		req->error = psprintf("not sent: %s", why);
		return false;
	}
	easy = curl_easy_init();
	if (easy == NULL)
	{
		req->error = pstrdup("not sent: libcurl could not create a handle");
		return false;
	}
	req->easy = easy;
	req->errbuf[0] = '\0';
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR,
					 outbox_allow_http_loopback ? "http,https" : "https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) outbox_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) outbox_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body != NULL)
	{
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) req->body_len);
	}
	else if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
	{
		curl_easy_cleanup(easy);
		req->easy = NULL;
		req->error = pstrdup("not sent: libcurl refused the request");
		return false;
	}
	running++;
	return true;
}

/*
 * How many requests are in flight.
 */
int
outbox_http_running(void)
{
	return running;
}

/*
 * Fill in what a finished transfer produced.
 */
static void
finish(OutboxRequest *req, CURLcode code)
{
	curl_off_t	total_us = 0;
	long		status = 0;
	MemoryContext old = MemoryContextSwitchTo(req->cxt);

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	req->http_status = (int) status;
	req->duration_ms = (int64) total_us / 1000;
	if (code == CURLE_WRITE_ERROR && req->truncated)
		req->error = psprintf("response body longer than %d bytes; the rest was not read",
							  outbox_max_response_bytes);
	else if (code != CURLE_OK)
		req->error = psprintf("%s%s%s", curl_easy_strerror(code),
							  req->errbuf[0] ? ": " : "", req->errbuf);
	curl_multi_remove_handle(multi, req->easy);
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
	running--;
	MemoryContextSwitchTo(old);
}

/*
 * Let the transfers run for up to timeout_ms (returning earlier when one
 * finishes or a socket needs attention), then return the finished ones in
 * done (at most maxdone); how many.
 */
int
outbox_http_poll(int timeout_ms, OutboxRequest **done, int maxdone)
{
	int			still;
	int			ndone = 0;
	int			queued;
	CURLMsg    *msg;

	curl_multi_perform(multi, &still);
	if (still > 0)
	{
		curl_multi_poll(multi, NULL, 0, timeout_ms, NULL);
		curl_multi_perform(multi, &still);
	}
	while (ndone < maxdone && (msg = curl_multi_info_read(multi, &queued)) != NULL)
	{
		OutboxRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		finish(req, msg->data.result);
		done[ndone++] = req;
	}
	return ndone;
}

/*
 * Free a request: its headers (libcurl's memory) and its context.
 */
void
outbox_request_free(OutboxRequest *req)
{
	curl_slist_free_all(req->headers);
	free(req->answer);
	MemoryContextDelete(req->cxt);
}

/*
 * Whether the request counts as delivered: a 2xx status, also when the
 * body was cut at the cap (the receiver had answered by then).
 */
bool
outbox_http_succeeded(const OutboxRequest *req)
{
	return req->http_status >= 200 && req->http_status < 300 &&
		(req->error == NULL || req->truncated);
}

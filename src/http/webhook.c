/*
 * webhook.c: POST /webhooks/<provider>.  No payment logic here (README,
 * "Payment webhooks"): the raw body bytes, exactly as received (the
 * provider's signature covers them), and the request headers (a JSON object
 * with lower-case names) go as bind parameters into ONE call,
 *
 *   SELECT <schema>.handle_webhook($1, $2::jsonb, $3)
 *
 * under --webhook-role, in one transaction.  The provider name from the
 * path is only a parameter.  Answers: 200 with the function's JSON on any
 * result; 400 on SH010–SH014 (not an authentic, fresh, readable event:
 * nothing was recorded); 503 on connection and transient errors (08xxx,
 * 40001, 40P01, 53xxx, 57P0x: the provider retries); 500 otherwise.
 */
#include "httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
handle_webhook(struct MHD_Connection *c, const char *provider, Request *req, Reply *r)
{
	PoolConn   *pc;
	int			status;
	const char *code,
			   *message;
	char	   *headers,
			   *sql,
			   *qschema;
	char		path[256];
	char		timeout[32];
	json_t	   *h;

	if (!*provider || strchr(provider, '/') || strlen(provider) > 63)
	{
		reply_error(r, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
		return;
	}
	/* PostgreSQL text cannot hold a NUL byte: such a body cannot be an event */
	if (req->body_len == 0 || memchr(req->body, '\0', req->body_len))
	{
		reply_error(r, 400, "SH014", "the webhook body is empty or not text", NULL, NULL);
		return;
	}
	pc = pool_acquire(&status, &code, &message);
	if (!pc)
	{
		reply_error(r, 503, code, message, NULL, NULL);
		return;
	}
	h = request_headers_json(c);
	headers = json_dumps(h, JSON_COMPACT);
	json_decref(h);
	{
		char	   *q = PQescapeIdentifier(pc->conn, cfg.schema, strlen(cfg.schema));

		qschema = strdup(q ? q : "\"\"");
		PQfreemem(q);
	}
	sql = malloc(strlen(qschema) + 128);
	sprintf(sql, "SELECT %s.\"handle_webhook\"($1, $2::pg_catalog.jsonb, $3)::pg_catalog.text", qschema);
	snprintf(path, sizeof(path), "/webhooks/%s", provider);
	snprintf(timeout, sizeof(timeout), "%d", cfg.statement_timeout_ms);
	{
		const char *pre_vals[7] = {cfg.webhook_role, "{}", headers, "POST", path, timeout, "off"};
		const char *call_vals[3] = {provider, headers, req->body};
		Step		steps[2] = {
			{.name = "shop_pre", .sql =
				"SELECT pg_catalog.set_config('role', $1, true),"
				" pg_catalog.set_config('request.jwt.claims', $2, true),"
				" pg_catalog.set_config('request.headers', $3, true),"
				" pg_catalog.set_config('request.method', $4, true),"
				" pg_catalog.set_config('request.path', $5, true),"
				" pg_catalog.set_config('statement_timeout', $6, true),"
				" pg_catalog.set_config('transaction_read_only', $7, true)",
			.nparams = 7, .values = pre_vals},
			{.name = "shop_webhook", .sql = sql, .nparams = 3, .values = call_vals},
		};
		PGresult   *commit_error = NULL;
		bool		ok = run_pipeline(pc, steps, 2, &commit_error);
		const PGresult *err = steps_first_error(steps, 2);

		if (!err)
			err = commit_error;
		if (!ok && !err)
			reply_error(r, 503, "PGRST001", "Database client error. Retrying the connection.", NULL, NULL);
		else if (err)
		{
			const char *state = PQresultErrorField(err, PG_DIAG_SQLSTATE);

			reply_pg_error(r, err, false);
			if (state && strncmp(state, "SH01", 4) == 0 && state[4] >= '0' && state[4] <= '4')
				r->status = 400;
			else if (!ok || transient_sqlstate(state))
				r->status = 503;
			else
				r->status = 500;
			json_decref(r->headers);
			r->headers = NULL;
		}
		else
		{
			PGresult   *res = steps[1].res;

			r->body = strdup(PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "null");
			r->body_len = strlen(r->body);
			r->content_type = "application/json; charset=utf-8";
			r->status = 200;
		}
		PQclear(commit_error);
		steps_clear(steps, 2);
	}
	pool_release(pc);
	free(headers);
	free(sql);
	free(qschema);
}

/*
 * rpc.c: POST /rpc/<fn> and GET /rpc/<fn>, PostgREST's RPC dialect for one
 * schema (PostgREST docs, "Functions as RPC"):
 *
 *  - POST: the body is a JSON object of named arguments; GET: the query
 *    string's parameters (as strings).  Arguments with defaults may be
 *    omitted.  The function is the one of that name in the schema whose
 *    argument names cover the keys given and whose arguments without a
 *    default are all given; none → PGRST202 (404), several → PGRST203 (300).
 *  - GET runs in a read-only transaction and only for STABLE / IMMUTABLE
 *    functions: a VOLATILE one gets 405, the status PostgREST answers when a
 *    volatile function fails in its read-only GET transaction (25006 → 405).
 *  - Results are shaped by the server, as PostgREST does: a set-returning
 *    function (SETOF / TABLE) → JSON array, a single composite → JSON
 *    object, a scalar → the JSON scalar, void → 204 No Content without a
 *    body (PostgREST 9.0, PR #2058 "Returning 204 No Content where
 *    appropriate", issue #2001).
 *  - Arguments are converted the way PostgREST converts them, by the server:
 *    json_to_record($1) with the function's argument types, so "5" and 5 are
 *    both a valid integer and a JSON array is a valid jsonb argument.
 *  - One transaction, one round trip (libpq pipeline mode, PG 14+): as
 *    PostgREST ("Transactions", "Request-scoped settings"), set_config of
 *    role, request.jwt.claims, request.headers, request.method and
 *    request.path (is_local = true), the call, then response.status and
 *    response.headers read back; the implicit transaction of the pipeline
 *    commits at its Sync.
 *
 * The SQL is built only from catalog identifiers quoted with
 * PQescapeIdentifier; request values are always bind parameters.  Each
 * statement is prepared once per connection and kept.
 */
#include "httpd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRE_SQL \
	"SELECT pg_catalog.set_config('role', $1, true)," \
	" pg_catalog.set_config('request.jwt.claims', $2, true)," \
	" pg_catalog.set_config('request.headers', $3, true)," \
	" pg_catalog.set_config('request.method', $4, true)," \
	" pg_catalog.set_config('request.path', $5, true)," \
	" pg_catalog.set_config('statement_timeout', $6, true)," \
	" pg_catalog.set_config('transaction_read_only', $7, true)"

#define POST_SQL \
	"SELECT pg_catalog.current_setting('response.status', true)," \
	" pg_catalog.current_setting('response.headers', true)"

/* ---------------- PostgREST's SQLSTATE → HTTP status ----------------
 * PostgREST docs, "Errors" → "HTTP Status Codes" (the table is in README,
 * section shop-httpd).  PTnnn → nnn; 42501 → 401 anonymous, 403 with a
 * token; everything not listed (the shop's own SH001–SH023 included) → 400.
 */
int
sqlstate_status(const char *s, bool authenticated)
{
	if (!s || strlen(s) != 5)
		return 500;
	if (strncmp(s, "08", 2) == 0)
		return 503;
	if (strncmp(s, "09", 2) == 0)
		return 500;
	if (strncmp(s, "0L", 2) == 0 || strncmp(s, "0P", 2) == 0)
		return 403;
	if (strcmp(s, "23503") == 0 || strcmp(s, "23505") == 0)
		return 409;
	if (strcmp(s, "25006") == 0)
		return 405;
	if (strncmp(s, "25", 2) == 0)
		return 500;
	if (strncmp(s, "28", 2) == 0)
		return 403;
	if (strncmp(s, "2D", 2) == 0 || strncmp(s, "38", 2) == 0 ||
		strncmp(s, "39", 2) == 0 || strncmp(s, "3B", 2) == 0 ||
		strncmp(s, "40", 2) == 0)
		return 500;
	if (strcmp(s, "53400") == 0)
		return 500;
	if (strncmp(s, "53", 2) == 0)
		return 503;
	if (strncmp(s, "54", 2) == 0 || strncmp(s, "55", 2) == 0 ||
		strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0 ||
		strncmp(s, "F0", 2) == 0 || strncmp(s, "HV", 2) == 0)
		return 500;
	if (strcmp(s, "P0001") == 0)
		return 400;
	if (strncmp(s, "P0", 2) == 0 || strncmp(s, "XX", 2) == 0)
		return 500;
	if (strcmp(s, "42883") == 0 || strcmp(s, "42P01") == 0)
		return 404;
	if (strcmp(s, "42P17") == 0)
		return 500;
	if (strcmp(s, "42501") == 0)
		return authenticated ? 403 : 401;
	if (s[0] == 'P' && s[1] == 'T' && isdigit((unsigned char) s[2]) &&
		isdigit((unsigned char) s[3]) && isdigit((unsigned char) s[4]))
	{
		int			st = atoi(s + 2);

		return (st >= 100 && st <= 599) ? st : 500;
	}
	return 400;
}

/* connection or transient errors: worth a retry by the client */
bool
transient_sqlstate(const char *s)
{
	if (!s)
		return true;
	return strncmp(s, "08", 2) == 0 || strcmp(s, "40001") == 0 ||
		strcmp(s, "40P01") == 0 || strncmp(s, "53", 2) == 0 ||
		strncmp(s, "57P0", 4) == 0;
}

void
reply_pg_error(Reply *r, const PGresult *res, bool authenticated)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (!state)
	{
		/* no SQLSTATE: libpq lost the connection */
		reply_error(r, 503, "PGRST001", "Database client error. Retrying the connection.",
					NULL, NULL);
		return;
	}
	reply_error(r, sqlstate_status(state, authenticated), state,
				PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
				PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
				PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
	/* PostgREST sends 401s with a WWW-Authenticate challenge */
	if (r->status == 401)
		reply_header(r, "WWW-Authenticate", "Bearer");
}

/* ---------------- request headers as a JSON object ---------------- */

static MHD_RESULT_T
header_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	json_t	   *o = cls;
	char		lower[256];
	size_t		i;
	json_t	   *old;

	(void) kind;
	if (!key || !value)
		return MHD_YES;
	for (i = 0; key[i] && i < sizeof(lower) - 1; i++)
		lower[i] = (char) tolower((unsigned char) key[i]);
	lower[i] = '\0';
	old = json_object_get(o, lower);
	if (old)
	{
		/* a repeated field: combined with ", " (RFC 9110 section 5.3) */
		size_t		len = json_string_length(old) + 2 + strlen(value);
		char	   *joined = malloc(len + 1);

		if (joined)
		{
			snprintf(joined, len + 1, "%s, %s", json_string_value(old), value);
			json_object_set_new(o, lower, json_stringn_nocheck(joined, len));
			free(joined);
		}
	}
	else
	{
		json_t	   *v = json_string(value);

		/* header bytes that are not UTF-8 are passed as Latin-1 would read them: drop instead */
		if (v)
			json_object_set_new(o, lower, v);
	}
	return MHD_YES;
}

json_t *
request_headers_json(struct MHD_Connection *c)
{
	json_t	   *o = json_object();

	MHD_get_connection_values(c, MHD_HEADER_KIND, header_cb, o);
	return o;
}

static MHD_RESULT_T
query_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	json_t	   *o = cls;
	json_t	   *v;

	(void) kind;
	if (!key)
		return MHD_YES;
	v = json_string(value ? value : "");
	if (!v)
	{
		/* not UTF-8: mark the whole query invalid */
		json_object_set_new(o, "\x01invalid", json_true());
		return MHD_NO;
	}
	json_object_set_new(o, key, v);
	return MHD_YES;
}

/* ---------------- the pipeline ---------------- */

static PGresult *
next_result(PGconn *conn)
{
	PGresult   *r = PQgetResult(conn);

	if (r && PQresultStatus(r) != PGRES_PIPELINE_SYNC)
	{
		PGresult   *end = PQgetResult(conn);

		/* each command's results end with NULL */
		if (end)
			PQclear(end);
	}
	return r;
}

void
steps_clear(Step *steps, int n)
{
	for (int i = 0; i < n; i++)
	{
		PQclear(steps[i].prep_res);
		PQclear(steps[i].res);
		steps[i].prep_res = steps[i].res = NULL;
	}
}

const PGresult *
steps_first_error(Step *steps, int n)
{
	for (int i = 0; i < n; i++)
	{
		if (steps[i].prep_res && PQresultStatus(steps[i].prep_res) == PGRES_FATAL_ERROR)
			return steps[i].prep_res;
		if (steps[i].res && PQresultStatus(steps[i].res) == PGRES_FATAL_ERROR)
			return steps[i].res;
	}
	return NULL;
}

/*
 * Send every step (preparing those not yet prepared on this connection),
 * one Sync, read everything back.  Returns false when the connection broke.
 * *commit_error is an error reported at the Sync (the commit failed).
 */
bool
run_pipeline(PoolConn *pc, Step *steps, int n, PGresult **commit_error)
{
	PGconn	   *conn = pc->conn;
	PGresult   *r;
	bool		ok = true;

	*commit_error = NULL;
	if (!PQenterPipelineMode(conn))
		return false;
	for (int i = 0; i < n; i++)
	{
		steps[i].prepare_sent = false;
		if (!pool_is_prepared(pc, steps[i].name))
		{
			if (!PQsendPrepare(conn, steps[i].name, steps[i].sql, steps[i].nparams, NULL))
				return false;
			steps[i].prepare_sent = true;
		}
		if (!PQsendQueryPrepared(conn, steps[i].name, steps[i].nparams, steps[i].values,
								 NULL, NULL, 0))
			return false;
	}
	if (!PQpipelineSync(conn))
		return false;
	for (int i = 0; i < n && ok; i++)
	{
		if (steps[i].prepare_sent)
		{
			steps[i].prep_res = next_result(conn);
			if (!steps[i].prep_res)
				ok = false;
			else if (PQresultStatus(steps[i].prep_res) == PGRES_COMMAND_OK)
				pool_mark_prepared(pc, steps[i].name);
		}
		if (ok)
		{
			steps[i].res = next_result(conn);
			if (!steps[i].res)
				ok = false;
		}
	}
	/* up to the Sync: an error here is the commit's */
	while (ok && (r = PQgetResult(conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(r);

		if (st == PGRES_PIPELINE_SYNC)
		{
			PQclear(r);
			break;
		}
		if (st == PGRES_FATAL_ERROR && !*commit_error)
			*commit_error = r;
		else
			PQclear(r);
		if (PQstatus(conn) != CONNECTION_OK)
			ok = false;
	}
	if (!ok || PQstatus(conn) != CONNECTION_OK)
		return false;
	return PQexitPipelineMode(conn) == 1;
}

/* ---------------- function matching and SQL ---------------- */

static bool
fn_accepts(const Fn *f, json_t *args)
{
	const char *key;
	json_t	   *v;
	int			given = 0;

	json_object_foreach(args, key, v)
	{
		int			j;

		for (j = 0; j < f->nargs; j++)
			if (strcmp(f->args[j].name, key) == 0)
				break;
		if (j == f->nargs)
			return false;
		given++;
	}
	for (int j = 0; j < f->nargs - f->ndefaults; j++)
		if (!json_object_get(args, f->args[j].name))
			return false;
	(void) given;
	return true;
}

static char *
build_call_sql(const Fn *f, json_t *args, bool *has_param)
{
	size_t		cap = 512;
	char	   *cols,
			   *call,
			   *sql;
	size_t		cols_len = 0,
				call_len = 0;
	bool		any = false;

	cols = calloc(1, cap);
	call = calloc(1, cap + strlen(f->qualified) + 4);
	call_len = (size_t) sprintf(call, "%s(", f->qualified);
	for (int j = 0; j < f->nargs; j++)
	{
		const FnArg *a = &f->args[j];
		size_t		need;
		const char *qn;

		if (!json_object_get(args, a->name))
			continue;
		qn = a->qname;
		need = strlen(qn) * 2 + strlen(a->type_sql) + 16;
		cols = realloc(cols, cols_len + need + 1);
		call = realloc(call, call_len + need + 1);
		cols_len += (size_t) sprintf(cols + cols_len, "%s%s %s", any ? ", " : "", qn, a->type_sql);
		call_len += (size_t) sprintf(call + call_len, "%s%s => _a.%s", any ? ", " : "", qn, qn);
		any = true;
	}
	strcat(call, ")");
	*has_param = any;

	sql = malloc(strlen(cols) + strlen(call) + 256);
	{
		const char *src = any ? "pg_catalog.json_to_record($1::pg_catalog.json) AS _a(" : "";

		switch (f->ret)
		{
			case RET_SET:
				sprintf(sql, "SELECT COALESCE(pg_catalog.json_agg(_f), '[]')::pg_catalog.text FROM %s%s%s%s _f",
						src, any ? cols : "", any ? "), LATERAL " : "", call);
				break;
			case RET_COMPOSITE:
				sprintf(sql, "SELECT pg_catalog.row_to_json(_f)::pg_catalog.text FROM %s%s%s%s _f",
						src, any ? cols : "", any ? "), LATERAL " : "", call);
				break;
			case RET_SCALAR:
				sprintf(sql, "SELECT pg_catalog.to_json(%s)::pg_catalog.text%s%s%s", call,
						any ? " FROM " : "", src, any ? cols : "");
				if (any)
					strcat(sql, ")");
				break;
			case RET_VOID:
				sprintf(sql, "SELECT %s IS NULL%s%s%s", call,
						any ? " FROM " : "", src, any ? cols : "");
				if (any)
					strcat(sql, ")");
				break;
		}
	}
	free(cols);
	free(call);
	return sql;
}

/* response.headers: PostgREST's format, a JSON array of one-key objects */
static bool
apply_response_headers(Reply *r, const char *text)
{
	json_t	   *arr,
			   *o;
	size_t		i;

	if (!text || !*text)
		return true;
	arr = json_loads(text, 0, NULL);
	if (!json_is_array(arr))
	{
		json_decref(arr);
		return false;
	}
	json_array_foreach(arr, i, o)
	{
		const char *k;
		json_t	   *v;

		if (!json_is_object(o))
		{
			json_decref(arr);
			return false;
		}
		json_object_foreach(o, k, v)
		{
			if (!json_is_string(v) || strpbrk(k, "\r\n:") || strpbrk(json_string_value(v), "\r\n"))
			{
				json_decref(arr);
				return false;
			}
			reply_header(r, k, json_string_value(v));
		}
	}
	json_decref(arr);
	return true;
}

static void
jwt_reply(Reply *r, JwtResult jr)
{
	char		challenge[160];

	/* PGRST301: the token could not be verified; PGRST303: its claims failed */
	reply_error(r, 401, (jr == JWT_EXPIRED || jr == JWT_NOT_YET_VALID || jr == JWT_BAD_CLAIMS)
				? "PGRST303" : "PGRST301", jwt_error_message(jr), NULL, NULL);
	snprintf(challenge, sizeof(challenge),
			 "Bearer error=\"invalid_token\", error_description=\"%s\"", jwt_error_message(jr));
	reply_header(r, "WWW-Authenticate", challenge);
}

/*
 * The role and claims of a request: a valid Bearer token's, or the anonymous
 * role's.  False (and r filled with 401) for a bad token.
 */
static bool
authenticate(struct MHD_Connection *c, Reply *r, char **role, char **claims_text, bool *authenticated)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	json_t	   *claims = NULL;

	*authenticated = false;
	/* "Bearer" with no token at all is a bad token, not anonymous */
	if (auth && strncasecmp(auth, "Bearer", 6) == 0 && (auth[6] == ' ' || auth[6] == '\0'))
	{
		const char *tok = auth + 6;
		JwtResult	jr;

		while (*tok == ' ')
			tok++;
		jr = jwt_verify(tok, &claims);
		if (jr != JWT_OK)
		{
			jwt_reply(r, jr);
			return false;
		}
		*authenticated = true;
	}
	if (!claims)
	{
		claims = json_object();
		json_object_set_new(claims, "role", json_string(cfg.anon_role));
	}
	{
		const char *rl = json_string_value(json_object_get(claims, "role"));

		*role = strdup(rl ? rl : cfg.anon_role);
	}
	*claims_text = json_dumps(claims, JSON_COMPACT);
	json_decref(claims);
	return true;
}

void
handle_rpc(struct MHD_Connection *c, const char *method, const char *fname, Request *req, Reply *r)
{
	bool		is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	json_t	   *args = NULL;
	const char *args_text = NULL;
	char	   *args_dump = NULL;
	char	   *role = NULL,
			   *claims = NULL,
			   *headers = NULL,
			   *sql = NULL;
	bool		authenticated;
	SchemaCache *sc = NULL;
	PoolConn   *pc = NULL;
	const Fn   *fn = NULL;
	int			fn_index = -1,
				matches = 0;
	char		call_name[64];
	char		path[512];
	char		timeout[32];
	bool		has_param;
	int			status;
	const char *code,
			   *message;

	if (!is_get && strcmp(method, "POST") != 0)
	{
		reply_error(r, 405, "PGRST101", "Only GET and POST verbs are allowed for functions",
					NULL, NULL);
		reply_header(r, "Allow", "GET, HEAD, POST");
		return;
	}
	if (!authenticate(c, r, &role, &claims, &authenticated))
		return;

	/* the arguments */
	if (is_get)
	{
		args = json_object();
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_cb, args);
		if (json_object_get(args, "\x01invalid"))
		{
			reply_error(r, 400, "PGRST100", "Query string parameters must be UTF-8", NULL, NULL);
			goto done;
		}
		args_dump = json_dumps(args, JSON_COMPACT);
		args_text = args_dump;
	}
	else
	{
		const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		json_error_t jerr;

		if (ct && strncasecmp(ct, "application/json", 16) != 0)
		{
			reply_error(r, 415, "PGRST107", "The request's Content-Type is not acceptable: use application/json",
						NULL, NULL);
			goto done;
		}
		if (req->body_len == 0)
		{
			args = json_object();
			args_text = "{}";
		}
		else
		{
			/* keys only: the values are converted by the server from the raw body */
			args = json_loadb(req->body, req->body_len, JSON_DECODE_INT_AS_REAL, &jerr);
			if (!json_is_object(args) || memchr(req->body, '\0', req->body_len))
			{
				reply_error(r, 400, "PGRST102", "Empty or invalid json", NULL, NULL);
				goto done;
			}
			args_text = req->body;
		}
	}

	pc = pool_acquire(&status, &code, &message);
	if (!pc)
	{
		reply_error(r, status, code, message, NULL, NULL);
		goto done;
	}
	sc = cache_get();
	if (!sc)
	{
		reply_error(r, 503, "PGRST002", "Could not query the database for the schema cache. Retrying.",
					NULL, NULL);
		goto done;
	}
	pool_sync_generation(pc, sc);
	for (int i = 0; i < sc->nfns; i++)
	{
		if (strcmp(sc->fns[i].name, fname) == 0 && fn_accepts(&sc->fns[i], args))
		{
			matches++;
			fn = &sc->fns[i];
			fn_index = i;
		}
	}
	if (matches != 1)
	{
		/* PostgREST: PGRST202 (404) none, PGRST203 (300) ambiguous */
		size_t		cap = 256 + strlen(fname) * 2 + strlen(cfg.schema) * 2;
		char	   *msg,
				   *det;
		const char *key;
		json_t	   *v;
		size_t		klen = 0;
		char	   *keys;

		json_object_foreach(args, key, v) klen += strlen(key) + 2;
		keys = calloc(1, klen + 1);
		json_object_foreach(args, key, v)
		{
			if (*keys)
				strcat(keys, ", ");
			strcat(keys, key);
		}
		msg = malloc(cap + klen);
		det = malloc(cap + klen + 128);
		if (matches == 0)
		{
			sprintf(msg, "Could not find the function %s.%s(%s) in the schema cache", cfg.schema, fname, keys);
			if (*keys)
				sprintf(det, "Searched for the function %s.%s with parameters %s, but no matches were found in the schema cache.",
						cfg.schema, fname, keys);
			else
				sprintf(det, "Searched for the function %s.%s without parameters, but no matches were found in the schema cache.",
						cfg.schema, fname);
			reply_error(r, 404, "PGRST202", msg, det, NULL);
		}
		else
		{
			sprintf(msg, "Could not choose the best candidate function between several %s.%s functions", cfg.schema, fname);
			reply_error(r, 300, "PGRST203", msg, NULL, "Try renaming the parameters or the function itself in the database so function overloading can be resolved");
		}
		free(msg);
		free(det);
		free(keys);
		goto done;
	}
	if (is_get && fn->volatility == 'v')
	{
		char		msg[256];

		snprintf(msg, sizeof(msg), "cannot execute the volatile function %s.%s in a read-only transaction",
				 cfg.schema, fname);
		reply_error(r, 405, "25006", msg, NULL, "Call it with POST.");
		reply_header(r, "Allow", "POST");
		goto done;
	}
	if (fn->nargs > 64)
	{
		reply_error(r, 400, "PGRST202", "Functions with more than 64 arguments are not supported",
					NULL, NULL);
		goto done;
	}
	{
		uint64_t	mask = 0;

		for (int j = 0; j < fn->nargs; j++)
			if (json_object_get(args, fn->args[j].name))
				mask |= (uint64_t) 1 << j;
		snprintf(call_name, sizeof(call_name), "shop_rpc_%d_%llx", fn_index, (unsigned long long) mask);
	}
	sql = build_call_sql(fn, args, &has_param);
	{
		json_t	   *h = request_headers_json(c);

		headers = json_dumps(h, JSON_COMPACT);
		json_decref(h);
	}
	snprintf(path, sizeof(path), "/rpc/%s", fname);
	snprintf(timeout, sizeof(timeout), "%d", cfg.statement_timeout_ms);
	{
		const char *pre_vals[7] = {role, claims, headers, is_get ? "GET" : "POST", path, timeout,
		is_get ? "on" : "off"};
		const char *call_vals[1] = {args_text};
		Step		steps[3] = {
			{.name = "shop_pre", .sql = PRE_SQL, .nparams = 7, .values = pre_vals},
			{.name = call_name, .sql = sql, .nparams = has_param ? 1 : 0, .values = call_vals},
			{.name = "shop_post", .sql = POST_SQL, .nparams = 0, .values = NULL},
		};
		PGresult   *commit_error = NULL;
		const PGresult *err;

		if (!run_pipeline(pc, steps, 3, &commit_error))
		{
			err = steps_first_error(steps, 3);
			/* an error the server sent before the connection dropped is kept */
			if (err && PQresultErrorField(err, PG_DIAG_SQLSTATE) &&
				sqlstate_status(PQresultErrorField(err, PG_DIAG_SQLSTATE), authenticated) != 500)
				reply_pg_error(r, err, authenticated);
			else
				reply_error(r, 503, "PGRST001", "Database client error. Retrying the connection.",
							NULL, NULL);
			PQclear(commit_error);
			steps_clear(steps, 3);
			goto done;
		}
		err = steps_first_error(steps, 3);
		if (err || commit_error)
		{
			reply_pg_error(r, err ? err : commit_error, authenticated);
			PQclear(commit_error);
			steps_clear(steps, 3);
			goto done;
		}
		{
			PGresult   *res = steps[1].res;
			PGresult   *post = steps[2].res;
			const char *st = PQntuples(post) == 1 && !PQgetisnull(post, 0, 0) ? PQgetvalue(post, 0, 0) : "";
			const char *hd = PQntuples(post) == 1 && !PQgetisnull(post, 0, 1) ? PQgetvalue(post, 0, 1) : "";
			int			http = 200;

			if (fn->ret == RET_VOID)
			{
				/* no body, no Content-Type */
				http = 204;
			}
			else if (PQntuples(res) >= 1 && !PQgetisnull(res, 0, 0))
			{
				r->body = strdup(PQgetvalue(res, 0, 0));
				r->body_len = strlen(r->body);
			}
			else
			{
				r->body = strdup("null");
				r->body_len = 4;
			}
			r->content_type = "application/json; charset=utf-8";
			if (*st)
			{
				char	   *end;
				long		v = strtol(st, &end, 10);

				if (*end || v < 100 || v > 599)
				{
					free(r->body);
					r->body = NULL;
					r->body_len = 0;
					reply_error(r, 500, "PGRST112", "Invalid response status code",
								"The status code must be a positive integer", NULL);
					steps_clear(steps, 3);
					goto done;
				}
				http = (int) v;
			}
			if (!apply_response_headers(r, hd))
			{
				free(r->body);
				r->body = NULL;
				r->body_len = 0;
				json_decref(r->headers);
				r->headers = NULL;
				reply_error(r, 500, "PGRST111", "Invalid response.headers",
							"response.headers must be a JSON array of objects with string values", NULL);
				steps_clear(steps, 3);
				goto done;
			}
			r->status = http;
		}
		steps_clear(steps, 3);
	}

done:
	if (pc)
		pool_release(pc);
	cache_put(sc);
	json_decref(args);
	free(args_dump);
	free(role);
	free(claims);
	free(headers);
	free(sql);
}

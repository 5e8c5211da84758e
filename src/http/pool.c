/*
 * pool.c: a fixed pool of libpq connections (--pool N) logged in as the
 * authenticator role (--db), and the schema cache.
 *
 * A connection is checked when it is taken from the pool: a broken one (the
 * server restarted, the network dropped) is replaced, and the schema cache
 * is reloaded from the new connection ("at start and after each
 * reconnect").  While the database cannot be reached every request gets 503
 * (PostgREST's PGRST000 / PGRST001, "Errors" docs); the daemon itself never
 * exits for it.  Each connection keeps the statements prepared on it (names
 * in PoolConn.prepared) until it is replaced or the schema cache changes.
 */
#include "httpd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PoolConn *slots;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static SchemaCache *cache;
static unsigned cache_generation;

/*
 * The schema's functions, one JSON array: name, set-returning, volatility,
 * void, composite result, number of defaults, the input arguments' names and
 * their types as (schema, name) pairs.  Only catalog text goes into the SQL
 * built from this, each identifier quoted with PQescapeIdentifier.
 */
static const char cache_sql[] =
"SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_object("
"  'name', p.proname,"
"  'set', p.proretset,"
"  'vol', p.provolatile::pg_catalog.text,"
"  'void', p.prorettype = 'pg_catalog.void'::pg_catalog.regtype,"
"  'composite', rt.typtype = 'c' OR p.prorettype = 'pg_catalog.record'::pg_catalog.regtype,"
"  'ndefaults', p.pronargdefaults,"
"  'argnames', (SELECT COALESCE(pg_catalog.json_agg(u.n ORDER BY u.o), '[]')"
"     FROM ROWS FROM (pg_catalog.unnest(COALESCE(p.proargnames,"
"            pg_catalog.array_fill(''::pg_catalog.text, ARRAY[COALESCE(pg_catalog.array_length(p.proargmodes, 1), p.pronargs::pg_catalog.int4)]))),"
"          pg_catalog.unnest(COALESCE(p.proargmodes, pg_catalog.array_fill('i'::pg_catalog.\"char\", ARRAY[p.pronargs::pg_catalog.int4]))))"
"          WITH ORDINALITY AS u(n, m, o) WHERE u.m IN ('i', 'b', 'v')),"
"  'argtypes', (SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(tn.nspname, t.typname) ORDER BY a.o), '[]')"
"     FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) WITH ORDINALITY AS a(t, o)"
"     JOIN pg_catalog.pg_type t ON t.oid = a.t"
"     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace)"
") ORDER BY p.proname, p.oid), '[]')::pg_catalog.text"
" FROM pg_catalog.pg_proc p"
" JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
" JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype"
" WHERE n.nspname = $1 AND p.prokind = 'f'";

static char *
quote_ident(PGconn *conn, const char *s)
{
	char	   *q = PQescapeIdentifier(conn, s, strlen(s));
	char	   *copy;

	if (!q)
		return NULL;
	copy = strdup(q);
	PQfreemem(q);
	return copy;
}

static void
cache_free(SchemaCache *sc)
{
	for (int i = 0; i < sc->nfns; i++)
	{
		Fn		   *f = &sc->fns[i];

		for (int j = 0; j < f->nargs; j++)
		{
			free(f->args[j].name);
			free(f->args[j].qname);
			free(f->args[j].type_sql);
		}
		free(f->args);
		free(f->name);
		free(f->qualified);
	}
	free(sc->fns);
	free(sc);
}

static bool
cache_load(PGconn *conn)
{
	const char *params[1] = {cfg.schema};
	PGresult   *res = PQexecParams(conn, cache_sql, 1, NULL, params, NULL, NULL, 0);
	json_t	   *arr;
	json_error_t jerr;
	SchemaCache *sc;
	size_t		i;
	json_t	   *o;
	char	   *qschema;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		log_msg("could not load the schema cache: %s", PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	arr = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	PQclear(res);
	if (!json_is_array(arr))
	{
		json_decref(arr);
		return false;
	}
	qschema = quote_ident(conn, cfg.schema);
	sc = calloc(1, sizeof(SchemaCache));
	sc->fns = calloc(json_array_size(arr) + 1, sizeof(Fn));
	json_array_foreach(arr, i, o)
	{
		Fn		   *f = &sc->fns[sc->nfns];
		json_t	   *names = json_object_get(o, "argnames");
		json_t	   *types = json_object_get(o, "argtypes");
		const char *name = json_string_value(json_object_get(o, "name"));
		char	   *qname;
		bool		ok = true;

		if (!name || json_array_size(names) != json_array_size(types))
			continue;
		f->name = strdup(name);
		qname = quote_ident(conn, name);
		f->qualified = malloc(strlen(qschema) + strlen(qname) + 2);
		sprintf(f->qualified, "%s.%s", qschema, qname);
		free(qname);
		if (json_is_true(json_object_get(o, "set")))
			f->ret = RET_SET;
		else if (json_is_true(json_object_get(o, "void")))
			f->ret = RET_VOID;
		else if (json_is_true(json_object_get(o, "composite")))
			f->ret = RET_COMPOSITE;
		else
			f->ret = RET_SCALAR;
		f->volatility = json_string_value(json_object_get(o, "vol"))[0];
		f->ndefaults = (int) json_integer_value(json_object_get(o, "ndefaults"));
		f->nargs = (int) json_array_size(names);
		f->args = calloc((size_t) f->nargs + 1, sizeof(FnArg));
		for (int j = 0; j < f->nargs; j++)
		{
			const char *an = json_string_value(json_array_get(names, (size_t) j));
			json_t	   *t = json_array_get(types, (size_t) j);
			char	   *qn,
					   *qt;

			/* an unnamed argument cannot be called by name: skip the function */
			if (!an || !*an)
				ok = false;
			f->args[j].name = strdup(an ? an : "");
			f->args[j].qname = quote_ident(conn, an ? an : "");
			qn = quote_ident(conn, json_string_value(json_array_get(t, 0)));
			qt = quote_ident(conn, json_string_value(json_array_get(t, 1)));
			f->args[j].type_sql = malloc(strlen(qn) + strlen(qt) + 2);
			sprintf(f->args[j].type_sql, "%s.%s", qn, qt);
			free(qn);
			free(qt);
		}
		sc->nfns++;
		if (!ok)
		{
			/* keep it out of the cache: free what was built */
			for (int j = 0; j < f->nargs; j++)
			{
				free(f->args[j].name);
				free(f->args[j].qname);
				free(f->args[j].type_sql);
			}
			free(f->args);
			free(f->name);
			free(f->qualified);
			memset(f, 0, sizeof(*f));
			sc->nfns--;
		}
	}
	free(qschema);
	json_decref(arr);

	pthread_mutex_lock(&cache_lock);
	sc->generation = ++cache_generation;
	sc->refs = 1;
	if (cache && --cache->refs == 0)
		cache_free(cache);
	cache = sc;
	pthread_mutex_unlock(&cache_lock);
	log_msg("schema cache loaded: %d functions in schema %s", sc->nfns, cfg.schema);
	return true;
}

SchemaCache *
cache_get(void)
{
	SchemaCache *sc;

	pthread_mutex_lock(&cache_lock);
	sc = cache;
	if (sc)
		sc->refs++;
	pthread_mutex_unlock(&cache_lock);
	return sc;
}

void
cache_put(SchemaCache *sc)
{
	if (!sc)
		return;
	pthread_mutex_lock(&cache_lock);
	if (--sc->refs == 0)
		cache_free(sc);
	pthread_mutex_unlock(&cache_lock);
}

static PGconn *
connect_db(void)
{
	const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
	const char *vals[] = {"3", "shop-httpd", cfg.db, NULL};
	PGconn	   *conn = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		/* libpq's message names host and port, never the password */
		char	   *msg = PQerrorMessage(conn);
		size_t		len = strcspn(msg, "\n");

		log_msg("connection to the database failed: %.*s", (int) len, msg);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* A connection the server has closed, or one left in a transaction. */
bool
conn_broken(PGconn *conn)
{
	PGnotify   *n;

	if (!conn || PQstatus(conn) != CONNECTION_OK)
		return true;
	if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF || PQtransactionStatus(conn) != PQTRANS_IDLE)
		return true;
	if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
		return true;
	while ((n = PQnotifies(conn)) != NULL)
		PQfreemem(n);
	return PQisBusy(conn);
}

static void
clear_prepared(PoolConn *pc)
{
	for (int i = 0; i < pc->nprepared; i++)
		free(pc->prepared[i]);
	pc->nprepared = 0;
}

bool
pool_is_prepared(PoolConn *pc, const char *name)
{
	for (int i = 0; i < pc->nprepared; i++)
		if (strcmp(pc->prepared[i], name) == 0)
			return true;
	return false;
}

void
pool_mark_prepared(PoolConn *pc, const char *name)
{
	if (pc->nprepared == pc->cap_prepared)
	{
		int			cap = pc->cap_prepared ? pc->cap_prepared * 2 : 16;
		char	  **p = realloc(pc->prepared, (size_t) cap * sizeof(char *));

		if (!p)
			return;
		pc->prepared = p;
		pc->cap_prepared = cap;
	}
	pc->prepared[pc->nprepared++] = strdup(name);
}

int
pool_init(void)
{
	PGconn	   *conn;

	slots = calloc((size_t) cfg.pool_size, sizeof(PoolConn));
	/* the first connection loads the schema cache; if the database is
	 * down at start the daemon starts anyway and answers 503 until it is
	 * back */
	conn = connect_db();
	if (conn)
	{
		cache_load(conn);
		slots[0].conn = conn;
	}
	return 0;
}

PoolConn *
pool_acquire(int *status, const char **code, const char **message)
{
	PoolConn   *pc = NULL;
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += cfg.pool_wait_ms / 1000;
	deadline.tv_nsec += (long) (cfg.pool_wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&pool_lock);
	for (;;)
	{
		/* prefer a connected slot */
		for (int i = 0; i < cfg.pool_size && !pc; i++)
			if (!slots[i].busy && slots[i].conn)
				pc = &slots[i];
		for (int i = 0; i < cfg.pool_size && !pc; i++)
			if (!slots[i].busy)
				pc = &slots[i];
		if (pc)
			break;
		if (pthread_cond_timedwait(&pool_cond, &pool_lock, &deadline) == ETIMEDOUT)
			break;
	}
	if (pc)
		pc->busy = true;
	pthread_mutex_unlock(&pool_lock);
	if (!pc)
	{
		/* PostgREST: PGRST003, 504, timed out waiting for a pool connection */
		*status = 504;
		*code = "PGRST003";
		*message = "Timed out acquiring connection from connection pool.";
		return NULL;
	}
	if (conn_broken(pc->conn))
	{
		if (pc->conn)
		{
			PQfinish(pc->conn);
			pc->conn = NULL;
		}
		clear_prepared(pc);
		pc->conn = connect_db();
		if (!pc->conn || !cache_load(pc->conn))
		{
			if (pc->conn)
				PQfinish(pc->conn);
			pc->conn = NULL;
			pool_release(pc);
			*status = 503;
			*code = "PGRST000";
			*message = "Could not connect with the database";
			return NULL;
		}
		pc->generation = 0;
	}
	else
	{
		/* no schema cache yet (it failed at start): load it now */
		SchemaCache *sc = cache_get();

		if (!sc)
			cache_load(pc->conn);
		cache_put(sc);
	}
	return pc;
}

/* Statements prepared against another schema cache are dropped. */
void
pool_sync_generation(PoolConn *pc, const SchemaCache *sc)
{
	if (pc->generation == sc->generation)
		return;
	if (pc->nprepared > 0)
		PQclear(PQexec(pc->conn, "DEALLOCATE ALL"));
	clear_prepared(pc);
	pc->generation = sc->generation;
}

void
pool_release(PoolConn *pc)
{
	/* a connection left mid-pipeline or mid-transaction is not reused */
	if (pc->conn && (PQpipelineStatus(pc->conn) != PQ_PIPELINE_OFF ||
					 PQtransactionStatus(pc->conn) != PQTRANS_IDLE))
	{
		PQfinish(pc->conn);
		pc->conn = NULL;
		clear_prepared(pc);
	}
	pthread_mutex_lock(&pool_lock);
	pc->busy = false;
	pthread_cond_signal(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
}

void
pool_shutdown(void)
{
	for (int i = 0; i < cfg.pool_size; i++)
	{
		if (slots[i].conn)
			PQfinish(slots[i].conn);
		slots[i].conn = NULL;
		clear_prepared(&slots[i]);
		free(slots[i].prepared);
	}
	free(slots);
	pthread_mutex_lock(&cache_lock);
	if (cache && --cache->refs == 0)
		cache_free(cache);
	cache = NULL;
	pthread_mutex_unlock(&cache_lock);
}

/*
 * GET /health: 200 {"database": "ok", "worker": bool} when the database
 * answers; worker = a backend of type 'shop outbox worker' (the bgw_type set
 * in src/outbox_worker.c) is running.  503 otherwise.
 */
/*
 * The worker flag of /health.  Another backend's type in pg_stat_activity
 * is visible only to its owner's peers, superusers and pg_read_all_stats,
 * which the authenticator is not; when the schema has a health() function
 * (shop_api.health(), SECURITY DEFINER) it is asked, as the anonymous role
 * like any anonymous request, in one transaction.  Else (another schema,
 * or an older one) pg_stat_activity is read directly: false unless this
 * role may see the worker.  Returns the last result: one boolean.
 */
static PGresult *
health_query(PGconn *conn)
{
	SchemaCache *sc = cache_get();
	const Fn   *fn = NULL;
	PGresult   *res;
	int			i;

	for (i = 0; sc && i < sc->nfns; i++)
		if (strcmp(sc->fns[i].name, "health") == 0 && sc->fns[i].nargs == 0)
			fn = &sc->fns[i];
	if (fn == NULL)
	{
		cache_put(sc);
		return PQexec(conn,
					  "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity"
					  " WHERE backend_type = 'shop outbox worker'"
					  "   AND datname = pg_catalog.current_database())");
	}
	res = PQexec(conn, "BEGIN READ ONLY");
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
	{
		const char *params[1] = {cfg.anon_role};

		PQclear(res);
		res = PQexecParams(conn, "SELECT pg_catalog.set_config('role', $1, true)",
						   1, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			char		sql[512];

			PQclear(res);
			/* fn->qualified: catalog names, quoted (cache_load) */
			snprintf(sql, sizeof(sql), "SELECT coalesce((%s() ->> 'worker')::boolean, false)",
					 fn->qualified);
			res = PQexec(conn, sql);
		}
	}
	cache_put(sc);
	PQclear(PQexec(conn, PQtransactionStatus(conn) == PQTRANS_INERROR ? "ROLLBACK" : "COMMIT"));
	return res;
}

void
handle_health(Reply *r)
{
	int			status;
	const char *code,
			   *message;
	PoolConn   *pc = pool_acquire(&status, &code, &message);
	PGresult   *res;
	json_t	   *o;

	if (!pc)
	{
		o = json_object();
		json_object_set_new(o, "database", json_string(status == 504 ? "busy" : "unavailable"));
		json_object_set_new(o, "worker", json_false());
		reply_json(r, 503, o);
		return;
	}
	res = health_query(pc->conn);
	o = json_object();
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		json_object_set_new(o, "database", json_string("ok"));
		json_object_set_new(o, "worker", json_boolean(PQgetvalue(res, 0, 0)[0] == 't'));
		reply_json(r, 200, o);
	}
	else
	{
		json_object_set_new(o, "database", json_string("unavailable"));
		json_object_set_new(o, "worker", json_false());
		reply_json(r, 503, o);
	}
	PQclear(res);
	pool_release(pc);
}

/*
 * shop-httpd: a thin HTTP layer that speaks PostgREST's RPC dialect for one
 * schema, plus the payment webhook endpoint, guest tokens, /health and
 * static files.  One job per file:
 *   main.c     configuration, the libmicrohttpd daemon, routing, shutdown
 *   jwt.c      HS256 JSON Web Tokens (verify and sign)
 *   pool.c     libpq connection pool, reconnects, the schema cache, /health
 *   rpc.c      /rpc/<fn>: function matching, SQL, one pipelined transaction
 *   webhook.c  /webhooks/<provider>
 *   static.c   static files
 *   log.c      request log lines and JSON error responses
 */
#ifndef SHOP_HTTPD_H
#define SHOP_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <microhttpd.h>

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT_T;
#else
typedef enum MHD_Result MHD_RESULT_T;
#endif

/* ---- configuration (main.c) ---- */
typedef struct Config
{
	const char *db;				/* libpq conninfo of the authenticator role */
	const char *listen_host;
	int			listen_port;
	const char *jwt_secret_file;
	unsigned char *jwt_secret;
	size_t		jwt_secret_len;
	int			pool_size;
	const char *static_dir;		/* realpath, or NULL */
	const char *schema;
	const char *anon_role;
	const char *user_role;
	const char *webhook_role;
	size_t		max_body;
	size_t		max_header;
	unsigned	timeout_s;		/* idle client connection timeout */
	int			statement_timeout_ms;
	int			pool_wait_ms;	/* waiting for a free connection */
} Config;

extern Config cfg;

/* ---- per-request state (main.c) ---- */
typedef struct Request
{
	struct timespec start;
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	bool		too_big;
	bool		counted;
} Request;

/* ---- responses and logging (log.c) ---- */
typedef struct Reply
{
	int			status;
	char	   *body;			/* malloc'd, or NULL */
	size_t		body_len;
	const char *content_type;
	json_t	   *headers;		/* object name -> string, or NULL */
} Reply;

void		reply_json(Reply *r, int status, json_t *body);	/* steals body */
void		reply_error(Reply *r, int status, const char *code, const char *message,
						const char *details, const char *hint);
void		reply_header(Reply *r, const char *name, const char *value);
MHD_RESULT_T reply_send(struct MHD_Connection *c, Reply *r);
void		log_request(const char *method, const char *path, int status, const struct timespec *start);
void		log_msg(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* ---- JWT (jwt.c) ---- */
typedef enum JwtResult
{
	JWT_OK,
	JWT_MALFORMED,				/* PGRST301 */
	JWT_BAD_SIGNATURE,			/* PGRST301 */
	JWT_BAD_ALG,				/* PGRST301 */
	JWT_EXPIRED,				/* PGRST303 */
	JWT_NOT_YET_VALID,			/* PGRST303 */
	JWT_BAD_CLAIMS				/* PGRST303 */
} JwtResult;

JwtResult	jwt_verify(const char *token, json_t **claims_out);
const char *jwt_error_message(JwtResult r);
char	   *jwt_sign(json_t *claims);	/* malloc'd token or NULL */

/* ---- schema cache and pool (pool.c) ---- */
typedef struct FnArg
{
	char	   *name;
	char	   *qname;			/* name quoted with PQescapeIdentifier */
	char	   *type_sql;		/* "nsp"."typname", both quoted */
} FnArg;

typedef enum RetKind
{
	RET_SCALAR,
	RET_COMPOSITE,
	RET_SET,
	RET_VOID
} RetKind;

typedef struct Fn
{
	char	   *name;
	char	   *qualified;		/* "schema"."name", quoted */
	RetKind		ret;
	char		volatility;		/* 'i', 's' or 'v' */
	int			nargs;
	int			ndefaults;		/* the last ndefaults args have defaults */
	FnArg	   *args;
} Fn;

typedef struct SchemaCache
{
	int			refs;
	unsigned	generation;
	int			nfns;
	Fn		   *fns;
} SchemaCache;

typedef struct PoolConn
{
	PGconn	   *conn;
	unsigned	generation;		/* schema cache generation of the prepared statements */
	int			nprepared;
	int			cap_prepared;
	char	  **prepared;		/* names of statements prepared on this connection */
	bool		busy;
} PoolConn;

int			pool_init(void);
/* NULL and *status set (503 / 504) when no connection can be had */
PoolConn   *pool_acquire(int *status, const char **code, const char **message);
void		pool_release(PoolConn *pc);
void		pool_sync_generation(PoolConn *pc, const SchemaCache *sc);
bool		pool_is_prepared(PoolConn *pc, const char *name);
void		pool_mark_prepared(PoolConn *pc, const char *name);
SchemaCache *cache_get(void);
void		cache_put(SchemaCache *sc);
bool		conn_broken(PGconn *conn);
void		handle_health(Reply *r);
void		pool_shutdown(void);

/* ---- handlers ---- */
void		handle_rpc(struct MHD_Connection *c, const char *method, const char *fname,
					   Request *req, Reply *r);
void		handle_webhook(struct MHD_Connection *c, const char *provider, Request *req, Reply *r);
MHD_RESULT_T serve_static(struct MHD_Connection *c, const char *path, int *status_out);
void		handle_guest(Reply *r);

/* shared helpers (rpc.c) */
typedef struct Step
{
	const char *name;			/* prepared statement name */
	const char *sql;
	int			nparams;
	const char *const *values;
	bool		prepare_sent;
	PGresult   *prep_res;
	PGresult   *res;
} Step;

bool		run_pipeline(PoolConn *pc, Step *steps, int n, PGresult **commit_error);
void		steps_clear(Step *steps, int n);
const PGresult *steps_first_error(Step *steps, int n);
json_t	   *request_headers_json(struct MHD_Connection *c);
int			sqlstate_status(const char *sqlstate, bool authenticated);
void		reply_pg_error(Reply *r, const PGresult *res, bool authenticated);
bool		transient_sqlstate(const char *s);

#endif

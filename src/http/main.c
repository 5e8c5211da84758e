/*
 * main.c: configuration (flags and environment), the libmicrohttpd daemon,
 * routing and a draining shutdown.
 *
 * libmicrohttpd parses HTTP; it runs one thread per client connection (a
 * request blocks in libpq while it waits for the database, and the pool
 * bounds how many do so at once).  SIGTERM / SIGINT: stop accepting, let
 * the requests in flight finish (up to 30 s), close, exit 0.
 */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

Config		cfg = {
	.db = "dbname=shop user=shop_authenticator",
	.listen_host = "127.0.0.1",
	.listen_port = 8080,
	.pool_size = 8,
	.schema = "shop_api",
	.anon_role = "shop_anon",
	.user_role = "shop_customer",
	.webhook_role = "shop_webhook",
	.max_body = 1024 * 1024,
	.max_header = 32 * 1024,
	.timeout_s = 10,
	.statement_timeout_ms = 10000,
	.pool_wait_ms = 10000,
};

static atomic_int inflight;

static void
usage(FILE *out)
{
	fprintf(out,
			"shop-httpd: the shop's HTTP layer (PostgREST's RPC dialect for one schema)\n\n"
			"Usage: shop-httpd [options]\n"
			"  --db CONNINFO              libpq connection string of the authenticator role\n"
			"                             (env SHOP_HTTPD_DB; default \"dbname=shop user=shop_authenticator\")\n"
			"  --listen HOST:PORT         address to listen on (env SHOP_HTTPD_LISTEN; default 127.0.0.1:8080)\n"
			"  --jwt-secret-file FILE     HS256 secret, at least 32 bytes (env SHOP_HTTPD_JWT_SECRET_FILE; required)\n"
			"  --pool N                   database connections (env SHOP_HTTPD_POOL; default 8)\n"
			"  --static-dir DIR           serve files from DIR for GET / and GET /<file> (env SHOP_HTTPD_STATIC_DIR)\n"
			"  --schema NAME              the schema whose functions are /rpc/<fn> (env SHOP_HTTPD_SCHEMA; default shop_api)\n"
			"  --anon-role ROLE           role of requests without a token (env SHOP_HTTPD_ANON_ROLE; default shop_anon)\n"
			"  --user-role ROLE           role in guest tokens (env SHOP_HTTPD_USER_ROLE; default shop_customer)\n"
			"  --webhook-role ROLE        role of /webhooks/<provider> (env SHOP_HTTPD_WEBHOOK_ROLE; default shop_webhook)\n"
			"  --max-body BYTES           request body limit, 413 above (env SHOP_HTTPD_MAX_BODY; default 1048576)\n"
			"  --max-header BYTES         memory per connection for the request line and headers (default 32768)\n"
			"  --timeout SECONDS          close a client connection idle this long (default 10)\n"
			"  --statement-timeout MS     statement_timeout of each request (default 10000)\n"
			"  --pool-wait MS             wait this long for a free connection, then 504 (default 10000)\n"
			"  --help                     this text\n");
}

static long
parse_num(const char *what, const char *s, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max)
	{
		fprintf(stderr, "shop-httpd: invalid %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static void
parse_listen(const char *s)
{
	const char *colon = strrchr(s, ':');
	static char host[256];

	if (!colon || (size_t) (colon - s) >= sizeof(host))
	{
		fprintf(stderr, "shop-httpd: --listen wants HOST:PORT, got %s\n", s);
		exit(2);
	}
	memcpy(host, s, (size_t) (colon - s));
	host[colon - s] = '\0';
	cfg.listen_host = host;
	cfg.listen_port = (int) parse_num("port", colon + 1, 1, 65535);
}

static void
read_secret(void)
{
	FILE	   *f;
	unsigned char buf[4097];
	size_t		n;

	if (!cfg.jwt_secret_file)
	{
		fprintf(stderr, "shop-httpd: --jwt-secret-file (or SHOP_HTTPD_JWT_SECRET_FILE) is required\n");
		exit(2);
	}
	f = fopen(cfg.jwt_secret_file, "rb");
	if (!f)
	{
		fprintf(stderr, "shop-httpd: cannot read the JWT secret file: %s\n", strerror(errno));
		exit(2);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	/* PostgREST requires at least 32 characters ("Authentication") */
	if (n < 32)
	{
		fprintf(stderr, "shop-httpd: the JWT secret must be at least 32 bytes\n");
		exit(2);
	}
	cfg.jwt_secret = malloc(n);
	memcpy(cfg.jwt_secret, buf, n);
	cfg.jwt_secret_len = n;
	memset(buf, 0, sizeof(buf));
}

static void
configure(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"jwt-secret-file", required_argument, NULL, 'j'},
		{"pool", required_argument, NULL, 'p'},
		{"static-dir", required_argument, NULL, 's'},
		{"schema", required_argument, NULL, 'S'},
		{"anon-role", required_argument, NULL, 'a'},
		{"user-role", required_argument, NULL, 'u'},
		{"webhook-role", required_argument, NULL, 'w'},
		{"max-body", required_argument, NULL, 'b'},
		{"max-header", required_argument, NULL, 'H'},
		{"timeout", required_argument, NULL, 't'},
		{"statement-timeout", required_argument, NULL, 'T'},
		{"pool-wait", required_argument, NULL, 'W'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *e;
	int			ch;

	/* environment first, flags override */
	if ((e = getenv("SHOP_HTTPD_DB")))
		cfg.db = e;
	if ((e = getenv("SHOP_HTTPD_LISTEN")))
		parse_listen(e);
	if ((e = getenv("SHOP_HTTPD_JWT_SECRET_FILE")))
		cfg.jwt_secret_file = e;
	if ((e = getenv("SHOP_HTTPD_POOL")))
		cfg.pool_size = (int) parse_num("pool", e, 1, 1000);
	if ((e = getenv("SHOP_HTTPD_STATIC_DIR")))
		cfg.static_dir = e;
	if ((e = getenv("SHOP_HTTPD_SCHEMA")))
		cfg.schema = e;
	if ((e = getenv("SHOP_HTTPD_ANON_ROLE")))
		cfg.anon_role = e;
	if ((e = getenv("SHOP_HTTPD_USER_ROLE")))
		cfg.user_role = e;
	if ((e = getenv("SHOP_HTTPD_WEBHOOK_ROLE")))
		cfg.webhook_role = e;
	if ((e = getenv("SHOP_HTTPD_MAX_BODY")))
		cfg.max_body = (size_t) parse_num("max-body", e, 1, 1L << 30);

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1)
	{
		switch (ch)
		{
			case 'd':
				cfg.db = optarg;
				break;
			case 'l':
				parse_listen(optarg);
				break;
			case 'j':
				cfg.jwt_secret_file = optarg;
				break;
			case 'p':
				cfg.pool_size = (int) parse_num("pool", optarg, 1, 1000);
				break;
			case 's':
				cfg.static_dir = optarg;
				break;
			case 'S':
				cfg.schema = optarg;
				break;
			case 'a':
				cfg.anon_role = optarg;
				break;
			case 'u':
				cfg.user_role = optarg;
				break;
			case 'w':
				cfg.webhook_role = optarg;
				break;
			case 'b':
				cfg.max_body = (size_t) parse_num("max-body", optarg, 1, 1L << 30);
				break;
			case 'H':
				cfg.max_header = (size_t) parse_num("max-header", optarg, 4096, 1L << 24);
				break;
			case 't':
				cfg.timeout_s = (unsigned) parse_num("timeout", optarg, 1, 3600);
				break;
			case 'T':
				cfg.statement_timeout_ms = (int) parse_num("statement-timeout", optarg, 0, 86400000);
				break;
			case 'W':
				cfg.pool_wait_ms = (int) parse_num("pool-wait", optarg, 1, 600000);
				break;
			case 'h':
				usage(stdout);
				exit(0);
			default:
				usage(stderr);
				exit(2);
		}
	}
	if (optind < argc)
	{
		usage(stderr);
		exit(2);
	}
	read_secret();
	if (cfg.static_dir)
	{
		char	   *real = realpath(cfg.static_dir, NULL);

		if (!real)
		{
			fprintf(stderr, "shop-httpd: --static-dir %s: %s\n", cfg.static_dir, strerror(errno));
			exit(2);
		}
		cfg.static_dir = real;
	}
}

/* ---------------- requests ---------------- */

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	Request    *req = *con_cls;

	(void) cls;
	(void) c;
	(void) toe;
	if (!req)
		return;
	if (req->counted)
		atomic_fetch_sub(&inflight, 1);
	free(req->body);
	free(req);
	*con_cls = NULL;
}

static MHD_RESULT_T
finish(struct MHD_Connection *c, const char *method, const char *url, Request *req, Reply *r)
{
	MHD_RESULT_T ret = reply_send(c, r);

	log_request(method, url, r->status, &req->start);
	json_decref(r->headers);
	free(r->body);
	return ret;
}

static MHD_RESULT_T
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	Request    *req = *con_cls;
	Reply		r = {.status = 500};

	(void) cls;
	(void) version;
	if (!req)
	{
		const char *cl;

		req = calloc(1, sizeof(Request));
		if (!req)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &req->start);
		req->counted = true;
		atomic_fetch_add(&inflight, 1);
		*con_cls = req;
		/* a declared body over the limit is refused before it is read */
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > cfg.max_body)
		{
			reply_error(&r, 413, "PGRST413", "Payload Too Large", NULL, NULL);
			return finish(c, method, url, req, &r);
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (req->too_big || req->body_len + n > cfg.max_body)
		{
			req->too_big = true;
			return MHD_YES;
		}
		if (req->body_len + n + 1 > req->body_cap)
		{
			size_t		cap = req->body_cap ? req->body_cap : 4096;
			char	   *b;

			while (cap < req->body_len + n + 1)
				cap *= 2;
			b = realloc(req->body, cap);
			if (!b)
				return MHD_NO;
			req->body = b;
			req->body_cap = cap;
		}
		memcpy(req->body + req->body_len, upload_data, n);
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}

	/* the whole request is here */
	if (req->too_big)
	{
		reply_error(&r, 413, "PGRST413", "Payload Too Large", NULL, NULL);
		return finish(c, method, url, req, &r);
	}
	if (!req->body)
	{
		req->body = calloc(1, 1);
		if (!req->body)
			return MHD_NO;
	}

	if (strncmp(url, "/rpc/", 5) == 0)
	{
		const char *fname = url + 5;

		if (!*fname || strchr(fname, '/'))
			reply_error(&r, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
		else
			handle_rpc(c, method, fname, req, &r);
	}
	else if (strncmp(url, "/webhooks/", 10) == 0)
	{
		if (strcmp(method, "POST") != 0)
		{
			reply_error(&r, 405, "PGRST117", "Unsupported HTTP method", NULL, NULL);
			reply_header(&r, "Allow", "POST");
		}
		else
			handle_webhook(c, url + 10, req, &r);
	}
	else if (strcmp(url, "/auth/guest") == 0)
	{
		if (strcmp(method, "POST") != 0)
		{
			reply_error(&r, 405, "PGRST117", "Unsupported HTTP method", NULL, NULL);
			reply_header(&r, "Allow", "POST");
		}
		else
			handle_guest(&r);
	}
	else if (strcmp(url, "/health") == 0)
	{
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		{
			reply_error(&r, 405, "PGRST117", "Unsupported HTTP method", NULL, NULL);
			reply_header(&r, "Allow", "GET, HEAD");
		}
		else
			handle_health(&r);
	}
	else if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
	{
		int			status = 500;
		MHD_RESULT_T ret = serve_static(c, url, &status);

		log_request(method, url, status, &req->start);
		return ret;
	}
	else
		reply_error(&r, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
	return finish(c, method, url, req, &r);
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	struct sockaddr_in addr;
	sigset_t	sigs;
	int			sig = 0;
	MHD_socket	lsock;

	configure(argc, argv);

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) cfg.listen_port);
	if (inet_pton(AF_INET, cfg.listen_host, &addr.sin_addr) != 1)
	{
		fprintf(stderr, "shop-httpd: --listen host must be an IPv4 address: %s\n", cfg.listen_host);
		return 2;
	}

	/* every thread inherits this mask: the signals are taken by sigwait below */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	pool_init();

	d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
						 MHD_USE_ITC | MHD_USE_ERROR_LOG,
						 0, NULL, NULL, answer, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
						 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned) 1,
						 MHD_OPTION_CONNECTION_TIMEOUT, cfg.timeout_s,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg.max_header,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned) 2000,
						 /* a thread per connection: small stacks (libpq and jansson need little) */
						 MHD_OPTION_THREAD_STACK_SIZE, (size_t) (512 * 1024),
						 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
						 MHD_OPTION_END);
	if (!d)
	{
		fprintf(stderr, "shop-httpd: cannot listen on %s:%d\n", cfg.listen_host, cfg.listen_port);
		return 1;
	}
	log_msg("listening on http://%s:%d, schema %s, pool %d", cfg.listen_host, cfg.listen_port,
			cfg.schema, cfg.pool_size);

	while (sigwait(&sigs, &sig) != 0)
		;
	log_msg("signal %d: draining %d request(s)", sig, atomic_load(&inflight));
	lsock = MHD_quiesce_daemon(d);
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
	for (int i = 0; i < 3000 && atomic_load(&inflight) > 0; i++)
		usleep(10000);
	MHD_stop_daemon(d);
	pool_shutdown();
	log_msg("stopped");
	return 0;
}

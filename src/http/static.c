/*
 * static.c: files from --static-dir for GET / (index.html) and GET /<file>.
 * A path with a ".." segment is refused; the file's real path (symbolic
 * links resolved) must lie inside the directory's real path; only regular
 * files are served; anything else is 404.
 */
#include "httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *
content_type(const char *path)
{
	static const struct
	{
		const char *ext;
		const char *type;
	}			types[] = {
		{".html", "text/html; charset=utf-8"},
		{".htm", "text/html; charset=utf-8"},
		{".css", "text/css; charset=utf-8"},
		{".js", "text/javascript; charset=utf-8"},
		{".mjs", "text/javascript; charset=utf-8"},
		{".json", "application/json"},
		{".svg", "image/svg+xml"},
		{".png", "image/png"},
		{".ico", "image/x-icon"},
		{".txt", "text/plain; charset=utf-8"},
	};
	const char *dot = strrchr(path, '.');

	if (dot && !strchr(dot, '/'))
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcasecmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

static bool
has_dotdot(const char *p)
{
	const char *s = p;

	while ((s = strstr(s, "..")) != NULL)
	{
		bool		start = (s == p || s[-1] == '/');
		bool		end = (s[2] == '\0' || s[2] == '/');

		if (start && end)
			return true;
		s += 2;
	}
	return false;
}

static MHD_RESULT_T
not_found(struct MHD_Connection *c, int *status_out)
{
	Reply		r = {0};

	reply_error(&r, 404, "PGRST125", "Invalid path specified in request URL", NULL, NULL);
	*status_out = 404;
	return reply_send(c, &r);
}

MHD_RESULT_T
serve_static(struct MHD_Connection *c, const char *url, int *status_out)
{
	char		want[PATH_MAX];
	char		real[PATH_MAX];
	size_t		dlen;
	int			fd;
	struct stat st;
	struct MHD_Response *resp;
	MHD_RESULT_T ret;

	if (!cfg.static_dir || url[0] != '/' || has_dotdot(url) || strchr(url, '\\'))
		return not_found(c, status_out);
	if (snprintf(want, sizeof(want), "%s%s%s", cfg.static_dir, url,
				 url[strlen(url) - 1] == '/' ? "index.html" : "") >= (int) sizeof(want))
		return not_found(c, status_out);
	if (!realpath(want, real))
		return not_found(c, status_out);
	dlen = strlen(cfg.static_dir);
	if (strncmp(real, cfg.static_dir, dlen) != 0 || real[dlen] != '/')
		return not_found(c, status_out);
	fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return not_found(c, status_out);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		return not_found(c, status_out);
	}
	resp = MHD_create_response_from_fd((uint64_t) st.st_size, fd);
	if (!resp)
	{
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(real));
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	*status_out = 200;
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

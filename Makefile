# shop: PGXS build of the stock-safe shop core.
#
#   make && make install            build and install into the server found by pg_config
#   make installcheck               pg_regress (sql/) and isolation specs (test/specs/)
#                                   against a running server (PGHOST/PGPORT)
#   bash test/run-all.sh            every test kind on a throwaway cluster (what CI runs)

EXTENSION = shop
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = $(EXTENSION)
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script is assembled from the ordered pieces in src/sql/.
SCRIPT_PARTS = $(sort $(wildcard src/sql/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# Frozen install scripts of earlier versions (CREATE EXTENSION shop VERSION
# '0.1' must keep working) and the upgrade scripts between versions.
DATA = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*.sql))

# Warnings on, never -Werror here: a packager's newer compiler must not fail
# the build.  The tests and CI add it: make COPT=-Werror (test/run-all.sh).
PG_CPPFLAGS = -DSHOP_VERSION='"$(EXTVERSION)"'
# libcurl: the outbox worker's HTTP client, and the URL parser endpoints are checked with
SHLIB_LINK = -lcurl
PG_CFLAGS = -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

# pg_regress: sql/NAME.sql compared with expected/NAME.out
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --load-extension=$(EXTENSION)

# Isolation specs: test/specs/NAME.spec compared with test/expected/NAME.out
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=$(EXTENSION)

EXTRA_CLEAN = $(DATA_built) results output_iso regression.diffs regression.out $(HTTPD)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# shop-httpd: the HTTP layer (src/http/), a separate program linked with
# libpq, libmicrohttpd, jansson and libcrypto.  Built by "make" and
# installed by "make install" into the server's bindir next to pg_ctl.
HTTPD = src/http/shop-httpd
HTTPD_SRCS = $(sort $(wildcard src/http/*.c))
HTTPD_CFLAGS = -std=gnu11 -O2 -g -Wall -Wextra -Wno-missing-field-initializers -pthread
all: $(HTTPD)
$(HTTPD): $(HTTPD_SRCS) src/http/httpd.h
	$(CC) $(HTTPD_CFLAGS) $(COPT) -I$(shell $(PG_CONFIG) --includedir) -o $@ $(HTTPD_SRCS) \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -lmicrohttpd -ljansson -lcrypto -pthread
install: install-httpd
.PHONY: install-httpd
install-httpd: $(HTTPD)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(HTTPD) '$(DESTDIR)$(bindir)/shop-httpd'

$(EXTENSION)--$(EXTVERSION).sql: $(SCRIPT_PARTS) $(EXTENSION).control
	cat $(SCRIPT_PARTS) > $@

.PHONY: test bench
test:
	bash test/run-all.sh

bench:
	bash bench/run.sh

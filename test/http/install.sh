#!/usr/bin/env bash
# Install shop-httpd's test dependency (@supabase/postgrest-js, the real
# PostgREST client) into test/http/node_modules from the committed lockfile.
# Does nothing when it is there already.
#
#   bash test/http/install.sh
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "node and npm are needed for the shop-httpd tests (test/install-deps.sh installs them)" >&2
	exit 1
fi
if [ -f "$dir/node_modules/@supabase/postgrest-js/package.json" ]; then
	exit 0
fi
cd "$dir"
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
else
	npm install --no-audit --no-fund --loglevel=error
fi
# the tests run as an unprivileged user: node_modules must be readable by all
chmod -R a+rX "$dir/node_modules"
node -e "require('$dir/node_modules/@supabase/postgrest-js')" ||
	{ echo "@supabase/postgrest-js did not install" >&2; exit 1; }
